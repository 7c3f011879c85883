//! A value loaded from files and reloaded when they change: the policy, the
//! serving pair and the client CA bundle.
//!
//! A reload reads the files, compares what it read with what is loaded, and
//! only then checks it and swaps the new value in atomically ([`ArcSwap`]):
//! readers take a cheap snapshot and never wait. A file that does not load
//! leaves the last good value in force; the failure is remembered (for
//! `/readyz`) and reported once, not on every poll. What a file holds and how
//! it becomes a value is the [`Loader`]'s business.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;

/// How a reloadable value is read from its files and made from what was
/// read.
pub trait Loader: Send + Sync + 'static {
    /// The value in force.
    type Value: Send + Sync + 'static;
    /// What is read from the files; reading the same again is no change.
    type Contents: PartialEq + Send + 'static;

    /// Whether contents that failed to load are tried again on every
    /// reload (`true`: whether they load can change without the files
    /// changing, as a certificate's validity does with the clock) or
    /// remembered, so that only a change of the files is looked at again.
    const RETRIES_REJECTED: bool = false;

    /// The files the value comes from (to watch).
    fn files(&self) -> Vec<PathBuf>;

    /// Reads the files.
    ///
    /// # Errors
    /// A file is unreadable; the error names it.
    fn read(&self) -> anyhow::Result<Self::Contents>;

    /// Checks `contents` and makes the value. `current` is the value in
    /// force on a reload, `None` for the first load.
    ///
    /// # Errors
    /// The contents are unusable; the error says why.
    fn load(
        &self,
        contents: &Self::Contents,
        current: Option<&Self::Value>,
    ) -> anyhow::Result<Self::Value>;
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change (or fail as they did before).
    Unchanged,
    /// The new value is in force.
    Reloaded,
    /// The new files are unusable; the previous value stays (why).
    Failed(String),
}

/// A value swapped atomically when its files change; see the module doc.
pub struct Reloadable<L: Loader> {
    current: ArcSwap<L::Value>,
    /// `None` for a value held in memory, never reloaded.
    loader: Option<L>,
    /// The contents of the value in force; held while the value in force
    /// is replaced, so that replacements never race.
    loaded: Mutex<Option<L::Contents>>,
    /// Contents already rejected (not retried unless the files change; see
    /// [`Loader::RETRIES_REJECTED`]).
    rejected: Mutex<Option<L::Contents>>,
    last_error: Mutex<Option<String>>,
}

impl<L: Loader> Reloadable<L> {
    /// Reads and loads the files of `loader`.
    ///
    /// # Errors
    /// As [`Loader::read`] and [`Loader::load`].
    pub fn from_files(loader: L) -> anyhow::Result<Reloadable<L>> {
        let contents = loader.read()?;
        let value = loader.load(&contents, None)?;
        Ok(Reloadable::with_contents(Some(loader), value, contents))
    }

    /// Reads and loads the files of `loader`; when they do not load,
    /// `fallback` is in force instead, and the failure is remembered as a
    /// rejected reload's is ([`Reloadable::last_error`]): the files are
    /// tried again when they change, and the first contents that load
    /// replace `fallback`.
    pub fn from_files_or(loader: L, fallback: L::Value) -> Reloadable<L> {
        let (rejected, error) = match loader.read() {
            Ok(contents) => match loader.load(&contents, None) {
                Ok(value) => return Reloadable::with_contents(Some(loader), value, contents),
                Err(error) => (Some(contents), error),
            },
            Err(error) => (None, error),
        };
        Reloadable {
            current: ArcSwap::from_pointee(fallback),
            loader: Some(loader),
            loaded: Mutex::new(None),
            rejected: Mutex::new(rejected),
            last_error: Mutex::new(Some(format!("{error:#}"))),
        }
    }

