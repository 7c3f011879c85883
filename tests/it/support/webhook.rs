//! The webhook as the router tests drive it (`oneshot` on `POST /mutate`,
//! no socket): the example policy, VMIs and namespace behind
//! [`router`], [`post`] to send a body, and [`check_answer`] for what every
//! 200 answer must satisfy whatever the input: the request's uid comes
//! back, a patch is base64 of a JSON array that applies to the request's
//! object and touches nothing but the sized fields, and a failed decision
//! ("could not size") carries no patch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;
use virt_sizer::admission::{AdmissionReview, GroupVersionKind};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::vmi_source::VmiDirectory;
use virt_sizer::server::{self, AppState, StaticNamespaces};

use super::{remove, repo};

/// The example launcher Pod review (namespace `dev-a`, VMI `ci-runner-01`).
pub(crate) const EXAMPLE_REVIEW: &str = include_str!("../../../examples/launcher-pod-dev.json");
/// The example RuntimeClass review (handler `kata-qemu`).
pub(crate) const EXAMPLE_RUNTIME_CLASS: &str =
    include_str!("../../../examples/runtimeclass-kata-qemu.json");

/// The router over the example policy, the example VMIs and `dev-a` →
/// `tier=dev`.
pub(crate) fn router() -> (axum::Router, AppState) {
    let policy = PolicyStore::from_file(&repo("examples/policy.yaml")).expect("example policy");
    let vmis = Arc::new(VmiDirectory::new(&repo("examples")).expect("example VMIs"));
    let namespaces = StaticNamespaces::new(BTreeMap::from([(
        "dev-a".to_owned(),
        BTreeMap::from([("tier".to_owned(), "dev".to_owned())]),
    )]));
    let state = AppState::new(
        policy,
        None,
        vmis,
        Arc::new(namespaces),
        Duration::from_secs(5),
    );
    (server::app(state.clone()), state)
}

/// Sends `body` to `POST /mutate` with `content_type` (no header if `None`).
pub(crate) async fn post(
    router: &axum::Router,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    post_to(router, "/mutate", content_type, body).await
}

/// Sends `body` to `POST path` with `content_type` (no header if `None`).
pub(crate) async fn post_to(
    router: &axum::Router,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, bytes.to_vec())
}

// === Invariants of every answer ===

/// A 200 answer that passed [`check_answer`].
pub(crate) struct Answer {
    /// The decoded `response`.
    pub(crate) response: Value,
    /// The request's `kind.kind`, as the handler decoded it.
    pub(crate) kind: String,
    /// The request's object, as the handler decoded it (`null` if none).
    pub(crate) object: Value,
    /// The request's object with the patch applied, if there was a patch.
    pub(crate) patched: Option<Value>,
    /// Whether the request could be read back to check the uid and the
    /// patch (see [`decoded_request`]).
    pub(crate) verified: bool,
}

/// The request's uid, `kind.kind` and object, read back from the body:
/// with the crate's `AdmissionReview` type (serde's sequence form of a
/// struct accepted, duplicate keys: last wins, unknown fields skipped
/// without recursing), else with only the fields a check needs, as a
/// server decoder that skips the rest of the request would. `None` if
/// neither reads it.
fn decoded_request(body: &[u8]) -> Option<(String, String, Value)> {
    #[derive(serde::Deserialize)]
    struct Lenient {
        request: Option<LenientRequest>,
    }
    #[derive(serde::Deserialize)]
    struct LenientRequest {
        uid: String,
        #[serde(default)]
        kind: GroupVersionKind,
        #[serde(default)]
        object: Option<Value>,
    }
    if let Ok(review) = serde_json::from_slice::<AdmissionReview>(body) {
        let request = review.request?;
        return Some((
            request.uid,
            request.kind.kind,
            request.object.unwrap_or_default(),
        ));
    }
    let request = serde_json::from_slice::<Lenient>(body).ok()?.request?;
    Some((
        request.uid,
        request.kind.kind,
        request.object.unwrap_or_default(),
    ))
}

