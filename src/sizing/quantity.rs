//! Kubernetes `resource.Quantity`, parsed and printed exactly as
//! `k8s.io/apimachinery/pkg/api/resource` (`quantity.go`, `suffix.go`,
//! `amount.go`) does.
//!
//! A [`Quantity`] holds an exact value in nanounits (`1n`, `10^-9` of a
//! unit: nanocores for CPU, nanobytes for memory) plus the [`Format`] it
//! remembers from parsing, which decides how it prints. Equality, ordering
//! and hashing look at the value only: `1Gi == 1073741824`.
//!
//! Where apimachinery keeps an arbitrary-precision `inf.Dec`, we keep an
//! `i128` of nanounits (±1.7 × 10^29 units) and refuse larger values with
//! "out of range" instead. Other deliberate differences from Go, all on
//! inputs no real manifest contains:
//!
//! - a number must have a digit: Go parses `"Gi"`, `"-"` and `"."` as zero;
//! - exponents outside `i32` are refused; Go silently truncates them to
//!   `int32`, so `1e4294967296` is `1` there;
//! - [`Display`](fmt::Display) always prints the canonical form; Go's
//!   `String()` replays the input text for some already-canonical inputs
//!   (`"1E3"`, `"+1Gi"`, `"01"` print back verbatim);
//! - `DecimalSI` values of `10^21` and up print with an `e<exp>` suffix
//!   (`1000E` → `1e21`); Go has no suffix for them and prints `1`;
//! - `BinarySI` values beyond `2^63 − 1` units, which only arithmetic can
//!   produce (parsing caps them), print as `DecimalSI`; Go prints the
//!   mantissa without its missing suffix.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a [`Quantity`] prints: apimachinery's `resource.Format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Powers of ten with SI suffixes: `n u m "" k M G T P E`, e.g. `12M`
    /// (Go `DecimalSI`).
    DecimalSi,
    /// Powers of 1024 with IEC suffixes: `Ki Mi Gi Ti Pi Ei`, e.g. `12Mi`
    /// (Go `BinarySI`).
    BinarySi,
    /// Powers of ten as `e<exp>`, the exponent a multiple of three, e.g.
    /// `12e6` (Go `DecimalExponent`).
    DecimalExponent,
}

/// A Kubernetes resource quantity: an exact value in nanounits plus the
/// [`Format`] it prints in.
///
/// Value = `nanos × 10^-9` units (cores, bytes, pages…). Comparison,
/// equality and hashing use the value only, never the format.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// A string that is not a Kubernetes quantity, or one whose value does not
/// fit in nanounits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity \"{value}\": {reason}")]
pub struct QuantityError {
    /// The rejected text, verbatim.
    pub value: String,
    /// Why it was rejected, e.g. `unknown suffix` or `out of range`.
    pub reason: &'static str,
}

/// Nanounits per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// apimachinery's `BinarySI` parse cap, `2^63 − 1` units, in nanounits.
const MAX_BINARY_SI_NANOS: u128 = 9_223_372_036_854_775_807_000_000_000;

/// IEC suffixes by power of 1024 (`Ki` = 1024^1 … `Ei` = 1024^6).
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// SI suffixes by power of ten, from `n` (10^-9) to `E` (10^18).
const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
];

