//! The rules for the Deployment and what it runs with: its hardening and
//! mounts, RBAC, the PDB and Service, and the shipped policy.

use super::*;

pub(super) fn check_deployment(
    check: &mut Check,
    deployment: &Doc,
    docs: &[Doc],
    certificates: &CaBundle,
) {
    let at = &deployment.origin;
    let value = &deployment.value;
    let replicas = value.pointer("/spec/replicas").and_then(Value::as_u64);
    check.expect(
        replicas.is_some_and(|n| n >= 2),
        at,
        format!("replicas {replicas:?}, need at least 2"),
    );
    check.expect(
        value.pointer("/spec/strategy/rollingUpdate/maxUnavailable") == Some(&Value::from(0)),
        at,
        "a rollout must never drop below the replica count (maxUnavailable 0)",
    );
    let pod = value
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_default();
    let pod_labels = value
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_default();
    check.expect(
        selects(value.pointer("/spec/selector"), &pod_labels),
        at,
        "spec.selector must select the template's labels",
    );
    check.expect(
        str_at(&pod, "/serviceAccountName") == Some("virt-sizer"),
        at,
        "serviceAccountName virt-sizer",
    );
    check.expect(
        str_at(&pod, "/priorityClassName") == Some("system-cluster-critical"),
        at,
        "priorityClassName system-cluster-critical",
    );
    check.expect(
        docs.iter().any(|doc| {
            doc.kind() == "ResourceQuota"
                && list(doc.value.pointer("/spec/scopeSelector/matchExpressions"))
                    .iter()
                    .any(|expression| {
                        strings(expression.get("values")).contains(&"system-cluster-critical")
                    })
        }),
        at,
        "a ResourceQuota admits system-cluster-critical Pods in the namespace",
    );
    check.expect(
        pod.pointer("/securityContext/runAsNonRoot") == Some(&Value::Bool(true)),
        at,
        "pod runAsNonRoot",
    );
    check.expect(
        pod.pointer("/securityContext/runAsUser") == Some(&Value::from(UID)),
        at,
        format!("pod runAsUser {UID}"),
    );
    check.expect(
        str_at(&pod, "/securityContext/seccompProfile/type") == Some("RuntimeDefault"),
        at,
        "pod seccomp RuntimeDefault",
    );
    check.expect(
        pod.pointer("/affinity/podAntiAffinity").is_some(),
        at,
        "pod anti-affinity",
    );
    check.expect(
        list(pod.get("topologySpreadConstraints"))
            .iter()
            .all(|constraint| selects(constraint.get("labelSelector"), &pod_labels))
            && !list(pod.get("topologySpreadConstraints")).is_empty(),
        at,
        "topologySpreadConstraints that select the Pods",
    );
    check.expect(
        list(
            pod.pointer(
                "/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            ),
        )
        .iter()
        .all(|term| selects(term.pointer("/podAffinityTerm/labelSelector"), &pod_labels)),
        at,
        "anti-affinity selects the Pods themselves",
    );
    let grace = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64);
    check.expect(
        grace == Some(30),
        at,
        format!("terminationGracePeriodSeconds {grace:?}, expected 30"),
    );
    check.expect(
        pod.get("hostNetwork").is_none_or(|host| host == false),
        at,
        "no hostNetwork",
    );

    let containers = list(pod.get("containers"));
    check.expect(containers.len() == 1, at, "one container");
    let Some(container) = containers.first() else {
        return;
    };
    let image = str_at(container, "/image").unwrap_or_default();
    check.expect(
        image == format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION")),
        at,
        format!(
            "image {image}, expected {IMAGE_REPOSITORY}:{} (the crate version)",
            env!("CARGO_PKG_VERSION")
        ),
    );
    let context = container
        .get("securityContext")
        .cloned()
        .unwrap_or_default();
    check.expect(
        context.get("runAsNonRoot") == Some(&Value::Bool(true)),
        at,
        "container runAsNonRoot",
    );
    check.expect(
        context.get("runAsUser") == Some(&Value::from(UID)),
        at,
        format!("container runAsUser {UID}"),
    );
    check.expect(
        context.get("readOnlyRootFilesystem") == Some(&Value::Bool(true)),
        at,
        "readOnlyRootFilesystem",
    );
    check.expect(
        context.get("allowPrivilegeEscalation") == Some(&Value::Bool(false)),
        at,
        "allowPrivilegeEscalation false",
    );
    check.expect(
        context
            .get("privileged")
            .is_none_or(|privileged| privileged == false),
        at,
        "not privileged",
    );
    check.expect(
        strings(context.pointer("/capabilities/drop")) == ["ALL"]
            && list(context.pointer("/capabilities/add")).is_empty(),
        at,
        "capabilities drop [ALL], add none",
    );
    check.expect(
        str_at(&context, "/seccompProfile/type").is_none_or(|kind| kind == "RuntimeDefault"),
        at,
        "container seccomp RuntimeDefault (or inherited)",
    );
    for (field, wanted) in [
        ("/resources/requests/cpu", true),
        ("/resources/requests/memory", true),
        ("/resources/limits/memory", true),
        // A CFS quota throttles the webhook every Pod CREATE waits for.
        ("/resources/limits/cpu", false),
    ] {
        check.expect(
            container.pointer(field).is_some() == wanted,
            at,
            format!("{field} must be {}", if wanted { "set" } else { "absent" }),
        );
    }

    // The port, the probes, and the metrics endpoint.
    let ports = list(container.get("ports"));
    let https_port = ports
        .iter()
        .find(|port| port.get("containerPort") == Some(&Value::from(HTTPS_PORT)));
    check.expect(
        https_port.is_some(),
        at,
        format!("containerPort {HTTPS_PORT}"),
    );
    // Probes and scrapes go to the plain-HTTP probe port: they carry no
    // client certificate, which the TLS port may demand (--client-ca).
    let probe_port = ports
        .iter()
        .find(|port| port.get("containerPort") == Some(&Value::from(PROBE_PORT)));
    let probe_port_name = probe_port.and_then(|port| str_at(port, "/name"));
    check.expect(
        probe_port.is_some()
            && strings(container.get("args"))
                .contains(&format!("--probe-listen=0.0.0.0:{PROBE_PORT}").as_str()),
        at,
        format!("containerPort {PROBE_PORT} served by --probe-listen"),
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = container.pointer(&format!("/{probe}/httpGet"));
        let port = get.and_then(|get| get.get("port"));
        let port_ok = port == Some(&Value::from(PROBE_PORT))
            || (port.is_some() && port.and_then(Value::as_str) == probe_port_name);
        check.expect(
            get.and_then(|get| str_at(get, "/path")) == Some(path)
                && get.and_then(|get| str_at(get, "/scheme")) == Some("HTTP")
                && port_ok,
            at,
            format!("{probe}: GET {path} over HTTP on the probe port {PROBE_PORT}"),
        );
    }
    let annotations = value.pointer("/spec/template/metadata/annotations");
    check.expect(
        annotations.and_then(|a| str_at(a, "/prometheus.io~1path")) == Some("/metrics")
            && annotations.and_then(|a| str_at(a, "/prometheus.io~1port"))
                == Some(PROBE_PORT.to_string().as_str())
            && annotations.and_then(|a| str_at(a, "/prometheus.io~1scheme")) == Some("http"),
        at,
        "the metrics port is advertised (prometheus.io/{path,port,scheme}) on the probe port",
    );

    // The arguments, as the kubelet expands them: valid flags of this
    // binary, and the files they name are mounted from the ConfigMap and the
    // Secret.
    let files = mounted_files(check, container, &pod, at);
    let namespace = str_at(value, "/metadata/namespace").unwrap_or_default();
    let args = expanded_args(check, container, namespace, at);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    check.expect(
        str_at(container, "/command").is_none(),
        at,
        "no command: the image's ENTRYPOINT runs",
    );
    let parsed = Cli::try_parse_from(std::iter::once("virt-sizer").chain(args.iter().copied()));
    let serve = match parsed {
        Ok(Cli {
            command: Verb::Serve(serve),
        }) => serve,
        Ok(other) => {
            check.fail(at, format!("args are not `serve …`: {other:?}"));
            return;
        }
        Err(error) => {
            check.fail(at, format!("args do not parse: {error}"));
            return;
        }
    };
    check.expect(
        serve.listen == Some(format!("0.0.0.0:{HTTPS_PORT}").parse().expect("address")),
        at,
        format!("--listen 0.0.0.0:{HTTPS_PORT}"),
    );
    check.expect(
        serve.client_ca.is_none(),
        at,
        "no --client-ca (the kubelet's probes present no certificate)",
    );
    check.expect(
        serve.shutdown_delay_seconds == 5,
        at,
        "--shutdown-delay-seconds 5",
    );
    check.expect(
        grace.is_some_and(|grace| {
            serve.shutdown_delay_seconds + serve.drain_timeout_seconds < grace
        }),
        at,
        format!(
            "shutdown delay {} s + drain {} s must fit in terminationGracePeriodSeconds {grace:?}",
            serve.shutdown_delay_seconds, serve.drain_timeout_seconds
        ),
    );
    let mut expected_files = vec![(
        serve.policy.as_deref(),
        "/etc/virt-sizer/policy.yaml",
        ("ConfigMap", POLICY_CONFIGMAP, "policy.yaml"),
    )];
    if certificates.is_self_managed() {
        check_self_managed_flags(check, &serve, &files, namespace, at);
    } else {
        check.expect(
            serve.certificate_secret.is_none()
                && serve.mutating_webhook_configurations.is_empty()
                && serve.validating_webhook_configurations.is_empty(),
            at,
            "mounted certificates: no --certificate-secret and no configuration to inject into",
        );
        expected_files.extend([
            (
                serve.cert.as_deref(),
                "/etc/virt-sizer/tls/tls.crt",
                ("Secret", TLS_SECRET, "tls.crt"),
            ),
            (
                serve.key.as_deref(),
                "/etc/virt-sizer/tls/tls.key",
                ("Secret", TLS_SECRET, "tls.key"),
            ),
        ]);
    }
    for (flag, expected_path, (kind, name, key)) in expected_files {
        let flag = flag.map(|path| path.display().to_string());
        check.expect(
            flag.as_deref() == Some(expected_path),
            at,
            format!("flag path {flag:?}, expected {expected_path}"),
        );
        let source = files.get(expected_path);
        check.expect(
            source == Some(&(kind.to_owned(), name.to_owned(), key.to_owned())),
            at,
            format!("{expected_path} must be key {key} of {kind} {name}, is {source:?}"),
        );
    }
}

