//! Rows gathered for the next files of the lake, and the files made of them.
//!
//! Records are appended to tables of an in-memory DuckDB database as
//! messages arrive (readings through Arrow, a column at a time; the rare
//! anomalies and alerts a row at a time). Every row carries its dedup key —
//! `site, gateway, epoch, commit_no, idx` (`idx`: the record's position among
//! its commit's forwarded records) — so a message the hub delivered twice,
//! to this collector or another, is recognised in the lake. A roll writes
//! each table with DuckDB's `COPY … PARTITION_BY` into a scratch folder;
//! each file is then named from its content: a hash over its table, its
//! partition and the sorted ids of the messages whose rows it holds, so the
//! same messages written again make the same name (and a create-only put
//! makes the retry harmless).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use sha2::{Digest, Sha256};

use crate::compile::ParquetPlan;
use crate::model::envelope::Envelope;
use crate::model::record::{Reading, Record};
use crate::model::time::format_rfc3339;
use crate::spec::{LakeTable, ParquetCompression, PartitionKey};

const KEY: &str = "site VARCHAR NOT NULL, gateway VARCHAR NOT NULL, epoch VARCHAR NOT NULL, \
     commit_no BIGINT NOT NULL, idx BIGINT NOT NULL";

/// The lake's tables: the dedup key, the record's fields as the store has
/// them, and `date` (the record's UTC day, a partition key).
fn ddl(t: LakeTable) -> String {
    let cols = match t {
        LakeTable::Readings => {
            "ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, value DOUBLE, text VARCHAR, unit VARCHAR, \
             quality VARCHAR NOT NULL, flags VARCHAR, source VARCHAR, inputs VARCHAR, voted_out VARCHAR, \
             spread DOUBLE, backlog BOOLEAN NOT NULL"
        }
        LakeTable::Anomalies => {
            "ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, detector VARCHAR NOT NULL, method VARCHAR, \
             value DOUBLE, score DOUBLE, expected DOUBLE, threshold DOUBLE, detail VARCHAR"
        }
        LakeTable::Alerts => {
            "ts TIMESTAMPTZ NOT NULL, rule VARCHAR NOT NULL, state VARCHAR NOT NULL, severity VARCHAR, \
             channel VARCHAR, value DOUBLE, title VARCHAR, body VARCHAR, fingerprint VARCHAR, labels VARCHAR"
        }
    };
    format!("CREATE TABLE {} ({KEY}, {cols}, date VARCHAR NOT NULL)", t.as_str())
}

/// One file made by a roll: where it lies now and its key in the lake.
#[derive(Debug, Clone)]
pub struct LakeFile {
    pub local: PathBuf,
    /// `readings/site=…/date=…/<hash>.parquet`, relative to the lake's root.
    pub key: String,
}

/// The rows of the next roll.
pub struct Lake {
    conn: Connection,
    plan: ParquetPlan,
    /// Rows gathered, per table.
    pub rows: BTreeMap<LakeTable, u64>,
    /// Per table and partition folder: the ids of the messages with rows there.
    ids: BTreeMap<(LakeTable, String), BTreeSet<String>>,
    readings: ReadingColumns,
    days: DayCache,
}

impl Lake {
    pub fn new(plan: &ParquetPlan) -> duckdb::Result<Lake> {
        let conn = Connection::open_in_memory()?;
        // Rolls run beside the collector's own work: two threads are enough.
        // One file per partition as a rule (more open partitions than a
        // fleet's sites and days before DuckDB splits one).
        conn.execute_batch(
            "SET threads = 2; SET preserve_insertion_order = false; SET partitioned_write_max_open_files = 100000;",
        )?;
        for t in &plan.tables {
            conn.execute_batch(&ddl(*t))?;
        }
        Ok(Lake {
            conn,
            plan: plan.clone(),
            rows: BTreeMap::new(),
            ids: BTreeMap::new(),
            readings: ReadingColumns::new(),
            days: DayCache::default(),
        })
    }

