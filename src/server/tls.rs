//! TLS for the webhook: PEM loading, a certificate resolver whose key pair is
//! swapped atomically on reload, optional client-certificate verification,
//! and the embedded self-signed default.
//!
//! The [`ServerConfig`] is built once around a [`CertStore`]; a reload only
//! replaces the [`CertifiedKey`] the resolver hands out, so handshakes in
//! flight keep the pair they started with and new ones get the new pair. A
//! new pair that does not load (unreadable, mismatched key, half-written
//! file) leaves the old one serving and is reported, and so does a pair
//! outside its validity window (expired, or not yet valid). The client CA
//! bundle (`--client-ca`) reloads the same way: the verifier handshakes use
//! is swapped whole. Both are [`Reloadable`] values.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::{Context as _, bail};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::server::reload::{Loader, Reload, Reloadable};

/// The serving key pair, reloadable from its files (or from a
/// [`SharedPair`]), and the client CA bundle once [`server_config`] has
/// loaded one.
pub struct CertStore {
    pair: Reloadable<PairSource>,
    client_ca: OnceLock<Arc<Reloadable<ClientCaFile>>>,
}

/// When the serving certificate is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Both, as text for messages.
    pub text: String,
}

impl Validity {
    fn of(leaf: &CertificateDer<'_>) -> anyhow::Result<Validity> {
        let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|error| anyhow::anyhow!("parsing the certificate: {error}"))?;
        let validity = certificate.validity();
        Ok(Validity {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            text: format!(
                "valid from {} until {}",
                validity.not_before, validity.not_after
            ),
        })
    }

    /// Whether `now` (Unix seconds) is inside the window.
    #[must_use]
    pub fn contains(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The clock, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.watched_files())
            .finish_non_exhaustive()
    }
}

/// The pair in force: what handshakes get, and when it is valid.
struct ServingPair {
    key: Arc<CertifiedKey>,
    validity: Arc<Validity>,
}

