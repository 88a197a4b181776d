//! The `modbus` source: polls the planned requests of one link on schedule.
//!
//! One task per link, one request at a time (a serial bus carries one frame
//! at a time, and a TCP device answers in order). Requests run at their own
//! interval; when several fall due together they run in plan order with the
//! configured pause between them.
//!
//! Faults stay local: a failed request yields `bad` readings (value null,
//! flagged `timeout`, `exception_N`, `crc` or `disconnected`) for its points
//! only, and every other request keeps its schedule. After anything but an
//! exception a TCP link is closed and reopened, and a serial bus drops what
//! it buffered before its next request, so a late answer can never be read
//! as the answer to a later request (tokio-modbus also checks the
//! transaction id on TCP and the unit and function on RTU, and we check the
//! length). Reopening is immediate while the link has answered since it was
//! opened (one absent unit behind a gateway must not slow the others) and
//! backs off exponentially, with jitter, while nothing answers. Within a
//! cycle, a unit that timed out is not asked again. Exception 2 (illegal
//! address) is logged once per request, which is then retried only every
//! [`ILLEGAL_ADDRESS_RETRY`] (or its interval, if longer).

pub mod decode;
pub mod link;
pub mod probe;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::compile::{ModbusPlan, PointPlan, RequestPlan};
use crate::model::batch::Batch;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::{self, Micros};
use crate::sources::{Source, SourceContext, SourceStats, Stats, StatsHandle};
use crate::spec::PointType;
use link::{Data, Endpoint, Fault, Link};
use std::future::Future;
use std::pin::Pin;

use super::backoff::Backoff;

/// How often a request answered with "illegal data address" is tried again.
pub const ILLEGAL_ADDRESS_RETRY: Duration = Duration::from_secs(60);
/// First and longest wait between reconnection attempts.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Counters of one Modbus source, for the run summary and `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ModbusStats {
    pub requests: u64,
    pub responses: u64,
    pub timeouts: u64,
    pub exceptions: BTreeMap<u8, u64>,
    pub crc_errors: u64,
    pub mismatches: u64,
    pub disconnects: u64,
    pub connect_failures: u64,
    pub reconnects: u64,
    pub latency: Latency,
    /// Per unit id: did it answer at least once, did a request to it fail.
    pub units: BTreeMap<u8, UnitStatus>,
}

impl Stats for ModbusStats {
    fn snapshot(&self) -> SourceStats {
        SourceStats {
            summary: self.to_string(),
            devices: self.units.iter().map(|(u, s)| (format!("unit {u}"), s.answered)).collect(),
            refused: None,
            polls: self.requests,
            errors: self.timeouts
                + self.exceptions.values().sum::<u64>()
                + self.crc_errors
                + self.mismatches
                + self.disconnects,
            reconnects: self.reconnects,
            mismatches: self.mismatches,
            latency: (self.latency.count > 0).then(|| crate::sources::LatencySummary {
                count: self.latency.count,
                mean_us: self.latency.sum_us / self.latency.count,
                p99_us: self.latency.quantile_us(0.99),
                max_us: self.latency.max_us,
            }),
        }
    }
}

impl Source for Poller {
    fn stats(&self) -> StatsHandle {
        StatsHandle::of(self.stats.clone())
    }
    fn run(self: Box<Self>, cx: SourceContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.poll(cx.once.is_some(), cx.tx, cx.stop))
    }
}

impl std::fmt::Display for ModbusStats {
    /// One line of the run summary.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} answered", self.requests, self.responses)?;
        if self.timeouts > 0 {
            write!(f, ", {} timeouts", self.timeouts)?;
        }
        for (code, n) in &self.exceptions {
            write!(f, ", exception {code} ({}) ×{n}", link::exception_name(*code))?;
        }
        if self.crc_errors > 0 {
            write!(f, ", {} CRC errors", self.crc_errors)?;
        }
        if self.mismatches > 0 {
            write!(f, ", {} mismatched answers", self.mismatches)?;
        }
        if self.disconnects + self.connect_failures > 0 {
            write!(f, ", {} disconnects, {} failed connects", self.disconnects, self.connect_failures)?;
        }
        if self.reconnects > 0 {
            write!(f, ", {} reconnects", self.reconnects)?;
        }
        if let Some(avg) = self.latency.sum_us.checked_div(self.latency.count) {
            let l = &self.latency;
            write!(
                f,
                ", latency avg {} p99 ≤{} max {}",
                human_us(avg),
                human_us(l.quantile_us(0.99)),
                human_us(l.max_us)
            )?;
        }
        Ok(())
    }
}

