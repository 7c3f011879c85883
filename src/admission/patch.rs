//! Minimal RFC 6902 operations against the *raw* admitted object.
//!
//! The object is never round-tripped through a typed Pod: every operation
//! addresses one field, so anything we do not know about survives. Values are
//! compared by quantity, so `1Gi` and `1073741824` are equal and produce no
//! operation (which is what keeps re-invocation idempotent).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::sizing::Quantity;
pub use crate::sizing::explain::{ResourceField, Section};
use crate::sizing::vmi::quantity_at;

use super::facts::at;

/// A value change, for the explanation, the warnings and shadow metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dotted field path, e.g. `spec.containers[0].resources.requests.memory`.
    pub field: String,
    /// Short name for warnings, e.g. `memory request`.
    pub label: String,
    /// Which resource field this is (`None`: an annotation).
    pub resource: Option<ResourceField>,
    /// The value before, as written in the object (a quantity when it is
    /// one), if any.
    pub old: Option<Written>,
    /// The value after, if any.
    pub new: Option<Written>,
}

/// A value a change reads or writes, rendered only where it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A quantity, with the text it was written as (`None`: as virt-sizer
    /// writes it, its canonical form).
    Quantity(Quantity, Option<String>),
    /// Anything else (an annotation, a value that is not a quantity).
    Text(String),
}

impl Written {
    /// The quantity, if it is one.
    #[must_use]
    pub fn quantity(&self) -> Option<Quantity> {
        match self {
            Written::Quantity(quantity, _) => Some(*quantity),
            Written::Text(_) => None,
        }
    }
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Written::Quantity(_, Some(text)) | Written::Text(text) => f.write_str(text),
            Written::Quantity(quantity, None) => write!(f, "{quantity}"),
        }
    }
}

/// A change's value shown, or `missing`: written where it is formatted.
#[must_use]
pub fn shown<'a>(value: Option<&'a Written>, missing: &'a str) -> Shown<'a> {
    Shown(value, missing)
}

/// What [`shown`] returns.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(Option<&'a Written>, &'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str(self.1),
        }
    }
}

/// Collects operations against one object.
#[derive(Debug)]
pub(crate) struct PatchBuilder<'a> {
    object: &'a Value,
    pub(crate) ops: Vec<PatchOperation>,
    pub(crate) changes: Vec<Change>,
    /// Maps this patch already creates (one lookup, not a scan of `ops`:
    /// a Pod can have thousands of containers).
    created_maps: HashSet<PointerBuf>,
}

impl<'a> PatchBuilder<'a> {
    pub(crate) fn new(object: &'a Value) -> PatchBuilder<'a> {
        PatchBuilder {
            object,
            ops: Vec::new(),
            changes: Vec::new(),
            created_maps: HashSet::new(),
        }
    }

    /// Makes sure the map at `path` exists, adding empty maps where missing
    /// (or replacing a `null`).
    fn ensure_map(&mut self, path: &[&str]) {
        let mut current = Some(self.object);
        for depth in 0..path.len() {
            let next = current.and_then(|value| at(value, &path[depth..=depth]));
            if next.is_none() || next.is_some_and(Value::is_null) {
                let target = pointer(&path[..=depth]);
                if self.created_maps.insert(target.clone()) {
                    let op = if next.is_some() {
                        PatchOperation::Replace(ReplaceOperation {
                            path: target,
                            value: Value::Object(Map::new()),
                        })
                    } else {
                        PatchOperation::Add(AddOperation {
                            path: target,
                            value: Value::Object(Map::new()),
                        })
                    };
                    self.ops.push(op);
                }
                current = None;
            } else {
                current = next;
            }
        }
    }

    /// Sets (or removes, with `None`) the quantity at `parent.name`, doing
    /// nothing when the current value is equal by value.
    pub(crate) fn set_quantity(
        &mut self,
        parent: &[&str],
        name: &str,
        desired: Option<Quantity>,
        label: &str,
    ) {
        let current = lookup(self.object, parent).and_then(|map| map.get(name));
        let current_quantity = current.and_then(|value| quantity_at(value, name).ok());
        if current.is_some() && current_quantity.is_some() && current_quantity == desired {
            return;
        }
        if current.is_none() && desired.is_none() {
            return;
        }
        let mut path: Vec<&str> = parent.to_vec();
        path.push(name);
        let old = current.map(|value| match current_quantity {
            Some(quantity) => Written::Quantity(quantity, Some(display_value(value))),
            None => Written::Text(display_value(value)),
        });
        match desired {
            Some(quantity) => self.put(parent, &path, current.is_some(), quantity.to_string()),
            None => self.ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(&path),
            })),
        }
        let section = match parent.last() {
            Some(&"requests") => Some(Section::Requests),
            Some(&"limits") => Some(Section::Limits),
            Some(&"podFixed") => Some(Section::PodFixed),
            _ => None,
        };
        // A container's field: ["spec", list, index, "resources", section].
        let container = match parent {
            ["spec", list, index, "resources", _] => Some((*list, *index)),
            _ => None,
        };
        let resource = section.map(|section| {
            let field = ResourceField::new(section, name);
            match container {
                Some((list, index)) => field.in_container(list, index),
                None => field,
            }
        });
        self.changes.push(Change {
            field: dotted(&path),
            label: label.to_owned(),
            resource,
            old,
            new: desired.map(|quantity| Written::Quantity(quantity, None)),
        });
    }

    /// Writes the string `value` at `path` (in the map `parent`): a replace
    /// when the field exists, else an add after making sure the map does.
    fn put(&mut self, parent: &[&str], path: &[&str], exists: bool, value: String) {
        let value = Value::String(value);
        if exists {
            self.ops.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(path),
                value,
            }));
        } else {
            self.ensure_map(parent);
            self.ops.push(PatchOperation::Add(AddOperation {
                path: pointer(path),
                value,
            }));
        }
    }

    /// Sets a string annotation (or label map entry) at `parent.name`.
    pub(crate) fn set_string(&mut self, parent: &[&str], name: &str, desired: &str, label: &str) {
        let current = lookup(self.object, parent).and_then(|map| map.get(name));
        if current.and_then(Value::as_str) == Some(desired) {
            return;
        }
        let mut path: Vec<&str> = parent.to_vec();
        path.push(name);
        self.put(parent, &path, current.is_some(), desired.to_owned());
        self.changes.push(Change {
            field: dotted(&path),
            label: label.to_owned(),
            resource: None,
            old: current.map(|value| Written::Text(display_value(value))),
            new: Some(Written::Text(desired.to_owned())),
        });
    }
}

/// The map at `path`, if every step exists and the last is a map.
pub(crate) fn lookup<'v>(object: &'v Value, path: &[&str]) -> Option<&'v Map<String, Value>> {
    at(object, path).and_then(Value::as_object)
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn pointer(path: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().copied())
}

/// `spec.containers[0].resources.limits.memory` from path tokens.
fn dotted(path: &[&str]) -> String {
    let mut out = String::new();
    for token in path {
        if token.bytes().all(|byte| byte.is_ascii_digit()) && !token.is_empty() {
            out.push('[');
            out.push_str(token);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(token);
        }
    }
    out
}
