//! The annotation readers against what Kata's parsers make of the same
//! text: Go's `strconv.ParseFloat(v, 32)` / `strconv.ParseUint(v, 10, 64)`
//! (Go runtime 3.32.0) and Rust's `parse::<f32>` / `byte-unit` 5.2.3
//! (runtime-rs 4.1.0). Expected values are worked out from those
//! functions' rules in each case.

use proptest::prelude::*;
use rstest::rstest;

use super::*;

fn vcpus(value: f32) -> Reading<Vcpus> {
    Reading::Value(Vcpus::from_f32(value))
}

/// Go's `ParseFloat` syntax: plain decimals, exponents, digit-separating
/// underscores (Go's own `atof` tests accept `1_23.50_0_0e+1_2` as
/// 1.235e14), `inf`, `nan`.
#[rstest]
#[case::zero("0", 0.0)]
#[case::half("0.5", 0.5)]
#[case::no_leading_digit(".5", 0.5)]
#[case::no_trailing_digit("2.", 2.0)]
#[case::plus_sign("+1.5", 1.5)]
#[case::exponent("15e-1", 1.5)]
#[case::underscores("1_23.50_0_0e+1_2", 1.235e14)]
#[case::negative_zero("-0", -0.0)]
fn go_reads_plain_numbers(#[case] text: &str, #[case] expected: f32) {
    assert_eq!(go_vcpus(text), vcpus(expected));
}

/// What `setFloat32WithCheck` refuses: a Kubernetes quantity (`500m`, the
/// common mistake), a negative number, malformed underscores or exponents,
/// surrounding spaces (Go does not trim), a value beyond float32
/// (`ErrRange`) and `+Inf` (larger than `math.MaxFloat32`).
#[rstest]
#[case::quantity("500m", "is not a plain number")]
#[case::kilo("1k", "is not a plain number")]
#[case::negative("-1", "is negative")]
#[case::leading_underscore("_1", "is not a plain number")]
#[case::underscore_before_point("1_.5", "is not a plain number")]
#[case::trailing_underscore("1e+12_", "is not a plain number")]
#[case::bare_exponent("1e", "is not a plain number")]
#[case::space(" 1", "is not a plain number")]
#[case::signed_nan("+nan", "is not a plain number")]
#[case::out_of_range("1e39", "is not a plain number")]
#[case::infinity("+Inf", "is infinite")]
#[case::empty("", "is not a plain number")]
fn go_refuses(#[case] text: &str, #[case] why: &str) {
    match go_vcpus(text) {
        Reading::Refused(reason) => assert!(reason.starts_with(why), "{reason}"),
        other => panic!("{text:?}: {other:?}"),
    }
}

/// Values Kata takes but virt-sizer does not size with: NaN (accepted by
/// `ParseFloat` and by the `< 0` check) and hexadecimal floats.
#[rstest]
#[case::nan("NaN")]
#[case::hex("0x1p1")]
fn go_takes_what_is_not_modelled(#[case] text: &str) {
    assert!(matches!(go_vcpus(text), Reading::Unmodeled(_)));
}

/// runtime-rs trims the value (`Annotation::get`) and parses an `f32`: a
/// quantity is refused, a negative value becomes the node's CPU count.
#[test]
fn runtime_rs_reads_vcpus_with_rust_parse() {
    assert_eq!(rs_vcpus(" 0.5 "), vcpus(0.5));
    assert_eq!(rs_vcpus("0"), vcpus(0.0));
    assert!(matches!(rs_vcpus("500m"), Reading::Refused(_)));
    assert!(matches!(rs_vcpus("inf"), Reading::Refused(_)));
    assert!(matches!(rs_vcpus("-1"), Reading::Unmodeled(_)));
    assert!(matches!(rs_vcpus("NaN"), Reading::Unmodeled(_)));
}

/// `ParseUint(v, 10, 64)`: digits only.
#[rstest]
#[case::plain("2048", Some(2048))]
#[case::zero("0", Some(0))]
#[case::max("18446744073709551615", Some(u64::MAX))]
#[case::overflow("18446744073709551616", None)]
#[case::quantity("2Gi", None)]
#[case::sign("+2048", None)]
#[case::underscore("2_048", None)]
#[case::space("2048 ", None)]
fn go_reads_memory_in_mib(#[case] text: &str, #[case] expected: Option<u64>) {
    match (go_memory_mib(text), expected) {
        (Reading::Value(mib), Some(expected)) => assert_eq!(mib, expected),
        (Reading::Refused(why), None) => assert!(why.starts_with("is not a whole number of MiB")),
        (other, _) => panic!("{text:?}: {other:?}"),
    }
}