impl Quantity {
    /// Parses a quantity like Go's `resource.ParseQuantity`.
    ///
    /// Grammar: an optional sign, digits with at most one `.` (at least one
    /// digit in all: `1.`, `.5` are fine), then a suffix: none or
    /// `n u m k M G T P E` ([`Format::DecimalSi`]; `k` is lowercase only),
    /// `Ki Mi Gi Ti Pi Ei` ([`Format::BinarySi`]), or `e`/`E` with an
    /// optionally signed integer exponent ([`Format::DecimalExponent`]).
    /// No whitespace anywhere.
    ///
    /// The value is exact except that a nonzero magnitude is rounded up to a
    /// whole nanounit (`0.1n` → `1n`, `-0.1n` → `-1n`), as Go rounds with
    /// `inf.RoundUp`. `BinarySI` magnitudes are capped at `2^63 − 1` units
    /// (`9999Ei` → `9223372036854775807`), and a `BinarySI` value strictly
    /// between −1 and 1 switches to `DecimalSI`, both as in Go.
    ///
    /// # Errors
    /// [`QuantityError`] naming the text and the reason: malformed text, an
    /// unknown suffix, or a value beyond ±1.7 × 10^29 units
    /// (`out of range`; Go would keep an arbitrary-precision decimal).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        parse_quantity(s).map_err(|reason| QuantityError {
            value: s.to_owned(),
            reason,
        })
    }

    /// Go's `resource.NewQuantity(value, format)`: `value` whole units.
    #[must_use]
    pub fn from_int(value: i64, format: Format) -> Self {
        Self {
            nanos: i128::from(value) * NANOS_PER_UNIT,
            format,
        }
    }

    /// Go's `resource.NewScaledQuantity(value, scale)`: `value × 10^scale`
    /// units in [`Format::DecimalSi`] (scale 3 = kilo, -3 = milli).
    ///
    /// Exact for `-9 ≤ scale ≤ 10`, the range anyone uses. Outside it, a
    /// nonzero magnitude below a nanounit rounds up to `1n` (like
    /// [`Quantity::parse`]) and a value beyond the `i128` nanounit range
    /// saturates; use [`Quantity::checked_from_scaled`] to detect that.
    #[must_use]
    pub fn from_scaled(value: i64, scale: i32) -> Self {
        let saturated = if value < 0 { i128::MIN } else { i128::MAX };
        Self::checked_from_scaled(value, scale).unwrap_or(Self {
            nanos: saturated,
            format: Format::DecimalSi,
        })
    }

    /// [`Quantity::from_scaled`], or `None` if `value × 10^scale` units do
    /// not fit in `i128` nanounits.
    #[must_use]
    pub fn checked_from_scaled(value: i64, scale: i32) -> Option<Self> {
        let digits: Vec<u8> = value
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|digit| digit - b'0')
            .skip_while(|digit| *digit == 0)
            .collect();
        let magnitude = ceil_scaled(&digits, i64::from(scale) + 9)?;
        Some(Self {
            nanos: signed(value < 0, magnitude)?,
            format: Format::DecimalSi,
        })
    }

    /// A quantity of exactly `nanos` nanounits, in `format`. No cap and no
    /// format adjustment is applied.
    #[must_use]
    pub const fn from_nanos(nanos: i128, format: Format) -> Self {
        Self { nanos, format }
    }

    /// Zero, printing as `0`, remembering `format` for later additions.
    #[must_use]
    pub const fn zero(format: Format) -> Self {
        Self { nanos: 0, format }
    }

    /// The exact value in nanounits (10^-9 units).
    #[must_use]
    pub const fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format this quantity prints in.
    #[must_use]
    pub const fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero (Go `IsZero`).
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is below zero (Go `Sign() < 0`).
    #[must_use]
    pub const fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The same value in another format (Go: assigning `q.Format`).
    #[must_use]
    pub const fn with_format(self, format: Format) -> Self {
        Self {
            nanos: self.nanos,
            format,
        }
    }

    /// Go's `Value()`: whole units, a fractional part rounded away from
    /// zero (`1.5` → 2, `-1.5` → -2, as Go's `int64Amount` does; Go's
    /// `inf.Dec` path rounds some negatives differently). Unlike Go, the
    /// result does not wrap at `int64`.
    #[must_use]
    pub fn value(&self) -> i128 {
        self.scaled_value(0)
    }

    /// Go's `MilliValue()`: whole thousandths of a unit (millicores),
    /// rounded away from zero.
    #[must_use]
    pub fn milli_value(&self) -> i128 {
        self.scaled_value(-3)
    }

    /// Go's `ScaledValue(scale)`: the value in units of `10^scale`, rounded
    /// away from zero. `ScaledValue(Kilo)` of 1 000 000 001 bytes is
    /// 1 000 001. Results beyond `i128` (only for `scale < -9`) saturate.
    #[must_use]
    pub fn scaled_value(&self, scale: i32) -> i128 {
        // Divide the nanounits by 10^(scale + 9).
        let shift = i64::from(scale) + 9;
        if shift <= 0 {
            let saturated = if self.nanos < 0 { i128::MIN } else { i128::MAX };
            return u32::try_from(shift.unsigned_abs())
                .ok()
                .and_then(|power| 10i128.checked_pow(power))
                .and_then(|factor| self.nanos.checked_mul(factor))
                .unwrap_or(saturated);
        }
        let divisor = u32::try_from(shift)
            .ok()
            .and_then(|power| 10i128.checked_pow(power));
        let Some(divisor) = divisor else {
            // |nanos| < 10^39 ≤ divisor: any nonzero value rounds to ±1.
            return self.nanos.signum();
        };
        let quotient = self.nanos / divisor;
        if self.nanos % divisor == 0 {
            quotient
        } else {
            quotient + self.nanos.signum()
        }
    }

    /// Go's `q.Add(y)` on a copy: the sum, in `self`'s format unless `self`
    /// is zero, in which case it takes `rhs`'s format. `None` on `i128`
    /// overflow.
    #[must_use]
    pub fn checked_add(self, rhs: Self) -> Option<Self> {
        Some(Self {
            nanos: self.nanos.checked_add(rhs.nanos)?,
            format: self.result_format(rhs),
        })
    }

    /// Go's `q.Sub(y)` on a copy: the difference, with the same format rule
    /// as [`Quantity::checked_add`]. `None` on `i128` overflow.
    #[must_use]
    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        Some(Self {
            nanos: self.nanos.checked_sub(rhs.nanos)?,
            format: self.result_format(rhs),
        })
    }

    /// apimachinery `Add`/`Sub`: `if q.IsZero() { q.Format = y.Format }`.
    const fn result_format(self, rhs: Self) -> Format {
        if self.is_zero() {
            rhs.format
        } else {
            self.format
        }
    }

    /// The `BinarySI` rendering `(mantissa, suffix)`, or `None` when Go
    /// falls back to `DecimalSI`: |value| < 1024, a fractional value, or
    /// (our addition) more than `2^63 − 1` units, which would not parse back.
    fn binary_si_parts(self) -> Option<(i64, &'static str)> {
        if self.nanos % NANOS_PER_UNIT != 0 {
            return None;
        }
        let units = self.nanos / NANOS_PER_UNIT;
        if units.unsigned_abs() < 1024 {
            return None;
        }
        // At most 2^63 − 1 units: the loop below runs in i64.
        let mut mantissa = i64::try_from(units)
            .ok()
            .filter(|units| *units != i64::MIN)?;
        let mut power = 0;
        while power + 1 < BINARY_SUFFIXES.len() && mantissa % 1024 == 0 {
            mantissa /= 1024;
            power += 1;
        }
        Some((mantissa, BINARY_SUFFIXES.get(power).copied().unwrap_or("")))
    }
}

