//! Tests of the launcher renderer. Expected values are derived in each test
//! from the formula's terms (KubeVirt's renderer and its worked vectors), never pasted from the output.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::sizing::policy::{
    GuestOverhead, LimitsRatio, OverheadRatio, Profile, Release, ValidPolicy,
};
use crate::sizing::quantity::Format;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;
/// The fixed part of the overhead on the v1.6–v1.9 line for 1 vCPU with
/// graphics: 25 + 100 + 25 + 40 + 30 (QEMU) + 8 (vCPU) + 8 (IOThread) + 32
/// (video) = 268Mi.
const FIXED_1_9: i64 = 268 * MIB;

/// The built-in policy's KubeVirt settings (amd64, no binding plugins) on
/// `release`; built from the policy so new settings get their defaults.
fn settings(release: Release) -> KubevirtSettings {
    let mut settings = ValidPolicy::builtin().kubevirt;
    settings.release = release;
    settings.release_text = release.as_str().to_owned();
    settings.architecture = "amd64".into();
    settings.binding_plugins = BTreeMap::new();
    settings.auto_cpu_limit_namespace_selector = None;
    settings
}

fn kubevirt_profile() -> Profile {
    Profile::kubevirt_defaults("default")
}

fn vmi(spec: &Value) -> VmiFacts {
    VmiFacts::from_value(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns"},
        "spec": spec,
    }))
    .expect("valid VMI")
}

struct Case {
    vmi: VmiFacts,
    settings: KubevirtSettings,
    profile: Profile,
    auto_limits: AutoLimits,
    namespace_labels: BTreeMap<String, String>,
    reported_overhead: Option<Quantity>,
}

impl Case {
    fn new(spec: Value) -> Case {
        Case {
            vmi: vmi(&spec),
            settings: settings(Release::V1_9),
            profile: kubevirt_profile(),
            auto_limits: AutoLimits::default(),
            namespace_labels: BTreeMap::new(),
            reported_overhead: None,
        }
    }
    fn release(mut self, release: Release) -> Case {
        self.settings = settings(release);
        self
    }
    fn profile(mut self, edit: impl FnOnce(&mut Profile)) -> Case {
        edit(&mut self.profile);
        self
    }
    fn size(&self) -> LauncherSizing {
        self.try_size().expect("sizing succeeds")
    }
    fn try_size(&self) -> Result<LauncherSizing, SizingError> {
        size_launcher(&LauncherInput {
            vmi: &self.vmi,
            settings: &self.settings,
            profile: &self.profile,
            namespace_labels: &self.namespace_labels,
            auto_limits: self.auto_limits,
            reported_overhead: self.reported_overhead,
        })
    }
}

fn guest_1gi() -> Value {
    json!({"domain": {"memory": {"guest": "1Gi"}, "cpu": {"cores": 1}}})
}

/// Bytes of a quantity (memory is always whole bytes here).
fn bytes(quantity: Option<&Quantity>) -> i64 {
    i64::try_from(quantity.expect("present").value()).expect("fits")
}

fn text(quantity: Option<&Quantity>) -> String {
    quantity.expect("present").to_string()
}

// === CPU (the worked vectors' K rows) ===

#[test]
fn k1_one_vcpu_ratio_10_is_100m() {
    let sizing = Case::new(guest_1gi()).size();
    assert_eq!(text(sizing.requests.get("cpu")), "100m");
    assert!(!sizing.limits.contains_key("cpu"));
}

#[test]
fn k2_twelve_vcpus_ratio_20_is_600m() {
    let sizing = Case::new(
        json!({"domain": {"cpu": {"cores": 6, "threads": 2}, "memory": {"guest": "1Gi"}}}),
    )
    .profile(|p| p.cpu_allocation_ratio = 20)
    .size();
    assert_eq!(text(sizing.requests.get("cpu")), "600m"); // 12 / 20 = 0.6
}

#[test]
fn k3_k4_three_cores_ratio_10_and_1() {
    let spec = json!({"domain": {"cpu": {"cores": 3}, "memory": {"guest": "1Gi"}}});
    assert_eq!(
        text(Case::new(spec.clone()).size().requests.get("cpu")),
        "300m"
    );
    let ratio_1 = Case::new(spec)
        .profile(|p| p.cpu_allocation_ratio = 1)
        .size();
    assert_eq!(text(ratio_1.requests.get("cpu")), "3");
}

