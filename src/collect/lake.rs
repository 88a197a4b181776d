//! Rows gathered for the next files of the lake, and the files made of them.
//!
//! Every partition of every table (`readings/site=berlin/date=2026-12-06`)
//! has its own Parquet file in a scratch folder, open while its rows
//! arrive: records are appended to Arrow columns, and every [`BATCH`] rows
//! the columns are encoded into the file (dictionary, statistics, the
//! spec's compression). Waiting rows are thus held encoded, not as values,
//! and a roll only closes the files. The partition columns are in the
//! folder names, not in the files (as hive partitioning has it).
//!
//! Every row carries its dedup key — `site, gateway, epoch, commit_no, idx`
//! (`idx`: the record's position among its commit's forwarded records) — so
//! a message the hub delivered twice, to this collector or another, is
//! recognised in the lake. Each file is named from its content: a hash over
//! its table, its partition and the sorted ids of the messages whose rows it
//! holds, so the same messages written again make the same name (and a
//! create-only put makes the retry harmless).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::compile::ParquetPlan;
use crate::model::envelope::Envelope;
use crate::model::record::{Alert, Anomaly, Reading, Record};
use crate::model::time::format_rfc3339;
use crate::spec::{LakeTable, ParquetCompression, PartitionKey};

/// Rows of a partition encoded into its file at once.
const BATCH: usize = 16_384;

/// One file made by a roll: where it lies now and its key in the lake.
#[derive(Debug, Clone)]
pub struct LakeFile {
    pub local: PathBuf,
    /// `readings/site=…/date=…/<hash>.parquet`, relative to the lake's root.
    pub key: String,
}

/// One partition of one table: its open file and the rows not yet in it.
struct Part {
    cols: Columns,
    writer: ArrowWriter<File>,
    local: PathBuf,
    /// The ids of the messages with rows here.
    ids: BTreeSet<String>,
}

/// The rows of the next roll.
pub struct Lake {
    plan: ParquetPlan,
    props: WriterProperties,
    /// Where the open files lie; removed with the lake.
    scratch: PathBuf,
    parts: BTreeMap<(LakeTable, String), Part>,
    /// Rows gathered, per table.
    pub rows: BTreeMap<LakeTable, u64>,
    /// The files of the last [`Lake::write`]: a retried roll puts them again.
    written: Option<Vec<LakeFile>>,
    days: DayCache,
}

