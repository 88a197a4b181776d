//! The envelope of a forwarded message: who sent it and which records of
//! which commit it holds. One definition for both ends of the wire: forward
//! targets write it, the `nats` source and `collect` read it back.
//!
//! On NATS the envelope is the message's headers (`Eg-Site`, …,
//! `Nats-Msg-Id`); the body is the NDJSON records as printed, zstd-compressed
//! when `Content-Encoding: zstd`. MQTT 3.1.1 has no headers, so there the
//! payload's first line is the envelope as one JSON object
//! (`{"kind":"envelope",…}`), followed by the body. A message that crossed
//! from MQTT into NATS (nats-server's MQTT listener) carries no headers and
//! the envelope line: [`Envelope::split`] reads both forms.

use std::fmt::Write as _;

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub site: String,
    pub gateway: String,
    /// The sending store's epoch (16 hex digits).
    pub epoch: String,
    /// The store commit the records belong to.
    pub commit: i64,
    /// Which part of the commit (a large commit is split).
    pub part: u32,
    /// Position of the first record among the commit's forwarded records.
    pub offset: u64,
    /// Records in the message.
    pub count: u64,
    /// The sender's store schema version.
    pub schema: i64,
    /// Sent from the backlog (after a restart or an outage), not live.
    pub backlog: bool,
    /// The body is zstd-compressed.
    pub zstd: bool,
}

/// Largest body a message may decompress to (a guard against a zip bomb;
/// forward targets send at most 64 MiB before compression).
pub const MAX_BODY: usize = 64 << 20;

impl Envelope {
    /// `<gateway>:<epoch>:<commit>.<part>`: `Nats-Msg-Id`, the dedup key of a message.
    pub fn id(&self) -> String {
        format!("{}:{}:{}.{}", self.gateway, self.epoch, self.commit, self.part)
    }

    /// The envelope as header pairs, in a fixed order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Nats-Msg-Id", self.id()),
            ("Eg-Site", self.site.clone()),
            ("Eg-Gateway", self.gateway.clone()),
            ("Eg-Epoch", self.epoch.clone()),
            ("Eg-Commit", self.commit.to_string()),
            ("Eg-Part", self.part.to_string()),
            ("Eg-Offset", self.offset.to_string()),
            ("Eg-Count", self.count.to_string()),
            ("Eg-Schema", self.schema.to_string()),
        ];
        if self.backlog {
            h.push(("Eg-Backlog", "1".into()));
        }
        if self.zstd {
            h.push(("Content-Encoding", "zstd".into()));
        }
        h
    }

    /// The envelope read from headers; `get` looks one up by name. `None`
    /// when the message has no `Eg-Gateway` (not sent with headers).
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Envelope>, String> {
        let Some(gateway) = get("Eg-Gateway") else { return Ok(None) };
        let num = |name: &str| -> Result<u64, String> {
            let v = get(name).ok_or_else(|| format!("no {name} header"))?;
            v.trim().parse().map_err(|_| format!("{name} `{v}` is not a number"))
        };
        Ok(Some(Envelope {
            site: get("Eg-Site").ok_or("no Eg-Site header")?.to_string(),
            gateway: gateway.to_string(),
            epoch: get("Eg-Epoch").ok_or("no Eg-Epoch header")?.to_string(),
            commit: num("Eg-Commit")? as i64,
            part: num("Eg-Part")? as u32,
            offset: num("Eg-Offset")?,
            count: num("Eg-Count")?,
            schema: num("Eg-Schema")? as i64,
            backlog: get("Eg-Backlog").is_some_and(|v| v.trim() == "1"),
            zstd: get("Content-Encoding").is_some_and(|v| v.trim().eq_ignore_ascii_case("zstd")),
        }))
    }

    /// The envelope as one JSON line (with its newline): the first line of
    /// an MQTT payload.
    pub fn line(&self) -> String {
        let mut s = String::with_capacity(200);
        s.push_str("{\"kind\":\"envelope\",\"id\":");
        json_str(&mut s, &self.id());
        s.push_str(",\"site\":");
        json_str(&mut s, &self.site);
        s.push_str(",\"gateway\":");
        json_str(&mut s, &self.gateway);
        s.push_str(",\"epoch\":");
        json_str(&mut s, &self.epoch);
        let _ = writeln!(
            s,
            ",\"commit\":{},\"part\":{},\"offset\":{},\"count\":{},\"schema\":{},\"backlog\":{},\"encoding\":\"{}\"}}",
            self.commit,
            self.part,
            self.offset,
            self.count,
            self.schema,
            self.backlog,
            if self.zstd { "zstd" } else { "identity" }
        );
        s
    }

    /// A payload that starts with an envelope line: the envelope and the rest
    /// (the body). `Ok(None)` when the first line is not an envelope.
    pub fn split(payload: &[u8]) -> Result<Option<(Envelope, &[u8])>, String> {
        if !payload.starts_with(b"{\"kind\":\"envelope\"") {
            return Ok(None);
        }
        let end = memchr::memchr(b'\n', payload).ok_or("the envelope line has no end")?;
        #[derive(serde::Deserialize)]
        struct Line {
            site: String,
            gateway: String,
            epoch: String,
            commit: i64,
            part: u32,
            offset: u64,
            count: u64,
            schema: i64,
            #[serde(default)]
            backlog: bool,
            #[serde(default)]
            encoding: Option<String>,
        }
        let l: Line =
            serde_json::from_slice(&payload[..end]).map_err(|e| format!("the envelope line does not parse: {e}"))?;
        let env = Envelope {
            site: l.site,
            gateway: l.gateway,
            epoch: l.epoch,
            commit: l.commit,
            part: l.part,
            offset: l.offset,
            count: l.count,
            schema: l.schema,
            backlog: l.backlog,
            zstd: l.encoding.as_deref() == Some("zstd"),
        };
        Ok(Some((env, &payload[end + 1..])))
    }
}

