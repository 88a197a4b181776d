//! Backups of the store: one Parquet file per table (zstd), written in one
//! read transaction (a consistent snapshot across tables, while a writer
//! goes on appending), under a temporary folder that becomes the backup by
//! one rename once every file and the manifest are synced.
//!
//! Parquet rather than a copy of the DuckDB file: the file of a running
//! store cannot be copied consistently (its WAL and the writer's buffers),
//! Parquet is compressed (zstd), readable by any tool, and each file can be
//! checked on its own (SHA-256, row count) without a DuckDB of the same
//! version.
//!
//! ```text
//! backups/20261123T014100Z/      manifest.json  readings.parquet  anomalies.parquet  alerts.parquet  state.parquet  commits.parquet
//! backups/.partial-20261123T…    (being written; removed by --prune)
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The tables a backup holds. `readings` and `rollups` are written with
/// channel names (the `readings` view, and rollup rows joined with their
/// channels), so a backup reads the same whatever ids the store gave its
/// channels; a restore gives them ids anew.
pub const TABLES: &[&str] = &["readings", "anomalies", "alerts", "state", "commits", "rollups"];

/// What a table's file holds: a query over the store.
fn backup_query(table: &str) -> String {
    match table {
        "rollups" => "SELECT c.channel, c.source, c.unit, r.* EXCLUDE (channel_id)
                      FROM rollup_buckets r JOIN channels c ON c.id = r.channel_id"
            .to_string(),
        t => format!("SELECT * FROM {t}"),
    }
}

/// How a table's file goes back into a new store.
fn restore_sql(table: &str, file: &str) -> String {
    let src = format!("SELECT * FROM read_parquet('{}')", file.replace('\'', "''"));
    match table {
        "readings" => crate::sinks::store::insert_readings_sql(&src),
        "rollups" => crate::sinks::store::insert_rollups_sql(&src),
        t => format!("INSERT INTO {t} BY NAME {src}"),
    }
}
pub const MANIFEST: &str = "manifest.json";
const PARTIAL: &str = ".partial-";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableFile {
    pub name: String,
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    pub created: String,
    pub store: String,
    pub schema_version: i64,
    pub edgeguard: String,
    pub tables: Vec<TableFile>,
}

impl Manifest {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }
}

/// Why a backup, verify, restore or prune failed, in words (each cause is
/// turned into the sentence the operator reads).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(pub String);

fn err(what: impl std::fmt::Display) -> BackupError {
    BackupError(what.to_string())
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| err(format!("{}: {e}", dir.display())))
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = std::fs::File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| err(format!("{}: {e}", path.display())))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), n))
}

