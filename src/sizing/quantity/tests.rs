//! Tests of [`Quantity`](super::Quantity): parsing, printing and arithmetic
//! against apimachinery's behaviour.

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
#[case::exponent_leading_zeros("1e0000000000000000000003", "1e3", 1000, Format::DecimalExponent)]
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
fn rounds_magnitude_up_to_a_nano(#[case] text: &str, #[case] nanos: i128, #[case] canonical: &str) {
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

// === The fast path ===

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
