//! Self-managed certificates (`serve --certificate-secret NAMESPACE/NAME`):
//! the server keeps its own CA and serving pair in a Secret, injects the CA
//! into its own webhook configurations, and renews both before they
//! expire. No cert-manager, no script.
//!
//! Every replica runs the same loop ([`SelfManaged::spawn`]), every
//! `--reload-poll-seconds` and whenever something falls due:
//!
//! 1. read the Secret and decide what it should hold ([`renewal::renew`]:
//!    pure, the rules are there); write it when that changed, with its
//!    `resourceVersion` (create when missing). Replicas that decide at the
//!    same moment race on that write: one wins, the others get a conflict,
//!    read the winner's contents and take them. The Secret is the one
//!    truth, so a replica never serves a pair another replica did not
//!    store;
//! 2. inject the Secret's CA bundle into the `caBundle` of every webhook
//!    of the named MutatingWebhookConfigurations and
//!    ValidatingWebhookConfigurations (get, then update with the
//!    `resourceVersion` read), and remember whether every one carries it:
//!    a new CA signs only once it does;
//! 3. hand the serving pair to the TLS listener ([`SharedPair`]), which
//!    reloads it the way it reloads certificate files
//!    ([`AppState::reload_certificate`]: refused if it does not load or is
//!    not valid now, logged and counted in the certificate metrics).
//!
//! A failure (the apiserver unreachable, RBAC missing, a configuration not
//! found) is logged when it starts and when it ends, not on every pass;
//! the pair in force keeps serving meanwhile.

mod renewal;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::server::AppState;
use crate::server::tls::{SharedPair, unix_now};
pub use renewal::{
    CA_BUNDLE_KEY, CA_KEY_KEY, CERT_KEY, Change, Contents, KEY_KEY, Lifetimes, Reissue, Renewal,
    Wanted, Window, renew,
};

/// The Secret that holds the certificates, `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Its namespace (the Service's too: the serving certificate names
    /// `SERVICE.NAMESPACE.svc`).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl FromStr for SecretRef {
    type Err = String;

    /// `NAMESPACE/NAME`: a DNS label and a DNS subdomain (RFC 1123, as
    /// Kubernetes names them).
    fn from_str(text: &str) -> Result<SecretRef, String> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(format!("{text:?} is not NAMESPACE/NAME"));
        };
        let label = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        };
        if !label(namespace) {
            return Err(format!(
                "namespace {namespace:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
            ));
        }
        if name.len() > 253 || !name.split('.').all(label) {
            return Err(format!(
                "name {name:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
            ));
        }
        Ok(SecretRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The shortest lifetime [`parse_lifetime`] takes, in seconds.
pub const MIN_LIFETIME_SECONDS: u64 = 10;

/// A lifetime: a whole number and a unit, `s`, `m`, `h` or `d` (`90d`,
/// `36h`, `30s`); at least [`MIN_LIFETIME_SECONDS`].
///
/// # Errors
/// Not that shape, or shorter.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let shape = || format!("{text:?} is not a number and a unit s, m, h or d (e.g. 90d)");
    let unit_at = text.len().checked_sub(1).ok_or_else(shape)?;
    let (number, unit) = text.split_at(unit_at);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(shape()),
    };
    let number: u64 = number.parse().map_err(|_| shape())?;
    let seconds = number
        .checked_mul(unit_seconds)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if seconds < MIN_LIFETIME_SECONDS {
        return Err(format!(
            "{text:?} is shorter than {MIN_LIFETIME_SECONDS} seconds"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// The DNS names the apiserver calls Service `service` in `namespace` by.
#[must_use]
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    let short = format!("{service}.{namespace}.svc");
    let long = format!("{short}.cluster.local");
    vec![short, long]
}

/// What `serve --certificate-secret` manages.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Secret.
    pub secret: SecretRef,
    /// The serving certificate and the lifetimes.
    pub wanted: Wanted,
    /// The MutatingWebhookConfigurations whose webhooks get the CA.
    pub mutating: Vec<String>,
    /// The ValidatingWebhookConfigurations whose webhooks get the CA.
    pub validating: Vec<String>,
    /// The longest pause between two passes.
    pub poll: Duration,
}

/// How long the first pass may keep failing before `serve` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many conflicting writes of the Secret one pass takes before it
/// leaves the rest to the next.
const WRITE_ATTEMPTS: usize = 3;

/// The self-managed certificates of one replica; see the module doc.
pub struct SelfManaged {
    client: Client,
    options: Options,
    pair: Arc<SharedPair>,
    /// The bundle every named webhook configuration carried after the
    /// last injection (`None`: not all of them, or not yet).
    published: Mutex<Option<String>>,
    /// The failures in force, by what failed: logged when they start and
    /// when they end.
    failing: Mutex<BTreeMap<String, String>>,
    /// When the first pass found something next due.
    first_due: Option<i64>,
}

impl Debug for SelfManaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfManaged")
            .field("secret", &self.options.secret)
            .finish_non_exhaustive()
    }
}

