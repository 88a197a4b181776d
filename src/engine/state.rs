//! Stage state kept in the store between runs, and which runs keep it.
//!
//! | state | kept by | why |
//! |---|---|---|
//! | channel validation (`validate`/`channels`) | live runs | cron with `--once` behaves like the daemon |
//! | fusion filters and vote-out timers (`fuse`/`groups`) | live runs up to `fuse` | a Kalman estimate continues |
//! | computed channels (`compute`/`channels`): last values, sums, windows, counters | live runs up to `fuse` | an energy total continues |
//! | detectors (`detect`/`detectors`) | live runs up to `detect` | windows and forests continue |
//! | alert rules (`alert`/`rules`) and silences | live runs and `--input` runs | notifications are side effects that must not repeat |
//!
//! Replays (`--input`, backtests) and virtual-clock simulations live in their
//! own time: they neither read nor write validation or detector state. A
//! virtual-clock simulation does not touch alert state either.
//!
//! The state is saved at the end of a run and, with a store, every
//! `store.checkpoint` and whenever an alert changes state: the engine takes a
//! [`Keep::snapshot`] after a batch and hands it to the store writer with
//! that batch, which writes both in one transaction (`crate::sinks::store`).

use std::path::Path;
use std::time::Duration;

use crate::model::time::Micros;
use crate::sinks::store::{StateRow, Store};
use crate::stages::alert::Silence;
use crate::stages::detect::Detectors;

use super::chain::Chain;
use super::EngineError;

/// Where channel-validation state is kept in the store's `state` table.
const VALIDATE: (&str, &str) = ("validate", "channels");
/// Where fusion state is kept.
const FUSE: (&str, &str) = ("fuse", "groups");
/// Where the state of computed channels is kept.
const COMPUTE: (&str, &str) = ("compute", "channels");
/// Where detector state is kept.
const DETECT: (&str, &str) = ("detect", "detectors");
/// Where alert state (pending, firing, last notified) is kept.
const ALERT: (&str, &str) = ("alert", "rules");
/// Where the silences of `alert --silence` are kept.
pub const SILENCES: (&str, &str) = ("alert", "silences");

/// Which stage state a run continues from the store and saves at its end.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Keep {
    pub validator: bool,
    pub fuser: bool,
    pub computer: bool,
    pub detectors: bool,
    pub alerts: bool,
}

impl Keep {
    /// `live`: a run on the wall clock that reads sources (not `--input`, not a backtest).
    pub fn of(live: bool, input: bool, chain: &Chain) -> Keep {
        Keep {
            validator: live,
            fuser: live && !chain.fuser.is_empty(),
            computer: live && !chain.computer.is_empty(),
            detectors: live && !chain.detectors.is_empty(),
            alerts: !chain.alerter.is_empty() && (live || input),
        }
    }

    /// Restores what this run keeps into `chain`: the stage state from
    /// `resume` when given (a reload continues from the run before it),
    /// else from the store; silences from the store.
    pub fn restore(
        self,
        store: Option<&Store>,
        resume: Option<&[StateRow]>,
        chain: &mut Chain,
    ) -> Result<(), EngineError> {
        let load = |(component, key): (&str, &str)| -> Result<Option<String>, EngineError> {
            match (resume, store) {
                (Some(rows), _) => {
                    Ok(rows.iter().find(|r| r.component == component && r.key == key).map(|r| r.value.clone()))
                }
                (None, Some(store)) => store.load_state(component, key).map_err(EngineError::Store),
                (None, None) => Ok(None),
            }
        };
        if self.detectors {
            if let Some(saved) = load(DETECT)? {
                chain.detectors.restore_state(&saved);
            }
        }
        if self.alerts {
            if let Some(saved) = load(ALERT)? {
                chain.alerter.restore_state(&saved);
            }
            if let Some(store) = store {
                for s in load_silences(store)? {
                    chain.alerter.silence(s);
                }
            }
        }
        if self.validator {
            if let Some(saved) = load(VALIDATE)? {
                chain.validator.restore_state(&saved);
            }
        }
        if self.fuser {
            if let Some(saved) = load(FUSE)? {
                chain.fuser.restore_state(&saved);
            }
        }
        if self.computer {
            if let Some(saved) = load(COMPUTE)? {
                chain.computer.restore_state(&saved);
            }
        }
        Ok(())
    }

