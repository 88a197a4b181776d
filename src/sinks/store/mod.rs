//! The DuckDB store: one file, one writer process (docs/contract.md §4).
//!
//! [`Store::open`] creates or migrates the schema and applies retention; on
//! a store of this build's schema with nothing past the retention, it runs
//! one query.
//! [`run_writer`] runs on its own thread: it gathers records into Arrow
//! columns and appends them with one commit per batch (`store.batch` records,
//! or `store.flush` time, whichever comes first), so the engine's threads
//! never wait on disk. A [`Handed`] batch may carry a checkpoint of the
//! stage state as it was after the batch: it is written in the same
//! transaction as the batch's last record, so the state in the store never
//! reflects a record the store does not hold.
//!
//! Readings go into `reading_rows` keyed by a channel id (the writer keeps
//! the `channels` table in memory and appends the channels it meets with
//! the commit that first holds them) with the quality as a code; the
//! `readings` view gives users' SQL the columns it always had. The writer
//! folds the readings into their rollup buckets (`store.rollups`) as it
//! gathers them, and each commit writes the buckets it closed and those
//! still open in the same transaction, so rollups never disagree with the
//! readings committed.
//!
//! Its parts: `schema` (the version, migrations, the SQL of a restore),
//! `writer` (the writer thread and its commits), `rollup` (the buckets
//! readings are folded into, open and closed), `tiers` (which stored resolution
//! answers a range); opening, retention and state are here.
//!
//! DuckDB locks the file for its writer; a second process gets an error that
//! names the holder's pid, which becomes [`StoreError::Locked`] (exit 75).

use std::path::{Path, PathBuf};
use std::time::Duration;

use duckdb::Connection;

use crate::compile::plan::RollupPlan;
use crate::model::time::format_rfc3339;

mod dict;
mod rollup;
mod schema;
mod tiers;
mod writer;

pub use schema::{insert_readings_sql, insert_rollups_sql};
pub use tiers::{TierSource, Tiers};
pub use writer::{run_writer, CommitCounters, Handed, StoreStats, WriterConfig};

/// DuckDB memory limit unless `EDGEGUARD_DUCKDB_MEMORY` says otherwise, and
/// one DuckDB thread unless `EDGEGUARD_DUCKDB_THREADS` does: the engine's own
/// threads keep the cores busy, and appends need no more. Measured on 10M
/// readings: 32MB/1 thread peaks at 99 MB RSS, 64MB/2 threads at 160 MB,
/// at the same speed.
pub const DEFAULT_MEMORY: &str = "32MB";

/// Why the store cannot be used. DuckDB's error is kept as text: it is
/// classified (locked, I/O) by its message, and that message is the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the file (exit 75).
    #[error("store {} is in use by {holder}; retry when it has finished", .path.display())]
    Locked { path: PathBuf, holder: String },
    /// The file could not be opened or written, or is not a DuckDB file (exit 74).
    #[error("store {}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    /// The file is from a newer edgeguard (exit 1).
    #[error("store {}: {message}", .path.display())]
    Incompatible { path: PathBuf, message: String },
}

impl StoreError {
    /// The file system is full (or the user's quota is): worth waiting out.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { message, .. } => {
                message.contains("No space left on device") || message.contains("Disk quota exceeded")
            }
            _ => false,
        }
    }
}

pub(super) fn classify(path: &Path, e: duckdb::Error) -> StoreError {
    let message = e.to_string();
    if message.contains("Could not set lock") || message.contains("Conflicting lock") {
        // "Conflicting lock is held in /usr/bin/edgeguard (PID 1234) by user root."
        let holder = message
            .split("held in ")
            .nth(1)
            .and_then(|s| s.split(" by user").next())
            .map(|s| s.split(". See also").next().unwrap_or(s).trim_end_matches('.'))
            .map_or_else(|| "another process".to_string(), |s| format!("process {s}"));
        return StoreError::Locked { path: path.to_path_buf(), holder };
    }
    StoreError::Io { path: path.to_path_buf(), message: message.lines().next().unwrap_or("").to_string() }
}

