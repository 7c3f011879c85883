//! A virt-launcher Pod: read what KubeVirt rendered and what the Pod
//! reports, size the `compute` container, write the patch.

use super::*;

pub(crate) fn size_launcher_pod(
    env: &Environment<'_>,
    request: &AdmissionRequest,
    pod: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Computed, SizingError> {
    let containers = containers_of(pod)?;
    let index = containers
        .iter()
        .position(|container| {
            container.get("name").and_then(Value::as_str) == Some(COMPUTE_CONTAINER)
        })
        .ok_or_else(|| SizingError::InvalidField {
            field: "spec.containers".into(),
            message: "no container named compute".into(),
        })?;
    let resources_path = format!("spec.containers[{index}].resources");
    let resources = containers[index].get("resources");
    expect_map(resources, &resources_path)?;
    expect_map(
        at(pod, &["metadata", "annotations"]),
        "metadata.annotations",
    )?;
    let current_requests = quantity_map(
        resources.and_then(|r| r.get("requests")),
        format_args!("{resources_path}.requests"),
    )?;
    let current_limits = quantity_map(
        resources.and_then(|r| r.get("limits")),
        format_args!("{resources_path}.limits"),
    )?;

    let vmi_ref = launcher_vmi(request);
    let read = match env.vmi {
        VmiLookup::Found(read) => read,
        lookup => {
            let (namespace, name) = vmi_ref.map_or_else(
                || {
                    (
                        request.namespace.clone(),
                        "(unnamed: no owner reference or kubevirt.io/domain)".to_owned(),
                    )
                },
                |r| (r.namespace, r.name),
            );
            return Err(match lookup {
                VmiLookup::Unavailable(reason) => SizingError::VmiUnavailable {
                    namespace,
                    name,
                    reason: reason.to_owned(),
                },
                _ => SizingError::VmiNotFound { namespace, name },
            });
        }
    };
    // Read once by the source; an invalid VMI reports its error here, in
    // the same place reading it afresh would.
    let vmi = read.facts.as_ref().map_err(Clone::clone)?;

    let pod_labels = string_map(at(pod, &["metadata", "labels"]));
    // The few annotations read, looked up where they are (string values
    // only, as for labels).
    let annotation = |key: &str| at(pod, &["metadata", "annotations", key]).and_then(Value::as_str);
    let requested = annotation(PROFILE_ANNOTATION)
        .or_else(|| vmi.annotations.get(PROFILE_ANNOTATION).map(String::as_str));
    let namespace = object_namespace(pod, request);
    let policy = env.policy;
    let selection = policy.select(&Subject {
        namespace,
        namespace_labels: env.namespace_labels,
        vm_labels: &pod_labels,
        requested_profile: requested,
    });
    let profile = selection.profile;

    let auto_cpu_by_selector = policy
        .kubevirt
        .auto_cpu_limit_namespace_selector
        .as_ref()
        .is_some_and(|selector| selector.matches(env.namespace_labels));
    let inferred = AutoLimits {
        cpu: !vmi.dedicated_cpus
            && !vmi.limits.contains_key("cpu")
            && current_limits.contains_key("cpu"),
        memory: !vmi.dedicated_cpus
            && !vmi.limits.contains_key("memory")
            && current_limits.contains_key("memory"),
    };
    let mut auto_limits = inferred;
    auto_limits.cpu |= auto_cpu_by_selector;

    // Only KubeVirt's own figure counts, or the copy of it virt-sizer kept
    // on an earlier pass of this admission; nothing a VMI carries
    // (`PodOverhead`).
    let overhead = PodOverhead::read(pod, vmi);
    let parse = |key: &str, text: &str| {
        let field = format!("metadata.annotations[{key}]");
        let quantity = Quantity::parse(text).map_err(|source| SizingError::InvalidQuantity {
            field: field.clone(),
            source,
        })?;
        if quantity.is_negative() {
            return Err(SizingError::Negative {
                field,
                value: text.to_owned(),
            });
        }
        // KubeVirt writes whole bytes; anything finer is rounded up
        // like `Value()` does.
        i64::try_from(quantity.value())
            .map(|bytes| Quantity::from_int(bytes, Format::DecimalSi))
            .map_err(|_| SizingError::Overflow { what: field })
    };
    let kubevirt_reported = overhead
        .kubevirt
        .map(|text| parse(KUBEVIRT_OVERHEAD_ANNOTATION, text))
        .transpose()?;
    // The kept figure is virt-sizer's only if sizing around it gives the
    // overhead the Pod reports now: the pair written on the earlier pass.
    let kept_original = overhead
        .kept_original
        .and_then(|text| parse(ORIGINAL_OVERHEAD_ANNOTATION, text).ok())
        .filter(|kept| {
            kubevirt_reported.is_some_and(|reported| {
                kubevirt::size_launcher(&LauncherInput {
                    vmi,
                    settings: &policy.kubevirt,
                    profile,
                    namespace_labels: env.namespace_labels,
                    auto_limits,
                    reported_overhead: Some(*kept),
                })
                .is_ok_and(|sized| sized.overhead == reported)
            })
        });
    let reported_overhead = kept_original.or(kubevirt_reported);

    let mut warnings = selection.warnings;
    let plugins: Vec<&str> = vmi
        .interfaces
        .iter()
        .filter_map(|interface| match interface {
            InterfaceBinding::Plugin(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let unknown = policy.unknown_settings(
        &profile.name,
        SettingsNeeds {
            reported_overhead: reported_overhead.is_some(),
            binding_plugins: &plugins,
        },
    );
    if !unknown.is_empty() {
        // Never sized from KubeVirt's defaults standing in for settings the
        // cluster may not have.
        let names: Vec<&str> = unknown
            .iter()
            .map(|unknown| unknown.setting.as_str())
            .collect();
        let mut reasons: Vec<&str> = unknown
            .iter()
            .map(|unknown| unknown.reason.as_str())
            .collect();
        reasons.dedup();
        let source = policy
            .baseline
            .as_ref()
            .map_or("", |baseline| baseline.source.as_str());
        warnings.push(format!(
            "virt-sizer: the KubeVirt settings {} are unknown (KubeVirt CR {source}: {}): admitted \
             unchanged rather than sized from defaults the cluster may not have",
            names.join(", "),
            reasons.join("; ")
        ));
        return Ok(Computed {
            profile: Some(profile.name.clone()),
            selected_by: Some(selection.reason),
            mode: profile.mode,
            explanation: Explanation::from(terms![
                "KubeVirt settings unknown: ",
                names.join(", "),
                "; not sized"
            ]),
            warnings,
        });
    }
    if policy.kubevirt.newer_than_table {
        let release = &policy.kubevirt.release_text;
        if reported_overhead.is_none()
            && policy.kubevirt.newer_release == NewerRelease::AdmitUnchanged
        {
            warnings.push(format!(
                "KubeVirt {release} is newer than virt-sizer's overhead table and this Pod does not \
                 report {KUBEVIRT_OVERHEAD_ANNOTATION}: admitted unchanged (set kubevirt.newerRelease: \
                 NewestKnown to size it with the {} line's formulas)",
                Release::NEWEST.as_str()
            ));
            return Ok(Computed {
                profile: Some(profile.name.clone()),
                selected_by: Some(selection.reason),
                mode: profile.mode,
                explanation: Explanation::from(terms![
                    "KubeVirt ",
                    release.to_string(),
                    ": newer than the overhead table; not sized"
                ]),
                warnings,
            });
        }
        warnings.push(format!(
            "KubeVirt {release} is newer than virt-sizer's overhead table: the {} line's formulas \
             size this Pod{}",
            Release::NEWEST.as_str(),
            if reported_overhead.is_some() {
                format!(" around its reported {KUBEVIRT_OVERHEAD_ANNOTATION}")
            } else {
                String::new()
            }
        ));
    }

    let sizing = kubevirt::size_launcher(&LauncherInput {
        vmi,
        settings: &policy.kubevirt,
        profile,
        namespace_labels: env.namespace_labels,
        auto_limits,
        reported_overhead,
    })?;

    let index_token = index.to_string();
    for (section, desired, current, noun) in [
        ("requests", &sizing.requests, &current_requests, "request"),
        ("limits", &sizing.limits, &current_limits, "limit"),
    ] {
        let parent = [
            "spec",
            "containers",
            index_token.as_str(),
            "resources",
            section,
        ];
        let names: std::collections::BTreeSet<&String> = desired
            .keys()
            .chain(
                current
                    .keys()
                    .filter(|name| kubevirt::is_managed_resource(name)),
            )
            .collect();
        for name in names {
            builder.set_quantity(
                &parent,
                name,
                desired.get(name).copied(),
                &format!("{name} {noun}"),
            );
        }
    }

    let annotations_path = ["metadata", "annotations"];
    if let Some(current) = annotation(KUBEVIRT_OVERHEAD_ANNOTATION) {
        let overhead_bytes = sizing.overhead.value().to_string();
        // Compared by value: "268Mi" and "281018368" are the same overhead.
        let same = Quantity::parse(current).is_ok_and(|current| current == sizing.overhead);
        if !same {
            // KubeVirt's figure is kept, never a VMI's copy (a kept figure
            // that was virt-sizer's leaves nothing to rewrite).
            if overhead.kubevirt.is_some() {
                builder.set_string(
                    &annotations_path,
                    ORIGINAL_OVERHEAD_ANNOTATION,
                    current,
                    "KubeVirt's overhead",
                );
            }
            builder.set_string(
                &annotations_path,
                KUBEVIRT_OVERHEAD_ANNOTATION,
                &overhead_bytes,
                "overhead annotation",
            );
        }
    }
    // The decision is recorded on the Pod only beside a change: a Pod that
    // already has what this decision gives is admitted with no patch at all
    // (the audit annotations and the log line still carry the decision).
    if !builder.ops.is_empty() {
        let mut decision = format!("profile={},policy={}", profile.name, policy.digest);
        if let Some(digest) = policy.settings_digest() {
            decision.push_str(",kubevirt=");
            decision.push_str(digest);
        }
        builder.set_string(
            &annotations_path,
            DECISION_ANNOTATION,
            &decision,
            "decision",
        );
    }

    warnings.extend(sizing.warnings);
    let mut explanation = Explanation::from(terms![
        "VMI ",
        vmi.namespace.clone(),
        "/",
        vmi.name.clone(),
        ": ",
        vmi.cpu.vcpus(),
        " vCPU, guest ",
        vmi.guest
            .map_or_else(|| terms!["unset"], |guest| terms![guest]),
        ", KubeVirt ",
        policy.kubevirt.release_text.clone(),
        " model"
    ]);
    explanation.append(sizing.explanation);
    Ok(Computed {
        profile: Some(profile.name.clone()),
        selected_by: Some(selection.reason),
        mode: profile.mode,
        explanation,
        warnings,
    })
}
