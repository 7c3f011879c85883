//! Fidelity to KubeVirt where virt-sizer once differed.

use super::*;

// === Fidelity ===

fn passt_vmi() -> Value {
    json!({"domain": {"memory": {"guest": "1Gi"},
        "devices": {"interfaces": [{"name": "default", "passtBinding": {}}]}},
        "networks": [{"name": "default", "pod": {}}]})
}

#[test]
fn overhead_ratio_leaves_the_reported_passt_memory_unmultiplied() {
    // KubeVirt v1.9 reports 268Mi + passt 250Mi = 281018368 + 262144000.
    let reported = 281_018_368 + 262_144_000;
    assert_eq!(reported, 543_162_368);
    let mut case = Case::new(passt_vmi()).profile(overhead_ratio_1_5);
    case.reported_overhead = Some(Quantity::from_int(reported, Format::DecimalSi));
    let sizing = case.size();
    // KubeVirt multiplies before adding passt: base 543162368 − 262144000 =
    // 281018368; MultiplyMemory: ceil(281018368 / 1000) = 281019 kB × 0.5 =
    // 140509.5 → int64 140509 → 140509000 B; 281018368 + 140509000 +
    // 262144000 = 683671368.
    let overhead = 281_018_368 + 140_509_000 + 262_144_000;
    assert_eq!(overhead, 683_671_368);
    assert_eq!(bytes(Some(&sizing.overhead)), overhead);
    assert_eq!(bytes(sizing.requests.get("memory")), GIB + overhead);
    assert_eq!(bytes(sizing.requests.get("memory")), 1_757_413_192);
    // Before: the whole 543162368 was multiplied: ceil(/1000) = 543163 kB ×
    // 0.5 = 271581.5 → 271581000 B; overhead 814743368, request 1888485192,
    // i.e. 125Mi more than KubeVirt.
    let before = 543_162_368 + 271_581_000;
    assert_eq!(GIB + before, 1_888_485_192);
    assert_eq!(before - overhead, 125 * MIB);
    // The computed path agrees with the reported one.
    let computed = Case::new(passt_vmi()).profile(overhead_ratio_1_5).size();
    assert_eq!(computed.overhead, sizing.overhead);
}

#[test]
fn overhead_ratio_leaves_the_reported_binding_plugin_memory_unmultiplied() {
    let spec = json!({"domain": {"memory": {"guest": "1Gi"},
        "devices": {"interfaces": [{"name": "default", "binding": {"name": "slirp"}}]}}});
    let plugin = 96 * MIB; // 100663296
    let mut case = Case::new(spec).profile(overhead_ratio_1_5);
    case.settings
        .binding_plugins
        .insert("slirp".into(), Quantity::parse("96Mi").expect("valid"));
    // KubeVirt v1.9 reports 268Mi + 96Mi = 281018368 + 100663296.
    let reported = 281_018_368 + plugin;
    assert_eq!(reported, 381_681_664);
    case.reported_overhead = Some(Quantity::from_int(reported, Format::DecimalSi));
    let sizing = case.size();
    // Base 281018368 × 1.5 as above = 281018368 + 140509000; + 96Mi.
    let overhead = 281_018_368 + 140_509_000 + plugin;
    assert_eq!(overhead, 522_190_664);
    assert_eq!(bytes(Some(&sizing.overhead)), overhead);
    assert_eq!(bytes(sizing.requests.get("memory")), GIB + overhead);
    // Before: ceil(381681664 / 1000) = 381682 kB × 0.5 = 190841 →
    // 381681664 + 190841000 = 572522664, i.e. 50332000 B too much.
    assert_eq!(381_681_664 + 190_841_000 - overhead, 50_332_000);
}

#[test]
fn reported_overhead_below_the_network_memory_is_multiplied_whole_with_a_warning() {
    // The policy registers a 1Gi plugin the cluster does not: 300Mi cannot
    // contain it, so the whole figure is multiplied, as an earlier version did:
    // ceil(314572800 / 1000) = 314573 kB × 0.5 = 157286.5 → 157286000 B.
    let spec = json!({"domain": {"memory": {"guest": "1Gi"},
        "devices": {"interfaces": [{"name": "default", "binding": {"name": "big"}}]}}});
    let mut case = Case::new(spec).profile(overhead_ratio_1_5);
    case.settings
        .binding_plugins
        .insert("big".into(), Quantity::parse("1Gi").expect("valid"));
    case.reported_overhead = Some(Quantity::from_int(300 * MIB, Format::DecimalSi));
    let sizing = case.size();
    assert_eq!(bytes(Some(&sizing.overhead)), 314_572_800 + 157_286_000);
    assert!(
        sizing.warnings.iter().any(|w| w.contains("bindingPlugins")),
        "{:?}",
        sizing.warnings
    );
}

