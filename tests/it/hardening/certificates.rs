//! Certificates.

use super::*;

/// A CA and a client certificate it signed, as PEM (CA, cert + key).
fn client_identity(name: &str) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    (
        ca.pem(),
        format!("{}{}", leaf.pem(), leaf_key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_reloads_like_the_serving_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_ca, old_client) = client_identity("old-apiserver");
    let (new_ca, new_client) = client_identity("new-apiserver");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &old_ca).expect("write");
    let running = Running::start_with(
        ServeOptions::default(),
        RequestLimits::default(),
        Some(&ca_file),
    )
    .await;
    let with = |identity: &str| {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(running.pem.ca_pem.as_bytes()).expect("CA"),
            ])
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    };
    let url = format!("https://localhost:{}/healthz", running.address.port());
    assert!(with(&old_client).get(&url).send().await.is_ok());
    assert!(with(&new_client).get(&url).send().await.is_err());

    let staged = dir.path().join("client-ca.staged");
    std::fs::write(&staged, &new_ca).expect("write");
    std::fs::rename(&staged, &ca_file).expect("rename");
    running.state.reload_certificate();
    assert!(
        with(&new_client).get(&url).send().await.is_ok(),
        "the new client CA is trusted after the reload"
    );
    assert!(
        with(&old_client).get(&url).send().await.is_err(),
        "the old client CA is no longer trusted"
    );
    let metrics = running.state.metrics().render();
    assert!(
        metrics.contains("virt_sizer_certificate_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    running.stop().await;
}

/// A self-signed serving pair valid from the start of `from_year` to the
/// start of `until_year`.
fn pair_valid(from_year: i32, until_year: i32) -> (String, String) {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_before = date_time_ymd(from_year, 1, 1);
    params.not_after = date_time_ymd(until_year, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn serving_pair_outside_its_validity_window_is_refused_and_the_old_one_kept() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (good_cert, good_key) = pair_valid(2020, 2100);
    std::fs::write(&cert, &good_cert).expect("write");
    std::fs::write(&key, &good_key).expect("write");
    let certs = Arc::new(CertStore::from_files(&cert, &key, provider()).expect("pair"));
    let state = AppState::new(
        PolicyStore::builtin(),
        Some(certs.clone()),
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let good_expiry = certs.validity().not_after;
    let expiry_line = format!("virt_sizer_certificate_expiry_timestamp_seconds {good_expiry}");
    assert!(state.metrics().render().contains(&expiry_line));
    for (name, (bad_cert, bad_key)) in [
        ("expired", pair_valid(2020, 2021)),
        ("not yet valid", pair_valid(2099, 2100)),
    ] {
        std::fs::write(&cert, &bad_cert).expect("write");
        std::fs::write(&key, &bad_key).expect("write");
        state.reload_certificate();
        assert_eq!(
            certs.validity().not_after,
            good_expiry,
            "{name} pair loaded"
        );
        let error = certs.last_error().expect("a refused reload");
        assert!(error.contains("not valid now"), "{name}: {error}");
    }
    let metrics = state.metrics().render();
    assert!(metrics.contains("virt_sizer_certificate_reloads_total{result=\"failure\"} 2"));
    assert!(metrics.contains(&expiry_line), "{metrics}");
}

#[tokio::test]
async fn readyz_is_degraded_when_the_serving_certificate_expired() {
    install_provider();
    let (cert_pem, key_pem) = pair_valid(2020, 2021);
    let certs = Arc::new(
        CertStore::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), provider()).expect("pair"),
    );
    let state = AppState::new(
        PolicyStore::builtin(),
        Some(certs),
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let (status, detail) = crate::support::readyz_of(server::app(state)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(detail["certificate"]["valid"], false, "{detail}");
}
