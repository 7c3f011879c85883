//! The server over real TLS on 127.0.0.1:0 (certificates made at test time),
//! and router-level tests through `oneshot`.

use crate::support::repo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt as _;
use virt_sizer::commands::test::{Case, OneOrMany};
use virt_sizer::server::policy_store::PolicyStore;
use virt_sizer::server::tls::{self, CertStore, SelfSigned};
use virt_sizer::server::vmi_source::{BoxFuture, NoVmis, VmiDirectory, VmiSource};
use virt_sizer::server::{self, AppState, ServeOptions, StaticNamespaces, watch};

const EXAMPLE_REVIEW: &str = include_str!("../../examples/launcher-pod-dev.json");

fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pair() -> SelfSigned {
    tls::generate_self_signed(&["localhost", "127.0.0.1"]).expect("certificates")
}

/// A running server and what the tests need to reach it.
struct TestServer {
    address: std::net::SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _watchers: Vec<watch::FileWatcher>,
}

struct Setup {
    cert: PathBuf,
    key: PathBuf,
    policy: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    vmis: Arc<dyn VmiSource>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    lookup_timeout: Duration,
}

impl TestServer {
    async fn start(setup: Setup) -> TestServer {
        install_provider();
        let certs = Arc::new(
            CertStore::from_files(&setup.cert, &setup.key, provider()).expect("pair loads"),
        );
        let config = tls::server_config(certs.clone(), setup.client_ca.as_deref(), provider())
            .expect("config");
        let policy = match &setup.policy {
            Some(path) => PolicyStore::from_file(path).expect("policy"),
            None => PolicyStore::builtin(),
        };
        let state = AppState::new(
            policy,
            Some(certs.clone()),
            setup.vmis,
            Arc::new(StaticNamespaces::new(setup.namespaces)),
            setup.lookup_timeout,
        );
        let poll = Duration::from_millis(200);
        let mut watchers = Vec::new();
        if let Some(path) = &setup.policy {
            let state = state.clone();
            watchers.push(watch::watch(std::slice::from_ref(path), poll, move || {
                state.reload_policy();
            }));
        }
        {
            let state = state.clone();
            watchers.push(watch::watch(&certs.watched_files(), poll, move || {
                state.reload_certificate();
            }));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let router = server::app(state.clone());
        let shutdown_state = state.clone();
        let done = tokio::spawn(server::serve(
            listener,
            Arc::new(config),
            router,
            ServeOptions {
                drain_timeout: Duration::from_secs(5),
                ..ServeOptions::default()
            },
            async move {
                let _ = stopped.await;
                shutdown_state.begin_shutdown();
            },
        ));
        TestServer {
            address,
            state,
            stop: Some(stop),
            done,
            _watchers: watchers,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("server stops within the drain bound")
            .expect("server task");
    }
}

fn setup_in(dir: &Path, pem: &SelfSigned) -> Setup {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, &pem.cert_pem).expect("write");
    std::fs::write(&key, &pem.key_pem).expect("write");
    Setup {
        cert,
        key,
        policy: None,
        client_ca: None,
        vmis: Arc::new(NoVmis),
        namespaces: BTreeMap::new(),
        lookup_timeout: Duration::from_secs(1),
    }
}

fn client(roots: &[&str]) -> reqwest::Client {
    install_provider();
    let certs = roots
        .iter()
        .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA"));
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn post_review(client: &reqwest::Client, url: &str, body: &[u8]) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
}

fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
        .expect("TLS info")
}

fn first_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

