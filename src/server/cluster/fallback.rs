//! Direct GETs behind a cache: shared by concurrent misses, "does not
//! exist" remembered briefly, rate limited, counted.

use super::*;

// === Fallback GETs ===

pub(crate) type Fetched<T> = Result<Option<Arc<T>>, String>;

/// Direct GETs behind a cache: one in flight per object, "does not exist"
/// remembered for a moment, a rate limit over all objects, counted.
pub(crate) struct Fallback<T> {
    pub(crate) in_flight: Mutex<HashMap<String, Shared<SharedBoxFuture<'static, Fetched<T>>>>>,
    pub(crate) absent: Mutex<HashMap<String, Instant>>,
    pub(crate) bucket: Mutex<(f64, Instant)>,
    pub(crate) options: CacheOptions,
    pub(crate) health: Arc<CacheHealth>,
    pub(crate) last_log: Mutex<Option<Instant>>,
}

impl<T: Send + Sync + 'static> Fallback<T> {
    pub(crate) fn new(options: CacheOptions, health: Arc<CacheHealth>) -> Fallback<T> {
        Fallback {
            in_flight: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
            bucket: Mutex::new((f64::from(options.gets_per_second), Instant::now())),
            options,
            health,
            last_log: Mutex::new(None),
        }
    }

    /// GETs `key` with `fetch`, sharing the GET with concurrent callers.
    pub(crate) async fn get(
        &self,
        key: String,
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
                if !self.take_token() {
                    drop(in_flight);
                    if let Some(metrics) = self.health.metrics.get() {
                        metrics.fallback_limited.inc();
                    }
                    return Err(format!(
                        "not in the watch cache, and direct GETs are rate limited ({}/s)",
                        self.options.gets_per_second
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

    pub(crate) fn take_token(&self) -> bool {
        let rate = f64::from(self.options.gets_per_second.max(1));
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = *bucket;
        let tokens = (tokens + at.elapsed().as_secs_f64() * rate).min(rate);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, Instant::now());
            true
        } else {
            *bucket = (tokens, Instant::now());
            false
        }
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
