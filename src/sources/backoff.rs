//! Exponential backoff with jitter for reconnecting sources.
//!
//! The n-th consecutive failure waits `min(cap, base × 2ⁿ)`, scaled by a
//! random factor in [0.5, 1.0] ("equal jitter"), so a plant full of devices
//! that lost the same switch does not reconnect in lockstep. The first retry
//! after a success is immediate.

use std::time::Duration;

use crate::model::rng::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    /// `seed` should differ between sources (their id's hash and the clock).
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff { base, cap: cap.max(base), failures: 0, rng: Rng(seed) }
    }

    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure; returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let full = self.base.saturating_mul(1u32 << exp.min(20)).min(self.cap);
        full.mul_f64(0.5 + 0.5 * self.rng.unit())
    }

    /// The longest wait this backoff can produce.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 42);
        let waits: Vec<Duration> = (0..12).map(|_| b.fail()).collect();
        for (n, w) in waits.iter().enumerate() {
            let full = Duration::from_millis(100).saturating_mul(1 << n).min(Duration::from_secs(5));
            assert!(*w >= full / 2 && *w <= full, "failure {n}: {w:?} not in [{:?}, {full:?}]", full / 2);
        }
        assert!(waits[11] >= Duration::from_millis(2500));
        b.succeed();
        assert!(b.fail() <= Duration::from_millis(100));
    }
}
