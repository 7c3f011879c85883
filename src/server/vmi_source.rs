//! Where the server finds the VirtualMachineInstance of a launcher Pod.
//!
//! [`VmiSource`] is the seam: a directory of VMI files for dry runs without a
//! cluster ([`VmiDirectory`]), and, in a cluster, a watch cache with a direct
//! GET on a miss. The handler bounds every lookup with a timeout, so a slow
//! source costs one request its VMI (then `onError` applies), never a hang.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admission::VmiRef;
use crate::sizing::vmi::ReadVmi;

/// A boxed, sendable future (object-safe async in a trait).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of VirtualMachineInstances, each read once into a [`ReadVmi`]
/// (when the source loads or receives it), shared by every lookup.
pub trait VmiSource: Send + Sync + 'static {
    /// The VMI `namespace/name`, `Ok(None)` if it does not exist.
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>>;
    /// The VMI a launcher Pod claims: `reference`'s namespace and name, and
    /// its uid when the Pod names one. A VMI found under that name with
    /// another uid is an error naming both uids (`onError` applies), never
    /// a silent match.
    fn lookup<'a>(
        &'a self,
        reference: &'a VmiRef,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async move {
            let found = self.get(&reference.namespace, &reference.name).await?;
            match found {
                Some(vmi) => check_uid(reference, vmi).map(Some),
                None => Ok(None),
            }
        })
    }
    /// Whether the source has synced (readiness).
    fn is_ready(&self) -> bool;
    /// One line for `/readyz` and logs.
    fn describe(&self) -> String;
    /// The watch cache's health, in cluster mode.
    fn health(&self) -> Option<&crate::server::cluster::CacheHealth> {
        None
    }
    /// Hands the source its metric handles.
    fn attach_metrics(&self, _metrics: &crate::metrics::Metrics) {}
}

/// `vmi` when it is the one `reference` claims (or either side names no
/// uid); otherwise the error naming both uids.
///
/// # Errors
/// The VMI under that name has another uid.
pub fn check_uid(reference: &VmiRef, vmi: Arc<ReadVmi>) -> Result<Arc<ReadVmi>, String> {
    reference.check_uid(vmi.uid.as_deref()).map(|()| vmi)
}

/// No VMIs at all (no `--vmi-dir`, no cluster): every launcher Pod's VMI is
/// "not found" and `onError` decides.
#[derive(Debug, Default)]
pub struct NoVmis;

impl VmiSource for NoVmis {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async { Ok(None) })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "none".into()
    }
}

/// VMIs read from `*.yaml`/`*.yml`/`*.json` files in a directory. The index
/// is rebuilt on a miss (at most once a second), so files added while the
/// server runs are found; a hit whose file was deleted or rewritten is
/// looked up again, so a deleted VMI is not served.
#[derive(Debug)]
pub struct VmiDirectory {
    dir: PathBuf,
    index: RwLock<HashMap<(String, String), Indexed>>,
    last_scan: Mutex<Instant>,
}

/// A VMI of the index, read when its file was, and the file it came from,
/// as it was when read.
#[derive(Debug, Clone)]
struct Indexed {
    vmi: Arc<ReadVmi>,
    file: PathBuf,
    stamp: Option<Stamp>,
}

/// What tells that a file changed: its modification time and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

fn stamp(file: &Path) -> Option<Stamp> {
    std::fs::metadata(file).ok().map(|metadata| Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

impl VmiDirectory {
    /// Indexes `dir`.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn new(dir: &Path) -> anyhow::Result<VmiDirectory> {
        let index = scan(dir)?;
        Ok(VmiDirectory {
            dir: dir.to_owned(),
            index: RwLock::new(index),
            last_scan: Mutex::new(Instant::now()),
        })
    }

    fn lookup(&self, namespace: &str, name: &str) -> Option<Indexed> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index
            .get(&(namespace.to_owned(), name.to_owned()))
            .or_else(|| index.get(&(String::new(), name.to_owned())))
            .cloned()
    }
}

impl VmiSource for VmiDirectory {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<ReadVmi>>, String>> {
        Box::pin(async move {
            // A hit is served only while its file is as it was read: a
            // deleted or rewritten file sends the lookup to a rescan.
            let found = self.lookup(namespace, name);
            if let Some(indexed) = &found
                && stamp(&indexed.file) == indexed.stamp
            {
                return Ok(Some(indexed.vmi.clone()));
            }
            let rescan = {
                let mut last = self
                    .last_scan
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let due = last.elapsed() >= Duration::from_secs(1);
                if due {
                    *last = Instant::now();
                }
                due
            };
            if rescan {
                let dir = self.dir.clone();
                let scanned = tokio::task::spawn_blocking(move || scan(&dir)).await;
                // The answer goes back to the apiserver as a warning: it
                // names no server path; the log has the whole error.
                let index = match scanned {
                    Ok(Ok(index)) => index,
                    Ok(Err(error)) => {
                        tracing::warn!(error = %format!("{error:#}"), "VMI directory rescan failed");
                        return Err("the VMI directory cannot be read (see the server log)".into());
                    }
                    Err(error) => {
                        tracing::error!(%error, "VMI directory rescan failed");
                        return Err("the VMI directory rescan failed (see the server log)".into());
                    }
                };
                *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
            } else if let Some(indexed) = found {
                // Not rescanned yet (at most once a second): a file that is
                // gone is not served; a rewritten one is, until the rescan.
                return Ok(indexed.stamp.and(stamp(&indexed.file)).map(|_| indexed.vmi));
            }
            Ok(self
                .lookup(namespace, name)
                .filter(|indexed| stamp(&indexed.file).is_some())
                .map(|indexed| indexed.vmi))
        })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        let count = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        // No path: this is shown in /readyz (`serve` logs the directory).
        format!("directory ({count} VMIs)")
    }
}

/// Reads every VMI document in `dir`, each into a [`ReadVmi`] (files that
/// fail to parse, or hold other kinds, are skipped with a log line; a VMI
/// that cannot be sized is kept with its error).
fn scan(dir: &Path) -> anyhow::Result<HashMap<(String, String), Indexed>> {
    use anyhow::Context as _;
    let mut index = HashMap::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_document = path.extension().is_some_and(|extension| {
            extension == "yaml" || extension == "yml" || extension == "json"
        });
        if !is_document {
            continue;
        }
        let file_stamp = stamp(&path);
        let documents = match crate::documents::read_documents(&path) {
            Ok(documents) => documents,
            Err(error) => {
                tracing::debug!(file = %path.display(), error = %format!("{error:#}"), "skipping");
                continue;
            }
        };
        for document in documents {
            if document.get("kind").and_then(Value::as_str) != Some("VirtualMachineInstance") {
                continue;
            }
            let name = document
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let namespace = document
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key = (namespace.to_owned(), name.to_owned());
            index.insert(
                key,
                Indexed {
                    vmi: Arc::new(ReadVmi::from_value(&document)),
                    file: path.clone(),
                    stamp: file_stamp,
                },
            );
        }
    }
    Ok(index)
}
