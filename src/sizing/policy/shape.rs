//! The shape pass of [`ValidPolicy::from_yaml`](super::ValidPolicy::from_yaml):
//! the YAML tree into the raw structs, reporting every unknown field (with
//! the closest known name) and every value of the wrong type, not just the
//! first, in one pass over the tree.
//!
//! The raw structs are deserialized from the tree through [`Shaper`], a
//! deserializer that does not stop at a problem. A key a struct does not
//! have is reported (with the closest field the struct does have) and
//! skipped. A value of the wrong type (a string where a rule mapping
//! belongs) is reported with serde's own message, and read as the empty
//! value of the type wanted (`{}`, `[]`); its path is remembered, so the
//! semantic checks that run on what is left drop what they find at or below
//! it (`rules[0].profile: required` once `rules[0]` was a string): each fact
//! is reported once. Each value is visited once, so the pass is linear in
//! the document.
//!
//! The spelling helpers ([`closest_name`], [`struct_fields`],
//! [`UnknownField`]) are public: `virt-sizer test` checks its case files
//! with them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Unexpected, Visitor};
use yaml_serde::Value;

use super::{FieldError, PolicyErrors, ROOT, RawPolicy};

/// An unknown field: where it is, and the known field at that place its name
/// is closest to, if it looks like a typo of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// `a.b[0].c`: map keys joined by dots, sequence indices in brackets.
    pub path: String,
    /// The field's own name (`c`).
    pub name: String,
    /// The fields known at that place (empty where the caller's table has
    /// none).
    pub known: &'static [&'static str],
    /// The closest known field name, e.g. `cpuAllocationRatio` for
    /// `cpuAllocationRatoi`.
    pub suggestion: Option<&'static str>,
}

impl UnknownField {
    /// Describes the field `serde_ignored` reported at `path`; `fields_at`
    /// gives the known field names under a parent, named by its keys with
    /// `[]` for a sequence item (`["rules", "[]"]`).
    #[must_use]
    pub fn at(
        path: &serde_ignored::Path<'_>,
        fields_at: impl Fn(&[&str]) -> &'static [&'static str],
    ) -> UnknownField {
        let mut keys = Vec::new();
        keys_of(path, &mut keys);
        let (name, known) = match keys.split_last() {
            Some((name, parent)) => ((*name).to_owned(), fields_at(parent)),
            None => (String::new(), &[][..]),
        };
        UnknownField {
            path: ignored_path(path),
            suggestion: closest_name(&name, known),
            name,
            known,
        }
    }
}

