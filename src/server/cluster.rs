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
//! A cached VMI holds no JSON: the watch event is read once, as it
//! deserialises, into the VMI's uid and sizing facts ([`ReadVmi`], in a
//! [`CachedVmi`]), which every lookup shares and every request sizes from.
//! That keeps the cache small with thousands of VMIs and leaves a request
//! nothing of the VMI to parse.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture as SharedBoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::{Client, Resource, ResourceExt as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::admission::VmiRef;
use crate::metrics::Metrics;
use crate::server::NamespaceSource;
use crate::server::vmi_source::{BoxFuture, VmiSource, check_uid};
use crate::sizing::vmi::ReadVmi;

mod fallback;
mod health;
mod reach;

use fallback::{Fallback, Fetched};
pub(crate) use health::{CacheEvent, run_cache};
pub use health::{CacheHealth, CacheState};
pub use reach::{PROBE_INTERVAL, Reachability};

/// The server-side watch timeout; the watcher drops a connection that
/// stays silent 5 s longer.
pub const WATCH_TIMEOUT_SECONDS: u32 = 50;

/// The API resource of `kubevirt.io/v1` VirtualMachineInstances.
#[must_use]
pub fn vmi_resource() -> ApiResource {
    ApiResource::erase::<CachedVmi>(&())
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
    /// Fallback GETs per second (sustained), all objects together; one
    /// namespace gets at most half of it.
    pub gets_per_second: u32,
    /// Fallback GETs that may go at once after a quiet spell (a replica
    /// starting during a mass VM restart); one namespace gets at most a
    /// quarter of it.
    pub get_burst: u32,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            backoff_max: Duration::from_secs(30),
            relist_interval: Duration::from_secs(300),
            stale_after: Duration::from_secs(120),
            negative_ttl: Duration::from_secs(5),
            gets_per_second: 20,
            get_burst: 200,
        }
    }
}

// === VMIs ===

/// VMIs read directly through the Kubernetes API, one GET each: what the
/// cache falls back to. Each is read into a [`ReadVmi`] as the cache reads
/// a watch event.
#[derive(Clone)]
pub struct ApiVmis {
    client: Client,
}

