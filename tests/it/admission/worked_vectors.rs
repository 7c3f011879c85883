//! KubeVirt's worked vectors, through `review`.

use super::*;

/// Expected `compute` resources: cpu in millicores, memory in bytes.
#[derive(Debug, Default)]
struct Expected {
    cpu_request: Option<u64>,
    cpu_limit: Option<u64>,
    memory_request: Option<u64>,
    memory_limit: Option<u64>,
    hugepages: Option<(&'static str, u64)>,
    /// Exact strings the reference quotes: (`requests`/`limits`, name, text).
    texts: &'static [(&'static str, &'static str, &'static str)],
}

fn cpu_mem(cpu_millis: u64, memory_bytes: u64) -> Expected {
    Expected {
        cpu_request: Some(cpu_millis),
        memory_request: Some(memory_bytes),
        ..Expected::default()
    }
}

pub(super) fn topology(name: &str, sockets: u32, cores: u32, threads: u32) -> VmiSpec {
    VmiSpec {
        sockets,
        cores,
        threads,
        ..VmiSpec::simple(name, 1024)
    }
}

/// M3: no topology, `requests.memory: 1G`, `limits.memory: 2G`, cpu 1m/2m.
fn m3() -> VmiSpec {
    VmiSpec {
        guest: None,
        requests_memory: Some(Mem::new(1000, MemFormat::DecimalM)),
        limits_memory: Some(Mem::new(2000, MemFormat::DecimalM)),
        requests_cpu: Some(Cpu::Milli(1)),
        limits_cpu: Some(Cpu::Milli(2)),
        ..topology("m3", 0, 0, 0)
    }
}

/// M3's overhead: page tables 1000000000/1000 × 1000 / 512 = 1953125 +
/// 220Mi + 8Mi (1 vCPU: limits.cpu 2m `Value()` = 1) + 8Mi + 32Mi.
const M3_OVERHEAD: u64 = 1_953_125 + (220 + 8 + 8 + 32) * MI;

/// M9's page tables: ⌈17179869184 / 1000⌉ = 17179870 kB × 1000 / 512.
const M9_PAGE_TABLES: u64 = 17_179_870 * 1000 / 512;

#[rstest]
#[case::k1_one_vcpu(VmiSpec::simple("k1", 1024), "1.9", &[], Expected {
    texts: &[("requests", "cpu", "100m"), ("requests", "memory", "1292Mi")],
    ..cpu_mem(100, GI + (220 + 8 + 8 + 32) * MI)
})]
#[case::k2_twelve_vcpus_ratio_20(topology("k2", 1, 6, 2), "1.9", &["cpuAllocationRatio: 20"],
    // 12 / 20 = 0.6 ⇒ 600m; overhead 220 + 12 × 8 + 8 + 32.
    cpu_mem(600, GI + (220 + 12 * 8 + 8 + 32) * MI))]
#[case::k3_three_cores(topology("k3", 0, 3, 0), "1.9", &[],
    cpu_mem(300, GI + (220 + 3 * 8 + 8 + 32) * MI))]
#[case::k4_three_cores_ratio_1(topology("k4", 0, 3, 0), "1.9", &["cpuAllocationRatio: 1"], Expected {
    texts: &[("requests", "cpu", "3")],
    ..cpu_mem(3000, GI + (220 + 3 * 8 + 8 + 32) * MI)
})]
#[case::k5_sixteen_vcpus(topology("k5", 2, 4, 2), "1.9", &[], Expected {
    // 16 / 10 = 1.6 ⇒ "%g" "1.6" ⇒ 1600m.
    texts: &[("requests", "cpu", "1600m")],
    ..cpu_mem(1600, GI + (220 + 16 * 8 + 8 + 32) * MI)
})]
#[case::k8_explicit_cpu_request_wins(
    VmiSpec { requests_cpu: Some(Cpu::Milli(150)), ..topology("k8", 0, 5, 0) },
    "1.9", &["cpuAllocationRatio: 16"],
    // 5 / 16 = 312.5m is overridden by the VMI's 150m.
    cpu_mem(150, GI + (220 + 5 * 8 + 8 + 32) * MI))]
#[case::k9_cpu_limit_only(
    VmiSpec { limits_cpu: Some(Cpu::Whole(4)), ..topology("k9", 0, 0, 0) },
    "1.9", &[],
    // virt-api: request := limit 4, sockets := 4.
    Expected { cpu_limit: Some(4000), ..cpu_mem(4000, GI + (220 + 4 * 8 + 8 + 32) * MI) })]
