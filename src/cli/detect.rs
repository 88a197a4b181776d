//! `edgeguard detect SPEC`: … → detection; with `--from-store`, a backtest
//! of the store's readings through the detectors.

use clap::Args;

use super::args::{load_plan, PipelineArgs};
use super::exit::{Exit, Failure};
use super::pipeline::{finish, run_stage};
use super::{say, GlobalArgs};
use crate::engine::{self, ReplayOptions, RunOptions, Stage};
use crate::sinks::stdout::{Only, Output};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec"])))]
pub struct DetectArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Backtest: replay the store's readings through the detectors. Prints
    /// the anomalies and a summary; stores nothing unless --store is given.
    #[arg(long, conflicts_with_all = ["input", "once", "duration", "count"], help_heading = "Backtest")]
    pub from_store: bool,
    /// Replay from this time: `30d` (ago) or an RFC 3339 time. Default: the beginning.
    #[arg(long, value_name = "TIME", requires = "from_store", help_heading = "Backtest")]
    pub since: Option<String>,
    /// Replay until this time (exclusive): `1d` (ago) or an RFC 3339 time. Default: the newest stored reading.
    #[arg(long, value_name = "TIME", requires = "from_store", help_heading = "Backtest")]
    pub until: Option<String>,
}

pub fn run(args: &DetectArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    if !args.from_store {
        return run_stage(&args.pipeline, g, Stage::Detect);
    }
    let a = &args.pipeline;
    let spec = a.spec.as_deref().unwrap_or_default();
    let plan = load_plan(spec, &a.set, g)?;
    // As for every pipeline command: check or show the plan, run nothing.
    if a.dump_plan {
        return super::validate::dump_plan(&plan);
    }
    if a.check {
        say(g, &format!("{spec}: ok (detect --from-store)"));
        return Ok(Exit::Ok);
    }
    let now = crate::model::time::now_micros();
    let since = args.since.as_deref().map(|t| parse_when(t, now)).transpose()?.unwrap_or(i64::MIN);
    let until = args.until.as_deref().map(|t| parse_when(t, now)).transpose()?.unwrap_or(i64::MAX);
    let Some(source) = a.store(&plan) else {
        return Err(Failure::new(Exit::Usage, "--from-store needs a store: the spec's `store`, or --store PATH"));
    };
    let mut output = Output::open(
        a.output.as_deref(),
        a.format,
        a.only.unwrap_or_else(|| Only::parse("anomaly").expect("a record kind")),
        g.color(),
    )
    .map_err(|e| Failure::new(Exit::IoErr, format!("cannot write output: {e}")))?;
    // Anomalies are stored only when asked for, into the store that is read.
    let store = if a.store.is_some() { Some(source.clone()) } else { None };
    let opts = RunOptions {
        input: None,
        replay: Some(ReplayOptions { path: source.path.clone(), since, until }),
        once: false,
        duration: None,
        count: None,
        store,
        store_input: false,
        progress: !g.no_progress && !g.quiet,
        timeout: None,
        stage: Stage::Detect,
        tap: None,
        wall_clock: false,
        shutdown: None,
        resume: None,
        exits: true,
    };
    let report = engine::run(&plan, opts, &mut output)?;
    if !g.quiet && !report.detect.by_day.is_empty() {
        let mut table = String::from("detector             channel                          day         anomalies\n");
        for ((d, c, day), n) in &report.detect.by_day {
            let mut date = Vec::new();
            crate::model::time::write_rfc3339(day * 86_400_000_000, &mut date);
            table += &format!("{d:<20} {c:<32} {} {n:>9}\n", String::from_utf8_lossy(&date[..10]));
        }
        say(g, table.trim_end());
    }
    finish("detect", &report, a, g, a.store.as_deref())
}

/// `30d` (that long ago) or an RFC 3339 time, as microseconds.
fn parse_when(text: &str, now: i64) -> Result<i64, Failure> {
    crate::model::time::parse_when(text, now).map_err(|e| Failure::new(Exit::Usage, e))
}