impl VmiSource for ApiVmis {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        let api = Api::<CachedVmi>::namespaced(self.client.clone(), namespace);
        Box::pin(async move {
            let found = api.get_opt(name).await.map_err(|error| error.to_string())?;
            Ok(found.map(|cached| cached.vmi))
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
    store: Store<CachedVmi>,
    health: Arc<CacheHealth>,
    direct: Arc<S>,
    fallback: Fallback<ReadVmi>,
}

impl<S: VmiSource> CachedVmis<S> {
    /// A cache over `store`, whose watch reports to `health`, falling back
    /// to `direct`.
    pub fn new(
        store: Store<CachedVmi>,
        health: Arc<CacheHealth>,
        direct: S,
        options: CacheOptions,
    ) -> CachedVmis<S> {
        CachedVmis {
            store,
            fallback: Fallback::new(options, health.clone()),
            health,
            direct: Arc::new(direct),
        }
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<CachedVmi>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// GETs the VMI. "Does not exist" is remembered for what was claimed
    /// (`uid` included), so a VMI recreated under the same name is looked
    /// up afresh for a Pod that claims the new one; and a VMI the watch
    /// delivers is served from the store before any remembered miss.
    async fn fetch(&self, namespace: &str, name: &str, uid: Option<&str>) -> Fetched<ReadVmi> {
        let (direct, owned_namespace, owned_name) =
            (self.direct.clone(), namespace.to_owned(), name.to_owned());
        self.fallback
            .get(
                format!("{namespace}/{name}#{}", uid.unwrap_or("")),
                namespace,
                move || async move { direct.get(&owned_namespace, &owned_name).await }.boxed(),
            )
            .await
    }
}

impl<S: VmiSource> VmiSource for CachedVmis<S> {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async move {
            if let Some(cached) = self.cached(namespace, name) {
                return Ok(Some(cached.vmi.clone()));
            }
            self.fetch(namespace, name, None).await
        })
    }
    fn lookup<'a>(
        &'a self,
        reference: &'a VmiRef,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async move {
            let (namespace, name) = (&reference.namespace, &reference.name);
            if let Some(cached) = self.cached(namespace, name) {
                let cached_uid = cached.metadata.uid.as_deref();
                if reference.uid.is_none() || reference.uid.as_deref() == cached_uid {
                    return Ok(Some(cached.vmi.clone()));
                }
                tracing::debug!(
                    %namespace, %name, cached_uid, claimed_uid = reference.uid.as_deref(),
                    "cached VMI has another uid; asking the API"
                );
            }
            match self
                .fetch(namespace, name, reference.uid.as_deref())
                .await?
            {
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
                .get(namespace.to_owned(), namespace, || {
                    self.getter.get(namespace)
                })
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

// === CachedVmi ===

/// A VMI as the watch cache holds it: read once, when the watch delivers it
/// (it deserialises straight into this), into its uid and sizing facts
/// ([`ReadVmi`]) shared by every lookup; and, for the store and the
/// watcher, its name, namespace, uid and resourceVersion. No JSON of the
/// VMI is kept.
#[derive(Debug, Clone)]
pub struct CachedVmi {
    metadata: ObjectMeta,
    vmi: Arc<ReadVmi>,
}

impl CachedVmi {
    /// `vmi` (a VirtualMachineInstance object), read.
    #[must_use]
    pub fn from_value(vmi: &Value) -> CachedVmi {
        let text = |field: &str| {
            vmi.get("metadata")
                .and_then(|metadata| metadata.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let metadata = ObjectMeta {
            name: text("name"),
            namespace: text("namespace"),
            uid: text("uid"),
            // The watch resumes from the last object's.
            resource_version: text("resourceVersion"),
            ..ObjectMeta::default()
        };
        CachedVmi {
            metadata,
            vmi: Arc::new(ReadVmi::from_value(vmi)),
        }
    }

    /// The VMI as read.
    #[must_use]
    pub fn vmi(&self) -> &Arc<ReadVmi> {
        &self.vmi
    }

    /// Takes the facts `store` already holds for this VMI when they were
    /// read from the same object (same uid and resourceVersion), and drops
    /// its own. A relist (every `relistInterval`, or after a watch failure)
    /// builds a fresh copy of every VMI before the store swaps it in: this
    /// way the store holds one set of facts throughout, not two.
    pub fn share_unchanged(&mut self, store: &Store<CachedVmi>) {
        let held = store.get(&ObjectRef::from_obj(self));
        if let Some(held) = held
            && held.metadata.uid == self.metadata.uid
            && held.metadata.resource_version == self.metadata.resource_version
        {
            self.vmi = held.vmi.clone();
        }
    }
}

impl<'de> Deserialize<'de> for CachedVmi {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CachedVmi, D::Error> {
        Value::deserialize(deserializer).map(|vmi| CachedVmi::from_value(&vmi))
    }
}

/// `kubevirt.io/v1` VirtualMachineInstances ([`vmi_resource`]).
impl Resource for CachedVmi {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        "VirtualMachineInstance".into()
    }
    fn group((): &()) -> Cow<'_, str> {
        "kubevirt.io".into()
    }
    fn version((): &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural((): &()) -> Cow<'_, str> {
        "virtualmachineinstances".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn trim_namespace(namespace: &mut Namespace, _: &Store<Namespace>) {
    namespace.managed_fields_mut().clear();
    namespace.spec = None;
    namespace.status = None;
}

/// Starts the apiserver probe whose [`Reachability`] the caches of
/// `client` follow.
#[must_use]
pub fn probe(client: &Client) -> Arc<Reachability> {
    let reach = Reachability::new();
    tokio::spawn(reach::probe(client.clone(), reach.clone()));
    reach
}

/// Starts both watch caches over `client`, following `reach`. The caches
/// sync in the background and `/readyz` reports when they have.
#[must_use]
pub fn connect(
    client: &Client,
    options: CacheOptions,
    reach: &Arc<Reachability>,
) -> (Arc<dyn VmiSource>, Arc<dyn NamespaceSource>) {
    let vmi_writer = Writer::<CachedVmi>::default();
    let vmi_store = vmi_writer.as_reader();
    let vmi_health = CacheHealth::new("virtualmachineinstances", options.stale_after);
    vmi_health.follow(reach.clone());
    tokio::spawn(run_cache(
        Api::<CachedVmi>::all(client.clone()),
        vmi_writer,
        vmi_store.clone(),
        vmi_health.clone(),
        options,
        // Read into facts as they deserialise; a relist shares the facts
        // of every VMI that did not change.
        CachedVmi::share_unchanged,
        |_| {},
    ));

    let namespace_writer = Writer::<Namespace>::new(());
    let namespace_store = namespace_writer.as_reader();
    let namespace_health = CacheHealth::new("namespaces", options.stale_after);
    namespace_health.follow(reach.clone());
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
