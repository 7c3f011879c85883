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
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).expect("valid quantity")
    }

    #[rstest]
    #[case::one_gi("1Gi", "1Gi", 1 << 30, Format::BinarySi)]
    #[case::mebibytes_fold_into_gi("1024Mi", "1Gi", 1 << 30, Format::BinarySi)]
    // 1.5 × 2^30 = 1610612736 = 1536 × 1024²; 1536 is not a multiple of 1024.
    #[case::fractional_gi("1.5Gi", "1536Mi", 1_610_612_736, Format::BinarySi)]
    // 1000 × 1024² = 1048576000; 1000 is not a multiple of 1024.
    #[case::thousand_mi("1000Mi", "1000Mi", 1_048_576_000, Format::BinarySi)]
    #[case::one_ki("1Ki", "1Ki", 1024, Format::BinarySi)]
    #[case::ki_1023("1023Ki", "1023Ki", 1_047_552, Format::BinarySi)]
    // 0.5 × 1024 = 512 < 1024: printed as DecimalSI.
    #[case::half_ki("0.5Ki", "512", 512, Format::BinarySi)]
    // 1.5 × 1024 = 1536 = 1.5 × 1024, not a multiple of 1024: no suffix.
    #[case::one_and_a_half_ki("1.5Ki", "1536", 1536, Format::BinarySi)]
    #[case::negative_gi("-1Gi", "-1Gi", -(1 << 30), Format::BinarySi)]
    #[case::one_ei("1Ei", "1Ei", 1 << 60, Format::BinarySi)]
    #[case::hundred_milli("100m", "100m", 1, Format::DecimalSi)]
    // 0.1 = 100 000 000n = 100 × 10^-3.
    #[case::tenth("0.1", "100m", 1, Format::DecimalSi)]
    #[case::one_point_six("1.6", "1600m", 2, Format::DecimalSi)]
    #[case::fifteen_hundred_milli("1500m", "1500m", 2, Format::DecimalSi)]
    #[case::thousand_milli("1000m", "1", 1, Format::DecimalSi)]
    #[case::kilo("1k", "1k", 1000, Format::DecimalSi)]
    #[case::thousand("1000", "1k", 1000, Format::DecimalSi)]
    #[case::twelve_hundred("1200", "1200", 1200, Format::DecimalSi)]
    #[case::giga("1G", "1G", 1_000_000_000, Format::DecimalSi)]
    #[case::mega_2048("2048M", "2048M", 2_048_000_000, Format::DecimalSi)]
    #[case::plain_integer("1282971493", "1282971493", 1_282_971_493, Format::DecimalSi)]
    #[case::zero_point_zero("0.0", "0", 0, Format::DecimalSi)]
    #[case::zero_gi("0Gi", "0", 0, Format::BinarySi)]
    #[case::negative_zero("-0", "0", 0, Format::DecimalSi)]
    #[case::leading_zeros("007", "7", 7, Format::DecimalSi)]
    #[case::plus_sign("+5", "5", 5, Format::DecimalSi)]
    #[case::trailing_point("1.", "1", 1, Format::DecimalSi)]
    #[case::leading_point(".5", "500m", 1, Format::DecimalSi)]
    #[case::micro("1u", "1u", 1, Format::DecimalSi)]
    #[case::nano_fold("1000n", "1u", 1, Format::DecimalSi)]
    #[case::tera("1T", "1T", 1_000_000_000_000, Format::DecimalSi)]
    #[case::exa("1E", "1E", 1_000_000_000_000_000_000, Format::DecimalSi)]
    // 1000E = 10^21: no SI suffix, printed with an exponent (Go prints "1").
    #[case::beyond_exa("1000E", "1e21", 1_000_000_000_000_000_000_000, Format::DecimalSi)]
    #[case::exponent_three("1e3", "1e3", 1000, Format::DecimalExponent)]
    #[case::exponent_upper("1E3", "1e3", 1000, Format::DecimalExponent)]
    // 10^4 = 10 × 10^3.
    #[case::exponent_four("1e4", "10e3", 10_000, Format::DecimalExponent)]
    // 10^7 = 10 × 10^6.
    #[case::exponent_plus("1e+07", "10e6", 10_000_000, Format::DecimalExponent)]
    // 5 × 10^-3: exponent already a multiple of three.
    #[case::exponent_minus("5e-3", "5e-3", 1, Format::DecimalExponent)]
    // 12e-1 = 1.2 = 1 200 000 000n → 1200 × 10^-3.
    #[case::exponent_twelve_tenths("12e-1", "1200e-3", 2, Format::DecimalExponent)]
    // 1500e-3 = 1.5 = 1500 × 10^-3 (1.5 has no integer mantissa at exponent 0).
    #[case::exponent_fifteen_hundred("1500e-3", "1500e-3", 2, Format::DecimalExponent)]
    #[case::exponent_zero("1e0", "1", 1, Format::DecimalExponent)]
    #[case::exponent_leading_zeros(
        "1e0000000000000000000003",
        "1e3",
        1000,
        Format::DecimalExponent
    )]
    fn parses_and_prints_canonically(
        #[case] text: &str,
        #[case] canonical: &str,
        #[case] value: i128,
        #[case] format: Format,
    ) {
        let quantity = q(text);
        assert_eq!(quantity.to_string(), canonical);
        assert_eq!(quantity.value(), value);
        assert_eq!(quantity.format(), format);
        assert_eq!(
            q(canonical),
            quantity,
            "canonical text parses to the same value"
        );
        assert_eq!(
            q(canonical).to_string(),
            canonical,
            "canonical text is a fixpoint"
        );
    }

    #[rstest]
    // 333333333.333333333333n → ceil → 333333334n.
    #[case::long_nano_fraction("333333333.333333333333n", 333_333_334, "333333334n")]
    // 0.333333333333333333 × 10^9 = 333333333.333333333 → 333333334n.
    #[case::third_of_a_cpu("0.333333333333333333", 333_333_334, "333333334n")]
    #[case::tenth_of_a_nano("0.1n", 1, "1n")]
    #[case::negative_tenth_of_a_nano("-0.1n", -1, "-1n")]
    // 1.0000000001 × 10^9 = 1000000000.1 → 1000000001n.
    #[case::just_above_one("1.0000000001", 1_000_000_001, "1000000001n")]
    // DecimalExponent keeps its format: 1n prints as 1e-9.
    #[case::tiny_exponent("1e-99999", 1, "1e-9")]
    #[case::long_fraction("0.000000000000000000000000000000000000000000000001", 1, "1n")]
    // 0.0001 × 1024 = 0.1024: BinarySI below one becomes DecimalSI.
    #[case::tiny_binary("0.0001Ki", 102_400_000, "102400u")]
    // 1.1 × 1024 = 1126.4: fractional, printed as DecimalSI.
    #[case::fractional_binary("1.1Ki", 1_126_400_000_000, "1126400m")]
    fn rounds_magnitude_up_to_a_nano(
        #[case] text: &str,
        #[case] nanos: i128,
        #[case] canonical: &str,
    ) {
        let quantity = q(text);
        assert_eq!(quantity.nanos(), nanos);
        assert_eq!(quantity.to_string(), canonical);
    }

    #[rstest]
    #[case::far_beyond("9999Ei")]
    #[case::just_beyond("8Ei")]
    #[case::overflowing_i128("99999999999999999999999999999999999999999Ei")]
    #[case::many_fraction_digits("8.00000000000000000000000000000000000000001Ei")]
    fn binary_si_caps_at_i64_max(#[case] text: &str) {
        let quantity = q(text);
        assert_eq!(quantity.value(), i128::from(i64::MAX));
        assert_eq!(quantity.format(), Format::BinarySi);
        assert_eq!(quantity.to_string(), "9223372036854775807");
        assert_eq!(q(&format!("-{text}")).value(), -i128::from(i64::MAX));
    }

    #[rstest]
    #[case::empty("", "empty string")]
    #[case::space(" ", "contains whitespace")]
    #[case::leading_space(" 1", "contains whitespace")]
    #[case::trailing_space("1 ", "contains whitespace")]
    #[case::inner_space("1 Gi", "contains whitespace")]
    #[case::tab("1\tGi", "contains whitespace")]
    #[case::two_points("1.5.5Gi", "more than one decimal point")]
    #[case::suffix_only("Gi", "expected digits")]
    #[case::sign_only("-", "expected digits")]
    #[case::point_only(".", "expected digits")]
    #[case::point_suffix(".Ki", "expected digits")]
    #[case::double_sign("--1", "more than one sign")]
    #[case::mixed_signs("+-1", "more than one sign")]
    #[case::trailing_byte_unit("1GiB", "unknown suffix")]
    #[case::hex("0x10", "unknown suffix")]
    #[case::upper_kilo("1K", "unknown suffix")]
    #[case::lower_binary("1ki", "unknown suffix")]
    #[case::suffix_then_digits("1Ki1", "unknown suffix")]
    #[case::milli_twice("1mm", "unknown suffix")]
    #[case::exponent_and_binary("1e3Ki", "invalid exponent")]
    #[case::bare_e("1e", "invalid exponent")]
    #[case::exponent_sign_only("1e+", "invalid exponent")]
    #[case::fractional_exponent("1e3.5", "invalid exponent")]
    #[case::exponent_then_suffix("1e30E", "invalid exponent")]
    #[case::trailing_sign("1-", "misplaced sign")]
    #[case::sign_after_suffix("1m-", "unknown suffix")]
    #[case::infinity("inf", "expected digits")]
    #[case::nan("NaN", "expected digits")]
    #[case::micro_sign("1µ", "contains a non-ASCII character")]
    #[case::arabic_digit("١", "contains a non-ASCII character")]
    #[case::huge_exponent("1e99999999999999999999999999", "exponent out of range")]
    #[case::exponent_beyond_i32("1e2147483648", "exponent out of range")]
    #[case::nanos_beyond_i128("1e30", "out of range")]
    #[case::exa_beyond_i128("1000000000000E", "out of range")]
    #[case::many_digits("999999999999999999999999999999999", "out of range")]
    #[case::large_exponent_in_range("1e2147483647", "out of range")]
    fn rejects_with_reason(#[case] text: &str, #[case] reason: &str) {
        let error = Quantity::parse(text).expect_err("invalid quantity");
        assert_eq!(error.reason, reason);
        assert_eq!(error.value, text);
        assert_eq!(
            error.to_string(),
            format!("invalid quantity \"{text}\": {reason}")
        );
    }

    #[test]
    fn long_inputs_cost_their_length_only() {
        let many_zeros = format!("1{}n", "0".repeat(100_000));
        assert_eq!(
            Quantity::parse(&many_zeros).map_err(|e| e.reason),
            Err("out of range")
        );
        let long_fraction = format!("0.{}1Ei", "0".repeat(100_000));
        assert_eq!(q(&long_fraction).nanos(), 1);
        let long_exponent = format!("1e-{}", "9".repeat(100_000));
        assert_eq!(
            Quantity::parse(&long_exponent).map_err(|e| e.reason),
            Err("exponent out of range")
        );
    }

    #[test]
    fn extremes_of_i128_parse() {
        let max = Quantity::from_nanos(i128::MAX, Format::DecimalSi);
        let min = Quantity::from_nanos(i128::MIN, Format::DecimalSi);
        assert_eq!(q(&max.to_string()), max);
        assert_eq!(q(&min.to_string()), min);
        assert_eq!(min.to_string(), format!("{}n", i128::MIN));
        assert_eq!(
            Quantity::parse("170141183460469231731687303715884105728n").map_err(|e| e.reason),
            Err("out of range")
        );
    }

    #[test]
    fn equality_ignores_format() {
        let gi = q("1Gi");
        let bytes = q("1073741824");
        assert_eq!(gi, bytes);
        assert_ne!(gi.format(), bytes.format());
        let set: HashSet<Quantity> = [gi, bytes, q("1024Mi")].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("1m"));
    }

    #[rstest]
    #[case::round_up_positive("1.5", 0, 2)]
    #[case::round_away_from_zero_negative("-1.5", 0, -2)]
    #[case::exact("3", 0, 3)]
    #[case::milli_round_up("0.0001", -3, 1)]
    #[case::kilo_round_up("1000000001", 3, 1_000_001)]
    #[case::kilo_exact("1M", 3, 1000)]
    #[case::pico("1", -12, 1_000_000_000_000)]
    #[case::huge_scale("1n", 40, 1)]
    #[case::huge_scale_negative("-1n", 40, -1)]
    #[case::huge_scale_zero("0", 40, 0)]
    #[case::saturating("1e29", -30, i128::MAX)]
    fn scaled_value_rounds_away_from_zero(
        #[case] text: &str,
        #[case] scale: i32,
        #[case] expected: i128,
    ) {
        assert_eq!(q(text).scaled_value(scale), expected);
    }

    #[test]
    fn value_and_milli_value() {
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("1500m").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("-1n").milli_value(), -1);
        assert_eq!(q("2Gi").value(), 2_147_483_648);
    }

    #[test]
    fn constructors() {
        assert_eq!(Quantity::from_int(5, Format::BinarySi).to_string(), "5");
        assert_eq!(
            Quantity::from_int(2048, Format::BinarySi).to_string(),
            "2Ki"
        );
        assert_eq!(Quantity::from_scaled(5, 3).to_string(), "5k");
        assert_eq!(Quantity::from_scaled(-1500, -3).to_string(), "-1500m");
        assert_eq!(Quantity::from_scaled(1, -9).nanos(), 1);
        assert_eq!(Quantity::from_scaled(1, -10).nanos(), 1);
        assert_eq!(Quantity::from_scaled(-15, -10).nanos(), -2);
        assert_eq!(
            Quantity::from_scaled(i64::MAX, 10).value(),
            i128::from(i64::MAX) * 10_i128.pow(10)
        );
        assert_eq!(Quantity::checked_from_scaled(i64::MAX, 30), None);
        assert_eq!(Quantity::from_scaled(i64::MAX, 30).nanos(), i128::MAX);
        assert_eq!(Quantity::from_scaled(i64::MIN, 30).nanos(), i128::MIN);
        assert_eq!(Quantity::from_scaled(0, 1000).nanos(), 0);
        assert_eq!(Quantity::from_scaled(7, 0).format(), Format::DecimalSi);
        assert_eq!(Quantity::from_nanos(1, Format::BinarySi).to_string(), "1n");
        assert_eq!(Quantity::zero(Format::BinarySi).to_string(), "0");
        assert!(Quantity::zero(Format::BinarySi).is_zero());
        assert!(q("-1m").is_negative());
        assert!(!q("0").is_negative());
        assert_eq!(
            q("1Gi").with_format(Format::DecimalSi).to_string(),
            "1073741824"
        );
        assert_eq!("1Mi".parse::<Quantity>(), Ok(q("1048576")));
    }

    #[test]
    fn beyond_i64_binary_si_prints_as_decimal() {
        // 2^70 bytes = 1024Ei: BinarySI parsing would cap it, so it prints
        // as DecimalSI to keep the value.
        let big = Quantity::from_nanos((1_i128 << 70) * NANOS_PER_UNIT, Format::BinarySi);
        assert_eq!(big.to_string(), "1180591620717411303424");
        assert_eq!(q(&big.to_string()), big);
        // 7Ei is below 2^63 and keeps its suffix.
        assert_eq!(
            Quantity::from_int(7 << 60, Format::BinarySi).to_string(),
            "7Ei"
        );
    }

    #[test]
    fn add_and_sub_follow_go_format_rule() {
        let zero = Quantity::zero(Format::DecimalSi);
        let sum = zero.checked_add(q("1Gi")).expect("no overflow");
        assert_eq!(sum.format(), Format::BinarySi);
        assert_eq!(sum.to_string(), "1Gi");
        let sum = q("1Gi").checked_add(q("512Mi")).expect("no overflow");
        assert_eq!(sum.to_string(), "1536Mi");
        let sum = q("100m").checked_add(q("1Gi")).expect("no overflow");
        assert_eq!(sum.format(), Format::DecimalSi);
        let difference = zero.checked_sub(q("1Gi")).expect("no overflow");
        assert_eq!(difference.to_string(), "-1Gi");
        let difference = q("1Gi").checked_sub(q("1Gi")).expect("no overflow");
        assert!(difference.is_zero());
        let max = Quantity::from_nanos(i128::MAX, Format::DecimalSi);
        assert_eq!(max.checked_add(q("1n")), None);
        assert_eq!(
            Quantity::from_nanos(i128::MIN, Format::DecimalSi).checked_sub(q("1n")),
            None
        );
    }

    #[test]
    fn serde_round_trip() {
        let quantity: Quantity = serde_json::from_str("\"1.5Gi\"").expect("string");
        assert_eq!(
            serde_json::to_string(&quantity).expect("serialize"),
            "\"1536Mi\""
        );
        let trimmed: Quantity = serde_json::from_str("\" 100m \"").expect("trimmed like Go");
        assert_eq!(trimmed, q("100m"));
        let integer: Quantity = serde_json::from_str("4").expect("integer");
        assert_eq!(integer.to_string(), "4");
        let negative: Quantity = serde_json::from_str("-4").expect("integer");
        assert_eq!(negative.to_string(), "-4");
        let big: Quantity = serde_json::from_str("18446744073709551615").expect("u64");
        assert_eq!(big.value(), i128::from(u64::MAX));
        let float: Quantity = serde_json::from_str("0.1").expect("float");
        assert_eq!(float.to_string(), "100m");
        let exponent: Quantity = serde_json::from_str("1e3").expect("float");
        assert_eq!(exponent.to_string(), "1k");
        let list: Vec<Quantity> = serde_json::from_str("[\"1Ki\", 2, 0.5]").expect("list");
        assert_eq!(
            serde_json::to_string(&list).expect("serialize"),
            "[\"1Ki\",\"2\",\"500m\"]"
        );
    }

    #[test]
    fn serde_errors_name_the_value() {
        let error = serde_json::from_str::<Quantity>("\"1GiB\"").expect_err("invalid");
        assert!(
            error
                .to_string()
                .contains("invalid quantity \"1GiB\": unknown suffix"),
            "{error}"
        );
        let error = serde_json::from_str::<Quantity>("1e300").expect_err("too large");
        assert!(error.to_string().contains("out of range"), "{error}");
        let error = serde_json::from_str::<Quantity>("true").expect_err("not a quantity");
        assert!(error.to_string().contains("a quantity such as"), "{error}");
    }

    /// The printed text parses back to the same value and prints the same
    /// again. The one exception is Go's: a `BinarySI` integer that is not a
    /// multiple of 1024 prints bare (`2000`), which parses as `DecimalSI`
    /// and then prints as `2k`; from there on the text is stable.
    fn assert_canonical(quantity: Quantity) {
        let text = quantity.to_string();
        let reparsed = q(&text);
        assert_eq!(reparsed, quantity, "{text}");
        let again = reparsed.to_string();
        let bare_binary_integer = quantity.format() == Format::BinarySi
            && text
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit());
        assert!(again == text || bare_binary_integer, "{text} then {again}");
        assert_eq!(q(&again).to_string(), again);
    }

    #[test]
    fn bare_binary_integer_reprints_as_decimal() {
        let quantity = Quantity::from_int(2000, Format::BinarySi);
        assert_eq!(quantity.to_string(), "2000");
        assert_eq!(q("2000").to_string(), "2k");
    }

    fn any_format() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::DecimalSi),
            Just(Format::BinarySi),
            Just(Format::DecimalExponent),
        ]
    }

    fn any_nanos() -> impl Strategy<Value = i128> {
        prop_oneof![
            any::<i128>(),
            -1_000_000_000_000_000_000_000i128..1_000_000_000_000_000_000_000,
            any::<i64>().prop_map(|units| i128::from(units) * NANOS_PER_UNIT),
            (any::<i32>(), 0u32..7)
                .prop_map(|(m, k)| i128::from(m) * 1024_i128.pow(k) * NANOS_PER_UNIT),
            (any::<i32>(), 0u32..28).prop_map(|(m, k)| i128::from(m) * 10_i128.pow(k)),
        ]
    }

    proptest! {
        #[test]
        fn printing_is_a_canonical_fixpoint(nanos in any_nanos(), format in any_format()) {
            let quantity = Quantity::from_nanos(nanos, format);
            let text = quantity.to_string();
            let parsed = Quantity::parse(&text);
            prop_assert_eq!(parsed.map(|p| p.nanos()), Ok(nanos), "{}", text);
            assert_canonical(quantity);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Quantity::parse(&text);
        }

        #[test]
        fn parsed_quantities_print_canonically(
            text in "[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]{1,3})?"
        ) {
            if let Ok(quantity) = Quantity::parse(&text) {
                assert_canonical(quantity);
            }
        }

        #[test]
        fn addition_is_commutative_and_associative(
            a in -(1i128 << 120)..(1i128 << 120),
            b in -(1i128 << 120)..(1i128 << 120),
            c in -(1i128 << 120)..(1i128 << 120),
            formats in (any_format(), any_format(), any_format()),
        ) {
            let (a, b, c) = (
                Quantity::from_nanos(a, formats.0),
                Quantity::from_nanos(b, formats.1),
                Quantity::from_nanos(c, formats.2),
            );
            prop_assert_eq!(a.checked_add(b), b.checked_add(a));
            let left = a.checked_add(b).and_then(|ab| ab.checked_add(c));
            let right = b.checked_add(c).and_then(|bc| a.checked_add(bc));
            prop_assert_eq!(left, right);
            prop_assert_eq!(a.checked_add(b).and_then(|ab| ab.checked_sub(b)), Some(a));
        }

        #[test]
        fn value_is_the_ceiling(nanos in 1i128..i128::MAX / 2) {
            let value = Quantity::from_nanos(nanos, Format::DecimalSi).value();
            prop_assert!(value * NANOS_PER_UNIT >= nanos);
            prop_assert!((value - 1) * NANOS_PER_UNIT < nanos);
            let milli = Quantity::from_nanos(nanos, Format::DecimalSi).milli_value();
            prop_assert!(milli * 1_000_000 >= nanos);
            prop_assert!((milli - 1) * 1_000_000 < nanos);
        }
    }
}

