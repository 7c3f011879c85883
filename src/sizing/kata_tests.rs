//! Tests for Kata sizing. Expected values are derived in each test from
//! Kata's and the kubelet's code (named where the rule is implemented) with
//! the arithmetic shown, and from kata-deploy's shipped `podFixed` values.

use std::collections::BTreeMap;

use rstest::rstest;

use super::*;

const MIB: i128 = 1 << 20;

fn q(text: &str) -> Quantity {
    Quantity::parse(text).unwrap()
}

fn vmm(cpu: &str, memory: &str) -> PodFixed {
    PodFixed {
        cpu: q(cpu),
        memory: q(memory),
    }
}

fn class(handler: &str, runtime: KataRuntime, cpu: &str, memory: &str) -> KataClass {
    KataClass::with_defaults(handler, runtime, vmm(cpu, memory))
}

fn resources(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), q(v))).collect()
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ContainerResources {
    ContainerResources {
        name: name.to_owned(),
        requests: resources(requests),
        limits: resources(limits),
        sidecar: false,
    }
}

fn pod(containers: Vec<ContainerResources>, annotations: &[(&str, &str)]) -> KataPodInput {
    KataPodInput {
        init_containers: vec![],
        containers,
        annotations: annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// `class` with Kata's `enable_annotations` set to `patterns`.
fn enabling(mut class: KataClass, patterns: &[&str]) -> KataClass {
    class.enable_annotations = EnableAnnotations::new(patterns).unwrap();
    class
}

fn size(input: &KataPodInput, class: &KataClass) -> KataPodSizing {
    size_kata_pod(input, class, &KataPodSettings::default())
}

fn has_line<L: ToString>(lines: impl IntoIterator<Item = L>, needle: &str) -> bool {
    lines
        .into_iter()
        .any(|line| line.to_string().contains(needle))
}

// === RuntimeClass podFixed ===

/// kata-deploy's shipped `overhead.podFixed`: with
/// `guestMemory: Ignore` and `vmm` set to those numbers we reproduce them.
#[rstest]
#[case::kata_qemu_3x("kata-qemu", KataRuntime::Go, "250m", "160Mi")]
#[case::kata_qemu_4x("kata-qemu", KataRuntime::Go, "250m", "320Mi")]
#[case::kata_qemu_runtime_rs_4x("kata-qemu-runtime-rs", KataRuntime::RuntimeRs, "250m", "320Mi")]
#[case::kata_clh("kata-clh", KataRuntime::Go, "250m", "130Mi")]
#[case::kata_fc("kata-fc", KataRuntime::GoStatic, "250m", "130Mi")]
#[case::kata_dragonball("kata-dragonball", KataRuntime::RuntimeRs, "250m", "130Mi")]
#[case::kata_qemu_coco_dev("kata-qemu-coco-dev", KataRuntime::GoStatic, "250m", "160Mi")]
#[case::kata_qemu_tdx("kata-qemu-tdx", KataRuntime::GoStatic, "1.0", "2048Mi")]
#[case::kata_qemu_snp("kata-qemu-snp", KataRuntime::GoStatic, "1.0", "2048Mi")]
#[case::kata_qemu_se("kata-qemu-se", KataRuntime::GoStatic, "1.0", "1024Mi")]
#[case::kata_qemu_nvidia_gpu("kata-qemu-nvidia-gpu", KataRuntime::GoStatic, "1", "10240Mi")]
#[case::kata_remote("kata-remote", KataRuntime::Go, "250m", "120Mi")]
fn ignore_reproduces_kata_deploy(
    #[case] handler: &str,
    #[case] runtime: KataRuntime,
    #[case] cpu: &str,
    #[case] memory: &str,
) {
    let sizing = size_runtime_class(&class(handler, runtime, cpu, memory));
    assert_eq!(sizing.pod_fixed, vmm(cpu, memory));
    // printed canonically, as the API server would (2048Mi → 2Gi)
    let canonical = q(memory).to_string();
    assert_eq!(sizing.pod_fixed.memory.to_string(), canonical);
    assert!(has_line(
        &sizing.explanation,
        &format!("memory {canonical} = vmm {canonical}")
    ));
    assert!(has_line(&sizing.explanation, "guestMemory Ignore"));
}

#[test]
fn account_adds_default_memory_on_go() {
    // kata#6533: 160Mi podFixed under a VM booting 2048 MiB
    // default memory; accounting for it gives 160 + 2048 = 2208 MiB.
    let mut qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    qemu.guest_memory = GuestMemory::Account;
    let sizing = size_runtime_class(&qemu);
    let expected_mib = 160 + 2048;
    assert_eq!(sizing.pod_fixed.memory.value(), expected_mib * MIB);
    assert_eq!(sizing.pod_fixed.memory.to_string(), "2208Mi");
    assert_eq!(sizing.pod_fixed.cpu, q("250m"));
    assert!(
        has_line(
            &sizing.explanation,
            "memory 2208Mi = vmm 160Mi + default_memory 2048Mi (guest memory not covered by container \
             limits; kata#6533)"
        ),
        "{:?}",
        sizing.explanation
    );
}

#[test]
fn account_uses_the_memory_go_really_boots() {
    // default_memory below 256 MiB is silently replaced by 2048 MiB.
    let mut qemu = class("kata-qemu", KataRuntime::GoStatic, "250m", "160Mi");
    qemu.guest_memory = GuestMemory::Account;
    qemu.default_memory = q("128Mi");
    let sizing = size_runtime_class(&qemu);
    assert_eq!(sizing.pod_fixed.memory, q("2208Mi"));
    assert!(has_line(
        &sizing.explanation,
        "default_memory 128Mi is below Kata's minimum of 256 MiB"
    ));

    qemu.default_memory = q("512Mi");
    assert_eq!(size_runtime_class(&qemu).pod_fixed.memory, q("672Mi"));
}

#[test]
fn account_adds_overhead_memory_on_runtime_rs() {
    let mut rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    rs.guest_memory = GuestMemory::Account;
    let sizing = size_runtime_class(&rs);
    // 320 + overhead_memory default 32 + 1 MiB for the even-MiB rounding
    // (`convert_memory_to_mb`: floor, then an odd count + 1)
    assert_eq!(sizing.pod_fixed.memory, q("353Mi"));
    assert!(has_line(
        &sizing.explanation,
        "memory 353Mi = vmm 320Mi + overhead_memory 32Mi + 1Mi"
    ));

    rs.overhead_memory = Some(q("128Mi"));
    assert_eq!(size_runtime_class(&rs).pod_fixed.memory, q("449Mi"));
}

#[test]
fn explanation_names_the_cgroup_mode() {
    let go = size_runtime_class(&class("kata-qemu", KataRuntime::Go, "250m", "160Mi"));
    assert!(has_line(&go.explanation, "sandbox_cgroup_only=false"));
    let rs = size_runtime_class(&class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    ));
    assert!(has_line(&rs.explanation, "sandbox_cgroup_only=true"));
}

#[test]
fn class_defaults_follow_the_runtime() {
    let go = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    assert_eq!(
        (
            go.overhead_vcpus,
            go.overhead_memory,
            go.sandbox_cgroup_only
        ),
        (None, None, false)
    );
    assert_eq!((go.default_vcpus, go.default_memory), (q("1"), q("2Gi")));
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    assert_eq!(
        (
            rs.overhead_vcpus,
            rs.overhead_memory,
            rs.sandbox_cgroup_only
        ),
        (Some(q("200m")), Some(q("32Mi")), true)
    );
    assert_eq!(KataRuntime::GoStatic.as_str(), "go-static");
    assert_eq!(KataRuntime::RuntimeRs.to_string(), "runtime-rs");
}

// === the VM a sandbox boots ===

#[test]
fn a1_go_hotplug_vm_outgrows_the_pod_cgroup() {
    // A1: kata-qemu (Go), one container with limits cpu 2 / memory 6Gi
    // (requests default to limits): ceil(1 + 2.0) = 3 vCPUs, 2048 + 6144 MiB.
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let input = pod(
        vec![container(
            "app",
            &[("cpu", "2"), ("memory", "6Gi")],
            &[("cpu", "2"), ("memory", "6Gi")],
        )],
        &[],
    );
    let sizing = size(&input, &qemu);
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 1 + 2,
            memory_mib: 2048 + 6 * 1024
        }
    );
    assert!(sizing.changes.is_empty());
    assert!(sizing.annotation_changes.is_empty());
    assert!(sizing.warnings.is_empty());
    assert!(has_line(
        &sizing.explanation,
        "VM boots with 3 vCPUs = ceil(default_vcpus 1 + Σ cpu limits 2) and 8192 MiB = default_memory 2048 MiB \
         + Σ memory limits 6144 MiB"
    ));
    // pod cgroup: 6Gi + 160Mi (3.x RC) = 6304Mi < 8192 MiB (kata#12786)
    assert!(has_line(
        &sizing.explanation,
        "pod cgroup memory limit 6304Mi = Σ limits 6Gi + podFixed 160Mi: the VM's guest memory alone can \
         outgrow it (kata#12786)"
    ));
}

