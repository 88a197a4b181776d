//! Sources of records: devices (Modbus), the simulator and `--input` files.
//! Each produces batches of [`Record`](crate::engine::record::Record)s for
//! the engine.

pub mod backoff;
pub mod input;
pub mod modbus;
pub mod mqtt;
pub mod payload;
pub mod replay;
pub mod rng;
pub mod serial;
pub mod simulate;

/// Sleeps until `t`, or forever without one (a disabled `select!` branch).
pub(crate) async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
