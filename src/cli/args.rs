//! Flags shared by the pipeline commands, and loading a spec for them.

use std::time::Duration;

use clap::Args;

use super::exit::{Exit, Failure};
use super::GlobalArgs;
use crate::compile::{Compiled, Diagnostic, Plan, StorePlan};
use crate::sinks::stdout::{Only, Output, OutputFormat};
use crate::sources::input::{InputFormat, DEFAULT_MAX_LINE};
use crate::spec::diag::{render, DiagFormat, Severity};
use crate::spec::{LoadError, SpecDoc};

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// The pipeline spec (YAML).
    #[arg(value_name = "SPEC")]
    pub spec: Option<String>,

    /// Start from records in FILE (`-` for stdin) instead of the live sources.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["once", "duration"], help_heading = "Input")]
    pub input: Option<String>,
    /// Format of --input.
    #[arg(long, value_enum, default_value = "ndjson", help_heading = "Input")]
    pub input_format: InputFormat,
    /// Longest input line accepted, in bytes; longer lines are rejected.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE, help_heading = "Input")]
    pub max_line_bytes: usize,
    /// Exit 65 when an input line is rejected.
    #[arg(long, help_heading = "Input")]
    pub strict: bool,

    /// One poll cycle of every source, then drain and exit.
    #[arg(long, conflicts_with_all = ["duration", "count"], help_heading = "Run")]
    pub once: bool,
    /// Run this long (`10m`). A pipeline of simulated sources alone runs on a
    /// virtual clock, as fast as it can; one with devices runs in real time.
    #[arg(long, value_name = "TIME", value_parser = parse_duration_arg, help_heading = "Run")]
    pub duration: Option<Duration>,
    /// Stop after N readings from the sources (or N records from --input);
    /// with --probe, the number of registers to read.
    #[arg(long, value_name = "N", help_heading = "Run")]
    pub count: Option<u64>,
    /// How long to wait: with --once, for MQTT and serial sources and for
    /// forward targets to send their backlog (default 10s); otherwise for
    /// forward targets after the last commit (5s); with --probe, for the device (1s).
    #[arg(long, value_name = "TIME", value_parser = parse_duration_arg, help_heading = "Run")]
    pub timeout: Option<Duration>,

    /// Output format [default: table on a terminal, ndjson otherwise].
    #[arg(long, value_enum, help_heading = "Output")]
    pub format: Option<OutputFormat>,
    /// Print only these record kinds: reading,anomaly,alert.
    #[arg(long, value_name = "KINDS", value_parser = Only::parse, help_heading = "Output")]
    pub only: Option<Only>,
    /// Write records to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE", help_heading = "Output")]
    pub output: Option<String>,
    /// Exit 3 when such a record was produced: anomaly, alert, bad (comma-separated).
    #[arg(long, value_name = "KINDS", value_delimiter = ',', help_heading = "Output")]
    pub fail_on: Vec<FailOn>,

    /// Store in this DuckDB file instead of the spec's `store.path`.
    #[arg(long, value_name = "PATH", conflicts_with = "no_store", help_heading = "Store")]
    pub store: Option<String>,
    /// Do not store anything.
    #[arg(long, help_heading = "Store")]
    pub no_store: bool,
    /// Also store the records read with --input (by default a process stores only what it creates).
    #[arg(long, help_heading = "Store")]
    pub store_input: bool,

    /// Compile the spec for this command and exit.
    #[arg(long, help_heading = "Spec")]
    pub check: bool,
    /// Print the compiled plan as JSON and exit.
    #[arg(long, help_heading = "Spec")]
    pub dump_plan: bool,
    /// Override a spec value: `store.batch=1000`, `channels."boiler.*".stale=5s`.
    #[arg(long = "set", value_name = "PATH=VALUE", help_heading = "Spec")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Anomaly,
    Alert,
    Bad,
}

pub(super) fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::model::quantity::parse_duration(s)
}

/// A spec file after loading: compiled (possibly with errors), or refused
/// by the loader before it could be parsed.
pub enum Loaded {
    Compiled(SpecDoc, Box<Compiled>),
    Refused(SpecDoc, Vec<Diagnostic>),
}

/// Loads a spec, applies `--set` overrides, parses and compiles it: the one
/// path every command takes. A file that cannot be read is a `Failure`
/// (66/77/74), a bad override too (2).
pub fn compile_spec(path: &str, overrides: &[String]) -> Result<Loaded, Failure> {
    let mut doc = match crate::spec::load::load_file(path) {
        Ok(doc) => doc,
        Err(LoadError::Io(path, e)) => return Err(io_failure(&path, &e)),
        Err(LoadError::Invalid(doc, diags)) => return Ok(Loaded::Refused(doc, diags)),
    };
    for o in overrides {
        crate::spec::load::apply_override(&mut doc, o)
            .map_err(|e| Failure::new(Exit::Usage, format!("--set {o}: {e}")))?;
    }
    let (parsed, diags) = crate::spec::parse(&doc);
    let compiled = crate::compile::compile(&doc, &parsed, diags);
    Ok(Loaded::Compiled(doc, Box::new(compiled)))
}