    /// `value`, loaded from `contents` of `loader`'s files (`None`: held in
    /// memory, never reloaded).
    pub fn with_contents(loader: Option<L>, value: L::Value, contents: L::Contents) -> Self {
        Reloadable {
            current: ArcSwap::from_pointee(value),
            loader,
            loaded: Mutex::new(Some(contents)),
            rejected: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// A value held in memory, never reloaded.
    pub fn fixed(value: L::Value) -> Self {
        Reloadable {
            current: ArcSwap::from_pointee(value),
            loader: None,
            loaded: Mutex::new(None),
            rejected: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// The value in force: a cheap reference-counted snapshot.
    pub fn current(&self) -> Arc<L::Value> {
        self.current.load_full()
    }

    /// Whether the value in force was loaded from the files (not held in
    /// memory, nor a fallback for files that did not load).
    pub fn serves_files(&self) -> bool {
        lock(&self.loaded).is_some()
    }

    /// How the value is loaded, unless it is held in memory.
    pub fn loader(&self) -> Option<&L> {
        self.loader.as_ref()
    }

    /// The files to watch (none for a value held in memory).
    pub fn files(&self) -> Vec<PathBuf> {
        self.loader.as_ref().map(Loader::files).unwrap_or_default()
    }

    /// Re-reads the files; swaps the new value in if they changed and load.
    pub fn reload(&self) -> Reload {
        let Some(loader) = &self.loader else {
            return Reload::Unchanged;
        };
        let contents = match loader.read() {
            Ok(contents) => contents,
            Err(error) => return self.fail(format!("{error:#}")),
        };
        let mut loaded = lock(&self.loaded);
        if loaded.as_ref() == Some(&contents) {
            // Back to what is in force (after a rejected file or a failed
            // read): nothing is wrong any more.
            *lock(&self.last_error) = None;
            *lock(&self.rejected) = None;
            return Reload::Unchanged;
        }
        let mut rejected = lock(&self.rejected);
        if !L::RETRIES_REJECTED && rejected.as_ref() == Some(&contents) {
            return Reload::Unchanged;
        }
        match loader.load(&contents, Some(&self.current.load())) {
            Ok(value) => {
                self.current.store(Arc::new(value));
                *loaded = Some(contents);
                *rejected = None;
                *lock(&self.last_error) = None;
                Reload::Reloaded
            }
            Err(error) => {
                *rejected = Some(contents);
                self.fail(format!("{error:#}"))
            }
        }
    }

    /// Replaces the value in force with `change(current)`, unless that is
    /// `None`; never while a reload replaces it. Returns whether it changed.
    pub fn update(&self, change: impl FnOnce(&L::Value) -> Option<L::Value>) -> bool {
        let _replacing = lock(&self.loaded);
        let Some(value) = change(&self.current.load()) else {
            return false;
        };
        self.current.store(Arc::new(value));
        true
    }

    /// Why the files on disk are not the value in force, if they are not.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Remembers a failure; one that repeats the last is no news.
    fn fail(&self, message: String) -> Reload {
        let mut last = lock(&self.last_error);
        if last.as_deref() == Some(message.as_str()) {
            return Reload::Unchanged;
        }
        *last = Some(message.clone());
        Reload::Failed(message)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<L: Loader> std::fmt::Debug for Reloadable<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("files", &self.files())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "file" in memory; the text `bad` does not load, `gone` is unreadable.
    struct Memory(Arc<Mutex<&'static str>>);

    impl Loader for Memory {
        type Value = String;
        type Contents = String;
        fn files(&self) -> Vec<PathBuf> {
            Vec::new()
        }
        fn read(&self) -> anyhow::Result<String> {
            match *lock(&self.0) {
                "gone" => anyhow::bail!("unreadable"),
                text => Ok(text.to_owned()),
            }
        }
        fn load(&self, contents: &String, _: Option<&String>) -> anyhow::Result<String> {
            anyhow::ensure!(contents != "bad", "bad contents");
            Ok(contents.clone())
        }
    }

    #[test]
    fn going_back_to_the_value_in_force_clears_the_error() {
        let file = Arc::new(Mutex::new("good"));
        let value = Reloadable::from_files(Memory(file.clone())).expect("loads");
        for broken in ["bad", "gone"] {
            *lock(&file) = broken;
            assert!(matches!(value.reload(), Reload::Failed(_)), "{broken}");
            assert!(value.last_error().is_some());
            assert_eq!(*value.current(), "good", "the last good value stays");
            *lock(&file) = "good";
            assert_eq!(value.reload(), Reload::Unchanged);
            assert_eq!(value.last_error(), None, "after {broken}");
        }
        // A rejected text is reported once, not on every poll.
        *lock(&file) = "bad";
        assert!(matches!(value.reload(), Reload::Failed(_)));
        assert_eq!(value.reload(), Reload::Unchanged);
        *lock(&file) = "new";
        assert_eq!(value.reload(), Reload::Reloaded);
        assert_eq!(*value.current(), "new");
    }

    #[test]
    fn files_that_do_not_load_at_first_leave_the_fallback_in_force_until_they_do() {
        for broken in ["bad", "gone"] {
            let file = Arc::new(Mutex::new(broken));
            let value = Reloadable::from_files_or(Memory(file.clone()), "fallback".to_owned());
            assert_eq!(*value.current(), "fallback", "{broken}");
            assert!(!value.serves_files());
            let error = value.last_error().expect("the failure is remembered");
            assert!(
                error.contains("bad contents") || error.contains("unreadable"),
                "{error}"
            );
            // The same files again are no news; new files that load replace
            // the fallback.
            assert_eq!(value.reload(), Reload::Unchanged, "{broken}");
            *lock(&file) = "good";
            assert_eq!(value.reload(), Reload::Reloaded, "{broken}");
            assert_eq!(*value.current(), "good");
            assert!(value.serves_files());
            assert_eq!(value.last_error(), None);
        }
        let loaded = Reloadable::from_files_or(Memory(Arc::new(Mutex::new("good"))), String::new());
        assert_eq!(*loaded.current(), "good");
        assert!(loaded.serves_files());
    }
}