/// `(mantissa, exponent)` with value = `mantissa × 10^exponent` and the
/// exponent a multiple of three, as large as possible: Go's
/// `AsCanonicalBytes`. Go moves every factor of ten into the exponent, then
/// multiplies back until the exponent is a multiple of three (rounding it
/// down: -2 → -3, 1 → 0, 4 → 3). Starting from nanounits (exponent -9, a
/// multiple of three) that is the same as dividing out factors of 1000.
fn decimal_parts(nanos: i128) -> (i128, i32) {
    // i128 division is a software routine: use i64 when the value fits.
    if let Ok(mut mantissa) = i64::try_from(nanos) {
        let mut exponent = -9;
        while mantissa != 0 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exponent += 3;
        }
        return (i128::from(mantissa), exponent);
    }
    let mut mantissa = nanos;
    let mut exponent = -9;
    while mantissa != 0 && mantissa % 1000 == 0 {
        mantissa /= 1000;
        exponent += 3;
    }
    (mantissa, exponent)
}

impl fmt::Display for Quantity {
    /// Go's `Quantity.String()` canonical form (`CanonicalizeBytes`):
    /// `0`; `BinarySI` as `<int><Ki…Ei>` with the largest power of 1024
    /// dividing the value (falling back to `DecimalSI`, see
    /// `binary_si_parts`); `DecimalSI` as `<int><n…E>`; `DecimalExponent`
    /// as `<int>e<exp>` (no suffix for exponent 0). For example `1.5Gi` →
    /// `1536Mi`, `0.1` → `100m`, `1e4` → `10e3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySi
            && let Some((mantissa, suffix)) = self.binary_si_parts()
        {
            return write!(f, "{mantissa}{suffix}");
        }
        let (mantissa, exponent) = decimal_parts(self.nanos);
        let si_suffix = DECIMAL_SUFFIXES
            .iter()
            .find(|(power, _)| *power == exponent)
            .map(|(_, suffix)| *suffix);
        match (self.format, si_suffix) {
            (Format::DecimalExponent, _) if exponent == 0 => write!(f, "{mantissa}"),
            (Format::DecimalSi | Format::BinarySi, Some(suffix)) => write!(f, "{mantissa}{suffix}"),
            _ => write!(f, "{mantissa}e{exponent}"),
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    /// Same as [`Quantity::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// Orders by value (Go `Cmp`), ignoring the format.
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    /// Hashes the value only, consistent with [`PartialEq`].
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Serialize for Quantity {
    /// The canonical string, as Go's `MarshalJSON` writes it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// A quantity string (surrounding whitespace trimmed, as Go's
    /// `UnmarshalJSON` does) or a bare number, parsed from its decimal text.
    /// Floats arrive as `f64`, so `1e3` becomes `1000` (`DecimalSI`), and
    /// their text is the shortest that round-trips (`0.1` stays `0.1`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// Serde visitor accepting strings and numbers.
struct QuantityVisitor;

impl QuantityVisitor {
    fn parse<E: de::Error>(text: &str) -> Result<Quantity, E> {
        Quantity::parse(text).map_err(E::custom)
    }
}

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a quantity such as \"1Gi\", \"500m\" or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Self::parse(v.trim())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Ok(Quantity::from_int(v, Format::DecimalSi))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        // `{}` prints finite floats in plain decimal ("0.1", "1000"); NaN and
        // infinities print as "NaN"/"inf", which the parser rejects.
        Self::parse(&v.to_string())
    }
}

/// The suffix of a quantity string, interpreted.
enum Suffix {
    /// `× 10^exponent`, in [`Format::DecimalSi`] or [`Format::DecimalExponent`].
    Decimal(i64, Format),
    /// `× 2^exponent`, in [`Format::BinarySi`].
    Binary(u32),
}

/// `ParseQuantity` with a bare reason as the error.
fn parse_quantity(s: &str) -> Result<Quantity, &'static str> {
    if s.is_empty() {
        return Err("empty string");
    }
    if s.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    if !s.is_ascii() {
        return Err("contains a non-ASCII character");
    }
    let bytes = s.as_bytes();
    let (negative, unsigned) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    let (integer, rest) = split_digits(unsigned);
    let (fraction, suffix) = match rest.split_first() {
        Some((b'.', after_point)) => split_digits(after_point),
        _ => (&rest[..0], rest),
    };
    if integer.is_empty() && fraction.is_empty() {
        return Err(match unsigned.first() {
            Some(b'+' | b'-') => "more than one sign",
            _ => "expected digits",
        });
    }
    let suffix = parse_suffix(suffix)?;
    let n_fraction_digits = i64::try_from(fraction.len()).map_err(|_| "too many digits")?;
    let magnitude = match fast_magnitude(integer, fraction, &suffix, n_fraction_digits) {
        Some(magnitude) => magnitude,
        None => exact_magnitude(integer, fraction, &suffix, n_fraction_digits)?,
    };
    let format = match suffix {
        Suffix::Decimal(_, format) => format,
        Suffix::Binary(_) => Format::BinarySi,
    };
    let (magnitude, format) = if format == Format::BinarySi {
        // apimachinery caps BinarySI at 2^63 − 1 units, and shows values
        // strictly between -1 and 1 as DecimalSI.
        let capped = magnitude.map_or(MAX_BINARY_SI_NANOS, |m| m.min(MAX_BINARY_SI_NANOS));
        let below_one = capped > 0 && capped < NANOS_PER_UNIT.unsigned_abs();
        (capped, if below_one { Format::DecimalSi } else { format })
    } else {
        (magnitude.ok_or("out of range")?, format)
    };
    let nanos = signed(negative, magnitude).ok_or("out of range")?;
    Ok(Quantity { nanos, format })
}

