//! `edgeguard acquire SPEC` (sources → channel validation) and `edgeguard
//! fuse SPEC` (… → fusion): the engine up to a stage, to stdout and the store.

use clap::Args;

use super::args::{load_plan, FailOn, PipelineArgs};
use super::exit::{Exit, Failure};
use super::probe::ProbeArgs;
use super::{say, GlobalArgs};
use crate::engine::{self, InputOptions, ReplayOptions, RunOptions, RunReport, Stage};
use crate::sinks::stdout::{Only, Output};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec", "probe"])))]
pub struct AcquireArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec"])))]
pub struct FuseArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub fn run(args: &AcquireArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    if args.probe.probe.is_some() {
        return super::probe::run(&args.probe, &args.pipeline, g);
    }
    run_stage(&args.pipeline, g, Stage::Validate)
}

pub fn run_fuse(args: &FuseArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    run_stage(&args.pipeline, g, Stage::Fuse)
}

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
    /// Replay until this time (exclusive): `1d` (ago) or an RFC 3339 time. Default: now.
    #[arg(long, value_name = "TIME", requires = "from_store", help_heading = "Backtest")]
    pub until: Option<String>,
}

pub fn run_detect(args: &DetectArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    if !args.from_store {
        return run_stage(&args.pipeline, g, Stage::Detect);
    }
    let a = &args.pipeline;
    let spec = a.spec.as_deref().unwrap_or_default();
    let plan = load_plan(spec, &a.set, g)?;
    let now = crate::engine::time::now_micros();
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
    };
    let report = engine::run(&plan, opts, &mut output)?;
    if !g.quiet && !report.detect.by_day.is_empty() {
        let mut table = String::from("detector             channel                          day         anomalies\n");
        for ((d, c, day), n) in &report.detect.by_day {
            let mut date = Vec::new();
            crate::engine::time::write_rfc3339(day * 86_400_000_000, &mut date);
            table += &format!("{d:<20} {c:<32} {} {n:>9}\n", String::from_utf8_lossy(&date[..10]));
        }
        say(g, table.trim_end());
    }
    finish("detect", &report, a, g, a.store.as_deref())
}

/// `30d` (that long ago) or an RFC 3339 time, as microseconds.
fn parse_when(text: &str, now: i64) -> Result<i64, Failure> {
    if let Some(t) = crate::engine::time::parse_rfc3339(text) {
        return Ok(t);
    }
    crate::compile::quantity::parse_duration(text).map(|d| now - d.as_micros() as i64).map_err(|e| {
        Failure::new(Exit::Usage, format!("`{text}` is neither a duration (30d) nor an RFC 3339 time: {e}"))
    })
}

/// Runs the engine up to `stage`.
fn run_stage(a: &PipelineArgs, g: &GlobalArgs, stage: Stage) -> Result<Exit, Failure> {
    let command = stage.command();
    let spec = a.spec.as_deref().unwrap_or_default();
    let plan = load_plan(spec, &a.set, g)?;
    if a.dump_plan {
        return super::validate::dump_plan(&plan);
    }
    if a.check {
        say(g, &format!("{spec}: ok ({command})"));
        return Ok(Exit::Ok);
    }
    if stage == Stage::Fuse && plan.fuse.is_empty() {
        say(g, &format!("{spec}: no `fuse` section; readings pass through unchanged"));
    }
    if stage == Stage::Detect && plan.detect.is_empty() {
        say(g, &format!("{spec}: no `detect` section; nothing to detect"));
    }
    let store = a.store(&plan);
    let store_path = store.as_ref().map(|s| s.path.display().to_string());
    let opts = RunOptions {
        input: a.input.clone().map(|path| InputOptions { path, format: a.input_format, max_line: a.max_line_bytes }),
        replay: None,
        once: a.once,
        duration: a.duration,
        count: a.count,
        store,
        store_input: a.store_input,
        progress: !g.no_progress && !g.quiet,
        timeout: a.timeout,
        stage,
    };
    let mut output = a.output(g)?;
    let report = engine::run(&plan, opts, &mut output)?;
    finish(command, &report, a, g, store_path.as_deref())
}

