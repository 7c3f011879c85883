//! Go's text conversions and truncation, and the KubeVirt expressions, at
//! the values where a decimal or an integer implementation would differ.
#![allow(
    clippy::float_arithmetic,
    reason = "the expected values are computed as Go computes them"
)]

use proptest::prelude::*;
use rstest::rstest;

use super::*;

#[rstest]
#[case::negative("-1")]
#[case::nan("NaN")]
#[case::infinity("inf")]
#[case::infinity_word("Infinity")]
#[case::overflow("1e400")]
#[case::empty("")]
#[case::garbage("1.5x")]
#[case::hex("0x1p-2")]
fn parse_rejects(#[case] text: &str) {
    assert_eq!(parse(text), None);
}

#[rstest]
#[case::ratio("1.5", 1.5)]
#[case::negative_zero("-0", 0.0)]
#[case::tenth("0.1", 0.1)]
#[case::exponent("2.5e-5", 2.5e-5)]
#[case::leading_plus("+2", 2.0)]
fn parse_reads_go_decimals(#[case] text: &str, #[case] expected: f64) {
    let parsed = parse(text).expect("valid");
    assert_eq!(parsed.to_bits(), expected.to_bits(), "{text}");
}

#[test]
fn from_u64_rounds_to_nearest_even_above_2_pow_53() {
    // 2^53 + 1 is not representable: ties to even give 2^53.
    assert_eq!(from_u64((1 << 53) + 1), 9_007_199_254_740_992.0);
    assert_eq!(from_u64((1 << 53) + 3), 9_007_199_254_740_996.0);
}

#[test]
fn multiply_memory_truncates_after_the_binary_product() {
    // 1.7 is stored below 17/10, so 1.7 − 1 = 0.7 (the double just below
    // 7/10) and 90 × 0.7 = 62.99…: Go adds 62 KB where exact decimals
    // would add 63.
    assert_eq!(multiply_memory_addition_kilo(90, 1.7), Some(62));
    // 1.2 − 1 = 0.19999999999999996: 5 × that truncates to 0, not 1.
    assert_eq!(multiply_memory_addition_kilo(5, 1.2), Some(0));
    // 1.1 − 1 = 0.10000000000000009 lies above 1/10.
    assert_eq!(multiply_memory_addition_kilo(300_000, 1.1), Some(30_000));
    // 268Mi = 281018368 B ⇒ 281019 kB × 0.5 = 140509.5 ⇒ 140509.
    assert_eq!(multiply_memory_addition_kilo(281_019, 1.5), Some(140_509));
    // 1.5 × 300000 is exact; 1.1 × 3 = 3.3000000000000003 truncates to 3.
    assert_eq!(mul_trunc(300_000, 1.5), Some(450_000));
    assert_eq!(mul_trunc(3, 1.1), Some(3));
}

#[test]
fn truncation_refuses_what_leaves_i64() {
    assert_eq!(mul_trunc(u64::MAX, 1.0), None);
    assert_eq!(mul_trunc(1 << 62, 2.0), None);
    assert_eq!(mul_trunc(1 << 62, 1.5), Some(3 << 61));
    assert_eq!(multiply_memory_addition_kilo(u64::MAX, 3.0), None);
    assert_eq!(multiply_memory_addition_kilo(1, f64::MAX), None);
}

#[rstest]
#[case::zero(0.0, Some(0))]
#[case::below_one(0.999_999, Some(0))]
#[case::one_point_nine(1.9, Some(1))]
#[case::negative(-1.9, Some(-1))]
#[case::big_integer(9_007_199_254_740_993.0, Some(9_007_199_254_740_992))]
#[case::largest_below_2_pow_63(9_223_372_036_854_774_784.0, Some(9_223_372_036_854_774_784))]
#[case::two_pow_63(9_223_372_036_854_775_808.0, None)]
#[case::minus_two_pow_63(-9_223_372_036_854_775_808.0, Some(i64::MIN))]
#[case::max(f64::MAX, None)]
#[case::nan(f64::NAN, None)]
#[case::subnormal(5e-324, Some(0))]
fn trunc_i64_matches_go(#[case] value: f64, #[case] expected: Option<i64>) {
    assert_eq!(trunc_i64(value), expected);
}

/// KubeVirt's own unit-test values for the CPU request
/// (`renderresources_test.go`) and the reference's worked examples.
#[rstest]
#[case::one_of_ten(1, 10, "100m")]
#[case::sixteen_of_ten(16, 10, "1.6")]
#[case::twelve_of_twenty(12, 20, "600m")]
#[case::twelve_of_ten(12, 10, "1.2")]
#[case::third(1, 3, "333.3333333333333m")]
#[case::two_thirds(2, 3, "666.6666666666666m")]
#[case::whole(20, 10, "2")]
#[case::one_of_one(1, 1, "1")]
fn cpu_ratio_text_matches_kubevirt(#[case] vcpus: u64, #[case] ratio: u32, #[case] text: &str) {
    assert_eq!(cpu_ratio_text(vcpus, ratio), text);
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
    assert_eq!(format_g(value), expected);
}

/// An independent `%g` oracle for plain-layout values: Rust's `{}` prints
/// the same shortest digits in plain notation, which is Go's layout
/// whenever the decimal exponent is in `-4..6`.
fn plain(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

#[test]
fn cpu_quotients_format_like_go() {
    for vcpus in 1..=300u32 {
        for ratio in 1..=64u32 {
            let quotient = f64::from(vcpus) / f64::from(ratio);
            let expected = if quotient < 1.0 {
                format!("{}m", plain(quotient * 1000.0))
            } else {
                plain(quotient)
            };
            assert_eq!(
                cpu_ratio_text(u64::from(vcpus), ratio),
                expected,
                "{vcpus}/{ratio}"
            );
        }
    }
}

proptest! {
    #[test]
    fn format_g_round_trips(bits in 0u64..0x7ff0_0000_0000_0000) {
        let value = f64::from_bits(bits);
        let text = format_g(value);
        let back: f64 = text.parse().expect("Go's %g text parses");
        prop_assert_eq!(back.to_bits(), value.to_bits(), "{}", text);
    }
}