/// Self-managed certificates: the Secret in the Pod's namespace, the CA
/// injected into both webhook configurations, the certificate made for
/// the Service, and no certificate file.
fn check_self_managed_flags(
    check: &mut Check,
    serve: &virt_sizer::cli::ServeArgs,
    files: &BTreeMap<String, (String, String, String)>,
    namespace: &str,
    at: &str,
) {
    let secret = serve.certificate_secret.as_ref().map(ToString::to_string);
    check.expect(
        secret == Some(format!("{namespace}/{CERTIFICATE_SECRET}")),
        at,
        format!("--certificate-secret {secret:?}, expected {namespace}/{CERTIFICATE_SECRET}"),
    );
    check.expect(
        serve.mutating_webhook_configurations == [WEBHOOK_CONFIGURATION]
            && serve.validating_webhook_configurations == [POLICY_WEBHOOK_CONFIGURATION],
        at,
        format!(
            "the CA goes into --mutating-webhook-configuration {WEBHOOK_CONFIGURATION} and \
             --validating-webhook-configuration {POLICY_WEBHOOK_CONFIGURATION}, not {:?} and {:?}",
            serve.mutating_webhook_configurations, serve.validating_webhook_configurations
        ),
    );
    check.expect(
        serve.certificate_service == SERVICE && serve.certificate_extra_names.is_empty(),
        at,
        format!("the serving certificate names Service {SERVICE} and nothing else"),
    );
    check.expect(
        serve.cert.is_none() && serve.key.is_none(),
        at,
        "self-managed certificates: no --cert or --key",
    );
    check.expect(
        files.values().all(|(kind, _, _)| kind != "Secret"),
        at,
        format!("self-managed certificates: no Secret mounted, found {files:?}"),
    );
}

