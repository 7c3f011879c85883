//! YAML read with the expansion of its aliases bounded.
//!
//! An alias (`*name`) stands for its anchored node (`&name`) in full, and a
//! merge key (`<<: *name`) copies the anchored mapping's entries: a few
//! bytes of text can stand for a node of any size, and aliases of aliases
//! multiply. The YAML parser limits how many aliases it follows, not what
//! they expand to, so a 100 KB document can stand for gigabytes.
//!
//! Every document is therefore read twice: first counted, with every alias
//! expanded as the real read expands it but nothing built, stopping as soon
//! as the count passes the [`Expansion`] bound; then, within the bound,
//! read for real. The count costs time in proportion to the bound at most,
//! and no memory beyond the parser's own events.
//!
//! What is counted, with every alias written out in full:
//! - values: each scalar, sequence and mapping, mapping keys included;
//! - string bytes: the UTF-8 bytes of every string scalar, keys included.
//!
//! Text without aliases never holds more of either than it has bytes, so
//! [`Expansion::for_text`] admits any such document whatever its size.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, Visitor};

/// A policy holds at most this many values once its aliases are expanded.
/// A policy of 1,000 rules and 100 profiles, every field written, is about
/// 15,000 values; the bound is four times that, and the tree it builds
/// stays within a few MiB.
pub const MAX_POLICY_VALUES: usize = 65_536;

/// A policy holds at most this many bytes of strings once its aliases are
/// expanded: 1 MiB, what a ConfigMap can hold in all (the apiserver refuses
/// a larger one), so no policy a cluster can store is refused for its own
/// text.
pub const MAX_POLICY_STRING_BYTES: usize = 1024 * 1024;

/// How far a document may expand: each bound counted with every alias
/// written out (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expansion {
    /// Values (scalars, sequences, mappings; keys included) at most.
    pub max_values: usize,
    /// Bytes of string scalars (keys included) at most.
    pub max_string_bytes: usize,
}

/// Why a YAML text was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Not YAML, or not of the type asked for: the parser's message, with
    /// the line and column where it has them.
    #[error("{0}")]
    Syntax(String),
    /// Its aliases expand past the bound.
    #[error(
        "the document expands past {limit} {unit} once its aliases are written out \
         (each `*name`, merge keys `<<: *name` included, counts in full; \
         the bound is {max_values} values and {max_string_bytes} bytes of strings)"
    )]
    TooLarge {
        /// `values` or `bytes of strings`: which bound was passed.
        unit: &'static str,
        /// That bound.
        limit: usize,
        /// The values bound in force.
        max_values: usize,
        /// The string bytes bound in force.
        max_string_bytes: usize,
    },
}

impl Expansion {
    /// The bound on a sizing policy: [`MAX_POLICY_VALUES`] values and
    /// [`MAX_POLICY_STRING_BYTES`] bytes of strings.
    pub const POLICY: Expansion = Expansion {
        max_values: MAX_POLICY_VALUES,
        max_string_bytes: MAX_POLICY_STRING_BYTES,
    };

    /// The bound on any other document of `text` (a KubeVirt CR, a VMI, a
    /// review file): the policy's, or the text's own length in each unit
    /// when that is larger. A document without aliases always fits; with
    /// them, it expands to the policy's bound or its own length at most.
    #[must_use]
    pub fn for_text(text: &str) -> Expansion {
        Expansion {
            max_values: MAX_POLICY_VALUES.max(text.len()),
            max_string_bytes: MAX_POLICY_STRING_BYTES.max(text.len()),
        }
    }
}

/// Reads the one YAML document of `text` as a `T` (as `yaml_serde::from_str`
/// does), if its aliases expand within `bound`.
///
/// # Errors
/// [`YamlError::TooLarge`] past the bound, else [`YamlError::Syntax`] for
/// text that is not one YAML document of type `T`.
pub fn from_str<T: DeserializeOwned>(text: &str, bound: Expansion) -> Result<T, YamlError> {
    let mut tally = Tally::new(bound);
    if let Err(error) = Count(&mut tally).deserialize(yaml_serde::Deserializer::from_str(text)) {
        return Err(tally.into_error(&error));
    }
    yaml_serde::from_str(text).map_err(|error| YamlError::Syntax(error.to_string()))
}

/// Reads every document of `text` (`---` separated) as a `T`, if together
/// their aliases expand within `bound`.
///
/// # Errors
/// As [`from_str`], for the first document that fails.
pub fn documents<T: DeserializeOwned>(text: &str, bound: Expansion) -> Result<Vec<T>, YamlError> {
    let mut tally = Tally::new(bound);
    for document in yaml_serde::Deserializer::from_str(text) {
        if let Err(error) = Count(&mut tally).deserialize(document) {
            return Err(tally.into_error(&error));
        }
    }
    yaml_serde::Deserializer::from_str(text)
        .map(|document| {
            T::deserialize(document).map_err(|error| YamlError::Syntax(error.to_string()))
        })
        .collect()
}

