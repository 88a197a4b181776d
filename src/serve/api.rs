//! The routes of `serve` (`/api/v1/…`, `/metrics`, the health checks and
//! the dashboard) and their handlers.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State as St};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;

use super::health::Health;
use super::metrics as m;
use super::sql::{self, SqlError};
use crate::engine::tap::Tap;
use crate::model::batch::Batch;
use crate::model::intern::Interner;
use crate::model::ndjson::parse_ndjson_line;
use crate::model::record::Record;
use crate::model::time::{format_rfc3339, now_micros, parse_when, Micros};
use crate::sinks::store::TierSource;

/// Most rows a range query returns.
const MAX_ROWS: i64 = 100_000;
/// Longest time to read a request and start the answer (a backup is
/// exempt: it answers when done).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// SQL queries run at once; more wait for a turn.
const QUERIES: usize = 2;
/// How long the channel list is reused before it is built again.
const CHANNELS_TTL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct State {
    tap: Arc<Tap>,
    token: Option<Arc<str>>,
    cors: Arc<Vec<String>>,
    name: Arc<str>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// `backup.dir`, for `POST /api/v1/backup`.
    backups: Option<Arc<std::path::PathBuf>>,
    /// One backup at a time.
    backing_up: Arc<tokio::sync::Mutex<()>>,
    /// The last `/api/v1/channels` body: (tap version, built at, body).
    channels: Arc<Mutex<(u64, Instant, Bytes)>>,
    /// Source states, store and queue checks.
    health: Arc<Health>,
    /// `serve.metric_channels`.
    metric_channels: usize,
    /// SQL queries running at once (`POST /api/v1/query`); more wait.
    queries: Arc<tokio::sync::Semaphore>,
}

impl State {
    pub fn new(
        tap: Arc<Tap>,
        token: Option<String>,
        cors: Vec<String>,
        name: &str,
        stop: tokio::sync::watch::Receiver<bool>,
        backups: Option<std::path::PathBuf>,
        health: Arc<Health>,
    ) -> State {
        State {
            tap,
            token: token.map(Arc::from),
            cors: Arc::new(cors),
            name: Arc::from(name),
            stop,
            backups: backups.map(Arc::new),
            backing_up: Arc::new(tokio::sync::Mutex::new(())),
            channels: Arc::new(Mutex::new((u64::MAX, Instant::now(), Bytes::new()))),
            health,
            metric_channels: crate::compile::ServePlan::METRIC_CHANNELS,
            queries: Arc::new(tokio::sync::Semaphore::new(QUERIES)),
        }
    }

    /// At most `n` channels as gauges in `/metrics` (`serve.metric_channels`).
    pub fn metric_channels(mut self, n: usize) -> State {
        self.metric_channels = n;
        self
    }
}

pub fn router(state: State) -> Router {
    let token = state.token.clone();
    let cors = state.cors.clone();
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/channels", get(channels))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/readings", get(readings).post(post_readings))
        .route("/api/v1/anomalies", get(anomalies))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/silences", get(silences))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/query", axum::routing::post(sql_query))
        .with_state(state.clone())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(super::BODY_LIMIT))
        // Until the response starts (a stream then runs as long as its client).
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .merge(
            Router::new()
                .route("/api/v1/backup", axum::routing::post(make_backup))
                .route("/api/v1/reload", axum::routing::post(reload))
                .with_state(state),
        )
        .layer(axum::middleware::from_fn_with_state(token.clone(), super::http::require_token))
        .layer(axum::middleware::from_fn_with_state((cors.clone(), token.is_some()), super::http::same_site))
        .layer(axum::middleware::from_fn_with_state(cors, super::http::cors))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// The OpenAPI document, saying what this serve does: without a token no
