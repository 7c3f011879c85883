//! `virt-sizer serve` as a child process of a bench: a fresh certificate
//! pair, the example policy, JSON logs to a file or nowhere; started when
//! `/readyz` says ready, killed on drop. Included by `benches/load.rs` and
//! `benches/apiserver.rs` (`#[path]`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use virt_sizer::server::tls::{SelfSigned, generate_self_signed};

/// How long `serve` may take to become ready (10k VMIs to sync included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `virt-sizer serve`.
pub(crate) struct Serve {
    child: Child,
    /// Its HTTPS port on 127.0.0.1.
    pub(crate) port: u16,
    /// Its serving certificate and CA.
    pub(crate) pem: SelfSigned,
    /// Where its log goes, if anywhere.
    log: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `binary serve` with `args` (where its VMIs come from) and
    /// `KUBECONFIG=kubeconfig` when given, its log kept when `keep_log`,
    /// and waits until `/readyz` says ready (its sources synced).
    pub(crate) async fn start(
        binary: &Path,
        args: &[&str],
        kubeconfig: Option<&Path>,
        keep_log: bool,
    ) -> Serve {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = generate_self_signed(&["127.0.0.1", "localhost"]).expect("certificates");
        std::fs::write(dir.path().join("tls.crt"), &pem.cert_pem).expect("write");
        std::fs::write(dir.path().join("tls.key"), &pem.key_pem).expect("write");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = keep_log.then(|| dir.path().join("virt-sizer.log"));
        let mut command = Command::new(binary);
        command
            .args(["serve", "--log-format", "json"])
            // As the image runs it.
            .envs(virt_sizer::ALLOCATOR_ENV.iter().copied())
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--policy")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.yaml"))
            .arg("--cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--key")
            .arg(dir.path().join("tls.key"))
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.as_ref().map_or_else(Stdio::null, |log| {
                std::fs::File::create(log).expect("log file").into()
            }));
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        // Flags have `VIRT_SIZER_*` fallbacks: none from this shell.
        for (name, _) in std::env::vars_os() {
            if name
                .to_str()
                .is_some_and(|name| name.starts_with("VIRT_SIZER_"))
            {
                command.env_remove(name);
            }
        }
        let server = Serve {
            child: command.spawn().expect("virt-sizer serve starts"),
            port,
            pem,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while server.readyz().await.is_none_or(|(ready, _)| !ready) {
            assert!(
                Instant::now() < deadline,
                "virt-sizer not ready within {READY_TIMEOUT:?}; log:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTPS client that trusts its CA.
    pub(crate) fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.pem.ca_pem.as_bytes()).expect("CA")
            ])
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }

    /// Whether `/readyz` says ready, and its body.
    pub(crate) async fn readyz(&self) -> Option<(bool, Value)> {
        let response = self
            .https_client()
            .get(format!("https://127.0.0.1:{}/readyz", self.port))
            .send()
            .await
            .ok()?;
        let ready = response.status().is_success();
        Some((ready, response.json().await.ok()?))
    }

    /// Its log so far (empty when not kept).
    pub(crate) fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// VmRSS (of which anonymous memory and mapped files) and VmHWM (the
    /// peak RSS), from /proc/PID/status.
    pub(crate) fn memory(&self) -> String {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let mib = |field: &str| -> f64 {
            let kib: u32 = status
                .lines()
                .find_map(|line| {
                    line.strip_prefix(field)?
                        .strip_prefix(':')?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            f64::from(kib) / 1024.0
        };
        format!(
            "VmRSS {:.1} MiB (anonymous {:.1}, files {:.1}), VmHWM {:.1} MiB",
            mib("VmRSS"),
            mib("RssAnon"),
            mib("RssFile"),
            mib("VmHWM")
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
