//! The few numbers `KubeVirt` computes through Go's `float64`, in Rust's
//! `f64`: both are IEEE-754 binary64 with round-to-nearest-even, so the same
//! operations in the same order give the same bits. What differs is text:
//! Go's `%g` ([`format_g`]) and `strconv.ParseFloat` ([`parse`]), and Go's
//! `int64(f)` conversion ([`trunc_i64`]).
//!
//! The expressions, from `pkg/virt-controller/services/renderresources.go`:
//!
//! - the CPU request under a CPU allocation ratio: `fmt.Sprintf("%g",
//!   float64(vcpus)/float64(ratio))`, or, below one CPU,
//!   `fmt.Sprintf("%gm", float64(vcpus)/float64(ratio)*1000)`, then
//!   `resource.MustParse` of that text ([`cpu_ratio_text`]);
//! - `MultiplyMemory(mem, ratio)`: `mem` plus
//!   `int64(float64(mem.ScaledValue(resource.Kilo)) * (ratio - 1.0))`
//!   kilobytes ([`multiply_memory_addition_kilo`]);
//! - the automatic memory limit: `int64(float64(request.Value()) * ratio)`
//!   ([`mul_trunc`]).
//!
//! The rest of the sizing core is integer arithmetic; `clippy::float_arithmetic`
//! is denied there and allowed only on these functions.

use std::fmt::Write as _;

/// Go's `strconv.ParseFloat(text, 64)` for the values a policy or a KubeVirt
/// CR holds: `None` for malformed text, negative values, NaN, infinities
/// and values that overflow (Go returns `+Inf` with `ErrRange`). `"-0"` is
/// zero. Unlike Go, hex floats (`0x1p-2`) and underscores are refused.
#[must_use]
pub fn parse(text: &str) -> Option<f64> {
    let decimal = text
        .strip_prefix(['+', '-'])
        .unwrap_or(text)
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    let value: f64 = text.parse().ok().filter(|_| decimal)?;
    (value.is_finite() && value >= 0.0).then_some(value.abs())
}

/// Go's `float64(v)` of an unsigned integer: the nearest binary64 value,
/// ties to even (exact below `2^53`).
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "Go's float64(uint64) rounds the same way"
)]
pub fn from_u64(v: u64) -> f64 {
    v as f64
}

/// Go's `int64(f)`: truncation toward zero; `None` for NaN, infinities and
/// values outside `i64` (Go's result is then implementation-defined).
#[must_use]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the range is checked first; `as` truncates toward zero like Go"
)]
pub fn trunc_i64(value: f64) -> Option<i64> {
    // -2^63 is representable; 2^63 is the first value out of range.
    const MIN: f64 = -9_223_372_036_854_775_808.0;
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (value.is_finite() && (MIN..LIMIT).contains(&value)).then_some(value as i64)
}

/// `KubeVirt`'s CPU request text for `vcpus` at a CPU allocation `ratio`:
/// `%g` of the quotient, or `%gm` of it × 1000 below one CPU. 1/10 ⇒
/// `100m`, 16/10 ⇒ `1.6`, 1/3 ⇒ `333.3333333333333m`.
#[must_use]
#[expect(
    clippy::float_arithmetic,
    reason = "KubeVirt divides in float64; f64 is the same binary64"
)]
pub fn cpu_ratio_text(vcpus: u64, ratio: u32) -> String {
    let quotient = from_u64(vcpus) / f64::from(ratio);
    if quotient < 1.0 {
        format!("{}m", format_g(quotient * 1000.0))
    } else {
        format_g(quotient)
    }
}

/// `KubeVirt`'s `MultiplyMemory` addition, in kilobytes:
/// `int64(float64(kilo) * (ratio - 1.0))`. `kilo` is
/// `mem.ScaledValue(resource.Kilo)` (bytes ÷ 1000, rounded up). `None` if
/// the result leaves `i64`.
#[must_use]
#[expect(
    clippy::float_arithmetic,
    reason = "KubeVirt's MultiplyMemory is float64 arithmetic; f64 is the same binary64"
)]
pub fn multiply_memory_addition_kilo(kilo: u64, ratio: f64) -> Option<i64> {
    trunc_i64(from_u64(kilo) * (ratio - 1.0))
}

/// Go's `int64(float64(v) * ratio)`: `KubeVirt`'s automatic memory limit
/// (`request.Value()` bytes × the limit ratio), truncated toward zero.
#[must_use]
#[expect(
    clippy::float_arithmetic,
    reason = "KubeVirt's auto memory limit is float64 arithmetic; f64 is the same binary64"
)]
pub fn mul_trunc(v: u64, ratio: f64) -> Option<i64> {
    trunc_i64(from_u64(v) * ratio)
}

/// Go's `fmt.Sprintf("%g", f)` for a finite, non-negative `f`.
///
/// Takes the shortest decimal digits that parse back to the same value
/// (from the standard library's `{:e}`, which yields exactly those digits,
/// as Go's `strconv` does), then lays them out like Go: with `X` the decimal
/// exponent of the first digit, exponent form `d.ddde±XX` (sign, at least
/// two exponent digits) when `X < -4` or `X ≥ 6` (Go's `eprec = 6` for
/// shortest formatting), otherwise plain decimal without trailing zeros.
///
/// ```text
/// 0.1 → "0.1"    1.6 → "1.6"    1.0/3.0 → "0.3333333333333333"
/// 100000 → "100000"    1e6 → "1e+06"    1234567 → "1.234567e+06"
/// 0.0001 → "0.0001"    2.5e-5 → "2.5e-05"    0 → "0"
/// ```
#[must_use]
pub fn format_g(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let scientific = format!("{value:e}");
    let Some((significand, exponent_text)) = scientific.split_once('e') else {
        return scientific; // unreachable: `{:e}` always writes an exponent
    };
    let Ok(exponent) = exponent_text.parse::<i32>() else {
        return scientific; // unreachable: the exponent is an integer
    };
    let digits: String = significand.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        // Writing to a String cannot fail.
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(exponent.unsigned_abs() - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let n_integer_digits = usize::try_from(exponent).unwrap_or(0) + 1;
        if digits.len() <= n_integer_digits {
            out.push_str(&digits);
            for _ in digits.len()..n_integer_digits {
                out.push('0');
            }
        } else {
            let (integer, fraction) = digits.split_at(n_integer_digits);
            out.push_str(integer);
            out.push('.');
            out.push_str(fraction);
        }
    }
    out
}

#[cfg(test)]
#[path = "gofloat/tests.rs"]
mod tests;
