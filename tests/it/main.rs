//! The one integration test binary.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers panic on broken fixtures; clippy's in-tests allowance does not reach them"
)]

mod cli;
mod server;
