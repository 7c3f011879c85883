//! In a cluster: watch caches of VirtualMachineInstances and Namespaces, a
//! bounded direct GET when the cache cannot answer, and the health of each
//! cache for `/readyz`.
//!
//! Nothing here may size a Pod from stale data silently:
//! * a VMI is matched by namespace, name **and uid** (the launcher Pod's
//!   controller ownerReference): a cached VMI with another uid is a miss,
//!   and a GET that still disagrees is an error naming both uids;
//! * a Namespace the cache does not know is fetched; labels that stay
//!   unknown are an error, never "no labels";
//! * each watch restarts with a fresh LIST after any failure, with a backoff
//!   that grows to [`CacheOptions::backoff_max`] and is not reset by a
//!   successful LIST alone (so a missing `watch` permission relists at that
//!   pace instead of freezing the cache), and relists every
//!   [`CacheOptions::relist_interval`] regardless; a silent connection is
//!   dropped after [`WATCH_TIMEOUT_SECONDS`] + 5 s;
//! * a cache that has not synced, or has failed longer than
//!   [`CacheOptions::stale_after`], makes `/readyz` not ready.
//!
//! Fallback GETs are shared by concurrent misses of the same object,
//! remembered briefly when the object does not exist, rate limited, counted
//! and logged at a bounded rate.
//!
//! Cached VMIs are trimmed to what sizing reads as events arrive, which
//! keeps the cache small with thousands of VMIs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::{BoxFuture as SharedBoxFuture, Shared};
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use crate::admission::VmiRef;
use crate::metrics::{CacheLabels, Metrics};
use crate::server::NamespaceSource;
use crate::server::vmi_source::{BoxFuture, VmiSource, check_uid};

/// The server-side watch timeout; the watcher drops a connection that
/// stays silent 5 s longer.
pub const WATCH_TIMEOUT_SECONDS: u32 = 50;

/// The API resource of `kubevirt.io/v1` VirtualMachineInstances.
#[must_use]
pub fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    )
}

/// Bounds of the watch caches and their fallbacks.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// The longest pause between a failure and the next LIST.
    pub backoff_max: Duration,
    /// A fresh LIST at least this often, whatever the watch does.
    pub relist_interval: Duration,
    /// A cache failing longer than this makes `/readyz` not ready.
    pub stale_after: Duration,
    /// How long "does not exist" is remembered for a fallback GET.
    pub negative_ttl: Duration,
    /// Fallback GETs per second (sustained), all objects together.
    pub gets_per_second: u32,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            backoff_max: Duration::from_secs(30),
            relist_interval: Duration::from_secs(300),
            stale_after: Duration::from_secs(120),
            negative_ttl: Duration::from_secs(5),
            gets_per_second: 20,
        }
    }
}

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
    resource: &'static str,
    stale_after: Duration,
    inner: Mutex<HealthInner>,
    metrics: OnceLock<CacheMetrics>,
}

#[derive(Debug)]
struct HealthInner {
    synced: bool,
    state: CacheState,
    last_success: Option<Instant>,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    /// The forbidden verb already logged at ERROR (once, not per retry).
    forbidden_logged: Option<&'static str>,
    /// "No such resource" already logged (once, until it appears).
    absent_logged: bool,
}

/// The metric handles of one cache (label `resource`).
#[derive(Debug, Clone)]
struct CacheMetrics {
    objects: Gauge,
    watch_errors: Counter,
    last_success: Gauge,
    failing: Gauge,
    fallback_gets: Counter,
    fallback_failures: Counter,
    fallback_limited: Counter,
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
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Synced, and not failing for longer than the bound.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        let inner = self.lock();
        inner.synced
            && inner
                .failing_since
                .is_none_or(|since| since.elapsed() <= self.stale_after)
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