/// operation needs one.
async fn openapi(St(s): St<State>) -> Response {
    static TOKENLESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc: &str = match s.token {
        Some(_) => include_str!("openapi.json"),
        None => TOKENLESS.get_or_init(|| {
            let mut doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap_or_default();
            doc["security"] = serde_json::json!([]);
            doc.to_string()
        }),
    };
    ([(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response()
}

/// Query parameters; a bad one is a JSON 400 like every other error.
struct Params<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(Params(q)),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// 200 when ready; 503 with what is wrong: the pipeline is starting or
/// stopping, a source is down, the store cannot commit, the queue is full.
async fn readyz(St(s): St<State>) -> Response {
    let (ready, body) = s.health.readiness();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Every source of the spec: state, last success, errors, latency.
async fn sources(St(s): St<State>) -> Response {
    let list: Vec<serde_json::Value> = s.health.sources().iter().map(|s| s.json().clone()).collect();
    Json(serde_json::json!({ "sources": list })).into_response()
}

/// Every channel with its latest reading, from memory; the body is rebuilt
/// at most every 100 ms while readings arrive.
async fn channels(St(s): St<State>) -> Response {
    let version = s.tap.version.load(Ordering::Relaxed);
    let body = {
        let mut cache = s.channels.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != version && (cache.0 == u64::MAX || cache.1.elapsed() >= CHANNELS_TTL) {
            let layout = s.health.watch().layout;
            let list: Vec<serde_json::Value> = s
                .tap
                .latest()
                .iter()
                .map(|l| {
                    let r = &l.reading;
                    serde_json::json!({
                        "channel": &*r.channel,
                        "ts": format_rfc3339(r.ts),
                        "value": r.value,
                        "text": r.text.as_deref(),
                        "unit": r.unit.as_deref(),
                        "quality": r.quality.as_str(),
                        "flags": r.flags.names().collect::<Vec<_>>(),
                        "source": &*r.source,
                        "readings": l.count,
                        "range": layout.range(&r.channel).map(|(lo, hi)| [lo, hi]),
                        "inputs": layout.inputs(&r.channel),
                    })
                })
                .collect();
            let body = serde_json::json!({ "pipeline": &*s.name, "channels": list }).to_string();
            *cache = (version, Instant::now(), Bytes::from(body));
        }
        cache.2.clone()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Deserialize)]
struct Range {
    channel: Option<String>,
    since: Option<String>,
    until: Option<String>,
    every: Option<String>,
    limit: Option<i64>,
}

impl Range {
    fn bounds(&self) -> Result<(Micros, Micros, i64), Response> {
        let now = now_micros();
        let at = |t: &Option<String>, default: Micros| match t {
            None => Ok(default),
            Some(t) => parse_when(t, now).map_err(|e| error(StatusCode::BAD_REQUEST, e)),
        };
        let since = at(&self.since, now - 3_600_000_000)?;
        let until = at(&self.until, i64::MAX)?;
        Ok((since, until, self.limit.unwrap_or(10_000).clamp(1, MAX_ROWS)))
    }
}

/// A bucket length in µs as a duration (`1m`).
fn fmt_us(us: i64) -> String {
    crate::model::quantity::format_duration(Duration::from_micros(us.max(0) as u64))
}

/// Runs a query on a connection of its own, off the async threads.
async fn query<T: Send + 'static>(
    s: &State,
    f: impl FnOnce(&duckdb::Connection) -> duckdb::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let Some(conn) = s.tap.connection() else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "this pipeline has no store"));
    };
    match tokio::task::spawn_blocking(move || f(&conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the query failed")),
    }
}

/// Readings of one channel in a time range; with `every=1m`, min/avg/max
/// per bucket, computed in DuckDB.
async fn readings(St(s): St<State>, Params(q): Params<Range>) -> Response {
    let Some(channel) = q.channel.clone() else {
        return error(StatusCode::BAD_REQUEST, "`channel` is required");
    };
    let (since, until, limit) = match q.bounds() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let every = match q.every.as_deref().map(crate::model::quantity::parse_duration) {
        None => None,
        Some(Ok(d)) if d >= Duration::from_millis(1) => Some(d.as_micros() as i64),
        Some(_) => return error(StatusCode::BAD_REQUEST, "`every` is a duration of at least 1ms, like 1m"),
    };
    let ch = channel.clone();
    let tier = every.map(|b| s.tap.tiers.lock().unwrap_or_else(|e| e.into_inner()).choose(now_micros(), since, b));
    let rows = query(&s, move |c| {
        let mut out = Vec::new();
        match tier {
            None => {
                let mut st = c.prepare_cached(
                    "SELECT epoch_us(ts), value, quality, flags, voted_out FROM readings
                     WHERE channel = ? AND epoch_us(ts) >= ? AND epoch_us(ts) < ? ORDER BY ts DESC LIMIT ?",
                )?;
                let mut rows = st.query(duckdb::params![ch, since, until, limit])?;
                // Comma-separated in the store; lists in the answer.
                let list = |s: Option<String>| -> Vec<String> {
                    s.map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect()).unwrap_or_default()
                };
                while let Some(r) = rows.next()? {
                    out.push(serde_json::json!({"ts": format_rfc3339(r.get(0)?), "value": r.get::<_, Option<f64>>(1)?,
                        "quality": r.get::<_, String>(2)?, "flags": list(r.get(3)?), "voted_out": list(r.get(4)?)}));
                }
            }
            Some((TierSource::Rollup(e), b)) => {
                // Buckets of `b` from rollup rows of `e` (which divides it).
                let mut st = c.prepare_cached(
                    "SELECT (r.bucket_us // ?) * ? AS b, min(r.min), sum(r.sum) / sum(r.count), max(r.max), sum(r.count)
                     FROM rollup_buckets r JOIN channels c ON c.id = r.channel_id
                     WHERE c.channel = ? AND r.every_us = ? AND r.bucket_us >= ? AND r.bucket_us < ?
                     GROUP BY b ORDER BY b DESC LIMIT ?",
                )?;
                let mut rows = st.query(duckdb::params![b, b, ch, e, since.div_euclid(e) * e, until, limit])?;
                while let Some(r) = rows.next()? {
                    out.push(serde_json::json!({"ts": format_rfc3339(r.get(0)?), "min": r.get::<_, Option<f64>>(1)?,
                        "avg": r.get::<_, Option<f64>>(2)?, "max": r.get::<_, Option<f64>>(3)?, "count": r.get::<_, i64>(4)?}));
                }
            }
            Some((TierSource::Readings, b)) => {
                let mut st = c.prepare_cached(
                    "SELECT (epoch_us(ts) // ?) * ? AS b, min(value), avg(value), max(value), count(value)
                     FROM readings WHERE channel = ? AND epoch_us(ts) >= ? AND epoch_us(ts) < ?
                     GROUP BY b ORDER BY b DESC LIMIT ?",
                )?;
                let mut rows = st.query(duckdb::params![b, b, ch, since, until, limit])?;
                while let Some(r) = rows.next()? {
                    out.push(serde_json::json!({"ts": format_rfc3339(r.get(0)?), "min": r.get::<_, Option<f64>>(1)?,
                        "avg": r.get::<_, Option<f64>>(2)?, "max": r.get::<_, Option<f64>>(3)?, "count": r.get::<_, i64>(4)?}));
                }
            }
        }
        out.reverse();
        Ok(out)
    })
    .await;
    match rows {
        Ok(rows) => {
            let key = if every.is_some() { "buckets" } else { "readings" };
            let mut body = serde_json::json!({"channel": channel, "every": q.every, key: rows});
            if let Some((from, b)) = tier {
                // Which tier answered, and its bucket when it is not the one asked for.
                body["from"] = match from {
                    TierSource::Readings => "readings".into(),
                    TierSource::Rollup(e) => format!("rollups {}", fmt_us(e)).into(),
                };
                if Some(b) != every {
                    body["every"] = fmt_us(b).into();
                }
            }
            Json(body).into_response()
        }
        Err(r) => r,
    }
}