#[case::k12_dedicated(
    VmiSpec { dedicated: true, guest: Some(Mem::mi(8192)), ..topology("k12", 0, 4, 0) },
    "1.9", &[],
    // overhead 220 + 4 × 8 + 8 + 32 + 100 (dedicated) = 392Mi; 8Gi + 392Mi = 8584Mi.
    Expected {
        cpu_limit: Some(4000),
        memory_limit: Some(9_000_976_384),
        ..cpu_mem(4000, (8192 + 392) * MI)
    })]
#[case::m1_main(VmiSpec::simple("m1", 1024), "main", &[],
    // QEMU 50Mi on main: 1Gi + 288Mi = 1312Mi.
    cpu_mem(100, GI + (240 + 8 + 8 + 32) * MI))]
#[case::m1_v1_5(VmiSpec::simple("m1", 1024), "1.5", &[],
    // v1.5: page tables of the defaulted request 1Gi = 2Mi; video 16Mi.
    cpu_mem(100, GI + (2 + 220 + 8 + 8 + 16) * MI))]
#[case::m3_kubevirt_test(m3(), "1.9", &[], Expected {
    cpu_limit: Some(2),
    memory_limit: Some(2_000_000_000 + M3_OVERHEAD),
    texts: &[("requests", "memory", "1282971493"), ("limits", "memory", "2282971493")],
    ..cpu_mem(1, 1_000_000_000 + M3_OVERHEAD)
})]
#[case::m3_main(m3(), "main", &[], Expected {
    cpu_limit: Some(2),
    memory_limit: Some(2_303_943_013),
    ..cpu_mem(1, 1_000_000_000 + M3_OVERHEAD + 20 * MI)
})]
#[case::m4_overcommit_guest_overhead(
    VmiSpec { overcommit_guest_overhead: true, ..m3() }, "1.9", &[],
    // The overhead goes on the limit only.
    Expected {
        cpu_limit: Some(2),
        memory_limit: Some(2_000_000_000 + M3_OVERHEAD),
        texts: &[("requests", "memory", "1G"), ("limits", "memory", "2282971493")],
        ..cpu_mem(1, 1_000_000_000)
    })]
#[case::m5_memory_overcommit(
    VmiSpec { guest: Some(Mem::new(3072, MemFormat::DecimalM)), ..VmiSpec::simple("m5", 0) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // 3072000000 × 100 / 150 = 2048000000, + 268Mi.
    cpu_mem(100, 3_072_000_000 * 100 / 150 + 268 * MI))]
#[case::m5_overcommit_guest_overhead(
    VmiSpec {
        guest: Some(Mem::new(3072, MemFormat::DecimalM)),
        overcommit_guest_overhead: true,
        ..VmiSpec::simple("m5", 0)
    },
    "1.9", &["memoryOvercommitPercent: 150"],
    Expected { texts: &[("requests", "memory", "2048M")], ..cpu_mem(100, 2_048_000_000) })]
#[case::m9_explicit_request_beats_overcommit(
    VmiSpec { requests_memory: Some(Mem::mi(16 * 1024)), ..VmiSpec::simple("m9", 16 * 1024) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // 16Gi + page tables 33554433 + 268Mi = 17494441985.
    cpu_mem(100, 16 * GI + M9_PAGE_TABLES + 268 * MI))]
#[case::h1_hugepages_2mi(
    VmiSpec { hugepages: Some(PageSize::TwoMi), ..VmiSpec::simple("h1", 4096) },
    "1.9", &[],
    // Guest in hugepages; memory = overhead only.
    Expected { hugepages: Some(("hugepages-2Mi", 4 * GI)), ..cpu_mem(100, 268 * MI) })]
#[case::h1_hugepages_are_never_overcommitted(
    VmiSpec { hugepages: Some(PageSize::TwoMi), ..VmiSpec::simple("h1", 1024) },
    "1.9", &["memoryOvercommitPercent: 150"],
    // KubeVirt 1.7–1.9 would request 1Gi × 100/150, not a page multiple.
    Expected { hugepages: Some(("hugepages-2Mi", GI)), ..cpu_mem(100, 268 * MI) })]
#[case::h2_hugepages_1gi_request_and_limit(
    VmiSpec {
        guest: None,
        hugepages: Some(PageSize::OneGi),
        requests_memory: Some(Mem::mi(8192)),
        limits_memory: Some(Mem::mi(8192)),
        ..VmiSpec::simple("h2", 0)
    },
    "1.9", &[],
    // page tables 8589935 kB × 1000 / 512 = 16777216 (16Mi); 16 + 268 = 284Mi.
    Expected {
        hugepages: Some(("hugepages-1Gi", 8 * GI)),
        memory_limit: Some(284 * MI),
        ..cpu_mem(100, 284 * MI)
    })]
