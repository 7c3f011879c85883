//! Example-based tests of `admission::review`: what is and is not a target,
//! `onError`, field paths in errors, patch shape (minimal, maps first,
//! escaped pointers, unknown fields kept), shadow mode, profile opt-in,
//! KubeVirt's overhead annotation, and the worked KubeVirt vectors of the
//! reference (§1.5, §3).
//!
//! Every expected number is derived in the test from the reference's
//! arithmetic. Shorthands used below (v1.6–v1.9 line, amd64, graphics on):
//! fixed overhead 220Mi = virt-launcher-monitor 25 + virt-launcher 100 +
//! virtlogd 25 + virtqemud 40 + QEMU 30; per vCPU 8Mi; IOThread 8Mi; video
//! 32Mi. A 1-vCPU VMI therefore has 220 + 8 + 8 + 32 = 268Mi of overhead.

use std::collections::BTreeMap;

use rstest::rstest;
use serde_json::{Value, json};
use virt_sizer::admission::{OutcomeLabel, TargetKind};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::policy::ValidPolicy;

use crate::support::{
    Cpu, GI, MI, Mem, MemFormat, NAMESPACE, PageSize, UID, VmiSpec, compute_resources,
    container_resources, launcher_pod, op_paths, patch_ops, patched, plain_pod, policy,
    policy_with_default, q, remove, request, review, runtime_class, set, whole,
};

const VM: &str = "fedora-01";

/// The overhead of a 1-vCPU VMI on v1.9: 220 + 8 + 8 + 32 = 268Mi.
const OVERHEAD_1_VCPU: u64 = 268 * MI;

/// What KubeVirt v1.9 renders for 1 vCPU / `guest: 1Gi` (reference M1):
/// 1Gi + 268Mi = 1292Mi.
const KUBEVIRT_MEMORY: u64 = GI + OVERHEAD_1_VCPU;

/// The plain 1-vCPU, 1Gi VMI.
fn vmi() -> Value {
    VmiSpec::simple(VM, 1024).to_json()
}

/// The launcher Pod virt-controller v1.9 renders for [`vmi`] with KubeVirt's
/// defaults: cpu 1/10 = 0.1 ⇒ `100m`, memory `1292Mi`.
fn kubevirt_pod() -> Value {
    launcher_pod(
        VM,
        compute_resources(&[("cpu", "100m"), ("memory", "1292Mi")], &[]),
    )
}

/// Profiles for the selection tests, and one Kata class.
const TEAM_POLICY: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt: {release: "1.9", architecture: amd64}
profiles:
  default: {cpuAllocationRatio: 10, memoryOvercommitPercent: 100}
  production: {cpuAllocationRatio: 1, limits: EqualRequests}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150}
  batch: {cpuAllocationRatio: 4}
rules:
  - namespaces: ["dev-*"]
    profile: dev
    allowedProfiles: [dev, production]
onError: Allow
kata:
  runtimeClasses:
    kata-qemu:
      runtime: go
      defaultVcpus: "1"
      defaultMemory: 2048Mi
      vmm: {cpu: 250m, memory: 160Mi}
      guestMemory: Account
"#;

fn team() -> ValidPolicy {
    policy(TEAM_POLICY)
}

fn deny_policy() -> ValidPolicy {
    policy(&TEAM_POLICY.replace("onError: Allow", "onError: Deny"))
}

fn decision_annotation(policy: &ValidPolicy, profile: &str) -> String {
    format!("profile={profile},policy={}", policy.digest)
}

// === What is a target ===

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

// === onError ===

#[test]
fn missing_vmi_with_on_error_deny_is_denied() {
    let request = request(kubevirt_pod(), "CREATE");
    let decision = review(&deny_policy(), None, &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::ErrorDenied);
    assert!(!decision.response().allowed);
    assert_eq!(decision.response().uid, UID);
    let response = decision.response();
    let status = response.status.as_ref().expect("a status");
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains(&format!("{NAMESPACE}/{VM}")),
        "{}",
        status.message
    );
    assert!(decision.patch().is_none());
    assert!(decision.response().patch.is_none());
}