/// Loads and compiles a spec for a pipeline command. Diagnostics are printed
/// on stderr; errors end the command with 78 (66 for a missing file).
pub fn load_plan(spec: &str, overrides: &[String], g: &GlobalArgs) -> Result<Plan, Failure> {
    let plan = load_plan_inner(spec, overrides, g);
    // The YAML tree of a big spec (10,000 Modbus points: ~30 MB) is gone
    // now; hand its pages back so a long run does not keep them.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // takes no pointers and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    plan
}

fn load_plan_inner(spec: &str, overrides: &[String], g: &GlobalArgs) -> Result<Plan, Failure> {
    match compile_spec(spec, overrides)? {
        Loaded::Refused(doc, diags) => {
            print_diagnostics(&doc.path, &doc.text, &diags, g);
            Err(Failure::new(Exit::Config, format!("{spec} is not a valid pipeline")))
        }
        Loaded::Compiled(doc, compiled) => {
            print_diagnostics(&doc.path, &doc.text, &compiled.diagnostics, g);
            let errors = compiled.errors();
            compiled
                .plan
                .ok_or_else(|| Failure::new(Exit::Config, format!("{spec} is not a valid pipeline ({errors} errors)")))
        }
    }
}

/// Loads and compiles a spec again (`serve`'s reload): the plan, or why
/// not, with every error diagnostic rendered (no colour), for the log and
/// the API's answer.
pub fn reload_plan(spec: &str, overrides: &[String]) -> Result<Plan, String> {
    let render_all = |doc: &SpecDoc, diags: &[Diagnostic]| -> String {
        diags
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .map(|d| render(d, &doc.path, &doc.text, DiagFormat::Text, false))
            .collect()
    };
    match compile_spec(spec, overrides).map_err(|f| f.message)? {
        Loaded::Refused(doc, diags) => Err(format!("{spec} is not a valid pipeline\n{}", render_all(&doc, &diags))),
        Loaded::Compiled(doc, compiled) => {
            let errors = render_all(&doc, &compiled.diagnostics);
            let n = compiled.errors();
            compiled.plan.ok_or_else(|| format!("{spec} is not a valid pipeline ({n} errors)\n{errors}"))
        }
    }
}

pub fn io_failure(path: &str, e: &std::io::Error) -> Failure {
    let exit = match e.kind() {
        std::io::ErrorKind::NotFound => Exit::NoInput,
        std::io::ErrorKind::PermissionDenied => Exit::NoPerm,
        _ => Exit::IoErr,
    };
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    };
    Failure::new(exit, format!("cannot read {path}: {why}"))
}

#[allow(clippy::print_stderr)]
pub fn print_diagnostics(path: &str, text: &str, diags: &[crate::compile::Diagnostic], g: &GlobalArgs) {
    for d in diags {
        if g.quiet && d.severity() == Severity::Warning {
            continue;
        }
        print_text(&render(d, path, text, DiagFormat::Text, g.color()));
    }
}

/// Text for people on stderr.
#[allow(clippy::print_stderr)]
pub fn print_text(s: &str) {
    eprint!("{s}");
}

/// The store a command writes: none with `--no-store`; `--store PATH` with
/// the spec's settings (or the defaults); else the spec's.
pub fn resolve_store(path: Option<&str>, no_store: bool, plan: &Plan) -> Option<StorePlan> {
    if no_store {
        return None;
    }
    match (path, &plan.store) {
        (Some(p), Some(s)) => Some(StorePlan { path: p.into(), ..s.clone() }),
        (Some(p), None) => Some(StorePlan::at(p.into())),
        (None, s) => s.clone(),
    }
}

impl PipelineArgs {
    /// The store this run writes, from `--store`/`--no-store` and the spec.
    pub fn store(&self, plan: &Plan) -> Option<StorePlan> {
        resolve_store(self.store.as_deref(), self.no_store, plan)
    }

    pub fn output(&self, g: &GlobalArgs) -> Result<Output, Failure> {
        Output::open(self.output.as_deref(), self.format, self.only.unwrap_or_default(), g.color()).map_err(|e| {
            Failure::new(Exit::IoErr, format!("cannot write {}: {e}", self.output.as_deref().unwrap_or("stdout")))
        })
    }
}
