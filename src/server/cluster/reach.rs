//! Whether the apiserver answers at all. A watch on a hung apiserver (its
//! process stopped, its connections open) reports nothing: no event, no
//! error. A small probe (`GET /version`, bounded) tells a quiet cluster from
//! a silent apiserver, so the caches can say they are not current, and
//! relist as soon as it answers again instead of waiting out their backoff.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::Client;

/// How often the apiserver is asked, and how long an answer may take.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// What the probe has seen, shared by every cache of one client.
#[derive(Debug)]
pub struct Reachability {
    inner: Mutex<ReachInner>,
    /// Bumped each time the apiserver answers after failing to.
    recovered: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct ReachInner {
    /// When the apiserver last answered (or the probe started).
    last_answer: Instant,
    /// The probe's last failure, while it fails.
    failing: Option<String>,
}

impl Reachability {
    /// Nothing seen yet: reachable as far as anyone knows.
    #[must_use]
    pub fn new() -> Arc<Reachability> {
        Arc::new(Reachability {
            inner: Mutex::new(ReachInner {
                last_answer: Instant::now(),
                failing: None,
            }),
            recovered: tokio::sync::watch::Sender::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReachInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While the probe fails: how long since the apiserver last answered,
    /// and the probe's error.
    #[must_use]
    pub fn unreachable(&self) -> Option<(Duration, String)> {
        let inner = self.lock();
        inner
            .failing
            .as_ref()
            .map(|error| (inner.last_answer.elapsed(), error.clone()))
    }

    /// A receiver that changes each time the apiserver answers again after
    /// failing to.
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    fn answered(&self) {
        let mut inner = self.lock();
        inner.last_answer = Instant::now();
        if inner.failing.take().is_some() {
            drop(inner);
            tracing::info!("the apiserver answers again; the watch caches relist now");
            self.recovered.send_modify(|generation| *generation += 1);
        }
    }

    fn failed(&self, error: String) {
        let mut inner = self.lock();
        if inner.failing.is_none() {
            tracing::warn!(
                %error,
                "the apiserver does not answer; decisions from the caches are marked as not current"
            );
        }
        inner.failing = Some(error);
    }
}

/// Asks the apiserver for its version every [`PROBE_INTERVAL`], forever.
pub(crate) async fn probe(client: Client, reach: Arc<Reachability>) {
    loop {
        match tokio::time::timeout(PROBE_INTERVAL, client.apiserver_version()).await {
            // An error status is an answer: the caches report it themselves.
            Ok(Ok(_) | Err(kube::Error::Api(_))) => reach.answered(),
            Ok(Err(error)) => reach.failed(error.to_string()),
            Err(_) => reach.failed(format!(
                "no answer to GET /version within {} s",
                PROBE_INTERVAL.as_secs()
            )),
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Resolves when `recovered` changes; never without one.
pub(crate) async fn recovery(recovered: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match recovered {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