#[test]
fn a1_with_account_the_cgroup_holds_the_guest() {
    let mut qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    qemu.guest_memory = GuestMemory::Account;
    let input = pod(
        vec![container("app", &[], &[("cpu", "2"), ("memory", "6Gi")])],
        &[],
    );
    let sizing = size(&input, &qemu);
    // 6Gi + 2208Mi = 8352Mi ≥ 8192 MiB of guest
    assert!(has_line(
        &sizing.explanation,
        "pod cgroup memory limit 8352Mi = Σ limits 6Gi + podFixed 2208Mi: it holds the VM's guest memory"
    ));
}

#[test]
fn account_warns_when_an_annotation_outgrows_the_class() {
    let mut qemu = enabling(
        class("kata-qemu", KataRuntime::Go, "250m", "160Mi"),
        &["default_memory"],
    );
    qemu.guest_memory = GuestMemory::Account;
    let input = pod(
        vec![container("app", &[], &[("memory", "1Gi")])],
        &[(ANNOTATION_DEFAULT_MEMORY, "4096")],
    );
    let sizing = size(&input, &qemu);
    // VM 4096 + 1024 = 5120 MiB > cgroup 1Gi + 2208Mi = 3232Mi
    assert_eq!(sizing.vm.memory_mib, 5120);
    assert_eq!(sizing.warnings.len(), 1, "{:?}", sizing.warnings);
    assert!(sizing.warnings[0].starts_with(
        "the VM boots with 5120 MiB of guest memory but the pod cgroup allows 3232Mi"
    ));
    // with the class's own default the warning goes away
    let quiet = size(
        &pod(vec![container("app", &[], &[("memory", "1Gi")])], &[]),
        &qemu,
    );
    assert!(quiet.warnings.is_empty());
}

