//! The `serial` source: instruments that print lines on a serial port.
//!
//! Bytes are split at the delimiter (a trailing `\r` is dropped) with a hard
//! cap on the line length: a longer line is skipped to its end without being
//! buffered. Each line is parsed by a regex with named groups, as delimited
//! columns, or as JSON; a line that does not parse is counted and logged,
//! never fatal. When the device goes away (end of file or an error) its
//! channels get one `bad` reading flagged `disconnected`, and the port is
//! reopened with backoff, so an unplugged adapter costs no CPU.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::payload::{json_number, json_time, text_number, text_time};
use super::sleep_until;
use crate::compile::{SerialLine, SerialPlan};
use crate::model::batch::Batch;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::{self, Micros};
use crate::sources::{Source, SourceContext, SourceStats, Stats, StatsHandle};
use crate::spec::{LineFormat, Parity};
use std::future::Future;
use std::pin::Pin;

/// Rejected lines logged one by one before only counting.
const REPORTED: u64 = 20;

/// Splits a byte stream into lines of at most `max` bytes.
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
    delim: u8,
    /// Length so far of a line that is too long and being skipped.
    skipping: Option<usize>,
}

/// A complete line, or the length of one that was too long.
pub enum Frame<'a> {
    Line(&'a [u8]),
    TooLong(usize),
}

impl Framer {
    pub fn new(max: usize, delim: u8) -> Self {
        Framer { buf: Vec::with_capacity(max.min(64 << 10)), max, delim, skipping: None }
    }

    /// Feeds bytes; `f` gets every frame they complete.
    pub fn push(&mut self, mut data: &[u8], mut f: impl FnMut(Frame<'_>)) {
        while !data.is_empty() {
            let end = memchr::memchr(self.delim, data);
            let chunk = &data[..end.unwrap_or(data.len())];
            match &mut self.skipping {
                Some(n) => *n += chunk.len(),
                None if self.buf.len() + chunk.len() > self.max => {
                    self.skipping = Some(self.buf.len() + chunk.len());
                    self.buf.clear();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            let Some(end) = end else { return };
            match self.skipping.take() {
                Some(n) => f(Frame::TooLong(n)),
                None => {
                    let mut line = &self.buf[..];
                    if self.delim == b'\n' && line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    f(Frame::Line(line));
                    self.buf.clear();
                }
            }
            data = &data[end + 1..];
        }
    }

    /// Drops a partial line (the device went away mid-line).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.skipping = None;
    }
}

enum Parser {
    Regex { re: Regex, groups: Vec<(String, usize)>, ts: Option<String> },
    Csv { sep: u8, cols: Vec<(usize, usize)>, ts: Option<usize> },
    Json { ptrs: Vec<(String, usize)>, ts: Option<String> },
}

impl Parser {
    /// Channel index per key, in `plan.channels` order.
    fn new(plan: &SerialPlan) -> Result<Parser, String> {
        Ok(match plan.format {
            LineFormat::Regex => Parser::Regex {
                re: Regex::new(plan.pattern.as_deref().unwrap_or("")).map_err(|e| e.to_string())?,
                groups: plan.channels.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect(),
                ts: plan.timestamp.clone(),
            },
            LineFormat::Csv => Parser::Csv {
                sep: plan.separator,
                cols: plan
                    .channels
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| k.parse().map(|c| (c, i)).map_err(|_| format!("`{k}` is not a column")))
                    .collect::<Result<_, _>>()?,
                ts: plan
                    .timestamp
                    .as_deref()
                    .map(|t| t.parse().map_err(|_| format!("`{t}` is not a column")))
                    .transpose()?,
            },
            LineFormat::Json => Parser::Json {
                ptrs: plan.channels.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect(),
                ts: plan.timestamp.clone(),
            },
        })
    }

    /// (channel index, value) pairs of one line, and its time if it has one.
    fn parse(&self, line: &[u8], values: &mut Vec<(usize, f64)>) -> Result<Option<Micros>, String> {
        values.clear();
        let text = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_string())?;
        match self {
            Parser::Regex { re, groups, ts } => {
                let caps = re.captures(text).ok_or("the line does not match the pattern")?;
                for (name, i) in groups {
                    if let Some(m) = caps.name(name) {
                        let v = text_number(m.as_str().as_bytes())
                            .ok_or_else(|| format!("group `{name}` is {:?}, not a number", m.as_str()))?;
                        values.push((*i, v));
                    }
                }
                match ts.as_deref().and_then(|g| caps.name(g)) {
                    Some(m) => text_time(m.as_str()).map(Some).ok_or_else(|| format!("{:?} is not a time", m.as_str())),
                    None => Ok(None),
                }
            }
            Parser::Csv { sep, cols, ts } => {
                let fields: Vec<&str> = text.split(char::from(*sep)).collect();
                for (col, i) in cols {
                    let f = fields.get(*col).ok_or_else(|| format!("the line has no column {col}"))?;
                    let v = text_number(f.as_bytes()).ok_or_else(|| format!("column {col} is {f:?}, not a number"))?;
                    values.push((*i, v));
                }
                match ts {
                    Some(c) => {
                        let f = fields.get(*c).ok_or_else(|| format!("the line has no column {c}"))?;
                        text_time(f).map(Some).ok_or_else(|| format!("{f:?} is not a time"))
                    }
                    None => Ok(None),
                }
            }
            Parser::Json { ptrs, ts } => {
                let j: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
                for (ptr, i) in ptrs {
                    let v = j.pointer(ptr).ok_or_else(|| format!("no `{ptr}` in the line"))?;
                    values.push((*i, json_number(v).ok_or_else(|| format!("`{ptr}` is not a number"))?));
                }
                match ts {
                    Some(p) => {
                        let v = j.pointer(p).ok_or_else(|| format!("no `{p}` in the line"))?;
                        json_time(v).map(Some).ok_or_else(|| format!("`{p}` is not a time"))
                    }
                    None => Ok(None),
                }
            }
        }
    }
}

