//! The DuckDB store: one file, one writer process (docs/contract.md §4).
//!
//! [`Store::open`] creates or migrates the schema and applies retention.
//! [`StoreWriter`] runs on its own thread: it gathers records into Arrow
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
//! `readings` view gives users' SQL the columns it always had. Each commit
//! also merges its readings into the rollup tiers (`store.rollups`), in the
//! same transaction, so rollups never disagree with the readings committed.
//!
//! DuckDB locks the file for its writer; a second process gets an error that
//! names the holder's pid, which becomes [`StoreError::Locked`] (exit 75).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::array::{
    ArrayRef, Float64Builder, Int32Array, Int32Builder, Int64Array, StringArray, StringBuilder,
    TimestampMicrosecondBuilder, UInt8Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use crate::compile::plan::RollupPlan;
use crate::model::batch::CommitHook;
use crate::model::record::{Alert, Anomaly, Delivery, Quality, Reading, Record};
use crate::model::time::format_rfc3339;

/// DuckDB memory limit unless `EDGEGUARD_DUCKDB_MEMORY` says otherwise, and
/// one DuckDB thread unless `EDGEGUARD_DUCKDB_THREADS` does: the engine's own
/// threads keep the cores busy, and appends need no more. Measured on 10M
/// readings: 32MB/1 thread peaks at 99 MB RSS, 64MB/2 threads at 160 MB,
/// at the same speed.
pub const DEFAULT_MEMORY: &str = "32MB";

/// The schema version this build writes. Older files are migrated on open.
pub const SCHEMA_VERSION: i64 = 6;

/// Migrations: step `i` takes a store from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the tables of docs/contract.md §4.
    "CREATE TABLE IF NOT EXISTS readings (
        ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, value DOUBLE,
        quality VARCHAR NOT NULL, flags VARCHAR, source VARCHAR, unit VARCHAR);
     CREATE TABLE IF NOT EXISTS anomalies (
        ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, detector VARCHAR NOT NULL, method VARCHAR,
        value DOUBLE, score DOUBLE, expected DOUBLE, threshold DOUBLE, detail VARCHAR);
     CREATE TABLE IF NOT EXISTS alerts (
        ts TIMESTAMPTZ NOT NULL, rule VARCHAR NOT NULL, state VARCHAR NOT NULL, severity VARCHAR,
        channel VARCHAR, value DOUBLE, title VARCHAR, fingerprint VARCHAR, notifier VARCHAR, error VARCHAR);
     CREATE TABLE IF NOT EXISTS state (
        component VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR NOT NULL,
        updated TIMESTAMPTZ NOT NULL, PRIMARY KEY (component, key));",
    // 1 → 2: text values (Modbus `string` points).
    "ALTER TABLE readings ADD COLUMN IF NOT EXISTS text VARCHAR;",
    // 2 → 3: how fused readings were made.
    "ALTER TABLE readings ADD COLUMN IF NOT EXISTS inputs VARCHAR;
     ALTER TABLE readings ADD COLUMN IF NOT EXISTS voted_out VARCHAR;
     ALTER TABLE readings ADD COLUMN IF NOT EXISTS spread DOUBLE;",
    // 3 → 4: every commit numbered, in the same transaction as its records
    // (the outbox of forward targets), and an epoch per store file, so a
    // re-created store never reuses the message ids of an old one.
    "ALTER TABLE readings ADD COLUMN IF NOT EXISTS commit_no BIGINT;
     ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS commit_no BIGINT;
     ALTER TABLE alerts ADD COLUMN IF NOT EXISTS commit_no BIGINT;
     CREATE TABLE IF NOT EXISTS commits (
        commit_no BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, readings BIGINT NOT NULL, events BIGINT NOT NULL);
     INSERT OR IGNORE INTO meta
        SELECT 'epoch', substr(replace(CAST(gen_random_uuid() AS VARCHAR), '-', ''), 1, 16);",
    // 4 → 5: alert records whole (their body and labels), so the store can
    // give them back as they were printed: forward targets send them on.
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS body VARCHAR;
     ALTER TABLE alerts ADD COLUMN IF NOT EXISTS labels VARCHAR;",
    // 5 → 6: readings keyed by channel id (the appender's ceiling was its
    // string columns: copying, UTF-8 checks and compressing channel, source,
    // unit and quality on every row), and rollups. `readings` becomes a view
    // with the columns it had; its rows move to `reading_rows`.
    MIGRATE_TO_CHANNEL_IDS,
];

