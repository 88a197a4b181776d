//! Notifiers: what each one would send for a notification ([`Notifiers::render`],
//! which `alert --render` prints), and sending it ([`Dispatcher`]).
//!
//! Rendering never fails: a template error gives the plain fallback text
//! (with the error and the raw record) in place of what failed. JSON bodies
//! and payloads (templates that start with `{` or `[`) render with JSON
//! escaping, so `{"text": {{ title }}}` stays valid JSON whatever the title
//! holds; file lines have CR and LF escaped, so one notification is one line;
//! exec arguments are one argv entry each and no shell ever sees them;
//! an email's subject is one header line and its bodies are base64 MIME
//! parts, so nothing rendered adds a header (`crate::sinks::smtp`).
//!
//! Delivery: one worker per notifier, in notification order, so a slow or
//! failing notifier never holds the others up. Webhooks and email retry
//! `retries` times with backoff (a webhook sends an `Idempotency-Key`, an
//! email a `Message-ID` made the same way); MQTT and file retry
//! twice; an exec that could not start is retried, one that ran and failed
//! (or timed out: its whole process group is killed) is not — it may have
//! acted. Every outcome comes back as a [`Delivery`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use minijinja::Environment;
use tokio::sync::{mpsc, Semaphore};

use crate::compile::plan::{NotifierKind, NotifierPlan};
use crate::model::record::{Alert, Delivery, Notification};
use crate::model::template::fallback;
use crate::model::template::{self as templates, render_capped};
use crate::spec::FileFormat;

/// Most bytes of an exec's stderr kept for the error message.
const STDERR_KEPT: usize = 2048;

/// What one notifier sends for one notification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Message {
    Stdout { record: String },
    File { path: PathBuf, line: String },
    Exec { argv: Vec<String> },
    Webhook { url: String, body: String, idempotency_key: String },
    Mqtt { topic: String, payload: String, qos: u8, retain: bool },
    Email { from: String, to: Vec<String>, subject: String, body: String, html: Option<String>, message_id: String },
}

/// Every notifier of a plan, ready to render.
pub struct Notifiers {
    plans: Vec<NotifierPlan>,
    plain: Environment<'static>,
    json: Environment<'static>,
    /// HTML email bodies: values HTML-escaped.
    html: Environment<'static>,
}

impl Notifiers {
    pub fn new(plans: &[NotifierPlan]) -> Notifiers {
        let mut html = templates::environment();
        html.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        Notifiers { plans: plans.to_vec(), plain: templates::environment(), json: templates::json_environment(), html }
    }

    /// What notifier `id` sends for `n`, and the template errors met (each
    /// replaced by the fallback text).
    pub fn render(&self, id: &str, n: &Notification) -> Option<(Message, Vec<String>)> {
        let plan = self.plans.iter().find(|p| p.id == id)?;
        let mut errors = Vec::new();
        let mut bad_to = Vec::new();
        let ctx = &n.context;
        let record = serde_json::to_string(&n.alert).unwrap_or_default();
        let mut text = |what: &str, src: &str| -> String {
            // Email text is never JSON, whatever it starts with (`[critical] …`).
            let looks_json = templates::looks_json(src) && !what.starts_with("email") && what != "html";
            let env = match (looks_json, what) {
                (true, _) => &self.json,
                (false, "html") => &self.html,
                (false, _) => &self.plain,
            };
            let rendered = render_capped(env, src, ctx).and_then(|s| {
                if looks_json && serde_json::from_str::<serde_json::Value>(&s).is_err() {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "did not render valid JSON"))
                } else {
                    Ok(s)
                }
            });
            match rendered {
                Ok(s) => s,
                Err(e) => {
                    let why = format!("notifier `{id}` {what}: {}", templates::describe(&e));
                    errors.push(why.clone());
                    if looks_json {
                        serde_json::json!({"fallback": true, "error": why, "alert": &n.alert}).to_string()
                    } else {
                        fallback(&n.alert.rule, &why, ctx)
                    }
                }
            }
        };
        let msg = match &plan.kind {
            NotifierKind::Stdout => Message::Stdout { record },
            NotifierKind::File { path, format, template } => {
                let line = match format {
                    FileFormat::Json => record,
                    FileFormat::Line => one_line(&text("template", template)),
                };
                Message::File { path: path.clone(), line }
            }
            NotifierKind::Exec { command, .. } => {
                Message::Exec { argv: command.iter().map(|a| text("argument", a)).collect() }
            }
            NotifierKind::Webhook { url, body, .. } => Message::Webhook {
                url: url.clone(),
                body: body.as_deref().map_or(record, |b| text("body", b)),
                idempotency_key: format!("{}-{}-{}", n.alert.fingerprint, n.alert.ts, n.alert.state.as_str()),
            },
            NotifierKind::Mqtt { topic, payload, qos, retain, .. } => {
                let t = text("topic", topic);
                Message::Mqtt {
                    topic: t,
                    payload: payload.as_deref().map_or(record, |p| text("payload", p)),
                    qos: *qos,
                    retain: *retain,
                }
            }
            NotifierKind::Email { from, to, subject, body, html, .. } => {
                let mut rcpt = Vec::new();
                for t in to {
                    let a = text("email to", t);
                    let a = a.trim();
                    if a.is_empty() {
                        continue;
                    }
                    if crate::compile::is_email_address(a) {
                        rcpt.push(a.to_string());
                    } else {
                        bad_to.push(format!("notifier `{id}` to: `{}` is not an email address; left out", one_line(a)));
                    }
                }
                Message::Email {
                    from: from.clone(),
                    to: rcpt,
                    subject: crate::sinks::smtp::header_text(&text("email subject", subject)),
                    body: text("email body", body),
                    html: html.as_deref().map(|h| text("html", h)),
                    message_id: format!("{}.{}.{}@edgeguard", n.alert.fingerprint, n.alert.ts, n.alert.state.as_str()),
                }
            }
        };
        errors.append(&mut bad_to);
        let msg = match msg {
            Message::Mqtt { topic, payload, qos, retain } if topic.is_empty() || topic.contains(['+', '#', '\0']) => {
                errors.push(format!("notifier `{id}` topic: `{topic}` is not a topic to publish to"));
                Message::Mqtt { topic: format!("edgeguard/alerts/{}", n.alert.rule), payload, qos, retain }
            }
            m => m,
        };
        Some((msg, errors))
    }
}

