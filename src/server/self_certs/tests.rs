//! The renewal rules, over [`renew`] with an injected clock, and the flags'
//! parsers.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

/// An arbitrary start, Unix seconds.
const T0: i64 = 1_800_000_000;
const SERVICE_DNS: &str = "virt-sizer.virt-sizer.svc";

/// CA 3000 s (renewed at 2000 s, ready 100 s after it is published: a
/// thirtieth), serving 900 s (backdated 90 s, a tenth: window 990 s,
/// renewed 330 s before its end, urgent 99 s before it).
fn wanted(ca_seconds: u64, serving_seconds: u64) -> Wanted {
    Wanted {
        names: vec![
            SERVICE_DNS.to_owned(),
            format!("{SERVICE_DNS}.cluster.local"),
            "127.0.0.1".to_owned(),
        ],
        lifetimes: Lifetimes {
            ca: Duration::from_secs(ca_seconds),
            serving: Duration::from_secs(serving_seconds),
        },
    }
}

fn standard() -> Wanted {
    wanted(3000, 900)
}

fn published(_: &str) -> bool {
    true
}

fn unpublished(_: &str) -> bool {
    false
}

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn window(der: &CertificateDer<'_>) -> (i64, i64) {
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    (
        certificate.validity().not_before.timestamp(),
        certificate.validity().not_after.timestamp(),
    )
}

/// The serving certificate's window.
fn serving_window(contents: &Contents) -> (i64, i64) {
    window(&certificates(&contents.cert)[0])
}

/// Whether the serving certificate verifies for `name` at `now` against
/// the CA certificate `ca`, as a TLS client checks it.
fn verifies(contents: &Contents, ca: &CertificateDer<'static>, name: &str, now: i64) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("a CA");
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_server_cert(
            &certificates(&contents.cert)[0],
            &[],
            &ServerName::try_from(name.to_owned()).expect("a name"),
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(
                u64::try_from(now).expect("after 1970"),
            )),
        )
        .is_ok()
}

fn step(now: i64, contents: &Contents, wanted: &Wanted, published: fn(&str) -> bool) -> Renewal {
    renew(now, Some(contents), wanted, &published).expect("renews")
}

fn created() -> Contents {
    renew(T0, None, &standard(), &published)
        .expect("creates")
        .contents
}

/// Created at T0, then renewed when due at T0 + 600, 1200 and 1800: the
/// serving window is then [T0 + 1710, T0 + 2700], due at T0 + 2370,
/// urgent at T0 + 2601, signed by the first CA.
fn renewed_to_1800() -> Contents {
    let mut contents = created();
    for at in [600, 1200, 1800] {
        let renewal = step(T0 + at, &contents, &standard(), published);
        assert_eq!(
            renewal.changes,
            [Change::ServingIssued(Reissue::Due)],
            "at {at}"
        );
        contents = renewal.contents;
    }
    assert_eq!(serving_window(&contents), (T0 + 1710, T0 + 2700));
    contents
}

