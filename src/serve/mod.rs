//! `edgeguard serve`: the whole pipeline as a daemon, with an HTTP API, a
//! live stream, Prometheus metrics and a dashboard served from the binary.
//!
//! The engine runs on the calling thread as for every other command; the
//! HTTP server runs on a thread of its own with its own tokio runtime and
//! sees the run through a [`Tap`]: the latest reading per channel (served
//! from memory, so `/api/v1/channels` never touches the database), a
//! broadcast of every record (the stream), a way in for posted readings,
//! and a connection to the store for range queries.

mod api;
pub mod control;
mod health;
mod http;
mod layout;
mod metrics;
pub mod sql;
pub mod systemd;

pub use health::{StoreWatch, Watch};
pub use layout::Layout;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::compile::cron::Schedule;
use crate::compile::{BackupPlan, ServePlan};
use crate::engine::tap::Tap;

/// Longest request body (a batch of posted readings).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A running HTTP server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    health: Arc<health::Health>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `plan.listen` and serves until [`Server::stop`]. The token and
    /// TLS files are read now: a missing one stops the start.
    pub fn start(
        plan: &ServePlan,
        tap: Arc<Tap>,
        spec_name: &str,
        backup: Option<BackupPlan>,
        watch: Watch,
    ) -> Result<Server, StartError> {
        let schedule = match backup.as_ref().and_then(|b| b.schedule.as_deref()) {
            Some(s) => Some(Schedule::parse(s).map_err(|e| StartError::Config(format!("backup.schedule: {e}")))?),
            None => None,
        };
        let backups = backup.as_ref().map(|b| b.dir.clone());
        // SQL from the API reads the store's tables, never other files on
        // the gateway; backups still write to their folder.
        tap.confine_store(backups.iter().cloned().collect());
        let token = match &plan.token {
            Some(t) => Some(t.read().map_err(|e| StartError::Config(format!("serve.token: {e}")))?),
            None => None,
        };
        if token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(StartError::Config("serve.token: use at least 16 characters".into()));
        }
        let tls = match &plan.tls {
            Some(t) => Some(http::tls_acceptor(t).map_err(|e| StartError::Config(format!("serve.tls: {e}")))?),
            None => None,
        };
        let listener = std::net::TcpListener::bind(plan.listen)
            .map_err(|e| StartError::Bind(format!("cannot listen on {}: {e}", plan.listen)))?;
        listener.set_nonblocking(true).map_err(|e| StartError::Bind(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (sched_tap, sched_stop) = (tap.clone(), stop_rx.clone());
        let health = Arc::new(health::Health::new(watch, tap.clone()));
        let (sampler, sampler_stop) = (health.clone(), stop_rx.clone());
        let watched = health.clone();
        let state = api::State::new(tap, token, plan.cors.clone(), spec_name, stop_rx.clone(), backups, health)
            .metric_channels(plan.metric_channels);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("edgeguard-http")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let thread = std::thread::Builder::new()
            .name("edgeguard-http".into())
            .spawn(move || {
                rt.spawn(health::run_sampler(sampler, sampler_stop));
                if let (Some(schedule), Some(b)) = (schedule, backup) {
                    rt.spawn(scheduled_backups(schedule, b, sched_tap, sched_stop));
                }
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    let app = api::router(state);
                    let mut stop_rx = stop_rx;
                    let stop = async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    };
                    let result = match tls {
                        Some(acceptor) => {
                            axum::serve(http::TlsListener::new(listener, acceptor), app)
                                .with_graceful_shutdown(stop)
                                .await
                        }
                        None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
                    };
                    if let Err(e) = result {
                        tracing::error!("HTTP server: {e}");
                    }
                });
                rt.shutdown_timeout(std::time::Duration::from_secs(2));
            })
            .map_err(|e| StartError::Bind(e.to_string()))?;
        Ok(Server { addr, health: watched, stop: stop_tx, thread: Some(thread) })
    }

    /// What the health checks watch, after a reload.
    pub fn set_watch(&self, watch: Watch) {
        self.health.set_watch(watch);
    }

    /// Stops accepting, ends open streams, and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The token or TLS files (exit 78).
    #[error("{0}")]
    Config(String),
    /// The address (exit 1).
    #[error("{0}")]
    Bind(String),
    /// The HTTP runtime could not be built (exit 70).
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// `backup.schedule`: a backup (then a prune to `keep`) at every minute the
/// schedule matches, in local time, made with serve's own store connection.
async fn scheduled_backups(
    schedule: Schedule,
    plan: BackupPlan,
    tap: Arc<Tap>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use chrono::{Datelike, Timelike};
    loop {
        let now = chrono::Local::now();
        let into_minute =
            Duration::from_secs(now.second() as u64) + Duration::from_nanos(now.nanosecond() as u64 % 1_000_000_000);
        let wait = Duration::from_secs(60).saturating_sub(into_minute);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let at = chrono::Local::now() + chrono::Duration::seconds(1);
        if !schedule.matches(at.minute(), at.hour(), at.day(), at.month(), at.weekday().num_days_from_sunday()) {
            continue;
        }
        let (Some(conn), Some(path)) =
            (tap.connection(), tap.store_path.lock().unwrap_or_else(|e| e.into_inner()).clone())
        else {
            continue;
        };
        let plan = plan.clone();
        let done = tokio::task::spawn_blocking(move || {
            let m = crate::backup::make(&conn, &path, &plan.dir, &mut |_| {})?;
            crate::backup::prune(&plan.dir, plan.keep)?;
            Ok::<_, crate::backup::BackupError>(m)
        })
        .await;
        match done {
            Ok(Ok(m)) => tracing::info!(id = m.id.as_str(), rows = m.rows(), "scheduled backup made"),
            Ok(Err(e)) => tracing::error!("scheduled backup failed: {e}"),
            Err(_) => tracing::error!("scheduled backup failed"),
        }
    }
}