/// Counters of one serial source.
#[derive(Debug, Default, Clone)]
pub struct SerialStats {
    pub lines: u64,
    pub readings: u64,
    pub rejected: u64,
    pub too_long: u64,
    pub opens: u64,
    pub disconnects: u64,
    /// Per channel: did a line give it a reading.
    pub channels: Vec<(String, bool)>,
}

impl Stats for SerialStats {
    fn snapshot(&self) -> SourceStats {
        SourceStats {
            summary: self.to_string(),
            devices: std::iter::once(("device".to_string(), self.opens > 0))
                .chain(self.channels.iter().map(|(c, ok)| (format!("channel {c}"), *ok)))
                .collect(),
            refused: None,
            polls: self.lines,
            errors: self.rejected + self.disconnects,
            reconnects: self.opens.saturating_sub(1),
            mismatches: 0,
            latency: None,
        }
    }
}

impl Source for LineSource {
    fn stats(&self) -> StatsHandle {
        StatsHandle::of(self.stats.clone())
    }
    fn run(self: Box<Self>, cx: SourceContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.read(cx.once, cx.tx, cx.stop))
    }
}

impl std::fmt::Display for SerialStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} lines, {} readings", self.lines, self.readings)?;
        if self.rejected > 0 {
            write!(f, ", {} rejected ({} too long)", self.rejected, self.too_long)?;
        }
        if self.disconnects > 0 {
            write!(f, ", {} disconnects, {} opens", self.disconnects, self.opens)?;
        }
        Ok(())
    }
}