#[test]
fn missing_vmi_with_on_error_allow_is_allowed_with_a_warning() {
    let request = request(kubevirt_pod(), "CREATE");
    let decision = review(&team(), None, &request);
    assert_eq!(decision.outcome.label(), OutcomeLabel::ErrorAllowed);
    assert!(decision.response().allowed);
    assert_eq!(decision.response().uid, UID);
    assert!(decision.response().status.is_none());
    assert!(
        decision
            .response()
            .warnings
            .iter()
            .any(|warning| warning.contains("not found") && warning.contains(VM)),
        "{:?}",
        decision.response().warnings
    );
    assert!(decision.patch().is_none());
    assert!(decision.response().patch.is_none());
}

#[test]
fn the_vmi_is_named_by_the_domain_annotation_without_an_owner_reference() {
    let mut pod = kubevirt_pod();
    remove(&mut pod, "/metadata/ownerReferences");
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1domain",
        json!("other-vm"),
    );
    let decision = review(&deny_policy(), None, &request(pod, "CREATE"));
    let response = decision.response();
    let message = &response.status.as_ref().expect("denied").message;
    assert!(
        message.contains(&format!("{NAMESPACE}/other-vm")),
        "{message}"
    );
}

// === Errors name the field ===

#[rstest]
#[case::no_compute_container(
    |pod: &mut Value| set(pod, "/spec/containers/0/name", json!("launcher")),
    "spec.containers: no container named compute"
)]
#[case::containers_not_a_list(
    |pod: &mut Value| set(pod, "/spec/containers", json!({"compute": {}})),
    "spec.containers: missing or not a list"
)]
#[case::containers_missing(
    |pod: &mut Value| remove(pod, "/spec/containers"),
    "spec.containers: missing or not a list"
)]
#[case::bad_memory_request(
    |pod: &mut Value| set(pod, "/spec/containers/0/resources/requests/memory", json!("1.5.5Gi")),
    "spec.containers[0].resources.requests.memory: invalid quantity \"1.5.5Gi\""
)]
#[case::bad_cpu_limit(
    |pod: &mut Value| set(pod, "/spec/containers/0/resources/limits/cpu", json!("1 core")),
    "spec.containers[0].resources.limits.cpu: invalid quantity \"1 core\""
)]
#[case::bad_overhead_annotation(
    |pod: &mut Value| set(pod, "/metadata/annotations/kubevirt.io~1memory-overhead-bytes", json!("lots")),
    "metadata.annotations[kubevirt.io/memory-overhead-bytes]: invalid quantity \"lots\""
)]
#[case::negative_overhead_annotation(
    |pod: &mut Value| set(pod, "/metadata/annotations/kubevirt.io~1memory-overhead-bytes", json!("-100Mi")),
    "metadata.annotations[kubevirt.io/memory-overhead-bytes]: negative value -100Mi"
)]
#[case::resources_not_a_map(
    |pod: &mut Value| set(pod, "/spec/containers/0/resources", json!("x")),
    "spec.containers[0].resources: expected a map, got \"x\""
)]
#[case::annotations_not_a_map(
    |pod: &mut Value| set(pod, "/metadata/annotations", json!("x")),
    "metadata.annotations: expected a map, got \"x\""
)]
fn unsizable_pods_name_the_field(#[case] damage: fn(&mut Value), #[case] expected: &str) {
    let mut pod = kubevirt_pod();
    damage(&mut pod);
    let decision = review(&team(), Some(&vmi()), &request(pod, "CREATE"));
    assert_eq!(decision.outcome.label(), OutcomeLabel::ErrorAllowed);
    let error = decision.error().as_ref().expect("an error").to_string();
    assert!(error.contains(expected), "{error}");
    assert!(
        decision
            .response()
            .warnings
            .iter()
            .any(|warning| warning.contains(expected)),
        "{:?}",
        decision.response().warnings
    );
    assert!(decision.response().patch.is_none());
}

