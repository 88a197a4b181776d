//! Which stored resolution answers a range: raw readings or a rollup tier.

use std::time::Duration;

use crate::compile::plan::RollupPlan;

/// What the store keeps at which resolution: raw readings for `raw_keep`
/// (`None`: forever) and the rollup tiers. `serve` reads a range from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tiers {
    pub raw_keep: Option<Duration>,
    pub rollups: Vec<RollupPlan>,
}

/// Where buckets of a range come from: raw readings, or the rollup tier of
/// that bucket length (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierSource {
    Readings,
    Rollup(i64),
}

impl Tiers {
    /// The tier to read buckets of `every` µs since `since` from (at `now`),
    /// and the bucket length the answer then has.
    ///
    /// A tier covers the range when it keeps data as old as `since`. Of
    /// those whose bucket divides `every`, the coarsest: every such tier
    /// gives the same min/max/avg/count, and the coarsest has the fewest
    /// rows. When none divides it (a 10s bucket for a range older than the
    /// raw readings), the finest tier that covers, with buckets rounded up
    /// to a multiple of its own; when none covers, the one kept longest.
    pub fn choose(&self, now: i64, since: i64, every: i64) -> (TierSource, i64) {
        let every = every.max(1);
        let covers = |keep: Option<Duration>| {
            keep.is_none_or(|k| since >= now.saturating_sub(k.as_micros().min(i64::MAX as u128) as i64))
        };
        let mut tiers: Vec<(TierSource, i64, Option<Duration>)> = vec![(TierSource::Readings, 1, self.raw_keep)];
        tiers.extend(self.rollups.iter().map(|r| (TierSource::Rollup(r.every_us()), r.every_us(), r.keep)));
        let round_up = |e: i64| (every + e - 1) / e * e;
        if let Some(t) = tiers.iter().filter(|t| covers(t.2) && every % t.1 == 0).max_by_key(|t| t.1) {
            return (t.0, every);
        }
        if let Some(t) = tiers.iter().filter(|t| covers(t.2)).min_by_key(|t| t.1) {
            return (t.0, round_up(t.1));
        }
        let longest = |t: &&(TierSource, i64, Option<Duration>)| (t.2.map_or(u128::MAX, |k| k.as_micros()), -t.1);
        let t = tiers.iter().max_by_key(longest).expect("the readings are a tier");
        (t.0, round_up(t.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn tiers() -> Tiers {
        let d = |us: i64| Duration::from_micros(us as u64);
        Tiers {
            raw_keep: Some(d(30 * DAY)),
            rollups: vec![
                RollupPlan { every: d(MIN), keep: Some(d(365 * DAY)) },
                RollupPlan { every: d(HOUR), keep: None },
            ],
        }
    }

    #[test]
    fn the_coarsest_tier_that_divides_the_bucket_and_covers_the_range_answers() {
        let now = 1_000 * DAY;
        let t = tiers();
        // Within the raw retention: 1h buckets from the 1h tier, 5m from 1m, 10s from raw.
        assert_eq!(t.choose(now, now - DAY, HOUR), (TierSource::Rollup(HOUR), HOUR));
        assert_eq!(t.choose(now, now - DAY, 5 * MIN), (TierSource::Rollup(MIN), 5 * MIN));
        assert_eq!(t.choose(now, now - DAY, 10_000_000), (TierSource::Readings, 10_000_000));
        // Past the raw retention, 10s buckets come from the 1m tier, as 1m buckets.
        assert_eq!(t.choose(now, now - 60 * DAY, 10_000_000), (TierSource::Rollup(MIN), MIN));
        // Past a year, only the 1h tier covers: 90m buckets become 2h.
        assert_eq!(t.choose(now, now - 400 * DAY, 90 * MIN), (TierSource::Rollup(HOUR), 2 * HOUR));
        // No rollups: the readings, whatever the range.
        let raw = Tiers { raw_keep: Some(Duration::from_secs(60)), rollups: vec![] };
        assert_eq!(raw.choose(now, 0, HOUR), (TierSource::Readings, HOUR));
        // Nothing covers: the tier kept longest.
        let short = Tiers { raw_keep: Some(Duration::from_secs(60)), rollups: vec![tiers().rollups[0].clone()] };
        assert_eq!(short.choose(now, 0, 10_000_000), (TierSource::Rollup(MIN), MIN));
    }
}