    fn set_state(&self, state: CacheState) {
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
        inner.forbidden_logged = None;
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
    fn absent(&self) {
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
    fn failure(&self, error: &watcher::Error, retry_in: Duration) {
        let forbidden = forbidden_verb(error);
        let message = error.to_string();
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
fn series<M: Clone + Default>(
    family: &prometheus_client::metrics::family::Family<CacheLabels, M>,
    labels: &CacheLabels,
) -> M {
    family.get_or_create(labels).clone()
}

/// The verb a 403 refused, if the error is one.
fn forbidden_verb(error: &watcher::Error) -> Option<&'static str> {
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
fn backoff(consecutive_failures: u32, max: Duration) -> Duration {
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
}

/// Keeps `writer` a copy of what `api` lists, forever: see the module
/// documentation for how it stays fresh. `on_event` runs after each change
/// is applied to the store.
pub(crate) async fn run_cache<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    store: Store<K>,
    health: Arc<CacheHealth>,
    options: CacheOptions,
    trim: fn(&mut K),
    on_event: impl Fn(CacheEvent) + Send + 'static,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS);
    let mut failures: u32 = 0;
    let mut last_failure: Option<Instant> = None;
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
            };
            match event {
                Some(Ok(mut event)) => {
                    match &mut event {
                        watcher::Event::Apply(object)
                        | watcher::Event::Delete(object)
                        | watcher::Event::InitApply(object) => trim(object),
                        watcher::Event::Init | watcher::Event::InitDone => {}
                    }
                    writer.apply_watcher_event(&event);
                    match event {
                        watcher::Event::InitDone => {
                            health.success(true, store.len());
                            on_event(CacheEvent::Listed);
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                            // The watch works: failures are behind us.
                            failures = 0;
                            health.success(false, store.len());
                            on_event(CacheEvent::Changed);
                        }
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                    }
                }
                Some(Err(error)) => {
                    // A failure long after the last one starts the backoff
                    // afresh; a LIST that succeeds between failures does not.
                    if last_failure.is_some_and(|at| at.elapsed() > options.relist_interval) {
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    last_failure = Some(Instant::now());
                    let pause = backoff(failures, options.backoff_max);
                    if is_absent(&error) {
                        // Nothing to cache: empty and in sync, as far as
                        // anyone can tell. Looked for again after `pause`.
                        writer.apply_watcher_event(&watcher::Event::Init);
                        writer.apply_watcher_event(&watcher::Event::InitDone);
                        health.absent();
                        on_event(CacheEvent::Absent);
                    } else {
                        health.failure(&error, pause);
                    }
                    tokio::time::sleep(pause).await;
                    break;
                }
                None => break,
            }
        }
    }
}

/// A LIST answered 404: the resource's CRD is not installed.
fn is_absent(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.is_not_found())
}

// === Fallback GETs ===

type Fetched<T> = Result<Option<Arc<T>>, String>;

/// Direct GETs behind a cache: one in flight per object, "does not exist"
/// remembered for a moment, a rate limit over all objects, counted.
struct Fallback<T> {
    in_flight: Mutex<HashMap<String, Shared<SharedBoxFuture<'static, Fetched<T>>>>>,
    absent: Mutex<HashMap<String, Instant>>,
    bucket: Mutex<(f64, Instant)>,
    options: CacheOptions,
    health: Arc<CacheHealth>,
    last_log: Mutex<Option<Instant>>,
}

impl<T: Send + Sync + 'static> Fallback<T> {
    fn new(options: CacheOptions, health: Arc<CacheHealth>) -> Fallback<T> {
        Fallback {
            in_flight: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
            bucket: Mutex::new((f64::from(options.gets_per_second), Instant::now())),
            options,
            health,
            last_log: Mutex::new(None),
        }
    }

    /// GETs `key` with `fetch`, sharing the GET with concurrent callers.
    async fn get(
        &self,
        key: String,
        fetch: impl FnOnce() -> SharedBoxFuture<'static, Fetched<T>>,
    ) -> Fetched<T> {
        {
            let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
            match absent.get(&key) {
                Some(at) if at.elapsed() < self.options.negative_ttl => return Ok(None),
                Some(_) => {
                    absent.remove(&key);
                }
                None => {}
            }
        }
        let shared = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(shared) = in_flight.get(&key) {
                shared.clone()
            } else {
                if !self.take_token() {
                    drop(in_flight);
                    if let Some(metrics) = self.health.metrics.get() {
                        metrics.fallback_limited.inc();
                    }
                    return Err(format!(
                        "not in the watch cache, and direct GETs are rate limited ({}/s)",
                        self.options.gets_per_second
                    ));
                }
                if let Some(metrics) = self.health.metrics.get() {
                    metrics.fallback_gets.inc();
                }
                let shared = fetch().shared();
                in_flight.insert(key.clone(), shared.clone());
                shared
            }
        };
        let result = shared.await;
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        match &result {
            Ok(None) => {
                let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
                // Bounded: expired entries go first, then the map is reset.
                if absent.len() >= 4096 {
                    absent.retain(|_, at| at.elapsed() < self.options.negative_ttl);
                    if absent.len() >= 4096 {
                        absent.clear();
                    }
                }
                absent.insert(key, Instant::now());
            }
            Ok(Some(_)) => {}
            Err(error) => self.failed(&key, error),
        }
        result
    }

    fn take_token(&self) -> bool {
        let rate = f64::from(self.options.gets_per_second.max(1));
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = *bucket;
        let tokens = (tokens + at.elapsed().as_secs_f64() * rate).min(rate);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, Instant::now());
            true
        } else {
            *bucket = (tokens, Instant::now());
            false
        }
    }

    /// Counts a failed GET; logs at most one line every 10 s.
    fn failed(&self, key: &str, error: &str) {
        if let Some(metrics) = self.health.metrics.get() {
            metrics.fallback_failures.inc();
        }
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                resource = self.health.resource,
                object = key,
                %error,
                "direct GET failed (logged at most every 10 s; see virt_sizer_cache_fallback_failures_total)"
            );
        }
    }
}

