//! Driving the simulators: on the virtual clock (samples in time order, as
//! fast as the CPU allows, so a day of plant runs in a second and repeats
//! exactly) or on the wall clock (one task per simulator, ticking in real time).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::compile::{Plan, SourceKind};
use crate::model::batch::Batch;
use crate::model::time;
use crate::sources::simulate::Simulator;

/// Records per batch from the simulator.
const SIM_BATCH: usize = 4096;

/// The simulators of a plan.
pub(super) fn simulators(plan: &Plan, start: time::Micros) -> Vec<Simulator> {
    let mut out = Vec::new();
    for s in &plan.sources {
        if let SourceKind::Simulate(sim) = &s.kind {
            out.push(Simulator::new(&s.id, sim, start));
        }
    }
    out
}

/// Runs simulators on a virtual clock: samples in time order (ties in spec
/// order), as fast as the CPU allows, until `count` readings or `duration`.
/// With `once`, one sample of every signal, stamped now.
pub(super) fn run_virtual(
    mut sims: Vec<Simulator>,
    once: bool,
    duration: Option<Duration>,
    count: Option<u64>,
    stop: &AtomicBool,
    progress: &AtomicU64,
    tx: mpsc::Sender<Batch>,
) {
    let mut batch = Vec::with_capacity(SIM_BATCH);
    if once {
        let now = time::now_micros();
        for s in &mut sims {
            s.tick_at(now, &mut batch);
        }
        let _ = tx.blocking_send(batch.into());
        return;
    }
    let start = sims.iter().map(Simulator::next_ts).min().unwrap_or(0);
    let end = duration.map(|d| start + d.as_micros() as i64);
    let mut produced = 0u64;
    while let Some(i) = (0..sims.len()).min_by_key(|&i| (sims[i].next_ts(), i)) {
        if end.is_some_and(|e| sims[i].next_ts() >= e) {
            break;
        }
        let before = batch.len();
        sims[i].tick(&mut batch);
        produced += (batch.len() - before) as u64;
        if let Some(c) = count {
            if produced >= c {
                batch.truncate(batch.len() - (produced - c) as usize);
                break;
            }
        }
        if batch.len() >= SIM_BATCH {
            progress.store(produced, Ordering::Relaxed);
            if tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(SIM_BATCH)).into()).is_err()
                || stop.load(Ordering::Relaxed)
            {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch.into());
    }
}

/// One simulator on the wall clock: a sample of every signal each interval, until `stop`.
pub(super) async fn run_wall_clock(mut sim: Simulator, tx: mpsc::Sender<Batch>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_micros(sim.interval_us() as u64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let mut batch = Vec::with_capacity(sim.signal_count());
        sim.tick_at(time::now_micros(), &mut batch);
        if tx.send(batch.into()).await.is_err() {
            break;
        }
    }
}
