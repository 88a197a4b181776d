//! `detect --from-store`: stored readings, in time order, as a source (a
//! backtest). They were validated and fused when they were stored, so a
//! replay goes to the detectors only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use duckdb::Connection;

use crate::model::intern::Interner;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::Micros;

/// Readings per batch handed to the engine.
const BATCH: usize = 4096;

/// Rows in `[since, until)`: the progress bar's total.
pub fn count(conn: &Connection, since: Micros, until: Micros) -> duckdb::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM readings WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ?",
        duckdb::params![since, until],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

/// Every channel the store has readings of.
pub fn channels(conn: &Connection) -> duckdb::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT DISTINCT channel FROM readings ORDER BY channel")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// The judged values (not bad, with a value) of every channel in
/// `[since, before)`, in one scan: `each` gets a channel and its values,
/// oldest first, one channel after the other. Many channels' histories
/// cost one pass over the table rather than one each.
pub fn histories(
    conn: &Connection,
    since: Micros,
    before: Micros,
    mut each: impl FnMut(&str, &[(Micros, f64)]),
) -> duckdb::Result<()> {
    let mut st = conn.prepare_cached(
        "SELECT channel, epoch_us(ts), value FROM readings
         WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ? AND quality <> 'bad' AND isfinite(value)
         ORDER BY channel, ts",
    )?;
    let mut rows = st.query(duckdb::params![since, before])?;
    let (mut channel, mut values) = (String::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let same = match row.get_ref(0)? {
            duckdb::types::ValueRef::Text(t) => t == channel.as_bytes(),
            _ => continue,
        };
        if !same {
            if !values.is_empty() {
                each(&channel, &values);
            }
            values.clear();
            channel = row.get(0)?;
        }
        values.push((row.get::<_, i64>(1)?, row.get::<_, f64>(2)?));
    }
    if !values.is_empty() {
        each(&channel, &values);
    }
    Ok(())
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

/// Streams the readings of `[since, until)` in time order through `emit`
/// (false: the engine stopped). Returns how many were read.
pub fn replay(
    conn: &Connection,
    since: Micros,
    until: Micros,
    stop: &AtomicBool,
    progress: &AtomicU64,
    emit: &mut dyn FnMut(Vec<Record>) -> bool,
) -> duckdb::Result<u64> {
    let mut st = conn.prepare(
        "SELECT epoch_us(ts), channel, value, text, unit, quality, flags, source FROM readings
         WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ? ORDER BY ts",
    )?;
    let mut rows = st.query(duckdb::params![since, until])?;
    let mut interner = Interner::with_cap(1_000_000);
    let fallback: Arc<str> = Arc::from("store");
    let mut batch = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let channel: String = row.get(1)?;
        let Ok(channel) = interner.channel(&channel) else { continue };
        let flags: Option<String> = row.get(6)?;
        let mut f = Flags::empty();
        for name in flags.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()) {
            f.insert(Flags::from_name(name));
        }
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
            flags: f,
            source: source.and_then(|s| interner.name("source", &s).ok()).unwrap_or_else(|| fallback.clone()),
            // Never stored again.
            from_input: true,
            fusion: None,
        }));
        n += 1;
        if batch.len() >= BATCH {
            progress.store(n, Ordering::Relaxed);
            if !emit(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))) || stop.load(Ordering::Relaxed) {
                return Ok(n);
            }
        }
    }
    progress.store(n, Ordering::Relaxed);
    if !batch.is_empty() {
        emit(batch);
    }
    Ok(n)
}
