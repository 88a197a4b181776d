//! The MQTT target (rumqttc): for sites whose center is an MQTT broker
//! (EMQX, HiveMQ, mosquitto) or nats-server's MQTT listener.
//!
//! Every message is one QoS 1 (or 2) publish to
//! `<prefix>/<site>/<gateway>/<kind>`. MQTT 3.1.1 has no headers, so the
//! payload's first line is the envelope ([`Envelope::line`]: id, site,
//! gateway, epoch, commit, part, offset, count, schema, backlog, encoding)
//! and the rest is the body, NDJSON or zstd. The broker's PUBACK (PUBCOMP
//! for QoS 2) is the acknowledgement the cursor waits for. No broker drops
//! a re-send: after a crash or a lost connection the same envelope id comes
//! again, and consumers deduplicate by it (the `nats` source and `collect`
//! do, through the lake's dedup key).
//!
//! One task runs rumqttc's event loop per connection. Packet ids are
//! matched to publishes in order: the client hands requests to the event
//! loop in the order they were made, and the loop reports each outgoing
//! publish with its packet id. A connection that fails ends its task and
//! fails every publish still waiting; the driver reconnects with a fresh
//! session and sends again from its cursor (a clean session: the outbox,
//! not the client, remembers what is unsent). Every driver session gets a
//! fresh connection, so a publish cancelled by a timeout cannot leave the
//! waiters out of step with the packet ids.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::oneshot;

use super::message::{Message, Sender};
use super::{Ack, AckFuture, SendError, Target};
use crate::compile::MqttTargetPlan;

type Waiter = oneshot::Sender<Result<Ack, SendError>>;

/// Publishes waiting for their packet id, then for their acknowledgement.
#[derive(Default)]
struct Pending {
    /// In the order they were handed to the client.
    queued: VecDeque<Waiter>,
    by_pkid: HashMap<u16, Waiter>,
    /// Why the connection ended, once it has.
    failed: Option<SendError>,
}

impl Pending {
    fn fail_all(&mut self, e: SendError) {
        for w in self.queued.drain(..).chain(self.by_pkid.drain().map(|(_, w)| w)) {
            let _ = w.send(Err(e.clone()));
        }
        self.failed = Some(e);
    }
}

struct Connection {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Mqtt {
    plan: MqttTargetPlan,
    options: MqttOptions,
    ack_timeout: Duration,
    in_flight: usize,
    conn: Option<Connection>,
    host: String,
}

impl Mqtt {
    /// Reads the secrets and TLS files now: a missing one is a setup error (exit 78).
    pub fn new(plan: &MqttTargetPlan, ack_timeout: Duration, in_flight: usize) -> Result<Mqtt, String> {
        let (mut o, host) = crate::mqtt_client::options(
            &plan.url,
            plan.client_id.clone(),
            plan.username.as_ref(),
            plan.password.as_ref(),
            plan.tls.as_ref(),
            plan.keepalive,
        )?;
        o.set_clean_session(true);
        o.set_max_packet_size(64 << 20, 64 << 20);
        o.set_inflight(in_flight.clamp(1, 65_535) as u16);
        Ok(Mqtt { plan: plan.clone(), options: o, ack_timeout, in_flight, conn: None, host })
    }
}

/// Why a connection attempt or a live connection failed.
fn connection_error(e: &ConnectionError) -> SendError {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => SendError::Refused(format!("the broker refused the login ({code:?})")),
        ConnectionError::Tls(t) => SendError::Refused(format!("TLS: {t}")),
        other => {
            let text = other.to_string();
            if text.contains("certificate") {
                SendError::Refused(format!("TLS: {text}"))
            } else {
                SendError::Unreachable(text)
            }
        }
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one connection's event loop; tells `ready` when the broker accepted it.
async fn drive(
    mut eventloop: EventLoop,
    pending: Arc<Mutex<Pending>>,
    up: Arc<AtomicBool>,
    mut ready: Option<oneshot::Sender<Result<(), SendError>>>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up.store(true, Ordering::SeqCst);
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut p = lock(&pending);
                if let Some(w) = p.queued.pop_front() {
                    p.by_pkid.insert(pkid, w);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                if let Some(w) = lock(&pending).by_pkid.remove(&a.pkid) {
                    let _ = w.send(Ok(Ack { duplicate: false }));
                }
            }
            Ok(Event::Incoming(Packet::PubComp(c))) => {
                if let Some(w) = lock(&pending).by_pkid.remove(&c.pkid) {
                    let _ = w.send(Ok(Ack { duplicate: false }));
                }
            }
            Ok(Event::Incoming(Packet::Disconnect)) => {
                up.store(false, Ordering::SeqCst);
                lock(&pending).fail_all(SendError::Unreachable("the broker closed the connection".into()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                up.store(false, Ordering::SeqCst);
                let why = connection_error(&e);
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(why.clone()));
                }
                lock(&pending).fail_all(why);
                return;
            }
        }
    }
}

impl Target for Mqtt {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn connect(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SendError>> + Send + '_>> {
        Box::pin(async move {
            // A new session starts after the last one ended (an error, a
            // timeout, a cancelled publish): its packet ids and waiters may
            // be out of step, so every session gets a fresh connection.
            if let Some(c) = self.conn.take() {
                let _ = c.client.try_disconnect();
                c.task.abort();
            }
            let cap = self.in_flight.max(16) * 2;
            let (client, eventloop) = AsyncClient::new(self.options.clone(), cap);
            let pending = Arc::new(Mutex::new(Pending::default()));
            let up = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = oneshot::channel();
            let task = tokio::spawn(drive(eventloop, pending.clone(), up.clone(), Some(ready_tx)));
            let answer = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
            match answer {
                Ok(Ok(Ok(()))) => {
                    self.conn = Some(Connection { client, pending, up, task });
                    Ok(())
                }
                Ok(Ok(Err(e))) => {
                    task.abort();
                    Err(e)
                }
                Ok(Err(_)) | Err(_) => {
                    task.abort();
                    Err(SendError::Unreachable(format!("no answer from {} within 10s", self.host)))
                }
            }
        })
    }

    fn connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.up.load(Ordering::SeqCst))
    }

    fn server(&self) -> Option<String> {
        self.conn.as_ref().map(|_| self.host.clone())
    }

    fn publish<'a>(
        &'a mut self,
        m: &'a Message,
        s: &'a Sender,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<AckFuture, SendError>> + Send + 'a>> {
        Box::pin(async move {
            let conn = self.conn.as_ref().ok_or_else(|| SendError::Unreachable("not connected".into()))?;
            let topic = format!("{}/{}", s.subject, m.kind.as_str());
            let env = m.envelope(s).line();
            let mut payload = Vec::with_capacity(env.len() + m.body.len());
            payload.extend_from_slice(env.as_bytes());
            payload.extend_from_slice(&m.body);
            let (tx, rx) = oneshot::channel();
            {
                let mut p = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = &p.failed {
                    return Err(e.clone());
                }
                p.queued.push_back(tx);
            }
            let qos = if self.plan.qos >= 2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
            if let Err(e) = conn.client.publish(topic, qos, false, payload).await {
                return Err(SendError::Unreachable(format!("the client stopped: {e}")));
            }
            let timeout = self.ack_timeout;
            let fut: AckFuture = Box::pin(async move {
                match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(SendError::Unreachable("connection lost".into())),
                    Err(_) => Err(SendError::Unreachable(format!("no acknowledgement within {timeout:?}"))),
                }
            });
            Ok(fut)
        })
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.client.try_disconnect();
            c.task.abort();
        }
    }
}
