//! End to end against a real kube-apiserver, the envtest way: runs when
//! `KUBEBUILDER_ASSETS` names a directory holding `etcd` and
//! `kube-apiserver`, and says why it is skipped otherwise.
//!
//! It starts etcd and kube-apiserver on loopback, installs a minimal
//! VirtualMachineInstance CRD, starts `virt-sizer serve --cluster true`
//! with a kubeconfig, registers the webhook by URL + caBundle, and checks
//! what the apiserver *stores*: a launcher Pod sized exactly as `virt-sizer
//! review` sizes it offline, a Kata RuntimeClass's overhead, a Kata Pod
//! admitted (the RuntimeClass plugin's overhead check passes), and a plain
//! Pod untouched.

use crate::support::repo;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const TOKEN: &str = "virt-sizer-e2e-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Kills the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn create(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    object: Value,
) -> Value {
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("created");
    serde_json::to_value(created).expect("json")
}

async fn wait_until(what: &str, deadline: Instant, mut check: impl AsyncFnMut() -> bool) {
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn by_value(value: &Value) -> Option<virt_sizer::sizing::Quantity> {
    value
        .as_str()
        .and_then(|text| virt_sizer::sizing::Quantity::parse(text).ok())
}

fn same_resources(stored: &Value, expected: &Value) -> bool {
    ["requests", "limits"].iter().all(|section| {
        let stored = stored[section].as_object().cloned().unwrap_or_default();
        let expected = expected[section].as_object().cloned().unwrap_or_default();
        stored.len() == expected.len()
            && expected
                .iter()
                .all(|(name, value)| stored.get(name).and_then(by_value) == by_value(value))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_apiserver() {
    let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) else {
        eprintln!(
            "e2e skipped: set KUBEBUILDER_ASSETS to a directory holding etcd and kube-apiserver (the envtest convention)"
        );
        return;
    };
    let (etcd_bin, apiserver_bin) = (assets.join("etcd"), assets.join("kube-apiserver"));
    if !etcd_bin.is_file() || !apiserver_bin.is_file() {
        eprintln!(
            "e2e skipped: {} lacks etcd or kube-apiserver",
            assets.display()
        );
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = Instant::now() + Duration::from_secs(180);
    let dir = tempfile::tempdir().expect("tempdir");

    // etcd.
    let (etcd_client, etcd_peer) = (free_port(), free_port());
    let _etcd = Guard(
        Command::new(&etcd_bin)
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_client}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg("--unsafe-no-fsync=true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts"),
    );

    // kube-apiserver with a static admin token and a service-account key.
    let service_account = rcgen::KeyPair::generate().expect("key");
    std::fs::write(dir.path().join("sa.key"), service_account.serialize_pem()).expect("write");
    std::fs::write(dir.path().join("sa.pub"), service_account.public_key_pem()).expect("write");
    std::fs::write(
        dir.path().join("tokens.csv"),
        format!("{TOKEN},admin,admin,system:masters\n"),
    )
    .expect("write");
    let apiserver_port = free_port();
    let mut apiserver_log = dir.path().to_owned();
    apiserver_log.push("apiserver.log");
    let _apiserver = Guard(
        Command::new(&apiserver_bin)
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_client}"))
            .arg(format!(
                "--cert-dir={}",
                dir.path().join("apiserver").display()
            ))
            .arg(format!("--secure-port={apiserver_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=RBAC")
            .arg(format!(
                "--token-auth-file={}",
                dir.path().join("tokens.csv").display()
            ))
            .arg(format!(
                "--service-account-issuer=https://127.0.0.1:{apiserver_port}"
            ))
            .arg(format!(
                "--service-account-key-file={}",
                dir.path().join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                dir.path().join("sa.key").display()
            ))
            .arg("--disable-admission-plugins=ServiceAccount")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&apiserver_log).expect("log file"))
            .spawn()
            .expect("kube-apiserver starts"),
    );

    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: 'https://127.0.0.1:{apiserver_port}', insecure-skip-tls-verify: true}}\n\
             users:\n- name: admin\n  user: {{token: {TOKEN}}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin}}\ncurrent-context: e2e\n"
        ),
    )
    .expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig parses"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    wait_until("kube-apiserver", deadline, async || {
        client.apiserver_version().await.is_ok()
    })
    .await;

    // The VMI CRD, the namespaces.
    let crd = resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    create(&client, &crd, None, json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "virtualmachineinstances.kubevirt.io"},
        "spec": {"group": "kubevirt.io", "scope": "Namespaced",
                 "names": {"plural": "virtualmachineinstances", "singular": "virtualmachineinstance", "kind": "VirtualMachineInstance", "shortNames": ["vmi"]},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })).await;
    let namespaces = resource("", "v1", "Namespace", "namespaces");
    create(
        &client,
        &namespaces,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "dev-a", "labels": {"tier": "dev"}}}),
    )
    .await;
    let vmis = resource(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let vmi_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "dev-a", &vmis);
    wait_until("the VMI CRD", deadline, async || {
        vmi_api.list(&Default::default()).await.is_ok()
    })
    .await;
    let vmi: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo("examples/vmi-dev.yaml")).expect("read"),
    )
    .expect("yaml");
    create(&client, &vmis, Some("dev-a"), vmi).await;

    // virt-sizer, in cluster mode, with a serving certificate for 127.0.0.1.
    let pem =
        virt_sizer::server::tls::generate_self_signed(&["127.0.0.1", "localhost"]).expect("certs");
    std::fs::write(dir.path().join("tls.crt"), &pem.cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &pem.key_pem).expect("write");
    let webhook_port = free_port();
    let _webhook = Guard(
        Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
            .args(["serve", "--cluster", "true", "--log-format", "json"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{webhook_port}"))
            .arg("--policy")
            .arg(repo("examples/policy.yaml"))
            .arg("--cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--key")
            .arg(dir.path().join("tls.key"))
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("virt-sizer starts"),
    );
    let probe = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.ca_pem.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let readyz = format!("https://127.0.0.1:{webhook_port}/readyz");
    wait_until(
        "virt-sizer readiness (caches synced)",
        deadline,
        async || {
            probe
                .get(&readyz)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        },
    )
    .await;

    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&pem.ca_pem);
    let url = format!("https://127.0.0.1:{webhook_port}/mutate");
    let hook = |name: &str, rules: Value, object_selector: Value| {
        json!({"name": name, "clientConfig": {"url": url, "caBundle": ca_bundle},
               "rules": rules, "objectSelector": object_selector, "sideEffects": "None",
               "admissionReviewVersions": ["v1"], "failurePolicy": "Fail", "timeoutSeconds": 3,
               "reinvocationPolicy": "IfNeeded"})
    };
    let pods_create = json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]);
    let webhooks = resource(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
    );
    create(&client, &webhooks, None, json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "virt-sizer-e2e"},
        "webhooks": [
            hook("launchers.virt-sizer.io", pods_create.clone(), json!({"matchLabels": {"kubevirt.io": "virt-launcher"}})),
            hook("pods.virt-sizer.io", pods_create, json!({"matchExpressions": [{"key": "kubevirt.io", "operator": "DoesNotExist"}]})),
            hook("runtimeclasses.virt-sizer.io",
                 json!([{"apiGroups": ["node.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["runtimeclasses"]}]),
                 json!({})),
        ]
    })).await;
    // Webhook registration propagates asynchronously.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. A launcher Pod: stored resources equal what `review` computes offline.
    let review_text =
        std::fs::read_to_string(repo("examples/launcher-pod-dev.json")).expect("read");
    let review: Value = serde_json::from_str(&review_text).expect("json");
    let offline = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["review", "--patched", "--namespace-labels", "tier=dev"])
        .arg("--policy")
        .arg(repo("examples/policy.yaml"))
        .arg("--vmi")
        .arg(repo("examples/vmi-dev.yaml"))
        .arg(repo("examples/launcher-pod-dev.json"))
        .output()
        .expect("review runs");
    let offline: Value = serde_json::from_slice(&offline.stdout).expect("patched pod");
    let pods = resource("", "v1", "Pod", "pods");
    let stored = create(
        &client,
        &pods,
        Some("dev-a"),
        review["request"]["object"].clone(),
    )
    .await;
    let compute = |pod: &Value| {
        pod["spec"]["containers"]
            .as_array()
            .and_then(|containers| containers.iter().find(|c| c["name"] == "compute"))
            .map(|c| c["resources"].clone())
            .expect("compute container")
    };
    assert!(
        same_resources(&compute(&stored), &compute(&offline)),
        "stored {stored}\noffline {offline}"
    );
    assert!(
        stored["metadata"]["annotations"]["virt-sizer.io/decision"]
            .as_str()
            .is_some_and(|decision| decision.starts_with("profile=dev,"))
    );

    // 2. A Kata RuntimeClass: podFixed for the VM that boots (Account).
    let runtime_classes = resource("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses");
    let class = create(
        &client,
        &runtime_classes,
        None,
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "kata-qemu"}, "handler": "kata-qemu",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "160Mi"}}}),
    )
    .await;
    assert_eq!(
        by_value(&class["overhead"]["podFixed"]["memory"]),
        by_value(&json!("2208Mi")),
        "{class}"
    );

    // 3. A Kata Pod: admitted (its overhead equals the class's), limits filled.
    let kata_pod = create(
        &client,
        &pods,
        Some("dev-a"),
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kata-app"},
        "spec": {"runtimeClassName": "kata-qemu",
                 "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}),
    )
    .await;
    assert_eq!(
        by_value(&kata_pod["spec"]["overhead"]["memory"]),
        by_value(&json!("2208Mi"))
    );
    assert_eq!(
        by_value(&kata_pod["spec"]["containers"][0]["resources"]["limits"]["memory"]),
        by_value(&json!("1Gi"))
    );

    // 4. A plain Pod is untouched.
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "100m"}}}]}});
    let stored_plain = create(&client, &pods, Some("dev-a"), plain).await;
    assert!(
        stored_plain["metadata"]["annotations"]
            .get("virt-sizer.io/decision")
            .is_none()
    );
    assert_eq!(
        stored_plain["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "100m"}})
    );
}
