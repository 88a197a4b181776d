//! The store as an outbox: what forward targets read back from it.
//!
//! Every commit of the store writer has a number (`commits.commit_no`, in
//! the same transaction as its records; docs/contract.md §4). A forward
//! target remembers the last commit its peer acknowledged — its *cursor*,
//! saved in `state` (`component = 'forward'`, `key = <target id>`) — and
//! everything after it is its backlog. This module is the only place that
//! knows how those rows become records again: [`read_commits`] gives back
//! readings, anomalies and alert records as they were printed, in an order
//! that is the same every time the same commits are read (so a message id
//! names the same records on every re-send).

use std::sync::Arc;

use duckdb::Connection;

use crate::model::intern::Interner;
use crate::model::record::{Alert, Anomaly, Flags, Fusion, Quality, Reading, Record, Transition};
use crate::model::time::Micros;

/// The `state` component that holds forward cursors.
pub const COMPONENT: &str = "forward";

/// A forward target's place in the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The last commit whose messages were all acknowledged (0: none yet).
    pub commit: i64,
    /// Records given up on since the target was created: older than its
    /// `backlog.max_age` before they could be sent.
    #[serde(default)]
    pub dropped: u64,
}

/// Reads a target's cursor; a target without one starts at 0.
pub fn cursor(conn: &Connection, target: &str) -> duckdb::Result<Cursor> {
    let saved = super::store::read_state(conn, COMPONENT, target)?;
    Ok(saved.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default())
}

pub fn save_cursor(conn: &Connection, target: &str, c: &Cursor) -> duckdb::Result<()> {
    let value = serde_json::to_string(c).unwrap_or_default();
    super::store::write_state(conn, COMPONENT, target, &value)
}

/// One commit as the `commits` table has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    pub commit_no: i64,
    /// When it was committed (µs since the epoch).
    pub ts: Micros,
    /// Records in it: readings, anomalies and alert rows.
    pub records: u64,
}

/// The commits after `after`, oldest first, at most `limit`.
pub fn commits_after(conn: &Connection, after: i64, limit: usize) -> duckdb::Result<Vec<CommitInfo>> {
    let mut st = conn.prepare_cached(
        "SELECT commit_no, epoch_us(ts), readings + events FROM commits WHERE commit_no > ? ORDER BY commit_no LIMIT ?",
    )?;
    let rows = st.query_map(duckdb::params![after, limit as i64], |r| {
        Ok(CommitInfo { commit_no: r.get(0)?, ts: r.get(1)?, records: r.get::<_, i64>(2)?.max(0) as u64 })
    })?;
    rows.collect()
}

/// What waits after `after`: records and the time of the oldest commit.
pub fn backlog(conn: &Connection, after: i64) -> duckdb::Result<(u64, Option<Micros>)> {
    conn.prepare_cached(
        "SELECT coalesce(sum(readings + events), 0), min(epoch_us(ts)) FROM commits WHERE commit_no > ?",
    )?
    .query_row([after], |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?)))
}

/// The last commit after `after` made before `before` (µs): how far a
/// target skips when its backlog is older than `backlog.max_age`. With the
/// records of the commits skipped.
pub fn older_than(conn: &Connection, after: i64, before: Micros) -> duckdb::Result<Option<(i64, u64)>> {
    conn.prepare_cached(
        "SELECT max(commit_no), coalesce(sum(readings + events), 0) FROM commits
         WHERE commit_no > ? AND epoch_us(ts) < ?",
    )?
    .query_row(duckdb::params![after, before], |r| {
        Ok(r.get::<_, Option<i64>>(0)?.map(|c| (c, r.get::<_, i64>(1).unwrap_or(0).max(0) as u64)))
    })
}

/// Which kinds of records to read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub readings: bool,
    pub anomalies: bool,
    pub alerts: bool,
}

/// Reads records back from the store. Keeps an interner, so a long run
/// allocates each channel name once.
pub struct Reader {
    interner: Interner,
    fallback_source: Arc<str>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { interner: Interner::with_cap(100_000), fallback_source: Arc::from("store") }
    }
}

