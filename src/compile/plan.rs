//! The plan: a checked, typed pipeline that the engine runs.
//!
//! Every value here has been parsed and checked (durations are `Duration`,
//! paths are resolved against the spec's folder, references exist). The plan
//! serializes to JSON for `--dump-plan`; secrets appear only as where they come
//! from, never as their value.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::quantity::serde_dur;
use crate::spec::{
    AlertSeverity, BackupFormat, ByteOrder, Compression, CounterWidth, DetectMethod, FaultKind, FileFormat, FuseMethod,
    KalmanModel, LakeTable, LineFormat, ModbusTransport, Parity, ParquetCompression, PartitionKey, PointType,
    RecordKind, RollingStat, Shape, Table,
};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// Folder of the spec file; relative paths were resolved against it.
    pub base_dir: PathBuf,
    pub identity: Option<IdentityPlan>,
    pub store: Option<StorePlan>,
    pub sources: Vec<SourcePlan>,
    pub channels: Vec<ChannelRule>,
    pub fuse: Vec<FusePlan>,
    pub compute: Vec<ComputePlan>,
    pub detect: Vec<DetectPlan>,
    pub alerts: Vec<AlertPlan>,
    pub notifiers: Vec<NotifierPlan>,
    pub serve: Option<ServePlan>,
    pub backup: Option<BackupPlan>,
    pub forward: Vec<ForwardPlan>,
    pub export: Vec<ExportPlan>,
}

/// Who this gateway is in a fleet; both are single subject tokens.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityPlan {
    pub site: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorePlan {
    pub path: PathBuf,
    #[serde(with = "serde_dur::opt")]
    pub retention: Option<Duration>,
    pub batch: usize,
    #[serde(with = "serde_dur")]
    pub flush: Duration,
    /// Kinds of records stored.
    pub records: Vec<RecordKind>,
    /// How often stage state is saved with a commit; `None`: at the end only.
    #[serde(with = "serde_dur::opt")]
    pub checkpoint: Option<Duration>,
    /// Rollup tiers, finest first.
    pub rollups: Vec<RollupPlan>,
}

/// A rollup tier (`store.rollups`): buckets of `every`, kept for `keep`
/// (`None`: forever).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupPlan {
    #[serde(with = "serde_dur")]
    pub every: Duration,
    #[serde(with = "serde_dur::opt")]
    pub keep: Option<Duration>,
}

impl RollupPlan {
    /// The bucket length in microseconds (the key of its rows in the store).
    pub fn every_us(&self) -> i64 {
        self.every.as_micros().min(i64::MAX as u128) as i64
    }
}

impl StorePlan {
    /// Records per commit unless `store.batch` says otherwise: one DuckDB row
    /// group. A transaction holding whole row groups has them written straight
    /// to the table; a smaller one is staged and copied again at commit
    /// (measured: 1M readings in 0.96–1.05 s at 122,880 vs 1.18–1.32 s at 100,000).
    pub const DEFAULT_BATCH: usize = 122_880;
    /// Longest a record waits for its commit unless `store.flush` says otherwise.
    pub const DEFAULT_FLUSH: Duration = Duration::from_secs(1);
    /// How often stage state is saved unless `store.checkpoint` says otherwise.
    pub const DEFAULT_CHECKPOINT: Duration = Duration::from_secs(10);

