//! Decoding an AdmissionReview for the server: only the parts of the object
//! that a decision reads are built as JSON values; everything else is parsed
//! (so malformed JSON is still rejected) but skipped without allocating.
//!
//! A 10 KB launcher Pod is mostly `env`, `volumeMounts`, `volumes`,
//! `command`: none of it matters to sizing, and building it as a
//! `serde_json::Value` cost three quarters of the decode (see the README's
//! performance section). The decision reads `apiVersion`, `kind`,
//! `metadata.{name, namespace, labels, annotations, ownerReferences}`,
//! `spec.containers[].{name, resources}`, `spec.runtimeClassName`, and a
//! RuntimeClass's `handler` and `overhead`; the patch only addresses those
//! paths too, so it is the same patch as for the whole object. The
//! server-vs-`review` integration test holds that to every fixture.
//!
//! A value of the wrong type where a map or list is expected is kept whole,
//! so the decision reports it exactly as it would on the full object.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::admission::{AdmissionRequest, GroupVersionKind};

/// Which parts of a JSON value to keep.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The whole value.
    All,
    /// Only these keys of a map, each with its own shape.
    Fields(&'static [(&'static str, Shape)]),
    /// Every item of a list, each with this shape.
    Items(&'static Shape),
}

const CONTAINER: Shape = Shape::Fields(&[("name", Shape::All), ("resources", Shape::All)]);

/// What a decision reads of a Pod or a RuntimeClass.
const OBJECT: Shape = Shape::Fields(&[
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
            ("ownerReferences", Shape::All),
        ]),
    ),
    (
        "spec",
        Shape::Fields(&[
            ("containers", Shape::Items(&CONTAINER)),
            ("runtimeClassName", Shape::All),
        ]),
    ),
    ("handler", Shape::All),
    ("overhead", Shape::All),
]);

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Shape::All => Value::deserialize(deserializer),
            Shape::Fields(_) | Shape::Items(_) => deserializer.deserialize_any(ShapeVisitor(self)),
        }
    }
}

struct ShapeVisitor(Shape);

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Shape::Fields(fields) = self.0 else {
            // A map where a list was expected: keep it whole.
            let mut object = Map::new();
            while let Some((key, value)) = map.next_entry::<String, Value>()? {
                object.insert(key, value);
            }
            return Ok(Value::Object(object));
        };
        let mut object = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match fields.iter().find(|(name, _)| *name == key) {
                Some((_, shape)) => {
                    let value = map.next_value_seed(*shape)?;
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
        let item_shape = match self.0 {
            Shape::Items(shape) => *shape,
            _ => Shape::All,
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(item_shape)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// The parts of an AdmissionReview the server reads; unknown and unused
/// fields (`oldObject`, `userInfo`, `options`, …) are parsed and skipped.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingReview {
    /// Must be `admission.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Must be `AdmissionReview`.
    #[serde(default)]
    pub kind: String,
    /// The request, if any.
    #[serde(default)]
    pub request: Option<IncomingRequest>,
}

/// The request fields a decision uses.
#[derive(Debug, Deserialize)]
pub struct IncomingRequest {
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default, deserialize_with = "slim_object")]
    object: Option<Value>,
}

fn slim_object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    let value = OBJECT.deserialize(deserializer)?;
    Ok((!value.is_null()).then_some(value))
}

impl IncomingRequest {
    /// The admission request the pure core decides on.
    #[must_use]
    pub fn into_request(self) -> AdmissionRequest {
        AdmissionRequest {
            uid: self.uid,
            kind: self.kind,
            resource: Value::Null,
            sub_resource: None,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: Value::Null,
            object: self.object,
            old_object: None,
            dry_run: Value::Null,
            options: Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_what_decisions_read_and_skips_the_rest() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "ns", "operation": "CREATE", "userInfo": {"username": "x"},
                "oldObject": {"big": [1, 2, 3]},
                "object": {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"x": 1}]},
                    "spec": {"containers": [
                        {"name": "compute", "env": [{"name": "A", "value": "1"}],
                         "resources": {"requests": {"cpu": "1"}}},
                        {"name": "side", "resources": "not-a-map"}],
                      "volumes": [{"name": "v"}], "runtimeClassName": "kata-qemu"}}}
        });
        let review: IncomingReview = serde_json::from_value(body).expect("decodes");
        let request = review.request.expect("request").into_request();
        assert_eq!(
            request.object.expect("object"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"containers": [
                    {"name": "compute", "resources": {"requests": {"cpu": "1"}}},
                    {"name": "side", "resources": "not-a-map"}],
                  "runtimeClassName": "kata-qemu"}})
        );
        assert_eq!(request.uid, "u");
    }

    #[test]
    fn wrong_types_are_kept_whole_and_bad_json_still_fails() {
        let body = r#"{"request": {"uid": "u", "object": {"spec": {"containers": {"compute": 1}}, "metadata": "x"}}}"#;
        let review: IncomingReview = serde_json::from_str(body).expect("decodes");
        let object = review.request.expect("request").object.expect("object");
        assert_eq!(
            object,
            json!({"spec": {"containers": {"compute": 1}}, "metadata": "x"})
        );
        let truncated = r#"{"request": {"uid": "u", "object": {"spec": {"volumes": [1, 2"#;
        assert!(serde_json::from_str::<IncomingReview>(truncated).is_err());
        let skipped_but_broken =
            r#"{"request": {"uid": "u", "object": {"spec": {"volumes": [1, }]}}}}"#;
        assert!(serde_json::from_str::<IncomingReview>(skipped_but_broken).is_err());
    }
}