#[test]
fn k5_sixteen_vcpus_ratio_10_prints_1600m() {
    let spec = json!({"domain": {"cpu": {"sockets": 2, "cores": 4, "threads": 2}, "memory": {"guest": "1Gi"}}});
    // 16 / 10 = 1.6 ≥ 1 ⇒ "%g" = "1.6" ⇒ canonical "1600m".
    assert_eq!(text(Case::new(spec).size().requests.get("cpu")), "1600m");
}

#[test]
fn k8_explicit_vmi_cpu_request_beats_ratio() {
    let spec = json!({"domain": {"cpu": {"cores": 5}, "memory": {"guest": "1Gi"},
        "resources": {"requests": {"cpu": "150m"}}}});
    let sizing = Case::new(spec)
        .profile(|p| p.cpu_allocation_ratio = 16)
        .size();
    assert_eq!(text(sizing.requests.get("cpu")), "150m"); // not 5/16 = 312.5m
}

#[test]
fn k9_cpu_limit_only_becomes_request_and_topology() {
    let spec =
        json!({"domain": {"memory": {"guest": "1Gi"}, "resources": {"limits": {"cpu": "4"}}}});
    let case = Case::new(spec);
    assert_eq!(case.vmi.cpu.vcpus(), 4, "virt-api: sockets = limits.cpu");
    let sizing = case.size();
    assert_eq!(text(sizing.requests.get("cpu")), "4");
    assert_eq!(text(sizing.limits.get("cpu")), "4");
    // Overhead counts the 4 defaulted sockets: 268Mi + 3 × 8Mi.
    assert_eq!(bytes(Some(&sizing.overhead)), FIXED_1_9 + 3 * 8 * MIB);
}

#[test]
fn k12_dedicated_cpus_are_guaranteed() {
    let spec = json!({"domain": {"cpu": {"cores": 4, "dedicatedCpuPlacement": true},
        "memory": {"guest": "8Gi"}}});
    // overhead = 0 (no explicit request) + 220Mi + 4 × 8Mi + 8Mi + 32Mi + 100Mi = 392Mi.
    let overhead = (220 + 32 + 8 + 32 + 100) * MIB;
    let sizing = Case::new(spec.clone()).size();
    assert_eq!(text(sizing.requests.get("cpu")), "4");
    assert_eq!(text(sizing.limits.get("cpu")), "4");
    assert_eq!(bytes(sizing.requests.get("memory")), 8 * GIB + overhead);
    assert_eq!(bytes(sizing.requests.get("memory")), 9_000_976_384);
    assert_eq!(text(sizing.limits.get("memory")), "8584Mi");
    let main = Case::new(spec).release(Release::Main).size();
    assert_eq!(text(main.requests.get("memory")), "8604Mi"); // + 20Mi QEMU
}

#[test]
fn one_vcpu_at_ratio_3_rounds_up_to_the_next_nano() {
    // 1/3 = 0.333…; "%gm" of 333.333… parses with sub-nano digits, which
    // apimachinery rounds up: 333333334n, i.e. 334m for the scheduler.
    let sizing = Case::new(guest_1gi())
        .profile(|p| p.cpu_allocation_ratio = 3)
        .size();
    let cpu = sizing.requests.get("cpu").expect("cpu");
    assert_eq!(cpu.nanos(), 333_333_334);
    assert_eq!(cpu.to_string(), "333333334n");
    assert_eq!(cpu.milli_value(), 334);
}

#[test]
fn io_thread_pool_counts_in_cpu_not_in_overhead() {
    let spec = json!({"domain": {"cpu": {"cores": 4}, "ioThreads": {"supplementalPoolThreadCount": 2},
        "memory": {"guest": "1Gi"}}});
    let sizing = Case::new(spec.clone()).size();
    assert_eq!(text(sizing.requests.get("cpu")), "600m"); // (4 + 2) / 10
    // vCPU term is 4 × 8Mi only: 268Mi + 3 × 8Mi.
    assert_eq!(bytes(Some(&sizing.overhead)), FIXED_1_9 + 3 * 8 * MIB);
    let v15 = Case::new(spec).release(Release::V1_5).size();
    assert_eq!(text(v15.requests.get("cpu")), "400m"); // before v1.6: vCPUs only
}

