//! Hostile and broken AdmissionReviews through the router (`oneshot` on
//! `POST /mutate`, no socket), each with its exact expected outcome
//! (SPEC §3: "Bad input never crashes it and never yields a 500").
//!
//! The router runs the example policy (`examples/policy.yaml`: a `dev`
//! profile selected by the namespace label `tier=dev`, Kata classes), the
//! example VMI directory (`examples/`, VMI `dev-a/ci-runner-01`) and the
//! namespace `dev-a` labelled `tier=dev`. Every case states its status, and
//! for a 200 whether it is allowed, whether a patch comes back, and which
//! warning. On top of that every 200 is checked by [`check_answer`]: the
//! request's uid comes back, a patch is base64 of a JSON array that applies
//! to the request's object and touches nothing but the sized fields, a
//! failed decision ("could not size") carries no patch, and no panic was
//! counted.

use crate::support::repo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;
use virt_sizer::admission::{AdmissionReview, GroupVersionKind};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::vmi_source::VmiDirectory;
use virt_sizer::server::{self, AppState, StaticNamespaces};
use virt_sizer::sizing::Quantity;

use crate::support::{remove, set};

/// The example launcher Pod review (namespace `dev-a`, VMI `ci-runner-01`).
pub(crate) const EXAMPLE_REVIEW: &str = include_str!("../../examples/launcher-pod-dev.json");
/// The example RuntimeClass review (handler `kata-qemu`).
pub(crate) const EXAMPLE_RUNTIME_CLASS: &str =
    include_str!("../../examples/runtimeclass-kata-qemu.json");
/// The uid of [`EXAMPLE_REVIEW`].
const EXAMPLE_UID: &str = "7f3b1c2a-0000-4000-8000-000000000001";
const JSON: Option<&str> = Some("application/json");

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
    let mut request = Request::post("/mutate");
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

// === The table ===

/// What a case must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// That status (400 or 413), its body containing the text.
    Rejected(StatusCode, &'static str),
    /// 200, allowed, no patch, no warning: not ours.
    Skipped,
    /// 200, allowed, no patch, a warning "could not size" containing the
    /// text (onError: Allow).
    CouldNotSize(&'static str),
    /// 200, allowed, a patch, and a warning containing the text.
    Patched(&'static str),
}

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: fn() -> Vec<u8>,
    expect: Expect,
}

fn case(
    name: &'static str,
    content_type: Option<&'static str>,
    body: fn() -> Vec<u8>,
    expect: Expect,
) -> Case {
    Case {
        name,
        content_type,
        body,
        expect,
    }
}

fn example() -> Value {
    serde_json::from_str(EXAMPLE_REVIEW).expect("example review")
}

fn bytes(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("serialises")
}

/// The example review, edited.
fn review_edit(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = example();
    edit(&mut review);
    bytes(&review)
}

/// The example review with its launcher Pod edited.
fn launcher(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    review_edit(|review| edit(&mut review["request"]["object"]))
}

/// The example launcher Pod with the compute container's memory request
/// set to `value`.
fn memory_request(value: Value) -> Vec<u8> {
    launcher(|pod| set(pod, "/spec/containers/0/resources/requests/memory", value))
}

/// A review of `object` (group, kind) in `dev-a` on `operation`.
fn object_review(group: &str, kind: &str, object: Value, operation: &str) -> Vec<u8> {
    review_edit(|review| {
        let request = &mut review["request"];
        request["kind"] = json!({"group": group, "version": "v1", "kind": kind});
        request["operation"] = json!(operation);
        request["object"] = object;
    })
}

/// A Pod under the `kata-qemu` class with one container's resources.
fn kata_pod(resources: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sandbox", "namespace": "dev-a", "labels": {"app": "web"}},
        "spec": {
            "runtimeClassName": "kata-qemu",
            "containers": [{"name": "web", "image": "nginx:1.27", "resources": resources}],
        },
    })
}

/// The example review padded with trailing whitespace to `length` bytes.
fn padded_example(length: usize) -> Vec<u8> {
    let mut body = EXAMPLE_REVIEW.as_bytes().to_vec();
    body.resize(length, b' ');
    body
}