impl SelfManaged {
    /// The first pass: the Secret read (or written) and the CA injected.
    /// Failing passes are retried for up to a minute (RBAC or the
    /// apiserver may be a moment behind the Pod); an injection that fails
    /// is logged and retried by [`SelfManaged::spawn`]'s loop.
    ///
    /// # Errors
    /// The Secret could not be read or written within that minute.
    pub async fn start(client: Client, options: Options) -> anyhow::Result<SelfManaged> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(500);
        let mut manager = SelfManaged {
            client,
            pair: Arc::new(SharedPair::new(
                format!("Secret {}", options.secret),
                b"",
                b"",
            )),
            options,
            published: Mutex::new(None),
            failing: Mutex::new(BTreeMap::new()),
            first_due: None,
        };
        let contents = loop {
            match manager.sync_secret().await {
                Ok((contents, next_due)) => {
                    manager.first_due = Some(next_due);
                    break contents;
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    manager.report("secret", format!("{error:#}"));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!(
                            "self-managed certificates: Secret {} (for {START_TIMEOUT:?})",
                            manager.options.secret
                        )
                    });
                }
            }
        };
        manager.resolve("secret");
        manager.inject(&contents.ca_bundle).await;
        manager
            .pair
            .publish(contents.cert.as_bytes(), contents.key.as_bytes());
        Ok(manager)
    }

    /// The serving pair, as the Secret last held it.
    #[must_use]
    pub fn pair(&self) -> Arc<SharedPair> {
        self.pair.clone()
    }

    /// Runs the loop for as long as the process: every pass hands the
    /// serving pair to `state`'s certificate store.
    pub fn spawn(self, state: AppState) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            // `start` made the first pass.
            let mut next_due = self.first_due;
            loop {
                tokio::time::sleep(self.pause_until(next_due)).await;
                next_due = self.pass().await;
                state.reload_certificate();
            }
        })
    }

    /// One pass (steps 1 to 3 of the module doc); when something is next
    /// due (Unix seconds), if the Secret was read.
    async fn pass(&self) -> Option<i64> {
        let (contents, next_due) = match self.sync_secret().await {
            Ok(synced) => {
                self.resolve("secret");
                synced
            }
            Err(error) => {
                self.report("secret", format!("{error:#}"));
                return None;
            }
        };
        self.inject(&contents.ca_bundle).await;
        self.pair
            .publish(contents.cert.as_bytes(), contents.key.as_bytes());
        Some(next_due)
    }

    /// Until `next_due`, at least a second, at most the poll interval.
    fn pause_until(&self, next_due: Option<i64>) -> Duration {
        let poll = self.options.poll.max(Duration::from_secs(1));
        match next_due.map(|due| due - unix_now()) {
            Some(seconds) if seconds > 0 => {
                Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX)).min(poll)
            }
            _ => poll,
        }
    }

    /// Step 1: the Secret's contents after renewal, and when something is
    /// next due.
    async fn sync_secret(&self) -> anyhow::Result<(Contents, i64)> {
        let secrets: Api<Secret> =
            Api::namespaced(self.client.clone(), &self.options.secret.namespace);
        let name = &self.options.secret.name;
        for _ in 0..WRITE_ATTEMPTS {
            let secret = secrets
                .get_opt(name)
                .await
                .with_context(|| format!("reading Secret {}", self.options.secret))?;
            let current = secret.as_ref().map(secret_contents);
            let renewal = renew(
                unix_now(),
                current.as_ref(),
                &self.options.wanted,
                &|ca_pem| self.is_published(ca_pem),
            )?;
            if renewal.changes.is_empty() {
                return Ok((renewal.contents, renewal.next_due));
            }
            match self.write(&secrets, secret, &renewal.contents).await {
                Ok(()) => {
                    self.log_changes(&renewal);
                    return Ok((renewal.contents, renewal.next_due));
                }
                // Another replica wrote first: read what it wrote.
                Err(kube::Error::Api(status))
                    if status.is_conflict() || status.is_already_exists() =>
                {
                    tracing::debug!(secret = %self.options.secret, "another replica wrote the Secret first");
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("writing Secret {}", self.options.secret));
                }
            }
        }
        bail!(
            "Secret {} changed under every one of {WRITE_ATTEMPTS} writes",
            self.options.secret
        )
    }

    /// Creates the Secret, or replaces it at the `resourceVersion` read.
    async fn write(
        &self,
        secrets: &Api<Secret>,
        current: Option<Secret>,
        contents: &Contents,
    ) -> Result<(), kube::Error> {
        let mut data: BTreeMap<String, ByteString> = current
            .as_ref()
            .and_then(|secret| secret.data.clone())
            .unwrap_or_default();
        data.extend(
            contents
                .to_data()
                .into_iter()
                .map(|(key, bytes)| (key, ByteString(bytes))),
        );
        match current {
            Some(mut secret) => {
                secret.data = Some(data);
                secrets
                    .replace(&self.options.secret.name, &PostParams::default(), &secret)
                    .await
                    .map(drop)
            }
            None => {
                let labels = [
                    ("app.kubernetes.io/name", "virt-sizer"),
                    ("app.kubernetes.io/part-of", "virt-sizer"),
                    ("app.kubernetes.io/managed-by", "virt-sizer"),
                ]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect();
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.options.secret.name.clone()),
                        namespace: Some(self.options.secret.namespace.clone()),
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(data),
                    ..Secret::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map(drop)
            }
        }
    }

    fn log_changes(&self, renewal: &Renewal) {
        let secret = &self.options.secret;
        for change in &renewal.changes {
            match change {
                Change::Created(why) => {
                    tracing::info!(%secret, reason = %why, "self-managed certificates: new CA and serving certificate");
                }
                Change::CaAdded => tracing::info!(%secret,
                    "self-managed certificates: the CA is due for renewal; a new CA joins the webhooks' caBundle and signs once every webhook configuration carries it"),
                Change::CaDropped(n_dropped) => tracing::info!(%secret, n_dropped,
                    "self-managed certificates: expired CAs left the caBundle"),
                Change::ServingIssued(why) => tracing::info!(%secret, reason = ?why,
                    "self-managed certificates: new serving certificate"),
            }
        }
    }

    fn is_published(&self, ca_pem: &str) -> bool {
        if self.options.mutating.is_empty() && self.options.validating.is_empty() {
            return true;
        }
        lock(&self.published)
            .as_deref()
            .is_some_and(|bundle| bundle.contains(ca_pem))
    }

    /// Step 2: `bundle` into every webhook of every named configuration.
    async fn inject(&self, bundle: &str) {
        let mut everywhere = true;
        for name in &self.options.mutating {
            everywhere &= self
                .inject_into::<MutatingWebhookConfiguration>(name, bundle)
                .await;
        }
        for name in &self.options.validating {
            everywhere &= self
                .inject_into::<ValidatingWebhookConfiguration>(name, bundle)
                .await;
        }
        *lock(&self.published) = everywhere.then(|| bundle.to_owned());
    }

    /// Whether configuration `name` carries `bundle` in every webhook now.
    async fn inject_into<K: WebhookConfiguration>(&self, name: &str, bundle: &str) -> bool {
        let what = format!("{} {name}", K::KIND);
        match inject_bundle::<K>(&self.client, name, bundle).await {
            Ok(Injection::Unchanged) => {
                self.resolve(&what);
                true
            }
            Ok(Injection::Updated) => {
                self.resolve(&what);
                tracing::info!(configuration = %what, "self-managed certificates: caBundle injected");
                true
            }
            Ok(Injection::Missing) => {
                self.report(
                    &what,
                    format!("{what} not found; its caBundle is injected once it exists"),
                );
                false
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => false,
            Err(error) => {
                self.report(
                    &what,
                    format!("injecting the caBundle into {what}: {error}"),
                );
                false
            }
        }
    }

    /// Logs a failure of `what` unless it is already the one in force.
    fn report(&self, what: &str, message: String) {
        let mut failing = lock(&self.failing);
        if failing.get(what) != Some(&message) {
            tracing::warn!(error = %message, "self-managed certificates");
            failing.insert(what.to_owned(), message);
        }
    }

    /// Logs the end of a failure of `what`, if one was in force.
    fn resolve(&self, what: &str) {
        if lock(&self.failing).remove(what).is_some() {
            tracing::info!(what, "self-managed certificates: working again");
        }
    }
}

