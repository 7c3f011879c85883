//! virt-sizer as the cluster runs it: `virt-sizer serve` as a child process
//! (killed when the test ends, however it ends), the webhook configurations
//! rendered from `manifests/` and pointed at it, and `virt-sizer review`
//! run offline on the same objects.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use virt_sizer::server::tls::{SelfSigned, generate_self_signed};

use super::api::{self, Kind};
use super::control_plane::{ControlPlane, Session, free_port};
use super::objects;
use crate::support::{VmiSpec, repo};

/// How long `serve` may take to become ready (caches synced).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a log line may take to reach the log file.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a webhook configuration may take to reach the apiserver's
/// admission chain.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(20);

/// A file under `tests/e2e-fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    repo("tests/e2e-fixtures").join(name)
}

/// The e2e policy (examples/policy.yaml plus a `lab` profile).
pub(crate) fn policy() -> PathBuf {
    fixture("policy.yaml")
}

// === virt-sizer serve ===

/// Removes what would change a child's behaviour behind the test's back:
/// every `VIRT_SIZER_*` variable (flags have env fallbacks), the in-cluster
/// markers and `RUST_LOG`.
pub(crate) fn scrub_environment(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|name| name.starts_with("VIRT_SIZER_"))
        {
            command.env_remove(name);
        }
    }
    command
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("RUST_LOG")
}

/// How to start `virt-sizer serve`.
#[derive(Debug, Clone)]
pub(crate) struct Serve {
    /// `--policy` (none: the built-in policy).
    pub(crate) policy: Option<PathBuf>,
    /// Pass `--cluster true` (otherwise cluster mode must be inferred from
    /// `KUBECONFIG`).
    pub(crate) cluster_flag: bool,
    /// Require the apiserver's client certificate (`--client-ca`).
    pub(crate) client_ca: bool,
    /// More arguments.
    pub(crate) extra_args: Vec<String>,
    /// Serve the embedded default with its CA at this path (`--ca-out`)
    /// instead of a pair made by the test.
    pub(crate) embedded_ca: Option<PathBuf>,
    /// The HTTPS port (none: a free one), so a restart can take the same.
    pub(crate) port: Option<u16>,
}

impl Serve {
    /// Cluster mode, the e2e policy.
    pub(crate) fn with_e2e_policy() -> Serve {
        Serve {
            policy: Some(policy()),
            cluster_flag: true,
            client_ca: false,
            extra_args: Vec::new(),
            embedded_ca: None,
            port: None,
        }
    }

    /// Starts it against `plane` and waits until `/readyz` says ready.
    pub(crate) async fn start(self, plane: &ControlPlane) -> VirtSizer {
        let mut server = self.spawn(plane);
        server.wait_ready().await;
        server
    }

    /// Starts it against `plane`, without waiting for anything.
    pub(crate) fn spawn(self, plane: &ControlPlane) -> VirtSizer {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = generate_self_signed(&["127.0.0.1", "localhost"]).expect("certificates");
        std::fs::write(dir.path().join("tls.crt"), &pem.cert_pem).expect("write");
        std::fs::write(dir.path().join("tls.key"), &pem.key_pem).expect("write");
        std::fs::write(
            dir.path().join("client-ca.pem"),
            &plane.webhook_client.ca_pem,
        )
        .expect("write");
        let port = self
            .port
            .unwrap_or_else(|| free_port().expect("a free port"));
        let log = dir.path().join("virt-sizer.log");

        let mut command = Command::new(env!("CARGO_BIN_EXE_virt-sizer"));
        command
            .args(["serve", "--log-format", "json"])
            .arg(format!("--listen=127.0.0.1:{port}"));
        match &self.embedded_ca {
            None => command
                .arg("--cert")
                .arg(dir.path().join("tls.crt"))
                .arg("--key")
                .arg(dir.path().join("tls.key")),
            // Its own probe port: the embedded default's is 127.0.0.1:8081.
            Some(ca) => command
                .arg("--ca-out")
                .arg(ca)
                .arg("--probe-listen=127.0.0.1:0"),
        };
        if self.cluster_flag {
            command.args(["--cluster", "true"]);
        }
        if let Some(policy) = &self.policy {
            command.arg("--policy").arg(policy);
        }
        if self.client_ca {
            command
                .arg("--client-ca")
                .arg(dir.path().join("client-ca.pem"));
        }
        scrub_environment(&mut command)
            .args(&self.extra_args)
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = command.spawn().expect("virt-sizer starts");
        let pem = match &self.embedded_ca {
            None => pem,
            Some(ca) => embedded_pair(ca, &mut child, &log),
        };
        VirtSizer {
            child: Some(child),
            port,
            pem,
            identity: self.client_ca.then(|| plane.webhook_client.clone()),
            log,
            _dir: dir,
        }
    }
}

