//! Connecting to NATS, once for every part that talks to a hub: forward
//! targets publish through it, the `nats` source and `collect` consume
//! through it.
//!
//! [`Login`] reads the secrets when a run starts (a missing credentials file
//! is a setup error, exit 78, before anything runs); [`Login::options`]
//! builds the client's settings: credentials, TLS, a name, the reconnect
//! backoff (200 ms → 10 s with jitter, forever) and a callback that keeps
//! the last error the server reported, so a publish or fetch that never gets
//! an answer can be explained (a permissions violation has no other sign).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};

use crate::compile::{NatsAuth, NatsConnPlan, SecretRef};

/// Backoff of (re)connecting: `attempt` 0, 1, … → 200 ms × 2ⁿ up to 10 s,
/// times a factor in [0.5, 1] so a fleet that lost its hub does not come back in step.
pub fn reconnect_delay(attempt: usize, seed: u64) -> Duration {
    let full = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(6)).min(Duration::from_secs(10));
    let mut rng = crate::model::rng::Rng(seed ^ (attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    full.mul_f64(0.5 + 0.5 * rng.unit())
}

/// The last error the server reported on a connection.
pub type ServerErrors = Arc<Mutex<Option<String>>>;

/// How a client proves who it is, with its secrets read.
pub struct Login {
    plan: NatsConnPlan,
    auth: Auth,
}

enum Auth {
    None,
    Credentials(String),
    Nkey(String),
    UserPassword(String, String),
    Token(String),
}

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Credentials or the hub's certificate refused (exit 77).
    Refused(String),
    /// Nobody answered, or not in time.
    Unreachable(String),
}

impl Login {
    /// Reads the secrets and checks the TLS files now.
    pub fn new(plan: &NatsConnPlan) -> Result<Login, String> {
        let read = |s: &SecretRef, what: &str| s.read().map_err(|e| format!("{what}: {e}"));
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
        if Self::wants_tls(plan) {
            crate::tls::client_config(plan.tls.as_ref())?;
        }
        Ok(Login { plan: plan.clone(), auth })
    }

    fn wants_tls(plan: &NatsConnPlan) -> bool {
        plan.tls.is_some() || plan.urls.iter().any(|u| u.starts_with("tls://"))
    }

    /// The servers to try, in the spec's order.
    pub fn servers(&self) -> Vec<async_nats::ServerAddr> {
        self.plan.urls.iter().filter_map(|u| u.parse().ok()).collect()
    }

    /// Client settings: login, TLS, `name` (shown by the server), the
    /// request timeout, reconnect forever with [`reconnect_delay`], and the
    /// server's errors kept in `errors`.
    pub fn options(
        &self,
        name: &str,
        request_timeout: Duration,
        seed: u64,
        errors: &ServerErrors,
    ) -> Result<ConnectOptions, ConnectFailure> {
        let mut o = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Credentials(c) => {
                ConnectOptions::with_credentials(c).map_err(|e| ConnectFailure::Refused(e.to_string()))?
            }
            Auth::Nkey(k) => ConnectOptions::with_nkey(k.clone()),
            Auth::UserPassword(u, p) => ConnectOptions::with_user_and_password(u.clone(), p.clone()),
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
        };
        if Self::wants_tls(&self.plan) {
            let cfg = crate::tls::client_config(self.plan.tls.as_ref()).map_err(ConnectFailure::Refused)?;
            o = o.tls_client_config(cfg).require_tls(true);
        }
        let errors = errors.clone();
        Ok(o.name(name)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(request_timeout))
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

    /// Connects to the first server that answers (each is tried once).
    pub async fn connect(
        &self,
        name: &str,
        request_timeout: Duration,
        seed: u64,
        errors: &ServerErrors,
    ) -> Result<async_nats::Client, ConnectFailure> {
        let opts = self.options(name, request_timeout, seed, errors)?;
        match opts.connect(self.servers().as_slice()).await {
            Ok(client) => {
                *errors.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(client)
            }
            Err(e) => {
                let why = e.to_string();
                Err(match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        ConnectFailure::Refused(why)
                    }
                    ConnectErrorKind::Tls => ConnectFailure::Refused(format!("TLS: {why}")),
                    // rustls' verdict on the hub's certificate arrives as an I/O error.
                    _ if why.contains("certificate") => ConnectFailure::Refused(format!("TLS: {why}")),
                    _ => ConnectFailure::Unreachable(why),
                })
            }
        }
    }
}

/// Whether a server error means we may not do what we tried.
pub fn is_refusal(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("permissions violation") || e.contains("authorization violation") || e.contains("authentication")
}

/// The server's last error, if it was a refusal.
pub fn refusal(errors: &ServerErrors) -> Option<String> {
    errors.lock().unwrap_or_else(|e| e.into_inner()).clone().filter(|e| is_refusal(e))
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
