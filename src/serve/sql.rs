//! Read-only SQL on the store: what `edgeguard query` runs on a store file
//! it opened read-only, and what `POST /api/v1/query` runs on a connection
//! of `serve`'s own database while serve holds the file.
//!
//! DuckDB enforces read-only, not a parser of ours. The query runs on a
//! connection of its own inside `BEGIN TRANSACTION READ ONLY` (DuckDB
//! refuses every write to the database in it), as `SELECT * FROM query(?)
//! LIMIT ?` with the SQL bound as a parameter: DuckDB's `query()` accepts
//! exactly one SELECT statement, so `COMMIT; DELETE …` or a second statement
//! never runs, and the row limit is DuckDB's too (it stops producing rows).
//! A watchdog interrupts the query when the time limit passes. Under
//! `serve` the database is also confined to its own files and the backup
//! folder (`Store::confine`): `read_text('/etc/passwd')` or `read_csv` of
//! any other file is refused by DuckDB ("Permission Error").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duckdb::types::{TimeUnit, Value};
use serde_json::Value as Json;

use crate::model::time::format_rfc3339;

/// Most rows an answer may hold (`limit` above it is refused by serve).
pub const MAX_ROWS: usize = 100_000;
/// Rows by default.
pub const DEFAULT_ROWS: usize = 10_000;
/// Time limit by default, and the longest serve allows (below its 30 s
/// request timeout, so the answer says why).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(25);

/// The rows of one query, as JSON values, in column order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// Column names, unique (DuckDB names a repeated one `a_1`), so each
    /// row can be an object.
    pub columns: Vec<String>,
    /// One object per row, keys in column order.
    pub rows: Vec<serde_json::Map<String, Json>>,
    /// The query had more rows than the limit; `rows` holds the first ones.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Not one read-only SELECT: a write, DDL, `SET`, several statements
    /// (refused by DuckDB).
    #[error("refused: {0}")]
    Refused(String),
    /// DuckDB cannot run it: syntax, an unknown table or column, a type error.
    #[error("{0}")]
    Invalid(String),
    /// It ran past the time limit and was interrupted.
    #[error("the query ran longer than {0:?} and was interrupted")]
    TimedOut(Duration),
    /// The store could not be read (I/O).
    #[error("{0}")]
    Store(String),
}

/// Runs `sql` read-only on `conn` (a connection no one else uses).
pub fn run(conn: &duckdb::Connection, sql: &str, limit: usize, timeout: Duration) -> Result<Answer, SqlError> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let (handle, flag) = (conn.interrupt_handle(), timed_out.clone());
    std::thread::Builder::new()
        .name("edgeguard-sql-watchdog".into())
        .spawn(move || {
            if wait.recv_timeout(timeout) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            flag.store(true, Ordering::SeqCst);
            // Again until the query ends: an interrupt that lands between
            // two statements would be forgotten by the next one.
            while wait.recv_timeout(Duration::from_millis(100)) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                handle.interrupt();
            }
        })
        .map_err(|e| SqlError::Store(format!("cannot start the query's watchdog: {e}")))?;
    let result = read_only(conn, sql, limit);
    drop(done);
    let _ = conn.execute_batch("ROLLBACK");
    result.map_err(|e| classify(e, timed_out.load(Ordering::SeqCst), timeout))
}

fn read_only(conn: &duckdb::Connection, sql: &str, limit: usize) -> duckdb::Result<Answer> {
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
    let mut st = conn.prepare("SELECT * FROM query(?) LIMIT ?")?;
    let mut rows = st.query(duckdb::params![sql, limit as i64 + 1])?;
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(r) = rows.next()? {
        if out.len() == limit {
            truncated = true;
            break;
        }
        let n = r.as_ref().column_count();
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(json(r.get::<_, Value>(i)?));
        }
        out.push(row);
    }
    drop(rows);
    let columns = unique(st.column_names());
    let rows = out.into_iter().map(|row| columns.iter().cloned().zip(row).collect()).collect();
    Ok(Answer { columns, rows, truncated })
}

fn classify(e: duckdb::Error, timed_out: bool, timeout: Duration) -> SqlError {
    let message = e.to_string();
    if timed_out || message.contains("INTERRUPT") || message.contains("Interrupted") {
        return SqlError::TimedOut(timeout);
    }
    let first = message.lines().next().unwrap_or("").to_string();
    if message.contains("Expected a single SELECT statement") {
        return SqlError::Refused(
            "only one SELECT statement is run (no writes, DDL, SET or several statements)".into(),
        );
    }
    if message.starts_with("Permission Error") {
        // A file outside the store (serve confines its database).
        return SqlError::Refused(first);
    }
    if message.contains("read-only mode") || message.contains("read-only") {
        return SqlError::Refused(first);
    }
    if message.starts_with("IO Error") {
        return SqlError::Store(first);
    }
    SqlError::Invalid(first)
}

/// Column names as given, a repeated one suffixed `_2`, `_3`, ….
fn unique(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let mut name = n.clone();
            let mut i = 1;
            while !seen.insert(name.clone()) {
                i += 1;
                name = format!("{n}_{i}");
            }
            name
        })
        .collect()
}

