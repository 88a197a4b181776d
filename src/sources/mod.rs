//! Sources of records: devices (Modbus), the simulator and `--input` files.
//! Each produces batches of [`Record`](crate::engine::record::Record)s for
//! the engine.

pub mod backoff;
pub mod input;
pub mod modbus;
pub mod mqtt;
pub mod payload;
pub mod rng;
pub mod serial;
pub mod simulate;