async fn anomalies(St(s): St<State>, Params(q): Params<Range>) -> Response {
    let (since, until, limit) = match q.bounds() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let channel = q.channel.clone();
    let rows = query(&s, move |c| {
        let mut st = c.prepare_cached(
            "SELECT epoch_us(ts), channel, detector, method, value, score, expected, threshold, detail FROM anomalies
             WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ? AND (? IS NULL OR channel = ?) ORDER BY ts DESC LIMIT ?",
        )?;
        let mut rows = st.query(duckdb::params![since, until, channel, channel, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(serde_json::json!({"kind": "anomaly", "ts": format_rfc3339(r.get(0)?), "channel": r.get::<_, String>(1)?,
                "detector": r.get::<_, String>(2)?, "method": r.get::<_, Option<String>>(3)?, "value": r.get::<_, Option<f64>>(4)?,
                "score": r.get::<_, Option<f64>>(5)?, "expected": r.get::<_, Option<f64>>(6)?,
                "threshold": r.get::<_, Option<f64>>(7)?, "detail": r.get::<_, Option<String>>(8)?}));
        }
        Ok(out)
    })
    .await;
    match rows {
        Ok(rows) => Json(serde_json::json!({ "anomalies": rows })).into_response(),
        Err(r) => r,
    }
}

async fn alerts(St(s): St<State>, Params(q): Params<Range>) -> Response {
    let (since, until, limit) = match q.bounds() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rows = query(&s, move |c| {
        let mut st = c.prepare_cached(
            "SELECT epoch_us(ts), rule, state, severity, channel, value, title, fingerprint, notifier, error FROM alerts
             WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ? ORDER BY ts DESC LIMIT ?",
        )?;
        let mut rows = st.query(duckdb::params![since, until, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(serde_json::json!({"ts": format_rfc3339(r.get(0)?), "rule": r.get::<_, String>(1)?,
                "state": r.get::<_, String>(2)?, "severity": r.get::<_, Option<String>>(3)?,
                "channel": r.get::<_, Option<String>>(4)?, "value": r.get::<_, Option<f64>>(5)?,
                "title": r.get::<_, Option<String>>(6)?, "fingerprint": r.get::<_, Option<String>>(7)?,
                "notifier": r.get::<_, Option<String>>(8)?, "error": r.get::<_, Option<String>>(9)?}));
        }
        Ok(out)
    })
    .await;
    match rows {
        Ok(rows) => Json(serde_json::json!({ "alerts": rows })).into_response(),
        Err(r) => r,
    }
}

async fn silences(St(s): St<State>) -> Response {
    let saved = query(&s, |c| {
        let mut st = c.prepare("SELECT value FROM state WHERE component = 'alert' AND key = 'silences'")?;
        let mut rows = st.query([])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get::<_, String>(0)?),
            None => None,
        })
    })
    .await;
    match saved {
        Ok(v) => {
            let list: serde_json::Value =
                v.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_else(|| serde_json::json!([]));
            Json(serde_json::json!({ "silences": list })).into_response()
        }
        Err(r) => r,
    }
}

