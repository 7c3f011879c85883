//! What the certificate Secret should hold at a given moment. Pure: PEM
//! text and Unix seconds in, PEM text out; the clock, the apiserver and the
//! logs are the caller's ([`super`]).
//!
//! The Secret holds a CA bundle ([`CA_BUNDLE_KEY`]: the CA that signs first,
//! then any older CA still trusted), the signing CA's key ([`CA_KEY_KEY`])
//! and the serving pair ([`CERT_KEY`], [`KEY_KEY`]). A certificate is
//! renewed once less than a third of its validity window remains
//! ([`Window::renew_at`]):
//!
//! - the serving certificate is reissued by the signing CA: the bundle does
//!   not change, so nothing else has to;
//! - a CA due for renewal is joined, not replaced: a new CA goes in front of
//!   the bundle and the old one stays until it expires. The new CA signs
//!   once it is *ready*: it has been in every webhook configuration's
//!   caBundle (as the caller last saw them) for a thirtieth of its lifetime
//!   (between 2 s and 10 minutes), so the apiserver trusts a serving
//!   certificate before any replica serves it. Until then the serving
//!   certificate the old CA signed stays in force, unless it is about to
//!   expire (less than a tenth of its window left).
//!
//! Everything is read back from the Secret, so nothing is lost on a
//! restart. What does not parse is replaced: a serving pair by a new one
//! from the same CA, a bundle or a CA key by a new CA.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The Secret key of the CA bundle (PEM): what every webhook's caBundle
/// gets.
pub const CA_BUNDLE_KEY: &str = "ca.crt";
/// The Secret key of the signing CA's private key (PEM, PKCS#8).
pub const CA_KEY_KEY: &str = "ca.key";
/// The Secret key of the serving certificate (PEM).
pub const CERT_KEY: &str = "tls.crt";
/// The Secret key of the serving private key (PEM, PKCS#8).
pub const KEY_KEY: &str = "tls.key";

/// How long what is issued is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// A CA.
    pub ca: Duration,
    /// A serving certificate (never past its CA's `notAfter`).
    pub serving: Duration,
}

/// What the serving certificate must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Its subject alternative names: DNS names and IP addresses.
    pub names: Vec<String>,
    /// The lifetimes of what is issued.
    pub lifetimes: Lifetimes,
}

/// When a certificate is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Window {
    /// When it is due for renewal: once less than a third of it remains.
    #[must_use]
    pub fn renew_at(&self) -> i64 {
        self.not_after - self.span() / 3
    }

    fn span(&self) -> i64 {
        self.not_after - self.not_before
    }

    /// When it must be replaced even while a new CA is not ready: once
    /// less than a tenth of it remains.
    fn urgent_at(&self) -> i64 {
        self.not_after - self.span() / 10
    }
}

/// The Secret's contents, as PEM text per key (empty when missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// [`CA_BUNDLE_KEY`].
    pub ca_bundle: String,
    /// [`CA_KEY_KEY`].
    pub ca_key: String,
    /// [`CERT_KEY`].
    pub cert: String,
    /// [`KEY_KEY`].
    pub key: String,
}

impl Contents {
    /// The contents of a Secret's `data` (keys not UTF-8 read as empty).
    #[must_use]
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Contents {
        let text = |key: &str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.clone()).ok())
                .unwrap_or_default()
        };
        Contents {
            ca_bundle: text(CA_BUNDLE_KEY),
            ca_key: text(CA_KEY_KEY),
            cert: text(CERT_KEY),
            key: text(KEY_KEY),
        }
    }

    /// The Secret `data` for these contents.
    #[must_use]
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        [
            (CA_BUNDLE_KEY, &self.ca_bundle),
            (CA_KEY_KEY, &self.ca_key),
            (CERT_KEY, &self.cert),
            (KEY_KEY, &self.key),
        ]
        .into_iter()
        .map(|(key, text)| (key.to_owned(), text.clone().into_bytes()))
        .collect()
    }
}

/// What changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// No usable CA: a new CA and serving pair (why).
    Created(String),
    /// The signing CA is due: a new CA joins the bundle (it signs once ready).
    CaAdded,
    /// CAs past their `notAfter` left the bundle (how many).
    CaDropped(usize),
    /// A new serving pair (why).
    ServingIssued(Reissue),
}

/// Why the serving certificate was reissued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reissue {
    /// Missing, unparseable, expired or not signed by a CA of the bundle.
    Unusable(String),
    /// Less than a third of its window remained.
    Due,
    /// Its names are not the names wanted.
    Names,
    /// A newer CA is ready.
    NewCa,
}