#[test]
fn bad_quantity_in_the_vmi_names_the_vmi_field() {
    let mut vmi = vmi();
    set(&mut vmi, "/spec/domain/memory/guest", json!("1.5.5Gi"));
    let decision = review(&team(), Some(&vmi), &request(kubevirt_pod(), "CREATE"));
    let error = decision.error().as_ref().expect("an error").to_string();
    assert!(
        error.contains("spec.domain.memory.guest: invalid quantity \"1.5.5Gi\""),
        "{error}"
    );
}

// === Patch shape ===

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
    assert_eq!(
        patch_ops(&decision),
        [json!({
            "op": "add",
            "path": "/metadata/annotations/virt-sizer.io~1decision",
            "value": decision_annotation(&policy, "default"),
        })]
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

// === Modes and selection ===

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

// === KubeVirt's overhead annotation ===

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

// === KubeVirt's worked vectors (reference §3), through `review` ===

/// Expected `compute` resources: cpu in millicores, memory in bytes.
#[derive(Debug, Default)]
struct Expected {
    cpu_request: Option<u64>,
    cpu_limit: Option<u64>,
    memory_request: Option<u64>,
    memory_limit: Option<u64>,
    hugepages: Option<(&'static str, u64)>,
    /// Exact strings the reference quotes: (`requests`/`limits`, name, text).
    texts: &'static [(&'static str, &'static str, &'static str)],
}

fn cpu_mem(cpu_millis: u64, memory_bytes: u64) -> Expected {
    Expected {
        cpu_request: Some(cpu_millis),
        memory_request: Some(memory_bytes),
        ..Expected::default()
    }
}

fn topology(name: &str, sockets: u32, cores: u32, threads: u32) -> VmiSpec {
    VmiSpec {
        sockets,
        cores,
        threads,
        ..VmiSpec::simple(name, 1024)
    }
}

/// M3: no topology, `requests.memory: 1G`, `limits.memory: 2G`, cpu 1m/2m.
fn m3() -> VmiSpec {
    VmiSpec {
        guest: None,
        requests_memory: Some(Mem::new(1000, MemFormat::DecimalM)),
        limits_memory: Some(Mem::new(2000, MemFormat::DecimalM)),
        requests_cpu: Some(Cpu::Milli(1)),
        limits_cpu: Some(Cpu::Milli(2)),
        ..topology("m3", 0, 0, 0)
    }
}

/// M3's overhead: page tables 1000000000/1000 × 1000 / 512 = 1953125 +
/// 220Mi + 8Mi (1 vCPU: limits.cpu 2m `Value()` = 1) + 8Mi + 32Mi.
const M3_OVERHEAD: u64 = 1_953_125 + (220 + 8 + 8 + 32) * MI;

/// M9's page tables: ⌈17179869184 / 1000⌉ = 17179870 kB × 1000 / 512.
const M9_PAGE_TABLES: u64 = 17_179_870 * 1000 / 512;

#[rstest]
#[case::k1_one_vcpu(VmiSpec::simple("k1", 1024), "1.9", &[], Expected {
    texts: &[("requests", "cpu", "100m"), ("requests", "memory", "1292Mi")],
    ..cpu_mem(100, GI + (220 + 8 + 8 + 32) * MI)
})]
#[case::k2_twelve_vcpus_ratio_20(topology("k2", 1, 6, 2), "1.9", &["cpuAllocationRatio: 20"],
    // 12 / 20 = 0.6 ⇒ 600m; overhead 220 + 12 × 8 + 8 + 32.
    cpu_mem(600, GI + (220 + 12 * 8 + 8 + 32) * MI))]
#[case::k3_three_cores(topology("k3", 0, 3, 0), "1.9", &[],
    cpu_mem(300, GI + (220 + 3 * 8 + 8 + 32) * MI))]
