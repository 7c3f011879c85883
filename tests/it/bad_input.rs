//! Hostile and broken AdmissionReviews through the router (`oneshot` on
//! `POST /mutate`, no socket), each with its exact expected outcome
//! ("bad input never crashes it and never yields a 500").
//!
//! The router ([`router`]) runs the example policy (`examples/policy.yaml`:
//! a `dev` profile selected by the namespace label `tier=dev`, Kata
//! classes), the example VMI directory (`examples/`, VMI
//! `dev-a/ci-runner-01`) and the namespace `dev-a` labelled `tier=dev`.
//! Every case is its own test (an rstest `#[case::name]` row) and states its
//! status, and for a 200 whether it is allowed, whether a patch comes back,
//! and which warning. On top of that every 200 is checked by
//! [`check_answer`]: the request's uid comes back, a patch is base64 of a
//! JSON array that applies to the request's object and touches nothing but
//! the sized fields, a failed decision ("could not size") carries no patch,
//! and no panic was counted.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use rstest::rstest;
use serde_json::{Value, json};
use virt_sizer::server;
use virt_sizer::sizing::Quantity;

// `hardening.rs` reaches the router through this module.
use crate::support::{EXAMPLE_REVIEW, EXAMPLE_RUNTIME_CLASS, check_answer, remove, set};
pub(crate) use crate::support::{post, router};

mod answers;
mod bodies;

use Expect::{CouldNotSize, Patched, Rejected, Skipped};
use answers::judge;
use bodies::{
    bytes, example, kata_pod, launcher, memory_request, nested_arrays, object_review,
    padded_example, review_edit,
};

/// The uid of [`EXAMPLE_REVIEW`].
const EXAMPLE_UID: &str = "7f3b1c2a-0000-4000-8000-000000000001";
const JSON: Option<&str> = Some("application/json");
const BAD: StatusCode = StatusCode::BAD_REQUEST;

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

/// One hostile body, sent alone to a fresh router: its exact answer, within
/// 10 s, and no panic caught while deciding.
#[rstest]
// --- The envelope ---
#[case::baseline_example_is_sized(JSON, EXAMPLE_REVIEW.into(), Patched("[profile dev]"))]
#[case::truncated_json(
    JSON,
    EXAMPLE_REVIEW.as_bytes()[..EXAMPLE_REVIEW.len() / 2].to_vec(),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::empty_body(JSON, Vec::new(), Rejected(BAD, "undecodable AdmissionReview"))]
