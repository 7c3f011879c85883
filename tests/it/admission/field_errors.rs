//! Errors name the field.

use super::*;

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
