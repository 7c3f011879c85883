//! The `admission.k8s.io/v1` wire types, as the API documents them.
//!
//! kube-core has these types too, but it serialises `response.patch` as a
//! JSON array of numbers (three times the size of the documented base64
//! string) and its `AdmissionResponse::invalid()` drops the request's uid.
//! The objects themselves stay raw [`serde_json::Value`]s so that fields we
//! do not know survive untouched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    /// Denied with `code` and `message`.
    #[must_use]
    pub fn deny(uid: &str, code: u16, message: String) -> AdmissionResponse {
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
