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
//! What is kept is bounded, whatever the body's shape: a JSON value costs
//! 30–80 times its text once built (`[0,0,…]` is two bytes per element),
//! so a kept list of millions of zeros would turn a 3 MiB body into a
//! quarter of a GiB. Every kept list, map and string has a bound no real
//! Pod or RuntimeClass reaches ([`MAX_OWNER_REFERENCES`],
//! [`MAX_CONTAINERS`], [`MAX_KEPT_ENTRIES`], [`MAX_KEPT_STRING_BYTES`]), and
//! the whole kept object at most [`MAX_KEPT_VALUES`] JSON values; a body
//! over a bound is refused as undecodable (400), naming the bound.

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

/// At most this many `metadata.ownerReferences` (a Pod has one or two).
pub const MAX_OWNER_REFERENCES: usize = 64;
/// At most this many `spec.containers`, and as many `spec.initContainers`
/// (a launcher Pod has two to five).
pub const MAX_CONTAINERS: usize = 512;
/// At most this many entries in any other kept map or list (labels,
/// annotations, resources, and values of an unexpected type).
pub const MAX_KEPT_ENTRIES: usize = 1024;
/// At most this many bytes in a kept string: the apiserver's limit on all
/// of an object's annotations together (256 KiB).
pub const MAX_KEPT_STRING_BYTES: usize = 256 * 1024;
/// At most this many JSON values kept of one object (a launcher Pod keeps
/// about 60).
pub const MAX_KEPT_VALUES: usize = 20_000;

/// Which parts of a JSON value to keep.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// The whole value.
    All,
    /// Only these keys of a map, each with its own shape.
    Fields(&'static [(&'static str, Shape)]),
    /// At most this many items of a list, each with this shape.
    Items(&'static Shape, usize),
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
            (
                "ownerReferences",
                Shape::Items(&Shape::All, MAX_OWNER_REFERENCES),
            ),
        ]),
    ),
    (
        "spec",
        Shape::Fields(&[
            ("containers", Shape::Items(&CONTAINER, MAX_CONTAINERS)),
            (
                "initContainers",
                Shape::Items(&INIT_CONTAINER, MAX_CONTAINERS),
            ),
            ("runtimeClassName", Shape::All),
        ]),
    ),
    ("handler", Shape::All),
    ("overhead", Shape::All),
]);

/// A shape to keep, the field it sits under (for messages) and the
/// object's remaining budget of kept values.
#[derive(Clone, Copy)]
struct Kept<'b> {
    shape: Shape,
    field: &'static str,
    budget: &'b Cell<usize>,
}

impl Kept<'_> {
    fn with(self, shape: Shape, field: &'static str) -> Self {
        Kept {
            shape,
            field,
            budget: self.budget,
        }
    }

    /// Counts one kept value against the object's budget.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.budget.get();
        if left == 0 {
            return Err(E::custom(format!(
                "the object keeps more than {MAX_KEPT_VALUES} JSON values (a bound of this server)"
            )));
        }
        self.budget.set(left - 1);
        Ok(())
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

    fn too_many<E: de::Error>(&self, bound: usize) -> E {
        E::custom(format!(
            "`{}`: more than {bound} entries (a bound of this server)",
            self.field
        ))
    }
}

impl<'de> DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut object = Map::new();
        let Shape::Fields(fields) = self.shape else {
            // The whole map: kept within bounds (also a map where a list
            // was expected).
            let whole = self.with(Shape::All, self.field);
            while let Some(key) = map.next_key::<String>()? {
                self.string(&key)?;
                if object.len() >= MAX_KEPT_ENTRIES {
                    return Err(self.too_many(MAX_KEPT_ENTRIES));
                }
                let value = map.next_value_seed(whole)?;
                object.insert(key, value);
            }
            return Ok(Value::Object(object));
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match fields.iter().find(|(name, _)| *name == key) {
                Some((name, shape)) => {
                    let value = map.next_value_seed(self.with(*shape, name))?;
                    object.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let (item, bound) = match self.shape {
            Shape::Items(shape, bound) => (self.with(*shape, self.field), bound),
            _ => (self.with(Shape::All, self.field), MAX_KEPT_ENTRIES),
        };
        let mut items = Vec::new();
        while let Some(value) = seq.next_element_seed(item)? {
            if items.len() >= bound {
                return Err(self.too_many(bound));
            }
            items.push(value);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.spend()?;
        self.string(value)?;
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.spend()?;
        self.string(&value)?;
        Ok(Value::String(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }
}

/// The kept part of `request.object` (see [`OBJECT`]).
pub(crate) fn sizing_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
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
) -> Result<Option<Value>, D::Error> {
    kept_object(POLICY_CONFIGMAP, deserializer)
}

fn kept_object<'de, D: Deserializer<'de>>(
    shape: Shape,
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    let budget = Cell::new(MAX_KEPT_VALUES);
    let kept = Kept {
        shape,
        field: "object",
        budget: &budget,
    };
    let value = kept.deserialize(deserializer)?;
    Ok((!value.is_null()).then_some(value))
}
