//! Robustness: structurally random requests, objects and VMIs never panic
//! `review`.

use super::*;
use virt_sizer::sizing::vmi::ReadVmi;

/// Keys and leaves that steer random objects into the code paths.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("metadata"),
        Just("labels"),
        Just("annotations"),
        Just("kubevirt.io"),
        Just("kubevirt.io/domain"),
        Just("kubevirt.io/memory-overhead-bytes"),
        Just("virt-sizer.io/profile"),
        Just("ownerReferences"),
        Just("kind"),
        Just("name"),
        Just("namespace"),
        Just("spec"),
        Just("containers"),
        Just("resources"),
        Just("requests"),
        Just("limits"),
        Just("cpu"),
        Just("memory"),
        Just("hugepages-2Mi"),
        Just("runtimeClassName"),
        Just("handler"),
        Just("overhead"),
        Just("podFixed"),
        Just("x"),
    ]
    .prop_map(str::to_owned)
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("virt-launcher"),
            Just("compute"),
            Just("kata-qemu"),
            Just("VirtualMachineInstance"),
            Just("vm-gen"),
            Just("1Gi"),
            Just("100m"),
            Just("-1"),
            Just("1.5.5Gi"),
            Just("9999Ei"),
            Just("0.0000000001"),
            Just(""),
            Just("2Mi"),
            Just("Pod"),
        ]
        .prop_map(Value::from),
        "[a-z0-9.~/-]{0,12}".prop_map(Value::from),
    ]
}

fn arb_json() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Pointers into well-formed objects where a random value does damage.
const MUTATION_POINTS: [&str; 24] = [
    "/metadata",
    "/metadata/labels",
    "/metadata/labels/kubevirt.io",
    "/metadata/annotations",
    "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
    "/metadata/annotations/virt-sizer.io~1kubevirt-memory-overhead-bytes",
    "/metadata/annotations/virt-sizer.io~1profile",
    "/metadata/ownerReferences",
    "/metadata/namespace",
    "/spec",
    "/spec/containers",
    "/spec/containers/0",
    "/spec/containers/0/name",
    "/spec/containers/0/resources",
    "/spec/containers/0/resources/requests",
    "/spec/containers/0/resources/limits",
    "/spec/containers/0/resources/requests/memory",
    "/spec/containers/0/resources/limits/cpu",
    "/spec/containers/0/resources/requests/hugepages-2Mi",
    "/spec/runtimeClassName",
    "/spec/domain/cpu",
    "/spec/domain/memory/guest",
    "/spec/domain/resources",
    "/overhead/podFixed",
];

/// Sets `value` at `path` when the parent exists (objects and in-range
/// array indices only).
fn try_set(object: &mut Value, path: &str, value: Value) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/");
    match object.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
        }
        Some(Value::Array(items)) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// A well-formed object of some kind, damaged at a few points, or pure noise.
fn arb_object() -> BoxedStrategy<Value> {
    let base = prop_oneof![
        4 => arb_case().prop_map(|case| case.pod.pod(&case.vmi.name)),
        1 => Just(crate::support::runtime_class(
            "kata-qemu",
            Some(("250m", "160Mi"))
        )),
        1 => Just(crate::support::plain_pod(Some("kata-qemu"))),
        1 => arb_vmi().prop_map(|vmi| vmi.to_json()),
    ];
    let damaged = (
        base,
        prop::collection::vec(
            (prop::sample::select(&MUTATION_POINTS[..]), arb_json()),
            0..4,
        ),
    )
        .prop_map(|(mut object, mutations)| {
            for (path, value) in mutations {
                try_set(&mut object, path, value);
            }
            object
        });
    prop_oneof![3 => damaged, 1 => arb_json()].boxed()
}

fn arb_operation() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("CREATE"),
        2 => Just("UPDATE"),
        1 => Just("DELETE"),
        1 => Just("CONNECT"),
        1 => Just(""),
        1 => Just("create"),
    ]
}

/// Mostly what the apiserver would send for the object (kind from its
/// `apiVersion`/`kind`), sometimes a kind that does not match it.
fn arb_request() -> BoxedStrategy<AdmissionRequest> {
    let kind = prop_oneof![
        Just(("", "Pod")),
        Just(("node.k8s.io", "RuntimeClass")),
        Just(("apps", "Deployment")),
        Just(("", "")),
        Just(("", "RuntimeClass")),
    ];
    (
        prop::option::weighted(0.25, kind),
        arb_operation(),
        prop::option::weighted(0.95, arb_object()),
        "[a-z0-9-]{0,36}",
        prop_oneof![Just(""), Just("tenant-a"), Just("dev-x")],
    )
        .prop_map(|(kind, operation, object, uid, namespace)| {
            let mut request = match &object {
                Some(object) => {
                    virt_sizer::commands::request_for_object(object.clone(), namespace, operation)
                }
                None => virt_sizer::commands::request_for_object(json!({}), namespace, operation),
            };
            request.object = object;
            request.uid = uid;
            if let Some((group, kind)) = kind {
                request.kind = GroupVersionKind {
                    group: group.to_owned(),
                    version: "v1".to_owned(),
                    kind: kind.to_owned(),
                };
            }
            request
        })
        .boxed()
}

/// A policy with rules, opt-in, a Kata class and `onError: Deny`, so that
/// random requests reach every path.
const ROBUSTNESS_POLICY: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt: {release: "1.9"}
profiles:
  default: {cpuAllocationRatio: 10}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150, limits: Ratio, limitsRatio: {memory: "1.5"}}
  production: {cpuAllocationRatio: 1, limits: EqualRequests, overheadMargin: 64Mi}
rules:
  - namespaces: ["dev-*"]
    profile: dev
    allowedProfiles: [dev, production]
onError: Deny
kata:
  runtimeClasses:
    kata-qemu: {runtime: go, defaultVcpus: "1", defaultMemory: 2048Mi, vmm: {cpu: 250m, memory: 160Mi}, guestMemory: Account}
"#;

proptest! {
    #![proptest_config(config())]

    /// Structurally random requests, objects and VMIs never panic `review`,
    /// and every response carries the request's uid and encodes.
    #[test]
    fn review_never_panics_and_keeps_the_uid(
        request in arb_request(),
        vmi in prop::option::weighted(0.9, prop_oneof![3 => arb_vmi().prop_map(|vmi| vmi.to_json()), 1 => arb_json()]),
        unavailable in prop::option::weighted(0.1, Just("timeout after 2s")),
    ) {
        let policy = policy(ROBUSTNESS_POLICY);
        let labels = BTreeMap::new();
        let vmi = vmi.as_ref().map(ReadVmi::from_value);
        let env = Environment {
            policy: &policy,
            namespace_labels: &labels,
            vmi: match (vmi.as_ref(), unavailable) {
                (None, Some(reason)) => admission::VmiLookup::Unavailable(reason),
                (found, _) => admission::VmiLookup::of(found),
            },
        };
        let decision = admission::review(&env, &request);
        prop_assert_eq!(&decision.response().uid, &request.uid);
        prop_assert!(admission::encode_response(&decision).is_ok());
        // A scalar where the patch would add a map entry (`resources: "x"`,
        // `metadata.annotations: "x"`, a RuntimeClass's `overhead: "x"`) is
        // refused with an error naming the field, so every patch applies.
        let applied = admission::patched_object(&request, &decision);
        prop_assert!(applied.is_ok(), "{:?}\n{}", applied, serde_json::to_string(&request.object).unwrap_or_default());
        prop_assert_eq!(decision.response().allowed, decision.outcome.label() != OutcomeLabel::ErrorDenied);
        let _ = decision.explain();
    }
}
