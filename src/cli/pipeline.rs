//! The pipeline commands' shared path: run the engine up to a stage, then
//! the summary on stderr and the exit status. `edgeguard fuse SPEC` is this
//! path and nothing more.

use clap::Args;

use super::args::{load_plan, FailOn, PipelineArgs};
use super::exit::{Exit, Failure};
use super::{say, GlobalArgs};
use crate::engine::{self, InputOptions, Policy, RunOptions, RunReport, Stage, Verdict};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec"])))]
pub struct FuseArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub fn run_fuse(args: &FuseArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    run_stage(&args.pipeline, g, Stage::Fuse)
}

/// Runs the engine up to `stage`.
pub(super) fn run_stage(a: &PipelineArgs, g: &GlobalArgs, stage: Stage) -> Result<Exit, Failure> {
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
    if stage == Stage::Fuse && plan.fuse.is_empty() && plan.compute.is_empty() {
        say(g, &format!("{spec}: no `fuse` or `compute` section; readings pass through unchanged"));
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
        tap: None,
        wall_clock: false,
        shutdown: None,
        resume: None,
        exits: true,
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
    let policy = Policy {
        strict: a.strict,
        once: a.once,
        fail_on_bad: a.fail_on.contains(&FailOn::Bad),
        fail_on_anomaly: a.fail_on.contains(&FailOn::Anomaly),
        fail_on_alert: a.fail_on.contains(&FailOn::Alert),
    };
    let v = engine::verdict(r, &policy);
    // `edgeguard … | head -1`: the reader left; say nothing, exit 0.
    if v == Verdict::OutputClosed {
        return Ok(Exit::Ok);
    }
    summary(command, r, g, store);
    let exit = match &v {
        Verdict::Ok | Verdict::OutputClosed => return Ok(Exit::Ok),
        Verdict::FailOn => return Ok(Exit::FailOn),
        Verdict::Rejected(_) => Exit::DataErr,
        Verdict::Refused { .. } | Verdict::ForwardRefused { .. } => Exit::NoPerm,
        Verdict::NoneAnswered(_) | Verdict::ForwardBehind { .. } => Exit::Unavailable,
        Verdict::SomeSilent(_) | Verdict::Undelivered(_) => Exit::Failure,
    };
    Err(Failure::new(exit, v.to_string()))
}

/// The summary of a pipeline run: one line, then one per live source.
fn summary(command: &str, r: &RunReport, g: &GlobalArgs, store: Option<&str>) {
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
    let al = &r.alert;
    if al.stats.notifications + al.stats.silenced > 0 || command == "alert" {
        let mut s = plural(al.stats.notifications, "notification");
        let mut more = vec![format!("{} delivered", al.sent)];
        if al.failed > 0 {
            more.push(format!("{} failed", al.failed));
        }
        if al.stats.silenced > 0 {
            more.push(format!("{} silenced", al.stats.silenced));
        }
        if al.stats.held > 0 {
            more.push(format!("{} held", al.stats.held));
        }
        if al.stats.fallbacks + al.fallbacks > 0 {
            more.push(format!("{} template fallbacks", al.stats.fallbacks + al.fallbacks));
        }
        s += &format!(" ({})", more.join(", "));
        parts.push(s);
    }
    let passed = r.other_records.saturating_sub(r.detect.anomalies + al.stats.notifications);
    if passed > 0 {
        parts.push(format!("{} passed on", plural(passed, "other record")));
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
    for t in &r.forward {
        say(g, &format!("  forward {}: {}", t.id, forward_line(t)));
    }
}

/// What a forward target did: `1200 records in 12 messages (3 duplicates) · backlog empty`.
pub(super) fn forward_line(t: &crate::forward::ForwardReport) -> String {
    let mut parts = vec![format!("{} in {} to {}", plural(t.records, "record"), plural(t.messages, "message"), t.kind)];
    if t.duplicates > 0 {
        parts[0] += &format!(" ({} already there)", plural(t.duplicates, "duplicate"));
    }
    if t.dropped > 0 {
        parts.push(format!("{} dropped: older than backlog.max_age", plural(t.dropped, "record")));
    }
    match (t.backlog, &t.last_error) {
        (0, _) => parts.push("backlog empty".into()),
        (n, Some(e)) => parts.push(format!("{} waiting in the store (last error: {e})", plural(n, "record"))),
        (n, None) => parts.push(format!("{} waiting in the store", plural(n, "record"))),
    }
    parts.join(" · ")
}

pub(super) fn plural(n: u64, what: &str) -> String {
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
