//! Kata Containers: sandbox Pods and RuntimeClasses.

use super::*;

pub(crate) fn size_kata_pod(
    env: &Environment<'_>,
    class: &KataClass,
    pod: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Computed, SizingError> {
    let containers = containers_of(pod)?;
    let mut input = KataPodInput {
        containers: Vec::with_capacity(containers.len()),
        annotations: string_map(at(pod, &["metadata", "annotations"])),
    };
    expect_map(
        at(pod, &["metadata", "annotations"]),
        "metadata.annotations",
    )?;
    for (index, container) in containers.iter().enumerate() {
        let resources = container.get("resources");
        let path = format!("spec.containers[{index}].resources");
        expect_map(resources, &path)?;
        input.containers.push(ContainerResources {
            name: container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            requests: quantity_map(
                resources.and_then(|r| r.get("requests")),
                format_args!("{path}.requests"),
            )?,
            limits: quantity_map(
                resources.and_then(|r| r.get("limits")),
                format_args!("{path}.limits"),
            )?,
        });
    }
    let sizing = crate::sizing::kata::size_kata_pod(&input, class, &env.policy.kata.pods);
    for change in &sizing.limit_changes {
        let index = change.container.to_string();
        builder.set_quantity(
            &["spec", "containers", index.as_str(), "resources", "limits"],
            &change.resource,
            Some(change.new),
            &format!("{} limit", change.resource),
        );
    }
    for (key, value) in &sizing.annotation_changes {
        builder.set_string(&["metadata", "annotations"], key, value, key);
    }
    let mut explanation = sizing.explanation;
    for change in sizing.limit_changes {
        explanation.formula(
            ResourceField::new(Section::Limits, &change.resource),
            terms![change.resource.clone(), " limit ", change.new],
            " = ",
            change.why,
        );
    }
    Ok(Computed {
        profile: None,
        selected_by: Some(format!("runtimeClassName {}", class.handler)),
        mode: Mode::Enforce,
        explanation,
        warnings: sizing.warnings,
    })
}

pub(crate) fn size_runtime_class(
    class: &KataClass,
    runtime_class: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Computed, SizingError> {
    let handler = &class.handler;
    // Validate what is there before patching next to it.
    expect_map(runtime_class.get("overhead"), "overhead")?;
    quantity_map(
        at(runtime_class, &["overhead", "podFixed"]),
        "overhead.podFixed",
    )?;
    let sizing = crate::sizing::kata::size_runtime_class(class);
    let parent = ["overhead", "podFixed"];
    builder.set_quantity(&parent, "cpu", Some(sizing.pod_fixed.cpu), "overhead cpu");
    builder.set_quantity(
        &parent,
        "memory",
        Some(sizing.pod_fixed.memory),
        "overhead memory",
    );
    Ok(Computed {
        profile: None,
        selected_by: Some(format!("handler {handler}")),
        mode: Mode::Enforce,
        explanation: sizing.explanation,
        warnings: Vec::new(),
    })
}
