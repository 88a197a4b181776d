//! Sources that talk to devices and brokers (Modbus, MQTT, serial): built
//! from the plan, run as tokio tasks, and their counters for the summary.

use std::sync::{Arc, Mutex};

use super::EngineError;
use crate::compile::{Plan, SourceKind};
use crate::sources::modbus::{ModbusStats, Poller};
use crate::sources::mqtt::{MqttStats, Subscriber};
use crate::sources::serial::{LineSource, SerialStats};

/// What one live source did.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub id: String,
    pub stats: SourceStats,
}

#[derive(Debug, Clone)]
pub enum SourceStats {
    Modbus(Box<ModbusStats>),
    Mqtt(MqttStats),
    Serial(SerialStats),
}

impl SourceStats {
    /// What had to answer, and whether it did: Modbus units; the broker
    /// and each topic filter; the serial device and each channel. `--once`
    /// exits 69 when nothing answered and 1 when something did not.
    pub fn devices(&self) -> Vec<(String, bool)> {
        match self {
            SourceStats::Modbus(m) => m.units.iter().map(|(u, s)| (format!("unit {u}"), s.answered)).collect(),
            SourceStats::Mqtt(m) => std::iter::once(("broker".to_string(), m.connects > 0))
                .chain(m.filters.iter().map(|(f, ok)| (format!("topic {f}"), *ok)))
                .collect(),
            SourceStats::Serial(s) => std::iter::once(("device".to_string(), s.opens > 0))
                .chain(s.channels.iter().map(|(c, ok)| (format!("channel {c}"), *ok)))
                .collect(),
        }
    }

    /// The peer refused our credentials (exit 77).
    pub fn refused(&self) -> Option<&str> {
        match self {
            SourceStats::Mqtt(m) => m.refused.as_deref(),
            SourceStats::Modbus(_) | SourceStats::Serial(_) => None,
        }
    }
}

impl std::fmt::Display for SourceStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceStats::Modbus(m) => m.fmt(f),
            SourceStats::Mqtt(m) => m.fmt(f),
            SourceStats::Serial(s) => s.fmt(f),
        }
    }
}

/// Live counters of a running source.
#[derive(Clone)]
pub(super) enum StatsHandle {
    Modbus(Arc<Mutex<ModbusStats>>),
    Mqtt(Arc<Mutex<MqttStats>>),
    Serial(Arc<Mutex<SerialStats>>),
}

impl StatsHandle {
    pub(super) fn snapshot(&self) -> SourceStats {
        match self {
            StatsHandle::Modbus(m) => {
                SourceStats::Modbus(Box::new(m.lock().unwrap_or_else(|e| e.into_inner()).clone()))
            }
            StatsHandle::Mqtt(m) => SourceStats::Mqtt(m.lock().unwrap_or_else(|e| e.into_inner()).clone()),
            StatsHandle::Serial(s) => SourceStats::Serial(s.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }
}

/// A source that talks to a device or broker.
pub(super) enum LiveSource {
    Modbus(Box<Poller>),
    Mqtt(Box<Subscriber>),
    Serial(Box<LineSource>),
}

/// The device and broker sources of a plan, each with its counters registered in `stats`.
pub(super) fn live_sources(
    plan: &Plan,
    stats: &mut Vec<(String, StatsHandle)>,
) -> Result<Vec<LiveSource>, EngineError> {
    let mut out = Vec::new();
    for s in &plan.sources {
        match &s.kind {
            SourceKind::Modbus(m) => {
                let st = Arc::new(Mutex::new(ModbusStats::default()));
                stats.push((s.id.clone(), StatsHandle::Modbus(st.clone())));
                out.push(LiveSource::Modbus(Box::new(Poller::new(&s.id, m, st))));
            }
            SourceKind::Mqtt(m) => {
                let st = Arc::new(Mutex::new(MqttStats::default()));
                let sub = Subscriber::new(&s.id, m, st.clone())
                    .map_err(|e| EngineError::Setup(format!("source `{}`: {e}", s.id)))?;
                stats.push((s.id.clone(), StatsHandle::Mqtt(st)));
                out.push(LiveSource::Mqtt(Box::new(sub)));
            }
            SourceKind::Serial(sp) => {
                let st = Arc::new(Mutex::new(SerialStats::default()));
                let src = LineSource::new(&s.id, sp, st.clone())
                    .map_err(|e| EngineError::Setup(format!("source `{}`: {e}", s.id)))?;
                stats.push((s.id.clone(), StatsHandle::Serial(st)));
                out.push(LiveSource::Serial(Box::new(src)));
            }
            SourceKind::Simulate(_) => {}
        }
    }
    Ok(out)
}
