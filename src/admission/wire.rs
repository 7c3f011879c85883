//! The `admission.k8s.io/v1` wire: the types as the API documents them, and
//! the one decoder the server and the CLI share ([`decode`],
//! [`decode_value`]): the same envelope, the same checks, and only what a
//! decision reads of the object kept ([`Sizing`]) or all of it ([`Whole`],
//! for `review --patched`).
//!
//! kube-core has these types too, but it serialises `response.patch` as a
//! JSON array of numbers (three times the size of the documented base64
//! string) and its `AdmissionResponse::invalid()` drops the request's uid.
//! The objects themselves stay raw [`serde_json::Value`]s so that fields we
//! do not know survive untouched.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::facts::{KeptObject, policy_configmap_object, sizing_object};
use crate::telemetry::{capped, capped_to};

/// `admission.k8s.io/v1`.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// An AdmissionReview, request or response side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// Must be `admission.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Must be `AdmissionReview`.
    #[serde(default)]
    pub kind: String,
    /// The request (absent in a response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// The response (absent in a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// Group, version and kind of the object under review.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The request half of an AdmissionReview. Fields the webhook does not use
/// are kept as raw values so a review can be re-serialised faithfully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Copied into the response; the apiserver rejects a mismatch.
    pub uid: String,
    /// Kind of the object.
    #[serde(default)]
    pub kind: GroupVersionKind,
    /// Resource being requested (raw).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub resource: Value,
    /// Subresource, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    /// Object name (may be empty on CREATE with generateName).
    #[serde(default)]
    pub name: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// CREATE, UPDATE, DELETE or CONNECT.
    #[serde(default)]
    pub operation: String,
    /// Requesting user (raw).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub user_info: Value,
    /// The object as admitted so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// Why `object` is `None` although the request carried one: it was
    /// over what this server keeps of one object
    /// ([`MAX_KEPT_BYTES`](super::facts::MAX_KEPT_BYTES)). Such a request
    /// is answered per `onError`.
    #[serde(skip)]
    pub object_over_bound: Option<String>,
    /// The existing object on UPDATE/DELETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    /// Dry-run request (raw: not read, so not held to a type).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub dry_run: Value,
    /// Operation options (raw).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub options: Value,
}

/// `status` of a denied response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// HTTP-like status code.
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
}

/// The response half of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of the RFC 6902 JSON Patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Added to the audit event (keys are prefixed by the webhook name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Shown to the client (kubectl prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    /// Allowed, unchanged.
    #[must_use]
    pub fn allow(uid: &str) -> AdmissionResponse {
        AdmissionResponse {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Denied with `code` and `message`, the message cut at
    /// [`MAX_LOG_FIELD_CHARS`](crate::telemetry::MAX_LOG_FIELD_CHARS)
    /// characters with a marker: kubectl prints it whole, so no answer
    /// echoes megabytes.
    #[must_use]
    pub fn deny(uid: &str, code: u16, message: String) -> AdmissionResponse {
        let message = match capped_to(&message, crate::telemetry::MAX_LOG_FIELD_CHARS) {
            Cow::Borrowed(_) => message,
            Cow::Owned(cut) => cut,
        };
        AdmissionResponse {
            allowed: false,
            status: Some(Status { code, message }),
            ..AdmissionResponse::allow(uid)
        }
    }

    /// Wraps the response in an `admission.k8s.io/v1` AdmissionReview.
    #[must_use]
    pub fn into_review(self) -> AdmissionReview {
        AdmissionReview {
            api_version: ADMISSION_API_VERSION.to_owned(),
            kind: "AdmissionReview".to_owned(),
            request: None,
            response: Some(self),
        }
    }
}

/// The response envelope, serialised without cloning the response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdmissionReviewOut<'a> {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) response: &'a AdmissionResponse,
}

// === The one decoder ===

/// How much of `request.object` a decode keeps.
pub trait Keep {
    /// Reads `request.object`.
    ///
    /// # Errors
    /// Malformed JSON, or a kept string over
    /// [`MAX_KEPT_STRING_BYTES`](super::facts::MAX_KEPT_STRING_BYTES).
    fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeptObject, D::Error>;
}

/// Only what a decision reads (the server): see [`super::facts::OBJECT`]
/// and its bounds.
#[derive(Debug)]
pub enum Sizing {}

/// All of it (the CLI, which prints the patched object).
#[derive(Debug)]
pub enum Whole {}

/// A policy ConfigMap's `kind` and `data["policy.yaml"]` only (the policy
/// validating webhook), within the same bounds as [`Sizing`].
#[derive(Debug)]
pub enum PolicyData {}

impl Keep for PolicyData {
    fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeptObject, D::Error> {
        policy_configmap_object(deserializer)
    }
}

