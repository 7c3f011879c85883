//! The review path.

use super::*;

/// Strings and keys for review mutations: quantities good and bad, and the
/// names the sizer looks for.
const REVIEW_WORDS: &[&str] = &[
    "1Gi",
    "-1Gi",
    "100m",
    "0",
    "9999Ei",
    "1e400",
    "1.5.5Gi",
    "",
    "１Gi",
    "2404Mi",
    "1200m",
    "compute",
    "virt-launcher",
    "kata-qemu",
    "kata-clh",
    "VirtualMachineInstance",
    "ci-runner-01",
    "dev-a",
    "prod-a",
    "staging",
    "CREATE",
    "UPDATE",
    "DELETE",
    "Pod",
    "RuntimeClass",
    "node.k8s.io",
    "v1",
    "production",
    "batch",
    "dev",
    "nope",
    "😀",
];
const REVIEW_KEYS: &[&str] = &[
    "requests",
    "limits",
    "cpu",
    "memory",
    "hugepages-2Mi",
    "hugepages-1Gi",
    "name",
    "resources",
    "overhead",
    "containers",
    "kubevirt.io",
    "kubevirt.io/domain",
    "kubevirt.io/memory-overhead-bytes",
    "virt-sizer.io/kubevirt-memory-overhead-bytes",
    "virt-sizer.io/profile",
    "class",
    "runtimeClassName",
    "annotations",
    "labels",
    "ownerReferences",
    "kind",
    "devices.kubevirt.io/kvm",
    "io.katacontainers.config.hypervisor.default_vcpus",
    "io.katacontainers.config.hypervisor.default_memory",
    "uid",
    "object",
    "operation",
];

/// A Kata sandbox Pod review in `dev-a`.
fn kata_review() -> Value {
    let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("example");
    review["request"]["object"] = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sandbox", "namespace": "dev-a",
                     "annotations": {"io.katacontainers.config.hypervisor.default_memory": "128"}},
        "spec": {
            "runtimeClassName": "kata-qemu",
            "overhead": {"cpu": "250m", "memory": "2208Mi"},
            "containers": [
                {"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}},
                {"name": "side", "image": "envoy", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "64Mi"}}},
            ],
        },
    });
    review
}

/// A launcher Pod review, a Kata Pod review or a RuntimeClass review, with
/// one to four random mutations.
fn mutated_review() -> impl Strategy<Value = Value> {
    let launcher: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("example");
    let mut with_overhead = launcher.clone();
    with_overhead["request"]["object"]["spec"]["overhead"] =
        json!({"cpu": "10m", "memory": "64Mi"});
    let runtime_class: Value = serde_json::from_str(EXAMPLE_RUNTIME_CLASS).expect("example");
    let base = prop_oneof![
        5 => Just(launcher),
        2 => Just(with_overhead),
        2 => Just(kata_review()),
        1 => Just(runtime_class),
    ];
    (
        base,
        prop::collection::vec(
            mutation(json_value(REVIEW_WORDS, REVIEW_KEYS), REVIEW_KEYS),
            1..5,
        ),
    )
        .prop_map(|(mut review, mutations)| {
            for mutation in &mutations {
                mutation.apply(&mut review);
            }
            review
        })
}

/// A quantity in a JSON value (string or number).
fn quantity(value: Option<&Value>) -> Option<Quantity> {
    match value? {
        Value::String(text) => Quantity::parse(text).ok(),
        Value::Number(number) => Quantity::parse(&number.to_string()).ok(),
        _ => None,
    }
}

/// Whether `container` has request ≤ limit for `resource` (or lacks one).
fn within_limit(container: &Value, resource: &str) -> bool {
    let request = quantity(container.pointer(&format!("/resources/requests/{resource}")));
    let limit = quantity(container.pointer(&format!("/resources/limits/{resource}")));
    match (request, limit) {
        (Some(request), Some(limit)) => request <= limit,
        _ => true,
    }
}

