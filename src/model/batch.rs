//! What producers hand the engine, and how a run is told to stop.
//!
//! A [`Batch`] carries records and, optionally, a [`CommitHook`]: the
//! producer's way to learn that the records are safe (the delivery rule is
//! written down on `engine::outputs`). [`Shutdown`] is the one stop signal
//! every part of a run watches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::record::Record;

/// Records handed to the engine by a producer, and what to do once they are safe.
#[derive(Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Runs once every record of the batch is committed to the store, or
    /// written to the output when nothing is stored (never when the output
    /// failed). MQTT acknowledges its messages here: at-least-once delivery.
    pub on_commit: Option<CommitHook>,
}

pub type CommitHook = Box<dyn FnOnce() + Send>;

impl From<Vec<Record>> for Batch {
    fn from(records: Vec<Record>) -> Self {
        Batch { records, on_commit: None }
    }
}

/// The shutdown signal shared by every part of a run.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown { flag: Arc::new(AtomicBool::new(false)), tx: Arc::new(watch::channel(false).0) }
    }
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
    /// Whether the run was told to stop.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
    /// The flag itself, for threads that poll it between batches.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
