//! The daemon's control: its signals, and reloading the spec without a
//! restart.
//!
//! `serve` runs the engine in a loop; [`Control`] holds the running engine's
//! stop switch. SIGINT/SIGTERM stop the run and end the loop (a second
//! signal exits at once, 130/143). SIGHUP or `POST /api/v1/reload` compile
//! the spec again: when it compiles, the plan waits in [`Control`] and the
//! run is stopped as on SIGTERM — sources stop, everything read is processed
//! and committed, MQTT acknowledges — and the loop starts the next run with
//! the new plan and the stage state the last one ended with (unchanged
//! rules, detectors, channels and fusion groups continue; new ones start
//! fresh). The HTTP server, its port and its stream clients stay up. When
//! it does not compile, the errors are logged (and answered to the API),
//! the running pipeline is left alone, and `edgeguard_reloads_total{result="failed"}`
//! counts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::compile::Plan;
use crate::engine::tap::Tap;
use crate::model::batch::Shutdown;

/// Compiles the spec again: the plan, or the errors as text.
pub type Loader = Box<dyn Fn() -> Result<Plan, String> + Send + Sync>;

pub struct Control {
    load: Loader,
    tap: Arc<Tap>,
    /// The running engine's stop switch.
    current: Mutex<Shutdown>,
    /// SIGINT/SIGTERM came: no run after this one.
    stopping: AtomicBool,
    /// A plan that compiled, waiting to replace the running one.
    next: Mutex<Option<Plan>>,
    /// One reload at a time.
    reloading: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    /// Also makes itself the tap's reload (`POST /api/v1/reload`).
    pub fn new(load: Loader, tap: Arc<Tap>) -> Arc<Control> {
        let c = Arc::new(Control {
            load,
            tap: tap.clone(),
            current: Mutex::new(Shutdown::new()),
            stopping: AtomicBool::new(false),
            next: Mutex::new(None),
            reloading: Mutex::new(()),
        });
        let weak = Arc::downgrade(&c);
        tap.set_reload(Arc::new(move || weak.upgrade().map_or(Err("serve is stopping".into()), |c| c.reload())));
        c
    }

    /// The stop switch of the run about to start.
    pub fn next_run(&self) -> Shutdown {
        let s = Shutdown::new();
        if self.stopping.load(Ordering::SeqCst) {
            s.trigger();
        }
        *lock(&self.current) = s.clone();
        s
    }

    /// Stops the running pipeline for good (the first SIGINT/SIGTERM).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.tap.heartbeat.stop();
        lock(&self.current).trigger();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Compiles the spec again; when it compiles, stops the running
    /// pipeline so the loop starts the new one. Blocks while compiling.
    pub fn reload(&self) -> Result<(), String> {
        let _one = lock(&self.reloading);
        if self.is_stopping() {
            return Err("serve is stopping".into());
        }
        match (self.load)() {
            Ok(plan) => {
                *lock(&self.next) = Some(plan);
                self.tap.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("reload: the spec compiles; switching to it");
                lock(&self.current).trigger();
                Ok(())
            }
            Err(e) => {
                self.tap.counters.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reload: keeping the running pipeline: {e}");
                Err(e)
            }
        }
    }

    /// The plan a reload left for the next run, if any.
    pub fn take_next(&self) -> Option<Plan> {
        lock(&self.next).take()
    }
}

/// Watches SIGINT, SIGTERM and SIGHUP on a thread of its own until the
/// process exits.
pub fn watch_signals(control: Arc<Control>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Installed now, before the first run starts: a signal from here on is
    // never lost to the default action.
    let (term, int, hup) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    std::thread::Builder::new().name("edgeguard-signals".into()).spawn(move || {
        let (mut term, mut int, mut hup) = (term, int, hup);
        rt.block_on(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => {
                        let c = control.clone();
                        // Compiling takes a moment; signals stay watched meanwhile.
                        tokio::task::spawn_blocking(move || { let _ = c.reload(); });
                    }
                }
            }
            control.stop();
            tracing::info!("stopping: finishing what was read and committing it (signal again to exit at once)");
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            std::process::exit(code);
        });
    })?;
    Ok(())
}
