//! The health of a watch cache (for `/readyz` and metrics) and the loop
//! that keeps a cache fresh.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use super::{CacheOptions, Reachability, WATCH_TIMEOUT_SECONDS, reach};
use crate::metrics::{CacheLabels, Metrics};

// === Health ===

/// What a watch cache is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// The first LIST has not completed.
    Syncing,
    /// Listed; watching for changes.
    Watching,
    /// A fresh LIST is under way (the previous contents still serve).
    Relisting,
    /// The last LIST or watch failed; retrying with backoff.
    Failing,
    /// The API has no such resource (CRD not installed): empty; looking
    /// again with backoff.
    Absent,
}

impl CacheState {
    /// The spelling in `/readyz` and the state gauge's label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Syncing => "syncing",
            CacheState::Watching => "watching",
            CacheState::Relisting => "relisting",
            CacheState::Failing => "failing",
            CacheState::Absent => "absent",
        }
    }
}

/// The health of one watch cache, shared by its watch task and `/readyz`.
#[derive(Debug)]
pub struct CacheHealth {
    pub(crate) resource: &'static str,
    pub(crate) stale_after: Duration,
    pub(crate) inner: Mutex<HealthInner>,
    pub(crate) metrics: OnceLock<CacheMetrics>,
    /// Whether the apiserver answers at all (cluster mode).
    pub(crate) reach: OnceLock<Arc<Reachability>>,
}

#[derive(Debug)]
pub(crate) struct HealthInner {
    pub(crate) synced: bool,
    pub(crate) state: CacheState,
    pub(crate) last_success: Option<Instant>,
    pub(crate) failing_since: Option<Instant>,
    pub(crate) last_error: Option<String>,
    /// The forbidden verb already logged at ERROR (once, not per retry).
    pub(crate) forbidden_logged: Option<&'static str>,
    /// "No such resource" already logged (once, until it appears).
    pub(crate) absent_logged: bool,
}

/// The metric handles of one cache (label `resource`).
#[derive(Debug, Clone)]
pub(crate) struct CacheMetrics {
    pub(crate) objects: Gauge,
    pub(crate) watch_errors: Counter,
    pub(crate) last_success: Gauge,
    pub(crate) failing: Gauge,
    pub(crate) fallback_gets: Counter,
    pub(crate) fallback_failures: Counter,
    pub(crate) fallback_limited: Counter,
}

impl CacheHealth {
    /// A cache of `resource` that is not ready while it has failed for
    /// longer than `stale_after`.
    #[must_use]
    pub fn new(resource: &'static str, stale_after: Duration) -> Arc<CacheHealth> {
        Arc::new(CacheHealth {
            resource,
            stale_after,
            inner: Mutex::new(HealthInner {
                synced: false,
                state: CacheState::Syncing,
                last_success: None,
                failing_since: None,
                last_error: None,
                forbidden_logged: None,
                absent_logged: false,
            }),
            metrics: OnceLock::new(),
            reach: OnceLock::new(),
        })
    }

    /// Follows `reach`: a silent apiserver makes this cache not current,
    /// and its return makes the cache relist at once.
    pub fn follow(&self, reach: Arc<Reachability>) {
        let _ = self.reach.set(reach);
    }

    /// `None` when the cache is current: synced, watching (or relisting on
    /// schedule), and the apiserver answers. Otherwise why its contents may
    /// be out of date, for the decision's warning.
    #[must_use]
    pub fn staleness(&self) -> Option<String> {
        let inner = self.lock();
        if !inner.synced {
            return Some(format!("the {} cache has not synced yet", self.resource));
        }
        if let Some(since) = inner.failing_since {
            return Some(format!(
                "the {} cache has been failing for {} s ({})",
                self.resource,
                since.elapsed().as_secs(),
                inner.last_error.as_deref().unwrap_or("no error recorded")
            ));
        }
        drop(inner);
        self.reach
            .get()
            .and_then(|reach| reach.unreachable())
            .map(|(silent, error)| {
                format!(
                    "the apiserver has not answered for {} s ({error}); the {} cache may be out of date",
                    silent.as_secs(),
                    self.resource
                )
            })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the first LIST has completed (or the resource is absent).
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.lock().synced
    }

