//! Specs of what leaves the pipeline: notifiers, the HTTP server, backups.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SecretSpec, TlsSpec};

/// Where alert notifications go, chosen by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum NotifierSpec {
    /// Alert records on standard output.
    Stdout(StdoutNotifierSpec),
    /// Appends to a file.
    File(FileNotifierSpec),
    /// Runs a program (argv, no shell).
    Exec(ExecNotifierSpec),
    /// HTTP POST.
    Webhook(WebhookNotifierSpec),
    /// Publishes to an MQTT broker.
    Mqtt(MqttNotifierSpec),
    /// Sends an email over SMTP (TLS or STARTTLS).
    Email(EmailNotifierSpec),
}

impl NotifierSpec {
    /// The notifier's `group`, whatever its kind.
    pub fn group(&self) -> Option<&super::GroupSpec> {
        match self {
            NotifierSpec::Stdout(n) => n.group.as_ref(),
            NotifierSpec::File(n) => n.group.as_ref(),
            NotifierSpec::Exec(n) => n.group.as_ref(),
            NotifierSpec::Webhook(n) => n.group.as_ref(),
            NotifierSpec::Mqtt(n) => n.group.as_ref(),
            NotifierSpec::Email(n) => n.group.as_ref(),
        }
    }
}

/// Alert records on standard output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutNotifierSpec {
    /// Send notifications in groups.
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One rendered `template` line per notification (default: the title).
    #[default]
    Line,
    /// The alert record as one JSON line.
    Json,
}

/// Appends one line per notification to a file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileNotifierSpec {
    /// Path, relative to the spec file.
    pub path: String,
    /// `line` (default) or `json`.
    #[serde(default)]
    pub format: FileFormat,
    /// Template of a line. Default `{{ ts }} {{ severity }} {{ rule }} {{ state }}: {{ title }}`.
    #[serde(default)]
    pub template: Option<String>,
    /// Send notifications in groups (a rule's own `group` wins).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

/// Runs a program for each notification.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecNotifierSpec {
    /// Program and arguments; each is a template rendered to exactly one argument.
    pub command: Vec<String>,
    /// Environment of the program (it gets nothing else but PATH).
    #[serde(default)]
    pub env: IndexMap<String, SecretSpec>,
    /// Kill the program's process group after this long. Default 10s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Most programs running at once. Default 4.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Send notifications in groups (a rule's own `group` wins).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

/// POSTs each notification to a URL.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookNotifierSpec {
    /// `https://…` (or `http://` for local receivers).
    pub url: String,
    /// Body template; values are JSON-escaped when it is JSON. Default: the alert record as JSON.
    #[serde(default)]
    pub body: Option<String>,
    /// Extra headers; values are secrets.
    #[serde(default)]
    pub headers: IndexMap<String, SecretSpec>,
    /// Timeout of one attempt. Default 10s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts after the first. Default 3.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Send notifications in groups (a rule's own `group` wins).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

/// Publishes each notification to an MQTT topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttNotifierSpec {
    /// `mqtt://host:1883` or `mqtts://…`.
    pub url: String,
    /// Topic template: `alerts/{{ rule }}`.
    pub topic: String,
    /// Payload template. Default: the alert record as JSON.
    #[serde(default)]
    pub payload: Option<String>,
    /// QoS (0, 1, 2). Default 1.
    #[serde(default)]
    pub qos: Option<u8>,
    /// Publish retained. Default false.
    #[serde(default)]
    pub retain: Option<bool>,
    /// User name.
    #[serde(default)]
    pub username: Option<SecretSpec>,
    /// Password.
    #[serde(default)]
    pub password: Option<SecretSpec>,
    /// TLS for `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Send notifications in groups (a rule's own `group` wins).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

/// Sends each notification as an email over SMTP, always encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailNotifierSpec {
    /// `smtps://host:465` (TLS from the first byte) or `smtp://host:587`
    /// (STARTTLS, required: a server that does not offer it is an error).
    pub url: String,
    /// The sender address: `edgeguard@plant.example`.
    pub from: String,
    /// Recipients; each a template rendered to one address (one that renders
    /// empty is left out).
    pub to: Vec<String>,
    /// Subject template. Default `[{{ severity }}] {{ title }}`. CR and LF
    /// become spaces: nothing a template renders can add a header.
    #[serde(default)]
    pub subject: Option<String>,
    /// Plain-text body template. Default `{{ body }}`.
    #[serde(default)]
    pub body: Option<String>,
    /// HTML body template, sent beside the plain text (values HTML-escaped).
    #[serde(default)]
    pub html: Option<String>,
    /// User name for AUTH (PLAIN, or LOGIN when the server offers only that).
    #[serde(default)]
    pub username: Option<SecretSpec>,
    /// Password for AUTH; never printed.
    #[serde(default)]
    pub password: Option<SecretSpec>,
    /// The CA to trust (default: the system's).
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Timeout of one attempt (connect to the end of DATA). Default 30s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts after the first. Default 3.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Send notifications in groups (a rule's own `group` wins).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
}

/// The HTTP API and dashboard of `edgeguard serve`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeSpec {
    /// `host:port`. Default 127.0.0.1:8080. Any non-loopback address needs a `token`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Bearer token required on every request.
    #[serde(default)]
    pub token: Option<SecretSpec>,
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Origins allowed by CORS. Default: none.
    #[serde(default)]
    pub cors: Vec<String>,
    /// A source that has failed this long without one success is `down`,
    /// and `/readyz` answers 503 (`2m`). Default 60s.
    #[serde(default)]
    pub down_after: Option<String>,
    /// Most channels whose latest value and quality `/metrics` exports (the
    /// first by name); how many were left out is
    /// `edgeguard_channels_not_exported`. Default 1000.
    #[serde(default)]
    pub metric_channels: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupFormat {
    /// One Parquet file per table, zstd-compressed.
    #[default]
    Parquet,
    /// A copy of the DuckDB file (not in this build: `backup` refuses it; use parquet).
    Duckdb,
}

/// Backups of the store.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Folder of the backups, relative to the spec file.
    pub dir: String,
    /// Backups kept by `--prune`. Default 7.
    #[serde(default)]
    pub keep: Option<usize>,
    /// `parquet` (default) or `duckdb`.
    #[serde(default)]
    pub format: BackupFormat,
    /// When `serve` makes a backup: cron syntax, `0 3 * * *`.
    #[serde(default)]
    pub schedule: Option<String>,
}
