//! Self-managed certificates, the default install: `manifests/install.yaml`
//! applied with `kubectl apply -f` (its Deployment is stored but never runs:
//! no kubelet), and `virt-sizer serve` run here with **the Deployment's own
//! arguments** (`$(POD_NAMESPACE)` expanded as the kubelet does) and a
//! kubeconfig for the install's ServiceAccount, so the shipped RBAC is what
//! lets it work. Only what cannot be the same outside a Pod changes:
//! `--listen` and `--probe-listen` on 127.0.0.1, the policy file (the e2e
//! policy, so every canary Pod is visibly sized), and
//! `--certificate-extra-name 127.0.0.1`. The shipped webhook configurations
//! are pointed at `https://127.0.0.1:PORT` with no caBundle: the server
//! must inject its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use virt_sizer::admission::DECISION_ANNOTATION;
use virt_sizer::server::self_certs::{CA_BUNDLE_KEY, CERT_KEY};

use super::api::{self, Kind};
use super::control_plane::{Session, free_port};
use super::webhook::{canary_pod, policy, scrub_environment};
use crate::support::repo;

const NAMESPACE: &str = "virt-sizer";
const SECRET: &str = "virt-sizer-certificates";
const SERVICE_DNS: &str = "virt-sizer.virt-sizer.svc";
const CONFIGURATIONS: [(Kind, &str); 2] = [
    (Kind::MutatingWebhookConfiguration, "virt-sizer"),
    (Kind::ValidatingWebhookConfiguration, "virt-sizer-policy"),
];
/// How long the first replica may take to inject its CA.
const INJECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A policy no checker accepts: a ratio below 1.
const BROKEN_POLICY: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  default:\n    cpuAllocationRatio: 0\n";

// === The install ===

/// `kubectl apply -f manifests/install.yaml`, a fresh start for the
/// certificates (no Secret), and the webhook configurations pointed at
/// `port` on 127.0.0.1 without a caBundle.
async fn install(session: &Session, port: u16) {
    let applied = session.plane.kubectl(&[
        "apply",
        "-f",
        repo("manifests/install.yaml").to_str().expect("utf-8"),
    ]);
    assert!(
        applied.status.success(),
        "kubectl apply -f manifests/install.yaml: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    api::delete(&session.client, Kind::Secret, Some(NAMESPACE), SECRET).await;
    for (kind, name) in CONFIGURATIONS {
        let mut configuration = api::get(&session.client, kind, None, name).await;
        for webhook in configuration["webhooks"].as_array_mut().expect("webhooks") {
            assert_eq!(webhook["clientConfig"]["caBundle"], Value::Null, "{name}");
            let path = webhook["clientConfig"]["service"]["path"]
                .as_str()
                .expect("a Service path")
                .to_owned();
            webhook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}{path}")});
        }
        api::try_replace(&session.client, kind, &configuration)
            .await
            .unwrap_or_else(|error| panic!("pointing {name} at 127.0.0.1: {error}"));
    }
}

/// The arguments of the Deployment in install.yaml, `$(POD_NAMESPACE)`
/// expanded.
fn shipped_args() -> Vec<String> {
    let text = std::fs::read_to_string(repo("manifests/install.yaml")).expect("install.yaml");
    let documents = virt_sizer::documents::parse_documents(&text).expect("install.yaml parses");
    let deployment = documents
        .iter()
        .find(|document| document["kind"] == "Deployment")
        .expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["env"][0],
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    );
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| {
            arg.as_str()
                .expect("a string")
                .replace("$(POD_NAMESPACE)", NAMESPACE)
        })
        .collect()
}

// === A replica ===

