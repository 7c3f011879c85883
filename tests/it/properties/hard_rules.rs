//! The hard rules as properties of generated cases.

use super::*;

proptest! {
    #![proptest_config(config())]

    /// Sizing an already-sized Pod (same policy, same VMI) changes nothing:
    /// the webhook runs with `reinvocationPolicy: IfNeeded`.
    #[test]
    fn sizing_is_idempotent(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let again = request(run.patched(), "CREATE");
            let second = review(&run.policy, Some(&run.vmi), &again);
            prop_assert_eq!(second.outcome.label(), OutcomeLabel::Unchanged, "{}", second.explain());
            prop_assert!(second.patch().is_none());
            prop_assert!(second.response().patch.is_none());
        }
    }

    /// requests ≤ limits for every resource of the compute container.
    #[test]
    fn requests_never_exceed_limits(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let (requests, limits) = container_resources(&run.patched(), 0);
            for (name, request) in &requests {
                if let Some(limit) = limits.get(name) {
                    prop_assert!(request <= limit, "{name}: request {request} > limit {limit}\n{}", run.decision.explain());
                }
            }
        }
    }

    /// Hugepages: request == limit, a whole number of pages.
    #[test]
    fn hugepages_are_whole_pages_and_guaranteed(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() {
            let (requests, limits) = container_resources(&run.patched(), 0);
            for name in requests.keys().chain(limits.keys()).filter(|name| name.starts_with("hugepages-")) {
                prop_assert_eq!(requests.get(name), limits.get(name), "{}", name);
                let amount = whole(requests[name]);
                prop_assert!(amount > 0 && amount.is_multiple_of(page_bytes(name)), "{name} {amount} is not whole pages");
            }
            if let Some(page) = case.vmi.hugepages {
                let resource = format!("hugepages-{}", page.text());
                prop_assert!(requests.contains_key(&resource), "no {resource}");
            }
        }
    }

    /// Dedicated-CPU VMIs keep whole CPUs and Guaranteed QoS.
    #[test]
    fn dedicated_cpus_stay_guaranteed(case in arb_case()) {
        let run = Run::of(&case);
        if run.sized() && case.vmi.dedicated {
            let (requests, limits) = container_resources(&run.patched(), 0);
            let cpu = requests.get("cpu").copied();
            prop_assert!(cpu.is_some(), "no cpu request");
            prop_assert_eq!(cpu, limits.get("cpu").copied());
            prop_assert_eq!(cpu.map(|cpu| cpu.nanos() % 1_000_000_000), Some(0), "fractional CPUs: {:?}", cpu);
            prop_assert!(cpu.map(whole) >= Some(case.vmi.vcpus()));
            let memory = requests.get("memory").copied();
            prop_assert!(memory.is_some(), "no memory request");
            prop_assert_eq!(memory, limits.get("memory").copied());
        }
    }

    /// Only the compute container's cpu/memory/hugepages and virt-sizer's
    /// annotations are written; device resources, ephemeral storage, other
    /// containers, `spec.overhead` and unknown fields come out unchanged.
    #[test]
    fn only_managed_fields_are_touched(case in arb_case()) {
        let run = Run::of(&case);
        for path in patch_ops(&run.decision).iter().map(|op| op["path"].as_str().unwrap_or_default()) {
            prop_assert!(allowed_path(path), "op touches {path}");
        }
        if run.sized() {
            prop_assert_eq!(untouchable(&run.patched()), untouchable(&run.pod));
        }
    }

    /// The response is a well-formed AdmissionReview: uid copied, patch a
    /// base64 JSON array that applies to the object.
    #[test]
    fn response_is_well_formed(case in arb_case()) {
        let run = Run::of(&case);
        let decision = &run.decision;
        prop_assert_eq!(&decision.response().uid, UID);
        prop_assert!(admission::patched_object(&run.request, decision).is_ok());
        let bytes = admission::encode_response(decision).expect("encodes");
        let back: AdmissionReview = serde_json::from_slice(&bytes).expect("decodes as AdmissionReview");
        prop_assert_eq!(back.api_version.as_str(), "admission.k8s.io/v1");
        prop_assert_eq!(back.kind.as_str(), "AdmissionReview");
        prop_assert_eq!(back.response.as_ref(), Some(&decision.response()));
        let ops = patch_ops(decision);
        let response = decision.response();
        match decision.patch() {
            Some(patch) => {
                prop_assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
                prop_assert_eq!(Value::Array(ops), serde_json::to_value(patch).expect("serialises"));
            }
            None => {
                prop_assert!(response.patch.is_none());
                prop_assert!(response.patch_type.is_none());
            }
        }
    }
}
