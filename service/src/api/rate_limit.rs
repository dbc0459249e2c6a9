//! Per-key token buckets: one for requests, one for tokens, each holding a minute's budget
//! and refilling continuously. A request is charged its prompt tokens plus the completion
//! budget it asks for; what it did not use is refunded when it ends.
//!
//! The bucket arithmetic is a plain synchronous type taking `now`, so it is unit-tested
//! without clocks or sleeps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::auth::Tenant;
use super::errors::{ApiError, LimitedResource};

/// A continuously refilling bucket of `capacity` units per minute.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    level: f64,
    per_second: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket holding `per_minute` units.
    pub fn new(per_minute: u64, now: Instant) -> Self {
        let capacity = per_minute as f64;
        TokenBucket {
            capacity,
            level: capacity,
            per_second: capacity / 60.0,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Takes `n` units, or says how many whole seconds until `n` are available (a request
    /// larger than the whole bucket waits a full minute and is refused again: it can never fit).
    pub fn try_take(&mut self, n: u64, now: Instant) -> Result<(), u64> {
        self.refill(now);
        let n = n as f64;
        if n <= self.level {
            self.level -= n;
            return Ok(());
        }
        if n > self.capacity {
            return Err(60);
        }
        Err(((n - self.level) / self.per_second).ceil().max(1.0) as u64)
    }

    /// Returns unused units (never above capacity).
    pub fn give_back(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.level = (self.level + n as f64).min(self.capacity);
    }
}

#[derive(Debug)]
struct KeyBuckets {
    requests: TokenBucket,
    tokens: TokenBucket,
}

/// All keys' buckets. The map holds one entry per configured key, so it is bounded by the
/// keys file.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, KeyBuckets>>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_buckets<T>(
        &self,
        tenant: &Tenant,
        f: impl FnOnce(&mut KeyBuckets, Instant) -> T,
    ) -> Option<T> {
        let (Some(rpm), Some(tpm)) = (tenant.requests_per_minute, tenant.tokens_per_minute) else {
            return None;
        };
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the buckets are
        // still plain numbers, so keep using them.
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let buckets = map.entry(tenant.id.clone()).or_insert_with(|| KeyBuckets {
            requests: TokenBucket::new(rpm, now),
            tokens: TokenBucket::new(tpm, now),
        });
        Some(f(buckets, now))
    }

    /// Charges one request.
    pub fn admit_request(&self, tenant: &Tenant) -> Result<(), ApiError> {
        self.with_buckets(tenant, |b, now| b.requests.try_take(1, now))
            .unwrap_or(Ok(()))
            .map_err(|retry_after_s| ApiError::RateLimited {
                key_id: tenant.id.clone(),
                resource: LimitedResource::Requests,
                limit: tenant.requests_per_minute.unwrap_or(0),
                requested: 1,
                retry_after_s,
            })
    }

    /// Charges `tokens` (prompt plus completion budget).
    pub fn admit_tokens(&self, tenant: &Tenant, tokens: u64) -> Result<(), ApiError> {
        self.with_buckets(tenant, |b, now| b.tokens.try_take(tokens, now))
            .unwrap_or(Ok(()))
            .map_err(|retry_after_s| ApiError::RateLimited {
                key_id: tenant.id.clone(),
                resource: LimitedResource::Tokens,
                limit: tenant.tokens_per_minute.unwrap_or(0),
                requested: tokens,
                retry_after_s,
            })
    }

    /// Refunds tokens a request was charged but did not use.
    pub fn refund_tokens(&self, tenant: &Tenant, tokens: u64) {
        self.with_buckets(tenant, |b, now| b.tokens.give_back(tokens, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_keys::Role;
    use std::time::Duration;

    #[test]
    fn bucket_drains_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(60, t0);
        for _ in 0..60 {
            bucket.try_take(1, t0).unwrap();
        }
        // Empty: one unit refills per second.
        assert_eq!(bucket.try_take(1, t0), Err(1));
        assert_eq!(bucket.try_take(5, t0), Err(5));
        assert!(bucket.try_take(5, t0 + Duration::from_secs(5)).is_ok());
        // More than the whole bucket can never fit.
        assert_eq!(bucket.try_take(61, t0 + Duration::from_secs(600)), Err(60));
        // Refunds are capped at capacity.
        bucket.give_back(1000, t0 + Duration::from_secs(600));
        assert!(bucket.try_take(60, t0 + Duration::from_secs(600)).is_ok());
        assert!(bucket.try_take(1, t0 + Duration::from_secs(600)).is_err());
    }

    fn tenant(id: &str, rpm: u64, tpm: u64) -> Tenant {
        Tenant {
            id: id.into(),
            role: Role::User,
            requests_per_minute: Some(rpm),
            tokens_per_minute: Some(tpm),
        }
    }

    #[test]
    fn limiter_is_per_key_and_answers_429_with_retry_after() {
        let limiter = RateLimiter::new();
        let a = tenant("a", 2, 100);
        let b = tenant("b", 2, 100);
        limiter.admit_request(&a).unwrap();
        limiter.admit_request(&a).unwrap();
        let err = limiter.admit_request(&a).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        assert_eq!(err.kind(), "requests");
        assert!(err.retry_after().unwrap() >= 1);
        // Another key is unaffected.
        limiter.admit_request(&b).unwrap();
        let err = limiter.admit_tokens(&b, 101).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            ("tokens", Some("rate_limit_exceeded"))
        );
        limiter.admit_tokens(&b, 100).unwrap();
        assert!(limiter.admit_tokens(&b, 10).is_err());
        limiter.refund_tokens(&b, 10);
        limiter.admit_tokens(&b, 10).unwrap();
    }

    #[test]
    fn unlimited_tenants_are_never_limited() {
        let limiter = RateLimiter::new();
        let t = crate::api::auth::Auth::Disabled.authenticate(None).unwrap();
        assert_eq!((t.requests_per_minute, t.tokens_per_minute), (None, None));
        for _ in 0..1000 {
            limiter.admit_request(&t).unwrap();
        }
        limiter.admit_tokens(&t, u64::MAX).unwrap();
    }
}