/// One `virt-sizer serve` with the shipped arguments; killed on drop.
struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts it with the shipped arguments, as ServiceAccount
    /// virt-sizer/virt-sizer (`kubeconfig`), listening on `port`, plus
    /// `extra` arguments.
    fn start(kubeconfig: &Path, dir: &Path, port: u16, extra: &[&str]) -> Replica {
        let probe_port = free_port().expect("a free port");
        let overridden = ["serve", "--listen=", "--probe-listen=", "--policy="];
        let mut args: Vec<String> = shipped_args()
            .into_iter()
            .filter(|arg| !overridden.iter().any(|prefix| arg.starts_with(prefix)))
            .collect();
        let shipped: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|arg| {
                arg.starts_with("--certificate-secret=") || arg.contains("webhook-configuration=")
            })
            .collect();
        assert_eq!(
            shipped,
            [
                format!("--certificate-secret={NAMESPACE}/{SECRET}").as_str(),
                "--mutating-webhook-configuration=virt-sizer",
                "--validating-webhook-configuration=virt-sizer-policy"
            ],
            "the shipped self-managed certificate flags"
        );
        args.extend([
            format!("--listen=127.0.0.1:{port}"),
            format!("--probe-listen=127.0.0.1:{probe_port}"),
            format!("--policy={}", policy().display()),
            "--certificate-extra-name=127.0.0.1".to_owned(),
            format!("--kubeconfig={}", kubeconfig.display()),
        ]);
        args.extend(extra.iter().map(|&arg| arg.to_owned()));
        let log = dir.join(format!("virt-sizer-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_virt-sizer"));
        command.arg("serve").args(&args);
        let child = scrub_environment(&mut command)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("virt-sizer starts");
        Replica { child, port, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The certificate it serves, once it listens, if the handshake
    /// verifies against `ca_bundle` for 127.0.0.1.
    async fn served_certificate(&self, ca_bundle: &str) -> Result<CertificateDer<'static>, String> {
        let deadline = Instant::now() + INJECTION_TIMEOUT;
        loop {
            match served_certificate(self.port, ca_bundle).await {
                Err(error) if error.contains("refused") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                result => return result,
            }
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate served on 127.0.0.1:`port`, when a TLS handshake that
/// trusts only `ca_bundle` (PEM) succeeds, as the apiserver's would.
async fn served_certificate(port: u16, ca_bundle: &str) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots
            .add(certificate.map_err(|error| error.to_string())?)
            .map_err(|error| error.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| error.to_string())?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address");
    let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|error| error.to_string())?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(|certificate| certificate.clone().into_owned())
        .ok_or_else(|| "no certificate".to_owned())
}

// === What the apiserver holds ===

/// A key of the Secret, decoded.
async fn secret_key(client: &kube::Client, key: &str) -> String {
    let secret = api::get(client, Kind::Secret, Some(NAMESPACE), SECRET).await;
    let encoded = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
    )
    .expect("PEM text")
}

/// Every webhook's caBundle of both configurations (decoded PEM; empty
/// when missing).
async fn ca_bundles(client: &kube::Client) -> Vec<String> {
    let mut bundles = Vec::new();
    for (kind, name) in CONFIGURATIONS {
        let configuration = api::get(client, kind, None, name).await;
        for webhook in configuration["webhooks"].as_array().expect("webhooks") {
            let encoded = webhook["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default();
            bundles.push(
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .expect("base64"),
                )
                .expect("PEM text"),
            );
        }
    }
    bundles
}

fn n_certificates(pem: &str) -> usize {
    CertificateDer::pem_slice_iter(pem.as_bytes()).count()
}

/// Whether the Secret's serving certificate verifies for `name` against
/// `ca_bundle`, as the apiserver checks it for the Service.
fn verifies_for(certificate_pem: &str, ca_bundle: &str, name: &str) -> bool {
    use rustls::client::danger::ServerCertVerifier as _;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots.add(certificate.expect("PEM")).expect("a CA");
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let leaf = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).expect("tls.crt");
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).expect("a name"),
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .is_ok()
}

/// A dry-run create of the canary launcher Pod: whether the apiserver
/// called the webhook and it sized the Pod (`Err`: the create failed).
async fn canary_sized(client: &kube::Client, canary: &Value) -> Result<bool, String> {
    api::try_create_dry_run(client, Kind::Pod, canary)
        .await
        .map(|pod| api::annotation(&pod, DECISION_ANNOTATION).is_some())
        .map_err(|error| api::refusal(&error))
}

// === The tests ===