/// `convert_to_megabytes`: a plain number is MiB; otherwise `byte-unit`
/// reads bytes (`K` = 1000, `Ki` = 1024, `b`/`B` both bytes, `bit` bits)
/// and Kata takes the whole MiB.
#[rstest]
// digits only: MiB
#[case::plain("2048", 2048)]
#[case::plain_trimmed(" 4096 ", 4096)]
// 2 × 2^30 bytes = 2048 MiB
#[case::gi("2Gi", 2048)]
#[case::gib("2GiB", 2048)]
#[case::gib_lower("2gib", 2048)]
#[case::space("2 GiB", 2048)]
// 2 × 10^9 bytes / 2^20 = 1907.35 → 1907
#[case::g("2G", 1907)]
#[case::gb("2GB", 1907)]
// 1.5 × 2^30 = 1610612736 bytes = 1536 MiB
#[case::fraction("1.5Gi", 1536)]
// 2^30 bits = 2^27 bytes = 128 MiB
#[case::gibit("1Gibit", 128)]
// 3 × 2^20 bytes (the `B` unit) = 3 MiB
#[case::bytes("3145728B", 3)]
// 1 × 2^60 bytes = 2^40 MiB: beyond u32, saturates as `as u32` does
#[case::exbi("1Ei", u32::MAX)]
fn runtime_rs_reads_memory_sizes(#[case] text: &str, #[case] expected: u32) {
    assert_eq!(rs_memory_mib(text), Reading::Value(expected));
}

/// Text `byte-unit` cannot read: runtime-rs logs it and keeps its
/// configured `default_memory`.
#[rstest]
#[case::unit_first("Gi2")]
#[case::unknown_unit("2X")]
#[case::zetta("1Zi")]
#[case::trailing("2GiBs")]
#[case::bare_point("2.Gi")]
#[case::negative("-1Gi")]
#[case::too_many_bytes("16Ei")]
#[case::empty("")]
fn runtime_rs_ignores_what_byte_unit_cannot_read(#[case] text: &str) {
    assert!(
        matches!(rs_memory_mib(text), Reading::Ignored(_)),
        "{text:?}"
    );
}

/// A plain number of MiB beyond `u64` bytes: `Byte::from_u64_with_unit`
/// fails and runtime-rs refuses the sandbox (2^44 MiB = 2^64 bytes).
#[test]
fn runtime_rs_refuses_mib_beyond_u64_bytes() {
    assert!(matches!(
        rs_memory_mib(&(1_u64 << 44).to_string()),
        Reading::Refused(_)
    ));
    assert_eq!(
        rs_memory_mib(&((1_u64 << 44) - 1).to_string()),
        Reading::Value(u32::MAX)
    );
}

/// `byte_v as f64`: 2^53 + 1 rounds to 2^53 (tie to even), 2^53 + 3 to
/// 2^53 + 4.
#[test]
fn bytes_round_to_a_float64_before_dividing() {
    assert_eq!(f64_rounded((1 << 53) + 1), 1 << 53);
    assert_eq!(f64_rounded((1 << 53) + 3), (1 << 53) + 4);
    assert_eq!(f64_rounded(12345), 12345);
}

proptest! {
    /// Any size written with a unit: MiB = ⌊n × unit ÷ 2^20⌋ (whole bytes,
    /// far below 2^53, so the float64 step is exact).
    #[test]
    fn sizes_with_units_are_whole_mib(
        n in 0_u64..1_000_000,
        (unit, bytes) in prop::sample::select(vec![
            ("Ki", 1_u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30),
            ("K", 1_000), ("M", 1_000_000), ("G", 1_000_000_000),
            ("KB", 1_000), ("MiB", 1 << 20), ("B", 1),
        ]),
    ) {
        let expected = u32::try_from((n * bytes) >> 20).unwrap();
        prop_assert_eq!(rs_memory_mib(&format!("{n}{unit}")), Reading::Value(expected));
    }

    /// Every non-negative float32 printed in its shortest form reads back
    /// to itself in Go; with a Kubernetes `m` suffix it is refused.
    #[test]
    fn go_reads_back_shortest_floats(value in 0.0_f32..1.0e9) {
        prop_assert_eq!(go_vcpus(&value.to_string()), vcpus(value));
        let quantity = format!("{value}m");
        let refused = matches!(go_vcpus(&quantity), Reading::Refused(_));
        prop_assert!(refused, "{} was not refused", quantity);
    }
}
