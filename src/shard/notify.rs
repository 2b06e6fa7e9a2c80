//! Single-thread wake-ups between the tasks of one shard (no atomics, no locks).

use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A flag that tasks can await; `notify` sets it and wakes them, `wait` consumes it when
/// `consume` is true (an edge, like "queue has data") or leaves it set (a level, like "killed").
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    /// At most two tasks wait on one connection's notifies: inline, no allocation.
    wakers: RefCell<SmallVec<[Waker; 2]>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once notified; clears the flag (edge).
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            n: self,
            consume: true,
        }
    }

    /// Resolves once notified; keeps the flag (level).
    pub fn wait_level(&self) -> Wait<'_> {
        Wait {
            n: self,
            consume: false,
        }
    }
}

pub struct Wait<'a> {
    n: &'a Notify,
    consume: bool,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.n.set.get() {
            if self.consume {
                self.n.set.set(false);
            }
            return Poll::Ready(());
        }
        crate::shutdown::register(&mut *self.n.wakers.borrow_mut(), cx.waker());
        Poll::Pending
    }
}
