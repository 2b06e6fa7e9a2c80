//! A one-shot, cross-thread "stop now" signal that monoio tasks can await.
//!
//! monoio (with its `sync` feature) accepts wake-ups from other threads, so the signal
//! handler thread can wake every shard's accept loop without the shards polling a flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Shutdown {
    fired: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    pub fn trigger(&self) {
        self.fired.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once `trigger` has been called.
    pub fn wait(self: &Arc<Self>) -> Wait {
        Wait(self.clone())
    }
}

pub struct Wait(Arc<Shutdown>);

/// Stores `w` once per task. `Waker::will_wake` cannot dedupe here: monoio polls with a
/// borrowed waker whose vtable differs from its clones', so it never matches and a waiter
/// polled in a loop would pile up clones. The data pointer (the task) identifies the waiter.
pub fn register<C: Extend<Waker> + AsMut<[Waker]>>(wakers: &mut C, w: &Waker) {
    match wakers.as_mut().iter_mut().find(|x| x.data() == w.data()) {
        Some(slot) => slot.clone_from(w),
        None => wakers.extend(std::iter::once(w.clone())),
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_triggered() {
            return Poll::Ready(());
        }
        let mut wakers = self.0.wakers.lock().unwrap_or_else(|e| e.into_inner());
        // Re-check under the lock so a trigger between the check and the push is not missed.
        if self.0.is_triggered() {
            return Poll::Ready(());
        }
        register(&mut *wakers, cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::task::{RawWaker, RawWakerVTable};

    // Like monoio: the waker a task is polled with is borrowed (one vtable); its clones are
    // owned (another vtable); both point at the same task.
    static OWNED: RawWakerVTable =
        RawWakerVTable::new(|d| RawWaker::new(d, &OWNED), |_| {}, |_| {}, |_| {});
    static BORROWED: RawWakerVTable =
        RawWakerVTable::new(|d| RawWaker::new(d, &OWNED), |_| {}, |_| {}, |_| {});

    #[test]
    fn register_keeps_one_waker_per_task() {
        static TASK: u8 = 0;
        let polled =
            unsafe { Waker::from_raw(RawWaker::new(&TASK as *const u8 as *const (), &BORROWED)) };
        assert!(
            !polled.clone().will_wake(&polled),
            "the case will_wake misses"
        );
        let mut wakers: Vec<Waker> = Vec::new();
        for _ in 0..100 {
            register(&mut wakers, &polled);
        }
        assert_eq!(wakers.len(), 1);
        static OTHER: u8 = 0;
        let other =
            unsafe { Waker::from_raw(RawWaker::new(&OTHER as *const u8 as *const (), &BORROWED)) };
        register(&mut wakers, &other);
        assert_eq!(wakers.len(), 2);
    }
}
