//! The one integration-test binary: every `tests/it/*.rs` is a
//! module here, so the crate is linked once.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers panic on broken fixtures; clippy's in-tests allowance does not reach them"
)]

mod admission;
mod bad_input;
mod baseline;
mod cli;
mod cluster;
mod docs;
mod e2e;
mod fuzz;
mod hardening;
mod manifests;
mod operations;
mod properties;
mod server;
mod support;
