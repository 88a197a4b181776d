//! Asking this spec's running `serve` to do what needs the store it holds
//! (`backup`, `query`): its address, scheme, token and CA come from the
//! spec's `serve` section.

use std::time::Duration;

use super::exit::{Exit, Failure};
use crate::compile::Plan;

/// POSTs `body` (JSON, or nothing) to `path` of the spec's serve; its
/// status and body. The store is held by `holder`: when the spec has no
/// `serve` section or nothing listens there, that holder is not this
/// spec's serve (exit 75, retry later).
pub fn post(
    plan: &Plan,
    holder: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), Failure> {
    let locked = || {
        Failure::new(
            Exit::TempFail,
            format!("the store is in use by {holder}, which is not a `serve` of this spec; retry later"),
        )
    };
    let Some(serve) = &plan.serve else { return Err(locked()) };
    let token = match &serve.token {
        Some(t) => Some(t.read().map_err(|e| Failure::new(Exit::Config, format!("serve.token: {e}")))?),
        None => None,
    };
    let mut addr = serve.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if serve.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}{path}");
    crate::tls::install_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Software, format!("cannot start the runtime: {e}")))?;
    let ca = serve
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .map(std::fs::read)
        .transpose()
        .map_err(|e| Failure::new(Exit::Config, format!("serve.tls.ca: {e}")))?;
    let answer = rt.block_on(async {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(pem) = &ca {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        let client = builder.build()?;
        let mut req = client.post(&url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await?;
        Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
    });
    match answer {
        Ok(a) => Ok(a),
        // Nobody listens there: the holder is not this spec's serve.
        Err(e) if e.is_connect() && !e.to_string().contains("certificate") => Err(locked()),
        Err(e) => Err(Failure::new(Exit::Failure, format!("asking serve at {url}: {e}"))),
    }
}
