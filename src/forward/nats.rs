//! The NATS JetStream target (async-nats).
//!
//! Every message is a JetStream publish with `Nats-Msg-Id`, so the stream
//! drops a re-send within its duplicate window; the acknowledgement (PubAck)
//! says the stream has stored it (on a quorum of an R3 stream), and only
//! then does the cursor move. The client reconnects by itself after the
//! first connection, with the same backoff as the first connect (200 ms to
//! 10 s, with jitter); errors the server reports on the connection (an
//! authorization or permissions violation) are kept, so an acknowledgement
//! that never comes can be explained.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;

use super::message::{Message, Sender};
use super::{Ack, AckFuture, SendError, Target};
use crate::compile::NatsTargetPlan;
use crate::nats_client::{is_refusal, ConnectFailure, Login, ServerErrors};

pub struct Nats {
    plan: NatsTargetPlan,
    /// Secrets, read when the run starts.
    login: Login,
    name: String,
    ack_timeout: Duration,
    seed: u64,
    client: Option<async_nats::Client>,
    js: Option<async_nats::jetstream::Context>,
    /// The last error the server reported on the connection.
    server_error: ServerErrors,
}

impl Nats {
    /// Reads the target's secrets and TLS files now: a missing credentials
    /// file is a setup error (exit 78) before anything runs.
    pub fn new(plan: &NatsTargetPlan, name: String, ack_timeout: Duration, seed: u64) -> Result<Nats, String> {
        Ok(Nats {
            plan: plan.clone(),
            login: Login::new(&plan.conn)?,
            name,
            ack_timeout,
            seed,
            client: None,
            js: None,
            server_error: Arc::new(Mutex::new(None)),
        })
    }
}

impl Target for Nats {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn connect(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SendError>> + Send + '_>> {
        Box::pin(async move {
            if let Some(c) = &self.client {
                // The client reconnects on its own; until it has, nothing is sent.
                return match c.connection_state() {
                    State::Connected => Ok(()),
                    _ => Err(SendError::Unreachable("connection lost; reconnecting".into())),
                };
            }
            let client =
                self.login.connect(&self.name, self.ack_timeout, self.seed, &self.server_error).await.map_err(|e| {
                    match e {
                        ConnectFailure::Refused(why) => SendError::Refused(why),
                        ConnectFailure::Unreachable(why) => SendError::Unreachable(why),
                    }
                })?;
            let mut js = async_nats::jetstream::new(client.clone());
            js.set_timeout(self.ack_timeout);
            self.client = Some(client);
            self.js = Some(js);
            Ok(())
        })
    }

    fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.connection_state() == State::Connected)
    }

    fn server(&self) -> Option<String> {
        self.client.as_ref().map(|c| {
            let info = c.server_info();
            format!("{}:{} ({})", info.host, info.port, info.server_name)
        })
    }

    fn publish<'a>(
        &'a mut self,
        m: &'a Message,
        s: &'a Sender,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<AckFuture, SendError>> + Send + 'a>> {
        Box::pin(async move {
            let js = self.js.as_ref().ok_or_else(|| SendError::Unreachable("not connected".into()))?;
            let mut headers = HeaderMap::new();
            for (k, v) in m.headers(s) {
                headers.insert(k, v.as_str());
            }
            if let Some(stream) = &self.plan.stream {
                headers.insert("Nats-Expected-Stream", stream.as_str());
            }
            let ack = js
                .publish_with_headers(m.subject(s), headers, m.body.clone().into())
                .await
                .map_err(|e| SendError::Unreachable(e.to_string()))?;
            let errors = self.server_error.clone();
            let timeout = self.ack_timeout;
            let fut: AckFuture = Box::pin(async move {
                match ack.await {
                    Ok(a) => Ok(Ack { duplicate: a.duplicate }),
                    Err(e) => {
                        let server = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        Err(match (e.kind(), server) {
                            (_, Some(why)) if is_refusal(&why) => SendError::Refused(why),
                            (PublishErrorKind::TimedOut, _) => {
                                SendError::Unreachable(format!("no acknowledgement within {timeout:?}"))
                            }
                            (PublishErrorKind::StreamNotFound, _) => {
                                SendError::Rejected("no stream stores this subject (create the stream first)".into())
                            }
                            (PublishErrorKind::MaxPayloadExceeded, _) => SendError::Rejected(
                                "the message is larger than the server's max_payload; lower message.max_bytes".into(),
                            ),
                            (PublishErrorKind::BrokenPipe, _) => SendError::Unreachable("connection lost".into()),
                            (_, _) => SendError::Rejected(match std::error::Error::source(&e) {
                                Some(src) => format!("{e}: {src}"),
                                None => e.to_string(),
                            }),
                        })
                    }
                }
            });
            Ok(fut)
        })
    }
}
