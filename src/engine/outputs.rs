//! The output seam: everything that consumes records after the stage chain.
//!
//! | output | gets | durable |
//! |---|---|---|
//! | stdout ([`Output`]) | every record, in the chosen format | only when nothing is stored |
//! | the store (writer thread) | readings, anomalies, alerts, deliveries | yes |
//! | notifiers ([`Dispatcher`]) | the notifications of alert rules | no (side effects) |
//! | `serve`'s [`Tap`] | every record (latest values, the SSE stream) | no |
//!
//! **Delivery rule.** A batch is *delivered* when the durable output has it:
//! the store, once the commit that holds the batch's last record is done;
//! without a store, stdout, once the batch is written and flushed. Only then
//! does the batch's [`CommitHook`] run — that is when MQTT acknowledges its
//! messages, so a crash before it makes the broker send them again
//! (at-least-once). Notifiers and the tap never hold a hook back: a
//! notification is a side effect, and its outcome is itself a `delivery`
//! record that goes to the store.
//!
//! **When an output fails.** Stdout closed by its reader (`| head`) or
//! failing (disk full): the producers are stopped, nothing more is printed,
//! and the store keeps committing what was read; without a store the hooks
//! of the unprinted batches never run. The store failing: the producers are
//! stopped and the run ends with the store's error (no hook of an
//! uncommitted batch runs). A notifier failing: retried, then counted and
//! logged; the run goes on.
//!
//! Forward targets read from the store (it is the outbox; see
//! `crate::forward`), so they need nothing from this seam but the number of
//! each commit, which the writer tells them as it makes it.

use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::compile::StorePlan;
use crate::model::batch::CommitHook;
use crate::model::record::{Notification, Record};
use crate::sinks::notify::Dispatcher;
use crate::sinks::stdout::{Output, OutputError};
use crate::sinks::store::{self, Handed, StateRow, Store, StoreError, StoreStats};

use super::tap::Tap;
use super::EngineError;

type Writer = JoinHandle<Result<(Store, StoreStats), (StoreError, StoreStats)>>;
type ToStore = SyncSender<Handed>;

/// Every output of a run.
pub(super) struct Outputs<'a> {
    stdout: &'a mut Output,
    /// The reader went away; nothing more is printed.
    pub stdout_closed: bool,
    stdout_error: Option<std::io::Error>,
    store: Option<(ToStore, Writer)>,
    pub notify: Option<Dispatcher>,
    tap: Option<Arc<Tap>>,
    /// Records other than readings that went out (the summary's "passed on").
    pub other_records: u64,
}

/// What [`Outputs::deliver`] tells the engine.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Go,
    /// Stop the producers: stdout is gone, or the store writer died.
    Stop,
    /// The store writer died: stop taking batches at all.
    Broken,
}

