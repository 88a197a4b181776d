//! Source specs: modbus, mqtt, nats, serial, simulate.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SecretSpec, TlsSpec, Urls};

/// A source of readings, chosen by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// Polls registers and coils of Modbus devices.
    Modbus(ModbusSourceSpec),
    /// Subscribes to topics on an MQTT broker.
    Mqtt(MqttSourceSpec),
    /// Reads a fleet's forwarded records from a NATS JetStream stream
    /// (a durable pull consumer, shared by every process that names it).
    Nats(NatsSourceSpec),
    /// Reads lines printed by an instrument on a serial port.
    Serial(SerialSourceSpec),
    /// A deterministic simulated plant, with injected faults.
    Simulate(SimulateSourceSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModbusTransport {
    /// Modbus TCP (MBAP framing).
    #[default]
    Tcp,
    /// Modbus RTU on a serial device.
    Rtu,
    /// RTU frames carried over a TCP connection (serial gateways).
    RtuOverTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// A Modbus link (a TCP device or gateway, or a serial bus) and the points read from it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusSourceSpec {
    /// `tcp` (default), `rtu` (serial) or `rtu-over-tcp`.
    #[serde(default)]
    pub transport: ModbusTransport,
    /// `host:port` for `tcp` and `rtu-over-tcp` (port 502 when left out).
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device for `rtu` (`/dev/ttyUSB0`).
    #[serde(default)]
    pub device: Option<String>,
    /// Baud rate for `rtu`. Default 9600.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Parity for `rtu`: `none`, `even` (default) or `odd`.
    #[serde(default)]
    pub parity: Option<Parity>,
    /// Data bits for `rtu` (7 or 8; default 8).
    #[serde(default)]
    pub data_bits: Option<u8>,
    /// Stop bits for `rtu` (1 or 2; default 1).
    #[serde(default)]
    pub stop_bits: Option<u8>,
    /// Unit id (slave address) of the points that do not name their own. Default 1.
    #[serde(default)]
    pub unit: Option<u16>,
    /// Poll interval (`1s`). Default 1s.
    #[serde(default)]
    pub interval: Option<String>,
    /// Time to wait for a response (`500ms`). Default 1s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Silence between two requests on the link (`5ms`); on RTU at least 3.5 characters.
    #[serde(default)]
    pub pause: Option<String>,
    /// `0` (default): addresses are protocol offsets. `1`: addresses are
    /// 1-based documentation numbers, as in manuals that say "register 1".
    #[serde(default)]
    pub address_base: Option<u8>,
    /// Unused registers that may be read to merge two points into one request. Default 0.
    #[serde(default)]
    pub gap: Option<u16>,
    /// The values to read.
    pub points: Vec<PointSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Coils (function code 1), one bit each.
    Coil,
    /// Discrete inputs (function code 2), one bit each.
    Discrete,
    /// Input registers (function code 4).
    Input,
    /// Holding registers (function code 3).
    Holding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)] // the word orders as Modbus manuals write them
pub enum ByteOrder {
    /// Big-endian bytes, big-endian words (the Modbus default).
    ABCD,
    /// Big-endian bytes, little-endian words ("word swap").
    CDAB,
    /// Little-endian bytes, big-endian words ("byte swap").
    BADC,
    /// Little-endian bytes and words.
    DCBA,
    /// 16-bit big-endian.
    AB,
    /// 16-bit little-endian.
    BA,
}