// === VMIs ===

/// VMIs read directly through the Kubernetes API, one GET each: what the
/// cache falls back to.
#[derive(Clone)]
pub struct ApiVmis {
    client: Client,
    resource: ApiResource,
}

impl VmiSource for ApiVmis {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        let api =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &self.resource);
        Box::pin(async move {
            let found = api.get_opt(name).await.map_err(|error| error.to_string())?;
            found
                .map(|object| {
                    serde_json::to_value(object)
                        .map(Arc::new)
                        .map_err(|error| error.to_string())
                })
                .transpose()
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "direct GETs".to_owned()
    }
}

/// VMIs from a watch cache, with a direct lookup in `S` (the API in a
/// cluster) when the cache has no VMI with the claimed uid.
pub struct CachedVmis<S> {
    store: Store<DynamicObject>,
    resource: ApiResource,
    health: Arc<CacheHealth>,
    direct: Arc<S>,
    fallback: Fallback<Value>,
}

impl<S: VmiSource> CachedVmis<S> {
    /// A cache over `store`, whose watch reports to `health`, falling back
    /// to `direct`.
    pub fn new(
        store: Store<DynamicObject>,
        health: Arc<CacheHealth>,
        direct: S,
        options: CacheOptions,
    ) -> CachedVmis<S> {
        CachedVmis {
            store,
            resource: vmi_resource(),
            fallback: Fallback::new(options, health.clone()),
            health,
            direct: Arc::new(direct),
        }
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.store
            .get(&ObjectRef::new_with(name, self.resource.clone()).within(namespace))
    }

    async fn fetch(&self, namespace: &str, name: &str) -> Fetched<Value> {
        let (direct, owned_namespace, owned_name) =
            (self.direct.clone(), namespace.to_owned(), name.to_owned());
        self.fallback
            .get(format!("{namespace}/{name}"), move || {
                async move { direct.get(&owned_namespace, &owned_name).await }.boxed()
            })
            .await
    }
}

impl<S: VmiSource> VmiSource for CachedVmis<S> {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        Box::pin(async move {
            if let Some(object) = self.cached(namespace, name) {
                let value = serde_json::to_value(&*object).map_err(|error| error.to_string())?;
                return Ok(Some(Arc::new(value)));
            }
            self.fetch(namespace, name).await
        })
    }
    fn lookup<'a>(
        &'a self,
        reference: &'a VmiRef,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        Box::pin(async move {
            let (namespace, name) = (&reference.namespace, &reference.name);
            if let Some(object) = self.cached(namespace, name) {
                let cached_uid = object.metadata.uid.as_deref();
                if reference.uid.is_none() || reference.uid.as_deref() == cached_uid {
                    let value =
                        serde_json::to_value(&*object).map_err(|error| error.to_string())?;
                    return Ok(Some(Arc::new(value)));
                }
                tracing::debug!(
                    %namespace, %name, cached_uid, claimed_uid = reference.uid.as_deref(),
                    "cached VMI has another uid; asking the API"
                );
            }
            match self.fetch(namespace, name).await? {
                Some(vmi) => check_uid(reference, vmi).map(Some),
                None => Ok(None),
            }
        })
    }
    fn is_ready(&self) -> bool {
        self.health.is_ready()
    }
    fn describe(&self) -> String {
        format!(
            "watch cache ({} VMIs, {})",
            self.store.len(),
            self.health.state().as_str()
        )
    }
    fn health(&self) -> Option<&CacheHealth> {
        Some(&self.health)
    }
    fn attach_metrics(&self, metrics: &Metrics) {
        self.health.attach(metrics);
    }
}

// === Namespaces ===

type Labels = BTreeMap<String, String>;

/// Looks a Namespace's labels up directly, bypassing the cache.
pub trait NamespaceGetter: Send + Sync + 'static {
    /// `Ok(None)` when it does not exist.
    fn get(&self, name: &str) -> SharedBoxFuture<'static, Fetched<Labels>>;
}

