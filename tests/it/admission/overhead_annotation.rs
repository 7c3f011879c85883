//! KubeVirt's overhead annotation.

use super::*;

#[test]
fn overhead_margin_rewrites_the_annotation_and_keeps_the_original() {
    // Reported 268Mi (281018368) + overheadMargin 64Mi = 332Mi = 348127232;
    // memory 1Gi + 332Mi = 1356Mi = 1421869056.
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!("281018368"),
    );
    let policy = policy_with_default("1.9", &["overheadMargin: 64Mi"]);
    let request = request(pod, "CREATE");
    let decision = review(&policy, Some(&vmi()), &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Patched);
    let after = patched(&request, &decision);
    let annotations = &after["metadata"]["annotations"];
    assert_eq!(
        annotations["kubevirt.io/memory-overhead-bytes"],
        "348127232"
    );
    assert_eq!(
        annotations["virt-sizer.io/kubevirt-memory-overhead-bytes"],
        "281018368"
    );
    assert_eq!((268 + 64) * MI, 348_127_232);
    let (requests, _) = container_resources(&after, 0);
    assert_eq!(whole(requests["memory"]), GI + (268 + 64) * MI);
    assert_eq!(whole(requests["memory"]), 1_421_869_056);

    let again = review(
        &policy,
        Some(&vmi()),
        &crate::support::request(after, "CREATE"),
    );
    assert_eq!(
        again.outcome.label(),
        OutcomeLabel::Unchanged,
        "{}",
        again.explain()
    );
    assert!(again.response().patch.is_none());
}

#[test]
fn reported_overhead_is_authoritative() {
    // KubeVirt reports 300Mi (314572800), not the 268Mi the model computes:
    // memory = 1Gi + 300Mi = 1324Mi; the annotation stays as it is.
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!("314572800"),
    );
    let request = request(pod, "CREATE");
    let decision = review(&team(), Some(&vmi()), &request);
    assert!(
        op_paths(&decision)
            .iter()
            .all(|path| !path.contains("memory-overhead-bytes"))
    );
    let (requests, _) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(whole(requests["memory"]), GI + 300 * MI);
}

// === Nothing a VM owner writes changes the overhead ===
//
// KubeVirt copies every VMI annotation onto the launcher Pod. The Pod below
// is what virt-controller renders for a VMI whose owner wrote `annotations`:
// those, plus KubeVirt's own figure, 268Mi (281018368). With
// `overheadMargin: 64Mi` the right answer is always 268Mi + 64Mi = 332Mi
// of overhead: memory 1Gi + 332Mi = 1421869056, and KubeVirt's figure kept.

/// The Pod KubeVirt renders for a VMI carrying `annotations`, and the VMI.
fn copied_from_the_vmi(annotations: &Value) -> (Value, Value) {
    let mut vmi = vmi();
    vmi["metadata"]["annotations"] = annotations.clone();
    let mut pod = kubevirt_pod();
    for (key, value) in annotations.as_object().expect("a map") {
        pod["metadata"]["annotations"][key] = value.clone();
    }
    pod["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = json!("281018368");
    (pod, vmi)
}

/// The overhead sized (memory request − 1Gi) and the two annotations after
/// the patch.
fn sized_overhead(pod: Value, vmi: &Value) -> (u64, Value, Value) {
    let policy = policy_with_default("1.9", &["overheadMargin: 64Mi"]);
    let request = request(pod, "CREATE");
    let decision = review(&policy, Some(vmi), &request);
    let after = patched(&request, &decision);
    let (requests, _) = container_resources(&after, 0);
    let annotations = &after["metadata"]["annotations"];
    (
        whole(requests["memory"]) - GI,
        annotations["kubevirt.io/memory-overhead-bytes"].clone(),
        annotations["virt-sizer.io/kubevirt-memory-overhead-bytes"].clone(),
    )
}

#[rstest]
#[case::a_kept_figure_on_the_vmi(json!({
    "virt-sizer.io/kubevirt-memory-overhead-bytes": "0",
}))]
#[case::a_kept_figure_and_a_decision_on_the_vmi(json!({
    "virt-sizer.io/kubevirt-memory-overhead-bytes": "0",
    "virt-sizer.io/decision": "profile=default,policy=sha256:0",
}))]
fn an_overhead_figure_a_vmi_carries_changes_nothing(#[case] annotations: Value) {
    let (pod, vmi) = copied_from_the_vmi(&annotations);
    let (overhead, kubevirt, kept) = sized_overhead(pod, &vmi);
    assert_eq!(overhead, (268 + 64) * MI);
    assert_eq!(kubevirt, json!(((268 + 64) * MI).to_string()));
    // The VMI's "0" is replaced by KubeVirt's figure.
    assert_eq!(kept, json!("281018368"));
}

#[test]
fn a_kept_figure_that_does_not_give_the_reported_overhead_is_not_virt_sizers() {
    // A decision and a kept "0" the VMI no longer carries (it changed after
    // KubeVirt rendered the Pod) pass for a reinvocation, but sizing around
    // "0" gives 64Mi, not the 268Mi the Pod reports: it is not the pair
    // virt-sizer writes, and KubeVirt's figure counts.
    let (mut pod, vmi) = copied_from_the_vmi(&json!({}));
    pod["metadata"]["annotations"]["virt-sizer.io/decision"] =
        json!("profile=default,policy=sha256:0");
    pod["metadata"]["annotations"]["virt-sizer.io/kubevirt-memory-overhead-bytes"] = json!("0");
    let (overhead, _, kept) = sized_overhead(pod, &vmi);
    assert_eq!(overhead, (268 + 64) * MI);
    assert_eq!(kept, json!("281018368"));
}

#[test]
fn kubevirts_figure_copied_from_the_vmi_is_not_kubevirts() {
    // Without its overhead report, KubeVirt writes no figure of its own: a
    // `kubevirt.io/memory-overhead-bytes` on the Pod with the VMI's value is
    // the VM owner's, and the overhead is computed (268Mi on 1.9).
    let annotations = json!({"kubevirt.io/memory-overhead-bytes": "0"});
    let (mut pod, vmi) = copied_from_the_vmi(&annotations);
    pod["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = json!("0");
    let (overhead, kubevirt, kept) = sized_overhead(pod, &vmi);
    assert_eq!(overhead, (268 + 64) * MI);
    // The annotation says what was requested; no copy passes for KubeVirt's.
    assert_eq!(kubevirt, json!(((268 + 64) * MI).to_string()));
    assert_eq!(kept, Value::Null);
}
