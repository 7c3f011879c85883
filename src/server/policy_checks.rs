//! Policy checks (`/validate-policy`) off the runtime workers: each runs on
//! the blocking pool, at most [`MAX_POLICY_CHECKS`] at once, and is waited
//! for [`POLICY_CHECK_BUDGET`] at most. A check past the cap is refused at
//! once rather than queued (a queue would hold each waiting policy's text),
//! and one past the budget is answered without its result; it keeps its
//! slot until it ends, so the cap bounds the checks actually running.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Policy checks running at once, at most.
pub const MAX_POLICY_CHECKS: usize = 2;

/// How long a policy check is waited for: well within the policy
/// webhook's `timeoutSeconds` (5), so the apiserver gets virt-sizer's
/// refusal rather than a timeout, which `failurePolicy: Ignore` would
/// admit. A check within the policy's bounds takes milliseconds.
pub const POLICY_CHECK_BUDGET: Duration = Duration::from_secs(2);

/// The slots and the budget of the checks.
#[derive(Debug)]
pub(crate) struct PolicyChecks {
    slots: Arc<Semaphore>,
    budget: Duration,
}

/// How a check ended, as far as its caller waited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checked<T> {
    /// It ran, with this result.
    Done(T),
    /// Every slot was taken: it did not run.
    Busy,
    /// It did not end within the budget (it runs on, in its slot).
    Late,
    /// It panicked, with this message.
    Panicked(String),
}

impl PolicyChecks {
    /// At most `max` checks at once, each waited for `budget`.
    pub(crate) fn new(max: usize, budget: Duration) -> PolicyChecks {
        PolicyChecks {
            slots: Arc::new(Semaphore::new(max)),
            budget,
        }
    }

    /// The budget each check is waited for.
    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    /// Runs `check` on the blocking pool in a free slot, or not at all.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Checked<T> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Checked::Busy;
        };
        let running = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            check()
        });
        match tokio::time::timeout(self.budget, running).await {
            Ok(Ok(result)) => Checked::Done(result),
            Ok(Err(failed)) => Checked::Panicked(failed.to_string()),
            Err(_) => Checked::Late,
        }
    }
}

impl Default for PolicyChecks {
    fn default() -> Self {
        PolicyChecks::new(MAX_POLICY_CHECKS, POLICY_CHECK_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[tokio::test]
    async fn a_check_past_the_cap_is_refused_at_once_and_a_slot_frees_when_it_ends() {
        let checks = Arc::new(PolicyChecks::new(2, Duration::from_secs(10)));
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        let mut running = Vec::new();
        for _ in 0..2 {
            let (checks, released) = (checks.clone(), released.clone());
            running.push(tokio::spawn(async move {
                checks
                    .run(move || {
                        let _ = released.lock().map(|released| released.recv());
                        "done"
                    })
                    .await
            }));
        }
        // Both slots are taken once both checks started.
        while checks.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(checks.run(|| "third").await, Checked::Busy);
        for _ in 0..2 {
            release.send(()).expect("a check waits");
        }
        for check in running {
            assert_eq!(check.await.expect("task"), Checked::Done("done"));
        }
        assert_eq!(checks.run(|| "fourth").await, Checked::Done("fourth"));
    }

    #[tokio::test]
    async fn a_check_past_the_budget_is_answered_late_and_keeps_its_slot() {
        let checks = PolicyChecks::new(1, Duration::from_millis(50));
        let (release, released) = mpsc::channel::<()>();
        let late = checks
            .run(move || {
                let _ = released.recv();
            })
            .await;
        assert_eq!(late, Checked::Late);
        // Still running: its slot is still taken.
        assert_eq!(checks.run(|| ()).await, Checked::Busy);
        release.send(()).expect("the late check waits");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while checks.slots.available_permits() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was not freed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(checks.run(|| 7).await, Checked::Done(7));
    }

    #[tokio::test]
    async fn a_panicking_check_is_reported() {
        let checks = PolicyChecks::default();
        let checked: Checked<()> = checks.run(|| panic!("checker bug")).await;
        assert!(
            matches!(&checked, Checked::Panicked(message) if message.contains("panic")),
            "{checked:?}"
        );
    }
}