/// What an injection did.
enum Injection {
    /// Every webhook already carried the bundle.
    Unchanged,
    /// The configuration was updated.
    Updated,
    /// No configuration of that name.
    Missing,
}

/// A webhook configuration kind whose webhooks carry a caBundle.
trait WebhookConfiguration:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind, for messages.
    const KIND: &'static str;
    /// Every webhook's caBundle.
    fn ca_bundles(&mut self) -> Vec<&mut Option<ByteString>>;
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    const KIND: &'static str = "MutatingWebhookConfiguration";
    fn ca_bundles(&mut self) -> Vec<&mut Option<ByteString>> {
        self.webhooks
            .iter_mut()
            .flatten()
            .map(|webhook| &mut webhook.client_config.ca_bundle)
            .collect()
    }
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    const KIND: &'static str = "ValidatingWebhookConfiguration";
    fn ca_bundles(&mut self) -> Vec<&mut Option<ByteString>> {
        self.webhooks
            .iter_mut()
            .flatten()
            .map(|webhook| &mut webhook.client_config.ca_bundle)
            .collect()
    }
}

/// Sets every webhook's caBundle of configuration `name` to `bundle`:
/// get, then update at the `resourceVersion` read.
async fn inject_bundle<K: WebhookConfiguration>(
    client: &Client,
    name: &str,
    bundle: &str,
) -> Result<Injection, kube::Error> {
    let api: Api<K> = Api::all(client.clone());
    let Some(mut configuration) = api.get_opt(name).await? else {
        return Ok(Injection::Missing);
    };
    let wanted = ByteString(bundle.as_bytes().to_vec());
    let mut changed = false;
    for ca_bundle in configuration.ca_bundles() {
        if ca_bundle.as_ref() != Some(&wanted) {
            *ca_bundle = Some(wanted.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(Injection::Unchanged);
    }
    api.replace(name, &PostParams::default(), &configuration)
        .await?;
    Ok(Injection::Updated)
}

fn secret_contents(secret: &Secret) -> Contents {
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(key, bytes)| (key.clone(), bytes.0.clone()))
        .collect();
    Contents::from_data(&data)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
