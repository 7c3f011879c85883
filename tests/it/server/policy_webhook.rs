//! `POST /validate-policy` on input built to be expensive: aliases and
//! merge keys that expand past the policy bound are refused naming it, and
//! a refusal listing thousands of problems fits in 1,024 characters.

use super::*;
use crate::support;
use virt_sizer::sizing::yaml::{MAX_POLICY_STRING_BYTES, MAX_POLICY_VALUES};

const HEADER: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n";

/// The AdmissionReview of a labelled policy ConfigMap holding `policy`.
fn review_of(policy: &str) -> Vec<u8> {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "request": {"uid": "policy-bounds", "operation": "CREATE", "object": {
               "apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "virt-sizer-policy", "labels": {"virt-sizer.io/policy": "true"}},
               "data": {"policy.yaml": policy}}}})
    .to_string()
    .into_bytes()
}

/// The `response` of `/validate-policy` for `policy`.
async fn validate(policy: &str) -> Value {
    let (router, _) = support::router();
    let (status, body) = support::post_to(
        &router,
        "/validate-policy",
        Some("application/json"),
        review_of(policy),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("an AdmissionReview");
    assert_eq!(answer["response"]["uid"], "policy-bounds");
    answer["response"].clone()
}

/// 40 rules merging rule 0's 1,000 labels: 41 × 2,001 values written out.
fn merge_key_bomb() -> String {
    let labels: Vec<String> = (0..1000).map(|n| format!("k{n}: v")).collect();
    let mut text = format!(
        "{HEADER}rules:\n  - {{vmSelector: {{matchLabels: &labels {{{}}}}}, profile: default}}\n",
        labels.join(", ")
    );
    for _ in 0..40 {
        text.push_str("  - {vmSelector: {matchLabels: {<<: *labels}}, profile: default}\n");
    }
    text
}

/// One 64 KiB namespace glob named 17 times: 1,088 KiB of strings.
fn alias_bomb() -> String {
    format!(
        "{HEADER}rules:\n  - namespaces: [&glob {}{}]\n    profile: default\n",
        "a".repeat(64 * 1024),
        ", *glob".repeat(16)
    )
}

#[tokio::test]
async fn alias_and_merge_key_bombs_are_refused_naming_the_bound() {
    const { assert!(41 * 2_001 > MAX_POLICY_VALUES) };
    const { assert!(17 * 64 * 1024 > MAX_POLICY_STRING_BYTES) };
    for (policy, passed) in [
        (merge_key_bomb(), format!("{MAX_POLICY_VALUES} values")),
        (
            alias_bomb(),
            format!("{MAX_POLICY_STRING_BYTES} bytes of strings"),
        ),
    ] {
        let response = validate(&policy).await;
        assert_eq!(response["allowed"], false, "{response}");
        // 422: the checker's own answer, within the check budget (past it
        // the answer is a 503 that says so).
        assert_eq!(response["status"]["code"], 422, "{response}");
        let message = response["status"]["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!(
                "invalid virt-sizer policy in data[\"policy.yaml\"]:\n\
                 (root): the document expands past {passed} once its aliases are written out"
            )),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_refusal_of_thousands_of_problems_fits_in_1024_characters() {
    // 200 rules that are strings: 200 problems of about 60 characters,
    // some 12,000 characters in all.
    let policy = format!("{HEADER}rules:\n{}", "- x\n".repeat(200));
    let response = validate(&policy).await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.chars().count() <= 1024,
        "{} characters",
        message.chars().count()
    );
    assert!(
        message.starts_with(
            "invalid virt-sizer policy in data[\"policy.yaml\"]:\n\
             rules[0]: invalid type: string \"x\", expected a rule mapping\n"
        ),
        "{message}"
    );
    assert!(message.ends_with(" more bytes]"), "{message}");
}