    /// A store at `path` with every default (`--store PATH` without a `store:` section).
    pub fn at(path: PathBuf) -> StorePlan {
        StorePlan {
            path,
            retention: None,
            batch: Self::DEFAULT_BATCH,
            flush: Self::DEFAULT_FLUSH,
            records: RecordKind::ALL.to_vec(),
            checkpoint: Some(Self::DEFAULT_CHECKPOINT),
            rollups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub id: String,
    #[serde(flatten)]
    pub kind: SourceKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceKind {
    Modbus(ModbusPlan),
    Mqtt(MqttPlan),
    Nats(NatsSourcePlan),
    Serial(SerialPlan),
    Simulate(SimulatePlan),
}

impl SourceKind {
    /// The spec's `type:` (`/api/v1/sources` shows it).
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Modbus(_) => "modbus",
            SourceKind::Mqtt(_) => "mqtt",
            SourceKind::Nats(_) => "nats",
            SourceKind::Serial(_) => "serial",
            SourceKind::Simulate(_) => "simulate",
        }
    }

    /// Waits for what a peer sends (MQTT, NATS, serial) rather than asking
    /// a device (Modbus) or making readings (simulate): a quiet peer is not
    /// a failing one, and a connection made is a success.
    pub fn listens(&self) -> bool {
        match self {
            SourceKind::Mqtt(_) | SourceKind::Nats(_) | SourceKind::Serial(_) => true,
            SourceKind::Modbus(_) | SourceKind::Simulate(_) => false,
        }
    }

    /// Driven by the engine's clock rather than run as a live source.
    pub fn is_simulated(&self) -> bool {
        match self {
            SourceKind::Simulate(_) => true,
            SourceKind::Modbus(_) | SourceKind::Mqtt(_) | SourceKind::Nats(_) | SourceKind::Serial(_) => false,
        }
    }

    /// The channels this source produces, named in the spec, each with the
    /// key path below the source where it is named. A source whose channel
    /// names come from the data (MQTT topic templates) names none, and
    /// [`SourceKind::names_all_channels`] is false.
    pub fn channels(&self) -> Vec<(&str, String)> {
        match self {
            SourceKind::Modbus(m) => m
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| (p.channel.as_str(), format!("{}.channel", crate::spec::load::join_index("points", i))))
                .collect(),
            SourceKind::Serial(s) => {
                s.channels.iter().map(|(k, c)| (c.as_str(), crate::spec::load::join_key("channels", k))).collect()
            }
            SourceKind::Simulate(sim) => sim
                .signals
                .iter()
                .map(|sig| (sig.channel.as_str(), crate::spec::load::join_key("signals", &sig.channel)))
                .collect(),
            SourceKind::Mqtt(_) | SourceKind::Nats(_) => Vec::new(),
        }
    }

