//! KubeVirt equivalence: with KubeVirt's defaults the Pod gets what
//! virt-controller renders, and the VM owner's `overcommitGuestOverhead` wins.

use super::*;

/// KubeVirt v1.6–v1.9's overhead for a VMI without an explicit memory
/// request: no page-table term; 220Mi fixed; 8Mi per vCPU;
/// 8Mi IOThread; 32Mi video unless `autoattachGraphicsDevice: false`; 128Mi
/// arm64 pflash; 1Gi VFIO once for any GPU/host device; 10Mi per exec
/// probe + 100Mi once. (No 100Mi QoS term: Guaranteed intent needs a
/// memory limit, which a guest-only VMI lacks.)
fn kubevirt_overhead_guest_only(vmi: &VmiSpec) -> u64 {
    let mut overhead = FIXED_OVERHEAD_V1_9 + 8 * MI * vmi.vcpus().max(1) + 8 * MI;
    if vmi.graphics != Some(false) {
        overhead += 32 * MI;
    }
    if vmi.architecture == Some("arm64") {
        overhead += 128 * MI;
    }
    if vmi.gpus > 0 || vmi.host_devices > 0 {
        overhead += 1024 * MI;
    }
    let probes = u64::from(vmi.liveness_exec) + u64::from(vmi.readiness_exec);
    if probes > 0 {
        overhead += (10 * probes + 100) * MI;
    }
    overhead
}

/// Guest-only, no hugepages, not dedicated: the simple case the test
/// derives on its own.
fn arb_simple_vmi() -> BoxedStrategy<VmiSpec> {
    (arb_vmi(), 64_u64..=65536, arb_mem_format())
        .prop_map(|(mut vmi, guest_mib, format)| {
            vmi.guest = Some(Mem::new(guest_mib, format));
            vmi.requests_memory = None;
            vmi.limits_memory = None;
            vmi.hugepages = None;
            vmi.dedicated = false;
            vmi.isolate_emulator_thread = false;
            vmi
        })
        .boxed()
}

/// The overhead in the `overhead <q> = …` explanation line.
fn explained_overhead(decision: &Decision) -> Option<Quantity> {
    decision.explanation.lines().iter().find_map(|line| {
        let rest = line.strip_prefix("overhead ")?;
        Quantity::parse(rest.split_whitespace().next()?).ok()
    })
}