/// What [`renew`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The contents the Secret should hold.
    pub contents: Contents,
    /// What changed (empty: nothing; the Secret stays as it is).
    pub changes: Vec<Change>,
    /// When something is next due (Unix seconds).
    pub next_due: i64,
}

/// The contents the Secret should hold at `now` (Unix seconds), from what
/// it holds (`None`: no Secret). `published` says whether a CA (its PEM)
/// is in the caBundle of every webhook configuration.
///
/// # Errors
/// Key generation or signing failed.
pub fn renew(
    now: i64,
    current: Option<&Contents>,
    wanted: &Wanted,
    published: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Renewal> {
    let parsed = match current {
        None => Err("no Secret yet".to_owned()),
        Some(contents) => Authority::parse(contents, now),
    };
    let authority = match parsed {
        Ok(authority) => authority,
        Err(why) => return create(now, wanted, why),
    };
    let mut changes = Vec::new();
    let mut authority = authority;
    let dropped = authority.drop_expired(now);
    if dropped > 0 {
        changes.push(Change::CaDropped(dropped));
    }
    if now >= authority.cas[0].window.renew_at() {
        authority.add_ca(now, wanted.lifetimes.ca)?;
        changes.push(Change::CaAdded);
    }
    let contents = current.cloned().unwrap_or_default();
    let serving = Serving::parse(&contents, &authority, wanted, now);
    let ready = authority.is_ready(now, published);
    let mut renewal = Renewal {
        contents: Contents {
            ca_bundle: authority.bundle_pem(),
            ca_key: authority.key.serialize_pem(),
            ..contents
        },
        changes,
        next_due: authority.next_due(),
    };
    match serving.reissue(ready, now) {
        Some(why) => {
            let (cert, key) = authority.issue(now, wanted)?;
            renewal.contents.cert = cert;
            renewal.contents.key = key;
            renewal.changes.push(Change::ServingIssued(why));
            let issued = Serving::parse(&renewal.contents, &authority, wanted, now);
            renewal.next_due = renewal.next_due.min(issued.next_due(&authority, now));
        }
        None => renewal.next_due = renewal.next_due.min(serving.next_due(&authority, now)),
    }
    Ok(renewal)
}

/// A new CA and a serving pair from it.
fn create(now: i64, wanted: &Wanted, why: String) -> anyhow::Result<Renewal> {
    let authority = Authority::generate(now, wanted.lifetimes.ca)?;
    let (cert, key) = authority.issue(now, wanted)?;
    let contents = Contents {
        ca_bundle: authority.bundle_pem(),
        ca_key: authority.key.serialize_pem(),
        cert,
        key,
    };
    let serving = Serving::parse(&contents, &authority, wanted, now);
    Ok(Renewal {
        next_due: authority.next_due().min(serving.next_due(&authority, now)),
        contents,
        changes: vec![Change::Created(why)],
    })
}

/// One CA of the bundle.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    common_name: String,
    window: Window,
}

/// The CAs (the signing one first) and the signing key.
struct Authority {
    cas: Vec<Ca>,
    key: KeyPair,
}

/// How long a new CA is in the webhooks' caBundle before it signs:
/// a thirtieth of its lifetime, between these bounds (seconds).
const READY_LEAD_SECONDS: (i64, i64) = (2, 600);

/// How far back a serving certificate's `notBefore` is set, so that an
/// apiserver whose clock is behind accepts it at once: a tenth of its
/// lifetime, at most this (seconds).
const BACKDATE_MAX_SECONDS: i64 = 300;

impl Authority {
    fn parse(contents: &Contents, now: i64) -> Result<Authority, String> {
        let mut cas = Vec::new();
        for der in CertificateDer::pem_slice_iter(contents.ca_bundle.as_bytes()) {
            let der = der.map_err(|error| format!("{CA_BUNDLE_KEY} does not parse: {error}"))?;
            cas.push(Ca::from_der(der)?);
        }
        let Some(signing) = cas.first() else {
            return Err(format!("{CA_BUNDLE_KEY} holds no certificate"));
        };
        let key = KeyPair::from_pem(&contents.ca_key)
            .map_err(|error| format!("{CA_KEY_KEY} does not parse: {error}"))?;
        if key.subject_public_key_info() != spki(&signing.der)? {
            return Err(format!(
                "{CA_KEY_KEY} is not the key of the first certificate of {CA_BUNDLE_KEY}"
            ));
        }
        if now >= signing.window.not_after {
            return Err("the signing CA has expired".to_owned());
        }
        Ok(Authority { cas, key })
    }

