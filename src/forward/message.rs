//! Commits → messages: the envelope every forward target sends (pure code).
//!
//! One commit becomes one message per record kind, or several parts when it
//! holds more than `max_records` records or `max_bytes` of NDJSON. Parts are
//! numbered across the whole commit (readings first, then anomalies, then
//! alerts), so `<gateway>:<epoch>:<commit>.<part>` names the same records
//! every time the same commit is sent with the same filters — which is what
//! lets the hub drop a re-send as a duplicate.

use crate::model::envelope::Envelope;
use crate::model::record::Record;
use crate::spec::{Compression, RecordKind};

/// The version of the records' format named in every message
/// (`Eg-Schema`): the store schema in which the stored records last
/// changed. Store v6 changed only how the store lays them out (channel ids,
/// rollups), not the records a message carries, so it stays 5.
pub const SCHEMA: i64 = 5;

/// Who sends: the fields of every message id and envelope.
#[derive(Debug, Clone)]
pub struct Sender {
    pub site: String,
    pub gateway: String,
    /// The store's epoch (16 hex digits): a re-created store never reuses ids.
    pub epoch: String,
    /// `<prefix>.<site>.<gateway>`; a message goes to `<subject>.<kind>`.
    pub subject: String,
}

/// One message, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: RecordKind,
    pub commit: i64,
    pub part: u32,
    /// Position of its first record among the commit's forwarded records.
    pub offset: u64,
    pub count: u64,
    /// NDJSON lines, compressed when `compressed`.
    pub body: Vec<u8>,
    pub compressed: bool,
    /// Sent from the backlog (after a restart or an outage), not live.
    pub backlog: bool,
    /// The last message of its commit.
    pub last: bool,
}

impl Message {
    /// The message's envelope: who sent it and which records it holds.
    pub fn envelope(&self, s: &Sender) -> Envelope {
        Envelope {
            site: s.site.clone(),
            gateway: s.gateway.clone(),
            epoch: s.epoch.clone(),
            commit: self.commit,
            part: self.part,
            offset: self.offset,
            count: self.count,
            schema: SCHEMA,
            backlog: self.backlog,
            zstd: self.compressed,
        }
    }

    pub fn subject(&self, s: &Sender) -> String {
        format!("{}.{}", s.subject, self.kind.as_str())
    }

    /// The envelope as header pairs (NATS headers).
    pub fn headers(&self, s: &Sender) -> Vec<(&'static str, String)> {
        self.envelope(s).headers()
    }
}

/// How records become messages.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub max_records: usize,
    pub max_bytes: usize,
    pub compression: Compression,
}

fn kind_of(r: &Record) -> Option<RecordKind> {
    match r {
        Record::Reading(_) => Some(RecordKind::Reading),
        Record::Anomaly(_) => Some(RecordKind::Anomaly),
        Record::Alert(_) => Some(RecordKind::Alert),
        Record::Delivery(_) | Record::Other { .. } => None,
    }
}

