//! Rollup tiers (`store.rollups`), folded in the writer thread.
//!
//! The writer folds each reading into its channel's open bucket of every
//! tier ([`Fold::add`]: count, sum, min, max, first and last, in Rust, by
//! channel id). A bucket stays open, in memory and in `rollup_open` (one
//! row per tier and channel), until a reading of a later bucket closes it;
//! it is then appended to `rollup_rows`, once. A reading of an earlier
//! bucket (late data, a backfill, readings after one from a clock set
//! ahead) closes the open bucket too and opens its own, so that bucket,
//! and the one it interrupted once readings come back to it, get a second
//! row. Every commit appends what it closed and replaces the
//! `rollup_open` rows of the channels that had readings, in the commit's
//! transaction ([`write`]):
//! rollups never disagree with the readings committed, a commit that fails
//! (or a crash before it) leaves both untouched, and the next run takes the
//! open buckets up where the last commit left them ([`Fold::load`]).
//!
//! So `rollup_rows` is only ever appended to (and deleted from by
//! retention), and a bucket may have more than one row there (a late
//! reading, a restore next to new readings): the `rollup_buckets` view
//! merges them, and every reader goes through it. Without a key to merge
//! on, a commit's rollups cost an append and the rewrite of a row per tier
//! and channel written to, not an upsert into an index; measured in
//! benches/README.md ("Rollups").

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use crate::compile::plan::RollupPlan;

/// The aggregates of one bucket, over the readings seen so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Partial {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub first_us: i64,
    pub last: f64,
    pub last_us: i64,
}

impl Partial {
    fn new(ts: i64, v: f64) -> Partial {
        Partial { count: 1, sum: v, min: v, max: v, first: v, first_us: ts, last: v, last_us: ts }
    }

    /// Adds a reading. Of readings at the same time, the first seen stays
    /// `first` and the last seen becomes `last`.
    fn add(&mut self, ts: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if ts < self.first_us {
            (self.first, self.first_us) = (v, ts);
        }
        if ts >= self.last_us {
            (self.last, self.last_us) = (v, ts);
        }
    }
}

/// A row of `rollup_rows` or `rollup_open`: tier (bucket length, µs),
/// channel id, bucket start (µs) and its aggregates.
type Row = (i64, i32, i64, Partial);

/// The rollup buckets of the store's channels, as the writer keeps them.
#[derive(Default)]
pub(super) struct Fold {
    /// Bucket lengths (µs) of the tiers, in `store.rollups` order.
    every: Vec<i64>,
    /// The open bucket (start, aggregates) of channel id `c` in tier `t` at
    /// `c * tiers + t` (ids are small and dense: 1, 2, …).
    open: Vec<Option<(i64, Partial)>>,
    /// Buckets closed since the last [`Fold::take`].
    closed: Vec<Row>,
    /// Channels with a reading folded since the last [`Fold::take`], and
    /// whether each id is among them (indexed by id).
    changed: Vec<i32>,
    is_changed: Vec<bool>,
    /// The statement that deletes the `rollup_open` rows of these tiers for
    /// the channels in [`CHANGED`] (see [`write`]).
    delete_open: Arc<str>,
}

