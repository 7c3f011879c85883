//! The rules every rendering must satisfy: each object decodes strictly
//! into its kind, and the webhooks are wired as promised.

use super::*;

mod deployment;

use deployment::{check_deployment, check_pdb_and_service, check_policy, check_rbac};

// === Types: each object decodes strictly into its kind ===

/// Checks one complete object: it decodes strictly into the type its
/// apiVersion/kind name ([`kinds::kind_of`]), has a name, a spec where
/// required, a namespace exactly when its kind is namespaced, and a base64
/// caBundle.
pub(super) fn check_type(check: &mut Check, doc: &Doc) {
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

/// What the webhook's caBundle must be in a given rendering, and so where
/// the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CaBundle {
    /// Absent: the server injects its own CA (self-managed certificates,
    /// `--certificate-secret`).
    SelfManaged,
    /// Absent: cert-manager's CA injector owns the field (mounted
    /// certificates).
    Injected,
    /// Exactly this, base64 of the CA bundle PEM (mounted certificates).
    Exactly(String),
}

impl CaBundle {
    /// Whether the server manages its own certificates.
    pub(super) fn is_self_managed(&self) -> bool {
        *self == CaBundle::SelfManaged
    }
}

/// The policy ConfigMap is checked at apply time: the validating webhook
/// selects it by label in virt-sizer's own namespace only, calls
/// `/validate-policy` on the Service, with the rendering's caBundle, and
/// never blocks a repair (`Ignore`).
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
    check.expect(
        selects_only_namespace(webhook.get("namespaceSelector"), NAMESPACE),
        at,
        format!(
            "the policy webhook's namespaceSelector selects only {NAMESPACE} (matchLabels kubernetes.io/metadata.name): a labelled ConfigMap elsewhere is a tenant's"
        ),
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
        CaBundle::SelfManaged => bundle.is_none() && annotation.is_none(),
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
pub(super) struct Expect {
    pub(super) failure_policy: &'static str,
    pub(super) ca_bundle: CaBundle,
}

/// All the rules, over the complete objects of one rendering.
pub(super) fn check_rules(docs: &[Doc], expect: &Expect, what: &str) {
    let mut check = Check::default();
    collect_rule_problems(&mut check, docs, expect);
    check.finish(what);
}

/// What [`check_rules`] finds wrong, without failing.
pub(super) fn rule_problems(docs: &[Doc], expect: &Expect) -> Vec<String> {
    let mut check = Check::default();
    collect_rule_problems(&mut check, docs, expect);
    check.problems
}

fn collect_rule_problems(check: &mut Check, docs: &[Doc], expect: &Expect) {
    for doc in docs {
        check_type(check, doc);
    }
    check_webhooks(
        check,
        one(docs, "MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION),
        expect,
    );
    check_policy_webhook(
        check,
        one(
            docs,
            "ValidatingWebhookConfiguration",
            POLICY_WEBHOOK_CONFIGURATION,
        ),
        one(docs, "ConfigMap", POLICY_CONFIGMAP),
        expect,
    );
    let deployment = one(docs, "Deployment", "virt-sizer");
    check_deployment(check, deployment, docs, &expect.ca_bundle);
    check_rbac(check, docs, &expect.ca_bundle);
    check_pdb_and_service(check, docs, deployment);
    check_policy(check, one(docs, "ConfigMap", POLICY_CONFIGMAP));
    check_network_policy(check, docs, deployment);
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
}

/// The NetworkPolicy every install has: it selects the webhook's Pods; in,
/// the apiserver (from any source: no selector names it) to the `https`
/// port and only selected peers (Prometheus) to the `probes` port, no other
/// port; out, DNS and the apiserver.
fn check_network_policy(check: &mut Check, docs: &[Doc], deployment: &Doc) {
    let pod_labels = deployment
        .value
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_default();
    let policy = one(docs, "NetworkPolicy", "virt-sizer");
    let at = &policy.origin;
    check.expect(
        selects(policy.value.pointer("/spec/podSelector"), &pod_labels),
        at,
        "the NetworkPolicy selects the webhook's Pods",
    );
    check.expect(
        strings(policy.value.pointer("/spec/policyTypes")) == ["Ingress", "Egress"],
        at,
        "the NetworkPolicy governs both directions",
    );
    // Whether a rule lets `port` through, and from (to) whom: `None` for
    // any peer, else the peers' count.
    let peers_for = |rules: &[Value], peer_field: &str, port: &Value| -> Vec<Option<usize>> {
        rules
            .iter()
            .filter(|rule| {
                list(rule.get("ports"))
                    .iter()
                    .any(|allowed| allowed.get("port") == Some(port))
            })
            .map(|rule| {
                let peers = list(rule.get(peer_field));
                (!peers.is_empty()).then_some(peers.len())
            })
            .collect()
    };
    let ingress = list(policy.value.pointer("/spec/ingress"));
    check.expect(
        peers_for(ingress, "from", &Value::from("https")).contains(&None),
        at,
        "the apiserver (any source) may reach the https port",
    );
    let probes = peers_for(ingress, "from", &Value::from("probes"));
    check.expect(
        !probes.is_empty() && !probes.contains(&None),
        at,
        "only selected peers (Prometheus) may reach the probes port",
    );
    for rule in ingress {
        let ports = list(rule.get("ports"));
        check.expect(
            !ports.is_empty()
                && ports.iter().all(|allowed| {
                    [Value::from("https"), Value::from("probes")]
                        .iter()
                        .any(|port| allowed.get("port") == Some(port))
                }),
            at,
            format!("an ingress rule opens a port other than https and probes: {rule}"),
        );
    }
    let egress = list(policy.value.pointer("/spec/egress"));
    for port in [53, 443] {
        check.expect(
            !peers_for(egress, "to", &Value::from(port)).is_empty(),
            at,
            format!("egress to port {port} (DNS, the apiserver)"),
        );
    }
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
            CaBundle::SelfManaged | CaBundle::Injected => bundle.is_none(),
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
            check_namespace_opt_out(check, &at, webhook.get("namespaceSelector"));
        }
        check_object_opt_out(check, &at, name, webhook.get("objectSelector"));
        match name {
            LAUNCHER_WEBHOOK => {
                check.expect(
                    webhook.pointer("/objectSelector/matchLabels")
                        == Some(&serde_json::json!({"kubevirt.io": "virt-launcher"})),
                    &at,
                    "objectSelector must have exactly matchLabels kubevirt.io: virt-launcher",
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
/// Whether a namespaceSelector selects `namespace` and no other: its one
/// term is `kubernetes.io/metadata.name: <namespace>` (the label the
/// apiserver sets on every Namespace to its name).
pub(super) fn selects_only_namespace(selector: Option<&Value>, namespace: &str) -> bool {
    let Some(selector) = selector.and_then(Value::as_object) else {
        return false;
    };
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    selector.keys().all(|key| key == "matchLabels")
        && match_labels.is_some_and(|labels| {
            labels.len() == 1
                && labels.get("kubernetes.io/metadata.name") == Some(&Value::from(namespace))
        })
}

pub(super) fn excludes_namespaces(selector: Option<&Value>, excluded: &[&str]) -> bool {
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

/// Whether a label selector (`matchLabels` and `matchExpressions` with
/// `In`, `NotIn`, `Exists`, `DoesNotExist`, as the apiserver evaluates
/// them) selects an object with `labels`. No selector selects everything.
pub(super) fn selector_selects(selector: Option<&Value>, labels: &[(&str, &str)]) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let label = |key: &str| {
        labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    };
    let labels_match = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|wanted| {
            wanted.iter().all(|(key, value)| {
                value
                    .as_str()
                    .is_some_and(|value| label(key) == Some(value))
            })
        });
    labels_match
        && list(selector.get("matchExpressions"))
            .iter()
            .all(|expression| {
                let value = label(str_at(expression, "/key").unwrap_or_default());
                let values = strings(expression.get("values"));
                match str_at(expression, "/operator") {
                    Some("In") => value.is_some_and(|value| values.contains(&value)),
                    Some("NotIn") => value.is_none_or(|value| !values.contains(&value)),
                    Some("Exists") => value.is_some(),
                    Some("DoesNotExist") => value.is_none(),
                    _ => false,
                }
            })
}

/// A namespace labelled `virt-sizer.io/ignore: "true"` is out of a Pod
/// webhook's reach; one labelled otherwise, or not at all, is in it (unless
/// it is one of the shipped exclusions).
fn check_namespace_opt_out(check: &mut Check, at: &str, selector: Option<&Value>) {
    let name = ("kubernetes.io/metadata.name", "tenant-a");
    for (labels, selected) in [
        (vec![name], true),
        (vec![name, (IGNORE_LABEL, "false")], true),
        (vec![name, (IGNORE_LABEL, "true")], false),
        (vec![name, ("tier", "dev"), (IGNORE_LABEL, "true")], false),
        (vec![("kubernetes.io/metadata.name", "kube-system")], false),
        (vec![("kubernetes.io/metadata.name", NAMESPACE)], false),
    ] {
        check.expect(
            selector_selects(selector, &labels) == selected,
            at,
            format!(
                "a namespace labelled {labels:?} must {}be selected",
                if selected { "" } else { "not " }
            ),
        );
    }
}

/// A RuntimeClass (an administrator's object) labelled
/// `virt-sizer.io/ignore: "true"` is out of the webhook's reach; the same
/// object without it (or with another value) is in it. A Pod's own label
/// opts nothing out: its labels are its owner's (a launcher Pod carries its
/// VM's), and only the namespace's label, which a tenant does not write,
/// may take it out of the policy's reach.
fn check_object_opt_out(check: &mut Check, at: &str, webhook: &str, selector: Option<&Value>) {
    let honoured = webhook == RUNTIMECLASS_WEBHOOK;
    let target: &[(&str, &str)] = match webhook {
        LAUNCHER_WEBHOOK => &[
            ("kubevirt.io", "virt-launcher"),
            ("vm.kubevirt.io/name", "vm"),
        ],
        _ => &[("app", "demo")],
    };
    let with = |value: &'static str| {
        let mut labels = target.to_vec();
        labels.push((IGNORE_LABEL, value));
        labels
    };
    for (labels, selected) in [
        (target.to_vec(), true),
        (with("false"), true),
        (with("true"), !honoured),
    ] {
        check.expect(
            selector_selects(selector, &labels) == selected,
            at,
            format!(
                "an object labelled {labels:?} must {}be selected",
                if selected { "" } else { "not " }
            ),
        );
    }
}

#[test]
fn a_label_selector_is_evaluated_as_the_apiserver_does() {
    let selector = serde_json::json!({
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "NotIn", "values": ["true"]},
            {"key": "c", "operator": "Exists"},
            {"key": "d", "operator": "DoesNotExist"},
            {"key": "e", "operator": "In", "values": ["x", "y"]},
        ],
    });
    let selector = Some(&selector);
    assert!(selector_selects(
        selector,
        &[("a", "1"), ("c", ""), ("e", "y")]
    ));
    assert!(selector_selects(
        selector,
        &[("a", "1"), ("b", "false"), ("c", "z"), ("e", "x")]
    ));
    assert!(!selector_selects(
        selector,
        &[("a", "2"), ("c", ""), ("e", "y")]
    ));
    assert!(!selector_selects(
        selector,
        &[("a", "1"), ("b", "true"), ("c", ""), ("e", "y")]
    ));
    assert!(!selector_selects(selector, &[("a", "1"), ("e", "y")]));
    assert!(!selector_selects(
        selector,
        &[("a", "1"), ("c", ""), ("d", ""), ("e", "y")]
    ));
    assert!(!selector_selects(
        selector,
        &[("a", "1"), ("c", ""), ("e", "z")]
    ));
    assert!(selector_selects(None, &[]));
}
