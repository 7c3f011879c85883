//! Tests of the `test` verb's case reading and comparison.

use serde_json::json;

use super::*;

fn problems_of(actual: Value, expected: Value, exact: bool) -> Vec<String> {
    let expected: BTreeMap<String, Value> = serde_json::from_value(expected).expect("map");
    let mut problems = Vec::new();
    compare_map(
        "compute.requests",
        Some(&actual),
        &expected,
        exact,
        &mut problems,
    )
    .expect("expected values parse");
    problems
}

#[test]
fn only_the_listed_names_are_compared_by_value() {
    let actual = json!({"cpu": "200m", "memory": "1Gi", "devices.kubevirt.io/kvm": "1"});
    assert!(problems_of(actual.clone(), json!({"cpu": "200m"}), false).is_empty());
    // 1Gi = 1024^3 = 1073741824 bytes.
    assert!(problems_of(actual.clone(), json!({"memory": 1_073_741_824}), false).is_empty());
    assert_eq!(
        problems_of(actual, json!({"cpu": "200m"}), true),
        [
            "compute.requests.devices.kubevirt.io/kvm: expected none, got 1",
            "compute.requests.memory: expected none, got 1Gi (1073741824)",
        ]
    );
}

#[test]
fn an_empty_section_means_none_and_null_means_absent() {
    assert_eq!(
        problems_of(json!({"cpu": "2"}), json!({}), false),
        ["compute.requests.cpu: expected none, got 2"]
    );
    assert!(problems_of(json!({}), json!({}), false).is_empty());
    assert_eq!(
        problems_of(json!({"cpu": "2"}), json!({"cpu": null}), false),
        ["compute.requests.cpu: expected none, got 2"]
    );
    assert!(problems_of(json!({"memory": "1Gi"}), json!({"cpu": null}), false).is_empty());
}

#[test]
fn cases_are_mappings_with_a_case_key_and_no_kind() {
    assert!(is_case(&json!({"input": "pod.yaml", "expect": {}})));
    assert!(is_case(&json!({"expects": {"allowed": true}})));
    assert!(!is_case(&json!({"apiVersion": "v1", "kind": "Pod"})));
    assert!(!is_case(
        &json!({"apiVersion": "virt-sizer.io/v1alpha1", "kind": "SizingPolicy", "kubevirt": {}})
    ));
    assert!(!is_case(&json!({"just": "data"})));
    assert!(!is_case(&json!(["expect"])));
}

#[test]
fn unknown_keys_name_the_closest_known_key() {
    let problems = parse_case(json!({
        "input": "pod.yaml",
        "expects": {"allowed": true},
        "namespace": {"name": "a", "label": {}},
    }))
    .expect_err("unknown keys");
    assert_eq!(
        problems,
        [
            "expects: unknown key `expects` (did you mean `expect`?)",
            "namespace.label: unknown key `label` (did you mean `labels`?)",
            "missing field `expect`",
        ]
    );
}
