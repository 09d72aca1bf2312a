//! glibc's malloc keeps up to eight arenas per core, one for each thread that allocates (the
//! runtime's workers, the scans' fetch threads), and memory freed into one arena is not reused
//! by the others; and once large blocks have been freed it serves blocks of up to 32 MB from
//! those arenas rather than from the system, keeping them after they are freed. Under
//! `memory_limit` that held about 190 MB beyond what the pool counted in the sort of SF 1
//! `lineitem`; one arena per core and blocks of 1 MB or more mapped (and returned) one by one
//! keep the process near its limit (docs/performance.md). Two arenas cost that sort 5–10 % of
//! its speed when measured alone.
//!
//! glibc fixes its arena limit when a process first needs more than eight arenas: in a host
//! process (Python, a service) that already has that many threads, the cap comes too late.

/// With a memory limit, once per process: glibc's malloc arenas capped at one per core (at
/// least two), and blocks of 1 MB or more taken from and given back to the system directly,
/// each unless the environment chose (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, or the
/// same in `GLIBC_TUNABLES`). Nothing elsewhere than Linux with glibc.
pub(super) fn fit_malloc_to_memory_limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static FITTED: std::sync::Once = std::sync::Once::new();
        FITTED.call_once(|| {
            let arenas = std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2)
                .max(2);
            let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
            let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
            let settings = [
                (
                    "MALLOC_ARENA_MAX",
                    "glibc.malloc.arena_max",
                    libc::M_ARENA_MAX,
                    arenas,
                ),
                (
                    "MALLOC_MMAP_THRESHOLD_",
                    "glibc.malloc.mmap_threshold",
                    libc::M_MMAP_THRESHOLD,
                    1 << 20,
                ),
            ];
            for (variable, tunable, parameter, value) in settings {
                if std::env::var_os(variable).is_some() || tunables.contains(tunable) {
                    continue;
                }
                // SAFETY: mallopt only sets one of malloc's parameters, which glibc accepts
                // at any time (see the module notes for when the arena cap applies).
                if unsafe { libc::mallopt(parameter, value) } == 1 {
                    tracing::info!(
                        setting = variable,
                        value,
                        "memory_limit: malloc fitted to the limit (the environment variable \
                         overrides)"
                    );
                }
            }
        });
    }
}