#[test]
fn reported_base_overhead_is_the_reported_figure_less_the_network_memory() {
    let reported = Quantity::from_int(543_162_368, Format::DecimalSi);
    let passt = Quantity::parse("250Mi").expect("valid");
    assert_eq!(
        reported_base_overhead(reported, passt).map(|base| base.value()),
        Some(281_018_368)
    );
    assert_eq!(
        reported_base_overhead(reported, Quantity::zero(Format::DecimalSi)),
        Some(reported)
    );
    // Failing edge: more network memory than reported.
    assert_eq!(
        reported_base_overhead(passt, Quantity::parse("251Mi").expect("valid")),
        None
    );
}

#[test]
fn devices_downward_metrics_is_not_the_downward_metrics_disk() {
    let spec = json!({"domain": {"memory": {"guest": "1Gi"}, "devices": {"downwardMetrics": {}}}});
    // 1Gi + 268Mi, no 1Mi disk term (before: 1293Mi).
    let v19 = Case::new(spec.clone()).size();
    assert_eq!(text(v19.requests.get("memory")), "1292Mi");
    assert_eq!(bytes(v19.requests.get("memory")), GIB + FIXED_1_9);
    // main: QEMU 50Mi ⇒ 1Gi + 288Mi (before: 1313Mi).
    let main = Case::new(spec).release(Release::Main).size();
    assert_eq!(text(main.requests.get("memory")), "1312Mi");
}

/// The founding example: 12 cores, guest 96Gi, `requests.memory: 16Gi`,
/// `overcommitGuestOverhead: true`; KubeVirt's VM defaulting gives the VMI a
/// `maxGuest` (here 4 × guest, the default `maxHotplugRatio`).
fn founding_example() -> Value {
    json!({"domain": {"cpu": {"cores": 12},
        "memory": {"guest": "96Gi", "maxGuest": "384Gi"},
        "resources": {"requests": {"memory": "16Gi"}, "overcommitGuestOverhead": true}}})
}

#[test]
fn vmi_overcommit_guest_overhead_wins_over_the_hotplug_floor() {
    let sizing = Case::new(founding_example()).size();
    // KubeVirt's WithMemoryOverhead: request = the VMI's 16Gi, no overhead.
    assert_eq!(text(sizing.requests.get("memory")), "16Gi");
    assert_eq!(bytes(sizing.requests.get("memory")), 16 * GIB);
    assert!(!sizing.limits.contains_key("memory"));
    // The overhead still exists (and is published): page tables
    // ceil(17179869184 / 1000) × 1000 / 512 = 33554433 + 220Mi + 12 × 8Mi +
    // 8Mi + 32Mi = 406847489. An earlier version's floor added it:
    // 16Gi + 406847489 = 17586716673.
    let overhead = 33_554_433 + (220 + 12 * 8 + 8 + 32) * MIB;
    assert_eq!(bytes(Some(&sizing.overhead)), overhead);
    assert_eq!(16 * GIB + overhead, 17_586_716_673);
    // virt-handler's hotplugMemory needs request ≥ 16Gi + overhead: refused.
    assert!(
        sizing
            .warnings
            .iter()
            .any(|w| w.contains("KubeVirt will refuse memory hotplug")),
        "{:?}",
        sizing.warnings
    );
    // Same with the profile's Omit on top: the VMI's own choice decides.
    let omit = Case::new(founding_example())
        .profile(|p| p.guest_overhead = GuestOverhead::Omit)
        .size();
    assert_eq!(bytes(omit.requests.get("memory")), 16 * GIB);
}

#[test]
fn profile_guest_overhead_omit_keeps_the_hotplug_floor_with_max_guest() {
    // The founding example without the VMI's flag, Omit from the profile:
    // the floor 16Gi + 406847489 stands, with a warning.
    let mut spec = founding_example();
    spec["domain"]["resources"]["overcommitGuestOverhead"] = json!(false);
    let sizing = Case::new(spec)
        .profile(|p| p.guest_overhead = GuestOverhead::Omit)
        .size();
    assert_eq!(bytes(sizing.requests.get("memory")), 17_586_716_673);
    assert!(
        sizing
            .warnings
            .iter()
            .any(|w| w.contains("memory request raised"))
    );
    assert!(!sizing.warnings.iter().any(|w| w.contains("refuse")));
}

#[test]
fn vmi_overcommit_guest_overhead_without_explicit_request_has_no_hotplug_warning() {
    // Guest-only: the hotplug check needs 0 + overhead, which 1Gi covers.
    let spec = json!({"domain": {"memory": {"guest": "1Gi"},
        "resources": {"overcommitGuestOverhead": true}}});
    let sizing = Case::new(spec).size();
    assert_eq!(text(sizing.requests.get("memory")), "1Gi");
    assert!(sizing.warnings.is_empty(), "{:?}", sizing.warnings);
}
