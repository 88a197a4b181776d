//! Where records go: stdout (data) and the DuckDB store.

pub mod stdout;
pub mod store;