pub async fn open(line: &SerialLine) -> std::io::Result<tokio_serial::SerialStream> {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(line.device.as_str(), line.baud)
        .parity(match line.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(match line.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .stop_bits(if line.stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One })
        .open_native_async()
        .map_err(std::io::Error::from)
}

/// A running serial source.
pub struct LineSource {
    id: Arc<str>,
    plan: SerialPlan,
    parser: Parser,
    channels: Vec<Arc<str>>,
    stats: Arc<Mutex<SerialStats>>,
}

impl LineSource {
    pub fn new(id: &str, plan: &SerialPlan) -> Result<LineSource, String> {
        let stats = Arc::new(Mutex::new(SerialStats::default()));
        stats.lock().unwrap_or_else(|e| e.into_inner()).channels =
            plan.channels.iter().map(|(_, c)| (c.clone(), false)).collect();
        Ok(LineSource {
            id: Arc::from(id),
            parser: Parser::new(plan)?,
            channels: plan.channels.iter().map(|(_, c)| Arc::from(c.as_str())).collect(),
            plan: plan.clone(),
            stats,
        })
    }

    /// One bad reading per channel, flagged `flag`; false when the engine is gone.
    async fn report(&self, flag: Flags, tx: &mpsc::Sender<Batch>) -> bool {
        let mut out = Vec::with_capacity(self.channels.len());
        self.bad(flag, &mut out);
        tx.send(out.into()).await.is_ok()
    }

    fn bad(&self, flag: Flags, out: &mut Vec<Record>) {
        let ts = time::now_micros();
        for c in &self.channels {
            out.push(Record::Reading(Reading {
                ts,
                channel: c.clone(),
                value: None,
                text: None,
                unit: None,
                quality: Quality::Bad,
                flags: flag,
                source: self.id.clone(),
                from_input: false,
                fusion: None,
            }));
        }
    }

    /// Reads until `stop`; with `once`, until every channel has a reading or
    /// the time is up.
    async fn read(self, once: Option<Duration>, tx: mpsc::Sender<Batch>, mut stop: watch::Receiver<bool>) {
        let mut framer = Framer::new(self.plan.max_line, self.plan.delimiter);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10), time::now_micros() as u64);
        let deadline = once.map(|t| Instant::now() + t);
        let mut produced = vec![false; self.channels.len()];
        let mut values = Vec::with_capacity(self.channels.len());
        let mut buf = vec![0u8; 4096];
        let mut reported = 0u64;
        let mut down = false; // the device is known to be gone (reported once)
        let mut done = false;
        while !done {
            let mut port = match open(&self.plan.line).await {
                Ok(p) => {
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).opens += 1;
                    if down {
                        tracing::info!(source = %self.id, "{} is back", self.plan.line.device);
                        down = false;
                    }
                    backoff.succeed();
                    p
                }
                Err(e) => {
                    if !down {
                        tracing::warn!(source = %self.id, "cannot open {}: {e}; retrying with backoff", self.plan.line.device);
                        down = true;
                        if !self.report(Flags::DISCONNECTED, &tx).await {
                            return;
                        }
                    }
                    if once.is_some() {
                        return; // --once: a device that is not there is the answer
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.fail()) => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            };
            framer.reset();
            let mut idle_since = Instant::now();
            let mut idle_reported = false;
            loop {
                let idle_at = self.plan.idle.filter(|_| !idle_reported).map(|d| idle_since + d);
                enum Ev {
                    Stop,
                    Idle,
                    Read(std::io::Result<usize>),
                }
                let ev = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => Ev::Stop,
                    _ = sleep_until(deadline) => Ev::Stop,
                    _ = sleep_until(idle_at) => Ev::Idle,
                    r = port.read(&mut buf) => Ev::Read(r),
                };
                let n = match ev {
                    Ev::Stop => {
                        done = true;
                        break;
                    }
                    Ev::Idle => {
                        idle_reported = true;
                        if !self.report(Flags::STALE, &tx).await {
                            return;
                        }
                        continue;
                    }
                    Ev::Read(r) => r,
                };
                let gone = match n {
                    Ok(0) => Some("end of file".to_string()),
                    Ok(n) => {
                        let out = self.lines(&mut framer, &buf[..n], &mut values, &mut produced, &mut reported);
                        if !out.is_empty() {
                            idle_since = Instant::now();
                            idle_reported = false;
                            if tx.send(out.into()).await.is_err() {
                                return;
                            }
                        }
                        if once.is_some() && produced.iter().all(|&p| p) {
                            done = true;
                            break;
                        }
                        None
                    }
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = gone {
                    tracing::warn!(source = %self.id, "{}: {why}; reopening with backoff", self.plan.line.device);
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).disconnects += 1;
                    down = true;
                    if !self.report(Flags::DISCONNECTED, &tx).await {
                        return;
                    }
                    if once.is_some() {
                        done = true;
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.fail()) => {}
                        _ = stop.wait_for(|s| *s) => done = true,
                    }
                    break;
                }
            }
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        for (i, p) in produced.iter().enumerate() {
            if let Some(c) = stats.channels.get_mut(i) {
                c.1 |= *p;
            }
        }
    }
}