/// The container's arguments with `$(NAME)` expanded as the kubelet does,
/// from its `env` (a `value`, or the Pod's namespace through the downward
/// API); a reference to anything else is a problem.
fn expanded_args(check: &mut Check, container: &Value, namespace: &str, at: &str) -> Vec<String> {
    let mut variables = BTreeMap::new();
    for variable in list(container.get("env")) {
        let name = str_at(variable, "/name").unwrap_or_default();
        let value = str_at(variable, "/value").map(str::to_owned).or_else(|| {
            (str_at(variable, "/valueFrom/fieldRef/fieldPath") == Some("metadata.namespace"))
                .then(|| namespace.to_owned())
        });
        match value {
            Some(value) => {
                variables.insert(format!("$({name})"), value);
            }
            None => check.fail(at, format!("env {name}: neither a value nor the namespace")),
        }
    }
    strings(container.get("args"))
        .into_iter()
        .map(|arg| {
            let expanded = variables
                .iter()
                .fold(arg.to_owned(), |arg, (reference, value)| {
                    arg.replace(reference, value)
                });
            check.expect(
                !expanded.contains("$("),
                at,
                format!("argument {arg} names a variable the container does not define"),
            );
            expanded
        })
        .collect()
}

/// Each file path in the container that a ConfigMap or Secret key ends up
/// at: path → (kind, name, key). Flags any subPath mount.
fn mounted_files(
    check: &mut Check,
    container: &Value,
    pod: &Value,
    at: &str,
) -> BTreeMap<String, (String, String, String)> {
    let mut files = BTreeMap::new();
    for mount in list(container.get("volumeMounts")) {
        check.expect(
            mount.get("subPath").is_none() && mount.get("subPathExpr").is_none(),
            at,
            format!("volumeMount {mount} uses subPath: updates would never reach the Pod"),
        );
        check.expect(
            mount.get("readOnly") == Some(&Value::Bool(true)),
            at,
            format!("volumeMount {mount} readOnly"),
        );
        let mount_path = str_at(mount, "/mountPath")
            .unwrap_or_default()
            .trim_end_matches('/');
        let Some(volume) = list(pod.get("volumes"))
            .iter()
            .find(|volume| volume.get("name") == mount.get("name"))
        else {
            check.fail(at, format!("volumeMount {mount} names no volume"));
            continue;
        };
        let mut add = |kind: &str, source: &Value| {
            let name = str_at(source, "/name")
                .or_else(|| str_at(source, "/secretName"))
                .unwrap_or_default();
            for item in list(source.get("items")) {
                files.insert(
                    format!("{mount_path}/{}", str_at(item, "/path").unwrap_or_default()),
                    (
                        kind.to_owned(),
                        name.to_owned(),
                        str_at(item, "/key").unwrap_or_default().to_owned(),
                    ),
                );
            }
        };
        for (field, kind) in [("configMap", "ConfigMap"), ("secret", "Secret")] {
            if let Some(source) = volume.get(field) {
                add(kind, source);
            }
        }
        for source in list(volume.pointer("/projected/sources")) {
            for (field, kind) in [("configMap", "ConfigMap"), ("secret", "Secret")] {
                if let Some(source) = source.get(field) {
                    add(kind, source);
                }
            }
        }
    }
    files
}

