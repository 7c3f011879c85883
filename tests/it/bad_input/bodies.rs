//! The bodies the table's rows are made of: the example review, edited.

use super::*;

pub(super) fn example() -> Value {
    serde_json::from_str(EXAMPLE_REVIEW).expect("example review")
}

pub(super) fn bytes(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("serialises")
}

/// The example review, edited.
pub(super) fn review_edit(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = example();
    edit(&mut review);
    bytes(&review)
}

/// The example review with its launcher Pod edited.
pub(super) fn launcher(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    review_edit(|review| edit(&mut review["request"]["object"]))
}

/// The example launcher Pod with the compute container's memory request
/// set to `value`.
pub(super) fn memory_request(value: Value) -> Vec<u8> {
    launcher(|pod| set(pod, "/spec/containers/0/resources/requests/memory", value))
}

/// A review of `object` (group, kind) in `dev-a` on `operation`.
pub(super) fn object_review(group: &str, kind: &str, object: Value, operation: &str) -> Vec<u8> {
    review_edit(|review| {
        let request = &mut review["request"];
        request["kind"] = json!({"group": group, "version": "v1", "kind": kind});
        request["operation"] = json!(operation);
        request["object"] = object;
    })
}

/// A Pod under the `kata-qemu` class with one container's resources.
pub(super) fn kata_pod(resources: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sandbox", "namespace": "dev-a", "labels": {"app": "web"}},
        "spec": {
            "runtimeClassName": "kata-qemu",
            "containers": [{"name": "web", "image": "nginx:1.27", "resources": resources}],
        },
    })
}

/// The example review padded with trailing whitespace to `length` bytes.
pub(super) fn padded_example(length: usize) -> Vec<u8> {
    let mut body = EXAMPLE_REVIEW.as_bytes().to_vec();
    body.resize(length, b' ');
    body
}

/// `depth` nested arrays, as JSON text.
pub(super) fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}