/// The 5 → 6 step (see [`MIGRATIONS`]): `channels`, `reading_rows`, the
/// `readings` view over them, and the rollup table and view.
const MIGRATE_TO_CHANNEL_IDS: &str = "
    CREATE TABLE channels (
        id INTEGER PRIMARY KEY, channel VARCHAR NOT NULL, source VARCHAR, unit VARCHAR);
    CREATE TABLE reading_rows (
        ts TIMESTAMPTZ NOT NULL, channel_id INTEGER NOT NULL, value DOUBLE, quality UTINYINT NOT NULL,
        flags VARCHAR, text VARCHAR, inputs VARCHAR, voted_out VARCHAR, spread DOUBLE, commit_no BIGINT);
    INSERT INTO channels
        SELECT row_number() OVER (ORDER BY channel, source, unit), channel, source, unit
        FROM (SELECT DISTINCT channel, source, unit FROM readings);
    INSERT INTO reading_rows
        SELECT r.ts, c.id, r.value,
               CASE r.quality WHEN 'good' THEN 0 WHEN 'suspect' THEN 1 ELSE 2 END,
               r.flags, r.text, r.inputs, r.voted_out, r.spread, r.commit_no
        FROM readings r JOIN channels c ON c.channel = r.channel
            AND c.source IS NOT DISTINCT FROM r.source AND c.unit IS NOT DISTINCT FROM r.unit;
    DROP TABLE readings;
    CREATE VIEW readings AS
        SELECT r.ts, c.channel, r.value,
               CASE r.quality WHEN 0 THEN 'good' WHEN 1 THEN 'suspect' ELSE 'bad' END AS quality,
               r.flags, c.source, c.unit, r.text, r.inputs, r.voted_out, r.spread, r.commit_no
        FROM reading_rows r JOIN channels c ON c.id = r.channel_id;
    CREATE TABLE rollup_rows (
        every_us BIGINT NOT NULL, channel_id INTEGER NOT NULL, bucket_us BIGINT NOT NULL,
        count BIGINT NOT NULL, sum DOUBLE NOT NULL, min DOUBLE NOT NULL, max DOUBLE NOT NULL,
        first DOUBLE NOT NULL, first_us BIGINT NOT NULL, last DOUBLE NOT NULL, last_us BIGINT NOT NULL,
        PRIMARY KEY (every_us, channel_id, bucket_us));
    CREATE VIEW rollups AS
        SELECT c.channel, c.source, c.unit, to_microseconds(r.every_us) AS every,
               to_timestamp(r.bucket_us // 1000000) AS bucket, r.min, r.max, r.sum / r.count AS avg,
               r.count, r.first, r.last
        FROM rollup_rows r JOIN channels c ON c.id = r.channel_id;";

/// SQL that stores rollup rows `src` (`rollup_rows`' columns with the
/// channel's `channel`, `source` and `unit` in place of its id) into
/// `channels` and `rollup_rows`: a restore from a backup.
pub fn insert_rollups_sql(src: &str) -> String {
    format!(
        "{channels}
         INSERT INTO rollup_rows BY NAME
            SELECT c.id AS channel_id, r.* EXCLUDE (channel, source, unit)
            FROM ({src}) r JOIN channels c ON c.channel = r.channel
                AND c.source IS NOT DISTINCT FROM r.source AND c.unit IS NOT DISTINCT FROM r.unit;",
        channels = insert_channels_sql(src)
    )
}

/// SQL that adds the channels of `src` (a query with `channel`, `source`
/// and `unit`) that `channels` does not hold yet, with new ids.
fn insert_channels_sql(src: &str) -> String {
    format!(
        "INSERT INTO channels
            SELECT (SELECT coalesce(max(id), 0) FROM channels) + row_number() OVER (ORDER BY channel, source, unit),
                   channel, source, unit
            FROM (SELECT DISTINCT channel, source, unit FROM ({src}) s
                  WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.channel = s.channel
                      AND c.source IS NOT DISTINCT FROM s.source AND c.unit IS NOT DISTINCT FROM s.unit));"
    )
}

/// How a reading's quality is kept in `reading_rows.quality` (the view
/// `readings` turns it back into its name). A DuckDB ENUM would read the
/// same, but the Arrow appender has no dictionary type to fill one with:
/// every row would go in as a string and be cast.
fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Suspect => 1,
        Quality::Bad => 2,
    }
}