#[rstest::rstest]
#[case::plain_isolation(json!({}), 4 + 1)]
#[case::even_parity_adds_two(json!({"alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity": ""}), 4 + 2)]
fn dedicated_with_emulator_thread(#[case] annotations: Value, #[case] cpus: i64) {
    let case = Case {
        vmi: VmiFacts::from_value(&json!({
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm", "annotations": annotations},
            "spec": {"domain": {"cpu": {"cores": 4, "dedicatedCpuPlacement": true, "isolateEmulatorThread": true},
                "memory": {"guest": "2Gi"}}}
        }))
        .expect("valid"),
        ..Case::new(json!({}))
    };
    let sizing = case.size();
    assert_eq!(
        sizing.requests.get("cpu").expect("cpu").value(),
        i128::from(cpus)
    );
    assert_eq!(sizing.requests.get("cpu"), sizing.limits.get("cpu"));
    assert_eq!(sizing.requests.get("memory"), sizing.limits.get("memory"));
}

// === Memory (the worked vectors' M rows) ===

#[test]
fn m1_guest_1gi_across_release_lines() {
    let v19 = Case::new(guest_1gi()).size();
    assert_eq!(text(v19.requests.get("memory")), "1292Mi");
    assert_eq!(bytes(v19.requests.get("memory")), 1_354_760_192);
    assert!(!v19.limits.contains_key("memory"));
    let main = Case::new(guest_1gi()).release(Release::Main).size();
    assert_eq!(text(main.requests.get("memory")), "1312Mi"); // QEMU 30 → 50Mi
    // v1.5: virt-api defaulted requests.memory = 1Gi into the VMI, so page
    // tables count: ceil(1073741824/1000) × 1000 / 512 = 2097152 = 2Mi; video 16Mi.
    // 1024 + 2 + 25 + 100 + 25 + 40 + 30 + 8 + 8 + 16 = 1278Mi.
    let v15 = Case::new(guest_1gi()).release(Release::V1_5).size();
    assert_eq!(text(v15.requests.get("memory")), "1278Mi");
}

fn m3_spec(omit: bool) -> Value {
    json!({"domain": {"resources": {
        "requests": {"memory": "1G", "cpu": "1m"},
        "limits": {"memory": "2G", "cpu": "2m"},
        "overcommitGuestOverhead": omit}}})
}

#[test]
fn m3_kubevirt_template_test_request_and_limit() {
    // page tables 1e9 / 512 = 1953125; + 220Mi + 8Mi (1 vCPU from 2m) + 8Mi + 32Mi.
    let overhead = 1_953_125 + FIXED_1_9;
    assert_eq!(overhead, 282_971_493);
    let sizing = Case::new(m3_spec(false)).size();
    assert_eq!(text(sizing.requests.get("memory")), "1282971493");
    assert_eq!(text(sizing.limits.get("memory")), "2282971493");
    assert_eq!(text(sizing.requests.get("cpu")), "1m");
    assert_eq!(text(sizing.limits.get("cpu")), "2m");
    let main = Case::new(m3_spec(false)).release(Release::Main).size();
    assert_eq!(text(main.requests.get("memory")), "1303943013");
    assert_eq!(text(main.limits.get("memory")), "2303943013");
}

#[test]
fn m4_overcommit_guest_overhead_only_on_limit() {
    let sizing = Case::new(m3_spec(true)).size();
    assert_eq!(text(sizing.requests.get("memory")), "1G");
    assert_eq!(text(sizing.limits.get("memory")), "2282971493");
}

