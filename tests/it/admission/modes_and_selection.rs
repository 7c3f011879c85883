//! Modes and selection.

use super::*;

#[test]
fn shadow_mode_reports_without_patching() {
    // cpuAllocationRatio 20: 1 vCPU / 20 = 0.05 ⇒ 50m, against KubeVirt's
    // 100m: a delta of 50 − 100 = −50 millicores; memory unchanged.
    let policy = policy_with_default("1.9", &["cpuAllocationRatio: 20", "mode: Shadow"]);
    let decision = review(&policy, Some(&vmi()), &request(kubevirt_pod(), "CREATE"));
    assert_eq!(decision.outcome.label(), OutcomeLabel::Shadow);
    assert!(decision.response().allowed);
    assert!(decision.patch().is_none());
    assert!(decision.response().patch.is_none());
    assert!(decision.response().patch_type.is_none());
    let delta = decision.shadow_delta().expect("a shadow decision");
    assert_eq!(delta.cpu_millicores, 50 - 100);
    assert_eq!(delta.memory_bytes, 0);
    assert!(
        decision
            .response()
            .warnings
            .iter()
            .any(|warning| warning.contains("shadow") && warning.contains("50m")),
        "{:?}",
        decision.response().warnings
    );
    assert_eq!(decision.response().audit_annotations["mode"], "Shadow");
    assert!(
        decision
            .changes
            .iter()
            .any(|change| change.field == "spec.containers[0].resources.requests.cpu")
    );
}

fn dev_pod(requested_profile: &str) -> Value {
    let mut pod = kubevirt_pod();
    set(&mut pod, "/metadata/namespace", json!("dev-team"));
    set(
        &mut pod,
        "/metadata/annotations/virt-sizer.io~1profile",
        json!(requested_profile),
    );
    pod
}

#[test]
fn allowed_opt_in_selects_the_requested_profile() {
    // production: 1 vCPU / 1 = 1 CPU; memory 1Gi + 268Mi = 1292Mi; limits
    // EqualRequests.
    let request = request(dev_pod("production"), "CREATE");
    let decision = review(&team(), Some(&vmi()), &request);
    assert_eq!(decision.profile.as_deref(), Some("production"));
    assert!(
        decision
            .selected_by
            .as_deref()
            .is_some_and(|why| why.contains("allowedProfiles")),
        "{:?}",
        decision.selected_by
    );
    let (requests, limits) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(requests["cpu"], q("1"));
    assert_eq!(limits["cpu"], q("1"));
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
    assert_eq!(whole(limits["memory"]), KUBEVIRT_MEMORY);
}

#[test]
fn refused_opt_in_warns_and_keeps_the_namespace_profile() {
    // dev: 1 vCPU / 20 = 0.05 ⇒ 50m; memory 1Gi × 100/150 = 107374182400/150
    // = 715827882 (truncated) + 268Mi (281018368) = 996846250 bytes.
    let request = request(dev_pod("batch"), "CREATE");
    let decision = review(&team(), Some(&vmi()), &request);
    assert_eq!(decision.profile.as_deref(), Some("dev"));
    assert!(
        decision
            .response()
            .warnings
            .iter()
            .any(|warning| warning.contains("batch") && warning.contains("refused")),
        "{:?}",
        decision.response().warnings
    );
    let (requests, limits) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(requests["cpu"], q("50m"));
    assert_eq!(whole(requests["memory"]), GI * 100 / 150 + OVERHEAD_1_VCPU);
    assert_eq!(whole(requests["memory"]), 996_846_250);
    assert!(!limits.contains_key("cpu") && !limits.contains_key("memory"));
}

#[test]
fn opt_in_without_a_matching_rule_is_refused() {
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/virt-sizer.io~1profile",
        json!("production"),
    );
    let decision = review(&team(), Some(&vmi()), &request(pod, "CREATE"));
    assert_eq!(decision.profile.as_deref(), Some("default"));
    assert!(
        decision
            .response()
            .warnings
            .iter()
            .any(|w| w.contains("refused"))
    );
}
