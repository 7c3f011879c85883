//! The shared control plane: etcd and kube-apiserver from the envtest
//! assets, started once per test process, and the [`Session`] a test holds
//! while it has the cluster to itself.
//!
//! The two servers run under a small `sh` supervisor whose standard input is
//! a pipe held by this process: when the test process ends, however it
//! ends, the pipe closes and the supervisor stops both servers and removes
//! their data directory. (A static is never dropped, so a Drop guard cannot
//! do this for a control plane shared by several tests.)
//!
//! `benches/apiserver.rs` includes this file too (`#[path]`), so it names
//! nothing else of the test crate.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use virt_sizer::server::tls::{SelfSigned, generate_self_signed};

/// The admin bearer token (group `system:masters`).
const TOKEN: &str = "virt-sizer-e2e-token";
/// `VIRT_SIZER_E2E=required`: missing assets or a control plane that does
/// not start fail the tests instead of skipping them.
const REQUIRED_VARIABLE: &str = "VIRT_SIZER_E2E";
/// How long the apiserver may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// A running etcd + kube-apiserver.
pub(crate) struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub(crate) server: String,
    /// An admin kubeconfig for it.
    pub(crate) kubeconfig: PathBuf,
    /// The kubectl of the assets.
    kubectl: PathBuf,
    /// Scratch space that lives as long as the control plane.
    dir: PathBuf,
    /// The client certificate the apiserver presents to every webhook (an
    /// AdmissionConfiguration with a kubeconfig user `*`); `ca_pem` is the
    /// CA a server can require with `--client-ca`.
    pub(crate) webhook_client: SelfSigned,
    /// One test at a time: webhook configurations are cluster-wide.
    turn: tokio::sync::Mutex<()>,
    /// The supervisor's standard input; never written, closed at exit.
    _lifeline: ChildStdin,
}

