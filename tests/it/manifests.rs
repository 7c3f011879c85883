//! The deployment artefacts: `manifests/` (base and overlays), `certs/` and
//! the `Dockerfile`.
//!
//! Every Kubernetes document under `manifests/` must decode strictly into the
//! type its `apiVersion`/`kind` name (k8s-openapi's, or a small one in
//! [`kinds`] for cert-manager, the Prometheus Operator and kustomize), with
//! no field its type does not have: a typo such as `readinessprobe` is
//! silently dropped by the apiserver, so it is caught here. And the rules
//! that make the webhook safe must hold: what the webhook intercepts and how
//! it fails, how the Deployment is hardened, what RBAC allows, and that the
//! shipped policy is valid.
//!
//! With `kubectl` on the PATH the base and every overlay are also rendered
//! (`kubectl kustomize`) and the rendered output is held to the same rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use clap::Parser as _;
use serde_json::Value;
use virt_sizer::cli::{Cli, Command as Verb};
use virt_sizer::documents::parse_documents;
use virt_sizer::sizing::policy::ValidPolicy;

mod kinds;

// === What the manifests promise ===

const NAMESPACE: &str = "virt-sizer";
const SERVICE: &str = "virt-sizer";
const WEBHOOK_CONFIGURATION: &str = "virt-sizer";
const TLS_SECRET: &str = "virt-sizer-tls";
const POLICY_CONFIGMAP: &str = "virt-sizer-policy";
const POLICY_WEBHOOK_CONFIGURATION: &str = "virt-sizer-policy";
const IMAGE_REPOSITORY: &str = "ghcr.io/virt-sizer/virt-sizer";
const UID: u64 = 65532;
const HTTPS_PORT: u64 = 8443;
const PROBE_PORT: u64 = 8081;
const LAUNCHER_WEBHOOK: &str = "launcher-pods.virt-sizer.io";
const KATA_WEBHOOK: &str = "kata-pods.virt-sizer.io";
const RUNTIMECLASS_WEBHOOK: &str = "runtimeclasses.virt-sizer.io";
const KATA_CONDITION: &str =
    "has(object.spec.runtimeClassName) && object.spec.runtimeClassName.startsWith('kata')";
const PLACEHOLDER_CA_BUNDLE: &str = "Cg==";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests_dir() -> PathBuf {
    repo().join("manifests")
}

// === Reading ===

/// One YAML document and where it came from.
#[derive(Debug, Clone)]
struct Doc {
    origin: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        str_at(&self.value, "/kind").unwrap_or_default()
    }
    fn name(&self) -> &str {
        str_at(&self.value, "/metadata/name").unwrap_or_default()
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn read_docs(path: &Path) -> Vec<Doc> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    parse_text(&text, &path.display().to_string())
}

fn parse_text(text: &str, origin: &str) -> Vec<Doc> {
    parse_documents(text)
        .unwrap_or_else(|error| panic!("{origin}: {error:#}"))
        .into_iter()
        .enumerate()
        .map(|(index, value)| Doc {
            origin: format!("{origin}#{index}"),
            value,
        })
        .collect()
}

/// Every `*.yaml` under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == "kustomization.yaml" || name == "kustomization.yml")
}

/// Files that kustomization.yaml files use as patches: partial objects.
fn patch_files() -> BTreeSet<PathBuf> {
    let mut patches = BTreeSet::new();
    for file in yaml_files(&manifests_dir())
        .into_iter()
        .filter(|f| is_kustomization(f))
    {
        let dir = file.parent().expect("in a directory");
        for doc in read_docs(&file) {
            for patch in list(doc.value.get("patches")) {
                if let Some(path) = patch.get("path").and_then(Value::as_str) {
                    patches.insert(normalise(&dir.join(path)));
                }
            }
            for path in list(doc.value.get("patchesStrategicMerge")) {
                if let Some(path) = path.as_str() {
                    patches.insert(normalise(&dir.join(path)));
                }
            }
        }
    }
    patches
}

fn normalise(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

/// Every complete object under manifests/ (no kustomization, no patch).
fn manifest_docs() -> Vec<Doc> {
    let patches = patch_files();
    yaml_files(&manifests_dir())
        .into_iter()
        .filter(|file| !is_kustomization(file) && !patches.contains(&normalise(file)))
        .flat_map(|file| read_docs(&file))
        .collect()
}

/// The complete objects of the base (what `kubectl kustomize manifests`
/// renders), read straight from the files.
fn base_docs() -> Vec<Doc> {
    let base = manifests_dir().join("base");
    let kustomization = read_docs(&base.join("kustomization.yaml"));
    list(kustomization[0].value.get("resources"))
        .iter()
        .filter_map(Value::as_str)
        .flat_map(|resource| read_docs(&base.join(resource)))
        .collect()
}

fn list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    list(value).iter().filter_map(Value::as_str).collect()
}

fn one<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|doc| doc.kind() == kind && doc.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}, found {found:?}");
    found[0]
}

// === Problems are collected, then reported together ===

#[derive(Debug, Default)]
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn fail(&mut self, at: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{at}: {message}"));
    }

    fn expect(&mut self, ok: bool, at: &str, message: impl std::fmt::Display) {
        if !ok {
            self.fail(at, message);
        }
    }

    fn finish(self, what: &str) {
        assert!(
            self.problems.is_empty(),
            "{what}: {} problem(s):\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }
}

// === Types: each object decodes strictly into its kind ===

/// Checks one complete object: it decodes strictly into the type its
/// apiVersion/kind name ([`kinds::kind_of`]), has a name, a spec where
/// required, a namespace exactly when its kind is namespaced, and a base64
/// caBundle.
fn check_type(check: &mut Check, doc: &Doc) {
    let at = format!("{} ({} {})", doc.origin, doc.kind(), doc.name());
    let api_version = str_at(&doc.value, "/apiVersion").unwrap_or_default();
    let Some(kind) = kinds::kind_of(api_version, doc.kind()) else {
        check.fail(&at, format!("unexpected type {api_version}/{}", doc.kind()));
        return;
    };
    if let Err(problems) = (kind.decode)(&doc.value) {
        for problem in problems {
            check.fail(&at, problem);
        }
    }
    check.expect(
        !doc.name().is_empty(),
        &at,
        "missing required field \"name\" of ObjectMeta",
    );
    check.expect(
        !kind.spec_required || doc.value.get("spec").is_some(),
        &at,
        format!("missing required field \"spec\" of {}", doc.kind()),
    );
    let namespace = str_at(&doc.value, "/metadata/namespace");
    if kind.namespaced {
        check.expect(
            namespace.is_some(),
            &at,
            "a namespaced object without a namespace",
        );
    } else {
        check.expect(
            namespace.is_none(),
            &at,
            "a cluster-scoped object with a namespace",
        );
    }
    if let Some(bundle) = str_at(&doc.value, "/webhooks/0/clientConfig/caBundle") {
        use base64::Engine as _;
        check.expect(
            base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .is_ok(),
            &at,
            "caBundle is not base64",
        );
    }
}

// === The rules ===

/// What the webhook's caBundle must be in a given rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CaBundle {
    /// The base's placeholder.
    Placeholder,
    /// Absent: cert-manager's CA injector owns the field.
    Injected,
    /// Exactly this (base64 of the CA bundle PEM).
    Exactly(String),
}