/// A serving pair handed over in memory by what manages it (the
/// self-managed certificates' Secret, [`crate::server::self_certs`]): a
/// [`CertStore`] over it reloads from it as from files.
#[derive(Debug)]
pub struct SharedPair {
    /// Where the pair comes from, for messages.
    origin: String,
    pem: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl SharedPair {
    /// A certificate chain and key (PEM) from `origin` (named in messages).
    #[must_use]
    pub fn new(origin: String, cert_pem: &[u8], key_pem: &[u8]) -> SharedPair {
        SharedPair {
            origin,
            pem: Mutex::new((cert_pem.to_vec(), key_pem.to_vec())),
        }
    }

    /// Hands over a new pair: the next [`CertStore::reload`] loads it.
    pub fn publish(&self, cert_pem: &[u8], key_pem: &[u8]) {
        *self.pem.lock().unwrap_or_else(PoisonError::into_inner) =
            (cert_pem.to_vec(), key_pem.to_vec());
    }

    fn read(&self) -> (Vec<u8>, Vec<u8>) {
        self.pem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Where the serving pair is read from.
enum PairOrigin {
    /// The certificate and key files (PEM).
    Files { cert: PathBuf, key: PathBuf },
    /// A pair handed over in memory.
    Shared(Arc<SharedPair>),
}

/// The serving pair's origin, and how it is loaded.
struct PairSource {
    origin: PairOrigin,
    provider: Arc<CryptoProvider>,
}

impl PairSource {
    fn describe(&self) -> String {
        match &self.origin {
            PairOrigin::Files { cert, key } => {
                format!("loading {} and {}", cert.display(), key.display())
            }
            PairOrigin::Shared(shared) => format!("loading the pair of {}", shared.origin),
        }
    }
}

impl Loader for PairSource {
    type Value = ServingPair;
    type Contents = (Vec<u8>, Vec<u8>);

    /// A pair refused as not yet valid loads once its `notBefore` passes,
    /// with no change to the files.
    const RETRIES_REJECTED: bool = true;

    fn files(&self) -> Vec<PathBuf> {
        match &self.origin {
            PairOrigin::Files { cert, key } => vec![cert.clone(), key.clone()],
            PairOrigin::Shared(_) => Vec::new(),
        }
    }

    fn read(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let (cert, key) = match &self.origin {
            PairOrigin::Files { cert, key } => (cert, key),
            PairOrigin::Shared(shared) => return Ok(shared.read()),
        };
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        Ok((cert_pem, key_pem))
    }

    /// The first pair is taken whatever its validity (`/readyz` reports
    /// it); a new one must be valid now. A rotation writes two files;
    /// between the writes the pair does not match. That is reported, and
    /// the next event or poll picks up the completed pair.
    fn load(
        &self,
        (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
        current: Option<&ServingPair>,
    ) -> anyhow::Result<ServingPair> {
        let pair = serving_pair(cert_pem, key_pem, &self.provider);
        if current.is_none() {
            return pair.with_context(|| self.describe());
        }
        let pair = pair?;
        if !pair.validity.contains(unix_now()) {
            bail!(
                "the new certificate is not valid now ({})",
                pair.validity.text
            );
        }
        Ok(pair)
    }
}

/// The client CA bundle (PEM), loaded into a verifier.
struct ClientCaFile {
    path: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl Loader for ClientCaFile {
    type Value = Arc<dyn ClientCertVerifier>;
    type Contents = Vec<u8>;

    /// As the serving pair's (unchanged from before the two shared code).
    const RETRIES_REJECTED: bool = true;

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn read(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))
    }

    fn load(
        &self,
        pem: &Vec<u8>,
        _current: Option<&Arc<dyn ClientCertVerifier>>,
    ) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
        client_verifier(pem, &self.provider)
            .with_context(|| format!("loading the client CA {}", self.path.display()))
    }
}

impl CertStore {
    /// Loads the pair from `cert` and `key` (PEM).
    ///
    /// # Errors
    /// Unreadable files, no certificate, no key, or a key that does not
    /// match the certificate.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<CertStore> {
        let files = PairSource {
            origin: PairOrigin::Files {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            provider,
        };
        Ok(CertStore {
            pair: Reloadable::from_files(files)?,
            client_ca: OnceLock::new(),
        })
    }

    /// Loads the pair `shared` holds now; [`CertStore::reload`] loads what
    /// it holds then.
    ///
    /// # Errors
    /// No certificate, no key, or a key that does not match the
    /// certificate.
    pub fn from_shared(
        shared: Arc<SharedPair>,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<CertStore> {
        let source = PairSource {
            origin: PairOrigin::Shared(shared),
            provider,
        };
        Ok(CertStore {
            pair: Reloadable::from_files(source)?,
            client_ca: OnceLock::new(),
        })
    }

    /// A fixed pair held in memory (the embedded self-signed default).
    ///
    /// # Errors
    /// The PEM does not load.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<CertStore> {
        Ok(CertStore {
            pair: Reloadable::fixed(serving_pair(cert_pem, key_pem, &provider)?),
            client_ca: OnceLock::new(),
        })
    }

    /// The files to watch: the pair's and the client CA's (none for an
    /// in-memory pair without a client CA).
    #[must_use]
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.pair.files();
        files.extend(self.client_ca.get().into_iter().flat_map(|ca| ca.files()));
        files
    }

    /// When the serving certificate is valid.
    #[must_use]
    pub fn validity(&self) -> Arc<Validity> {
        self.pair.current().validity.clone()
    }

    /// Whether the serving certificate has expired (or is not yet valid).
    #[must_use]
    pub fn is_outside_validity(&self) -> bool {
        !self.pair.current().validity.contains(unix_now())
    }

    /// Re-reads the client CA bundle, if there is one; swaps the verifier
    /// in if it changed and loads.
    pub fn reload_client_ca(&self) -> Reload {
        self.client_ca
            .get()
            .map_or(Reload::Unchanged, |ca| ca.reload())
    }

    /// Re-reads the files (or the shared pair); swaps the pair in if they
    /// changed and load.
    pub fn reload(&self) -> Reload {
        self.pair.reload()
    }

    /// The last failed reload, if the current files are unusable (the
    /// pair's, then the client CA's).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        let pair = self.pair.last_error();
        let ca = self.client_ca.get().and_then(|ca| ca.last_error());
        match (pair, ca) {
            (Some(pair), Some(ca)) => Some(format!("{pair}; {ca}")),
            (pair, ca) => pair.or(ca),
        }
    }
}