#[case::h3_hugepages_rounded_to_whole_pages(
    VmiSpec {
        guest: None,
        hugepages: Some(PageSize::TwoMi),
        requests_memory: Some(Mem::new(64, MemFormat::DecimalM)),
        limits_memory: Some(Mem::new(64, MemFormat::DecimalM)),
        ..VmiSpec::simple("h3", 0)
    },
    "1.9", &[],
    // 64000000 / 2097152 = 30.5 pages ⇒ 31 pages; memory = page tables
    // 64000 × 1000 / 512 = 125000 + 268Mi.
    Expected {
        hugepages: Some(("hugepages-2Mi", 31 * 2 * MI)),
        memory_limit: Some(125_000 + 268 * MI),
        ..cpu_mem(100, 125_000 + 268 * MI)
    })]
#[case::d1_two_gpus(
    VmiSpec { gpus: 2, ..VmiSpec { guest: Some(Mem::mi(16 * 1024)), ..topology("d1", 0, 4, 0) } },
    "1.9", &[],
    // overhead 220 + 4 × 8 + 8 + 32 + 1024 (VFIO) = 1316Mi; 16Gi + 1316Mi = 17700Mi.
    cpu_mem(400, (16 * 1024 + 1316) * MI))]
fn kubevirt_vectors(
    #[case] vmi: VmiSpec,
    #[case] release: &str,
    #[case] fields: &[&str],
    #[case] expected: Expected,
) {
    let policy = policy_with_default(release, fields);
    // The Pod before sizing: device resources only (no quota-driven limits).
    let mut resources = compute_resources(&[], &[]);
    if vmi.gpus > 0 {
        let gpus = vmi.gpus.to_string();
        set(&mut resources, "/requests/nvidia.com~1GH100", json!(gpus));
        set(&mut resources, "/limits/nvidia.com~1GH100", json!(gpus));
    }
    let pod = launcher_pod(&vmi.name, resources.clone());
    let request = request(pod, "CREATE");
    let decision = review(&policy, Some(&vmi.to_json()), &request);
    assert_eq!(
        decision.outcome.label(),
        OutcomeLabel::Patched,
        "{}",
        decision.explain()
    );
    let after = patched(&request, &decision);
    let (requests, limits) = container_resources(&after, 0);

    let millis = |map: &BTreeMap<String, Quantity>, name: &str| {
        map.get(name).map(|cpu| crate::support::millis(*cpu))
    };
    let bytes = |map: &BTreeMap<String, Quantity>, name: &str| map.get(name).map(|m| whole(*m));
    let explain = decision.explain();
    assert_eq!(millis(&requests, "cpu"), expected.cpu_request, "{explain}");
    assert_eq!(millis(&limits, "cpu"), expected.cpu_limit, "{explain}");
    assert_eq!(
        bytes(&requests, "memory"),
        expected.memory_request,
        "{explain}"
    );
    assert_eq!(bytes(&limits, "memory"), expected.memory_limit, "{explain}");
    let hugepages = |map: &BTreeMap<String, Quantity>| {
        map.iter()
            .filter(|(name, _)| name.starts_with("hugepages-"))
            .map(|(name, amount)| (name.clone(), whole(*amount)))
            .collect::<Vec<_>>()
    };
    let expected_hugepages: Vec<(String, u64)> = expected
        .hugepages
        .iter()
        .map(|(name, amount)| ((*name).to_owned(), *amount))
        .collect();
    assert_eq!(hugepages(&requests), expected_hugepages, "{explain}");
    assert_eq!(hugepages(&limits), expected_hugepages, "{explain}");
    for (section, name, text) in expected.texts {
        assert_eq!(
            after["spec"]["containers"][0]["resources"][section][name], *text,
            "{section}.{name}\n{explain}"
        );
    }
    // Device resources and ephemeral storage are left as they were.
    for (name, value) in resources["requests"].as_object().expect("map") {
        assert_eq!(
            &after["spec"]["containers"][0]["resources"]["requests"][name],
            value
        );
    }
}

#[test]
fn the_overhead_annotation_is_compared_by_value() {
    // KubeVirt's overhead for this Pod is 268Mi (v1.9, 1 vCPU, guest 1Gi);
    // written as "268Mi" instead of "281018368" it is still correct, so it
    // is neither rewritten nor copied aside.
    let mut pod = kubevirt_pod();
    set(
        &mut pod,
        "/metadata/annotations/kubevirt.io~1memory-overhead-bytes",
        json!("268Mi"),
    );
    let decision = review(&team(), Some(&vmi()), &request(pod, "CREATE"));
    let paths = op_paths(&decision);
    assert!(
        paths
            .iter()
            .all(|path| !path.contains("memory-overhead-bytes")),
        "{paths:?}"
    );
}
