//! `edgeguard test PATH…`: run a pipeline's tests (`plant.test.yaml` beside
//! `plant.yaml`) on the virtual clock, each in fresh in-memory state; with
//! `--explain NAME`, the alert timeline of one test.
//!
//! Results are data and go to stdout (text, JSON lines or JUnit XML);
//! diagnostics of an invalid test file go to stderr. Exit 0 when every test
//! passes, 1 when one fails, 78 for an invalid test file (or spec), 66 for
//! a missing one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::args::{compile_spec, io_failure, print_diagnostics, Loaded};
use super::exit::{Exit, Failure};
use super::GlobalArgs;
use crate::compile::pipetest::{compile_tests, TestPlan};
use crate::compile::{Diagnostic, Plan};
use crate::pipetest::report::{self, Outcome};
use crate::pipetest::{check::check, RunError};
use crate::spec::diag::{Code, Severity};
use crate::spec::load::{load_file, LoadError};
use crate::spec::pipetest::parse_tests;
use crate::spec::SpecDoc;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (`plant.test.yaml`), specs (the `.test.yaml` beside each)
    /// or folders (every `*.test.yaml` in them).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
    /// How results are printed.
    #[arg(long, value_enum, default_value = "text")]
    pub format: TestFormat,
    /// Only the tests whose name contains NAME.
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Print the alert timeline of test NAME instead: when each rule became
    /// pending, fired, repeated and resolved, what was sent to whom, and why
    /// a notification was held.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["filter", "format"])]
    pub explain: Option<String>,
    /// Tests run at once, each on its own thread [default: the number of
    /// CPUs]. Results are printed in file order whatever finishes first.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// A line per test; under a failure, what was expected, what happened, where.
    Text,
    /// One JSON object per test.
    Json,
    /// JUnit XML, for CI dashboards.
    Junit,
}

/// A test file, checked against the spec it tests.
pub struct CheckedTests {
    pub doc: SpecDoc,
    pub diagnostics: Vec<Diagnostic>,
    /// The spec under test, when it compiled.
    pub plan: Option<Plan>,
    /// The spec's own problems, when it did not (its doc, its diagnostics).
    pub spec_problems: Option<(SpecDoc, Vec<Diagnostic>)>,
    pub tests: Vec<TestPlan>,
}

impl CheckedTests {
    pub fn valid(&self) -> bool {
        self.plan.is_some() && !self.diagnostics.iter().any(|d| d.severity() == Severity::Error)
    }
}

/// `plant.test.yaml` or `plant.test.yml`: a test file by its name.
pub fn is_test_file(path: &str) -> bool {
    path.ends_with(".test.yaml") || path.ends_with(".test.yml")
}