#[case::k4_three_cores_ratio_1(topology("k4", 0, 3, 0), "1.9", &["cpuAllocationRatio: 1"], Expected {
    texts: &[("requests", "cpu", "3")],
    ..cpu_mem(3000, GI + (220 + 3 * 8 + 8 + 32) * MI)
})]
#[case::k5_sixteen_vcpus(topology("k5", 2, 4, 2), "1.9", &[], Expected {
    // 16 / 10 = 1.6 ⇒ "%g" "1.6" ⇒ 1600m.
    texts: &[("requests", "cpu", "1600m")],
    ..cpu_mem(1600, GI + (220 + 16 * 8 + 8 + 32) * MI)
})]
#[case::k8_explicit_cpu_request_wins(
    VmiSpec { requests_cpu: Some(Cpu::Milli(150)), ..topology("k8", 0, 5, 0) },
    "1.9", &["cpuAllocationRatio: 16"],
    // 5 / 16 = 312.5m is overridden by the VMI's 150m.
    cpu_mem(150, GI + (220 + 5 * 8 + 8 + 32) * MI))]
#[case::k9_cpu_limit_only(
    VmiSpec { limits_cpu: Some(Cpu::Whole(4)), ..topology("k9", 0, 0, 0) },
    "1.9", &[],
    // virt-api: request := limit 4, sockets := 4.
    Expected { cpu_limit: Some(4000), ..cpu_mem(4000, GI + (220 + 4 * 8 + 8 + 32) * MI) })]
#[case::k12_dedicated(
    VmiSpec { dedicated: true, guest: Some(Mem::mi(8192)), ..topology("k12", 0, 4, 0) },
    "1.9", &[],
    // overhead 220 + 4 × 8 + 8 + 32 + 100 (dedicated) = 392Mi; 8Gi + 392Mi = 8584Mi.
    Expected {
        cpu_limit: Some(4000),
        memory_limit: Some(9_000_976_384),
        ..cpu_mem(4000, (8192 + 392) * MI)
    })]
#[case::m1_main(VmiSpec::simple("m1", 1024), "main", &[],
    // QEMU 50Mi on main: 1Gi + 288Mi = 1312Mi.
    cpu_mem(100, GI + (240 + 8 + 8 + 32) * MI))]
#[case::m1_v1_5(VmiSpec::simple("m1", 1024), "1.5", &[],
    // v1.5: page tables of the defaulted request 1Gi = 2Mi; video 16Mi.
    cpu_mem(100, GI + (2 + 220 + 8 + 8 + 16) * MI))]
#[case::m3_kubevirt_test(m3(), "1.9", &[], Expected {
    cpu_limit: Some(2),
    memory_limit: Some(2_000_000_000 + M3_OVERHEAD),
    texts: &[("requests", "memory", "1282971493"), ("limits", "memory", "2282971493")],
    ..cpu_mem(1, 1_000_000_000 + M3_OVERHEAD)
})]
#[case::m3_main(m3(), "main", &[], Expected {
    cpu_limit: Some(2),
    memory_limit: Some(2_303_943_013),
    ..cpu_mem(1, 1_000_000_000 + M3_OVERHEAD + 20 * MI)
})]
#[case::m4_overcommit_guest_overhead(
    VmiSpec { overcommit_guest_overhead: true, ..m3() }, "1.9", &[],
    // The overhead goes on the limit only.
    Expected {
        cpu_limit: Some(2),
        memory_limit: Some(2_000_000_000 + M3_OVERHEAD),
        texts: &[("requests", "memory", "1G"), ("limits", "memory", "2282971493")],
        ..cpu_mem(1, 1_000_000_000)
    })]
#[case::m5_memory_overcommit(
    VmiSpec { guest: Some(Mem::new(3072, MemFormat::DecimalM)), ..VmiSpec::simple("m5", 0) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // 3072000000 × 100 / 150 = 2048000000, + 268Mi.
    cpu_mem(100, 3_072_000_000 * 100 / 150 + 268 * MI))]
#[case::m5_overcommit_guest_overhead(
    VmiSpec {
        guest: Some(Mem::new(3072, MemFormat::DecimalM)),
        overcommit_guest_overhead: true,
        ..VmiSpec::simple("m5", 0)
    },
    "1.9", &["memoryOvercommitPercent: 150"],
    Expected { texts: &[("requests", "memory", "2048M")], ..cpu_mem(100, 2_048_000_000) })]
