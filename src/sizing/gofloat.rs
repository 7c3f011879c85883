//! Go `float64` semantics reproduced bit for bit in integer arithmetic.
//!
//! `KubeVirt` computes a few of the numbers we must match through `float64`,
//! so the bytes it writes into a virt-launcher Pod depend on IEEE-754
//! rounding and on Go's `%g` formatting:
//!
//! - the CPU request under a CPU allocation ratio
//!   (`pkg/virt-controller/services/renderresources.go`):
//!   `fmt.Sprintf("%g", float64(vcpus)/float64(ratio))`, or, below one CPU,
//!   `fmt.Sprintf("%gm", float64(vcpus)/float64(ratio)*1000)`, then
//!   `resource.MustParse` of that text;
//! - `MultiplyMemory(mem, ratio)`: `mem` plus
//!   `int64(float64(mem.ScaledValue(resource.Kilo)) * (ratio - 1.0))`
//!   kilobytes, as a `NewScaledQuantity(…, resource.Kilo)`;
//! - the automatic memory limit: `int64(float64(request.Value()) * ratio)`.
//!
//! The sizing core forbids float arithmetic (`clippy::float_arithmetic`), so
//! [`GoFloat`] holds a non-negative finite binary64 value as an integer
//! mantissa and a power-of-two exponent and rounds every operation exactly
//! as the hardware does: to nearest, ties to even, including subnormals.
//! Converting text to a float ([`GoFloat::parse`]) and a float to its
//! shortest decimal digits ([`GoFloat::format_g`]) go through the standard
//! library's correctly rounded conversions; that is formatting, not
//! arithmetic.
//!
//! How a caller reproduces each `KubeVirt` expression:
//!
//! ```text
//! cpu:    let q = GoFloat::from_u64(vcpus).div(GoFloat::from_u64(ratio));
//!         if q.is_less_than_one() { format!("{}m", q.mul(GoFloat::from_u64(1000)).format_g()) }
//!         else { q.format_g() }                       // then Quantity::parse
//! memory: multiply_memory_addition_kilo(kilo, ratio)  // kilobytes to add
//! limit:  mul_trunc(request_bytes, ratio)             // int64(float64(v) * ratio)
//! ```

use std::cmp::Ordering;
use std::fmt::Write as _;

/// Bits in a binary64 significand, the implicit leading one included.
const SIGNIFICAND_BITS: u32 = 53;
/// The implicit leading bit of a normal binary64 significand, `2^52`.
const HIDDEN_BIT: u64 = 1 << 52;
/// Exponent of the least significant significand bit of subnormals and of
/// the smallest normal numbers: the smallest value is `2^-1074`.
const MIN_EXPONENT: i32 = -1074;
/// Largest exponent of a finite value: `f64::MAX = (2^53 − 1) × 2^971`.
const MAX_EXPONENT: i32 = 971;
/// Binary64 exponent bias as seen from the integer significand:
/// biased exponent field = `exponent + EXPONENT_BIAS` for normal numbers.
const EXPONENT_BIAS: i32 = 1075;

/// A non-negative, finite IEEE-754 binary64 value (a Go `float64`), held as
/// `mantissa × 2^exponent` with `mantissa < 2^53`.
///
/// The representation is canonical, the one the IEEE-754 encoding implies:
/// normal numbers have `2^52 ≤ mantissa < 2^53` and
/// `-1074 ≤ exponent ≤ 971`; subnormals and zero have `mantissa < 2^52` and
/// `exponent = -1074`. Equality and ordering are therefore those of the
/// value. Negative zero is folded into zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoFloat {
    mantissa: u64,
    exponent: i32,
}

/// Zero.
const ZERO: GoFloat = GoFloat {
    mantissa: 0,
    exponent: MIN_EXPONENT,
};

impl GoFloat {
    /// `0.0`.
    pub const ZERO: Self = ZERO;

    /// `1.0` (`2^52 × 2^-52`).
    pub const ONE: Self = Self {
        mantissa: HIDDEN_BIT,
        exponent: -52,
    };

    /// The largest finite value, `f64::MAX` ≈ `1.7976931348623157e308`;
    /// where Go would produce `+Inf`, the saturating operations produce this.
    pub const MAX: Self = Self {
        mantissa: (1 << SIGNIFICAND_BITS) - 1,
        exponent: MAX_EXPONENT,
    };