// === Same bytes as `virt-sizer review` ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_the_same_bytes_as_review_for_every_fixture_case() {
    let pem = pair();
    let http = client(&[&pem.ca_pem]);
    let mut compared = 0;
    for case_file in fixture_cases() {
        let case: Case = yaml_serde::from_str(&std::fs::read_to_string(&case_file).expect("read"))
            .unwrap_or_else(|error| panic!("{}: {error}", case_file.display()));
        let base = case_file.parent().expect("dir").to_owned();
        let dir = tempfile::tempdir().expect("tempdir");
        // A server per case: its policy, its VMIs, its namespace labels.
        let mut setup = setup_in(dir.path(), &pem);
        setup.policy = case.policy.as_ref().map(|path| base.join(path));
        let vmi_dir = dir.path().join("vmis");
        std::fs::create_dir(&vmi_dir).expect("mkdir");
        let vmis: Vec<PathBuf> = match &case.vmi {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(path) => vec![base.join(path)],
            OneOrMany::Many(paths) => paths.iter().map(|path| base.join(path)).collect(),
        };
        for (index, vmi) in vmis.iter().enumerate() {
            std::fs::copy(vmi, vmi_dir.join(format!("{index}.yaml"))).expect("copy");
        }
        setup.vmis = Arc::new(VmiDirectory::new(&vmi_dir).expect("vmi dir"));
        let namespace = case.namespace.name.unwrap_or_else(|| "default".to_owned());
        let labels = case.namespace.labels;
        setup.namespaces.insert(namespace.clone(), labels.clone());
        let server = TestServer::start(setup).await;

        let input = base.join(&case.input);
        let operation = case.operation.as_str();
        let document = virt_sizer::documents::read_document(&input).expect("input");
        let request = virt_sizer::commands::request_from_document(document, &namespace, operation)
            .expect("request");
        let review = serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
            .expect("json");
        let review_file = dir.path().join("review.json");
        std::fs::write(&review_file, &review).expect("write");

        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_virt-sizer"));
        command.arg("review");
        if let Some(policy) = &case.policy {
            command.arg("--policy").arg(base.join(policy));
        }
        for vmi in &vmis {
            command.arg("--vmi").arg(vmi);
        }
        let label_text = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        command
            .arg("--namespace-labels")
            .arg(label_text)
            .arg(&review_file);
        let output = command.output().expect("runs");
        assert!(
            output.status.success(),
            "{}: {}",
            case_file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let cli_bytes = output.stdout.strip_suffix(b"\n").expect("newline").to_vec();

        let response = post_review(&http, &server.url("/mutate"), &review).await;
        assert_eq!(response.status(), StatusCode::OK);
        let server_bytes = response.bytes().await.expect("body").to_vec();
        assert_eq!(
            String::from_utf8_lossy(&server_bytes),
            String::from_utf8_lossy(&cli_bytes),
            "{}",
            case_file.display()
        );
        server.stop().await;
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} fixture cases compared");
}

