//! `detect --from-store`: stored readings, in time order, as a source (a
//! backtest). They were validated and fused when they were stored, so a
//! replay goes to the detectors only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use duckdb::Connection;

use crate::model::intern::Interner;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::Micros;

/// Readings per batch handed to the engine.
const BATCH: usize = 4096;

/// The readings of a replay's range `[since, until)`: how many (the
/// progress bar's total) and the first and last time (µs) among them.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub since: Micros,
    pub until: Micros,
    pub rows: u64,
    times: Option<(Micros, Micros)>,
}

impl Span {
    /// The bounds of the time windows of about `window` readings its range
    /// is read in ([`window_bounds`]); none when it holds no reading.
    fn windows(&self, conn: &Connection, window: u64) -> duckdb::Result<Vec<Micros>> {
        match self.times {
            Some(times) => window_bounds(conn, (self.since, self.until), self.rows.div_ceil(window), times),
            None => Ok(Vec::new()),
        }
    }
}

/// The [`Span`] of `[since, until)`, in one scan.
pub fn span(conn: &Connection, since: Micros, until: Micros) -> duckdb::Result<Span> {
    let (rows, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), min(epoch_us(ts)), max(epoch_us(ts)) FROM readings
         WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ?",
        duckdb::params![since, until],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(Span { since, until, rows: rows.max(0) as u64, times: first.zip(last) })
}

/// Every channel the store has readings of.
pub fn channels(conn: &Connection) -> duckdb::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT DISTINCT channel FROM readings ORDER BY channel")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// A channel's values, oldest first: (time in µs, value).
pub type Values = [(Micros, f64)];

/// The judged values (not bad, with a value) of every channel in
/// `[since, before)`, the last `limit` of each at most: `each` gets a
/// channel and its values, oldest first, one channel after the other (in
/// the order of their names). Many channels' histories cost one pass over
/// the table rather than one each.
///
/// The range is read in the replay's time windows ([`WINDOW`]), each sorted
/// on its own: one `ORDER BY channel, ts` over a long history (a forest's
/// `warmup` of 20 h over 100 channels: 7.2M readings) runs out of the
/// store's 32MB as the replay did. What a channel keeps is bounded by
/// `limit`, not by the range.
pub fn histories(
    conn: &Connection,
    since: Micros,
    before: Micros,
    limit: usize,
    each: &mut dyn FnMut(&str, &Values),
) -> duckdb::Result<()> {
    histories_in_windows(conn, (since, before), limit, WINDOW, each)
}

/// [`histories`], in windows of about `window` readings.
fn histories_in_windows(
    conn: &Connection,
    (since, before): (Micros, Micros),
    limit: usize,
    window: u64,
    each: &mut dyn FnMut(&str, &Values),
) -> duckdb::Result<()> {
    let bounds = span(conn, since, before)?.windows(conn, window)?;
    let mut kept: std::collections::BTreeMap<String, VecDeque<(Micros, f64)>> = Default::default();
    // Moves a channel's values of one window onto what it kept before.
    let mut keep = |channel: &str, values: &mut Vec<(Micros, f64)>| {
        let q = match kept.get_mut(channel) {
            Some(q) => q,
            None => kept.entry(channel.to_string()).or_default(),
        };
        q.extend(values.drain(..));
        let excess = q.len().saturating_sub(limit);
        q.drain(..excess);
    };
    for w in bounds.windows(2) {
        let mut st = conn.prepare(&format!(
            "SELECT channel, epoch_us(ts), value FROM readings
             WHERE ts >= {} AND ts < {} AND quality <> 'bad' AND isfinite(value)
             ORDER BY channel, ts",
            at(w[0]),
            at(w[1])
        ))?;
        let mut rows = st.query([])?;
        let (mut channel, mut values) = (String::new(), Vec::new());
        while let Some(row) = rows.next()? {
            let same = match row.get_ref(0)? {
                duckdb::types::ValueRef::Text(t) => t == channel.as_bytes(),
                _ => continue,
            };
            if !same {
                if !values.is_empty() {
                    keep(&channel, &mut values);
                }
                channel = row.get(0)?;
            }
            values.push((row.get::<_, i64>(1)?, row.get::<_, f64>(2)?));
        }
        if !values.is_empty() {
            keep(&channel, &mut values);
        }
    }
    for (channel, mut values) in kept {
        each(&channel, values.make_contiguous());
    }
    Ok(())
}