fn human_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct UnitStatus {
    pub answered: bool,
    pub failed: bool,
}

/// Response times in power-of-two microsecond buckets: cheap to record,
/// good enough for percentiles in a summary.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    buckets: [u64; 32],
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[(64 - us.leading_zeros() as usize).min(31)] += 1;
        self.count += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// Upper bound of the bucket holding quantile `q` (0–1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return (1u64 << i).min(self.max_us);
            }
        }
        self.max_us
    }
}

struct Req {
    plan: RequestPlan,
    next_due: Instant,
    /// Set after exception 2: not asked again before this.
    suppressed_until: Option<Instant>,
    /// Logged the current fault already (cleared on success).
    reported: Option<Fault>,
    last_ts: Micros,
}

struct Point {
    plan: PointPlan,
    channel: Arc<str>,
    unit: Option<Arc<str>>,
    /// Last value reported, for the deadband.
    last: Option<f64>,
    /// When a reading of it was last reported, for the deadband's heartbeat.
    last_sent: Micros,
}

/// A running Modbus source.
pub struct Poller {
    id: Arc<str>,
    endpoint: Endpoint,
    timeout: Duration,
    pause: Duration,
    reqs: Vec<Req>,
    points: Vec<Point>,
    conn: Option<Link>,
    /// A response (or exception) arrived since the link was last opened.
    answered_since_open: bool,
    ever_opened: bool,
    next_open: Instant,
    backoff: Backoff,
    down_logged: bool,
    stats: Arc<Mutex<ModbusStats>>,
}

impl Poller {
    pub fn new(id: &str, plan: &ModbusPlan) -> Poller {
        let stats = Arc::new(Mutex::new(ModbusStats::default()));
        let now = Instant::now();
        let reqs = plan
            .requests
            .iter()
            .map(|r| Req { plan: r.clone(), next_due: now, suppressed_until: None, reported: None, last_ts: 0 })
            .collect();
        let points = plan
            .points
            .iter()
            .map(|p| Point {
                plan: p.clone(),
                channel: Arc::from(p.channel.as_str()),
                unit: p.unit.as_deref().map(Arc::from),
                last: None,
                last_sent: Micros::MIN,
            })
            .collect();
        let seed = id.bytes().fold(time::now_micros() as u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        {
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            for r in &plan.requests {
                s.units.entry(r.unit_id).or_default();
            }
        }
        // On a serial bus, frames are told apart by silence: at least 3.5
        // characters (1.75 ms above 19200 baud) between our frames.
        let pause = match &plan.serial {
            Some(line) if plan.transport == crate::spec::ModbusTransport::Rtu => plan.pause.max(line.frame_silence()),
            _ => plan.pause,
        };
        Poller {
            id: Arc::from(id),
            endpoint: Endpoint::of(plan),
            timeout: plan.timeout,
            pause,
            reqs,
            points,
            conn: None,
            answered_since_open: false,
            ever_opened: false,
            next_open: now,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP, seed),
            down_logged: false,
            stats,
        }
    }

    /// Polls until `stop`, sending one batch per cycle. With `once`, polls
    /// every request once and returns.
    async fn poll(mut self, once: bool, tx: mpsc::Sender<Batch>, mut stop: watch::Receiver<bool>) {
        if once {
            let mut batch = Vec::with_capacity(self.points.len());
            let all: Vec<usize> = (0..self.reqs.len()).collect();
            self.cycle(&all, &mut batch, &stop).await;
            let _ = tx.send(batch.into()).await;
            return;
        }
        let mut due = Vec::with_capacity(self.reqs.len());
        loop {
            let Some(next) = self.reqs.iter().map(|r| r.next_due).min() else {
                return;
            };
            // The timer ticks in milliseconds: a request due sooner runs now
            // (an interval below 1 ms means "back to back").
            if next.saturating_duration_since(Instant::now()) >= Duration::from_millis(1) {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            } else if *stop.borrow() {
                return;
            } else {
                tokio::task::yield_now().await;
            }
            let now = Instant::now();
            due.clear();
            for (i, r) in self.reqs.iter_mut().enumerate() {
                if r.next_due <= now {
                    due.push(i);
                    // Keep the phase; skip ticks missed while the link was slow.
                    let period = r.plan.interval;
                    let behind = now.duration_since(r.next_due).as_nanos() / period.as_nanos().max(1);
                    r.next_due += period * (behind as u32 + 1);
                }
            }
            let mut batch = Vec::with_capacity(self.points.len());
            self.cycle(&due, &mut batch, &stop).await;
            if !batch.is_empty() && tx.send(batch.into()).await.is_err() {
                return;
            }
        }
    }