/// CR and LF as `\r` and `\n`: a file notification is one line.
fn one_line(s: &str) -> String {
    if !s.contains(['\r', '\n']) {
        return s.to_string();
    }
    s.replace('\r', "\\r").replace('\n', "\\n")
}

/// Sends notifications; one worker task per notifier.
pub struct Dispatcher {
    notifiers: Arc<Notifiers>,
    queues: Vec<(String, mpsc::UnboundedSender<(Message, Alert)>)>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    results: std::sync::mpsc::Receiver<Delivery>,
    pub sent: u64,
    pub failed: u64,
    pub fallbacks: u64,
}

/// What a worker needs that is read once at start (secrets, clients).
enum Sender {
    Stdout,
    File,
    Exec { env: Vec<(String, String)>, timeout: Duration, slots: Arc<Semaphore> },
    Webhook { client: reqwest::Client, headers: Vec<(String, String)>, retries: u32 },
    Mqtt { options: Box<rumqttc::MqttOptions> },
    Email { client: Box<crate::sinks::smtp::Client>, retries: u32 },
}

impl Dispatcher {
    /// Starts a worker per notifier on `rt`. Reads every secret now, so a
    /// missing one stops the run before anything is sent.
    pub fn start(rt: &tokio::runtime::Handle, plans: &[NotifierPlan]) -> Result<Dispatcher, String> {
        let notifiers = Arc::new(Notifiers::new(plans));
        let (tx, results) = std::sync::mpsc::channel();
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for p in plans {
            let sender = sender(p)?;
            let (qtx, qrx) = mpsc::unbounded_channel();
            let (id, tx) = (p.id.clone(), tx.clone());
            workers.push(rt.spawn(worker(id, sender, qrx, tx)));
            queues.push((p.id.clone(), qtx));
        }
        Ok(Dispatcher { notifiers, queues, workers, results, sent: 0, failed: 0, fallbacks: 0 })
    }

    /// Renders `n` for each of its notifiers and queues it (a `stdout`
    /// notifier's record is the alert record the engine prints).
    pub fn send(&mut self, n: &Notification) {
        for id in n.notify.iter() {
            let Some((msg, errors)) = self.notifiers.render(id, n) else { continue };
            self.fallbacks += errors.len() as u64;
            for e in &errors {
                tracing::warn!(rule = n.alert.rule.as_str(), "{e}; sent the fallback text");
            }
            if let Some((_, q)) = self.queues.iter().find(|(q, _)| q == id) {
                let _ = q.send((msg, n.alert.clone()));
            }
        }
    }

    /// Outcomes so far.
    pub fn outcomes(&mut self) -> Vec<Delivery> {
        let got: Vec<Delivery> = self.results.try_iter().collect();
        self.count(&got);
        got
    }

    fn count(&mut self, got: &[Delivery]) {
        for d in got {
            if d.error.is_some() {
                self.failed += 1;
            } else {
                self.sent += 1;
            }
        }
    }