/// A test's exclusive use of the control plane. Dropping it removes the
/// webhook configurations and KubeVirt CRs the test made, then lets the
/// next test in.
pub(crate) struct Session {
    /// The control plane.
    pub(crate) plane: &'static ControlPlane,
    /// A client on this test's runtime.
    pub(crate) client: kube::Client,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// The shared control plane, waiting for this test's turn; `None` (after
/// saying why) when the tests are to be skipped.
///
/// # Panics
/// With `VIRT_SIZER_E2E=required`, when the assets are missing or the
/// control plane did not start.
pub(crate) async fn session() -> Option<Session> {
    let required = std::env::var(REQUIRED_VARIABLE).is_ok_and(|value| value == "required");
    let started = tokio::task::spawn_blocking(|| CONTROL_PLANE.get_or_init(ControlPlane::start))
        .await
        .expect("control plane start does not panic");
    let plane = match started {
        Ok(plane) => plane,
        Err(reason) if required => panic!("e2e: {reason} ({REQUIRED_VARIABLE}=required)"),
        Err(reason) => {
            eprintln!(
                "e2e skipped: {reason}. Set KUBEBUILDER_ASSETS to a directory holding etcd, \
                 kube-apiserver and kubectl (docs/development.md: \"End-to-end tests \
                 against a real apiserver\"); \
                 {REQUIRED_VARIABLE}=required turns this skip into a failure."
            );
            return None;
        }
    };
    let turn = plane.turn.lock().await;
    // reqwest and kube build their TLS from the process default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = plane.client().await;
    if let Err(error) = plane.reset() {
        panic!("{error}");
    }
    Some(Session {
        plane,
        client,
        _turn: turn,
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        if let Err(error) = self.plane.reset() {
            eprintln!("e2e: {error}");
        }
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the apiserver is
    /// ready and the test CRDs are established.
    fn start() -> Result<ControlPlane, String> {
        let assets = Assets::find()?;
        let dir = tempfile::Builder::new()
            .prefix("virt-sizer-e2e-")
            .tempdir()
            .map_err(|error| format!("temporary directory: {error}"))?
            .keep();
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|error| format!("writing {name}: {error}"))
        };

        let service_account = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
        write("sa.key", &service_account.serialize_pem())?;
        write("sa.pub", &service_account.public_key_pem())?;
        write(
            "tokens.csv",
            &format!("{TOKEN},admin,admin,system:masters\n"),
        )?;
        // The apiserver authenticates to webhooks with this certificate
        // (kubeconfig user "*": every webhook host). Servers that do not ask
        // for a client certificate never see it.
        let webhook_client =
            generate_self_signed(&["kube-apiserver"]).map_err(|error| format!("{error:#}"))?;
        let encode = |pem: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(pem)
        };
        write(
            "webhook-kubeconfig.yaml",
            &format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    \
                 client-certificate-data: {}\n    client-key-data: {}\n",
                encode(&webhook_client.cert_pem),
                encode(&webhook_client.key_pem)
            ),
        )?;
        let webhook_kubeconfig = dir.join("webhook-kubeconfig.yaml");
        let plugin = |name: &str| {
            format!(
                "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    \
                 kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
                webhook_kubeconfig.display()
            )
        };
        write(
            "admission.yaml",
            &format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
                plugin("MutatingAdmissionWebhook"),
                plugin("ValidatingAdmissionWebhook")
            ),
        )?;

        let (etcd_port, peer_port, apiserver_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let path = |name: &str| dir.join(name).display().to_string();
        let etcd = command_line(
            &assets.etcd,
            &[
                format!("--data-dir={}", path("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        );
        let apiserver = command_line(
            &assets.apiserver,
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--cert-dir={}", path("apiserver")),
                format!("--secure-port={apiserver_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--allow-privileged=true".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", path("tokens.csv")),
                format!("--service-account-issuer={server}"),
                format!("--service-account-key-file={}", path("sa.pub")),
                format!("--service-account-signing-key-file={}", path("sa.key")),
                format!("--admission-control-config-file={}", path("admission.yaml")),
                // As envtest does: no ServiceAccount controller runs to make
                // the default ServiceAccount each Pod would need.
                "--disable-admission-plugins=ServiceAccount".into(),
            ],
        );
        let quoted_dir = quote(&dir.display().to_string());
        write(
            "supervise.sh",
            &format!(
                "# Runs etcd and kube-apiserver until standard input closes: the test\n\
                 # process holds the other end, so they stop when it exits.\n\
                 # The apiserver first: it hangs in shutdown if etcd goes first.\n\
                 trap 'exit 0' INT TERM HUP\n\
                 trap '(sleep 20; kill -KILL $apiserver $etcd 2>/dev/null) & reaper=$!; \
                 kill -TERM $apiserver 2>/dev/null; wait $apiserver; \
                 kill -TERM $etcd 2>/dev/null; wait $etcd; \
                 kill $reaper 2>/dev/null; rm -rf {quoted_dir}' EXIT\n\
                 {etcd} >{quoted_dir}/etcd.log 2>&1 &\n\
                 etcd=$!\n\
                 {apiserver} >{quoted_dir}/apiserver.log 2>&1 &\n\
                 apiserver=$!\n\
                 cat >/dev/null\n"
            ),
        )?;
        let mut supervisor = Command::new("sh")
            .arg(dir.join("supervise.sh"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("starting sh: {error}"))?;
        let lifeline = supervisor.stdin.take().expect("piped stdin");

        let kubeconfig = dir.join("kubeconfig.yaml");
        write(
            "kubeconfig.yaml",
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    \
                 server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  \
                 user:\n    token: {TOKEN}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, \
                 user: admin}}\ncurrent-context: e2e\n"
            ),
        )?;
        let plane = ControlPlane {
            server,
            kubeconfig,
            kubectl: assets.kubectl,
            dir,
            webhook_client,
            turn: tokio::sync::Mutex::new(()),
            _lifeline: lifeline,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = plane.kubectl(&["get", "--raw", "/readyz"]);
            if ready.status.success() && ready.stdout.starts_with(b"ok") {
                break;
            }
            if let Ok(Some(status)) = supervisor.try_wait() {
                return Err(format!(
                    "the control plane supervisor exited ({status}); apiserver log:\n{}",
                    plane.log_tail("apiserver.log")
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready within {START_TIMEOUT:?}; last /readyz: {}\n\
                     apiserver log:\n{}\netcd log:\n{}",
                    String::from_utf8_lossy(&ready.stderr),
                    plane.log_tail("apiserver.log"),
                    plane.log_tail("etcd.log")
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        plane.install_crds()?;
        eprintln!("e2e: control plane up at {}", plane.server);
        Ok(plane)
    }

    /// Installs the test CRDs (`tests/e2e-fixtures/crds.yaml`: KubeVirt's
    /// VirtualMachineInstance and KubeVirt) and waits until they are
    /// established.
    pub(crate) fn install_crds(&self) -> Result<(), String> {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e-fixtures/crds.yaml");
        for args in [
            vec!["apply", "-f", crds.to_str().expect("utf-8 path")],
            vec![
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "customresourcedefinitions",
                "--all",
            ],
        ] {
            let output = self.kubectl(&args);
            if !output.status.success() {
                return Err(format!(
                    "kubectl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        Ok(())
    }

    /// A kubeconfig (written in `dir`) for the ServiceAccount
    /// `namespace/account`, bound to a ClusterRole of its own name with
    /// `rules` (a YAML list): what virt-sizer may do when its RBAC is not
    /// the shipped one.
    pub(crate) fn service_account_kubeconfig(
        &self,
        dir: &Path,
        account: &str,
        namespace: &str,
        rules: &str,
    ) -> PathBuf {
        let rbac = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {account}, namespace: {namespace}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {account}}}\n\
             rules:\n{rules}---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {account}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {account}}}\n\
             subjects: [{{kind: ServiceAccount, name: {account}, namespace: {namespace}}}]\n"
        );
        let rbac_path = dir.join(format!("{account}-rbac.yaml"));
        std::fs::write(&rbac_path, rbac).expect("write");
        let applied = self.kubectl(&["apply", "-f", rbac_path.to_str().expect("utf-8")]);
        assert!(applied.status.success(), "{applied:?}");
        let token = self.kubectl(&["create", "token", account, "-n", namespace, "--duration=1h"]);
        assert!(token.status.success(), "{token:?}");
        let token = String::from_utf8(token.stdout).expect("utf-8");
        let kubeconfig = dir.join(format!("{account}-kubeconfig.yaml"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: '{}', insecure-skip-tls-verify: true}}\n\
                 users:\n- name: {account}\n  user: {{token: {}}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {account}}}\n\
                 current-context: e2e\n",
                self.server,
                token.trim()
            ),
        )
        .expect("write");
        kubeconfig
    }

    /// A kubectl command for this control plane.
    pub(crate) fn kubectl_command(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl with `args` and returns what it did.
    pub(crate) fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command()
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// A kube client for the calling test's runtime (a client's connection
    /// pool belongs to the runtime that made it).
    async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Deletes what one test must not leave to the next: every webhook
    /// configuration and every KubeVirt CR (only the tests make any).
    fn reset(&self) -> Result<(), String> {
        let output = self
            .kubectl_command()
            .args([
                "delete",
                "mutatingwebhookconfigurations,validatingwebhookconfigurations,kubevirts.kubevirt.io",
                "--all",
                "--all-namespaces",
                "--wait=false",
            ])
            .output()
            .map_err(|error| format!("kubectl: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "resetting the control plane: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The last lines of one of the servers' logs.
    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Where the three binaries are: `KUBEBUILDER_ASSETS/<name>`, or the
/// envtest per-binary overrides `TEST_ASSET_ETCD`, `TEST_ASSET_KUBE_APISERVER`,
/// `TEST_ASSET_KUBECTL`.
struct Assets {
    etcd: PathBuf,
    apiserver: PathBuf,
    kubectl: PathBuf,
}

impl Assets {
    fn find() -> Result<Assets, String> {
        let dir = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
        let pick = |variable: &str, name: &str| -> Result<PathBuf, String> {
            let path = std::env::var_os(variable)
                .map(PathBuf::from)
                .or_else(|| dir.as_ref().map(|dir| dir.join(name)))
                .ok_or_else(|| format!("KUBEBUILDER_ASSETS is not set (nor {variable})"))?;
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} does not exist", path.display()))
            }
        };
        Ok(Assets {
            etcd: pick("TEST_ASSET_ETCD", "etcd")?,
            apiserver: pick("TEST_ASSET_KUBE_APISERVER", "kube-apiserver")?,
            kubectl: pick("TEST_ASSET_KUBECTL", "kubectl")?,
        })
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))
}

/// `program args…` quoted for sh.
fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .map(|word| quote(&word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as one single-quoted sh word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
