//! Sources of records: the simulator and `--input` files. Each produces
//! batches of [`Record`](crate::engine::record::Record)s for the engine.

pub mod input;
pub mod simulate;
