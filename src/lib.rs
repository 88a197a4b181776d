//! edgeguard: one YAML pipeline spec, compiled into one streaming engine.
//!
//! ```text
//! argv ─clap─▶ cli::<command>::run
//!    spec::load(path)              text → marked tree → Spec   (serde only)
//!    compile::compile(spec)        Spec → Plan                 (pure; every problem at once)
//!    engine::run(plan)             sources → stages → sinks    (threads + tokio, bounded channels)
//!    RunReport → summary on stderr → exit code
//! ```
//!
//! * [`spec`] — raw types that mirror the YAML, and the loader.
//! * [`compile`] — checks and turns a spec into a typed [`compile::Plan`], with diagnostics.
//! * [`engine`] — records, time, and the runner shared by every command.
//! * [`sources`] — where readings come from (`simulate`, `--input`).
//! * [`stages`] — what is computed over them (channel validation).
//! * [`sinks`] — where they go (stdout, DuckDB).
//! * [`cli`] — the command line.

// Errors carry diagnostics with positions and the document they point into;
// they are built on cold paths (loading a spec), never per record.
#![allow(clippy::result_large_err)]

pub mod backup;
pub mod cli;
pub mod compile;
pub mod engine;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod stages;