#[test]
fn no_secret_makes_a_ca_and_a_serving_certificate_it_signs_for_every_name() {
    let renewal = renew(T0, None, &standard(), &published).expect("creates");
    assert_eq!(
        renewal.changes,
        [Change::Created("no Secret yet".to_owned())]
    );
    let contents = &renewal.contents;
    let cas = certificates(&contents.ca_bundle);
    assert_eq!(cas.len(), 1);
    assert_eq!(window(&cas[0]), (T0, T0 + 3000));
    // Backdated a tenth of 900 s.
    assert_eq!(serving_window(contents), (T0 - 90, T0 + 900));
    for name in [
        SERVICE_DNS,
        "virt-sizer.virt-sizer.svc.cluster.local",
        "127.0.0.1",
    ] {
        assert!(verifies(contents, &cas[0], name, T0), "{name}");
    }
    assert!(!verifies(contents, &cas[0], "virt-sizer.other.svc", T0));
    // The pair and the CA key load.
    crate::server::tls::CertStore::from_pem(
        contents.cert.as_bytes(),
        contents.key.as_bytes(),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .expect("the serving pair loads");
    // Next due: the serving certificate, once a third of its 990 s remain.
    assert_eq!(renewal.next_due, T0 + 900 - 330);
}

#[test]
fn the_serving_certificate_is_renewed_once_a_third_of_its_window_remains_by_the_same_ca() {
    let contents = created();
    let before = step(T0 + 569, &contents, &standard(), published);
    assert_eq!(before.changes, []);
    assert_eq!(before.contents.cert, contents.cert);
    assert_eq!(before.contents.ca_bundle, contents.ca_bundle);

    let due = step(T0 + 570, &contents, &standard(), published);
    assert_eq!(due.changes, [Change::ServingIssued(Reissue::Due)]);
    assert_eq!(
        due.contents.ca_bundle, contents.ca_bundle,
        "the caBundle stays"
    );
    assert_eq!(due.contents.ca_key, contents.ca_key);
    assert_ne!(due.contents.key, contents.key, "a new key");
    assert_eq!(
        serving_window(&due.contents),
        (T0 + 570 - 90, T0 + 570 + 900)
    );
    let ca = &certificates(&contents.ca_bundle)[0];
    assert!(verifies(&due.contents, ca, SERVICE_DNS, T0 + 570));
}

#[test]
fn a_serving_certificate_never_outlives_its_ca() {
    // Serving 2400 s: backdated 240 s, window 2640 s, due 880 s before its end.
    let wanted = wanted(3000, 2400);
    let contents = renew(T0, None, &wanted, &published)
        .expect("creates")
        .contents;
    assert_eq!(serving_window(&contents), (T0 - 240, T0 + 2400));
    let renewed = step(T0 + 1520, &contents, &wanted, published);
    assert_eq!(renewed.changes, [Change::ServingIssued(Reissue::Due)]);
    // T0 + 1520 + 2400 is past the CA's end, T0 + 3000.
    assert_eq!(serving_window(&renewed.contents), (T0 + 1280, T0 + 3000));
}

/// The whole life of a CA: due at 2000 s, joined by a new one; the new one
/// signs once published for 100 s; the old one leaves when it expires.
#[test]
fn a_ca_due_is_joined_by_a_new_one_that_signs_once_published_for_its_lead() {
    let wanted = standard();
    let first = renewed_to_1800();
    let old_ca = certificates(&first.ca_bundle)[0].clone();

    let joined = step(T0 + 2000, &first, &wanted, published);
    assert_eq!(joined.changes, [Change::CaAdded]);
    let cas = certificates(&joined.contents.ca_bundle);
    assert_eq!(cas.len(), 2, "the new CA and the old one");
    assert_eq!(cas[1], old_ca, "the old CA stays trusted");
    assert_eq!(window(&cas[0]), (T0 + 2000, T0 + 5000));
    assert_eq!(
        joined.contents.cert, first.cert,
        "the old CA's certificate serves on"
    );
    assert_ne!(joined.contents.ca_key, first.ca_key, "the new CA's key");
    // Next: the new CA ready, 100 s after it was made.
    assert_eq!(joined.next_due, T0 + 2100);
    let joined = joined.contents;

    // Not yet: published, but not for 100 s; or 100 s old, but not
    // published (then nothing is known to come before the urgency).
    assert_eq!(step(T0 + 2099, &joined, &wanted, published).changes, []);
    let unpublished_step = step(T0 + 2100, &joined, &wanted, unpublished);
    assert_eq!(unpublished_step.changes, []);
    assert_eq!(unpublished_step.next_due, T0 + 2601);

    let switched = step(T0 + 2100, &joined, &wanted, published);
    assert_eq!(switched.changes, [Change::ServingIssued(Reissue::NewCa)]);
    assert_eq!(switched.contents.ca_bundle, joined.ca_bundle);
    assert!(verifies(
        &switched.contents,
        &cas[0],
        SERVICE_DNS,
        T0 + 2100
    ));
    assert!(!verifies(
        &switched.contents,
        &old_ca,
        SERVICE_DNS,
        T0 + 2100
    ));
    // [T0 + 2010, T0 + 3000]: due 330 s before its end, before the old CA
    // expires at T0 + 3000.
    assert_eq!(serving_window(&switched.contents), (T0 + 2010, T0 + 3000));
    assert_eq!(switched.next_due, T0 + 2670);

    let renewed = step(T0 + 2700, &switched.contents, &wanted, published);
    assert_eq!(renewed.changes, [Change::ServingIssued(Reissue::Due)]);
    assert_eq!(renewed.next_due, T0 + 3000, "the old CA expiring");
    let dropped = step(T0 + 3000, &renewed.contents, &wanted, published);
    assert_eq!(dropped.changes, [Change::CaDropped(1)]);
    assert_eq!(certificates(&dropped.contents.ca_bundle), [cas[0].clone()]);
}

#[test]
fn a_new_ca_never_published_signs_once_the_serving_certificate_is_urgent() {
    let wanted = standard();
    let joined = step(T0 + 2000, &renewed_to_1800(), &wanted, published).contents;
    // Due since T0 + 2370, but the new CA is not in the webhooks.
    assert_eq!(step(T0 + 2600, &joined, &wanted, unpublished).changes, []);
    let urgent = step(T0 + 2601, &joined, &wanted, unpublished);
    assert_eq!(urgent.changes, [Change::ServingIssued(Reissue::Due)]);
    let new_ca = &certificates(&joined.ca_bundle)[0];
    assert!(verifies(&urgent.contents, new_ca, SERVICE_DNS, T0 + 2601));
}

#[test]
fn new_names_reissue_the_serving_certificate_with_them() {
    let contents = created();
    let mut renamed = standard();
    renamed.names.push("localhost".to_owned());
    let renewal = step(T0 + 10, &contents, &renamed, published);
    assert_eq!(renewal.changes, [Change::ServingIssued(Reissue::Names)]);
    let ca = &certificates(&contents.ca_bundle)[0];
    assert!(verifies(&renewal.contents, ca, "localhost", T0 + 10));
    assert_eq!(
        step(T0 + 11, &renewal.contents, &renamed, published).changes,
        []
    );
}

/// A broken CA is replaced with everything; a broken serving pair alone.
#[rstest::rstest]
#[case::ca_key_of_another_ca(
    |contents: &mut Contents, other: &Contents| contents.ca_key.clone_from(&other.ca_key),
    "ca.key is not the key of the first certificate of ca.crt"
)]
#[case::ca_bundle_not_pem(
    |contents: &mut Contents, _: &Contents| contents.ca_bundle = "not a certificate".to_owned(),
    "ca.crt holds no certificate"
)]
#[case::ca_key_missing(
    |contents: &mut Contents, _: &Contents| contents.ca_key.clear(),
    "ca.key does not parse"
)]
fn an_unusable_ca_is_replaced_with_a_new_ca_and_serving_pair(
    #[case] break_it: fn(&mut Contents, &Contents),
    #[case] reason: &str,
) {
    let mut contents = created();
    let other = created();
    break_it(&mut contents, &other);
    let renewal = step(T0 + 10, &contents, &standard(), published);
    let [Change::Created(why)] = renewal.changes.as_slice() else {
        panic!("{:?}", renewal.changes);
    };
    assert!(why.starts_with(reason), "{why}");
    let ca = &certificates(&renewal.contents.ca_bundle)[0];
    assert_eq!(window(ca), (T0 + 10, T0 + 3010));
    assert!(verifies(&renewal.contents, ca, SERVICE_DNS, T0 + 10));
}