#[cfg(test)]
mod fast_path_tests {
    use proptest::prelude::*;

    use super::{Suffix, exact_magnitude, fast_magnitude, parse_suffix};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Wherever the machine-arithmetic path answers, it answers exactly
        /// what the decimal-digit path does.
        #[test]
        fn fast_path_agrees_with_the_exact_path(
            integer in "[0-9]{0,19}",
            fraction in proptest::option::of("[0-9]{0,19}"),
            suffix in prop::sample::select(vec![
                "", "n", "u", "m", "k", "M", "G", "T", "P", "E",
                "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3", "e-7", "E12", "e20",
            ]),
        ) {
            let fraction = fraction.unwrap_or_default();
            prop_assume!(!integer.is_empty() || !fraction.is_empty());
            let parsed: Suffix = parse_suffix(suffix.as_bytes()).expect("valid suffix");
            let n_fraction_digits = i64::try_from(fraction.len()).expect("small");
            let fast = fast_magnitude(integer.as_bytes(), fraction.as_bytes(), &parsed, n_fraction_digits);
            if let Some(fast) = fast {
                let exact = exact_magnitude(integer.as_bytes(), fraction.as_bytes(), &parsed, n_fraction_digits)
                    .expect("no error");
                prop_assert_eq!(fast, exact, "{}.{}{}", integer, fraction, suffix);
            }
        }
    }
}
