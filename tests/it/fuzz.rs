//! Bounded property-based fuzzing of everything that reads untrusted text:
//! `Quantity::parse`, `ValidPolicy::from_yaml`, and the whole review path
//! (`POST /mutate` through the router, no socket). The promise: "No panic and no
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

mod policy;
mod quantity;
mod review_path;

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
