//! Certificate rotation.

use super::*;

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
