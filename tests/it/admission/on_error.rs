//! `onError`.

use super::*;

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