proptest! {
    #![proptest_config(config())]

    /// With the built-in policy (KubeVirt's defaults) a guest-only VMI gets
    /// exactly what virt-controller v1.9 renders, derived here from the
    /// reference: memory = guest + overhead (guest alone with
    /// `overcommitGuestOverhead`), cpu = the VMI's request, else its limit,
    /// else (vCPUs + IOThreads) / 10; automatic limits where the Pod shows
    /// KubeVirt applied them. A Pod already rendered that way gets no
    /// resource operation.
    #[test]
    fn builtin_policy_matches_kubevirt(vmi in arb_simple_vmi(), start in arb_pod_start()) {
        let run = Run::new(ValidPolicy::builtin(), &vmi, start.pod(&vmi.name));
        let total_cpus = vmi.vcpus() + u64::from(vmi.io_threads.unwrap_or(0));
        let cpu_request_millis = vmi
            .requests_cpu
            .or(vmi.limits_cpu)
            .map_or(total_cpus * 100, Cpu::millis);
        let auto_cpu_limit = vmi.limits_cpu.is_none() && start.cpu_limit.is_some();
        let cpu_limit_millis = vmi
            .limits_cpu
            .map(Cpu::millis)
            .or(auto_cpu_limit.then_some(total_cpus * 1000));
        if cpu_limit_millis.is_some_and(|limit| cpu_request_millis > limit) {
            // KubeVirt itself renders request > limit here (an explicit
            // request above the automatic limit): refused, not admitted.
            prop_assert_eq!(run.decision.outcome.label(), OutcomeLabel::ErrorAllowed);
            return Ok(());
        }
        prop_assert_eq!(run.decision.outcome.label(), OutcomeLabel::Patched, "{}", run.decision.explain());

        let overhead = start
            .overhead_annotation
            .unwrap_or_else(|| kubevirt_overhead_guest_only(&vmi));
        let guest = vmi.guest.as_ref().expect("guest-only").bytes;
        let memory_request = if vmi.overcommit_guest_overhead { guest } else { guest + overhead };
        let memory_limit = start.memory_limit.is_some().then_some(memory_request * 2);

        let pod = run.patched();
        let (requests, limits) = container_resources(&pod, 0);
        prop_assert_eq!(requests.get("memory").map(|m| whole(*m)), Some(memory_request));
        prop_assert_eq!(limits.get("memory").map(|m| whole(*m)), memory_limit);
        prop_assert_eq!(requests.get("cpu").map(|c| c.nanos()), Some(i128::from(cpu_request_millis) * 1_000_000));
        prop_assert_eq!(limits.get("cpu").map(|c| c.nanos()), cpu_limit_millis.map(|m| i128::from(m) * 1_000_000));
        prop_assert_eq!(explained_overhead(&run.decision).map(whole), Some(overhead));
        // No margin, ratio 1.0: KubeVirt's own annotation stays true as is.
        for path in patch_ops(&run.decision).iter().map(|op| op["path"].as_str().unwrap_or_default()) {
            prop_assert!(!path.contains("memory-overhead-bytes"), "rewrote {path}");
        }

        // A Pod exactly as virt-controller rendered it: no resource op.
        let mut limits_json = json!({"devices.kubevirt.io/kvm": "1"});
        if let Some(limit) = cpu_limit_millis {
            limits_json["cpu"] = json!(format!("{limit}m"));
        }
        if let Some(limit) = memory_limit {
            limits_json["memory"] = json!(limit.to_string());
        }
        let mut rendered = launcher_pod(&vmi.name, json!({
            "requests": {
                "devices.kubevirt.io/kvm": "1",
                "cpu": format!("{cpu_request_millis}m"),
                "memory": memory_request.to_string(),
            },
            "limits": limits_json,
        }));
        if let Some(bytes) = start.overhead_annotation {
            rendered["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = json!(bytes.to_string());
        }
        let rendered_run = Run::new(ValidPolicy::builtin(), &vmi, rendered);
        let paths: Vec<String> = patch_ops(&rendered_run.decision)
            .iter()
            .map(|op| op["path"].as_str().unwrap_or_default().to_owned())
            .collect();
        // What KubeVirt rendered is kept as it is: no patch at all.
        prop_assert_eq!(paths, Vec::<String>::new());
    }

    /// The memory-hotplug floor: with an explicit VMI `requests.memory` R
    /// (no hugepages, no `overcommitGuestOverhead`) the Pod requests at
    /// least R + overhead, whatever the profile (overcommit, `Omit`). The
    /// overhead is the Pod's `kubevirt.io/memory-overhead-bytes` after the
    /// patch when KubeVirt reported one (the annotation must stay true),
    /// else at least KubeVirt's unconditional terms: 220Mi + 8Mi per vCPU +
    /// 8Mi IOThread. (A VMI that asks for `overcommitGuestOverhead` itself
    /// is the one exception; see the property after this one.)
    #[test]
    fn memory_request_keeps_the_hotplug_floor(
        vmi in arb_vmi().prop_map(|mut vmi| {
            vmi.hugepages = None;
            vmi.overcommit_guest_overhead = false;
            if vmi.requests_memory.is_none() {
                vmi.requests_memory = vmi.limits_memory.clone().or_else(|| vmi.guest.clone());
            }
            vmi
        }),
        profile in arb_profile(),
        start in arb_pod_start(),
    ) {
        let run = Run::new(policy(&profile.yaml()), &vmi, start.pod(&vmi.name));
        if run.sized() {
            let pod = run.patched();
            let explicit = vmi.requests_memory.as_ref().expect("explicit request").bytes;
            let overhead = match pod.pointer("/metadata/annotations/kubevirt.io~1memory-overhead-bytes") {
                Some(annotation) => {
                    let annotation = annotation.as_str().expect("a string").parse::<u64>().expect("bytes");
                    prop_assert!(start.overhead_annotation.is_some_and(|original| annotation >= original));
                    annotation
                }
                None => FIXED_OVERHEAD_V1_9 + 8 * MI * vmi.vcpus() + 8 * MI,
            };
            let (requests, _) = container_resources(&pod, 0);
            let memory = requests.get("memory").map(|m| whole(*m));
            prop_assert!(memory >= Some(explicit + overhead),
                "memory request {memory:?} < {explicit} + {overhead}\n{}", run.decision.explain());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The VM owner's `overcommitGuestOverhead` wins:
    /// with an explicit VMI `requests.memory` R (no hugepages, no dedicated
    /// CPUs) the Pod requests exactly R, as KubeVirt's `WithMemoryOverhead`
    /// renders it, whatever the profile (overcommit, `Omit`, ratio, margin,
    /// limits policy) and whether the VMI has a `maxGuest`, and the decision
    /// warns that KubeVirt will refuse memory hotplug (virt-handler's
    /// `hotplugMemory` needs R + overhead, and the overhead is never 0).
    #[test]
    fn vmi_overcommit_guest_overhead_requests_exactly_the_vmi_request(
        vmi in arb_vmi().prop_map(|mut vmi| {
            vmi.hugepages = None;
            vmi.dedicated = false;
            vmi.isolate_emulator_thread = false;
            vmi.overcommit_guest_overhead = true;
            if vmi.requests_memory.is_none() {
                vmi.requests_memory = vmi.limits_memory.clone().or_else(|| vmi.guest.clone());
            }
            vmi
        }),
        max_guest in prop::bool::ANY,
        profile in arb_profile(),
        start in arb_pod_start(),
    ) {
        let mut vmi_json = vmi.to_json();
        if max_guest {
            let guest = vmi.guest.as_ref().or(vmi.requests_memory.as_ref()).expect("memory");
            vmi_json["spec"]["domain"]["memory"]["maxGuest"] = json!((guest.bytes * 4).to_string());
        }
        let pod = start.pod(&vmi.name);
        let request = request(pod, "CREATE");
        let decision = review(&policy(&profile.yaml()), Some(&vmi_json), &request);
        if matches!(decision.outcome.label(), OutcomeLabel::Patched | OutcomeLabel::Unchanged) {
            let pod = patched(&request, &decision);
            let explicit = vmi.requests_memory.as_ref().expect("explicit request").bytes;
            let (requests, _) = container_resources(&pod, 0);
            prop_assert_eq!(requests.get("memory").map(|m| whole(*m)), Some(explicit),
                "{}", decision.explain());
            prop_assert!(
                decision.warnings.iter().any(|w| w.contains("KubeVirt will refuse memory hotplug")),
                "{:?}", decision.warnings
            );
        }
    }
}

/// The properties above skip cases the core refuses; this checks, over the
/// same generator with a fixed seed, that such cases are rare (< 10 %) and
/// that the interesting shapes actually occur.
#[test]
fn generated_cases_are_mostly_sizable() {
    let mut runner = TestRunner::deterministic();
    let strategy = arb_case();
    let total = 256;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let (mut dedicated, mut hugepages, mut explicit, mut annotated) = (0, 0, 0, 0);
    for _ in 0..total {
        let case = strategy.new_tree(&mut runner).expect("generates").current();
        let run = Run::of(&case);
        *outcomes
            .entry(run.decision.outcome.label().as_str())
            .or_default() += 1;
        if let Some(error) = run.decision.error() {
            errors.push(error.to_string());
        }
        if run.sized() {
            dedicated += usize::from(case.vmi.dedicated);
            hugepages += usize::from(case.vmi.hugepages.is_some());
            explicit += usize::from(case.vmi.requests_memory.is_some());
            annotated += usize::from(case.pod.overhead_annotation.is_some());
        }
    }
    assert!(
        errors.len() * 10 < total,
        "{} of {total} generated cases were refused: {outcomes:?}\n{}",
        errors.len(),
        errors.join("\n")
    );
    for (what, count) in [
        ("dedicated", dedicated),
        ("hugepages", hugepages),
        ("explicit memory request", explicit),
        ("overhead annotation", annotated),
    ] {
        assert!(
            count * 20 >= total,
            "only {count} sized {what} cases of {total}"
        );
    }
}
