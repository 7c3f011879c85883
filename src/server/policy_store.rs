//! The policy in force, swapped atomically on reload. An invalid new file
//! keeps the last good policy serving, and says so (logs, metrics, readiness
//! detail). The policy in force is the file over the cluster's KubeVirt CR
//! (the baseline): a new CR switches decisions the way a reload does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::documents::PolicyFile;
use crate::server::reload::{Loader, Reload, Reloadable};
use crate::sizing::policy::{KubevirtBaseline, ValidPolicy};

/// The current policy and where it comes from.
#[derive(Debug)]
pub struct PolicyStore(Reloadable<PolicyFile>);

impl Loader for PolicyFile {
    type Value = ValidPolicy;
    type Contents = String;

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn read(&self) -> anyhow::Result<String> {
        PolicyFile::read(self)
    }

    /// A reload keeps the baseline of the policy in force.
    fn load(&self, text: &String, current: Option<&ValidPolicy>) -> anyhow::Result<ValidPolicy> {
        match current {
            None => self.parse(text),
            Some(current) => ValidPolicy::from_yaml(text)
                .map(|policy| policy.with_baseline(current.baseline.clone()))
                .map_err(|errors| anyhow::anyhow!("{errors}")),
        }
    }
}

impl PolicyStore {
    /// The built-in policy, never reloaded.
    #[must_use]
    pub fn builtin() -> PolicyStore {
        PolicyStore(Reloadable::fixed(ValidPolicy::builtin()))
    }

    /// Loads `path`, or fails (`serve` starts on the built-in policy
    /// instead: [`PolicyStore::from_file_or_builtin`]).
    ///
    /// # Errors
    /// Unreadable or invalid file, with every problem.
    pub fn from_file(path: &Path) -> anyhow::Result<PolicyStore> {
        Ok(PolicyStore(Reloadable::from_files(PolicyFile::new(path))?))
    }

    /// Loads `path`, or, when it is unreadable or invalid, starts on the
    /// built-in policy: a restart with a bad file on disk serves (and says
    /// why in [`PolicyStore::last_error`]) instead of exiting, and the file
    /// replaces the built-in policy once it loads.
    #[must_use]
    pub fn from_file_or_builtin(path: &Path) -> PolicyStore {
        PolicyStore(Reloadable::from_files_or(
            PolicyFile::new(path),
            ValidPolicy::builtin(),
        ))
    }

    /// Whether the policy in force is the file's (not the built-in one).
    #[must_use]
    pub fn serves_file(&self) -> bool {
        self.0.serves_files()
    }

    /// The policy for one request: a cheap reference-counted snapshot.
    #[must_use]
    pub fn current(&self) -> Arc<ValidPolicy> {
        self.0.current()
    }

    /// The file to watch, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.0.loader().map(|file| file.path.as_path())
    }

    /// Re-reads the file and swaps the policy in if it changed and is valid
    /// (`Failed` carries every problem).
    pub fn reload(&self) -> Reload {
        self.0.reload()
    }

    /// Puts the cluster's KubeVirt CR (or none) under the policy. Returns
    /// whether the policy in force changed.
    pub fn set_baseline(&self, baseline: Option<Arc<KubevirtBaseline>>) -> bool {
        self.0.update(|current| {
            (current.baseline != baseline).then(|| current.with_baseline(baseline))
        })
    }

    /// Why the file on disk is not the policy in force, if it is not.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.0.last_error()
    }
}
