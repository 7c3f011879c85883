//! The embedded default's CA and serving pair, kept beside `--ca-out` while
//! they are valid, so that a restart keeps the trust of whatever was given
//! the CA (an apiserver's `caBundle`, `curl --cacert`).
//!
//! For `--ca-out DIR/ca.pem` the serving pair is `DIR/ca-serving.crt` and
//! `DIR/ca-serving.key` (mode 0600), and `DIR/ca.lock` serialises servers
//! starting at once on the same files. At start the three files are reused
//! when all of them hold together: the key is readable by its owner alone
//! (a key others could have written is never trusted), the key matches the
//! serving certificate, the certificate verifies against the CA for every
//! name the default serves, and the CA and the certificate are within their
//! validity now. Otherwise a new CA and pair are generated and written,
//! each file replaced whole (a temporary file renamed over it), and the log
//! says why.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::server::tls::{self, CertStore, SelfSigned};

/// The names the embedded default serves.
pub(super) const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The files of one embedded default, named after its CA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LocalCaFiles {
    /// The CA certificate (PEM), for clients.
    pub(super) ca: PathBuf,
    /// The serving certificate (PEM).
    pub(super) cert: PathBuf,
    /// The serving key (PEM), mode 0600.
    pub(super) key: PathBuf,
    /// Held while the files are checked or written.
    lock: PathBuf,
}

/// Whether the files on disk were kept or replaced, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The CA and pair on disk were valid and are served.
    Kept,
    /// A new CA and pair were generated: why the old ones were not kept.
    Generated(String),
}

impl LocalCaFiles {
    /// The files beside the CA file `ca`: `NAME-serving.crt`,
    /// `NAME-serving.key` and `NAME.lock` for `NAME.pem`.
    pub(super) fn beside(ca: &Path) -> LocalCaFiles {
        let stem = ca
            .file_stem()
            .map_or_else(|| "ca".into(), |stem| stem.to_string_lossy().into_owned());
        let sibling = |suffix: &str| ca.with_file_name(format!("{stem}{suffix}"));
        LocalCaFiles {
            ca: ca.to_owned(),
            cert: sibling("-serving.crt"),
            key: sibling("-serving.key"),
            lock: sibling(".lock"),
        }
    }

    /// The CA and serving pair on disk if they are valid, else new ones,
    /// written out before they are returned.
    ///
    /// # Errors
    /// The directory or a file cannot be created or written, or generating
    /// the certificates failed.
    pub(super) fn load_or_generate(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> anyhow::Result<(SelfSigned, Outcome)> {
        if let Some(parent) = self
            .ca
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            create_private_dir(parent)?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("opening {}", self.lock.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", self.lock.display()))?;
        let why = match self.read_valid(provider) {
            Ok(kept) => return Ok((kept, Outcome::Kept)),
            Err(why) => why,
        };
        let generated =
            tls::generate_self_signed(&NAMES).context("generating the self-signed certificate")?;
        // The key first and the CA last: a reader that finds a new CA
        // finds the pair it signed.
        write_replacing(&self.key, generated.key_pem.as_bytes(), 0o600)?;
        write_replacing(&self.cert, generated.cert_pem.as_bytes(), 0o644)?;
        write_replacing(&self.ca, generated.ca_pem.as_bytes(), 0o644)?;
        Ok((generated, Outcome::Generated(why)))
    }

    /// The pair on disk, if every check holds; otherwise the first one
    /// that does not.
    fn read_valid(&self, provider: &Arc<CryptoProvider>) -> Result<SelfSigned, String> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => format!("no {}", path.display()),
                _ => format!("reading {}: {error}", path.display()),
            })
        };
        let ca_pem = read(&self.ca)?;
        let cert_pem = read(&self.cert)?;
        let key_pem = read(&self.key)?;
        check_private(&self.key)?;
        CertStore::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), provider.clone()).map_err(
            |error| {
                format!(
                    "{} and {}: {error:#}",
                    self.cert.display(),
                    self.key.display()
                )
            },
        )?;
        check_chain(&ca_pem, &cert_pem, provider)
            .map_err(|error| format!("{}: {error:#}", self.cert.display()))?;
        Ok(SelfSigned {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }
}

/// The serving certificate verifies against the CA, now, for every name
/// the default serves; the CA itself is within its validity (a trust
/// anchor's dates are not part of that verification).
fn check_chain(ca_pem: &str, cert_pem: &str, provider: &Arc<CryptoProvider>) -> anyhow::Result<()> {
    let cas = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the CA")?;
    let [ca] = cas.as_slice() else {
        anyhow::bail!("the CA file holds {} certificates, not one", cas.len());
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|error| anyhow::anyhow!("parsing the CA: {error}"))?;
    anyhow::ensure!(
        parsed.validity().is_valid(),
        "the CA is not valid now (valid from {} until {})",
        parsed.validity().not_before,
        parsed.validity().not_after
    );
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).context("the CA as a trust anchor")?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("a verifier for the CA")?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the serving certificate")?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        anyhow::bail!("no serving certificate");
    };
    let now = UnixTime::now();
    for name in NAMES {
        let server_name = ServerName::try_from(name).context("a served name")?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], now)
            .with_context(|| format!("does not verify against the CA for {name}"))?;
    }
    Ok(())
}

