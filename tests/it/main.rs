//! The integration tests: one binary that drives `edgeguard` the way users do.

mod acquire;
mod alert;
mod backup;
mod center;
mod crash;
mod detect;
mod diagnostics;
mod diskfull;
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
mod reload;
mod serial;
mod serve;
mod signals;
mod support;
mod systemd;
mod validate;