/// The hard rules on a patched Pod: requests ≤ limits for cpu and memory
/// (in the sized compute container always, in any other container whenever
/// the input already had it), hugepages requests = limits in the sized
/// compute container, `spec.overhead` untouched.
fn check_patched_pod(before: &Value, patched: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        serde_json::to_string(&before.pointer("/spec/overhead")).expect("json"),
        serde_json::to_string(&patched.pointer("/spec/overhead")).expect("json"),
        "spec.overhead changed"
    );
    let launcher = before.pointer("/metadata/labels/kubevirt.io") == Some(&json!("virt-launcher"));
    let (Some(old), Some(new)) = (
        before.pointer("/spec/containers").and_then(Value::as_array),
        patched
            .pointer("/spec/containers")
            .and_then(Value::as_array),
    ) else {
        return Ok(());
    };
    prop_assert_eq!(old.len(), new.len(), "containers added or removed");
    let compute = new
        .iter()
        .position(|container| container.get("name") == Some(&json!("compute")));
    for (index, (old, new)) in old.iter().zip(new).enumerate() {
        let sized = launcher && Some(index) == compute;
        for resource in ["cpu", "memory"] {
            if sized || within_limit(old, resource) {
                prop_assert!(
                    within_limit(new, resource),
                    "container {} {} request > limit after the patch: {}",
                    index,
                    resource,
                    new["resources"]
                );
            }
        }
        if sized {
            let names: Vec<&String> = ["requests", "limits"]
                .iter()
                .filter_map(|section| new["resources"][section].as_object())
                .flat_map(Map::keys)
                .filter(|name| name.starts_with("hugepages-"))
                .collect();
            for name in names {
                let request = quantity(new["resources"]["requests"].get(name));
                let limit = quantity(new["resources"]["limits"].get(name));
                prop_assert!(
                    request.is_some() && request == limit,
                    "compute {} request {:?} ≠ limit {:?}",
                    name,
                    request,
                    limit
                );
            }
        }
    }
    Ok(())
}

/// One request through the router on `runtime`: never a 5xx, 200 or 400
/// only (the bodies are small), and a 200 passes [`check_answer`].
fn review_through_router(
    runtime: &tokio::runtime::Runtime,
    router: &axum::Router,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Option<Answer>, TestCaseError> {
    let (status, answer) = runtime.block_on(post(router, content_type, body.clone()));
    prop_assert!(
        status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
        "status {} for {}: {}",
        status,
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&answer)
    );
    if status != StatusCode::OK {
        return Ok(None);
    }
    check_answer(&body, &answer).map(Some).map_err(|why| {
        TestCaseError::fail(format!("{why}\nfor {}", String::from_utf8_lossy(&body)))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn assert_no_panic_caught(state: &virt_sizer::server::AppState) {
    let metrics = state.metrics().render();
    assert!(
        metrics.contains("virt_sizer_admission_panics_total 0"),
        "a panic was caught while deciding:\n{metrics}"
    );
}

/// Arbitrary bytes, and the example review with random bytes flipped,
/// dropped, inserted or cut, under various content types.
fn hostile_bytes() -> impl Strategy<Value = (Option<&'static str>, Vec<u8>)> {
    let example = EXAMPLE_REVIEW.as_bytes().to_vec();
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0_u8..3), 1..4);
    let damaged = (edits, any::<Index>(), any::<bool>()).prop_map(move |(edits, cut, truncate)| {
        let mut body = example.clone();
        for (at, byte, kind) in edits {
            let at = at.index(body.len());
            match kind {
                0 => body[at] = byte,
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        if truncate {
            body.truncate(cut.index(body.len() + 1));
        }
        body
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        "\\PC{0,200}".prop_map(String::into_bytes),
        damaged,
    ];
    let content_type = prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(None),
        1 => Just(Some("application/json, text/plain")),
    ];
    (content_type, body)
}

#[test]
fn arbitrary_bytes_never_get_a_5xx_or_a_panic() {
    let runtime = runtime();
    let (router, state) = router();
    let (answered, unverified) = (AtomicUsize::new(0), AtomicUsize::new(0));
    fuzz(
        "review_arbitrary_bytes",
        512,
        hostile_bytes(),
        |(content_type, body)| {
            if let Some(answer) = review_through_router(&runtime, &router, content_type, body)? {
                answered.fetch_add(1, Ordering::Relaxed);
                if !answer.verified {
                    unverified.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "fuzz review_arbitrary_bytes: {} answered 200 ({} not readable back to check uid and patch)",
        answered.load(Ordering::Relaxed),
        unverified.load(Ordering::Relaxed)
    );
    assert_no_panic_caught(&state);
}

#[test]
fn mutated_reviews_get_200_or_400_and_every_patch_keeps_the_hard_rules() {
    let runtime = runtime();
    let (router, state) = router();
    let patched = AtomicUsize::new(0);
    fuzz("review_structure_aware", 512, mutated_review(), |review| {
        let body = serde_json::to_vec(&review).expect("serialises");
        let Some(answer) =
            review_through_router(&runtime, &router, Some("application/json"), body)?
        else {
            return Ok(());
        };
        prop_assert!(answer.verified, "a valid JSON review not readable back");
        if let Some(pod) = &answer.patched
            && answer.kind == "Pod"
        {
            patched.fetch_add(1, Ordering::Relaxed);
            check_patched_pod(&answer.object, pod)?;
        }
        Ok(())
    });
    eprintln!(
        "fuzz review_structure_aware: {} patched Pods checked",
        patched.load(Ordering::Relaxed)
    );
    assert_no_panic_caught(&state);
}