    /// The last failure, while failing.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Synced, and not failing for longer than the bound.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        let inner = self.lock();
        let fresh_enough = inner.synced
            && inner
                .failing_since
                .is_none_or(|since| since.elapsed() <= self.stale_after);
        drop(inner);
        fresh_enough
            && self.reach.get().is_none_or(|reach| {
                reach
                    .unreachable()
                    .is_none_or(|(silent, _)| silent <= self.stale_after)
            })
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> CacheState {
        self.lock().state
    }

    /// The `/readyz` detail.
    #[must_use]
    pub fn detail(&self) -> Value {
        let inner = self.lock();
        json!({
            "resource": self.resource,
            "synced": inner.synced,
            "state": inner.state.as_str(),
            "secondsSinceLastSuccess": inner.last_success.map(|at| at.elapsed().as_secs()),
            "failingForSeconds": inner.failing_since.map(|at| at.elapsed().as_secs()),
            "lastError": inner.last_error,
            "apiserverSilentSeconds": self.reach.get().and_then(|reach| reach.unreachable()).map(|(silent, _)| silent.as_secs()),
        })
    }

    /// Hands the cache its metric handles (label `resource`).
    pub fn attach(&self, metrics: &Metrics) {
        let labels = CacheLabels {
            resource: self.resource.to_owned(),
        };
        let _ = self.metrics.set(CacheMetrics {
            objects: series(&metrics.cache_objects, &labels),
            watch_errors: series(&metrics.cache_watch_errors, &labels),
            last_success: series(&metrics.cache_last_success_timestamp, &labels),
            failing: series(&metrics.cache_failing, &labels),
            fallback_gets: series(&metrics.cache_fallback_gets, &labels),
            fallback_failures: series(&metrics.cache_fallback_failures, &labels),
            fallback_limited: series(&metrics.cache_fallback_limited, &labels),
        });
    }

    pub(crate) fn set_state(&self, state: CacheState) {
        self.lock().state = state;
    }

    /// A LIST completed (`synced`) or the watch delivered an event; the
    /// cache now holds `objects`.
    pub fn success(&self, synced: bool, objects: usize) {
        let mut inner = self.lock();
        let recovered = inner.failing_since.take().is_some();
        inner.last_success = Some(Instant::now());
        inner.state = CacheState::Watching;
        if synced && !inner.synced {
            inner.synced = true;
            tracing::info!(resource = self.resource, objects, "watch cache synced");
        }
        if recovered {
            tracing::info!(resource = self.resource, objects, "watch cache recovered");
        }
        inner.last_error = None;
        // A LIST that works says nothing of `watch`: a forbidden watch is
        // said once, until a watch event shows it is allowed.
        if !synced || inner.forbidden_logged == Some("list") {
            inner.forbidden_logged = None;
        }
        inner.absent_logged = false;
        drop(inner);
        if let Some(metrics) = self.metrics.get() {
            metrics
                .objects
                .set(i64::try_from(objects).unwrap_or(i64::MAX));
            metrics.failing.set(0);
            metrics.last_success.set(
                i64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_secs()),
                )
                .unwrap_or(i64::MAX),
            );
        }
    }

    /// The API has no such resource: synced and empty; said once.
    pub(crate) fn absent(&self) {
        let mut inner = self.lock();
        if !std::mem::replace(&mut inner.absent_logged, true) {
            tracing::info!(
                resource = self.resource,
                "the API has no such resource (its CRD is not installed): nothing to cache; looking again with backoff"
            );
        }
        inner.synced = true;
        inner.state = CacheState::Absent;
        inner.failing_since = None;
        inner.last_success = Some(Instant::now());
        inner.last_error = None;
        drop(inner);
        if let Some(metrics) = self.metrics.get() {
            metrics.objects.set(0);
            metrics.failing.set(0);
        }
    }

    /// A LIST or watch failed: log once per kind of failure (a missing
    /// permission at ERROR, naming the verb), count it, mark failing.
    pub(crate) fn failure(&self, error: &watcher::Error, retry_in: Duration) {
        let forbidden = forbidden_verb(error);
        let message = short_error(error);
        let mut inner = self.lock();
        let first = inner.failing_since.is_none();
        if first {
            inner.failing_since = Some(Instant::now());
        }
        inner.state = CacheState::Failing;
        inner.last_error = Some(message.clone());
        match forbidden {
            Some(verb) if inner.forbidden_logged != Some(verb) => {
                inner.forbidden_logged = Some(verb);
                tracing::error!(
                    resource = self.resource,
                    verb,
                    %message,
                    "forbidden: grant the ServiceAccount `{verb}` on {}; relisting with backoff meanwhile",
                    self.resource
                );
            }
            Some(_) => {}
            None if first => tracing::warn!(
                resource = self.resource,
                %message,
                retry_in_seconds = retry_in.as_secs(),
                "watch cache failing; relisting with backoff"
            ),
            None => {
                tracing::debug!(resource = self.resource, %message, "watch cache still failing");
            }
        }
        drop(inner);
        if let Some(metrics) = self.metrics.get() {
            metrics.watch_errors.inc();
            metrics.failing.set(1);
        }
    }
}

