//! One timer per client connection for all its waits: the next request head, and main's answer
//! on the direct path. A wait names the instant it ends at; the timer is armed no later than
//! `step` from when it was last armed (the shortest of the connection's timeouts), so it is never
//! behind a new wait's end and a wait needs no timer of its own (registering one and cancelling it
//! cost about as much as parsing a request head). When the timer fires before the wait's end, it
//! is armed again, at that end or `step` on, whichever is first: a connection's timer fires at
//! most once per `step` while nothing ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A wait that reached its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

pub(crate) struct Clock {
    sleep: Pin<Box<Sleep>>,
    step: Duration,
}

impl Clock {
    /// A clock whose timer is never armed further than `step` ahead.
    pub(crate) fn new(step: Duration) -> Self {
        let step = step.max(Duration::from_millis(1));
        Clock { sleep: Box::pin(tokio::time::sleep(step)), step }
    }

    /// `fut`'s output, or [`Elapsed`] once `end` has passed first.
    pub(crate) async fn within<F: Future>(&mut self, end: Instant, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            self.poll_end(end, cx)
        })
        .await
    }

    /// Ready with [`Elapsed`] once `end` has passed; the waker is registered otherwise.
    pub(crate) fn poll_end<T>(&mut self, end: Instant, cx: &mut Context<'_>) -> Poll<Result<T, Elapsed>> {
        // A wait that ends before the timer is armed for (a step shorter than this wait's
        // timeout cannot make it, but a wait's end may be given from an earlier instant).
        if self.sleep.deadline() > end {
            self.sleep.as_mut().reset(end);
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= end {
                return Poll::Ready(Err(Elapsed));
            }
            self.sleep.as_mut().reset(now.checked_add(self.step).map_or(end, |t| end.min(t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_end_and_not_at_the_timers_step() {
        let mut clock = Clock::new(Duration::from_secs(5));
        let begun = Instant::now();
        let r = clock.within(begun + Duration::from_secs(12), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(Instant::now() - begun, Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_shorter_than_the_step_ends_in_time() {
        let mut clock = Clock::new(Duration::from_secs(30));
        let begun = Instant::now();
        let r = clock.within(begun + Duration::from_secs(2), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(Instant::now() - begun, Duration::from_secs(2));
        // The next, longer wait is not cut short by the earlier end.
        let begun = Instant::now();
        let r = clock.within(begun + Duration::from_secs(40), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(Instant::now() - begun, Duration::from_secs(40));
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_ready_in_time_is_returned() {
        let mut clock = Clock::new(Duration::from_secs(1));
        let begun = Instant::now();
        let r = clock.within(begun + Duration::from_secs(10), tokio::time::sleep(Duration::from_secs(3))).await;
        assert_eq!(r, Ok(()));
        assert_eq!(Instant::now() - begun, Duration::from_secs(3));
        // Many waits, one after the other, on the same timer.
        for _ in 0..100 {
            let r = clock.within(Instant::now() + Duration::from_secs(1), async { 7 }).await;
            assert_eq!(r, Ok(7));
        }
    }
}
