//! What a decision reads of the raw objects under review, in one place: the
//! shape of a Pod or RuntimeClass that is kept when an AdmissionReview is
//! decoded for sizing ([`OBJECT`]), and the readers of those fields.
//!
//! that a decision reads are built as JSON values; everything else is parsed
//! (so malformed JSON is still rejected) but skipped without allocating.
//!
//! A 10 KB launcher Pod is mostly `env`, `volumeMounts`, `volumes`,
//! `command`: none of it matters to sizing, and building it as a
//! `serde_json::Value` cost three quarters of the decode (see the README's
//! performance section). The decision reads `apiVersion`, `kind`,
//! `metadata.{name, namespace, labels, annotations, ownerReferences}`,
//! `spec.containers[].{name, resources}`,
//! `spec.initContainers[].{name, resources, restartPolicy}` (a Kata
//! sandbox's VM counts them), `spec.runtimeClassName`, and a
//! RuntimeClass's `handler` and `overhead`; the patch only addresses those
//! paths too, so it is the same patch as for the whole object. The
//! server-vs-`review` integration test holds that to every fixture.
//!
//! A value of the wrong type where a map or list is expected is kept whole,
//! so the decision reports it exactly as it would on the full object.
//!
//! What is kept is bounded in bytes, whatever the body's shape: a JSON
//! value costs up to 80 times its text once built (`[{"a":0},…]`: each
//! one-entry map is a whole B-tree node), so a 3 MiB body could become a
//! quarter of a GiB. Each kept value is charged what it takes in memory
//! ([`KeptBytes`]), and one object keeps at most [`MAX_KEPT_BYTES`], as
//! many bytes as the largest body holds: no count of labels, annotations,
//! containers or owner references below what Kubernetes allows (it has
//! none). An object over it is not kept: the rest of the
//! body is still parsed (so the request's uid is read and malformed JSON
//! still refused), and the request is answered per `onError`, with its
//! uid. A kept string longer than [`MAX_KEPT_STRING_BYTES`] (more than
//! all of an object's annotations may hold) is no object Kubernetes
//! accepts: that body is refused as undecodable (400).

use std::cell::Cell;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Map;

use super::*;

/// The value at `path` (map keys, or indexes into lists), if there is one:
/// JSON Pointer lookup without building a string per token, as
/// `Value::pointer` does.
pub(crate) fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, token| match value {
        Value::Array(items) => token
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index)),
        _ => value.get(*token),
    })
}

/// The namespace an object under review is in: its `metadata.namespace`,
/// else the request's (a Pod created without one is created in the
/// request's; the apiserver refuses a mismatch).
pub(crate) fn object_namespace<'a>(object: &'a Value, request: &'a AdmissionRequest) -> &'a str {
    at(object, &["metadata", "namespace"])
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(&request.namespace)
}

/// `spec.containers`, which every Pod path needs.
pub(crate) fn containers_of(pod: &Value) -> Result<&Vec<Value>, SizingError> {
    at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .ok_or_else(|| SizingError::InvalidField {
            field: "spec.containers".into(),
            message: "missing or not a list".into(),
        })
}

/// A field the patch may write into must be a map (or absent / null);
/// anything else is refused rather than patched around.
pub(crate) fn expect_map(value: Option<&Value>, field: &str) -> Result<(), SizingError> {
    match value {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(SizingError::InvalidField {
            field: field.to_owned(),
            message: format!("expected a map, got {other}"),
        }),
    }
}

/// At most this many bytes in a kept string: the apiserver's limit on all
/// of an object's annotations together (256 KiB).
pub const MAX_KEPT_STRING_BYTES: usize = 256 * 1024;

/// At most this many bytes kept of one object, as [`KeptBytes`] charges
/// them: the apiserver's largest request body (3 MiB, what
/// [`MAX_BODY_BYTES`](crate::server::MAX_BODY_BYTES) accepts by default),
/// so that what a decode builds is never more than its body already took.
/// That is no count Kubernetes has: a launcher Pod keeps about 6 KiB,
/// 1,025 labels about 0.1 MiB, 513 containers with requests and limits
/// about 1.4 MiB. An object over it (tens of thousands of labels or
/// containers) is answered per `onError`.
pub const MAX_KEPT_BYTES: usize = 3 * 1024 * 1024;

