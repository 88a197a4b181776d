//! Processing stages: synchronous code over batches of records.

pub mod alert;
pub mod compute;
pub mod detect;
pub mod fuse;
pub mod iforest;
pub mod quiet;
pub mod validate;
