//! Direct GETs behind a cache: shared by concurrent misses, "does not
//! exist" remembered briefly, rate limited, counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture as SharedBoxFuture, Shared};

use super::{CacheHealth, CacheOptions};

// === Fallback GETs ===

pub(crate) type Fetched<T> = Result<Option<Arc<T>>, String>;

/// Direct GETs behind a cache: one in flight per object, "does not exist"
/// remembered for a moment, a rate limit over all objects with a burst
/// allowance, shared fairly between namespaces, counted.
pub(crate) struct Fallback<T> {
    pub(crate) in_flight: Mutex<HashMap<String, Shared<SharedBoxFuture<'static, Fetched<T>>>>>,
    pub(crate) absent: Mutex<HashMap<String, Instant>>,
    pub(crate) bucket: Mutex<Bucket>,
    /// One bucket per namespace that asked lately (at most
    /// [`MAX_NAMESPACE_BUCKETS`]).
    pub(crate) namespaces: Mutex<HashMap<String, Bucket>>,
    pub(crate) options: CacheOptions,
    pub(crate) health: Arc<CacheHealth>,
    pub(crate) last_log: Mutex<Option<Instant>>,
}

impl<T: Send + Sync + 'static> Fallback<T> {
    pub(crate) fn new(options: CacheOptions, health: Arc<CacheHealth>) -> Fallback<T> {
        Fallback {
            in_flight: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
            bucket: Mutex::new(Bucket::full(options.get_burst)),
            namespaces: Mutex::new(HashMap::new()),
            options,
            health,
            last_log: Mutex::new(None),
        }
    }

    /// GETs `key` with `fetch`, sharing the GET with concurrent callers.
    pub(crate) async fn get(
        &self,
        key: String,
        namespace: &str,
        fetch: impl FnOnce() -> SharedBoxFuture<'static, Fetched<T>>,
    ) -> Fetched<T> {
        {
            let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
            match absent.get(&key) {
                Some(at) if at.elapsed() < self.options.negative_ttl => return Ok(None),
                Some(_) => {
                    absent.remove(&key);
                }
                None => {}
            }
        }
        let shared = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(shared) = in_flight.get(&key) {
                shared.clone()
            } else {
                if let Err(limit) = self.take_token(namespace) {
                    drop(in_flight);
                    if let Some(metrics) = self.health.metrics.get() {
                        metrics.fallback_limited.inc();
                    }
                    return Err(format!(
                        "not in the watch cache, and direct GETs are rate limited ({limit})"
                    ));
                }
                if let Some(metrics) = self.health.metrics.get() {
                    metrics.fallback_gets.inc();
                }
                let shared = fetch().shared();
                in_flight.insert(key.clone(), shared.clone());
                shared
            }
        };
        let result = shared.await;
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        match &result {
            Ok(None) => {
                let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
                // Bounded: expired entries go first, then the map is reset.
                if absent.len() >= 4096 {
                    absent.retain(|_, at| at.elapsed() < self.options.negative_ttl);
                    if absent.len() >= 4096 {
                        absent.clear();
                    }
                }
                absent.insert(key, Instant::now());
            }
            Ok(Some(_)) => {}
            Err(error) => self.failed(&key, error),
        }
        result
    }

    /// Takes a GET from the shared bucket and from `namespace`'s, or says
    /// which limit refused it.
    pub(crate) fn take_token(&self, namespace: &str) -> Result<(), String> {
        let rate = f64::from(self.options.gets_per_second.max(1));
        let burst = f64::from(self.options.get_burst.max(1));
        // One namespace: half the rate, a quarter of the burst (at least
        // one GET either way).
        let (own_rate, own_burst) = ((rate / 2.0).max(1.0), (burst / 4.0).max(1.0));
        let mut shared = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if namespaces.len() >= MAX_NAMESPACE_BUCKETS && !namespaces.contains_key(namespace) {
            // A full bucket is what a new one starts as: forgetting it
            // costs nothing; if every one is in use, start afresh.
            namespaces.retain(|_, bucket| bucket.level(own_rate, own_burst) < own_burst);
            if namespaces.len() >= MAX_NAMESPACE_BUCKETS {
                namespaces.clear();
            }
        }
        let own = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| Bucket::full(self.options.get_burst.div_ceil(4)));
        if own.level(own_rate, own_burst) < 1.0 {
            return Err(format!(
                "namespace {namespace}: {}/s, burst {}",
                own_rate,
                own_burst.floor()
            ));
        }
        if shared.level(rate, burst) < 1.0 {
            return Err(format!(
                "{}/s, burst {}",
                self.options.gets_per_second,
                burst.floor()
            ));
        }
        own.take();
        shared.take();
        Ok(())
    }

    /// Counts a failed GET; logs at most one line every 10 s.
    pub(crate) fn failed(&self, key: &str, error: &str) {
        if let Some(metrics) = self.health.metrics.get() {
            metrics.fallback_failures.inc();
        }
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                resource = self.health.resource,
                object = key,
                %error,
                "direct GET failed (logged at most every 10 s; see virt_sizer_cache_fallback_failures_total)"
            );
        }
    }
}

/// Namespaces whose fallback GETs are limited separately at once; past
/// this, buckets that have refilled are forgotten.
pub(crate) const MAX_NAMESPACE_BUCKETS: usize = 1024;

/// A token bucket: tokens as of an instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn full(capacity: u32) -> Bucket {
        Bucket {
            tokens: f64::from(capacity.max(1)),
            at: Instant::now(),
        }
    }

    /// Refills at `rate` per second up to `capacity`, and says the level.
    fn level(&mut self, rate: f64, capacity: f64) -> f64 {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(capacity);
        self.at = now;
        self.tokens
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback(gets_per_second: u32, get_burst: u32) -> Fallback<()> {
        Fallback::new(
            CacheOptions {
                gets_per_second,
                get_burst,
                ..CacheOptions::default()
            },
            CacheHealth::new("virtualmachineinstances", Duration::from_secs(120)),
        )
    }

    /// A burst of 200 after a quiet spell: one namespace takes at most a
    /// quarter of it (50), and the other namespaces still get theirs.
    #[test]
    fn a_burst_is_shared_between_namespaces() {
        let fallback = fallback(20, 200);
        let taken = (0..200)
            .filter(|_| fallback.take_token("noisy").is_ok())
            .count();
        // 50, plus at most what refills at 10/s while the loop runs.
        assert!((50..=51).contains(&taken), "{taken}");
        let refused = fallback.take_token("noisy").unwrap_err();
        assert!(refused.starts_with("namespace noisy: 10/s"), "{refused}");
        for quiet in ["a", "b", "c"] {
            let taken = (0..50)
                .filter(|_| fallback.take_token(quiet).is_ok())
                .count();
            assert!(taken >= 49, "{quiet}: {taken}");
        }
        // 200 taken in all (50 × 4): the shared bucket is empty now, for
        // every namespace.
        let refused = fallback.take_token("d").unwrap_err();
        assert!(refused.starts_with("20/s, burst 200"), "{refused}");
    }
}