#[test]
fn m5_memory_overcommit_150() {
    let spec = json!({"domain": {"memory": {"guest": "3072M"}, "cpu": {"cores": 1}}});
    let base = 3_072_000_000_i64 * 100 / 150;
    assert_eq!(base, 2_048_000_000);
    let sizing = Case::new(spec.clone())
        .profile(|p| p.memory_overcommit_percent = 150)
        .size();
    assert_eq!(bytes(sizing.requests.get("memory")), base + FIXED_1_9);
    assert_eq!(bytes(sizing.requests.get("memory")), 2_329_018_368);
    let omit = Case::new(spec.clone())
        .profile(|p| {
            p.memory_overcommit_percent = 150;
            p.guest_overhead = GuestOverhead::Omit;
        })
        .size();
    assert_eq!(text(omit.requests.get("memory")), "2048M");
    // v1.5: request 2048M defaulted into the VMI ⇒ page tables 2048000 × 1000 / 512
    // = 4000000; fixed part with 16Mi video = 252Mi.
    let v15 = Case::new(spec)
        .release(Release::V1_5)
        .profile(|p| p.memory_overcommit_percent = 150)
        .size();
    assert_eq!(
        bytes(v15.requests.get("memory")),
        base + 4_000_000 + 252 * MIB
    );
}

#[test]
fn m9_explicit_request_ignores_overcommit() {
    let spec = json!({"domain": {"memory": {"guest": "16Gi"}, "cpu": {"cores": 1},
        "resources": {"requests": {"memory": "16Gi"}}}});
    // page tables: ceil(17179869184 / 1000) = 17179870 → × 1000 / 512 = 33554433.
    let page_tables = 17_179_870_000_i64 / 512;
    assert_eq!(page_tables, 33_554_433);
    let sizing = Case::new(spec)
        .profile(|p| p.memory_overcommit_percent = 150)
        .size();
    assert_eq!(
        bytes(sizing.requests.get("memory")),
        16 * GIB + page_tables + FIXED_1_9
    );
    assert_eq!(bytes(sizing.requests.get("memory")), 17_494_441_985);
}

#[test]
fn memory_limit_only_becomes_request_plus_overhead_on_both() {
    let spec = json!({"domain": {"cpu": {"cores": 1}, "resources": {"limits": {"memory": "2Gi"}}}});
    // Memory request (= limit) == limit, but no CPU request/limit: not
    // Guaranteed intent, so no extra 100Mi. Page tables 0 (no explicit request).
    let sizing = Case::new(spec).size();
    assert_eq!(bytes(sizing.requests.get("memory")), 2 * GIB + FIXED_1_9);
    assert_eq!(sizing.requests.get("memory"), sizing.limits.get("memory"));
    assert_eq!(text(sizing.limits.get("memory")), "2316Mi");
}

// === Overhead terms ===

#[rstest::rstest]
#[case::arm64(json!({"architecture": "arm64", "domain": {"memory": {"guest": "1Gi"}}}), 128)]
#[case::vfio_host_device(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"hostDevices": [{"name": "a", "deviceName": "x/y"}, {"name": "b", "deviceName": "x/y"}]}}}), 1024)]
#[case::sriov_interface(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": [{"name": "n", "sriov": {}}]}}}), 1024)]
#[case::sev(json!({"domain": {"memory": {"guest": "1Gi"}, "launchSecurity": {"sev": {}}}}), 256)]
#[case::tpm(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"tpm": {}}}}), 53)]
#[case::two_exec_probes(json!({"domain": {"memory": {"guest": "1Gi"}}, "livenessProbe": {"exec": {"command": ["true"]}}, "readinessProbe": {"exec": {"command": ["true"]}}}), 10 + 10 + 100)]
#[case::http_probe_is_free(json!({"domain": {"memory": {"guest": "1Gi"}}, "livenessProbe": {"httpGet": {"port": 80}}}), 0)]
#[case::passt(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": [{"name": "p", "passtBinding": {}}]}}}), 250)]
#[case::downward_metrics(json!({"domain": {"memory": {"guest": "1Gi"}}, "volumes": [{"name": "m", "downwardMetrics": {}}]}), 1)]
// KubeVirt's `HasDownwardMetricDisk` reads volumes only: the virtio-serial
// device costs nothing.
#[case::downward_metrics_device_is_free(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"downwardMetrics": {}}}}), 0)]
#[case::two_passt_interfaces_count_once(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": [{"name": "p", "passtBinding": {}}, {"name": "q", "passtBinding": {}}]}}}), 250)]
#[case::no_graphics(json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"autoattachGraphicsDevice": false}}}), -32)]
#[case::reserved_overhead(json!({"domain": {"memory": {"guest": "1Gi", "reservedOverhead": {"addedOverhead": "64Mi"}}}}), 64)]
fn overhead_terms_add_to_the_268mi_base(#[case] spec: Value, #[case] extra_mib: i64) {
    let sizing = Case::new(spec).size();
    assert_eq!(bytes(Some(&sizing.overhead)), FIXED_1_9 + extra_mib * MIB);
    assert_eq!(
        bytes(sizing.requests.get("memory")),
        GIB + FIXED_1_9 + extra_mib * MIB
    );
}

