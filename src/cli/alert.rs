//! `edgeguard alert SPEC`: … → detection → alert rules → notifiers; with
//! `--render FIXTURE`, a preview of what every notifier would send; with
//! `--silence`, `--silences` and `--unsilence`, the silences in the store.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::args::{io_failure, load_plan, parse_duration_arg, PipelineArgs};
use super::exit::{Exit, Failure};
use super::pipeline::{plural, run_stage};
use super::{say, GlobalArgs};
use crate::compile::Plan;
use crate::engine::{load_silences, save_silences, Stage};
use crate::model::intern::Interner;
use crate::model::ndjson::parse_ndjson_line;
use crate::model::record::Record;
use crate::model::time::{format_rfc3339, now_micros};
use crate::pipetest::RunError;
use crate::sinks::notify::Notifiers;
use crate::sinks::store::Store;
use crate::stages::alert::{Alerter, Silence};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec"])))]
#[command(group(clap::ArgGroup::new("mode").args(["render", "explain", "silence", "silences", "unsilence"])))]
#[command(group(clap::ArgGroup::new("preview").args(["render", "explain"])))]
pub struct AlertArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print, as NDJSON, what every notifier would send for the records of
    /// FIXTURE (NDJSON readings and anomalies; `-` for stdin), and send nothing.
    /// The records go to the rules as they are, with fresh rule state.
    #[arg(long, value_name = "FIXTURE", conflicts_with_all = ["input", "once", "duration", "count"], help_heading = "Preview")]
    pub render: Option<String>,
    /// Print the alert timeline the records of FIXTURE (NDJSON; `-` for
    /// stdin) make through the spec's chain, as `edgeguard test --explain`
    /// does: when each rule became pending, fired, repeated and resolved,
    /// what was sent to whom, and why a notification was held. Sends nothing.
    #[arg(long, value_name = "FIXTURE", conflicts_with_all = ["input", "once", "duration", "count"], help_heading = "Preview")]
    pub explain: Option<String>,
    /// With --render or --explain: only this rule.
    #[arg(long, value_name = "RULE", requires = "preview", help_heading = "Preview")]
    pub rule: Option<String>,
    /// Silence RULE (on CHANNEL only, a name or glob) for --for; kept in the store.
    #[arg(long, value_name = "RULE[:CHANNEL]", requires = "silence_for", help_heading = "Silences")]
    pub silence: Option<String>,
    /// How long the silence lasts: `2h`.
    #[arg(long = "for", id = "silence_for", value_name = "DURATION", value_parser = parse_duration_arg, requires = "silence", help_heading = "Silences")]
    pub silence_for: Option<Duration>,
    /// Why (shown by --silences).
    #[arg(long, value_name = "TEXT", requires = "silence", help_heading = "Silences")]
    pub comment: Option<String>,
    /// List the active silences.
    #[arg(long, help_heading = "Silences")]
    pub silences: bool,
    /// End the silences of RULE (on CHANNEL).
    #[arg(long, value_name = "RULE[:CHANNEL]", help_heading = "Silences")]
    pub unsilence: Option<String>,
}

