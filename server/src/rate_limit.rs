//! Token buckets: the one shape behind every rate limit of the relay, and the per-participant
//! limit on chat tool calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::ParticipantKey;

/// How fast a [`TokenBucket`] refills and how many tokens it holds at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second (always positive).
    pub per_sec: f64,
    /// Most tokens the bucket holds: the burst allowed after a quiet spell (at least 1).
    pub burst: f64,
}

impl Rate {
    /// `per_sec` sustained with bursts of `burst` (clamped to something that can refill).
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec: per_sec.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
        }
    }
}

/// The state of one token bucket; its [`Rate`] is kept by the owner (shared by many buckets).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding its whole burst.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.updated = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.per_sec))
        }
    }

    /// Whether a token is available, without taking it.
    pub fn has_token(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket is back to its whole burst (it can be forgotten).
    pub fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// One token bucket per participant: `burst` calls at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<ParticipantKey, TokenBucket>>,
}

impl RateLimiter {
    /// A limiter allowing `burst` calls at once and `per_sec` sustained.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            rate: Rate::new(per_sec, f64::from(burst)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `who`, or says how long until one is available.
    pub fn check(&self, who: &ParticipantKey) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(who.clone())
            .or_insert(TokenBucket::full(self.rate, now))
            .take(self.rate, now)
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

    #[test]
    fn a_bucket_refills_to_its_burst_and_no_further() {
        let rate = Rate::new(10.0, 2.0);
        let start = Instant::now();
        let mut bucket = TokenBucket::full(rate, start);
        assert!(bucket.take(rate, start).is_ok());
        assert!(bucket.take(rate, start).is_ok());
        assert!(!bucket.has_token(rate, start));
        let wait = bucket.take(rate, start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(90));
        let later = start + Duration::from_secs(60);
        assert!(bucket.is_full(rate, later));
        assert!(bucket.take(rate, later).is_ok());
        assert!(bucket.take(rate, later).is_ok());
        assert!(
            bucket.take(rate, later).is_err(),
            "a long pause refills only the burst"
        );
    }
}
