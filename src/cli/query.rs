//! `edgeguard query SPEC SQL`: read-only SQL on the store, printed as
//! NDJSON, CSV or a table. The store file is opened read-only; while `serve`
//! holds it, the query goes through serve's `POST /api/v1/query`. Either
//! way DuckDB enforces read-only (`serve::sql`).

use std::time::Duration;

use clap::Args;

use super::args::{load_plan, parse_duration_arg};
use super::exit::{Exit, Failure};
use super::{say, GlobalArgs};
use crate::serve::sql::{self, Answer, SqlError};
use crate::sinks::stdout::{write_rows, OutputError, OutputFormat};
use crate::sinks::store::{open_reader, StoreError};

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The pipeline spec (its `store`, and its `serve` while serve holds the store).
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// One SELECT statement (tables: readings, anomalies, alerts, commits, state, meta).
    #[arg(value_name = "SQL")]
    pub sql: String,
    /// Output format [default: table on a terminal, ndjson otherwise].
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Most rows printed; past it the answer is cut and a warning says so
    /// (through serve: at most 100000).
    #[arg(long, value_name = "N", default_value_t = sql::DEFAULT_ROWS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Interrupt the query after this long (through serve: at most 25s).
    #[arg(long, value_name = "TIME", value_parser = parse_duration_arg, default_value = "10s")]
    pub timeout: Duration,
    /// Query this store file instead of the spec's `store.path`.
    #[arg(long, value_name = "PATH")]
    pub store: Option<String>,
    /// Override a spec value: `serve.listen=127.0.0.1:9000`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(a: &QueryArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let plan = load_plan(&a.spec, &a.set, g)?;
    let path = match (&a.store, &plan.store) {
        (Some(p), _) => std::path::PathBuf::from(p),
        (None, Some(s)) => s.path.clone(),
        (None, None) => return Err(Failure::new(Exit::Usage, "the spec has no `store`: pass --store PATH")),
    };
    if !path.exists() {
        return Err(Failure::new(Exit::NoInput, format!("no store at {}", path.display())));
    }
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let answer = match open_reader(&path) {
        Ok(conn) => sql::run(&conn, &a.sql, limit, a.timeout).map_err(|e| failure(&e))?,
        Err(StoreError::Locked { holder, .. }) => through_serve(a, &plan, &holder)?,
        Err(e) => return Err(crate::engine::EngineError::Store(e).into()),
    };
    match write_rows(&answer.columns, &answer.rows, a.format) {
        Ok(()) | Err(OutputError::Closed) => {}
        Err(OutputError::Io(e)) => return Err(Failure::new(Exit::IoErr, format!("cannot write output: {e}"))),
    }
    if answer.truncated {
        say(g, &format!("query: stopped at {} rows (--limit); the query has more", answer.rows.len()));
    }
    Ok(Exit::Ok)
}

/// The exit status of a query DuckDB did not run (docs/contract.md §5).
fn failure(e: &SqlError) -> Failure {
    let exit = match e {
        SqlError::Refused(_) => Exit::NoPerm,
        SqlError::Invalid(_) => Exit::Usage,
        SqlError::TimedOut(_) => Exit::Failure,
        SqlError::Store(_) => Exit::IoErr,
    };
    Failure::new(exit, format!("query: {e}"))
}

/// The store is held: ask this spec's serve to run the query.
fn through_serve(a: &QueryArgs, plan: &crate::compile::Plan, holder: &str) -> Result<Answer, Failure> {
    let body = serde_json::json!({
        "sql": a.sql,
        "limit": a.limit,
        "timeout": format!("{}ms", a.timeout.as_millis()),
    });
    let wait = a.timeout + Duration::from_secs(10);
    let (status, text) = super::serve_api::post(plan, holder, "/api/v1/query", Some(body.to_string()), wait)?;
    let said = || {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.clone())
    };
    let exit = match status {
        200 => {
            return serde_json::from_str(&text)
                .map_err(|e| Failure::new(Exit::Failure, format!("query: serve's answer does not parse: {e}")))
        }
        400 | 413 => Exit::Usage,
        401 | 403 => Exit::NoPerm,
        _ => Exit::Failure,
    };
    Err(Failure::new(exit, format!("query (through serve, {status}): {}", said())))
}