/// A time (µs) as a constant in SQL that DuckDB compares with the row
/// groups' min/max of `ts`. In µs, not as text: RFC 3339 holds the years 0
/// to 9999 only.
fn at(us: Micros) -> String {
    format!("CAST(make_timestamp({us}) AS TIMESTAMPTZ)")
}

/// The last `limit` judged values (not bad, with a value) of `channel` in
/// `[since, before)`, oldest first: the history a detector trains on.
pub fn history(
    conn: &Connection,
    channel: &str,
    since: Micros,
    before: Micros,
    limit: usize,
) -> duckdb::Result<Vec<(Micros, f64)>> {
    let mut st = conn.prepare_cached(
        "SELECT epoch_us(ts), value FROM readings
         WHERE channel = ? AND epoch_us(ts) >= ? AND epoch_us(ts) < ? AND quality <> 'bad' AND isfinite(value)
         ORDER BY ts DESC LIMIT ?",
    )?;
    let rows = st.query_map(duckdb::params![channel, since, before, limit as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
    })?;
    let mut v = rows.collect::<duckdb::Result<Vec<_>>>()?;
    v.reverse();
    Ok(v)
}

/// Readings a replay sorts in one statement, about: DuckDB sorts the rows
/// it returns (strings included) in memory, and within the store's memory
/// limit (32MB by default) a day of 100 channels at 1 Hz (8.64M readings)
/// failed to sort at all, while 2.16M went through.
const WINDOW: u64 = 500_000;

/// Streams the readings of `span` in time order through `emit` (false:
/// the engine stopped). Returns how many were read.
///
/// The range goes in time windows of about [`WINDOW`] readings (see
/// [`window_bounds`]), each sorted on its own; a window's bounds are
/// constants in its SQL, so DuckDB skips the row groups outside it instead
/// of scanning the range once per window. Readings at one time are never
/// split between windows.
pub fn replay(
    conn: &Connection,
    span: Span,
    stop: &AtomicBool,
    progress: &AtomicU64,
    emit: &mut dyn FnMut(Vec<Record>) -> bool,
) -> duckdb::Result<u64> {
    replay_in_windows(conn, span, WINDOW, stop, progress, emit)
}

/// [`replay`], in windows of about `window` readings.
fn replay_in_windows(
    conn: &Connection,
    span: Span,
    window: u64,
    stop: &AtomicBool,
    progress: &AtomicU64,
    emit: &mut dyn FnMut(Vec<Record>) -> bool,
) -> duckdb::Result<u64> {
    let bounds = span.windows(conn, window)?;
    let mut cursor = Cursor {
        interner: Interner::with_cap(1_000_000),
        fallback: Arc::from("store"),
        batch: Vec::with_capacity(BATCH),
        n: 0,
    };
    for w in bounds.windows(2) {
        if stop.load(Ordering::Relaxed) || !cursor.window(conn, w[0], w[1], stop, progress, emit)? {
            return Ok(cursor.n);
        }
    }
    progress.store(cursor.n, Ordering::Relaxed);
    if !cursor.batch.is_empty() {
        emit(cursor.batch);
    }
    Ok(cursor.n)
}

/// The bounds (µs) of `windows` time windows over the readings of
/// `[since, until)`, which run from `first` to `last`: strictly rising,
/// from `first` to just after `last`. They are (approximate) quantiles of
/// the readings' times, so each window holds about as many readings,
/// however the times spread: a reading from a clock left at 1970 must not
/// put a whole day into one window.
fn window_bounds(
    conn: &Connection,
    (since, until): (Micros, Micros),
    windows: u64,
    (first, last): (Micros, Micros),
) -> duckdb::Result<Vec<Micros>> {
    let mut bounds = vec![first];
    if windows > 1 {
        let quantiles = (1..windows).map(|i| (i as f64 / windows as f64).to_string()).collect::<Vec<_>>();
        let mut st = conn.prepare(&format!(
            "SELECT unnest(approx_quantile(epoch_us(ts), [{}])) FROM readings
             WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ?",
            quantiles.join(", ")
        ))?;
        for q in st.query_map(duckdb::params![since, until], |r| r.get::<_, i64>(0))? {
            let q = q?;
            if q > *bounds.last().expect("first") && q <= last {
                bounds.push(q);
            }
        }
    }
    bounds.push(last.saturating_add(1));
    Ok(bounds)
}