/// The magnitude in nanounits (rounded up), in machine arithmetic, for the
/// common case: at most 18 significant digits, a decimal suffix, or a
/// binary suffix on a whole number. `None` sends the caller to
/// [`exact_magnitude`], which handles everything (and agrees with this).
fn fast_magnitude(
    integer: &[u8],
    fraction: &[u8],
    suffix: &Suffix,
    n_fraction_digits: i64,
) -> Option<Option<u128>> {
    if integer.len() + fraction.len() > 18 {
        return None;
    }
    let mantissa = integer
        .iter()
        .chain(fraction)
        .fold(0_u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
    match *suffix {
        Suffix::Decimal(exponent, _) => {
            // nanos = mantissa × 10^scale.
            let scale = exponent - n_fraction_digits + 9;
            if (0..=20).contains(&scale) {
                let factor = 10_u128.pow(u32::try_from(scale).ok()?);
                Some(u128::from(mantissa).checked_mul(factor))
            } else if (-19..0).contains(&scale) {
                let divisor = 10_u64.pow(u32::try_from(-scale).ok()?);
                Some(Some(u128::from(mantissa.div_ceil(divisor))))
            } else {
                None
            }
        }
        Suffix::Binary(exponent) if fraction.is_empty() => {
            // mantissa < 10^18 < 2^60 and exponent ≤ 60: the shift fits u128.
            let units = u128::from(mantissa) << exponent;
            Some(units.checked_mul(NANOS_PER_UNIT.unsigned_abs()))
        }
        Suffix::Binary(_) => None,
    }
}

/// The magnitude in nanounits (rounded up) by decimal-digit arithmetic:
/// exact for any input. `Ok(None)` when it does not fit.
fn exact_magnitude(
    integer: &[u8],
    fraction: &[u8],
    suffix: &Suffix,
    n_fraction_digits: i64,
) -> Result<Option<u128>, &'static str> {
    // digits × 10^-len(fraction) is the number before the suffix.
    let mut digits: Vec<u8> = integer
        .iter()
        .chain(fraction)
        .map(|digit| digit - b'0')
        .skip_while(|digit| *digit == 0)
        .collect();
    let exponent = match *suffix {
        Suffix::Decimal(exponent, _) => exponent,
        Suffix::Binary(exponent) => {
            for _ in 0..exponent {
                double_decimal(&mut digits);
            }
            0
        }
    };
    // Round the magnitude up to a whole nanounit.
    Ok(ceil_scaled(&digits, exponent - n_fraction_digits + 9))
}

