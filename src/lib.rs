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
//! The layers, each importing only those below it (docs/architecture.md;
//! `tests/it/layers.rs` keeps it so):
//!
//! * [`model`] — the vocabulary: records, NDJSON, time, channel names, batches, templates.
//! * [`spec`] — raw types that mirror the YAML, the loader, diagnostics.
//! * [`compile`] — checks and turns a spec into a typed [`compile::Plan`].
//! * [`tls`] — rustls for every client and server.
//! * [`mqtt_client`] — connecting to an MQTT broker (the source, the notifier, the forward target).
//! * [`nats_client`] — connecting to a NATS hub: logins, TLS, backoff (forward, the `nats` source, collect).
//! * [`sources`] — where records come from: Modbus, MQTT, serial, simulators, `--input`, the store.
//! * [`stages`] — what is computed over them: validation, fusion, detection, alert rules.
//! * [`sinks`] — where they go: stdout, the DuckDB store (also the outbox), notifiers.
//! * [`forward`] — the store's commits sent on to a fleet's hub (NATS JetStream).
//! * [`engine`] — one run: producers → stage chain → outputs, state, the verdict.
//! * [`backup`] — Parquet snapshots of the store.
//! * [`collect`] — a fleet's hub into a Parquet lake (`edgeguard collect`).
//! * [`pipetest`] — `edgeguard test`: a pipeline's tests on a virtual clock, through the stage chain.
//! * [`serve`] — the daemon: HTTP API, dashboard, metrics.
//! * [`cli`] — the command line.

// Errors carry diagnostics with positions and the document they point into;
// they are built on cold paths (loading a spec), never per record.
#![allow(clippy::result_large_err)]

pub(crate) mod backup;
pub mod cli;
pub(crate) mod collect;
pub(crate) mod compile;
pub(crate) mod engine;
pub(crate) mod forward;
pub(crate) mod model;
pub(crate) mod mqtt_client;
pub(crate) mod nats_client;
pub(crate) mod pipetest;
pub(crate) mod serve;
pub(crate) mod sinks;
pub(crate) mod sources;
pub(crate) mod spec;
pub(crate) mod stages;
pub(crate) mod tls;
