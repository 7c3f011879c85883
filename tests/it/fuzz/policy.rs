//! `ValidPolicy::from_yaml`.

use super::*;

/// `Ok`, or a non-empty error list whose every entry has a path. Counts
/// the accepted ones in `accepted`.
fn policy_answers_with_paths(text: &str, accepted: &AtomicUsize) -> Result<(), TestCaseError> {
    match ValidPolicy::from_yaml(text) {
        Ok(_) => {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Err(errors) => {
            prop_assert!(
                !errors.listed.is_empty(),
                "an empty error list for {:?}",
                text
            );
            for error in &errors.listed {
                prop_assert!(
                    !error.path.trim().is_empty(),
                    "an error without a path: {:?} for\n{}",
                    error,
                    text
                );
            }
        }
    }
    Ok(())
}

#[test]
fn policy_from_yaml_never_panics_on_any_text() {
    let strategy = prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9:{}\\[\\],.\n \\-&*!|>'\"#%@`~<?]{0,200}",
    ];
    let accepted = AtomicUsize::new(0);
    fuzz("policy_any_text", 512, strategy, |text| {
        policy_answers_with_paths(&text, &accepted)
    });
    eprintln!(
        "fuzz policy_any_text: {} valid policies",
        accepted.load(Ordering::Relaxed)
    );
}

/// Every field name of the policy, the profile and handler names
/// the example uses, and YAML's merge key.
const POLICY_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "kubevirt",
    "profiles",
    "rules",
    "onError",
    "kata",
    "release",
    "architecture",
    "bindingPlugins",
    "autoCPULimitNamespaceLabelSelector",
    "default",
    "dev",
    "production",
    "batch",
    "shadow-dev",
    "cpuAllocationRatio",
    "memoryOvercommitPercent",
    "guestOverhead",
    "overheadRatio",
    "overheadMargin",
    "limits",
    "limitsRatio",
    "mode",
    "cpu",
    "memory",
    "namespaces",
    "namespaceSelector",
    "vmSelector",
    "profile",
    "allowedProfiles",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "runtimeClasses",
    "pods",
    "kata-qemu",
    "kata-clh",
    "runtime",
    "defaultVcpus",
    "defaultMemory",
    "overheadVcpus",
    "overheadMemory",
    "sandboxCgroupOnly",
    "vmm",
    "guestMemory",
    "fillLimits",
    "minMemory",
    "<<",
    "tier",
    "unknownField",
];

/// YAML scalars as written: every enum value, numbers from tiny to beyond
/// u64, negatives, floats and their specials, quantities good and bad,
/// nulls, tags, anchors and aliases.
const POLICY_SCALARS: &[&str] = &[
    "0",
    "1",
    "-1",
    "10",
    "150",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775809",
    "1e400",
    "-1e400",
    "1.0",
    "0.5",
    "0.999999999999999999",
    "-0.0",
    ".inf",
    "-.inf",
    ".nan",
    "~",
    "null",
    "true",
    "false",
    "no",
    "''",
    "\"\"",
    "1Gi",
    "-1Gi",
    "9999Ei",
    "256Mi",
    "250m",
    "1.5.5Gi",
    "0x10",
    "0o17",
    "1_000",
    "\"１Gi\"",
    "abc",
    "Request",
    "Omit",
    "None",
    "EqualRequests",
    "Ratio",
    "Enforce",
    "Shadow",
    "Allow",
    "Deny",
    "go",
    "go-static",
    "runtime-rs",
    "FromRequests",
    "Ignore",
    "Account",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "\"prod-*\"",
    "\"[\"",
    "\"**\"",
    "\"1.9\"",
    "\"1.5\"",
    "\"main\"",
    "1.9",
    "amd64",
    "s390x",
    "virt-sizer.io/v1alpha1",
    "SizingPolicy",
    "\"😀\"",
    "2001-01-01",
    "!!binary aGVsbG8=",
    "!!str 1",
    "&anchor 5",
    "*anchor",
    "\"tier\"",
    "dev",
    "default",
    "production",
    "kata-qemu",
];

/// A YAML node, emitted in flow style so any nesting stays valid YAML.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn emit(&self, out: &mut String) {
        match self {
            Node::Scalar(text) => out.push_str(text),
            Node::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    item.emit(out);
                }
                out.push(']');
            }
            Node::Map(entries) => {
                out.push('{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(key);
                    out.push_str(": ");
                    value.emit(out);
                }
                out.push('}');
            }
        }
    }
}

fn yaml_node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => select(POLICY_SCALARS).prop_map(|text| Node::Scalar(text.to_owned())),
        1 => any::<i64>().prop_map(|number| Node::Scalar(number.to_string())),
        1 => any::<f64>().prop_map(|number| Node::Scalar(format!("{number:?}"))),
        1 => "[a-z*?\\[\\]/.-]{0,10}".prop_map(|text| Node::Scalar(format!("{text:?}"))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
            prop::collection::vec((select(POLICY_KEYS).prop_map(str::to_owned), inner), 0..6)
                .prop_map(Node::Map),
        ]
    })
}

/// A policy document built from the real field names with random values at
/// random places.
fn generated_policy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (select(POLICY_KEYS).prop_map(str::to_owned), yaml_node()),
        0..8,
    )
    .prop_map(|entries| {
        let mut text = String::new();
        Node::Map(entries).emit(&mut text);
        text
    })
}

/// The example policy, randomly mutated, as block YAML.
fn mutated_policy() -> impl Strategy<Value = String> {
    let example: Value = yaml_serde::from_str(include_str!("../../../examples/policy.yaml"))
        .expect("example policy");
    prop::collection::vec(mutation(policy_value(), POLICY_KEYS), 1..5).prop_map(move |mutations| {
        let mut policy = example.clone();
        for mutation in &mutations {
            mutation.apply(&mut policy);
        }
        yaml_serde::to_string(&policy).expect("serialises")
    })
}

/// Random JSON values whose strings and keys come from the policy's vocabulary.
fn policy_value() -> BoxedStrategy<Value> {
    json_value(
        &[
            "1Gi",
            "-1Gi",
            "9999Ei",
            "1e400",
            "abc",
            "",
            "1.0",
            "0.5",
            "Request",
            "Omit",
            "EqualRequests",
            "Ratio",
            "Shadow",
            "Deny",
            "go",
            "runtime-rs",
            "Account",
            "In",
            "Exists",
            "prod-*",
            "[",
            "1.9",
            "main",
            "dev",
            "default",
            "nope",
            "😀",
        ],
        POLICY_KEYS,
    )
}

#[test]
fn policy_from_yaml_never_panics_on_structure_aware_yaml() {
    let strategy = prop_oneof![generated_policy(), mutated_policy()];
    let accepted = AtomicUsize::new(0);
    fuzz("policy_structure_aware", 512, strategy, |text| {
        policy_answers_with_paths(&text, &accepted)
    });
    eprintln!(
        "fuzz policy_structure_aware: {} valid policies",
        accepted.load(Ordering::Relaxed)
    );
}