fn fixture_cases() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![repo("tests/fixtures/cases")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && std::fs::read_to_string(&path).is_ok_and(|text| text.contains("\nexpect:"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

// === Certificate rotation ===

/// Sends requests on fresh connections until the server presents `want`,
/// counting failures; returns (requests sent, failures).
async fn stream_until_served(
    server: &TestServer,
    http: &reqwest::Client,
    want: &[u8],
) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut sent, mut failed) = (0, 0);
    loop {
        sent += 1;
        let result = http
            .post(server.url("/mutate"))
            .header("content-type", "application/json")
            .body(EXAMPLE_REVIEW)
            .send()
            .await;
        match result {
            Ok(response) if response.status() == StatusCode::OK => {
                if served_certificate(&response) == want {
                    return (sent, failed);
                }
            }
            _ => failed += 1,
        }
        assert!(
            Instant::now() < deadline,
            "rotation not picked up after {sent} requests"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client that opens a new connection, with a full handshake (no session
/// resumption), for every request: each one sees the certificate serving now.
fn fresh_connections(roots: &[&str]) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    install_provider();
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        store
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).expect("CA"))
            .expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_file_rewrite_is_picked_up_without_failed_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (pair(), pair());
    let setup = setup_in(dir.path(), &old);
    let (cert, key) = (setup.cert.clone(), setup.key.clone());
    let server = TestServer::start(setup).await;
    let http = fresh_connections(&[&old.ca_pem, &new.ca_pem]);
    let (_, failed) = stream_until_served(&server, &http, &first_der(&old.cert_pem)).await;
    assert_eq!(failed, 0);

    // Rewrite both files in place, key first: in between, the pair does not
    // match and the old one must keep serving. Wait until the server has
    // seen (and refused) that half-rotated pair rather than for a fixed time,
    // so the test does not depend on how fast file events arrive.
    std::fs::write(&key, &new.key_pem).expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while certificate_reloads(&server, "failure") == 0 {
        assert!(
            Instant::now() < deadline,
            "the half-rotated pair was never refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, failed) = stream_until_served(&server, &http, &first_der(&old.cert_pem)).await;
    assert_eq!(
        failed, 0,
        "the old pair serves while the new one is half written"
    );
    std::fs::write(&cert, &new.cert_pem).expect("write");
    let (sent, failed) = stream_until_served(&server, &http, &first_der(&new.cert_pem)).await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during rotation"
    );
    // Exactly one pair loaded. An in-place write can be read half done
    // (an empty or truncated file), so each file may be refused more than
    // once on its way: at least the mismatched pair was.
    assert_eq!(certificate_reloads(&server, "success"), 1);
    assert!(certificate_reloads(&server, "failure") >= 1);
    server.stop().await;
}

/// `virt_sizer_certificate_reloads_total{result}` (0 before the first).
fn certificate_reloads(server: &TestServer, result: &str) -> u64 {
    let series = format!("virt_sizer_certificate_reloads_total{{result=\"{result}\"}} ");
    server
        .state
        .metrics()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |value| value.trim().parse().expect("a counter"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_secret_volume_symlink_swap_is_picked_up() {
    // The layout kubelet gives a Secret volume:
    //   tls.crt -> ..data/tls.crt, ..data -> ..2026_v1/
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (pair(), pair());
    let write_version = |name: &str, pem: &SelfSigned| {
        let version = dir.path().join(name);
        std::fs::create_dir(&version).expect("mkdir");
        std::fs::write(version.join("tls.crt"), &pem.cert_pem).expect("write");
        std::fs::write(version.join("tls.key"), &pem.key_pem).expect("write");
    };
    write_version("..2026_v1", &old);
    std::os::unix::fs::symlink("..2026_v1", dir.path().join("..data")).expect("symlink");
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.path().join(file))
            .expect("symlink");
    }
    std::fs::create_dir(dir.path().join("unused")).expect("mkdir");
    let mut setup = setup_in(&dir.path().join("unused"), &old);
    setup.cert = dir.path().join("tls.crt");
    setup.key = dir.path().join("tls.key");
    let server = TestServer::start(setup).await;
    let http = fresh_connections(&[&old.ca_pem, &new.ca_pem]);
    assert_eq!(
        stream_until_served(&server, &http, &first_der(&old.cert_pem))
            .await
            .1,
        0
    );

    write_version("..2026_v2", &new);
    std::os::unix::fs::symlink("..2026_v2", dir.path().join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("atomic swap");
    let (sent, failed) = stream_until_served(&server, &http, &first_der(&new.cert_pem)).await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the swap"
    );
    server.stop().await;
}

// === Policy reload ===

/// Replaces `path` with `text` in one step (write beside it, rename over).
fn replace_file(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_keeps_the_last_good_one_and_a_valid_one_switches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let mut setup = setup_in(dir.path(), &pem);
    let policy_path = dir.path().join("policy.yaml");
    let policy_v1 = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  default: {cpuAllocationRatio: 10}\n";
    std::fs::write(&policy_path, policy_v1).expect("write");
    setup.policy = Some(policy_path.clone());
    setup.vmis = Arc::new(VmiDirectory::new(&repo("examples")).expect("examples"));
    let server = TestServer::start(setup).await;
    let http = client(&[&pem.ca_pem]);

    let digest_of = |text: &str| {
        virt_sizer::sizing::policy::ValidPolicy::from_yaml(text)
            .expect("valid")
            .digest
    };
    let served_digest = || async {
        let response = post_review(&http, &server.url("/mutate"), EXAMPLE_REVIEW.as_bytes()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["response"]["auditAnnotations"]["policy-digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    assert_eq!(served_digest().await, digest_of(policy_v1));

    // A steady stream during both reloads: every request answered, and
    // decisions switch from v1 to v2 once, never back.
    let streaming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stream = {
        let streaming = streaming.clone();
        let http = client(&[&pem.ca_pem]);
        let url = server.url("/mutate");
        tokio::spawn(async move {
            let (mut digests, mut failures) = (Vec::new(), 0_usize);
            while streaming.load(Ordering::SeqCst) {
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(EXAMPLE_REVIEW)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = response.json().await.unwrap_or_default();
                        match body["response"]["auditAnnotations"]["policy-digest"].as_str() {
                            Some(digest) => digests.push(digest.to_owned()),
                            None => failures += 1,
                        }
                    }
                    _ => failures += 1,
                }
            }
            (digests, failures)
        })
    };

    // Written by rename, as kubelet swaps a ConfigMap volume: an in-place
    // write could be read half-done, which is a second (correct) rejection
    // or a third policy, not what this test is about.
    replace_file(
        &policy_path,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles: {default: {cpuAllocationRatio: 0}}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = http
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        if ready["policy"]["rejectedReload"].is_string() {
            assert!(
                ready["policy"]["rejectedReload"]
                    .as_str()
                    .expect("text")
                    .contains("cpuAllocationRatio")
            );
            break;
        }
        assert!(Instant::now() < deadline, "invalid policy never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_digest().await,
        digest_of(policy_v1),
        "last good policy still serves"
    );
    assert!(
        server
            .state
            .metrics()
            .render()
            .contains("virt_sizer_policy_reloads_total{result=\"failure\"} 1")
    );

    let policy_v2 = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  default: {cpuAllocationRatio: 4}\n";
    replace_file(&policy_path, policy_v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_digest().await != digest_of(policy_v2) {
        assert!(Instant::now() < deadline, "valid policy never picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    streaming.store(false, Ordering::SeqCst);
    let (digests, failures) = stream.await.expect("stream task");
    assert_eq!(failures, 0, "{failures} failed requests during the reloads");
    assert!(
        digests.len() >= 10,
        "only {} requests in the stream",
        digests.len()
    );
    let (v1, v2) = (digest_of(policy_v1), digest_of(policy_v2));
    let switch = digests
        .iter()
        .position(|digest| *digest == v2)
        .expect("the stream saw v2");
    assert!(
        digests[..switch].iter().all(|digest| *digest == v1),
        "only v1 before the switch"
    );
    assert!(
        digests[switch..].iter().all(|digest| *digest == v2),
        "only v2 after it, never back"
    );
    server.stop().await;
}

// === Client certificates ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_rejects_clients_without_a_trusted_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serving = pair();
    let client_pair = pair();
    let stranger = pair();
    let mut setup = setup_in(dir.path(), &serving);
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca, &client_pair.ca_pem).expect("write");
    setup.client_ca = Some(client_ca);
    let server = TestServer::start(setup).await;

    let without = client(&[&serving.ca_pem]);
    assert!(
        without.get(server.url("/healthz")).send().await.is_err(),
        "no client certificate must fail"
    );

    let with_identity = |pem: &SelfSigned| {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", pem.cert_pem, pem.key_pem).as_bytes())
                .expect("identity");
        reqwest::Client::builder()
            .tls_certs_only(
                [reqwest::Certificate::from_pem(serving.ca_pem.as_bytes()).expect("CA")],
            )
            .identity(identity)
            .build()
            .expect("client")
    };
    assert!(
        with_identity(&stranger)
            .get(server.url("/healthz"))
            .send()
            .await
            .is_err(),
        "a certificate from another CA must fail"
    );
    let response = with_identity(&client_pair)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("trusted client");
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_are_refused_and_http2_is_negotiated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let server = TestServer::start(setup_in(dir.path(), &pem)).await;
    // No Rust TLS client speaks TLS 1.0/1.1, so send ClientHellos by hand
    // that differ only in their version: TLS 1.2 must get a ServerHello
    // (record type 22), 1.0 and 1.1 an alert (record type 21).
    for (minor, name, expected_record) in [
        (0x03_u8, "TLS 1.2", 0x16_u8),
        (0x01, "TLS 1.0", 0x15),
        (0x02, "TLS 1.1", 0x15),
    ] {
        let mut body = vec![0x03, minor];
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(0x00); // no session id
        body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&[
            0x00, 0x1a, // extensions, 26 bytes
            0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00,
            0x17, // groups x25519, P-256
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // uncompressed points
            0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08,
            0x04, // ECDSA-P256-SHA256, RSA-PSS
        ]);
        let mut hello = vec![0x16, 0x03, minor];
        hello.extend_from_slice(&u16::try_from(body.len() + 4).expect("short").to_be_bytes());
        hello.extend_from_slice(&[0x01, 0x00]);
        hello.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
        hello.extend_from_slice(&body);
        let mut tcp = tokio::net::TcpStream::connect(server.address)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &hello)
            .await
            .expect("write");
        let mut answer = [0_u8; 1];
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer),
        )
        .await
        .expect("an answer in time")
        .expect("a record");
        assert_eq!(
            answer[0], expected_record,
            "{name}: first record type {}",
            answer[0]
        );
    }
    let response = client(&[&pem.ca_pem])
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("h2");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.ca_pem.as_bytes()).expect("CA")])
        .http1_only()
        .build()
        .expect("client");
    let response = http1
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("http/1.1");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    server.stop().await;
}

