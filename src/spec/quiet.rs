//! Specs that make alerts quieter: what a rule watches (`over`), grouping,
//! inhibition, flapping and mute windows. Used by [`super::AlertSpec`]
//! (all of them) and by every notifier (`group`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertOver {
    /// Every reading and anomaly; one alert per rule and channel.
    #[default]
    Channels,
    /// The state of every source, as its readings tell it; one alert per
    /// rule and source (its `channel` is the source id). `when` sees
    /// `kind: source`, `source`, `down` (a bool), `error` (the flags of the
    /// last failed poll, or none) and `failures` (failed polls in a row),
    /// after each of the source's readings. A source is down from its first
    /// failed poll (a reading flagged `timeout`, `disconnected`, `crc`,
    /// `mismatch` or `exception_N`) until a reading with a value: give the
    /// rule a `for`.
    Sources,
}

/// Notifications held and sent together, one per group, listing its alerts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Labels whose values make a group: alerts with equal values go in one
    /// notification. Built-in labels: `rule`, `channel`, `source`,
    /// `severity`; and the rule's `labels`. Default: none (one group).
    #[serde(default)]
    pub by: Vec<String>,
    /// How long a new group waits for more alerts before its first
    /// notification. Default 30s.
    #[serde(default)]
    pub wait: Option<String>,
    /// How long a group waits after a notification before the next one
    /// (with the alerts that came meanwhile). Default 5m.
    #[serde(default)]
    pub interval: Option<String>,
}

/// While this rule fires, hold the notifications of other rules' alerts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InhibitSpec {
    /// Rules (names or globs) whose alerts are held.
    pub rules: Vec<String>,
    /// Labels that must be equal on both alerts: `[source]` holds only the
    /// alerts of the source that is down. Default: none (every alert of
    /// `rules` is held while this rule fires anywhere).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// An alert that fires and resolves this often is flapping: one
/// `flapping` notification, then quiet until it has kept one state for `within`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlappingSpec {
    /// Firing and resolved notifications within `within` that make it
    /// flapping. Default 4.
    #[serde(default)]
    pub changes: Option<u32>,
    /// The window. Default 10m.
    #[serde(default)]
    pub within: Option<String>,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// A recurring time when notifications are held: every `days` from `start`
/// to `end`, in `tz`. Alerts still firing when it ends are sent then.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteWindowSpec {
    /// Days it starts on. Default: every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// `HH:MM`, local time in `tz`.
    pub start: String,
    /// `HH:MM`; earlier than `start`: the window ends the next day.
    pub end: String,
    /// IANA time zone: `Europe/Berlin`. Default UTC.
    #[serde(default)]
    pub tz: Option<String>,
}