/// The series of `family` for `labels` (created, so it is exported at 0).
pub(crate) fn series<M: Clone + Default>(
    family: &prometheus_client::metrics::family::Family<CacheLabels, M>,
    labels: &CacheLabels,
) -> M {
    family.get_or_create(labels).clone()
}

/// A watch failure in one line: an API error as the apiserver's message
/// and code (not the whole Status), anything else as it prints.
pub(crate) fn short_error(error: &watcher::Error) -> String {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => status,
        other => return other.to_string(),
    };
    let verb = match error {
        watcher::Error::InitialListFailed(_) => "list",
        _ => "watch",
    };
    format!("{verb} failed: {} ({})", status.message, status.code)
}

/// The verb a 403 refused, if the error is one.
pub(crate) fn forbidden_verb(error: &watcher::Error) -> Option<&'static str> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.is_forbidden() => {
            Some("list")
        }
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
            if status.is_forbidden() =>
        {
            Some("watch")
        }
        watcher::Error::WatchError(status) if status.is_forbidden() => Some("watch"),
        _ => None,
    }
}

/// `min(2^(n-1) s, max)` plus up to half of it again as jitter.
pub(crate) fn backoff(consecutive_failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << consecutive_failures.saturating_sub(1).min(16)).min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// What a watch cache tells its owner after applying events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheEvent {
    /// A LIST completed: the store holds everything.
    Listed,
    /// The watch added, changed or deleted an object.
    Changed,
    /// The API has no such resource (its CRD is not installed): the store
    /// is empty, and the cache keeps retrying so a later install is seen.
    Absent,
    /// A LIST or watch failed (the health says why).
    Failed,
}

/// Keeps `writer` a copy of what `api` lists, forever: see the module
/// documentation for how it stays fresh. `prepare` sees each object the
/// watch delivers, with the store as it stands, before the store takes it
/// (to trim it, or to share what the store already holds); `on_event` runs
/// after each change is applied to the store.
pub(crate) async fn run_cache<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    store: Store<K>,
    health: Arc<CacheHealth>,
    options: CacheOptions,
    prepare: fn(&mut K, &Store<K>),
    on_event: impl Fn(CacheEvent) + Send + 'static,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS);
    let mut recovered = health.reach.get().map(|reach| reach.subscribe());
    let mut failures = Failures::default();
    loop {
        if health.state() != CacheState::Syncing {
            health.set_state(CacheState::Relisting);
        }
        let relist_at = tokio::time::Instant::now() + options.relist_interval;
        let stream = watcher(api.clone(), config.clone());
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = tokio::time::sleep_until(relist_at) => break,
                // The apiserver is back after an outage: a watch may hang on
                // a connection it dropped; list afresh now.
                () = reach::recovery(&mut recovered) => break,
            };
            match event {
                Some(Ok(event)) => {
                    if apply(event, &mut writer, &store, &health, prepare, &on_event) {
                        // The watch works: failures are behind us.
                        failures = Failures::default();
                    }
                }
                Some(Err(error)) => {
                    let pause = failures.next_pause(&options);
                    record_failure(&error, pause, &mut writer, &health, &on_event);
                    // The long backoff is for an apiserver that keeps
                    // answering errors: one that answers again after an
                    // outage is listed at once.
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = reach::recovery(&mut recovered) => {}
                    }
                    break;
                }
                None => break,
            }
        }
    }
}

