//! Memory budgets per query. [`Metered`] wraps the process's allocator and charges every
//! allocation made on a thread that works for a query (see [`charge_to`]) to that query's
//! [`QueryControl`]; a query over its budget is cancelled and stops at its next cancellation
//! check, as on a timeout, and its owner is told why. Counting at the allocator, rather than
//! estimating sizes in each analysis, covers every structure an analysis builds (path trees,
//! per-person state, chains, the answer itself) without each kernel having to know its size.
//!
//! Memory freed on another thread than the one that allocated it is not credited back, and
//! what a query allocates on behalf of shared caches is charged to it: the count errs on the
//! side of stopping.

use crate::journey::QueryControl;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    /// The query the current thread works for, or null. A raw pointer (no destructor, no lazy
    /// initialisation) so that the allocator can read it at any time; the [`Charged`] guard
    /// that set it holds the control alive.
    static CHARGED: Cell<*const QueryControl> = const { Cell::new(std::ptr::null()) };
}

/// A global allocator that meters queries: `#[global_allocator] static A: Metered<MiMalloc> =
/// Metered(MiMalloc);`. Threads not working for a query pay one thread-local read per call.
pub struct Metered<A>(pub A);

#[inline]
fn charge(bytes: i64) {
    let _ = CHARGED.try_with(|c| {
        let control = c.get();
        if !control.is_null() {
            // SAFETY: set by `charge_to`, whose guard keeps the control alive and restores the
            // previous pointer before it is dropped, on this same thread (the guard is !Send)
            unsafe { (*control).charge_memory(bytes) }
        }
    });
}

// SAFETY: every call is passed to the wrapped allocator unchanged; metering only reads a
// thread-local and updates atomics, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Metered<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            charge(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            charge(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) };
        charge(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            charge(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// While the guard lives, allocations on this thread are charged to `control`.
#[must_use = "allocations are charged only while the guard lives"]
pub struct Charged {
    previous: *const QueryControl,
    _control: Option<Arc<QueryControl>>,
}

/// Charges this thread's allocations to `control` until the guard is dropped (nested guards
/// restore the outer one).
pub fn charge_to(control: &Arc<QueryControl>) -> Charged {
    let previous = CHARGED.with(|c| c.replace(Arc::as_ptr(control)));
    Charged {
        previous,
        _control: Some(control.clone()),
    }
}

/// [`charge_to`] when there is a control.
pub fn charge_to_opt(control: Option<&Arc<QueryControl>>) -> Option<Charged> {
    control.map(charge_to)
}

/// While the guard lives, allocations on this thread are charged to no query: for state a
/// store builds once and shares with every later query (snapshots, indexes), which would
/// otherwise count against whichever query happened to come first.
pub fn uncharged() -> Charged {
    let previous = CHARGED.with(|c| c.replace(std::ptr::null()));
    Charged {
        previous,
        _control: None,
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        CHARGED.with(|c| c.set(self.previous));
    }
}