impl NamespaceGetter for Client {
    fn get(&self, name: &str) -> SharedBoxFuture<'static, Fetched<Labels>> {
        let api = Api::<Namespace>::all(self.clone());
        let name = name.to_owned();
        async move {
            let found = api
                .get_opt(&name)
                .await
                .map_err(|error| error.to_string())?;
            Ok(found.map(|namespace| Arc::new(namespace.labels().clone())))
        }
        .boxed()
    }
}

/// Namespace labels from a watch cache, with a direct GET on a miss.
pub struct CachedNamespaces<G> {
    store: Store<Namespace>,
    health: Arc<CacheHealth>,
    getter: G,
    fallback: Fallback<Labels>,
}

impl<G: NamespaceGetter> CachedNamespaces<G> {
    /// A source over `store`, whose watch reports to `health`, falling back
    /// to `getter`.
    pub fn new(
        store: Store<Namespace>,
        health: Arc<CacheHealth>,
        getter: G,
        options: CacheOptions,
    ) -> CachedNamespaces<G> {
        CachedNamespaces {
            store,
            fallback: Fallback::new(options, health.clone()),
            health,
            getter,
        }
    }
}

impl<G: NamespaceGetter> NamespaceSource for CachedNamespaces<G> {
    fn labels<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Arc<Labels>, String>> {
        Box::pin(async move {
            if let Some(cached) = self.store.get(&ObjectRef::new(namespace)) {
                return Ok(Arc::new(cached.labels().clone()));
            }
            match self
                .fallback
                .get(namespace.to_owned(), || self.getter.get(namespace))
                .await?
            {
                Some(labels) => Ok(labels),
                None => Err(format!("namespace {namespace} not found")),
            }
        })
    }
    fn is_ready(&self) -> bool {
        self.health.is_ready()
    }
    fn health(&self) -> Option<&CacheHealth> {
        Some(&self.health)
    }
    fn attach_metrics(&self, metrics: &Metrics) {
        self.health.attach(metrics);
    }
}

/// Drops what sizing never reads, before the object enters the cache.
pub fn trim_vmi(vmi: &mut DynamicObject) {
    vmi.managed_fields_mut().clear();
    vmi.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    vmi.metadata.owner_references = None;
    vmi.metadata.finalizers = None;
    if let Some(data) = vmi.data.as_object_mut() {
        data.remove("status");
        if let Some(spec) = data.get_mut("spec") {
            crate::sizing::vmi::retain_sizing_fields(spec);
        }
    }
}

fn trim_namespace(namespace: &mut Namespace) {
    namespace.managed_fields_mut().clear();
    namespace.spec = None;
    namespace.status = None;
}

/// Starts both watch caches over `client`. The caches sync in the
/// background and `/readyz` reports when they have.
#[must_use]
pub fn connect(
    client: &Client,
    options: CacheOptions,
) -> (Arc<dyn VmiSource>, Arc<dyn NamespaceSource>) {
    let resource = vmi_resource();
    let vmi_writer = Writer::<DynamicObject>::new(resource.clone());
    let vmi_store = vmi_writer.as_reader();
    let vmi_health = CacheHealth::new("virtualmachineinstances", options.stale_after);
    tokio::spawn(run_cache(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        vmi_writer,
        vmi_store.clone(),
        vmi_health.clone(),
        options,
        trim_vmi,
        |_| {},
    ));

    let namespace_writer = Writer::<Namespace>::new(());
    let namespace_store = namespace_writer.as_reader();
    let namespace_health = CacheHealth::new("namespaces", options.stale_after);
    tokio::spawn(run_cache(
        Api::<Namespace>::all(client.clone()),
        namespace_writer,
        namespace_store.clone(),
        namespace_health.clone(),
        options,
        trim_namespace,
        |_| {},
    ));

    let vmis = CachedVmis::new(
        vmi_store,
        vmi_health,
        ApiVmis {
            client: client.clone(),
            resource,
        },
        options,
    );
    (
        Arc::new(vmis),
        Arc::new(CachedNamespaces::new(
            namespace_store,
            namespace_health,
            client.clone(),
            options,
        )),
    )
}

/// The Kubernetes client `serve` runs with: from `kubeconfig` when given,
/// else found the kube-rs way (in-cluster configuration, else `KUBECONFIG`,
/// else `~/.kube/config`).
///
/// # Errors
/// No configuration found, or one that does not make a client.
pub async fn infer_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster, KUBECONFIG or ~/.kube/config)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}