    /// Runs the requests `due` (indexes into `reqs`) in order.
    async fn cycle(&mut self, due: &[usize], out: &mut Vec<Record>, stop: &watch::Receiver<bool>) {
        // Units that timed out in this cycle are not asked again in it.
        let mut silent_units: Vec<u8> = Vec::new();
        for (n, &i) in due.iter().enumerate() {
            if *stop.borrow() {
                return;
            }
            let now = Instant::now();
            if self.reqs[i].suppressed_until.is_some_and(|t| now < t) {
                continue;
            }
            if n > 0 && !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
            let unit = self.reqs[i].plan.unit_id;
            let result = if silent_units.contains(&unit) { Err(Fault::Timeout) } else { self.request(i).await };
            if matches!(result, Err(Fault::Timeout)) && !silent_units.contains(&unit) {
                silent_units.push(unit);
            }
            self.emit(i, result, out);
        }
    }

    /// One request, opening the link first if needed.
    async fn request(&mut self, i: usize) -> Result<Data, Fault> {
        if self.conn.is_none() {
            if let Err(f) = self.open().await {
                let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                s.units.entry(self.reqs[i].plan.unit_id).or_default().failed = true;
                return Err(f);
            }
        }
        let Some(link) = self.conn.as_mut() else {
            return Err(Fault::Disconnected("not connected".into()));
        };
        let r = &self.reqs[i].plan;
        let started = Instant::now();
        let result =
            link::read(&mut link.ctx, self.endpoint.is_rtu(), r.unit_id, r.table, r.address, r.count, self.timeout)
                .await;
        let elapsed = started.elapsed();
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.requests += 1;
        let unit = s.units.entry(r.unit_id).or_default();
        match &result {
            Ok(_) => unit.answered = true,
            Err(f) if f.answered() => unit.answered = true,
            Err(_) => unit.failed = true,
        }
        match &result {
            Ok(_) => {
                s.responses += 1;
                s.latency.record(elapsed);
            }
            Err(Fault::Timeout) => s.timeouts += 1,
            Err(Fault::Exception(c)) => {
                s.latency.record(elapsed);
                *s.exceptions.entry(*c).or_default() += 1;
            }
            Err(Fault::Crc) => s.crc_errors += 1,
            Err(Fault::Mismatch(_)) => s.mismatches += 1,
            Err(Fault::Disconnected(_)) => s.disconnects += 1,
        }
        drop(s);
        match &result {
            Ok(_) => self.answered_since_open = true,
            Err(f) if f.answered() => self.answered_since_open = true,
            Err(f) => match self.conn.as_ref().and_then(|l| l.resync.as_ref()) {
                // A serial bus stays open through a silent or garbled unit;
                // what it buffered is dropped before the next request.
                Some(resync) if !f.is_link_failure() => resync.store(true, std::sync::atomic::Ordering::Relaxed),
                _ => {
                    tracing::debug!(source = %self.id, "{}: {f}; reopening the link", self.endpoint);
                    self.close();
                }
            },
        }
        result
    }

