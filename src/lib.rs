//! virt-sizer sizes the Pods that carry virtual machines.
//!
//! ```text
//!            ┌──────────────── shell (I/O) ────────────────┐
//!  CLI ──▶   │ commands::{review, test, policy, plan}       │
//!  HTTPS ──▶ │ server: TLS, reload, metrics, VMI source     │
//!            └───────────────┬─────────────────────────────┘
//!                            ▼  plain data in, decision out
//!            ┌──────────────── pure core ──────────────────┐
//!            │ admission: AdmissionReview → response+patch  │
//!            │ sizing:    quantity, policy, kubevirt, kata  │
//!            └──────────────────────────────────────────────┘
//! ```
//!
//! The core ([`sizing`], [`admission`]) performs no I/O, reads no clock and
//! logs nothing: it returns a decision together with its explanation, and the
//! shell decides where that explanation goes (warnings, audit annotations,
//! log lines, `--explain`).
#![warn(missing_docs)]

pub mod admission;
pub mod cli;
pub mod commands;
pub mod documents;
pub mod metrics;
pub mod server;
pub mod sizing;
pub mod telemetry;
