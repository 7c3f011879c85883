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
