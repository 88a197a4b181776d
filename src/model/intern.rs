//! Interning and hashing for names on the hot path: every channel, unit and
//! source name is allocated once per run, and the maps keyed by them use a
//! fast non-cryptographic hash.

use std::collections::HashMap;
use std::sync::Arc;

use super::channel::check_channel_name;
use super::ndjson::LineError;

/// A fast, non-cryptographic hasher (the Fx hash of rustc) for maps keyed by
/// channel names on the hot path. SipHash's DoS resistance buys nothing
/// here: the maps are bounded in size, and names come from the operator's
/// own devices.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// Longest unit or source name accepted from input (bytes).
pub const MAX_NAME: usize = 200;

/// Interns channel, source and unit names so each is allocated once.
///
/// Bounded: past `cap` distinct names new ones are allocated per use instead
/// of remembered, and every name is at most 200 bytes, so hostile input with
/// unique names cannot grow it without bound. Channel names live apart from
/// units and sources: only they are checked, once, when first seen.
pub struct Interner {
    channels: FxHashMap<Box<str>, Arc<str>>,
    names: FxHashMap<Box<str>, Arc<str>>,
    cap: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner::with_cap(100_000)
    }
}

fn intern(map: &mut FxHashMap<Box<str>, Arc<str>>, cap: usize, s: &str) -> Arc<str> {
    if let Some(a) = map.get(s) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    if map.len() < cap {
        map.insert(Box::from(s), a.clone());
    }
    a
}

impl Interner {
    pub fn with_cap(cap: usize) -> Self {
        Interner { channels: FxHashMap::default(), names: FxHashMap::default(), cap }
    }

    /// A unit or source name.
    pub fn name(&mut self, what: &str, s: &str) -> Result<Arc<str>, LineError> {
        if s.len() > MAX_NAME {
            return Err(LineError(format!("`{what}` is longer than {MAX_NAME} bytes")));
        }
        Ok(intern(&mut self.names, self.cap, s))
    }

    /// A channel name, checked the first time it is seen.
    pub fn channel(&mut self, s: &str) -> Result<Arc<str>, LineError> {
        if let Some(a) = self.channels.get(s) {
            return Ok(a.clone());
        }
        check_channel_name(s).map_err(|why| LineError(format!("`channel` is not a channel name: {why}")))?;
        Ok(intern(&mut self.channels, self.cap, s))
    }
}
