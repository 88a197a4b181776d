//! `--input FILE|-`: records from NDJSON (or CSV) instead of live sources.
//!
//! Lines are split with a hard cap on their length: a longer line is skipped
//! without being buffered, so memory stays bounded whatever the input. A line
//! that does not parse is counted and reported with its number and the
//! reason; it never stops a lenient run. A UTF-8 BOM at the start is ignored.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::intern::Interner;
use crate::model::ndjson::{parse_ndjson_line, LineError};
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::{now_micros, parse_rfc3339};

/// Longest line accepted by default (bytes).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
/// Records per batch handed to the engine.
pub const BATCH: usize = 4096;
/// Input bytes per batch at most, whatever the record count.
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// Rejections reported one by one before only counting.
pub const REPORTED_REJECTIONS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum InputFormat {
    #[default]
    Ndjson,
    Csv,
}

/// Outcome of reading an input.
#[derive(Debug, Default, Clone, Copy)]
pub struct InputStats {
    pub lines: u64,
    pub records: u64,
    pub rejected: u64,
    pub bytes: u64,
}

/// Splits a byte stream into lines of at most `max` bytes. Longer lines are
/// reported as [`Line::TooLong`] and skipped to their end without buffering.
/// Owns its read buffer so a caller can tell whether the next line is already
/// in memory or needs a read that may block ([`LineReader::has_line`]).
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// A line that spans two reads.
    acc: Vec<u8>,
    pub bytes: u64,
}

pub enum Line<'a> {
    Ok(&'a [u8]),
    TooLong(usize),
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self::with_capacity(inner, max, 1 << 20)
    }

    pub fn with_capacity(inner: R, max: usize, cap: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: vec![0; cap.max(1)].into_boxed_slice(),
            pos: 0,
            end: 0,
            acc: Vec::new(),
            bytes: 0,
        }
    }

    /// True when a whole line is buffered, so `next_line` will not read.
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.pos..self.end]).is_some()
    }

    /// The next line without its `\n` (and `\r`), or None at the end.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.acc.clear();
        let mut too_long: Option<usize> = None;
        loop {
            if self.pos < self.end {
                let avail = &self.buf[self.pos..self.end];
                if let Some(i) = memchr::memchr(b'\n', avail) {
                    let start = self.pos;
                    self.pos += i + 1;
                    self.bytes += i as u64 + 1;
                    if let Some(n) = too_long {
                        return Ok(Some(Line::TooLong(n + i)));
                    }
                    if self.acc.is_empty() {
                        if i > self.max {
                            return Ok(Some(Line::TooLong(i)));
                        }
                        let mut line = &self.buf[start..start + i];
                        if line.last() == Some(&b'\r') {
                            line = &line[..line.len() - 1];
                        }
                        return Ok(Some(Line::Ok(line)));
                    }
                    if self.acc.len() + i > self.max {
                        return Ok(Some(Line::TooLong(self.acc.len() + i)));
                    }
                    self.acc.extend_from_slice(&self.buf[start..start + i]);
                    return Ok(Some(Line::Ok(trim_cr(&self.acc))));
                }
                let n = avail.len();
                match &mut too_long {
                    Some(t) => *t += n,
                    None if self.acc.len() + n > self.max => {
                        too_long = Some(self.acc.len() + n);
                        self.acc.clear();
                    }
                    None => self.acc.extend_from_slice(avail),
                }
                self.bytes += n as u64;
                self.pos = self.end;
            }
            let n = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.pos = 0;
            self.end = n;
            if n == 0 {
                return Ok(match too_long {
                    Some(t) => Some(Line::TooLong(t)),
                    None if self.acc.is_empty() => None,
                    None => Some(Line::Ok(trim_cr(&self.acc))),
                });
            }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Opens `path` (or stdin for `-`), with its size when known (for progress).
pub fn open(path: &str) -> io::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path == "-" {
        return Ok((Box::new(io::stdin()), None));
    }
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
    }
    let len = meta.is_file().then_some(meta.len());
    Ok((Box::new(f), len))
}