/// The messages of one commit. `keep` filters records (kinds, channel
/// globs); `records` are in the store's order (readings, anomalies, alerts).
pub fn split(
    commit: i64,
    records: &[Record],
    keep: &dyn Fn(&Record) -> bool,
    shape: Shape,
    backlog: bool,
) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut body = Vec::new();
    let mut current: Option<(RecordKind, u64, u64)> = None; // kind, offset, count
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(256);
    let close = |out: &mut Vec<Message>, body: &mut Vec<u8>, cur: Option<(RecordKind, u64, u64)>| {
        if let Some((kind, first, count)) = cur {
            let raw = std::mem::take(body);
            let (body, compressed) = match shape.compression {
                // Level 3, zstd's default: most of the gain at a fraction of the CPU.
                Compression::Zstd => match zstd::bulk::compress(&raw, 3) {
                    Ok(z) => (z, true),
                    Err(_) => (raw, false),
                },
                Compression::None => (raw, false),
            };
            let part = out.len() as u32;
            out.push(Message { kind, commit, part, offset: first, count, body, compressed, backlog, last: false });
        }
    };
    for r in records {
        let Some(kind) = kind_of(r) else { continue };
        if !keep(r) {
            continue;
        }
        line.clear();
        r.write_ndjson(&mut line);
        let full = match current {
            Some((k, _, n)) => {
                k != kind || n as usize >= shape.max_records || (n > 0 && body.len() + line.len() > shape.max_bytes)
            }
            None => true,
        };
        if full {
            close(&mut out, &mut body, current.take());
            current = Some((kind, offset, 0));
        }
        body.extend_from_slice(&line);
        if let Some(c) = current.as_mut() {
            c.2 += 1;
        }
        offset += 1;
    }
    close(&mut out, &mut body, current.take());
    if let Some(m) = out.last_mut() {
        m.last = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Reading;

    fn shape(max_records: usize, max_bytes: usize) -> Shape {
        Shape { max_records, max_bytes, compression: Compression::None }
    }

    fn sender() -> Sender {
        Sender { site: "berlin".into(), gateway: "gw-1".into(), epoch: "00ff".into(), subject: "eg.berlin.gw-1".into() }
    }

    fn commit_of(n: i64) -> Vec<Record> {
        let mut v: Vec<Record> = (0..n).map(|i| Reading::sample(&format!("c{}", i % 3), i, Some(i as f64))).collect();
        v.push(Record::Anomaly(Box::new(crate::model::record::Anomaly {
            ts: 0,
            channel: "c0".into(),
            detector: "d".into(),
            method: "zscore".into(),
            value: Some(1.0),
            score: None,
            expected: None,
            threshold: None,
            detail: String::new(),
            from_input: false,
        })));
        v
    }

    #[test]
    fn a_commit_splits_by_kind_count_and_size_with_stable_ids() {
        let recs = commit_of(25);
        let all = |_: &Record| true;
        let m = split(7, &recs, &all, shape(10, 1 << 20), false);
        // 25 readings in 10 + 10 + 5, then one anomaly message.
        assert_eq!(
            m.iter().map(|m| (m.kind, m.count, m.offset)).collect::<Vec<_>>(),
            vec![
                (RecordKind::Reading, 10, 0),
                (RecordKind::Reading, 10, 10),
                (RecordKind::Reading, 5, 20),
                (RecordKind::Anomaly, 1, 25)
            ]
        );
        assert_eq!(m.iter().filter(|m| m.last).count(), 1);
        assert!(m[3].last);
        assert_eq!(m[2].envelope(&sender()).id(), "gw-1:00ff:7.2");
        assert_eq!(m[3].subject(&sender()), "eg.berlin.gw-1.anomaly");
        // The same commit gives the same messages: re-sends are duplicates.
        assert_eq!(m, split(7, &recs, &all, shape(10, 1 << 20), false));
        // Every line is a record as printed.
        let text = String::from_utf8(m[0].body.clone()).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(text.starts_with("{\"kind\":\"reading\""));
    }

    #[test]
    fn bytes_bound_a_part_but_a_record_always_fits() {
        let recs = commit_of(6);
        let line_len = {
            let mut l = Vec::new();
            recs[0].write_ndjson(&mut l);
            l.len()
        };
        let m = split(1, &recs, &|_| true, shape(1000, line_len * 2), false);
        assert!(m.iter().filter(|m| m.kind == RecordKind::Reading).all(|m| m.count <= 2));
        // Smaller than one line: one record per part, never an empty one.
        let m = split(1, &recs, &|_| true, shape(1000, 10), false);
        assert!(m.iter().all(|m| m.count == 1));
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn filters_and_compression_and_the_backlog_mark() {
        let recs = commit_of(9);
        let only_c1 = |r: &Record| r.channel() == Some("c1");
        let m = split(3, &recs, &only_c1, Shape { compression: Compression::Zstd, ..shape(100, 1 << 20) }, true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].count, 3);
        assert!(m[0].compressed && m[0].backlog);
        let plain = zstd::bulk::decompress(&m[0].body, 1 << 20).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap().lines().count(), 3);
        let h = m[0].headers(&sender());
        assert!(h.contains(&("Eg-Backlog", "1".into())));
        assert!(h.contains(&("Content-Encoding", "zstd".into())));
        assert!(h.contains(&("Eg-Count", "3".into())));
        // Nothing kept: no message at all.
        assert!(split(3, &recs, &|_| false, shape(100, 1 << 20), false).is_empty());
    }
}
