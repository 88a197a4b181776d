//! Connecting to an MQTT broker, once for every part that does: the `mqtt`
//! source, the MQTT notifier and the MQTT forward target. Each then sets
//! what is its own (session, acks, windows).

use std::sync::Arc;

use rumqttc::MqttOptions;

use crate::compile::{SecretRef, TlsPlan};

/// A broker's settings from its URL (`mqtt://`, `tcp://`; `mqtts://`,
/// `ssl://` with TLS), the client id, the login, the TLS files and the
/// keep-alive (at least 1 s), and its
/// `host:port` for messages. Reads the secrets and TLS files now, so a
/// missing one stops the run before it starts (exit 78).
pub fn options(
    url: &str,
    client_id: String,
    username: Option<&SecretRef>,
    password: Option<&SecretRef>,
    tls: Option<&TlsPlan>,
    keepalive: std::time::Duration,
) -> Result<(MqttOptions, String), String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let secure = matches!(u.scheme(), "mqtts" | "ssl");
    let host = u.host_str().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
    let port = u.port().unwrap_or(if secure { 8883 } else { 1883 });
    let mut o = MqttOptions::new(client_id, host.clone(), port);
    o.set_keep_alive(keepalive.max(std::time::Duration::from_secs(1)));
    if let Some(user) = username {
        let user = user.read().map_err(|e| format!("username: {e}"))?;
        let pass = password.map(SecretRef::read).transpose().map_err(|e| format!("password: {e}"))?;
        o.set_credentials(user, pass.unwrap_or_default());
    }
    if secure {
        let cfg = crate::tls::client_config(tls)?;
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(cfg))));
    }
    Ok((o, format!("{host}:{port}")))
}