/// The CA the embedded default serves under, once it has written it (the
/// CA file last: its serving pair is there by then).
fn embedded_pair(ca: &Path, child: &mut Child, log: &Path) -> SelfSigned {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let listening = std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("\"message\":\"listening\"");
        if listening {
            return SelfSigned {
                ca_pem: std::fs::read_to_string(ca).expect("the CA file"),
                cert_pem: String::new(),
                key_pem: String::new(),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "virt-sizer exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "virt-sizer did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `virt-sizer serve`; killed on drop.
pub(crate) struct VirtSizer {
    child: Option<Child>,
    /// Its HTTPS port on 127.0.0.1.
    pub(crate) port: u16,
    /// Its serving certificate and CA.
    pub(crate) pem: SelfSigned,
    /// The client certificate it requires, if any.
    identity: Option<SelfSigned>,
    /// Its standard error: JSON log lines.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl VirtSizer {
    /// `https://127.0.0.1:PORT<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// An HTTPS client that trusts its CA (and presents the apiserver's
    /// client certificate when it requires one).
    pub(crate) fn https_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.pem.ca_pem.as_bytes()).expect("CA")
            ])
            .timeout(Duration::from_secs(5));
        if let Some(identity) = &self.identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(
                    format!("{}{}", identity.cert_pem, identity.key_pem).as_bytes(),
                )
                .expect("identity"),
            );
        }
        builder.build().expect("client")
    }

    /// `GET /readyz`: the status (0 when it does not answer) and the body
    /// (`null` unless JSON).
    pub(crate) async fn readyz(&self) -> (u16, Value) {
        match self.https_client().get(self.url("/readyz")).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn wait_ready(&mut self) {
        let client = self.https_client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = client
                .get(self.url("/readyz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("virt-sizer exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "virt-sizer not ready within {READY_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills it (the webhook is then unreachable).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its JSON log lines once `complete` holds for them, or after
    /// [`LOG_TIMEOUT`]: the server writes its log from a background thread,
    /// a moment after it answers.
    pub(crate) async fn log_lines_once(&self, complete: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let lines: Vec<Value> = self
                .log_text()
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            if complete(&lines) || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its "admission decision" log lines once `complete` holds for them
    /// (see [`VirtSizer::log_lines_once`]).
    pub(crate) async fn decisions_once(&self, complete: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let decisions = |lines: &[Value]| -> Vec<Value> {
            lines
                .iter()
                .filter(|line| line["message"] == "admission decision")
                .cloned()
                .collect()
        };
        decisions(
            &self
                .log_lines_once(|lines| complete(&decisions(lines)))
                .await,
        )
    }

    /// The webhook configurations of `kubectl kustomize <dir>` (a directory
    /// of the repository), every webhook's `clientConfig.service` replaced
    /// by `url: https://127.0.0.1:PORT<the manifest's path>` and `caBundle`
    /// by this server's CA. Selectors, rules, matchConditions, failure
    /// policies and timeouts stay as shipped.
    pub(crate) fn webhook_configurations(&self, plane: &ControlPlane, dir: &str) -> Vec<Value> {
        let output = plane.kubectl(&["kustomize", repo(dir).to_str().expect("utf-8 path")]);
        assert!(
            output.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("utf-8");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&self.pem.ca_pem);
        let mut configurations: Vec<Value> = virt_sizer::documents::parse_documents(&text)
            .expect("kustomize output parses")
            .into_iter()
            .filter(|document| {
                matches!(
                    document["kind"].as_str(),
                    Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration")
                )
            })
            .collect();
        assert!(
            !configurations.is_empty(),
            "{dir} renders no webhook configuration"
        );
        for configuration in &mut configurations {
            for webhook in configuration["webhooks"]
                .as_array_mut()
                .expect("webhooks")
                .iter_mut()
            {
                let service = &webhook["clientConfig"]["service"];
                assert!(
                    service.is_object(),
                    "{dir}: webhook {} has no clientConfig.service",
                    webhook["name"]
                );
                let path = service["path"].as_str().unwrap_or("/").to_owned();
                webhook["clientConfig"] = json!({"url": self.url(&path), "caBundle": ca_bundle});
            }
        }
        configurations
    }
}

impl Drop for VirtSizer {
    fn drop(&mut self) {
        self.stop();
    }
}

// === Registering webhooks ===

/// Registers `configurations` in order (the last one must send launcher
/// Pods to a running virt-sizer), then waits until a dry-run launcher Pod
/// comes back sized: from then on the apiserver's admission chain has
/// every configuration registered before it.
pub(crate) async fn register(session: &Session, configurations: &[Value]) {
    for configuration in configurations {
        let kind = match configuration["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => Kind::MutatingWebhookConfiguration,
            Some("ValidatingWebhookConfiguration") => Kind::ValidatingWebhookConfiguration,
            other => panic!("not a webhook configuration: {other:?}"),
        };
        api::create(&session.client, kind, configuration).await;
    }
    let canary = canary_pod(&session.client).await;
    api::eventually(
        "the webhook configuration to take effect",
        REGISTRATION_TIMEOUT,
        async || {
            api::try_create_dry_run(&session.client, Kind::Pod, &canary)
                .await
                .is_ok_and(|pod| {
                    api::annotation(&pod, virt_sizer::admission::DECISION_ANNOTATION).is_some()
                })
        },
    )
    .await;
}

/// A launcher Pod (for a VMI that exists) in namespace `e2e-canary`, which
/// no policy rule names: any virt-sizer sizes it under its default profile.
/// Its CPU request, 7m, is one no profile gives a 1-vCPU VMI (that would
/// take a ratio of 1/0.007 ≈ 143), so virt-sizer always changes it and
/// writes its decision annotation: a decision that changes nothing sends
/// no patch, which would not tell a registered webhook from none.
pub(crate) async fn canary_pod(client: &kube::Client) -> Value {
    const NAMESPACE: &str = "e2e-canary";
    api::namespace(client, NAMESPACE, &[]).await;
    let vmi = api::ensure(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("canary", 1024), NAMESPACE),
    )
    .await;
    objects::launcher_pod(
        &vmi,
        crate::support::compute_resources(&[("cpu", "7m"), ("memory", "1292Mi")], &[]),
    )
}

// === virt-sizer review, offline ===

/// What `virt-sizer review` is given besides the object.
#[derive(Debug, Default)]
pub(crate) struct Offline<'a> {
    /// `--policy`.
    pub(crate) policy: Option<&'a Path>,
    /// `--vmi` (written to a file).
    pub(crate) vmi: Option<&'a Value>,
    /// `--namespace-labels`.
    pub(crate) namespace_labels: String,
    /// More arguments.
    pub(crate) extra_args: Vec<String>,
}

impl Offline<'_> {
    /// `virt-sizer review --patched` of `input` (an object or a whole
    /// AdmissionReview): the object as the webhook would leave it.
    pub(crate) fn patched(&self, input: &Value) -> Value {
        self.review(input, &["--patched"])
    }

    /// The warnings of `virt-sizer review` of `input`: what the apiserver
    /// passes on to the client that created it.
    pub(crate) fn warnings(&self, input: &Value) -> Vec<String> {
        crate::support::response_warnings(&self.review(input, &[]))
    }

    fn review(&self, input: &Value, flags: &[&str]) -> Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let input_path = dir.path().join("input.json");
        std::fs::write(&input_path, input.to_string()).expect("write");
        let mut command = Command::new(env!("CARGO_BIN_EXE_virt-sizer"));
        command.arg("review").args(flags);
        if let Some(policy) = self.policy {
            command.arg("--policy").arg(policy);
        }
        if let Some(vmi) = self.vmi {
            let vmi_path = dir.path().join("vmi.json");
            std::fs::write(&vmi_path, vmi.to_string()).expect("write");
            command.arg("--vmi").arg(vmi_path);
        }
        if !self.namespace_labels.is_empty() {
            command.arg(format!("--namespace-labels={}", self.namespace_labels));
        }
        let output = scrub_environment(&mut command)
            .args(&self.extra_args)
            .arg(&input_path)
            .output()
            .expect("virt-sizer review runs");
        assert!(
            output.status.success(),
            "virt-sizer review failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("review prints JSON")
    }
}

/// `kubectl create` of `object`: what the apiserver stored, and kubectl's
/// standard error, where it prints the admission warnings
/// (`Warning: …`) a client sees.
pub(crate) fn kubectl_create(plane: &ControlPlane, object: &Value) -> (Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("object.json");
    std::fs::write(&path, object.to_string()).expect("write");
    let output = plane.kubectl(&["create", "-o", "json", "-f", path.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kubectl create: {stderr}");
    (
        serde_json::from_slice(&output.stdout).expect("kubectl prints JSON"),
        stderr,
    )
}