/// Loads a test file and compiles the spec it tests. A file that cannot be
/// read is a `Failure` (66/77/74); problems in either file are diagnostics.
pub fn check_tests(path: &str) -> Result<CheckedTests, Failure> {
    let doc = match load_file(path) {
        Ok(d) => d,
        Err(LoadError::Io(p, e)) => return Err(io_failure(&p, &e)),
        Err(LoadError::Invalid(doc, diags)) => {
            return Ok(CheckedTests { doc, diagnostics: diags, plan: None, spec_problems: None, tests: Vec::new() })
        }
    };
    let (file, diags) = parse_tests(&doc);
    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
    let spec_path = match &file.spec {
        Some(s) => dir.join(s),
        None => {
            let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let stem = without_ext(name).strip_suffix(".test").unwrap_or(without_ext(name));
            let (yaml, yml) = (dir.join(format!("{stem}.yaml")), dir.join(format!("{stem}.yml")));
            if !yaml.exists() && yml.exists() {
                yml
            } else {
                yaml
            }
        }
    };
    let spec_path = spec_path.to_string_lossy().into_owned();
    let (plan, spec_problems) = match compile_spec(&spec_path, &[]) {
        Err(f) => {
            return Err(Failure::new(f.exit, format!("{} (the spec tested by {path})", f.message)));
        }
        Ok(Loaded::Refused(sdoc, sdiags)) => (None, Some((sdoc, sdiags))),
        Ok(Loaded::Compiled(sdoc, compiled)) => match compiled.plan {
            Some(p) => (Some(p), None),
            None => (None, Some((sdoc, compiled.diagnostics))),
        },
    };
    let (mut tests, mut diagnostics) = match &plan {
        Some(p) => compile_tests(&doc, &file, p, diags),
        None => (Vec::new(), diags),
    };
    // A test's `set` is the spec compiled again with it: checked here, so
    // a wrong key is a diagnostic (78, nothing runs), not a failed run.
    for t in tests.iter_mut().filter(|t| !t.set.is_empty()) {
        let why = match compile_spec(&spec_path, &t.set) {
            Ok(Loaded::Compiled(_, c)) if c.plan.is_some() => {
                t.overridden = c.plan.map(Box::new);
                continue;
            }
            Ok(Loaded::Compiled(_, c)) => c.diagnostics.into_iter().find(|d| d.severity() == Severity::Error),
            Ok(Loaded::Refused(_, d)) => d.into_iter().find(|d| d.severity() == Severity::Error),
            Err(f) => Some(Diagnostic::error(Code::InvalidValue, f.message.trim_start_matches("--set ").to_string())),
        };
        let (code, message) = why.map_or((Code::InvalidValue, String::new()), |d| (d.code, d.message));
        let at = crate::spec::load::join_key(&crate::spec::load::join_key("tests", &t.name), "set");
        let d = Diagnostic::error(code, format!("with this `set`, {spec_path} is not valid: {message}"));
        diagnostics.push(d.at(doc.key_span(&at)).path(&at));
    }
    Ok(CheckedTests { doc, diagnostics, plan, spec_problems, tests })
}

/// `path` without its one `.yaml` or `.yml` (`plant.test.yaml` → `plant.test`).
fn without_ext(path: &str) -> &str {
    path.strip_suffix(".yaml").or_else(|| path.strip_suffix(".yml")).unwrap_or(path)
}

