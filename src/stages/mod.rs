//! Processing stages: synchronous code over batches of records.

pub mod alert;
pub mod detect;
pub mod fuse;
pub mod iforest;
pub mod validate;

/// A reading as templates and expressions see it (the fields of its NDJSON line).
pub fn reading_context(r: &crate::engine::record::Reading) -> minijinja::Value {
    let mut ts = Vec::with_capacity(27);
    crate::engine::time::write_rfc3339(r.ts, &mut ts);
    minijinja::context! {
        kind => "reading",
        ts => String::from_utf8_lossy(&ts),
        channel => &*r.channel,
        value => r.value,
        text => r.text.as_deref(),
        unit => r.unit.as_deref(),
        quality => r.quality.as_str(),
        flags => r.flags.names().collect::<Vec<_>>(),
        source => &*r.source,
    }
}
