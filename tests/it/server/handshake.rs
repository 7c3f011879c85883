//! Client certificates (and the TLS handshake).

use super::*;

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
