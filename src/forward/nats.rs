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
use async_nats::{ConnectErrorKind, ConnectOptions, Event, HeaderMap, ServerError};

use super::message::{Message, Sender};
use super::{Ack, AckFuture, SendError, Target};
use crate::compile::{NatsAuth, NatsTargetPlan};

/// Backoff of (re)connecting: `attempt` 0, 1, … → 200 ms × 2ⁿ up to 10 s,
/// times a factor in [0.5, 1] so a fleet that lost its hub does not come back in step.
pub fn reconnect_delay(attempt: usize, seed: u64) -> Duration {
    let full = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(6)).min(Duration::from_secs(10));
    let mut rng = crate::model::rng::Rng(seed ^ (attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    full.mul_f64(0.5 + 0.5 * rng.unit())
}

pub struct Nats {
    plan: NatsTargetPlan,
    /// Secrets, read when the run starts.
    auth: Auth,
    name: String,
    ack_timeout: Duration,
    seed: u64,
    client: Option<async_nats::Client>,
    js: Option<async_nats::jetstream::Context>,
    /// The last error the server reported on the connection.
    server_error: Arc<Mutex<Option<String>>>,
}

enum Auth {
    None,
    Credentials(String),
    Nkey(String),
    UserPassword(String, String),
    Token(String),
}

impl Nats {
    /// Reads the target's secrets and TLS files now: a missing credentials
    /// file is a setup error (exit 78) before anything runs.
    pub fn new(plan: &NatsTargetPlan, name: String, ack_timeout: Duration, seed: u64) -> Result<Nats, String> {
        let read = |s: &crate::compile::SecretRef, what: &str| s.read().map_err(|e| format!("{what}: {e}"));
        let auth = match &plan.auth {
            NatsAuth::None => Auth::None,
            NatsAuth::Credentials(s) => {
                let text = read(s, "credentials")?;
                // Parsed now, so a file that is not a .creds file fails here.
                ConnectOptions::with_credentials(&text)
                    .map_err(|e| format!("credentials: not a NATS credentials file: {e}"))?;
                Auth::Credentials(text)
            }
            NatsAuth::Nkey(s) => Auth::Nkey(read(s, "nkey")?),
            NatsAuth::UserPassword(u, p) => Auth::UserPassword(read(u, "username")?, read(p, "password")?),
            NatsAuth::Token(t) => Auth::Token(read(t, "token")?),
        };
        if plan.tls.is_some() || plan.urls.iter().any(|u| u.starts_with("tls://")) {
            crate::tls::client_config(plan.tls.as_ref())?;
        }
        Ok(Nats {
            plan: plan.clone(),
            auth,
            name,
            ack_timeout,
            seed,
            client: None,
            js: None,
            server_error: Arc::new(Mutex::new(None)),
        })
    }

    fn options(&self) -> Result<ConnectOptions, SendError> {
        let mut o = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Credentials(c) => {
                ConnectOptions::with_credentials(c).map_err(|e| SendError::Refused(e.to_string()))?
            }
            Auth::Nkey(k) => ConnectOptions::with_nkey(k.clone()),
            Auth::UserPassword(u, p) => ConnectOptions::with_user_and_password(u.clone(), p.clone()),
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
        };
        if self.plan.tls.is_some() || self.plan.urls.iter().any(|u| u.starts_with("tls://")) {
            let cfg = crate::tls::client_config(self.plan.tls.as_ref()).map_err(SendError::Refused)?;
            o = o.tls_client_config(cfg).require_tls(true);
        }
        let errors = self.server_error.clone();
        let seed = self.seed;
        Ok(o.name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(self.ack_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| reconnect_delay(attempt, seed))
            .event_callback(move |event| {
                let errors = errors.clone();
                async move {
                    match event {
                        Event::ServerError(ServerError::AuthorizationViolation) => {
                            *errors.lock().unwrap_or_else(|e| e.into_inner()) = Some("authorization violation".into())
                        }
                        Event::ServerError(ServerError::Other(e)) => {
                            *errors.lock().unwrap_or_else(|e| e.into_inner()) = Some(e)
                        }
                        Event::Connected => {}
                        other => tracing::debug!("nats: {other}"),
                    }
                }
            }))
    }
}

/// Whether a server error means we may not do what we tried.
fn is_refusal(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("permissions violation") || e.contains("authorization violation") || e.contains("authentication")
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
            let opts = self.options()?;
            let urls: Vec<async_nats::ServerAddr> = self.plan.urls.iter().filter_map(|u| u.parse().ok()).collect();
            match opts.connect(urls.as_slice()).await {
                Ok(client) => {
                    let mut js = async_nats::jetstream::new(client.clone());
                    js.set_timeout(self.ack_timeout);
                    self.client = Some(client);
                    self.js = Some(js);
                    *self.server_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    Ok(())
                }
                Err(e) => {
                    let why = e.to_string();
                    Err(match e.kind() {
                        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                            SendError::Refused(why)
                        }
                        ConnectErrorKind::Tls => SendError::Refused(format!("TLS: {why}")),
                        // rustls' verdict on the hub's certificate arrives as an I/O error.
                        _ if why.contains("certificate") => SendError::Refused(format!("TLS: {why}")),
                        _ => SendError::Unreachable(why),
                    })
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_grows_from_200ms_to_10s_with_jitter() {
        let d0 = reconnect_delay(0, 1);
        assert!(d0 >= Duration::from_millis(100) && d0 <= Duration::from_millis(200), "{d0:?}");
        for a in 6..40 {
            let d = reconnect_delay(a, 7);
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(10), "{a}: {d:?}");
        }
        // Two gateways with other seeds wait differently.
        assert_ne!(reconnect_delay(3, 1), reconnect_delay(3, 2));
    }

    #[test]
    fn refusals_are_recognised_in_server_errors() {
        assert!(is_refusal("Permissions Violation for Publish to \"eg.x.y.reading\""));
        assert!(is_refusal("authorization violation"));
        assert!(!is_refusal("slow consumer"));
    }
}