#[test]
fn binding_plugin_counts_once_per_plugin() {
    let mut case = Case::new(
        json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": [
        {"name": "a", "binding": {"name": "slirp"}}, {"name": "b", "binding": {"name": "slirp"}}]}}}),
    );
    case.settings
        .binding_plugins
        .insert("slirp".into(), Quantity::parse("80Mi").expect("valid"));
    assert_eq!(bytes(Some(&case.size().overhead)), FIXED_1_9 + 80 * MIB);
}

#[test]
fn overhead_ratio_follows_multiply_memory() {
    // 268Mi = 281018368 B → ceil(/1000) = 281019 kB → × 0.5 = 140509.5 → 140509
    // → + 140509000 B.
    let sizing = Case::new(guest_1gi())
        .profile(|p| {
            p.overhead_ratio.text = "1.5".into();
            p.overhead_ratio.value = gofloat::parse("1.5").expect("valid");
        })
        .size();
    assert_eq!(bytes(Some(&sizing.overhead)), 281_018_368 + 140_509_000);
    assert_eq!(bytes(sizing.requests.get("memory")), GIB + 421_527_368);
}

#[test]
fn passt_is_added_after_the_ratio() {
    let spec = json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": [{"name": "p", "passtBinding": {}}]}}});
    let sizing = Case::new(spec)
        .profile(|p| p.overhead_ratio.value = gofloat::parse("2").expect("valid"))
        .size();
    // 268Mi × 2 (exact: 281019 kB × 1.0 = 281019000 added) + 250Mi unmultiplied.
    assert_eq!(
        bytes(Some(&sizing.overhead)),
        281_018_368 + 281_019_000 + 250 * MIB
    );
}

#[test]
fn overhead_margin_adds_to_request_and_annotation() {
    let sizing = Case::new(guest_1gi())
        .profile(|p| p.overhead_margin = Quantity::parse("256Mi").expect("valid"))
        .size();
    assert_eq!(text(sizing.requests.get("memory")), "1548Mi"); // 1024 + 268 + 256
    assert_eq!(text(Some(&sizing.overhead)), "524Mi");
    assert_eq!(text(Some(&sizing.kubevirt_overhead)), "268Mi");
}

#[test]
fn reported_overhead_is_authoritative() {
    let mut case = Case::new(guest_1gi());
    case.reported_overhead = Some(Quantity::parse("314572800").expect("valid")); // 300Mi
    let sizing = case.size();
    assert_eq!(bytes(sizing.requests.get("memory")), GIB + 300 * MIB);
}

/// The profile of the issue-10 reproducers: KubeVirt's defaults (ratio 10,
/// overcommit 100) with `overheadRatio: "1.5"`.
fn overhead_ratio_1_5(profile: &mut Profile) {
    profile.overhead_ratio.text = "1.5".into();
    profile.overhead_ratio.value = gofloat::parse("1.5").expect("valid");
}

// === Profile features ===

#[test]
fn memory_overcommit_truncates_like_go() {
    let sizing = Case::new(guest_1gi())
        .profile(|p| p.memory_overcommit_percent = 150)
        .size();
    // 1073741824 × 100 / 150 = 715827882.67 → 715827882.
    assert_eq!(
        bytes(sizing.requests.get("memory")),
        715_827_882 + FIXED_1_9
    );
}

#[test]
fn limits_equal_requests_gives_guaranteed() {
    let sizing = Case::new(guest_1gi())
        .profile(|p| {
            p.cpu_allocation_ratio = 1;
            p.limits = LimitsPolicy::EqualRequests;
        })
        .size();
    assert_eq!(text(sizing.requests.get("cpu")), "1");
    assert_eq!(sizing.requests.get("cpu"), sizing.limits.get("cpu"));
    assert_eq!(text(sizing.limits.get("memory")), "1292Mi");
}