impl<'a> Outputs<'a> {
    /// Starts the store writer thread (when there is a store) beside the
    /// other outputs.
    pub fn start(
        stdout: &'a mut Output,
        store: Option<(Store, &StorePlan)>,
        store_input: bool,
        notify: Option<Dispatcher>,
        tap: Option<Arc<Tap>>,
        committed: Option<tokio::sync::watch::Sender<i64>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Outputs<'a> {
        let store = store.map(|(store, sp)| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Handed>(4);
            let cfg = store::WriterConfig {
                batch: sp.batch,
                flush: sp.flush,
                store_input,
                readings: sp.records.contains(&crate::spec::RecordKind::Reading),
                anomalies: sp.records.contains(&crate::spec::RecordKind::Anomaly),
                alerts: sp.records.contains(&crate::spec::RecordKind::Alert),
                counters: tap.as_ref().map(|t| t.commits.clone()),
                committed,
                stop: Some(stop),
            };
            (tx, std::thread::spawn(move || store::run_writer(store, rx, cfg)))
        });
        Outputs { stdout, stdout_closed: false, stdout_error: None, store, notify, tap, other_records: 0 }
    }

    /// Hands one batch that left the chain to every output. `notes` are the
    /// notifications its alert records stand for; `checkpoint` the stage
    /// state after it (the store writes it with the batch's last record);
    /// `idle` says nothing else is waiting (stdout is flushed then, so live
    /// runs trickle); `ending` that this is the last batch (the notifiers
    /// finish their queues).
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &mut self,
        records: Vec<Record>,
        notes: &[Notification],
        on_commit: Option<CommitHook>,
        checkpoint: Option<Vec<StateRow>>,
        idle: bool,
        ending: bool,
        rt: &tokio::runtime::Runtime,
    ) -> Flow {
        let mut flow = Flow::Go;
        let mut log_lost = false;
        if let Some(d) = self.notify.as_mut() {
            for n in notes {
                d.send(n);
            }
            let done = if ending { d.finish(rt) } else { d.outcomes() };
            if let Some(t) = &self.tap {
                t.counters.notifications_sent.store(d.sent, Ordering::Relaxed);
                t.counters.notifications_failed.store(d.failed, Ordering::Relaxed);
            }
            if let (Some((tx, _)), false) = (&self.store, done.is_empty()) {
                // The notification log: stored, never printed.
                let log = done.into_iter().map(|d| Record::Delivery(Box::new(d))).collect();
                log_lost = tx.send(Handed::records(log)).is_err();
            }
        }
        if let (Some(t), false) = (&self.tap, records.is_empty()) {
            t.observe(&records);
        }
        if records.is_empty() && on_commit.is_none() && checkpoint.is_none() && !log_lost {
            return flow;
        }
        self.other_records += records.iter().filter(|r| !matches!(r, Record::Reading(_))).count() as u64;
        if !self.stdout_closed {
            let written = self.stdout.write_batch(&records);
            let written = written.and_then(|()| if idle { self.stdout.flush() } else { Ok(()) });
            if let Err(e) = written {
                self.stdout_closed = true;
                flow = Flow::Stop;
                if let OutputError::Io(e) = e {
                    self.stdout_error = Some(e);
                }
            }
        }
        match &self.store {
            Some((tx, _)) => {
                if log_lost || tx.send(Handed { records, on_commit, checkpoint }).is_err() {
                    // The writer died; its error is collected by `finish`.
                    return Flow::Broken;
                }
            }
            None => {
                // Nothing stored: the records are safe once written out.
                if let Some(hook) = on_commit {
                    if !self.stdout_closed && self.stdout.flush().is_ok() {
                        hook();
                    }
                }
            }
        }
        flow
    }

    /// Whether records go to a store (checkpoints have somewhere to go).
    pub fn stores(&self) -> bool {
        self.store.is_some()
    }

    /// Flushes stdout, waits for the store's last commit, and returns the
    /// store (for the stage state) with its counts.
    pub fn finish(mut self) -> Result<Finished, EngineError> {
        if !self.stdout_closed {
            match self.stdout.flush() {
                Ok(()) => {}
                Err(OutputError::Closed) => self.stdout_closed = true,
                Err(OutputError::Io(e)) => self.stdout_error = Some(e),
            }
        }
        let store = match self.store.take() {
            Some((tx, writer)) => {
                drop(tx);
                match writer.join() {
                    Ok(Ok(done)) => Some(done),
                    Ok(Err((e, _))) => return Err(EngineError::Store(e)),
                    Err(_) => return Err(EngineError::Internal("the store writer panicked".into())),
                }
            }
            None => None,
        };
        Ok(Finished { store, stdout_closed: self.stdout_closed, stdout_error: self.stdout_error })
    }
}

/// The outputs after the last batch.
pub(super) struct Finished {
    pub store: Option<(Store, StoreStats)>,
    pub stdout_closed: bool,
    pub stdout_error: Option<std::io::Error>,
}