impl LineSource {
    /// The readings of the lines that `data` completes; rejections counted and logged.
    fn lines(
        &self,
        framer: &mut Framer,
        data: &[u8],
        values: &mut Vec<(usize, f64)>,
        produced: &mut [bool],
        reported: &mut u64,
    ) -> Vec<Record> {
        let now = time::now_micros();
        let mut out = Vec::new();
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        framer.push(data, |frame| {
            stats.lines += 1;
            let why = match frame {
                Frame::TooLong(len) => {
                    stats.too_long += 1;
                    format!("line of {len} bytes is over max_line ({})", self.plan.max_line)
                }
                Frame::Line(line) => match self.parser.parse(line, values) {
                    Ok(ts) => {
                        for &(i, v) in values.iter() {
                            produced[i] = true;
                            out.push(Record::Reading(Reading {
                                ts: ts.unwrap_or(now),
                                channel: self.channels[i].clone(),
                                value: Some(v),
                                text: None,
                                unit: None,
                                quality: Quality::Good,
                                flags: Flags::empty(),
                                source: self.id.clone(),
                                from_input: false,
                                fusion: None,
                            }));
                        }
                        stats.readings += values.len() as u64;
                        return;
                    }
                    Err(why) => why,
                },
            };
            stats.rejected += 1;
            *reported += 1;
            if *reported <= REPORTED {
                tracing::warn!(source = %self.id, "line rejected: {why}");
            } else if *reported == REPORTED + 1 {
                tracing::warn!(source = %self.id, "more rejected lines; only counting them from here");
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut f = Framer::new(max, b'\n');
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, |fr| {
                out.push(match fr {
                    Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Frame::TooLong(n) => format!("<{n}>"),
                })
            });
        }
        out
    }

    #[test]
    fn lines_across_reads_crlf_and_over_long_lines() {
        assert_eq!(frames(16, &[b"T=2", b"1.5\r\nT=22\n"]), vec!["T=21.5", "T=22"]);
        assert_eq!(frames(8, &[b"0123456789", b"abc\nok\n"]), vec!["<13>", "ok"]);
        assert_eq!(frames(8, &[b"12345678\n123456789\n"]), vec!["12345678", "<9>"]);
        assert_eq!(frames(8, &[b"\n\n"]), vec!["", ""]);
        assert!(frames(8, &[b"no end"]).is_empty());
    }

    proptest::proptest! {
        /// However the bytes are cut into reads, the same frames come out,
        /// and the buffer never holds more than `max` bytes.
        #[test]
        fn framing_does_not_depend_on_read_boundaries(
            data in proptest::collection::vec(proptest::prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r')], 0..300),
            cut in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let whole = frames(10, &[&data]);
            let mut parts: Vec<&[u8]> = Vec::new();
            let (mut at, mut k) = (0, 0);
            while at < data.len() {
                let n = cut[k % cut.len()].min(data.len() - at);
                parts.push(&data[at..at + n]);
                at += n;
                k += 1;
            }
            proptest::prop_assert_eq!(whole, frames(10, &parts));
        }
    }
}