pub(super) fn check_rbac(check: &mut Check, docs: &[Doc], certificates: &CaBundle) {
    check_read_only_role(check, docs);
    let written = [
        ("Role", CERTIFICATES_ROLE),
        ("RoleBinding", CERTIFICATES_ROLE),
        ("ClusterRole", WEBHOOK_CONFIGURATIONS_ROLE),
        ("ClusterRoleBinding", WEBHOOK_CONFIGURATIONS_ROLE),
    ];
    if certificates.is_self_managed() {
        check_certificate_roles(check, docs);
    } else {
        for (kind, name) in written {
            check.expect(
                !docs
                    .iter()
                    .any(|doc| doc.kind() == kind && doc.name() == name),
                &format!("{kind} {name}"),
                "mounted certificates: the server writes nothing, so no role to write",
            );
        }
    }
    let known: BTreeSet<(&str, &str)> = written
        .into_iter()
        .chain([
            ("ClusterRole", "virt-sizer"),
            ("ClusterRoleBinding", "virt-sizer"),
        ])
        .collect();
    for doc in docs.iter().filter(|doc| {
        matches!(
            doc.kind(),
            "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
        )
    }) {
        check.expect(
            known.contains(&(doc.kind(), doc.name())),
            &doc.origin,
            format!("an unexpected {} {}", doc.kind(), doc.name()),
        );
    }
}

