//! The policy in force, swapped atomically on reload. An invalid new file
//! keeps the last good policy serving, and says so (logs, metrics, readiness
//! detail). The policy in force is the file over the cluster's KubeVirt CR
//! (the baseline): a new CR switches decisions the way a reload does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::sizing::policy::{KubevirtBaseline, ValidPolicy};

/// What a policy reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyReload {
    /// The file did not change.
    Unchanged,
    /// The new policy is in force (its digest).
    Reloaded(String),
    /// The new file is invalid; the last good policy stays (the problems).
    Rejected(String),
}

/// The current policy and where it comes from.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<ValidPolicy>,
    path: Option<PathBuf>,
    /// Held while the policy in force is replaced, so a reload and a new
    /// baseline never race.
    loaded_text: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
}

impl PolicyStore {
    /// The built-in policy, never reloaded.
    #[must_use]
    pub fn builtin() -> PolicyStore {
        PolicyStore {
            current: ArcSwap::from_pointee(ValidPolicy::builtin()),
            path: None,
            loaded_text: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// Loads `path`; the server refuses to start on an invalid policy.
    ///
    /// # Errors
    /// Unreadable or invalid file, with every problem.
    pub fn from_file(path: &Path) -> anyhow::Result<PolicyStore> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading policy {}", path.display()))?;
        let policy = ValidPolicy::from_yaml(&text)
            .map_err(|errors| anyhow::anyhow!("invalid policy {}:\n{errors}", path.display()))?;
        Ok(PolicyStore {
            current: ArcSwap::from_pointee(policy),
            path: Some(path.to_owned()),
            loaded_text: Mutex::new(Some(text)),
            last_error: Mutex::new(None),
        })
    }

    /// The policy for one request: a cheap reference-counted snapshot.
    #[must_use]
    pub fn current(&self) -> Arc<ValidPolicy> {
        self.current.load_full()
    }

    /// The file to watch, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file and swaps the policy in if it changed and is valid.
    pub fn reload(&self) -> PolicyReload {
        let Some(path) = &self.path else {
            return PolicyReload::Unchanged;
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => return self.reject(format!("reading {}: {error}", path.display())),
        };
        let mut loaded = self
            .loaded_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if loaded.as_deref() == Some(text.as_str()) {
            return PolicyReload::Unchanged;
        }
        match ValidPolicy::from_yaml(&text) {
            Ok(policy) => {
                let digest = policy.digest.clone();
                let baseline = self.current.load().baseline.clone();
                self.current.store(Arc::new(policy.with_baseline(baseline)));
                *loaded = Some(text);
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                PolicyReload::Reloaded(digest)
            }
            Err(errors) => {
                // Remember the rejected text so the same bad file is
                // reported once, not on every poll.
                *loaded = Some(text);
                self.reject(errors.to_string())
            }
        }
    }

    /// Puts the cluster's KubeVirt CR (or none) under the policy. Returns
    /// whether the policy in force changed.
    pub fn set_baseline(&self, baseline: Option<Arc<KubevirtBaseline>>) -> bool {
        let _updating = self
            .loaded_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        if current.baseline == baseline {
            return false;
        }
        self.current
            .store(Arc::new(current.with_baseline(baseline)));
        true
    }

    fn reject(&self, message: String) -> PolicyReload {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() == Some(message.as_str()) {
            return PolicyReload::Unchanged;
        }
        *last = Some(message.clone());
        PolicyReload::Rejected(message)
    }

    /// Why the file on disk is not the policy in force, if it is not.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
