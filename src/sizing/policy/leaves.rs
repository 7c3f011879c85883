//! Leaf conversions of the policy checker: strings, numbers, keywords,
//! quantities and Kubernetes names, each reporting its own problem.

use super::*;

impl Checker {
    pub(super) fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        if let Value::String(text) = value {
            Some(text.clone())
        } else {
            let hint = if matches!(value, Value::Number(_) | Value::Bool(_)) {
                " (quote it)"
            } else {
                ""
            };
            self.error(
                path,
                format!("expected a string, got {}{hint}", describe(value)),
            );
            None
        }
    }

    /// A string or a number, as text (numbers in their shortest decimal
    /// form), and whether it was a number.
    pub(super) fn scalar_text(&mut self, path: &str, value: &Value) -> Option<(String, bool)> {
        match value {
            Value::String(text) => Some((text.clone(), false)),
            Value::Number(number) => Some((number.to_string(), true)),
            other => {
                self.error(
                    path,
                    format!("expected a string or a number, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        if let Value::Bool(flag) = value {
            Some(*flag)
        } else {
            self.error(
                path,
                format!("expected true or false, got {}", describe(value)),
            );
            None
        }
    }

    pub(super) fn integer_at_least(
        &mut self,
        path: &str,
        value: &Value,
        minimum: u32,
    ) -> Option<u32> {
        let parsed = match value {
            Value::Number(n) => n.as_u64().map(|n| u32::try_from(n).ok()),
            _ => None,
        };
        match parsed {
            Some(Some(n)) if n >= minimum => Some(n),
            Some(Some(n)) => {
                self.error(path, format!("must be ≥ {minimum}, got {n}"));
                None
            }
            Some(None) => {
                self.error(
                    path,
                    format!("must be at most {}, got {}", u32::MAX, describe(value)),
                );
                None
            }
            None => {
                self.error(
                    path,
                    format!("expected an integer ≥ {minimum}, got {}", describe(value)),
                );
                None
            }
        }
    }

    pub(super) fn keyword<T: Spelled>(&mut self, path: &str, value: &Value) -> Option<T> {
        let allowed = T::SPELLINGS;
        let names = || {
            allowed
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Value::String(text) = value else {
            self.error(
                path,
                format!("must be one of {}, got {}", names(), describe(value)),
            );
            return None;
        };
        if let Some((_, item)) = allowed.iter().find(|(name, _)| name == text) {
            return Some(*item);
        }
        let hint = closest_name(
            text,
            &allowed.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        )
        .map(|name| format!(" (did you mean {name}?)"))
        .unwrap_or_default();
        self.error(
            path,
            format!("must be one of {}, got {text:?}{hint}", names()),
        );
        None
    }

    pub(super) fn required_quantity(
        &mut self,
        path: &str,
        value: Option<&Value>,
        kind: QuantityKind,
    ) -> Option<Quantity> {
        if value.is_none() {
            self.error(path, "required");
        }
        self.optional_quantity(path, value, kind)
    }

    pub(super) fn optional_quantity(
        &mut self,
        path: &str,
        value: Option<&Value>,
        kind: QuantityKind,
    ) -> Option<Quantity> {
        value.and_then(|v| self.quantity(path, v, kind))
    }

    /// A Kubernetes quantity (string or number) with the checks of `kind`.
    pub(super) fn quantity(
        &mut self,
        path: &str,
        value: &Value,
        kind: QuantityKind,
    ) -> Option<Quantity> {
        let (text, _) = self.scalar_text(path, value)?;
        let quantity = match Quantity::parse(&text) {
            Ok(q) => q,
            Err(error) => {
                self.error(path, format!("invalid quantity {text:?}: {}", error.reason));
                return None;
            }
        };
        let nanos = quantity.nanos();
        let problem = if quantity.is_negative() {
            Some("must not be negative")
        } else if kind != QuantityKind::Cpu && nanos % NANOS_PER_UNIT != 0 {
            Some("must be a whole number of bytes")
        } else if kind == QuantityKind::MemoryMib && quantity.value() % (1 << 20) != 0 {
            Some("must be a whole number of MiB (Kata reads it in MiB)")
        } else if (kind == QuantityKind::Cpu && quantity.milli_value() > MAX_UNITS)
            || (kind != QuantityKind::Cpu && quantity.value() > MAX_UNITS)
        {
            Some("is larger than a Kubernetes quantity can be")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(path, format!("{problem}, got {text:?}"));
            return None;
        }
        Some(quantity)
    }

    /// A profile name: like a Kubernetes label value, non-empty.
    pub(super) fn name(&mut self, path: &str, name: &str, what: &str) {
        if name.is_empty() || !is_label_value(name) {
            self.key_error(
                path,
                format!(
                    "invalid {what} {name:?}: must be 1–{MAX_NAME_LEN} characters of [A-Za-z0-9-_.], \
                     starting and ending with a letter or digit"
                ),
            );
        }
    }

    /// A `RuntimeClass` handler: an RFC 1123 DNS label.
    pub(super) fn dns_label(&mut self, path: &str, name: &str) {
        if !is_dns_label(name) {
            self.key_error(
                path,
                format!(
                    "invalid runtime class handler {name:?}: must be a DNS label (1–63 lowercase letters, digits \
                     or '-', starting and ending with a letter or digit)"
                ),
            );
        }
    }

    /// A label key: `[prefix/]name` (`IsQualifiedName`).
    pub(super) fn label_key(&mut self, path: &str, key: &str) {
        let (prefix, name) = match key.split_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key),
        };
        let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
        if !prefix_ok || name.is_empty() || !is_label_value(name) || name.contains('/') {
            self.error(
                path,
                format!(
                    "invalid label key {key:?}: must be [DNS-subdomain prefix/]name, name 1–{MAX_NAME_LEN} \
                     characters of [A-Za-z0-9-_.] starting and ending with a letter or digit"
                ),
            );
        }
    }

    /// A label value (`IsValidLabelValue`): empty, or up to 63 characters.
    pub(super) fn label_value(&mut self, path: &str, value: &str) {
        if !value.is_empty() && !is_label_value(value) {
            self.error(
                path,
                format!(
                    "invalid label value {value:?}: must be at most {MAX_NAME_LEN} characters of [A-Za-z0-9-_.], \
                     starting and ending with a letter or digit"
                ),
            );
        }
    }
}

/// A YAML value for an error message: `string "x"`, `number 3`, …
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => format!("string {text:?}"),
        Value::Sequence(_) => "a sequence".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
pub(super) fn is_label_value(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(super) fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.first().is_some_and(ok)
        && bytes.last().is_some_and(ok)
        && bytes.iter().all(|b| ok(b) || *b == b'-')
}
