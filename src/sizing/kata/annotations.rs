//! The `default_vcpus` and `default_memory` annotations, read as each Kata
//! runtime reads them: plain numbers, not Kubernetes quantities.
//!
//! * Go runtime (3.32.0, `src/runtime/pkg/oci/utils.go`):
//!   `default_vcpus` through `setFloat32WithCheck` (`strconv.ParseFloat(v,
//!   32)`; an error or a negative value refuses the sandbox);
//!   `default_memory` through `setUintWithCheck` (`strconv.ParseUint(v, 10,
//!   64)`, then `uint32(…)`).
//! * runtime-rs (4.1.0, `src/libs/kata-types/src/annotations/mod.rs`,
//!   `Annotation::update_config_by_annotation`): `default_vcpus` through
//!   `v.trim().parse::<f32>()` (an error refuses the sandbox);
//!   `default_memory` through `convert_to_megabytes`, which reads a size
//!   with the `byte-unit` crate (5.2.3, `Byte::parse_str(v, true)`): a
//!   plain number is MiB, `"2Gi"` is 2048 MiB, `"2G"` is 2·10^9 bytes; a
//!   value it cannot read is ignored.

use super::vcpus::Vcpus;

/// How Kata takes an annotation's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reading<T> {
    /// The value Kata uses.
    Value(T),
    /// Kata refuses to start the sandbox, for this reason.
    Refused(String),
    /// Kata ignores the annotation, for this reason.
    Ignored(String),
    /// Kata takes a value virt-sizer cannot know or model (the node's CPU
    /// count, NaN, a hexadecimal float); the estimate leaves it out.
    Unmodeled(String),
}

/// The Go runtime's `default_vcpus`: `strconv.ParseFloat(v, 32)`, refused
/// if malformed, out of range or negative; `+Inf` is refused as too big.
/// A value above the node's CPU count is refused too, which virt-sizer
/// cannot check.
pub(super) fn go_vcpus(text: &str) -> Reading<Vcpus> {
    const NOT_A_NUMBER: &str = "is not a plain number: Kata's Go runtime refuses the sandbox (\"Please \
                                specify positive numeric value\"; it reads a number such as 0.5, not a \
                                Kubernetes quantity)";
    const NEGATIVE: &str = "is negative: Kata's Go runtime refuses the sandbox (\"Please specify \
                            positive numeric value\")";
    match go_parse_float32(text) {
        GoFloat::Syntax | GoFloat::Range => Reading::Refused(NOT_A_NUMBER.to_owned()),
        GoFloat::Hex => Reading::Unmodeled(
            "is a hexadecimal float, which Kata reads and virt-sizer does not".to_owned(),
        ),
        GoFloat::Value(value) if value.is_nan() => Reading::Unmodeled(
            "is NaN, which Kata's Go runtime accepts and boots no defined number of vCPUs with"
                .to_owned(),
        ),
        GoFloat::Value(value) if value < 0.0 => Reading::Refused(NEGATIVE.to_owned()),
        GoFloat::Value(value) if value.is_infinite() => Reading::Refused(
            "is infinite: Kata's Go runtime refuses the sandbox (\"The number exceeds the maximum \
             allowed for its type\")"
                .to_owned(),
        ),
        GoFloat::Value(value) => Reading::Value(Vcpus::from_f32(value)),
    }
}

/// runtime-rs's `default_vcpus`: `v.trim().parse::<f32>()`, refused if
/// malformed or above the hypervisor's maximum (infinity, here; the finite
/// maximum depends on the hypervisor: 256 for QEMU). A negative value
/// becomes the node's CPU count (`CpuInfo::adjust_config`).
pub(super) fn rs_vcpus(text: &str) -> Reading<Vcpus> {
    match text.trim().parse::<f32>() {
        Err(_) => Reading::Refused(
            "is not a plain number: runtime-rs refuses the sandbox (\"parse i32 error\"; it reads a \
             number such as 0.5, not a Kubernetes quantity)"
                .to_owned(),
        ),
        Ok(value) if value.is_nan() => Reading::Unmodeled(
            "is NaN, which runtime-rs accepts and boots no defined number of vCPUs with".to_owned(),
        ),
        Ok(value) if value.is_infinite() && value > 0.0 => Reading::Refused(
            "is infinite: runtime-rs refuses the sandbox (\"Vcpus specified in annotation … is more \
             than maximum limitation\")"
                .to_owned(),
        ),
        Ok(value) if value < 0.0 => Reading::Unmodeled(
            "is negative, and runtime-rs then uses the node's CPU count".to_owned(),
        ),
        Ok(value) => Reading::Value(Vcpus::from_f32(value)),
    }
}