/// The test files PATH names: itself, the one beside a spec, or every one in a folder.
fn test_files(path: &str) -> Result<Vec<String>, Failure> {
    let p = Path::new(path);
    if p.is_dir() {
        let mut found = Vec::new();
        walk(p, &mut found).map_err(|e| io_failure(path, &e))?;
        found.sort();
        if found.is_empty() {
            return Err(Failure::new(Exit::NoInput, format!("no test files (*.test.yaml) in {path}")));
        }
        return Ok(found.into_iter().map(|f| f.to_string_lossy().into_owned()).collect());
    }
    if !p.exists() {
        return Err(io_failure(path, &std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    if is_test_file(path) {
        return Ok(vec![path.to_string()]);
    }
    let stem = without_ext(path);
    for ext in ["test.yaml", "test.yml"] {
        let beside = format!("{stem}.{ext}");
        if Path::new(&beside).exists() {
            return Ok(vec![beside]);
        }
    }
    Err(Failure::new(Exit::NoInput, format!("{path} has no tests: no {stem}.test.yaml beside it")))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.to_str().is_some_and(is_test_file) {
            out.push(path);
        }
    }
    Ok(())
}

pub fn run(a: &TestArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let started = Instant::now();
    let mut files = Vec::new();
    for p in &a.paths {
        files.extend(test_files(p)?);
    }
    // Every file is checked before any test runs: an invalid one is 78.
    let mut checked = Vec::new();
    let mut invalid = 0;
    for f in &files {
        let c = check_tests(f)?;
        if let Some((sdoc, sdiags)) = &c.spec_problems {
            print_diagnostics(&sdoc.path, &sdoc.text, sdiags, g);
        }
        print_diagnostics(&c.doc.path, &c.doc.text, &c.diagnostics, g);
        if !c.valid() {
            invalid += 1;
        }
        checked.push(c);
    }
    if invalid > 0 {
        return Err(Failure::new(Exit::Config, format!("{invalid} invalid test file(s); nothing was run")));
    }
    if let Some(name) = &a.explain {
        return explain(&checked, name);
    }
    let jobs: Vec<(&CheckedTests, &Plan, &TestPlan)> = checked
        .iter()
        .filter_map(|c| c.plan.as_ref().map(|p| (c, p)))
        .flat_map(|(c, p)| c.tests.iter().map(move |t| (c, p, t)))
        .filter(|(_, _, t)| a.filter.as_ref().is_none_or(|f| t.name.contains(f.as_str())))
        .collect();
    let threads = a.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from);
    let results = run_all(&jobs, threads);
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut missing_fixture = false;
    for ((c, _, t), (result, elapsed)) in jobs.iter().zip(results) {
        let (failures, error) = match result {
            Ok((_, misses)) => (misses, None),
            Err(RunError::Input(p, e)) => {
                missing_fixture |= e.kind() == std::io::ErrorKind::NotFound;
                (Vec::new(), Some(RunError::Input(p, e).to_string()))
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        outcomes.push(Outcome {
            file: c.doc.path.clone(),
            name: t.name.clone(),
            line: t.line,
            elapsed,
            failures,
            error,
        });
    }
    if outcomes.is_empty() {
        if let Some(f) = &a.filter {
            return Err(Failure::new(Exit::Usage, format!("no test's name contains `{f}`")));
        }
    }
    let total = started.elapsed();
    let text = match a.format {
        TestFormat::Text => report::text(&outcomes, total),
        TestFormat::Json => report::json(&outcomes),
        TestFormat::Junit => report::junit(&outcomes, total),
    };
    write_stdout(&text)?;
    Ok(if missing_fixture {
        Exit::NoInput
    } else if outcomes.iter().all(Outcome::passed) {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

type RunResult = Result<(crate::pipetest::Captured, Vec<crate::pipetest::check::Miss>), RunError>;

/// Runs `jobs` on up to `threads` threads (each test is independent: fresh
/// state, its own virtual clock); the results in the order of `jobs`.
fn run_all(jobs: &[(&CheckedTests, &Plan, &TestPlan)], threads: usize) -> Vec<(RunResult, std::time::Duration)> {
    let timed = |(_, p, t): &(&CheckedTests, &Plan, &TestPlan)| {
        let t0 = Instant::now();
        let r = run_one(p, t);
        (r, t0.elapsed())
    };
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        return jobs.iter().map(timed).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<(RunResult, std::time::Duration)>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(k) else { break };
                let done = timed(job);
                *slots[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
            });
        }
    });
    slots.into_iter().map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every job ran")).collect()
}

/// Runs one test against `plan`, or the spec with the test's `set`.
fn run_one(plan: &Plan, t: &TestPlan) -> RunResult {
    let plan = t.overridden.as_deref().unwrap_or(plan);
    let captured = crate::pipetest::run(plan, t)?;
    let misses = check(&captured, &t.expect);
    Ok((captured, misses))
}

fn explain(checked: &[CheckedTests], name: &str) -> Result<Exit, Failure> {
    let found = checked.iter().find_map(|c| c.tests.iter().find(|t| t.name == name).map(|t| (c, t)));
    let Some((c, t)) = found else {
        let all: Vec<&str> = checked.iter().flat_map(|c| c.tests.iter().map(|t| t.name.as_str())).collect();
        let hint =
            crate::spec::diag::did_you_mean(name, all.iter().copied()).map(|h| format!("; {h}")).unwrap_or_default();
        return Err(Failure::new(Exit::Usage, format!("no test `{name}`{hint}")));
    };
    let plan = c.plan.as_ref().expect("valid files have a plan");
    match run_one(plan, t) {
        Ok((captured, misses)) => {
            let heading = format!("test {name}: alert timeline (times from the start of the test)");
            write_stdout(&report::explain(&heading, &captured))?;
            Ok(if misses.is_empty() { Exit::Ok } else { Exit::Failure })
        }
        Err(RunError::Input(p, e)) => Err(io_failure(&p, &e)),
        Err(e) => Err(Failure::new(Exit::Failure, e.to_string())),
    }
}

#[allow(clippy::print_stdout)]
pub(super) fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(Exit::IoErr, format!("cannot write output: {e}"))),
    }
}