// === Faults: slow VMI source, panics, drain, slow clients ===

/// A VMI source that waits, then answers with the example VMI.
struct SlowVmis {
    delay: Duration,
    started: Arc<AtomicUsize>,
}

impl VmiSource for SlowVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let vmi: Value = yaml_serde::from_str(
                &std::fs::read_to_string(repo("examples/vmi-dev.yaml")).expect("read"),
            )
            .expect("yaml");
            Ok(Some(Arc::new(vmi)))
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

/// A VMI source that panics.
struct PanickingVmis;

impl VmiSource for PanickingVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<Value>>, String>> {
        Box::pin(async { panic!("injected fault") })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "panics".into()
    }
}

fn router_with(vmis: Arc<dyn VmiSource>, lookup_timeout: Duration) -> (axum::Router, AppState) {
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        vmis,
        Arc::new(StaticNamespaces::default()),
        lookup_timeout,
    );
    (server::app(state.clone()), state)
}

async fn oneshot_review(router: axum::Router, body: &str) -> (StatusCode, Value) {
    let response = router
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_hanging_vmi_lookup_is_answered_within_the_bound_per_on_error() {
    let started = Arc::new(AtomicUsize::new(0));
    let vmis = Arc::new(SlowVmis {
        delay: Duration::from_secs(3600),
        started: started.clone(),
    });
    let (router, _) = router_with(vmis, Duration::from_millis(200));
    let began = Instant::now();
    let (status, body) = oneshot_review(router, EXAMPLE_REVIEW).await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "took {:?}",
        began.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(
        body["response"]["uid"],
        "7f3b1c2a-0000-4000-8000-000000000001"
    );
    let warning = body["response"]["warnings"][0].as_str().expect("warning");
    assert!(warning.contains("timed out after 200 ms"), "{warning}");
    assert!(body["response"].get("patch").is_none());
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_while_deciding_is_caught_counted_and_answered() {
    let (router, state) = router_with(Arc::new(PanickingVmis), Duration::from_secs(1));
    let (status, body) = oneshot_review(router, EXAMPLE_REVIEW).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true, "onError Allow");
    assert_eq!(
        body["response"]["uid"],
        "7f3b1c2a-0000-4000-8000-000000000001"
    );
    assert!(
        state
            .metrics()
            .render()
            .contains("virt_sizer_admission_panics_total 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let started = Arc::new(AtomicUsize::new(0));
    let mut setup = setup_in(dir.path(), &pem);
    setup.vmis = Arc::new(SlowVmis {
        delay: Duration::from_millis(700),
        started: started.clone(),
    });
    setup.lookup_timeout = Duration::from_secs(5);
    let server = TestServer::start(setup).await;
    let http = client(&[&pem.ca_pem]);
    let url = server.url("/mutate");
    let in_flight =
        tokio::spawn(async move { post_review(&http, &url, EXAMPLE_REVIEW.as_bytes()).await });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = server.state.clone();
    server.stop().await; // returns only after the drain
    let response = in_flight.await.expect("task");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["response"]["patch"].is_string(),
        "the in-flight request was decided, not cut"
    );
    let readiness = server::app(state)
        .oneshot(
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_block_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = pair();
    let server = TestServer::start(setup_in(dir.path(), &pem)).await;
    // Ten connections that never finish a handshake.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(
            tokio::net::TcpStream::connect(server.address)
                .await
                .expect("connect"),
        );
    }
    let http = client(&[&pem.ca_pem]);
    let began = Instant::now();
    let response = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(began.elapsed() < Duration::from_secs(2));
    drop(idle);
    server.stop().await;
}

// === Router-level: every endpoint, every client mistake ===

#[tokio::test]
async fn router_rejects_client_mistakes_with_4xx() {
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("wrong content type", "text/plain", EXAMPLE_REVIEW.as_bytes().to_vec(), StatusCode::BAD_REQUEST, "Content-Type"),
        ("truncated JSON", "application/json", b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\"".to_vec(), StatusCode::BAD_REQUEST, "undecodable"),
        ("not JSON", "application/json", b"hello".to_vec(), StatusCode::BAD_REQUEST, "undecodable"),
        ("v1beta1", "application/json", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(), StatusCode::BAD_REQUEST, "expected apiVersion"),
        ("no request", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), StatusCode::BAD_REQUEST, "no request"),
        ("empty uid", "application/json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#.to_vec(), StatusCode::BAD_REQUEST, "no uid"),
        ("over 7 MiB", "application/json", vec![b' '; server::MAX_BODY_BYTES + 1], StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    let (router, state) = router_with(Arc::new(NoVmis), Duration::from_secs(1));
    for (name, content_type, body, expected_status, message) in cases {
        let response = router
            .clone()
            .oneshot(
                Request::post("/mutate")
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), expected_status, "{name}");
        let text = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(
            String::from_utf8_lossy(&text).contains(message),
            "{name}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let metrics = state.metrics().render();
    assert!(
        metrics.contains("virt_sizer_admission_errors_total{reason=\"bad_request\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("virt_sizer_admission_errors_total{reason=\"too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn router_serves_health_readiness_and_metrics() {
    let (router, state) = router_with(Arc::new(NoVmis), Duration::from_secs(1));
    let (status, body) = oneshot_review(router.clone(), EXAMPLE_REVIEW).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);

    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap_or_default().to_owned());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (
                status,
                content_type,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let (status, _, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"ready\":true"), "{body}");
    let (status, content_type, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .expect("content type")
            .starts_with("application/openmetrics-text")
    );
    for name in [
        "virt_sizer_admission_requests_total{kind=\"launcher_pod\",operation=\"CREATE\",outcome=\"error_allowed\"} 1",
        "virt_sizer_admission_duration_seconds_bucket",
        "virt_sizer_admission_duration_seconds_count{kind=\"launcher_pod\",operation=\"CREATE\",outcome=\"error_allowed\"} 1",
        "virt_sizer_admission_in_flight_requests 0",
        "virt_sizer_admission_errors_total{reason=\"vmi_not_found\"} 1",
        "virt_sizer_policy_reloads_total{result=\"success\"} 0",
        "virt_sizer_certificate_reloads_total{result=\"failure\"} 0",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    state.begin_shutdown();
    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"draining\":true"));
    let (status, _, _) = get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// === The binary: embedded default and SIGTERM ===

#[test]
fn serve_embedded_default_writes_its_ca_and_exits_on_sigterm() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--vmi-dir",
        ])
        .arg(repo("examples"))
        .arg("--ca-out")
        .arg(&ca)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let all_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = all_lines.clone();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            collected.lock().expect("lock").push(line.clone());
            let _ = lines.send(line);
        }
    });
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while address.is_none() && Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200))
            && let Ok(log) = serde_json::from_str::<Value>(&line)
            && log["message"] == "listening"
        {
            address = log["address"].as_str().map(str::to_owned);
        }
    }
    let address = address.expect("a 'listening' log line with the address");
    let port = address.rsplit(':').next().expect("port");
    let ca_pem = std::fs::read_to_string(&ca).expect("the CA was written");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let http = client(&[&ca_pem]);
        let response = post_review(
            &http,
            &format!("https://localhost:{port}/mutate"),
            EXAMPLE_REVIEW.as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["response"]["uid"],
            "7f3b1c2a-0000-4000-8000-000000000001"
        );
        assert!(
            body["response"]["patch"].is_string(),
            "built-in policy + VMI dir sizes the Pod"
        );
    });

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // One decision line, and no object body or key material in any line.
    std::thread::sleep(Duration::from_millis(200));
    let logs = all_lines.lock().expect("lock").join("\n");
    assert!(
        logs.contains("\"message\":\"admission decision\""),
        "{logs}"
    );
    for secret in [
        "BEGIN",
        "PRIVATE KEY",
        "--qemu-timeout",
        "virt-launcher-monitor",
        "ovmf",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
