//! The pure sizing core: Kubernetes quantities, the sizing policy, KubeVirt's
//! virt-launcher renderer and Kata Containers' sandbox model.
//!
//! Nothing here performs I/O, reads a clock or logs. Every function takes
//! plain data and returns plain data plus an explanation.
//!
//! Arithmetic is integer and checked. The few expressions `KubeVirt` computes
//! in `float64` live in [`gofloat`], and Kata's float32 vCPU counts in
//! `kata::vcpus`: the two places float arithmetic is allowed.
#![deny(clippy::float_arithmetic)]

pub mod error;
pub mod explain;
pub mod gofloat;
pub mod kata;
pub mod kubevirt;
pub mod policy;
pub mod quantity;
pub mod spelling;
pub mod vmi;
pub mod yaml;

pub use error::{ErrorReason, SizingError};
pub use quantity::{Format, Quantity, QuantityError};