#[test]
fn a12_runtime_rs_static_sizing() {
    // A12: runtime-rs 4.x qemu (overhead 0.2 / 32), limits cpu 2 / memory
    // 6Gi: 2 + 0.2 = 2.2 → 3 vCPUs; 6144 + 32 = 6176 MiB.
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    let input = pod(
        vec![container("app", &[], &[("cpu", "2"), ("memory", "6Gi")])],
        &[],
    );
    let sizing = size(&input, &rs);
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 3,
            memory_mib: 6 * 1024 + 32
        }
    );
    assert!(has_line(
        &sizing.explanation,
        "VM boots with 3 vCPUs = ceil(max(overhead_vcpus 0.2 + Σ cpu limits 2, 1)) and 6176 MiB = \
         overhead_memory 32 MiB + Σ memory limits 6144 MiB"
    ));
}

/// A18: a Pod with limits cpu 1 / memory 1Gi (requests default to limits)
/// is scheduled on requests + podFixed.
#[rstest]
#[case::kata_qemu_4x(KataRuntime::Go, "250m", "320Mi", "1250m", "1344Mi")]
#[case::kata_clh(KataRuntime::Go, "250m", "130Mi", "1250m", "1154Mi")]
#[case::kata_qemu_tdx(KataRuntime::GoStatic, "1.0", "2048Mi", "2", "3Gi")]
#[case::kata_qemu_3x(KataRuntime::Go, "250m", "160Mi", "1250m", "1184Mi")]
fn a18_scheduling_footprint(
    #[case] runtime: KataRuntime,
    #[case] cpu: &str,
    #[case] memory: &str,
    #[case] expected_cpu: &str,
    #[case] expected_memory: &str,
) {
    let kata = class("k", runtime, cpu, memory);
    // derived: cpu 1 + podFixed, memory 1024 MiB + podFixed MiB
    let cpu_total = q("1").checked_add(q(cpu)).unwrap();
    assert_eq!(cpu_total, q(expected_cpu));
    assert_eq!(q(expected_memory).value(), 1024 * MIB + q(memory).value());

    let input = pod(
        vec![container(
            "app",
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        )],
        &[],
    );
    let sizing = size(&input, &kata);
    assert!(
        has_line(
            &sizing.explanation,
            &format!(
                "scheduler reserves cpu {expected_cpu} = requests 1 + podFixed {}, memory {expected_memory} = \
                 requests 1Gi + podFixed {}",
                q(cpu),
                q(memory)
            )
        ),
        "{:?}",
        sizing.explanation
    );
}