/// SQL that stores the readings `src` (a query with the columns of the
/// `readings` view, by name) into `channels` and `reading_rows`: a restore
/// from a backup.
pub fn insert_readings_sql(src: &str) -> String {
    format!(
        "{channels}
         INSERT INTO reading_rows
            SELECT r.ts, c.id, r.value,
                   CASE r.quality WHEN 'good' THEN 0 WHEN 'suspect' THEN 1 ELSE 2 END,
                   r.flags, r.text, r.inputs, r.voted_out, r.spread, r.commit_no
            FROM ({src}) r JOIN channels c ON c.channel = r.channel
                AND c.source IS NOT DISTINCT FROM r.source AND c.unit IS NOT DISTINCT FROM r.unit;",
        channels = insert_channels_sql(src)
    )
}

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

fn classify(path: &Path, e: duckdb::Error) -> StoreError {
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

/// Opens a store read-only (a backtest that stores nothing). A store held
/// by a writer elsewhere gives [`StoreError::Locked`]. The caller checks
/// that the file exists (a missing store is a missing input, exit 66).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.threads(1))
        .map_err(|e| classify(path, e))?;
    Connection::open_with_flags(path, config).map_err(|e| classify(path, e))
}

impl Store {
    /// Opens (creating if needed) and migrates the store; applies retention
    /// (and again hourly while its writer runs).
    pub fn open(path: &Path, retention: Option<Retention>) -> Result<Store, StoreError> {
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
        let conn = Connection::open_with_flags(path, config).map_err(|e| classify(path, e))?;
        let store = Store {
            path: path.to_path_buf(),
            conn,
            last_commit: std::cell::Cell::new(0),
            retention,
            rollups: Vec::new(),
        };
        store.migrate()?;
        let last: i64 = store
            .conn
            .query_row("SELECT coalesce(max(commit_no), 0) FROM commits", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        store.last_commit.set(last);
        store.apply_retention()?;
        Ok(store)
    }

    /// Keeps the rollup tiers `rollups` from now on (every commit adds its
    /// readings to them), and applies their `keep`.
    pub fn with_rollups(mut self, rollups: Vec<RollupPlan>) -> Result<Store, StoreError> {
        self.rollups = rollups;
        self.apply_rollup_retention()?;
        Ok(self)
    }

    /// Deletes rollup buckets older than their tier's `keep`. Buckets of a
    /// tier the spec no longer names are kept (and no longer added to).
    fn apply_rollup_retention(&self) -> Result<usize, StoreError> {
        let err = |e| classify(&self.path, e);
        let now = crate::model::time::now_micros();
        let mut n = 0;
        for r in &self.rollups {
            if let Some(keep) = r.keep {
                let cutoff = now - keep.as_micros().min(i64::MAX as u128) as i64;
                n += self
                    .conn
                    .execute("DELETE FROM rollup_rows WHERE every_us = ? AND bucket_us < ?", [r.every_us(), cutoff])
                    .map_err(err)?;
            }
        }
        Ok(n)
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

    fn migrate(&self) -> Result<(), StoreError> {
        let p = &self.path;
        let err = |e: duckdb::Error| classify(p, e);
        self.conn
            .execute_batch("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);")
            .map_err(err)?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Incompatible {
                path: p.clone(),
                message: format!(
                    "schema version {version} is newer than this edgeguard ({SCHEMA_VERSION}); upgrade edgeguard"
                ),
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let sql = format!(
                "BEGIN; {step}
                 INSERT OR REPLACE INTO meta VALUES ('schema_version', '{next}');
                 INSERT OR REPLACE INTO meta VALUES ('written_by', 'edgeguard {ver}');
                 COMMIT;",
                next = i + 1,
                ver = env!("CARGO_PKG_VERSION")
            );
            self.conn.execute_batch(&sql).map_err(err)?;
        }
        Ok(())
    }

    /// The number of the last commit (0 before the first).
    pub fn last_commit(&self) -> i64 {
        self.last_commit.get()
    }

    /// Applies the store's retention, if it has one: deletes records older
    /// than `store.retention`, except those after a forward target's cursor
    /// that are younger than its `backlog.max_age`. Returns the rows deleted.
    pub fn apply_retention(&self) -> Result<usize, StoreError> {
        let Some(retention) = &self.retention else { return self.apply_rollup_retention() };
        let err = |e| classify(&self.path, e);
        // The cutoffs are computed here: TIMESTAMPTZ arithmetic in SQL needs
        // the ICU extension, which the bundled DuckDB does not build.
        let now = crate::model::time::now_micros();
        let cutoff = now - retention.keep.as_micros() as i64;
        // Rows a target still waits for: after its cursor, younger than its max_age.
        let mut keep_rows = Vec::new();
        let mut keep_commits = Vec::new();
        for f in &retention.floors {
            let c = super::outbox::cursor(&self.conn, &f.target).map_err(err)?.commit;
            let young = now - f.max_age.as_micros().min(i64::MAX as u128) as i64;
            keep_rows.push(format!("(commit_no > {c} AND epoch_us(ts) >= {young})"));
            // The commit log stays until the target has sent or skipped it:
            // skipping counts its records.
            keep_commits.push(format!("commit_no > {c}"));
        }
        let or_false = |v: &[String]| if v.is_empty() { "false".to_string() } else { v.join(" OR ") };
        let (rows, commits) = (or_false(&keep_rows), or_false(&keep_commits));
        let mut n = self.apply_rollup_retention()?;
        for table in ["reading_rows", "anomalies", "alerts"] {
            n += self
                .conn
                .execute(
                    &format!("DELETE FROM {table} WHERE epoch_us(ts) < ? AND NOT coalesce({rows}, false)"),
                    [cutoff],
                )
                .map_err(err)?;
        }
        // The log of commits ages too, but its newest entry stays: it is
        // where the numbering continues.
        self.conn
            .execute(
                &format!(
                    "DELETE FROM commits WHERE epoch_us(ts) < ? AND NOT ({commits})
                     AND commit_no < (SELECT max(commit_no) FROM commits)"
                ),
                [cutoff],
            )
            .map_err(err)?;
        Ok(n)
    }

    /// Reads one saved state value.
    pub fn load_state(&self, component: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT value FROM state WHERE component = ? AND key = ?")
            .map_err(|e| classify(&self.path, e))?;
        let mut rows = stmt.query([component, key]).map_err(|e| classify(&self.path, e))?;
        match rows.next().map_err(|e| classify(&self.path, e))? {
            Some(r) => Ok(Some(r.get(0).map_err(|e| classify(&self.path, e))?)),
            None => Ok(None),
        }
    }

    pub fn save_state(&self, component: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?, now())", [component, key, value])
            .map(|_| ())
            .map_err(|e| classify(&self.path, e))
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

fn write_states(conn: &Connection, rows: &[StateRow]) -> duckdb::Result<()> {
    let mut st = conn.prepare_cached("INSERT OR REPLACE INTO state VALUES (?, ?, ?, now())")?;
    for r in rows {
        st.execute([r.component, r.key, r.value.as_str()])?;
    }
    Ok(())
}

/// What the engine hands the writer thread: records, the hook that waits
/// for their commit, and maybe the stage state after them.
pub struct Handed {
    pub records: Vec<Record>,
    pub on_commit: Option<CommitHook>,
    /// Saved with the commit that holds the last of `records`.
    pub checkpoint: Option<Vec<StateRow>>,
}

impl Handed {
    pub fn records(records: Vec<Record>) -> Handed {
        Handed { records, on_commit: None, checkpoint: None }
    }
}

/// What the writer did, for the run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub readings: u64,
    pub anomalies: u64,
    /// Rows of the notification log.
    pub alerts: u64,
    pub commits: u64,
    pub commit_time: Duration,
    pub retention_deleted: u64,
    /// Checkpoints of the stage state written with a commit.
    pub checkpoints: u64,
}

/// What is inserted row by row next to the readings of a commit: an
/// anomaly, an alert record (no notifier) or the outcome of sending one
/// through a notifier (the notification log).
enum EventRow {
    Anomaly(Box<Anomaly>),
    Alert(Box<Alert>),
    Delivery(Box<Delivery>),
}

/// What names a row of `channels`: a channel as one source gives it, in
/// one unit. Usually one per channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    channel: Arc<str>,
    source: Arc<str>,
    unit: Option<Arc<str>>,
}

/// The `channels` table as the writer knows it: ids of the channels stored
/// so far, and those met since the last commit (inserted with it).
#[derive(Default)]
struct ChannelIds {
    ids: std::collections::HashMap<ChannelKey, i32>,
    /// The key of the last reading and its id: readings of one channel
    /// often come in runs, and the pointers compare in one step.
    last: Option<(ChannelKey, i32)>,
    next: i32,
    new: Vec<(i32, ChannelKey)>,
}

impl ChannelIds {
    fn load(conn: &Connection) -> duckdb::Result<ChannelIds> {
        let mut ids = ChannelIds::default();
        let mut st = conn.prepare("SELECT id, channel, source, unit FROM channels")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i32 = r.get(0)?;
            let key = ChannelKey {
                channel: Arc::from(r.get::<_, String>(1)?),
                source: Arc::from(r.get::<_, Option<String>>(2)?.unwrap_or_default()),
                unit: r.get::<_, Option<String>>(3)?.map(Arc::from),
            };
            ids.next = ids.next.max(id);
            ids.ids.insert(key, id);
        }
        Ok(ids)
    }

