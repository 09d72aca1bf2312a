//! glibc's malloc keeps up to eight arenas per core, one for each thread that allocates (the
//! runtime's workers, the scans' fetch threads), and memory freed into one arena is not reused
//! by the others. Under `memory_limit` that held about 190 MB beyond what the pool counted in
//! the sort of SF 1 `lineitem` (docs/performance.md); one arena per core (at least two) keeps
//! the process near its limit for a few percent of speed.

/// With a memory limit: caps glibc's malloc arenas at one per core (at least two), once per
/// process, unless `MALLOC_ARENA_MAX` in the environment already chose. Nothing elsewhere.
pub(super) fn cap_arenas_under_memory_limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static CAPPED: std::sync::Once = std::sync::Once::new();
        CAPPED.call_once(|| {
            if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
                return;
            }
            let arenas = std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2)
                .max(2);
            let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only sets a malloc parameter; glibc takes it at any time and
            // applies it to arenas created from then on.
            let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
            if set == 1 {
                tracing::info!(
                    arenas,
                    "memory_limit: malloc arenas capped at one per core \
                     (MALLOC_ARENA_MAX in the environment overrides)"
                );
            }
        });
    }
}