#[test]
fn cpu_limits_add_up_before_rounding_once() {
    // Go 3.3+: ceil(1 + 0.25 + 0.25) = 2, not 1 + ceil(0.25) + ceil(0.25) = 3
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let input = pod(
        vec![
            container("a", &[], &[("cpu", "250m")]),
            container("b", &[], &[("cpu", "250m")]),
        ],
        &[],
    );
    assert_eq!(size(&input, &qemu).vm.vcpus, 2);
}

#[test]
fn go_hotplug_counts_hugepages_and_go_static_does_not() {
    let limits = [("memory", "1Gi"), ("hugepages-2Mi", "512Mi")];
    let input = pod(vec![container("app", &[], &limits)], &[]);
    let go = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    assert_eq!(size(&input, &go).vm.memory_mib, 2048 + 1024 + 512);
    let go_static = class("kata-fc", KataRuntime::GoStatic, "250m", "130Mi");
    assert_eq!(size(&input, &go_static).vm.memory_mib, 2048 + 1024);
}

#[test]
fn go_memory_is_floored_to_mib_once() {
    // Without block rounding (a guest that reports no block size):
    // (2048 MiB + 1.5 MiB + 1.5 MiB) >> 20 = 2051 MiB.
    let mut qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    qemu.memory_block_size = q("0");
    let half = (3 * MIB / 2).to_string();
    let input = pod(
        vec![
            container("a", &[], &[("memory", &half)]),
            container("b", &[], &[("memory", &half)]),
        ],
        &[],
    );
    assert_eq!(size(&input, &qemu).vm.memory_mib, 2048 + 3);
    // With 128 MiB blocks: a starts, (2048 + 1.5) >> 20 = 2049, so Kata
    // hot-adds 1 MiB rounded up to 128 → 2176; b needs 2051 ≤ 2176: nothing.
    qemu.memory_block_size = q("128Mi");
    assert_eq!(size(&input, &qemu).vm.memory_mib, 2048 + 128);
}

#[rstest]
#[case::odd_rounds_up_to_even("513Mi", 514 + 32)]
#[case::even_stays("512Mi", 512 + 32)]
#[case::floor_then_even("513.5Mi", 514 + 32)]
#[case::one_mib_floor("1.5Mi", 2 + 32)]
fn runtime_rs_memory_rounds_up_to_even(#[case] limit: &str, #[case] expected_mib: u64) {
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    let input = pod(vec![container("app", &[], &[("memory", limit)])], &[]);
    let sizing = size(&input, &rs);
    assert_eq!(sizing.vm.memory_mib, expected_mib);
    // a memory-only limit still uses the overhead path: max(0.2 + 0, 1) = 1
    assert_eq!(sizing.vm.vcpus, 1);
}

#[test]
fn runtime_rs_cpu_only_limit_boots_overhead_memory() {
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    let input = pod(vec![container("app", &[], &[("cpu", "1500m")])], &[]);
    // ceil(0.2 + 1.5) = 2; memory = overhead_memory 32 MiB
    assert_eq!(
        size(&input, &rs).vm,
        VmEstimate {
            vcpus: 2,
            memory_mib: 32
        }
    );
}

#[test]
fn runtime_rs_without_limits_boots_the_default_vm() {
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    let settings = KataPodSettings {
        fill_limits: FillLimits::None,
        ..KataPodSettings::default()
    };
    let input = pod(vec![container("app", &[("memory", "4Gi")], &[])], &[]);
    let sizing = size_kata_pod(&input, &rs, &settings);
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 1,
            memory_mib: 2048
        }
    );
    // kata#13823: the 4Gi request adds nothing
    assert_eq!(
        sizing.warnings,
        [
            "container app requests memory 4Gi without a limit: Kata adds no VM capacity for it (kata#13823)"
        ]
    );
}

// === limit filling ===

