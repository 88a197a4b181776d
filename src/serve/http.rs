//! The HTTP plumbing of `serve`: TLS with rustls, bearer-token checks in
//! constant time, and CORS for the configured origins only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::compile::TlsPlan;

/// The TLS acceptor of `serve` (certificate chain and key from `serve.tls`).
pub fn tls_acceptor(t: &TlsPlan) -> Result<TlsAcceptor, String> {
    crate::tls::server_config(t).map(|cfg| TlsAcceptor::from(Arc::new(cfg)))
}

/// Accepts TCP connections and hands out those whose TLS handshake
/// finished; handshakes run side by side, so a slow client holds up no one.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
                    if let Ok(Ok(tls)) = hs {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { rx, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Whether `given` is the token, in time that does not depend on where they differ.
pub fn token_matches(given: &[u8], token: &[u8]) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    // Hash both so that the comparison does not leak the token's length either.
    let a = sha2::Sha256::digest(given);
    let b = sha2::Sha256::digest(token);
    a.ct_eq(&b).into()
}

/// Requires `Authorization: Bearer TOKEN` on the API and metrics (not on the
/// dashboard's static page or the health checks), before any other work.
pub async fn require_token(
    axum::extract::State(token): axum::extract::State<Option<Arc<str>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else { return next.run(req).await };
    let path = req.uri().path();
    let open = matches!(path, "/" | "/healthz" | "/readyz") || req.method() == Method::OPTIONS;
    if open {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if token_matches(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            axum::Json(serde_json::json!({"error": "a bearer token is required"})),
        )
            .into_response(),
    }
}

/// CORS for the origins in `serve.cors` only; none by default.
pub async fn cors(
    axum::extract::State(origins): axum::extract::State<Arc<Vec<String>>>,
    req: Request,
    next: Next,
) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let allowed = origin.filter(|o| origins.iter().any(|a| a == o || a == "*"));
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Some(o) = &allowed {
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_str(o).unwrap_or(HeaderValue::from_static("null")),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        return r;
    }
    let mut r = next.run(req).await;
    if let Some(o) = allowed {
        if let Ok(v) = HeaderValue::from_str(&o) {
            r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            r.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    r
}

/// Refuses what a page on another site could make a browser do to serve:
/// a POST whose `Origin` is neither serve itself nor a `serve.cors` origin
/// (cross-site request forgery: fake readings, backups), and — when there is
/// no token — any request whose `Host` is not a loopback name (DNS
/// rebinding: a foreign name resolved to 127.0.0.1 to read the API).
pub async fn same_site(
    axum::extract::State((origins, has_token)): axum::extract::State<(Arc<Vec<String>>, bool)>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !has_token {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let loopback =
            name == "localhost" || name == "[::1]" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback());
        if !loopback {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({"error": "without a token serve answers only to loopback host names (localhost, 127.0.0.1)"})),
            )
                .into_response();
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let same = origin == format!("http://{host}") || origin == format!("https://{host}");
            let listed = origins.iter().any(|a| a == origin || a == "*");
            if !same && !listed {
                return (
                    StatusCode::FORBIDDEN,
                    axum::Json(
                        serde_json::json!({"error": format!("requests from {origin} are not allowed (serve.cors)")}),
                    ),
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}
