//! Graceful shutdown, owned by the operator rather than by each controller.
//!
//! kube-runtime's `Controller::shutdown_on_signal` (and `graceful_shutdown_on`) stop a
//! controller by no longer polling its trigger streams, which stay alive, and then wait for its
//! cache to be ready before it may finish. A controller asked to stop before its first list
//! completed (right after taking the lead, or while its kind may not be listed) therefore
//! waited forever: the stream that would fill the cache is never polled again. Here every
//! trigger stream is wrapped in [`until`], which ends it *and drops it* when the shutdown is
//! requested, so a cache that is not ready yet reports that its writer is gone and the
//! controller finishes the reconciles in flight and stops.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;

/// How long the controllers may take to finish the reconciles in flight once a stop is
/// requested; then the operator exits anyway (the Lease release, at most 5 s, still runs).
/// Well within the 30 s a pod gets after SIGTERM (the chart keeps Kubernetes' default
/// `terminationGracePeriodSeconds`).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(15);

/// Whether a stop was asked for (0: no, 1: graceful, 2 and more: forced); cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<u8>);

/// The sending half of a [`Shutdown`].
#[derive(Debug)]
pub struct Trigger(watch::Sender<u8>);

/// A new shutdown signal and its trigger.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(0);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Asks for a stop; a second call asks for it at once (no draining).
    pub fn fire(&self) {
        self.0.send_modify(|n| *n = n.saturating_add(1));
    }
}

impl Shutdown {
    async fn reached(&mut self, level: u8) {
        if self.0.wait_for(|n| *n >= level).await.is_err() {
            // The trigger is gone without firing: nobody can ask for this stop any more.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when a stop is requested.
    pub async fn requested(mut self) {
        self.reached(1).await;
    }

    /// Resolves when a second stop request asks to skip draining.
    pub async fn forced(mut self) {
        self.reached(2).await;
    }

    /// Resolves when the controllers should give up draining: [`DRAIN_DEADLINE`] after a
    /// stop request, or at a second request.
    pub async fn drain_over(self) {
        self.clone().requested().await;
        tokio::select! {
            () = tokio::time::sleep(DRAIN_DEADLINE) => {}
            () = self.forced() => {}
        }
    }

    /// Runs `work` unless a stop is requested first (`None` then).
    pub async fn unless<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            () = self.clone().requested() => None,
            value = work => Some(value),
        }
    }

    /// A trigger fired by SIGTERM (what Kubernetes sends) and SIGINT, each signal one more
    /// request (the second forces the stop). The handlers are installed before this returns,
    /// so a signal that comes at any later moment is seen.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};

        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (trigger, shutdown) = channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                trigger.fire();
                if *trigger.0.borrow() > 1 {
                    tracing::info!("second stop signal: stopping without draining");
                } else {
                    tracing::info!("stop signal: finishing the reconciles in flight");
                }
            }
        });
        Ok(shutdown)
    }
}

/// `stream` until a stop is requested: then it ends and is dropped at once (with whatever it
/// holds, such as a cache writer or a watch in backoff), whether or not it had ended.
pub fn until<S>(shutdown: &Shutdown, stream: S) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    let state = (Box::pin(stream), shutdown.clone());
    futures::stream::unfold(state, |(mut stream, shutdown)| async move {
        tokio::select! {
            biased;
            () = shutdown.clone().requested() => None,
            item = stream.next() => item.map(|item| (item, (stream, shutdown))),
        }
    })
    .fuse()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A stream that never yields and records when it is dropped.
    struct Silent(Arc<AtomicBool>);

    impl Stream for Silent {
        type Item = ();
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<()>> {
            std::task::Poll::Pending
        }
    }

    impl Drop for Silent {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_stop_ends_and_drops_a_stream_that_never_yields() {
        let (trigger, shutdown) = channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let mut stream = std::pin::pin!(until(&shutdown, Silent(dropped.clone())));
        let waiting = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(waiting.is_err(), "the stream ended before the stop");
        assert!(!dropped.load(Ordering::SeqCst));

        trigger.fire();
        let next = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
        assert_eq!(next.unwrap(), None);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the inner stream is still alive"
        );
        assert_eq!(stream.next().await, None, "an ended stream stays ended");
    }

    #[tokio::test]
    async fn items_pass_until_the_stop() {
        let (trigger, shutdown) = channel();
        let items: Vec<u8> = until(&shutdown, futures::stream::iter([1, 2, 3]))
            .collect()
            .await;
        assert_eq!(items, [1, 2, 3]);
        trigger.fire();
        let items: Vec<u8> = until(&shutdown, futures::stream::iter([1, 2, 3]))
            .collect()
            .await;
        assert!(items.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn draining_ends_at_the_deadline_or_at_a_second_request() {
        let (trigger, shutdown) = channel();
        let drain = tokio::spawn(shutdown.clone().drain_over());
        tokio::time::sleep(DRAIN_DEADLINE * 2).await;
        assert!(
            !drain.is_finished(),
            "draining began without a stop request"
        );
        trigger.fire();
        let began = tokio::time::Instant::now();
        drain.await.unwrap();
        assert_eq!(began.elapsed(), DRAIN_DEADLINE);

        let (trigger, shutdown) = channel();
        trigger.fire();
        trigger.fire();
        tokio::time::timeout(Duration::from_millis(1), shutdown.drain_over())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_trigger_never_stops_anything() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        let stopped =
            tokio::time::timeout(Duration::from_millis(50), shutdown.clone().requested()).await;
        assert!(stopped.is_err());
        assert_eq!(shutdown.unless(async { 7 }).await, Some(7));
    }
}