#[test]
fn limits_ratio_multiplies_and_rounds_up() {
    let sizing = Case::new(guest_1gi())
        .profile(|p| {
            p.cpu_allocation_ratio = 3;
            p.limits = LimitsPolicy::Ratio;
            p.limits_ratio = LimitsRatio {
                cpu: Some(Quantity::parse("2").expect("valid")),
                memory: Some(Quantity::parse("1.5").expect("valid")),
            };
        })
        .size();
    // cpu 333333334n × 2 = 666666668n → rounded up to 667m.
    assert_eq!(sizing.limits.get("cpu").expect("cpu").nanos(), 667_000_000);
    // memory 1292Mi × 1.5 = 1938Mi.
    assert_eq!(bytes(sizing.limits.get("memory")), 1938 * MIB);
}

#[test]
fn vmi_limits_beat_the_profile_limits_policy() {
    let spec = json!({"domain": {"cpu": {"cores": 2}, "memory": {"guest": "1Gi"},
        "resources": {"limits": {"cpu": "4"}}}});
    let sizing = Case::new(spec)
        .profile(|p| p.limits = LimitsPolicy::EqualRequests)
        .size();
    assert_eq!(text(sizing.limits.get("cpu")), "4");
}

#[test]
fn auto_limits_follow_kubevirt() {
    let mut case = Case::new(json!({"domain": {"cpu": {"cores": 2}, "memory": {"guest": "1Gi"}}}));
    case.auto_limits = AutoLimits {
        cpu: true,
        memory: true,
    };
    let sizing = case.size();
    assert_eq!(text(sizing.limits.get("cpu")), "2");
    // request 1292Mi + 8Mi (2nd vCPU) = 1300Mi; × 2.0 = 2600Mi.
    assert_eq!(text(sizing.limits.get("memory")), "2600Mi");
    case.namespace_labels
        .insert(AUTO_MEMORY_LIMITS_RATIO_LABEL.into(), "1.5".into());
    assert_eq!(text(case.size().limits.get("memory")), "1950Mi");
    case.namespace_labels
        .insert(AUTO_MEMORY_LIMITS_RATIO_LABEL.into(), "0.5".into()); // < 1: default 2
    assert_eq!(text(case.size().limits.get("memory")), "2600Mi");
}

// === Hugepages ===

#[test]
fn h1_hugepages_2mi_guest_only() {
    let spec = json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "4Gi", "hugepages": {"pageSize": "2Mi"}}}});
    let sizing = Case::new(spec).size();
    assert_eq!(text(sizing.requests.get("hugepages-2Mi")), "4Gi");
    assert_eq!(text(sizing.limits.get("hugepages-2Mi")), "4Gi");
    assert_eq!(text(sizing.requests.get("memory")), "268Mi");
    assert!(!sizing.limits.contains_key("memory"));
}

