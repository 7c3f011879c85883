//! The null webhook the benches compare virt-sizer with: the same axum +
//! rustls + hyper stack and the same server loop, a handler that reads the
//! body, takes the uid and answers allowed with no patch (`POST /mutate`),
//! or with a fixed one (`POST /mutate-patched`). Included by
//! `benches/load.rs` and `benches/apiserver.rs` (`#[path]`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use virt_sizer::server::tls::{self, CertStore, SelfSigned};
use virt_sizer::server::{self, ServeOptions};

/// `POST /mutate` answering allowed, and `POST /mutate-patched` answering
/// allowed with `patch` (a base64 JSON Patch; none when empty); counts its
/// answers in `answered`.
pub(crate) fn router(answered: Arc<AtomicUsize>, patch: &str) -> Router {
    let answer = move |patch: Option<Arc<str>>| {
        let answered = answered.clone();
        move |body: Bytes| async move {
            let uid = uid_of(&body);
            let mut response = serde_json::json!({"uid": uid, "allowed": true});
            if let Some(patch) = patch {
                response["patchType"] = "JSONPatch".into();
                response["patch"] = (*patch).into();
            }
            answered.fetch_add(1, Ordering::Relaxed);
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&serde_json::json!({"apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview", "response": response}))
                .expect("json"),
            )
        }
    };
    let patch = (!patch.is_empty()).then(|| Arc::<str>::from(patch));
    Router::new()
        .route("/mutate", post(answer(None)))
        .route("/mutate-patched", post(answer(patch)))
        .layer(axum::extract::DefaultBodyLimit::max(server::MAX_BODY_BYTES))
}

/// What the null webhook parses of a review: its uid, skipping the rest
/// (empty when there is none).
pub(crate) fn uid_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Review {
        request: Uid,
    }
    #[derive(serde::Deserialize)]
    struct Uid {
        uid: String,
    }
    serde_json::from_slice::<Review>(body)
        .map_or_else(|_| String::new(), |review| review.request.uid)
}

/// Serves `router` over HTTPS with `pem` on 127.0.0.1 (a free port), on the
/// calling runtime, until the process ends.
pub(crate) async fn start(router: Router, pem: &SelfSigned) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(
        CertStore::from_pem(
            pem.cert_pem.as_bytes(),
            pem.key_pem.as_bytes(),
            provider.clone(),
        )
        .expect("pair"),
    );
    let config = tls::server_config(store, None, provider).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(server::serve(
        listener,
        Arc::new(config),
        router,
        ServeOptions::default(),
        std::future::pending(),
    ));
    address
}