pub struct Store {
    pub path: PathBuf,
    conn: Connection,
    /// The number of the last commit (`commits.commit_no`; 0 before the first).
    last_commit: std::cell::Cell<i64>,
    retention: Option<Retention>,
    /// Rollup tiers kept up to date with every commit (`store.rollups`).
    rollups: Vec<RollupPlan>,
}

/// The time rows older than `keep` at `now` are older than, as an SQL
/// constant. A constant, not `epoch_us(ts) < ?`: DuckDB then skips the row
/// groups whose `ts` are all newer by their min/max, without reading them.
fn cutoff(now: i64, keep: Duration) -> String {
    // No earlier than the year 1, which DuckDB's TIMESTAMPTZ holds.
    let us = before(now, keep).max(-62_135_596_800_000_000);
    format!("'{}'::TIMESTAMPTZ", format_rfc3339(us))
}

/// Appends Arrow `batch` (columns named as in `table`) to `table`, in the
/// open transaction if there is one.
fn append(conn: &Connection, table: &str, batch: duckdb::arrow::record_batch::RecordBatch) -> duckdb::Result<()> {
    let mut app = conn.appender(table)?;
    app.append_record_batch(batch)?;
    app.flush()
}

/// `keep` before `now`, in µs (saturating: `keep` may be a century).
fn before(now: i64, keep: Duration) -> i64 {
    now.saturating_sub(keep.as_micros().min(i64::MAX as u128) as i64)
}

/// What [`Store::probe`] learns of an open store of this build's schema.
struct Probe {
    last_commit: i64,
    /// Some row is older than the retention.
    expired: bool,
}

/// What retention deletes: records older than `keep`, except those a
/// forward target still has to send (its [`Floor`]).
#[derive(Debug, Clone)]
pub struct Retention {
    pub keep: Duration,
    pub floors: Vec<Floor>,
}

/// A forward target's claim on the store: records after its cursor are kept
/// past `store.retention` until they are `max_age` old (`backlog.max_age`).
#[derive(Debug, Clone)]
pub struct Floor {
    pub target: String,
    pub max_age: Duration,
}

/// Opens a store read-only (a backtest that stores nothing). A store held
/// by a writer elsewhere gives [`StoreError::Locked`]. The caller checks
/// that the file exists (a missing store is a missing input, exit 66).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.threads(1))
        .map_err(|e| classify(path, e))?;
    connect(path, config)
}

/// Opens DuckDB on `path` with `config`, as every use of the store does:
///
/// - **No async I/O threads.** DuckDB 2.0 starts 4 per core at every open
///   for its asynchronous file and network I/O (`COPY … TO`, remote reads),
///   which the store does not need: without them those run on the calling
///   thread. `acquire --once` then creates 3 threads instead of 11.
/// - **The SQL grammar is compiled on a second thread while this one opens
///   the file.** DuckDB compiles its grammar once per process, when the
///   first statement is parsed: 29M instructions (callgrind), a sixth of an
///   `acquire --once` run, which until then came after the 70M of the open
///   itself. The grammar is process-wide and needs no database, but DuckDB
///   has no call to build it: setting `force_variant_shredding` on a
///   configuration that is then thrown away parses a type name with the
///   built-in parser, which builds it. Should a later DuckDB stop doing
///   that, only the time changes: the first statement builds it as before.
///   Only a process's first open does this (`serve` reopens on a reload).
///
/// Both measured in benches/README.md, "acquire --once".
fn connect(path: &Path, config: duckdb::Config) -> Result<Connection, StoreError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static GRAMMAR_BUILT: AtomicBool = AtomicBool::new(false);
    let config = config.with("async_threads", "0").map_err(|e| classify(path, e))?;
    // Scoped: the thread is joined on every way out of here, a panic
    // included, so it never runs on inside DuckDB after the open.
    std::thread::scope(|scope| {
        if !GRAMMAR_BUILT.swap(true, Ordering::Relaxed) {
            // Without the thread (none could be spawned) the first statement builds it.
            let _ = std::thread::Builder::new()
                .name("duckdb-grammar".into())
                .spawn_scoped(scope, || drop(duckdb::Config::default().with(GRAMMAR_SETTING.0, GRAMMAR_SETTING.1)));
        }
        Connection::open_with_flags(path, config).map_err(|e| classify(path, e))
    })
}