/// Two replicas started at once on no Secret: one CA between them, both
/// serve the Secret's pair, and both webhook configurations carry a
/// caBundle that verifies it: for the Service's name, and on the wire,
/// where the apiserver calls both webhooks through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_yaml_and_serve_inject_a_ca_bundle_that_verifies_the_serving_certificate() {
    let Some(session) = super::control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, other_port) = (free_port().expect("port"), free_port().expect("port"));
    install(&session, port).await;
    let kubeconfig = session
        .plane
        .token_kubeconfig(dir.path(), "virt-sizer", NAMESPACE);
    let replicas = [
        Replica::start(&kubeconfig, dir.path(), port, &[]),
        Replica::start(&kubeconfig, dir.path(), other_port, &[]),
    ];

    let injected = wait_for_injection(client, &replicas).await;
    let ca_bundle = secret_key(client, CA_BUNDLE_KEY).await;
    assert_eq!(n_certificates(&ca_bundle), 1, "one CA for both replicas");
    assert_eq!(
        injected.len(),
        4,
        "three mutating webhooks and one validating"
    );
    for bundle in &injected {
        assert_eq!(bundle, &ca_bundle, "every webhook carries the Secret's CA");
    }
    let serving = secret_key(client, CERT_KEY).await;
    for name in [SERVICE_DNS, "virt-sizer.virt-sizer.svc.cluster.local"] {
        assert!(verifies_for(&serving, &ca_bundle, name), "{name}");
    }
    let served = CertificateDer::from_pem_slice(serving.as_bytes()).expect("tls.crt");
    for replica in &replicas {
        let on_the_wire = replica
            .served_certificate(&ca_bundle)
            .await
            .unwrap_or_else(|error| {
                panic!("port {}: {error}\n{}", replica.port, replica.log_text())
            });
        assert_eq!(
            on_the_wire, served,
            "port {} serves the Secret's pair",
            replica.port
        );
    }

    // The apiserver calls both webhooks through the injected caBundle.
    let canary = canary_pod(client).await;
    api::eventually("a canary Pod sized", INJECTION_TIMEOUT, async || {
        canary_sized(client, &canary).await == Ok(true)
    })
    .await;
    // The policy webhook sees only virt-sizer's own namespace.
    let broken = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "broken", "namespace": NAMESPACE,
                     "labels": {"virt-sizer.io/policy": "true"}},
        "data": {"policy.yaml": BROKEN_POLICY},
    });
    api::eventually("a broken policy refused", INJECTION_TIMEOUT, async || {
        api::try_create_dry_run(client, Kind::ConfigMap, &broken)
            .await
            .is_err_and(|error| api::refusal(&error).contains("cpuAllocationRatio"))
    })
    .await;
}