    /// Whether [`SourceKind::channels`] is every channel the source can
    /// produce; if not, channel rules cannot be checked against the spec.
    pub fn names_all_channels(&self) -> bool {
        match self {
            SourceKind::Modbus(_) | SourceKind::Serial(_) | SourceKind::Simulate(_) => true,
            SourceKind::Mqtt(_) | SourceKind::Nats(_) => false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModbusPlan {
    pub transport: ModbusTransport,
    /// `host:port` for TCP transports.
    pub address: Option<String>,
    pub serial: Option<SerialLine>,
    #[serde(with = "serde_dur")]
    pub interval: Duration,
    #[serde(with = "serde_dur")]
    pub timeout: Duration,
    #[serde(with = "serde_dur")]
    pub pause: Duration,
    pub points: Vec<PointPlan>,
    /// Points merged into requests, per unit and table.
    pub requests: Vec<RequestPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SerialLine {
    pub device: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

impl SerialLine {
    /// Seconds one character takes: start, data, parity and stop bits.
    pub fn char_secs(&self) -> f64 {
        let bits = 1 + u32::from(self.data_bits) + u32::from(self.parity != Parity::None) + u32::from(self.stop_bits);
        f64::from(bits) / f64::from(self.baud.max(1))
    }

    /// The silence that ends an RTU frame: 3.5 characters, fixed at 1.75 ms
    /// above 19200 baud (Modbus over serial line, §2.5.1.1).
    pub fn frame_silence(&self) -> Duration {
        if self.baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            Duration::from_secs_f64(3.5 * self.char_secs())
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PointPlan {
    pub channel: String,
    pub unit_id: u8,
    pub table: Table,
    /// Protocol address (0-based), after `address_base`.
    pub address: u16,
    #[serde(rename = "type")]
    pub kind: PointType,
    pub order: ByteOrder,
    pub bit: Option<u8>,
    /// Registers (or bits) the point covers.
    pub count: u16,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    #[serde(with = "serde_dur::opt")]
    pub interval: Option<Duration>,
    pub deadband: Option<f64>,
    /// With a deadband: the longest an unchanged value goes unreported.
    #[serde(with = "serde_dur::opt")]
    pub heartbeat: Option<Duration>,
}

impl PointPlan {
    /// A deadband's heartbeat when neither it nor the channel's `stale` is given.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestPlan {
    /// How often this request runs: the interval of its points.
    #[serde(with = "serde_dur")]
    pub interval: Duration,
    pub unit_id: u8,
    pub table: Table,
    pub address: u16,
    pub count: u16,
    /// Indexes into `points`.
    pub points: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MqttPlan {
    pub url: String,
    pub client_id: String,
    pub clean_session: bool,
    #[serde(with = "serde_dur")]
    pub keepalive: Duration,
    pub username: Option<SecretRef>,
    pub password: Option<SecretRef>,
    pub tls: Option<TlsPlan>,
    pub max_payload: usize,
    pub topics: Vec<TopicPlan>,
}

/// A durable pull consumer on a fleet's stream.
#[derive(Debug, Clone, Serialize)]
pub struct NatsSourcePlan {
    #[serde(flatten)]
    pub conn: NatsConnPlan,
    pub stream: String,
    pub consumer: String,
    /// Filter subjects; empty: the whole stream.
    pub subjects: Vec<String>,
    /// `{site}`, `{gateway}` and `{channel}` → the channel name at the center.
    pub channel: String,
    pub batch: usize,
    #[serde(with = "serde_dur")]
    pub ack_wait: Duration,
}

impl NatsSourcePlan {
    /// Channel names at the center unless the spec says otherwise.
    pub const DEFAULT_CHANNEL: &'static str = "{site}.{gateway}.{channel}";

    /// A channel template is text with `{site}`, `{gateway}` and
    /// `{channel}`, and makes valid channel names.
    pub fn check_channel(template: &str) -> Result<(), String> {
        if !template.contains("{channel}") {
            return Err("without `{channel}` every channel of a gateway would have one name".into());
        }
        let sample = Self::render_channel(template, "site", "gw-1", "line.temp")?;
        crate::model::channel::check_channel_name(&sample).map_err(|why| format!("makes `{sample}`: {why}"))
    }

    /// The channel name at the center of a gateway's `channel`.
    pub fn render_channel(template: &str, site: &str, gateway: &str, channel: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len() + site.len() + gateway.len() + channel.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').ok_or("a `{` is not closed")? + open;
            match &rest[open + 1..close] {
                "site" => out.push_str(site),
                "gateway" => out.push_str(gateway),
                "channel" => out.push_str(channel),
                other => return Err(format!("`{{{other}}}` is not a placeholder")),
            }
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("a `}` was not opened".into());
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicPlan {
    pub filter: String,
    pub qos: u8,
    /// Pointer (or "" for a bare number) → channel template.
    pub values: Vec<(String, String)>,
    pub timestamp: Option<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SerialPlan {
    pub line: SerialLine,
    pub format: LineFormat,
    pub pattern: Option<String>,
    pub delimiter: u8,
    pub separator: u8,
    pub max_line: usize,
    pub channels: Vec<(String, String)>,
    pub timestamp: Option<String>,
    #[serde(with = "serde_dur::opt")]
    pub idle: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulatePlan {
    #[serde(with = "serde_dur")]
    pub interval: Duration,
    pub seed: u64,
    /// Start of the clock in microseconds since the epoch, when given.
    pub start: Option<i64>,
    pub signals: Vec<SignalPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignalPlan {
    pub channel: String,
    pub shape: Shape,
    pub mean: f64,
    pub amplitude: f64,
    #[serde(with = "serde_dur")]
    pub period: Duration,
    pub noise: f64,
    pub decimals: Option<u8>,
    pub unit: Option<String>,
    pub faults: Vec<FaultPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultPlan {
    pub kind: FaultKind,
    #[serde(with = "serde_dur")]
    pub at: Duration,
    #[serde(with = "serde_dur::opt")]
    pub duration: Option<Duration>,
    pub magnitude: Option<f64>,
    /// Repetition period; `None`: once.
    #[serde(with = "serde_dur::opt")]
    pub every: Option<Duration>,
}

/// Validation rules for the channels a pattern matches.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelRule {
    /// The key as written: a channel name or a glob.
    pub pattern: String,
    pub is_glob: bool,
    pub unit: Option<String>,
    pub range: Option<(f64, f64)>,
    /// Largest change per second.
    pub max_rate: Option<f64>,
    #[serde(with = "serde_dur::opt")]
    pub stuck: Option<Duration>,
    #[serde(with = "serde_dur::opt")]
    pub stale: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FusePlan {
    pub channel: String,
    pub inputs: Vec<String>,
    pub method: FuseMethod,
    #[serde(with = "serde_dur")]
    pub window: Duration,
    pub max_spread: Option<f64>,
    pub min_inputs: usize,
    pub sigma: Vec<Option<f64>>,
    pub process_noise: f64,
    pub measurement_noise: f64,
    pub model: KalmanModel,
    #[serde(with = "serde_dur")]
    pub suspect_after: Duration,
    pub unit: Option<String>,
}

/// A computed channel (`compute`): its inputs and how it is made.
#[derive(Debug, Clone, Serialize)]
pub struct ComputePlan {
    pub channel: String,
    /// The channels it reads: an expression's names in order of first use,
    /// else the one input.
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub kind: ComputeKind,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ComputeKind {
    Expr {
        expr: String,
        #[serde(with = "serde_dur")]
        max_age: Duration,
        #[serde(with = "serde_dur::opt")]
        every: Option<Duration>,
    },
    Rate {
        counter: Option<CounterWidth>,
        #[serde(with = "serde_dur")]
        per: Duration,
    },
    Integrate {
        #[serde(with = "serde_dur")]
        per: Duration,
        #[serde(with = "serde_dur")]
        max_gap: Duration,
    },
    Delta {
        #[serde(with = "serde_dur")]
        every: Duration,
        counter: Option<CounterWidth>,
    },
    Rolling {
        #[serde(with = "serde_dur")]
        window: Duration,
        stat: RollingStat,
    },
}

impl ComputePlan {
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_GAP: Duration = Duration::from_secs(60);
    pub const DEFAULT_PER: Duration = Duration::from_secs(1);
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectPlan {
    pub id: String,
    pub channel: String,
    pub method: DetectMethod,
    #[serde(with = "serde_dur::opt")]
    pub window: Option<Duration>,
    pub threshold: Option<f64>,
    pub alpha: Option<f64>,
    pub tolerance: Option<f64>,
    #[serde(with = "serde_dur::opt")]
    pub duration: Option<Duration>,
    pub max_rate: Option<f64>,
    pub trees: Option<usize>,
    #[serde(with = "serde_dur::opt")]
    pub warmup: Option<Duration>,
    pub seed: Option<u64>,
    pub steps: Vec<String>,
    #[serde(with = "serde_dur::opt")]
    pub within: Option<Duration>,
}

impl DetectPlan {
    /// `window` of `zscore`, `mad` and `iforest` unless the spec says otherwise.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
    /// `alpha` of `ewma`.
    pub const DEFAULT_ALPHA: f64 = 0.1;
    /// `trees` of `iforest`.
    pub const DEFAULT_TREES: usize = 100;
    /// `seed` of `iforest`.
    pub const DEFAULT_SEED: u64 = 0;

    /// The threshold a method judges by unless the spec sets one (for
    /// `rate`, `flatline` and `pattern`, the one their anomalies report).
    pub fn default_threshold(method: DetectMethod) -> f64 {
        match method {
            DetectMethod::Zscore | DetectMethod::Ewma => 3.0,
            DetectMethod::Mad => 3.5,
            DetectMethod::Iforest => 0.75,
            DetectMethod::Rate | DetectMethod::Flatline | DetectMethod::Pattern => 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertPlan {
    pub rule: String,
    pub when: String,
    /// Routes incoming alert records rather than watching readings and anomalies.
    pub relay: bool,
    #[serde(with = "serde_dur")]
    pub duration: Duration,
    pub severity: AlertSeverity,
    #[serde(with = "serde_dur::opt")]
    pub repeat: Option<Duration>,
    pub resolve: bool,
    pub notify: Vec<String>,
    /// Empty for a relay rule without a title of its own: the alert's is kept.
    pub title: String,
    pub body: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Readings and anomalies, or the state of sources.
    pub over: crate::spec::AlertOver,
    /// Once firing, resolves when this holds (else when `when` stops holding).
    pub resolve_when: Option<String>,
    pub flapping: Option<FlappingPlan>,
    pub inhibit: Option<InhibitPlan>,
    /// The rule's own grouping (it wins over its notifiers').
    pub group: Option<GroupPlan>,
    pub mute: Vec<MuteWindow>,
}

/// When an alert is flapping: `changes` notifications within `within`.
#[derive(Debug, Clone, Serialize)]
pub struct FlappingPlan {
    pub changes: u32,
    #[serde(with = "serde_dur")]
    pub within: Duration,
}

/// While the rule fires, the alerts of `rules` (names or globs) with the
/// same values of `equal` are held.
#[derive(Debug, Clone, Serialize)]
pub struct InhibitPlan {
    pub rules: Vec<String>,
    pub equal: Vec<String>,
}

/// Notifications sent together, one per group of equal `by` label values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPlan {
    pub by: Vec<String>,
    #[serde(with = "serde_dur")]
    pub wait: Duration,
    #[serde(with = "serde_dur")]
    pub interval: Duration,
}

/// A recurring window, in minutes after local midnight in `tz`, starting on
/// `days` (0 = Monday; empty: every day); `end <= start` ends the next day.
#[derive(Debug, Clone, Serialize)]
pub struct MuteWindow {
    pub days: Vec<u8>,
    pub start: u32,
    pub end: u32,
    /// An IANA name, checked by compile.
    pub tz: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifierPlan {
    pub id: String,
    #[serde(flatten)]
    pub kind: NotifierKind,
    pub group: Option<GroupPlan>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NotifierKind {
    Stdout,
    File {
        path: PathBuf,
        format: FileFormat,
        template: String,
    },
    Exec {
        command: Vec<String>,
        env: Vec<(String, SecretRef)>,
        #[serde(with = "serde_dur")]
        timeout: Duration,
        max_concurrent: usize,
    },
    Webhook {
        url: String,
        body: Option<String>,
        headers: Vec<(String, SecretRef)>,
        #[serde(with = "serde_dur")]
        timeout: Duration,
        retries: u32,
    },
    Mqtt {
        url: String,
        topic: String,
        payload: Option<String>,
        qos: u8,
        retain: bool,
        username: Option<SecretRef>,
        password: Option<SecretRef>,
        tls: Option<TlsPlan>,
    },
    Email {
        /// Host and port.
        host: String,
        port: u16,
        /// TLS from the first byte (`smtps://`), else STARTTLS.
        implicit_tls: bool,
        from: String,
        to: Vec<String>,
        subject: String,
        body: String,
        html: Option<String>,
        username: Option<SecretRef>,
        password: Option<SecretRef>,
        tls: Option<TlsPlan>,
        #[serde(with = "serde_dur")]
        timeout: Duration,
        retries: u32,
    },
}

/// Where a secret comes from; its value is read only when it is used.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// The secret's value, read now; the error names where it should come
    /// from (never the value).
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsPlan {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServePlan {
    pub listen: std::net::SocketAddr,
    pub token: Option<SecretRef>,
    pub tls: Option<TlsPlan>,
    pub cors: Vec<String>,
    /// A source failing this long without a success is down (`/readyz` 503).
    pub down_after: std::time::Duration,
    /// Most channels exported as gauges by `/metrics`.
    pub metric_channels: usize,
}

impl ServePlan {
    pub const DOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
    pub const METRIC_CHANNELS: usize = 1000;

    /// `serve` without a `serve` section: loopback, no token.
    pub fn local() -> ServePlan {
        ServePlan {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            tls: None,
            cors: Vec::new(),
            down_after: ServePlan::DOWN_AFTER,
            metric_channels: ServePlan::METRIC_CHANNELS,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupPlan {
    pub dir: PathBuf,
    pub keep: usize,
    pub format: BackupFormat,
    pub schedule: Option<String>,
}

/// A forward target: what it sends, how, and where.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardPlan {
    pub id: String,
    #[serde(flatten)]
    pub kind: ForwardTarget,
    /// Where each kind goes: `<subject>.<kind>` on NATS (`eg.<site>.<gateway>`),
    /// `<subject>/<kind>` on MQTT (`eg/<site>/<gateway>`).
    pub subject: String,
    pub records: Vec<RecordKind>,
    /// Channel names or globs; empty: every channel.
    pub channels: Vec<String>,
    pub max_records: usize,
    pub max_bytes: usize,
    pub compression: Compression,
    pub in_flight: usize,
    #[serde(with = "serde_dur")]
    pub ack_timeout: Duration,
    #[serde(with = "serde_dur")]
    pub max_age: Duration,
    /// Backlog records per second; `None`: no cap.
    pub replay_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ForwardTarget {
    Nats(NatsTargetPlan),
    Mqtt(MqttTargetPlan),
}

/// An MQTT broker as a forward target.
#[derive(Debug, Clone, Serialize)]
pub struct MqttTargetPlan {
    pub url: String,
    pub client_id: String,
    pub username: Option<SecretRef>,
    pub password: Option<SecretRef>,
    pub tls: Option<TlsPlan>,
    pub qos: u8,
    #[serde(with = "serde_dur")]
    pub keepalive: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct NatsTargetPlan {
    #[serde(flatten)]
    pub conn: NatsConnPlan,
    pub stream: Option<String>,
}

/// Where a NATS client connects and how it logs in.
#[derive(Debug, Clone, Serialize)]
pub struct NatsConnPlan {
    pub urls: Vec<String>,
    pub auth: NatsAuth,
    pub tls: Option<TlsPlan>,
}

/// How a NATS client proves who it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsAuth {
    None,
    /// A `.creds` file's text (user JWT and nkey seed).
    Credentials(SecretRef),
    Nkey(SecretRef),
    UserPassword(SecretRef, SecretRef),
    Token(SecretRef),
}

impl Plan {
    /// Every channel the plan's sources and fusions produce, in spec order.
    pub fn produced_channels(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for s in &self.sources {
            out.extend(s.kind.channels().into_iter().map(|(c, _)| c));
        }
        out.extend(self.fuse.iter().map(|f| f.channel.as_str()));
        out
    }
}

/// An export of `collect`: where a fleet's records are written.
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    pub id: String,
    #[serde(flatten)]
    pub kind: ExportTarget,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExportTarget {
    Parquet(ParquetPlan),
}

/// Hive-partitioned Parquet files in a folder or an object store.
#[derive(Debug, Clone, Serialize)]
pub struct ParquetPlan {
    pub dest: LakeDest,
    pub tables: Vec<LakeTable>,
    pub partition: Vec<PartitionKey>,
    pub max_rows: u64,
    #[serde(with = "serde_dur")]
    pub max_age: Duration,
    pub compression: ParquetCompression,
}

impl ParquetPlan {
    /// Rows gathered before files are written unless the spec says otherwise.
    pub const DEFAULT_MAX_ROWS: u64 = 1_000_000;
    /// Longest a row waits unless the spec says otherwise.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
}

/// Where a lake's files go.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LakeDest {
    Folder {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
        endpoint: Option<String>,
        region: String,
        access_key: SecretRef,
        secret_key: SecretRef,
    },
}

impl std::fmt::Display for LakeDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeDest::Folder { path } => write!(f, "{}", path.display()),
            LakeDest::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeDest::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}