#[case::json_null(JSON, b"null".to_vec(), Rejected(BAD, "undecodable AdmissionReview"))]
#[case::json_array(JSON, b"[1, 2, 3]".to_vec(), Rejected(BAD, "undecodable AdmissionReview"))]
#[case::json_string(
    JSON,
    br#""AdmissionReview""#.to_vec(),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::not_utf8(
    JSON,
    vec![0xff, 0xfe, b'{', 0x80, b'}'],
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::utf8_bom_before_the_json(
    JSON,
    [b"\xef\xbb\xbf".as_slice(), EXAMPLE_REVIEW.as_bytes()].concat(),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::trailing_garbage_after_the_review(
    JSON,
    [EXAMPLE_REVIEW.as_bytes(), b" }x"].concat(),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::two_concatenated_reviews(
    JSON,
    [EXAMPLE_REVIEW, EXAMPLE_REVIEW].concat().into_bytes(),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::api_version_v1beta1(
    JSON,
    review_edit(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
    Rejected(BAD, "expected apiVersion admission.k8s.io/v1"),
)]
#[case::api_version_missing(
    JSON,
    review_edit(|r| remove(r, "/apiVersion")),
    Rejected(BAD, "expected apiVersion admission.k8s.io/v1"),
)]
#[case::api_version_a_number(
    JSON,
    review_edit(|r| r["apiVersion"] = json!(1)),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::kind_not_admission_review(
    JSON,
    review_edit(|r| r["kind"] = json!("ConversionReview")),
    Rejected(BAD, "kind AdmissionReview"),
)]
#[case::request_missing(
    JSON,
    review_edit(|r| remove(r, "/request")),
    Rejected(BAD, "has no request"),
)]
#[case::request_null(
    JSON,
    review_edit(|r| r["request"] = Value::Null),
    Rejected(BAD, "has no request"),
)]
#[case::request_a_list(
    JSON,
    review_edit(|r| r["request"] = json!([])),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::uid_missing(
    JSON,
    review_edit(|r| remove(r, "/request/uid")),
    Rejected(BAD, "missing field `uid`"),
)]
#[case::uid_a_number(
    JSON,
    review_edit(|r| r["request"]["uid"] = json!(42)),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::uid_null(
    JSON,
    review_edit(|r| r["request"]["uid"] = Value::Null),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::uid_empty(
    JSON,
    review_edit(|r| r["request"]["uid"] = json!("")),
    Rejected(BAD, "has no uid"),
)]
#[case::uid_unicode_is_echoed(
    JSON,
    review_edit(|r| r["request"]["uid"] = json!("üñí-😀-\u{202e}-\u{0}")),
    Patched("[profile dev]"),
)]
#[case::uid_duplicate_key(
    JSON,
    EXAMPLE_REVIEW
        .replacen("\"uid\": \"7f3b", "\"uid\": \"other\", \"uid\": \"7f3b", 1)
        .into_bytes(),
    Rejected(BAD, "duplicate field `uid`"),
)]
#[case::request_kind_a_string(
    JSON,
    review_edit(|r| r["request"]["kind"] = json!("Pod")),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::namespace_a_number(
    JSON,
    review_edit(|r| r["request"]["namespace"] = json!(7)),
    Rejected(BAD, "undecodable AdmissionReview"),
)]
#[case::unknown_top_level_fields_are_ignored(
    JSON,
    review_edit(|r| {
        r["extra"] = json!({"a": [1, 2]});
        r["request"]["extra"] = json!(null);
    }),
    Patched("[profile dev]"),
)]
// --- Content type and size ---
#[case::content_type_text_plain(
    Some("text/plain"),
    EXAMPLE_REVIEW.into(),
    Rejected(BAD, "Content-Type must be application/json"),
)]
#[case::content_type_missing(
    None,
    EXAMPLE_REVIEW.into(),
    Rejected(BAD, "Content-Type must be application/json"),
)]
#[case::content_type_json_suffix_lookalike(
    Some("application/jsonx"),
    EXAMPLE_REVIEW.into(),
    Rejected(BAD, "Content-Type must be application/json"),
)]
#[case::content_type_json_with_charset(
    Some("application/json; charset=utf-8"),
    EXAMPLE_REVIEW.into(),
    Patched("[profile dev]"),
)]
#[case::content_type_json_upper_case(
    Some("Application/JSON"),
    EXAMPLE_REVIEW.into(),
    Patched("[profile dev]"),
)]
#[case::body_one_byte_over_the_cap(
    JSON,
    padded_example(server::MAX_BODY_BYTES + 1),
    Rejected(StatusCode::PAYLOAD_TOO_LARGE, ""),
)]
#[case::body_exactly_at_the_cap_valid(
    JSON,
    padded_example(server::MAX_BODY_BYTES),
    Patched("[profile dev]")
)]
#[case::body_exactly_at_the_cap_invalid(
    JSON,
    {
        let mut body = vec![b'{'; 1];
        body.resize(server::MAX_BODY_BYTES, b'x');
        body
    },
    Rejected(BAD, "undecodable AdmissionReview"),
)]
// --- Nesting and duplicates ---
#[case::deeply_nested_arrays_in_an_annotation_the_sizer_reads(
    JSON,
    {
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
)]
#[case::deeply_nested_arrays_in_an_ignored_field(
    JSON,
    {
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
)]
#[case::duplicate_memory_key_last_wins(
    JSON,
    EXAMPLE_REVIEW
        .replacen(
            "\"memory\": \"2404Mi\"",
            "\"memory\": \"garbage\", \"memory\": \"2404Mi\"",
            1,
        )
        .into_bytes(),
    Patched("[profile dev]"),
)]
#[case::duplicate_spec_key_last_wins(
    JSON,
    {
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
)]
#[case::json_number_beyond_f64_in_the_object(
    JSON,
    EXAMPLE_REVIEW
        .replacen("\"memory\": \"2404Mi\"", "\"memory\": 1e400", 1)
        .into_bytes(),
    Rejected(BAD, "number out of range"),
)]
// --- Not ours: allowed unchanged ---
#[case::object_a_string(JSON, launcher(|pod| *pod = json!("a Pod")), Skipped)]
#[case::object_a_number(JSON, launcher(|pod| *pod = json!(12345)), Skipped)]
#[case::object_missing(JSON, review_edit(|r| remove(r, "/request/object")), Skipped)]
#[case::deployment_with_launcher_labels(
    JSON,
    {
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
)]
#[case::service_with_launcher_labels(
    JSON,
    {
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
)]
#[case::operation_delete(
    JSON,
    review_edit(|r| r["request"]["operation"] = json!("DELETE")),
    Skipped,
)]
#[case::operation_connect(
    JSON,
    review_edit(|r| r["request"]["operation"] = json!("CONNECT")),
    Skipped,
)]
#[case::operation_update_of_a_launcher_pod(
    JSON,
    review_edit(|r| {
        r["request"]["operation"] = json!("UPDATE");
        r["request"]["oldObject"] = r["request"]["object"].clone();
    }),
    Skipped,
)]
#[case::operation_lower_case(
    JSON,
    review_edit(|r| r["request"]["operation"] = json!("create")),
    Skipped,
)]
#[case::operation_missing(JSON, review_edit(|r| remove(r, "/request/operation")), Skipped)]
#[case::labels_not_a_map(
    JSON,
    launcher(|pod| pod["metadata"]["labels"] = json!("kubevirt.io=virt-launcher")),
    Skipped,
)]
#[case::runtime_class_unknown_handler(
    JSON,
    {
        let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
        review["request"]["object"]["handler"] = json!("runsc");
        bytes(&review)
    },
    Skipped,
)]
// --- Launcher Pods that cannot be sized: allowed, unchanged, warned ---
#[case::containers_missing(
    JSON,
    launcher(|pod| remove(pod, "/spec/containers")),
    CouldNotSize("spec.containers: missing or not a list"),
)]
#[case::containers_not_a_list(
    JSON,
    launcher(|pod| pod["spec"]["containers"] = json!({"name": "compute"})),
    CouldNotSize("spec.containers: missing or not a list"),
)]
#[case::containers_empty(
    JSON,
    launcher(|pod| pod["spec"]["containers"] = json!([])),
    CouldNotSize("no container named compute"),
)]
#[case::no_container_named_compute(
    JSON,
    launcher(|pod| pod["spec"]["containers"][0]["name"] = json!("Compute")),
    CouldNotSize("no container named compute"),
)]
#[case::spec_not_an_object(
    JSON,
    launcher(|pod| pod["spec"] = json!(["containers"])),
    CouldNotSize("spec.containers: missing or not a list"),
)]
#[case::requests_a_string(
    JSON,
    launcher(|pod| pod["spec"]["containers"][0]["resources"]["requests"] = json!("abc")),
    CouldNotSize("spec.containers[0].resources.requests: expected a map of quantities"),
)]
#[case::limits_a_list(
    JSON,
    launcher(|pod| pod["spec"]["containers"][0]["resources"]["limits"] = json!(["1Gi"])),
    CouldNotSize("spec.containers[0].resources.limits: expected a map of quantities"),
)]
#[case::quantity_1e400(
    JSON,
    memory_request(json!("1e400")),
    CouldNotSize("requests.memory: invalid quantity \"1e400\""),
)]
#[case::quantity_two_decimal_points(
    JSON,
    memory_request(json!("1.5.5Gi")),
    CouldNotSize("requests.memory: invalid quantity \"1.5.5Gi\""),
)]
#[case::quantity_empty(
    JSON,
    memory_request(json!("")),
    CouldNotSize("requests.memory: invalid quantity \"\""),
)]
#[case::quantity_fullwidth_digit(
    JSON,
    memory_request(json!("１Gi")),
    CouldNotSize("requests.memory: invalid quantity"),
)]
#[case::quantity_trailing_space(
    JSON,
    memory_request(json!("1Gi ")),
    CouldNotSize("requests.memory: invalid quantity \"1Gi \""),
)]
#[case::quantity_hex(
    JSON,
    memory_request(json!("0x10")),
    CouldNotSize("requests.memory: invalid quantity \"0x10\""),
)]
#[case::quantity_bool(
    JSON,
    memory_request(json!(true)),
    CouldNotSize("requests.memory: expected a quantity, got true"),
)]
#[case::quantity_null(
    JSON,
    memory_request(Value::Null),
    CouldNotSize("requests.memory: expected a quantity, got null")
)]
#[case::quantity_object(
    JSON,
    memory_request(json!({"value": "1Gi"})),
    CouldNotSize("requests.memory: expected a quantity"),
)]
#[case::cpu_limit_garbage(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/spec/containers/0/resources/limits/cpu",
            json!("lots"),
        );
    }),
    CouldNotSize("limits.cpu: invalid quantity \"lots\""),
)]
#[case::overhead_annotation_garbage(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
            json!("a lot"),
        );
    }),
    CouldNotSize(
        "metadata.annotations[kubevirt.io/memory-overhead-bytes]: invalid quantity \"a lot\"",
    ),
)]
#[case::overhead_annotation_1e20(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
            json!("1e20"),
        );
    }),
    CouldNotSize("arithmetic overflow"),
)]
#[case::overhead_annotation_negative(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
            json!("-5Mi"),
        );
    }),
    CouldNotSize("negative value -5Mi"),
)]
#[case::vmi_less_launcher_pod(
    JSON,
    launcher(|pod| {
        remove(pod, "/metadata/ownerReferences");
        remove(pod, "/metadata/annotations/kubevirt.io~1domain");
    }),
    CouldNotSize("(unnamed: no owner reference or kubevirt.io/domain) not found"),
)]
#[case::vmi_that_does_not_exist(
    JSON,
    launcher(|pod| {
        pod["metadata"]["ownerReferences"][0]["name"] = json!("ghost");
    }),
    CouldNotSize("virtual machine instance dev-a/ghost not found"),
)]
#[case::resources_a_string(
    JSON,
    launcher(|pod| pod["spec"]["containers"][0]["resources"] = json!("big")),
    CouldNotSize("spec.containers[0].resources"),
)]
// --- Launcher Pods that are odd but sizable ---
#[case::quantity_9999ei_is_capped_and_resized(
    JSON,
    memory_request(json!("9999Ei")),
    Patched("memory request 9999Ei ->"),
)]
#[case::quantity_as_json_number(
    JSON,
    memory_request(json!(1_073_741_824_u64)),
    Patched("memory request 1073741824 ->"),
)]
#[case::compute_resources_null(
    JSON,
    launcher(|pod| pod["spec"]["containers"][0]["resources"] = Value::Null),
    Patched("[profile dev]"),
)]
#[case::compute_resources_missing(
    JSON,
    launcher(|pod| remove(pod, "/spec/containers/0/resources")),
    Patched("[profile dev]"),
)]
#[case::annotations_null(
    JSON,
    launcher(|pod| pod["metadata"]["annotations"] = Value::Null),
    Patched("[profile dev]"),
)]
#[case::owner_references_a_string_domain_annotation_names_the_vmi(
    JSON,
    launcher(|pod| pod["metadata"]["ownerReferences"] = json!("ci-runner-01")),
    Patched("[profile dev]"),
)]
#[case::compute_last_of_two_same_named_containers(
    JSON,
    launcher(|pod| {
        let compute = pod["spec"]["containers"][0].clone();
        pod["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(compute);
    }),
    Patched("[profile dev]"),
)]
#[case::pod_overhead_is_kept(
    JSON,
    launcher(|pod| {
        pod["spec"]["overhead"] = json!({"cpu": "250m", "memory": "garbage"});
    }),
    Patched("[profile dev]"),
)]
#[case::profile_annotation_naming_a_missing_profile(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/virt-sizer.io~1profile",
            json!("no-such-profile"),
        );
    }),
    Patched("\"no-such-profile\" requested by annotation virt-sizer.io/profile refused"),
)]
#[case::profile_annotation_a_number_is_ignored(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/virt-sizer.io~1profile",
            json!(3),
        );
    }),
    Patched("[profile dev]"),
)]
#[case::unicode_and_emoji_in_names_labels_annotations(
    JSON,
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
    }),
    Patched("[profile dev]"),
)]
// Kubernetes bounds neither containers nor labels by count: each of these
// is one past a count this server once refused (512 containers, 1,024
// labels or annotations), and is sized.
#[case::a_513_container_launcher_pod_compute_last(
    JSON,
    launcher(|pod| {
        let containers = pod["spec"]["containers"].as_array_mut().expect("list");
        let compute = containers.remove(0);
        // 1 other container (the console log) + 511 + compute = 513.
        assert_eq!(containers.len(), 1);
        for index in 0..511 {
            containers.push(json!({"name": format!("c{index}"), "image": "busybox", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "2m"}}}));
        }
        containers.push(compute);
        assert_eq!(containers.len(), 513);
    }),
    Patched("[profile dev]"),
)]
#[case::a_1025_label_launcher_pod(
    JSON,
    launcher(|pod| {
        for index in 0..1025 {
            pod["metadata"]["labels"][format!("tenant.example.com/label-{index}")] = json!("value");
        }
    }),
    Patched("[profile dev]"),
)]
#[case::a_1025_annotation_launcher_pod(
    JSON,
    launcher(|pod| {
        for index in 0..1025 {
            pod["metadata"]["annotations"][format!("tenant.example.com/note-{index}")] = json!("text");
        }
    }),
    Patched("[profile dev]"),
)]
// Past the kept bytes (`MAX_KEPT_BYTES`): 100,000 containers of one field
// each are 1.7 MB of body, but each is a map of its own (a whole B-tree
// node, about 0.7 KB kept): about 70 MB. Answered per onError, with the uid.
#[case::containers_over_the_kept_bytes(
    JSON,
    launcher(|pod| {
        let containers = pod["spec"]["containers"].as_array_mut().expect("list");
        for index in 0..100_000 {
            containers.push(json!({"name": format!("c{index}")}));
        }
    }),
    CouldNotSize("larger than this server keeps of one object"),
)]
#[case::owner_references_amplification_shape(
    JSON,
    {
        let zeros = vec!["0"; 1_000_000].join(",");
        EXAMPLE_REVIEW
            .replacen(
                "\"ownerReferences\": [",
                &format!("\"ownerReferences\": [{zeros}, "),
                1,
            )
            .into_bytes()
    },
    CouldNotSize("larger than this server keeps of one object"),
)]
#[case::negative_memory_request_in_the_pod(
    JSON,
    memory_request(json!("-1")),
    CouldNotSize("spec.containers[0].resources.requests.memory: negative value -1"),
)]
#[case::overhead_annotation_beyond_int64(
    JSON,
    launcher(|pod| {
        set(
            pod,
            "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
            json!("9223372036854775807"),
        );
    }),
    CouldNotSize("arithmetic overflow"),
)]
#[case::a_513_container_kata_pod_with_requests_only(
    JSON,
    {
        let mut pod = kata_pod(json!({"requests": {"cpu": "1m", "memory": "1Mi"}}));
        let containers = pod["spec"]["containers"].as_array_mut().expect("list");
        for index in 1..513 {
            containers.push(json!({"name": format!("c{index}"), "image": "busybox",
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}));
        }
        object_review("", "Pod", pod, "CREATE")
    },
    Patched("more changes"),
)]
#[case::kata_pod_with_a_negative_limit(
    JSON,
    object_review(
        "",
        "Pod",
        kata_pod(json!({"limits": {"memory": "-1Gi"}})),
        "CREATE",
    ),
    CouldNotSize("spec.containers[0].resources.limits.memory: negative value -1Gi"),
)]
// --- Kata: RuntimeClasses and sandbox Pods ---
#[case::runtime_class_baseline_is_sized(
    JSON,
    EXAMPLE_RUNTIME_CLASS.into(),
    Patched("overhead memory 160Mi -> "),
)]
#[case::runtime_class_pod_fixed_memory_garbage(
    JSON,
    {
        let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
        review["request"]["object"]["overhead"]["podFixed"]["memory"] = json!("garbage");
        bytes(&review)
    },
    CouldNotSize("overhead.podFixed.memory: invalid quantity \"garbage\""),
)]
#[case::runtime_class_overhead_a_string(
    JSON,
    {
        let mut review: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("json");
        review["request"]["object"]["overhead"] = json!("lots");
        bytes(&review)
    },
    CouldNotSize("overhead: expected a map, got \"lots\""),
)]
#[case::kata_pod_requests_garbage(
    JSON,
    object_review(
        "",
        "Pod",
        kata_pod(json!({"requests": {"memory": "1.5.5Gi"}})),
        "CREATE",
    ),
    CouldNotSize(
        "spec.containers[0].resources.requests.memory: invalid quantity \"1.5.5Gi\"",
    ),
)]
#[case::kata_pod_containers_not_a_list(
    JSON,
    {
        let mut pod = kata_pod(json!({}));
        pod["spec"]["containers"] = json!("web");
        object_review("", "Pod", pod, "CREATE")
    },
    CouldNotSize("spec.containers: missing or not a list"),
)]
#[case::kata_pod_request_only_gets_limits(
    JSON,
    object_review(
        "",
        "Pod",
        kata_pod(json!({"requests": {"cpu": "500m", "memory": "512Mi"}})),
        "CREATE",
    ),
    Patched("memory limit none -> 512Mi"),
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_its_exact_answer_and_never_a_500(
    #[case] content_type: Option<&str>,
    #[case] body: Vec<u8>,
    #[case] expect: Expect,
) {
    let (router, state) = router();
    let mut failures = Vec::new();
    let started = Instant::now();
    let (status, answer) = post(&router, content_type, body.clone()).await;
    let elapsed = started.elapsed();
    if let Err(why) = judge(expect, &body, status, &answer) {
        failures.push(why);
    }
    // Generous for a debug build on a loaded machine; the 50 000-container
    // Pods are the ones this bounds.
    if elapsed > Duration::from_secs(10) {
        failures.push(format!("answered after {elapsed:?}"));
    }
    let metrics = state.metrics().render();
    if !metrics.contains("virt_sizer_admission_panics_total 0") {
        failures.push(format!("a panic was caught while deciding:\n{metrics}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The table stays broad: a row lost in an edit shows here, not as a
/// silently shorter run.
#[test]
fn the_table_holds_at_least_40_hostile_inputs() {
    let n_cases = include_str!("bad_input.rs")
        .lines()
        .filter(|line| line.starts_with("#[case::"))
        .count();
    assert!(n_cases >= 40, "only {n_cases} cases");
    eprintln!("bad_input: {n_cases} hostile inputs in the table");
}