#[case::m9_explicit_request_beats_overcommit(
    VmiSpec { requests_memory: Some(Mem::mi(16 * 1024)), ..VmiSpec::simple("m9", 16 * 1024) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // 16Gi + page tables 33554433 + 268Mi = 17494441985.
    cpu_mem(100, 16 * GI + M9_PAGE_TABLES + 268 * MI))]
#[case::h1_hugepages_2mi(
    VmiSpec { hugepages: Some(PageSize::TwoMi), ..VmiSpec::simple("h1", 4096) },
    "1.9", &[],
    // Guest in hugepages; memory = overhead only.
    Expected { hugepages: Some(("hugepages-2Mi", 4 * GI)), ..cpu_mem(100, 268 * MI) })]
#[case::h1_hugepages_are_never_overcommitted(
    VmiSpec { hugepages: Some(PageSize::TwoMi), ..VmiSpec::simple("h1", 1024) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // KubeVirt 1.7–1.9 would request 1Gi × 100/150, not a page multiple.
    Expected { hugepages: Some(("hugepages-2Mi", GI)), ..cpu_mem(100, 268 * MI) })]
#[case::h2_hugepages_1gi_request_and_limit(
    VmiSpec {
        guest: None,
        hugepages: Some(PageSize::OneGi),
        requests_memory: Some(Mem::mi(8192)),
        limits_memory: Some(Mem::mi(8192)),
        ..VmiSpec::simple("h2", 0)
    },
    "1.9", &[],
    // page tables 8589935 kB × 1000 / 512 = 16777216 (16Mi); 16 + 268 = 284Mi.
    Expected {
        hugepages: Some(("hugepages-1Gi", 8 * GI)),
        memory_limit: Some(284 * MI),
        ..cpu_mem(100, 284 * MI)
    })]
#[case::h3_hugepages_rounded_to_whole_pages(
    VmiSpec {
        guest: None,
        hugepages: Some(PageSize::TwoMi),
        requests_memory: Some(Mem::new(64, MemFormat::DecimalM)),
        limits_memory: Some(Mem::new(64, MemFormat::DecimalM)),
        ..VmiSpec::simple("h3", 0)
    },
    "1.9", &[],
    // 64000000 / 2097152 = 30.5 pages ⇒ 31 pages; memory = page tables
    // 64000 × 1000 / 512 = 125000 + 268Mi.
    Expected {
        hugepages: Some(("hugepages-2Mi", 31 * 2 * MI)),
        memory_limit: Some(125_000 + 268 * MI),
        ..cpu_mem(100, 125_000 + 268 * MI)
    })]
#[case::d1_two_gpus(
    VmiSpec { gpus: 2, ..VmiSpec { guest: Some(Mem::mi(16 * 1024)), ..topology("d1", 0, 4, 0) } },
    "1.9", &[],
    // overhead 220 + 4 × 8 + 8 + 32 + 1024 (VFIO) = 1316Mi; 16Gi + 1316Mi = 17700Mi.
    cpu_mem(400, (16 * 1024 + 1316) * MI))]
