//! The stage chain: validation → fusion → detection → alert rules, plain
//! synchronous code on the engine's thread, one batch at a time.
//!
//! Each stage passes on everything it gets and adds what it makes (fused
//! readings, anomalies, alerts). Which records a stage looks at again when
//! they arrive through a pipe (`--input`) is decided here, once:
//!
//! * **Validation** applies the channel rules to every reading, also to
//!   readings from `--input` (a file from another program is checked too);
//!   on readings an upstream stage already judged by the same rules they
//!   change nothing. Stale gaps are the exception: only the process that
//!   acquires looks for silent channels as time passes. A later stage of a
//!   pipe (`fuse`, `detect`, `alert` with `--input`) takes a stale-gap
//!   reading that comes in as the gap, and reports none of its own for it,
//!   so a dropout is reported once.
//! * **Fusion** fuses the readings of its inputs; fused readings that come
//!   in (a `fuse` upstream) pass on untouched and are not fused again.
//! * **Computed channels** run with fusion, after it: each computed reading
//!   goes through the channel rules and is offered back to the computed
//!   channels (one may read another) until nothing new is made. Computed
//!   readings that come in are dropped and made again from their inputs.
//! * **Detection** looks at every reading that is not `bad`, fused or not;
//!   an anomaly that comes in right after this stage made the same one is
//!   dropped (a `detect` upstream in a pipe).
//! * **Alert rules** see every reading and anomaly; alerts that come in pass
//!   on untouched, and `relay` rules route them to their notifiers (a
//!   fleet's center sending its gateways' alerts on). An alert made here
//!   follows the record that made it, wherever the batch ends.

use crate::compile::Plan;
use crate::model::record::{Notification, Record};
use crate::model::time::{self, Micros};
use crate::stages::alert::Alerter;
use crate::stages::compute::Computer;
use crate::stages::detect::Detectors;
use crate::stages::fuse::Fuser;
use crate::stages::validate::ChannelValidator;

use super::{EngineError, Stage};

/// What one turn of the chain is given.
pub enum Step {
    /// Records from a producer.
    Records(Vec<Record>),
    /// Nothing arrived for a while: time passes (stale channels, fusion rounds).
    Tick(Micros),
    /// The producers are done: close what is open (fusion rounds).
    End,
}

/// The stages a run goes through, up to its [`Stage`].
pub struct Chain {
    pub validator: ChannelValidator,
    pub fuser: Fuser,
    pub computer: Computer,
    pub detectors: Detectors,
    pub alerter: Alerter,
    /// Stored readings of a backtest were validated and fused when stored.
    replay: bool,
    /// The run is on the wall clock: ticks close computed rounds and
    /// intervals (on the virtual clock only readings move time).
    wall_clock: bool,
    scratch: Vec<Record>,
}

impl Chain {
    /// The stages of `plan` up to `stage`, each fresh.
    pub fn new(plan: &Plan, stage: Stage, input: bool, replay: bool) -> Result<Chain, EngineError> {
        let upto = |s: Stage| stage >= s;
        let mut validator = ChannelValidator::new(&plan.channels);
        if input && stage > Stage::Validate {
            validator.judged_upstream();
        }
        Ok(Chain {
            validator,
            fuser: Fuser::new(if upto(Stage::Fuse) { &plan.fuse } else { &[] }),
            computer: Computer::new(if upto(Stage::Fuse) && !replay { &plan.compute } else { &[] })
                .map_err(EngineError::Usage)?,
            detectors: Detectors::new(if upto(Stage::Detect) { &plan.detect } else { &[] })
                .map_err(EngineError::Usage)?,
            alerter: Alerter::new(if upto(Stage::Alert) { &plan.alerts } else { &[] }, &plan.notifiers)
                .map_err(EngineError::Usage)?,
            replay,
            wall_clock: false,
            scratch: Vec::new(),
        })
    }

