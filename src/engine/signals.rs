//! Signals: the first SIGINT/SIGTERM stops the producers (everything read
//! is still processed, printed and committed); a second exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::model::batch::Shutdown;

/// First signal: stop producers and drain. Second: exit at once.
pub(crate) async fn watch(shutdown: Shutdown, interrupted: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    interrupted.store(true, Ordering::SeqCst);
    shutdown.trigger();
    tracing::info!("stopping: finishing what was read and committing it (signal again to exit at once)");
    let code = tokio::select! {
        _ = term.recv() => 143,
        _ = int.recv() => 130,
    };
    std::process::exit(code);
}
