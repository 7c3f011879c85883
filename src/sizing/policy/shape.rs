//! The shape pass of [`ValidPolicy::from_yaml`](super::ValidPolicy::from_yaml):
//! the YAML tree into the raw structs, reporting every unknown field (with
//! the closest known name) and every value of the wrong type, not just the
//! first.
//!
//! `serde_path_to_error` stops at the first type error. So each one is
//! reported, the offending value is removed (a list item becomes `{}`), and
//! the parse runs again until it succeeds. The semantic checks then run on
//! what is left; their findings *below* a removed value are consequences of
//! the removal (`rules[0].profile: required` once `rules[0]` was a string)
//! and are dropped, so each fact is reported once.
//!
//! The spelling helpers ([`closest_name`], [`struct_fields`],
//! [`UnknownField`]) are public: `virt-sizer test` checks its case files
//! with them.

use serde::de::{self, Visitor};
use serde_path_to_error::Segment;
use yaml_serde::{Mapping, Value};

use super::{
    FieldError, ROOT, RawKata, RawKataClass, RawKataPods, RawKubevirt, RawLabelSelector,
    RawLimitsRatio, RawPolicy, RawProfile, RawRequirement, RawRule, RawVmm,
};

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
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|candidate| {
            let distance = edit_distance(&word, &candidate.to_ascii_lowercase());
            (distance, *candidate)
        })
        .filter(|(distance, candidate)| *distance <= (candidate.chars().count() / 3).max(1))
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
    /// Unknown fields, then type errors, in the order found.
    pub(super) errors: Vec<FieldError>,
    /// Paths of the values removed for their type.
    pub(super) removed: Vec<String>,
}

impl Shaped {
    /// Whether a semantic check's finding at `path` lies strictly below a
    /// removed value (and so only restates its type error).
    pub(super) fn is_consequence(&self, path: &str) -> bool {
        self.removed.iter().any(|removed| {
            path.strip_prefix(removed.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }
}

/// Deserialises the raw policy from `value`, collecting every unknown field
/// and every type error (see the module documentation).
pub(super) fn shape(value: &Value) -> Shaped {
    let mut value = std::borrow::Cow::Borrowed(value);
    let mut type_errors = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    loop {
        let mut errors = Vec::new();
        let mut on_unknown = |path: serde_ignored::Path<'_>| {
            let field = UnknownField::at(&path, raw_fields);
            let message = match field.suggestion {
                Some(name) => format!("unknown field (did you mean {name}?)"),
                None => "unknown field".to_owned(),
            };
            errors.push(FieldError::new(field.path, message));
        };
        let parsed: Result<RawPolicy, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(value.as_ref(), &mut on_unknown),
        );
        let error = match parsed {
            Ok(raw) => {
                errors.append(&mut type_errors);
                return Shaped {
                    raw: Some(raw),
                    errors,
                    removed,
                };
            }
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let path = match error.path().to_string() {
            path if path == "." => ROOT.to_owned(),
            path => path,
        };
        // A second error at a removed path means the removal did not help:
        // stop rather than loop.
        let repeated = removed.contains(&path);
        if !repeated {
            type_errors.push(FieldError::new(&path, error.into_inner().to_string()));
        }
        if repeated || !remove_at(value.to_mut(), &segments) {
            errors.append(&mut type_errors);
            return Shaped {
                raw: None,
                errors,
                removed,
            };
        }
        removed.push(path);
    }
}

/// Removes the value at `segments`: a mapping entry becomes null (every raw
/// field is optional, and a profile's name stays known), a sequence item
/// becomes `{}` (every raw item struct accepts it). `false` when there is
/// nothing to remove (the root, or a path the tree does not have).
fn remove_at(root: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = root;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Mapping(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(map)) => map
            .get_mut(key.as_str())
            .map(|value| *value = Value::Null)
            .is_some(),
        (Segment::Seq { index }, Value::Sequence(items)) => items
            .get_mut(*index)
            .map(|value| *value = Value::Mapping(Mapping::new()))
            .is_some(),
        _ => false,
    }
}

/// The known fields under a parent in the policy, by the parent's keys.
/// A place the table does not know gets no suggestion, never a wrong one.
fn raw_fields(parent: &[&str]) -> &'static [&'static str] {
    match parent {
        [] => struct_fields::<RawPolicy>(),
        ["kubevirt"] => struct_fields::<RawKubevirt>(),
        ["kubevirt", "autoCPULimitNamespaceLabelSelector"]
        | ["rules", "[]", "namespaceSelector" | "vmSelector"] => {
            struct_fields::<RawLabelSelector>()
        }
        [.., "matchExpressions", "[]"] => struct_fields::<RawRequirement>(),
        ["profiles", _] => struct_fields::<RawProfile>(),
        ["profiles", _, "limitsRatio"] => struct_fields::<RawLimitsRatio>(),
        ["rules", "[]"] => struct_fields::<RawRule>(),
        ["kata"] => struct_fields::<RawKata>(),
        ["kata", "runtimeClasses", _] => struct_fields::<RawKataClass>(),
        ["kata", "runtimeClasses", _, "vmm"] => struct_fields::<RawVmm>(),
        ["kata", "pods"] => struct_fields::<RawKataPods>(),
        _ => &[],
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