impl Fold {
    /// The tiers `tiers`, their buckets open as the last commit left them
    /// in `rollup_open` (tiers the spec no longer names are left there).
    pub fn load(conn: &Connection, tiers: &[RollupPlan]) -> duckdb::Result<Fold> {
        let mut fold = Fold { every: tiers.iter().map(|t| t.every_us().max(1)).collect(), ..Fold::default() };
        if fold.every.is_empty() {
            return Ok(fold);
        }
        // The channels a commit rewrites the open buckets of (see [`write`]).
        conn.execute_batch(&format!("CREATE TEMP TABLE IF NOT EXISTS {CHANGED} (channel_id INTEGER NOT NULL)"))?;
        let tiers = fold.every.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        fold.delete_open = Arc::from(format!(
            "DELETE FROM rollup_open WHERE every_us IN ({tiers}) AND channel_id IN (SELECT channel_id FROM {CHANGED})"
        ));
        let mut st = conn.prepare(
            "SELECT every_us, channel_id, bucket_us, count, sum, min, max, first, first_us, last, last_us
             FROM rollup_open",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let every: i64 = r.get(0)?;
            let Some(tier) = fold.every.iter().position(|e| *e == every) else { continue };
            let p = Partial {
                count: r.get(3)?,
                sum: r.get(4)?,
                min: r.get(5)?,
                max: r.get(6)?,
                first: r.get(7)?,
                first_us: r.get(8)?,
                last: r.get(9)?,
                last_us: r.get(10)?,
            };
            let slot = fold.slot(r.get(1)?);
            fold.open[slot + tier] = Some((r.get(2)?, p));
        }
        Ok(fold)
    }

    /// Where the open buckets of channel `id` start in `open`, made room for.
    fn slot(&mut self, id: i32) -> usize {
        let tiers = self.every.len();
        let slot = usize::try_from(id).expect("channel ids are positive") * tiers;
        if slot + tiers > self.open.len() {
            self.open.resize(slot + tiers, None);
        }
        slot
    }

    /// Marks channel `id` as changed since the last [`Fold::take`].
    fn changed(&mut self, id: i32) {
        let i = usize::try_from(id).expect("channel ids are positive");
        if i >= self.is_changed.len() {
            self.is_changed.resize(i + 1, false);
        }
        if !std::mem::replace(&mut self.is_changed[i], true) {
            self.changed.push(id);
        }
    }

    /// Folds a reading of channel `id` at `ts` (µs since the epoch) into
    /// its bucket of every tier. Readings without a value, or `bad`, are
    /// not counted: the caller passes only those that are.
    pub fn add(&mut self, id: i32, ts: i64, v: f64) {
        if self.every.is_empty() {
            return;
        }
        self.changed(id);
        let slot = self.slot(id);
        let tiers = self.every.len();
        for (open, &every) in self.open[slot..slot + tiers].iter_mut().zip(&self.every) {
            match open {
                // Readings come in time order: nearly always the open bucket,
                // found by range (the division is the dearer part of a fold).
                Some((b, p)) if (*b..b.saturating_add(every)).contains(&ts) => p.add(ts, v),
                // Any other bucket, later or earlier (late data, a backfill,
                // a clock put right after a reading from the future), closes
                // the open one and opens its own: a bucket met again gets a
                // second row, which `rollup_buckets` merges.
                Some((b, p)) => {
                    self.closed.push((every, id, *b, *p));
                    *open = Some((ts.div_euclid(every) * every, Partial::new(ts, v)));
                }
                None => *open = Some((ts.div_euclid(every) * every, Partial::new(ts, v))),
            }
        }
    }

    /// Forgets the buckets, open or closed but not yet written, that start
    /// before their tier's cutoff (`cutoffs`, µs, in tier order; `None`:
    /// kept forever): retention has deleted them from the store, and a
    /// commit must not write them back.
    pub fn expire(&mut self, cutoffs: &[Option<i64>]) {
        if self.every.is_empty() {
            return;
        }
        let past = |tier: usize, bucket: i64| cutoffs.get(tier).copied().flatten().is_some_and(|c| bucket < c);
        for tiers in self.open.chunks_mut(self.every.len()) {
            for (t, open) in tiers.iter_mut().enumerate() {
                if open.is_some_and(|(b, _)| past(t, b)) {
                    *open = None;
                }
            }
        }
        let every = &self.every;
        self.closed.retain(|&(e, _, b, _)| !every.iter().position(|&x| x == e).is_some_and(|t| past(t, b)));
    }