/// NDJSON readings posted to the pipeline: validated like any source.
async fn post_readings(St(s): St<State>, body: Bytes) -> Response {
    let Some(tx) = s.tap.ingest() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
    };
    if let Some(why) = s.tap.commits.failing() {
        // Taken now, they would wait behind the held commit: the poster keeps them.
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("the store cannot commit: {why}"));
    }
    let now = now_micros();
    let source: Arc<str> = Arc::from("api");
    let mut interner = Interner::with_cap(100_000);
    let (mut records, mut errors, mut rejected) = (Vec::new(), Vec::new(), 0u64);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_ndjson_line(line, &mut interner, now, &source) {
            // Posted readings are a source of this process: stored like any other.
            // The spec's sources speak for themselves: a posted reading under
            // one of their names would count toward its health.
            Ok(Record::Reading(r)) if s.tap.is_spec_source(&r.source) => {
                rejected += 1;
                if errors.len() < 10 {
                    errors.push(format!(
                        "line {}: `source` {:?} is a source of the spec; post under another name (default `api`)",
                        i + 1,
                        &*r.source
                    ));
                }
            }
            Ok(Record::Reading(mut r)) => {
                r.from_input = false;
                records.push(Record::Reading(r));
            }
            Ok(r) => records.push(r),
            Err(e) => {
                rejected += 1;
                if errors.len() < 10 {
                    errors.push(format!("line {}: {}", i + 1, e.0));
                }
            }
        }
    }
    let accepted = records.len() as u64;
    let c = &s.tap.counters;
    c.posted.fetch_add(accepted, Ordering::Relaxed);
    c.posted_rejected.fetch_add(rejected, Ordering::Relaxed);
    if !records.is_empty() && tx.send(Batch::from(records)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
    }
    let status = if accepted == 0 && rejected > 0 { StatusCode::BAD_REQUEST } else { StatusCode::ACCEPTED };
    (status, Json(serde_json::json!({"accepted": accepted, "rejected": rejected, "errors": errors}))).into_response()
}