    /// Go's `strconv.ParseFloat(s, 64)` for non-negative finite input.
    ///
    /// Uses the standard library's correctly rounded decimal parser, which
    /// rounds exactly as Go's does. `None` for malformed text, negative
    /// values, NaN, infinities and values that overflow to infinity (Go
    /// returns `+Inf` with `ErrRange`). `"-0"` is zero. Unlike Go, hex
    /// floats (`0x1p-2`) and underscores are not accepted.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let parsed: f64 = s.parse().ok()?;
        Self::from_f64(parsed)
    }

    /// Go's `float64(v)` of an integer: the nearest binary64 value, ties to
    /// even (exact below `2^53`; `2^53 + 1` becomes `2^53`).
    #[must_use]
    pub fn from_u64(v: u64) -> Self {
        let (mantissa, exponent) = round_to_binary64(u128::from(v), 0, false);
        // A u64 is below 2^64, far from the overflow threshold 2^1024.
        Self { mantissa, exponent }
    }

    /// The value of `value`, or `None` if it is negative (other than
    /// `-0.0`), NaN or infinite. Decomposes the bits; no arithmetic.
    #[must_use]
    pub fn from_f64(value: f64) -> Option<Self> {
        Self::from_bits(value.to_bits())
    }

    /// Decodes IEEE-754 binary64 bits, with the same restrictions as
    /// [`GoFloat::from_f64`].
    #[must_use]
    pub fn from_bits(bits: u64) -> Option<Self> {
        let negative = bits >> 63 == 1;
        let biased = (bits >> 52) & 0x7ff;
        let fraction = bits & (HIDDEN_BIT - 1);
        if biased == 0x7ff {
            return None; // infinity or NaN
        }
        if negative {
            return (biased == 0 && fraction == 0).then_some(ZERO);
        }
        if biased == 0 {
            return Some(Self {
                mantissa: fraction,
                exponent: MIN_EXPONENT,
            });
        }
        Some(Self {
            mantissa: fraction | HIDDEN_BIT,
            exponent: i32::try_from(biased).ok()? - EXPONENT_BIAS,
        })
    }

    /// The IEEE-754 binary64 encoding of this value (sign bit clear).
    #[must_use]
    pub fn to_bits(self) -> u64 {
        if self.mantissa < HIDDEN_BIT {
            // Zero or subnormal: biased exponent field 0.
            return self.mantissa;
        }
        // exponent ≥ -1074, so the distance to -1075 is exponent + 1075 ≥ 1.
        let biased = u64::from(self.exponent.abs_diff(-EXPONENT_BIAS));
        (biased << 52) | (self.mantissa - HIDDEN_BIT)
    }

    /// The same value as an `f64` (a bit cast, no arithmetic), for tests
    /// and formatting.
    #[must_use]
    pub fn to_f64(self) -> f64 {
        f64::from_bits(self.to_bits())
    }

    /// The integer significand: value = `mantissa() × 2^exponent()`.
    #[must_use]
    pub const fn mantissa(self) -> u64 {
        self.mantissa
    }

    /// The power-of-two exponent: value = `mantissa() × 2^exponent()`.
    #[must_use]
    pub const fn exponent(self) -> i32 {
        self.exponent
    }

    /// Whether the value is `0.0`.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// Whether the value is below `1.0`: `KubeVirt`'s `if cpu < 1` test.
    #[must_use]
    pub fn is_less_than_one(self) -> bool {
        self < Self::ONE
    }

    /// `self × rhs` rounded to nearest, ties to even, exactly like a Go
    /// `float64` multiplication; `None` where Go would produce `+Inf`.
    #[must_use]
    pub fn checked_mul(self, rhs: Self) -> Option<Self> {
        if self.is_zero() || rhs.is_zero() {
            return Some(ZERO);
        }
        // Both significands are below 2^53, so the product is exact in 106 bits.
        let product = u128::from(self.mantissa) * u128::from(rhs.mantissa);
        finish(round_to_binary64(
            product,
            self.exponent + rhs.exponent,
            false,
        ))
    }

    /// `self ÷ rhs` rounded to nearest, ties to even, exactly like a Go
    /// `float64` division; `None` for division by zero or where Go would
    /// produce `+Inf`.
    #[must_use]
    pub fn checked_div(self, rhs: Self) -> Option<Self> {
        if rhs.is_zero() {
            return None;
        }
        if self.is_zero() {
            return Some(ZERO);
        }
        // Shift the dividend to 127 bits: with a divisor below 2^53 the
        // quotient has at least 74 bits, far more than the 53 + guard bits
        // rounding needs, and the remainder becomes the sticky bit.
        let dividend = u128::from(self.mantissa);
        let shift = dividend.leading_zeros() - 1;
        let dividend = dividend << shift;
        let divisor = u128::from(rhs.mantissa);
        let quotient = dividend / divisor;
        let sticky = dividend % divisor != 0;
        let exponent = self.exponent - shift.cast_signed() - rhs.exponent;
        finish(round_to_binary64(quotient, exponent, sticky))
    }

    /// `self − rhs` rounded to nearest, ties to even, exactly like a Go
    /// `float64` subtraction; `None` if `rhs > self` (the result would be
    /// negative, which this type does not hold).
    #[must_use]
    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        if rhs > self {
            return None;
        }
        if rhs.is_zero() {
            return Some(self);
        }
        // self ≥ rhs and both are canonical, so self.exponent ≥ rhs.exponent.
        let gap = u32::try_from(self.exponent - rhs.exponent).ok()?;
        if gap > 70 {
            // rhs < 2^(rhs.exponent + 53) ≤ 2^(self.exponent − 18), while the
            // spacing of binary64 values just below self is at least
            // 2^(self.exponent − 1) (self is normal here). Subtracting less
            // than half of that spacing rounds back to self.
            return Some(self);
        }
        // Exact: self's significand shifted by ≤ 70 bits stays below 2^123.
        let difference = (u128::from(self.mantissa) << gap) - u128::from(rhs.mantissa);
        finish(round_to_binary64(difference, rhs.exponent, false))
    }

    /// [`GoFloat::checked_mul`] that saturates at [`GoFloat::MAX`] where
    /// Go would produce `+Inf` (only for products above `1.8e308`).
    #[must_use]
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating, not the std::ops contract; callers name it explicitly"
    )]
    pub fn mul(self, rhs: Self) -> Self {
        self.checked_mul(rhs).unwrap_or(Self::MAX)
    }

    /// [`GoFloat::checked_div`] that saturates at [`GoFloat::MAX`] where Go
    /// would produce `+Inf`, including division by zero.
    #[must_use]
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating, not the std::ops contract; callers name it explicitly"
    )]
    pub fn div(self, rhs: Self) -> Self {
        self.checked_div(rhs).unwrap_or(Self::MAX)
    }

    /// [`GoFloat::checked_sub`] that saturates at zero when `rhs > self`
    /// (Go would produce a negative number, which this type does not hold).
    #[must_use]
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating, not the std::ops contract; callers name it explicitly"
    )]
    pub fn sub(self, rhs: Self) -> Self {
        self.checked_sub(rhs).unwrap_or(ZERO)
    }

    /// Go's `int64(f)`: truncation toward zero; `None` when the value is
    /// `2^63` or more (Go's result is then implementation-defined).
    #[must_use]
    pub fn trunc_i64(self) -> Option<i64> {
        let magnitude = self.exponent.unsigned_abs();
        let truncated = if self.exponent >= 0 {
            if magnitude > 63 {
                return None;
            }
            u128::from(self.mantissa) << magnitude
        } else if magnitude >= 64 {
            0
        } else {
            u128::from(self.mantissa >> magnitude)
        };
        i64::try_from(truncated).ok()
    }

    /// Go's `fmt.Sprintf("%g", f)`.
    ///
    /// Takes the shortest decimal digits that parse back to the same value
    /// (from the standard library's `{:e}`, which yields exactly those
    /// digits, as Go's `strconv` does), then lays them out like Go: with
    /// `X` the decimal exponent of the first digit, exponent form
    /// `d.ddde±XX` (sign, at least two exponent digits) when `X < -4` or
    /// `X ≥ 6` (Go's `eprec = 6` for shortest formatting), otherwise plain
    /// decimal without trailing zeros.
    ///
    /// ```text
    /// 0.1 → "0.1"    1.6 → "1.6"    1.0/3.0 → "0.3333333333333333"
    /// 100000 → "100000"    1e6 → "1e+06"    1234567 → "1.234567e+06"
    /// 0.0001 → "0.0001"    2.5e-5 → "2.5e-05"    0 → "0"
    /// ```
    #[must_use]
    pub fn format_g(self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        let scientific = format!("{:e}", self.to_f64());
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
}