/// Makes a backup of the store `conn` is connected to, into `dir`.
/// `progress(table)` is called before each table.
pub fn make(
    conn: &duckdb::Connection,
    store: &Path,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Manifest, BackupError> {
    // One backup at a time in this process (serve's schedule and its API).
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let now = crate::model::time::now_micros();
    let created = crate::model::time::format_rfc3339(now);
    // 2026-11-23T01:41:00.123Z → 20261123T014100Z, made unique in the folder.
    let stamp: String = created[..19].chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>() + "Z";
    let mut id = stamp.clone();
    let mut k = 1;
    while dir.join(&id).exists() {
        k += 1;
        id = format!("{stamp}-{k}");
    }
    let partial = dir.join(format!("{PARTIAL}{id}-{}", std::process::id()));
    std::fs::create_dir(&partial).map_err(|e| err(format!("{}: {e}", partial.display())))?;
    let result = write_tables(conn, &partial, progress);
    let tables = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let schema_version: i64 = conn
        .query_row("SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM meta WHERE key = 'schema_version'", [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    let manifest = Manifest {
        format: "edgeguard-backup/1".into(),
        id: id.clone(),
        created,
        store: store.display().to_string(),
        schema_version,
        edgeguard: env!("CARGO_PKG_VERSION").into(),
        tables,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(err)? + "\n";
    let mpath = partial.join(MANIFEST);
    std::fs::write(&mpath, text)
        .and_then(|()| std::fs::File::open(&mpath)?.sync_all())
        .map_err(|e| err(format!("{}: {e}", mpath.display())))?;
    sync_dir(&partial)?;
    let final_dir = dir.join(&id);
    if let Err(e) = std::fs::rename(&partial, &final_dir) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(err(format!("{}: {e}", final_dir.display())));
    }
    sync_dir(dir)?;
    Ok(manifest)
}

fn write_tables(
    conn: &duckdb::Connection,
    to: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<TableFile>, BackupError> {
    let e = |x: duckdb::Error| err(format!("the store: {x}"));
    // One transaction: every table from the same snapshot.
    conn.execute_batch("BEGIN TRANSACTION").map_err(e)?;
    let mut out = Vec::new();
    let copied = (|| {
        for t in TABLES {
            progress(t);
            let file = format!("{t}.parquet");
            let path = to.join(&file);
            let query = backup_query(t);
            let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM ({query})"), [], |r| r.get(0)).map_err(e)?;
            let sql = format!(
                "COPY ({query}) TO '{}' (FORMAT PARQUET, COMPRESSION ZSTD)",
                path.display().to_string().replace('\'', "''")
            );
            conn.execute_batch(&sql).map_err(e)?;
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|x| err(format!("{}: {x}", path.display())))?;
            let (sha256, bytes) = sha256_file(&path)?;
            out.push(TableFile { name: t.to_string(), file, rows: rows as u64, bytes, sha256 });
        }
        Ok(())
    })();
    let _ = conn.execute_batch("COMMIT");
    copied.map(|()| out)
}

/// The backups in `dir`, oldest first (partial ones are not listed).
pub fn list(dir: &Path) -> Result<Vec<Manifest>, BackupError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path().join(MANIFEST)) {
            if let Ok(mut m) = serde_json::from_str::<Manifest>(&text) {
                // The folder is the backup: a copy under another name is its own.
                m.id = name;
                out.push(m);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A backup's folder, checked to be a plain name under `dir`.
fn folder(dir: &Path, id: &str) -> Result<PathBuf, BackupError> {
    if !plain_name(id) {
        return Err(err(format!("`{id}` is not a backup id")));
    }
    let p = dir.join(id);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(err(format!("{} is not a folder", p.display()))),
        Err(_) => Err(err(format!("no backup `{id}` in {}", dir.display()))),
    }
}

/// A file name with no folder, no `..`, nothing absolute.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']) && !s.starts_with('.')
}

/// Checks a backup: the manifest's file names, every file a regular file
/// (no links), its SHA-256 and size, and its row count read back.
pub fn verify(dir: &Path, id: &str) -> Result<Manifest, BackupError> {
    let folder = folder(dir, id)?;
    let text = std::fs::read_to_string(folder.join(MANIFEST)).map_err(|e| err(format!("{id}: manifest: {e}")))?;
    let mut m: Manifest = serde_json::from_str(&text).map_err(|e| err(format!("{id}: manifest: {e}")))?;
    m.id = id.to_string();
    let conn = duckdb::Connection::open_in_memory().map_err(|e| err(e.to_string()))?;
    for t in &m.tables {
        if !plain_name(&t.file) || !TABLES.contains(&t.name.as_str()) {
            return Err(err(format!("{id}: the manifest names `{}`, which is not a file of this backup", t.file)));
        }
        let path = folder.join(&t.file);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(format!("{id}: {}: {e}", t.file)))?;
        if !meta.file_type().is_file() {
            return Err(err(format!("{id}: {} is not a regular file", t.file)));
        }
        let (sha, bytes) = sha256_file(&path)?;
        if sha != t.sha256 || bytes != t.bytes {
            return Err(err(format!("{id}: {} does not match its checksum", t.file)));
        }
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM read_parquet(?)", [path.display().to_string()], |r| r.get(0))
            .map_err(|e| err(format!("{id}: {}: {e}", t.file)))?;
        if rows as u64 != t.rows {
            return Err(err(format!("{id}: {} has {rows} rows, the manifest says {}", t.file, t.rows)));
        }
    }
    Ok(m)
}

/// Restores backup `id` into a new store at `to` (which must not exist).
pub fn restore(dir: &Path, id: &str, to: &Path) -> Result<Manifest, BackupError> {
    let m = verify(dir, id)?;
    let wal = PathBuf::from(format!("{}.wal", to.display()));
    if to.exists() || wal.exists() {
        return Err(err(format!("{} exists: restore into a new path", to.display())));
    }
    let folder = folder(dir, id)?;
    let store = crate::sinks::store::Store::open(to, None, vec![]).map_err(|e| err(e.to_string()))?;
    let conn = store.reader().map_err(|e| err(e.to_string()))?;
    let done = (|| {
        conn.execute_batch("BEGIN TRANSACTION")?;
        for t in &m.tables {
            let path = folder.join(&t.file).display().to_string();
            conn.execute_batch(&restore_sql(&t.name, &path))?;
        }
        conn.execute_batch("COMMIT")
    })();
    drop(conn);
    drop(store);
    if let Err(e) = done {
        let _ = std::fs::remove_file(to);
        let _ = std::fs::remove_file(&wal);
        return Err(err(format!("restoring {id}: {e}")));
    }
    Ok(m)
}

/// Deletes all but the `keep` newest backups, and partial ones left by a
/// killed run. Returns the ids (and partial folders) removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<String>, BackupError> {
    let all = list(dir)?;
    let mut removed = Vec::new();
    for m in all.iter().take(all.len().saturating_sub(keep)) {
        let p = folder(dir, &m.id)?;
        std::fs::remove_dir_all(&p).map_err(|e| err(format!("{}: {e}", p.display())))?;
        removed.push(m.id.clone());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(PARTIAL) {
                // Only those whose writer is gone.
                let pid: Option<i32> = rest.rsplit('-').next().and_then(|p| p.parse().ok());
                // SAFETY: kill(2) with signal 0 sends nothing; it only asks
                // whether the process exists. A reused PID keeps a stale
                // folder one prune longer, never removes a live writer's.
                let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
                if !alive && std::fs::remove_dir_all(e.path()).is_ok() {
                    removed.push(name);
                }
            }
        }
    }
    Ok(removed)
}
