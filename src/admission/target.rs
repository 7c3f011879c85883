//! What a request is about: the target kinds, the VMI a launcher Pod
//! claims, and why anything else is not sized.

use super::*;

/// A VirtualMachineInstance reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmiRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the Pod's controller ownerReference names, when it has one:
    /// a VMI of that name with another uid is a different VMI (deleted and
    /// recreated), never a match.
    pub uid: Option<String>,
}

impl VmiRef {
    /// Whether the VMI found under this name, whose uid is `found`, is the
    /// one the Pod claims (or either side names no uid). Every VMI source
    /// applies this one rule: the server's caches and directory, and the
    /// `--vmi` files of `review` and `test`.
    ///
    /// # Errors
    /// The VMI under that name has another uid: the message names both.
    pub fn check_uid(&self, found: Option<&str>) -> Result<(), String> {
        match (self.uid.as_deref(), found) {
            (Some(claimed), Some(found)) if claimed != found => Err(format!(
                "the Pod's owner is VMI uid {claimed}, but {}/{} has uid {found} (deleted and recreated?)",
                self.namespace, self.name
            )),
            _ => Ok(()),
        }
    }
}

/// What a request is about, once classified: what to size it with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'p> {
    /// A KubeVirt virt-launcher Pod.
    LauncherPod,
    /// A Pod running under this Kata class of the policy.
    KataPod(&'p KataClass),
    /// A RuntimeClass whose handler is this Kata class of the policy.
    RuntimeClass(&'p KataClass),
}

impl Target<'_> {
    /// Its kind, for metrics and logs.
    pub(crate) fn kind(self) -> TargetKind {
        match self {
            Target::LauncherPod => TargetKind::LauncherPod,
            Target::KataPod(_) => TargetKind::KataPod,
            Target::RuntimeClass(_) => TargetKind::RuntimeClass,
        }
    }
}

/// Classifies a request, once: what to size and the object, or why it is
/// skipped (with its kind when it is a target on another operation).
pub(crate) fn classify<'p, 'r>(
    env: &Environment<'p>,
    request: &'r AdmissionRequest,
) -> Result<(Target<'p>, &'r Value), (TargetKind, String)> {
    let operation = request.operation.as_str();
    if operation != "CREATE" && operation != "UPDATE" {
        let reason =
            format!("{operation} is not sized (only CREATE, and UPDATE of RuntimeClasses)");
        return Err((TargetKind::NotATarget, reason));
    }
    let Some(object) = request.object.as_ref() else {
        return Err((
            TargetKind::NotATarget,
            "the request carries no object".to_owned(),
        ));
    };
    let kind = &request.kind;
    let classes = &env.policy.kata.runtime_classes;
    let target = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") if is_launcher(object) => Target::LauncherPod,
        ("", "Pod") => match kata_class_of(env, object) {
            Some(class) => Target::KataPod(class),
            None => return Err((TargetKind::NotATarget, not_a_target(kind, object))),
        },
        ("node.k8s.io", "RuntimeClass") => {
            match object
                .get("handler")
                .and_then(Value::as_str)
                .and_then(|handler| classes.get(handler))
            {
                Some(class) => Target::RuntimeClass(class),
                None => return Err((TargetKind::NotATarget, not_a_target(kind, object))),
            }
        }
        _ => return Err((TargetKind::NotATarget, not_a_target(kind, object))),
    };
    // Pods are sized on CREATE only: their resources are immutable afterwards
    // (KubeVirt's own launcher webhook is CREATE-only too). RuntimeClasses
    // are sized on UPDATE as well.
    if !matches!(target, Target::RuntimeClass(_)) && operation != "CREATE" {
        return Err((target.kind(), "Pods are sized on CREATE only".to_owned()));
    }
    Ok((target, object))
}

/// The decision for a request whose object was not kept, being over what
/// this server keeps of one object (`why`): skipped when no object of its
/// kind and operation is sized, else per `onError`, with its uid (what
/// kind of target it is cannot be told without reading it).
pub(crate) fn over_bound(policy: &ValidPolicy, request: &AdmissionRequest, why: &str) -> Decision {
    let operation = request.operation.as_str();
    let kind = &request.kind;
    let sized = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => operation == "CREATE",
        ("node.k8s.io", "RuntimeClass") => operation == "CREATE" || operation == "UPDATE",
        _ => false,
    };
    if sized {
        failed(
            &request.uid,
            policy,
            SizingError::ObjectTooLarge(why.to_owned()),
        )
    } else {
        skipped(
            &request.uid,
            policy,
            format!("{why}; {operation} of a {} is not sized", kind.kind),
        )
    }
}

