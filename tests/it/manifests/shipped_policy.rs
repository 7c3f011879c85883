//! Tests: the shipped policy changes nothing.

use super::*;

/// The KubeVirt settings a policy must leave to the cluster's KubeVirt CR,
/// as JSON pointers into the policy.
const KUBEVIRT_SETTINGS: &[&str] = &[
    "/kubevirt/release",
    "/profiles/default/cpuAllocationRatio",
    "/profiles/default/memoryOvercommitPercent",
    "/profiles/default/overheadRatio",
];

/// `data["policy.yaml"]` of the policy ConfigMap among `docs`.
pub(super) fn policy_text(docs: &[Doc]) -> String {
    str_at(
        &one(docs, "ConfigMap", POLICY_CONFIGMAP).value,
        "/data/policy.yaml",
    )
    .expect("data.policy.yaml")
    .to_owned()
}

/// The dev-namespace fixture's launcher Pod (12 vCPU, 2Gi guest, as
/// KubeVirt renders it with its defaults: cpu 1200m, memory 2404Mi) and its
/// VMI, moved into `namespace` labelled `labels`, sized under `policy`.
fn size_fixture_launcher(
    policy: &ValidPolicy,
    namespace: &str,
    labels: &[(&str, &str)],
) -> virt_sizer::admission::Decision {
    let case = repo().join("tests/fixtures/cases/dev-namespace");
    let mut pod = virt_sizer::documents::read_document(&case.join("launcher-pod.yaml"))
        .expect("launcher Pod");
    let mut vmi = virt_sizer::documents::read_document(&case.join("vmi.yaml")).expect("VMI");
    pod["metadata"]["namespace"] = Value::from(namespace);
    vmi["metadata"]["namespace"] = Value::from(namespace);
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let request = virt_sizer::commands::request_for_object(pod, namespace, "CREATE");
    crate::support::review_in(policy, Some(&vmi), &labels, &request)
}

/// The shipped policy: no KubeVirt setting of its own, and a launcher Pod
/// in a `prod-*` and in a `tier: dev` namespace keeps every resource
/// KubeVirt gave it (the patch only adds the decision annotation); Kata
/// RuntimeClasses and Pods are not touched at all.
pub(super) fn assert_policy_changes_nothing(text: &str, what: &str) {
    let raw = &parse_documents(text).expect("YAML")[0];
    for pointer in KUBEVIRT_SETTINGS {
        assert!(
            raw.pointer(pointer).is_none(),
            "{what}: {pointer} must stay unset (it comes from the KubeVirt CR)"
        );
    }
    assert!(
        text.lines()
            .take(3)
            .any(|line| line.contains("changes nothing")),
        "{what}: the policy's first lines must say it changes nothing:\n{text}"
    );
    let policy = ValidPolicy::from_yaml(text)
        .unwrap_or_else(|errors| panic!("{what}: invalid policy:\n{errors}"));
    for (namespace, labels) in [("prod-x", &[][..]), ("dev-a", &[("tier", "dev")][..])] {
        let decision = size_fixture_launcher(&policy, namespace, labels);
        let ops = crate::support::patch_ops(&decision);
        let paths: Vec<&str> = ops.iter().filter_map(|op| str_at(op, "/path")).collect();
        assert!(
            paths.is_empty() && decision.changes.is_empty(),
            "{what}: in {namespace} {labels:?} nothing may change, not even an annotation: {ops:?}"
        );
        assert_eq!(
            decision.outcome.label(),
            virt_sizer::admission::OutcomeLabel::Unchanged,
            "{what}"
        );
        assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
    }
    for object in [
        crate::support::runtime_class("kata-qemu", Some(("250m", "160Mi"))),
        crate::support::plain_pod(Some("kata-qemu")),
    ] {
        let request = virt_sizer::commands::request_for_object(object, "dev-a", "CREATE");
        let decision = crate::support::review_in(&policy, None, &BTreeMap::new(), &request);
        assert!(
            decision.response().patch.is_none() && decision.changes.is_empty(),
            "{what}: {:?} {:?}",
            decision.outcome.label(),
            decision.changes
        );
    }
}

#[test]
fn shipped_policy_changes_nothing_in_prod_or_dev_namespaces() {
    assert_policy_changes_nothing(&policy_text(&base_docs()), "manifests/base");
}

/// The example overlay's policy is the one that does change sizing: the
/// same Pods are resized there (so the test above would catch a policy that
/// is not a no-op), and it too leaves the KubeVirt settings to the CR.
#[test]
fn example_policy_overlay_sizes_prod_and_dev_namespaces() {
    let patch = read_docs(&manifests_dir().join("overlays/example-policy/policy.yaml"));
    let text = policy_text(&patch);
    let raw = &parse_documents(&text).expect("YAML")[0];
    for pointer in KUBEVIRT_SETTINGS {
        assert!(raw.pointer(pointer).is_none(), "{pointer} is set");
    }
    let policy = ValidPolicy::from_yaml(&text).unwrap_or_else(|errors| panic!("{errors}"));
    for (namespace, labels, cpu) in [
        ("prod-x", &[][..], "12"),
        ("dev-a", &[("tier", "dev")][..], "600m"),
    ] {
        let decision = size_fixture_launcher(&policy, namespace, labels);
        let cpu_change = decision
            .changes
            .iter()
            .find(|change| change.field.ends_with("resources.requests.cpu"));
        assert_eq!(
            cpu_change.and_then(|change| change.new.as_ref().map(ToString::to_string)),
            Some(cpu.to_owned()),
            "{namespace}: {:?}",
            decision.changes
        );
    }
}

/// The shipped ConfigMap holds the built-in policy's exact bytes, so a
/// cluster running it and a server given no policy stamp the same digest on
/// their decisions (the digest is the SHA-256 of the policy's bytes).
#[test]
fn the_shipped_policy_is_the_builtin_policy_with_its_digest() {
    let text = policy_text(&base_docs());
    assert!(
        text == virt_sizer::sizing::policy::BUILTIN_POLICY_YAML,
        "manifests/base/policy-configmap.yaml must hold src/sizing/default-policy.yaml verbatim"
    );
    let shipped = ValidPolicy::from_yaml(&text).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(shipped.digest, ValidPolicy::builtin().digest);
}
