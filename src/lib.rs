//! virt-sizer sizes the Pods that carry virtual machines.
//!
//! ```text
//!     CLI                                        HTTPS
//!       │                                        │
//! ┌─────┼─────── shell (I/O) ────────────────────┼───────────────────┐
//! │     ▼                                        ▼                   │
//! │  commands ─────────── serve ──────────────▶  server              │
//! │  review, test, policy, plan                  extract → handlers  │
//! │     │  │                                     reload: policy, tls │
//! │     │  └──▶ documents ◀───────────────────── vmi_source, watch   │
//! │     │       (JSON/YAML files)                limits, cluster     │
//! │     │                                        kubevirt_cr         │
//! │     │       cli, telemetry, metrics          │                   │
//! └─────┼────────────────────────────────────────┼───────────────────┘
//!       ▼   plain data in, decision out          ▼
//! ┌───────────────────────── pure core ──────────────────────────────┐
//! │  admission: wire, facts → target → launcher | kata → decision    │
//! │     │                                                  → patch   │
//! │     ▼                                                            │
//! │  sizing: quantity, policy, kubevirt, kata, vmi, gofloat          │
//! └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Arrows point from a module to what it uses, and none points back:
//! [`commands`] runs the [`server`] (`serve`) and the core (`review`,
//! `test`); both read files through [`documents`]; nothing under `server`
//! imports `commands`.
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

/// The allocator settings the container image runs the binary with (`ENV`
/// lines of the `Dockerfile`, held to this list by a test; the benches'
/// `serve` children and the hardening tests' get them too). `MIMALLOC_PURGE_DELAY=0`: mimalloc gives
/// freed pages back to the system at once rather than 10 ms of allocation
/// later, so what a watch cache's initial list of every VMI leaves behind
/// is not kept resident by a thread that then sits idle (10,000 VMIs: a
/// peak of 51 instead of 72 MiB; no CPU cost the load bench can resolve).
/// See `docs/performance.md`.
pub const ALLOCATOR_ENV: &[(&str, &str)] = &[("MIMALLOC_PURGE_DELAY", "0")];