#[derive(Deserialize)]
struct StreamQuery {
    /// A channel name or glob.
    channel: Option<String>,
    /// Kinds, comma-separated: reading, anomaly, alert.
    kind: Option<String>,
}

/// Server-sent events: every record as it leaves the stages.
async fn stream(St(s): St<State>, Params(q): Params<StreamQuery>) -> Response {
    let matcher = match q.channel.as_deref().map(crate::model::channel::channel_matcher) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("`channel`: {e}")),
    };
    let kinds: Option<Vec<String>> = q.kind.map(|k| k.split(',').map(|s| s.trim().to_string()).collect());
    let rx = s.tap.stream.subscribe();
    let tap = s.tap.clone();
    let mut stop = s.stop.clone();
    let events = tokio_stream::wrappers::BroadcastStream::new(rx)
        .filter_map(move |item| {
            let out = match item {
                Ok(it) => {
                    let kind_ok = kinds.as_ref().is_none_or(|k| k.iter().any(|k| **k == *it.kind));
                    let ch_ok = matcher.as_ref().is_none_or(|m| it.channel.as_deref().is_some_and(|c| m.is_match(c)));
                    (kind_ok && ch_ok).then(|| Event::default().event(&*it.kind).data(&*it.line))
                }
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    tap.counters.stream_lagged.fetch_add(n, Ordering::Relaxed);
                    Some(Event::default().event("lagged").data(n.to_string()))
                }
            };
            std::future::ready(out.map(Ok::<_, std::convert::Infallible>))
        })
        .take_until(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    limit: Option<i64>,
    timeout: Option<String>,
}

/// Read-only SQL on serve's store (`edgeguard query` while serve holds
/// it; Grafana's Infinity or JSON data sources): DuckDB refuses writes.
async fn sql_query(St(s): St<State>, body: Bytes) -> Response {
    let q: SqlRequest = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is {{\"sql\": \"SELECT …\"}}: {e}")),
    };
    let limit = match q.limit.unwrap_or(sql::DEFAULT_ROWS as i64) {
        n @ 1..=100_000 => n as usize,
        n => return error(StatusCode::BAD_REQUEST, format!("`limit` is 1 to {}, not {n}", sql::MAX_ROWS)),
    };
    let timeout = match q.timeout.as_deref().map(crate::model::quantity::parse_duration) {
        None => sql::DEFAULT_TIMEOUT,
        Some(Ok(d)) if !d.is_zero() && d <= sql::MAX_TIMEOUT => d,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`timeout` is a duration up to {:?}, like 10s", sql::MAX_TIMEOUT),
            )
        }
    };
    let Some(conn) = s.tap.connection() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this pipeline has no store");
    };
    let Ok(_turn) = s.queries.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "serve is stopping");
    };
    let sql = q.sql;
    match tokio::task::spawn_blocking(move || sql::run(&conn, &sql, limit, timeout)).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e @ SqlError::Refused(_))) => error(StatusCode::FORBIDDEN, e.to_string()),
        Ok(Err(e @ SqlError::Invalid(_))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ SqlError::TimedOut(_))) => error(StatusCode::REQUEST_TIMEOUT, e.to_string()),
        Ok(Err(e @ SqlError::Store(_))) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the query failed"),
    }
}

/// Makes a backup of the store serve holds (what `edgeguard backup` asks
/// for when it finds the store locked by serve).
async fn make_backup(St(s): St<State>) -> Response {
    let Some(dir) = s.backups.clone() else {
        return error(StatusCode::CONFLICT, "the spec has no `backup` section");
    };
    let Some(path) = s.tap.store_path.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this pipeline has no store");
    };
    let _one = s.backing_up.lock().await;
    let made = query(&s, move |c| {
        crate::backup::make(c, &path, &dir, &mut |_| {}).map_err(|e| duckdb::Error::ToSqlConversionFailure(e.0.into()))
    })
    .await;
    match made {
        Ok(m) => Json(m).into_response(),
        Err(r) => r,
    }
}

