//! Specs of forward targets: where the store's commits are sent on to (the
//! fleet's hub), chosen by `type`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SecretSpec, TlsSpec};

/// A forward target: the store is its outbox, and it sends every commit on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ForwardSpec {
    /// A NATS JetStream stream: one message per commit (or part of one),
    /// deduplicated by its message id.
    Nats(NatsForwardSpec),
    /// An MQTT broker (EMQX, HiveMQ, mosquitto, nats-server's MQTT
    /// listener): one QoS 1 message per commit or part, the envelope as the
    /// payload's first line (MQTT 3.1.1 has no headers). No broker drops
    /// re-sends: consumers deduplicate by the envelope's id.
    Mqtt(MqttForwardSpec),
}

/// What every kind of target says about what it sends and how.
pub struct ForwardCommon<'a> {
    pub records: &'a Option<Vec<RecordKind>>,
    pub channels: &'a [String],
    pub message: &'a MessageSpec,
    pub in_flight: Option<usize>,
    pub ack_timeout: Option<&'a str>,
    pub backlog: &'a BacklogSpec,
    pub replay_rate: Option<&'a str>,
}

impl ForwardSpec {
    pub fn common(&self) -> ForwardCommon<'_> {
        macro_rules! common {
            ($t:expr) => {
                ForwardCommon {
                    records: &$t.records,
                    channels: &$t.channels,
                    message: &$t.message,
                    in_flight: $t.in_flight,
                    ack_timeout: $t.ack_timeout.as_deref(),
                    backlog: &$t.backlog,
                    replay_rate: $t.replay_rate.as_deref(),
                }
            };
        }
        match self {
            ForwardSpec::Nats(n) => common!(n),
            ForwardSpec::Mqtt(m) => common!(m),
        }
    }
}

/// One URL or several.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Urls::One(u) => vec![u.as_str()],
            Urls::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Kinds of records a forward target sends or a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Reading,
    Anomaly,
    Alert,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Reading, RecordKind::Anomaly, RecordKind::Alert];

    /// The record kind, also the last token of the subject.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Reading => "reading",
            RecordKind::Anomaly => "anomaly",
            RecordKind::Alert => "alert",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// NDJSON as printed.
    #[default]
    None,
    /// zstd (`Content-Encoding: zstd`): about 8 bytes per reading at 100 readings per message.
    Zstd,
}

/// How commits become messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// Most records in one message; a larger commit is split into parts. Default 1000.
    #[serde(default)]
    pub max_records: Option<usize>,
    /// Largest message body before compression (`256KiB`). Default 256KiB;
    /// keep it under the server's `max_payload` (1MB unless set).
    #[serde(default)]
    pub max_bytes: Option<String>,
    /// `none` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
}

/// How much unsent data the store keeps for a target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BacklogSpec {
    /// Commits not yet acknowledged are kept (past `store.retention` too)
    /// and sent for this long; older ones are dropped, counted and reported.
    /// Default 7d.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// Sends every commit to a NATS JetStream stream.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsForwardSpec {
    /// `nats://host:4222` (or `tls://…`), or a list of a cluster's servers.
    pub url: Urls,
    /// A NATS credentials file (`.creds`: user JWT and nkey seed), as a secret: `{file: gw.creds}`.
    #[serde(default)]
    pub credentials: Option<SecretSpec>,
    /// An nkey seed (`SU…`), as a secret.
    #[serde(default)]
    pub nkey: Option<SecretSpec>,
    /// User name (with `password`).
    #[serde(default)]
    pub username: Option<SecretSpec>,
    /// Password.
    #[serde(default)]
    pub password: Option<SecretSpec>,
    /// An authentication token.
    #[serde(default)]
    pub token: Option<SecretSpec>,
    /// TLS: `ca` to trust, `cert` and `key` for mutual TLS. `tls://` URLs need it or the system roots.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// First subject token. Subjects are `<prefix>.<site>.<gateway>.<kind>`. Default `eg`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The stream that must store the messages (sent as `Nats-Expected-Stream`,
    /// so a subject caught by another stream is an error, not a silent success).
    #[serde(default)]
    pub stream: Option<String>,
    /// Kinds of records sent: `reading`, `anomaly`, `alert`. Default all three.
    #[serde(default)]
    pub records: Option<Vec<RecordKind>>,
    /// Only records of channels matching one of these names or globs. Default all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// How commits become messages.
    #[serde(default)]
    pub message: MessageSpec,
    /// Messages sent before the first is acknowledged. 1 keeps strict order
    /// on every retry; more is faster, and consumers order by `Eg-Commit`. Default 16.
    #[serde(default)]
    pub in_flight: Option<usize>,
    /// How long to wait for a message's acknowledgement before sending it again. Default 5s.
    #[serde(default)]
    pub ack_timeout: Option<String>,
    /// How much unsent data the store keeps.
    #[serde(default)]
    pub backlog: BacklogSpec,
    /// Most backlog records replayed per second (`50000/s`), beside live
    /// commits, which always go first. Default: no cap.
    #[serde(default)]
    pub replay_rate: Option<String>,
}

/// Sends every commit to an MQTT broker, QoS 1 (or 2).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttForwardSpec {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Client id. Default `edgeguard-<site>-<gateway>-<target>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name.
    #[serde(default)]
    pub username: Option<SecretSpec>,
    /// Password.
    #[serde(default)]
    pub password: Option<SecretSpec>,
    /// TLS for `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// First topic levels. Topics are `<prefix>/<site>/<gateway>/<kind>`. Default `eg`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// QoS of the messages: 1 (default) or 2. The cursor moves on the broker's acknowledgement.
    #[serde(default)]
    pub qos: Option<u8>,
    /// Keep-alive interval. Default 30s.
    #[serde(default)]
    pub keepalive: Option<String>,
    /// Kinds of records sent: `reading`, `anomaly`, `alert`. Default all three.
    #[serde(default)]
    pub records: Option<Vec<RecordKind>>,
    /// Only records of channels matching one of these names or globs. Default all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// How commits become messages.
    #[serde(default)]
    pub message: MessageSpec,
    /// Messages sent before the first is acknowledged (at most 65535). Default 16.
    #[serde(default)]
    pub in_flight: Option<usize>,
    /// How long to wait for a message's acknowledgement before sending it again. Default 5s.
    #[serde(default)]
    pub ack_timeout: Option<String>,
    /// How much unsent data the store keeps.
    #[serde(default)]
    pub backlog: BacklogSpec,
    /// Most backlog records replayed per second (`50000/s`), beside live commits. Default: no cap.
    #[serde(default)]
    pub replay_rate: Option<String>,
}