/// Consecutive watch failures, for the backoff.
#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

impl Failures {
    /// Counts one more failure and says how long to pause. A failure long
    /// after the last one starts the backoff afresh; a LIST that succeeds
    /// between failures does not.
    fn next_pause(&mut self, options: &CacheOptions) -> Duration {
        if self
            .last
            .is_some_and(|at| at.elapsed() > options.relist_interval)
        {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last = Some(Instant::now());
        backoff(self.count, options.backoff_max)
    }
}

/// Applies one watch event to the store, with `prepare` first, and reports
/// it; true when it came from the watch itself (an object changed), which
/// shows the watch works.
fn apply<K>(
    mut event: watcher::Event<K>,
    writer: &mut Writer<K>,
    store: &Store<K>,
    health: &CacheHealth,
    prepare: fn(&mut K, &Store<K>),
    on_event: &impl Fn(CacheEvent),
) -> bool
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    match &mut event {
        watcher::Event::Apply(object)
        | watcher::Event::Delete(object)
        | watcher::Event::InitApply(object) => prepare(object, store),
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
    writer.apply_watcher_event(&event);
    match event {
        watcher::Event::InitDone => {
            health.success(true, store.len());
            on_event(CacheEvent::Listed);
            false
        }
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
            health.success(false, store.len());
            on_event(CacheEvent::Changed);
            true
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => false,
    }
}

/// A LIST or watch failed: an absent resource empties the store (in sync,
/// as far as anyone can tell; looked for again after `pause`), anything
/// else marks the cache failing.
fn record_failure<K>(
    error: &watcher::Error,
    pause: Duration,
    writer: &mut Writer<K>,
    health: &CacheHealth,
    on_event: &impl Fn(CacheEvent),
) where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if is_absent(error) {
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        health.absent();
        on_event(CacheEvent::Absent);
    } else {
        health.failure(error, pause);
        on_event(CacheEvent::Failed);
    }
}

/// A LIST answered 404: the resource's CRD is not installed. The apiserver
/// answers a group or resource it does not serve with a plain-text `404 page
/// not found`, which the client cannot read as a Status (its reason is then
/// the client's own "Failed to parse error data"): the code decides.
pub(crate) fn is_absent(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::InitialListFailed(kube::Error::Api(status))
        if status.is_not_found() || status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(verb: &str) -> watcher::Error {
        let status = Box::new(
            kube::core::Status::failure(&format!("cannot {verb} kubevirts"), "Forbidden")
                .with_code(403),
        );
        match verb {
            "list" => watcher::Error::InitialListFailed(kube::Error::Api(status)),
            _ => watcher::Error::WatchStartFailed(kube::Error::Api(status)),
        }
    }

    /// A ServiceAccount that may list but not watch: every relist works
    /// and every watch is refused. The refusal is said once (the ERROR
    /// line is written when `forbidden_logged` changes), not after each
    /// LIST; a watch event, which shows `watch` allowed, resets it.
    #[test]
    fn a_forbidden_watch_is_said_once_until_a_watch_event_shows_it_allowed() {
        let health = CacheHealth::new("kubevirts", Duration::from_secs(120));
        health.failure(&refused("watch"), Duration::from_secs(1));
        assert_eq!(health.lock().forbidden_logged, Some("watch"));
        for _ in 0..3 {
            health.success(true, 0);
            assert_eq!(
                health.lock().forbidden_logged,
                Some("watch"),
                "a LIST says nothing of watch"
            );
            health.failure(&refused("watch"), Duration::from_secs(1));
        }
        assert_eq!(
            health.last_error().as_deref(),
            Some("watch failed: cannot watch kubevirts (403)")
        );
        health.success(false, 0);
        assert_eq!(health.lock().forbidden_logged, None);
        // A forbidden LIST is cleared by a LIST that works.
        health.failure(&refused("list"), Duration::from_secs(1));
        assert_eq!(health.lock().forbidden_logged, Some("list"));
        health.success(true, 0);
        assert_eq!(health.lock().forbidden_logged, None);
    }
}
