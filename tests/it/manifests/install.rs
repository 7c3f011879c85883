//! Tests: `manifests/install.yaml`, the default install in one file
//! (self-managed certificates).

use serde_json::json;

use super::shipped_policy::{assert_policy_changes_nothing, policy_text};
use super::*;

/// `VIRT_SIZER_E2E=required`: what needs the envtest assets fails instead
/// of being skipped without them.
const REQUIRED_VARIABLE: &str = "VIRT_SIZER_E2E";

fn self_managed() -> Expect {
    Expect {
        failure_policy: "Ignore",
        ca_bundle: CaBundle::SelfManaged,
    }
}

#[test]
fn install_yaml_satisfies_every_rule_of_the_default_install() {
    let docs = read_docs(&install_yaml());
    check_rules(&docs, &self_managed(), "manifests/install.yaml");
    assert_policy_changes_nothing(&policy_text(&docs), "manifests/install.yaml");
    // Nothing to install first: no cert-manager kind, no Secret to make.
    for doc in &docs {
        let api_version = str_at(&doc.value, "/apiVersion").unwrap_or_default();
        assert!(
            !api_version.starts_with("cert-manager.io/") && doc.kind() != "Secret",
            "{} {}",
            doc.kind(),
            doc.name()
        );
    }
}

#[test]
fn install_yaml_is_what_kubectl_kustomize_renders() {
    if !have_kubectl() {
        let message = format!(
            "not run: no kubectl ({}), so manifests/install.yaml is not compared with \
             `kubectl kustomize manifests`; set KUBEBUILDER_ASSETS to the envtest assets",
            kubectl().display()
        );
        let required = std::env::var(REQUIRED_VARIABLE).is_ok_and(|value| value == "required");
        assert!(!required, "{message} ({REQUIRED_VARIABLE}=required)");
        eprintln!("{message}");
        return;
    }
    let rendered = kustomize(&manifests_dir());
    let file = read_docs(&install_yaml());
    let again = "render it again: kubectl kustomize manifests > manifests/install.yaml";
    for (index, (ours, theirs)) in file.iter().zip(&rendered).enumerate() {
        assert!(
            ours.value == theirs.value,
            "manifests/install.yaml object {index} ({} {}) differs from `kubectl kustomize \
             manifests` ({} {}); {again}",
            ours.kind(),
            ours.name(),
            theirs.kind(),
            theirs.name()
        );
    }
    assert_eq!(
        file.len(),
        rendered.len(),
        "manifests/install.yaml has {} objects, `kubectl kustomize manifests` {}; {again}",
        file.len(),
        rendered.len()
    );
}

/// The rules catch a wider RBAC or a broken self-managed setup: each case
/// changes one thing of install.yaml and names the problem found.
#[rstest::rstest]
#[case::secret_role_lists_secrets(
    "Role", CERTIFICATES_ROLE, "/rules/0/verbs", json!(["get", "update", "list"]),
    "virt-sizer-certificates"
)]
#[case::secret_role_reads_every_secret(
    "Role", CERTIFICATES_ROLE, "/rules/0/resourceNames", json!([]),
    "virt-sizer-certificates"
)]
#[case::webhook_role_updates_any_configuration(
    "ClusterRole", WEBHOOK_CONFIGURATIONS_ROLE, "/rules/0/resourceNames", json!([]),
    "virt-sizer-webhook-configurations"
)]
#[case::no_pod_namespace_for_the_secret(
    "Deployment", "virt-sizer", "/spec/template/spec/containers/0/env", json!([]),
    "names a variable the container does not define"
)]
#[case::a_ca_bundle_to_erase_the_injected_one(
    "MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION, "/webhooks/0/clientConfig/caBundle",
    json!("Cg=="), "caBundle Some(\"Cg==\")"
)]
fn a_change_that_breaks_self_managed_certificates_is_caught(
    #[case] kind: &str,
    #[case] name: &str,
    #[case] pointer: &str,
    #[case] value: Value,
    #[case] expected: &str,
) {
    let mut docs = read_docs(&install_yaml());
    assert_eq!(rule_problems(&docs, &self_managed()), Vec::<String>::new());
    let doc = docs
        .iter_mut()
        .find(|doc| doc.kind() == kind && doc.name() == name)
        .unwrap_or_else(|| panic!("{kind} {name}"));
    let (parent, field) = pointer.rsplit_once('/').expect("a pointer");
    doc.value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} in {kind} {name}"))
        .insert(field.to_owned(), value);
    let problems = rule_problems(&docs, &self_managed());
    assert!(
        problems.iter().any(|problem| problem.contains(expected)),
        "{expected:?} not in {problems:#?}"
    );
}
