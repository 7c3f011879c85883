//! Watches files for change: filesystem events plus a periodic poll
//! (controller-runtime's certwatcher does the same).
//!
//! The watch is on each file's *directory*, not the file: Kubernetes
//! updates Secret and ConfigMap volumes by swapping a `..data` symlink, which
//! never touches the file's own inode. Events only say "look again"; the
//! callback re-reads and compares content, so a missed or spurious event is
//! harmless and the poll bounds how late a change can be seen.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

/// A running watcher; dropping it stops the thread.
#[derive(Debug)]
pub struct FileWatcher {
    stop: Option<mpsc::Sender<()>>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Calls `on_change` after any event in the directories of `files`, and at
/// least every `poll`. Events arriving together are coalesced (50 ms).
#[must_use]
pub fn watch(
    files: &[PathBuf],
    poll: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> FileWatcher {
    let (wake, woken) = mpsc::channel::<()>();
    let (stop, stopped) = mpsc::channel::<()>();
    let event_wake = wake.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = event_wake.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "file events unavailable; relying on polling");
            None
        }
    };
    if let Some(watcher) = watcher.as_mut() {
        let mut directories: Vec<PathBuf> = files
            .iter()
            .map(|file| {
                file.parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
            })
            .collect();
        directories.sort();
        directories.dedup();
        for directory in directories {
            if let Err(error) = watcher.watch(&directory, RecursiveMode::NonRecursive) {
                tracing::warn!(%error, directory = %directory.display(), "cannot watch; relying on polling");
            }
        }
    }
    std::thread::Builder::new()
        .name("virt-sizer-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            drop(wake);
            loop {
                if stopped.try_recv().is_ok() {
                    return;
                }
                match woken.recv_timeout(poll) {
                    Ok(()) => {
                        std::thread::sleep(Duration::from_millis(50));
                        while woken.try_recv().is_ok() {}
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(poll),
                }
                if stopped.try_recv().is_ok() {
                    return;
                }
                on_change();
            }
        })
        .map_or_else(
            |error| {
                tracing::error!(%error, "cannot start the file watcher thread");
                FileWatcher { stop: None }
            },
            |_| FileWatcher { stop: Some(stop) },
        )
}