impl PartialOrd for GoFloat {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GoFloat {
    /// Orders by value: for non-negative finite binary64 values the
    /// encodings sort in the same order as the numbers.
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_bits().cmp(&other.to_bits())
    }
}

/// `KubeVirt`'s `MultiplyMemory` addition, in kilobytes:
/// `int64(float64(kilo) * (ratio - 1.0))` with Go `float64` rounding at
/// every step (the conversion, the subtraction, the product) and
/// truncation toward zero at the end.
///
/// `kilo` is `mem.ScaledValue(resource.Kilo)` (bytes ÷ 1000, rounded up).
/// Ratios below one give the negative result Go would compute (IEEE-754
/// rounding is symmetric, so `x × (r − 1) = −(x × (1 − r))` exactly).
/// `None` if the result leaves `i64`.
///
/// Source: `KubeVirt` `pkg/virt-controller/services/renderresources.go`,
/// `multiplyMemory`.
#[must_use]
pub fn multiply_memory_addition_kilo(kilo: u64, ratio: GoFloat) -> Option<i64> {
    let kilo = GoFloat::from_u64(kilo);
    if ratio >= GoFloat::ONE {
        kilo.checked_mul(ratio.checked_sub(GoFloat::ONE)?)?
            .trunc_i64()
    } else {
        kilo.checked_mul(GoFloat::ONE.checked_sub(ratio)?)?
            .trunc_i64()?
            .checked_neg()
    }
}