fn json_str(out: &mut String, s: &str) {
    let mut buf = Vec::with_capacity(s.len() + 2);
    super::ndjson::write_json_str(&mut buf, s);
    out.push_str(std::str::from_utf8(&buf).expect("JSON text is UTF-8"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            site: "berlin".into(),
            gateway: "gw-1".into(),
            epoch: "00ff00ff00ff00ff".into(),
            commit: 42,
            part: 3,
            offset: 3000,
            count: 1000,
            schema: 5,
            backlog: true,
            zstd: true,
        }
    }

    #[test]
    fn headers_round_trip() {
        let e = sample();
        let h = e.headers();
        assert_eq!(h[0], ("Nats-Msg-Id", "gw-1:00ff00ff00ff00ff:42.3".into()));
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(Envelope::from_headers(get).unwrap(), Some(e.clone()));
        let plain = Envelope { backlog: false, zstd: false, ..e };
        let h = plain.headers();
        assert!(!h.iter().any(|(n, _)| *n == "Eg-Backlog" || *n == "Content-Encoding"));
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(Envelope::from_headers(get).unwrap(), Some(plain));
        // No headers at all: not an error, just not this form.
        assert_eq!(Envelope::from_headers(|_| None).unwrap(), None);
        // A broken number is an error that names the header.
        let bad = |k: &str| if k == "Eg-Commit" { Some("x") } else { get(k) };
        assert!(Envelope::from_headers(bad).unwrap_err().contains("Eg-Commit"));
    }

    #[test]
    fn the_envelope_line_round_trips_and_leaves_the_body() {
        let e = sample();
        let mut payload = e.line().into_bytes();
        assert!(payload.ends_with(b"\n"));
        let _: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        payload.extend_from_slice(b"{\"kind\":\"reading\"}\n");
        let (back, body) = Envelope::split(&payload).unwrap().unwrap();
        assert_eq!(back, e);
        assert_eq!(body, b"{\"kind\":\"reading\"}\n");
        assert_eq!(Envelope::split(b"{\"kind\":\"reading\"}\n").unwrap(), None);
        assert!(Envelope::split(b"{\"kind\":\"envelope\",\"site\":1}").is_err());
    }
}