/// Compiles the spec again and switches to it (as SIGHUP): 200 when it
/// compiled, 422 with the errors when not (the running pipeline stays).
async fn reload(St(s): St<State>) -> Response {
    let Some(reload) = s.tap.reload() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this process cannot reload");
    };
    match tokio::task::spawn_blocking(move || reload()).await {
        Ok(Ok(())) => Json(serde_json::json!({"reloaded": true})).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload failed"),
    }
}

/// Prometheus text format.
async fn metrics(St(s): St<State>) -> Response {
    let c = &s.tap.counters;
    let mut out = String::with_capacity(4096);
    fn metric<V: std::fmt::Display>(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, V)]) {
        let _ = writeln!(out, "# HELP edgeguard_{name} {help}\n# TYPE edgeguard_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "edgeguard_{name}{labels} {v}");
        }
    }
    let one = |v: u64| vec![(String::new(), v)];
    let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let by = |label: &str, values: &[(&str, u64)]| -> Vec<(String, u64)> {
        values.iter().map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v)).collect()
    };
    let q = by("quality", &[("good", l(&c.good)), ("suspect", l(&c.suspect)), ("bad", l(&c.bad))]);
    metric(&mut out, "readings_total", "counter", "Readings out of the stages, by quality.", &q);
    metric(&mut out, "anomalies_total", "counter", "Anomaly records.", &one(l(&c.anomalies)));
    metric(&mut out, "alerts_total", "counter", "Alert records (notifications made).", &one(l(&c.alerts)));
    let n = by("result", &[("sent", l(&c.notifications_sent)), ("failed", l(&c.notifications_failed))]);
    metric(&mut out, "notifications_total", "counter", "Deliveries through notifiers, by result.", &n);
    let p = by("result", &[("accepted", l(&c.posted)), ("rejected", l(&c.posted_rejected))]);
    metric(&mut out, "api_readings_total", "counter", "Readings posted to /api/v1/readings, by result.", &p);
    metric(&mut out, "store_commits_total", "counter", "Store commits.", &one(l(&s.tap.commits.commits)));
    metric(&mut out, "store_rows_total", "counter", "Rows committed to the store.", &one(l(&s.tap.commits.rows)));
    let secs = vec![(String::new(), l(&s.tap.commits.micros) as f64 / 1e6)];
    metric(&mut out, "store_commit_seconds_total", "counter", "Time spent committing.", &secs);
    let r = by("result", &[("ok", l(&c.reloads)), ("failed", l(&c.reloads_failed))]);
    metric(&mut out, "reloads_total", "counter", "Reloads of the spec (SIGHUP, POST /api/v1/reload), by result.", &r);
    metric(&mut out, "queue_batches", "gauge", "Batches waiting for the stages.", &one(l(&c.batches_waiting)));
    let clients = one(s.tap.stream.receiver_count() as u64);
    metric(&mut out, "stream_clients", "gauge", "Open /api/v1/stream clients.", &clients);
    let lagged = one(l(&c.stream_lagged));
    metric(&mut out, "stream_lagged_total", "counter", "Records skipped for stream clients that fell behind.", &lagged);
    let (mut polls, mut errors, mut reconnects, mut mismatches) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for src in s.tap.sources() {
        let id = format!("{{source=\"{}\"}}", src.id.replace(['\\', '"', '\n'], "_"));
        let (p, e, r) = (src.stats.polls, src.stats.errors, src.stats.reconnects);
        polls.push((id.clone(), p));
        errors.push((id.clone(), e));
        mismatches.push((id.clone(), src.stats.mismatches));
        reconnects.push((id, r));
    }
    if !polls.is_empty() {
        metric(&mut out, "source_polls_total", "counter", "Requests, messages or lines per device source.", &polls);
        metric(&mut out, "source_errors_total", "counter", "Failed polls and rejected input per source.", &errors);
        metric(&mut out, "source_reconnects_total", "counter", "Reconnections per source.", &reconnects);
        let what = "Answers from the wrong device (unit id, transaction id, function or length) per source.";
        metric(&mut out, "source_mismatches_total", "counter", what, &mismatches);
    }
    forward_metrics(&mut out, &s.tap.forward(), metric);
    let (ready, _) = s.health.readiness();
    metric(&mut out, "ready", "gauge", "1 when /readyz answers 200.", &one(u64::from(ready)));
    let states: Vec<(String, u8)> =
        s.health.sources().iter().map(|x| (format!("{{source=\"{}\"}}", m::escape(&x.id)), x.state.code())).collect();
    metric(&mut out, "source_state", "gauge", "State of each source: 0 up, 1 degraded, 2 down.", &states);
    let path = s.tap.store_path.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(path) = path {
        m::store(&mut out, &path);
    }
    m::channels(&mut out, &s.tap.latest(), s.metric_channels);
    m::process(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// The forward targets' metrics, labelled by `target`.
fn forward_metrics<F>(out: &mut String, targets: &[(String, Arc<crate::forward::ForwardStats>)], metric: F)
where
    F: Fn(&mut String, &str, &str, &str, &[(String, String)]),
{
    if targets.is_empty() {
        return;
    }
    let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let label = |id: &str| id.replace(['\\', '"', '\n'], "_");
    let each = |f: &dyn Fn(&crate::forward::ForwardStats) -> String| -> Vec<(String, String)> {
        targets.iter().map(|(id, st)| (format!("{{target=\"{}\"}}", label(id)), f(st))).collect()
    };
    let backlog = each(&|st| l(&st.backlog_records).to_string());
    metric(
        out,
        "forward_backlog_records",
        "gauge",
        "Records committed but not yet acknowledged by the target.",
        &backlog,
    );
    let age = each(&|st| format!("{}", l(&st.backlog_age_ms) as f64 / 1e3));
    metric(out, "forward_backlog_seconds", "gauge", "Age of the oldest commit not yet acknowledged.", &age);
    let mut published = Vec::new();
    for (id, st) in targets {
        for (i, k) in crate::spec::RecordKind::ALL.iter().enumerate() {
            published
                .push((format!("{{target=\"{}\",kind=\"{}\"}}", label(id), k.as_str()), l(&st.records[i]).to_string()));
        }
    }
    metric(out, "forward_published_total", "counter", "Records acknowledged by the target, by kind.", &published);
    let messages = each(&|st| l(&st.messages).to_string());
    metric(out, "forward_messages_total", "counter", "Messages acknowledged by the target.", &messages);
    let dups = each(&|st| l(&st.duplicates).to_string());
    metric(out, "forward_duplicates_total", "counter", "Messages the target already had (re-sends it dropped).", &dups);
    let dropped = each(&|st| l(&st.dropped).to_string());
    metric(out, "forward_dropped_total", "counter", "Records dropped unsent: older than backlog.max_age.", &dropped);
    let mut errors = Vec::new();
    for (id, st) in targets {
        let by = st.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for reason in ["unreachable", "refused", "rejected"] {
            let n = by.get(reason).copied().unwrap_or(0);
            errors.push((format!("{{target=\"{}\",reason=\"{reason}\"}}", label(id)), n.to_string()));
        }
    }
    metric(out, "forward_errors_total", "counter", "Failed connects and publishes, by reason.", &errors);
    let _ = writeln!(
        out,
        "# HELP edgeguard_forward_ack_seconds Time from publish to acknowledgement.\n# TYPE edgeguard_forward_ack_seconds summary"
    );
    for (id, st) in targets {
        let (sum, n) = (l(&st.ack_micros) as f64 / 1e6, l(&st.acks));
        let t = label(id);
        let _ = writeln!(out, "edgeguard_forward_ack_seconds_sum{{target=\"{t}\"}} {sum}\nedgeguard_forward_ack_seconds_count{{target=\"{t}\"}} {n}");
    }
    let up = each(&|st| u8::from(st.connected.load(Ordering::Relaxed)).to_string());
    metric(out, "forward_connected", "gauge", "1 while connected to the target.", &up);
}
