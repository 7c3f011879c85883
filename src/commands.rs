//! Thin shells for the CLI verbs: they read files (through
//! [`crate::documents`]), call the pure core and print. Shared input handling
//! lives here.

pub mod completions;
pub mod plan;
pub mod policy;
pub mod review;
pub mod serve;
pub mod test;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::admission::wire::{self, Whole};
use crate::admission::{AdmissionRequest, GroupVersionKind, VmiRef};
use crate::documents::{PolicyFile, read_document, read_documents};
use crate::sizing::policy::{KubevirtBaseline, ValidPolicy};
use crate::sizing::vmi::ReadVmi;

// Kept for tests/it/manifests.rs and tests/it/e2e/webhook.rs until they
// import `documents` themselves; nothing under src/ uses these paths.

/// Whether `error` is a write to a closed pipe (`virt-sizer … | head`): the
/// reader chose to stop, so the verb ends quietly with success (as ripgrep
/// does) rather than with an error or a `println!` panic.
#[must_use]
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Loads a policy file, or the built-in policy without one.
///
/// # Errors
/// Unreadable or invalid policy, with every problem and its field path.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<ValidPolicy> {
    let Some(path) = path else {
        return Ok(ValidPolicy::builtin());
    };
    PolicyFile::new(path).load()
}

/// Loads a policy as [`load_policy`] does, over the KubeVirt CR in
/// `kubevirt` when one is given (`--kubevirt FILE`, a case's `kubevirt:`).
///
/// # Errors
/// As [`load_policy`], or an unreadable or invalid KubeVirt CR.
pub fn load_policy_over(
    path: Option<&Path>,
    kubevirt: Option<&Path>,
) -> anyhow::Result<ValidPolicy> {
    let policy = load_policy(path)?;
    let Some(kubevirt) = kubevirt else {
        return Ok(policy);
    };
    let baseline = KubevirtBaseline::from_json(&read_document(kubevirt)?).map_err(|errors| {
        anyhow::anyhow!("invalid KubeVirt CR {}:\n{errors}", kubevirt.display())
    })?;
    Ok(policy.with_baseline(Some(Arc::new(baseline))))
}

/// Parses `k=v,k2=v2` (empty string = no labels).
///
/// # Errors
/// An entry without `=`.
pub fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .split_once('=')
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .with_context(|| format!("label {entry:?} is not key=value"))
        })
        .collect()
}

/// VirtualMachineInstances supplied on the command line or in a case.
#[derive(Debug, Default)]
pub struct VmiSet {
    vmis: Vec<Value>,
}

impl VmiSet {
    /// Loads every VMI document from `paths` (a file may hold several, or a
    /// `List`).
    ///
    /// # Errors
    /// Unreadable files, or a document that is not a VirtualMachineInstance.
    pub fn load(paths: &[impl AsRef<Path>]) -> anyhow::Result<VmiSet> {
        let mut vmis = Vec::new();
        for path in paths {
            let path = path.as_ref();
            for document in read_documents(path)? {
                let items = match document.get("items").and_then(Value::as_array) {
                    Some(items) if document.get("kind").and_then(Value::as_str) == Some("List") => {
                        items.clone()
                    }
                    _ => vec![document],
                };
                for item in items {
                    let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
                    if kind != "VirtualMachineInstance" {
                        bail!(
                            "{}: kind: expected VirtualMachineInstance, got {kind:?}",
                            path.display()
                        );
                    }
                    vmis.push(item);
                }
            }
        }
        Ok(VmiSet { vmis })
    }

    /// The VMI `request` (a launcher Pod) belongs to, looked up as the
    /// server looks it up: by namespace and name, and a VMI whose uid is
    /// not the one the Pod's owner reference claims is unavailable, naming
    /// both uids.
    #[must_use]
    pub fn lookup(&self, request: &AdmissionRequest) -> LookedUp {
        let Some(reference) = crate::admission::launcher_vmi(request) else {
            return LookedUp::NotFound;
        };
        match self.find(&reference).map(ReadVmi::from_value) {
            None => LookedUp::NotFound,
            Some(vmi) => match reference.check_uid(vmi.uid.as_deref()) {
                Ok(()) => LookedUp::Found(Box::new(vmi)),
                Err(reason) => LookedUp::Unavailable(reason),
            },
        }
    }

