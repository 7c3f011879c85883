//! TLS for the webhook: PEM loading, a certificate resolver whose key pair is
//! swapped atomically on reload, optional client-certificate verification,
//! and the embedded self-signed default.
//!
//! The [`ServerConfig`] is built once around a [`CertStore`]; a reload only
//! replaces the [`CertifiedKey`] the resolver hands out, so handshakes in
//! flight keep the pair they started with and new ones get the new pair. A
//! new pair that does not load (unreadable, mismatched key, half-written
//! file) leaves the old one serving and is reported.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The serving key pair, reloadable from its files.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
    loaded_pem: Mutex<(Vec<u8>, Vec<u8>)>,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change.
    Unchanged,
    /// A new pair is serving.
    Reloaded,
    /// The new files are unusable; the previous pair keeps serving.
    Failed(String),
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
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let certified = certified_key(&cert_pem, &key_pem, &provider)
            .with_context(|| format!("loading {} and {}", cert.display(), key.display()))?;
        Ok(CertStore {
            current: ArcSwap::from_pointee(certified),
            files: Some((cert.to_owned(), key.to_owned())),
            provider,
            loaded_pem: Mutex::new((cert_pem, key_pem)),
            last_error: Mutex::new(None),
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
        let certified = certified_key(cert_pem, key_pem, &provider)?;
        Ok(CertStore {
            current: ArcSwap::from_pointee(certified),
            files: None,
            provider,
            loaded_pem: Mutex::new((cert_pem.to_vec(), key_pem.to_vec())),
            last_error: Mutex::new(None),
        })
    }

    /// The files to watch (none for an in-memory pair).
    #[must_use]
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .flat_map(|(cert, key)| [cert.clone(), key.clone()])
            .collect()
    }

    /// Re-reads the files; swaps the pair in if they changed and load.
    pub fn reload(&self) -> Reload {
        let Some((cert, key)) = &self.files else {
            return Reload::Unchanged;
        };
        let read = std::fs::read(cert)
            .with_context(|| format!("reading {}", cert.display()))
            .and_then(|cert_pem| {
                std::fs::read(key)
                    .with_context(|| format!("reading {}", key.display()))
                    .map(|key_pem| (cert_pem, key_pem))
            });
        let (cert_pem, key_pem) = match read {
            Ok(pair) => pair,
            Err(error) => return self.record_failure(format!("{error:#}")),
        };
        let mut loaded = self
            .loaded_pem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Reload::Unchanged;
        }
        match certified_key(&cert_pem, &key_pem, &self.provider) {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                *loaded = (cert_pem, key_pem);
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                Reload::Reloaded
            }
            // A rotation writes two files; between the writes the pair does
            // not match. That is reported, and the next event or poll picks
            // up the completed pair.
            Err(error) => self.record_failure(format!("{error:#}")),
        }
    }

    fn record_failure(&self, message: String) -> Reload {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() == Some(message.as_str()) {
            return Reload::Unchanged;
        }
        *last = Some(message.clone());
        Reload::Failed(message)
    }

    /// The last failed reload, if the current files are unusable.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Hands the current pair to every handshake.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// Builds the server configuration: TLS 1.2 and 1.3 only, ALPN `h2` and
/// `http/1.1`, certificates from `store`, and client certificates required
/// and verified against `client_ca` when given.
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
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate =
                    certificate.with_context(|| format!("parsing {}", path.display()))?;
                roots
                    .add(certificate)
                    .with_context(|| format!("adding a CA from {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("{}: no CA certificate found", path.display());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate PEM")?;
    if chain.is_empty() {
        bail!("no certificate in the certificate file");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("parsing the private key PEM")?;
    CertifiedKey::from_der(chain, key, provider).context("the key does not match the certificate")
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