/// A replay under way: the names met, the batch being filled, the
/// readings read.
struct Cursor {
    interner: Interner,
    fallback: Arc<str>,
    batch: Vec<Record>,
    n: u64,
}

impl Cursor {
    /// Reads the readings of `[from, to)` (µs) in time order into batches;
    /// false when the engine stopped.
    fn window(
        &mut self,
        conn: &Connection,
        from: Micros,
        to: Micros,
        stop: &AtomicBool,
        progress: &AtomicU64,
        emit: &mut dyn FnMut(Vec<Record>) -> bool,
    ) -> duckdb::Result<bool> {
        let mut st = conn.prepare(&format!(
            "SELECT epoch_us(ts), channel, value, text, unit, quality, flags, source FROM readings
             WHERE ts >= {} AND ts < {} ORDER BY ts",
            at(from),
            at(to)
        ))?;
        let mut rows = st.query([])?;
        let Cursor { interner, fallback, batch, n } = self;
        while let Some(row) = rows.next()? {
            let channel: String = row.get(1)?;
            let Ok(channel) = interner.channel(&channel) else { continue };
            let flags: Option<String> = row.get(6)?;
            let unit: Option<String> = row.get(4)?;
            let source: Option<String> = row.get(7)?;
            let text: Option<String> = row.get(3)?;
            let quality: String = row.get(5)?;
            batch.push(Record::Reading(Reading {
                ts: row.get(0)?,
                channel,
                value: row.get(2)?,
                text: text.map(|t| Arc::from(t.as_str())),
                unit: unit.and_then(|u| interner.name("unit", &u).ok()),
                quality: Quality::parse(&quality).unwrap_or(Quality::Bad),
                flags: flags.as_deref().map_or(Flags::empty(), Flags::from_list),
                source: source.and_then(|s| interner.name("source", &s).ok()).unwrap_or_else(|| fallback.clone()),
                // Never stored again.
                from_input: true,
                fusion: None,
            }));
            *n += 1;
            if batch.len() >= BATCH {
                progress.store(*n, Ordering::Relaxed);
                if !emit(std::mem::replace(batch, Vec::with_capacity(BATCH))) || stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of this build's schema holding what `sql` inserts, and a
    /// connection to it (the folder lives as long as the first value).
    fn store_with(sql: &str) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.duckdb");
        drop(crate::sinks::store::Store::open(&path, None, vec![]).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        (dir, conn)
    }

    /// However small the windows, every reading of the range comes out
    /// once, in time order, readings at one time together, and none from
    /// outside the range.
    #[test]
    fn a_replay_in_windows_gives_every_reading_once_in_time_order() {
        let (_dir, conn) = store_with(
            "INSERT INTO channels VALUES (1, 'a', 's', NULL), (2, 'b', 's', 'kW');
             -- 40 readings: two per time (one per channel), stored out of order.
             INSERT INTO reading_rows (ts, channel_id, value, quality, commit_no)
                 SELECT make_timestamp(1000000 * (t % 20) + 7), 1 + t // 20, t, 0, 1
                 FROM range(40) r(t) ORDER BY hash(t);",
        );
        let (stop, progress) = (AtomicBool::new(false), AtomicU64::new(0));
        for window in [1, 3, 7, 40, 1000] {
            let mut got = Vec::new();
            let span = span(&conn, 1_000_007, 19_000_007).unwrap();
            let n = replay_in_windows(&conn, span, window, &stop, &progress, &mut |b| {
                got.extend(b.into_iter().map(|r| match r {
                    Record::Reading(r) => (r.ts, r.channel.to_string(), r.value),
                    _ => unreachable!(),
                }));
                true
            })
            .unwrap();
            assert_eq!(n, 36, "window {window}");
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "window {window}: in time order");
            got.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let want: Vec<_> = (1..19)
                .flat_map(|s| {
                    [
                        (s * 1_000_000 + 7, "a".to_string(), Some(s as f64)),
                        (s * 1_000_000 + 7, "b".to_string(), Some(s as f64 + 20.0)),
                    ]
                })
                .collect();
            assert_eq!(got, want, "window {window}");
        }
    }

    /// However small the windows, a channel's history holds its judged
    /// values of the range once, oldest first, its last `limit` at most,
    /// and channels come in the order of their names.
    #[test]
    fn histories_in_windows_give_each_channel_its_last_values_in_order() {
        // 3 channels × 100 times; every 7th reading bad, every 11th NaN.
        let (_dir, conn) = store_with(
            "INSERT INTO channels VALUES (1, 'c', 's', NULL), (2, 'a', 's', NULL), (3, 'b', 's', NULL);
             INSERT INTO reading_rows (ts, channel_id, value, quality, commit_no)
                 SELECT make_timestamp(1000000 * (t // 3)), 1 + t % 3,
                        CASE WHEN t % 11 = 0 THEN 'NaN'::DOUBLE ELSE t END,
                        CASE WHEN t % 7 = 0 THEN 2 ELSE 0 END, 1
                 FROM range(300) r(t) ORDER BY hash(t);",
        );
        let bad: i64 = conn.query_row("SELECT count(*) FROM readings WHERE quality = 'bad'", [], |r| r.get(0)).unwrap();
        assert_eq!(bad, 43, "quality 2 is bad");
        let (since, before) = (5_000_000, 95_000_000);
        let judged = |c: i64| -> Vec<(Micros, f64)> {
            (0..300)
                .filter(|t| t % 3 == c - 1 && t % 7 != 0 && t % 11 != 0)
                .map(|t| (1_000_000 * (t / 3), t as f64))
                .filter(|(ts, _)| (since..before).contains(ts))
                .collect()
        };
        for window in [1, 4, 50, 1000] {
            for limit in [1, 10, 1000] {
                let mut got = Vec::new();
                histories_in_windows(&conn, (since, before), limit, window, &mut |c, v| {
                    got.push((c.to_string(), v.to_vec()))
                })
                .unwrap();
                let want: Vec<_> = [("a", 2), ("b", 3), ("c", 1)]
                    .into_iter()
                    .map(|(name, id)| {
                        let v = judged(id);
                        (name.to_string(), v[v.len().saturating_sub(limit)..].to_vec())
                    })
                    .collect();
                assert_eq!(got, want, "window {window}, limit {limit}");
            }
        }
    }

    /// A reading from a clock left far in the past or set far ahead does
    /// not put the rest into one window, and both are replayed, whatever
    /// their year.
    #[test]
    fn windows_hold_about_as_many_readings_however_the_times_spread() {
        let (past, ahead) = (-100_000_000_000_000_000i64, 253_402_300_799_999_999i64);
        let (_dir, conn) = store_with(&format!(
            "INSERT INTO channels VALUES (1, 'a', 's', NULL);
             INSERT INTO reading_rows (ts, channel_id, value, quality, commit_no)
                 SELECT make_timestamp(1800000000000000 + 1000000 * t), 1, t, 0, 1 FROM range(1000) r(t);
             INSERT INTO reading_rows (ts, channel_id, value, quality, commit_no)
                 VALUES (make_timestamp({past}), 1, -1, 0, 1), (make_timestamp({ahead}), 1, -2, 0, 1);"
        ));
        let range = (i64::MIN, i64::MAX);
        let bounds = window_bounds(&conn, range, 10, (past, ahead)).unwrap();
        assert_eq!((bounds[0], *bounds.last().unwrap()), (past, ahead + 1));
        for w in bounds.windows(2) {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM readings WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ?",
                    [w[0], w[1]],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(n <= 150, "{n} readings in [{}, {})", w[0], w[1]);
        }
        let (stop, progress) = (AtomicBool::new(false), AtomicU64::new(0));
        let mut times = Vec::new();
        let n = replay_in_windows(&conn, span(&conn, range.0, range.1).unwrap(), 100, &stop, &progress, &mut |b| {
            times.extend(b.iter().map(|r| if let Record::Reading(r) = r { r.ts } else { unreachable!() }));
            true
        })
        .unwrap();
        assert_eq!(n, 1002);
        assert_eq!((times[0], times[1001]), (past, ahead));
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
