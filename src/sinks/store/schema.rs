//! The store's schema: its version, the migrations that reach it, and the
//! SQL a restore from a backup inserts with (docs/contract.md §4).

use std::path::Path;

use duckdb::Connection;

use super::{classify, StoreError};
use crate::model::record::Quality;

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
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
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
