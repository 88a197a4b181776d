//! The command line: global flags, subcommands, logging, and the mapping of
//! every outcome to a documented exit status.

mod acquire;
mod alert;
mod args;
mod backup;
mod collect;
mod completions;
mod detect;
pub mod exit;
mod generate;
mod pipeline;
mod probe;
mod query;
mod serve;
mod serve_api;
mod test;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

pub use exit::{Exit, Failure};
pub use generate::generated_files;

/// Declarative industrial data acquisition: one YAML pipeline, one streaming engine.
///
/// Every pipeline command compiles the same spec and runs it up to its own
/// stage. Data goes to stdout (NDJSON when piped, a table on a terminal);
/// logs, progress and summaries go to stderr.
#[derive(Debug, Parser)]
#[command(name = "edgeguard", version, about, long_about = None, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr: no summary, no warnings.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Colors on stderr and in tables (NO_COLOR is honoured).
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub color: ColorChoice,
    /// Never show progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl GlobalArgs {
    pub fn color(&self) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the sources and validate every reading (sources → channel validation).
    Acquire(acquire::AcquireArgs),
    /// Check pipeline files (offline, every problem at once), or validate readings with --input.
    Validate(validate::ValidateArgs),
    /// Fuse redundant sensors into trusted channels (sources → channel validation → fusion).
    Fuse(pipeline::FuseArgs),
    /// Detect anomalies (sources → channel validation → fusion → detection).
    Detect(detect::DetectArgs),
    /// Send alerts (… → detection → alert rules → notifiers); preview them with --render; manage silences.
    Alert(alert::AlertArgs),
    /// Run the whole pipeline as a daemon with the HTTP API, live stream, metrics and dashboard.
    Serve(serve::ServeArgs),
    /// Back up the store (Parquet + manifest); list, verify, restore and prune backups.
    Backup(backup::BackupArgs),
    /// Collect a fleet's forwarded records from its NATS hub into a Parquet lake (folder or S3).
    Collect(collect::CollectArgs),
    /// Run a pipeline's tests (`plant.test.yaml`) on a virtual clock: readings to the notifications they send.
    Test(test::TestArgs),
    /// Run one read-only SELECT on the store (through serve while it holds the store).
    Query(query::QueryArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
}

/// The clap definition, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses argv, runs the command, and returns the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage } else { Exit::Ok };
            let _ = e.print();
            return code.into();
        }
    };
    init_logging(&cli.global);
    let result = match &cli.command {
        Command::Acquire(a) => acquire::run(a, &cli.global),
        Command::Validate(v) => validate::run(v, &cli.global),
        Command::Fuse(f) => pipeline::run_fuse(f, &cli.global),
        Command::Detect(d) => detect::run(d, &cli.global),
        Command::Alert(a) => alert::run(a, &cli.global),
        Command::Serve(s) => serve::run(s, &cli.global),
        Command::Backup(b) => backup::run(b, &cli.global),
        Command::Collect(c) => collect::run(c, &cli.global),
        Command::Query(q) => query::run(q, &cli.global),
        Command::Test(t) => test::run(t, &cli.global),
        Command::Completions(c) => completions::run(c),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(f) => {
            if !f.message.is_empty() {
                report_error(&cli.global, &f.message);
            }
            f.exit.into()
        }
    }
}

/// Prints `edgeguard: error: …` on stderr.
#[allow(clippy::print_stderr)]
pub fn report_error(g: &GlobalArgs, message: &str) {
    if g.color() {
        eprintln!("edgeguard: \x1b[1;31merror\x1b[0m: {message}");
    } else {
        eprintln!("edgeguard: error: {message}");
    }
}

/// Prints a line for people on stderr (summaries), unless `--quiet`.
#[allow(clippy::print_stderr)]
pub fn say(g: &GlobalArgs, message: &str) {
    if !g.quiet {
        eprintln!("{message}");
    }
}

fn init_logging(g: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env(crate::model::env::LOG)
        .unwrap_or_else(|_| EnvFilter::new(format!("edgeguard={level},warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match g.log_format {
        LogFormat::Json => {
            let _ = builder.json().try_init();
        }
        LogFormat::Text => {
            let _ = builder.with_ansi(g.color()).with_target(false).without_time().try_init();
        }
    }
}
