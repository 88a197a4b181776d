//! `edgeguard backup SPEC`: a verifiable snapshot of the store; `--list`,
//! `--verify`, `--restore`, `--prune`. While `serve` holds the store, the
//! backup is made by serve, asked over its API.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::args::load_plan;
use super::exit::{Exit, Failure};
use super::{say, GlobalArgs};
use crate::backup::{self, Manifest};
use crate::compile::Plan;
use crate::sinks::store::{Store, StoreError};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").args(["list", "verify", "restore", "prune"])))]
pub struct BackupArgs {
    /// The pipeline spec (its `store` and `backup` sections).
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// List the backups, oldest first (a table on a terminal, NDJSON otherwise).
    #[arg(long)]
    pub list: bool,
    /// Check a backup (every one without ID): names, checksums, row counts.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
    pub verify: Option<String>,
    /// Restore backup ID into a new store at --to.
    #[arg(long, value_name = "ID", requires = "to")]
    pub restore: Option<String>,
    /// Where --restore writes the store; it must not exist.
    #[arg(long, value_name = "PATH", requires = "restore")]
    pub to: Option<PathBuf>,
    /// Delete all but the `backup.keep` newest backups, and partial ones.
    #[arg(long)]
    pub prune: bool,
    /// Back up this store instead of the spec's.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Override a spec value: `backup.keep=3`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

fn fail(e: backup::BackupError) -> Failure {
    Failure::new(Exit::Failure, e.0)
}

pub fn run(a: &BackupArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let plan = load_plan(&a.spec, &a.set, g)?;
    let Some(bp) = plan.backup.clone() else {
        return Err(Failure::new(Exit::Config, format!("{}: no `backup` section (backup: {{dir: backups}})", a.spec)));
    };
    if bp.format != crate::spec::BackupFormat::Parquet {
        return Err(Failure::new(Exit::Usage, "only `format: parquet` backups are in this build"));
    }
    let dir = bp.dir.clone();
    if a.list {
        let all = backup::list(&dir).map_err(fail)?;
        print_list(&all).map_err(|e| Failure::new(Exit::IoErr, e.to_string()))?;
        return Ok(Exit::Ok);
    }
    if let Some(id) = &a.verify {
        let ids: Vec<String> = if id.is_empty() {
            backup::list(&dir).map_err(fail)?.into_iter().map(|m| m.id).collect()
        } else {
            vec![id.clone()]
        };
        if ids.is_empty() {
            return Err(Failure::new(Exit::Failure, format!("no backups in {}", dir.display())));
        }
        for id in &ids {
            let m = backup::verify(&dir, id).map_err(fail)?;
            say(g, &format!("{id}: ok ({} rows in {} files)", m.rows(), m.tables.len()));
        }
        return Ok(Exit::Ok);
    }
    if let (Some(id), Some(to)) = (&a.restore, &a.to) {
        let m = backup::restore(&dir, id, to).map_err(fail)?;
        say(g, &format!("restored {id} ({} rows) into {}", m.rows(), to.display()));
        return Ok(Exit::Ok);
    }
    if a.prune {
        let removed = backup::prune(&dir, bp.keep).map_err(fail)?;
        for r in &removed {
            say(g, &format!("removed {r}"));
        }
        say(g, &format!("kept the {} newest backups", bp.keep));
        return Ok(Exit::Ok);
    }
    let store_path = match (&a.store, &plan.store) {
        (Some(p), _) => p.clone(),
        (None, Some(s)) => s.path.clone(),
        (None, None) => return Err(Failure::new(Exit::Config, "nothing to back up: the spec has no `store`")),
    };
    if !store_path.exists() {
        return Err(Failure::new(Exit::NoInput, format!("no store at {}", store_path.display())));
    }
    let m = match Store::open(&store_path, None, vec![]) {
        Ok(store) => {
            let conn = store.reader().map_err(crate::engine::EngineError::Store)?;
            let bar = progress(g);
            let m = backup::make(&conn, &store_path, &dir, &mut |t| {
                if let Some(b) = &bar {
                    b.set_message(format!("backing up {t}"));
                }
            })
            .map_err(fail)?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            m
        }
        Err(StoreError::Locked { holder, .. }) => through_serve(&plan, &holder)?,
        Err(e) => return Err(crate::engine::EngineError::Store(e).into()),
    };
    say(g, &format!("backup {}: {} rows, {} bytes, in {}", m.id, m.rows(), m.bytes(), dir.join(&m.id).display()));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", m.id).and_then(|()| out.flush()).map_err(|e| Failure::new(Exit::IoErr, e.to_string()))?;
    Ok(Exit::Ok)
}

fn progress(g: &GlobalArgs) -> Option<indicatif::ProgressBar> {
    if g.no_progress || g.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(b)
}

/// The store is held: if it is `serve` (the spec has a `serve` section and
/// it answers), ask it to make the backup.
fn through_serve(plan: &Plan, holder: &str) -> Result<Manifest, Failure> {
    let path = "/api/v1/backup";
    match super::serve_api::post(plan, holder, path, None, std::time::Duration::from_secs(3600))? {
        (200..=299, body) => {
            serde_json::from_str(&body).map_err(|e| Failure::new(Exit::Failure, format!("serve answered: {e}")))
        }
        (s, body) => Err(Failure::new(Exit::Failure, format!("serve refused the backup ({s}): {body}"))),
    }
}

fn print_list(all: &[Manifest]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if std::io::IsTerminal::is_terminal(&out) {
        writeln!(out, "{:<22} {:<26} {:>12} {:>12}", "id", "created", "rows", "bytes")?;
        for m in all {
            writeln!(out, "{:<22} {:<26} {:>12} {:>12}", m.id, m.created, m.rows(), m.bytes())?;
        }
    } else {
        for m in all {
            writeln!(out, "{}", serde_json::to_string(m).unwrap_or_default())?;
        }
    }
    out.flush()
}