/// The candidate closest to `word` by edit distance (ignoring ASCII case; a
/// swap of two neighbouring letters is one edit), when it is close enough to
/// be a typo: at most one edit per three letters of the candidate, and at
/// least one. Ties go to the earlier candidate.
///
/// ```
/// use virt_sizer::sizing::policy::closest_name;
/// assert_eq!(closest_name("expects", &["input", "expect"]), Some("expect"));
/// assert_eq!(closest_name("request", &["Request", "Omit"]), Some("Request"));
/// assert_eq!(closest_name("just", &["input", "expect"]), None);
/// ```
#[must_use]
pub fn closest_name<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let n_word = word.chars().count();
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .filter_map(|candidate| {
            let n_candidate = candidate.chars().count();
            let allowed = (n_candidate / 3).max(1);
            // The distance is at least the difference in length: a long
            // word is no typo of a short field, and costs nothing to skip.
            if n_word.abs_diff(n_candidate) > allowed {
                return None;
            }
            let distance = edit_distance(&word, &candidate.to_ascii_lowercase());
            (distance <= allowed).then_some((distance, *candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The field names a derived `Deserialize` struct accepts (after renames),
/// as serde hands them to the deserializer; empty for anything that is not
/// a struct. Nothing is parsed.
#[must_use]
pub fn struct_fields<'de, T: de::Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe always fails: it only records what it is asked for.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// The outcome of the shape pass.
pub(super) struct Shaped {
    /// The raw policy, unless the document itself has the wrong shape.
    pub(super) raw: Option<RawPolicy>,
    /// Unknown fields, then type errors, in document order.
    pub(super) problems: PolicyErrors,
    /// The values read as empty for their type.
    pub(super) removed: Removed,
}

/// The paths of the values read as empty for their type.
#[derive(Debug, Default)]
pub(super) struct Removed(HashSet<String>);

impl Removed {
    /// Whether a semantic check's finding at `path` lies at or below a
    /// removed value, and so only restates its type error.
    pub(super) fn covers(&self, path: &str) -> bool {
        !self.0.is_empty() && (self.0.contains(path) || self.is_below(path))
    }

    /// Whether `path` lies strictly below a removed value (a finding *at*
    /// one may be about its key, which stays: a profile's name).
    pub(super) fn is_below(&self, path: &str) -> bool {
        !self.0.is_empty()
            && path
                .char_indices()
                .filter(|(_, c)| matches!(c, '.' | '['))
                .any(|(end, _)| self.0.contains(&path[..end]))
    }
}

/// Deserialises the raw policy from `value`, collecting every unknown field
/// and every type error (see the module documentation).
pub(super) fn shape(value: &Value) -> Shaped {
    let found = RefCell::new(Found::default());
    let parsed = de::Deserialize::deserialize(Shaper {
        value,
        at: At::Root,
        found: &found,
    });
    let Found {
        mut problems,
        type_errors,
        removed,
    } = found.into_inner();
    problems.extend(type_errors);
    let raw = match parsed {
        Ok(raw) if !removed.0.contains(ROOT) => Some(raw),
        Ok(_) => None,
        // The tree only holds what YAML can, and the raw structs accept
        // any of it; should a leaf still refuse, the document is refused.
        Err(error) => {
            problems.push(FieldError::new(ROOT, error.to_string()));
            None
        }
    };
    Shaped {
        raw,
        problems,
        removed,
    }
}

/// What the shape pass found.
#[derive(Default)]
struct Found {
    /// Unknown fields.
    problems: PolicyErrors,
    type_errors: PolicyErrors,
    removed: Removed,
}

/// Where a value is in the document; a path is only rendered for a
/// problem.
#[derive(Clone, Copy)]
enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    /// `a.b[0].c`: map keys joined by dots, sequence indices in brackets;
    /// [`ROOT`] for the document.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str(ROOT),
            At::Key(At::Root, key) => f.write_str(key),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Deserialises a raw struct from the value at `at`, never stopping at a
/// problem: see the module documentation.
struct Shaper<'v, 'p, 'f> {
    value: &'v Value,
    at: At<'p>,
    found: &'f RefCell<Found>,
}

impl<'v> Shaper<'v, '_, '_> {
    /// Reports that the value is not what `wanted` expects, and remembers
    /// it as removed.
    fn mismatch(&self, wanted: &dyn de::Expected) {
        let message =
            <de::value::Error as de::Error>::invalid_type(unexpected(untagged(self.value)), wanted);
        let path = self.at.to_string();
        let mut found = self.found.borrow_mut();
        found
            .type_errors
            .push(FieldError::new(&path, message.to_string()));
        found.removed.0.insert(path);
    }

    /// Visits the entries of the mapping (`fields`: a struct's), null as
    /// none, anything else as none after reporting a mismatch.
    fn visit_entries<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, yaml_serde::Error>
    where
        'v: 'de,
    {
        match untagged(self.value) {
            Value::Mapping(mapping) => visitor.visit_map(Entries {
                entries: mapping.iter(),
                fields,
                pending: None,
                at: self.at,
                found: self.found,
            }),
            Value::Null => visitor.visit_map(Nothing),
            _ => {
                self.mismatch(&visitor);
                visitor.visit_map(Nothing)
            }
        }
    }
}

/// Forwards to the tree's own deserializer: the leaves (`Value`) take
/// anything, and nothing else in the raw structs asks for these.
macro_rules! forward_to_value {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.value.$method(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Shaper<'de, '_, '_> {
    type Error = yaml_serde::Error;

    forward_to_value! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.visit_entries(Some(fields), visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.visit_entries(None, visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match untagged(self.value) {
            Value::Sequence(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
                at: self.at,
                found: self.found,
            }),
            Value::Null => visitor.visit_seq(Nothing),
            _ => {
                self.mismatch(&visitor);
                visitor.visit_seq(Nothing)
            }
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_enum(name, variants, visitor)
    }
}

/// The entries of a mapping: a struct's (`fields`: other keys are reported
/// and skipped) or a string-keyed map's (other keys than strings are
/// reported and skipped).
struct Entries<'v, 'p, 'f> {
    entries: yaml_serde::mapping::Iter<'v>,
    fields: Option<&'static [&'static str]>,
    pending: Option<(&'v str, &'v Value)>,
    at: At<'p>,
    found: &'f RefCell<Found>,
}

impl<'de> de::MapAccess<'de> for Entries<'de, '_, '_> {
    type Error = yaml_serde::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        for (key, value) in self.entries.by_ref() {
            let key = untagged(key);
            if let Value::String(name) = key
                && self
                    .fields
                    .is_none_or(|fields| fields.contains(&name.as_str()))
            {
                self.pending = Some((name, value));
                return seed
                    .deserialize(BorrowedStrDeserializer::new(name))
                    .map(Some);
            }
            let name = key_text(key);
            let path = At::Key(&self.at, &name).to_string();
            let mut found = self.found.borrow_mut();
            match self.fields {
                Some(fields) => {
                    let message = match closest_name(&name, fields) {
                        Some(known) => format!("unknown field (did you mean {known}?)"),
                        None => "unknown field".to_owned(),
                    };
                    found.problems.push(FieldError::new(path, message));
                }
                None => {
                    let message =
                        <de::value::Error as de::Error>::invalid_type(unexpected(key), &"a string");
                    found
                        .type_errors
                        .push(FieldError::new(path, message.to_string()));
                }
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let Some((name, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value asked for before its key"));
        };
        seed.deserialize(Shaper {
            value,
            at: At::Key(&self.at, name),
            found: self.found,
        })
    }
}

/// The items of a sequence.
struct Items<'v, 'p, 'f> {
    items: std::iter::Enumerate<std::slice::Iter<'v, Value>>,
    at: At<'p>,
    found: &'f RefCell<Found>,
}

impl<'de> de::SeqAccess<'de> for Items<'de, '_, '_> {
    type Error = yaml_serde::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Shaper {
            value,
            at: At::Index(&self.at, index),
            found: self.found,
        })
        .map(Some)
    }
}

