//! The environment variables edgeguard reads, named once.

/// Log filter (`tracing-subscriber` syntax), e.g. `edgeguard=debug`.
pub const LOG: &str = "EDGEGUARD_LOG";
/// DuckDB's memory limit for the store (default 32MB).
pub const DUCKDB_MEMORY: &str = "EDGEGUARD_DUCKDB_MEMORY";
/// DuckDB's thread count for the store (default 1).
pub const DUCKDB_THREADS: &str = "EDGEGUARD_DUCKDB_THREADS";
