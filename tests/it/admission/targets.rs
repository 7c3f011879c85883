//! What is a target.

use super::*;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "launcher-lookalike", "namespace": NAMESPACE,
                     "labels": {"kubevirt.io": "virt-launcher"}},
        "spec": {"template": {
            "metadata": {"labels": {"kubevirt.io": "virt-launcher"}},
            "spec": {"containers": [{"name": "compute", "image": "x"}]},
        }},
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vm-ssh", "namespace": NAMESPACE,
                     "labels": {"kubevirt.io": "virt-launcher"}},
        "spec": {"selector": {"kubevirt.io/domain": VM}, "ports": [{"port": 22}]},
    })
}

#[rstest]
#[case::delete_of_a_launcher_pod(kubevirt_pod(), "DELETE")]
#[case::connect_to_a_launcher_pod(kubevirt_pod(), "CONNECT")]
#[case::deployment(deployment(), "CREATE")]
#[case::service(service(), "CREATE")]
#[case::pod_without_kubevirt_label(plain_pod(None), "CREATE")]
#[case::pod_with_unknown_runtime_class(plain_pod(Some("gvisor")), "CREATE")]
#[case::runtime_class_with_unknown_handler(runtime_class("runsc", Some(("250m", "160Mi"))), "CREATE")]
fn non_targets_are_allowed_unchanged(#[case] object: Value, #[case] operation: &str) {
    let request = request(object, operation);
    let decision = review(&team(), Some(&vmi()), &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Skipped);
    assert_eq!(decision.target, TargetKind::NotATarget);
    assert!(decision.skip_reason().is_some(), "a skip says why");
    assert!(decision.response().allowed);
    assert_eq!(decision.response().uid, UID);
    assert!(decision.patch().is_none());
    assert!(decision.response().patch.is_none());
    assert!(decision.response().patch_type.is_none());
    assert!(decision.response().warnings.is_empty());
}

#[test]
fn a_launcher_pod_update_is_skipped_as_a_launcher_pod_with_the_reason() {
    let decision = review(&team(), Some(&vmi()), &request(kubevirt_pod(), "UPDATE"));
    assert_eq!(decision.outcome.label(), OutcomeLabel::Skipped);
    assert_eq!(decision.target, TargetKind::LauncherPod);
    assert_eq!(
        decision.skip_reason(),
        Some("Pods are sized on CREATE only")
    );
    assert!(
        decision
            .explain()
            .starts_with("outcome: skipped (launcher_pod): Pods are sized on CREATE only\n")
    );
    assert!(decision.response().allowed);
    assert!(decision.response().patch.is_none());
    assert!(decision.response().warnings.is_empty());
}

#[test]
fn delete_without_an_object_is_skipped() {
    let mut request = request(kubevirt_pod(), "DELETE");
    request.old_object = request.object.take();
    let decision = review(&team(), Some(&vmi()), &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::Skipped);
    assert_eq!(decision.response().uid, UID);
}

/// kata-qemu, Go runtime, `guestMemory: Account`: podFixed.memory = vmm
/// 160Mi + default_memory 2048Mi = 2208Mi; podFixed.cpu = vmm 250m.
const KATA_QEMU_POD_FIXED_MEMORY: u64 = (160 + 2048) * MI;

#[test]
fn update_of_a_known_runtime_class_is_sized() {
    let request = request(
        runtime_class("kata-qemu", Some(("250m", "160Mi"))),
        "UPDATE",
    );
    let decision = review(&team(), None, &request);
    assert_eq!(
        decision.outcome.label(),
        OutcomeLabel::Patched,
        "{}",
        decision.explain()
    );
    assert_eq!(decision.target, TargetKind::RuntimeClass);
    // cpu is already 250m: only memory changes.
    assert_eq!(op_paths(&decision), ["/overhead/podFixed/memory"]);
    assert_eq!(patch_ops(&decision)[0]["op"], "replace");
    let class = patched(&request, &decision);
    assert_eq!(
        whole(q(class["overhead"]["podFixed"]["memory"]
            .as_str()
            .expect("memory"))),
        KATA_QEMU_POD_FIXED_MEMORY
    );
    assert_eq!(class["overhead"]["podFixed"]["cpu"], "250m");
    assert_eq!(
        class["scheduling"],
        runtime_class("kata-qemu", None)["scheduling"]
    );
}

/// A RuntimeClass's warnings quote the formula of each value, as a launcher
/// Pod's do. (They used to quote none: the warnings looked formulas up by
/// the change's label, "overhead cpu", and Kata's lines start `cpu … = vmm`.)
#[test]
fn runtime_class_warnings_carry_their_formula() {
    let request = request(runtime_class("kata-qemu", None), "CREATE");
    let decision = review(&team(), None, &request);
    let warnings = decision.response().warnings;
    // The explanation line `cpu 250m = vmm 250m`: the formula is `vmm 250m`.
    assert!(
        warnings.contains(&"virt-sizer: overhead cpu none -> 250m (vmm 250m)".to_owned()),
        "{warnings:?}"
    );
    // `memory 2208Mi = vmm 160Mi + default_memory 2048Mi (…)`.
    assert!(
        warnings.iter().any(|warning| warning.starts_with(
            "virt-sizer: overhead memory none -> 2208Mi (vmm 160Mi + default_memory 2048Mi"
        )),
        "{warnings:?}"
    );
    assert!(
        decision
            .explanation
            .lines()
            .iter()
            .any(|line| line == "cpu 250m = vmm 250m"),
        "{:?}",
        decision.explanation
    );
}

#[test]
fn runtime_class_without_overhead_gets_the_maps_first() {
    let request = request(runtime_class("kata-qemu", None), "CREATE");
    let decision = review(&team(), None, &request);
    assert_eq!(
        op_paths(&decision),
        [
            "/overhead",
            "/overhead/podFixed",
            "/overhead/podFixed/cpu",
            "/overhead/podFixed/memory"
        ]
    );
    let class = patched(&request, &decision);
    assert_eq!(
        whole(q(class["overhead"]["podFixed"]["memory"]
            .as_str()
            .expect("memory"))),
        KATA_QEMU_POD_FIXED_MEMORY
    );
    assert_eq!(
        q(class["overhead"]["podFixed"]["cpu"].as_str().expect("cpu")),
        q("250m")
    );
}
