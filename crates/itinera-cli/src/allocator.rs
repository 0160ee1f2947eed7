//! The process's allocator, and the upkeep that lets a server give memory back when idle.

use std::time::Duration;

/// mimalloc: the glibc allocator was a quarter of the CPU time of HTTP ingestion (measured with perf).
/// Built without transparent huge pages (the workspace's `no_thp` feature): the kernel zeroes a
/// fresh 2 MiB page far slower than 4 KiB ones on the machines measured, which made page zeroing
/// the largest cost of ingestion, while warm scans ran no faster with huge pages.
/// Metered: allocations made for a query count against its memory budget (`query_memory_mb`).
#[global_allocator]
static GLOBAL: itinera_engine::metered::Metered<mimalloc::MiMalloc> =
    itinera_engine::metered::Metered(mimalloc::MiMalloc);

/// How often the upkeep asks the allocator to return what has been free for its purge delay.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Starts a thread that returns freed memory to the OS while the process is idle.
///
/// mimalloc gives freed memory back lazily: a free range is purged once its delay (1 s) has
/// passed, but only when some thread next calls into the allocator's slow path. A server that
/// goes quiet after a flush, a merge or a large query would keep that peak resident for as
/// long as it stays quiet: 1.4 GB for a 10M-event store whose structures held 0.32 GB. A
/// collection finds nothing to do in a few microseconds, so once a second costs nothing.
pub fn spawn_upkeep() {
    let spawned = std::thread::Builder::new()
        .name("itinera-alloc-upkeep".into())
        .spawn(|| loop {
            std::thread::sleep(UPKEEP_EVERY);
            // SAFETY: mi_collect takes no pointers; it walks the allocator's own structures
            // (this thread's pages and the shared arenas) under their own locks
            unsafe { libmimalloc_sys::mi_collect(false) };
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the allocator's upkeep; freed memory is returned only under load");
    }
}

/// mimalloc's `mi_option_purge_delay` (its index in v3's `mi_option_t`; the test below checks
/// it against the option's documented default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay of a process whose peak is what counts: 0 took a 10M-event compaction from
/// 47 s to 86 s (every emptied page given back and taken again), 100 ms to 54 s, with peaks of
/// 0.96, 0.82 and 0.87 GB.
const SHORT_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Makes the allocator return freed memory to the OS soon, for a process whose peak is what
/// counts (`itinera compact`): a merge frees whole columns and allocates others of other
/// sizes, and with the default delay of 1 s the freed ones stayed resident beside them (the
/// peak of a compaction at 100M events was 2.9 GB where its structures held under 1.5 GB).
/// Call before other threads start (the option is not set atomically). A delay set in the
/// environment (`MIMALLOC_PURGE_DELAY`, in ms) is kept.
pub fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one of mimalloc's options (an integer) by its index
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, SHORT_PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads an option by its index
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            default, 1000,
            "mimalloc v3's purge delay is 1000 ms by default"
        );
    }
}