/// Where rejected lines are reported (the engine logs them).
pub type RejectFn<'a> = dyn FnMut(u64, &str) + 'a;

/// Reads every record of `reader`, calling `emit` with batches. Stops early
/// when `stop` is set (a signal) or `emit` returns false (the engine is gone).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub fn read_records(
    reader: Box<dyn Read + Send>,
    format: InputFormat,
    max_line: usize,
    max_records: Option<u64>,
    source_name: &str,
    stop: &AtomicBool,
    progress: &AtomicU64,
    reject: &mut RejectFn,
    emit: &mut dyn FnMut(Vec<Record>) -> bool,
) -> io::Result<InputStats> {
    let mut lines = LineReader::new(reader, max_line);
    let mut stats = InputStats::default();
    let mut interner = Interner::default();
    let default_source: Arc<str> = Arc::from(source_name);
    let mut batch = Vec::with_capacity(BATCH);
    let mut batch_bytes = 0usize;
    let mut csv_header: Option<CsvHeader> = None;
    // Lines without `ts` are stamped on arrival; one clock read per batch.
    let mut now = now_micros();
    let mut hand_over = |batch: &mut Vec<Record>, batch_bytes: &mut usize, bytes: u64| {
        progress.store(bytes, Ordering::Relaxed);
        *batch_bytes = 0;
        emit(std::mem::replace(batch, Vec::with_capacity(BATCH)))
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        // Hand over what is read before a read that may block (a quiet pipe),
        // so a signal then loses nothing that was read. After a signal, the
        // lines already in memory are still processed; nothing more is read.
        if !lines.has_line() {
            if !batch.is_empty() && !hand_over(&mut batch, &mut batch_bytes, lines.bytes) {
                return Ok(stats);
            }
            if stopping {
                break;
            }
        }
        if max_records.is_some_and(|m| stats.records >= m) {
            break;
        }
        let line = match lines.next_line()? {
            None => break,
            Some(l) => l,
        };
        stats.lines += 1;
        let n = stats.lines;
        let result: Result<Option<Record>, LineError> = match line {
            Line::TooLong(len) => Err(LineError(format!("line of {len} bytes is longer than the limit of {max_line}"))),
            Line::Ok(mut bytes) => {
                if n == 1 {
                    bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                }
                batch_bytes += bytes.len();
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    Ok(None)
                } else {
                    match format {
                        InputFormat::Ndjson => parse_ndjson_line(bytes, &mut interner, now, &default_source).map(Some),
                        InputFormat::Csv => match &csv_header {
                            None => CsvHeader::parse(bytes).map(|h| {
                                csv_header = Some(h);
                                None
                            }),
                            Some(h) => h.record(bytes, &mut interner, now, &default_source).map(Some),
                        },
                    }
                }
            }
        };
        match result {
            Ok(Some(rec)) => {
                stats.records += 1;
                batch.push(rec);
            }
            Ok(None) => {}
            Err(LineError(why)) => {
                stats.rejected += 1;
                reject(n, &why);
            }
        }
        // Batches are bounded in records and in bytes (long pass-through lines).
        if batch.len() >= BATCH || batch_bytes >= MAX_BATCH_BYTES {
            if !hand_over(&mut batch, &mut batch_bytes, lines.bytes) {
                return Ok(stats);
            }
            now = now_micros();
        }
    }
    if !batch.is_empty() {
        hand_over(&mut batch, &mut batch_bytes, lines.bytes);
    }
    stats.bytes = lines.bytes;
    progress.store(lines.bytes, Ordering::Relaxed);
    Ok(stats)
}

/// Column positions of a CSV input, from its header line.
struct CsvHeader {
    ts: Option<usize>,
    channel: usize,
    value: usize,
    unit: Option<usize>,
    quality: Option<usize>,
    flags: Option<usize>,
    source: Option<usize>,
    kind: Option<usize>,
}

fn split_csv(line: &[u8]) -> Result<Vec<String>, LineError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => Ok(rec.iter().map(str::to_string).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(LineError(format!("not CSV: {e}"))),
    }
}