    fn id(&mut self, r: &Reading) -> i32 {
        if let Some((k, id)) = &self.last {
            let same_unit = match (&k.unit, &r.unit) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if Arc::ptr_eq(&k.channel, &r.channel) && Arc::ptr_eq(&k.source, &r.source) && same_unit {
                return *id;
            }
        }
        let key = ChannelKey { channel: r.channel.clone(), source: r.source.clone(), unit: r.unit.clone() };
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None => {
                self.next += 1;
                self.ids.insert(key.clone(), self.next);
                self.new.push((self.next, key.clone()));
                self.next
            }
        };
        self.last = Some((key, id));
        id
    }

    /// Appends the channels met since the last commit (in its transaction),
    /// in one Arrow batch: row by row, each insert is planned anew.
    fn insert_new(&self, conn: &Connection) -> duckdb::Result<()> {
        if self.new.is_empty() {
            return Ok(());
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, true),
            Field::new("unit", DataType::Utf8, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(self.new.iter().map(|(id, _)| *id))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, k)| &*k.channel))),
            Arc::new(StringArray::from_iter_values(self.new.iter().map(|(_, k)| &*k.source))),
            Arc::new(StringArray::from_iter(self.new.iter().map(|(_, k)| k.unit.as_deref()))),
        ];
        let batch = RecordBatch::try_new(schema, cols).expect("columns match the schema");
        let mut app = conn.appender("channels")?;
        app.append_record_batch(batch)?;
        app.flush()
    }
}