fn kubevirt_vectors(
    #[case] vmi: VmiSpec,
    #[case] release: &str,
    #[case] fields: &[&str],
    #[case] expected: Expected,
) {
    let policy = policy_with_default(release, fields);
    // The Pod before sizing: device resources only (no quota-driven limits).
    let mut resources = compute_resources(&[], &[]);
    if vmi.gpus > 0 {
        let gpus = vmi.gpus.to_string();
        set(&mut resources, "/requests/nvidia.com~1GH100", json!(gpus));
        set(&mut resources, "/limits/nvidia.com~1GH100", json!(gpus));
    }
    let pod = launcher_pod(&vmi.name, resources.clone());
    let request = request(pod, "CREATE");
    let decision = review(&policy, Some(&vmi.to_json()), &request);
    assert_eq!(
        decision.outcome.label(),
        OutcomeLabel::Patched,
        "{}",
        decision.explain()
    );
    let after = patched(&request, &decision);
    let (requests, limits) = container_resources(&after, 0);

    let millis = |map: &BTreeMap<String, Quantity>, name: &str| {
        map.get(name).map(|cpu| crate::support::millis(*cpu))
    };
    let bytes = |map: &BTreeMap<String, Quantity>, name: &str| map.get(name).map(|m| whole(*m));
    let explain = decision.explain();
    assert_eq!(millis(&requests, "cpu"), expected.cpu_request, "{explain}");
    assert_eq!(millis(&limits, "cpu"), expected.cpu_limit, "{explain}");
    assert_eq!(
        bytes(&requests, "memory"),
        expected.memory_request,
        "{explain}"
    );
    assert_eq!(bytes(&limits, "memory"), expected.memory_limit, "{explain}");
    let hugepages = |map: &BTreeMap<String, Quantity>| {
        map.iter()
            .filter(|(name, _)| name.starts_with("hugepages-"))
            .map(|(name, amount)| (name.clone(), whole(*amount)))
            .collect::<Vec<_>>()
    };
    let expected_hugepages: Vec<(String, u64)> = expected
        .hugepages
        .iter()
        .map(|(name, amount)| ((*name).to_owned(), *amount))
        .collect();
    assert_eq!(hugepages(&requests), expected_hugepages, "{explain}");
    assert_eq!(hugepages(&limits), expected_hugepages, "{explain}");
    for (section, name, text) in expected.texts {
        assert_eq!(
            after["spec"]["containers"][0]["resources"][section][name], *text,
            "{section}.{name}\n{explain}"
        );
    }
    // Device resources and ephemeral storage are left as they were.
    for (name, value) in resources["requests"].as_object().expect("map") {
        assert_eq!(
            &after["spec"]["containers"][0]["resources"]["requests"][name],
            value
        );
    }
}

#[test]
fn the_overhead_annotation_is_compared_by_value() {
    // KubeVirt's overhead for this Pod is 268Mi (v1.9, 1 vCPU, guest 1Gi);
    // written as "268Mi" instead of "281018368" it is still correct, so it
    // is neither rewritten nor copied aside.
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!("268Mi"),
    );
    let decision = review(&team(), Some(&vmi()), &request(pod, "CREATE"));
    let paths = op_paths(&decision);
    assert!(
        paths
            .iter()
            .all(|path| !path.contains("memory-overhead-bytes")),
        "{paths:?}"
    );
}

// === Issue 10: fidelity, through `review` ===

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
fn issue_10_founding_example_requests_exactly_16gi() {
    // KubeVirt's WithMemoryOverhead honours the VMI's own
    // overcommitGuestOverhead: the request is the VMI's 16Gi. Before issue 10
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
fn issue_10_reported_passt_memory_is_not_multiplied_by_overhead_ratio() {
    // KubeVirt v1.9 reports 268Mi + passt 250Mi = 543162368. overheadRatio
    // 1.5 multiplies the 281018368 before passt: ⌈281018368 / 1000⌉ =
    // 281019 kB × 0.5 = 140509.5 → 140509000 B; overhead 281018368 +
    // 140509000 + 262144000 = 683671368; memory 1Gi + 683671368 = 1757413192
    // (before issue 10: 1888485192, the whole figure multiplied).
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
fn issue_10_downward_metrics_device_adds_no_overhead() {
    // Only a downwardMetrics *volume* is KubeVirt's downward-metrics disk
    // (HasDownwardMetricDisk): 1Gi + 268Mi = 1292Mi, not 1293Mi.
    let mut vmi = vmi();
    set(&mut vmi, "/spec/domain/devices/downwardMetrics", json!({}));
    let request = request(kubevirt_pod(), "CREATE");
    let decision = review(&team(), Some(&vmi), &request);
    let (requests, _) = container_resources(&patched(&request, &decision), 0);
    assert_eq!(whole(requests["memory"]), KUBEVIRT_MEMORY);
}
