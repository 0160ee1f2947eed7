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