/// What a 200 answer must satisfy whatever the input. `request_body` is
/// what was sent; returns the decoded answer or what is wrong.
pub(crate) fn check_answer(request_body: &[u8], answer: &[u8]) -> Result<Answer, String> {
    let answer: Value = serde_json::from_slice(answer)
        .map_err(|error| format!("the 200 body is not JSON: {error}"))?;
    if answer["apiVersion"] != "admission.k8s.io/v1" || answer["kind"] != "AdmissionReview" {
        return Err(format!(
            "not an admission.k8s.io/v1 AdmissionReview: {answer}"
        ));
    }
    let response = answer["response"].clone();
    if response["uid"].as_str().is_none_or(str::is_empty) {
        return Err(format!("no uid in the answer: {response}"));
    }
    let Some((uid, kind, before)) = decoded_request(request_body) else {
        return Ok(Answer {
            response,
            kind: String::new(),
            object: Value::Null,
            patched: None,
            verified: false,
        });
    };
    if response["uid"] != uid.as_str() {
        return Err(format!(
            "uid {} answered for request uid {uid:?}",
            response["uid"]
        ));
    }
    if !response["allowed"].is_boolean() {
        return Err(format!("allowed is not a boolean: {response}"));
    }
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .map(|warnings| warnings.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let failed = warnings
        .iter()
        .any(|warning| warning.contains("could not size"));
    let Some(encoded) = response.get("patch") else {
        if response.get("patchType").is_some() {
            return Err("patchType without a patch".into());
        }
        return Ok(Answer {
            response,
            kind,
            object: before,
            patched: None,
            verified: true,
        });
    };
    if failed {
        return Err(format!(
            "a failed decision carries a patch: {warnings:?} {encoded}"
        ));
    }
    if response["allowed"] != true {
        return Err("a denied response carries a patch".into());
    }
    if response["patchType"] != "JSONPatch" {
        return Err(format!("patchType {}", response["patchType"]));
    }
    let encoded = encoded
        .as_str()
        .ok_or_else(|| format!("the patch is not a string: {encoded}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| format!("the patch is not base64: {error}"))?;
    let ops: Value = serde_json::from_slice(&bytes)
        .map_err(|error| format!("the patch is not JSON: {error}"))?;
    if !ops.is_array() {
        return Err(format!("the patch is not a JSON array: {ops}"));
    }
    let patch: json_patch::Patch = serde_json::from_value(ops.clone())
        .map_err(|error| format!("the patch is not RFC 6902: {error}: {ops}"))?;
    let mut after = before.clone();
    json_patch::patch(&mut after, &patch)
        .map_err(|error| format!("the patch does not apply: {error}: {ops}"))?;
    check_untouched(&kind, &before, &after)?;
    Ok(Answer {
        response,
        kind,
        object: before,
        patched: Some(after),
        verified: true,
    })
}

/// Everything outside what the target's sizing may change is byte-identical,
/// and inside it only the sized entries change.
fn check_untouched(kind: &str, before: &Value, after: &Value) -> Result<(), String> {
    let launcher = before.pointer("/metadata/labels/kubevirt.io") == Some(&json!("virt-launcher"));
    // Removes what the sizing may change; a map left empty by that removal
    // goes too (the patch may have had to create it).
    let strip = |object: &Value| {
        let mut object = object.clone();
        let drop_if_empty = |object: &mut Value, pointer: &str| {
            if object
                .pointer(pointer)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                remove(object, pointer);
            }
        };
        if kind == "RuntimeClass" {
            remove(&mut object, "/overhead/podFixed");
            drop_if_empty(&mut object, "/overhead");
        } else {
            remove(&mut object, "/metadata/annotations");
            drop_if_empty(&mut object, "/metadata");
            let containers = object
                .pointer_mut("/spec/containers")
                .and_then(Value::as_array_mut);
            let compute = containers.as_ref().and_then(|containers| {
                containers
                    .iter()
                    .position(|container| container.get("name") == Some(&json!("compute")))
            });
            for (index, container) in containers.into_iter().flatten().enumerate() {
                if launcher && Some(index) == compute {
                    if let Some(container) = container.as_object_mut() {
                        container.remove("resources");
                    }
                } else if !launcher {
                    remove(container, "/resources/limits");
                    drop_if_empty(container, "/resources");
                }
            }
        }
        serde_json::to_string(&object).expect("serialises")
    };
    if strip(before) != strip(after) {
        return Err(format!(
            "the patch changed a field outside the sized ones\nbefore: {}\nafter:  {}",
            strip(before),
            strip(after)
        ));
    }
    // Other annotations keep their values.
    let annotations = |object: &Value| {
        object
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (old, new) = (annotations(before), annotations(after));
    for (key, value) in &old {
        // The overhead annotations are the sizer's to keep true; a Kata
        // sandbox's io.katacontainers.* sizing annotations its to correct.
        if key.ends_with("memory-overhead-bytes")
            || (!launcher && key.starts_with("io.katacontainers."))
        {
            continue;
        }
        if new.get(key) != Some(value) {
            return Err(format!(
                "annotation {key} changed: {value} → {:?}",
                new.get(key)
            ));
        }
    }
    // Device-plugin and storage resources of the compute container are
    // never touched.
    if launcher && kind == "Pod" {
        let compute = |object: &Value| {
            object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .and_then(|containers| {
                    containers
                        .iter()
                        .find(|container| container.get("name") == Some(&json!("compute")))
                        .cloned()
                })
                .unwrap_or(Value::Null)
        };
        let (old, new) = (compute(before), compute(after));
        for section in ["requests", "limits"] {
            let entries = |container: &Value| -> Map<String, Value> {
                container["resources"][section]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(name, _)| {
                        name != "cpu" && name != "memory" && !name.starts_with("hugepages-")
                    })
                    .collect()
            };
            if entries(&old) != entries(&new) {
                return Err(format!(
                    "compute {section}: device resources changed: {:?} → {:?}",
                    entries(&old),
                    entries(&new)
                ));
            }
        }
    }
    Ok(())
}