/// What a role grants: (apiGroup, resource, resourceNames, verbs), sorted.
fn grants(role: &Doc) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let mut granted = BTreeSet::new();
    for rule in list(role.value.get("rules")) {
        let mut names: Vec<String> = strings(rule.get("resourceNames"))
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.sort();
        let mut verbs: Vec<String> = strings(rule.get("verbs"))
            .into_iter()
            .map(str::to_owned)
            .collect();
        verbs.sort();
        for group in strings(rule.get("apiGroups")) {
            for resource in strings(rule.get("resources")) {
                granted.insert((
                    group.to_owned(),
                    resource.to_owned(),
                    names.clone(),
                    verbs.clone(),
                ));
            }
        }
    }
    granted
}

/// The roles self-managed certificates need, and nothing more: get and
/// update of the Secret by name plus create in the namespace (create takes
/// no resourceNames), get and update of the two webhook configurations by
/// name; each bound to the ServiceAccount alone.
fn check_certificate_roles(check: &mut Check, docs: &[Doc]) {
    let owned =
        |items: &[&str]| -> Vec<String> { items.iter().map(|&item| item.to_owned()).collect() };
    let secret_role = one(docs, "Role", CERTIFICATES_ROLE);
    let expected: BTreeSet<_> = [
        (
            "",
            "secrets",
            owned(&[CERTIFICATE_SECRET]),
            owned(&["get", "update"]),
        ),
        ("", "secrets", Vec::new(), owned(&["create"])),
    ]
    .into_iter()
    .map(|(group, resource, names, verbs)| (group.to_owned(), resource.to_owned(), names, verbs))
    .collect();
    let granted = grants(secret_role);
    check.expect(
        granted == expected,
        &secret_role.origin,
        format!("Role {CERTIFICATES_ROLE} grants {granted:?}, expected exactly {expected:?}"),
    );
    let webhook_role = one(docs, "ClusterRole", WEBHOOK_CONFIGURATIONS_ROLE);
    let expected: BTreeSet<_> = [
        ("mutatingwebhookconfigurations", WEBHOOK_CONFIGURATION),
        (
            "validatingwebhookconfigurations",
            POLICY_WEBHOOK_CONFIGURATION,
        ),
    ]
    .into_iter()
    .map(|(resource, name)| {
        (
            "admissionregistration.k8s.io".to_owned(),
            resource.to_owned(),
            owned(&[name]),
            owned(&["get", "update"]),
        )
    })
    .collect();
    let granted = grants(webhook_role);
    check.expect(
        granted == expected,
        &webhook_role.origin,
        format!(
            "ClusterRole {WEBHOOK_CONFIGURATIONS_ROLE} grants {granted:?}, expected exactly {expected:?}"
        ),
    );
    for (kind, name, role_kind) in [
        ("RoleBinding", CERTIFICATES_ROLE, "Role"),
        (
            "ClusterRoleBinding",
            WEBHOOK_CONFIGURATIONS_ROLE,
            "ClusterRole",
        ),
    ] {
        check_binding(check, one(docs, kind, name), role_kind, name);
    }
}