impl Keep for Sizing {
    fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeptObject, D::Error> {
        sizing_object(deserializer)
    }
}

impl Keep for Whole {
    fn object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KeptObject, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(if value.is_null() {
            KeptObject::Absent
        } else {
            KeptObject::Kept(value)
        })
    }
}

/// An AdmissionReview as it arrives: the envelope and the request fields a
/// decision uses; everything else (`oldObject`, `userInfo`, …) is parsed
/// and skipped.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
struct Incoming<K: Keep> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request: Option<IncomingRequest<K>>,
}

#[derive(Debug, Deserialize)]
#[serde(bound = "")]
struct IncomingRequest<K: Keep> {
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default, deserialize_with = "K::object")]
    object: KeptObject,
    #[serde(skip)]
    keep: PhantomData<K>,
}

/// Why a body is not an AdmissionReview this webhook can answer (a 400
/// from the server, exit 2 from the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not JSON, or not the AdmissionReview shape (the decoder's message).
    Undecodable(String),
    /// Another `apiVersion` or `kind` than `admission.k8s.io/v1`
    /// `AdmissionReview`.
    Envelope {
        /// As sent, capped.
        api_version: String,
        /// As sent, capped.
        kind: String,
    },
    /// No `request`.
    NoRequest,
    /// `request.uid` empty or absent: nothing to answer to.
    NoUid,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Undecodable(message) => write!(f, "undecodable AdmissionReview: {message}"),
            WireError::Envelope { api_version, kind } => write!(
                f,
                "expected apiVersion {ADMISSION_API_VERSION} kind AdmissionReview, got {api_version:?} {kind:?}"
            ),
            WireError::NoRequest => f.write_str("AdmissionReview has no request"),
            WireError::NoUid => f.write_str("AdmissionReview request has no uid"),
        }
    }
}

impl std::error::Error for WireError {}

impl<K: Keep> Incoming<K> {
    /// The envelope checks, the same for every caller.
    fn into_request(self) -> Result<AdmissionRequest, WireError> {
        if self.api_version != ADMISSION_API_VERSION || self.kind != "AdmissionReview" {
            return Err(WireError::Envelope {
                api_version: capped(&self.api_version).into_owned(),
                kind: capped(&self.kind).into_owned(),
            });
        }
        let request = self.request.ok_or(WireError::NoRequest)?;
        if request.uid.is_empty() {
            return Err(WireError::NoUid);
        }
        let (object, object_over_bound) = match request.object {
            KeptObject::Absent => (None, None),
            KeptObject::Kept(object) => (Some(object), None),
            KeptObject::OverBound(why) => (None, Some(why)),
        };
        Ok(AdmissionRequest {
            uid: request.uid,
            kind: request.kind,
            resource: Value::Null,
            sub_resource: None,
            name: request.name,
            namespace: request.namespace,
            operation: request.operation,
            user_info: Value::Null,
            object,
            object_over_bound,
            old_object: None,
            dry_run: Value::Null,
            options: Value::Null,
        })
    }
}

/// Decodes and checks an AdmissionReview body (JSON), keeping `K` of the
/// object.
///
/// # Errors
/// [`WireError`] naming what is wrong.
pub fn decode<K: Keep>(body: &[u8]) -> Result<AdmissionRequest, WireError> {
    serde_json::from_slice::<Incoming<K>>(body)
        .map_err(|error| WireError::Undecodable(error.to_string()))?
        .into_request()
}

