//! Bounded property-based fuzzing of everything that reads untrusted text:
//! `Quantity::parse`, `ValidPolicy::from_yaml`, and the whole review path
//! (`POST /mutate` through the router, no socket). SPEC §6: "No panic and no
//! 5xx on any body a fuzzer can make."
//!
//! Each property runs at most 512 cases with a fresh random seed (no
//! regression files); a failure prints its shrunk input. Every property
//! prints how many executions it ran, for the README's "executions fuzzed".
//! `FUZZ_CASES=20000 cargo test --test it fuzz -- --nocapture` runs a longer
//! campaign.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::policy::ValidPolicy;

use crate::support::{Answer, EXAMPLE_REVIEW, EXAMPLE_RUNTIME_CLASS, check_answer, post, router};

/// Runs `test` on `cases` values of `strategy`, prints the executions
/// (shrinking included) and the time, and fails with the minimal input.
fn fuzz<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    // FUZZ_CASES=<n> runs a longer exploratory campaign; the suite stays
    // bounded by default.
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(cases);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let executions = AtomicUsize::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        executions.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    eprintln!(
        "fuzz {name}: {} executions in {:.2?}",
        executions.load(Ordering::Relaxed),
        started.elapsed()
    );
    if let Err(error) = result {
        panic!("{name}: {error}");
    }
}

// === Quantity::parse ===

/// Parses, and on success checks that the printed form parses back to the
/// same value and prints the same.
fn parse_round_trips(text: &str) -> Result<(), TestCaseError> {
    let Ok(quantity) = Quantity::parse(text) else {
        return Ok(());
    };
    let printed = quantity.to_string();
    let back = Quantity::parse(&printed).map_err(|error| {
        TestCaseError::fail(format!("{text:?} printed as {printed:?}: {error}"))
    })?;
    prop_assert_eq!(back, quantity, "{:?} → {:?}", text, printed);
    prop_assert_eq!(back.to_string(), printed);
    Ok(())
}

/// Text shaped like a quantity: signs, digits, points, exponents, suffixes
/// and whitespace in plausible and implausible places.
fn quantity_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ +-]?[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?(\\.)?([eE][+-]?[0-9]{0,12}|[numkMGTPE]|[KMGTPE]i|[eE]|i|[kK][iI])?[ \t\n]?",
        "[0-9.+eEnumkKMGTPi \t-]{0,40}",
        "[0-9]{1,3}[eE][+-]?(2147483647|2147483648|4294967296|[0-9]{5,12})",
    ]
}

#[test]
fn quantity_parse_never_panics_on_any_unicode_and_round_trips() {
    fuzz("quantity_parse_any_unicode", 512, any::<String>(), |text| {
        parse_round_trips(&text)
    });
}

#[test]
fn quantity_parse_never_panics_on_quantity_shaped_text_and_round_trips() {
    fuzz(
        "quantity_parse_quantity_shaped",
        512,
        quantity_like(),
        |text| parse_round_trips(&text),
    );
}

// === ValidPolicy::from_yaml ===

/// `Ok`, or a non-empty error list whose every entry has a path. Counts
/// the accepted ones in `accepted`.
fn policy_answers_with_paths(text: &str, accepted: &AtomicUsize) -> Result<(), TestCaseError> {
    match ValidPolicy::from_yaml(text) {
        Ok(_) => {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Err(errors) => {
            prop_assert!(!errors.0.is_empty(), "an empty error list for {:?}", text);
            for error in &errors.0 {
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

/// Every field name of the policy (SPEC §2), the profile and handler names
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
    let example: Value =
        yaml_serde::from_str(include_str!("../../examples/policy.yaml")).expect("example policy");
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

// === JSON mutations ===

/// A random JSON value: numbers from tiny to huge, strings from `words` and
/// random ones, lists, maps with keys from `keys`, null.
fn json_value(
    words: &'static [&'static str],
    keys: &'static [&'static str],
) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop_oneof![Just(u64::MAX), Just(1_u64 << 63), Just(1_073_741_824)].prop_map(Value::from),
        1 => (-1e300_f64..1e300).prop_map(|number| json!(number)),
        4 => select(words).prop_map(Value::from),
        1 => "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(keys), inner), 0..4).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect::<Map<String, Value>>(),
                )
            }),
        ]
    })
    .boxed()
}

/// One edit of a JSON document. Indexes pick among the nodes the document
/// has when the edit is applied.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a field or list item.
    Delete(Index),
    /// Replace a value with a random one.
    Replace(Index, Value),
    /// Add a field to a map.
    Insert(Index, String, Value),
    /// Turn a value into another type (string ↔ number, list ↔ map…).
    SwapType(Index),
    /// Append a copy of an item to a list.
    Duplicate(Index, Index),
    /// Append `n` copies of the Pod's containers.
    DuplicateContainers(usize),
}