/// `depth` nested arrays, as JSON text.
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<Case> {
    use Expect::{CouldNotSize, Patched, Rejected, Skipped};
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    vec![
        // --- The envelope ---
        case(
            "baseline_example_is_sized",
            JSON,
            || EXAMPLE_REVIEW.into(),
            Patched("[profile dev]"),
        ),
        case(
            "truncated_json",
            JSON,
            || EXAMPLE_REVIEW.as_bytes()[..EXAMPLE_REVIEW.len() / 2].to_vec(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "empty_body",
            JSON,
            Vec::new,
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "json_null",
            JSON,
            || b"null".to_vec(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "json_array",
            JSON,
            || b"[1, 2, 3]".to_vec(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "json_string",
            JSON,
            || br#""AdmissionReview""#.to_vec(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "not_utf8",
            JSON,
            || vec![0xff, 0xfe, b'{', 0x80, b'}'],
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "utf8_bom_before_the_json",
            JSON,
            || [b"\xef\xbb\xbf".as_slice(), EXAMPLE_REVIEW.as_bytes()].concat(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "trailing_garbage_after_the_review",
            JSON,
            || [EXAMPLE_REVIEW.as_bytes(), b" }x"].concat(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "two_concatenated_reviews",
            JSON,
            || [EXAMPLE_REVIEW, EXAMPLE_REVIEW].concat().into_bytes(),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "api_version_v1beta1",
            JSON,
            || review_edit(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            Rejected(BAD, "expected apiVersion admission.k8s.io/v1"),
        ),
        case(
            "api_version_missing",
            JSON,
            || review_edit(|r| remove(r, "/apiVersion")),
            Rejected(BAD, "expected apiVersion admission.k8s.io/v1"),
        ),
        case(
            "api_version_a_number",
            JSON,
            || review_edit(|r| r["apiVersion"] = json!(1)),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "kind_not_admission_review",
            JSON,
            || review_edit(|r| r["kind"] = json!("ConversionReview")),
            Rejected(BAD, "kind AdmissionReview"),
        ),
        case(
            "request_missing",
            JSON,
            || review_edit(|r| remove(r, "/request")),
            Rejected(BAD, "has no request"),
        ),
        case(
            "request_null",
            JSON,
            || review_edit(|r| r["request"] = Value::Null),
            Rejected(BAD, "has no request"),
        ),
        case(
            "request_a_list",
            JSON,
            || review_edit(|r| r["request"] = json!([])),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "uid_missing",
            JSON,
            || review_edit(|r| remove(r, "/request/uid")),
            Rejected(BAD, "missing field `uid`"),
        ),
        case(
            "uid_a_number",
            JSON,
            || review_edit(|r| r["request"]["uid"] = json!(42)),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "uid_null",
            JSON,
            || review_edit(|r| r["request"]["uid"] = Value::Null),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "uid_empty",
            JSON,
            || review_edit(|r| r["request"]["uid"] = json!("")),
            Rejected(BAD, "has no uid"),
        ),
        case(
            "uid_unicode_is_echoed",
            JSON,
            || review_edit(|r| r["request"]["uid"] = json!("üñí-😀-\u{202e}-\u{0}")),
            Patched("[profile dev]"),
        ),
        case(
            "uid_duplicate_key",
            JSON,
            || {
                EXAMPLE_REVIEW
                    .replacen("\"uid\": \"7f3b", "\"uid\": \"other\", \"uid\": \"7f3b", 1)
                    .into_bytes()
            },
            Rejected(BAD, "duplicate field `uid`"),
        ),
        case(
            "request_kind_a_string",
            JSON,
            || review_edit(|r| r["request"]["kind"] = json!("Pod")),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "namespace_a_number",
            JSON,
            || review_edit(|r| r["request"]["namespace"] = json!(7)),
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        case(
            "unknown_top_level_fields_are_ignored",
            JSON,
            || {
                review_edit(|r| {
                    r["extra"] = json!({"a": [1, 2]});
                    r["request"]["extra"] = json!(null);
                })
            },
            Patched("[profile dev]"),
        ),
        // --- Content type and size ---
        case(
            "content_type_text_plain",
            Some("text/plain"),
            || EXAMPLE_REVIEW.into(),
            Rejected(BAD, "Content-Type must be application/json"),
        ),
        case(
            "content_type_missing",
            None,
            || EXAMPLE_REVIEW.into(),
            Rejected(BAD, "Content-Type must be application/json"),
        ),
        case(
            "content_type_json_suffix_lookalike",
            Some("application/jsonx"),
            || EXAMPLE_REVIEW.into(),
            Rejected(BAD, "Content-Type must be application/json"),
        ),
        case(
            "content_type_json_with_charset",
            Some("application/json; charset=utf-8"),
            || EXAMPLE_REVIEW.into(),
            Patched("[profile dev]"),
        ),
        case(
            "content_type_json_upper_case",
            Some("Application/JSON"),
            || EXAMPLE_REVIEW.into(),
            Patched("[profile dev]"),
        ),
        case(
            "body_one_byte_over_the_cap",
            JSON,
            || padded_example(server::MAX_BODY_BYTES + 1),
            Rejected(StatusCode::PAYLOAD_TOO_LARGE, ""),
        ),
        case(
            "body_exactly_at_the_cap_valid",
            JSON,
            || padded_example(server::MAX_BODY_BYTES),
            Patched("[profile dev]"),
        ),
        case(
            "body_exactly_at_the_cap_invalid",
            JSON,
            || {
                let mut body = vec![b'{'; 1];
                body.resize(server::MAX_BODY_BYTES, b'x');
                body
            },
            Rejected(BAD, "undecodable AdmissionReview"),
        ),
        // --- Nesting and duplicates ---
        case(
            "deeply_nested_arrays_in_an_annotation_the_sizer_reads",
            JSON,
            || {
                let nested = nested_arrays(10_000);
                EXAMPLE_REVIEW
                    .replacen(
                        "\"annotations\": {",
                        &format!("\"annotations\": {{\"x-unknown\": {nested}, "),
                        1,
                    )
                    .into_bytes()
            },
            Rejected(BAD, "recursion limit exceeded"),
        ),
        case(
            "deeply_nested_arrays_in_an_ignored_field",
            JSON,
            || {
                let nested = nested_arrays(10_000);
                EXAMPLE_REVIEW
                    .replacen(
                        "\"kind\": \"AdmissionReview\",",
                        &format!("\"kind\": \"AdmissionReview\", \"x-unknown\": {nested},"),
                        1,
                    )
                    .into_bytes()
            },
            Patched("[profile dev]"),
        ),
        case(
            "duplicate_memory_key_last_wins",
            JSON,
            || {
                EXAMPLE_REVIEW
                    .replacen(
                        "\"memory\": \"2404Mi\"",
                        "\"memory\": \"garbage\", \"memory\": \"2404Mi\"",
                        1,
                    )
                    .into_bytes()
            },
            Patched("[profile dev]"),
        ),
        case(
            "duplicate_spec_key_last_wins",
            JSON,
            || {
                let review = example();
                let spec =
                    serde_json::to_string(&review["request"]["object"]["spec"]).expect("json");
                EXAMPLE_REVIEW
                    .replacen(
                        "\"spec\": {",
                        &format!(
                            "\"spec\": {{\"containers\": 7}}, \"spec\": {spec}, \"ignored\": {{"
                        ),
                        1,
                    )
                    .into_bytes()
            },
            Patched("[profile dev]"),
        ),
        case(
            "json_number_beyond_f64_in_the_object",
            JSON,
            || {
                EXAMPLE_REVIEW
                    .replacen("\"memory\": \"2404Mi\"", "\"memory\": 1e400", 1)
                    .into_bytes()
            },
            Rejected(BAD, "number out of range"),
        ),
        // --- Not ours: allowed unchanged ---
        case(
            "object_a_string",
            JSON,
            || launcher(|pod| *pod = json!("a Pod")),
            Skipped,
        ),
        case(
            "object_a_number",
            JSON,
            || launcher(|pod| *pod = json!(12345)),
            Skipped,
        ),
        case(
            "object_missing",
            JSON,
            || review_edit(|r| remove(r, "/request/object")),
            Skipped,
        ),
        case(
            "deployment_with_launcher_labels",
            JSON,
            || {
                let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "dev-a", "labels": {"kubevirt.io": "virt-launcher"}},
                "spec": {"template": {"metadata": {"labels": {"kubevirt.io": "virt-launcher"}}}}});
                set(
                    &mut deployment,
                    "/spec/template/spec",
                    example()["request"]["object"]["spec"].clone(),
                );
                object_review("apps", "Deployment", deployment, "CREATE")
            },
            Skipped,
        ),
        case(
            "service_with_launcher_labels",
            JSON,
            || {
                object_review(
                    "",
                    "Service",
                    json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "vm-ssh", "namespace": "dev-a", "labels": {"kubevirt.io": "virt-launcher"}},
            "spec": {"selector": {"kubevirt.io/domain": "ci-runner-01"}, "ports": [{"port": 22}]}}),
                    "CREATE",
                )
            },
            Skipped,
        ),
        case(
            "operation_delete",
            JSON,
            || review_edit(|r| r["request"]["operation"] = json!("DELETE")),
            Skipped,
        ),
        case(
            "operation_connect",
            JSON,
            || review_edit(|r| r["request"]["operation"] = json!("CONNECT")),
            Skipped,
        ),
        case(
            "operation_update_of_a_launcher_pod",
            JSON,
            || {
                review_edit(|r| {
                    r["request"]["operation"] = json!("UPDATE");
                    r["request"]["oldObject"] = r["request"]["object"].clone();
                })
            },
            Skipped,
        ),
        case(
            "operation_lower_case",
            JSON,
            || review_edit(|r| r["request"]["operation"] = json!("create")),
            Skipped,
        ),
        case(
            "operation_missing",
            JSON,
            || review_edit(|r| remove(r, "/request/operation")),
            Skipped,
        ),
        case(
            "labels_not_a_map",
            JSON,
            || launcher(|pod| pod["metadata"]["labels"] = json!("kubevirt.io=virt-launcher")),
            Skipped,
        ),
        case(
            "runtime_class_unknown_handler",
            JSON,
            || {
                let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
                review["request"]["object"]["handler"] = json!("runsc");
                bytes(&review)
            },
            Skipped,
        ),
        // --- Launcher Pods that cannot be sized: allowed, unchanged, warned ---
        case(
            "containers_missing",
            JSON,
            || launcher(|pod| remove(pod, "/spec/containers")),
            CouldNotSize("spec.containers: missing or not a list"),
        ),
        case(
            "containers_not_a_list",
            JSON,
            || launcher(|pod| pod["spec"]["containers"] = json!({"name": "compute"})),
            CouldNotSize("spec.containers: missing or not a list"),
        ),
        case(
            "containers_empty",
            JSON,
            || launcher(|pod| pod["spec"]["containers"] = json!([])),
            CouldNotSize("no container named compute"),
        ),
        case(
            "no_container_named_compute",
            JSON,
            || launcher(|pod| pod["spec"]["containers"][0]["name"] = json!("Compute")),
            CouldNotSize("no container named compute"),
        ),
        case(
            "spec_not_an_object",
            JSON,
            || launcher(|pod| pod["spec"] = json!(["containers"])),
            CouldNotSize("spec.containers: missing or not a list"),
        ),
        case(
            "requests_a_string",
            JSON,
            || launcher(|pod| pod["spec"]["containers"][0]["resources"]["requests"] = json!("abc")),
            CouldNotSize("spec.containers[0].resources.requests: expected a map of quantities"),
        ),
        case(
            "limits_a_list",
            JSON,
            || launcher(|pod| pod["spec"]["containers"][0]["resources"]["limits"] = json!(["1Gi"])),
            CouldNotSize("spec.containers[0].resources.limits: expected a map of quantities"),
        ),
        case(
            "quantity_1e400",
            JSON,
            || memory_request(json!("1e400")),
            CouldNotSize("requests.memory: invalid quantity \"1e400\""),
        ),
        case(
            "quantity_two_decimal_points",
            JSON,
            || memory_request(json!("1.5.5Gi")),
            CouldNotSize("requests.memory: invalid quantity \"1.5.5Gi\""),
        ),
        case(
            "quantity_empty",
            JSON,
            || memory_request(json!("")),
            CouldNotSize("requests.memory: invalid quantity \"\""),
        ),
        case(
            "quantity_fullwidth_digit",
            JSON,
            || memory_request(json!("１Gi")),
            CouldNotSize("requests.memory: invalid quantity"),
        ),
        case(
            "quantity_trailing_space",
            JSON,
            || memory_request(json!("1Gi ")),
            CouldNotSize("requests.memory: invalid quantity \"1Gi \""),
        ),
        case(
            "quantity_hex",
            JSON,
            || memory_request(json!("0x10")),
            CouldNotSize("requests.memory: invalid quantity \"0x10\""),
        ),
        case(
            "quantity_bool",
            JSON,
            || memory_request(json!(true)),
            CouldNotSize("requests.memory: expected a quantity, got true"),
        ),
        case(
            "quantity_null",
            JSON,
            || memory_request(Value::Null),
            CouldNotSize("requests.memory: expected a quantity, got null"),
        ),
        case(
            "quantity_object",
            JSON,
            || memory_request(json!({"value": "1Gi"})),
            CouldNotSize("requests.memory: expected a quantity"),
        ),
        case(
            "cpu_limit_garbage",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/spec/containers/0/resources/limits/cpu",
                        json!("lots"),
                    );
                })
            },
            CouldNotSize("limits.cpu: invalid quantity \"lots\""),
        ),
        case(
            "overhead_annotation_garbage",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
                        json!("a lot"),
                    );
                })
            },
            CouldNotSize(
                "metadata.annotations[kubevirt.io/memory-overhead-bytes]: invalid quantity \"a lot\"",
            ),
        ),
        case(
            "overhead_annotation_1e20",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
                        json!("1e20"),
                    );
                })
            },
            CouldNotSize("arithmetic overflow"),
        ),
        case(
            "overhead_annotation_negative",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
                        json!("-5Mi"),
                    );
                })
            },
            CouldNotSize("negative value -5Mi"),
        ),
        case(
            "vmi_less_launcher_pod",
            JSON,
            || {
                launcher(|pod| {
                    remove(pod, "/metadata/ownerReferences");
                    remove(pod, "/metadata/annotations/kubevirt.io~1domain");
                })
            },
            CouldNotSize("(unnamed: no owner reference or kubevirt.io/domain) not found"),
        ),
        case(
            "vmi_that_does_not_exist",
            JSON,
            || {
                launcher(|pod| {
                    pod["metadata"]["ownerReferences"][0]["name"] = json!("ghost");
                })
            },
            CouldNotSize("virtual machine instance dev-a/ghost not found"),
        ),
        case(
            "resources_a_string",
            JSON,
            || launcher(|pod| pod["spec"]["containers"][0]["resources"] = json!("big")),
            CouldNotSize("spec.containers[0].resources"),
        ),
        // --- Launcher Pods that are odd but sizable ---
        case(
            "quantity_9999ei_is_capped_and_resized",
            JSON,
            || memory_request(json!("9999Ei")),
            Patched("memory request 9999Ei ->"),
        ),
        case(
            "quantity_as_json_number",
            JSON,
            || memory_request(json!(1_073_741_824_u64)),
            Patched("memory request 1073741824 ->"),
        ),
        case(
            "compute_resources_null",
            JSON,
            || launcher(|pod| pod["spec"]["containers"][0]["resources"] = Value::Null),
            Patched("[profile dev]"),
        ),
        case(
            "compute_resources_missing",
            JSON,
            || launcher(|pod| remove(pod, "/spec/containers/0/resources")),
            Patched("[profile dev]"),
        ),
        case(
            "annotations_null",
            JSON,
            || launcher(|pod| pod["metadata"]["annotations"] = Value::Null),
            Patched("[profile dev]"),
        ),
        case(
            "owner_references_a_string_domain_annotation_names_the_vmi",
            JSON,
            || launcher(|pod| pod["metadata"]["ownerReferences"] = json!("ci-runner-01")),
            Patched("[profile dev]"),
        ),
        case(
            "compute_last_of_two_same_named_containers",
            JSON,
            || {
                launcher(|pod| {
                    let compute = pod["spec"]["containers"][0].clone();
                    pod["spec"]["containers"]
                        .as_array_mut()
                        .expect("list")
                        .push(compute);
                })
            },
            Patched("[profile dev]"),
        ),
        case(
            "pod_overhead_is_kept",
            JSON,
            || {
                launcher(|pod| {
                    pod["spec"]["overhead"] = json!({"cpu": "250m", "memory": "garbage"});
                })
            },
            Patched("[profile dev]"),
        ),
        case(
            "profile_annotation_naming_a_missing_profile",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/virt-sizer.io~1profile",
                        json!("no-such-profile"),
                    );
                })
            },
            Patched("\"no-such-profile\" requested by annotation virt-sizer.io/profile refused"),
        ),
        case(
            "profile_annotation_a_number_is_ignored",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/virt-sizer.io~1profile",
                        json!(3),
                    );
                })
            },
            Patched("[profile dev]"),
        ),
        case(
            "unicode_and_emoji_in_names_labels_annotations",
            JSON,
            || {
                launcher(|pod| {
                    pod["metadata"]["generateName"] = json!("virt-launcher-🚀-ünï-");
                    set(
                        pod,
                        "/metadata/labels/emoji.example.com~1🐄",
                        json!("moo 🐄 \u{202e}"),
                    );
                    set(
                        pod,
                        "/metadata/annotations/notes.example.com~1текст",
                        json!("日本語 \u{0} \u{ffff} 😀"),
                    );
                    pod["spec"]["containers"][1]["name"] = json!("консоль-😀");
                })
            },
            Patched("[profile dev]"),
        ),
        case(
            "a_512_container_launcher_pod_compute_last",
            JSON,
            || {
                launcher(|pod| {
                    let containers = pod["spec"]["containers"].as_array_mut().expect("list");
                    let compute = containers.remove(0);
                    for index in 0..server::slim::MAX_CONTAINERS - 2 {
                        containers.push(json!({"name": format!("c{index}"), "image": "busybox", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "2m"}}}));
                    }
                    containers.push(compute);
                })
            },
            Patched("[profile dev]"),
        ),
        case(
            "containers_over_the_server_bound",
            JSON,
            || {
                launcher(|pod| {
                    let containers = pod["spec"]["containers"].as_array_mut().expect("list");
                    for index in containers.len()..=server::slim::MAX_CONTAINERS {
                        containers.push(json!({"name": format!("c{index}")}));
                    }
                })
            },
            Rejected(BAD, "`containers`: more than 512 entries"),
        ),
        case(
            "owner_references_amplification_shape",
            JSON,
            || {
                let zeros = vec!["0"; 1_000_000].join(",");
                EXAMPLE_REVIEW
                    .replacen(
                        "\"ownerReferences\": [",
                        &format!("\"ownerReferences\": [{zeros}, "),
                        1,
                    )
                    .into_bytes()
            },
            Rejected(BAD, "`ownerReferences`: more than 64 entries"),
        ),
        case(
            "negative_memory_request_in_the_pod",
            JSON,
            || memory_request(json!("-1")),
            CouldNotSize("spec.containers[0].resources.requests.memory: negative value -1"),
        ),
        case(
            "overhead_annotation_beyond_int64",
            JSON,
            || {
                launcher(|pod| {
                    set(
                        pod,
                        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
                        json!("9223372036854775807"),
                    );
                })
            },
            CouldNotSize("arithmetic overflow"),
        ),
        case(
            "a_512_container_kata_pod_with_requests_only",
            JSON,
            || {
                let mut pod = kata_pod(json!({"requests": {"cpu": "1m", "memory": "1Mi"}}));
                let containers = pod["spec"]["containers"].as_array_mut().expect("list");
                for index in 1..server::slim::MAX_CONTAINERS {
                    containers.push(json!({"name": format!("c{index}"), "image": "busybox",
                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}));
                }
                object_review("", "Pod", pod, "CREATE")
            },
            Patched("more changes"),
        ),
        case(
            "kata_pod_with_a_negative_limit",
            JSON,
            || {
                object_review(
                    "",
                    "Pod",
                    kata_pod(json!({"limits": {"memory": "-1Gi"}})),
                    "CREATE",
                )
            },
            CouldNotSize("spec.containers[0].resources.limits.memory: negative value -1Gi"),
        ),
        // --- Kata: RuntimeClasses and sandbox Pods ---
        case(
            "runtime_class_baseline_is_sized",
            JSON,
            || EXAMPLE_RUNTIME_CLASS.into(),
            Patched("overhead memory 160Mi -> "),
        ),
        case(
            "runtime_class_pod_fixed_memory_garbage",
            JSON,
            || {
                let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
                review["request"]["object"]["overhead"]["podFixed"]["memory"] = json!("garbage");
                bytes(&review)
            },
            CouldNotSize("overhead.podFixed.memory: invalid quantity \"garbage\""),
        ),
        case(
            "runtime_class_overhead_a_string",
            JSON,
            || {
                let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
                review["request"]["object"]["overhead"] = json!("lots");
                bytes(&review)
            },
            CouldNotSize("overhead: expected a map, got \"lots\""),
        ),
        case(
            "kata_pod_requests_garbage",
            JSON,
            || {
                object_review(
                    "",
                    "Pod",
                    kata_pod(json!({"requests": {"memory": "1.5.5Gi"}})),
                    "CREATE",
                )
            },
            CouldNotSize(
                "spec.containers[0].resources.requests.memory: invalid quantity \"1.5.5Gi\"",
            ),
        ),
        case(
            "kata_pod_containers_not_a_list",
            JSON,
            || {
                let mut pod = kata_pod(json!({}));
                pod["spec"]["containers"] = json!("web");
                object_review("", "Pod", pod, "CREATE")
            },
            CouldNotSize("spec.containers: missing or not a list"),
        ),
        case(
            "kata_pod_request_only_gets_limits",
            JSON,
            || {
                object_review(
                    "",
                    "Pod",
                    kata_pod(json!({"requests": {"cpu": "500m", "memory": "512Mi"}})),
                    "CREATE",
                )
            },
            Patched("memory limit none -> 512Mi"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_their_exact_answer_and_never_a_500() {
    let (router, state) = router();
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let body = (case.body)();
        let started = Instant::now();
        let (status, answer) = post(&router, case.content_type, body.clone()).await;
        let elapsed = started.elapsed();
        if let Err(why) = judge(case.expect, &body, status, &answer) {
            failures.push(format!("{}: {why}", case.name));
        }
        // Generous for a debug build on a loaded machine; the 50 000-container
        // Pods are the ones this bounds.
        if elapsed > Duration::from_secs(10) {
            failures.push(format!("{}: answered after {elapsed:?}", case.name));
        }
    }
    let metrics = state.metrics().render();
    if !metrics.contains("virt_sizer_admission_panics_total 0") {
        failures.push(format!("a panic was caught while deciding:\n{metrics}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "bad_input: {} hostile inputs answered as expected",
        cases.len()
    );
}

fn judge(expect: Expect, body: &[u8], status: StatusCode, answer: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(answer);
    let short = |text: &str| text.chars().take(600).collect::<String>();
    if let Expect::Rejected(expected, message) = expect {
        if status != expected {
            return Err(format!(
                "status {status}, expected {expected}: {}",
                short(&text)
            ));
        }
        if !text.contains(message) {
            return Err(format!("body {:?} lacks {message:?}", short(&text)));
        }
        return Ok(());
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}, expected 200: {}", short(&text)));
    }
    let answer = check_answer(body, answer)?;
    if !answer.verified {
        return Err("the request could not be read back to check the answer".into());
    }
    let response = answer.response;
    let warnings: Vec<String> = response["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let has_patch = response.get("patch").is_some();
    let failed = warnings
        .iter()
        .any(|warning| warning.contains("could not size"));
    let warned = |needle: &str| warnings.iter().any(|warning| warning.contains(needle));
    let problem = match expect {
        _ if response["allowed"] != true => Some("not allowed"),
        Expect::Rejected(..) => None,
        Expect::Skipped if has_patch => Some("a patch"),
        Expect::Skipped if !warnings.is_empty() => Some("warnings"),
        Expect::CouldNotSize(needle) if !failed || !warned(needle) => {
            Some("no matching could-not-size warning")
        }
        Expect::Patched(needle) if !has_patch || failed || !warned(needle) => {
            Some("no patch or no matching warning")
        }
        _ => None,
    };
    match problem {
        Some(problem) => Err(format!(
            "{problem}; expected {expect:?}, got {}",
            short(&response.to_string())
        )),
        None => Ok(()),
    }
}

/// Every quantity the patched compute container holds is a valid quantity
/// (a smoke check on the baseline that [`check_answer`] reads patches right).
#[tokio::test]
async fn the_baseline_patch_yields_valid_quantities() {
    let (router, _) = router();
    let (status, answer) = post(&router, JSON, EXAMPLE_REVIEW.into()).await;
    assert_eq!(status, StatusCode::OK);
    let response = check_answer(EXAMPLE_REVIEW.as_bytes(), &answer)
        .expect("invariants")
        .response;
    assert_eq!(response["uid"], EXAMPLE_UID);
    let ops = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&ops).expect("patch");
    let mut pod = example()["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("applies");
    for section in ["requests", "limits"] {
        for (name, value) in pod["spec"]["containers"][0]["resources"][section]
            .as_object()
            .into_iter()
            .flatten()
        {
            let text = value.as_str().expect("a string quantity");
            assert!(Quantity::parse(text).is_ok(), "{section}.{name}: {text}");
        }
    }
}