    /// Opens the link unless a backoff wait is running.
    async fn open(&mut self) -> Result<(), Fault> {
        if Instant::now() < self.next_open {
            return Err(Fault::Disconnected("waiting to reconnect".into()));
        }
        let opened = tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), link::open(&self.endpoint)).await;
        match opened {
            Ok(Ok(ctx)) => {
                if self.ever_opened {
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).reconnects += 1;
                }
                if self.down_logged {
                    tracing::info!(source = %self.id, "{}: connected again", self.endpoint);
                    self.down_logged = false;
                }
                self.ever_opened = true;
                self.answered_since_open = false;
                self.conn = Some(ctx);
                Ok(())
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connection timed out".to_string(),
                };
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).connect_failures += 1;
                let wait = self.backoff.fail();
                self.next_open = Instant::now() + wait;
                if !self.down_logged {
                    tracing::warn!(source = %self.id, "{}: cannot connect: {why}; retrying with backoff (up to {:?})",
                        self.endpoint, self.backoff.cap());
                    self.down_logged = true;
                }
                Err(Fault::Disconnected(why))
            }
        }
    }

    /// Drops the link. Reopen at once while it had answered since it was
    /// opened; otherwise back off.
    fn close(&mut self) {
        self.conn = None;
        if self.answered_since_open {
            self.backoff.succeed();
            self.next_open = Instant::now();
        } else {
            self.next_open = Instant::now() + self.backoff.fail();
        }
        self.answered_since_open = false;
    }

    /// Turns the outcome of request `i` into readings of its points.
    fn emit(&mut self, i: usize, result: Result<Data, Fault>, out: &mut Vec<Record>) {
        let req = &mut self.reqs[i];
        let ts = time::now_micros().max(req.last_ts + 1);
        req.last_ts = ts;
        match &result {
            Ok(_) => {
                if let Some(f) = req.reported.take() {
                    tracing::info!(source = %self.id, "unit {} {:?} {}+{}: answering again after {f}",
                        req.plan.unit_id, req.plan.table, req.plan.address, req.plan.count);
                }
                self.backoff.succeed();
                req.suppressed_until = None;
            }
            Err(f) => {
                if req.reported.as_ref() != Some(f) {
                    let what = format!(
                        "unit {} {} {}+{}",
                        req.plan.unit_id,
                        format!("{:?}", req.plan.table).to_lowercase(),
                        req.plan.address,
                        req.plan.count
                    );
                    if matches!(f, Fault::Exception(2)) {
                        tracing::warn!(source = %self.id, "{what}: {f}; check the addresses, retrying every {:?}",
                            ILLEGAL_ADDRESS_RETRY.max(req.plan.interval));
                    } else {
                        tracing::warn!(source = %self.id, "{what}: {f}");
                    }
                    req.reported = Some(f.clone());
                }
                if matches!(f, Fault::Exception(2)) {
                    req.suppressed_until = Some(Instant::now() + ILLEGAL_ADDRESS_RETRY.max(req.plan.interval));
                }
            }
        }
        let base = req.plan.address;
        for &pi in &req.plan.points {
            let p = &mut self.points[pi];
            let mut text = None;
            let (value, quality, flags) = match &result {
                Err(f) => {
                    p.last = None;
                    (None, Quality::Bad, f.flag())
                }
                Ok(Data::Words(words)) if p.plan.kind == PointType::String => {
                    let off = usize::from(p.plan.address - base);
                    match words.get(off..off + usize::from(p.plan.count)) {
                        Some(w) => {
                            text = Some(Arc::from(decode::text(p.plan.order, w)));
                            (None, Quality::Good, Flags::empty())
                        }
                        None => (None, Quality::Bad, Flags::INVALID),
                    }
                }
                Ok(data) => match point_value(&p.plan, base, data) {
                    Some(v) if v.is_finite() => {
                        if let (Some(db), Some(last)) = (p.plan.deadband, p.last) {
                            // Within the deadband and the heartbeat: not reported.
                            let beat = p.plan.heartbeat.map_or(i64::MAX, |h| h.as_micros() as i64);
                            if (v - last).abs() <= db && ts.saturating_sub(p.last_sent) < beat {
                                continue;
                            }
                        }
                        p.last = Some(v);
                        (Some(v), Quality::Good, Flags::empty())
                    }
                    _ => {
                        p.last = None;
                        (None, Quality::Bad, Flags::INVALID)
                    }
                },
            };
            p.last_sent = ts;
            out.push(Record::Reading(Reading {
                ts,
                channel: p.channel.clone(),
                value,
                text,
                unit: p.unit.clone(),
                quality,
                flags,
                source: self.id.clone(),
                from_input: false,
                fusion: None,
            }));
        }
    }
}

/// The scaled value of a point from the data of the request that read it
/// (starting at `base`). Strings have no number: `None`.
pub fn point_value(p: &PointPlan, base: u16, data: &Data) -> Option<f64> {
    let off = usize::from(p.address - base);
    let raw = match data {
        Data::Bits(bits) => f64::from(u8::from(*bits.get(off)?)),
        Data::Words(words) => {
            if p.kind == PointType::String {
                return None;
            }
            let end = off + decode::words_of(p.kind);
            decode::raw_number(p.kind, p.order, p.bit, words.get(off..end)?)?
        }
    };
    Some(raw * p.scale + p.offset)
}