/// What a kept value is charged ([`MAX_KEPT_BYTES`]): an upper estimate of
/// the memory it takes once built, from the sizes of the types that hold
/// it, so that a shape of many small values (a list of zeros, maps of one
/// entry) is charged what it costs, not its text.
pub struct KeptBytes;

impl KeptBytes {
    /// One JSON value, wherever it is held (a list's slot, a map's).
    pub const VALUE: usize = std::mem::size_of::<Value>();
    /// One node of a map's B-tree, as large as an internal one: eleven
    /// keys and values, twelve edges, its parent link and lengths. A map of
    /// one entry takes a whole node.
    pub const MAP_NODE: usize = 11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>())
        + 13 * std::mem::size_of::<usize>()
        + 8;
    /// A map gets a new node at most every this many entries (a split
    /// leaves nodes half full).
    pub const ENTRIES_PER_NODE: usize = 5;
}

/// Which parts of a JSON value to keep.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// The whole value.
    All,
    /// Only these keys of a map, each with its own shape.
    Fields(&'static [(&'static str, Shape)]),
    /// Every item of a list, each with this shape.
    Items(&'static Shape),
}

const CONTAINER: Shape = Shape::Fields(&[("name", Shape::All), ("resources", Shape::All)]);

/// An init container: also whether it is a sidecar (`restartPolicy`).
const INIT_CONTAINER: Shape = Shape::Fields(&[
    ("name", Shape::All),
    ("resources", Shape::All),
    ("restartPolicy", Shape::All),
]);

/// What a decision reads of a Pod or a RuntimeClass.
pub(crate) const OBJECT: Shape = Shape::Fields(&[
    ("apiVersion", Shape::All),
    ("kind", Shape::All),
    (
        "metadata",
        Shape::Fields(&[
            ("name", Shape::All),
            ("generateName", Shape::All),
            ("namespace", Shape::All),
            ("labels", Shape::All),
            ("annotations", Shape::All),
            ("ownerReferences", Shape::Items(&Shape::All)),
        ]),
    ),
    (
        "spec",
        Shape::Fields(&[
            ("containers", Shape::Items(&CONTAINER)),
            ("initContainers", Shape::Items(&INIT_CONTAINER)),
            ("runtimeClassName", Shape::All),
        ]),
    ),
    ("handler", Shape::All),
    ("overhead", Shape::All),
]);

/// The bytes one object may still keep ([`MAX_KEPT_BYTES`]), and whether
/// it went over them.
struct Budget {
    left: Cell<usize>,
    over: Cell<bool>,
}

impl Budget {
    /// Charges `bytes`; `false` (and over for good) when they do not fit.
    fn charge(&self, bytes: usize) -> bool {
        if self.over.get() {
            return false;
        }
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                true
            }
            None => {
                self.over.set(true);
                false
            }
        }
    }
}

/// A shape to keep, the field it sits under (for messages) and the
/// object's budget.
#[derive(Clone, Copy)]
struct Kept<'b> {
    shape: Shape,
    field: &'static str,
    budget: &'b Budget,
}

impl Kept<'_> {
    fn with(self, shape: Shape, field: &'static str) -> Self {
        Kept {
            shape,
            field,
            budget: self.budget,
        }
    }

    fn string<E: de::Error>(&self, value: &str) -> Result<(), E> {
        if value.len() > MAX_KEPT_STRING_BYTES {
            return Err(E::custom(format!(
                "`{}`: a string over {MAX_KEPT_STRING_BYTES} bytes (a bound of this server)",
                self.field
            )));
        }
        Ok(())
    }

    /// A scalar, charged [`KeptBytes::VALUE`] and `heap` bytes; `Null` once
    /// the object is over its budget (it is not kept).
    fn scalar(&self, heap: usize, value: impl FnOnce() -> Value) -> Value {
        if self.budget.charge(KeptBytes::VALUE + heap) {
            value()
        } else {
            Value::Null
        }
    }
}

