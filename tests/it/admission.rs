//! Example-based tests of `admission::review`: what is and is not a target,
//! `onError`, field paths in errors, patch shape (minimal, maps first,
//! escaped pointers, unknown fields kept), shadow mode, profile opt-in,
//! KubeVirt's overhead annotation, and the worked KubeVirt vectors of the
//! reference (§1.5, §3).
//!
//! Every expected number is derived in the test from the reference's
//! arithmetic. Shorthands used below (v1.6–v1.9 line, amd64, graphics on):
//! fixed overhead 220Mi = virt-launcher-monitor 25 + virt-launcher 100 +
//! virtlogd 25 + virtqemud 40 + QEMU 30; per vCPU 8Mi; IOThread 8Mi; video
//! 32Mi. A 1-vCPU VMI therefore has 220 + 8 + 8 + 32 = 268Mi of overhead.

use std::collections::BTreeMap;

use rstest::rstest;
use serde_json::{Value, json};
use virt_sizer::admission::{OutcomeLabel, TargetKind};
use virt_sizer::sizing::Quantity;
use virt_sizer::sizing::policy::ValidPolicy;

use crate::support::{
    Cpu, GI, MI, Mem, MemFormat, NAMESPACE, PageSize, UID, VmiSpec, compute_resources,
    container_resources, launcher_pod, op_paths, patch_ops, patched, plain_pod, policy,
    policy_with_default, q, remove, request, review, runtime_class, set, whole,
};

mod fidelity;
mod field_errors;
mod modes_and_selection;
mod on_error;
mod overhead_annotation;
mod patch_shape;
mod targets;
mod worked_vectors;

const VM: &str = "fedora-01";

/// The overhead of a 1-vCPU VMI on v1.9: 220 + 8 + 8 + 32 = 268Mi.
const OVERHEAD_1_VCPU: u64 = 268 * MI;

/// What KubeVirt v1.9 renders for 1 vCPU / `guest: 1Gi` (reference M1):
/// 1Gi + 268Mi = 1292Mi.
const KUBEVIRT_MEMORY: u64 = GI + OVERHEAD_1_VCPU;

/// The plain 1-vCPU, 1Gi VMI.
fn vmi() -> Value {
    VmiSpec::simple(VM, 1024).to_json()
}

/// The launcher Pod virt-controller v1.9 renders for [`vmi`] with KubeVirt's
/// defaults: cpu 1/10 = 0.1 ⇒ `100m`, memory `1292Mi`.
fn kubevirt_pod() -> Value {
    launcher_pod(
        VM,
        compute_resources(&[("cpu", "100m"), ("memory", "1292Mi")], &[]),
    )
}

/// Profiles for the selection tests, and one Kata class.
const TEAM_POLICY: &str = r#"
apiVersion: virt-sizer.io/v1alpha1
kind: SizingPolicy
kubevirt: {release: "1.9", architecture: amd64}
profiles:
  default: {cpuAllocationRatio: 10, memoryOvercommitPercent: 100}
  production: {cpuAllocationRatio: 1, limits: EqualRequests}
  dev: {cpuAllocationRatio: 20, memoryOvercommitPercent: 150}
  batch: {cpuAllocationRatio: 4}
rules:
  - namespaces: ["dev-*"]
    profile: dev
    allowedProfiles: [dev, production]
onError: Allow
kata:
  runtimeClasses:
    kata-qemu:
      runtime: go
      defaultVcpus: "1"
      defaultMemory: 2048Mi
      vmm: {cpu: 250m, memory: 160Mi}
      guestMemory: Account
"#;

fn team() -> ValidPolicy {
    policy(TEAM_POLICY)
}

fn deny_policy() -> ValidPolicy {
    policy(&TEAM_POLICY.replace("onError: Allow", "onError: Deny"))
}

fn decision_annotation(policy: &ValidPolicy, profile: &str) -> String {
    format!("profile={profile},policy={}", policy.digest)
}