/// The policy ConfigMap is checked at apply time: the validating webhook
/// selects it by label, calls `/validate-policy` on the Service, with the
/// rendering's caBundle, and never blocks a repair (`Ignore`).
fn check_policy_webhook(check: &mut Check, configuration: &Doc, configmap: &Doc, expect: &Expect) {
    let at = &configuration.origin;
    let webhooks = list(configuration.value.get("webhooks"));
    check.expect(webhooks.len() == 1, at, "one policy webhook");
    let Some(webhook) = webhooks.first() else {
        return;
    };
    check.expect(
        str_at(webhook, "/clientConfig/service/name") == Some(SERVICE)
            && str_at(webhook, "/clientConfig/service/namespace") == Some(NAMESPACE)
            && str_at(webhook, "/clientConfig/service/path") == Some("/validate-policy")
            && str_at(webhook, "/objectSelector/matchLabels/virt-sizer.io~1policy") == Some("true")
            && str_at(webhook, "/failurePolicy") == Some("Ignore")
            && str_at(webhook, "/sideEffects") == Some("None"),
        at,
        "the policy webhook calls /validate-policy for ConfigMaps labelled virt-sizer.io/policy=true, failurePolicy Ignore",
    );
    let rules = list(webhook.get("rules"));
    check.expect(
        rules.iter().any(|rule| {
            strings(rule.get("resources")) == ["configmaps"]
                && strings(rule.get("operations")) == ["CREATE", "UPDATE"]
        }),
        at,
        "the policy webhook sees ConfigMap CREATE and UPDATE",
    );
    let bundle = str_at(webhook, "/clientConfig/caBundle");
    let annotation = str_at(
        &configuration.value,
        "/metadata/annotations/cert-manager.io~1inject-ca-from",
    );
    let bundle_ok = match &expect.ca_bundle {
        CaBundle::Placeholder => bundle == Some(PLACEHOLDER_CA_BUNDLE) && annotation.is_none(),
        CaBundle::Injected => {
            bundle.is_none() && annotation == Some("virt-sizer/virt-sizer-serving")
        }
        CaBundle::Exactly(expected) => bundle == Some(expected.as_str()) && annotation.is_none(),
    };
    check.expect(
        bundle_ok,
        at,
        format!(
            "policy webhook caBundle {bundle:?} / inject-ca-from {annotation:?}, expected {:?}",
            expect.ca_bundle
        ),
    );
    check.expect(
        str_at(&configmap.value, "/metadata/labels/virt-sizer.io~1policy") == Some("true"),
        &configmap.origin,
        "the policy ConfigMap is labelled virt-sizer.io/policy=true (checked at apply time)",
    );
}

/// What one rendering (base, or an overlay) must satisfy.
#[derive(Debug, Clone)]
struct Expect {
    failure_policy: &'static str,
    ca_bundle: CaBundle,
}