/// The setting whose value DuckDB parses with its SQL grammar when it is
/// set ([`connect`]): a nested type, which no shortcut for plain type names
/// could answer without the parser.
const GRAMMAR_SETTING: (&str, &str) = ("force_variant_shredding", "STRUCT(a INTEGER)");

impl Store {
    /// Opens (creating if needed) and migrates the store, which keeps the
    /// rollup tiers `rollups` from now on (every commit adds its readings
    /// to them); applies retention and the tiers' `keep` when there is
    /// something for them to delete (and hourly while its writer runs).
    ///
    /// A `--once` run opens the store every time, so the usual case is one
    /// query ([`Store::probe`]): the schema version, the last commit and
    /// whether any row is older than the retention or any bucket older than
    /// its tier's `keep`. Only a store that is
    /// new, older than this build's schema, or holding rows past the
    /// retention runs more (measured with callgrind on `acquire
    /// pipelines/demo.yaml --once`: see benches/README.md, "acquire --once").
    pub fn open(path: &Path, retention: Option<Retention>, rollups: Vec<RollupPlan>) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    message: format!("folder {} does not exist", dir.display()),
                });
            }
        }
        // DuckDB's memory_limit for this process (it spills to disk beyond it).
        let memory = std::env::var(crate::model::env::DUCKDB_MEMORY).unwrap_or_else(|_| DEFAULT_MEMORY.into());
        let threads = std::env::var(crate::model::env::DUCKDB_THREADS).ok().and_then(|t| t.parse().ok()).unwrap_or(1);
        let config = duckdb::Config::default()
            .threads(threads)
            .and_then(|c| c.max_memory(&memory))
            .map_err(|e| classify(path, e))?;
        // A new file has nothing to probe: it goes straight to the schema.
        let new = !path.exists();
        let conn = connect(path, config)?;
        let store = Store { path: path.to_path_buf(), conn, last_commit: std::cell::Cell::new(0), retention, rollups };
        let now = crate::model::time::now_micros();
        let expired = match (!new).then(|| store.probe(now)).flatten() {
            Some(p) => {
                store.last_commit.set(p.last_commit);
                p.expired
            }
            None => {
                // New, or of another version (a newer one is refused here).
                schema::migrate(&store.conn, path)?;
                let last: i64 = store
                    .conn
                    .query_row("SELECT coalesce(max(commit_no), 0) FROM commits", [], |r| r.get(0))
                    .map_err(|e| classify(path, e))?;
                store.last_commit.set(last);
                true
            }
        };
        if expired {
            store.apply_retention(now)?;
        }
        Ok(store)
    }

    /// What an open needs to know in one query, when the store has this
    /// build's schema (`None` otherwise, or when the query fails: the full
    /// path then creates, migrates or reports). `expired`: some row that
    /// retention deletes is older than the retention at `now` (reading
    /// `ts` with a constant lets DuckDB skip the row groups that are too new
    /// by their min/max, so this reads little of a large store).
    fn probe(&self, now: i64) -> Option<Probe> {
        // One row per answer, as a UNION ALL of plain scans: the same asked
        // with scalar and EXISTS subqueries plans joins, and cost 2.5× as
        // many instructions (callgrind, the demo's store).
        let mut sql = "SELECT 'version', value FROM meta WHERE key = 'schema_version'
             UNION ALL SELECT 'last', CAST(coalesce(max(commit_no), 0) AS VARCHAR) FROM commits"
            .to_string();
        if let Some(r) = &self.retention {
            // An expired `commits` row may be the newest, which retention
            // keeps: the open then deletes nothing, as it did before.
            let cutoff = cutoff(now, r.keep);
            for table in ["reading_rows", "anomalies", "alerts", "commits"] {
                sql += &format!(
                    "\n UNION ALL SELECT 'expired', '{table}' FROM (SELECT 1 FROM {table} WHERE ts < {cutoff} LIMIT 1)"
                );
            }
        }
        for (r, cutoff) in self.rollups.iter().zip(self.rollup_cutoffs(now)) {
            let Some(cutoff) = cutoff else { continue };
            for table in ["rollup_rows", "rollup_open"] {
                sql += &format!(
                    "\n UNION ALL SELECT 'expired', '{table}' FROM \
                     (SELECT 1 FROM {table} WHERE every_us = {every} AND bucket_us < {cutoff} LIMIT 1)",
                    every = r.every_us()
                );
            }
        }
        let mut st = self.conn.prepare(&sql).ok()?;
        let mut rows = st.query([]).ok()?;
        let (mut version, mut last_commit, mut expired) = (None, None, false);
        while let Some(row) = rows.next().ok()? {
            let (key, value): (String, Option<String>) = (row.get(0).ok()?, row.get(1).ok()?);
            match key.as_str() {
                "version" => version = value,
                "last" => last_commit = value.and_then(|v| v.parse().ok()),
                _ => expired = true,
            }
        }
        (version? == schema::SCHEMA_VERSION.to_string()).then_some(Probe { last_commit: last_commit?, expired })
    }

    /// Deletes rollup buckets older than their tier's `keep`. Buckets of a
    /// tier the spec no longer names are kept (and no longer added to).
    fn apply_rollup_retention(&self, now: i64) -> Result<usize, StoreError> {
        let err = |e| classify(&self.path, e);
        let mut n = 0;
        for (r, cutoff) in self.rollups.iter().zip(self.rollup_cutoffs(now)) {
            if let Some(cutoff) = cutoff {
                for table in ["rollup_rows", "rollup_open"] {
                    n += self
                        .conn
                        .execute(
                            &format!("DELETE FROM {table} WHERE every_us = ? AND bucket_us < ?"),
                            [r.every_us(), cutoff],
                        )
                        .map_err(err)?;
                }
            }
        }
        Ok(n)
    }

    /// Per rollup tier, the start (µs) of the oldest bucket its `keep`
    /// keeps at `now`; `None` for a tier kept forever.
    pub(super) fn rollup_cutoffs(&self, now: i64) -> Vec<Option<i64>> {
        self.rollups.iter().map(|r| r.keep.map(|keep| before(now, keep))).collect()
    }

    /// What this store keeps at which resolution.
    pub fn tiers(&self) -> Tiers {
        Tiers { raw_keep: self.retention.as_ref().map(|r| r.keep), rollups: self.rollups.clone() }
    }

    /// A second connection to this store (a backtest reading while the
    /// writer appends its anomalies).
    pub fn reader(&self) -> Result<Connection, StoreError> {
        self.conn.try_clone().map_err(|e| classify(&self.path, e))
    }

    /// Turns off DuckDB's access to files other than the store's own (its
    /// WAL and temporary folder stay allowed) and to the network, for the
    /// rest of this process's use of the file, except under `allowed`
    /// folders. What `serve` does before it runs SQL from its API: a query
    /// may then read the store's tables and nothing else on the gateway
    /// (`read_text('/etc/…')`, `read_csv`, `ATTACH` are refused by DuckDB);
    /// the folders are where serve writes backups. DuckDB cannot turn it
    /// back on while the database is open.
    pub fn confine(&self, allowed: &[PathBuf]) -> Result<(), StoreError> {
        let folders: Vec<String> = allowed
            .iter()
            .map(|d| {
                let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
                format!("'{}/'", d.display().to_string().trim_end_matches('/').replace('\'', "''"))
            })
            .collect();
        self.conn
            .execute_batch(&format!(
                "SET allowed_directories = [{}]; SET enable_external_access = false;",
                folders.join(", ")
            ))
            .map_err(|e| classify(&self.path, e))
    }

    /// The number of the last commit (0 before the first).
    pub fn last_commit(&self) -> i64 {
        self.last_commit.get()
    }

    /// Applies the store's retention, if it has one: deletes records older
    /// than `store.retention`, except those after a forward target's cursor
    /// that are younger than its `backlog.max_age`, and rollup buckets past
    /// their tier's `keep`, all as of `now` (µs). Returns the rows deleted.
    pub fn apply_retention(&self, now: i64) -> Result<usize, StoreError> {
        let Some(retention) = &self.retention else { return self.apply_rollup_retention(now) };
        let err = |e| classify(&self.path, e);
        // The cutoffs are computed here: TIMESTAMPTZ arithmetic in SQL needs
        // the ICU extension, which the bundled DuckDB does not build.
        let older = cutoff(now, retention.keep);
        // Rows a target still waits for: after its cursor, younger than its max_age.
        let mut keep_rows = Vec::new();
        let mut keep_commits = Vec::new();
        for f in &retention.floors {
            let c = super::outbox::cursor(&self.conn, &f.target).map_err(err)?.commit;
            let young = before(now, f.max_age);
            keep_rows.push(format!("(commit_no > {c} AND epoch_us(ts) >= {young})"));
            // The commit log stays until the target has sent or skipped it:
            // skipping counts its records.
            keep_commits.push(format!("commit_no > {c}"));
        }
        let or_false = |v: &[String]| if v.is_empty() { "false".to_string() } else { v.join(" OR ") };
        let (rows, commits) = (or_false(&keep_rows), or_false(&keep_commits));
        let mut n = self.apply_rollup_retention(now)?;
        for table in ["reading_rows", "anomalies", "alerts"] {
            n += self
                .conn
                .execute(&format!("DELETE FROM {table} WHERE ts < {older} AND NOT coalesce({rows}, false)"), [])
                .map_err(err)?;
        }
        // The log of commits ages too, but its newest entry stays: it is
        // where the numbering continues.
        self.conn
            .execute(
                &format!(
                    "DELETE FROM commits WHERE ts < {older} AND NOT ({commits})
                     AND commit_no < (SELECT max(commit_no) FROM commits)"
                ),
                [],
            )
            .map_err(err)?;
        Ok(n)
    }

    /// Reads one saved state value.
    pub fn load_state(&self, component: &str, key: &str) -> Result<Option<String>, StoreError> {
        read_state(&self.conn, component, key).map_err(|e| classify(&self.path, e))
    }

    /// Closes the store of a process that exits next: checkpoints it, so
    /// the file holds everything and no WAL is left beside it, and leaves
    /// DuckDB's instance to the operating system. After its checkpoint,
    /// DuckDB's own close frees every function it registered at open, one
    /// by one: 6.5M instructions and about 4 ms of an `acquire --once`
    /// (callgrind, hyperfine; benches/README.md, "acquire --once"). Should
    /// the checkpoint fail, the store is closed as usual, and DuckDB tries
    /// again as it closes.
    pub fn close_for_exit(self) {
        if self.conn.execute_batch("CHECKPOINT").is_ok() {
            std::mem::forget(self);
        }
    }

    pub fn save_state(&self, component: &str, key: &str, value: &str) -> Result<(), StoreError> {
        write_state(&self.conn, component, key, value).map_err(|e| classify(&self.path, e))
    }

    /// Saves several state values in one transaction.
    pub fn save_states(&self, rows: &[StateRow]) -> Result<(), StoreError> {
        let err = |e| classify(&self.path, e);
        self.conn.execute_batch("BEGIN TRANSACTION").map_err(err)?;
        match write_states(&self.conn, rows) {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(err),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err(e))
            }
        }
    }
}

