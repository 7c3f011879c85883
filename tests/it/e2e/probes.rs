//! `--probe-listen` and `--client-ca` together, as a hardened Deployment
//! runs them: the apiserver authenticates to the webhook with a client
//! certificate (the control plane's AdmissionConfiguration) and gets
//! launcher Pods sized; probes and an unauthenticated Prometheus scrape use
//! the plain-HTTP probe port; `/mutate` exists only on the TLS port, which
//! refuses a client without a certificate during the handshake.

use serde_json::json;

use super::api::{self, Kind, Resources};
use super::control_plane::{self, free_port};
use super::objects;
use super::webhook::{Offline, Serve, policy, register};
use crate::support::VmiSpec;

const NAMESPACE: &str = "mtls-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_plain_http_and_mutate_needs_the_apiservers_certificate() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let probe_port = free_port().expect("a free port");
    let mut serve = Serve::with_e2e_policy();
    serve.client_ca = true;
    serve.extra_args = vec![format!("--probe-listen=127.0.0.1:{probe_port}")];
    let server = serve.start(session.plane).await;

    // Probes and metrics: plain HTTP, no client certificate.
    let plain = reqwest::Client::new();
    let probe = |path: &str| format!("http://127.0.0.1:{probe_port}{path}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = plain
            .get(probe(path))
            .send()
            .await
            .expect("probe port answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let readiness: serde_json::Value = plain
        .get(probe("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("readyz is JSON");
    assert_eq!(readiness["ready"], true, "{readiness}");
    // No admission on the probe port.
    let mutate_on_probe = plain
        .post(probe("/mutate"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("probe port answers");
    assert!(
        mutate_on_probe.status().is_client_error(),
        "{}",
        mutate_on_probe.status()
    );

    // The TLS port without a client certificate: refused in the handshake.
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.pem.ca_pem.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let refused = anonymous
        .post(server.url("/mutate"))
        .header("Content-Type", "application/json")
        .body(json!({}).to_string())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate got {refused:?}"
    );

    // The apiserver presents its client certificate: Pods get sized.
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    register(&session, &configurations).await;
    let namespace = api::namespace(client, NAMESPACE, &[("tier", "dev")]).await;
    let vmi = api::create(
        client,
        Kind::VirtualMachineInstance,
        &objects::vmi(&VmiSpec::simple("mtls", 1024), NAMESPACE),
    )
    .await;
    let pod = objects::small_launcher_pod(&vmi);
    let stored = api::create(client, Kind::Pod, &pod).await;
    let policy = policy();
    let offline = Offline {
        policy: Some(&policy),
        vmi: Some(&vmi),
        namespace_labels: api::labels_flag(&namespace),
        extra_args: Vec::new(),
    }
    .patched(&pod);
    assert_ne!(
        Resources::compute(&stored),
        Resources::compute(&pod),
        "sized"
    );
    assert_eq!(
        Resources::compute(&stored),
        Resources::compute(&offline).as_stored()
    );

    // An unauthenticated scrape of the probe port sees those decisions.
    let metrics = plain
        .get(probe("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(|line| {
            line.starts_with("virt_sizer_admission_requests_total{")
                && line.contains(r#"kind="launcher_pod""#)
                && line.contains(r#"outcome="patched""#)
        }),
        "{metrics}"
    );
}