    /// What the next commit writes, and a fresh start for the one after:
    /// `None` when no reading was folded since the last call.
    pub fn take(&mut self) -> Option<Writes> {
        if self.changed.is_empty() {
            return None;
        }
        let tiers = self.every.len();
        let mut open = Vec::with_capacity(self.changed.len() * tiers);
        for &id in &self.changed {
            self.is_changed[id as usize] = false;
            let slot = id as usize * tiers;
            let buckets = self.open[slot..slot + tiers].iter().zip(&self.every);
            open.extend(buckets.filter_map(|(o, &every)| o.map(|(b, p)| (every, id, b, p))));
        }
        let closed = std::mem::take(&mut self.closed);
        let changed = Field::new("channel_id", DataType::Int32, false);
        let changed = RecordBatch::try_new(
            Arc::new(Schema::new(vec![changed])),
            vec![Arc::new(Int32Array::from(std::mem::take(&mut self.changed))) as ArrayRef],
        )
        .expect("one column of its declared type");
        Some(Writes {
            closed: (!closed.is_empty()).then(|| batch(&closed)),
            open: batch(&open),
            changed,
            delete_open: self.delete_open.clone(),
        })
    }
}

/// What a commit writes of the rollups (see [`write`]); cloned for a retry.
#[derive(Clone)]
pub(super) struct Writes {
    /// Buckets closed, for `rollup_rows`.
    closed: Option<RecordBatch>,
    /// The open buckets of the channels `changed` (those with a reading
    /// since the last commit): their rows of `rollup_open`.
    open: RecordBatch,
    /// The rows of [`CHANGED`].
    changed: RecordBatch,
    /// [`Fold::delete_open`].
    delete_open: Arc<str>,
}

/// The columns of `rollup_rows` and `rollup_open`, as one Arrow batch.
fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("every_us", DataType::Int64, false),
        Field::new("channel_id", DataType::Int32, false),
        Field::new("bucket_us", DataType::Int64, false),
        Field::new("count", DataType::Int64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("min", DataType::Float64, false),
        Field::new("max", DataType::Float64, false),
        Field::new("first", DataType::Float64, false),
        Field::new("first_us", DataType::Int64, false),
        Field::new("last", DataType::Float64, false),
        Field::new("last_us", DataType::Int64, false),
    ]));
    let i64s = |f: fn(&Row) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(rows.iter().map(f))) };
    let f64s = |f: fn(&Row) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) };
    let cols: Vec<ArrayRef> = vec![
        i64s(|r| r.0),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
        i64s(|r| r.2),
        i64s(|r| r.3.count),
        f64s(|r| r.3.sum),
        f64s(|r| r.3.min),
        f64s(|r| r.3.max),
        f64s(|r| r.3.first),
        i64s(|r| r.3.first_us),
        f64s(|r| r.3.last),
        i64s(|r| r.3.last_us),
    ];
    RecordBatch::try_new(schema, cols).expect("columns match the schema")
}

/// Writes `w` (from [`Fold::take`]) in the open transaction: appends the
/// closed buckets to `rollup_rows`, and replaces the rows of `rollup_open`
/// of the channels that changed with their buckets open now.
pub(super) fn write(conn: &Connection, w: Writes) -> duckdb::Result<()> {
    if let Some(rows) = w.closed {
        super::append(conn, "rollup_rows", rows)?;
    }
    // The channels go through a temporary table, not an `IN (…)` list: a
    // list of a thousand ids cost DuckDB's parser and optimizer more than
    // all of the rollups' other work (benches/README.md, "Rollups"). The
    // statements are the same at every commit, so they are planned once.
    super::append(conn, CHANGED, w.changed)?;
    conn.prepare_cached(&w.delete_open)?.execute([])?;
    conn.prepare_cached(&format!("DELETE FROM {CHANGED}"))?.execute([])?;
    super::append(conn, "rollup_open", w.open)
}

