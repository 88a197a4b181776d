//! The store's writer thread: gathers records into Arrow columns and
//! commits them, one transaction per batch (see the module docs of
//! [`super`]).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Array, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
    UInt8Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;

use super::dict::{ChannelIds, NoteIds};
use super::rollup::{self, Fold};
use super::schema::quality_code;
use super::{classify, write_states, StateRow, Store, StoreError};
use crate::model::batch::CommitHook;
use crate::model::record::{Alert, Anomaly, Delivery, Quality, Reading, Record};
use crate::model::time::format_rfc3339;

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

/// Columns of `reading_rows` being gathered for the next commit.
struct ReadingColumns {
    ts: TimestampMicrosecondBuilder,
    channel: Int32Builder,
    value: Float64Builder,
    quality: UInt8Builder,
    flag_bits: UInt32Builder,
    text: StringBuilder,
    note: Int32Builder,
    spread: Float64Builder,
    len: usize,
    channels: ChannelIds,
    notes: NoteIds,
    /// The rollup buckets these readings fall in (`store.rollups`).
    rollups: Fold,
}

impl ReadingColumns {
    fn new(cap: usize, channels: ChannelIds, notes: NoteIds, rollups: Fold) -> Self {
        ReadingColumns {
            ts: TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"),
            channel: Int32Builder::with_capacity(cap),
            value: Float64Builder::with_capacity(cap),
            quality: UInt8Builder::with_capacity(cap),
            flag_bits: UInt32Builder::with_capacity(cap),
            text: StringBuilder::with_capacity(cap, 0),
            note: Int32Builder::with_capacity(cap),
            spread: Float64Builder::with_capacity(cap),
            len: 0,
            channels,
            notes,
            rollups,
        }
    }

    fn push(&mut self, r: &Reading) {
        let id = self.channels.id(r);
        let value = r.value.filter(|v| v.is_finite());
        self.ts.append_value(r.ts);
        self.channel.append_value(id);
        self.value.append_option(value);
        if let Some(v) = value.filter(|_| r.quality != Quality::Bad) {
            self.rollups.add(id, r.ts, v);
        }
        self.quality.append_value(quality_code(r.quality));
        // Bits of `FLAG_NAMES`, named again by the `readings` view.
        self.flag_bits.append_option((!r.flags.is_empty()).then_some(r.flags.0));
        self.text.append_option(r.text.as_deref());
        self.note.append_option(self.notes.id(r));
        self.spread.append_option(r.fusion.as_ref().map(|f| f.spread).filter(|s| s.is_finite()));
        self.len += 1;
    }

    /// The gathered readings as one Arrow batch, every row in commit
    /// `commit_no`. Columns NULL in every row are left out, for the
    /// appender to fill: most batches have no flags, no text and no fused
    /// readings, and a column given as NULLs is still converted row by row.
    fn finish(&mut self, commit_no: i64) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new("ts", ts, false),
            Field::new("channel_id", DataType::Int32, false),
            Field::new("value", DataType::Float64, true),
            Field::new("quality", DataType::UInt8, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.quality.finish()),
        ];
        let nullable: [(&str, ArrayRef); 4] = [
            ("flag_bits", Arc::new(self.flag_bits.finish())),
            ("text", Arc::new(self.text.finish())),
            ("note_id", Arc::new(self.note.finish())),
            ("spread", Arc::new(self.spread.finish())),
        ];
        for (name, col) in nullable {
            if col.null_count() < col.len() {
                fields.push(Field::new(name, col.data_type().clone(), true));
                cols.push(col);
            }
        }
        fields.push(Field::new("commit_no", DataType::Int64, true));
        cols.push(Arc::new(Int64Array::from_value(commit_no, self.len)));
        self.len = 0;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("columns match the schema")
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
    let rollups = Fold::load(&store.conn, &store.rollups).map_err(|e| (classify(&store.path, e), stats))?;
    let notes = NoteIds::load(&store.conn).map_err(|e| (classify(&store.path, e), stats))?;
    let mut cols = ReadingColumns::new(cfg.batch.min(65_536), channels, notes, rollups);
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
            let now = crate::model::time::now_micros();
            stats.retention_deleted += store.apply_retention(now).map_err(|e| (e, stats))? as u64;
            // Buckets past their tier's keep are gone from the store: the
            // next commit must not write them back. The same `now`: a bucket
            // retention kept stays open.
            cols.rollups.expire(&store.rollup_cutoffs(now));
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
    let rollups = cols.rollups.take();
    let (started, mut attempt, mut stopping_since) = (Instant::now(), 0u32, None::<Instant>);
    loop {
        let result = if rows == 0 {
            // Nothing new since the state was taken: it goes alone.
            state.as_deref().map_or(Ok(()), |s| store.save_states(s))
        } else {
            commit_records(
                store,
                batch.clone(),
                rollups.clone(),
                (&cols.channels, &cols.notes),
                events,
                state.as_deref(),
                stats,
            )
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
    cols.notes.new.clear();
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

/// How long a stopping run keeps retrying a commit on a full disk.
const FULL_DISK_GRACE: Duration = Duration::from_secs(10);

/// Readings (Arrow appender), anomalies and alerts (rows) in one transaction.
fn commit_records(
    store: &Store,
    batch: Option<RecordBatch>,
    rollups: Option<rollup::Writes>,
    (channels, notes): (&ChannelIds, &NoteIds),
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
            notes.insert_new(&store.conn)?;
            let schema = batch.schema();
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let mut app = store.conn.appender_with_columns("reading_rows", &columns)?;
            app.append_record_batch(batch)?;
            app.flush()?;
            drop(app);
            if let Some(w) = rollups {
                rollup::write(&store.conn, w)?;
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