    /// Rows waiting for the next roll.
    pub fn len(&self) -> u64 {
        self.rows.values().sum::<u64>() + self.readings.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wants(&self, t: LakeTable) -> bool {
        self.plan.tables.contains(&t)
    }

    /// The partition folder of a row: `site=berlin/date=2026-12-06`.
    fn folder(&mut self, env: &Envelope, ts: i64) -> String {
        let mut out = String::new();
        for (i, k) in self.plan.partition.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(k.as_str());
            out.push('=');
            match k {
                PartitionKey::Site => out.push_str(&env.site),
                PartitionKey::Gateway => out.push_str(&env.gateway),
                PartitionKey::Date => out.push_str(self.days.day(ts)),
            }
        }
        out
    }

    /// Takes the records of one message.
    pub fn add(&mut self, env: &Envelope, records: &[Record]) -> duckdb::Result<()> {
        let id = env.id();
        let mut last: Option<(LakeTable, i64)> = None;
        for (i, r) in records.iter().enumerate() {
            let idx = env.offset as i64 + i as i64;
            let (table, ts) = match r {
                Record::Reading(x) => (LakeTable::Readings, x.ts),
                Record::Anomaly(x) => (LakeTable::Anomalies, x.ts),
                Record::Alert(x) => (LakeTable::Alerts, x.ts),
                Record::Delivery(_) | Record::Other { .. } => continue,
            };
            if !self.wants(table) {
                continue;
            }
            // The partition (and the id set) only changes with the table or the day.
            let day = ts.div_euclid(86_400_000_000);
            if last != Some((table, day)) {
                let folder = self.folder(env, ts);
                self.ids.entry((table, folder)).or_default().insert(id.clone());
                last = Some((table, day));
            }
            let date = self.days.day(ts);
            match r {
                Record::Reading(x) => self.readings.push(env, idx, x, date),
                Record::Anomaly(a) => {
                    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
                    self.conn
                        .prepare_cached(
                            "INSERT INTO anomalies VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        )?
                        .execute(params![
                        env.site,
                        env.gateway,
                        env.epoch,
                        env.commit,
                        idx,
                        format_rfc3339(a.ts),
                        a.channel,
                        a.detector,
                        a.method,
                        finite(a.value),
                        finite(a.score),
                        finite(a.expected),
                        finite(a.threshold),
                        a.detail,
                        date,
                    ])?;
                    *self.rows.entry(LakeTable::Anomalies).or_default() += 1;
                }
                Record::Alert(a) => {
                    let labels = serde_json::to_string(&a.labels).unwrap_or_default();
                    self.conn
                        .prepare_cached(
                            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        )?
                        .execute(params![
                        env.site,
                        env.gateway,
                        env.epoch,
                        env.commit,
                        idx,
                        format_rfc3339(a.ts),
                        a.rule,
                        a.state.as_str(),
                        a.severity,
                        a.channel,
                        a.value.filter(|v| v.is_finite()),
                        a.title,
                        a.body,
                        a.fingerprint,
                        labels,
                        date,
                    ])?;
                    *self.rows.entry(LakeTable::Alerts).or_default() += 1;
                }
                Record::Delivery(_) | Record::Other { .. } => {}
            }
        }
        if self.readings.len >= 65_536 {
            self.flush_readings()?;
        }
        Ok(())
    }

    fn flush_readings(&mut self) -> duckdb::Result<()> {
        if self.readings.len == 0 {
            return Ok(());
        }
        let n = self.readings.len as u64;
        let batch = self.readings.finish();
        let mut app = self.conn.appender("readings")?;
        app.append_record_batch(batch)?;
        app.flush()?;
        *self.rows.entry(LakeTable::Readings).or_default() += n;
        Ok(())
    }

    /// Writes every table's rows as Parquet files under `scratch` and names
    /// them; the rows stay until [`Lake::clear`] (after the upload).
    pub fn write(&mut self, scratch: &Path) -> Result<Vec<LakeFile>, String> {
        self.flush_readings().map_err(|e| format!("gathering rows: {e}"))?;
        let compression = match self.plan.compression {
            ParquetCompression::Zstd => "zstd",
            ParquetCompression::Snappy => "snappy",
            ParquetCompression::Uncompressed => "uncompressed",
        };
        let by: Vec<&str> = self.plan.partition.iter().map(|k| k.as_str()).collect();
        let mut files = Vec::new();
        for t in self.plan.tables.clone() {
            if self.rows.get(&t).copied().unwrap_or(0) == 0 {
                continue;
            }
            let dir = scratch.join(t.as_str());
            let target = dir.to_string_lossy().replace('\'', "''");
            let options = if by.is_empty() {
                format!("FORMAT parquet, COMPRESSION {compression}")
            } else {
                format!(
                    "FORMAT parquet, COMPRESSION {compression}, PARTITION_BY ({}), FILENAME_PATTERN 'part_{{i}}', \
                     OVERWRITE_OR_IGNORE true",
                    by.join(", ")
                )
            };
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let sql = if by.is_empty() {
                format!("COPY {} TO '{target}/part_0.parquet' ({options})", t.as_str())
            } else {
                format!("COPY {} TO '{target}' ({options})", t.as_str())
            };
            self.conn.execute_batch(&sql).map_err(|e| format!("writing {}: {e}", t.as_str()))?;
            let written = parquet_files(&dir)?;
            let folder_of = |local: &Path| {
                local
                    .parent()
                    .and_then(|p| p.strip_prefix(&dir).ok())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            for local in &written {
                let folder = folder_of(local);
                let Some(ids) = self.ids.get(&(t, folder.clone())) else {
                    return Err(format!("DuckDB wrote a partition this collector did not expect: {folder}"));
                };
                // One file for the partition: named by the messages it holds, so
                // the same messages make the same name. Several (DuckDB split
                // it): which rows went where can differ between two writes, so
                // each is also named by its bytes — a retry may then add a copy
                // (the dedup view removes it), but never hides a row.
                let parts = written.iter().filter(|w| folder_of(w) == folder).count();
                let bytes = if parts > 1 {
                    Some(std::fs::read(local).map_err(|e| format!("{}: {e}", local.display()))?)
                } else {
                    None
                };
                let name = content_name(t, &folder, ids, bytes.as_deref());
                let local = local.clone();
                let key = if folder.is_empty() {
                    format!("{}/{name}.parquet", t.as_str())
                } else {
                    format!("{}/{folder}/{name}.parquet", t.as_str())
                };
                files.push(LakeFile { local, key });
            }
        }
        Ok(files)
    }

    /// Forgets the rows of the last roll (they are in the lake). Tables are
    /// made anew rather than emptied, so a long-running collector's memory
    /// does not keep what it deleted.
    pub fn clear(&mut self) -> duckdb::Result<()> {
        for t in &self.plan.tables {
            self.conn.execute_batch(&format!("DROP TABLE {}; {}", t.as_str(), ddl(*t)))?;
        }
        self.conn.flush_prepared_statement_cache();
        self.rows.clear();
        self.ids.clear();
        Ok(())
    }
}

/// Every `.parquet` file below `dir`, in a stable order.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", d.display())),
        };
        for e in entries {
            let p = e.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A file's name from what it holds: the table, the partition, the ids of
/// its messages (and its bytes, when a partition took several files) — 24
/// hex digits of SHA-256.
fn content_name(t: LakeTable, folder: &str, ids: &BTreeSet<String>, bytes: Option<&[u8]>) -> String {
    let mut h = Sha256::new();
    h.update(t.as_str());
    h.update([0]);
    h.update(folder);
    h.update([0]);
    for id in ids {
        h.update(id);
        h.update([b'\n']);
    }
    if let Some(b) = bytes {
        h.update([0]);
        h.update(b);
    }
    let d = h.finalize();
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYY-MM-DD` of a time, remembered per day.
#[derive(Default)]
struct DayCache {
    day: i64,
    text: String,
}

impl DayCache {
    fn day(&mut self, ts: i64) -> &str {
        let day = ts.div_euclid(86_400_000_000);
        if self.text.is_empty() || day != self.day {
            self.day = day;
            let full = format_rfc3339(day * 86_400_000_000);
            self.text = full.get(..10).unwrap_or(&full).to_string();
        }
        &self.text
    }
}

/// Columns of lake readings being gathered.
struct ReadingColumns {
    site: StringBuilder,
    gateway: StringBuilder,
    epoch: StringBuilder,
    commit_no: Int64Builder,
    idx: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    channel: StringBuilder,
    value: Float64Builder,
    text: StringBuilder,
    unit: StringBuilder,
    quality: StringBuilder,
    flags: StringBuilder,
    source: StringBuilder,
    inputs: StringBuilder,
    voted_out: StringBuilder,
    spread: Float64Builder,
    backlog: BooleanBuilder,
    date: StringBuilder,
    len: usize,
    buf: String,
}

impl ReadingColumns {
    fn new() -> ReadingColumns {
        ReadingColumns {
            site: StringBuilder::new(),
            gateway: StringBuilder::new(),
            epoch: StringBuilder::new(),
            commit_no: Int64Builder::new(),
            idx: Int64Builder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            channel: StringBuilder::new(),
            value: Float64Builder::new(),
            text: StringBuilder::new(),
            unit: StringBuilder::new(),
            quality: StringBuilder::new(),
            flags: StringBuilder::new(),
            source: StringBuilder::new(),
            inputs: StringBuilder::new(),
            voted_out: StringBuilder::new(),
            spread: Float64Builder::new(),
            backlog: BooleanBuilder::new(),
            date: StringBuilder::new(),
            len: 0,
            buf: String::new(),
        }
    }

    fn list(buf: &mut String, items: impl Iterator<Item = impl AsRef<str>>) -> &str {
        buf.clear();
        for (i, s) in items.enumerate() {
            if i > 0 {
                buf.push(',');
            }
            buf.push_str(s.as_ref());
        }
        buf
    }

    fn push(&mut self, env: &Envelope, idx: i64, r: &Reading, date: &str) {
        self.site.append_value(&env.site);
        self.gateway.append_value(&env.gateway);
        self.epoch.append_value(&env.epoch);
        self.commit_no.append_value(env.commit);
        self.idx.append_value(idx);
        self.ts.append_value(r.ts);
        self.channel.append_value(&*r.channel);
        self.value.append_option(r.value.filter(|v| v.is_finite()));
        self.text.append_option(r.text.as_deref());
        self.unit.append_option(r.unit.as_deref());
        self.quality.append_value(r.quality.as_str());
        if r.flags.is_empty() {
            self.flags.append_null();
        } else {
            self.flags.append_value(Self::list(&mut self.buf, r.flags.names()));
        }
        self.source.append_value(&*r.source);
        match &r.fusion {
            None => {
                self.inputs.append_null();
                self.voted_out.append_null();
                self.spread.append_null();
            }
            Some(f) => {
                self.inputs.append_value(Self::list(&mut self.buf, f.inputs.iter()));
                self.voted_out.append_value(Self::list(&mut self.buf, f.voted_out.iter()));
                self.spread.append_option(Some(f.spread).filter(|s| s.is_finite()));
            }
        }
        self.backlog.append_value(env.backlog);
        self.date.append_value(date);
        self.len += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let schema = Arc::new(Schema::new(vec![
            s("site", false),
            s("gateway", false),
            s("epoch", false),
            Field::new("commit_no", DataType::Int64, false),
            Field::new("idx", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            s("channel", false),
            Field::new("value", DataType::Float64, true),
            s("text", true),
            s("unit", true),
            s("quality", false),
            s("flags", true),
            s("source", true),
            s("inputs", true),
            s("voted_out", true),
            Field::new("spread", DataType::Float64, true),
            Field::new("backlog", DataType::Boolean, false),
            s("date", false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.site.finish()),
            Arc::new(self.gateway.finish()),
            Arc::new(self.epoch.finish()),
            Arc::new(self.commit_no.finish()),
            Arc::new(self.idx.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.quality.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.inputs.finish()),
            Arc::new(self.voted_out.finish()),
            Arc::new(self.spread.finish()),
            Arc::new(self.backlog.finish()),
            Arc::new(self.date.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema, cols).expect("columns match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::LakeDest;

    fn plan(partition: Vec<PartitionKey>) -> ParquetPlan {
        ParquetPlan {
            dest: LakeDest::Folder { path: PathBuf::from("/nowhere") },
            tables: LakeTable::ALL.to_vec(),
            partition,
            max_rows: 1000,
            max_age: std::time::Duration::from_secs(60),
            compression: ParquetCompression::Zstd,
        }
    }

    fn env(gateway: &str, commit: i64) -> Envelope {
        Envelope {
            site: "berlin".into(),
            gateway: gateway.into(),
            epoch: "00ff".into(),
            commit,
            part: 0,
            offset: 10,
            count: 3,
            schema: 5,
            backlog: false,
            zstd: false,
        }
    }

    #[test]
    fn rows_land_in_partition_folders_under_content_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(&plan(vec![PartitionKey::Site, PartitionKey::Date])).unwrap();
        // Two days in one message, one reading a day apart.
        let day = 86_400;
        let recs = vec![
            Reading::sample("a", 1_800_000_000, Some(1.0)),
            Reading::sample("a", 1_800_000_001, Some(2.0)),
            Reading::sample("a", 1_800_000_000 + day, Some(3.0)),
        ];
        lake.add(&env("gw-1", 7), &recs).unwrap();
        assert_eq!(lake.len(), 3);
        let files = lake.write(dir.path()).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().all(|f| f.key.starts_with("readings/site=berlin/date=2027-01-")), "{files:?}");
        let rows: i64 = files
            .iter()
            .map(|f| {
                let p = f.local.to_string_lossy().to_string();
                lake.conn
                    .query_row(&format!("SELECT count(*) FROM read_parquet('{p}')"), [], |r| r.get::<_, i64>(0))
                    .unwrap()
            })
            .sum();
        assert_eq!(rows, 3);
        // The same messages again give the same names.
        let again = {
            let dir2 = tempfile::tempdir().unwrap();
            let mut lake2 = Lake::new(&plan(vec![PartitionKey::Site, PartitionKey::Date])).unwrap();
            lake2.add(&env("gw-1", 7), &recs).unwrap();
            lake2.write(dir2.path()).unwrap().into_iter().map(|f| f.key).collect::<Vec<_>>()
        };
        assert_eq!(files.iter().map(|f| f.key.clone()).collect::<Vec<_>>(), again);
        // Other messages, other names.
        lake.clear().unwrap();
        assert!(lake.is_empty());
        lake.add(&env("gw-1", 8), &recs).unwrap();
        let next = lake.write(&dir.path().join("b")).unwrap();
        assert!(next.iter().all(|f| !files.iter().any(|g| g.key == f.key)));
        // The dedup key is in the rows: idx starts at the message's offset.
        let p = next[0].local.to_string_lossy().to_string();
        let (idx, commit): (i64, i64) = lake
            .conn
            .query_row(&format!("SELECT min(idx), min(commit_no) FROM read_parquet('{p}')"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((idx, commit), (10, 8));
    }

    #[test]
    fn no_partition_is_one_folder_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::new(&plan(vec![])).unwrap();
        lake.add(&env("gw-1", 1), &[Reading::sample("a", 1_800_000_000, Some(1.0))]).unwrap();
        let files = lake.write(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].key.starts_with("readings/") && files[0].key.matches('/').count() == 1, "{files:?}");
    }
}