#[test]
fn from_requests_fills_missing_limits() {
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let input = pod(
        vec![
            container("app", &[("cpu", "500m"), ("memory", "1Gi")], &[]),
            container(
                "sidecar",
                &[("cpu", "100m"), ("memory", "64Mi")],
                &[("memory", "128Mi")],
            ),
            container("idle", &[], &[]),
        ],
        &[],
    );
    let sizing = size(&input, &qemu);
    let changes: Vec<(usize, &str, Option<Quantity>, Quantity)> = sizing
        .changes
        .iter()
        .map(|c| (c.container, c.resource.as_str(), c.old, c.new))
        .collect();
    assert_eq!(
        changes,
        [
            (0, "cpu", None, q("500m")),
            (0, "memory", None, q("1Gi")),
            (1, "cpu", None, q("100m")),
        ]
    );
    assert!(sizing.changes[0].why.to_string().contains("kata#13823"));
    // the filled limits count: ceil(1 + 0.5 + 0.1) = 2; 2048 + 1024 + 128
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 2,
            memory_mib: 2048 + 1024 + 128
        }
    );
    assert!(sizing.warnings.is_empty());
}

#[test]
fn filling_is_idempotent() {
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let mut input = pod(
        vec![container("app", &[("cpu", "500m"), ("memory", "1Gi")], &[])],
        &[],
    );
    let first = size(&input, &qemu);
    for change in &first.changes {
        input.containers[change.container]
            .limits
            .insert(change.resource.clone(), change.new);
    }
    let second = size(&input, &qemu);
    assert!(second.changes.is_empty());
    assert!(second.annotation_changes.is_empty());
    assert_eq!(second.vm, first.vm);
}

#[test]
fn fill_limits_none_changes_nothing_and_warns() {
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let settings = KataPodSettings {
        fill_limits: FillLimits::None,
        ..KataPodSettings::default()
    };
    let input = pod(
        vec![container("app", &[("cpu", "500m"), ("memory", "1Gi")], &[])],
        &[],
    );
    let sizing = size_kata_pod(&input, &qemu, &settings);
    assert!(sizing.changes.is_empty());
    assert_eq!(sizing.warnings.len(), 2);
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 1,
            memory_mib: 2048
        }
    );
}

// === minimum memory ===

#[rstest]
#[case::below_minimum_go(KataRuntime::Go, "128", Some("256"))]
#[case::below_minimum_go_static(KataRuntime::GoStatic, "100", Some("256"))]
#[case::at_minimum(KataRuntime::Go, "256", None)]
#[case::above_minimum(KataRuntime::Go, "4096", None)]
#[case::runtime_rs_untouched(KataRuntime::RuntimeRs, "128", None)]
fn minimum_memory_annotation(
    #[case] runtime: KataRuntime,
    #[case] value: &str,
    #[case] raised: Option<&str>,
) {
    let kata = enabling(class("k", runtime, "250m", "160Mi"), &["default_memory"]);
    let input = pod(
        vec![container("app", &[], &[])],
        &[(ANNOTATION_DEFAULT_MEMORY, value)],
    );
    let sizing = size(&input, &kata);
    let expected: Vec<(String, String)> = raised
        .map(|v| (ANNOTATION_DEFAULT_MEMORY.to_owned(), v.to_owned()))
        .into_iter()
        .collect();
    assert_eq!(sizing.annotation_changes, expected);
    assert_eq!(sizing.warnings.len(), usize::from(raised.is_some()));
    if raised.is_some() {
        assert!(sizing.warnings[0].contains("less than minimum required 256"));
        // the VM boots with the raised value
        assert_eq!(sizing.vm.memory_mib, 256);
    }
}

#[test]
fn minimum_memory_follows_the_policy_and_rounds_up_to_mib() {
    let qemu = enabling(
        class("kata-qemu", KataRuntime::Go, "250m", "160Mi"),
        &["default_memory"],
    );
    let settings = KataPodSettings {
        min_memory: q("300000Ki"), // 292.97 MiB → 293
        ..KataPodSettings::default()
    };
    let input = pod(vec![], &[(ANNOTATION_DEFAULT_MEMORY, "290")]);
    let sizing = size_kata_pod(&input, &qemu, &settings);
    assert_eq!(
        sizing.annotation_changes,
        [(ANNOTATION_DEFAULT_MEMORY.to_owned(), "293".to_owned())]
    );
}

#[test]
fn unreadable_memory_annotation_is_left_with_a_warning() {
    let qemu = enabling(
        class("kata-qemu", KataRuntime::Go, "250m", "160Mi"),
        &["default_memory"],
    );
    let input = pod(vec![], &[(ANNOTATION_DEFAULT_MEMORY, "1Gi")]);
    let sizing = size(&input, &qemu);
    assert!(sizing.annotation_changes.is_empty());
    assert_eq!(sizing.warnings.len(), 1);
    assert!(sizing.warnings[0].contains("is not a whole number of MiB"));
    assert_eq!(sizing.vm.memory_mib, 2048);
}