/// The writer's temporary table (its connection's own, never stored) of
/// the channels whose open buckets a commit rewrites.
const CHANGED: &str = "rollup_changed";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// The first column of the rows `sql` gives, as strings.
    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut st = conn.prepare(sql).unwrap();
        let mut q = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = q.next().unwrap() {
            out.push(r.get::<_, String>(0).unwrap());
        }
        out
    }

    fn tiers() -> [RollupPlan; 2] {
        [
            RollupPlan { every: Duration::from_secs(60), keep: None },
            RollupPlan { every: Duration::from_secs(3600), keep: None },
        ]
    }

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn, std::path::Path::new(":memory:")).unwrap();
        conn
    }

    /// What a commit of the writer does with the rollups.
    fn commit(conn: &Connection, fold: &mut Fold) {
        conn.execute_batch("BEGIN").unwrap();
        if let Some(w) = fold.take() {
            write(conn, w).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    /// Readings in time order close each bucket once: one row per bucket in
    /// `rollup_rows`, and one open bucket per tier and channel.
    #[test]
    fn readings_in_time_order_append_each_bucket_once() {
        let conn = store();
        let mut fold = Fold::load(&conn, &tiers()).unwrap();
        for s in 0..7_500i64 {
            fold.add(1 + (s % 3) as i32, s * 1_000_000, s as f64);
            if s % 500 == 0 {
                commit(&conn, &mut fold);
            }
        }
        commit(&conn, &mut fold);
        assert!(fold.take().is_none(), "nothing folded since the last commit");
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        // 7,500 s: 125 minutes (124 closed) and 3 hours (2 closed), per channel.
        assert_eq!(n("SELECT count(*) FROM rollup_rows"), 3 * (124 + 2));
        assert_eq!(
            n("SELECT count(*) FROM (SELECT DISTINCT every_us, channel_id, bucket_us FROM rollup_rows)"),
            3 * 126
        );
        assert_eq!(n("SELECT count(*) FROM rollup_open"), 3 * 2);
        assert_eq!(n("SELECT sum(count) FROM rollup_buckets WHERE every_us = 60000000"), 7_500);
    }

    /// One reading from a clock set ahead costs each later bucket of its
    /// channel nothing more: it closes the open bucket and opens its own
    /// once, and the readings after it fold as before. The counts stay
    /// exact (BIGINT, as `rollup_rows` has them).
    #[test]
    fn a_reading_from_the_future_does_not_split_the_buckets_after_it() {
        let conn = store();
        let mut fold = Fold::load(&conn, &tiers()).unwrap();
        for s in 0..600i64 {
            fold.add(1, s * 1_000_000, 1.0);
            if s == 30 {
                fold.add(1, 86_400 * 1_000_000, 1.0); // a day ahead
            }
            if s % 10 == 0 {
                commit(&conn, &mut fold);
            }
        }
        commit(&conn, &mut fold);
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        // 1m tier: buckets 0–9 once each, bucket 0 twice (split by the
        // reading ahead), and that reading's own bucket.
        assert_eq!(
            n("SELECT count(*) FROM (FROM rollup_rows UNION ALL FROM rollup_open) WHERE every_us = 60000000"),
            12
        );
        assert_eq!(n("SELECT count(*) FROM rollup_buckets WHERE every_us = 60000000"), 11);
        assert_eq!(n("SELECT sum(count) FROM rollup_buckets WHERE every_us = 60000000"), 601);
        let kind: String =
            conn.query_row("SELECT typeof(count) FROM rollup_buckets LIMIT 1", [], |r| r.get(0)).unwrap();
        assert_eq!(kind, "BIGINT");
    }

    /// A commit rewrites the open buckets of the channels that had readings
    /// and no others; buckets past their tier's keep, open or closed, are
    /// forgotten, so no commit writes them back after retention.
    #[test]
    fn a_commit_rewrites_only_the_open_buckets_it_changed_and_never_expired_ones() {
        let conn = store();
        let mut fold = Fold::load(&conn, &tiers()).unwrap();
        fold.add(1, 0, 1.0);
        fold.add(2, 0, 2.0);
        commit(&conn, &mut fold);
        conn.execute_batch("UPDATE rollup_open SET sum = 99 WHERE channel_id = 2").unwrap();
        fold.add(1, 1_000_000, 1.0);
        commit(&conn, &mut fold);
        let sums: Vec<String> =
            rows(&conn, "SELECT concat_ws('|', channel_id, every_us, sum) FROM rollup_open ORDER BY ALL");
        assert_eq!(sums, ["1|3600000000|2.0", "1|60000000|2.0", "2|3600000000|99.0", "2|60000000|99.0"]);
        // Retention: the 1m tier keeps buckets from 60 s on.
        // Channel 3's first 1m bucket is closed in memory, not yet written.
        conn.execute_batch("DELETE FROM rollup_open WHERE every_us = 60000000").unwrap();
        fold.add(3, 0, 5.0);
        fold.add(3, 61_000_000, 6.0);
        fold.expire(&[Some(60_000_000), None]);
        fold.add(2, 2_000_000, 2.0);
        commit(&conn, &mut fold);
        let open: Vec<String> =
            rows(&conn, "SELECT concat_ws('|', channel_id, every_us, bucket_us) FROM rollup_open ORDER BY ALL");
        assert_eq!(
            open,
            ["1|3600000000|0", "2|3600000000|0", "2|60000000|0", "3|3600000000|0", "3|60000000|60000000"],
            "channel 2's new 1m bucket and channel 3's, past the cutoff"
        );
        let closed: Vec<String> = rows(&conn, "SELECT concat_ws('|', channel_id, every_us) FROM rollup_rows");
        assert!(closed.is_empty(), "channel 3's closed bucket before the cutoff is not written: {closed:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Folding readings commit by commit, with the writer started anew
        /// from the store now and then, gives in `rollup_buckets` what one
        /// GROUP BY over all the readings gives, however the readings are
        /// split into commits and runs and in whatever order they come
        /// (late ones included); bad readings are left out.
        #[test]
        fn rollup_buckets_equal_one_group_by_over_all_readings(
            readings in proptest::collection::vec((1i32..4, 0i64..400, -50i32..50, proptest::bool::weighted(0.2)), 1..120),
            cuts in proptest::collection::vec((0usize..120, proptest::bool::ANY), 0..6),
        ) {
            let conn = store();
            conn.execute_batch("CREATE TABLE truth (ch INTEGER, us BIGINT, v DOUBLE, bad BOOLEAN)").unwrap();
            let mut fold = Fold::load(&conn, &tiers()).unwrap();
            // Distinct times (the index in the last digits): which reading is
            // first or last in a bucket is then never a tie.
            for (i, (ch, sec, v, bad)) in readings.iter().enumerate() {
                let us = sec * 17_000_000 + i as i64;
                conn.execute("INSERT INTO truth VALUES (?, ?, ?, ?)", duckdb::params![ch, us, *v as f64, bad]).unwrap();
                if !bad {
                    fold.add(*ch, us, *v as f64);
                }
                if let Some((_, restart)) = cuts.iter().find(|(at, _)| *at == i) {
                    commit(&conn, &mut fold);
                    if *restart {
                        fold = Fold::load(&conn, &tiers()).unwrap();
                    }
                }
            }
            commit(&conn, &mut fold);
            let got = rows(&conn, "SELECT concat_ws('|', every_us, channel_id, bucket_us, count, sum, min, max, first, first_us, last, last_us)
                                   FROM rollup_buckets ORDER BY ALL");
            let want = rows(&conn, "WITH t(e) AS (VALUES (60000000), (3600000000))
                SELECT concat_ws('|', e, ch, us // e * e, count(*), sum(v), min(v), max(v), arg_min(v, us), min(us), arg_max(v, us), max(us))
                FROM truth, t WHERE NOT bad GROUP BY e, ch, us // e * e ORDER BY ALL");
            prop_assert_eq!(got, want);
        }
    }
}
