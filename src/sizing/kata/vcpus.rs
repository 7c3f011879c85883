//! Kata's vCPU counts, in IEEE-754 binary32 as Kata holds them (Go
//! `float32`, Rust `f32`: the same format and round-to-nearest-even, so the
//! same operations in the same order give the same bits). A sum of fractions
//! can land just above a whole number, and Kata's ceiling then boots one
//! vCPU more than exact arithmetic would: 1.1 + 1.1 + 1.1 + 1.3 + 1.4 + 1 is
//! 7.0000005 in float32, so Kata runs 8 vCPUs.
//!
//! The sizing core denies float arithmetic; [`Vcpus`] is the one place in
//! the Kata model that does it, the way [`crate::sizing::gofloat`] is for
//! `KubeVirt`'s float64.

use std::fmt;

use crate::sizing::quantity::Quantity;

/// A number of vCPUs as Kata holds it (`NumVCPUsF`, `default_vcpus`,
/// `overhead_vcpus`, a container's `quota / period`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Vcpus(f32);

/// Nanocores in one CPU.
const NANOS_PER_CPU: i128 = 1_000_000_000;

impl Vcpus {
    /// No vCPU.
    pub(super) const ZERO: Vcpus = Vcpus(0.0);
    /// One vCPU: Kata's default when none is configured (`defaultVCPUs` in
    /// `src/runtime/pkg/katautils/config.go`, `validateHypervisorConfig`
    /// in `src/runtime/virtcontainers/hypervisor_config_linux.go`, 3.32.0;
    /// `DEFAULT_GUEST_VCPUS` in runtime-rs 4.1.0).
    pub(super) const ONE: Vcpus = Vcpus(1.0);

    /// A value Kata parsed from text (an annotation).
    pub(super) const fn from_f32(value: f32) -> Vcpus {
        Vcpus(value)
    }

    /// A CPU quantity as Kata reads it from its TOML configuration: the
    /// decimal value as a float64, then converted to float32 (`toml`
    /// decoding into a float32 field, in both runtimes).
    #[expect(
        clippy::float_arithmetic,
        reason = "Kata reads its configuration as float64 and stores float32"
    )]
    pub(super) fn from_config(quantity: Quantity) -> Vcpus {
        let nanos = quantity.nanos();
        let whole = nanos.div_euclid(NANOS_PER_CPU);
        let fraction = nanos.rem_euclid(NANOS_PER_CPU);
        // `as` rounds to the nearest binary64, as Go's float64(int) does.
        let value = whole as f64 + fraction as f64 / NANOS_PER_CPU as f64;
        Vcpus(value as f32)
    }

    /// The Go runtime's `utils.CalculateCPUsF(quota, period)`:
    /// `float32(quota) / float32(period)`, 0 for a negative quota or a zero
    /// period (`src/runtime/virtcontainers/utils/utils.go`, 3.32.0).
    #[expect(clippy::float_arithmetic, reason = "the Go runtime divides in float32")]
    pub(super) fn go_quota(quota: i64, period: u64) -> Vcpus {
        if quota >= 0 && period != 0 {
            Vcpus(quota as f32 / period as f32)
        } else {
            Vcpus::ZERO
        }
    }

    /// runtime-rs's `LinuxContainerCpuResources` fraction: `quota as f64 /
    /// period as f64`, stored as f32 by `get_nr_vcpu`
    /// (`src/libs/kata-types/src/cpu.rs`,
    /// `src/runtime-rs/crates/resource/src/cpu_mem/initial_size.rs`, 4.1.0).
    #[expect(
        clippy::float_arithmetic,
        reason = "runtime-rs divides in f64 and keeps f32"
    )]
    pub(super) fn rs_quota(quota: i64, period: u64) -> Vcpus {
        if quota >= 0 && period > 0 {
            Vcpus((quota as f64 / period as f64) as f32)
        } else {
            Vcpus::ZERO
        }
    }

    /// `self + other` in float32.
    #[expect(clippy::float_arithmetic, reason = "Kata adds vCPUs in float32")]
    #[must_use]
    pub(super) fn plus(self, other: Vcpus) -> Vcpus {
        Vcpus(self.0 + other.0)
    }

    /// runtime-rs's `(…).max(1.0)`.
    #[must_use]
    pub(super) fn at_least_one(self) -> Vcpus {
        Vcpus(self.0.max(1.0))
    }

    /// Whether the value is zero (Go `== 0`, also true for -0).
    pub(super) fn is_zero(self) -> bool {
        self.0 == 0.0
    }

    /// Whether the value is above zero (runtime-rs `vcpu > 0.0`).
    pub(super) fn is_positive(self) -> bool {
        self.0 > 0.0
    }

    /// The vCPUs the VM runs: `RoundUpNumVCPUs`, `uint32(math.Ceil(float64(cpus)))`
    /// (`src/runtime/virtcontainers/hypervisor.go`, 3.32.0), runtime-rs
    /// `default_vcpus.ceil()`. Saturates where Go's conversion would be
    /// undefined (negative, NaN, beyond `u32`).
    pub(super) fn ceil(self) -> u64 {
        let ceiling = self.0.ceil();
        if ceiling.is_nan() || ceiling <= 0.0 {
            0
        } else {
            // `as` saturates at u64::MAX; a finite f32 is below 2^128.
            ceiling as u64
        }
    }
}

impl fmt::Display for Vcpus {
    /// The shortest decimal that reads back to the same float32 (`1`,
    /// `0.25`, `7.0000005`): the digits a float32 sum really holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
#[allow(
    clippy::float_arithmetic,
    reason = "the expected values are written as the float32 sums they are"
)]
mod tests {
    use super::*;

    /// Go's `float32(110000) / float32(100000)` is the float32 nearest 1.1;
    /// five such fractions plus 1 land above 7 (see the module docs).
    #[test]
    fn float32_sums_land_above_the_whole_number() {
        let cpus = [110_000, 110_000, 110_000, 130_000, 140_000]
            .into_iter()
            .map(|quota| Vcpus::go_quota(quota, 100_000))
            .fold(Vcpus::ZERO, Vcpus::plus)
            .plus(Vcpus::ONE);
        // f32 nearest 1.1 is 1.10000002384185791015625; the running sums
        // round to 2.2000000477, 3.3000001907, 4.6000003815, 6.0000004768,
        // and + 1 gives 7.0000004768 (7 + 2^-21), whose ceiling is 8.
        assert_eq!(cpus, Vcpus(7.0 + 1.0 / 2_097_152.0));
        assert_eq!(cpus.ceil(), 8);
        assert_eq!(cpus.to_string(), "7.0000005");
    }

    #[test]
    fn config_values_are_read_as_float64_then_float32() {
        let q = |text: &str| Quantity::parse(text).unwrap();
        assert_eq!(Vcpus::from_config(q("1500m")), Vcpus(1.5));
        assert_eq!(Vcpus::from_config(q("200m")), Vcpus(0.2));
        assert_eq!(Vcpus::from_config(q("0")), Vcpus::ZERO);
    }

    #[test]
    fn ceil_saturates_where_go_is_undefined() {
        assert_eq!(Vcpus(f32::NAN).ceil(), 0);
        assert_eq!(Vcpus(-1.5).ceil(), 0);
        assert_eq!(Vcpus(f32::INFINITY).ceil(), u64::MAX);
        assert_eq!(Vcpus(2.000_001).ceil(), 3);
    }
}