/// An empty mapping or sequence: what a value of the wrong type is read as.
struct Nothing;

impl<'de> de::MapAccess<'de> for Nothing {
    type Error = yaml_serde::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, _: S) -> Result<S::Value, Self::Error> {
        Err(de::Error::custom("an empty mapping has no value"))
    }
}

impl<'de> de::SeqAccess<'de> for Nothing {
    type Error = yaml_serde::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        _: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        Ok(None)
    }
}

/// The value under its tags (`!tag value`), as the tree's own deserializer
/// reads it.
fn untagged(mut value: &Value) -> &Value {
    while let Value::Tagged(tagged) = value {
        value = &tagged.value;
    }
    value
}

/// The value as serde names it in a type error (`string "x"`, `integer
/// `3``, `sequence`), as the tree's own deserializer does.
fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(flag) => Unexpected::Bool(*flag),
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(unsigned), _) => Unexpected::Unsigned(unsigned),
            (None, Some(signed)) => Unexpected::Signed(signed),
            (None, None) => Unexpected::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => Unexpected::Str(text),
        Value::Sequence(_) => Unexpected::Seq,
        Value::Mapping(_) => Unexpected::Map,
        Value::Tagged(_) => Unexpected::Enum,
    }
}

/// A mapping key as a path shows it: a scalar as written, anything else by
/// its kind.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_owned(),
        Value::Sequence(_) => "(a sequence)".to_owned(),
        Value::Mapping(_) => "(a mapping)".to_owned(),
        Value::Tagged(tagged) => key_text(&tagged.value),
    }
}

/// The keys of a `serde_ignored` path, `[]` for a sequence index.
fn keys_of<'p>(path: &'p serde_ignored::Path<'_>, keys: &mut Vec<&'p str>) {
    match path {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, .. } => {
            keys_of(parent, keys);
            keys.push("[]");
        }
        serde_ignored::Path::Map { parent, key } => {
            keys_of(parent, keys);
            keys.push(key);
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => keys_of(parent, keys),
    }
}

/// A `serde_ignored` path as `a.b[0].c` (map keys joined by dots, sequence
/// indices in brackets, `Option`/newtype layers skipped).
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    match path {
        serde_ignored::Path::Root => String::new(),
        serde_ignored::Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        serde_ignored::Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = previous[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut distance = substitution.min(previous[j] + 1).min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                distance = distance.min(before[j - 2] + 1);
            }
            current[j] = distance;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// A deserializer that records the field list of the struct asked for and
/// then fails.
struct FieldProbe<'f>(&'f mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{RawLimitsRatio, RawProfile};
    use super::*;

    #[test]
    fn edit_distance_counts_a_swap_once() {
        assert_eq!(edit_distance("expect", "expect"), 0);
        assert_eq!(edit_distance("expects", "expect"), 1);
        assert_eq!(edit_distance("ratoi", "ratio"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_name_needs_one_edit_per_three_letters() {
        let fields = ["cpuAllocationRatio", "memoryOvercommitPercent", "mode"];
        assert_eq!(
            closest_name("cpuAllocationRatoi", &fields),
            Some("cpuAllocationRatio")
        );
        assert_eq!(closest_name("cpuOvercommitRatio", &fields), None);
        // "mode" (4 letters) allows one edit: "modes" yes, "nodes" no.
        assert_eq!(closest_name("modes", &fields), Some("mode"));
        assert_eq!(closest_name("nodes", &fields), None);
    }

    #[test]
    fn struct_fields_are_the_renamed_names() {
        assert_eq!(
            struct_fields::<RawLimitsRatio>(),
            ["cpu", "memory"].as_slice()
        );
        assert!(struct_fields::<RawProfile>().contains(&"cpuAllocationRatio"));
        assert!(struct_fields::<String>().is_empty());
    }
}