pub fn run(args: &AlertArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let a = &args.pipeline;
    let preview = args.render.is_some() || args.explain.is_some();
    if !preview && args.silence.is_none() && !args.silences && args.unsilence.is_none() {
        return run_stage(a, g, Stage::Alert);
    }
    let spec = a.spec.as_deref().unwrap_or_default();
    let plan = load_plan(spec, &a.set, g)?;
    if let Some(fixture) = &args.render {
        return render(&plan, fixture, args.rule.as_deref());
    }
    if let Some(fixture) = &args.explain {
        return explain(plan, fixture, args.rule.as_deref());
    }
    let Some(sp) = a.store(&plan) else {
        return Err(Failure::new(
            Exit::Usage,
            "silences are kept in the store: the spec needs `store`, or --store PATH",
        ));
    };
    let store = Store::open(&sp.path, None, vec![]).map_err(crate::engine::EngineError::Store)?;
    let now = now_micros();
    let mut silences: Vec<Silence> = load_silences(&store)?.into_iter().filter(|s| s.until > now).collect();
    if args.silences {
        print_silences(&silences).map_err(|e| Failure::new(Exit::IoErr, e.to_string()))?;
        return Ok(Exit::Ok);
    }
    if let Some(target) = &args.silence {
        let (rule, channel) = target_of(&plan, target)?;
        let d = args.silence_for.unwrap_or_default();
        let s =
            Silence { rule, channel, until: now + d.as_micros() as i64, comment: args.comment.clone(), created: now };
        say(
            g,
            &format!(
                "silenced `{}`{} until {}",
                s.rule,
                s.channel.as_deref().map(|c| format!(" on {c}")).unwrap_or_default(),
                format_rfc3339(s.until)
            ),
        );
        silences.retain(|o| !(o.rule == s.rule && o.channel == s.channel));
        silences.push(s);
    } else if let Some(target) = &args.unsilence {
        let (rule, channel) = target_of(&plan, target)?;
        let before = silences.len();
        silences.retain(|o| !(o.rule == rule && (channel.is_none() || o.channel == channel)));
        let ended = before - silences.len();
        if ended == 0 {
            return Err(Failure::new(Exit::Failure, format!("no active silence of `{target}`")));
        }
        say(g, &format!("ended {}", plural(ended as u64, "silence")));
    }
    save_silences(&store, &silences)?;
    Ok(Exit::Ok)
}

/// `RULE[:CHANNEL]`, checked against the plan's rules.
fn target_of(plan: &Plan, target: &str) -> Result<(String, Option<String>), Failure> {
    let (rule, channel) = match target.split_once(':') {
        Some((r, c)) => (r, Some(c.to_string())),
        None => (target, None),
    };
    if !plan.alerts.iter().any(|a| a.rule == rule) {
        let rules: Vec<&str> = plan.alerts.iter().map(|a| a.rule.as_str()).collect();
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "no alert rule `{rule}` (rules: {})",
                if rules.is_empty() { "none".into() } else { rules.join(", ") }
            ),
        ));
    }
    if let Some(c) = &channel {
        crate::model::channel::channel_matcher(c)
            .map_err(|e| Failure::new(Exit::Usage, format!("`{c}` is not a channel or glob: {e}")))?;
    }
    Ok((rule.to_string(), channel))
}