/// Decodes and checks an AdmissionReview already parsed (from JSON or
/// YAML), naming the path of a field of the wrong type.
///
/// # Errors
/// [`WireError`] naming what is wrong.
pub fn decode_value<K: Keep>(document: Value) -> Result<AdmissionRequest, WireError> {
    serde_path_to_error::deserialize::<_, Incoming<K>>(document)
        .map_err(|error| WireError::Undecodable(format!("{}: {}", error.path(), error.inner())))?
        .into_request()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_what_decisions_read_and_skips_the_rest() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "ns", "operation": "CREATE", "userInfo": {"username": "x"},
                "oldObject": {"big": [1, 2, 3]},
                "object": {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"x": 1}]},
                    "spec": {"containers": [
                        {"name": "compute", "env": [{"name": "A", "value": "1"}],
                         "resources": {"requests": {"cpu": "1"}}},
                        {"name": "side", "resources": "not-a-map"}],
                      "volumes": [{"name": "v"}], "runtimeClassName": "kata-qemu"}}}
        });
        let request = decode::<Sizing>(body.to_string().as_bytes()).expect("decodes");
        assert_eq!(
            request.object.expect("object"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"containers": [
                    {"name": "compute", "resources": {"requests": {"cpu": "1"}}},
                    {"name": "side", "resources": "not-a-map"}],
                  "runtimeClassName": "kata-qemu"}})
        );
        assert_eq!(request.uid, "u");
    }

    #[test]
    fn an_object_over_the_kept_bytes_is_not_kept_and_the_rest_is_still_read() {
        use crate::admission::facts::{KeptBytes, MAX_KEPT_BYTES};
        // Containers of one kept field each take a whole B-tree node: this
        // many nodes alone are over the bound, in a body of under 300 KB.
        let containers = |count: usize| vec![r#"{"name":0}"#; count].join(",");
        let review = |containers: &str| {
            format!(
                r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {{"object": {{"spec": {{"containers": [{containers}]}}}}, "uid": "after"}}}}"#
            )
        };
        let body = review(&containers(MAX_KEPT_BYTES / KeptBytes::MAP_NODE + 1));
        assert!(body.len() < 300_000, "{}", body.len());
        let request = decode::<Sizing>(body.as_bytes()).expect("decodes");
        // The uid comes after the object, and is read.
        assert_eq!(request.uid, "after");
        assert!(request.object.is_none(), "the object was kept");
        let why = request.object_over_bound.expect("why");
        assert!(why.contains(&MAX_KEPT_BYTES.to_string()), "{why}");
        // What follows the bound is still parsed: broken JSON still fails.
        let broken = body.replacen(r#""uid": "after""#, r#""uid": "after",]"#, 1);
        assert!(decode::<Sizing>(broken.as_bytes()).is_err());
        // Half as many as the bound holds (a container is its node, its
        // slot with the list's doubling, its map and its value) are kept.
        let fits = MAX_KEPT_BYTES / (2 * (KeptBytes::MAP_NODE + 4 * KeptBytes::VALUE));
        let request = decode::<Sizing>(review(&containers(fits)).as_bytes()).expect("decodes");
        assert_eq!(request.object_over_bound, None);
        let kept = request.object.expect("kept");
        assert_eq!(
            kept["spec"]["containers"].as_array().map(Vec::len),
            Some(fits)
        );
    }

    #[test]
    fn wrong_types_are_kept_whole_and_bad_json_still_fails() {
        let body = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "object": {"spec": {"containers": {"compute": 1}}, "metadata": "x"}}}"#;
        let object = decode::<Sizing>(body.as_bytes())
            .expect("decodes")
            .object
            .expect("object");
        assert_eq!(
            object,
            json!({"spec": {"containers": {"compute": 1}}, "metadata": "x"})
        );
        let truncated = r#"{"request": {"uid": "u", "object": {"spec": {"volumes": [1, 2"#;
        assert!(decode::<Sizing>(truncated.as_bytes()).is_err());
        let skipped_but_broken =
            r#"{"request": {"uid": "u", "object": {"spec": {"volumes": [1, }]}}}}"#;
        assert!(decode::<Sizing>(skipped_but_broken.as_bytes()).is_err());
    }

    #[test]
    fn the_envelope_is_checked_once_for_every_caller() {
        let review = |api_version: &str, kind: &str, uid: &str| json!({"apiVersion": api_version, "kind": kind, "request": {"uid": uid}});
        let ok = review(ADMISSION_API_VERSION, "AdmissionReview", "u");
        assert_eq!(
            decode::<Sizing>(ok.to_string().as_bytes()).expect("ok").uid,
            "u"
        );
        assert_eq!(decode_value::<Whole>(ok).expect("ok").uid, "u");
        for (bad, expected) in [
            (
                review("admission.k8s.io/v1beta1", "AdmissionReview", "u"),
                WireError::Envelope {
                    api_version: "admission.k8s.io/v1beta1".into(),
                    kind: "AdmissionReview".into(),
                },
            ),
            (
                review(ADMISSION_API_VERSION, "Pod", "u"),
                WireError::Envelope {
                    api_version: ADMISSION_API_VERSION.into(),
                    kind: "Pod".into(),
                },
            ),
            (
                review(ADMISSION_API_VERSION, "AdmissionReview", ""),
                WireError::NoUid,
            ),
            (
                json!({"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview"}),
                WireError::NoRequest,
            ),
        ] {
            assert_eq!(
                decode::<Sizing>(bad.to_string().as_bytes()),
                Err(expected.clone())
            );
            assert_eq!(decode_value::<Whole>(bad), Err(expected));
        }
        assert_eq!(
            decode_value::<Whole>(json!({"apiVersion": ADMISSION_API_VERSION,
                "kind": "AdmissionReview", "request": {"uid": "u", "kind": "Pod"}})),
            Err(WireError::Undecodable(
                "request.kind: invalid type: string \"Pod\", expected struct GroupVersionKind"
                    .into()
            ))
        );
    }
}
