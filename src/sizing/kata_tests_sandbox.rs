//! The sandbox model against Kata's own code: each expected VM is worked
//! out in the test from the Kata function that sizes it (Go runtime 3.32.0,
//! runtime-rs 4.1.0) and the kubelet's Pod rules, never taken from
//! virt-sizer's output.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rstest::rstest;

use super::*;

const MIB: i128 = 1 << 20;

fn q(text: &str) -> Quantity {
    Quantity::parse(text).unwrap()
}

fn resources(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), q(v))).collect()
}

/// A container with limits only (the API server defaults requests to them).
fn limited(name: &str, limits: &[(&str, &str)]) -> ContainerResources {
    ContainerResources {
        name: name.to_owned(),
        requests: BTreeMap::new(),
        limits: resources(limits),
        sidecar: false,
    }
}

fn sidecar(name: &str, limits: &[(&str, &str)]) -> ContainerResources {
    ContainerResources {
        sidecar: true,
        ..limited(name, limits)
    }
}

fn pod(
    init_containers: Vec<ContainerResources>,
    containers: Vec<ContainerResources>,
    annotations: &[(&str, &str)],
) -> KataPodInput {
    KataPodInput {
        init_containers,
        containers,
        annotations: annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A class with Kata's defaults (`default_vcpus` 1, `default_memory` 2048
/// MiB, the shipped `enable_annotations`) and kata-deploy 3.x's VMM.
fn class(runtime: KataRuntime) -> KataClass {
    KataClass::with_defaults(
        "kata",
        runtime,
        PodFixed {
            cpu: q("250m"),
            memory: q("160Mi"),
        },
    )
}

fn enabling(mut class: KataClass, patterns: &[&str]) -> KataClass {
    class.enable_annotations = EnableAnnotations::new(patterns).unwrap();
    class
}

fn size(input: &KataPodInput, class: &KataClass) -> KataPodSizing {
    size_kata_pod(input, class, &KataPodSettings::default())
}

fn has_line(sizing: &KataPodSizing, needle: &str) -> bool {
    sizing
        .explanation
        .iter()
        .any(|line| line.to_string().contains(needle))
}

fn lines(sizing: &KataPodSizing) -> Vec<String> {
    sizing.explanation.lines()
}

// === Go hotplug: whole memory blocks ===

/// `kata-qemu` (`default_memory` 2048), one container with a 100Mi limit.
/// `updateResources` asks for (2048 MiB + 100 MiB) >> 20 = 2148 MiB;
/// `ResizeMemory` hot-adds 2148 − 2048 = 100 MiB, which
/// `calcHotplugMemMiBSize` rounds up to ⌈100 / 128⌉ × 128 = 128: the VM
/// holds 2048 + 128 = 2176 MiB.
#[test]
fn hotplug_rounds_the_hot_add_up_to_the_memory_block() {
    let input = pod(vec![], vec![limited("app", &[("memory", "100Mi")])], &[]);
    let sizing = size(&input, &class(KataRuntime::Go));
    assert_eq!(sizing.vm.memory_mib, 2048 + 128);
    assert!(
        has_line(
            &sizing,
            "container app starts: Kata hot-adds 128 MiB (100 MiB rounded up to whole 128 MiB blocks) → 2176 MiB"
        ),
        "{:#?}",
        lines(&sizing)
    );
    assert!(has_line(
        &sizing,
        "and 2176 MiB = default_memory 2048 MiB + Σ memory limits 100 MiB + 28 MiB hot-added beyond them"
    ));
}

/// Each hot-add is rounded from what the VM already holds: 300Mi → 2048 +
/// ⌈300/128⌉ × 128 = 2432; then 10Mi more needs 2048 + 310 = 2358 ≤ 2432,
/// so nothing is added. Two 100Mi containers: 2148 → +128 = 2176, then
/// 2248 − 2176 = 72 → +128 = 2304.
#[rstest]
#[case::absorbed(&["300Mi", "10Mi"], 2048 + 3 * 128)]
#[case::two_steps(&["100Mi", "100Mi"], 2048 + 2 * 128)]
#[case::whole_blocks(&["256Mi", "128Mi"], 2048 + 384)]
fn hotplug_rounds_each_step_from_the_current_memory(
    #[case] limits: &[&str],
    #[case] expected_mib: u64,
) {
    let containers = limits
        .iter()
        .enumerate()
        .map(|(i, memory)| limited(&format!("c{i}"), &[("memory", memory)]))
        .collect();
    let sizing = size(&pod(vec![], containers, &[]), &class(KataRuntime::Go));
    assert_eq!(sizing.vm.memory_mib, expected_mib);
}

/// The block is a class setting; the static modes never hot-add, so their
/// 2048 + 100 is exact.
#[test]
fn the_block_size_is_the_class_s_and_only_hotplug_rounds() {
    let input = pod(vec![], vec![limited("app", &[("memory", "100Mi")])], &[]);
    let mut go = class(KataRuntime::Go);
    go.memory_block_size = q("256Mi");
    assert_eq!(size(&input, &go).vm.memory_mib, 2048 + 256);
    assert_eq!(
        size(&input, &class(KataRuntime::GoStatic)).vm.memory_mib,
        2048 + 100
    );
}

// === init containers and sidecars ===

/// An app with a CPU limit of 2 and a sidecar with 1.
/// * Go hotplug: `calculateSandboxCPUs` sums the running containers
///   (sidecar 1 + app 2 = 3) and `updateResources` adds `default_vcpus` 1:
///   ceil(4) = 4.
/// * Go static: the kubelet's `PodLimits` adds the sidecar: 2 + 1 = 3, and
///   `SandboxConfig` adds `default_vcpus`: ceil(1 + 3) = 4.
/// * runtime-rs: ceil(max(0.2 + 3, 1)) = ceil(3.2) = 4.
#[rstest]
#[case::go(KataRuntime::Go)]
#[case::go_static(KataRuntime::GoStatic)]
#[case::runtime_rs(KataRuntime::RuntimeRs)]
fn a_sidecar_adds_its_cpus(#[case] runtime: KataRuntime) {
    let input = pod(
        vec![sidecar("proxy", &[("cpu", "1")])],
        vec![limited("app", &[("cpu", "2")])],
        &[],
    );
    assert_eq!(size(&input, &class(runtime)).vm.vcpus, 4);
}

/// An app of 1Gi after an init container of 4Gi.
/// * Go hotplug: the init container starts: 2048 + 4096 = 6144 (whole
///   blocks); it exits, the app needs 2048 + 1024 = 3072 < 6144 and memory
///   is never unplugged (`ResizeMemory`'s hot-remove does nothing): 6144.
/// * Go static: `PodLimits` takes max(4096, 1024) = 4096: 2048 + 4096 =
///   6144.
/// * runtime-rs: `overhead_memory` 32 + 4096 = 4128.
#[rstest]
#[case::go(KataRuntime::Go, 2048 + 4096)]
#[case::go_static(KataRuntime::GoStatic, 2048 + 4096)]
#[case::runtime_rs(KataRuntime::RuntimeRs, 32 + 4096)]
fn an_init_container_s_memory_counts(#[case] runtime: KataRuntime, #[case] expected: u64) {
    let input = pod(
        vec![limited("migrate", &[("memory", "4Gi")])],
        vec![limited("app", &[("memory", "1Gi")])],
        &[],
    );
    let sizing = size(&input, &class(runtime));
    assert_eq!(sizing.vm.memory_mib, expected);
    if runtime == KataRuntime::Go {
        assert!(
            has_line(
                &sizing,
                "container app starts: Kata memory stays 6144 MiB (needs 3072; never unplugged)"
            ),
            "{:#?}",
            lines(&sizing)
        );
    }
}

/// An init container's vCPUs are hot-removed when it has exited: init 4
/// CPUs, app 1: while the init container runs, ceil(4 + 1) = 5 vCPUs; then
/// ceil(1 + 1) = 2. Static: max(4, 1) = 4 → ceil(1 + 4) = 5, for good.
#[test]
fn an_init_container_s_cpus_are_given_back_in_hotplug_mode_only() {
    let input = pod(
        vec![limited("build", &[("cpu", "4")])],
        vec![limited("app", &[("cpu", "1")])],
        &[],
    );
    let hotplug = size(&input, &class(KataRuntime::Go));
    assert_eq!(hotplug.vm.vcpus, 2);
    assert!(has_line(&hotplug, "(5 vCPUs while init containers ran)"));
    assert_eq!(size(&input, &class(KataRuntime::GoStatic)).vm.vcpus, 5);
}

/// The order the kubelet starts them in: sidecar (64Mi), init (1Gi), app
/// (512Mi). Hotplug: the sidecar needs 2048 + 64 = 2112, a hot-add of 64
/// rounded up to one block → 2176; the init container runs beside it and
/// needs 2048 + 64 + 1024 = 3136, a hot-add of 960 = 7.5 blocks → 8 blocks
/// = 1024 → 3200; the app runs beside the sidecar and needs 2048 + 64 +
/// 512 = 2624 < 3200 → 3200. Static: `PodLimits` = max(64 + 512, 64 +
/// 1024) = 1088 → 2048 + 1088 = 3136.
#[test]
fn sidecars_count_beside_the_init_containers_after_them() {
    let input = pod(
        vec![
            sidecar("log", &[("memory", "64Mi")]),
            limited("init", &[("memory", "1Gi")]),
        ],
        vec![limited("app", &[("memory", "512Mi")])],
        &[],
    );
    // 2048 + 128 (64 → one block) + 1024 (960 → 8 blocks) = 3200
    assert_eq!(
        size(&input, &class(KataRuntime::Go)).vm.memory_mib,
        2048 + 128 + 1024
    );
    assert_eq!(
        size(&input, &class(KataRuntime::GoStatic)).vm.memory_mib,
        2048 + 64 + 1024
    );
}

// === float32 ===

/// Five containers of 1.1, 1.1, 1.1, 1.3 and 1.4 CPUs plus `default_vcpus`
/// of 1. Go hotplug: `CalculateCPUsF` gives float32(110000) /
/// float32(100000), which is 1.10000002384…, and the float32 running sums
/// are 2.20000005, 3.30000019, 4.60000038 and 6.00000048; adding 1 gives
/// 7.00000048, whose ceiling is 8. Go static reads the Pod's limit, 6000m,
/// quota 600000, exactly 6.0: ceil(1 + 6) is 7.
#[test]
fn cpu_fractions_are_summed_in_float32() {
    let containers = ["1.1", "1.1", "1.1", "1.3", "1.4"]
        .iter()
        .enumerate()
        .map(|(i, cpu)| limited(&format!("c{i}"), &[("cpu", cpu)]))
        .collect();
    let input = pod(vec![], containers, &[]);
    let hotplug = size(&input, &class(KataRuntime::Go));
    assert_eq!(hotplug.vm.vcpus, 8);
    assert!(
        has_line(
            &hotplug,
            "VM boots with 8 vCPUs = ceil(default_vcpus 1 + Σ cpu limits 6.0000005)"
        ),
        "{:#?}",
        lines(&hotplug)
    );
    assert_eq!(size(&input, &class(KataRuntime::GoStatic)).vm.vcpus, 7);
}

/// The kubelet's `milliCPUToQuota` gives a limit below 10m a quota of 1000
/// µs (10m). Eleven containers of 1m on a hotplug class with
/// `default_vcpus` 900m: each adds 0.01, 0.9 + 0.11 = 1.01 → 2 vCPUs (1m
/// each would give 0.911 → 1). Go static reads the Pod's limit of 11m →
/// quota 1100 → 0.011: 0.9 + 0.011 → 1. One container of 1m on a static
/// class with 995m: 0.995 + 0.01 = 1.005 → 2 (exactly: 0.996 → 1).
#[test]
fn a_cpu_limit_below_10m_counts_as_10m() {
    let containers = (0..11)
        .map(|i| limited(&format!("c{i}"), &[("cpu", "1m")]))
        .collect();
    let input = pod(vec![], containers, &[]);
    let mut go = class(KataRuntime::Go);
    go.default_vcpus = q("900m");
    assert_eq!(size(&input, &go).vm.vcpus, 2);
    let mut go_static = class(KataRuntime::GoStatic);
    go_static.default_vcpus = q("900m");
    assert_eq!(size(&input, &go_static).vm.vcpus, 1);

    let one = pod(vec![], vec![limited("app", &[("cpu", "1m")])], &[]);
    go_static.default_vcpus = q("995m");
    assert_eq!(size(&one, &go_static).vm.vcpus, 2);
}

// === default_vcpus ===

/// Static, `default_vcpus` 2, a CPU limit of 1500m and the annotation "0":
/// `addHypervisorCPUOverrides` sets `NumVCPUsF` = 0; `SandboxConfig` adds
/// the workload, 0 + 1.5 = 1.5; `validateHypervisorConfig` leaves a nonzero
/// value alone: ceil(1.5) = 2. Without the annotation: ceil(2 + 1.5) = 4.
/// Hotplug with "0": `validateHypervisorConfig` makes it 1, then
/// ceil(1.5 + 1) = 3.
#[test]
fn a_zero_default_vcpus_annotation_is_what_kata_makes_of_it() {
    let input = |annotations: &[(&str, &str)]| {
        pod(
            vec![],
            vec![limited("app", &[("cpu", "1500m")])],
            annotations,
        )
    };
    let mut go_static = enabling(class(KataRuntime::GoStatic), &["default_vcpus"]);
    go_static.default_vcpus = q("2");
    let zero = [(ANNOTATION_DEFAULT_VCPUS, "0")];
    assert_eq!(size(&input(&zero), &go_static).vm.vcpus, 2);
    assert_eq!(size(&input(&[]), &go_static).vm.vcpus, 4);
    let mut go = enabling(class(KataRuntime::Go), &["default_vcpus"]);
    go.default_vcpus = q("2");
    assert_eq!(size(&input(&zero), &go).vm.vcpus, 3);
    // Static "0" and no CPU limit: 0 + 0 = 0, which validation makes 1.
    let no_limit = pod(vec![], vec![limited("app", &[("memory", "1Gi")])], &zero);
    assert_eq!(size(&no_limit, &go_static).vm.vcpus, 1);
}

/// "500m" is a Kubernetes quantity, not the plain number Kata's
/// `setFloat32WithCheck` (`strconv.ParseFloat`) and runtime-rs's
/// `parse::<f32>` read: both refuse the sandbox, and the estimate keeps the
/// class's `default_vcpus` (ceil(1 + 0) = 1).
#[rstest]
#[case::go(KataRuntime::Go)]
#[case::runtime_rs(KataRuntime::RuntimeRs)]
fn a_quantity_as_default_vcpus_is_refused(#[case] runtime: KataRuntime) {
    let kata = enabling(class(runtime), &["default_vcpus"]);
    let input = pod(
        vec![],
        vec![limited("app", &[])],
        &[(ANNOTATION_DEFAULT_VCPUS, "500m")],
    );
    let sizing = size(&input, &kata);
    assert_eq!(sizing.refused.len(), 1, "{:?}", sizing.warnings);
    assert!(sizing.refused[0].contains("=\"500m\" is not a plain number"));
    assert_eq!(sizing.warnings, sizing.refused);
    assert_eq!(sizing.vm.vcpus, 1);
    assert!(has_line(&sizing, "Kata refuses to start this sandbox"));
}

/// runtime-rs loads `default_vcpus = 0` as 1 (`CpuInfo::adjust_config`),
/// from its configuration and from the annotation alike; so does the Go
/// runtime's configuration (`defaultVCPUs`).
#[rstest]
#[case::runtime_rs(KataRuntime::RuntimeRs)]
#[case::go(KataRuntime::Go)]
#[case::go_static(KataRuntime::GoStatic)]
fn a_zero_default_vcpus_loads_as_one(#[case] runtime: KataRuntime) {
    let mut kata = class(runtime);
    kata.default_vcpus = q("0");
    let input = pod(vec![], vec![limited("app", &[])], &[]);
    assert_eq!(size(&input, &kata).vm.vcpus, 1);
    if runtime == KataRuntime::RuntimeRs {
        let annotated = pod(
            vec![],
            vec![limited("app", &[])],
            &[(ANNOTATION_DEFAULT_VCPUS, "0")],
        );
        let rs = class(runtime);
        assert_eq!(size(&annotated, &rs).vm.vcpus, 1);
    }
}

// === enable_annotations ===

/// Kata's shipped Go configurations enable only `enable_iommu`,
/// `kernel_params` and `kernel_verity_params`: `addAnnotations` refuses a
/// sandbox carrying `default_vcpus`. runtime-rs's shipped list has it, and
/// runtime-rs ignores (does not refuse) an annotation its list lacks.
#[test]
fn shipped_lists_decide_which_annotations_are_read() {
    let input = pod(
        vec![],
        vec![limited("app", &[])],
        &[
            (ANNOTATION_DEFAULT_VCPUS, "3"),
            ("io.katacontainers.config.hypervisor.kernel_params", "quiet"),
        ],
    );
    let go = size(&input, &class(KataRuntime::Go));
    assert_eq!(
        go.refused,
        [format!(
            "annotation {ANNOTATION_DEFAULT_VCPUS} is not in enableAnnotations [enable_iommu, kernel_params, \
             kernel_verity_params] of runtime class kata: Kata's Go runtime refuses the sandbox (\"annotation \
             {ANNOTATION_DEFAULT_VCPUS} is not enabled\")"
        )]
    );
    // the estimate leaves the refused annotation out: ceil(1) = 1
    assert_eq!(go.vm.vcpus, 1);

    let rs = size(&input, &class(KataRuntime::RuntimeRs));
    assert!(
        rs.refused.is_empty() && rs.warnings.is_empty(),
        "{:?}",
        rs.warnings
    );
    // no limits: default_vcpus from the annotation, ceil(3) = 3
    assert_eq!(rs.vm.vcpus, 3);

    let virtio = pod(
        vec![],
        vec![limited("app", &[])],
        &[(
            "io.katacontainers.config.hypervisor.enable_virtio_mem",
            "true",
        )],
    );
    let rs = size(&virtio, &class(KataRuntime::RuntimeRs));
    assert!(rs.refused.is_empty());
    assert_eq!(rs.warnings.len(), 1);
    assert!(rs.warnings[0].ends_with("runtime-rs ignores it"));
}

/// Patterns are regular expressions matched anywhere in the name after the
/// prefix (Go `regexp.MatchString`, runtime-rs `RegexSet::is_match`):
/// `vcpus` enables `default_vcpus` and `default_max_vcpus`; annotations
/// outside `io.katacontainers.config.hypervisor.` are never checked.
#[test]
fn patterns_match_unanchored() {
    let list = EnableAnnotations::new(&["vcpus", "^kernel_params$"]).unwrap();
    assert!(list.enables(ANNOTATION_DEFAULT_VCPUS));
    assert!(list.enables("io.katacontainers.config.hypervisor.default_max_vcpus"));
    assert!(list.enables("io.katacontainers.config.hypervisor.kernel_params"));
    assert!(!list.enables("io.katacontainers.config.hypervisor.kernel_params_extra"));
    assert!(!list.enables(ANNOTATION_DEFAULT_MEMORY));
    assert!(!list.enables("vcpus"));
    let kata = KataClass {
        enable_annotations: list,
        ..class(KataRuntime::Go)
    };
    let input = pod(
        vec![],
        vec![limited("app", &[])],
        &[(
            "io.katacontainers.config.runtime.sandbox_cgroup_only",
            "true",
        )],
    );
    assert!(size(&input, &kata).warnings.is_empty());
}

// === default_memory ===

/// runtime-rs's `convert_to_megabytes` reads `"2Gi"` as 2048 MiB and a
/// plain number as MiB; with no limits the VM boots with it.
/// `"2G"` is 2·10^9 bytes: ⌊1907.35⌋ = 1907 MiB. The Go runtime's
/// `ParseUint` refuses `"2Gi"`.
#[rstest]
#[case::binary("3Gi", 3072)]
#[case::plain("4096", 4096)]
#[case::decimal("2G", 1907)]
fn runtime_rs_reads_default_memory_with_units(#[case] text: &str, #[case] expected: u64) {
    let input = pod(
        vec![],
        vec![limited("app", &[])],
        &[(ANNOTATION_DEFAULT_MEMORY, text)],
    );
    let sizing = size(&input, &class(KataRuntime::RuntimeRs));
    assert!(sizing.warnings.is_empty(), "{:?}", sizing.warnings);
    assert_eq!(sizing.vm.memory_mib, expected);
}

#[test]
fn the_go_runtime_refuses_default_memory_with_a_unit() {
    let go = enabling(class(KataRuntime::Go), &["default_memory"]);
    let input = pod(
        vec![],
        vec![limited("app", &[])],
        &[(ANNOTATION_DEFAULT_MEMORY, "2Gi")],
    );
    let sizing = size(&input, &go);
    assert_eq!(sizing.refused.len(), 1);
    assert!(sizing.refused[0].contains("is not a whole number of MiB"));
}

/// runtime-rs refuses a `default_memory` below the hypervisor's minimum (64
/// MiB for QEMU) and ignores text `byte-unit` cannot read.
#[test]
fn runtime_rs_default_memory_minimum_and_garbage() {
    let sized = |text: &str| {
        size(
            &pod(
                vec![],
                vec![limited("app", &[])],
                &[(ANNOTATION_DEFAULT_MEMORY, text)],
            ),
            &class(KataRuntime::RuntimeRs),
        )
    };
    let small = sized("32");
    assert_eq!(small.refused.len(), 1);
    assert!(small.refused[0].contains("is 32 MiB, below 64 MiB"));
    let garbage = sized("lots");
    assert!(garbage.refused.is_empty());
    assert_eq!(garbage.warnings.len(), 1);
    assert!(garbage.warnings[0].contains("it ignores the annotation"));
    // the configured default_memory stays
    assert_eq!(garbage.vm.memory_mib, 2048);
}

// === fillLimits and the Pod's figures ===

/// `FromRequests` fills init containers and sidecars as it fills app
/// containers, in their own list.
#[test]
fn from_requests_fills_init_containers_and_sidecars() {
    let init = ContainerResources {
        requests: resources(&[("memory", "512Mi")]),
        ..limited("init", &[])
    };
    let proxy = ContainerResources {
        requests: resources(&[("cpu", "100m")]),
        ..sidecar("proxy", &[])
    };
    let input = pod(
        vec![init, proxy],
        vec![limited("app", &[("cpu", "1")])],
        &[],
    );
    let sizing = size(&input, &class(KataRuntime::GoStatic));
    let changes: Vec<(ContainerList, usize, Section, &str, Quantity)> = sizing
        .changes
        .iter()
        .map(|c| (c.list, c.container, c.section, c.resource.as_str(), c.new))
        .collect();
    assert_eq!(
        changes,
        [
            (
                ContainerList::InitContainers,
                0,
                Section::Limits,
                "memory",
                q("512Mi")
            ),
            (
                ContainerList::InitContainers,
                1,
                Section::Limits,
                "cpu",
                q("100m")
            ),
        ]
    );
    assert!(
        sizing.changes[0]
            .why
            .to_string()
            .starts_with("init container init memory limit := request 512Mi")
    );
    assert!(
        sizing.changes[1]
            .why
            .to_string()
            .starts_with("sidecar proxy cpu limit := request 100m")
    );
    // The filled limits count: Pod cpu limit 1 + 0.1 = 1.1 → ceil(1 + 1.1)
    // = 3; Pod memory limit max(0, 512) = 512 → 2048 + 512.
    assert_eq!(
        sizing.vm,
        VmEstimate {
            vcpus: 3,
            memory_mib: 2048 + 512
        }
    );
}

/// With `fillLimits: None`, request-only init containers and sidecars are
/// warned about like app containers.
#[test]
fn fill_limits_none_warns_about_init_containers() {
    let init = ContainerResources {
        requests: resources(&[("memory", "512Mi")]),
        ..limited("init", &[])
    };
    let settings = KataPodSettings {
        fill_limits: FillLimits::None,
        ..KataPodSettings::default()
    };
    let sizing = size_kata_pod(
        &pod(vec![init], vec![limited("app", &[])], &[]),
        &class(KataRuntime::Go),
        &settings,
    );
    assert_eq!(
        sizing.warnings,
        [
            "init container init requests memory 512Mi without a limit: Kata adds no VM capacity for it (kata#13823)"
        ]
    );
}

/// The Pod cgroup and the scheduler follow the kubelet's Pod rules: an init
/// container of 4Gi and an app of 1Gi give a Pod limit of 4Gi, so the
/// cgroup is 4Gi + 160Mi = 4256Mi; the scheduler reserves the same for
/// memory.
#[test]
fn the_pod_cgroup_takes_the_init_container_maximum() {
    let input = pod(
        vec![limited("migrate", &[("memory", "4Gi")])],
        vec![limited("app", &[("memory", "1Gi")])],
        &[],
    );
    let sizing = size(&input, &class(KataRuntime::GoStatic));
    assert!(
        has_line(
            &sizing,
            "pod cgroup memory limit 4256Mi = Pod limit 4Gi + podFixed 160Mi: the VM's guest memory alone can \
             outgrow it"
        ),
        "{:#?}",
        lines(&sizing)
    );
    assert!(has_line(
        &sizing,
        "memory 4256Mi = requests 4Gi + podFixed 160Mi (init containers take the maximum, sidecars add)"
    ));
}

// === guestMemory: Account ===

/// `kata-qemu` with `guestMemory: Account` and `sandbox_cgroup_only`, one
/// container of 100Mi (request = limit). Unrounded, the cgroup would be
/// 100Mi + podFixed (160 + 2048) = 2308Mi, but the VM holds 2176 MiB (see
/// the block test) and the VMM's 160Mi sits in the cgroup too: 2336 >
/// 2308. Account rounds the limit (and the equal request) up to 128Mi: the
/// cgroup is 128 + 2208 = 2336Mi = 2176 + 160.
#[test]
fn account_rounds_limits_to_blocks_so_the_cgroup_holds_the_vm_and_the_vmm() {
    let mut qemu = class(KataRuntime::Go);
    qemu.guest_memory = GuestMemory::Account;
    qemu.sandbox_cgroup_only = true;
    let app = ContainerResources {
        requests: resources(&[("memory", "100Mi")]),
        ..limited("app", &[("memory", "100Mi")])
    };
    let input = pod(vec![], vec![app], &[]);
    let sizing = size(&input, &qemu);
    let changes: Vec<(Section, Option<Quantity>, Quantity)> = sizing
        .changes
        .iter()
        .map(|c| (c.section, c.old, c.new))
        .collect();
    assert_eq!(
        changes,
        [
            (Section::Limits, Some(q("100Mi")), q("128Mi")),
            (Section::Requests, Some(q("100Mi")), q("128Mi")),
        ]
    );
    assert_eq!(sizing.vm.memory_mib, 2048 + 128);
    assert!(sizing.warnings.is_empty(), "{:?}", sizing.warnings);
    assert!(
        has_line(
            &sizing,
            "pod cgroup memory limit 2336Mi = Σ limits 128Mi + podFixed 2208Mi: it holds the VM's guest memory \
             and the VMM's 160Mi (sandbox_cgroup_only)"
        ),
        "{:#?}",
        lines(&sizing)
    );
    // Sized again, the Pod needs nothing more.
    let rounded = ContainerResources {
        requests: resources(&[("memory", "128Mi")]),
        ..limited("app", &[("memory", "128Mi")])
    };
    let again = size(&pod(vec![], vec![rounded], &[]), &qemu);
    assert!(again.changes.is_empty());
    assert_eq!(again.vm, sizing.vm);
}

/// A request below its limit stays: only the limit is raised (the Pod was
/// not Guaranteed). Without a memory limit on every container the Pod cgroup
/// has none, and nothing is rounded.
#[test]
fn account_rounding_leaves_lower_requests_and_unlimited_pods() {
    let mut qemu = class(KataRuntime::Go);
    qemu.guest_memory = GuestMemory::Account;
    let app = ContainerResources {
        requests: resources(&[("memory", "50Mi")]),
        ..limited("app", &[("memory", "100Mi")])
    };
    let sizing = size(&pod(vec![], vec![app.clone()], &[]), &qemu);
    assert_eq!(sizing.changes.len(), 1);
    assert_eq!(sizing.changes[0].section, Section::Limits);

    let settings = KataPodSettings {
        fill_limits: FillLimits::None,
        ..KataPodSettings::default()
    };
    let unlimited = pod(vec![], vec![app, limited("idle", &[])], &[]);
    assert!(
        size_kata_pod(&unlimited, &qemu, &settings)
            .changes
            .is_empty()
    );
}

/// With `sandbox_cgroup_only`, the verdict counts the VMM. Go static,
/// Account (podFixed 160 + 2048 = 2208Mi), a 100Mi container and a
/// `default_memory` annotation of 2100: the VM boots 2100 + 100 = 2200 MiB
/// ≤ the cgroup's 100 + 2208 = 2308, but with the VMM's 160: 2360 > 2308.
#[test]
fn the_verdict_counts_the_vmm_in_the_pod_cgroup() {
    let mut kata = enabling(class(KataRuntime::GoStatic), &["default_memory"]);
    kata.guest_memory = GuestMemory::Account;
    kata.sandbox_cgroup_only = true;
    let input = pod(
        vec![],
        vec![limited("app", &[("memory", "100Mi")])],
        &[(ANNOTATION_DEFAULT_MEMORY, "2100")],
    );
    let sizing = size(&input, &kata);
    assert_eq!(sizing.vm.memory_mib, 2100 + 100);
    assert!(has_line(
        &sizing,
        "pod cgroup memory limit 2308Mi = Σ limits 100Mi + podFixed 2208Mi: the VM's guest memory and the \
         VMM's 160Mi (sandbox_cgroup_only) can outgrow it (kata#12786)"
    ));
    assert_eq!(sizing.warnings.len(), 1);
    assert!(sizing.warnings[0].starts_with(
        "the VM boots with 2200 MiB of guest memory, plus the VMM's 160Mi (sandbox_cgroup_only), but the pod \
         cgroup allows 2308Mi"
    ));
}

/// runtime-rs with Account: a Pod limit of 513 MiB boots 32 + 514 = 546
/// MiB (`convert_memory_to_mb` rounds the odd 513 up); with the VMM's
/// 320Mi in the cgroup (runtime-rs's `sandbox_cgroup_only` default) that is
/// 866 MiB, and the cgroup is 513 + podFixed (320 + 32 + 1) = 866Mi.
#[test]
fn runtime_rs_account_covers_the_even_mib_rounding() {
    let mut rs = KataClass::with_defaults(
        "kata-qemu-runtime-rs",
        KataRuntime::RuntimeRs,
        PodFixed {
            cpu: q("250m"),
            memory: q("320Mi"),
        },
    );
    rs.guest_memory = GuestMemory::Account;
    let input = pod(vec![], vec![limited("app", &[("memory", "513Mi")])], &[]);
    let sizing = size(&input, &rs);
    assert_eq!(sizing.vm.memory_mib, 32 + 514);
    assert!(sizing.warnings.is_empty(), "{:?}", sizing.warnings);
    assert!(has_line(
        &sizing,
        "pod cgroup memory limit 866Mi = Σ limits 513Mi + podFixed 353Mi: it holds"
    ));
}

// === properties ===

/// A container in start order for the property tests: its role and its
/// memory limit in MiB.
fn arbitrary_pod() -> impl Strategy<Value = KataPodInput> {
    let container = (0_u8..3, 1_u64..4096, 0_u64..1_048_576);
    prop::collection::vec(container, 1..8).prop_map(|containers| {
        let mut input = pod(vec![], vec![], &[]);
        for (i, (kind, mib, extra_bytes)) in containers.into_iter().enumerate() {
            let bytes = (mib << 20) + extra_bytes;
            let c = limited(&format!("c{i}"), &[("memory", &bytes.to_string())]);
            match kind {
                0 => input.containers.push(c),
                1 => input.init_containers.push(c),
                _ => input
                    .init_containers
                    .push(ContainerResources { sidecar: true, ..c }),
            }
        }
        if input.containers.is_empty() {
            input.containers.push(limited("app", &[]));
        }
        input
    })
}

/// The Pod's memory limit by the kubelet's rules, computed here directly:
/// max(Σ app + Σ sidecar, max over init containers of (it + the sidecars
/// before it), max over sidecars of the sidecars up to it).
fn pod_memory_limit(input: &KataPodInput) -> i128 {
    let value = |c: &ContainerResources| c.limits.get("memory").map_or(0, Quantity::value);
    let mut sidecars = 0;
    let mut init_peak = 0;
    for c in &input.init_containers {
        if c.sidecar {
            sidecars += value(c);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(value(c) + sidecars);
        }
    }
    let running = sidecars + input.containers.iter().map(value).sum::<i128>();
    running.max(init_peak)
}

proptest! {
    /// Two models, one figure. The Go hotplug replay only ever grows by
    /// whole blocks towards the largest amount running at once, which is the
    /// kubelet's Pod limit: VM = 2048 + ⌈⌊Pod limit / MiB⌋ / 128⌉ × 128
    /// (below 48 × 2048 MiB of hot-add, one ACPI step each time). Go static
    /// boots 2048 + ⌊Pod limit / MiB⌋.
    #[test]
    fn hotplug_ends_at_the_pod_limit_in_whole_blocks(input in arbitrary_pod()) {
        let limit_mib = u64::try_from(pod_memory_limit(&input) / MIB).unwrap();
        let hotplug = size(&input, &class(KataRuntime::Go));
        prop_assert_eq!(hotplug.vm.memory_mib, 2048 + limit_mib.div_ceil(128) * 128);
        let go_static = size(&input, &class(KataRuntime::GoStatic));
        prop_assert_eq!(go_static.vm.memory_mib, 2048 + limit_mib);
    }

    /// Sizing what virt-sizer wrote changes nothing more, whatever the
    /// runtime and guest memory mode.
    #[test]
    fn sizing_is_idempotent(
        input in arbitrary_pod(),
        runtime in prop::sample::select(vec![KataRuntime::Go, KataRuntime::GoStatic, KataRuntime::RuntimeRs]),
        account in any::<bool>(),
    ) {
        let mut kata = class(runtime);
        if account {
            kata.guest_memory = GuestMemory::Account;
        }
        let first = size(&input, &kata);
        let mut patched = input;
        for change in &first.changes {
            let list = match change.list {
                ContainerList::InitContainers => &mut patched.init_containers,
                ContainerList::Containers => &mut patched.containers,
            };
            let map = match change.section {
                Section::Requests => &mut list[change.container].requests,
                _ => &mut list[change.container].limits,
            };
            map.insert(change.resource.clone(), change.new);
        }
        let second = size(&patched, &kata);
        prop_assert!(second.changes.is_empty(), "{:?}", second.changes);
        prop_assert_eq!(second.vm, first.vm);
    }

    /// Under Account on the Go runtime with hotplug, the Pod cgroup always
    /// holds the VM once its limits are rounded (with every container
    /// memory-limited, no hugepages, no annotation).
    #[test]
    fn account_makes_the_cgroup_hold_the_vm(input in arbitrary_pod(), cgroup_only in any::<bool>()) {
        let mut kata = class(KataRuntime::Go);
        kata.guest_memory = GuestMemory::Account;
        kata.sandbox_cgroup_only = cgroup_only;
        let sizing = size(&input, &kata);
        prop_assert!(
            !sizing.warnings.iter().any(|w| w.contains("OOM-killed")),
            "{:?}", sizing.warnings
        );
    }
}
