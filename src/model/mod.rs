//! The vocabulary every layer passes around, and nothing else: it imports no
//! other module of the crate (a test in `tests/it/layers.rs` keeps it so).
//!
//! * [`record`] — `Reading`, `Quality`, `Flags`, `Fusion`, `Record`: what flows.
//! * [`ndjson`] — the wire format: writing records, parsing a line back.
//! * [`flat_line`] — the fast path of parsing: the plain flat line, without serde.
//! * [`guard`] — the channels an alert's `when` can hold for, read from its text.
//! * [`intern`] — interned names and the fast hash maps keyed by them.
//! * [`time`] — microsecond timestamps, RFC 3339, `now`, relative times.
//! * [`quantity`] — durations and rates written as text (`500ms`, `5/s`).
//! * [`channel`] — channel-name rules and channel globs.
//! * [`rng`] — a small deterministic random number generator.
//! * [`batch`] — what producers hand the engine (`Batch`, `CommitHook`) and `Shutdown`.
//! * [`envelope`] — the envelope of a forwarded message (headers or a first line), both ways.
//! * [`expr`] — the expressions of computed channels: parse, evaluate, check units.
//! * [`env`] — the names of the environment variables edgeguard reads.
//! * [`template`] — the run-time template environment and a reading's context.

pub mod batch;
pub mod channel;
pub mod env;
pub mod envelope;
pub mod expr;
pub mod flat_line;
pub mod guard;
pub mod intern;
pub mod ndjson;
pub mod quantity;
pub mod record;
pub mod rng;
pub mod template;
pub mod time;
