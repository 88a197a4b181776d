//! Processing stages: synchronous code over batches of records.

pub mod validate;
