//! The store's schema: its version, the migrations that reach it, and the
//! SQL a restore from a backup inserts with (docs/contract.md §4).

use std::path::Path;

use duckdb::Connection;

use super::{classify, StoreError};
use crate::model::record::Quality;

/// The schema version this build writes. Older files are migrated on open.
pub const SCHEMA_VERSION: i64 = 7;

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
    // 6 → 7: rollup buckets appended once, when they close, instead of
    // merged into a keyed table at every commit (the upsert and its index
    // cost a quarter of an ingest's time).
    MIGRATE_TO_OPEN_BUCKETS,
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

/// The 6 → 7 step (see [`MIGRATIONS`]): `rollup_rows` loses its primary
/// key (a bucket may have more than one row; `rollup_buckets` merges them),
/// the newest bucket of each tier and channel moves to `rollup_open`, where
/// the writer keeps its open buckets (see the `rollup` module).
const MIGRATE_TO_OPEN_BUCKETS: &str = "
    DROP VIEW rollups;
    ALTER TABLE rollup_rows RENAME TO rollup_rows_v6;
    CREATE TABLE rollup_rows (
        every_us BIGINT NOT NULL, channel_id INTEGER NOT NULL, bucket_us BIGINT NOT NULL,
        count BIGINT NOT NULL, sum DOUBLE NOT NULL, min DOUBLE NOT NULL, max DOUBLE NOT NULL,
        first DOUBLE NOT NULL, first_us BIGINT NOT NULL, last DOUBLE NOT NULL, last_us BIGINT NOT NULL);
    CREATE TABLE rollup_open AS FROM rollup_rows LIMIT 0;
    INSERT INTO rollup_open SELECT * FROM rollup_rows_v6
        QUALIFY row_number() OVER (PARTITION BY every_us, channel_id ORDER BY bucket_us DESC) = 1;
    INSERT INTO rollup_rows SELECT * FROM rollup_rows_v6 r WHERE NOT EXISTS (SELECT 1 FROM rollup_open o
        WHERE o.every_us = r.every_us AND o.channel_id = r.channel_id AND o.bucket_us = r.bucket_us);
    DROP TABLE rollup_rows_v6;
    CREATE VIEW rollup_buckets AS
        SELECT every_us, channel_id, bucket_us, sum(count) AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, arg_min(first, first_us) AS first, min(first_us) AS first_us,
               arg_max(last, last_us) AS last, max(last_us) AS last_us
        FROM (FROM rollup_rows UNION ALL FROM rollup_open)
        GROUP BY every_us, channel_id, bucket_us;
    CREATE VIEW rollups AS
        SELECT c.channel, c.source, c.unit, to_microseconds(r.every_us) AS every,
               to_timestamp(r.bucket_us // 1000000) AS bucket, r.min, r.max, r.sum / r.count AS avg,
               r.count, r.first, r.last
        FROM rollup_buckets r JOIN channels c ON c.id = r.channel_id;";

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
pub(super) fn quality_code(q: Quality) -> u8 {
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

/// Creates the schema or migrates it to [`SCHEMA_VERSION`]; refuses a
/// store from a newer edgeguard.
pub(super) fn migrate(conn: &Connection, p: &Path) -> Result<(), StoreError> {
    migrate_to(conn, p, SCHEMA_VERSION)
}

/// Creates the schema or migrates it up to version `target`.
fn migrate_to(conn: &Connection, p: &Path, target: i64) -> Result<(), StoreError> {
    let err = |e: duckdb::Error| classify(p, e);
    conn.execute_batch("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);")
        .map_err(err)?;
    let version: i64 = conn
        .query_row("SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM meta WHERE key = 'schema_version'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible {
            path: p.to_path_buf(),
            message: format!(
                "schema version {version} is newer than this edgeguard ({SCHEMA_VERSION}); upgrade edgeguard"
            ),
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().take(target as usize).skip(version as usize) {
        let sql = format!(
            "BEGIN; {step}
             INSERT OR REPLACE INTO meta VALUES ('schema_version', '{next}');
             INSERT OR REPLACE INTO meta VALUES ('written_by', 'edgeguard {ver}');
             COMMIT;",
            next = i + 1,
            ver = env!("CARGO_PKG_VERSION")
        );
        conn.execute_batch(&sql).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v6 store's rollups (keyed, every bucket in `rollup_rows`) read the
    /// same after the move to v7, with the newest bucket of each tier and
    /// channel open in `rollup_open`.
    #[test]
    fn a_v6_store_keeps_its_rollups_and_reopens_the_newest_buckets() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        migrate_to(&conn, p, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO channels VALUES (1, 'a', 'plc', NULL), (2, 'b', 'plc', 'kW');
             INSERT INTO rollup_rows VALUES
                (60000000, 1, 0, 2, 3, 1, 2, 1, 0, 2, 30000000),
                (60000000, 1, 60000000, 1, 5, 5, 5, 5, 60000000, 5, 60000000),
                (60000000, 2, 0, 1, 7, 7, 7, 7, 0, 7, 0),
                (3600000000, 1, 0, 3, 8, 1, 5, 1, 0, 5, 60000000);",
        )
        .unwrap();
        let rollups = |conn: &Connection| -> Vec<String> {
            let mut st = conn
                .prepare("SELECT concat_ws('|', channel, unit, every, bucket, min, max, avg, count, first, last) FROM rollups ORDER BY ALL")
                .unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let before = rollups(&conn);
        migrate(&conn, p).unwrap();
        assert_eq!(rollups(&conn), before);
        let open: Vec<(i64, i32, i64)> = conn
            .prepare("SELECT every_us, channel_id, bucket_us FROM rollup_open ORDER BY ALL")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(open, [(60000000, 1, 60000000), (60000000, 2, 0), (3600000000, 1, 0)]);
        let closed: i64 = conn.query_row("SELECT count(*) FROM rollup_rows", [], |r| r.get(0)).unwrap();
        assert_eq!(closed, 1);
    }
}
