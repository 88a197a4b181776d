//! The NATS connection of a spec, for forward targets and `nats` sources
//! alike: server URLs, one way to log in, TLS.

use super::diag::Code;
use super::plan::*;
use super::{is_id, key, Cx};
use crate::spec::{SecretSpec, TlsSpec, Urls};

/// The connection fields of a NATS spec, whichever section it is in.
pub(super) struct NatsLogin<'a> {
    pub url: &'a Urls,
    pub credentials: &'a Option<SecretSpec>,
    pub nkey: &'a Option<SecretSpec>,
    pub username: &'a Option<SecretSpec>,
    pub password: &'a Option<SecretSpec>,
    pub token: &'a Option<SecretSpec>,
    pub tls: &'a Option<TlsSpec>,
}

/// The [`NatsLogin`] of any spec with the NATS connection fields.
macro_rules! login_of {
    ($n:expr) => {
        $crate::compile::nats::NatsLogin {
            url: &$n.url,
            credentials: &$n.credentials,
            nkey: &$n.nkey,
            username: &$n.username,
            password: &$n.password,
            token: &$n.token,
            tls: &$n.tls,
        }
    };
}
pub(super) use login_of;

pub(super) fn connection(cx: &mut Cx, path: &str, n: &NatsLogin) -> NatsConnPlan {
    let url_path = key(path, "url");
    let urls = n.url.list();
    if urls.is_empty() {
        cx.err(Code::InvalidValue, &url_path, "no server URL: write `nats://host:4222` or a list");
    }
    for (i, u) in urls.iter().enumerate() {
        let p = if matches!(n.url, Urls::Many(_)) { super::diag_index(&url_path, i) } else { url_path.clone() };
        match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "nats" | "tls") && url.host_str().is_some_and(|h| !h.is_empty()) => {
                if url.password().is_some() || !url.username().is_empty() {
                    cx.err(
                        Code::InlineSecret,
                        &p,
                        "the URL carries credentials; use `username`/`password` or `token` from a secret",
                    );
                }
            }
            _ => {
                cx.err(Code::InvalidAddress, &p, format!("`{u}` is not `nats://host:port` or `tls://host:port`"));
            }
        }
    }
    let secret = |cx: &mut Cx, k: &str, s: &Option<SecretSpec>| s.as_ref().and_then(|s| cx.secret(&key(path, k), s));
    let credentials = secret(cx, "credentials", n.credentials);
    let nkey = secret(cx, "nkey", n.nkey);
    let username = secret(cx, "username", n.username);
    let password = secret(cx, "password", n.password);
    let token = secret(cx, "token", n.token);
    let given = super::given(&[
        ("credentials", n.credentials.is_some()),
        ("nkey", n.nkey.is_some()),
        ("username", n.username.is_some()),
        ("token", n.token.is_some()),
    ]);
    if given.len() > 1 {
        cx.err_key(
            Code::Conflict,
            &key(path, given[1]),
            format!("`{}` and `{}` are two ways to log in; keep one", given[0], given[1]),
        );
    }
    if n.username.is_some() != n.password.is_some() {
        let missing = if n.username.is_some() { "password" } else { "username" };
        cx.err_key(Code::MissingField, path, format!("`username` and `password` go together; `{missing}` is missing"));
    }
    let auth = match (credentials, nkey, username.zip(password), token) {
        (Some(c), ..) => NatsAuth::Credentials(c),
        (_, Some(k), ..) => NatsAuth::Nkey(k),
        (_, _, Some((u, p)), _) => NatsAuth::UserPassword(u, p),
        (.., Some(t)) => NatsAuth::Token(t),
        _ => NatsAuth::None,
    };
    let tls = n.tls.as_ref().map(|t| cx.tls(&key(path, "tls"), t));
    NatsConnPlan { urls: urls.iter().map(|u| u.to_string()).collect(), auth, tls }
}

/// Stream and consumer names: 1–64 letters, digits, `_` or `-`.
pub(super) fn check_stream(cx: &mut Cx, path: &str, name: &str) {
    if !is_id(name) {
        cx.err(Code::InvalidId, path, format!("`{name}` is not a stream or consumer name")).note =
            Some("1–64 letters, digits, `_` or `-`".into());
    }
}

/// Whether `s` is a NATS subject (`*` a whole token, `>` only the last one
/// when `wildcards`); the reason when not.
pub(super) fn check_subject(s: &str, wildcards: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err("an empty token (two dots, or a dot at an end)".into());
        }
        if t.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("white space in a token".into());
        }
        if (t.contains('*') && *t != "*") || (t.contains('>') && *t != ">") {
            return Err(format!("`{t}`: a wildcard is a whole token"));
        }
        if !wildcards && (*t == "*" || *t == ">") {
            return Err("no wildcards here".into());
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err("`>` only as the last token".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_filters() {
        assert!(check_subject("eg.berlin.gw-1.reading", false).is_ok());
        assert!(check_subject("eg.*.*.reading", true).is_ok());
        assert!(check_subject("eg.>", true).is_ok());
        assert!(check_subject("eg.>", false).is_err());
        assert!(check_subject("eg.>.x", true).is_err());
        assert!(check_subject("eg..x", true).is_err());
        assert!(check_subject("eg.a*", true).is_err());
        assert!(check_subject("eg. x", true).is_err());
        assert!(check_subject("", true).is_err());
    }
}