fn mutation(
    values: BoxedStrategy<Value>,
    keys: &'static [&'static str],
) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Delete),
        4 => (any::<Index>(), values.clone()).prop_map(|(index, value)| Mutation::Replace(index, value)),
        2 => (any::<Index>(), select(keys).prop_map(str::to_owned), values)
            .prop_map(|(index, key, value)| Mutation::Insert(index, key, value)),
        2 => any::<Index>().prop_map(Mutation::SwapType),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(list, item)| Mutation::Duplicate(list, item)),
        1 => (1_usize..4).prop_map(Mutation::DuplicateContainers),
    ]
}

impl Mutation {
    fn apply(&self, document: &mut Value) {
        let nodes = pointers(document);
        let pick = |index: &Index, candidates: &[String]| -> Option<String> {
            (!candidates.is_empty()).then(|| candidates[index.index(candidates.len())].clone())
        };
        // The root is never deleted or replaced: that only makes a 400.
        let non_root: Vec<String> = nodes.iter().filter(|p| !p.is_empty()).cloned().collect();
        match self {
            Mutation::Delete(index) => {
                if let Some(pointer) = pick(index, &non_root) {
                    delete(document, &pointer);
                }
            }
            Mutation::Replace(index, value) => {
                if let Some(target) = pick(index, &non_root).and_then(|p| document.pointer_mut(&p))
                {
                    *target = value.clone();
                }
            }
            Mutation::Insert(index, key, value) => {
                let maps: Vec<String> = nodes
                    .iter()
                    .filter(|p| document.pointer(p).is_some_and(Value::is_object))
                    .cloned()
                    .collect();
                if let Some(Value::Object(map)) =
                    pick(index, &maps).and_then(|p| document.pointer_mut(&p))
                {
                    map.insert(key.clone(), value.clone());
                }
            }
            Mutation::SwapType(index) => {
                if let Some(target) = pick(index, &non_root).and_then(|p| document.pointer_mut(&p))
                {
                    *target = swapped(target);
                }
            }
            Mutation::Duplicate(list, item) => {
                let lists: Vec<String> = nodes
                    .iter()
                    .filter(|p| {
                        document
                            .pointer(p)
                            .and_then(Value::as_array)
                            .is_some_and(|a| !a.is_empty())
                    })
                    .cloned()
                    .collect();
                if let Some(Value::Array(items)) =
                    pick(list, &lists).and_then(|p| document.pointer_mut(&p))
                {
                    let copy = items[item.index(items.len())].clone();
                    items.push(copy);
                }
            }
            Mutation::DuplicateContainers(n_copies) => {
                if let Some(Value::Array(containers)) =
                    document.pointer_mut("/request/object/spec/containers")
                {
                    let original = containers.clone();
                    for _ in 0..*n_copies {
                        containers.extend(original.iter().cloned());
                    }
                }
            }
        }
    }
}

/// The JSON pointer of every node, the root (`""`) first.
fn pointers(document: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), document)];
    while let Some((pointer, value)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let token = key.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{pointer}/{token}"), child));
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    stack.push((format!("{pointer}/{index}"), child));
                }
            }
            _ => {}
        }
        out.push(pointer);
    }
    out
}

fn delete(document: &mut Value, pointer: &str) {
    let Some((parent, token)) = pointer.rsplit_once('/') else {
        return;
    };
    let token = token.replace("~1", "/").replace("~0", "~");
    match document.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&token);
        }
        Some(Value::Array(items)) => {
            if let Ok(index) = token.parse::<usize>()
                && index < items.len()
            {
                items.remove(index);
            }
        }
        _ => {}
    }
}

/// The same content as another type.
fn swapped(value: &Value) -> Value {
    match value {
        Value::String(text) => match Quantity::parse(text) {
            Ok(quantity) if quantity.nanos() % 1_000_000_000 == 0 => {
                i64::try_from(quantity.value()).map_or_else(|_| json!([text]), Value::from)
            }
            _ => json!([text]),
        },
        Value::Number(number) => Value::String(number.to_string()),
        Value::Bool(flag) => Value::String(flag.to_string()),
        Value::Null => json!({}),
        Value::Array(items) => Value::Object(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| (index.to_string(), item.clone()))
                .collect(),
        ),
        Value::Object(map) => Value::Array(map.values().cloned().collect()),
    }
}

// === The review path ===

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