fn client_verifier(
    pem: &[u8],
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(certificate.context("parsing a CA certificate")?)
            .context("adding a CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no CA certificate found");
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("client certificate verifier")
}

/// Verifies client certificates with the CA bundle loaded now. It sends no
/// CA names in its certificate request (`root_hint_subjects` borrows from
/// the verifier, which a reload replaces): a client then offers its
/// certificate whoever signed it, and the verifier decides.
#[derive(Debug)]
struct ReloadingVerifier(Arc<Reloadable<ClientCaFile>>);

impl ClientCertVerifier for ReloadingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}

/// Hands the current pair to every handshake.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.pair.current().key.clone())
    }
}

/// Builds the server configuration: TLS 1.2 and 1.3 only, ALPN `h2` and
/// `http/1.1`, certificates from `store`, and client certificates required
/// and verified against `client_ca` when given (reloaded with the pair:
/// see [`CertStore::reload_client_ca`]).
///
/// # Errors
/// An unreadable or empty client CA bundle.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca = Arc::new(Reloadable::from_files(ClientCaFile {
                path: path.to_owned(),
                provider,
            })?);
            // One client CA per store: a second config shares the first.
            let ca = store.client_ca.get_or_init(|| ca).clone();
            builder.with_client_cert_verifier(Arc::new(ReloadingVerifier(ca)))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn serving_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> anyhow::Result<ServingPair> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate PEM")?;
    if chain.is_empty() {
        bail!("no certificate in the certificate file");
    }
    let validity = Validity::of(&chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("parsing the private key PEM")?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .context("the key does not match the certificate")?;
    Ok(ServingPair {
        key: Arc::new(certified),
        validity: Arc::new(validity),
    })
}

/// A CA and a serving certificate made at start for local use.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate, for `curl --cacert`.
    pub ca_pem: String,
    /// The serving certificate (localhost, 127.0.0.1, ::1), signed by the CA.
    pub cert_pem: String,
    /// The serving key.
    pub key_pem: String,
}

/// Generates a throw-away CA and a serving certificate for `names` (DNS
/// names or IP addresses).
///
/// # Errors
/// Key generation or signing failed.
pub fn generate_self_signed(names: &[&str]) -> anyhow::Result<SelfSigned> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "virt-sizer local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "virt-sizer");
    let leaf_key = KeyPair::generate()?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;
    Ok(SelfSigned {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_certificate(store: &CertStore) -> Vec<u8> {
        store.pair.current().key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_shared_pair_is_reloaded_like_files_and_a_broken_one_is_refused() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = generate_self_signed(&["localhost"]).expect("pair");
        let second = generate_self_signed(&["localhost"]).expect("pair");
        let shared = Arc::new(SharedPair::new(
            "Secret ns/name".to_owned(),
            first.cert_pem.as_bytes(),
            first.key_pem.as_bytes(),
        ));
        let store = CertStore::from_shared(shared.clone(), provider).expect("loads");
        let first_der = served_certificate(&store);
        assert!(store.watched_files().is_empty(), "no file to watch");
        assert_eq!(store.reload(), Reload::Unchanged);

        shared.publish(second.cert_pem.as_bytes(), second.key_pem.as_bytes());
        assert_eq!(store.reload(), Reload::Reloaded);
        let second_der = served_certificate(&store);
        assert_ne!(second_der, first_der);

        // A key that is not the certificate's: refused, named, the pair in
        // force stays.
        shared.publish(first.cert_pem.as_bytes(), second.key_pem.as_bytes());
        let Reload::Failed(error) = store.reload() else {
            panic!("a mismatched pair must be refused");
        };
        assert!(error.contains("does not match"), "{error}");
        assert_eq!(served_certificate(&store), second_der);
        assert!(store.last_error().is_some());
    }
}