    /// The VMI named by `reference` (a VMI without a namespace matches any).
    #[must_use]
    pub fn find(&self, reference: &VmiRef) -> Option<&Value> {
        self.vmis.iter().find(|vmi| {
            let name = vmi.pointer("/metadata/name").and_then(Value::as_str);
            let namespace = vmi
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            name == Some(reference.name.as_str())
                && (namespace.is_empty() || namespace == reference.namespace)
        })
    }
}

/// What [`VmiSet::lookup`] found, owned.
#[derive(Debug)]
pub enum LookedUp {
    /// The VMI, read.
    Found(Box<ReadVmi>),
    /// None by that name (or the request names none).
    NotFound,
    /// One by that name, but not the one claimed: why.
    Unavailable(String),
}

impl LookedUp {
    /// As the sizing core takes it.
    #[must_use]
    pub fn as_lookup(&self) -> crate::admission::VmiLookup<'_> {
        match self {
            LookedUp::Found(vmi) => crate::admission::VmiLookup::Found(vmi),
            LookedUp::NotFound => crate::admission::VmiLookup::NotFound,
            LookedUp::Unavailable(reason) => crate::admission::VmiLookup::Unavailable(reason),
        }
    }
}

/// Turns a document into an admission request: an AdmissionReview is used
/// as is; a bare object is wrapped in a review with `operation`, the
/// object's namespace (else `namespace`) and a fixed uid.
///
/// # Errors
/// A document without a `kind` (not a Kubernetes object: wrapping it would
/// answer `allowed` for something that was never a request), a malformed
/// AdmissionReview (with the path of the bad field) or an AdmissionReview
/// of another API version.
pub fn request_from_document(
    document: Value,
    namespace: &str,
    operation: &str,
) -> anyhow::Result<AdmissionRequest> {
    if document
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let got = match &document {
            Value::Object(object) if object.is_empty() => "an empty mapping".to_owned(),
            Value::Object(object) => {
                let keys: Vec<&str> = object.keys().take(5).map(String::as_str).collect();
                format!("a mapping with keys {}", keys.join(", "))
            }
            Value::Array(_) => "a list".to_owned(),
            other => format!("{other}"),
        };
        bail!(
            "not a Kubernetes object (no kind): expected an AdmissionReview \
             (admission.k8s.io/v1), or a Pod or RuntimeClass to wrap in one; got {got}"
        );
    }
    if document.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        return wire::decode_value::<Whole>(document).map_err(anyhow::Error::from);
    }
    Ok(request_for_object(document, namespace, operation))
}

/// The uid given to reviews made up from a bare object.
pub const SYNTHETIC_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Wraps a bare object (Pod, RuntimeClass) in an admission request, as the
/// apiserver would send it: `kind` from the object's `apiVersion`/`kind`,
/// its namespace (else `namespace`), the given `operation`.
#[must_use]
pub fn request_for_object(object: Value, namespace: &str, operation: &str) -> AdmissionRequest {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = GroupVersionKind {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let metadata = object.get("metadata");
    let object_namespace = metadata
        .and_then(|meta| meta.get("namespace"))
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty());
    let cluster_scoped = kind.kind == "RuntimeClass";
    AdmissionRequest {
        uid: SYNTHETIC_UID.to_owned(),
        resource: Value::Null,
        sub_resource: None,
        name: metadata
            .and_then(|meta| meta.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        namespace: if cluster_scoped {
            String::new()
        } else {
            object_namespace.unwrap_or(namespace).to_owned()
        },
        operation: operation.to_owned(),
        user_info: Value::Null,
        object: Some(object),
        object_over_bound: None,
        old_object: None,
        dry_run: Value::Null,
        options: Value::Null,
        kind,
    }
}