/// A key that others may read or write is not trusted: someone else may
/// have put it there.
#[cfg(unix)]
fn check_private(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(key)
        .map_err(|error| format!("{}: {error}", key.display()))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} is open to others (mode {:o}, not 600)",
            key.display(),
            mode & 0o777
        ))
    }
}

#[cfg(not(unix))]
fn check_private(_key: &Path) -> Result<(), String> {
    Ok(())
}

/// Creates `dir` (and its parents), the last one readable by its owner
/// alone when it is new.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes `contents` to `path` whole: into a new file beside it (created
/// with `mode`), then renamed over it.
fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut temporary = file_name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options
        .open(&temporary)
        .and_then(|mut file: File| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn the_pair_is_named_after_the_ca_file() {
        let files = LocalCaFiles::beside(Path::new("/run/x/ca.pem"));
        assert_eq!(files.cert, Path::new("/run/x/ca-serving.crt"));
        assert_eq!(files.key, Path::new("/run/x/ca-serving.key"));
        assert_eq!(files.lock, Path::new("/run/x/ca.lock"));
        let files = LocalCaFiles::beside(Path::new("trust.crt"));
        assert_eq!(files.key, Path::new("trust-serving.key"));
    }

    #[test]
    fn a_second_start_keeps_what_the_first_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("new/ca.pem"));
        let (first, outcome) = files.load_or_generate(&provider()).expect("first");
        assert!(
            matches!(&outcome, Outcome::Generated(why) if why.starts_with("no ")),
            "{outcome:?}"
        );
        let (second, outcome) = files.load_or_generate(&provider()).expect("second");
        assert_eq!(outcome, Outcome::Kept);
        assert_eq!(second.ca_pem, first.ca_pem);
        assert_eq!(second.key_pem, first.key_pem);
        assert_eq!(
            fs::read_to_string(&files.ca).expect("ca"),
            first.ca_pem,
            "the CA file is the one served"
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("new/ca.pem"));
        files.load_or_generate(&provider()).expect("generated");
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_open_to_others_is_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("ca.pem"));
        let (first, _) = files.load_or_generate(&provider()).expect("first");
        fs::set_permissions(&files.key, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (second, outcome) = files.load_or_generate(&provider()).expect("second");
        assert!(
            matches!(&outcome, Outcome::Generated(why) if why.contains("mode 644")),
            "{outcome:?}"
        );
        assert_ne!(second.ca_pem, first.ca_pem);
    }

    #[test]
    fn a_pair_another_ca_signed_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("ca.pem"));
        let (first, _) = files.load_or_generate(&provider()).expect("first");
        let other = tls::generate_self_signed(&NAMES).expect("another CA");
        fs::write(&files.ca, &other.ca_pem).expect("write");
        let (second, outcome) = files.load_or_generate(&provider()).expect("second");
        assert!(
            matches!(&outcome, Outcome::Generated(why) if why.contains("does not verify")),
            "{outcome:?}"
        );
        assert_ne!(second.ca_pem, first.ca_pem);
        assert_ne!(second.ca_pem, other.ca_pem);
    }

    /// A CA and a serving pair for [`NAMES`] whose certificate expired on
    /// 1 January 2020.
    fn expired_pair() -> SelfSigned {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let mut leaf_params =
            CertificateParams::new(NAMES.map(str::to_owned).to_vec()).expect("params");
        leaf_params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
            .expect("leaf");
        SelfSigned {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    #[test]
    fn an_expired_pair_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("ca.pem"));
        let expired = expired_pair();
        write_replacing(&files.key, expired.key_pem.as_bytes(), 0o600).expect("key");
        write_replacing(&files.cert, expired.cert_pem.as_bytes(), 0o644).expect("cert");
        write_replacing(&files.ca, expired.ca_pem.as_bytes(), 0o644).expect("ca");
        let (new, outcome) = files.load_or_generate(&provider()).expect("generated");
        assert!(
            matches!(&outcome, Outcome::Generated(why) if why.contains("does not verify")),
            "{outcome:?}"
        );
        assert_ne!(new.ca_pem, expired.ca_pem);
        let (kept, outcome) = files.load_or_generate(&provider()).expect("kept");
        assert_eq!(outcome, Outcome::Kept, "the new pair is valid");
        assert_eq!(kept.ca_pem, new.ca_pem);
    }

    #[test]
    fn a_key_of_another_certificate_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LocalCaFiles::beside(&dir.path().join("ca.pem"));
        let (first, _) = files.load_or_generate(&provider()).expect("first");
        let other = tls::generate_self_signed(&NAMES).expect("another pair");
        write_replacing(&files.key, other.key_pem.as_bytes(), 0o600).expect("write");
        let (second, outcome) = files.load_or_generate(&provider()).expect("second");
        assert!(matches!(outcome, Outcome::Generated(_)), "{outcome:?}");
        assert_ne!(second.ca_pem, first.ca_pem);
    }
}