/// All the rules, over the complete objects of one rendering.
fn check_rules(docs: &[Doc], expect: &Expect, what: &str) {
    let mut check = Check::default();
    for doc in docs {
        check_type(&mut check, doc);
    }
    check_webhooks(
        &mut check,
        one(docs, "MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION),
        expect,
    );
    check_policy_webhook(
        &mut check,
        one(
            docs,
            "ValidatingWebhookConfiguration",
            POLICY_WEBHOOK_CONFIGURATION,
        ),
        one(docs, "ConfigMap", POLICY_CONFIGMAP),
        expect,
    );
    let deployment = one(docs, "Deployment", "virt-sizer");
    check_deployment(&mut check, deployment, docs);
    check_rbac(&mut check, docs);
    check_pdb_and_service(&mut check, docs, deployment);
    check_policy(&mut check, one(docs, "ConfigMap", POLICY_CONFIGMAP));
    let namespace = one(docs, "Namespace", NAMESPACE);
    check.expect(
        str_at(
            &namespace.value,
            "/metadata/labels/pod-security.kubernetes.io~1enforce",
        ) == Some("restricted"),
        &namespace.origin,
        "the namespace enforces the restricted Pod Security Standard",
    );
    for doc in docs {
        let namespace = str_at(&doc.value, "/metadata/namespace");
        check.expect(
            namespace.is_none() || namespace == Some(NAMESPACE),
            &doc.origin,
            format!("in namespace {namespace:?}, expected {NAMESPACE}"),
        );
    }
    check.finish(what);
}

fn check_webhooks(check: &mut Check, configuration: &Doc, expect: &Expect) {
    let at = &configuration.origin;
    let webhooks = list(configuration.value.get("webhooks"));
    let names: Vec<&str> = webhooks
        .iter()
        .filter_map(|webhook| str_at(webhook, "/name"))
        .collect();
    check.expect(
        names == [LAUNCHER_WEBHOOK, KATA_WEBHOOK, RUNTIMECLASS_WEBHOOK],
        at,
        format!("webhooks {names:?}"),
    );
    let annotation = str_at(
        &configuration.value,
        "/metadata/annotations/cert-manager.io~1inject-ca-from",
    );
    match &expect.ca_bundle {
        CaBundle::Injected => check.expect(
            annotation == Some("virt-sizer/virt-sizer-serving"),
            at,
            format!("cert-manager.io/inject-ca-from is {annotation:?}"),
        ),
        _ => check.expect(
            annotation.is_none(),
            at,
            "an inject-ca-from annotation without cert-manager",
        ),
    }

    for webhook in webhooks {
        let name = str_at(webhook, "/name").unwrap_or("?");
        let at = format!("{at} webhook {name}");
        check.expect(
            str_at(webhook, "/sideEffects") == Some("None"),
            &at,
            "sideEffects must be None",
        );
        check.expect(
            strings(webhook.get("admissionReviewVersions")) == ["v1"],
            &at,
            "admissionReviewVersions must be [v1]",
        );
        check.expect(
            str_at(webhook, "/reinvocationPolicy") == Some("IfNeeded"),
            &at,
            "reinvocationPolicy must be IfNeeded",
        );
        let timeout = webhook.get("timeoutSeconds").and_then(Value::as_u64);
        check.expect(
            timeout.is_some_and(|seconds| (1..=3).contains(&seconds)),
            &at,
            format!("timeoutSeconds must be set and at most 3, is {timeout:?}"),
        );
        let failure_policy = str_at(webhook, "/failurePolicy");
        check.expect(
            failure_policy == Some(expect.failure_policy),
            &at,
            format!(
                "failurePolicy {failure_policy:?}, expected {}",
                expect.failure_policy
            ),
        );
        check.expect(
            str_at(webhook, "/clientConfig/service/name") == Some(SERVICE)
                && str_at(webhook, "/clientConfig/service/namespace") == Some(NAMESPACE)
                && str_at(webhook, "/clientConfig/service/path") == Some("/mutate")
                && webhook
                    .pointer("/clientConfig/service/port")
                    .and_then(Value::as_u64)
                    .is_none_or(|port| port == 443),
            &at,
            "clientConfig must call service virt-sizer/virt-sizer on 443 at /mutate",
        );
        check.expect(
            webhook.pointer("/clientConfig/url").is_none(),
            &at,
            "no clientConfig.url",
        );
        let bundle = str_at(webhook, "/clientConfig/caBundle");
        let bundle_ok = match &expect.ca_bundle {
            CaBundle::Placeholder => bundle == Some(PLACEHOLDER_CA_BUNDLE),
            CaBundle::Injected => bundle.is_none(),
            CaBundle::Exactly(expected) => bundle == Some(expected.as_str()),
        };
        check.expect(
            bundle_ok,
            &at,
            format!("caBundle {bundle:?}, expected {:?}", expect.ca_bundle),
        );

        let rules = list(webhook.get("rules"));
        check.expect(rules.len() == 1, &at, "exactly one rule");
        let rule = rules.first().cloned().unwrap_or_default();
        let (group, resource, operations): (&str, &str, &[&str]) = match name {
            RUNTIMECLASS_WEBHOOK => ("node.k8s.io", "runtimeclasses", &["CREATE", "UPDATE"]),
            _ => ("", "pods", &["CREATE"]),
        };
        check.expect(
            strings(rule.get("apiGroups")) == [group]
                && strings(rule.get("apiVersions")) == ["v1"]
                && strings(rule.get("resources")) == [resource]
                && strings(rule.get("operations")) == operations,
            &at,
            format!("rule must be {group}/v1 {resource} {operations:?}, is {rule}"),
        );

        if name == RUNTIMECLASS_WEBHOOK {
            // Cluster-scoped: a namespaceSelector would never match anything.
            check.expect(
                webhook.get("namespaceSelector").is_none(),
                &at,
                "no namespaceSelector on a cluster-scoped resource",
            );
        } else {
            check.expect(
                excludes_namespaces(webhook.get("namespaceSelector"), &["kube-system", NAMESPACE]),
                &at,
                "namespaceSelector must exclude kube-system and virt-sizer by kubernetes.io/metadata.name NotIn",
            );
        }
        match name {
            LAUNCHER_WEBHOOK => {
                check.expect(
                    webhook.pointer("/objectSelector/matchLabels")
                        == Some(&serde_json::json!({"kubevirt.io": "virt-launcher"}))
                        && webhook
                            .pointer("/objectSelector/matchExpressions")
                            .is_none(),
                    &at,
                    "objectSelector must be exactly matchLabels kubevirt.io: virt-launcher",
                );
                check.expect(
                    webhook.get("matchConditions").is_none(),
                    &at,
                    "no matchConditions",
                );
            }
            KATA_WEBHOOK => {
                let expressions = list(webhook.pointer("/objectSelector/matchExpressions"));
                check.expect(
                    expressions.iter().any(|expression| {
                        str_at(expression, "/key") == Some("kubevirt.io")
                            && str_at(expression, "/operator") == Some("NotIn")
                            && strings(expression.get("values")) == ["virt-launcher"]
                    }),
                    &at,
                    "objectSelector must exclude launcher Pods (kubevirt.io NotIn [virt-launcher])",
                );
                let conditions: Vec<&str> = list(webhook.get("matchConditions"))
                    .iter()
                    .filter_map(|condition| str_at(condition, "/expression"))
                    .collect();
                check.expect(
                    conditions == [KATA_CONDITION],
                    &at,
                    format!("matchConditions must be [{KATA_CONDITION}], are {conditions:?}"),
                );
            }
            _ => {}
        }
    }
}

/// The selector keeps out every namespace in `excluded` (and only does so
/// with the immutable name label, which no tenant can change).
fn excludes_namespaces(selector: Option<&Value>, excluded: &[&str]) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    list(selector.get("matchExpressions"))
        .iter()
        .any(|expression| {
            let values = strings(expression.get("values"));
            str_at(expression, "/key") == Some("kubernetes.io/metadata.name")
                && str_at(expression, "/operator") == Some("NotIn")
                && excluded.iter().all(|name| values.contains(name))
        })
}

fn check_deployment(check: &mut Check, deployment: &Doc, docs: &[Doc]) {
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

    // The arguments: valid flags of this binary, and the files they name are
    // mounted from the ConfigMap and the Secret.
    let files = mounted_files(check, container, &pod, at);
    let args = strings(container.get("args"));
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
    let expected_files = [
        (
            serve.policy.as_deref(),
            "/etc/virt-sizer/policy.yaml",
            ("ConfigMap", POLICY_CONFIGMAP, "policy.yaml"),
        ),
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
    ];
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

/// Whether a label selector (matchLabels only) selects `labels`.
fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(match_labels) = selector
        .and_then(|selector| selector.get("matchLabels"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    !match_labels.is_empty()
        && match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

fn check_rbac(check: &mut Check, docs: &[Doc]) {
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
    check.expect(
        !docs
            .iter()
            .any(|doc| doc.kind() == "Role" || doc.kind() == "RoleBinding"),
        &role.origin,
        "no namespaced Role or RoleBinding",
    );

    let binding = one(docs, "ClusterRoleBinding", "virt-sizer");
    check.expect(
        str_at(&binding.value, "/roleRef/kind") == Some("ClusterRole")
            && str_at(&binding.value, "/roleRef/name") == Some("virt-sizer"),
        &binding.origin,
        "binds ClusterRole virt-sizer",
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
    one(docs, "ServiceAccount", "virt-sizer");
}

fn check_pdb_and_service(check: &mut Check, docs: &[Doc], deployment: &Doc) {
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

fn check_policy(check: &mut Check, configmap: &Doc) {
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

// === Tests: the files as written ===

#[test]
fn every_manifest_is_a_well_formed_object_of_its_kind() {
    let docs = manifest_docs();
    assert!(
        docs.len() >= 14,
        "expected the base and overlay objects, found {}",
        docs.len()
    );
    let mut check = Check::default();
    for doc in &docs {
        check_type(&mut check, doc);
    }
    check.finish("manifests/");
}

/// A Deployment that decodes cleanly when `KEY` is `readinessProbe`.
const DEPLOYMENT_WITH_A_PROBE: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: virt-sizer, namespace: virt-sizer}
spec:
  replicas: 2
  selector: {matchLabels: {app: virt-sizer}}
  template:
    metadata: {labels: {app: virt-sizer}}
    spec:
      containers:
        - name: virt-sizer
          image: ghcr.io/virt-sizer/virt-sizer:0.1.0
          KEY: {httpGet: {path: /readyz, port: 8081}}
";

/// A Deployment that decodes cleanly when `KEY` is a number.
const DEPLOYMENT_WITH_REPLICAS: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: virt-sizer, namespace: virt-sizer}
spec:
  replicas: KEY
  selector: {matchLabels: {app: virt-sizer}}
  template: {spec: {containers: [{name: virt-sizer, image: virt-sizer}]}}
";

/// A cert-manager Certificate that decodes cleanly when `KEY` is `dnsNames`.
const CERTIFICATE: &str = "
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: virt-sizer-serving, namespace: virt-sizer}
spec:
  secretName: virt-sizer-tls
  KEY: [virt-sizer.virt-sizer.svc]
  issuerRef: {name: virt-sizer-ca, kind: Issuer}
";

/// What [`check_type`] finds wrong with `template` once `KEY` is `key`.
fn type_problems(template: &str, key: &str) -> Vec<String> {
    let docs = parse_text(&template.replace("KEY", key), "inline");
    let mut check = Check::default();
    check_type(&mut check, &docs[0]);
    check.problems
}

/// The strict decode catches what the apiserver would drop or refuse, and
/// names where: `right` passes, `wrong` fails with `expected` in a problem.
#[rstest::rstest]
#[case::misspelled_field_of_a_k8s_openapi_kind(
    DEPLOYMENT_WITH_A_PROBE,
    "readinessProbe",
    "readinessprobe",
    "unknown field spec.template.spec.containers[0].readinessprobe"
)]
#[case::wrong_type_of_a_k8s_openapi_kind(
    DEPLOYMENT_WITH_REPLICAS,
    "2",
    "two",
    "spec.replicas: invalid type: string \"two\""
)]
#[case::misspelled_field_of_a_cert_manager_kind(
    CERTIFICATE,
    "dnsNames",
    "dnsName",
    "unknown field spec.dnsName"
)]
fn a_manifest_mistake_is_caught_with_its_path(
    #[case] template: &str,
    #[case] right: &str,
    #[case] wrong: &str,
    #[case] expected: &str,
) {
    assert_eq!(type_problems(template, right), Vec::<String>::new());
    let problems = type_problems(template, wrong);
    assert!(
        problems.iter().any(|problem| problem.contains(expected)),
        "{expected:?} not in {problems:#?}"
    );
}

