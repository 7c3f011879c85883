//! Untyped access to the apiserver (objects as `serde_json::Value`, the way
//! the webhook sees them) and comparisons by quantity value.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use serde_json::{Value, json};
use virt_sizer::sizing::Quantity;

use crate::support::quantities;

/// The kinds the tests touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod,
    Namespace,
    ConfigMap,
    Secret,
    RuntimeClass,
    VirtualMachineInstance,
    KubeVirt,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
}

impl Kind {
    fn resource(self) -> ApiResource {
        let (group, kind, plural) = match self {
            Kind::Pod => ("", "Pod", "pods"),
            Kind::Namespace => ("", "Namespace", "namespaces"),
            Kind::ConfigMap => ("", "ConfigMap", "configmaps"),
            Kind::Secret => ("", "Secret", "secrets"),
            Kind::RuntimeClass => ("node.k8s.io", "RuntimeClass", "runtimeclasses"),
            Kind::VirtualMachineInstance => (
                "kubevirt.io",
                "VirtualMachineInstance",
                "virtualmachineinstances",
            ),
            Kind::KubeVirt => ("kubevirt.io", "KubeVirt", "kubevirts"),
            Kind::MutatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
            ),
            Kind::ValidatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
            ),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    }

    fn api(self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = self.resource();
        match namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        }
    }
}

fn to_dynamic(object: &Value) -> DynamicObject {
    serde_json::from_value(object.clone()).expect("a Kubernetes object")
}

fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).expect("JSON")
}

fn namespace_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
}

/// Creates `object` (in its `metadata.namespace`, if any) and returns what
/// the apiserver stored.
///
/// # Errors
/// The apiserver's refusal.
pub(crate) async fn try_create(
    client: &kube::Client,
    kind: Kind,
    object: &Value,
) -> kube::Result<Value> {
    kind.api(client, namespace_of(object))
        .create(&PostParams::default(), &to_dynamic(object))
        .await
        .map(to_value)
}

/// [`try_create`], which must succeed.
pub(crate) async fn create(client: &kube::Client, kind: Kind, object: &Value) -> Value {
    try_create(client, kind, object)
        .await
        .unwrap_or_else(|error| panic!("creating {kind:?} {}: {error}", object["metadata"]))
}

/// Creates `object` with `dryRun=All`: admission runs, nothing is stored.
///
/// # Errors
/// The apiserver's refusal.
pub(crate) async fn try_create_dry_run(
    client: &kube::Client,
    kind: Kind,
    object: &Value,
) -> kube::Result<Value> {
    let params = PostParams {
        dry_run: true,
        field_manager: None,
    };
    kind.api(client, namespace_of(object))
        .create(&params, &to_dynamic(object))
        .await
        .map(to_value)
}

/// Creates `object`, or returns the stored one if it already exists.
pub(crate) async fn ensure(client: &kube::Client, kind: Kind, object: &Value) -> Value {
    match try_create(client, kind, object).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let name = object["metadata"]["name"].as_str().expect("a name");
            get(client, kind, namespace_of(object), name).await
        }
        Err(error) => panic!("creating {kind:?} {}: {error}", object["metadata"]),
    }
}

/// The stored object.
pub(crate) async fn get(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Value {
    kind.api(client, namespace)
        .get(name)
        .await
        .map(to_value)
        .unwrap_or_else(|error| panic!("getting {kind:?} {name}: {error}"))
}

/// The names of every object of `kind` in `namespace`.
pub(crate) async fn list_names(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
) -> Vec<String> {
    kind.api(client, namespace)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|error| panic!("listing {kind:?}: {error}"))
        .items
        .into_iter()
        .filter_map(|object| object.metadata.name)
        .collect()
}

/// Replaces (PUT) the stored object with `object`, which carries the
/// `resourceVersion` it was read at.
///
/// # Errors
/// The apiserver's refusal.
pub(crate) async fn try_replace(
    client: &kube::Client,
    kind: Kind,
    object: &Value,
) -> kube::Result<Value> {
    let name = object["metadata"]["name"].as_str().expect("a name");
    kind.api(client, namespace_of(object))
        .replace(name, &PostParams::default(), &to_dynamic(object))
        .await
        .map(to_value)
}

/// Deletes an object; a missing one is fine.
pub(crate) async fn delete(client: &kube::Client, kind: Kind, namespace: Option<&str>, name: &str) {
    match kind
        .api(client, namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => panic!("deleting {kind:?} {name}: {error}"),
    }
}

/// The namespace `name` with `labels`, created if missing; returns the
/// stored Namespace (whose labels include `kubernetes.io/metadata.name`).
pub(crate) async fn namespace(client: &kube::Client, name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    ensure(
        client,
        Kind::Namespace,
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels}}),
    )
    .await
}

/// A Namespace's labels as `--namespace-labels` takes them.
pub(crate) fn labels_flag(namespace: &Value) -> String {
    namespace["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The message of an apiserver refusal.
pub(crate) fn refusal(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Polls `check` every 200 ms until it holds; panics after `timeout`.
pub(crate) async fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// === Comparing by value ===

/// Requests and limits of the named container, by value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) requests: BTreeMap<String, Quantity>,
    pub(crate) limits: BTreeMap<String, Quantity>,
}

impl Resources {
    /// The resources of container (or init container) `name` of `pod`.
    pub(crate) fn of(pod: &Value, name: &str) -> Resources {
        let container = ["containers", "initContainers"]
            .into_iter()
            .filter_map(|list| pod["spec"][list].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name} in {pod}"));
        Resources {
            requests: quantities(container.pointer("/resources/requests")),
            limits: quantities(container.pointer("/resources/limits")),
        }
    }

    /// The `compute` container's resources.
    pub(crate) fn compute(pod: &Value) -> Resources {
        Resources::of(pod, "compute")
    }

    /// These resources as the apiserver stores them: every quantity
    /// rounded up to whole millis. apimachinery's v1 → internal conversion
    /// of a ResourceList (`Convert_v1_ResourceList_To_core_ResourceList`,
    /// "we round up resource values to milli scale", kubernetes#18538) does
    /// this to every Pod it decodes, so a webhook's `333333334n` (1/3 CPU,
    /// what KubeVirt's `%g` arithmetic gives) is stored as `334m`.
    pub(crate) fn as_stored(&self) -> Resources {
        let round = |list: &BTreeMap<String, Quantity>| {
            list.iter()
                .map(|(name, quantity)| {
                    let millis = quantity.milli_value();
                    (
                        name.clone(),
                        Quantity::from_nanos(millis * 1_000_000, quantity.format()),
                    )
                })
                .collect()
        };
        Resources {
            requests: round(&self.requests),
            limits: round(&self.limits),
        }
    }

    /// One request by name.
    pub(crate) fn request(&self, name: &str) -> Option<Quantity> {
        self.requests.get(name).copied()
    }

    /// One limit by name.
    pub(crate) fn limit(&self, name: &str) -> Option<Quantity> {
        self.limits.get(name).copied()
    }
}

/// An annotation of `object`.
pub(crate) fn annotation<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][name].as_str()
}

/// An annotation read as a quantity (compared by value: `268Mi` equals
/// `281018368`).
pub(crate) fn annotation_quantity(object: &Value, name: &str) -> Option<Quantity> {
    annotation(object, name).map(crate::support::q)
}
