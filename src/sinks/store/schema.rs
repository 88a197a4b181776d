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
    // 6 → 7: flags as bits and the fusion lists in a `notes` dictionary
    // (all-but-empty string columns cost the appender over half its
    // time), and rollup buckets appended once, when
    // they close, instead of merged into a keyed table at every commit (the
    // upsert and its index cost a quarter of an ingest's time).
    MIGRATE_TO_V7,
];

/// The 5 → 6 step (see [`MIGRATIONS`]; `{quality_code}` and
/// `{quality_name}` are filled in by [`migrate_to`]): `channels`,
/// `reading_rows`, the `readings` view over them, and the rollup table and
/// view.
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
               {quality_code},
               r.flags, r.text, r.inputs, r.voted_out, r.spread, r.commit_no
        FROM readings r JOIN channels c ON c.channel = r.channel
            AND c.source IS NOT DISTINCT FROM r.source AND c.unit IS NOT DISTINCT FROM r.unit;
    DROP TABLE readings;
    CREATE VIEW readings AS
        SELECT r.ts, c.channel, r.value,
               {quality_name} AS quality,
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

/// The 6 → 7 step (see [`MIGRATIONS`]; `{flag_bits}`, `{flag_names}`,
/// `{insert_notes}` and `{quality_name}` are filled in by [`migrate_to`]): `reading_rows.flags`
/// becomes `flag_bits` (bit `i` set for the `i`-th name of
/// [`FLAG_LIST_V7`]; NULL when none), which the `readings` view names
/// again; a fused reading's `inputs` and `voted_out` move to the `notes`
/// dictionary, named by `note_id` (NULL for a reading that is not fused);
/// `rollup_rows` loses its primary
/// key (a bucket may have more than one row; `rollup_buckets` merges them),
/// the newest bucket of each tier and channel moves to `rollup_open`, where
/// the writer keeps its open buckets (see the `rollup` module).
const MIGRATE_TO_V7: &str = "
    DROP VIEW readings;
    ALTER TABLE reading_rows ADD COLUMN flag_bits UINTEGER;
    ALTER TABLE reading_rows ADD COLUMN note_id INTEGER;
    UPDATE reading_rows SET flag_bits = {flag_bits} WHERE flags IS NOT NULL;
    CREATE TABLE notes (id INTEGER PRIMARY KEY, inputs VARCHAR, voted_out VARCHAR);
    {insert_notes}
    UPDATE reading_rows r SET note_id = n.id FROM notes n
        WHERE n.inputs IS NOT DISTINCT FROM r.inputs AND n.voted_out IS NOT DISTINCT FROM r.voted_out;
    ALTER TABLE reading_rows DROP COLUMN flags;
    ALTER TABLE reading_rows DROP COLUMN inputs;
    ALTER TABLE reading_rows DROP COLUMN voted_out;
    CREATE VIEW readings AS
        SELECT r.ts, c.channel, r.value,
               {quality_name} AS quality,
               {flag_names} AS flags,
               c.source, c.unit, r.text, n.inputs, n.voted_out, r.spread, r.commit_no
        FROM reading_rows r JOIN channels c ON c.id = r.channel_id LEFT JOIN notes n ON n.id = r.note_id;
    DROP VIEW rollups;
    ALTER TABLE rollup_rows RENAME TO rollup_rows_v6;
    CREATE TABLE rollup_rows (
        every_us BIGINT NOT NULL, channel_id INTEGER NOT NULL, bucket_us BIGINT NOT NULL,
        count BIGINT NOT NULL, sum DOUBLE NOT NULL, min DOUBLE NOT NULL, max DOUBLE NOT NULL,
        first DOUBLE NOT NULL, first_us BIGINT NOT NULL, last DOUBLE NOT NULL, last_us BIGINT NOT NULL);
    CREATE TABLE rollup_open (
        every_us BIGINT NOT NULL, channel_id INTEGER NOT NULL, bucket_us BIGINT NOT NULL,
        count BIGINT NOT NULL, sum DOUBLE NOT NULL, min DOUBLE NOT NULL, max DOUBLE NOT NULL,
        first DOUBLE NOT NULL, first_us BIGINT NOT NULL, last DOUBLE NOT NULL, last_us BIGINT NOT NULL);
    INSERT INTO rollup_open SELECT * FROM rollup_rows_v6
        QUALIFY row_number() OVER (PARTITION BY every_us, channel_id ORDER BY bucket_us DESC) = 1;
    INSERT INTO rollup_rows SELECT * FROM rollup_rows_v6 r WHERE NOT EXISTS (SELECT 1 FROM rollup_open o
        WHERE o.every_us = r.every_us AND o.channel_id = r.channel_id AND o.bucket_us = r.bucket_us);
    DROP TABLE rollup_rows_v6;
    CREATE VIEW rollup_buckets AS
        SELECT every_us, channel_id, bucket_us, CAST(sum(count) AS BIGINT) AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, arg_min(first, first_us) AS first, min(first_us) AS first_us,
               arg_max(last, last_us) AS last, max(last_us) AS last_us
        FROM (FROM rollup_rows UNION ALL FROM rollup_open)
        GROUP BY every_us, channel_id, bucket_us;
    CREATE VIEW rollups AS
        SELECT c.channel, c.source, c.unit, to_microseconds(r.every_us) AS every,
               to_timestamp(r.bucket_us // 1000000) AS bucket, r.min, r.max, r.sum / r.count AS avg,
               r.count, r.first, r.last
        FROM rollup_buckets r JOIN channels c ON c.id = r.channel_id;";

/// The flag names the v7 `readings` view knows, by bit:
/// `model::record::FLAG_NAMES` when v7 was made. A name added since needs a
/// migration that re-creates the view with this list grown.
const FLAG_LIST_V7: &[&str] = &[
    "out_of_range",
    "rate",
    "stuck",
    "stale",
    "timeout",
    "disconnected",
    "crc",
    "voted_out",
    "invalid",
    "exception_1",
    "exception_2",
    "exception_3",
    "exception_4",
    "exception_5",
    "exception_6",
    "exception_8",
    "exception_10",
    "exception_11",
    "suspect_input",
    "unknown",
    "bad_input",
    "reset",
    "gap",
    "mismatch",
];

/// SQL naming the bits of `reading_rows.flag_bits` (in column `col`) as
/// the `readings` view's `flags`: comma-separated, in bit order, NULL when
/// none. Plain CASEs, which any DuckDB that reads the file can run.
fn flag_names_sql(col: &str) -> String {
    let names = FLAG_LIST_V7
        .iter()
        .enumerate()
        .map(|(bit, name)| format!("CASE WHEN {col} & {} <> 0 THEN '{name}' END", 1u32 << bit))
        .collect::<Vec<_>>()
        .join(", ");
    format!("CASE WHEN {col} <> 0 THEN concat_ws(',', {names}) END")
}

/// SQL turning comma-separated flag names (the `readings` view's `flags`,
/// in column `col`) into `reading_rows.flag_bits`; a name it does not know
/// becomes `unknown`, as when a record is read.
fn flag_bits_sql(col: &str) -> String {
    let list = FLAG_LIST_V7.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let unknown = 1u32 << FLAG_LIST_V7.iter().position(|n| *n == "unknown").expect("`unknown` is a flag");
    let bits = FLAG_LIST_V7
        .iter()
        .enumerate()
        .map(|(bit, name)| {
            format!("CASE WHEN list_contains(string_split({col}, ','), '{name}') THEN {} ELSE 0 END", 1u32 << bit)
        })
        .collect::<Vec<_>>()
        .join(" | ");
    format!(
        "CASE WHEN {col} <> '' THEN CAST({bits} | CASE WHEN list_has_all([{list}], string_split({col}, ',')) THEN 0 ELSE {unknown} END AS UINTEGER) END"
    )
}

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

/// The qualities and their codes in `reading_rows.quality`.
const QUALITIES: [Quality; 3] = [Quality::Good, Quality::Suspect, Quality::Bad];

/// SQL turning a quality's name (column `col`) into its code; anything
/// else is `bad`'s, as when a record is read.
fn quality_code_sql(col: &str) -> String {
    let arms: String = QUALITIES.iter().map(|q| format!(" WHEN '{}' THEN {}", q.as_str(), quality_code(*q))).collect();
    format!("CASE {col}{arms} ELSE {} END", quality_code(Quality::Bad))
}

/// SQL naming a quality's code (column `col`): the `readings` view's
/// `quality`.
fn quality_name_sql(col: &str) -> String {
    let arms: String = QUALITIES.iter().map(|q| format!(" WHEN {} THEN '{}'", quality_code(*q), q.as_str())).collect();
    format!("CASE {col}{arms} ELSE '{}' END", Quality::Bad.as_str())
}

/// SQL that stores the readings `src` (a query with the columns of the
/// `readings` view, by name) into `channels`, `notes` and `reading_rows`:
/// a restore from a backup.
pub fn insert_readings_sql(src: &str) -> String {
    format!(
        "{channels}
         {notes}
         INSERT INTO reading_rows BY NAME
            SELECT r.ts, c.id AS channel_id, r.value,
                   {quality_code} AS quality,
                   {flag_bits} AS flag_bits, r.text, n.id AS note_id, r.spread, r.commit_no
            FROM ({src}) r JOIN channels c ON c.channel = r.channel
                AND c.source IS NOT DISTINCT FROM r.source AND c.unit IS NOT DISTINCT FROM r.unit
            LEFT JOIN notes n ON n.inputs IS NOT DISTINCT FROM r.inputs AND n.voted_out IS NOT DISTINCT FROM r.voted_out
                AND (r.inputs IS NOT NULL OR r.voted_out IS NOT NULL);",
        channels = insert_channels_sql(src),
        notes = insert_notes_sql(&format!("({src})")),
        flag_bits = flag_bits_sql("r.flags"),
        quality_code = quality_code_sql("r.quality")
    )
}

/// SQL that adds the notes (`inputs`, `voted_out`) of the rows of `src`
/// that `notes` does not hold yet, with new ids. Never a note of two NULLs:
/// a reading that is not fused has no note.
fn insert_notes_sql(src: &str) -> String {
    format!(
        "INSERT INTO notes
            SELECT (SELECT coalesce(max(id), 0) FROM notes) + row_number() OVER (ORDER BY inputs, voted_out),
                   inputs, voted_out
            FROM (SELECT DISTINCT inputs, voted_out FROM {src} s
                  WHERE (inputs IS NOT NULL OR voted_out IS NOT NULL)
                    AND NOT EXISTS (SELECT 1 FROM notes n
                        WHERE n.inputs IS NOT DISTINCT FROM s.inputs AND n.voted_out IS NOT DISTINCT FROM s.voted_out));"
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
        let step = step
            .replace("{flag_bits}", &flag_bits_sql("flags"))
            .replace("{flag_names}", &flag_names_sql("r.flag_bits"))
            .replace("{insert_notes}", &insert_notes_sql("reading_rows"))
            .replace("{quality_code}", &quality_code_sql("r.quality"))
            .replace("{quality_name}", &quality_name_sql("r.quality"));
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

    use crate::model::record::{Flags, FLAG_NAMES};

    fn strings(conn: &Connection, sql: &str) -> Vec<String> {
        let mut st = conn.prepare(sql).unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    /// The view names the bits the writer stores by the list this build
    /// writes: a flag added to `FLAG_NAMES` needs a migration.
    #[test]
    fn the_readings_view_knows_every_flag_this_build_writes() {
        assert_eq!(FLAG_LIST_V7, FLAG_NAMES, "a flag was added: migrate the readings view to a list with it");
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn, Path::new(":memory:")).unwrap();
        conn.execute_batch("INSERT INTO channels VALUES (1, 'a', 'plc', NULL)").unwrap();
        let mut sets: Vec<Flags> = (0..FLAG_NAMES.len()).map(|i| Flags(1 << i)).collect();
        sets.extend([Flags(Flags::STALE.0 | Flags::TIMEOUT.0 | Flags::MISMATCH.0), Flags::empty()]);
        for f in sets {
            conn.execute("DELETE FROM reading_rows", []).unwrap();
            let bits = (!f.is_empty()).then_some(f.0);
            conn.execute(
                "INSERT INTO reading_rows (ts, channel_id, quality, flag_bits) VALUES (now(), 1, 1, ?)",
                [bits],
            )
            .unwrap();
            let got: Option<String> = conn.query_row("SELECT flags FROM readings", [], |r| r.get(0)).unwrap();
            let want = f.names().collect::<Vec<_>>().join(",");
            assert_eq!(got, (!want.is_empty()).then_some(want));
            // A restore turns the names back into the same bits.
            let back: Option<u32> =
                conn.query_row(&format!("SELECT {} FROM readings", flag_bits_sql("flags")), [], |r| r.get(0)).unwrap();
            assert_eq!(back, bits);
        }
        let unknown: u32 =
            conn.query_row(&format!("SELECT {}", flag_bits_sql("'stale,no_such_flag'")), [], |r| r.get(0)).unwrap();
        assert_eq!(unknown, Flags::STALE.0 | Flags::UNKNOWN.0);
    }

    /// A v6 store's readings and rollups (keyed, every bucket in
    /// `rollup_rows`) read the same after the move to v7: flags become bits,
    /// the newest bucket of each tier and channel opens in `rollup_open`.
    #[test]
    fn a_v6_store_keeps_its_readings_and_rollups_and_reopens_the_newest_buckets() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        migrate_to(&conn, p, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO channels VALUES (1, 'a', 'plc', NULL), (2, 'b', 'plc', 'kW');
             INSERT INTO reading_rows VALUES
                ('2026-01-01T00:00:00Z', 1, 1.5, 0, NULL, NULL, NULL, NULL, NULL, 1),
                ('2026-01-01T00:00:01Z', 2, 2.5, 1, 'rate,stale', NULL, 'a,c', 'c', 0.5, 1),
                ('2026-01-01T00:00:02Z', 1, NULL, 2, 'timeout', NULL, NULL, NULL, NULL, 2),
                ('2026-01-01T00:00:03Z', 2, NULL, 0, NULL, 'v1.2', NULL, NULL, NULL, 2);
             INSERT INTO rollup_rows VALUES
                (60000000, 1, 0, 2, 3, 1, 2, 1, 0, 2, 30000000),
                (60000000, 1, 60000000, 1, 5, 5, 5, 5, 60000000, 5, 60000000),
                (60000000, 2, 0, 1, 7, 7, 7, 7, 0, 7, 0),
                (3600000000, 1, 0, 3, 8, 1, 5, 1, 0, 5, 60000000);",
        )
        .unwrap();
        let rollups = |conn: &Connection| {
            strings(conn, "SELECT concat_ws('|', channel, unit, every, bucket, min, max, avg, count, first, last) FROM rollups ORDER BY ALL")
        };
        let readings = |conn: &Connection| {
            strings(conn, "SELECT concat_ws('|', ts, channel, value, quality, flags, source, unit, text, inputs, voted_out, spread, commit_no) FROM readings ORDER BY ts")
        };
        let before = (rollups(&conn), readings(&conn));
        assert!(before.1[1].contains("|suspect|rate,stale|"), "{:?}", before.1);
        migrate(&conn, p).unwrap();
        assert_eq!((rollups(&conn), readings(&conn)), before);
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
