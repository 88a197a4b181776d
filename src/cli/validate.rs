//! `edgeguard validate SPEC…`: check pipeline files, every problem at once
//! (test files, `*.test.yaml`, with the spec they test).
//! With `--input`, validate readings against the spec's channel rules.
//!
//! Text diagnostics go to stderr; `--format json` and `--format github`
//! (workflow annotations) are data and go to stdout.

use std::io::Write;

use clap::Args;

use super::args::{compile_spec, load_plan, Loaded};
use super::exit::{Exit, Failure};
use super::{say, GlobalArgs};
use crate::engine::{self, InputOptions, RunOptions};
use crate::sinks::stdout::{Only, Output, OutputFormat};
use crate::sources::input::{InputFormat, DEFAULT_MAX_LINE};
use crate::spec::diag::{render, DiagFormat};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline specs to check.
    #[arg(value_name = "SPEC", required = true)]
    pub specs: Vec<String>,
    /// How diagnostics are printed.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiagFormat,
    /// Warnings make the check fail too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Validate the readings in FILE (`-` for stdin) against the spec's channel rules.
    #[arg(long, value_name = "FILE")]
    pub input: Option<String>,
    /// Format of --input.
    #[arg(long, value_enum, default_value = "ndjson", requires = "input")]
    pub input_format: InputFormat,
    /// With --input: exit 65 when any reading is bad or any line is rejected.
    #[arg(long, requires = "input")]
    pub strict: bool,
    /// With --input: format of the annotated readings [default: table on a terminal, ndjson otherwise].
    #[arg(long, value_enum, requires = "input")]
    pub output_format: Option<OutputFormat>,
    /// Override a spec value: `channels."boiler.*".stale=5s`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

pub fn run(a: &ValidateArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    if let Some(input) = &a.input {
        return validate_input(a, input, g);
    }
    let mut out = Vec::new();
    let (mut errors, mut warnings, mut invalid, mut missing) = (0, 0, 0, 0);
    // The exit of the first file that could not be read: 66 missing, 77 denied, 74 other.
    let mut unreadable: Option<Exit> = None;
    for path in &a.specs {
        // A test file (`plant.test.yaml`) is checked with the spec it tests;
        // the spec's own problems are shown under the spec's name.
        let loaded = match super::test::is_test_file(path) {
            true => super::test::check_tests(path).map(|c| {
                let mut files = vec![(c.doc.path, c.doc.text, c.diagnostics)];
                files.extend(c.spec_problems.map(|(d, diags)| (d.path, d.text, diags)));
                files
            }),
            false => compile_spec(path, &a.set).map(|l| match l {
                Loaded::Refused(doc, diags) => vec![(doc.path, doc.text, diags)],
                Loaded::Compiled(doc, compiled) => vec![(doc.path, doc.text, compiled.diagnostics)],
            }),
        };
        let files = match loaded {
            Err(f) if f.exit == Exit::Usage => return Err(f),
            Err(f) => {
                // An unreadable file is reported and counted; the others are still checked.
                missing += 1;
                unreadable.get_or_insert(f.exit);
                super::report_error(g, &f.message);
                continue;
            }
            Ok(files) => files,
        };
        let e: usize = files
            .iter()
            .map(|f| f.2.iter().filter(|d| d.severity() == crate::spec::diag::Severity::Error).count())
            .sum();
        let w = files.iter().map(|f| f.2.len()).sum::<usize>() - e;
        errors += e;
        warnings += w;
        if e > 0 || (a.deny_warnings && w > 0) {
            invalid += 1;
        }
        for (path, text, diags) in &files {
            for d in diags {
                if g.quiet && d.severity() == crate::spec::diag::Severity::Warning && a.format == DiagFormat::Text {
                    continue;
                }
                let rendered = render(d, path, text, a.format, g.color() && a.format == DiagFormat::Text);
                match a.format {
                    DiagFormat::Text => super::args::print_text(&rendered),
                    _ => out.extend_from_slice(rendered.as_bytes()),
                }
            }
        }
    }
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
    }
    let n = a.specs.len();
    let valid = n - invalid - missing;
    let tests = a.specs.iter().filter(|p| super::test::is_test_file(p)).count();
    let noun = match (tests, n == 1) {
        (0, true) => "spec",
        (0, false) => "specs",
        (t, true) if t == n => "test file",
        (t, false) if t == n => "test files",
        (_, true) => "file",
        (_, false) => "files",
    };
    let mut summary = format!("{valid} of {n} {noun} valid");
    if errors + warnings > 0 {
        summary += &format!(" ({errors} errors, {warnings} warnings)");
    }
    if a.format == DiagFormat::Text {
        say(g, &summary);
    }
    Ok(if let Some(exit) = unreadable {
        exit
    } else if invalid > 0 {
        Exit::Config
    } else {
        Exit::Ok
    })
}

fn validate_input(a: &ValidateArgs, input: &str, g: &GlobalArgs) -> Result<Exit, Failure> {
    if a.specs.len() != 1 {
        return Err(Failure::new(Exit::Usage, "--input validates readings against exactly one SPEC"));
    }
    let plan = load_plan(&a.specs[0], &a.set, g)?;
    let opts = RunOptions {
        input: Some(InputOptions { path: input.to_string(), format: a.input_format, max_line: DEFAULT_MAX_LINE }),
        replay: None,
        once: false,
        duration: None,
        count: None,
        store: None,
        store_input: false,
        progress: !g.no_progress && !g.quiet,
        timeout: None,
        stage: crate::engine::Stage::Validate,
        tap: None,
        wall_clock: false,
        shutdown: None,
        resume: None,
        exits: true,
    };
    let mut output = Output::open(None, a.output_format, Only::default(), g.color())
        .map_err(|e| Failure::new(Exit::IoErr, format!("cannot write stdout: {e}")))?;
    let report = engine::run(&plan, opts, &mut output)?;
    if report.output_closed && !report.interrupted {
        return Ok(Exit::Ok);
    }
    let v = report.validate;
    let rejected = report.input.map_or(0, |i| i.rejected);
    say(
        g,
        &format!(
            "validate: {} readings: {} good, {} suspect, {} bad · {rejected} lines rejected",
            v.readings,
            v.readings - v.suspect - v.bad,
            v.suspect,
            v.bad
        ),
    );
    if a.strict && (v.bad > 0 || rejected > 0) {
        return Err(Failure::new(
            Exit::DataErr,
            format!("{} bad readings, {rejected} rejected lines (--strict)", v.bad),
        ));
    }
    Ok(Exit::Ok)
}

/// `--dump-plan`: the compiled plan as JSON on stdout.
pub(super) fn dump_plan(plan: &crate::compile::Plan) -> Result<Exit, Failure> {
    let mut text = serde_json::to_string_pretty(plan).map_err(|e| Failure::new(Exit::Software, e.to_string()))?;
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(Exit::IoErr, e.to_string())),
        _ => Ok(Exit::Ok),
    }
}
