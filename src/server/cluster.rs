//! In a cluster: watch caches (kube-runtime reflectors) of
//! VirtualMachineInstances and Namespaces, and a direct GET when a VMI is not
//! in the cache yet (the launcher Pod can arrive before the watch event).
//!
//! Cached VMIs are trimmed to what sizing reads as events arrive —
//! `managedFields`, `status`, owner references, the last-applied
//! annotation, and every part of `spec` sizing does not read (disks,
//! networks, cloud-init data…) — which keeps the cache small with thousands
//! of VMIs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource, ResourceExt as _};
use serde_json::Value;

use crate::server::NamespaceSource;
use crate::server::vmi_source::{BoxFuture, VmiSource};

/// The API resource of `kubevirt.io/v1` VirtualMachineInstances.
#[must_use]
pub fn vmi_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubevirt.io", "v1", "VirtualMachineInstance"),
        "virtualmachineinstances",
    )
}

/// Looks a VMI up directly, bypassing the cache.
pub trait VmiGetter: Send + Sync + 'static {
    /// `Ok(None)` when it does not exist.
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>>;
}

/// A direct GET through the Kubernetes API.
#[derive(Clone)]
pub struct ApiGetter {
    client: Client,
    resource: ApiResource,
}

impl VmiGetter for ApiGetter {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>> {
        Box::pin(async move {
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                namespace,
                &self.resource,
            );
            let found = api.get_opt(name).await.map_err(|error| error.to_string())?;
            found
                .map(|object| serde_json::to_value(object).map_err(|error| error.to_string()))
                .transpose()
        })
    }
}

/// VMIs from a reflector store, with a direct lookup on a miss.
pub struct CachedVmis<G> {
    store: Store<DynamicObject>,
    resource: ApiResource,
    synced: Arc<AtomicBool>,
    fallback: G,
}

impl<G: VmiGetter> CachedVmis<G> {
    /// A cache over `store` (synced once `synced` is set) falling back to
    /// `fallback`.
    pub fn new(store: Store<DynamicObject>, synced: Arc<AtomicBool>, fallback: G) -> CachedVmis<G> {
        CachedVmis {
            store,
            resource: vmi_resource(),
            synced,
            fallback,
        }
    }
}

impl<G: VmiGetter> VmiSource for CachedVmis<G> {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        Box::pin(async move {
            let key = ObjectRef::new_with(name, self.resource.clone()).within(namespace);
            if let Some(object) = self.store.get(&key) {
                let value = serde_json::to_value(&*object).map_err(|error| error.to_string())?;
                return Ok(Some(Arc::new(value)));
            }
            let fetched = self.fallback.get(namespace, name).await?;
            Ok(fetched.map(Arc::new))
        })
    }
    fn is_ready(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
    fn describe(&self) -> String {
        format!(
            "watch cache ({} VMIs{})",
            self.store.len(),
            if self.is_ready() { "" } else { ", syncing" }
        )
    }
}

/// Namespace labels from a reflector store.
pub struct CachedNamespaces {
    store: Store<Namespace>,
    synced: Arc<AtomicBool>,
}

impl CachedNamespaces {
    /// A source over `store`, synced once `synced` is set.
    #[must_use]
    pub fn new(store: Store<Namespace>, synced: Arc<AtomicBool>) -> CachedNamespaces {
        CachedNamespaces { store, synced }
    }
}

impl NamespaceSource for CachedNamespaces {
    fn labels(&self, namespace: &str) -> Arc<BTreeMap<String, String>> {
        let labels = self
            .store
            .get(&ObjectRef::new(namespace))
            .map(|namespace| namespace.labels().clone())
            .unwrap_or_default();
        Arc::new(labels)
    }
    fn is_ready(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
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

/// Starts both watch caches over `client`. The caches sync in the
/// background and `/readyz` reports when they have.
#[must_use]
pub fn connect(client: &Client) -> (Arc<dyn VmiSource>, Arc<dyn NamespaceSource>) {
    let client = client.clone();
    let resource = vmi_resource();

    let vmi_writer = Writer::<DynamicObject>::new(resource.clone());
    let vmi_store = vmi_writer.as_reader();
    let vmi_api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let vmi_events = watcher(vmi_api, watcher::Config::default())
        .default_backoff()
        .modify(trim_vmi);
    let vmi_synced = spawn_reflector(
        "virtualmachineinstances",
        vmi_writer,
        vmi_store.clone(),
        vmi_events,
    );

    let namespace_writer = Writer::<Namespace>::new(());
    let namespace_store = namespace_writer.as_reader();
    let namespace_events = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|namespace| namespace.managed_fields_mut().clear());
    let namespace_synced = spawn_reflector(
        "namespaces",
        namespace_writer,
        namespace_store.clone(),
        namespace_events,
    );

    let vmis = CachedVmis::new(vmi_store, vmi_synced, ApiGetter { client, resource });
    (
        Arc::new(vmis),
        Arc::new(CachedNamespaces::new(namespace_store, namespace_synced)),
    )
}

/// The Kubernetes client `serve` runs with, found the kube-rs way
/// (in-cluster configuration, else `KUBECONFIG`, else `~/.kube/config`).
///
/// # Errors
/// No configuration found, or one that does not make a client.
pub async fn infer_client() -> anyhow::Result<Client> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster, KUBECONFIG or ~/.kube/config)")?;
    Client::try_from(config).context("building the Kubernetes client")
}

/// Drives a reflector in the background; the flag turns true once the first
/// list has been applied.
fn spawn_reflector<K, S>(
    what: &'static str,
    writer: Writer<K>,
    store: Store<K>,
    events: S,
) -> Arc<AtomicBool>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let synced = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, events);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(%error, resource = what, "watch error; retrying with backoff");
            }
        }
    });
    let flag = synced.clone();
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            tracing::info!(resource = what, objects = store.len(), "watch cache synced");
        }
    });
    synced
}
