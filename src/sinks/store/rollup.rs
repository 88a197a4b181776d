//! Rollup tiers (`store.rollups`), folded in the writer thread.
//!
//! As the writer gathers a commit's readings it folds each one into the
//! open bucket of its channel in every tier ([`Fold::add`]: count, sum,
//! min, max, first and last, in Rust, by channel id). At commit the
//! partial rows of the buckets the commit touched are appended to a
//! temporary table and merged into `rollup_rows` with one
//! `INSERT … ON CONFLICT DO UPDATE` ([`merge`]), in the commit's
//! transaction: rollups never disagree with the readings committed, and a
//! commit that fails (or a crash before it) leaves both untouched, so
//! nothing is counted twice. Nothing is held between commits but what the
//! next commit has not yet written; a bucket that spans commits, runs or a
//! restart is completed by the commits that reach it.
//!
//! Measured against grouping each commit's rows in SQL (`GROUP BY` over
//! `reading_rows WHERE commit_no = N`, one statement per tier), see
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
    /// `first` and the last seen becomes `last`: the order the merge in
    /// SQL keeps across commits too.
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

/// One channel's open buckets in this commit, per tier: (bucket start µs,
/// aggregates), in the order opened. Readings arrive in time order, so the
/// bucket a reading falls in is nearly always its tier's last one.
type Open = Vec<Vec<(i64, Partial)>>;

/// The partial buckets of the commit being gathered, per channel id.
#[derive(Default)]
pub(super) struct Fold {
    /// Bucket lengths (µs) of the tiers, in `store.rollups` order.
    every: Vec<i64>,
    /// Indexed by channel id (ids are small and dense: 1, 2, …).
    open: Vec<Open>,
    /// Channel ids with a bucket in `open`, in the order first met.
    touched: Vec<i32>,
}

impl Fold {
    pub fn new(tiers: &[RollupPlan]) -> Fold {
        Fold { every: tiers.iter().map(|t| t.every_us().max(1)).collect(), open: Vec::new(), touched: Vec::new() }
    }

    /// Folds a reading of channel `id` at `ts` (µs since the epoch) into
    /// its bucket of every tier. Readings without a value, or `bad`, are
    /// not counted: the caller passes only those that are.
    pub fn add(&mut self, id: i32, ts: i64, v: f64) {
        if self.every.is_empty() {
            return;
        }
        let slot = usize::try_from(id).expect("channel ids are positive");
        if slot >= self.open.len() {
            let tiers = self.every.len();
            self.open.resize_with(slot + 1, || vec![Vec::new(); tiers]);
        }
        let open = &mut self.open[slot];
        if open[0].is_empty() {
            self.touched.push(id);
        }
        for (buckets, &every) in open.iter_mut().zip(&self.every) {
            let holds = |b: &i64| (*b..b.saturating_add(every)).contains(&ts);
            // The newest bucket first (readings in time order), then the
            // others (a late reading), by range: the division is the
            // dearer part of a fold, needed only for a new bucket.
            match buckets.last_mut() {
                Some((b, p)) if holds(b) => p.add(ts, v),
                _ => match buckets.iter_mut().rev().find(|(b, _)| holds(b)) {
                    Some((_, p)) => p.add(ts, v),
                    None => buckets.push((ts.div_euclid(every) * every, Partial::new(ts, v))),
                },
            }
        }
    }