/// Go's `int64(float64(v) * ratio)`: `KubeVirt`'s automatic memory limit
/// (`request.Value()` bytes × the limit ratio), truncated toward zero.
/// `None` if the product is `2^63` or more.
#[must_use]
pub fn mul_trunc(v: u64, ratio: GoFloat) -> Option<i64> {
    GoFloat::from_u64(v).checked_mul(ratio)?.trunc_i64()
}

/// Checks the exponent of a rounded `(mantissa, exponent)` pair: `None`
/// when it overflowed binary64 (Go's `+Inf`).
fn finish((mantissa, exponent): (u64, i32)) -> Option<GoFloat> {
    (exponent <= MAX_EXPONENT).then_some(GoFloat { mantissa, exponent })
}

/// Rounds `value × 2^exponent` (plus a positive amount below one unit of
/// `value` when `sticky`) to binary64 precision, to nearest, ties to even.
///
/// Returns the canonical `(mantissa, exponent)` pair without the overflow
/// check (see [`finish`]). Callers that set `sticky` pass at least 55
/// significant bits, so the sticky bit always lies below the rounding bit.
fn round_to_binary64(value: u128, exponent: i32, sticky: bool) -> (u64, i32) {
    if value == 0 {
        return (0, MIN_EXPONENT);
    }
    let bit_length = (u128::BITS - value.leading_zeros()).cast_signed();
    // Exponent of the result's last bit: keep 53 bits, but never go below
    // the subnormal exponent.
    let last_bit_exponent =
        (exponent + bit_length - SIGNIFICAND_BITS.cast_signed()).max(MIN_EXPONENT);
    let shift = last_bit_exponent - exponent;
    let mut rounded = if shift <= 0 {
        // Fewer than 53 bits: exact (callers never set sticky here).
        value << shift.unsigned_abs()
    } else if shift > 128 {
        // value < 2^(exponent + 128) ≤ half a unit in the last place.
        0
    } else {
        let shift = shift.unsigned_abs();
        let half = 1u128 << (shift - 1);
        let (kept, dropped) = if shift == 128 {
            (0, value)
        } else {
            (value >> shift, value & ((1u128 << shift) - 1))
        };
        let round_up = dropped > half || (dropped == half && (sticky || kept & 1 == 1));
        kept + u128::from(round_up)
    };
    let mut result_exponent = last_bit_exponent;
    if rounded == 1 << SIGNIFICAND_BITS {
        rounded >>= 1;
        result_exponent += 1;
    }
    // rounded < 2^53 now, so it fits a u64.
    (u64::try_from(rounded).unwrap_or(0), result_exponent)
}

