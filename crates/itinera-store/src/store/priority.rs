//! The scheduling priority of the store's background work.
//!
//! Flushes and background merges are work no request waits for: a query reads the rows in
//! memory as they are, and a write is acknowledged once its log record is durable. On a machine
//! whose cores ingestion and queries share, they run a few nice steps below the rest, so that a
//! query and the writes being acknowledged take the cores first. Under a load that keeps the
//! cores busy they get about a tenth of the share of a thread of normal priority, so they run
//! lowered only while they keep up: a flush that finds rows piled up past half a flush more, or
//! a merge that finds twice the segments it is started at, runs at normal priority. What a
//! request may wait on (the snapshot a flush or merge prepares for the next query, an explicit
//! flush, a close) runs at normal priority.

/// Nice steps below the calling thread's priority.
const BACKGROUND_NICE_STEPS: i32 = 10;

/// Lowest priority (highest nice value) Linux has.
#[cfg(target_os = "linux")]
const LOWEST_NICE: i32 = 19;

/// Runs `work` below the foreground ([`in_background`]) while the background keeps up, and at
/// the caller's priority once it has fallen `behind`.
pub(super) fn in_background_unless<T: Send>(behind: bool, work: impl FnOnce() -> T + Send) -> T {
    match behind {
        true => work(),
        false => in_background(work),
    }
}

/// Runs `work` on a thread of lower scheduling priority and waits for it (a panic in it goes on
/// in the caller).
pub(super) fn in_background<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            lower_this_thread();
            work()
        });
        h.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Lowers the calling thread's priority (on Linux a thread's nice value is its own).
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered = getpriority_process(me).and_then(|nice| {
            setpriority_process(me, (nice + BACKGROUND_NICE_STEPS).min(LOWEST_NICE))
        });
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "background work keeps the caller's priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn background_work_runs_lower_and_the_caller_keeps_its_priority() {
        use rustix::process::getpriority_process;
        let mine = getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let theirs = in_background(|| getpriority_process(Some(rustix::thread::gettid())).unwrap());
        assert_eq!(theirs, (mine + BACKGROUND_NICE_STEPS).min(LOWEST_NICE));
        assert!(theirs > mine || mine == LOWEST_NICE);
        assert_eq!(
            getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            mine
        );
        assert_eq!(in_background(|| 41 + 1), 42);
        let here = || getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(in_background_unless(false, here), theirs);
        assert_eq!(
            in_background_unless(true, here),
            mine,
            "behind: not lowered"
        );
    }
}