    /// The partial rows gathered (columns of `rollup_rows`), and a fresh
    /// start for the next commit. `None` when no reading was folded.
    pub fn take(&mut self) -> Option<RecordBatch> {
        if self.touched.is_empty() {
            return None;
        }
        let mut rows: Vec<(i64, i32, i64, Partial)> = Vec::new();
        for id in self.touched.drain(..) {
            for (buckets, &every) in self.open[id as usize].iter_mut().zip(&self.every) {
                rows.extend(buckets.drain(..).map(|(b, p)| (every, id, b, p)));
            }
        }
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
        let i64s = |f: fn(&(i64, i32, i64, Partial)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let f64s = |f: fn(&(i64, i32, i64, Partial)) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
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
        Some(RecordBatch::try_new(schema, cols).expect("columns match the schema"))
    }
}

/// The temporary table partial rows go through (this connection's own,
/// in memory; made by [`prepare`]).
const PARTIAL: &str = "rollup_partial";

/// Makes the temporary table [`merge`] appends to, once per connection.
pub(super) fn prepare(conn: &Connection) -> duckdb::Result<()> {
    conn.execute_batch(&format!("CREATE TEMP TABLE IF NOT EXISTS {PARTIAL} AS SELECT * FROM rollup_rows LIMIT 0"))
}

/// Merges the partial rows `rows` (from [`Fold::take`]) into `rollup_rows`,
/// in the open transaction: new buckets are inserted, buckets already
/// stored (an earlier commit reached them) take the partial aggregates in.
pub(super) fn merge(conn: &Connection, rows: RecordBatch) -> duckdb::Result<()> {
    let mut app = conn.appender(PARTIAL)?;
    app.append_record_batch(rows)?;
    app.flush()?;
    drop(app);
    conn.prepare_cached(&format!(
        "INSERT INTO rollup_rows SELECT * FROM {PARTIAL}
         ON CONFLICT DO UPDATE SET
            count = count + excluded.count, sum = sum + excluded.sum,
            min = least(min, excluded.min), max = greatest(max, excluded.max),
            first = CASE WHEN excluded.first_us < first_us THEN excluded.first ELSE first END,
            first_us = least(first_us, excluded.first_us),
            last = CASE WHEN excluded.last_us >= last_us THEN excluded.last ELSE last END,
            last_us = greatest(last_us, excluded.last_us)"
    ))?
    .execute([])?;
    conn.prepare_cached(&format!("DELETE FROM {PARTIAL}"))?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// The rollup rows of tier `every` in `conn`, one string per row.
    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut st = conn.prepare(sql).unwrap();
        let mut q = st.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = q.next().unwrap() {
            out.push(r.get::<_, String>(0).unwrap());
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Folding readings commit by commit and merging the partial rows
        /// gives what one GROUP BY over all the readings gives, however
        /// the readings are split into commits and in whatever order they
        /// come; bad readings are left out.
        #[test]
        fn merged_partial_buckets_equal_one_group_by_over_all_readings(
            readings in proptest::collection::vec((1i32..4, 0i64..400, -50i32..50, proptest::bool::weighted(0.2)), 1..120),
            cuts in proptest::collection::vec(0usize..120, 0..6),
        ) {
            let conn = Connection::open_in_memory().unwrap();
            super::super::schema::migrate(&conn, std::path::Path::new(":memory:")).unwrap();
            prepare(&conn).unwrap();
            conn.execute_batch("CREATE TABLE truth (ch INTEGER, us BIGINT, v DOUBLE, bad BOOLEAN)").unwrap();
            let tiers = [
                RollupPlan { every: Duration::from_secs(60), keep: None },
                RollupPlan { every: Duration::from_secs(3600), keep: None },
            ];
            let mut fold = Fold::new(&tiers);
            let mut cuts = cuts;
            cuts.sort_unstable();
            // Distinct times (the index in the last digits): which reading is
            // first or last in a bucket is then never a tie.
            for (i, (ch, sec, v, bad)) in readings.iter().enumerate() {
                let us = sec * 17_000_000 + i as i64;
                conn.execute("INSERT INTO truth VALUES (?, ?, ?, ?)", duckdb::params![ch, us, *v as f64, bad]).unwrap();
                if !bad {
                    fold.add(*ch, us, *v as f64);
                }
                if cuts.binary_search(&i).is_ok() || i + 1 == readings.len() {
                    conn.execute_batch("BEGIN").unwrap();
                    if let Some(b) = fold.take() {
                        merge(&conn, b).unwrap();
                    }
                    conn.execute_batch("COMMIT").unwrap();
                }
            }
            prop_assert!(fold.take().is_none());
            let got = rows(&conn, "SELECT concat_ws('|', every_us, channel_id, bucket_us, count, sum, min, max, first, first_us, last, last_us)
                                   FROM rollup_rows ORDER BY ALL");
            let want = rows(&conn, "WITH t(e) AS (VALUES (60000000), (3600000000))
                SELECT concat_ws('|', e, ch, us // e * e, count(*), sum(v), min(v), max(v), arg_min(v, us), min(us), arg_max(v, us), max(us))
                FROM truth, t WHERE NOT bad GROUP BY e, ch, us // e * e ORDER BY ALL");
            prop_assert_eq!(got, want);
        }
    }
}