/// One value read from a device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    /// Channel name of the readings (`boiler.temp.a`).
    pub channel: String,
    /// Register table: `coil`, `discrete`, `input` or `holding`.
    pub table: Table,
    /// First register or bit (see the source's `address_base`).
    pub address: u32,
    /// Data type. Default `u16` for registers, `bool` for coils and discrete inputs.
    #[serde(default, rename = "type")]
    pub kind: Option<PointType>,
    /// Byte and word order. Default `ABCD` (or `AB` for 16-bit types).
    #[serde(default)]
    pub order: Option<ByteOrder>,
    /// A bit (0–15) of a register, read as a bool.
    #[serde(default)]
    pub bit: Option<u8>,
    /// Length in registers of a `string`.
    #[serde(default)]
    pub length: Option<u16>,
    /// value = raw × scale + offset. Default 1.
    #[serde(default)]
    pub scale: Option<f64>,
    /// value = raw × scale + offset. Default 0.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Engineering unit (`degC`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Unit id of this point when it differs from the source's `unit`.
    #[serde(default)]
    pub unit_id: Option<u16>,
    /// Poll interval of this point when it differs from the source's.
    #[serde(default)]
    pub interval: Option<String>,
    /// Report only when the value moved by more than this since the last report.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// With a `deadband`: report an unchanged value again after this long
    /// (`30s`), so a steady value is never taken for a stale one. Default:
    /// half the channel's `stale`, else 1m.
    #[serde(default)]
    pub heartbeat: Option<String>,
}

/// An MQTT broker connection and its subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceSpec {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Client id; also names the persistent session. Default `edgeguard-<pipeline>-<source>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Default QoS of the subscriptions (0, 1 or 2). Default 1.
    #[serde(default)]
    pub qos: Option<u8>,
    /// Start a clean session. Default: false (persistent) when any QoS ≥ 1.
    #[serde(default)]
    pub clean_session: Option<bool>,
    /// Keep-alive interval. Default 30s.
    #[serde(default)]
    pub keepalive: Option<String>,
    /// User name.
    #[serde(default)]
    pub username: Option<SecretSpec>,
    /// Password.
    #[serde(default)]
    pub password: Option<SecretSpec>,
    /// TLS for `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Largest payload accepted (bytes). Default 65536.
    #[serde(default)]
    pub max_payload: Option<usize>,
    /// Subscriptions.
    pub topics: Vec<TopicSpec>,
}

/// A durable pull consumer on a NATS JetStream stream that gateways forward
/// into. Messages are acknowledged only after their records are committed
/// to the store (or written out, without one): a crash before that makes the
/// hub deliver them again. Every process naming the same `consumer` shares
/// its messages; JetStream spreads them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceSpec {
    /// `nats://host:4222` (or `tls://…`), or a list of a cluster's servers.
    pub url: Urls,
    /// A NATS credentials file (`.creds`), as a secret: `{file: center.creds}`.
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
    /// TLS: `ca` to trust, `cert` and `key` for mutual TLS.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// The stream gateways forward into (created by the operator).
    pub stream: String,
    /// The durable consumer's name. Created when missing (explicit acks,
    /// `subjects` as its filter); an existing one is used as it is.
    pub consumer: String,
    /// Subjects the consumer takes, with `*` and `>` (`eg.*.*.alert`).
    /// Default: every subject of the stream.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Channel names at the center, from `{site}`, `{gateway}` and the
    /// gateway's `{channel}`. Default `{site}.{gateway}.{channel}`.
    #[serde(default)]
    pub channel: Option<String>,
    /// Messages asked for at once. Default 256.
    #[serde(default)]
    pub batch: Option<usize>,
    /// How long the hub waits for an acknowledgement before it delivers a
    /// message again (set when the consumer is created). Default 60s.
    #[serde(default)]
    pub ack_wait: Option<String>,
}

/// One subscription and how its messages become readings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic filter, with `+` and `#` wildcards.
    pub filter: String,
    /// Channel name template over the topic segments: `plant.{{ topic[1] }}.temp`.
    #[serde(default)]
    pub channel: Option<String>,
    /// JSON pointer to the value in a JSON payload (`/value`). Without it the
    /// payload is a bare number.
    #[serde(default)]
    pub value: Option<String>,
    /// JSON pointer to a timestamp (RFC 3339 or Unix seconds). Default: arrival time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Several readings from one JSON message: a map from JSON pointer to channel name template.
    #[serde(default)]
    pub values: Option<IndexMap<String, String>>,
    /// QoS of this subscription, when it differs from the source's.
    #[serde(default)]
    pub qos: Option<u8>,
    /// Engineering unit of the readings.
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// A regular expression with named groups.
    Regex,
    /// Delimited columns.
    Csv,
    /// One JSON object per line.
    Json,
}

