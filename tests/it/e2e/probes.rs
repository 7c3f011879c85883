//! `--probe-listen` and `--client-ca` together, as a hardened Deployment
//! runs them: the apiserver authenticates to the webhook with a client
//! certificate (the control plane's AdmissionConfiguration) and gets
//! launcher Pods sized; probes and an unauthenticated Prometheus scrape use
//! the plain-HTTP probe port; `/mutate` exists only on the TLS port, which
//! refuses a client without a certificate during the handshake.

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

    // The TLS port without a client certificate: the server ends the
    // handshake with a certificate_required alert (TLS 1.3: the client
    // sees it on its first read).
    let alert = post_without_client_certificate(server.port, &server.pem.ca_pem).await;
    assert!(alert.contains("CertificateRequired"), "{alert}");

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

/// POSTs to `/mutate` over TLS without a client certificate; returns the
/// error the connection ends with.
async fn post_without_client_certificate(port: u16, ca_pem: &str) -> String {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the TLS port accepts TCP");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let result = async {
        let mut tls = connector.connect(name, tcp).await?;
        let body = "{}";
        tls.write_all(
            format!(
                "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), result).await {
        Ok(Ok(response)) => panic!(
            "answered without a client certificate: {}",
            String::from_utf8_lossy(&response)
        ),
        Ok(Err(error)) => format!("{error:?}"),
        Err(_) => panic!("no answer within 5 s"),
    }
}