    fn generate(now: i64, lifetime: Duration) -> anyhow::Result<Authority> {
        let key = KeyPair::generate().context("generating a CA key")?;
        let window = Window {
            not_before: now,
            not_after: now.saturating_add(seconds(lifetime)),
        };
        let common_name = format!("virt-sizer CA {now}");
        let params = ca_params(&common_name, window);
        let der = params
            .self_signed(&key)
            .context("signing a CA")?
            .der()
            .clone();
        let pem = pem_of(&der);
        Ok(Authority {
            cas: vec![Ca {
                pem,
                der,
                common_name,
                window,
            }],
            key,
        })
    }

    /// A new CA in front; the current ones stay trusted.
    fn add_ca(&mut self, now: i64, lifetime: Duration) -> anyhow::Result<()> {
        let new = Authority::generate(now, lifetime)?;
        self.key = new.key;
        let older = std::mem::replace(&mut self.cas, new.cas);
        self.cas.extend(older);
        Ok(())
    }

    /// Drops the CAs past their `notAfter` (never the signing one).
    fn drop_expired(&mut self, now: i64) -> usize {
        let before = self.cas.len();
        let mut index = 0;
        self.cas.retain(|ca| {
            index += 1;
            index == 1 || now < ca.window.not_after
        });
        before - self.cas.len()
    }

    /// Whether the signing CA may sign: it is the only one, or it has been
    /// published for its lead.
    fn is_ready(&self, now: i64, published: &dyn Fn(&str) -> bool) -> bool {
        self.cas.len() == 1 || (now >= self.ready_at() && published(&self.cas[0].pem))
    }

    fn ready_at(&self) -> i64 {
        let window = self.cas[0].window;
        let (min, max) = READY_LEAD_SECONDS;
        window.not_before + (window.span() / 30).clamp(min, max)
    }

    /// When the bundle next changes: the signing CA due, or an older one
    /// expiring.
    fn next_due(&self) -> i64 {
        self.cas[1..]
            .iter()
            .map(|ca| ca.window.not_after)
            .fold(self.cas[0].window.renew_at(), i64::min)
    }

    fn bundle_pem(&self) -> String {
        self.cas.iter().map(|ca| ca.pem.as_str()).collect()
    }