/// The summary on stderr and the exit status of a pipeline run.
pub(super) fn finish(
    command: &str,
    r: &RunReport,
    a: &PipelineArgs,
    g: &GlobalArgs,
    store: Option<&str>,
) -> Result<Exit, Failure> {
    // `edgeguard … | head -1`: the reader left; say nothing, exit 0.
    if r.output_closed && !r.interrupted {
        return Ok(Exit::Ok);
    }
    let v = &r.validate;
    // A backtest skips validation: count what it replayed.
    let readings = if v.readings == 0 { r.input.map_or(0, |i| i.records) } else { v.readings };
    let mut parts = vec![format!("{readings} readings")];
    if v.suspect + v.bad > 0 {
        parts[0] += &format!(" ({} suspect, {} bad", v.suspect, v.bad);
        if v.stale_gaps > 0 {
            parts[0] += &format!(", {}", plural(v.stale_gaps, "stale gap"));
        }
        parts[0] += ")";
    }
    if r.fuse.fused > 0 {
        parts.push(format!(
            "{} fused ({} suspect or bad, {} inputs voted out)",
            r.fuse.fused, r.fuse.suspect, r.fuse.voted_out
        ));
    }
    if r.detect.channels > 0 {
        parts.push(format!("{} on {} detector-channels", plural(r.detect.anomalies, "anomaly"), r.detect.channels));
    }
    if r.other_records > r.detect.anomalies {
        parts.push(format!("{} passed on", plural(r.other_records - r.detect.anomalies, "other record")));
    }
    if let Some(i) = &r.input {
        if i.rejected > 0 {
            parts.push(format!("{} of {} lines rejected", i.rejected, i.lines));
        }
    }
    match (&r.store, store) {
        (Some(s), Some(path)) => {
            let what = if s.anomalies > 0 {
                format!("{} and {} stored", s.readings, plural(s.anomalies, "anomaly"))
            } else {
                format!("{} stored", s.readings)
            };
            parts.push(format!("{what} in {path} ({})", plural(s.commits, "commit")))
        }
        _ => parts.push("not stored".into()),
    }
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { v.readings as f64 / secs } else { 0.0 };
    parts.push(format!("{secs:.2} s ({})", human_rate(rate)));
    if r.interrupted {
        parts.push("stopped by signal".into());
    }
    say(g, &format!("{command}: {}", parts.join(" · ")));

    for src in &r.sources {
        say(g, &format!("  {}: {}", src.id, src.stats));
    }

    let rejected = r.input.map_or(0, |i| i.rejected);
    if a.strict && rejected > 0 {
        return Err(Failure::new(Exit::DataErr, format!("{rejected} input lines rejected (--strict)")));
    }
    if let Some((id, why)) = r.sources.iter().find_map(|s| s.stats.refused().map(|w| (&s.id, w))) {
        return Err(Failure::new(Exit::NoPerm, format!("{id}: the broker refused the connection: {why}")));
    }
    if a.once {
        // Devices (Modbus units, MQTT filters) that never answered failed.
        let (mut total, mut silent) = (0, Vec::new());
        for s in &r.sources {
            for (what, answered) in s.stats.devices() {
                total += 1;
                if !answered {
                    silent.push(format!("{} {what}", s.id));
                }
            }
        }
        if total > 0 && silent.len() == total {
            return Err(Failure::new(Exit::Unavailable, format!("no device answered ({})", silent.join(", "))));
        }
        if !silent.is_empty() {
            return Err(Failure::new(Exit::Failure, format!("{} did not answer", silent.join(", "))));
        }
    }
    if (a.fail_on.contains(&FailOn::Bad) && v.bad > 0)
        || (a.fail_on.contains(&FailOn::Anomaly) && r.detect.anomalies > 0)
    {
        return Ok(Exit::FailOn);
    }
    Ok(Exit::Ok)
}

fn plural(n: u64, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

fn human_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2}M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1}k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}