    /// Runs one step through every stage; what comes out is appended to
    /// `out`, and the notifications due to `notes`.
    pub fn step(&mut self, step: Step, out: &mut Vec<Record>, notes: &mut Vec<Notification>) {
        let mut validated = std::mem::take(&mut self.scratch);
        validated.clear();
        let (ending, tick) = match &step {
            Step::End => (true, None),
            Step::Tick(now) => (false, Some(*now)),
            Step::Records(_) => (false, None),
        };
        match step {
            Step::End => {
                self.fuser.flush(&mut validated);
                self.computed(|c, fresh| c.flush(fresh), &mut validated);
            }
            Step::Tick(now) => {
                self.validator.tick(now, &mut validated);
                self.fuser.tick(now, &mut validated);
                if self.wall_clock {
                    self.computed(|c, fresh| c.tick(now, fresh), &mut validated);
                }
            }
            Step::Records(batch) if self.replay => validated = batch,
            Step::Records(batch) => self.validate_and_fuse(batch, &mut validated),
        }
        if self.detectors.is_empty() {
            out.append(&mut validated);
        } else {
            self.detectors.process(std::mem::take(&mut validated), out);
        }
        self.scratch = validated;
        if !self.alerter.is_empty() {
            let before = notes.len();
            self.alerter.process(out, notes);
            // Time passes for held notifications and groups; the end sends
            // what groups hold.
            if let Some(now) = tick {
                self.alerter.tick(now, notes);
            }
            if ending {
                self.alerter.finish(notes);
            }
            let alerts: Vec<&Notification> = notes[before..].iter().filter(|n| !n.relayed && !n.grouped).collect();
            if !alerts.is_empty() {
                interleave(out, &alerts);
            }
        }
    }

    fn validate_and_fuse(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        if !self.computer.is_empty() {
            let mut fused = Vec::with_capacity(batch.len());
            self.validate_and_fuse_only(batch, &mut fused);
            // Reading by reading, so what is computed follows the reading
            // that made it whatever the batches were.
            let mut fresh = Vec::new();
            out.reserve(fused.len());
            for rec in fused {
                if let Record::Reading(r) = &rec {
                    if self.computer.is_upstream_copy(r) {
                        continue;
                    }
                    self.computer.observe(r, &mut fresh);
                }
                out.push(rec);
                if !fresh.is_empty() {
                    self.settle(std::mem::take(&mut fresh), out);
                }
            }
            return;
        }
        self.validate_and_fuse_only(batch, out);
    }

    fn validate_and_fuse_only(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        if self.fuser.is_empty() {
            self.validator.process(batch, out);
            return;
        }
        let mut checked = Vec::with_capacity(batch.len());
        self.validator.process(batch, &mut checked);
        self.fuser.process(checked, out);
    }

    /// Computed readings: through the channel rules into `out`, and back
    /// to the computed channels that read them, until none is new.
    fn settle(&mut self, mut fresh: Vec<Record>, out: &mut Vec<Record>) {
        while !fresh.is_empty() {
            let start = out.len();
            self.validator.process(std::mem::take(&mut fresh), out);
            for rec in &out[start..] {
                if let Record::Reading(r) = rec {
                    self.computer.observe(r, &mut fresh);
                }
            }
        }
    }

    /// Runs `due` (a tick or the end) on the computed channels until what
    /// it makes makes nothing more; the readings go to `out`.
    fn computed(&mut self, due: impl Fn(&mut Computer, &mut Vec<Record>), out: &mut Vec<Record>) {
        if self.computer.is_empty() {
            return;
        }
        // One pass per level of computed channels reading computed channels.
        for _ in 0..=self.computer.len() {
            let mut fresh = Vec::new();
            due(&mut self.computer, &mut fresh);
            if fresh.is_empty() {
                break;
            }
            self.settle(fresh, out);
        }
    }

    /// Wall-clock runs: channels named in the spec that never report are stale from now on.
    pub fn expect_named_channels(&mut self) {
        self.wall_clock = true;
        self.validator.expect_named_channels(time::now_micros());
    }
}

/// Puts each alert right after the record that made it (the first record of
/// its channel and time from there on), so that where an alert lands does
/// not depend on where a batch ends: `alert X` and `… | alert X --input -`
/// print the same lines in the same order. Alerts come in the order of the
/// records that made them; one whose record is not found goes at the end.
fn interleave(out: &mut Vec<Record>, alerts: &[&Notification]) {
    let mut merged = Vec::with_capacity(out.len() + alerts.len());
    let mut next = alerts.iter().peekable();
    for rec in out.drain(..) {
        let key = match &rec {
            Record::Reading(r) => Some((r.ts, r.channel.clone())),
            Record::Anomaly(a) => Some((a.ts, std::sync::Arc::from(a.channel.as_str()))),
            Record::Alert(_) | Record::Delivery(_) | Record::Other { .. } => None,
        };
        merged.push(rec);
        let Some((ts, channel)) = key else { continue };
        while let Some(n) = next.next_if(|n| n.alert.ts == ts && n.alert.channel == *channel) {
            merged.push(Record::Alert(Box::new(n.alert.clone())));
        }
    }
    merged.extend(next.map(|n| Record::Alert(Box::new(n.alert.clone()))));
    *out = merged;
}
