//! A connection's rare side events (the proxy stopping, its client's
//! certificate revoked, the idle check) polled only when one of them woke
//! the task, not on every poll of the connection. `tokio::select!` polls
//! every branch each time; over HTTP/2 that was about 1,500 instructions
//! per request (callgrind, docs/benchmarks.md) for events that come once
//! in a connection's life, if ever.
use atomic_waker::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

/// The waker side futures are polled with: it marks the gate open and
/// wakes the task.
struct Side {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Side {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Poll the side futures with [`Gate::context`] when [`Gate::open`] says
/// so, and the connection itself with the task's context every time.
pub struct Gate {
    side: Arc<Side>,
    waker: Waker,
}

impl Default for Gate {
    fn default() -> Gate {
        // Open at first: side futures must be polled once to register.
        let side = Arc::new(Side { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Gate { waker: Waker::from(side.clone()), side }
    }
}

impl Gate {
    /// Registers the task's waker for the side futures' wake-ups; true if
    /// one of them woke it since the last time (or this is the first).
    pub fn open(&self, cx: &Context<'_>) -> bool {
        self.side.task.register(cx.waker());
        self.side.woken.swap(false, Ordering::AcqRel)
    }

    /// The context to poll side futures with.
    pub fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    /// A side future polled through the gate wakes the task and is polled
    /// again only then; the task's own future is polled every time.
    #[tokio::test]
    async fn side_futures_are_polled_when_they_woke_the_task() {
        let gate = Gate::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut notified = pin!(notify.notified());
        let (mut polls, mut main_polls) = (0, 0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let n2 = notify.clone();
        tokio::spawn(async move {
            for i in 0..3 {
                tx.send(i).unwrap();
                tokio::task::yield_now().await;
            }
            n2.notify_waiters();
        });
        let seen = std::future::poll_fn(|cx| {
            if gate.open(cx) {
                polls += 1;
                if notified.as_mut().poll(&mut gate.context()).is_ready() {
                    return Poll::Ready(true);
                }
            }
            main_polls += 1;
            match rx.poll_recv(cx) {
                Poll::Ready(Some(_)) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Ready(None) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        assert!(seen, "the notification reached the task");
        assert_eq!(polls, 2, "polled at first and after its wake-up only");
        assert!(main_polls >= 4, "the task's own future on every poll: {main_polls}");
    }
}
