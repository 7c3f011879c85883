//! Tests: components, and installing into another namespace.

use super::*;

/// Every string leaf of `value` with its JSON pointer.
fn string_leaves<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(text) => out.push((at, text)),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                string_leaves(item, format!("{at}/{index}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                string_leaves(
                    item,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
}

/// One rendering is installed in `namespace`, consistently: every object,
/// the webhooks' Service reference and their namespaceSelectors (the Pod
/// webhooks' exclusion, the policy webhook's selection),
/// the ServiceAccount binding, the serving certificate's DNS names and
/// cert-manager's inject-ca-from; and no object names the base's namespace
/// where a namespace belongs (when it is another).
fn check_namespace(check: &mut Check, docs: &[Doc], namespace: &str) {
    let namespaces: Vec<&str> = docs
        .iter()
        .filter(|doc| doc.kind() == "Namespace")
        .map(Doc::name)
        .collect();
    check.expect(
        namespaces == [namespace],
        "Namespace",
        format!("the Namespace objects are {namespaces:?}, expected [{namespace}]"),
    );
    for doc in docs {
        let at = format!("{} ({} {})", doc.origin, doc.kind(), doc.name());
        let api_version = str_at(&doc.value, "/apiVersion").unwrap_or_default();
        if kinds::kind_of(api_version, doc.kind()).is_none_or(|kind| kind.namespaced) {
            let found = str_at(&doc.value, "/metadata/namespace");
            check.expect(
                found == Some(namespace),
                &at,
                format!("in namespace {found:?}, expected {namespace}"),
            );
        }
        for webhook in list(doc.value.get("webhooks")) {
            let found = str_at(webhook, "/clientConfig/service/namespace");
            check.expect(
                found == Some(namespace),
                &at,
                format!("webhook calls a Service in {found:?}, expected {namespace}"),
            );
            if doc.kind() == "ValidatingWebhookConfiguration" {
                check.expect(
                    selects_only_namespace(webhook.get("namespaceSelector"), namespace),
                    &at,
                    format!("the policy webhook's namespaceSelector must select only {namespace}"),
                );
            } else if webhook.get("namespaceSelector").is_some() {
                check.expect(
                    excludes_namespaces(
                        webhook.get("namespaceSelector"),
                        &["kube-system", namespace],
                    ),
                    &at,
                    format!("the namespaceSelector must exclude kube-system and {namespace}"),
                );
            }
        }
        if let Some(from) = str_at(
            &doc.value,
            "/metadata/annotations/cert-manager.io~1inject-ca-from",
        ) {
            check.expect(
                from == format!("{namespace}/virt-sizer-serving"),
                &at,
                format!("inject-ca-from {from}, expected {namespace}/virt-sizer-serving"),
            );
        }
        if doc.kind() == "ClusterRoleBinding" || doc.kind() == "RoleBinding" {
            for subject in list(doc.value.get("subjects")) {
                check.expect(
                    str_at(subject, "/namespace") == Some(namespace),
                    &at,
                    format!("subject {subject} is not in {namespace}"),
                );
            }
        }
        if doc.kind() == "Certificate" && doc.name() == "virt-sizer-serving" {
            let service = format!("{SERVICE}.{namespace}.svc");
            check.expect(
                strings(doc.value.pointer("/spec/dnsNames"))
                    == [service.clone(), format!("{service}.cluster.local")]
                    && str_at(&doc.value, "/spec/commonName").is_none_or(|name| name == service),
                &at,
                format!("the serving certificate must name {service} (and .cluster.local)"),
            );
        }
        if namespace == NAMESPACE {
            continue;
        }
        // Whatever the fields: nothing still points at the base's namespace.
        // (The policy and dashboard texts are data, not references.)
        let mut leaves = Vec::new();
        string_leaves(&doc.value, String::new(), &mut leaves);
        for (pointer, text) in leaves {
            if pointer.starts_with("/data/") {
                continue;
            }
            let stale = text.contains(&format!(".{NAMESPACE}.svc"))
                || text.starts_with(&format!("{NAMESPACE}/"))
                || (text == NAMESPACE
                    && (pointer.ends_with("/namespace")
                        || pointer.contains("/namespaceSelector/")
                        || pointer.ends_with("/metadata/name") && doc.kind() == "Namespace"));
            check.expect(!stale, &at, format!("{pointer} is still {text:?}"));
        }
    }
}

/// The monitoring component, as an overlay uses it: a ServiceMonitor on the
/// probe port, the alerts, the dashboard.
fn check_components(check: &mut Check, docs: &[Doc]) {
    let deployment = one(docs, "Deployment", "virt-sizer");
    let container_ports = list(
        deployment
            .value
            .pointer("/spec/template/spec/containers/0/ports"),
    );
    let probe_port = container_ports
        .iter()
        .find(|port| port.get("containerPort") == Some(&Value::from(PROBE_PORT)));
    let probe_port_name = probe_port.and_then(|port| str_at(port, "/name"));
    check.expect(
        probe_port_name == Some("probes"),
        &deployment.origin,
        "container port 8081 is named probes",
    );

    let service = one(docs, "Service", SERVICE);
    let monitor = one(docs, "ServiceMonitor", "virt-sizer");
    let service_labels = service
        .value
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_default();
    check.expect(
        selects(monitor.value.pointer("/spec/selector"), &service_labels),
        &monitor.origin,
        "the ServiceMonitor selects the Service",
    );
    let endpoints = list(monitor.value.pointer("/spec/endpoints"));
    check.expect(endpoints.len() == 1, &monitor.origin, "one endpoint");
    for endpoint in endpoints {
        let port_name = str_at(endpoint, "/port");
        let service_port = list(service.value.pointer("/spec/ports"))
            .iter()
            .find(|port| str_at(port, "/name") == port_name);
        let target = service_port.and_then(|port| port.get("targetPort"));
        check.expect(
            target == Some(&Value::from(PROBE_PORT))
                || (target.is_some() && target.and_then(Value::as_str) == probe_port_name),
            &monitor.origin,
            format!("endpoint port {port_name:?} must be the Service port onto the probe port {PROBE_PORT}"),
        );
        check.expect(
            str_at(endpoint, "/scheme") == Some("http")
                && str_at(endpoint, "/path") == Some("/metrics"),
            &monitor.origin,
            "scrapes /metrics over plain HTTP (the probe port has no TLS)",
        );
    }

    let rules = one(docs, "PrometheusRule", "virt-sizer");
    let alerts: BTreeSet<&str> = list(rules.value.pointer("/spec/groups"))
        .iter()
        .flat_map(|group| list(group.get("rules")))
        .filter_map(|rule| str_at(rule, "/alert"))
        .collect();
    for alert in [
        "VirtSizerNoReadyReplicas",
        "VirtSizerAdmissionErrors",
        "VirtSizerAdmissionLatencyHigh",
        "VirtSizerPolicyReloadFailing",
        "VirtSizerCertificateExpiringSoon",
    ] {
        check.expect(
            alerts.contains(alert),
            &rules.origin,
            format!("no alert {alert}"),
        );
    }

    let dashboard = one(docs, "ConfigMap", "virt-sizer-dashboard");
    check.expect(
        str_at(&dashboard.value, "/metadata/labels/grafana_dashboard") == Some("1"),
        &dashboard.origin,
        "the dashboard ConfigMap is labelled grafana_dashboard: \"1\"",
    );
    let json = str_at(&dashboard.value, "/data/virt-sizer.json").unwrap_or_default();
    check.expect(
        serde_json::from_str::<Value>(json)
            .is_ok_and(|board| list(board.get("panels")).len() >= 10),
        &dashboard.origin,
        "data[virt-sizer.json] is a Grafana dashboard",
    );
}

/// `manifests/overlays/NAME` in a copy of the tree, made of `base` plus
/// every add-on component.
fn write_overlay_with_components(manifests: &Path, name: &str, base: &str) -> PathBuf {
    let dir = manifests.join("overlays").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let components = add_on_components(manifests);
    let text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../{base}\ncomponents:\n{}",
        components
            .iter()
            .map(|component| format!("  - ../../components/{component}\n"))
            .collect::<String>()
    );
    std::fs::write(dir.join("kustomization.yaml"), text).expect("write");
    dir
}