/// A DuckDB value as JSON: times as RFC 3339 text, non-finite floats and
/// integers past 64 bits as text, blobs as hex.
fn json(v: Value) -> Json {
    let finite = |f: f64| serde_json::Number::from_f64(f).map_or_else(|| Json::String(f.to_string()), Json::Number);
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::TinyInt(i) => i.into(),
        Value::SmallInt(i) => i.into(),
        Value::Int(i) => i.into(),
        Value::BigInt(i) => i.into(),
        Value::UTinyInt(i) => i.into(),
        Value::USmallInt(i) => i.into(),
        Value::UInt(i) => i.into(),
        Value::UBigInt(i) => i.into(),
        Value::HugeInt(i) => i64::try_from(i).map_or_else(|_| Json::String(i.to_string()), Json::from),
        Value::UHugeInt(i) => u64::try_from(i).map_or_else(|_| Json::String(i.to_string()), Json::from),
        Value::Float(f) => finite(f64::from(f)),
        Value::Double(f) => finite(f),
        Value::Decimal(d) => d.to_string().parse::<f64>().map_or_else(|_| Json::String(d.to_string()), finite),
        Value::Timestamp(unit, t) => Json::String(format_rfc3339(micros(unit, t))),
        Value::Date32(days) => Json::String(
            chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .map_or_else(|| days.to_string(), |d| d.to_string()),
        ),
        Value::Time64(unit, t) => {
            let us = micros(unit, t);
            let (s, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
            Json::String(format!("{:02}:{:02}:{:02}.{frac:06}", s / 3600, s / 60 % 60, s % 60))
        }
        Value::Interval { months, days, nanos } => {
            serde_json::json!({"months": months, "days": days, "micros": nanos / 1000})
        }
        Value::Text(s) | Value::Enum(s) => Json::String(s),
        Value::Blob(b) | Value::Geometry(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::List(l) | Value::Array(l) => Json::Array(l.into_iter().map(json).collect()),
        Value::Struct(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), json(v.clone()))).collect()),
        Value::Map(m) => {
            Json::Array(m.iter().map(|(k, v)| Json::Array(vec![json(k.clone()), json(v.clone())])).collect())
        }
        Value::Union(v) => json(*v),
        // DuckDB's value enum is open (`#[non_exhaustive]`): a type added
        // later shows as its debug text rather than failing the query.
        other => Json::String(format!("{other:?}")),
    }
}

fn micros(unit: TimeUnit, t: i64) -> i64 {
    match unit {
        TimeUnit::Second => t.saturating_mul(1_000_000),
        TimeUnit::Millisecond => t.saturating_mul(1_000),
        TimeUnit::Microsecond => t,
        TimeUnit::Nanosecond => t / 1_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> duckdb::Connection {
        let c = duckdb::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE readings (ts TIMESTAMPTZ, channel VARCHAR, value DOUBLE);
             INSERT INTO readings SELECT to_timestamp(1767225600 + i), 'a.b', i
               FROM range(50) t(i);",
        )
        .unwrap();
        c
    }

    #[test]
    fn a_select_answers_rows_in_column_order_with_times_as_rfc3339() {
        let c = store();
        let a =
            run(&c, "SELECT ts, channel, value, value AS value FROM readings ORDER BY ts", 3, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(a.columns, ["ts", "channel", "value", "value_1"]);
        assert!(a.truncated);
        assert_eq!(a.rows.len(), 3);
        assert_eq!(
            serde_json::to_string(&a.rows[1]).unwrap(),
            r#"{"ts":"2026-01-01T00:00:01.000Z","channel":"a.b","value":1.0,"value_1":1.0}"#
        );
        let all = run(&c, "FROM readings", 50, DEFAULT_TIMEOUT).unwrap();
        assert!(!all.truncated && all.rows.len() == 50);
    }

    #[test]
    fn writes_and_second_statements_are_refused_by_duckdb() {
        let c = store();
        for sql in [
            "DELETE FROM readings",
            "COMMIT; DELETE FROM readings",
            "SELECT 1; DELETE FROM readings",
            "CREATE TABLE x (a INT)",
            "SET threads = 8",
            "COPY readings TO '/tmp/eg-sql-test.csv'",
        ] {
            assert!(matches!(run(&c, sql, 10, DEFAULT_TIMEOUT), Err(SqlError::Refused(_))), "{sql}");
        }
        assert_eq!(c.query_row("SELECT count(*) FROM readings", [], |r| r.get::<_, i64>(0)).unwrap(), 50);
        assert!(matches!(run(&c, "SELECT nope FROM readings", 10, DEFAULT_TIMEOUT), Err(SqlError::Invalid(_))));
        // The connection is usable again afterwards (the transaction was ended).
        assert_eq!(run(&c, "SELECT 42 AS x", 10, DEFAULT_TIMEOUT).unwrap().rows[0]["x"], 42);
    }

    #[test]
    fn a_long_query_is_interrupted_at_the_time_limit() {
        let c = store();
        let started = std::time::Instant::now();
        let r = run(&c, "SELECT count(*) FROM range(1000000000000) a", 10, Duration::from_millis(300));
        assert!(matches!(r, Err(SqlError::TimedOut(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