    /// Whether this run keeps any state.
    pub fn any(self) -> bool {
        self.validator || self.fuser || self.computer || self.detectors || self.alerts
    }

    /// What this run keeps from `chain`, as it is now.
    pub fn snapshot(self, chain: &Chain) -> Vec<StateRow> {
        let mut rows = Vec::new();
        let mut put = |(component, key): (&'static str, &'static str), value: String| {
            rows.push(StateRow { component, key, value })
        };
        if self.validator {
            put(VALIDATE, chain.validator.save_state());
        }
        if self.fuser {
            put(FUSE, chain.fuser.save_state());
        }
        if self.computer {
            put(COMPUTE, chain.computer.save_state());
        }
        if self.detectors {
            put(DETECT, chain.detectors.save_state());
        }
        if self.alerts {
            put(ALERT, chain.alerter.save_state());
        }
        rows
    }

    /// Saves what this run keeps from `chain`.
    pub fn save(self, store: &Store, chain: &Chain) -> Result<(), EngineError> {
        store.save_states(&self.snapshot(chain)).map_err(EngineError::Store)
    }
}

/// The silences kept in the store (`alert --silence`).
pub fn load_silences(store: &Store) -> Result<Vec<Silence>, EngineError> {
    let saved = store.load_state(SILENCES.0, SILENCES.1).map_err(EngineError::Store)?;
    Ok(saved.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
}

/// Saves the silences (`alert --silence`, `--unsilence`).
pub fn save_silences(store: &Store, silences: &[Silence]) -> Result<(), EngineError> {
    let json = serde_json::to_string(silences).unwrap_or_else(|_| "[]".into());
    store.save_state(SILENCES.0, SILENCES.1, &json).map_err(EngineError::Store)
}

/// Trains the detectors that learn from history (`iforest`) on the stored
/// readings before `before` of every channel they follow and have not
/// trained on yet, and puts the readings back into restored windows
/// (`zscore`, `mad`). Histories bounded in time come from one scan of the
/// table; unbounded ones (a forest without `warmup`) one channel at a time.
pub(super) fn warm_up(
    detectors: &mut Detectors,
    conn: &duckdb::Connection,
    before: Micros,
    path: &Path,
) -> Result<(), EngineError> {
    let fail = |e: duckdb::Error| EngineError::StoreRead(path.to_path_buf(), e);
    let known = crate::sources::replay::channels(conn).map_err(fail)?;
    let wanted: Vec<(String, Option<Duration>, usize)> =
        detectors.wanting_history(&known, before).into_iter().map(|(c, d, n)| (c.to_string(), d, n)).collect();
    let mut trained = 0;
    let since_of = |d: Duration| before.saturating_sub(d.as_micros() as i64);
    let bounded: crate::model::intern::FxHashMap<&str, (Micros, usize)> =
        wanted.iter().filter_map(|(c, d, n)| d.map(|d| (c.as_str(), (since_of(d), *n)))).collect();
    if let Some(&earliest) = bounded.values().map(|(s, _)| s).min() {
        let most = bounded.values().map(|&(_, n)| n).max().unwrap_or(0);
        crate::sources::replay::histories(conn, earliest, before, most, &mut |channel, values| {
            let Some(&(since, limit)) = bounded.get(channel) else { return };
            let from = values.partition_point(|(ts, _)| *ts < since);
            let values = &values[from..];
            let values = &values[values.len().saturating_sub(limit)..];
            if !values.is_empty() {
                trained += 1;
                detectors.warm_up(channel, values);
            }
        })
        .map_err(fail)?;
    }
    for (channel, _, limit) in wanted.iter().filter(|(_, d, _)| d.is_none()) {
        let history = crate::sources::replay::history(conn, channel, i64::MIN, before, *limit).map_err(fail)?;
        if !history.is_empty() {
            trained += 1;
            detectors.warm_up(channel, &history);
        }
    }
    if trained > 0 {
        tracing::info!(channels = trained, "detectors trained on the store's history");
    }
    Ok(())
}