/// One value of the `state` table: a stage's state, as its JSON.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub component: &'static str,
    pub key: &'static str,
    pub value: String,
}

/// Writes each row ([`write_state`]).
pub(super) fn write_states(conn: &Connection, rows: &[StateRow]) -> duckdb::Result<()> {
    rows.iter().try_for_each(|r| write_state(conn, r.component, r.key, &r.value))
}

/// One value of the `state` table, or None.
pub(crate) fn read_state(conn: &Connection, component: &str, key: &str) -> duckdb::Result<Option<String>> {
    let mut st = conn.prepare_cached("SELECT value FROM state WHERE component = ? AND key = ?")?;
    let mut rows = st.query([component, key])?;
    rows.next()?.map(|r| r.get(0)).transpose()
}

/// Writes one value of the `state` table: updates its row in place, and
/// inserts it when the table does not have it yet. `INSERT OR REPLACE`
/// plans an upsert against the key's index: 10.3M instructions against
/// 4.3M for the `UPDATE` of the row a run of the demo saves (callgrind,
/// `acquire pipelines/demo.yaml --once`).
pub(crate) fn write_state(conn: &Connection, component: &str, key: &str, value: &str) -> duckdb::Result<()> {
    let mut update =
        conn.prepare_cached("UPDATE state SET value = ?, updated = now() WHERE component = ? AND key = ?")?;
    if update.execute([value, component, key])? == 0 {
        conn.prepare_cached("INSERT INTO state VALUES (?, ?, ?, now())")?.execute([component, key, value])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Quality;

    /// `connect` builds DuckDB's grammar by setting `GRAMMAR_SETTING`:
    /// DuckDB must still know the setting and parse its value when it is
    /// set (a value that is no type is refused there, before any open).
    /// Should this fail after a DuckDB upgrade, find another way or drop
    /// the thread. That the parse builds the grammar is what
    /// `benches/validate_spec.sh` shows (the `--once` time), not this test.
    #[test]
    fn the_grammar_setting_is_parsed_when_it_is_set() {
        let (name, value) = GRAMMAR_SETTING;
        assert!(duckdb::Config::default().with(name, value).is_ok());
        assert!(duckdb::Config::default().with(name, "no such type (").is_err());
    }

    /// Every store connection, the writer's and a reader's, runs without
    /// DuckDB's async I/O threads.
    #[test]
    fn a_store_opens_without_async_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        let setting = |conn: &Connection, name: &str| -> String {
            conn.query_row(&format!("SELECT CAST(current_setting('{name}') AS VARCHAR)"), [], |r| r.get(0)).unwrap()
        };
        let store = Store::open(&path, None, vec![]).unwrap();
        assert_eq!(setting(&store.conn, "async_threads"), "0");
        drop(store);
        let reader = open_reader(&path).unwrap();
        assert_eq!(setting(&reader, "async_threads"), "0");
    }

    /// The open's probe finds a row past the retention in each table
    /// retention deletes from, and the open then deletes it; rows within
    /// the retention stay, and so does the newest commit.
    #[test]
    fn an_open_deletes_what_is_past_the_retention_in_any_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.duckdb");
        let day = Duration::from_secs(86_400);
        let keep = || Some(Retention { keep: day, floors: vec![] });
        let old = format_rfc3339(crate::model::time::now_micros() - 2 * day.as_micros() as i64);
        let inserts = [
            "INSERT INTO reading_rows (ts, channel_id, quality) VALUES (CAST(? AS TIMESTAMPTZ), 1, 0)",
            "INSERT INTO anomalies (ts, channel, detector) VALUES (CAST(? AS TIMESTAMPTZ), 'a', 'z')",
            "INSERT INTO alerts (ts, rule, state) VALUES (CAST(? AS TIMESTAMPTZ), 'r', 'firing')",
            "INSERT INTO commits VALUES (1, CAST(? AS TIMESTAMPTZ), 0, 0)",
        ];
        let count = |store: &Store, table: &str| -> i64 {
            store.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
        };
        drop(Store::open(&path, None, vec![]).unwrap());
        for (i, insert) in inserts.iter().enumerate() {
            let store = Store::open(&path, None, vec![]).unwrap();
            store.conn.execute(insert, [&old]).unwrap();
            // The newest commit stays: where the numbering continues.
            store.conn.execute("INSERT OR IGNORE INTO commits VALUES (2, now(), 0, 0)", []).unwrap();
            drop(store);
            // Without a retention the probe asks nothing of it: the row stays.
            let store = Store::open(&path, None, vec![]).unwrap();
            let table = ["reading_rows", "anomalies", "alerts", "commits"][i];
            assert_eq!(count(&store, table), if table == "commits" { 2 } else { 1 }, "{table}");
            drop(store);
            let store = Store::open(&path, keep(), vec![]).unwrap();
            assert_eq!(count(&store, table), if table == "commits" { 1 } else { 0 }, "{table}");
            assert_eq!(store.last_commit(), 2);
        }
    }

    #[test]
    fn an_open_deletes_rollup_buckets_past_their_tiers_keep_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.duckdb");
        let (minute, hour, day) = (60_000_000i64, 3_600_000_000i64, Duration::from_secs(86_400));
        let tiers = || {
            vec![
                RollupPlan { every: Duration::from_secs(60), keep: Some(day) },
                RollupPlan { every: Duration::from_secs(3600), keep: None },
            ]
        };
        let now = crate::model::time::now_micros();
        let (old, new) = ((now - 2 * day.as_micros() as i64) / hour * hour, now / hour * hour);
        let count = |store: &Store, every: i64| -> i64 {
            let sql = "SELECT count(*) FROM (FROM rollup_rows UNION ALL FROM rollup_open) WHERE every_us = ?";
            store.conn.query_row(sql, [every], |r| r.get(0)).unwrap()
        };
        let store = Store::open(&path, None, tiers()).unwrap();
        // An old and a new bucket in each tier, and an old one of a 1 s tier
        // the spec does not name; closed, and open for another channel.
        for every in [minute, hour, 1_000_000] {
            for bucket in [old, new] {
                for (table, channel) in [("rollup_rows", 1), ("rollup_open", 2)] {
                    store
                        .conn
                        .execute(
                            &format!("INSERT INTO {table} VALUES (?, ?, ?, 1, 1, 1, 1, 1, ?, 1, ?)"),
                            [every, channel, bucket, bucket, bucket],
                        )
                        .unwrap();
                }
            }
        }
        // The probe sees the old 1 m bucket: the next open deletes it.
        assert!(store.probe(now).is_some_and(|p| p.expired));
        drop(store);
        let store = Store::open(&path, None, tiers()).unwrap();
        assert_eq!((count(&store, minute), count(&store, hour), count(&store, 1_000_000)), (2, 4, 4));
        // Nothing left past a keep: the probe finds nothing, nothing runs.
        assert!(store.probe(now).is_some_and(|p| !p.expired));
    }

    #[test]
    fn quality_codes_are_those_the_view_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.duckdb"), None, vec![]).unwrap();
        store.conn.execute("INSERT INTO channels VALUES (1, 'a.b', 's', NULL)", []).unwrap();
        for q in [Quality::Good, Quality::Suspect, Quality::Bad] {
            store.conn.execute("DELETE FROM reading_rows", []).unwrap();
            store
                .conn
                .execute(
                    "INSERT INTO reading_rows (ts, channel_id, quality) VALUES (now(), 1, ?)",
                    [schema::quality_code(q)],
                )
                .unwrap();
            let name: String = store.conn.query_row("SELECT quality FROM readings", [], |r| r.get(0)).unwrap();
            assert_eq!(name, q.as_str());
        }
    }
}
