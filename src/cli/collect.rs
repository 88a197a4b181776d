//! `edgeguard collect SPEC`: a fleet's hub (the spec's `nats` sources) into
//! its lake (the spec's `export`), until SIGINT/SIGTERM or, with `--once`,
//! until nothing is pending.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::args::{load_plan, parse_duration_arg};
use super::exit::{Exit, Failure};
use super::pipeline::plural;
use super::{say, GlobalArgs};
use crate::collect::{self, CollectError, CollectOptions, CollectReport};

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The center's spec: `nats` sources and an `export`.
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// The export to write, when the spec has several.
    #[arg(long, value_name = "ID")]
    pub export: Option<String>,
    /// Collect what is pending on the hub, write it, and exit (for cron).
    #[arg(long)]
    pub once: bool,
    /// With --once, the longest the run takes (default 60s).
    #[arg(long, value_name = "TIME", value_parser = parse_duration_arg, requires = "once")]
    pub timeout: Option<Duration>,
    /// Override a spec value: `export.lake.roll.max_rows=100000`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(a: &CollectArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let plan = load_plan(&a.spec, &a.set, g)?;
    let opts = CollectOptions {
        export: a.export.clone(),
        once: a.once,
        timeout: a.timeout.unwrap_or(Duration::from_secs(60)),
    };
    let bar = (!g.no_progress && !g.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(10));
        b.set_message("collecting");
        b
    });
    let report = collect::run(&plan, &opts, bar).map_err(|e| match e {
        CollectError::Usage(m) => Failure::new(Exit::Usage, m),
        CollectError::Setup(m) => Failure::new(Exit::Config, m),
        CollectError::Internal(m) => Failure::new(Exit::Software, m),
    })?;
    say(g, &summary(&report));
    Ok(verdict(&report, a.once))
}

fn summary(r: &CollectReport) -> String {
    let messages: u64 = r.sources.iter().map(|(_, s)| s.messages).sum();
    let mut line = format!(
        "collect: {} → {} in {} ({}",
        plural(messages, "message"),
        plural(r.rows, "row"),
        r.dest,
        plural(r.files, "file"),
    );
    if r.existing > 0 {
        line.push_str(&format!(", {} there already", r.existing));
    }
    line.push_str(&format!(", {})", plural(r.rolls, "roll")));
    for (id, s) in &r.sources {
        line.push_str(&format!("\n  {id}: {s}"));
    }
    if r.unwritten > 0 {
        line.push_str(&format!(
            "\n  {} not written; their messages stay on the hub and come again",
            plural(r.unwritten, "row")
        ));
    }
    if let Some(e) = &r.last_error {
        line.push_str(&format!("\n  export {}: {e}", r.export));
    }
    line
}

/// 77 when the hub or the lake refused us; with `--once`, 69 when the hub
/// was never reached or rows could not be written (they stay on the hub).
fn verdict(r: &CollectReport, once: bool) -> Exit {
    if r.refused.is_some() || r.sources.iter().any(|(_, s)| s.refused.is_some()) {
        return Exit::NoPerm;
    }
    if once && (r.unwritten > 0 || r.sources.iter().any(|(_, s)| s.connects == 0)) {
        return Exit::Unavailable;
    }
    Exit::Ok
}