#[rstest::rstest]
#[case::key_of_another_certificate(
    |contents: &mut Contents, other: &Contents| contents.key.clone_from(&other.key),
    "tls.key is not the key of tls.crt"
)]
#[case::certificate_missing(
    |contents: &mut Contents, _: &Contents| contents.cert.clear(),
    "tls.crt does not parse"
)]
#[case::signed_by_another_ca(
    |contents: &mut Contents, other: &Contents| {
        contents.cert.clone_from(&other.cert);
        contents.key.clone_from(&other.key);
    },
    "tls.crt is not valid now, or not signed by a CA of ca.crt"
)]
fn an_unusable_serving_pair_is_reissued_by_the_same_ca(
    #[case] break_it: fn(&mut Contents, &Contents),
    #[case] reason: &str,
) {
    let mut contents = created();
    let other = created();
    break_it(&mut contents, &other);
    let renewal = step(T0 + 10, &contents, &standard(), published);
    let [Change::ServingIssued(Reissue::Unusable(why))] = renewal.changes.as_slice() else {
        panic!("{:?}", renewal.changes);
    };
    assert!(why.starts_with(reason), "{why}");
    assert_eq!(renewal.contents.ca_bundle, contents.ca_bundle);
    let ca = &certificates(&contents.ca_bundle)[0];
    assert!(verifies(&renewal.contents, ca, SERVICE_DNS, T0 + 10));
}

