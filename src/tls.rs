//! TLS for every client and server of the crate, in one place: rustls with
//! the ring provider (aws-lc-rs would add a cmake/C build beside DuckDB's).
//! MQTT sources and notifiers, webhooks, the backup client and `serve`'s
//! listener all take their configuration from here.

use std::sync::{Arc, Once};

use crate::compile::TlsPlan;

/// Makes ring the process-wide rustls provider, for clients (reqwest) that
/// build their configuration from the default. Idempotent.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// rustls client settings (ring provider): the CA file given, or the
/// system bundle; a client certificate when both cert and key are given.
pub fn client_config(tls: Option<&TlsPlan>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = tls.and_then(|t| t.ca.clone()).unwrap_or_else(|| {
        std::env::var_os("SSL_CERT_FILE").map_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into(), Into::into)
    });
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match tls.map(|t| (&t.cert, &t.key)) {
        Some((Some(cert), Some(key))) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// A rustls server configuration from the certificate chain and key files
/// (HTTP/1.1 by ALPN).
pub fn server_config(t: &TlsPlan) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        return Err("needs both `cert` and `key`".into());
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
