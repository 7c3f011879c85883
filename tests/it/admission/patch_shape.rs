//! Patch shape.

use super::*;

#[test]
fn equal_values_written_differently_get_no_op() {
    // 1292Mi = 1292 × 1048576 = 1354760192 bytes; 100m = 0.1 CPU.
    let pod = launcher_pod(
        VM,
        compute_resources(&[("cpu", "0.1"), ("memory", "1354760192")], &[]),
    );
    let request = request(pod, "CREATE");
    let policy = team();
    let decision = review(&policy, Some(&vmi()), &request);
    // Nothing changes by value: no patch at all, not even the decision
    // annotation.
    assert_eq!(patch_ops(&decision), Vec::<serde_json::Value>::new());
    assert_eq!(decision.outcome.label(), OutcomeLabel::Unchanged);
    assert_eq!(
        decision
            .audit_annotations
            .get("profile")
            .map(String::as_str),
        Some("default"),
        "the decision still goes to the audit annotations"
    );
    let pod = patched(&request, &decision);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "1354760192"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "0.1"
    );

    let again = review(
        &policy,
        Some(&vmi()),
        &crate::support::request(pod, "CREATE"),
    );
    assert_eq!(again.outcome.label(), OutcomeLabel::Unchanged);
    assert!(again.response().patch.is_none());
}

#[test]
fn missing_maps_are_added_before_their_entries() {
    let mut pod = kubevirt_pod();
    remove(&mut pod, "/spec/containers/0/resources");
    remove(&mut pod, "/metadata/annotations");
    let request = request(pod, "CREATE");
    let policy = team();
    let decision = review(&policy, Some(&vmi()), &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Patched);
    assert_eq!(
        patch_ops(&decision),
        [
            json!({"op": "add", "path": "/spec/containers/0/resources", "value": {}}),
            json!({"op": "add", "path": "/spec/containers/0/resources/requests", "value": {}}),
            json!({"op": "add", "path": "/spec/containers/0/resources/requests/cpu", "value": "100m"}),
            json!({"op": "add", "path": "/spec/containers/0/resources/requests/memory", "value": "1292Mi"}),
            json!({"op": "add", "path": "/metadata/annotations", "value": {}}),
            json!({"op": "add", "path": "/metadata/annotations/virt-sizer.io~1decision",
                   "value": decision_annotation(&policy, "default")}),
        ]
    );
    let pod = patched(&request, &decision);
    let (requests, limits) = container_resources(&pod, 0);
    assert_eq!(requests["cpu"], q("100m"));
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
    assert!(limits.is_empty());
}

#[test]
fn null_resources_are_replaced_by_a_map() {
    let mut pod = kubevirt_pod();
    set(&mut pod, "/spec/containers/0/resources", Value::Null);
    let request = request(pod, "CREATE");
    let decision = review(&team(), Some(&vmi()), &request);
    assert_eq!(
        patch_ops(&decision)[0],
        json!({"op": "replace", "path": "/spec/containers/0/resources", "value": {}})
    );
    let (requests, _) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
}

#[test]
fn compute_container_is_found_by_name_not_position() {
    let mut pod = kubevirt_pod();
    let containers = pod["spec"]["containers"].as_array_mut().expect("list");
    containers.reverse();
    // Stale values so that something changes: 2 CPUs, 2Gi.
    set(
        &mut pod,
        "/spec/containers/1/resources/requests/cpu",
        json!("2"),
    );
    set(
        &mut pod,
        "/spec/containers/1/resources/requests/memory",
        json!("2Gi"),
    );
    let request = request(pod.clone(), "CREATE");
    let decision = review(&team(), Some(&vmi()), &request);
    let resource_paths: Vec<String> = op_paths(&decision)
        .into_iter()
        .filter(|path| path.starts_with("/spec"))
        .collect();
    assert_eq!(
        resource_paths,
        [
            "/spec/containers/1/resources/requests/cpu",
            "/spec/containers/1/resources/requests/memory"
        ]
    );
    let after = patched(&request, &decision);
    assert_eq!(after["spec"]["containers"][0], pod["spec"]["containers"][0]);
    let (requests, _) = container_resources(&after, 1);
    assert_eq!(requests["cpu"], q("100m"));
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
}

#[test]
fn unknown_fields_survive_the_patch() {
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/spec/futureField",
        json!({"enabled": true, "list": [1, "two", null]}),
    );
    set(&mut pod, "/spec/containers/0/x-extra", json!("keep me"));
    set(
        &mut pod,
        "/spec/containers/0/resources/claims",
        json!([{"name": "gpu-claim"}]),
    );
    set(
        &mut pod,
        "/spec/containers/0/resources/requests/example.com~1foo",
        json!("3"),
    );
    set(&mut pod, "/metadata/x-meta", json!(42));
    set(&mut pod, "/status", json!({"phase": "Pending"}));
    // cpuAllocationRatio 4: 1 vCPU / 4 = 0.25 ⇒ 250m, so the Pod does change.
    let policy = policy_with_default("1.9", &["cpuAllocationRatio: 4"]);
    let request = request(pod.clone(), "CREATE");
    let decision = review(&policy, Some(&vmi()), &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Patched);
    let after = patched(&request, &decision);
    assert_eq!(container_resources(&after, 0).0["cpu"], q("250m"));
    for pointer in [
        "/spec/futureField",
        "/spec/containers/0/x-extra",
        "/spec/containers/0/resources/claims",
        "/spec/containers/0/resources/requests/example.com~1foo",
        "/spec/containers/0/resources/requests/ephemeral-storage",
        "/spec/containers/0/resources/limits",
        "/spec/containers/1",
        "/metadata/x-meta",
        "/metadata/ownerReferences",
        "/status",
    ] {
        assert_eq!(after.pointer(pointer), pod.pointer(pointer), "{pointer}");
    }
}

#[test]
fn annotation_keys_with_slashes_are_escaped() {
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!(OVERHEAD_1_VCPU.to_string()),
    );
    let policy = policy_with_default("1.9", &["overheadMargin: 64Mi"]);
    let decision = review(&policy, Some(&vmi()), &request(pod, "CREATE"));
    let paths = op_paths(&decision);
    for expected in [
        "/metadata/annotations/virt-sizer.io~1decision",
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        "/metadata/annotations/virt-sizer.io~1kubevirt-memory-overhead-bytes",
    ] {
        assert!(
            paths.iter().any(|path| path == expected),
            "{expected} not in {paths:?}"
        );
    }
    // Exactly the pointer tokens above: no unescaped '/' inside a key.
    assert!(
        paths
            .iter()
            .all(|path| !path.contains("annotations/virt-sizer.io/"))
    );
}
