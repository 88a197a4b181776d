//! `edgeguard serve SPEC`: the whole pipeline until SIGINT/SIGTERM, with the
//! HTTP API, the live stream, metrics and the dashboard; SIGHUP reloads the
//! spec (`crate::serve::control`); under systemd it speaks sd_notify
//! (`serve::systemd`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::args::{load_plan, parse_duration_arg, reload_plan, resolve_store};
use super::exit::{Exit, Failure};
use super::pipeline::plural;
use super::{say, GlobalArgs};
use crate::compile::ServePlan;
use crate::engine::tap::Tap;
use crate::engine::{self, RunOptions, Stage};
use crate::serve::control::{watch_signals, Control};
use crate::serve::systemd::Notifier;
use crate::serve::{Layout, Server, StartError, StoreWatch, Watch};
use crate::sinks::stdout::{Only, Output};
use crate::spec::RecordKind;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The pipeline spec.
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// Listen here instead of `serve.listen` (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Store here instead of the spec's `store.path`.
    #[arg(long, value_name = "PATH", conflicts_with = "no_store")]
    pub store: Option<String>,
    /// Do not store (the API's range queries then answer 503).
    #[arg(long)]
    pub no_store: bool,
    /// Stop after this long, as on SIGTERM.
    #[arg(long, value_name = "TIME", value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Also print these records on stdout (reading,anomaly,alert). Default: none.
    #[arg(long, value_name = "KINDS", value_parser = Only::parse)]
    pub print: Option<Only>,
    /// Override a spec value: `serve.listen=0.0.0.0:8080`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(a: &ServeArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let plan = load_plan(&a.spec, &a.set, g)?;
    let mut serve = plan.serve.clone().unwrap_or_else(ServePlan::local);
    if let Some(l) = a.listen {
        serve.listen = l;
    }
    if !serve.listen.ip().is_loopback() && serve.token.is_none() {
        return Err(Failure::new(
            Exit::Config,
            format!(
                "refusing to listen on {} without a token: set `serve.token`, or listen on 127.0.0.1",
                serve.listen
            ),
        ));
    }
    let tap = Arc::new(Tap::default());
    let watch = |plan: &crate::compile::Plan| Watch {
        sources: plan.sources.iter().map(|s| (s.id.clone(), s.kind.type_name(), s.kind.listens())).collect(),
        down_after: serve.down_after,
        store: resolve_store(a.store.as_deref(), a.no_store, plan)
            .map(|s| StoreWatch { flush: s.flush, readings: s.records.contains(&RecordKind::Reading) }),
        layout: Arc::new(Layout::new(plan)),
    };
    let mut server =
        Server::start(&serve, tap.clone(), &plan.name, plan.backup.clone(), watch(&plan)).map_err(|e| match e {
            StartError::Config(m) => Failure::new(Exit::Config, m),
            StartError::Bind(m) => Failure::new(Exit::Failure, m),
            e @ StartError::Runtime(_) => Failure::new(Exit::Software, e.to_string()),
        })?;
    let scheme = if serve.tls.is_some() { "https" } else { "http" };
    say(g, &format!("serve: {} on {scheme}://{} (dashboard at /)", plan.name, server.addr));
    let (spec, set) = (a.spec.clone(), a.set.clone());
    let control = Control::new(Box::new(move || reload_plan(&spec, &set)), tap.clone());
    watch_signals(control.clone()).map_err(|e| Failure::new(Exit::Software, format!("cannot watch signals: {e}")))?;
    // Under systemd (Type=notify): READY, watchdog pings from the engine loop, STOPPING.
    let systemd = Notifier::from_env(tap.clone(), format!("{} on {scheme}://{}", plan.name, server.addr));
    let only = a.print.unwrap_or(Only { reading: false, anomaly: false, alert: false, other: false });
    let mut output = Output::open(None, None, only, g.color())
        .map_err(|e| Failure::new(Exit::IoErr, format!("cannot write output: {e}")))?;
    // One run per spec: a reload ends the run and starts the next with the
    // new plan and the stage state the last one ended with.
    let mut plan = plan;
    let mut resume = None;
    let mut total = Totals::default();
    let started = std::time::Instant::now();
    let last = loop {
        let store = resolve_store(a.store.as_deref(), a.no_store, &plan);
        let store_path = store.as_ref().map(|s| s.path.display().to_string());
        let opts = RunOptions {
            input: None,
            replay: None,
            once: false,
            duration: a.duration.map(|d| d.saturating_sub(started.elapsed())),
            count: None,
            store,
            store_input: false,
            progress: false,
            timeout: None,
            stage: Stage::Alert,
            tap: Some(tap.clone()),
            wall_clock: true,
            shutdown: Some(control.next_run()),
            resume: resume.take(),
            exits: false,
        };
        let report = match engine::run(&plan, opts, &mut output) {
            Ok(r) => r,
            Err(e) => {
                server.stop();
                return Err(e.into());
            }
        };
        total.add(&report);
        match control.take_next() {
            Some(next) if !control.is_stopping() => {
                let settings = |p: &crate::compile::Plan| serde_json::to_string(&p.serve).unwrap_or_default();
                if settings(&next) != settings(&plan) {
                    tracing::warn!(
                        "reload: `serve` settings (listen, token, TLS, CORS) take effect at the next restart"
                    );
                }
                resume = Some(report.state.clone());
                server.set_watch(watch(&next));
                plan = next;
                say(g, &format!("serve: reloaded {}", a.spec));
            }
            _ => break (report, store_path),
        }
    };
    if let Some(n) = systemd {
        n.finish();
    }
    server.stop();
    let (r, store_path) = last;
    say(
        g,
        &format!(
            "serve: {} · {} · {} ({} failed) · {} · {:.0} s",
            plural(total.readings, "reading"),
            plural(total.anomalies, "anomaly"),
            plural(total.notifications, "notification"),
            total.failed,
            match (total.stored, store_path) {
                (Some(n), Some(p)) => format!("{n} stored in {p}"),
                _ => "not stored".into(),
            },
            started.elapsed().as_secs_f64()
        ),
    );
    for t in &r.forward {
        say(g, &format!("  forward {}: {}", t.id, super::pipeline::forward_line(t)));
    }
    Ok(Exit::Ok)
}

/// The summary's counts over every run of a reloaded spec.
#[derive(Default)]
struct Totals {
    readings: u64,
    anomalies: u64,
    notifications: u64,
    failed: u64,
    stored: Option<u64>,
}

impl Totals {
    fn add(&mut self, r: &engine::RunReport) {
        self.readings += r.validate.readings;
        self.anomalies += r.detect.anomalies;
        self.notifications += r.alert.stats.notifications;
        self.failed += r.alert.failed;
        if let Some(s) = &r.store {
            *self.stored.get_or_insert(0) += s.readings;
        }
    }
}