#[test]
fn a_misspelled_kustomization_field_is_caught_with_its_path() {
    let decode = |key: &str| {
        let text = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n{key}: [base]\n"
        );
        kinds::decode_strict::<kinds::Kustomization>(&parse_text(&text, "inline")[0].value)
    };
    assert_eq!(
        decode("resources").map(|kustomization| kustomization.resources),
        Ok(vec!["base".to_owned()])
    );
    assert_eq!(
        decode("resource").map(|kustomization| kustomization.resources),
        Err(vec!["unknown field resource".to_owned()])
    );
}

#[test]
fn base_satisfies_every_rule() {
    check_rules(
        &base_docs(),
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Placeholder,
        },
        "manifests/base",
    );
}

#[test]
fn every_kustomization_names_files_that_exist_and_base_lists_every_file() {
    let mut check = Check::default();
    for file in yaml_files(&manifests_dir())
        .into_iter()
        .filter(|f| is_kustomization(f))
    {
        let dir = file.parent().expect("in a directory");
        let at = file.display().to_string();
        let docs = read_docs(&file);
        check.expect(docs.len() == 1, &at, "one document");
        let kustomization = match kinds::decode_strict::<kinds::Kustomization>(&docs[0].value) {
            Ok(kustomization) => kustomization,
            Err(problems) => {
                for problem in problems {
                    check.fail(&at, problem);
                }
                continue;
            }
        };
        // A directory under components/ is a kustomize Component (added to
        // an overlay with `components:`); everything else a Kustomization.
        let is_component = dir.strip_prefix(manifests_dir().join("components")).is_ok();
        let (api_version, kind) = if is_component {
            ("kustomize.config.k8s.io/v1alpha1", "Component")
        } else {
            ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        };
        check.expect(
            kustomization.api_version == api_version && kustomization.kind == kind,
            &at,
            format!("a {api_version} {kind}"),
        );
        let mut referenced: Vec<&str> = kustomization
            .resources
            .iter()
            .chain(&kustomization.components)
            .map(String::as_str)
            .collect();
        referenced.extend(
            kustomization
                .patches
                .iter()
                .filter_map(|patch| patch.path.as_deref()),
        );
        for generator in &kustomization.config_map_generator {
            referenced.extend(
                generator
                    .files
                    .iter()
                    .map(|file| file.split_once('=').map_or(file.as_str(), |(_, path)| path)),
            );
        }
        for path in referenced {
            // certs/out is written by certs/gen-certs.sh and git-ignored.
            let generated = path.ends_with("certs/out");
            check.expect(
                generated || dir.join(path).exists(),
                &at,
                format!("{path} does not exist"),
            );
        }
        for (deprecated, present) in [
            ("bases", kustomization.bases.is_some()),
            (
                "patchesStrategicMerge",
                kustomization.patches_strategic_merge.is_some(),
            ),
            ("patchesJson6902", kustomization.patches_json6902.is_some()),
            ("commonLabels", kustomization.common_labels.is_some()),
            ("vars", kustomization.vars.is_some()),
        ] {
            check.expect(!present, &at, format!("deprecated field {deprecated}"));
        }
    }
    let base = manifests_dir().join("base");
    let listed: BTreeSet<String> = strings(
        read_docs(&base.join("kustomization.yaml"))[0]
            .value
            .get("resources"),
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    for file in yaml_files(&base)
        .into_iter()
        .filter(|f| !is_kustomization(f))
    {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        check.expect(
            listed.contains(&name),
            &base.display().to_string(),
            format!("{name} is not in resources"),
        );
    }
    check.finish("kustomizations");
}

#[test]
fn cert_manager_overlay_issues_the_secret_the_deployment_mounts() {
    let dir = manifests_dir().join("overlays/cert-manager");
    let docs: Vec<Doc> = read_docs(&dir.join("certificates.yaml"));
    let serving = one(&docs, "Certificate", "virt-sizer-serving");
    assert_eq!(str_at(&serving.value, "/spec/secretName"), Some(TLS_SECRET));
    assert_eq!(
        strings(serving.value.pointer("/spec/dnsNames")),
        [
            format!("{SERVICE}.{NAMESPACE}.svc"),
            format!("{SERVICE}.{NAMESPACE}.svc.cluster.local")
        ]
    );
    assert!(
        strings(serving.value.pointer("/spec/usages")).contains(&"server auth"),
        "{serving:?}"
    );
    let ca_issuer_name = str_at(&serving.value, "/spec/issuerRef/name").expect("issuerRef");
    let ca_issuer = one(&docs, "Issuer", ca_issuer_name);
    let ca_secret = str_at(&ca_issuer.value, "/spec/ca/secretName").expect("a CA issuer");
    let ca = docs
        .iter()
        .find(|doc| {
            doc.kind() == "Certificate" && str_at(&doc.value, "/spec/secretName") == Some(ca_secret)
        })
        .expect("a Certificate makes the CA secret");
    assert_eq!(ca.value.pointer("/spec/isCA"), Some(&Value::Bool(true)));
    let root = one(
        &docs,
        "Issuer",
        str_at(&ca.value, "/spec/issuerRef/name").expect("issuerRef"),
    );
    assert!(root.value.pointer("/spec/selfSigned").is_some(), "{root:?}");

    let patch = read_docs(&dir.join("webhook-inject-ca.yaml"));
    assert_eq!(
        str_at(
            &patch[0].value,
            "/metadata/annotations/cert-manager.io~1inject-ca-from"
        ),
        Some(format!("{NAMESPACE}/virt-sizer-serving").as_str())
    );
    // The placeholder caBundle is removed so `kubectl apply` never fights the
    // injector: one remove per webhook.
    let kustomization = read_docs(&dir.join("kustomization.yaml"));
    let inline: String = list(kustomization[0].value.get("patches"))
        .iter()
        .filter_map(|patch| str_at(patch, "/patch"))
        .collect();
    let webhooks = list(
        one(
            &base_docs(),
            "MutatingWebhookConfiguration",
            WEBHOOK_CONFIGURATION,
        )
        .value
        .get("webhooks"),
    )
    .len();
    for index in 0..webhooks {
        assert!(
            inline.contains(&format!("path: /webhooks/{index}/clientConfig/caBundle")),
            "no caBundle removal for webhook {index}: {inline}"
        );
    }
}

#[test]
fn fail_closed_overlay_sets_fail_on_every_webhook_of_the_base() {
    let dir = manifests_dir().join("overlays/fail-closed");
    let patch = read_docs(&dir.join("failure-policy-fail.yaml"));
    let patched: BTreeMap<&str, &str> = list(patch[0].value.get("webhooks"))
        .iter()
        .map(|webhook| {
            (
                str_at(webhook, "/name").unwrap_or_default(),
                str_at(webhook, "/failurePolicy").unwrap_or_default(),
            )
        })
        .collect();
    let base = base_docs();
    let configuration = one(&base, "MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION);
    let names: Vec<&str> = list(configuration.value.get("webhooks"))
        .iter()
        .filter_map(|webhook| str_at(webhook, "/name"))
        .collect();
    assert_eq!(names.len(), 3);
    for name in names {
        assert_eq!(patched.get(name), Some(&"Fail"), "{name} in {patched:?}");
    }
    assert_eq!(patched.len(), 3, "{patched:?}");
}

#[test]
fn certs_script_overlay_takes_the_ca_bundle_from_the_generated_secret() {
    let dir = manifests_dir().join("overlays/certs-script");
    let kustomization = &read_docs(&dir.join("kustomization.yaml"))[0].value;
    assert!(
        strings(kustomization.get("resources")).contains(&"../../../certs/out"),
        "{kustomization}"
    );
    let replacement = &list(kustomization.get("replacements"))[0];
    assert_eq!(str_at(replacement, "/source/kind"), Some("Secret"));
    assert_eq!(str_at(replacement, "/source/name"), Some(TLS_SECRET));
    assert_eq!(
        str_at(replacement, "/source/fieldPath"),
        Some("data.[ca.crt]")
    );
    let target = &list(replacement.get("targets"))[0];
    assert_eq!(
        str_at(target, "/select/kind"),
        Some("MutatingWebhookConfiguration")
    );
    assert_eq!(
        strings(target.get("fieldPaths")),
        ["webhooks.*.clientConfig.caBundle"]
    );
}

#[test]
fn dockerfile_matches_the_deployment() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let has = |wanted: &str| lines.contains(&wanted);
    assert!(
        lines.iter().any(|line| {
            line.starts_with("FROM --platform=$BUILDPLATFORM rust:")
                && line.ends_with(" AS builder")
        }),
        "a builder stage on the build machine's architecture (it cross-compiles)"
    );
    // linux/amd64 and linux/arm64: BuildKit's TARGETARCH picks the Rust target.
    assert!(has("ARG TARGETARCH"), "ARG TARGETARCH");
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&format!("{arch}) target={target};"))),
            "TARGETARCH {arch} maps to {target}"
        );
    }
    assert!(
        dockerfile.contains(r#"cargo build --locked --release --target "$target""#),
        "builds for the mapped target"
    );
    assert!(
        has("FROM scratch") || has("FROM gcr.io/distroless/static-debian12:nonroot"),
        "an empty runtime stage"
    );
    assert!(has(&format!("USER {UID}:{UID}")), "USER {UID}:{UID}");
    assert!(
        has(&format!("EXPOSE {HTTPS_PORT} {PROBE_PORT}")),
        "EXPOSE {HTTPS_PORT} {PROBE_PORT}"
    );
    assert!(has(r#"ENTRYPOINT ["/virt-sizer"]"#), "ENTRYPOINT");
    assert!(has(r#"CMD ["serve"]"#), "CMD");
    assert!(
        dockerfile.contains("cargo build --locked --release"),
        "locked release build"
    );
    assert!(dockerfile.contains("+crt-static"), "static binary");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|line| line.trim() == "*"),
        "the context is an allowlist"
    );
}

// === Tests: certs/gen-certs.sh and the rendered overlays ===

fn have(program: &str, version_args: &[&str]) -> bool {
    Command::new(program)
        .args(version_args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs certs/gen-certs.sh into `out`; returns what it printed (the caBundle).
fn gen_certs(out: &Path, extra: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(repo().join("certs/gen-certs.sh"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "gen-certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn base64_of(path: &Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("readable"))
}

/// The certificate verifies for `name` against the CA bundle, as the
/// apiserver will check it.
fn verify_serving_certificate(out: &Path, name: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(out.join("ca-bundle.crt")).expect("bundle") {
        roots
            .add(ca.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    let leaf = CertificateDer::from_pem_file(out.join("tls.crt")).expect("tls.crt");
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).expect("a DNS name"),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn gen_certs_makes_a_pair_the_server_loads_and_the_apiserver_trusts() {
    if !have("openssl", &["version"]) || !have("bash", &["--version"]) {
        eprintln!("skipped: needs bash and openssl");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let out = temp.path().join("out");
    let bundle = gen_certs(&out, &[]);

    // What it prints is the caBundle: base64 of the CA bundle PEM.
    assert_eq!(bundle, base64_of(&out.join("ca-bundle.crt")));
    // The server loads the pair (ECDSA, PKCS#8) as it would from the Secret.
    virt_sizer::server::tls::CertStore::from_files(
        &out.join("tls.crt"),
        &out.join("tls.key"),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .expect("the server loads the generated pair");
    for name in [
        format!("{SERVICE}.{NAMESPACE}.svc"),
        format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"),
    ] {
        verify_serving_certificate(&out, &name).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    assert!(
        verify_serving_certificate(&out, "virt-sizer.other.svc").is_err(),
        "the certificate names only the Service"
    );

    // The Secret is the one the Deployment mounts, with the printed bundle.
    let secret = read_docs(&out.join("secret.yaml"));
    let mut check = Check::default();
    check_type(&mut check, &secret[0]);
    check.finish("secret.yaml");
    let secret = &secret[0].value;
    assert_eq!(str_at(secret, "/metadata/name"), Some(TLS_SECRET));
    assert_eq!(str_at(secret, "/metadata/namespace"), Some(NAMESPACE));
    assert_eq!(str_at(secret, "/type"), Some("kubernetes.io/tls"));
    assert_eq!(str_at(secret, "/data/ca.crt"), Some(bundle.as_str()));
    assert_eq!(
        str_at(secret, "/data/tls.crt"),
        Some(base64_of(&out.join("tls.crt")).as_str())
    );
    assert_eq!(
        str_at(secret, "/data/tls.key"),
        Some(base64_of(&out.join("tls.key")).as_str())
    );

    // A second run renews the serving certificate with the same CA: the
    // caBundle does not change.
    let first_leaf = std::fs::read(out.join("tls.crt")).expect("tls.crt");
    assert_eq!(gen_certs(&out, &[]), bundle);
    assert_ne!(
        std::fs::read(out.join("tls.crt")).expect("tls.crt"),
        first_leaf
    );

    // CA rotation: both CAs trusted, then only the new one.
    let rotated = gen_certs(&out, &["--new-ca"]);
    assert_ne!(rotated, bundle);
    let bundle_text = std::fs::read_to_string(out.join("ca-bundle.crt")).expect("bundle");
    assert_eq!(bundle_text.matches("BEGIN CERTIFICATE").count(), 2);
    verify_serving_certificate(&out, &format!("{SERVICE}.{NAMESPACE}.svc")).expect("verifies");
    gen_certs(&out, &["--drop-previous-ca"]);
    let bundle_text = std::fs::read_to_string(out.join("ca-bundle.crt")).expect("bundle");
    assert_eq!(bundle_text.matches("BEGIN CERTIFICATE").count(), 1);
    verify_serving_certificate(&out, &format!("{SERVICE}.{NAMESPACE}.svc")).expect("verifies");
}

/// `kubectl`: `TEST_ASSET_KUBECTL`, else the one in `KUBEBUILDER_ASSETS`,
/// else the one `.ci/run` extracts into `target/envtest`, else the `PATH`'s.
fn kubectl() -> PathBuf {
    let candidates = [
        std::env::var_os("TEST_ASSET_KUBECTL").map(PathBuf::from),
        std::env::var_os("KUBEBUILDER_ASSETS").map(|dir| PathBuf::from(dir).join("kubectl")),
        Some(repo().join("target/envtest/kubectl")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

fn have_kubectl() -> bool {
    Command::new(kubectl())
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn kustomize(dir: &Path) -> Vec<Doc> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    parse_text(&text, &format!("kubectl kustomize {}", dir.display()))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn rendered_base_and_overlays_satisfy_every_rule() {
    if !have_kubectl() {
        eprintln!("skipped: kubectl is not installed (the files are checked without it)");
        return;
    }
    let manifests = manifests_dir();
    let rendered_base = kustomize(&manifests);
    assert_eq!(
        rendered_base.len(),
        base_docs().len(),
        "manifests/ renders the base"
    );
    check_rules(
        &rendered_base,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Placeholder,
        },
        "kubectl kustomize manifests",
    );

    let cert_manager = kustomize(&manifests.join("overlays/cert-manager"));
    check_rules(
        &cert_manager,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Injected,
        },
        "overlays/cert-manager",
    );
    assert_eq!(
        cert_manager
            .iter()
            .filter(|doc| doc.kind() == "Certificate")
            .count(),
        2
    );

    assert_policy_changes_nothing(&policy_text(&rendered_base), "manifests");
    assert_policy_changes_nothing(&policy_text(&cert_manager), "overlays/cert-manager");
    let fail_closed = kustomize(&manifests.join("overlays/fail-closed"));
    check_rules(
        &fail_closed,
        &Expect {
            failure_policy: "Fail",
            ca_bundle: CaBundle::Injected,
        },
        "overlays/fail-closed",
    );
    assert_policy_changes_nothing(&policy_text(&fail_closed), "overlays/fail-closed");

    // The example policy replaces the no-op one, and nothing else.
    let example = kustomize(&manifests.join("overlays/example-policy"));
    check_rules(
        &example,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Injected,
        },
        "overlays/example-policy",
    );
    let example_patch = read_docs(&manifests.join("overlays/example-policy/policy.yaml"));
    assert_eq!(policy_text(&example), policy_text(&example_patch));
    assert_eq!(example.len(), cert_manager.len());

    // certs-script needs certs/out: render a copy of the tree with the script's
    // output beside it, never touching the repository's certs/out.
    if !have("openssl", &["version"]) {
        eprintln!("skipped overlays/certs-script: needs openssl");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    copy_tree(&manifests, &temp.path().join("manifests"));
    let bundle = gen_certs(&temp.path().join("certs/out"), &[]);
    let docs = kustomize(&temp.path().join("manifests/overlays/certs-script"));
    check_rules(
        &docs,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Exactly(bundle),
        },
        "overlays/certs-script",
    );
    one(&docs, "Secret", TLS_SECRET);
    assert_policy_changes_nothing(&policy_text(&docs), "overlays/certs-script");
}

// === Tests: the shipped policy changes nothing ===

/// The KubeVirt settings a policy must leave to the cluster's KubeVirt CR,
/// as JSON pointers into the policy.
const KUBEVIRT_SETTINGS: &[&str] = &[
    "/kubevirt/release",
    "/profiles/default/cpuAllocationRatio",
    "/profiles/default/memoryOvercommitPercent",
    "/profiles/default/overheadRatio",
];

/// `data["policy.yaml"]` of the policy ConfigMap among `docs`.
fn policy_text(docs: &[Doc]) -> String {
    str_at(
        &one(docs, "ConfigMap", POLICY_CONFIGMAP).value,
        "/data/policy.yaml",
    )
    .expect("data.policy.yaml")
    .to_owned()
}

/// The dev-namespace fixture's launcher Pod (12 vCPU, 2Gi guest, as
/// KubeVirt renders it with its defaults: cpu 1200m, memory 2404Mi) and its
/// VMI, moved into `namespace` labelled `labels`, sized under `policy`.
fn size_fixture_launcher(
    policy: &ValidPolicy,
    namespace: &str,
    labels: &[(&str, &str)],
) -> virt_sizer::admission::Decision {
    let case = repo().join("tests/fixtures/cases/dev-namespace");
    let mut pod = virt_sizer::documents::read_document(&case.join("launcher-pod.yaml"))
        .expect("launcher Pod");
    let mut vmi = virt_sizer::documents::read_document(&case.join("vmi.yaml")).expect("VMI");
    pod["metadata"]["namespace"] = Value::from(namespace);
    vmi["metadata"]["namespace"] = Value::from(namespace);
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let request = virt_sizer::commands::request_for_object(pod, namespace, "CREATE");
    crate::support::review_in(policy, Some(&vmi), &labels, &request)
}

/// The shipped policy: no KubeVirt setting of its own, and a launcher Pod
/// in a `prod-*` and in a `tier: dev` namespace keeps every resource
/// KubeVirt gave it (the patch only adds the decision annotation); Kata
/// RuntimeClasses and Pods are not touched at all.
fn assert_policy_changes_nothing(text: &str, what: &str) {
    let raw = &parse_documents(text).expect("YAML")[0];
    for pointer in KUBEVIRT_SETTINGS {
        assert!(
            raw.pointer(pointer).is_none(),
            "{what}: {pointer} must stay unset (it comes from the KubeVirt CR)"
        );
    }
    assert!(
        text.lines()
            .take(3)
            .any(|line| line.contains("changes nothing")),
        "{what}: the policy's first lines must say it changes nothing:\n{text}"
    );
    let policy = ValidPolicy::from_yaml(text)
        .unwrap_or_else(|errors| panic!("{what}: invalid policy:\n{errors}"));
    for (namespace, labels) in [("prod-x", &[][..]), ("dev-a", &[("tier", "dev")][..])] {
        let decision = size_fixture_launcher(&policy, namespace, labels);
        let ops = crate::support::patch_ops(&decision);
        let paths: Vec<&str> = ops.iter().filter_map(|op| str_at(op, "/path")).collect();
        assert_eq!(
            paths,
            ["/metadata/annotations/virt-sizer.io~1decision"],
            "{what}: in {namespace} {labels:?} the patch may only add the decision annotation: {ops:?}"
        );
        let fields: Vec<&str> = decision
            .changes
            .iter()
            .map(|change| change.field.as_str())
            .collect();
        assert!(
            fields.iter().all(|field| field.starts_with("metadata.")),
            "{what}: in {namespace}: changes {fields:?}"
        );
        assert!(decision.warnings.is_empty(), "{:?}", decision.warnings);
    }
    for object in [
        crate::support::runtime_class("kata-qemu", Some(("250m", "160Mi"))),
        crate::support::plain_pod(Some("kata-qemu")),
    ] {
        let request = virt_sizer::commands::request_for_object(object, "dev-a", "CREATE");
        let decision = crate::support::review_in(&policy, None, &BTreeMap::new(), &request);
        assert!(
            decision.response().patch.is_none() && decision.changes.is_empty(),
            "{what}: {:?} {:?}",
            decision.outcome.label(),
            decision.changes
        );
    }
}

#[test]
fn shipped_policy_changes_nothing_in_prod_or_dev_namespaces() {
    assert_policy_changes_nothing(&policy_text(&base_docs()), "manifests/base");
}

/// The example overlay's policy is the one that does change sizing: the
/// same Pods are resized there (so the test above would catch a policy that
/// is not a no-op), and it too leaves the KubeVirt settings to the CR.
#[test]
fn example_policy_overlay_sizes_prod_and_dev_namespaces() {
    let patch = read_docs(&manifests_dir().join("overlays/example-policy/policy.yaml"));
    let text = policy_text(&patch);
    let raw = &parse_documents(&text).expect("YAML")[0];
    for pointer in KUBEVIRT_SETTINGS {
        assert!(raw.pointer(pointer).is_none(), "{pointer} is set");
    }
    let policy = ValidPolicy::from_yaml(&text).unwrap_or_else(|errors| panic!("{errors}"));
    for (namespace, labels, cpu) in [
        ("prod-x", &[][..], "12"),
        ("dev-a", &[("tier", "dev")][..], "600m"),
    ] {
        let decision = size_fixture_launcher(&policy, namespace, labels);
        let cpu_change = decision
            .changes
            .iter()
            .find(|change| change.field.ends_with("resources.requests.cpu"));
        assert_eq!(
            cpu_change.and_then(|change| change.new.as_ref().map(ToString::to_string)),
            Some(cpu.to_owned()),
            "{namespace}: {:?}",
            decision.changes
        );
    }
}

// === Tests: components, and installing into another namespace ===

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
/// the webhooks' Service reference and their namespaceSelector exclusion,
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
            if webhook.get("namespaceSelector").is_some() {
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
        if doc.kind() == "ClusterRoleBinding" {
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

/// The components, as an overlay uses them: a ServiceMonitor on the probe
/// port, the alerts, the dashboard, and a NetworkPolicy that lets the
/// apiserver and Prometheus in.
fn check_components(check: &mut Check, docs: &[Doc]) {
    let deployment = one(docs, "Deployment", "virt-sizer");
    let pod_labels = deployment
        .value
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_default();
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

    let policy = one(docs, "NetworkPolicy", "virt-sizer");
    check.expect(
        selects(policy.value.pointer("/spec/podSelector"), &pod_labels),
        &policy.origin,
        "the NetworkPolicy selects the webhook's Pods",
    );
    let allows = |rules: &[Value], port: &Value, peer: &str| {
        rules.iter().any(|rule| {
            list(rule.get("ports"))
                .iter()
                .any(|allowed| allowed.get("port") == Some(port))
                && (peer == "any") == list(rule.get(peer_field(peer))).is_empty()
        })
    };
    fn peer_field(peer: &str) -> &'static str {
        if peer == "egress" { "to" } else { "from" }
    }
    let ingress = list(policy.value.pointer("/spec/ingress"));
    let egress = list(policy.value.pointer("/spec/egress"));
    check.expect(
        allows(ingress, &Value::from("https"), "any"),
        &policy.origin,
        "the apiserver (any source) may reach the https port",
    );
    check.expect(
        allows(ingress, &Value::from("probes"), "some"),
        &policy.origin,
        "Prometheus may reach the probes port",
    );
    for port in [53, 443] {
        check.expect(
            allows(egress, &Value::from(port), "any"),
            &policy.origin,
            format!("egress to port {port} (DNS, the apiserver)"),
        );
    }
}

/// `manifests/overlays/NAME` in a copy of the tree, made of `base` plus
/// every component.
fn write_overlay_with_components(manifests: &Path, name: &str, base: &str) -> PathBuf {
    let dir = manifests.join("overlays").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut components: Vec<String> = std::fs::read_dir(manifests.join("components"))
        .expect("manifests/components")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    components.sort();
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
    let dir = write_overlay_with_components(&manifests, "with-components", "cert-manager");
    let docs = kustomize(&dir);
    check_rules(
        &docs,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Injected,
        },
        "cert-manager + components",
    );
    let mut check = Check::default();
    check_components(&mut check, &docs);
    check_namespace(&mut check, &docs, NAMESPACE);
    check.finish("cert-manager + components");
}

/// `namespace:` changed in the overlays (as `kustomize edit set namespace`
/// does) moves the whole install, consistently: cert-manager (with every
/// component), fail-closed and example-policy built on it, and
/// certs-script with a certificate made for the new namespace.
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
    for overlay in ["cert-manager", "certs-script"] {
        let file = manifests
            .join("overlays")
            .join(overlay)
            .join("kustomization.yaml");
        let text = std::fs::read_to_string(&file).expect("kustomization");
        let line = format!("\nnamespace: {NAMESPACE}\n");
        assert!(
            text.contains(&line),
            "{overlay} sets `namespace: {NAMESPACE}`"
        );
        let mut text = text.replace(&line, &format!("\nnamespace: {RENAMED}\n"));
        if overlay == "cert-manager" {
            text.push_str("components:\n  - ../../components/monitoring\n  - ../../components/network-policy\n");
        }
        std::fs::write(&file, text).expect("write");
    }
    let mut renderings = Vec::new();
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
        if *overlay != "certs-script" {
            check_components(&mut check, docs);
        }
        check.finish(&format!("overlays/{overlay} in namespace {RENAMED}"));
    }
}

// === Tests: the alerts and the dashboard name only exported metrics ===

/// Every sample name a `/metrics` text can hold: from each `# TYPE` line
/// (counters as `_total`, histograms as `_bucket`, `_sum`, `_count`, info
/// as `_info`), plus every sample actually present.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The metric names a PromQL expression selects: every identifier that is
/// not a function, an aggregation, a keyword, a label in `by (…)` and the
/// like, or inside `{…}`, `[…]` or a string.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Strings, label matchers and ranges first.
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[') => depth_bracket += 1,
            (None, ']') => depth_bracket -= 1,
            (None, c) if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => {}
        }
        if depth_brace > 0 || depth_bracket > 0 {
            plain.push(' ');
        }
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut index = 0;
    let mut skip_group = false;
    while index < chars.len() {
        let c = chars[index];
        if c.is_ascii_digit() || c == '.' {
            // A number (0.99, 14, 1e3): skip it whole.
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = index;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric()
                    || chars[index] == '_'
                    || chars[index] == ':')
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let rest: String = chars[index..].iter().collect();
            let rest = rest.trim_start();
            let next = rest.chars().next();
            // `sum by (le) (…)`: an aggregation with its modifier first.
            let next_word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_call = next == Some('(') || ["by", "without"].contains(&next_word.as_str());
            if GROUPING.contains(&word.as_str()) {
                skip_group = next == Some('(');
            } else if !KEYWORDS.contains(&word.as_str()) && !is_call {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_group {
            // by (le, resource): labels, not metrics.
            while index < chars.len() && chars[index] != ')' {
                index += 1;
            }
            skip_group = false;
        }
        index += 1;
    }
    names
}

#[test]
fn promql_names_are_read_as_prometheus_would() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x",le=~"0.1|b"}[5m]))) > 0.5
           or absent(b{job="virt-sizer"}) and on (pod) c - time() < 14 * 86400
           unless sum without (instance) (d) / max(e:rate5m) == bool 1e3"#,
    );
    let expected: BTreeSet<String> = ["a_bucket", "b", "c", "d", "e:rate5m"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected);
}

/// What the binary exports once it has decided (a shadow decision, a
/// patch, a 400), and in cluster mode (the caches' series, here with an
/// apiserver that does not answer).
fn scrape_running_servers() -> String {
    use crate::operations::RunningServer;
    let temp = tempfile::tempdir().expect("tempdir");
    let policy = temp.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
         profiles: {default: {}, try: {cpuAllocationRatio: 20, mode: Shadow}}\n\
         rules: [{namespaces: [dev-a], profile: try}]\n\
         kata: {runtimeClasses: {kata-qemu: {runtime: go, vmm: {cpu: 250m, memory: 160Mi}, guestMemory: Account}}}\n",
    )
    .expect("write policy");
    let examples = repo().join("examples");
    let offline = RunningServer::start(&[
        "--vmi-dir".as_ref(),
        examples.as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ]);
    for (file, status) in [
        ("launcher-pod-dev.json", 200),
        ("runtimeclass-kata-qemu.json", 200),
    ] {
        let body = std::fs::read(examples.join(file)).expect("example review");
        assert_eq!(offline.post("application/json", body).0, status, "{file}");
    }
    assert_eq!(offline.post("text/plain", b"{}".to_vec()).0, 400);
    let mut text = offline.metrics();
    for series in [
        "virt_sizer_shadow_memory_request_delta_bytes{",
        "virt_sizer_admission_patches_total{kind=\"runtime_class\"} 1",
        "virt_sizer_admission_errors_total{reason=\"bad_request\"} 1",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }

    let kubeconfig = temp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\n\
         clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .expect("write kubeconfig");
    let cluster = RunningServer::start(&[
        "--cluster".as_ref(),
        "true".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let scraped = cluster.metrics();
        if scraped.contains("virt_sizer_cache_failing{") {
            text.push_str(&scraped);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cache series:\n{scraped}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    text
}

/// Every metric the PrometheusRule's expressions and the dashboard's
/// queries name is exported by the binary.
#[test]
fn alerts_and_dashboard_name_only_metrics_the_binary_exports() {
    let exported = exported_names(&scrape_running_servers());
    let monitoring = manifests_dir().join("components/monitoring");
    let mut expressions: Vec<(String, String)> = Vec::new();
    for doc in read_docs(&monitoring.join("prometheusrule.yaml")) {
        for group in list(doc.value.pointer("/spec/groups")) {
            for rule in list(group.get("rules")) {
                let name = str_at(rule, "/alert")
                    .or_else(|| str_at(rule, "/record"))
                    .unwrap_or("?");
                expressions.push((
                    format!("alert {name}"),
                    str_at(rule, "/expr").unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring.join("dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard JSON");
    for panel in list(dashboard.get("panels")) {
        for target in list(panel.get("targets")) {
            expressions.push((
                format!("panel {:?}", str_at(panel, "/title").unwrap_or("?")),
                str_at(target, "/expr").unwrap_or_default().to_owned(),
            ));
        }
    }
    for variable in list(dashboard.pointer("/templating/list")) {
        if let Some(query) = str_at(variable, "/query/query") {
            // label_values(metric, label)
            let metric = query
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .unwrap_or_default();
            expressions.push((format!("variable {query}"), metric.to_owned()));
        }
    }
    assert!(expressions.len() > 20, "{expressions:?}");
    let mut missing = Vec::new();
    for (origin, expr) in &expressions {
        let names = promql_metric_names(expr);
        if names.is_empty() {
            missing.push(format!("{origin}: names no metric: {expr}"));
        }
        for name in names {
            if !exported.contains(&name) {
                missing.push(format!("{origin}: {name} is not exported"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{}\nexported: {exported:?}",
        missing.join("\n")
    );
}