    /// Waits until every queued notification was sent or gave up; returns
    /// the outcomes not collected yet.
    pub fn finish(&mut self, rt: &tokio::runtime::Runtime) -> Vec<Delivery> {
        self.queues.clear();
        let workers = std::mem::take(&mut self.workers);
        rt.block_on(async {
            for w in workers {
                let _ = w.await;
            }
        });
        self.outcomes()
    }
}

fn sender(p: &NotifierPlan) -> Result<Sender, String> {
    let named = |e: String| format!("notifier `{}`: {e}", p.id);
    Ok(match &p.kind {
        NotifierKind::Stdout => Sender::Stdout,
        NotifierKind::File { .. } => Sender::File,
        NotifierKind::Exec { env, timeout, max_concurrent, .. } => Sender::Exec {
            env: env.iter().map(|(k, s)| s.read().map(|v| (k.clone(), v))).collect::<Result<_, _>>().map_err(named)?,
            timeout: *timeout,
            slots: Arc::new(Semaphore::new(*max_concurrent)),
        },
        NotifierKind::Webhook { headers, timeout, retries, .. } => {
            crate::tls::install_provider();
            let client = reqwest::Client::builder()
                .timeout(*timeout)
                // A redirect would turn the POST into a GET without its body.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("edgeguard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| named(e.to_string()))?;
            Sender::Webhook {
                client,
                headers: headers
                    .iter()
                    .map(|(k, s)| s.read().map(|v| (k.clone(), v)))
                    .collect::<Result<_, _>>()
                    .map_err(named)?,
                retries: *retries,
            }
        }
        NotifierKind::Mqtt { url, username, password, tls, .. } => {
            let client_id = format!("edgeguard-notify-{}-{}", p.id, std::process::id());
            let keepalive = Duration::from_secs(30);
            let (o, _) = crate::mqtt_client::options(
                url,
                client_id,
                username.as_ref(),
                password.as_ref(),
                tls.as_ref(),
                keepalive,
            )
            .map_err(named)?;
            Sender::Mqtt { options: Box::new(o) }
        }
        NotifierKind::Email { host, port, implicit_tls, username, password, tls, timeout, retries, .. } => {
            let login = match (username, password) {
                (Some(u), Some(p)) => Some((u.read().map_err(named)?, p.read().map_err(named)?)),
                _ => None,
            };
            let config = crate::tls::client_config(tls.as_ref()).map_err(named)?;
            Sender::Email {
                client: Box::new(crate::sinks::smtp::Client {
                    host: host.clone(),
                    port: *port,
                    implicit_tls: *implicit_tls,
                    tls: Arc::new(config),
                    login,
                    timeout: *timeout,
                }),
                retries: *retries,
            }
        }
    })
}

async fn worker(
    id: String,
    sender: Sender,
    mut queue: mpsc::UnboundedReceiver<(Message, Alert)>,
    results: std::sync::mpsc::Sender<Delivery>,
) {
    let sender = Arc::new(sender);
    let mut running = tokio::task::JoinSet::new();
    while let Some((msg, alert)) = queue.recv().await {
        if let (Sender::Exec { slots, .. }, Message::Exec { .. }) = (&*sender, &msg) {
            // Programs run side by side up to `max_concurrent`.
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let (sender, results, id) = (sender.clone(), results.clone(), id.clone());
            running.spawn(async move {
                let (attempts, error) = deliver(&sender, &msg).await;
                drop(permit);
                if let Some(e) = &error {
                    tracing::warn!(notifier = id.as_str(), attempts, "notification failed: {e}");
                }
                let _ = results.send(Delivery { alert, notifier: id, attempts, error });
            });
            continue;
        }
        let (attempts, error) = deliver(&sender, &msg).await;
        if let Some(e) = &error {
            tracing::warn!(notifier = id.as_str(), attempts, "notification failed: {e}");
        }
        let _ = results.send(Delivery { alert, notifier: id.clone(), attempts, error });
    }
    while running.join_next().await.is_some() {}
}

/// Sends one message with the notifier's retries; (attempts, last error).
async fn deliver(sender: &Sender, msg: &Message) -> (u32, Option<String>) {
    let retries = match sender {
        Sender::Webhook { retries, .. } | Sender::Email { retries, .. } => *retries,
        Sender::Stdout => 0,
        Sender::File | Sender::Exec { .. } | Sender::Mqtt { .. } => 2,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = once(sender, msg).await;
        match result {
            Ok(()) => return (attempt, None),
            Err((e, retry)) if retry && attempt <= retries => {
                let backoff = Duration::from_millis(250u64 << (attempt - 1).min(5)).min(Duration::from_secs(5));
                tracing::debug!("attempt {attempt} failed ({e}); again in {backoff:?}");
                tokio::time::sleep(backoff).await;
            }
            Err((e, _)) => return (attempt, Some(e)),
        }
    }
}

