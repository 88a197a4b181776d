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
//! * **Detection** looks at every reading that is not `bad`, fused or not;
//!   an anomaly that comes in right after this stage made the same one is
//!   dropped (a `detect` upstream in a pipe).
//! * **Alert rules** see every reading and anomaly; alerts that come in pass
//!   on untouched, and `relay` rules route them to their notifiers (a
//!   fleet's center sending its gateways' alerts on).

use crate::compile::Plan;
use crate::model::record::{Notification, Record};
use crate::model::time::{self, Micros};
use crate::stages::alert::Alerter;
use crate::stages::detect::Detectors;
use crate::stages::fuse::Fuser;
use crate::stages::validate::ChannelValidator;

use super::{EngineError, Stage};

/// What one turn of the chain is given.
pub(super) enum Step {
    /// Records from a producer.
    Records(Vec<Record>),
    /// Nothing arrived for a while: time passes (stale channels, fusion rounds).
    Tick(Micros),
    /// The producers are done: close what is open (fusion rounds).
    End,
}

/// The stages a run goes through, up to its [`Stage`].
pub(super) struct Chain {
    pub validator: ChannelValidator,
    pub fuser: Fuser,
    pub detectors: Detectors,
    pub alerter: Alerter,
    /// Stored readings of a backtest were validated and fused when stored.
    replay: bool,
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
            detectors: Detectors::new(if upto(Stage::Detect) { &plan.detect } else { &[] })
                .map_err(EngineError::Usage)?,
            alerter: Alerter::new(if upto(Stage::Alert) { &plan.alerts } else { &[] }, &plan.notifiers)
                .map_err(EngineError::Usage)?,
            replay,
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
            Step::End => self.fuser.flush(&mut validated),
            Step::Tick(now) => {
                self.validator.tick(now, &mut validated);
                self.fuser.tick(now, &mut validated);
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
            out.extend(
                notes[before..]
                    .iter()
                    .filter(|n| !n.relayed && !n.grouped)
                    .map(|n| Record::Alert(Box::new(n.alert.clone()))),
            );
        }
    }

    fn validate_and_fuse(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        if self.fuser.is_empty() {
            self.validator.process(batch, out);
            return;
        }
        let mut checked = Vec::with_capacity(batch.len());
        self.validator.process(batch, &mut checked);
        self.fuser.process(checked, out);
    }

    /// Wall-clock runs: channels named in the spec that never report are stale from now on.
    pub fn expect_named_channels(&mut self) {
        self.validator.expect_named_channels(time::now_micros());
    }
}