/// Forced short lifetimes (CA 60 s, serving 20 s): over 75 s the serving
/// certificate is renewed several times and the CA once (at 40 s, a new CA
/// joins the bundle; the old one leaves when it expires at 60 s), every
/// certificate served verifies against the caBundle the webhooks carry at
/// that moment, and every launcher Pod created meanwhile is sized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_expiry_rotates_the_certificates_while_every_pod_is_sized() {
    const RUN: Duration = Duration::from_secs(75);
    /// The serving lifetime plus its backdating (a tenth): the longest a
    /// serving certificate is valid.
    const SERVING_WINDOW_SECONDS: u64 = 20 + 2;
    let Some(session) = super::control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    install(&session, port).await;
    let kubeconfig = session
        .plane
        .token_kubeconfig(dir.path(), "virt-sizer", NAMESPACE);
    let replica = Replica::start(
        &kubeconfig,
        dir.path(),
        port,
        &[
            "--ca-validity=60s",
            "--certificate-validity=20s",
            "--reload-poll-seconds=1",
            // The apiserver reconnects (and so handshakes) every 2 s.
            "--max-connection-age-seconds=2",
        ],
    );
    wait_for_injection(client, std::slice::from_ref(&replica)).await;
    let canary = canary_pod(client).await;
    api::eventually("a canary Pod sized", INJECTION_TIMEOUT, async || {
        canary_sized(client, &canary).await == Ok(true)
    })
    .await;

    let watch = tokio::spawn(watch_certificates(client.clone(), port, RUN));
    let started = Instant::now();
    let (mut n_sized, mut unsized_or_failed) = (0_usize, Vec::new());
    while started.elapsed() < RUN {
        match canary_sized(client, &canary).await {
            Ok(true) => n_sized += 1,
            other => unsized_or_failed.push(format!("{:?}: {other:?}", started.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = watch.await.expect("the watch does not panic");
    eprintln!(
        "e2e self_certs: {n_sized} launcher Pods sized, {} not; {} serving certificates and {} \
         signing CAs over {:?}; CAs in the caBundle sample by sample: {:?}",
        unsized_or_failed.len(),
        seen.served.len(),
        seen.signing_cas.len(),
        seen.span,
        seen.bundle_sizes
    );
    assert!(
        unsized_or_failed.is_empty(),
        "{} of {} Pods not sized: {unsized_or_failed:?}\n{}",
        unsized_or_failed.len(),
        n_sized + unsized_or_failed.len(),
        replica.log_text()
    );
    assert!(n_sized >= 100, "{n_sized} Pods");
    assert!(
        seen.mismatches.is_empty(),
        "served certificates that the webhooks' caBundle did not verify: {:?}\n{}",
        seen.mismatches,
        replica.log_text()
    );
    // Every sample verified valid: over the samples' span, each serving
    // certificate valid for at most 22 s, so at least span / 22 + 1 of them.
    let span = seen.span.as_secs();
    let at_least = usize::try_from(span / SERVING_WINDOW_SECONDS + 1).expect("small");
    assert!(span >= 70, "{span} s of samples");
    assert!(
        seen.served.len() >= at_least,
        "{} serving certificates over {span} s, at least {at_least}",
        seen.served.len()
    );
    // The CA: renewed at 40 s (two in the bundle), the old one dropped at
    // 60 s (one again).
    assert!(
        seen.signing_cas.len() >= 2,
        "signing CAs seen: {}",
        seen.signing_cas.len()
    );
    let joined = seen.bundle_sizes.iter().position(|&n| n == 2);
    assert!(
        joined.is_some_and(|at| seen.bundle_sizes[at..].contains(&1)),
        "the caBundle never went from two CAs back to one: {:?}",
        seen.bundle_sizes
    );
}

/// What [`watch_certificates`] saw.
#[derive(Debug, Default)]
struct Seen {
    /// The distinct serving certificates served.
    served: BTreeSet<Vec<u8>>,
    /// The distinct first (signing) CAs of the caBundle.
    signing_cas: BTreeSet<Vec<u8>>,
    /// How many CAs the caBundle held, sample by sample.
    bundle_sizes: Vec<usize>,
    /// Served certificates the caBundle read at the same moment did not
    /// verify, and why.
    mismatches: Vec<String>,
    /// From the first sample to the last.
    span: Duration,
}

/// Every 500 ms for `run`: the mutating configuration's caBundle (all
/// webhooks must carry the same), and a handshake with it as the only
/// trust: the certificate served must verify.
async fn watch_certificates(client: kube::Client, port: u16, run: Duration) -> Seen {
    let started = Instant::now();
    let mut seen = Seen::default();
    while started.elapsed() < run {
        let bundles = ca_bundles(&client).await;
        let bundle = bundles[0].clone();
        if bundles.iter().any(|other| other != &bundle) {
            seen.mismatches.push(format!(
                "{:?}: webhooks with different caBundles",
                started.elapsed()
            ));
        }
        let cas: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
            .collect::<Result<_, _>>()
            .expect("PEM");
        if let Some(signing) = cas.first() {
            seen.signing_cas.insert(signing.to_vec());
        }
        seen.bundle_sizes.push(cas.len());
        match served_certificate(port, &bundle).await {
            Ok(certificate) => {
                seen.served.insert(certificate.to_vec());
            }
            Err(error) => seen
                .mismatches
                .push(format!("{:?}: {error}", started.elapsed())),
        }
        seen.span = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    seen
}

/// Waits until both configurations carry a caBundle; returns every
/// webhook's.
async fn wait_for_injection(client: &kube::Client, replicas: &[Replica]) -> Vec<String> {
    let deadline = Instant::now() + INJECTION_TIMEOUT;
    loop {
        let bundles = ca_bundles(client).await;
        if bundles.iter().all(|bundle| !bundle.is_empty()) {
            return bundles;
        }
        assert!(
            Instant::now() < deadline,
            "no caBundle within {INJECTION_TIMEOUT:?}: {bundles:?}\n{}",
            replicas
                .iter()
                .map(Replica::log_text)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