#[test]
fn an_expired_serving_certificate_is_reissued_and_an_expired_ca_replaced() {
    let contents = created();
    let expired = step(T0 + 901, &contents, &standard(), published);
    assert!(
        matches!(
            expired.changes.as_slice(),
            [Change::ServingIssued(Reissue::Unusable(_))]
        ),
        "{:?}",
        expired.changes
    );
    let gone = step(T0 + 3000, &contents, &standard(), published);
    assert_eq!(
        gone.changes,
        [Change::Created("the signing CA has expired".to_owned())]
    );
}

#[test]
fn contents_round_trip_through_secret_data() {
    let contents = created();
    assert_eq!(Contents::from_data(&contents.to_data()), contents);
    let keys: Vec<String> = contents.to_data().into_keys().collect();
    assert_eq!(keys, [CA_BUNDLE_KEY, CA_KEY_KEY, CERT_KEY, KEY_KEY]);
}

#[rstest::rstest]
#[case::seconds("30s", Some(30))]
#[case::minutes("5m", Some(300))]
#[case::hours("36h", Some(36 * 3600))]
#[case::days("90d", Some(90 * 86_400))]
#[case::too_short("9s", None)]
#[case::no_unit("90", None)]
#[case::unknown_unit("3w", None)]
#[case::empty("", None)]
#[case::negative("-1d", None)]
fn lifetimes_parse_as_a_number_and_a_unit(#[case] text: &str, #[case] seconds: Option<u64>) {
    assert_eq!(
        parse_lifetime(text).ok().map(|d| d.as_secs()),
        seconds,
        "{text}"
    );
}

#[rstest::rstest]
#[case::namespaced("virt-sizer/virt-sizer-certificates", true)]
#[case::dotted_name("ns/a.b-c", true)]
#[case::no_namespace("virt-sizer-certificates", false)]
#[case::unexpanded_variable("$(POD_NAMESPACE)/certs", false)]
#[case::upper_case("Virt-Sizer/certs", false)]
#[case::empty_name("virt-sizer/", false)]
#[case::two_slashes("a/b/c", false)]
fn secret_references_are_namespace_slash_name(#[case] text: &str, #[case] ok: bool) {
    let parsed = text.parse::<SecretRef>();
    assert_eq!(parsed.is_ok(), ok, "{text}: {parsed:?}");
    if let Ok(reference) = parsed {
        assert_eq!(reference.to_string(), text);
    }
}

#[test]
fn the_service_is_named_as_the_apiserver_calls_it() {
    assert_eq!(
        service_names("virt-sizer", "tenant-x"),
        [
            "virt-sizer.tenant-x.svc",
            "virt-sizer.tenant-x.svc.cluster.local"
        ]
    );
}