fn check_binding(check: &mut Check, binding: &Doc, role_kind: &str, role: &str) {
    check.expect(
        str_at(&binding.value, "/roleRef/kind") == Some(role_kind)
            && str_at(&binding.value, "/roleRef/name") == Some(role),
        &binding.origin,
        format!("binds {role_kind} {role}"),
    );
    let subjects = list(binding.value.get("subjects"));
    check.expect(
        subjects.len() == 1
            && str_at(&subjects[0], "/kind") == Some("ServiceAccount")
            && str_at(&subjects[0], "/name") == Some("virt-sizer")
            && str_at(&subjects[0], "/namespace") == Some(NAMESPACE),
        &binding.origin,
        "binds only ServiceAccount virt-sizer/virt-sizer",
    );
}

/// ClusterRole virt-sizer: get, list and watch of what sizing reads.
fn check_read_only_role(check: &mut Check, docs: &[Doc]) {
    let role = one(docs, "ClusterRole", "virt-sizer");
    let mut granted = BTreeSet::new();
    for rule in list(role.value.get("rules")) {
        check.expect(
            rule.get("nonResourceURLs").is_none(),
            &role.origin,
            "no nonResourceURLs",
        );
        for verb in strings(rule.get("verbs")) {
            check.expect(
                ["get", "list", "watch"].contains(&verb),
                &role.origin,
                format!("verb {verb}: only get, list and watch"),
            );
        }
        for group in strings(rule.get("apiGroups")) {
            for resource in strings(rule.get("resources")) {
                granted.insert((group.to_owned(), resource.to_owned()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("kubevirt.io", "virtualmachineinstances"),
        ("kubevirt.io", "kubevirts"),
        ("", "namespaces"),
    ]
    .into_iter()
    .map(|(group, resource)| (group.to_owned(), resource.to_owned()))
    .collect();
    check.expect(
        granted == expected,
        &role.origin,
        format!("resources {granted:?}, expected exactly {expected:?}"),
    );
    check_binding(
        check,
        one(docs, "ClusterRoleBinding", "virt-sizer"),
        "ClusterRole",
        "virt-sizer",
    );
    one(docs, "ServiceAccount", "virt-sizer");
}

pub(super) fn check_pdb_and_service(check: &mut Check, docs: &[Doc], deployment: &Doc) {
    let pod_labels = deployment
        .value
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_default();
    let pdb = one(docs, "PodDisruptionBudget", "virt-sizer");
    check.expect(
        pdb.value.pointer("/spec/minAvailable") == Some(&Value::from(1)),
        &pdb.origin,
        "minAvailable 1",
    );
    check.expect(
        selects(pdb.value.pointer("/spec/selector"), &pod_labels),
        &pdb.origin,
        "the PDB selects the Deployment's Pods",
    );

    let service = one(docs, "Service", SERVICE);
    let selector = service
        .value
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_default();
    check.expect(
        selects(
            Some(&serde_json::json!({ "matchLabels": selector })),
            &pod_labels,
        ),
        &service.origin,
        "the Service selects the Deployment's Pods",
    );
    let container_port_name = deployment
        .value
        .pointer("/spec/template/spec/containers/0/ports/0/name")
        .cloned();
    check.expect(
        list(service.value.pointer("/spec/ports"))
            .iter()
            .any(|port| {
                port.get("port") == Some(&Value::from(443))
                    && (port.get("targetPort") == Some(&Value::from(HTTPS_PORT))
                        || port.get("targetPort") == container_port_name.as_ref())
            }),
        &service.origin,
        format!("port 443 → {HTTPS_PORT}"),
    );
}

pub(super) fn check_policy(check: &mut Check, configmap: &Doc) {
    let Some(text) = str_at(&configmap.value, "/data/policy.yaml") else {
        check.fail(&configmap.origin, "no data.policy.yaml");
        return;
    };
    match ValidPolicy::from_yaml(text) {
        Ok(policy) => {
            check.expect(
                policy.on_error == virt_sizer::sizing::policy::OnError::Allow,
                &configmap.origin,
                "the shipped policy is onError: Allow",
            );
        }
        Err(errors) => check.fail(&configmap.origin, format!("policy invalid:\n{errors}")),
    }
}
