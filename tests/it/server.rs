//! The server over real TLS on 127.0.0.1:0 (certificates made at test time),
//! and router-level tests through `oneshot`.

use crate::support::repo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

mod binary;
mod certificate_rotation;
mod faults;
mod handshake;
mod policy_reload;
mod policy_webhook;
mod readiness_detail;
mod review_parity;
mod router;

use crate::support::{EXAMPLE_REVIEW, install_provider, pair, provider};

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
