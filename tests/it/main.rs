//! The integration tests: one binary that drives `edgeguard` the way users do.

mod acquire;
mod alert;
mod backup;
mod center;
mod detect;
mod diagnostics;
mod fleet;
mod fleet_mqtt;
mod fuse;
mod generated;
mod input;
mod layers;
mod modbus;
mod mqtt;
mod nats_peer;
mod peers;
mod pipes;
mod query;
mod serial;
mod serve;
mod serve_contract;
mod serve_health;
mod signals;
mod support;
mod validate;