/// What kind of object a request was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A KubeVirt virt-launcher Pod.
    LauncherPod,
    /// A Pod running under a Kata RuntimeClass the policy knows.
    KataPod,
    /// A RuntimeClass whose handler the policy knows.
    RuntimeClass,
    /// Anything else: allowed unchanged.
    NotATarget,
}

impl TargetKind {
    /// Every kind, for metrics exported from the start.
    pub const ALL: [TargetKind; 4] = [
        TargetKind::LauncherPod,
        TargetKind::KataPod,
        TargetKind::RuntimeClass,
        TargetKind::NotATarget,
    ];

    /// Label for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::LauncherPod => "launcher_pod",
            TargetKind::KataPod => "kata_pod",
            TargetKind::RuntimeClass => "runtime_class",
            TargetKind::NotATarget => "other",
        }
    }
}

/// The VMI a virt-launcher Pod belongs to: its controller owner reference of
/// kind VirtualMachineInstance, else the `kubevirt.io/domain` annotation.
/// `None` for anything that is not a launcher Pod.
#[must_use]
pub fn launcher_vmi(request: &AdmissionRequest) -> Option<VmiRef> {
    let pod = request.object.as_ref()?;
    if request.kind.kind != "Pod" || !is_launcher(pod) {
        return None;
    }
    let metadata = pod.get("metadata")?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(&request.namespace)
        .to_owned();
    let owner = metadata
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners.iter().find(|owner| {
                owner.get("kind").and_then(Value::as_str) == Some("VirtualMachineInstance")
            })
        });
    let uid = owner
        .and_then(|owner| owner.get("uid").and_then(Value::as_str))
        .filter(|uid| !uid.is_empty())
        .map(str::to_owned);
    let owner = owner.and_then(|owner| owner.get("name").and_then(Value::as_str));
    let name = owner.or_else(|| {
        metadata
            .get("annotations")
            .and_then(|annotations| annotations.get(DOMAIN_ANNOTATION))
            .and_then(Value::as_str)
    })?;
    Some(VmiRef {
        namespace,
        name: name.to_owned(),
        uid,
    })
}

/// Whether `request` is a Pod CREATE that virt-sizer sizes (a launcher Pod,
/// or a Pod of a Kata class the policy knows): the requests whose profile
/// can depend on the namespace's labels.
#[must_use]
pub fn is_sized_pod(policy: &ValidPolicy, request: &AdmissionRequest) -> bool {
    let Some(pod) = request.object.as_ref() else {
        return false;
    };
    request.operation == "CREATE"
        && request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && (is_launcher(pod) || kata_class_of_policy(policy, pod).is_some())
}

pub(crate) fn is_launcher(pod: &Value) -> bool {
    at(pod, &["metadata", "labels", "kubevirt.io"]).and_then(Value::as_str) == Some("virt-launcher")
}

/// Why an object is not sized: its kind, or what it lacks to be a target.
pub(crate) fn not_a_target(kind: &GroupVersionKind, object: &Value) -> String {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => match at(object, &["spec", "runtimeClassName"]).and_then(Value::as_str) {
            Some(class) => format!(
                "not a launcher Pod (label kubevirt.io=virt-launcher missing), and runtimeClassName \
                 {class:?} is not in the policy's kata.runtimeClasses"
            ),
            None => "not a launcher Pod: label kubevirt.io=virt-launcher missing".to_owned(),
        },
        ("node.k8s.io", "RuntimeClass") => match object.get("handler").and_then(Value::as_str) {
            Some(handler) => {
                format!("handler {handler:?} is not in the policy's kata.runtimeClasses")
            }
            None => "the RuntimeClass has no handler".to_owned(),
        },
        ("", kind) => format!("kind {kind} is not sized (only Pods and RuntimeClasses)"),
        (group, kind) => format!("kind {kind}.{group} is not sized (only Pods and RuntimeClasses)"),
    }
}

pub(crate) fn kata_class_of<'p>(env: &Environment<'p>, pod: &Value) -> Option<&'p KataClass> {
    kata_class_of_policy(env.policy, pod)
}

pub(crate) fn kata_class_of_policy<'p>(
    policy: &'p ValidPolicy,
    pod: &Value,
) -> Option<&'p KataClass> {
    let class_name = at(pod, &["spec", "runtimeClassName"]).and_then(Value::as_str)?;
    policy.kata.runtime_classes.get(class_name)
}
