//! Where records go: stdout (data) and the DuckDB store.

pub mod notify;
pub mod stdout;
pub mod store;
