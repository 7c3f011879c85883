//! Kata Containers: sandbox Pods and RuntimeClasses.

use super::*;

pub(crate) fn size_kata_pod(
    env: &Environment<'_>,
    class: &KataClass,
    pod: &Value,
    builder: &mut PatchBuilder<'_>,
) -> Result<Computed, SizingError> {
    expect_map(
        at(pod, &["metadata", "annotations"]),
        "metadata.annotations",
    )?;
    let input = KataPodInput {
        init_containers: container_resources(pod, ContainerList::InitContainers)?,
        containers: container_resources(pod, ContainerList::Containers)?,
        annotations: string_map(at(pod, &["metadata", "annotations"])),
    };
    let sizing = crate::sizing::kata::size_kata_pod(&input, class, &env.policy.kata.pods);
    for change in &sizing.changes {
        let index = change.container.to_string();
        let (section, label) = match change.section {
            Section::Requests => ("requests", "request"),
            Section::Limits | Section::PodFixed => ("limits", "limit"),
        };
        builder.set_quantity(
            &[
                "spec",
                change.list.field(),
                index.as_str(),
                "resources",
                section,
            ],
            &change.resource,
            Some(change.new),
            &format!("{} {label}", change.resource),
        );
    }
    for (key, value) in &sizing.annotation_changes {
        builder.set_string(&["metadata", "annotations"], key, value, key);
    }
    let mut explanation = sizing.explanation;
    for change in sizing.changes {
        let label = match change.section {
            Section::Requests => " request ",
            Section::Limits | Section::PodFixed => " limit ",
        };
        explanation.formula(
            ResourceField::new(change.section, &change.resource)
                .in_container(change.list.field(), change.container),
            terms![change.resource.clone(), label, change.new],
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

/// The resources of the Pod's `spec.containers` or `spec.initContainers`
/// (absent: none), each init container with `restartPolicy: Always` a
/// sidecar.
fn container_resources(
    pod: &Value,
    list: ContainerList,
) -> Result<Vec<ContainerResources>, SizingError> {
    let containers: &[Value] = match list {
        ContainerList::Containers => containers_of(pod)?,
        ContainerList::InitContainers => match at(pod, &["spec", "initContainers"]) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(SizingError::InvalidField {
                    field: "spec.initContainers".into(),
                    message: format!("expected a list, got {other}"),
                });
            }
        },
    };
    let mut all = Vec::with_capacity(containers.len());
    for (index, container) in containers.iter().enumerate() {
        let resources = container.get("resources");
        let path = format!("spec.{}[{index}].resources", list.field());
        expect_map(resources, &path)?;
        all.push(ContainerResources {
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
            sidecar: list == ContainerList::InitContainers
                && container.get("restartPolicy").and_then(Value::as_str) == Some("Always"),
        });
    }
    Ok(all)
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
