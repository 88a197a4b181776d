//! The pipeline spec, version 1: raw types that mirror the YAML.
//!
//! These `*Spec` types are what the file says and nothing more: strings for
//! durations and addresses, options where a key may be left out. They are
//! strict (`deny_unknown_fields`), documented field by field (the docs become
//! the JSON Schema descriptions), and turned into a typed, checked
//! [`Plan`](crate::compile::Plan) by [`compile`](crate::compile). Nothing past
//! the compiler sees a `*Spec` struct; the small value enums (`PointType`,
//! `DetectMethod`, `FileFormat`, …) are carried by the plan and read at run
//! time. Diagnostics ([`diag`]) live here, the lowest layer that makes them.

pub mod diag;
mod export;
mod forward;
pub mod load;
mod outputs;
mod parse;
pub mod pipetest;
mod quiet;
mod sources;
mod stages;

pub use export::*;
pub use forward::*;
pub use load::{LoadError, SpecDoc};
pub use outputs::*;
pub use parse::parse;
pub use quiet::*;
pub use sources::*;
pub use stages::*;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pipeline: sources, the checks and computations over their readings, and
/// where the results go.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "edgeguard pipeline")]
pub struct Spec {
    /// Spec format version. Only `1` exists.
    pub version: u32,
    /// Name of the pipeline, used in logs, metrics and backups.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Who this gateway is in a fleet: its site and its own name. Both name
    /// it in forwarded messages (`eg.<site>.<gateway>.<kind>`) and in the lake.
    #[serde(default)]
    pub identity: Option<IdentitySpec>,
    /// The DuckDB store. Without it, commands that store need `--store PATH`.
    #[serde(default)]
    pub store: Option<StoreSpec>,
    /// Where readings come from: a map from source id to source.
    #[serde(default)]
    pub sources: IndexMap<String, SourceSpec>,
    /// Metadata and validation rules per channel. Keys are channel names or
    /// globs (`boiler.temp*`); an exact name wins over a glob, and among globs
    /// the first in the file wins.
    #[serde(default)]
    pub channels: IndexMap<String, ChannelSpec>,
    /// Fused channels computed from redundant inputs, by output channel name.
    #[serde(default)]
    pub fuse: IndexMap<String, FuseSpec>,
    /// Computed channels (expressions, counter rates, integrals, deltas,
    /// rolling statistics), by output channel name.
    #[serde(default)]
    pub compute: IndexMap<String, ComputeSpec>,
    /// Anomaly detectors, by detector id.
    #[serde(default)]
    pub detect: IndexMap<String, DetectSpec>,
    /// Alert rules, by rule id.
    #[serde(default)]
    pub alerts: IndexMap<String, AlertSpec>,
    /// Where alert notifications go, by notifier id.
    #[serde(default)]
    pub notifiers: IndexMap<String, NotifierSpec>,
    /// The HTTP API and dashboard of `edgeguard serve`.
    #[serde(default)]
    pub serve: Option<ServeSpec>,
    /// Backups of the store.
    #[serde(default)]
    pub backup: Option<BackupSpec>,
    /// Where the store's commits are forwarded (a fleet's hub), by target id.
    /// Needs `identity` and `store`: the store is the outbox.
    #[serde(default)]
    pub forward: IndexMap<String, ForwardSpec>,
    /// Where `edgeguard collect` writes what its `nats` sources read (a
    /// fleet's lake), by export id.
    #[serde(default)]
    pub export: IndexMap<String, ExportSpec>,
}

/// Who this gateway is in a fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The site (plant, building) the gateway is at: 1–64 letters, digits,
    /// `_` or `-` (one subject token: no dots), e.g. `berlin`.
    pub site: String,
    /// The gateway's name, unique within its site, same characters, e.g. `gw-017`.
    pub gateway: String,
}

/// The DuckDB store.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Path of the DuckDB file, relative to the spec file.
    pub path: String,
    /// Delete readings, anomalies and alerts older than this (`90d`). Applied
    /// when the store opens and hourly while running. Default: keep forever.
    #[serde(default)]
    pub retention: Option<String>,
    /// Most records written per commit. Default 122880 (one DuckDB row group,
    /// the fastest size to commit).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Longest time a record waits before it is committed (`1s`). Default 1s.
    #[serde(default)]
    pub flush: Option<String>,
    /// Kinds of records stored: `reading`, `anomaly`, `alert` (with the
    /// notification log). Default all three. A fleet's center that routes
    /// alerts keeps `[anomaly, alert]`: a thousand gateways' readings are a
    /// lake's job (`collect`), not one DuckDB writer's.
    #[serde(default)]
    pub records: Option<Vec<RecordKind>>,
    /// How often the pipeline's state (channel validation, fusion filters,
    /// detector windows, alert timers) is saved, in the same transaction as
    /// the records it reflects, so a power cut or `kill -9` costs at most
    /// this much of it (`10s`). An alert changing state is saved with its
    /// commit at once. `off`: only at the end of a run. Default 10s.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Rollup tiers: per channel and time bucket, the min, max, avg, count,
    /// first and last of its readings (those with a value that are not
    /// `bad`), kept up to date as readings commit and kept longer than the
    /// raw readings (`[{every: 1m, keep: 1y}, {every: 1h, keep: forever}]`).
    /// `serve` answers `/api/v1/readings?every=` from them. Default none.
    #[serde(default)]
    pub rollups: Option<Vec<RollupSpec>>,
}

/// One rollup tier of the store.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollupSpec {
    /// Bucket length: whole seconds, at least `1s` (`1m`, `1h`, `1d`).
    pub every: String,
    /// How long buckets are kept (`1y`), or `forever`. Default forever.
    #[serde(default)]
    pub keep: Option<String>,
}

/// A secret: never written in the spec itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretSpec {
    /// Read from an environment variable.
    Env {
        /// Name of the environment variable.
        env: String,
    },
    /// Read from a file (relative to the spec file); one trailing newline is removed.
    File {
        /// Path of the file.
        file: String,
    },
    /// Written inline: rejected by `validate` (E070).
    Inline(String),
}

/// TLS material for a client or server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of the certificate authority to trust (clients).
    #[serde(default)]
    pub ca: Option<String>,
    /// PEM certificate (a server's, or a client's for mutual TLS).
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM private key that goes with `cert`.
    #[serde(default)]
    pub key: Option<String>,
}