impl CsvHeader {
    fn parse(line: &[u8]) -> Result<CsvHeader, LineError> {
        let cols = split_csv(line)?;
        let find = |name: &str| cols.iter().position(|c| c.trim() == name);
        Ok(CsvHeader {
            ts: find("ts"),
            channel: find("channel").ok_or_else(|| LineError("the CSV header has no `channel` column".into()))?,
            value: find("value").ok_or_else(|| LineError("the CSV header has no `value` column".into()))?,
            unit: find("unit"),
            quality: find("quality"),
            flags: find("flags"),
            source: find("source"),
            kind: find("kind"),
        })
    }

    fn record(
        &self,
        line: &[u8],
        interner: &mut Interner,
        now: i64,
        default_source: &Arc<str>,
    ) -> Result<Record, LineError> {
        let cols = split_csv(line)?;
        let get = |i: Option<usize>| i.and_then(|i| cols.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty());
        if let Some(k) = get(self.kind) {
            if k != "reading" {
                return Err(LineError(format!("CSV input carries readings only, not `{k}`")));
            }
        }
        let channel = interner.channel(get(Some(self.channel)).ok_or_else(|| LineError("no `channel`".into()))?)?;
        let value = match get(Some(self.value)) {
            None | Some("null") => None,
            Some(v) => Some(v.parse::<f64>().map_err(|_| LineError(format!("`value` {v:?} is not a number")))?),
        };
        let ts = match get(self.ts) {
            None => now,
            Some(t) => parse_rfc3339(t).ok_or_else(|| LineError(format!("`ts` {t:?} is not an RFC 3339 time")))?,
        };
        let mut quality = match get(self.quality) {
            None => Quality::Good,
            Some(q) => {
                Quality::parse(q).ok_or_else(|| LineError(format!("`quality` {q:?} is not good, suspect or bad")))?
            }
        };
        if value.is_none() {
            quality = Quality::Bad;
        }
        let mut flags = Flags::empty();
        for f in get(self.flags).into_iter().flat_map(|s| s.split([';', '|', ' '])).filter(|s| !s.is_empty()) {
            flags.insert(Flags::from_name(f));
        }
        Ok(Record::Reading(Reading {
            ts,
            channel,
            value,
            text: None,
            unit: get(self.unit).map(|u| interner.name("unit", u)).transpose()?,
            quality,
            flags,
            source: match get(self.source) {
                None => default_source.clone(),
                Some(s) => interner.name("source", s)?,
            },
            from_input: true,
            fusion: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<String, usize>> {
        let mut r = LineReader::with_capacity(input, max, 4);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Ok(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                Line::TooLong(n) => Err(n),
            });
        }
        out
    }

    #[test]
    fn splits_crlf_caps_length_and_keeps_the_last_line_without_newline() {
        assert_eq!(
            lines(b"ab\r\ncd\n0123456789abc\nlast", 8),
            vec![Ok("ab".into()), Ok("cd".into()), Err(13), Ok("last".into())]
        );
        assert_eq!(lines(b"", 8), vec![]);
        assert_eq!(lines(b"\n", 8), vec![Ok(String::new())]);
    }

    #[test]
    fn csv_with_header() {
        let data = b"ts,channel,value,quality\n2026-01-01T00:00:00Z,a,1.5,good\n2026-01-01T00:00:01Z,a,,\nx,a,1,good\n";
        let mut recs = Vec::new();
        let mut rejected = Vec::new();
        let stats = read_records(
            Box::new(&data[..]),
            InputFormat::Csv,
            1024,
            None,
            "input",
            &AtomicBool::new(false),
            &AtomicU64::new(0),
            &mut |n, why| rejected.push((n, why.to_string())),
            &mut |b| {
                recs.extend(b);
                true
            },
        )
        .unwrap();
        assert_eq!((stats.lines, stats.records, stats.rejected), (4, 2, 1));
        assert_eq!(rejected[0].0, 4);
        let Record::Reading(r) = &recs[1] else { panic!() };
        assert_eq!((r.value, r.quality), (None, Quality::Bad));
    }
}