#[test]
fn h2_hugepages_1gi_with_request_and_limit() {
    let spec = json!({"domain": {"cpu": {"cores": 1}, "memory": {"hugepages": {"pageSize": "1Gi"}},
        "resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "8Gi"}}}});
    // page tables of 8Gi: ceil(8589934592/1000) × 1000 / 512 = 16777216 (16Mi).
    let sizing = Case::new(spec).size();
    assert_eq!(text(sizing.requests.get("hugepages-1Gi")), "8Gi");
    assert_eq!(bytes(sizing.requests.get("memory")), 16 * MIB + FIXED_1_9);
    assert_eq!(sizing.requests.get("memory"), sizing.limits.get("memory"));
}

#[test]
fn h3_kubevirt_test_64m_keeps_memory_but_rounds_hugepages_to_pages() {
    // KubeVirt's unit test uses 64M with 2Mi pages; 64000000 is 30.5 pages,
    // which the apiserver rejects. virt-sizer keeps the memory bytes and
    // rounds the hugepages up to 31 pages (deliberate difference).
    let spec = json!({"domain": {"cpu": {"cores": 1}, "memory": {"hugepages": {"pageSize": "2Mi"}},
        "resources": {"requests": {"memory": "64M"}, "limits": {"memory": "64M"}}}});
    let sizing = Case::new(spec).size();
    let overhead = 64_000_i64 * 1000 / 512 + FIXED_1_9;
    assert_eq!(overhead, 281_143_368);
    assert_eq!(bytes(sizing.requests.get("memory")), overhead);
    assert_eq!(bytes(sizing.limits.get("memory")), overhead);
    assert_eq!(bytes(sizing.requests.get("hugepages-2Mi")), 31 * 2 * MIB);
    assert!(
        sizing
            .warnings
            .iter()
            .any(|w| w.contains("not a whole number"))
    );
}

#[test]
fn hugepages_are_never_overcommitted() {
    let spec = json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}}}});
    let sizing = Case::new(spec)
        .profile(|p| {
            p.memory_overcommit_percent = 150;
            p.guest_overhead = GuestOverhead::Omit;
        })
        .size();
    // KubeVirt v1.7–v1.9 would ask for 4Gi × 100/150 = 2863311530 hugepages (rejected).
    assert_eq!(text(sizing.requests.get("hugepages-1Gi")), "4Gi");
    assert_eq!(text(sizing.requests.get("memory")), "268Mi");
    assert_eq!(sizing.warnings.len(), 2, "{:?}", sizing.warnings);
}

#[test]
fn d1_gpus_add_vfio_overhead() {
    let spec = json!({"domain": {"cpu": {"cores": 4}, "memory": {"guest": "16Gi"},
        "devices": {"gpus": [{"name": "g1", "deviceName": "nvidia.com/GA102"}, {"name": "g2", "deviceName": "nvidia.com/GA102"}]}}});
    // 220 + 4 × 8 + 8 + 32 + 1024 = 1316Mi.
    let sizing = Case::new(spec).size();
    assert_eq!(text(sizing.requests.get("memory")), "17700Mi");
    assert!(sizing.requests.keys().all(|name| is_managed_resource(name)));
}

// === Hard rules ===

#[test]
fn dedicated_vmi_ignores_overcommit_and_omit() {
    let spec = json!({"domain": {"cpu": {"cores": 2, "dedicatedCpuPlacement": true}, "memory": {"guest": "4Gi"},
        "resources": {"overcommitGuestOverhead": true}}});
    let sizing = Case::new(spec)
        .profile(|p| {
            p.cpu_allocation_ratio = 20;
            p.memory_overcommit_percent = 200;
            p.guest_overhead = GuestOverhead::Omit;
            p.limits = LimitsPolicy::Ratio;
        })
        .size();
    assert_eq!(text(sizing.requests.get("cpu")), "2");
    assert_eq!(sizing.requests.get("cpu"), sizing.limits.get("cpu"));
    // 4Gi + (220 + 16 + 8 + 32 + 100)Mi
    assert_eq!(bytes(sizing.requests.get("memory")), 4 * GIB + 376 * MIB);
    assert_eq!(sizing.requests.get("memory"), sizing.limits.get("memory"));
}

#[test]
fn hotplug_floor_keeps_request_plus_overhead() {
    let spec = json!({"domain": {"cpu": {"cores": 1}, "memory": {"guest": "2Gi"},
        "resources": {"requests": {"memory": "2Gi"}}}});
    // page tables of 2Gi: 2147484000 / 512 = 4194304 (4Mi) ⇒ overhead 272Mi.
    let sizing = Case::new(spec)
        .profile(|p| p.guest_overhead = GuestOverhead::Omit)
        .size();
    assert_eq!(text(sizing.requests.get("memory")), "2320Mi");
    assert!(sizing.warnings.iter().any(|w| w.contains("memory hotplug")));
}

#[test]
fn absurd_guest_memory_is_an_overflow_not_a_panic() {
    let case = Case::new(json!({"domain": {"memory": {"guest": "8Ei"}}}))
        .profile(|p| p.memory_overcommit_percent = 10);
    assert!(matches!(case.try_size(), Err(SizingError::Overflow { .. })));
}

#[test]
fn bad_vmi_quantity_names_the_field() {
    let err = VmiFacts::from_value(&json!({"spec": {"domain": {"memory": {"guest": "1.5.5Gi"}}}}))
        .expect_err("invalid");
    assert!(
        err.to_string().starts_with("spec.domain.memory.guest: "),
        "{err}"
    );
}