impl Drop for Lake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Lake {
    pub fn new(plan: &ParquetPlan) -> Result<Lake, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let scratch = std::env::temp_dir().join(format!(
            "edgeguard-collect-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let compression = match plan.compression {
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Uncompressed => Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(format!("edgeguard {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Lake {
            plan: plan.clone(),
            props,
            scratch,
            parts: BTreeMap::new(),
            rows: BTreeMap::new(),
            written: None,
            days: DayCache::default(),
        })
    }

    /// Rows waiting for the next roll.
    pub fn len(&self) -> u64 {
        self.rows.values().sum()
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

    /// The open partition `folder` of `table`, made when it is new.
    fn part(&mut self, table: LakeTable, folder: String) -> Result<&mut Part, String> {
        use std::collections::btree_map::Entry;
        let n = self.parts.len();
        match self.parts.entry((table, folder)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let cols = Columns::new(table, &self.plan.partition);
                let schema = cols.schema();
                let local = self.scratch.join(format!("{}-{n}.parquet", table.as_str()));
                let file = File::create(&local).map_err(|e| format!("{}: {e}", local.display()))?;
                let writer = ArrowWriter::try_new(file, schema, Some(self.props.clone()))
                    .map_err(|e| format!("{}: {e}", local.display()))?;
                Ok(e.insert(Part { cols, writer, local, ids: BTreeSet::new() }))
            }
        }
    }

    /// Takes the records of one message.
    pub fn add(&mut self, env: &Envelope, records: &[Record]) -> Result<(), String> {
        self.written = None;
        let id = env.id();
        let table_of = |r: &Record| match r {
            Record::Reading(x) => Some((LakeTable::Readings, x.ts)),
            Record::Anomaly(x) => Some((LakeTable::Anomalies, x.ts)),
            Record::Alert(x) => Some((LakeTable::Alerts, x.ts)),
            Record::Delivery(_) | Record::Other { .. } => None,
        };
        let day = |ts: i64| ts.div_euclid(86_400_000_000);
        let mut i = 0;
        while i < records.len() {
            let Some((table, ts)) = table_of(&records[i]) else {
                i += 1;
                continue;
            };
            // A run of records of one table and day shares a partition.
            let mut end = i + 1;
            while end < records.len() && table_of(&records[end]).is_some_and(|(t, x)| t == table && day(x) == day(ts)) {
                end += 1;
            }
            if self.wants(table) {
                let folder = self.folder(env, ts);
                let date = self.days.day(ts).to_string();
                let part = self.part(table, folder)?;
                if !part.ids.contains(&id) {
                    part.ids.insert(id.clone());
                }
                for (k, r) in records[i..end].iter().enumerate() {
                    let idx = env.offset as i64 + (i + k) as i64;
                    part.cols.push(env, idx, r, &date);
                }
                if part.cols.len() >= BATCH {
                    part.flush()?;
                }
                *self.rows.entry(table).or_default() += (end - i) as u64;
            }
            i = end;
        }
        Ok(())
    }

    /// Closes every partition's file and names it; the rows stay until
    /// [`Lake::clear`] (after the upload), and a second call gives the same
    /// files.
    pub fn write(&mut self) -> Result<Vec<LakeFile>, String> {
        if let Some(files) = &self.written {
            return Ok(files.clone());
        }
        let mut files = Vec::new();
        for ((t, folder), mut part) in std::mem::take(&mut self.parts) {
            part.flush()?;
            part.writer.close().map_err(|e| format!("{}: {e}", part.local.display()))?;
            let name = content_name(t, &folder, &part.ids);
            let key = if folder.is_empty() {
                format!("{}/{name}.parquet", t.as_str())
            } else {
                format!("{}/{folder}/{name}.parquet", t.as_str())
            };
            files.push(LakeFile { local: part.local, key });
        }
        self.written = Some(files.clone());
        Ok(files)
    }

    /// Forgets the rows of the last roll (they are in the lake).
    pub fn clear(&mut self) -> Result<(), String> {
        for f in self.written.take().unwrap_or_default() {
            let _ = std::fs::remove_file(&f.local);
        }
        self.parts.clear();
        self.rows.clear();
        Ok(())
    }
}

impl Part {
    /// Encodes the gathered rows into the file.
    fn flush(&mut self) -> Result<(), String> {
        if self.cols.len() == 0 {
            return Ok(());
        }
        let batch = self.cols.finish();
        self.writer.write(&batch).map_err(|e| format!("{}: {e}", self.local.display()))
    }
}

/// A file's name from what it holds: the table, the partition and the ids
/// of its messages — 24 hex digits of SHA-256.
fn content_name(t: LakeTable, folder: &str, ids: &BTreeSet<String>) -> String {
    let mut h = Sha256::new();
    h.update(t.as_str());
    h.update([0]);
    h.update(folder);
    h.update([0]);
    for id in ids {
        h.update(id);
        h.update([b'\n']);
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

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// A comma-separated list in `buf`.
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

/// The columns every table starts with: the dedup key.
struct KeyColumns {
    site: StringBuilder,
    gateway: StringBuilder,
    epoch: StringBuilder,
    commit_no: Int64Builder,
    idx: Int64Builder,
    ts: TimestampMicrosecondBuilder,
}

impl KeyColumns {
    fn new() -> KeyColumns {
        KeyColumns {
            site: StringBuilder::new(),
            gateway: StringBuilder::new(),
            epoch: StringBuilder::new(),
            commit_no: Int64Builder::new(),
            idx: Int64Builder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
        }
    }

    fn push(&mut self, env: &Envelope, idx: i64, ts: i64) {
        self.site.append_value(&env.site);
        self.gateway.append_value(&env.gateway);
        self.epoch.append_value(&env.epoch);
        self.commit_no.append_value(env.commit);
        self.idx.append_value(idx);
        self.ts.append_value(ts);
    }

    fn finish(&mut self, out: &mut Vec<(Field, ArrayRef)>) {
        out.push(utf8("site", false, &mut self.site));
        out.push(utf8("gateway", false, &mut self.gateway));
        out.push(utf8("epoch", false, &mut self.epoch));
        out.push((Field::new("commit_no", DataType::Int64, false), Arc::new(self.commit_no.finish())));
        out.push((Field::new("idx", DataType::Int64, false), Arc::new(self.idx.finish())));
        out.push((
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Arc::new(self.ts.finish()),
        ));
    }
}

fn utf8(name: &str, nullable: bool, b: &mut StringBuilder) -> (Field, ArrayRef) {
    (Field::new(name, DataType::Utf8, nullable), Arc::new(b.finish()))
}

fn double(name: &str, b: &mut Float64Builder) -> (Field, ArrayRef) {
    (Field::new(name, DataType::Float64, true), Arc::new(b.finish()))
}

/// One table's rows being gathered: the key, the record's fields as the
/// store has them, and `date` (the record's UTC day, a partition key).
struct Columns {
    table: LakeTable,
    /// The partition keys: columns left out of the files.
    partition: Vec<PartitionKey>,
    key: KeyColumns,
    fields: Fields,
    date: StringBuilder,
    len: usize,
    buf: String,
}

enum Fields {
    Readings {
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
    },
    Anomalies {
        channel: StringBuilder,
        detector: StringBuilder,
        method: StringBuilder,
        value: Float64Builder,
        score: Float64Builder,
        expected: Float64Builder,
        threshold: Float64Builder,
        detail: StringBuilder,
    },
    Alerts {
        rule: StringBuilder,
        state: StringBuilder,
        severity: StringBuilder,
        channel: StringBuilder,
        value: Float64Builder,
        title: StringBuilder,
        body: StringBuilder,
        fingerprint: StringBuilder,
        labels: StringBuilder,
    },
}

impl Columns {
    fn new(t: LakeTable, partition: &[PartitionKey]) -> Columns {
        let s = StringBuilder::new;
        let f = Float64Builder::new;
        let fields = match t {
            LakeTable::Readings => Fields::Readings {
                channel: s(),
                value: f(),
                text: s(),
                unit: s(),
                quality: s(),
                flags: s(),
                source: s(),
                inputs: s(),
                voted_out: s(),
                spread: f(),
                backlog: BooleanBuilder::new(),
            },
            LakeTable::Anomalies => Fields::Anomalies {
                channel: s(),
                detector: s(),
                method: s(),
                value: f(),
                score: f(),
                expected: f(),
                threshold: f(),
                detail: s(),
            },
            LakeTable::Alerts => Fields::Alerts {
                rule: s(),
                state: s(),
                severity: s(),
                channel: s(),
                value: f(),
                title: s(),
                body: s(),
                fingerprint: s(),
                labels: s(),
            },
        };
        Columns {
            table: t,
            partition: partition.to_vec(),
            key: KeyColumns::new(),
            fields,
            date: s(),
            len: 0,
            buf: String::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends a record of this table (others are ignored).
    fn push(&mut self, env: &Envelope, idx: i64, r: &Record, date: &str) {
        match (&mut self.fields, r) {
            (Fields::Readings { .. }, Record::Reading(x)) => {
                self.key.push(env, idx, x.ts);
                self.push_reading(env, x);
            }
            (Fields::Anomalies { .. }, Record::Anomaly(x)) => {
                self.key.push(env, idx, x.ts);
                self.push_anomaly(x);
            }
            (Fields::Alerts { .. }, Record::Alert(x)) => {
                self.key.push(env, idx, x.ts);
                self.push_alert(x);
            }
            _ => return,
        }
        self.date.append_value(date);
        self.len += 1;
    }

    fn push_reading(&mut self, env: &Envelope, r: &Reading) {
        let Fields::Readings { channel, value, text, unit, quality, flags, source, inputs, voted_out, spread, backlog } =
            &mut self.fields
        else {
            return;
        };
        channel.append_value(&*r.channel);
        value.append_option(finite(r.value));
        text.append_option(r.text.as_deref());
        unit.append_option(r.unit.as_deref());
        quality.append_value(r.quality.as_str());
        if r.flags.is_empty() {
            flags.append_null();
        } else {
            flags.append_value(list(&mut self.buf, r.flags.names()));
        }
        source.append_value(&*r.source);
        match &r.fusion {
            None => {
                inputs.append_null();
                voted_out.append_null();
                spread.append_null();
            }
            Some(f) => {
                inputs.append_value(list(&mut self.buf, f.inputs.iter()));
                voted_out.append_value(list(&mut self.buf, f.voted_out.iter()));
                spread.append_option(finite(Some(f.spread)));
            }
        }
        backlog.append_value(env.backlog);
    }

    fn push_anomaly(&mut self, a: &Anomaly) {
        let Fields::Anomalies { channel, detector, method, value, score, expected, threshold, detail } =
            &mut self.fields
        else {
            return;
        };
        channel.append_value(&a.channel);
        detector.append_value(&a.detector);
        method.append_value(&a.method);
        value.append_option(finite(a.value));
        score.append_option(finite(a.score));
        expected.append_option(finite(a.expected));
        threshold.append_option(finite(a.threshold));
        detail.append_value(&a.detail);
    }

    fn push_alert(&mut self, a: &Alert) {
        let Fields::Alerts { rule, state, severity, channel, value, title, body, fingerprint, labels } =
            &mut self.fields
        else {
            return;
        };
        rule.append_value(&a.rule);
        state.append_value(a.state.as_str());
        severity.append_value(&a.severity);
        channel.append_value(&a.channel);
        value.append_option(finite(a.value));
        title.append_value(&a.title);
        body.append_value(&a.body);
        fingerprint.append_value(&a.fingerprint);
        labels.append_value(serde_json::to_string(&a.labels).unwrap_or_default());
    }

    /// Every column, in the table's order, as fields and arrays; the
    /// builders start over.
    fn columns(&mut self) -> Vec<(Field, ArrayRef)> {
        let mut out = Vec::with_capacity(20);
        self.key.finish(&mut out);
        match &mut self.fields {
            Fields::Readings {
                channel,
                value,
                text,
                unit,
                quality,
                flags,
                source,
                inputs,
                voted_out,
                spread,
                backlog,
            } => {
                out.extend([
                    utf8("channel", false, channel),
                    double("value", value),
                    utf8("text", true, text),
                    utf8("unit", true, unit),
                    utf8("quality", false, quality),
                    utf8("flags", true, flags),
                    utf8("source", true, source),
                    utf8("inputs", true, inputs),
                    utf8("voted_out", true, voted_out),
                    double("spread", spread),
                    (Field::new("backlog", DataType::Boolean, false), Arc::new(backlog.finish())),
                ]);
            }
            Fields::Anomalies { channel, detector, method, value, score, expected, threshold, detail } => {
                out.extend([
                    utf8("channel", false, channel),
                    utf8("detector", false, detector),
                    utf8("method", true, method),
                    double("value", value),
                    double("score", score),
                    double("expected", expected),
                    double("threshold", threshold),
                    utf8("detail", true, detail),
                ]);
            }
            Fields::Alerts { rule, state, severity, channel, value, title, body, fingerprint, labels } => {
                out.extend([
                    utf8("rule", false, rule),
                    utf8("state", false, state),
                    utf8("severity", true, severity),
                    utf8("channel", true, channel),
                    double("value", value),
                    utf8("title", true, title),
                    utf8("body", true, body),
                    utf8("fingerprint", true, fingerprint),
                    utf8("labels", true, labels),
                ]);
            }
        }
        out.push(utf8("date", false, &mut self.date));
        self.len = 0;
        out
    }

    /// The file's columns: all but the partition keys (they are in the
    /// folder names).
    fn kept(&self, cols: Vec<(Field, ArrayRef)>) -> (Schema, Vec<ArrayRef>) {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
            cols.into_iter().filter(|(f, _)| !self.partition.iter().any(|k| k.as_str() == f.name())).unzip();
        (Schema::new(fields), arrays)
    }

    /// The schema of this table's files.
    fn schema(&self) -> Arc<Schema> {
        Arc::new(self.kept(Columns::new(self.table, &self.partition).columns()).0)
    }

    /// The gathered rows as a batch of the file's columns.
    fn finish(&mut self) -> RecordBatch {
        let cols = self.columns();
        let (schema, arrays) = self.kept(cols);
        RecordBatch::try_new(Arc::new(schema), arrays).expect("columns match the schema")
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

    fn query<T: duckdb::types::FromSql>(sql: &str) -> T {
        duckdb::Connection::open_in_memory().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn rows_land_in_partition_folders_under_content_names() {
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
        let files = lake.write().unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        // A retried roll puts the same files.
        assert_eq!(format!("{:?}", lake.write().unwrap()), format!("{files:?}"));
        assert!(files.iter().all(|f| f.key.starts_with("readings/site=berlin/date=2027-01-")), "{files:?}");
        let rows: i64 = files
            .iter()
            .map(|f| {
                let p = f.local.to_string_lossy().to_string();
                query::<i64>(&format!("SELECT count(*) FROM read_parquet('{p}')"))
            })
            .sum();
        assert_eq!(rows, 3);
        // The same messages again give the same names.
        let again = {
            let mut lake2 = Lake::new(&plan(vec![PartitionKey::Site, PartitionKey::Date])).unwrap();
            lake2.add(&env("gw-1", 7), &recs).unwrap();
            lake2.write().unwrap().into_iter().map(|f| f.key).collect::<Vec<_>>()
        };
        assert_eq!(files.iter().map(|f| f.key.clone()).collect::<Vec<_>>(), again);
        // Other messages, other names.
        lake.clear().unwrap();
        assert!(lake.is_empty());
        lake.add(&env("gw-1", 8), &recs).unwrap();
        let next = lake.write().unwrap();
        assert!(next.iter().all(|f| !files.iter().any(|g| g.key == f.key)));
        // The dedup key is in the rows: idx starts at the message's offset.
        let p = next[0].local.to_string_lossy().to_string();
        let key: String = query(&format!("SELECT min(idx) || ' ' || min(commit_no) FROM read_parquet('{p}')"));
        assert_eq!(key, "10 8");
        // The partition columns are in the folders, not in the files; the
        // timestamp is DuckDB's TIMESTAMPTZ.
        let cols: String = query(&format!(
            "SELECT string_agg(column_name || ':' || column_type, ',') FROM (DESCRIBE SELECT * FROM read_parquet('{p}'))"
        ));
        assert!(!cols.contains("site:") && !cols.contains("date:") && cols.contains("gateway:VARCHAR"), "{cols}");
        assert!(cols.contains("ts:TIMESTAMP WITH TIME ZONE"), "{cols}");
    }

    #[test]
    fn no_partition_is_one_folder_per_table() {
        let mut lake = Lake::new(&plan(vec![])).unwrap();
        lake.add(&env("gw-1", 1), &[Reading::sample("a", 1_800_000_000, Some(1.0))]).unwrap();
        let files = lake.write().unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].key.starts_with("readings/") && files[0].key.matches('/').count() == 1, "{files:?}");
    }
}