impl<'de> DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.budget.over.get() {
            // Over the budget: the rest is parsed, not built.
            deserializer.deserialize_ignored_any(IgnoredAny)?;
            return Ok(Value::Null);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let fields = match self.shape {
            Shape::Fields(fields) => Some(fields),
            // The whole map: kept within the budget (also a map where a
            // list was expected).
            _ => None,
        };
        let whole = self.with(Shape::All, self.field);
        let mut kept = self.budget.charge(KeptBytes::VALUE);
        while kept {
            let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Ok(Value::Object(object));
            };
            let seed = match fields {
                None => whole,
                Some(fields) => match fields.iter().find(|(name, _)| *name == key) {
                    Some((name, shape)) => self.with(*shape, name),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                },
            };
            self.string(&key)?;
            let node = if object.len().is_multiple_of(KeptBytes::ENTRIES_PER_NODE) {
                KeptBytes::MAP_NODE
            } else {
                0
            };
            kept = self.budget.charge(node + key.len());
            let value = if kept {
                map.next_value_seed(seed)?
            } else {
                map.next_value::<IgnoredAny>()?;
                Value::Null
            };
            kept = kept && !self.budget.over.get();
            object.insert(key.into_owned(), value);
        }
        // Over the budget: what was built goes now, the rest is skipped.
        drop(object);
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let item = match self.shape {
            Shape::Items(shape) => self.with(*shape, self.field),
            _ => self.with(Shape::All, self.field),
        };
        let mut items: Vec<Value> = Vec::new();
        let mut kept = self.budget.charge(KeptBytes::VALUE);
        while kept {
            // The list grows as a Vec does (doubling, from 4), and is
            // charged each growth before it happens.
            if items.len() == items.capacity() {
                let grown = (items.capacity() * 2).max(4);
                kept = self
                    .budget
                    .charge((grown - items.capacity()) * KeptBytes::VALUE);
                if !kept {
                    break;
                }
                items.reserve_exact(grown - items.len());
            }
            let Some(value) = seq.next_element_seed(item)? else {
                return Ok(Value::Array(items));
            };
            kept = !self.budget.over.get();
            items.push(value);
        }
        drop(items);
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(self.scalar(0, || Value::Bool(value)))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(self.scalar(0, || Value::from(value)))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(self.scalar(0, || Value::from(value)))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(self.scalar(0, || {
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
        }))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.string(value)?;
        Ok(self.scalar(value.len(), || Value::String(value.to_owned())))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.string(&value)?;
        Ok(self.scalar(value.len(), || Value::String(value)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(self.scalar(0, || Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(self.scalar(0, || Value::Null))
    }
}

/// What a decode kept of `request.object`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KeptObject {
    /// No object (`null` or absent).
    #[default]
    Absent,
    /// The kept part (or all of it).
    Kept(Value),
    /// Over [`MAX_KEPT_BYTES`]: not kept; the message says so.
    OverBound(String),
}

/// The kept part of `request.object` (see [`OBJECT`]).
pub(crate) fn sizing_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<KeptObject, D::Error> {
    kept_object(OBJECT, deserializer)
}

/// The ConfigMap key holding the policy (the file the Deployment mounts).
pub const POLICY_KEY: &str = "policy.yaml";

/// What the policy validating webhook reads of a ConfigMap: its `kind` and
/// `data[POLICY_KEY]` (a string within [`MAX_KEPT_STRING_BYTES`]).
const POLICY_CONFIGMAP: Shape = Shape::Fields(&[
    ("kind", Shape::All),
    ("data", Shape::Fields(&[(POLICY_KEY, Shape::All)])),
]);

/// The kept part of a policy ConfigMap under review (see
/// [`POLICY_CONFIGMAP`]).
pub(crate) fn policy_configmap_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<KeptObject, D::Error> {
    kept_object(POLICY_CONFIGMAP, deserializer)
}

fn kept_object<'de, D: Deserializer<'de>>(
    shape: Shape,
    deserializer: D,
) -> Result<KeptObject, D::Error> {
    let budget = Budget {
        left: Cell::new(MAX_KEPT_BYTES),
        over: Cell::new(false),
    };
    let kept = Kept {
        shape,
        field: "object",
        budget: &budget,
    };
    let value = kept.deserialize(deserializer)?;
    Ok(if budget.over.get() {
        KeptObject::OverBound(format!(
            "the object is larger than this server keeps of one object ({MAX_KEPT_BYTES} bytes \
             once read); it is not read"
        ))
    } else if value.is_null() {
        KeptObject::Absent
    } else {
        KeptObject::Kept(value)
    })
}
