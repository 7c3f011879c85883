//! Fidelity to KubeVirt where virt-sizer once differed, through `review`.

use super::worked_vectors::topology;
use super::*;

/// The founding example as KubeVirt stores it: 12 cores, guest 96Gi,
/// `requests.memory: 16Gi`, `overcommitGuestOverhead: true`, and the
/// `maxGuest` KubeVirt's VM defaulting adds (4 × guest).
fn founding_vmi() -> Value {
    let mut vmi = VmiSpec {
        requests_memory: Some(Mem::mi(16 * 1024)),
        overcommit_guest_overhead: true,
        ..topology("founding", 0, 12, 0)
    }
    .to_json();
    set(&mut vmi, "/spec/domain/memory/guest", json!("96Gi"));
    set(&mut vmi, "/spec/domain/memory/maxGuest", json!("384Gi"));
    vmi
}

/// The founding example's overhead: page tables ⌈17179869184 / 1000⌉ ×
/// 1000 / 512 = 33554433, + 220Mi + 12 × 8Mi + 8Mi + 32Mi = 406847489.
const FOUNDING_OVERHEAD: u64 = 33_554_433 + (220 + 12 * 8 + 8 + 32) * MI;

#[test]
fn founding_example_requests_exactly_16gi() {
    // KubeVirt's WithMemoryOverhead honours the VMI's own
    // overcommitGuestOverhead: the request is the VMI's 16Gi. An earlier version
    // the hotplug floor (because of maxGuest) made it 16Gi + 406847489 =
    // 17586716673.
    assert_eq!(16 * GI + FOUNDING_OVERHEAD, 17_586_716_673);
    let vmi = founding_vmi();
    let pod = launcher_pod("founding", compute_resources(&[], &[]));
    let request = request(pod, "CREATE");
    let decision = review(&ValidPolicy::builtin(), Some(&vmi), &request);
    assert_eq!(
        decision.outcome.label(),
        OutcomeLabel::Patched,
        "{}",
        decision.explain()
    );
    let after = patched(&request, &decision);
    let (requests, limits) = container_resources(&after, 0);
    assert_eq!(whole(requests["memory"]), 16 * GI);
    assert_eq!(
        after["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "16Gi"
    );
    assert!(!limits.contains_key("memory"));
    // 12 / 10 = 1.2 ⇒ 1200m.
    assert_eq!(crate::support::millis(requests["cpu"]), 1200);
    assert!(
        decision
            .warnings
            .iter()
            .any(|w| w.contains("KubeVirt will refuse memory hotplug")),
        "{:?}",
        decision.warnings
    );

    // The Pod exactly as virt-controller v1.9 rendered it, with its reported
    // overhead: no resource operation.
    let mut rendered = launcher_pod(
        "founding",
        compute_resources(&[("cpu", "1200m"), ("memory", "16Gi")], &[]),
    );
    set(
        &mut rendered,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!(FOUNDING_OVERHEAD.to_string()),
    );
    let again = review(
        &ValidPolicy::builtin(),
        Some(&vmi),
        &crate::support::request(rendered, "CREATE"),
    );
    assert!(
        op_paths(&again)
            .iter()
            .all(|path| !path.contains("/resources/")),
        "{:?}",
        op_paths(&again)
    );
}

#[test]
fn reported_passt_memory_is_not_multiplied_by_overhead_ratio() {
    // KubeVirt v1.9 reports 268Mi + passt 250Mi = 543162368. overheadRatio
    // 1.5 multiplies the 281018368 before passt: ⌈281018368 / 1000⌉ =
    // 281019 kB × 0.5 = 140509.5 → 140509000 B; overhead 281018368 +
    // 140509000 + 262144000 = 683671368; memory 1Gi + 683671368 = 1757413192
    // (an earlier version: 1888485192, the whole figure multiplied).
    let mut vmi = vmi();
    set(
        &mut vmi,
        "/spec/domain/devices/interfaces",
        json!([{"name": "default", "passtBinding": {}}]),
    );
    let mut pod = launcher_pod(
        VM,
        compute_resources(&[("cpu", "100m"), ("memory", "1542Mi")], &[]),
    );
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!("543162368"),
    );
    let policy = policy_with_default(
        "1.9",
        &[
            "cpuAllocationRatio: 10",
            "memoryOvercommitPercent: 100",
            "overheadRatio: \"1.5\"",
        ],
    );
    let request = request(pod, "CREATE");
    let decision = review(&policy, Some(&vmi), &request);
    assert_eq!(
        decision.outcome.label(),
        OutcomeLabel::Patched,
        "{}",
        decision.explain()
    );
    let after = patched(&request, &decision);
    let (requests, _) = container_resources(&after, 0);
    let overhead = 281_018_368 + 140_509_000 + 262_144_000;
    assert_eq!(whole(requests["memory"]), GI + overhead);
    assert_eq!(whole(requests["memory"]), 1_757_413_192);
    let annotations = &after["metadata"]["annotations"];
    assert_eq!(
        annotations["kubevirt.io/memory-overhead-bytes"],
        overhead.to_string()
    );
    assert_eq!(
        annotations["virt-sizer.io/kubevirt-memory-overhead-bytes"],
        "543162368"
    );
    // Reinvocation reads the original figure: nothing changes twice.
    let again = review(
        &policy,
        Some(&vmi),
        &crate::support::request(after, "CREATE"),
    );
    assert_eq!(
        again.outcome.label(),
        OutcomeLabel::Unchanged,
        "{}",
        again.explain()
    );
}

#[test]
fn downward_metrics_device_adds_no_overhead() {
    // Only a downwardMetrics *volume* is KubeVirt's downward-metrics disk
    // (HasDownwardMetricDisk): 1Gi + 268Mi = 1292Mi, not 1293Mi.
    let mut vmi = vmi();
    set(&mut vmi, "/spec/domain/devices/downwardMetrics", json!({}));
    let request = request(kubevirt_pod(), "CREATE");
    let decision = review(&team(), Some(&vmi), &request);
    let (requests, _) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
}
