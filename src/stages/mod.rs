//! Processing stages: synchronous code over batches of records.

pub mod fuse;
pub mod validate;