/// Columns of `reading_rows` being gathered for the next commit.
struct ReadingColumns {
    ts: TimestampMicrosecondBuilder,
    channel: Int32Builder,
    value: Float64Builder,
    quality: UInt8Builder,
    flags: StringBuilder,
    text: StringBuilder,
    inputs: StringBuilder,
    voted_out: StringBuilder,
    spread: Float64Builder,
    len: usize,
    flag_buf: String,
    channels: ChannelIds,
}

impl ReadingColumns {
    fn new(cap: usize, channels: ChannelIds) -> Self {
        ReadingColumns {
            ts: TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"),
            channel: Int32Builder::with_capacity(cap),
            value: Float64Builder::with_capacity(cap),
            quality: UInt8Builder::with_capacity(cap),
            flags: StringBuilder::with_capacity(cap, 64),
            text: StringBuilder::with_capacity(cap, 0),
            inputs: StringBuilder::with_capacity(cap, 0),
            voted_out: StringBuilder::with_capacity(cap, 0),
            spread: Float64Builder::with_capacity(cap),
            len: 0,
            flag_buf: String::new(),
            channels,
        }
    }

    fn push(&mut self, r: &Reading) {
        self.ts.append_value(r.ts);
        self.channel.append_value(self.channels.id(r));
        self.value.append_option(r.value.filter(|v| v.is_finite()));
        self.quality.append_value(quality_code(r.quality));
        if r.flags.is_empty() {
            self.flags.append_null();
        } else {
            self.flag_buf.clear();
            for (i, n) in r.flags.names().enumerate() {
                if i > 0 {
                    self.flag_buf.push(',');
                }
                self.flag_buf.push_str(n);
            }
            self.flags.append_value(&self.flag_buf);
        }
        self.text.append_option(r.text.as_deref());
        match &r.fusion {
            None => {
                self.inputs.append_null();
                self.voted_out.append_null();
                self.spread.append_null();
            }
            Some(f) => {
                for (col, list) in [(&mut self.inputs, &f.inputs), (&mut self.voted_out, &f.voted_out)] {
                    self.flag_buf.clear();
                    for (i, c) in list.iter().enumerate() {
                        if i > 0 {
                            self.flag_buf.push(',');
                        }
                        self.flag_buf.push_str(c);
                    }
                    col.append_value(&self.flag_buf);
                }
                self.spread.append_option(Some(f.spread).filter(|s| s.is_finite()));
            }
        }
        self.len += 1;
    }

    /// The gathered readings as one Arrow batch, every row in commit `commit_no`.
    fn finish(&mut self, commit_no: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("channel_id", DataType::Int32, false),
            Field::new("value", DataType::Float64, true),
            Field::new("quality", DataType::UInt8, false),
            Field::new("flags", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("inputs", DataType::Utf8, true),
            Field::new("voted_out", DataType::Utf8, true),
            Field::new("spread", DataType::Float64, true),
            Field::new("commit_no", DataType::Int64, true),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.quality.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.inputs.finish()),
            Arc::new(self.voted_out.finish()),
            Arc::new(self.spread.finish()),
            Arc::new(Int64Array::from_value(commit_no, self.len)),
        ];
        self.len = 0;
        RecordBatch::try_new(schema, cols).expect("columns match the schema")
    }
}