    /// A serving pair signed by the signing CA: valid from a little before
    /// `now` for the serving lifetime, never past the CA's `notAfter`.
    fn issue(&self, now: i64, wanted: &Wanted) -> anyhow::Result<(String, String)> {
        let signing = &self.cas[0];
        let lifetime = seconds(wanted.lifetimes.serving);
        let window = Window {
            not_before: now - (lifetime / 10).min(BACKDATE_MAX_SECONDS),
            not_after: now.saturating_add(lifetime).min(signing.window.not_after),
        };
        let mut params = CertificateParams::new(wanted.names.clone())
            .context("the serving certificate's names")?;
        params.distinguished_name.push(
            DnType::CommonName,
            wanted.names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_window(&mut params, window);
        let issuer_params = ca_params(&signing.common_name, signing.window);
        let issuer = Issuer::from_params(&issuer_params, &self.key);
        let key = KeyPair::generate().context("generating a serving key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the serving certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl Ca {
    fn from_der(der: CertificateDer<'static>) -> Result<Ca, String> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|error| format!("{CA_BUNDLE_KEY} does not parse: {error}"))?;
        let common_name = certificate
            .subject()
            .iter_common_name()
            .next()
            .and_then(|name| name.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let window = window_of(&certificate);
        let pem = pem_of(&der);
        Ok(Ca {
            pem,
            der,
            common_name,
            window,
        })
    }
}

/// The serving certificate as found, checked against the bundle.
enum Serving {
    Unusable(String),
    Usable {
        window: Window,
        names: BTreeSet<String>,
        wanted: BTreeSet<String>,
        /// The index in the bundle of the CA that signed it.
        issuer: usize,
    },
}

impl Serving {
    fn parse(contents: &Contents, authority: &Authority, wanted: &Wanted, now: i64) -> Serving {
        match Serving::try_parse(contents, authority, now) {
            Ok((window, names, issuer)) => Serving::Usable {
                window,
                names,
                wanted: wanted.names.iter().map(|name| normalise(name)).collect(),
                issuer,
            },
            Err(why) => Serving::Unusable(why),
        }
    }

    fn try_parse(
        contents: &Contents,
        authority: &Authority,
        now: i64,
    ) -> Result<(Window, BTreeSet<String>, usize), String> {
        let der = CertificateDer::from_pem_slice(contents.cert.as_bytes())
            .map_err(|error| format!("{CERT_KEY} does not parse: {error}"))?;
        let key = KeyPair::from_pem(&contents.key)
            .map_err(|error| format!("{KEY_KEY} does not parse: {error}"))?;
        if key.subject_public_key_info() != spki(&der)? {
            return Err(format!("{KEY_KEY} is not the key of {CERT_KEY}"));
        }
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|error| format!("{CERT_KEY} does not parse: {error}"))?;
        let names = names_of(&certificate);
        let dns_name = names
            .iter()
            .find(|name| name.parse::<IpAddr>().is_err())
            .ok_or_else(|| format!("{CERT_KEY} names no DNS name"))?;
        let issuer = authority
            .cas
            .iter()
            .position(|ca| verifies(&der, &ca.der, dns_name, now))
            .ok_or_else(|| {
                format!("{CERT_KEY} is not valid now, or not signed by a CA of {CA_BUNDLE_KEY}")
            })?;
        Ok((window_of(&certificate), names, issuer))
    }

    /// Why it must be reissued, whether or not the signing CA may sign.
    fn pending(&self, now: i64) -> Option<Reissue> {
        match self {
            Serving::Unusable(why) => Some(Reissue::Unusable(why.clone())),
            Serving::Usable {
                window,
                names,
                wanted,
                issuer,
            } => {
                if names != wanted {
                    Some(Reissue::Names)
                } else if now >= window.renew_at() {
                    Some(Reissue::Due)
                } else if *issuer != 0 {
                    Some(Reissue::NewCa)
                } else {
                    None
                }
            }
        }
    }

    /// Why it must be reissued now, if it must: a reason, and the signing
    /// CA ready (`ready`), or the certificate unusable or urgent.
    fn reissue(&self, ready: bool, now: i64) -> Option<Reissue> {
        let why = self.pending(now)?;
        let now_or_never = match self {
            Serving::Unusable(_) => true,
            Serving::Usable { window, .. } => ready || now >= window.urgent_at(),
        };
        now_or_never.then_some(why)
    }

    /// When it is next due: its renewal; or, with a reason pending while
    /// the signing CA is not ready, the CA's readiness or its own urgency,
    /// whichever is first (`now` when nothing is known to come).
    fn next_due(&self, authority: &Authority, now: i64) -> i64 {
        let Serving::Usable { window, .. } = self else {
            return now;
        };
        if self.pending(now).is_none() {
            return window.renew_at();
        }
        let ready_at = authority.ready_at();
        if ready_at > now {
            ready_at.min(window.urgent_at())
        } else {
            window.urgent_at()
        }
    }
}

/// rcgen parameters of a CA named `common_name`, valid in `window`.
fn ca_params(common_name: &str, window: Window) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_window(&mut params, window);
    params
}

fn set_window(params: &mut CertificateParams, window: Window) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let at = |unix: i64| epoch + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    params.not_before = at(window.not_before);
    params.not_after = at(window.not_after);
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn window_of(certificate: &x509_parser::certificate::X509Certificate<'_>) -> Window {
    Window {
        not_before: certificate.validity().not_before.timestamp(),
        not_after: certificate.validity().not_after.timestamp(),
    }
}

fn spki(der: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, certificate)| certificate.public_key().raw.to_vec())
        .map_err(|error| format!("a certificate does not parse: {error}"))
}

/// The subject alternative names, IP addresses in their canonical form.
fn names_of(certificate: &x509_parser::certificate::X509Certificate<'_>) -> BTreeSet<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(extension)) = certificate.subject_alternative_name() else {
        return BTreeSet::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|octets| IpAddr::from(octets).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|octets| IpAddr::from(octets).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A name as [`names_of`] reads it back.
fn normalise(name: &str) -> String {
    name.parse::<IpAddr>()
        .map_or_else(|_| name.to_owned(), |address| address.to_string())
}

/// Whether `leaf` is valid at `now` for `dns_name` and signed by `ca`, as
/// a TLS client checks it.
fn verifies(
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'static>,
    dns_name: &str,
    now: i64,
) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca.clone()).is_err() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    let Ok(name) = ServerName::try_from(dns_name.to_owned()) else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    verifier
        .verify_server_cert(leaf, &[], &name, &[], at)
        .is_ok()
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
