//! The kinds the manifests hold, decoded strictly.
//!
//! A Kubernetes document decodes into its k8s-openapi type; the kinds
//! k8s-openapi lacks (cert-manager, the Prometheus Operator, kustomize) into
//! the small types below, only as deep as the manifests and the tests go
//! (`Value` where a field is taken whole). Those types ignore unknown fields
//! like k8s-openapi's do, and [`decode_strict`] reports every field a type
//! skipped, with its path: the apiserver silently drops an unknown field
//! (a typo such as `readinessprobe`), so it is caught here. Enumerated
//! values of the Kubernetes kinds are the apiserver's to refuse (the e2e
//! tests apply every manifest); the other kinds' enums are Rust enums.

#![expect(
    dead_code,
    reason = "the manifests' own kinds are decoded to be checked; the rules read the JSON"
)]

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes `value` into `T`. On failure, every field `T` does not have
/// (`unknown field spec.template.spec.containers[0].readinessprobe`) and the
/// first value it cannot take, each with its path.
pub(super) fn decode_strict<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<String>> {
    let mut problems = Vec::new();
    let decoded = {
        let mut unknown = |path: serde_ignored::Path<'_>| {
            problems.push(format!("unknown field {}", dotted(&path)));
        };
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut unknown))
    };
    match decoded {
        Ok(decoded) if problems.is_empty() => Ok(decoded),
        Ok(_) => Err(problems),
        Err(error) => {
            problems.push(format!("{}: {}", error.path(), error.inner()));
            Err(problems)
        }
    }
}

/// What the tests know of a kind.
pub(super) struct Kind {
    /// Whether its objects live in a namespace.
    pub(super) namespaced: bool,
    /// Whether Kubernetes requires a `spec` (k8s-openapi's types default a
    /// missing one).
    pub(super) spec_required: bool,
    /// [`decode_strict`] into its type.
    pub(super) decode: fn(&Value) -> Result<(), Vec<String>>,
}

/// The kind an `apiVersion` and `kind` name, if the manifests may hold it.
pub(super) fn kind_of(api_version: &str, kind: &str) -> Option<Kind> {
    let kind = match (api_version, kind) {
        ("v1", "Namespace") => k8s::<Namespace>(),
        ("v1", "ServiceAccount") => k8s::<ServiceAccount>(),
        ("v1", "ConfigMap") => k8s::<ConfigMap>(),
        ("v1", "Secret") => k8s::<Secret>(),
        ("v1", "ResourceQuota") => k8s::<ResourceQuota>().with_spec(),
        ("v1", "Service") => k8s::<Service>().with_spec(),
        ("apps/v1", "Deployment") => k8s::<Deployment>().with_spec(),
        ("policy/v1", "PodDisruptionBudget") => k8s::<PodDisruptionBudget>().with_spec(),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => k8s::<ClusterRole>(),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => k8s::<ClusterRoleBinding>(),
        ("rbac.authorization.k8s.io/v1", "Role") => k8s::<Role>(),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => k8s::<RoleBinding>(),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            k8s::<MutatingWebhookConfiguration>()
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            k8s::<ValidatingWebhookConfiguration>()
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => k8s::<NetworkPolicy>().with_spec(),
        ("cert-manager.io/v1", "Issuer") => custom::<IssuerSpec>(),
        ("cert-manager.io/v1", "Certificate") => custom::<CertificateSpec>(),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => custom::<ServiceMonitorSpec>(),
        ("monitoring.coreos.com/v1", "PrometheusRule") => custom::<PrometheusRuleSpec>(),
        _ => return None,
    };
    Some(kind)
}

impl Kind {
    fn with_spec(self) -> Self {
        Self {
            spec_required: true,
            ..self
        }
    }
}

/// A kind k8s-openapi has.
fn k8s<T>() -> Kind
where
    T: DeserializeOwned + Resource,
    T::Scope: Scope,
{
    Kind {
        namespaced: T::Scope::NAMESPACED,
        spec_required: false,
        decode: |value| decode_strict::<T>(value).map(drop),
    }
}

/// A namespaced custom resource with a `Spec` (required by its type).
fn custom<Spec: DeserializeOwned>() -> Kind {
    Kind {
        namespaced: true,
        spec_required: true,
        decode: |value| decode_strict::<Object<Spec>>(value).map(drop),
    }
}

