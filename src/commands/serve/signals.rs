//! The signals `serve` answers, all listened to from its first moment:
//! SIGTERM, SIGINT and SIGQUIT drain (a second one during the drain exits
//! at once), SIGHUP reloads the policy and the certificates, and every
//! other catchable signal whose default action would end the process is
//! logged and ignored, so that no stray `kill` takes a replica down
//! without its drain. Faults (SIGSEGV, SIGBUS, …), SIGKILL and SIGSTOP keep
//! their default action; SIGPIPE is ignored by the Rust runtime already.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::server::AppState;

/// What `serve` does on a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnSignal {
    /// Readiness false, drain, exit.
    Drain,
    /// Reload the policy and the certificates.
    Reload,
    /// Log it; nothing else.
    Ignore,
}

/// The signals with a name, and what `serve` does on each. Real-time
/// signals (Linux) are ignored too ([`handled`]), up to the last one tokio
/// can listen for (`SIGRTMAX` itself is beyond its table).
const NAMED: &[(i32, &str, OnSignal)] = &[
    (libc::SIGTERM, "SIGTERM", OnSignal::Drain),
    (libc::SIGINT, "SIGINT", OnSignal::Drain),
    (libc::SIGQUIT, "SIGQUIT", OnSignal::Drain),
    (libc::SIGHUP, "SIGHUP", OnSignal::Reload),
    (libc::SIGUSR1, "SIGUSR1", OnSignal::Ignore),
    (libc::SIGUSR2, "SIGUSR2", OnSignal::Ignore),
    (libc::SIGALRM, "SIGALRM", OnSignal::Ignore),
    (libc::SIGIO, "SIGIO", OnSignal::Ignore),
    (libc::SIGPROF, "SIGPROF", OnSignal::Ignore),
    (libc::SIGVTALRM, "SIGVTALRM", OnSignal::Ignore),
    (libc::SIGXCPU, "SIGXCPU", OnSignal::Ignore),
    (libc::SIGXFSZ, "SIGXFSZ", OnSignal::Ignore),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (libc::SIGPWR, "SIGPWR", OnSignal::Ignore),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (libc::SIGSTKFLT, "SIGSTKFLT", OnSignal::Ignore),
];

/// A signal received: its number and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// The signal number (the exit status after a second drain signal is
    /// 128 + this).
    pub(crate) number: i32,
    /// `SIGTERM`, `SIGRTMIN+3`, …
    pub(crate) name: String,
}

/// Every signal `serve` handles, with its name and what it does.
pub(crate) fn handled() -> Vec<(i32, String, OnSignal)> {
    let mut all: Vec<(i32, String, OnSignal)> = NAMED
        .iter()
        .map(|&(number, name, action)| (number, name.to_owned(), action))
        .collect();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let (first, last) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        all.extend((first..=last).map(|number| {
            (
                number,
                format!("SIGRTMIN+{}", number - first),
                OnSignal::Ignore,
            )
        }));
    }
    all
}

/// The listeners, installed at once by [`Signals::listen`]: from then on no
/// handled signal has its default action.
#[derive(Debug)]
pub(crate) struct Signals {
    drain: mpsc::UnboundedReceiver<Received>,
    /// Until [`Signals::reload_on_hangup`] takes it.
    reload: Option<mpsc::UnboundedReceiver<Received>>,
}

impl Signals {
    /// Installs a listener for every [`handled`] signal. Ignored signals
    /// are logged from here on; drain and reload signals wait for
    /// [`Signals::next_drain`] and [`Signals::reload_on_hangup`] (a reload
    /// asked before the server is assembled runs once it is).
    pub(crate) fn listen() -> Signals {
        let (drain_sender, drain) = mpsc::unbounded_channel();
        let (reload_sender, reload) = mpsc::unbounded_channel();
        for (number, name, action) in handled() {
            let mut listener = match signal(SignalKind::from_raw(number)) {
                Ok(listener) => listener,
                Err(error) => {
                    // A platform without this signal, or one reserved by the
                    // C library: its default action stays.
                    if action == OnSignal::Ignore {
                        tracing::debug!(signal = %name, %error, "cannot listen for the signal");
                    } else {
                        tracing::warn!(signal = %name, %error, "cannot listen for the signal");
                    }
                    continue;
                }
            };
            let sender = match action {
                OnSignal::Drain => Some(drain_sender.clone()),
                OnSignal::Reload => Some(reload_sender.clone()),
                OnSignal::Ignore => None,
            };
            tokio::spawn(async move {
                while listener.recv().await.is_some() {
                    let received = Received {
                        number,
                        name: name.clone(),
                    };
                    match &sender {
                        Some(sender) => {
                            tracing::info!(signal = %name, "signal");
                            if sender.send(received).is_err() {
                                return;
                            }
                        }
                        None => tracing::warn!(
                            signal = %name,
                            "signal ignored (SIGTERM or SIGINT drains, SIGHUP reloads)"
                        ),
                    }
                }
            });
        }
        Signals {
            drain,
            reload: Some(reload),
        }
    }

    /// Reloads the policy and the certificates on each SIGHUP, from now on
    /// (a second call does nothing).
    pub(crate) fn reload_on_hangup(&mut self, state: AppState) {
        let Some(mut reload) = self.reload.take() else {
            return;
        };
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                tracing::info!("reloading the policy and the certificates (SIGHUP)");
                state.reload_policy();
                state.reload_certificate();
            }
        });
    }

    /// The next drain signal (never, if none can be listened to).
    pub(crate) async fn next_drain(&mut self) -> Received {
        match self.drain.recv().await {
            Some(received) => received,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn each_signal_is_handled_once_and_the_defaults_that_end_the_process_are_covered() {
        let all = handled();
        let numbers: BTreeSet<i32> = all.iter().map(|(number, _, _)| *number).collect();
        assert_eq!(numbers.len(), all.len(), "a signal listed twice");
        for (number, expected) in [
            (libc::SIGTERM, OnSignal::Drain),
            (libc::SIGINT, OnSignal::Drain),
            (libc::SIGHUP, OnSignal::Reload),
            (libc::SIGUSR1, OnSignal::Ignore),
            (libc::SIGUSR2, OnSignal::Ignore),
            (libc::SIGALRM, OnSignal::Ignore),
        ] {
            let action = all
                .iter()
                .find(|(n, _, _)| *n == number)
                .map(|(_, _, action)| *action);
            assert_eq!(action, Some(expected), "signal {number}");
        }
        // Faults and the signals nobody can catch keep their default.
        for fault in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGKILL,
            libc::SIGSTOP,
        ] {
            assert!(!numbers.contains(&fault), "signal {fault}");
        }
    }
}
