//! Tests: certs/gen-certs.sh and the rendered overlays.

use super::shipped_policy::{assert_policy_changes_nothing, policy_text};
use super::*;

fn base64_of(path: &Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("readable"))
}

/// The certificate verifies for `name` against the CA bundle, as the
/// apiserver will check it.
fn verify_serving_certificate(out: &Path, name: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(out.join("ca-bundle.crt")).expect("bundle") {
        roots
            .add(ca.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    let leaf = CertificateDer::from_pem_file(out.join("tls.crt")).expect("tls.crt");
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_owned()).expect("a DNS name"),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn gen_certs_makes_a_pair_the_server_loads_and_the_apiserver_trusts() {
    if !have("openssl", &["version"]) || !have("bash", &["--version"]) {
        eprintln!("skipped: needs bash and openssl");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let out = temp.path().join("out");
    let bundle = gen_certs(&out, &[]);

    // What it prints is the caBundle: base64 of the CA bundle PEM.
    assert_eq!(bundle, base64_of(&out.join("ca-bundle.crt")));
    // The server loads the pair (ECDSA, PKCS#8) as it would from the Secret.
    virt_sizer::server::tls::CertStore::from_files(
        &out.join("tls.crt"),
        &out.join("tls.key"),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .expect("the server loads the generated pair");
    for name in [
        format!("{SERVICE}.{NAMESPACE}.svc"),
        format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"),
    ] {
        verify_serving_certificate(&out, &name).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    assert!(
        verify_serving_certificate(&out, "virt-sizer.other.svc").is_err(),
        "the certificate names only the Service"
    );

    // The Secret is the one the Deployment mounts, with the printed bundle.
    let secret = read_docs(&out.join("secret.yaml"));
    let mut check = Check::default();
    check_type(&mut check, &secret[0]);
    check.finish("secret.yaml");
    let secret = &secret[0].value;
    assert_eq!(str_at(secret, "/metadata/name"), Some(TLS_SECRET));
    assert_eq!(str_at(secret, "/metadata/namespace"), Some(NAMESPACE));
    assert_eq!(str_at(secret, "/type"), Some("kubernetes.io/tls"));
    assert_eq!(str_at(secret, "/data/ca.crt"), Some(bundle.as_str()));
    assert_eq!(
        str_at(secret, "/data/tls.crt"),
        Some(base64_of(&out.join("tls.crt")).as_str())
    );
    assert_eq!(
        str_at(secret, "/data/tls.key"),
        Some(base64_of(&out.join("tls.key")).as_str())
    );

    // A second run renews the serving certificate with the same CA: the
    // caBundle does not change.
    let first_leaf = std::fs::read(out.join("tls.crt")).expect("tls.crt");
    assert_eq!(gen_certs(&out, &[]), bundle);
    assert_ne!(
        std::fs::read(out.join("tls.crt")).expect("tls.crt"),
        first_leaf
    );

    // CA rotation: both CAs trusted, then only the new one.
    let rotated = gen_certs(&out, &["--new-ca"]);
    assert_ne!(rotated, bundle);
    let bundle_text = std::fs::read_to_string(out.join("ca-bundle.crt")).expect("bundle");
    assert_eq!(bundle_text.matches("BEGIN CERTIFICATE").count(), 2);
    verify_serving_certificate(&out, &format!("{SERVICE}.{NAMESPACE}.svc")).expect("verifies");
    gen_certs(&out, &["--drop-previous-ca"]);
    let bundle_text = std::fs::read_to_string(out.join("ca-bundle.crt")).expect("bundle");
    assert_eq!(bundle_text.matches("BEGIN CERTIFICATE").count(), 1);
    verify_serving_certificate(&out, &format!("{SERVICE}.{NAMESPACE}.svc")).expect("verifies");
}

/// `overlay` is `base` but for the objects of `kind` (the same objects, in
/// the same order).
fn assert_same_but(overlay: &[Doc], base: &[Doc], kind: &str) {
    assert_eq!(overlay.len(), base.len());
    for (changed, original) in overlay.iter().zip(base) {
        assert_eq!(
            (changed.kind(), changed.name()),
            (original.kind(), original.name())
        );
        if changed.kind() != kind {
            assert_eq!(changed.value, original.value, "{}", changed.origin);
        }
    }
}

#[test]
fn rendered_base_and_overlays_satisfy_every_rule() {
    if !have_kubectl() {
        eprintln!("skipped: kubectl is not installed (the files are checked without it)");
        return;
    }
    let manifests = manifests_dir();
    let rendered_base = kustomize(&manifests);
    assert_eq!(
        rendered_base.len(),
        base_docs().len(),
        "manifests/ renders the base"
    );
    check_rules(
        &rendered_base,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::SelfManaged,
        },
        "kubectl kustomize manifests",
    );

    let cert_manager = kustomize(&manifests.join("overlays/cert-manager"));
    check_rules(
        &cert_manager,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Injected,
        },
        "overlays/cert-manager",
    );
    assert_eq!(
        cert_manager
            .iter()
            .filter(|doc| doc.kind() == "Certificate")
            .count(),
        2
    );

    assert_policy_changes_nothing(&policy_text(&rendered_base), "manifests");
    assert_policy_changes_nothing(&policy_text(&cert_manager), "overlays/cert-manager");
    // fail-closed and example-policy are the default install (self-managed
    // certificates) with one change each: the failure policy of the
    // MutatingWebhookConfiguration, the policy ConfigMap.
    let fail_closed = kustomize(&manifests.join("overlays/fail-closed"));
    check_rules(
        &fail_closed,
        &Expect {
            failure_policy: "Fail",
            ca_bundle: CaBundle::SelfManaged,
        },
        "overlays/fail-closed",
    );
    assert_policy_changes_nothing(&policy_text(&fail_closed), "overlays/fail-closed");
    assert_same_but(&fail_closed, &rendered_base, "MutatingWebhookConfiguration");

    let example = kustomize(&manifests.join("overlays/example-policy"));
    check_rules(
        &example,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::SelfManaged,
        },
        "overlays/example-policy",
    );
    let example_patch = read_docs(&manifests.join("overlays/example-policy/policy.yaml"));
    assert_eq!(policy_text(&example), policy_text(&example_patch));
    assert_same_but(&example, &rendered_base, "ConfigMap");

    // certs-script needs certs/out: render a copy of the tree with the script's
    // output beside it, never touching the repository's certs/out.
    if !have("openssl", &["version"]) {
        eprintln!("skipped overlays/certs-script: needs openssl");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    copy_tree(&manifests, &temp.path().join("manifests"));
    let bundle = gen_certs(&temp.path().join("certs/out"), &[]);
    let docs = kustomize(&temp.path().join("manifests/overlays/certs-script"));
    check_rules(
        &docs,
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::Exactly(bundle),
        },
        "overlays/certs-script",
    );
    one(&docs, "Secret", TLS_SECRET);
    assert_policy_changes_nothing(&policy_text(&docs), "overlays/certs-script");
}
