//! Specs of exports: where `edgeguard collect` writes a fleet's records (a
//! lake of Parquet files), chosen by `type`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretSpec;

/// An export of the records `collect` reads from its `nats` sources.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExportSpec {
    /// Hive-partitioned Parquet files (`readings/site=…/date=…/…parquet`) in a
    /// folder or an S3-compatible object store.
    Parquet(ParquetExportSpec),
}

/// Tables of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LakeTable {
    Readings,
    Anomalies,
    Alerts,
}

impl LakeTable {
    pub const ALL: [LakeTable; 3] = [LakeTable::Readings, LakeTable::Anomalies, LakeTable::Alerts];

    /// The table's folder in the lake.
    pub fn as_str(self) -> &'static str {
        match self {
            LakeTable::Readings => "readings",
            LakeTable::Anomalies => "anomalies",
            LakeTable::Alerts => "alerts",
        }
    }
}

/// Columns the lake's folders are partitioned by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartitionKey {
    /// The gateway's site.
    Site,
    /// The gateway.
    Gateway,
    /// The record's day (UTC), `YYYY-MM-DD`.
    Date,
}

impl PartitionKey {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionKey::Site => "site",
            PartitionKey::Gateway => "gateway",
            PartitionKey::Date => "date",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    /// zstd (default): about 6 bytes per reading.
    #[default]
    Zstd,
    Snappy,
    Uncompressed,
}

/// When a file is closed and written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollSpec {
    /// Rows gathered before the files are written. Default 1000000: small
    /// files are a lake's enemy.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Longest a row waits to be written (`5m`). Default 5m.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// An S3-compatible object store.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Spec {
    /// The service's URL (`http://127.0.0.1:9000` for a local store). Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region. Default `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// The access key id, as a secret.
    pub access_key: SecretSpec,
    /// The secret access key, as a secret.
    pub secret_key: SecretSpec,
}

/// Parquet files, partitioned the Hive way, written once each.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetExportSpec {
    /// A folder (relative to the spec file) or `s3://bucket/prefix`.
    pub path: String,
    /// The object store of an `s3://` path.
    #[serde(default)]
    pub s3: Option<S3Spec>,
    /// Tables written: `readings`, `anomalies`, `alerts`. Default all three.
    #[serde(default)]
    pub tables: Option<Vec<LakeTable>>,
    /// Folder levels, in order: `site`, `gateway`, `date`. Default `[site, date]`.
    #[serde(default)]
    pub partition: Option<Vec<PartitionKey>>,
    /// When files are written.
    #[serde(default)]
    pub roll: RollSpec,
    /// `zstd` (default), `snappy` or `uncompressed`.
    #[serde(default)]
    pub compression: ParquetCompression,
}