/// Settings of the writer thread.
pub struct WriterConfig {
    pub batch: usize,
    pub flush: Duration,
    /// Store readings that were read with `--input`.
    pub store_input: bool,
    /// Kinds stored (`store.records`); the rest is passed over.
    pub readings: bool,
    pub anomalies: bool,
    pub alerts: bool,
    /// Counters bumped on every commit (`serve` shows them in `/metrics`).
    pub counters: Option<std::sync::Arc<CommitCounters>>,
    /// Told the number of every commit as it is made (forward targets wake on it).
    pub committed: Option<tokio::sync::watch::Sender<i64>>,
    /// The run is stopping (a commit waiting on a full disk then gives up in time).
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// What the writer has committed so far, readable while it runs.
#[derive(Debug, Default)]
pub struct CommitCounters {
    pub commits: std::sync::atomic::AtomicU64,
    /// Rows (readings and events) committed.
    pub rows: std::sync::atomic::AtomicU64,
    /// Time spent committing, in microseconds.
    pub micros: std::sync::atomic::AtomicU64,
    /// Why commits fail now (set while a full disk is waited out).
    failing: std::sync::Mutex<Option<String>>,
}

impl CommitCounters {
    /// Why commits fail now (a full disk), if they do.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_failing(&self, why: Option<String>) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn committed(&self, rows: u64, micros: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.rows.fetch_add(rows, Relaxed);
        self.micros.fetch_add(micros, Relaxed);
    }
}