impl Reader {
    /// The records of commits `(after, upto]`, each commit's in one list:
    /// readings, then anomalies, then alert records (not the notification
    /// log), each in (time, channel, …) order. Commits without records of
    /// the asked kinds are left out.
    pub fn read_commits(
        &mut self,
        conn: &Connection,
        after: i64,
        upto: i64,
        kinds: Kinds,
    ) -> duckdb::Result<Vec<(i64, Vec<Record>)>> {
        let mut out: Vec<(i64, Vec<Record>)> = Vec::new();
        let push = |commit: i64, rec: Record, out: &mut Vec<(i64, Vec<Record>)>| match out
            .binary_search_by_key(&commit, |(c, _)| *c)
        {
            Ok(i) => out[i].1.push(rec),
            Err(i) => out.insert(i, (commit, vec![rec])),
        };
        if kinds.readings {
            let mut st = conn.prepare_cached(
                "SELECT commit_no, epoch_us(ts), channel, value, text, unit, quality, flags, source,
                        inputs, voted_out, spread
                 FROM readings WHERE commit_no > ? AND commit_no <= ? ORDER BY commit_no, ts, channel",
            )?;
            let mut rows = st.query(duckdb::params![after, upto])?;
            let mut current: Option<(i64, Vec<Record>)> = None;
            while let Some(row) = rows.next()? {
                let commit: i64 = row.get(0)?;
                let channel: String = row.get(2)?;
                let Ok(channel) = self.interner.channel(&channel) else { continue };
                let flags: Option<String> = row.get(7)?;
                let unit: Option<String> = row.get(5)?;
                let source: Option<String> = row.get(8)?;
                let text: Option<String> = row.get(4)?;
                let quality: String = row.get(6)?;
                let inputs: Option<String> = row.get(9)?;
                let fusion = match inputs {
                    None => None,
                    Some(inputs) => {
                        let voted: Option<String> = row.get(10)?;
                        let list = |s: &str, i: &mut Interner| -> Vec<Arc<str>> {
                            s.split(',').filter(|c| !c.is_empty()).filter_map(|c| i.channel(c).ok()).collect()
                        };
                        Some(Box::new(Fusion {
                            inputs: list(&inputs, &mut self.interner),
                            voted_out: list(voted.as_deref().unwrap_or(""), &mut self.interner),
                            spread: row.get::<_, Option<f64>>(11)?.unwrap_or(0.0),
                        }))
                    }
                };
                let reading = Record::Reading(Reading {
                    ts: row.get(1)?,
                    channel,
                    value: row.get(3)?,
                    text: text.map(|t| Arc::from(t.as_str())),
                    unit: unit.and_then(|u| self.interner.name("unit", &u).ok()),
                    quality: Quality::parse(&quality).unwrap_or(Quality::Bad),
                    flags: flags.as_deref().map_or(Flags::empty(), Flags::from_list),
                    source: source
                        .and_then(|s| self.interner.name("source", &s).ok())
                        .unwrap_or_else(|| self.fallback_source.clone()),
                    from_input: false,
                    fusion,
                });
                match &mut current {
                    Some((c, list)) if *c == commit => list.push(reading),
                    _ => {
                        out.extend(current.take());
                        current = Some((commit, vec![reading]));
                    }
                }
            }
            out.extend(current);
        }
        if kinds.anomalies {
            let mut st = conn.prepare_cached(
                "SELECT commit_no, epoch_us(ts), channel, detector, method, value, score, expected, threshold, detail
                 FROM anomalies WHERE commit_no > ? AND commit_no <= ? ORDER BY commit_no, ts, channel, detector",
            )?;
            let mut rows = st.query(duckdb::params![after, upto])?;
            while let Some(row) = rows.next()? {
                let a = Anomaly {
                    ts: row.get(1)?,
                    channel: row.get(2)?,
                    detector: row.get(3)?,
                    method: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    value: row.get(5)?,
                    score: row.get(6)?,
                    expected: row.get(7)?,
                    threshold: row.get(8)?,
                    detail: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
                    from_input: false,
                };
                push(row.get(0)?, Record::Anomaly(Box::new(a)), &mut out);
            }
        }
        if kinds.alerts {
            let mut st = conn.prepare_cached(
                "SELECT commit_no, epoch_us(ts), rule, state, severity, channel, value, title, body, fingerprint, labels
                 FROM alerts WHERE notifier IS NULL AND commit_no > ? AND commit_no <= ?
                 ORDER BY commit_no, ts, rule, channel",
            )?;
            let mut rows = st.query(duckdb::params![after, upto])?;
            while let Some(row) = rows.next()? {
                let state: String = row.get(3)?;
                let labels: Option<String> = row.get(10)?;
                let a = Alert {
                    ts: row.get(1)?,
                    rule: row.get(2)?,
                    state: match state.as_str() {
                        "resolved" => Transition::Resolved,
                        "flapping" => Transition::Flapping,
                        _ => Transition::Firing,
                    },
                    severity: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    channel: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    value: row.get(6)?,
                    title: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
                    body: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    fingerprint: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
                    labels: labels.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default(),
                    from_input: false,
                };
                push(row.get(0)?, Record::Alert(Box::new(a)), &mut out);
            }
        }
        Ok(out)
    }
}