/// An instrument printing lines on a serial port.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SerialSourceSpec {
    /// Serial device (`/dev/ttyACM0`).
    pub device: String,
    /// Baud rate. Default 9600.
    #[serde(default)]
    pub baud: Option<u32>,
    /// Parity. Default none.
    #[serde(default)]
    pub parity: Option<Parity>,
    /// Data bits (7 or 8). Default 8.
    #[serde(default)]
    pub data_bits: Option<u8>,
    /// Stop bits (1 or 2). Default 1.
    #[serde(default)]
    pub stop_bits: Option<u8>,
    /// How a line is read: `regex`, `csv` or `json`.
    pub format: LineFormat,
    /// For `regex`: the pattern, with named groups that `channels` maps.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Line delimiter. Default `\n` (a trailing `\r` is removed).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// For `csv`: the column separator. Default `,`.
    #[serde(default)]
    pub separator: Option<String>,
    /// Longest line accepted (bytes). Default 4096.
    #[serde(default)]
    pub max_line: Option<usize>,
    /// Group name (regex), column number (csv, from 0) or JSON pointer (json) → channel.
    pub channels: IndexMap<String, String>,
    /// Group, column or pointer holding the timestamp. Default: arrival time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Time without a line after which the channels are reported stale. Default: never.
    #[serde(default)]
    pub idle: Option<String>,
}

/// A simulated plant. With a seed it is deterministic; with `--duration` or
/// `--count` it runs on a virtual clock as fast as the CPU allows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateSourceSpec {
    /// Time between two samples of every signal. Default 1s.
    #[serde(default)]
    pub interval: Option<String>,
    /// Random seed: the same spec and seed give the same readings. Default 0.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Start of the virtual clock (RFC 3339). Default: now when paced in
    /// real time; 2026-01-01T00:00:00Z on the virtual clock, so runs repeat exactly.
    #[serde(default)]
    pub start: Option<String>,
    /// Signals by channel name.
    pub signals: IndexMap<String, SignalSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `mean`.
    #[default]
    Constant,
    /// mean + amplitude · sin(2π t / period).
    Sine,
    /// A sawtooth from mean − amplitude to mean + amplitude every period.
    Ramp,
    /// A square wave between mean − amplitude and mean + amplitude, half a period each.
    Step,
    /// A random walk around mean with steps of size `amplitude`, pulled back toward mean.
    RandomWalk,
}

/// One simulated signal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    /// Waveform. Default constant.
    #[serde(default)]
    pub shape: Shape,
    /// Centre value. Default 0.
    #[serde(default)]
    pub mean: f64,
    /// Half the peak-to-peak swing (sine, ramp, step) or the walk's step size. Default 0.
    #[serde(default)]
    pub amplitude: f64,
    /// Period of sine, ramp and step. Default 1m.
    #[serde(default)]
    pub period: Option<String>,
    /// Standard deviation of Gaussian noise added to every sample. Default 0.
    #[serde(default)]
    pub noise: f64,
    /// Round values to this many decimals.
    #[serde(default)]
    pub decimals: Option<u8>,
    /// Engineering unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Faults injected at given times after the start.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// The value freezes at what it was when the fault began.
    Stuck,
    /// One sample jumps by `magnitude` (default 10 × amplitude, or 10).
    Spike,
    /// No samples: the sensor goes silent.
    Dropout,
    /// The value drifts away by `magnitude` per minute.
    Drift,
}

/// A fault injected into a simulated signal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When the fault begins, after the start of the run (`5m`).
    pub at: String,
    /// `stuck`, `spike`, `dropout` or `drift`.
    pub kind: FaultKind,
    /// How long it lasts (`2m`). Default: one sample for `spike`, to the end otherwise.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// Size of a spike, or drift per minute.
    #[serde(default)]
    pub magnitude: Option<f64>,
    /// Repeat the fault this often (`5m`): it begins again at `at + every`,
    /// `at + 2 × every`, … A repeating fault needs a `for` (one sample for
    /// `spike`) shorter than `every`; a drift starts from zero each time.
    #[serde(default)]
    pub every: Option<String>,
}