/// Whether a k8s-openapi scope is a namespace.
trait Scope {
    const NAMESPACED: bool;
}

impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A serde path without its `?` (an `Option`) and newtype steps:
/// `spec.template.spec.containers[0].readinessprobe`.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => match dotted(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

// === Kinds k8s-openapi lacks ===

/// A namespaced custom resource: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<Spec> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: Spec,
}

/// cert-manager.io/v1 Issuer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssuerSpec {
    self_signed: Option<Value>,
    ca: Option<CaIssuer>,
    acme: Option<Value>,
    vault: Option<Value>,
    venafi: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaIssuer {
    secret_name: String,
    crl_distribution_points: Option<Vec<String>>,
    ocsp_servers: Option<Vec<String>>,
}

/// cert-manager.io/v1 Certificate.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    secret_template: Option<Value>,
    common_name: Option<String>,
    dns_names: Option<Vec<String>>,
    ip_addresses: Option<Vec<String>>,
    uris: Option<Vec<String>>,
    #[serde(rename = "isCA")]
    is_ca: Option<bool>,
    duration: Option<String>,
    renew_before: Option<String>,
    usages: Option<Vec<String>>,
    private_key: Option<CertificatePrivateKey>,
    issuer_ref: IssuerRef,
    subject: Option<Value>,
    revision_history_limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificatePrivateKey {
    algorithm: Option<KeyAlgorithm>,
    size: Option<u32>,
    encoding: Option<KeyEncoding>,
    rotation_policy: Option<RotationPolicy>,
}

#[derive(Debug, Deserialize)]
enum KeyAlgorithm {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
}

#[derive(Debug, Deserialize)]
enum KeyEncoding {
    #[serde(rename = "PKCS1")]
    Pkcs1,
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

#[derive(Debug, Deserialize)]
enum RotationPolicy {
    Never,
    Always,
}

#[derive(Debug, Deserialize)]
struct IssuerRef {
    name: String,
    kind: Option<IssuerKind>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
enum IssuerKind {
    Issuer,
    ClusterIssuer,
}

/// monitoring.coreos.com/v1 ServiceMonitor.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
    namespace_selector: Option<Value>,
    job_label: Option<String>,
    target_labels: Option<Vec<String>>,
    pod_target_labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorEndpoint {
    port: String,
    scheme: Option<Scheme>,
    path: Option<String>,
    interval: Option<String>,
    scrape_timeout: Option<String>,
    honor_labels: Option<bool>,
    tls_config: Option<Value>,
    relabelings: Option<Vec<Value>>,
    metric_relabelings: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scheme {
    Http,
    Https,
}

/// monitoring.coreos.com/v1 PrometheusRule.
#[derive(Debug, Deserialize)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleGroup {
    name: String,
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    pending_for: Option<String>,
    keep_firing_for: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A kustomize Kustomization (`kustomize.config.k8s.io/v1beta1`) or
/// Component (`v1alpha1`): the fields the manifests use, and the deprecated
/// ones, decoded so that a test can name them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Kustomization {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) resources: Vec<String>,
    #[serde(default)]
    pub(super) components: Vec<String>,
    #[serde(default)]
    pub(super) patches: Vec<KustomizePatch>,
    #[serde(default)]
    pub(super) config_map_generator: Vec<ConfigMapGenerator>,
    #[serde(default)]
    pub(super) replacements: Vec<Value>,
    // Deprecated.
    pub(super) bases: Option<Value>,
    pub(super) patches_strategic_merge: Option<Vec<String>>,
    pub(super) patches_json6902: Option<Value>,
    pub(super) common_labels: Option<Value>,
    pub(super) vars: Option<Value>,
}

/// One of a kustomization's `patches`: a file, or an inline patch.
#[derive(Debug, Deserialize)]
pub(super) struct KustomizePatch {
    pub(super) path: Option<String>,
    pub(super) patch: Option<String>,
    pub(super) target: Option<Value>,
    pub(super) options: Option<Value>,
}

/// One of a kustomization's `configMapGenerator`s.
#[derive(Debug, Deserialize)]
pub(super) struct ConfigMapGenerator {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) files: Vec<String>,
    #[serde(default)]
    pub(super) literals: Vec<String>,
    pub(super) behavior: Option<String>,
    pub(super) options: Option<Value>,
}
