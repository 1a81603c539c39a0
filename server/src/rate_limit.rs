//! Per-participant token buckets for chat tool calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::ParticipantKey;

/// One token bucket per participant: `burst` calls at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<ParticipantKey, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter allowing `burst` calls at once and `per_sec` sustained.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `who`, or says how long until one is available.
    pub fn check(&self, who: &ParticipantKey) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(who.clone()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_sec;
            Err(Duration::from_secs_f64(wait))
        }
    }

    /// Forgets `who` (its participant ended).
    pub fn forget(&self, who: &ParticipantKey) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_a_retry_hint() {
        let limiter = RateLimiter::new(1.0, 3);
        let who = ParticipantKey::for_session("x");
        for _ in 0..3 {
            assert!(limiter.check(&who).is_ok());
        }
        let wait = limiter.check(&who).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        let other = ParticipantKey::for_session("y");
        assert!(limiter.check(&other).is_ok(), "buckets are per participant");
    }
}