/// The Go runtime's `default_memory`, in MiB as parsed
/// (`strconv.ParseUint(v, 10, 64)`: ASCII digits only); the caller applies
/// the minimum and Kata's `uint32(…)`.
pub(super) fn go_memory_mib(text: &str) -> Reading<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(mib) if digits => Reading::Value(mib),
        _ => Reading::Refused(
            "is not a whole number of MiB: Kata's Go runtime refuses the sandbox (\"Please specify \
             positive numeric value\"; it reads MiB, with no unit)"
                .to_owned(),
        ),
    }
}

/// runtime-rs's `default_memory` in MiB (`convert_to_megabytes`): a plain
/// number is MiB; otherwise `byte-unit` reads a size and Kata takes its
/// whole MiB (`get_adjusted_unit(MiB).get_value() as u32`). Text
/// `byte-unit` cannot read is ignored (`Ok(None)`); a plain number too large
/// for bytes refuses the sandbox. The caller applies the minimum.
pub(super) fn rs_memory_mib(text: &str) -> Reading<u32> {
    let trimmed = text.trim();
    let Some(bytes) = byte_unit_bytes(trimmed) else {
        return Reading::Ignored(
            "is not a size runtime-rs can read: it ignores the annotation (it takes a number of MiB \
             or a size such as 2Gi)"
                .to_owned(),
        );
    };
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        // A plain number: `Byte::from_u64_with_unit(n, MiB)`.
        return match bytes.checked_mul(1 << 20) {
            Some(_) => Reading::Value(u32::try_from(bytes).unwrap_or(u32::MAX)),
            None => Reading::Refused(format!(
                "is too large: runtime-rs refuses the sandbox (\"failed to convert {bytes} to MiB\")"
            )),
        };
    }
    Reading::Value(u32::try_from(f64_rounded(bytes) >> 20).unwrap_or(u32::MAX))
}

/// `u64 as f64` as an integer: rounded to 53 significant bits, ties to even
/// (the rounding Kata's `byte_v as f64` does before dividing by 2^20).
fn f64_rounded(value: u64) -> u128 {
    let bits = u64::BITS - value.leading_zeros();
    if bits <= f64::MANTISSA_DIGITS {
        return u128::from(value);
    }
    let shift = bits - f64::MANTISSA_DIGITS;
    let kept = value >> shift;
    let dropped = value & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let up = dropped > half || (dropped == half && kept & 1 == 1);
    u128::from(kept + u64::from(up)) << shift
}