#[test]
fn components_render_onto_an_overlay() {
    if !have_kubectl() {
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let manifests = temp.path().join("manifests");
    copy_tree(&manifests_dir(), &manifests);
    for (base, ca_bundle) in [
        ("cert-manager", CaBundle::Injected),
        ("example-policy", CaBundle::SelfManaged),
    ] {
        let dir =
            write_overlay_with_components(&manifests, &format!("{base}-with-components"), base);
        let docs = kustomize(&dir);
        let what = format!("{base} + components");
        check_rules(
            &docs,
            &Expect {
                failure_policy: "Ignore",
                ca_bundle,
            },
            &what,
        );
        let mut check = Check::default();
        check_components(&mut check, &docs);
        check_namespace(&mut check, &docs, NAMESPACE);
        check.finish(&what);
    }
}

/// `namespace:` changed in the default install and the overlays (as
/// `kustomize edit set namespace` does) moves the whole install,
/// consistently: the default install, cert-manager (with every add-on
/// component), fail-closed and example-policy, and certs-script with a
/// certificate made for the new namespace.
#[test]
fn renaming_the_namespace_keeps_the_install_consistent() {
    const RENAMED: &str = "tenant-x";
    if !have_kubectl() {
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let manifests = temp.path().join("manifests");
    copy_tree(&manifests_dir(), &manifests);
    let kustomizations = [
        ".",
        "overlays/cert-manager",
        "overlays/certs-script",
        "overlays/fail-closed",
        "overlays/example-policy",
    ];
    for kustomization in kustomizations {
        let file = manifests.join(kustomization).join("kustomization.yaml");
        let text = std::fs::read_to_string(&file).expect("kustomization");
        let line = format!("\nnamespace: {NAMESPACE}\n");
        assert!(
            text.contains(&line),
            "{kustomization} sets `namespace: {NAMESPACE}`"
        );
        let mut text = text.replace(&line, &format!("\nnamespace: {RENAMED}\n"));
        if kustomization == "overlays/cert-manager" {
            let added: String = add_on_components(&manifests)
                .iter()
                .map(|component| format!("  - ../../components/{component}\n"))
                .collect();
            assert!(text.contains("\ncomponents:\n"), "{kustomization}");
            text = text.replace("\ncomponents:\n", &format!("\ncomponents:\n{added}"));
        }
        std::fs::write(&file, text).expect("write");
    }
    let mut renderings = vec![("default", kustomize(&manifests))];
    for overlay in ["cert-manager", "fail-closed", "example-policy"] {
        renderings.push((
            overlay,
            kustomize(&manifests.join("overlays").join(overlay)),
        ));
    }
    if have("openssl", &["version"]) {
        gen_certs(&temp.path().join("certs/out"), &["--namespace", RENAMED]);
        renderings.push((
            "certs-script",
            kustomize(&manifests.join("overlays/certs-script")),
        ));
    } else {
        eprintln!("skipped overlays/certs-script: needs openssl");
    }
    for (overlay, docs) in &renderings {
        let mut check = Check::default();
        check_namespace(&mut check, docs, RENAMED);
        if *overlay == "cert-manager" {
            check_components(&mut check, docs);
        }
        check.finish(&format!("overlays/{overlay} in namespace {RENAMED}"));
    }
}