// === default_vcpus annotation ===

#[test]
fn vcpus_annotation_with_cpu_limits_warns() {
    let qemu = enabling(
        class("kata-qemu", KataRuntime::Go, "250m", "160Mi"),
        &["default_vcpus"],
    );
    let input = pod(
        vec![container("app", &[], &[("cpu", "2")])],
        &[(ANNOTATION_DEFAULT_VCPUS, "2")],
    );
    let sizing = size(&input, &qemu);
    assert_eq!(
        sizing.warnings,
        [format!(
            "both annotation {ANNOTATION_DEFAULT_VCPUS}=2 and CPU limits (containers app) are set: Kata adds \
             the CPU limits on top of default_vcpus; Kata's advice is to set one or the other"
        )]
    );
    // ceil(2 + 2) = 4
    assert_eq!(sizing.vm.vcpus, 4);
}

#[test]
fn vcpus_annotation_alone_is_quiet() {
    let qemu = enabling(
        class("kata-qemu", KataRuntime::Go, "250m", "160Mi"),
        &["default_vcpus"],
    );
    let input = pod(
        vec![container("app", &[], &[("memory", "1Gi")])],
        &[(ANNOTATION_DEFAULT_VCPUS, "1.5")],
    );
    let sizing = size(&input, &qemu);
    assert!(sizing.warnings.is_empty());
    assert_eq!(sizing.vm.vcpus, 2);
}

#[test]
fn filled_cpu_limit_also_triggers_the_vcpus_warning() {
    let rs = class(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        "250m",
        "320Mi",
    );
    let input = pod(
        vec![container("app", &[("cpu", "1")], &[])],
        &[(ANNOTATION_DEFAULT_VCPUS, "4")],
    );
    let sizing = size(&input, &rs);
    assert_eq!(sizing.changes.len(), 1);
    assert_eq!(sizing.warnings.len(), 1);
    assert!(sizing.warnings[0].contains("runtime-rs ignores default_vcpus when any limit is set"));
    // ceil(max(0.2 + 1, 1)) = 2: the annotation plays no part
    assert_eq!(sizing.vm.vcpus, 2);
}

// === bad input ===

#[test]
fn negative_quantities_are_ignored_with_a_warning() {
    // The API server's validation (after the webhooks) rejects the Pod; we
    // neither fill from a negative request nor count a negative limit.
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let input = pod(
        vec![container("app", &[("cpu", "-1")], &[("memory", "-1Gi")])],
        &[],
    );
    let sizing = size(&input, &qemu);
    assert!(sizing.changes.is_empty());
    assert_eq!(
        sizing.warnings,
        [
            "container app has a negative cpu request -1: the API server rejects it; ignored",
            "container app has a negative memory limit -1Gi: the API server rejects it; ignored",
        ]
    );
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 1,
            memory_mib: 2048
        }
    );
}

#[test]
fn huge_limits_saturate_instead_of_overflowing() {
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let huge = "100000000000E"; // 1e29 units: two of them overflow i128 nanounits
    let input = pod(
        vec![
            container("a", &[("memory", huge)], &[("memory", huge), ("cpu", huge)]),
            container("b", &[("memory", huge)], &[("memory", huge), ("cpu", huge)]),
        ],
        &[],
    );
    let sizing = size(&input, &qemu);
    assert!(sizing.vm.memory_mib > 1 << 60);
    // The kubelet's CFS quota saturates at i64::MAX µs, 9.2e13 vCPUs a
    // container at the 100 ms period: two of them are above 2^47.
    assert!(sizing.vm.vcpus > 1 << 47);
}

#[test]
fn spec_overhead_is_never_an_output() {
    // The output type has no overhead field: only limits and annotations.
    let qemu = class("kata-qemu", KataRuntime::Go, "250m", "160Mi");
    let sizing = size(
        &pod(vec![container("app", &[("memory", "1Gi")], &[])], &[]),
        &qemu,
    );
    assert!(
        sizing
            .changes
            .iter()
            .all(|c| c.resource == "cpu" || c.resource == "memory")
    );
    assert!(
        sizing
            .annotation_changes
            .iter()
            .all(|(key, _)| key.starts_with("io.katacontainers.config.hypervisor."))
    );
}