/// One attempt; the error says whether another attempt may help.
async fn once(sender: &Sender, msg: &Message) -> Result<(), (String, bool)> {
    // `render` makes each notifier's message from its own plan, so a
    // message always fits its sender; the let-else guards say so.
    let misfit = || Err(("message does not fit the notifier".to_string(), false));
    match msg {
        // The alert record itself is what the engine prints.
        Message::Stdout { .. } => Ok(()),
        Message::File { path, line } => {
            use std::io::Write;
            let Sender::File = sender else { return misfit() };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| (format!("{}: {e}", path.display()), true))?;
            let mut buf = line.clone().into_bytes();
            buf.push(b'\n');
            f.write_all(&buf).map_err(|e| (format!("{}: {e}", path.display()), true))
        }
        Message::Exec { argv } => {
            let Sender::Exec { env, timeout, .. } = sender else { return misfit() };
            run_program(argv, env, *timeout).await
        }
        Message::Webhook { url, body, idempotency_key } => {
            let Sender::Webhook { client, headers, .. } = sender else { return misfit() };
            let json = serde_json::from_str::<serde_json::Value>(body).is_ok();
            let mut req = client
                .post(url)
                .header("Idempotency-Key", idempotency_key)
                .header("Content-Type", if json { "application/json" } else { "text/plain; charset=utf-8" })
                .body(body.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.map_err(|e| (describe_reqwest(&e), true))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                // 4xx but 408/429 will not get better by asking again.
                let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                Err((format!("{url} answered {status}"), retry))
            }
        }
        Message::Mqtt { topic, payload, qos, retain } => {
            let Sender::Mqtt { options } = sender else { return misfit() };
            publish((**options).clone(), topic, payload, *qos, *retain).await.map_err(|e| (e, true))
        }
        Message::Email { from, to, subject, body, html, message_id } => {
            let Sender::Email { client, .. } = sender else { return misfit() };
            if to.is_empty() {
                return Err(("no recipient: every `to` rendered empty or invalid".into(), false));
            }
            // The Date header is the alert's time (part of the message id).
            let ts = message_id.split('.').nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
            let data = crate::sinks::smtp::message(from, to, subject, body, html.as_deref(), message_id, ts);
            client.send(&crate::sinks::smtp::Mail { from, to, data: &data }).await
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s += &format!(": {inner}");
        src = inner.source();
    }
    s
}

/// Runs `argv` without a shell, in its own process group, with a clean
/// environment (PATH and the configured variables); kills the group on timeout.
async fn run_program(argv: &[String], env: &[(String, String)], timeout: Duration) -> Result<(), (String, bool)> {
    use tokio::io::AsyncReadExt;
    let Some((program, args)) = argv.split_first() else {
        return Err(("empty command".into(), false));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| (format!("cannot run {program}: {e}"), true))?;
    let pid = child.id();
    // Drain stderr while the program runs (keeping the first bytes): a full
    // pipe must not stall it, and a helper it left in the background holding
    // the pipe must not make a finished program look hung.
    let stderr = child.stderr.take().map(|mut s| {
        tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        })
    });
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let err = match stderr {
        Some(task) => {
            let got = tokio::time::timeout(Duration::from_millis(100), task).await;
            got.ok().and_then(Result::ok).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let waited = waited.map(|status| (status, err));
    match waited {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), err)) => {
            let err = String::from_utf8_lossy(&err);
            Err((format!("{program} exited with {status}: {}", err.trim()), false))
        }
        Ok((Err(e), _)) => Err((format!("{program}: {e}"), false)),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the child's own process group.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            Err((format!("{program} did not finish within {timeout:?}; its process group was killed"), false))
        }
    }
}

/// Connects, publishes one message and waits for the broker's ack.
async fn publish(
    options: rumqttc::MqttOptions,
    topic: &str,
    payload: &str,
    qos: u8,
    retain: bool,
) -> Result<(), String> {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    let level = match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client.publish(topic, level, retain, payload.as_bytes().to_vec()).await.map_err(|e| e.to_string())?;
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == 0 => return Ok(()),
                Ok(Event::Incoming(Packet::PubAck(_))) if qos == 1 => return Ok(()),
                Ok(Event::Incoming(Packet::PubComp(_))) if qos >= 2 => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no acknowledgement within 10 s".into()));
    let _ = client.disconnect().await;
    // Let the disconnect go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    done
}
