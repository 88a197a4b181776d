//! Where records go: stdout (data, in NDJSON, CSV or a table), the DuckDB
//! store (the one writer thread), and the notifiers (stdout, file, exec,
//! webhook, MQTT, email over [`smtp`]). The store is also the outbox forward targets read
//! back ([`outbox`]). The engine feeds them through one seam, `engine::outputs`,
//! where the delivery rule is written down.

pub mod notify;
pub mod outbox;
pub mod smtp;
pub mod stdout;
pub mod store;