/// What has been counted so far, and which bound was passed, if one was.
struct Tally {
    bound: Expansion,
    values: usize,
    string_bytes: usize,
    passed: Option<(&'static str, usize)>,
}

impl Tally {
    fn new(bound: Expansion) -> Tally {
        Tally {
            bound,
            values: 0,
            string_bytes: 0,
            passed: None,
        }
    }

    /// Counts one value holding `string_bytes` bytes of string.
    fn add<E: de::Error>(&mut self, string_bytes: usize) -> Result<(), E> {
        self.values += 1;
        self.string_bytes = self.string_bytes.saturating_add(string_bytes);
        if self.values > self.bound.max_values {
            self.passed = Some(("values", self.bound.max_values));
        } else if self.string_bytes > self.bound.max_string_bytes {
            self.passed = Some(("bytes of strings", self.bound.max_string_bytes));
        }
        match self.passed {
            // The parser wraps this message; `into_error` replaces it.
            Some(_) => Err(E::custom("expansion bound passed")),
            None => Ok(()),
        }
    }

    /// The error of a count that failed with `error`.
    fn into_error(self, error: &impl fmt::Display) -> YamlError {
        match self.passed {
            Some((unit, limit)) => YamlError::TooLarge {
                unit,
                limit,
                max_values: self.bound.max_values,
                max_string_bytes: self.bound.max_string_bytes,
            },
            None => YamlError::Syntax(error.to_string()),
        }
    }
}

/// Counts one node and everything under it into the tally.
struct Count<'t>(&'t mut Tally);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.0.add(text.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.0.add(0)?;
        while items.next_element_seed(Count(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        self.0.add(0)?;
        while entries.next_key_seed(Count(&mut *self.0))?.is_some() {
            entries.next_value_seed(Count(&mut *self.0))?;
        }
        Ok(())
    }

    /// A tagged node (`!tag value`): the value counts, the tag does not.
    fn visit_enum<A: de::EnumAccess<'de>>(self, tagged: A) -> Result<(), A::Error> {
        let (IgnoredAny, value) = tagged.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(value, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Expansion = Expansion {
        max_values: 10,
        max_string_bytes: 20,
    };

    #[test]
    fn values_count_keys_and_containers() {
        // {a: [1, 2]}: the mapping, key a, the sequence, 1 and 2 = 5 values.
        let bound = Expansion {
            max_values: 5,
            ..SMALL
        };
        assert!(from_str::<yaml_serde::Value>("a: [1, 2]\n", bound).is_ok());
        let error = from_str::<yaml_serde::Value>("a: [1, 2, 3]\n", bound).unwrap_err();
        assert_eq!(
            error,
            YamlError::TooLarge {
                unit: "values",
                limit: 5,
                max_values: 5,
                max_string_bytes: 20,
            }
        );
    }

    #[test]
    fn an_alias_counts_its_anchor_in_full_each_time() {
        // `k` and the anchored string: 1 + 8 bytes. Written out three times
        // the string is 24 bytes, past 20.
        let once = "k: &a abcdefgh\n";
        assert!(from_str::<yaml_serde::Value>(once, SMALL).is_ok());
        let error = from_str::<yaml_serde::Value>("[&a abcdefgh, *a, *a]\n", SMALL).unwrap_err();
        assert!(
            matches!(
                error,
                YamlError::TooLarge {
                    unit: "bytes of strings",
                    limit: 20,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_merge_key_counts_the_merged_mapping_in_full() {
        let text = "a: &a {x: 1, y: 2}\nb: {<<: *a}\n";
        let values = |text: &str, max_values: usize| {
            from_str::<yaml_serde::Value>(
                text,
                Expansion {
                    max_values,
                    max_string_bytes: 100,
                },
            )
        };
        // root 1, a + {x: 1, y: 2} = 1 + 5, b + {<<: …} = 1 + 1 + 1 + 5.
        assert!(values(text, 15).is_ok());
        assert!(values(text, 14).is_err());
    }

    #[test]
    fn every_document_of_a_stream_counts() {
        let bound = Expansion {
            max_values: 6,
            ..SMALL
        };
        let two: Vec<serde_json::Value> = documents("a: 1\n---\nb: 2\n", bound).expect("6 values");
        assert_eq!(two.len(), 2);
        assert!(documents::<serde_json::Value>("a: 1\n---\nb: 2\n---\nc: 3\n", bound).is_err());
    }

    #[test]
    fn syntax_errors_keep_the_parsers_message() {
        let error = from_str::<yaml_serde::Value>("a: [\n", SMALL).unwrap_err();
        assert!(
            matches!(&error, YamlError::Syntax(message) if message.contains("line")),
            "{error}"
        );
    }

    #[test]
    fn text_without_aliases_always_fits_its_own_bound() {
        let long = format!("k: {}\n", "x".repeat(2 * MAX_POLICY_STRING_BYTES));
        assert!(from_str::<yaml_serde::Value>(&long, Expansion::for_text(&long)).is_ok());
        assert!(from_str::<yaml_serde::Value>(&long, Expansion::POLICY).is_err());
    }
}