#[cfg(test)]
#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "hardware f64 is the oracle (allow, not expect: the parent may not enable these lints)"
)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    fn float(value: f64) -> GoFloat {
        GoFloat::from_f64(value).expect("non-negative finite")
    }

    /// The hardware result as a `GoFloat`, `None` for infinity.
    fn oracle(value: f64) -> Option<GoFloat> {
        value.is_finite().then(|| float(value))
    }

    /// Non-negative finite f64 values from every binade, subnormals included.
    fn any_float() -> impl Strategy<Value = f64> {
        (0u64..0x7ff0_0000_0000_0000).prop_map(f64::from_bits)
    }

    /// The range sizing works in: 1e-3 to 1e15.
    fn practical_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            (1e-3..1e15f64),
            (0.5..4.0f64),
            (1u64..1 << 50).prop_map(|v| v as f64),
        ]
    }

    #[rstest]
    #[case::zero(0.0)]
    #[case::one(1.0)]
    #[case::smallest_subnormal(f64::from_bits(1))]
    #[case::largest_subnormal(f64::from_bits(HIDDEN_BIT - 1))]
    #[case::smallest_normal(f64::MIN_POSITIVE)]
    #[case::max(f64::MAX)]
    #[case::one_point_seven(1.7)]
    fn bits_round_trip(#[case] value: f64) {
        let parsed = float(value);
        assert_eq!(parsed.to_bits(), value.to_bits());
        assert_eq!(parsed.to_f64().to_bits(), value.to_bits());
    }

    #[test]
    fn constants_match_hardware() {
        assert_eq!(GoFloat::ZERO.to_f64().to_bits(), 0.0f64.to_bits());
        assert_eq!(GoFloat::ONE.to_f64().to_bits(), 1.0f64.to_bits());
        assert_eq!(GoFloat::MAX.to_f64().to_bits(), f64::MAX.to_bits());
    }

    #[rstest]
    #[case::negative("-1")]
    #[case::nan("NaN")]
    #[case::infinity("inf")]
    #[case::overflow("1e400")]
    #[case::empty("")]
    #[case::garbage("1.5x")]
    #[case::hex("0x1p-2")]
    fn parse_rejects(#[case] text: &str) {
        assert_eq!(GoFloat::parse(text), None);
    }

    #[rstest]
    #[case::ratio("1.5", 1.5)]
    #[case::negative_zero("-0", 0.0)]
    #[case::tenth("0.1", 0.1)]
    #[case::exponent("2.5e-5", 2.5e-5)]
    #[case::leading_plus("+2", 2.0)]
    fn parse_matches_hardware(#[case] text: &str, #[case] expected: f64) {
        assert_eq!(
            GoFloat::parse(text).map(GoFloat::to_bits),
            Some(expected.to_bits())
        );
    }

    #[test]
    fn from_u64_rounds_to_nearest_even_above_2_pow_53() {
        for v in [
            (1u64 << 53) - 1,
            1 << 53,
            (1 << 53) + 1,
            (1 << 53) + 2,
            (1 << 53) + 3,
            u64::MAX,
            i64::MAX as u64,
        ] {
            assert_eq!(GoFloat::from_u64(v).to_bits(), (v as f64).to_bits(), "{v}");
        }
        assert_eq!(GoFloat::from_u64((1 << 53) + 1), GoFloat::from_u64(1 << 53));
    }

    #[test]
    fn ratio_edge_cases_match_hardware() {
        // 1.7 is stored below 17/10 and 1.1 above 11/10: truncation after
        // the product is where a decimal implementation would differ.
        for ratio in [1.7, 1.1, 1.5, 1.2, 2.0, 1.0, 0.9, 1.000_000_1] {
            for kilo in [
                300_000u64,
                1_048_576,
                999_999,
                1,
                0,
                3,
                5,
                90,
                7_340_032,
                1 << 40,
            ] {
                let expected = ((kilo as f64) * (ratio - 1.0)) as i64;
                assert_eq!(
                    multiply_memory_addition_kilo(kilo, float(ratio)),
                    Some(expected),
                    "{kilo} × ({ratio} − 1)"
                );
                let expected = ((kilo as f64) * ratio) as i64;
                assert_eq!(
                    mul_trunc(kilo, float(ratio)),
                    Some(expected),
                    "{kilo} × {ratio}"
                );
            }
        }
        // 1.5 × 300000 is exact.
        assert_eq!(mul_trunc(300_000, float(1.5)), Some(450_000));
        // 1.1 × 3 = 3.3000000000000003; 1.1 × 10 is a tie that rounds to
        // even, 11 exactly.
        assert_eq!(
            float(1.1).mul(GoFloat::from_u64(3)),
            float(3.300_000_000_000_000_3)
        );
        assert_eq!(float(1.1).mul(GoFloat::from_u64(10)), GoFloat::from_u64(11));
        // 1.7 − 1 = 0.7 (the double just below 7/10), so 90 × 0.7 = 62.99…:
        // Go adds 62 KB where exact decimals would add 63.
        assert_eq!(multiply_memory_addition_kilo(90, float(1.7)), Some(62));
        // 1.2 − 1 = 0.19999999999999996: 5 × that truncates to 0, not 1.
        assert_eq!(multiply_memory_addition_kilo(5, float(1.2)), Some(0));
        // 1.1 − 1 = 0.10000000000000009 lies above 1/10.
        assert_eq!(
            multiply_memory_addition_kilo(300_000, float(1.1)),
            Some(30_000)
        );
    }

    #[test]
    fn truncating_helpers_refuse_i64_overflow() {
        assert_eq!(mul_trunc(u64::MAX, GoFloat::ONE), None);
        assert_eq!(mul_trunc(1 << 62, float(2.0)), None);
        assert_eq!(mul_trunc(1 << 62, float(1.5)), Some(3 << 61));
        assert_eq!(multiply_memory_addition_kilo(u64::MAX, float(3.0)), None);
        assert_eq!(multiply_memory_addition_kilo(1, GoFloat::MAX), None);
    }

    #[test]
    fn division_then_milli_matches_hardware() {
        for threads in 1..=300u32 {
            for ratio in 1..=64u32 {
                let (t, r) = (f64::from(threads), f64::from(ratio));
                let quotient =
                    GoFloat::from_u64(threads.into()).div(GoFloat::from_u64(ratio.into()));
                assert_eq!(quotient.to_bits(), (t / r).to_bits(), "{threads}/{ratio}");
                assert_eq!(quotient.is_less_than_one(), t / r < 1.0);
                let milli = quotient.mul(GoFloat::from_u64(1000));
                assert_eq!(
                    milli.to_bits(),
                    (t / r * 1000.0).to_bits(),
                    "{threads}/{ratio}×1000"
                );
                assert_eq!(quotient.format_g(), go_g(t / r));
                assert_eq!(milli.format_g(), go_g(t / r * 1000.0));
            }
        }
    }

    /// An independent `%g` oracle for the quotients above: Rust's `{}`
    /// prints the same shortest digits in plain notation, which is Go's
    /// layout whenever the exponent is in `-4..6`.
    fn go_g(value: f64) -> String {
        assert!(
            (1e-4..1e6).contains(&value),
            "oracle only covers plain layout"
        );
        format!("{value}")
    }

    #[rstest]
    #[case::tenth(0.1, "0.1")]
    #[case::one_point_six(1.6, "1.6")]
    #[case::third(1.0 / 3.0, "0.3333333333333333")]
    #[case::million(1e6, "1e+06")]
    #[case::small(2.5e-5, "2.5e-05")]
    #[case::hundred_thousand(100_000.0, "100000")]
    #[case::eighth_of_2500(312.5, "312.5")]
    #[case::zero(0.0, "0")]
    #[case::three(3.0, "3")]
    #[case::thousand_thirds(1000.0 / 3.0, "333.3333333333333")]
    #[case::six_digits(123_456.0, "123456")]
    #[case::seven_digits(1_234_567.0, "1.234567e+06")]
    #[case::ten_thousandth(0.0001, "0.0001")]
    #[case::hundred_thousandth(0.00001, "1e-05")]
    #[case::tiny(1e-300, "1e-300")]
    #[case::huge(1.5e300, "1.5e+300")]
    #[case::max(f64::MAX, "1.7976931348623157e+308")]
    #[case::subnormal(5e-324, "5e-324")]
    #[case::point_three(0.3, "0.3")]
    #[case::two_thirds_milli(2.0 / 3.0 * 1000.0, "666.6666666666666")]
    fn format_g_matches_go(#[case] value: f64, #[case] expected: &str) {
        assert_eq!(float(value).format_g(), expected);
    }

    #[test]
    fn saturating_operations() {
        assert_eq!(GoFloat::ONE.div(GoFloat::ZERO), GoFloat::MAX);
        assert_eq!(GoFloat::ONE.checked_div(GoFloat::ZERO), None);
        assert_eq!(GoFloat::MAX.mul(float(2.0)), GoFloat::MAX);
        assert_eq!(GoFloat::ONE.sub(float(2.0)), GoFloat::ZERO);
        assert_eq!(GoFloat::ONE.checked_sub(float(2.0)), None);
        assert_eq!(GoFloat::ZERO.div(float(3.0)), GoFloat::ZERO);
    }

    #[rstest]
    #[case::zero(0.0, Some(0))]
    #[case::below_one(0.999_999, Some(0))]
    #[case::one_point_nine(1.9, Some(1))]
    #[case::big_integer(9_007_199_254_740_993.0, Some(9_007_199_254_740_992))]
    #[case::largest_below_2_pow_63(9_223_372_036_854_774_784.0, Some(9_223_372_036_854_774_784))]
    #[case::two_pow_63(9_223_372_036_854_775_808.0, None)]
    #[case::max(f64::MAX, None)]
    #[case::subnormal(5e-324, Some(0))]
    fn trunc_i64_matches_go(#[case] value: f64, #[case] expected: Option<i64>) {
        assert_eq!(float(value).trunc_i64(), expected);
    }

    proptest! {
        #[test]
        fn mul_matches_hardware(a in any_float(), b in any_float()) {
            prop_assert_eq!(float(a).checked_mul(float(b)), oracle(a * b));
        }

        #[test]
        fn div_matches_hardware(a in any_float(), b in any_float()) {
            prop_assume!(b != 0.0);
            prop_assert_eq!(float(a).checked_div(float(b)), oracle(a / b));
        }

        #[test]
        fn sub_matches_hardware(a in any_float(), b in any_float()) {
            let (big, small) = if a >= b { (a, b) } else { (b, a) };
            prop_assert_eq!(float(big).checked_sub(float(small)), oracle(big - small));
        }

        #[test]
        fn sub_matches_hardware_for_close_values(a in any_float(), delta in 0u64..1 << 56) {
            let b = f64::from_bits(a.to_bits().saturating_sub(delta));
            prop_assert_eq!(float(a).checked_sub(float(b)), oracle(a - b));
        }

        #[test]
        fn practical_operations_match_hardware(a in practical_float(), b in practical_float()) {
            let (x, y) = (float(a), float(b));
            prop_assert_eq!(x.mul(y).to_bits(), (a * b).to_bits());
            prop_assert_eq!(x.div(y).to_bits(), (a / b).to_bits());
            prop_assert_eq!(x.mul(y).div(y).to_bits(), (a * b / b).to_bits());
            if a >= b {
                prop_assert_eq!(x.sub(y).to_bits(), (a - b).to_bits());
            }
        }

        #[test]
        fn helpers_match_hardware(v in 0u64..1 << 54, ratio in 0.0..8.0f64) {
            let product = v as f64 * ratio;
            let expected = (product < 9.223_372_036_854_776e18).then_some(product as i64);
            prop_assert_eq!(mul_trunc(v, float(ratio)), expected);
            prop_assert_eq!(
                multiply_memory_addition_kilo(v, float(ratio)),
                Some((v as f64 * (ratio - 1.0)) as i64)
            );
        }

        #[test]
        fn from_u64_matches_hardware(v in any::<u64>()) {
            prop_assert_eq!(GoFloat::from_u64(v).to_bits(), (v as f64).to_bits());
        }

        #[test]
        fn trunc_matches_hardware(a in any_float()) {
            let expected = (a < 9.223_372_036_854_776e18).then_some(a as i64);
            prop_assert_eq!(float(a).trunc_i64(), expected);
        }

        #[test]
        fn order_matches_hardware(a in any_float(), b in any_float()) {
            prop_assert_eq!(float(a).partial_cmp(&float(b)), a.partial_cmp(&b));
        }

        #[test]
        fn format_g_round_trips(a in any_float()) {
            let text = float(a).format_g();
            prop_assert_eq!(GoFloat::parse(&text), Some(float(a)), "{}", text);
        }
    }
}
