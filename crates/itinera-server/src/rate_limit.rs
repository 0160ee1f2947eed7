//! Request rate limits, keyed (per write key, per client address, per survey-link person), on
//! `governor`'s GCRA limiters. A refused request gets `429` with the true wait in `Retry-After`.

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Past this many keys, keys whose limit has fully recovered are forgotten: limits keyed by
/// client addresses must not grow without bound.
const MAX_KEYS: usize = 100_000;

/// One keyed limit; `None` when switched off (a rate of 0).
pub struct KeyedLimit(Option<Keyed>);

impl KeyedLimit {
    /// `per_second` requests a second with bursts of twice as many.
    pub fn per_second(per_second: u32) -> KeyedLimit {
        KeyedLimit(NonZeroU32::new(per_second).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::new(2).expect("2 > 0"));
            RateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        }))
    }

    /// `per_minute` requests a minute, a minute's worth at once.
    pub fn per_minute(per_minute: u32) -> KeyedLimit {
        KeyedLimit(NonZeroU32::new(per_minute).map(|r| RateLimiter::keyed(Quota::per_minute(r))))
    }

    /// Counts one request for `key`; `429` with the wait when over the limit.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}