// === The cluster's own additionalGuestMemoryOverheadRatio (KubeVirt CR) ===

/// A cluster whose KubeVirt CR sets `additionalGuestMemoryOverheadRatio: "1.5"`.
fn cluster_ratio_1_5(settings: &mut KubevirtSettings) {
    settings.cluster_overhead_ratio = OverheadRatio {
        text: "1.5".into(),
        value: gofloat::parse("1.5").expect("valid"),
    };
}

/// What KubeVirt v1.9 reports for a 1-vCPU, guest-1Gi VMI on that cluster:
/// base 268Mi = 281018368; MultiplyMemory: ceil(281018368 / 1000) = 281019
/// kB × 0.5 = 140509.5 → 140509000 B; 281018368 + 140509000 = 421527368.
const REPORTED_AT_1_5: i64 = 281_018_368 + 140_509_000;

#[test]
fn a_profile_at_the_clusters_ratio_keeps_the_reported_overhead() {
    let spec = json!({"domain": {"memory": {"guest": "1Gi"}}});
    let mut case = Case::new(spec).profile(overhead_ratio_1_5);
    cluster_ratio_1_5(&mut case.settings);
    case.reported_overhead = Some(Quantity::from_int(REPORTED_AT_1_5, Format::DecimalSi));
    let sizing = case.size();
    assert_eq!(bytes(Some(&sizing.overhead)), REPORTED_AT_1_5);
    assert_eq!(bytes(sizing.requests.get("memory")), GIB + REPORTED_AT_1_5);
}

#[test]
fn another_ratio_is_applied_to_the_overhead_before_the_clusters_ratio() {
    let spec = json!({"domain": {"memory": {"guest": "1Gi"}}});
    let mut case = Case::new(spec).profile(|p| {
        p.overhead_ratio = OverheadRatio {
            text: "2.0".into(),
            value: gofloat::parse("2.0").expect("valid"),
        };
    });
    cluster_ratio_1_5(&mut case.settings);
    case.reported_overhead = Some(Quantity::from_int(REPORTED_AT_1_5, Format::DecimalSi));
    let sizing = case.size();
    // The base KubeVirt multiplied is 281018368 (one byte less gives
    // 281018367 + 140509000 = 421527367, short of the report); at 2.0:
    // 281018368 + 281019 kB × 1.0 = 281018368 + 281019000 = 562037368,
    // what KubeVirt itself reports at ratio 2.0.
    let overhead = 281_018_368 + 281_019_000;
    assert_eq!(bytes(Some(&sizing.overhead)), overhead);
    let computed = Case::new(json!({"domain": {"memory": {"guest": "1Gi"}}}))
        .profile(|p| {
            p.overhead_ratio = OverheadRatio {
                text: "2.0".into(),
                value: gofloat::parse("2.0").expect("valid"),
            };
        })
        .size();
    assert_eq!(
        computed.overhead, sizing.overhead,
        "the computed path agrees"
    );
}

#[test]
fn unmultiply_memory_inverts_multiply_memory() {
    let ratio = gofloat::parse("1.37").expect("valid");
    for base in [
        0_i64,
        1,
        999,
        1000,
        1001,
        281_018_368,
        9_000_976_384,
        123_456_789_012,
    ] {
        let base_q = Quantity::from_int(base, Format::DecimalSi);
        let multiplied = multiply_memory(base_q, ratio).expect("fits");
        let back = unmultiply_memory(multiplied, ratio).expect("fits");
        // The smallest base with that product: multiplying it gives the
        // same figure, and one byte less gives less.
        assert_eq!(
            multiply_memory(back, ratio).expect("fits"),
            multiplied,
            "{base}"
        );
        assert!(back.value() <= i128::from(base));
        if back.value() > 0 {
            let below = Quantity::from_int(
                i64::try_from(back.value()).expect("fits") - 1,
                Format::DecimalSi,
            );
            assert!(multiply_memory(below, ratio).expect("fits").value() < multiplied.value());
        }
    }
}

#[path = "kubevirt_tests_fidelity.rs"]
mod fidelity;