/// Runs the writer until the channel closes; commits what is left, then
/// returns the store (so the caller can save state) and its stats.
pub fn run_writer(
    store: Store,
    rx: Receiver<Handed>,
    cfg: WriterConfig,
) -> Result<(Store, StoreStats), (StoreError, StoreStats)> {
    let mut stats = StoreStats::default();
    let channels = ChannelIds::load(&store.conn).map_err(|e| (classify(&store.path, e), stats))?;
    let mut cols = ReadingColumns::new(cfg.batch.min(65_536), channels);
    let mut first_pending: Option<Instant> = None;
    let mut last_retention = Instant::now();
    // Hooks of the batches whose records are in `cols`: they run after the commit.
    let mut hooks: Vec<CommitHook> = Vec::new();
    let mut events: Vec<EventRow> = Vec::new();
    // The stage state after the last batch taken, until a commit writes it.
    let mut state: Option<Vec<StateRow>> = None;
    loop {
        let wait = match first_pending {
            Some(t) => cfg.flush.saturating_sub(t.elapsed()),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Handed { records: batch, on_commit: hook, checkpoint }) => {
                for rec in &batch {
                    match rec {
                        Record::Reading(r) => {
                            if (r.from_input && !cfg.store_input) || !cfg.readings {
                                continue;
                            }
                            cols.push(r);
                            if cols.len >= cfg.batch {
                                // A hook waits for the commit that holds its batch's last record.
                                commit(&store, &mut cols, &mut events, &mut state, &mut stats, &cfg, &mut hooks)
                                    .map_err(|e| (e, stats))?;
                                first_pending = None;
                            }
                        }
                        Record::Anomaly(a) if cfg.anomalies && (!a.from_input || cfg.store_input) => {
                            events.push(EventRow::Anomaly(a.clone()))
                        }
                        Record::Alert(a) if cfg.alerts && (!a.from_input || cfg.store_input) => {
                            events.push(EventRow::Alert(a.clone()))
                        }
                        Record::Delivery(d) if cfg.alerts => events.push(EventRow::Delivery(d.clone())),
                        // Read with --input and not kept, a kind `store.records` leaves
                        // out, or of a kind this version does not know.
                        Record::Anomaly(_) | Record::Alert(_) | Record::Delivery(_) | Record::Other { .. } => {}
                    }
                }
                hooks.extend(hook);
                if checkpoint.is_some() {
                    state = checkpoint;
                }
                let waiting = cols.len > 0 || !hooks.is_empty() || !events.is_empty() || state.is_some();
                if waiting && first_pending.is_none() {
                    first_pending = Some(Instant::now());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if first_pending.is_some_and(|t| t.elapsed() >= cfg.flush) {
            commit(&store, &mut cols, &mut events, &mut state, &mut stats, &cfg, &mut hooks).map_err(|e| (e, stats))?;
            first_pending = None;
        }
        if last_retention.elapsed() >= Duration::from_secs(3600) {
            stats.retention_deleted += store.apply_retention().map_err(|e| (e, stats))? as u64;
            last_retention = Instant::now();
        }
    }
    commit(&store, &mut cols, &mut events, &mut state, &mut stats, &cfg, &mut hooks).map_err(|e| (e, stats))?;
    Ok((store, stats))
}

/// Commits the gathered readings (and the stage state after them), then
/// runs the hooks waiting for them.
///
/// A full disk is waited out: the commit is tried again (200 ms → 5 s) with
/// the same rows until it goes through, and meanwhile the writer takes no
/// more batches, so the engine and then the sources wait (MQTT leaves its
/// messages unacknowledged at the broker). Once the run is stopping, the
/// writer waits [`FULL_DISK_GRACE`] more, then gives up with the error: what
/// it held was never acknowledged.
fn commit(
    store: &Store,
    cols: &mut ReadingColumns,
    events: &mut Vec<EventRow>,
    state: &mut Option<Vec<StateRow>>,
    stats: &mut StoreStats,
    cfg: &WriterConfig,
    hooks: &mut Vec<CommitHook>,
) -> Result<(), StoreError> {
    let rows = cols.len + events.len();
    // Built once, so that a retry commits the same rows.
    let batch = (cols.len > 0).then(|| cols.finish(store.last_commit.get() + 1));
    let (started, mut attempt, mut stopping_since) = (Instant::now(), 0u32, None::<Instant>);
    loop {
        let result = if rows == 0 {
            // Nothing new since the state was taken: it goes alone.
            state.as_deref().map_or(Ok(()), |s| store.save_states(s))
        } else {
            commit_records(store, batch.clone(), &cols.channels, events, state.as_deref(), stats)
        };
        match result {
            Ok(()) => break,
            Err(e) if state.is_some() && !e.is_disk_full() => {
                // The records matter more than a checkpoint (DuckDB could not
                // take the state: too big for its memory limit, say). They go
                // without it; the last checkpoint stays, and the end of the run
                // tries again.
                tracing::error!("{e}; committing without the checkpoint of the stage state");
                *state = None;
            }
            Err(e) if e.is_disk_full() => {
                if attempt == 0 {
                    tracing::error!("{e}; holding {rows} records and retrying (the sources wait)");
                }
                if let Some(t) = &cfg.counters {
                    t.set_failing(Some(e.to_string()));
                }
                if cfg.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                    let since = *stopping_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= FULL_DISK_GRACE {
                        return Err(e);
                    }
                }
                std::thread::sleep(Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5)).min(5_000)));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if attempt > 0 {
        tracing::warn!("store: committing again after {:.1} s", started.elapsed().as_secs_f64());
        if let Some(t) = &cfg.counters {
            t.set_failing(None);
        }
    }
    events.clear();
    cols.channels.new.clear();
    if state.take().is_some() {
        stats.checkpoints += 1;
    }
    if rows > 0 {
        if let Some(t) = &cfg.counters {
            t.committed(rows as u64, started.elapsed().as_micros() as u64);
        }
        if let Some(w) = &cfg.committed {
            w.send_replace(store.last_commit.get());
        }
    }
    for hook in hooks.drain(..) {
        hook();
    }
    Ok(())
}

/// Adds the readings of commit `commit_no` (in the open transaction) to the
/// rollup tier `r`: one row per channel and bucket they fall in, merged
/// into the row already there. Nothing is rescanned but this commit's rows,
/// and nothing is held in memory between commits: a bucket that spans
/// commits, runs or a restart is completed by the commits that reach it.
/// Readings with a value count, unless they are `bad`.
fn roll_up(conn: &Connection, r: &RollupPlan, commit_no: i64) -> duckdb::Result<usize> {
    // Typed parameters: an untyped one makes DuckDB plan the statement
    // again on every execution.
    let mut st = conn.prepare_cached(
        "INSERT INTO rollup_rows
            SELECT $1::BIGINT, channel_id, (epoch_us(ts) // $1::BIGINT) * $1::BIGINT AS bucket, count(*),
                   sum(value), min(value), max(value), arg_min(value, ts), min(epoch_us(ts)),
                   arg_max(value, ts), max(epoch_us(ts))
            FROM reading_rows WHERE commit_no = $2::BIGINT AND value IS NOT NULL AND quality < 2
            GROUP BY channel_id, bucket
         ON CONFLICT DO UPDATE SET
            count = count + excluded.count, sum = sum + excluded.sum,
            min = least(min, excluded.min), max = greatest(max, excluded.max),
            first = CASE WHEN excluded.first_us < first_us THEN excluded.first ELSE first END,
            first_us = least(first_us, excluded.first_us),
            last = CASE WHEN excluded.last_us >= last_us THEN excluded.last ELSE last END,
            last_us = greatest(last_us, excluded.last_us)",
    )?;
    st.execute(duckdb::params![r.every_us(), commit_no])
}

/// How long a stopping run keeps retrying a commit on a full disk.
const FULL_DISK_GRACE: Duration = Duration::from_secs(10);

/// Readings (Arrow appender), anomalies and alerts (rows) in one transaction.
fn commit_records(
    store: &Store,
    batch: Option<RecordBatch>,
    channels: &ChannelIds,
    events: &[EventRow],
    state: Option<&[StateRow]>,
    stats: &mut StoreStats,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let n = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
    let n_anomalies = events.iter().filter(|e| matches!(e, EventRow::Anomaly(_))).count() as u64;
    let n_alerts = events.len() as u64 - n_anomalies;
    let commit_no = store.last_commit.get() + 1;
    // One explicit transaction per batch: the appender may flush on its own
    // inside a large batch, and a batch is all or nothing.
    let err = |e| classify(&store.path, e);
    store.conn.execute_batch("BEGIN TRANSACTION").map_err(err)?;
    let appended = (|| {
        if let Some(batch) = batch {
            channels.insert_new(&store.conn)?;
            let mut app = store.conn.appender("reading_rows")?;
            app.append_record_batch(batch)?;
            app.flush()?;
            drop(app);
            for r in &store.rollups {
                roll_up(&store.conn, r, commit_no)?;
            }
        }
        if !events.is_empty() {
            // ts goes in as text: DuckDB casts RFC 3339 to TIMESTAMPTZ.
            let mut st = store
                .conn
                .prepare("INSERT INTO anomalies VALUES (CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, ?, ?)")?;
            let mut al = store
                .conn
                .prepare("INSERT INTO alerts VALUES (CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")?;
            let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
            let mut alert_row = |a: &Alert, notifier: Option<&str>, error: Option<&str>| {
                let labels = (!a.labels.is_empty()).then(|| serde_json::to_string(&a.labels).unwrap_or_default());
                al.execute(duckdb::params![
                    format_rfc3339(a.ts),
                    a.rule,
                    a.state.as_str(),
                    a.severity,
                    a.channel,
                    finite(a.value),
                    a.title,
                    a.fingerprint,
                    notifier,
                    error,
                    commit_no,
                    (!a.body.is_empty()).then_some(a.body.as_str()),
                    labels
                ])
            };
            for e in events {
                match e {
                    EventRow::Anomaly(a) => st.execute(duckdb::params![
                        format_rfc3339(a.ts),
                        a.channel,
                        a.detector,
                        a.method,
                        finite(a.value),
                        finite(a.score),
                        finite(a.expected),
                        finite(a.threshold),
                        a.detail,
                        commit_no
                    ])?,
                    EventRow::Alert(a) => alert_row(a, None, None)?,
                    EventRow::Delivery(d) => alert_row(&d.alert, Some(&d.notifier), d.error.as_deref())?,
                };
            }
        }
        store.conn.execute(
            "INSERT INTO commits VALUES (?, CAST(? AS TIMESTAMPTZ), ?, ?)",
            duckdb::params![
                commit_no,
                format_rfc3339(crate::model::time::now_micros()),
                n as i64,
                (n_anomalies + n_alerts) as i64
            ],
        )?;
        if let Some(rows) = state {
            write_states(&store.conn, rows)?;
        }
        Ok::<(), duckdb::Error>(())
    })();
    match appended {
        Ok(()) => {
            store.conn.execute_batch("COMMIT").map_err(err)?;
            store.last_commit.set(commit_no);
        }
        Err(e) => {
            let _ = store.conn.execute_batch("ROLLBACK");
            return Err(err(e));
        }
    }
    stats.readings += n;
    stats.anomalies += n_anomalies;
    stats.alerts += n_alerts;
    stats.commits += 1;
    stats.commit_time += started.elapsed();
    Ok(())
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

    #[test]
    fn quality_codes_are_those_the_view_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.duckdb"), None).unwrap();
        store.conn.execute("INSERT INTO channels VALUES (1, 'a.b', 's', NULL)", []).unwrap();
        for q in [Quality::Good, Quality::Suspect, Quality::Bad] {
            store.conn.execute("DELETE FROM reading_rows", []).unwrap();
            store
                .conn
                .execute("INSERT INTO reading_rows (ts, channel_id, quality) VALUES (now(), 1, ?)", [quality_code(q)])
                .unwrap();
            let name: String = store.conn.query_row("SELECT quality FROM readings", [], |r| r.get(0)).unwrap();
            assert_eq!(name, q.as_str());
        }
    }
}