fn print_silences(silences: &[Silence]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if std::io::IsTerminal::is_terminal(&out) {
        writeln!(out, "{:<24} {:<28} {:<26} comment", "rule", "channel", "until")?;
        for s in silences {
            let ch = s.channel.as_deref().unwrap_or("*");
            let comment = s.comment.as_deref().unwrap_or("");
            writeln!(out, "{:<24} {:<28} {:<26} {comment}", s.rule, ch, format_rfc3339(s.until))?;
        }
    } else {
        for s in silences {
            let line = serde_json::json!({
                "rule": s.rule, "channel": s.channel, "until": format_rfc3339(s.until),
                "created": format_rfc3339(s.created), "comment": s.comment,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()
}

/// The fixture of `--render` or `--explain` (`-`: stdin) and the name
/// messages give it; a missing one is 66, an unreadable one 77 or 74.
fn open_fixture(fixture: &str) -> Result<(Box<dyn BufRead>, &str), Failure> {
    if fixture == "-" {
        return Ok((Box::new(std::io::stdin().lock()), "stdin"));
    }
    let f = std::fs::File::open(fixture).map_err(|e| io_failure(fixture, &e))?;
    Ok((Box::new(std::io::BufReader::new(f)), fixture))
}

/// `--explain`: the alert timeline of the fixture's records through the chain.
fn explain(mut plan: Plan, fixture: &str, only: Option<&str>) -> Result<Exit, Failure> {
    if let Some(r) = only {
        let _ = target_of(&plan, r)?;
        plan.alerts.retain(|a| a.rule == r);
    }
    let (reader, shown) = open_fixture(fixture)?;
    let failed = |e: RunError| match e {
        RunError::Input(p, e) => io_failure(&p, &e),
        RunError::Fixture(m) => Failure::new(Exit::DataErr, m),
        RunError::Setup(m) => Failure::new(Exit::Config, m),
    };
    let records = crate::pipetest::read_fixture(reader, shown).map_err(failed)?;
    let captured = crate::pipetest::run_records(&plan, records).map_err(failed)?;
    let heading = format!("{shown}: alert timeline (times from the first record)");
    super::test::write_stdout(&crate::pipetest::report::explain(&heading, &captured))?;
    Ok(Exit::Ok)
}

/// `--render`: every notification the fixture makes, as each notifier would send it.
fn render(plan: &Plan, fixture: &str, only: Option<&str>) -> Result<Exit, Failure> {
    let rules: Vec<_> = plan.alerts.iter().filter(|a| only.is_none_or(|r| a.rule == r)).cloned().collect();
    if let Some(r) = only {
        if rules.is_empty() {
            let _ = target_of(plan, r)?;
        }
    }
    let mut alerter = Alerter::new(&rules, &plan.notifiers).map_err(|e| Failure::new(Exit::Config, e))?;
    let notifiers = Notifiers::new(&plan.notifiers);
    let (reader, _) = open_fixture(fixture)?;
    let mut interner = Interner::with_cap(100_000);
    let source: Arc<str> = Arc::from("fixture");
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| Failure::new(Exit::IoErr, format!("cannot write output: {e}"));
    let mut notes = Vec::new();
    let mut lines = reader.lines().enumerate();
    let mut ended = false;
    while !ended {
        notes.clear();
        match lines.next() {
            Some((i, line)) => {
                let line = line.map_err(|e| Failure::new(Exit::IoErr, format!("cannot read {fixture}: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                let rec: Record = parse_ndjson_line(line.as_bytes(), &mut interner, now_micros(), &source)
                    .map_err(|e| Failure::new(Exit::DataErr, format!("{fixture}:{}: {}", i + 1, e.0)))?;
                alerter.process(std::slice::from_ref(&rec), &mut notes);
            }
            // The end: groups send what they hold.
            None => {
                alerter.finish(&mut notes);
                ended = true;
            }
        }
        for n in &notes {
            let a = &n.alert;
            let mut head = serde_json::json!({"rule": a.rule, "state": a.state.as_str(), "channel": a.channel,
                                          "ts": format_rfc3339(a.ts), "fingerprint": a.fingerprint});
            if n.grouped {
                // A group's notification: which alerts it lists.
                let count = n.context.get_attr("alerts").ok().and_then(|v| v.len());
                head["group"] = serde_json::json!({"labels": &a.labels, "count": count});
            }
            let notifies_nobody = rules.iter().any(|r| r.rule == a.rule && r.notify.is_empty());
            if n.notify.is_empty() && !n.grouped && notifies_nobody {
                writeln!(out, "{}", serde_json::json!({"alert": head, "notifier": null, "record": &n.alert}))
                    .map_err(io)?;
            }
            for id in n.notify.iter() {
                let Some((msg, mut errors)) = notifiers.render(id, n) else { continue };
                errors.extend(n.errors.iter().cloned());
                let mut line = serde_json::json!({"alert": head, "notifier": id});
                if let (Some(m), Ok(serde_json::Value::Object(msg))) =
                    (line.as_object_mut(), serde_json::to_value(&msg))
                {
                    m.extend(msg);
                    if !errors.is_empty() {
                        m.insert("template_errors".into(), errors.into());
                    }
                }
                writeln!(out, "{line}").map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(Exit::Ok)
}