/// Splits a leading run of ASCII digits off `bytes`.
fn split_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let n_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    bytes.split_at(n_digits)
}

/// Interprets everything after the number (apimachinery `interpret`).
fn parse_suffix(suffix: &[u8]) -> Result<Suffix, &'static str> {
    let decimal = |exponent| Ok(Suffix::Decimal(exponent, Format::DecimalSi));
    match suffix {
        b"" => decimal(0),
        b"n" => decimal(-9),
        b"u" => decimal(-6),
        b"m" => decimal(-3),
        b"k" => decimal(3),
        b"M" => decimal(6),
        b"G" => decimal(9),
        b"T" => decimal(12),
        b"P" => decimal(15),
        b"E" => decimal(18),
        b"Ki" => Ok(Suffix::Binary(10)),
        b"Mi" => Ok(Suffix::Binary(20)),
        b"Gi" => Ok(Suffix::Binary(30)),
        b"Ti" => Ok(Suffix::Binary(40)),
        b"Pi" => Ok(Suffix::Binary(50)),
        b"Ei" => Ok(Suffix::Binary(60)),
        [b'e' | b'E', exponent @ ..] => parse_exponent(exponent)
            .map(|exponent| Suffix::Decimal(exponent, Format::DecimalExponent)),
        [b'.', ..] => Err("more than one decimal point"),
        [b'+' | b'-', ..] => Err("misplaced sign"),
        _ => Err("unknown suffix"),
    }
}

/// The exponent after `e`/`E`: an optional sign and decimal digits (Go
/// `strconv.ParseInt`), limited to `i32` like Go's `int32(parsed)` but
/// refused rather than truncated.
fn parse_exponent(text: &[u8]) -> Result<i64, &'static str> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("invalid exponent");
    }
    let significant = digits.iter().skip_while(|digit| **digit == b'0');
    let mut exponent: i64 = 0;
    for digit in significant {
        exponent = exponent * 10 + i64::from(digit - b'0');
        if exponent > i64::from(i32::MAX) + 1 {
            return Err("exponent out of range");
        }
    }
    let exponent = if negative { -exponent } else { exponent };
    if i32::try_from(exponent).is_err() {
        return Err("exponent out of range");
    }
    Ok(exponent)
}

/// Multiplies a big-endian decimal digit string (values 0–9) by two.
fn double_decimal(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for digit in digits.iter_mut().rev() {
        let doubled = *digit * 2 + carry;
        *digit = doubled % 10;
        carry = doubled / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

/// `ceil(digits × 10^shift)` for a big-endian decimal digit string without
/// leading zeros; `None` if it exceeds `u128`. Work and memory depend on
/// the digit count only, never on `shift`.
fn ceil_scaled(digits: &[u8], shift: i64) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    let to_integer = |digits: &[u8]| {
        digits.iter().try_fold(0u128, |acc, digit| {
            acc.checked_mul(10)?.checked_add(u128::from(*digit))
        })
    };
    if shift >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
        return to_integer(digits)?.checked_mul(factor);
    }
    let n_dropped = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
    let (kept, dropped) = digits.split_at(digits.len().saturating_sub(n_dropped));
    let truncated = to_integer(kept)?;
    let has_fraction = dropped.iter().any(|digit| *digit != 0);
    truncated.checked_add(u128::from(has_fraction))
}

/// Applies a sign to a magnitude; `None` if the result leaves `i128`.
fn signed(negative: bool, magnitude: u128) -> Option<i128> {
    if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    }
}

#[cfg(test)]
#[path = "quantity/tests.rs"]
mod tests;