/// `byte_unit::Byte::parse_str(text, true)` (5.2.3, without its `u128`
/// feature) in whole bytes: digits, an optional fraction, optional spaces,
/// then an optional unit (`B`, `K`, `KB`, `Ki`, `KiB`, `Kbit`, `Kibit`, …
/// up to `E`, case-insensitive; a bare `K` is 1000, `Ki` is 1024). The
/// value is rounded up to whole bytes. `None` where `byte-unit` fails: no
/// leading digit, a malformed unit, more than 28 fraction digits or a
/// mantissa beyond its 96 bits, or more than `u64::MAX` bytes.
fn byte_unit_bytes(text: &str) -> Option<u64> {
    const MAX_MANTISSA: u128 = (1 << 96) - 1;
    const MAX_SCALE: u32 = 28;
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut mantissa: u128 = 0;
    let mut scale: u32 = 0;
    let digit = |b: u8| u128::from(b - b'0');
    if !bytes.first()?.is_ascii_digit() {
        return None;
    }
    while let Some(b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(digit(*b))
            .filter(|m| *m <= MAX_MANTISSA)?;
        at += 1;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            scale += 1;
            if scale > MAX_SCALE {
                return None;
            }
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(digit(*b))
                .filter(|m| *m <= MAX_MANTISSA)?;
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    let unit = byte_unit(bytes.get(at..)?)?;
    let scale_divisor = 10_u128.pow(scale);
    let value = match unit {
        Unit::Bits(bits) => mantissa
            .checked_mul(bits)?
            .div_ceil(scale_divisor)
            .div_ceil(8),
        Unit::Bytes(unit_bytes) => mantissa.checked_mul(unit_bytes)?.div_ceil(scale_divisor),
    };
    u64::try_from(value).ok()
}

/// A `byte-unit` unit: its size in bits or in bytes.
enum Unit {
    Bits(u128),
    Bytes(u128),
}

/// `read_xib` with `ignore_case` and `prefer_byte`: the unit the rest of
/// the text names, `None` if it names none.
fn byte_unit(rest: &[u8]) -> Option<Unit> {
    let Some((first, rest)) = rest.split_first() else {
        return Some(Unit::Bytes(1));
    };
    let exponent = match first.to_ascii_uppercase() {
        b'B' => {
            return Some(if bit_suffix(rest)? {
                Unit::Bits(1)
            } else {
                Unit::Bytes(1)
            });
        }
        b'K' => 1,
        b'M' => 2,
        b'G' => 3,
        b'T' => 4,
        b'P' => 5,
        b'E' => 6,
        _ => return None,
    };
    let (binary, rest) = match rest.split_first() {
        Some((b'i' | b'I', rest)) => (true, rest),
        _ => (false, rest),
    };
    let bits = match rest.split_first() {
        None => false,
        Some((b'b' | b'B', rest)) => bit_suffix(rest)?,
        Some(_) => return None,
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    let size = base.pow(exponent);
    Some(if bits {
        Unit::Bits(size)
    } else {
        Unit::Bytes(size)
    })
}

/// `read_b` with `ignore_case`: after a `B`, nothing (bytes) or `it` /
/// `its` (bits); `None` for anything else.
fn bit_suffix(rest: &[u8]) -> Option<bool> {
    let lower: Vec<u8> = rest.iter().map(u8::to_ascii_lowercase).collect();
    match lower.as_slice() {
        [] => Some(false),
        b"it" | b"its" => Some(true),
        _ => None,
    }
}

/// What Go's `strconv.ParseFloat(text, 32)` makes of `text`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GoFloat {
    /// A float32 value (possibly ±Inf or NaN when written so).
    Value(f32),
    /// Malformed (`ErrSyntax`).
    Syntax,
    /// Beyond float32 (`ErrRange`).
    Range,
    /// A hexadecimal float (`0x1p-2`): well-formed for Go, not read here.
    Hex,
}

/// Go's `strconv.ParseFloat(text, 32)`: a decimal float literal (optional
/// sign, digits with an optional `.`, an optional exponent, `_` only between
/// digits), or `inf`/`infinity` with an optional sign, or `nan`, ignoring
/// case. Decimal text is rounded once to float32 (Rust's `parse::<f32>` is
/// correctly rounded too); one that rounds to infinity is `ErrRange`.
fn go_parse_float32(text: &str) -> GoFloat {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let signed = unsigned.len() != text.len();
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" || (!signed && lower == "nan") {
        // Rust reads these words (with the sign) to the same values.
        return text.parse::<f32>().map_or(GoFloat::Syntax, GoFloat::Value);
    }
    if lower.starts_with("0x") {
        return GoFloat::Hex;
    }
    if !go_decimal_syntax(unsigned.as_bytes()) {
        return GoFloat::Syntax;
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    match plain.parse::<f32>() {
        Ok(value) if value.is_infinite() => GoFloat::Range,
        Ok(value) => GoFloat::Value(value),
        Err(_) => GoFloat::Syntax,
    }
}

/// Whether `text` (without its sign) is a Go decimal float literal:
/// mantissa digits with at most one `.` and at least one digit, then
/// optionally `e`/`E`, a sign and at least one digit; `_` only between two
/// digits (Go's `underscoreOK`).
fn go_decimal_syntax(text: &[u8]) -> bool {
    let underscores_between_digits = text.iter().enumerate().all(|(at, b)| {
        *b != b'_'
            || (at > 0
                && text[at - 1].is_ascii_digit()
                && text.get(at + 1).is_some_and(u8::is_ascii_digit))
    });
    let (mantissa, exponent) = match text.iter().position(|b| matches!(b, b'e' | b'E')) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mantissa_ok = mantissa.iter().filter(|b| **b == b'.').count() <= 1
        && mantissa.iter().any(u8::is_ascii_digit)
        && mantissa
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_'));
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent
            .strip_prefix(b"+")
            .or_else(|| exponent.strip_prefix(b"-"))
            .unwrap_or(exponent);
        digits.iter().any(u8::is_ascii_digit)
            && digits.iter().all(|b| b.is_ascii_digit() || *b == b'_')
    });
    underscores_between_digits && mantissa_ok && exponent_ok
}

#[cfg(test)]
#[path = "annotations_tests.rs"]
mod tests;
