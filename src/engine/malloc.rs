//! glibc's malloc keeps up to eight arenas per core, one for each thread that allocates (the
//! runtime's workers, the scans' fetch threads), and memory freed into one arena is not reused
//! by the others; and once large blocks have been freed it serves blocks of up to 32 MB from
//! those arenas rather than from the system, keeping them after they are freed. Under
//! `memory_limit` that held about 190 MB beyond what the pool counted in the sort of SF 1
//! `lineitem`; one arena per core and blocks of 1 MB or more mapped (and returned) one by one
//! keep the process near its limit for a few percent of speed (docs/performance.md).

/// With a memory limit, once per process: glibc's malloc arenas capped at one per core (at
/// least two), and blocks of 1 MB or more taken from and given back to the system directly,
/// each unless the environment chose (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`). Nothing
/// elsewhere than Linux with glibc.
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
            let settings = [
                ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, arenas),
                ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 1 << 20),
            ];
            for (variable, parameter, value) in settings {
                if std::env::var_os(variable).is_some() {
                    continue;
                }
                // SAFETY: mallopt only sets one of malloc's parameters; glibc takes them at
                // any time (arenas made from then on, blocks allocated from then on).
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
