//! The email notifier's SMTP client: one connection per message, always
//! encrypted — TLS from the first byte (`smtps://`, port 465) or STARTTLS
//! (`smtp://`, port 587; a server that does not offer it is an error, never
//! a plain-text fallback) — then AUTH PLAIN (or LOGIN), MAIL, RCPT, DATA.
//!
//! Small and ours rather than a crate: lettre's rustls build brings its own
//! TLS and DNS stack choices and a second set of features to keep in line
//! with src/tls.rs; this needs ~250 lines over tokio-rustls, which the crate
//! already uses. The message ([`message`]) is MIME with base64 parts, so no
//! rendered text can end a line early, start a header or end the DATA: CR
//! and LF in a channel name or a text value stay in the body, and the
//! subject is one header line (control characters become spaces).
//!
//! Errors name the server's reply; the password never appears in one (the
//! AUTH line is never echoed). 4xx replies and I/O errors may be retried,
//! 5xx replies (a refused login, a refused recipient) are final.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where and how to connect.
pub struct Client {
    pub host: String,
    pub port: u16,
    pub implicit_tls: bool,
    pub tls: Arc<rustls::ClientConfig>,
    /// User name and password.
    pub login: Option<(String, String)>,
    pub timeout: Duration,
}

/// What goes out: the envelope and the message (from [`message`]).
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub data: &'a [u8],
}

/// An error, and whether another attempt may help.
pub type Failed = (String, bool);

impl Client {
    /// Sends `mail` over one connection, within the timeout.
    pub async fn send(&self, mail: &Mail<'_>) -> Result<(), Failed> {
        let at = format!("{}:{}", self.host, self.port);
        match tokio::time::timeout(self.timeout, self.session(mail)).await {
            Ok(r) => r.map_err(|(e, retry)| (format!("smtp {at}: {e}"), retry)),
            Err(_) => Err((format!("smtp {at}: no answer within {:?}", self.timeout), true)),
        }
    }

    async fn session(&self, mail: &Mail<'_>) -> Result<(), Failed> {
        let io = |e: std::io::Error| (e.to_string(), true);
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(io)?;
        let name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| (format!("`{}` is not a server name: {e}", self.host), false))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let handshake = |e: std::io::Error| (format!("TLS: {e}"), false);
        if self.implicit_tls {
            let tls = connector.connect(name, tcp).await.map_err(handshake)?;
            let mut s = BufReader::new(tls);
            reply(&mut s, 220).await?;
            let ext = ehlo(&mut s).await?;
            self.transaction(&mut s, &ext, mail).await
        } else {
            let mut s = BufReader::new(tcp);
            reply(&mut s, 220).await?;
            let ext = ehlo(&mut s).await?;
            if !ext.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err(("the server does not offer STARTTLS (edgeguard sends no mail unencrypted)".into(), false));
            }
            command(&mut s, "STARTTLS", 220).await?;
            // Anything the server sent after its answer would be read as if
            // it came over TLS: refuse it (STARTTLS command injection).
            if !s.buffer().is_empty() {
                return Err(("the server sent data after its STARTTLS answer".into(), false));
            }
            let tls = connector.connect(name, s.into_inner()).await.map_err(handshake)?;
            let mut s = BufReader::new(tls);
            let ext = ehlo(&mut s).await?;
            self.transaction(&mut s, &ext, mail).await
        }
    }

    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut BufReader<S>,
        ext: &[String],
        mail: &Mail<'_>,
    ) -> Result<(), Failed> {
        if let Some((user, password)) = &self.login {
            let login_only =
                ext.iter().any(|l| is_auth_with(l, "LOGIN")) && !ext.iter().any(|l| is_auth_with(l, "PLAIN"));
            let refused = |(e, retry): Failed| (format!("login refused: {e}"), retry);
            if login_only {
                command(s, "AUTH LOGIN", 334).await.map_err(refused)?;
                command(s, &base64(user.as_bytes()), 334).await.map_err(refused)?;
                command(s, &base64(password.as_bytes()), 235).await.map_err(refused)?;
            } else {
                let token = base64(format!("\0{user}\0{password}").as_bytes());
                command(s, &format!("AUTH PLAIN {token}"), 235).await.map_err(refused)?;
            }
        }
        command(s, &format!("MAIL FROM:<{}>", mail.from), 250).await?;
        for to in mail.to {
            command(s, &format!("RCPT TO:<{to}>"), 250).await?;
        }
        command(s, "DATA", 354).await?;
        let mut data = Vec::with_capacity(mail.data.len() + 8);
        // Lines starting with a dot get another (RFC 5321 4.5.2); base64
        // parts never do, but headers might.
        for line in mail.data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        s.write_all(&data).await.map_err(|e| (e.to_string(), true))?;
        s.flush().await.map_err(|e| (e.to_string(), true))?;
        reply(s, 250).await?;
        let _ = command(s, "QUIT", 221).await;
        Ok(())
    }
}

fn is_auth_with(ext: &str, mech: &str) -> bool {
    let mut words = ext.split_ascii_whitespace();
    words.next().is_some_and(|w| w.eq_ignore_ascii_case("AUTH")) && words.any(|w| w.eq_ignore_ascii_case(mech))
}

/// EHLO; returns the extension lines.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) -> Result<Vec<String>, Failed> {
    let lines = command(s, "EHLO edgeguard", 250).await?;
    Ok(lines.into_iter().skip(1).collect())
}

/// Sends one command line and reads the reply, which must be `want`.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    want: u16,
) -> Result<Vec<String>, Failed> {
    let mut buf = line.as_bytes().to_vec();
    buf.extend_from_slice(b"\r\n");
    s.write_all(&buf).await.map_err(|e| (e.to_string(), true))?;
    s.flush().await.map_err(|e| (e.to_string(), true))?;
    // Never repeat a line that may carry a credential.
    let shown = if line.starts_with("AUTH") || want == 334 || want == 235 { "AUTH" } else { line };
    reply(s, want).await.map_err(|(e, retry)| (format!("{shown}: {e}"), retry))
}

/// Reads one (possibly multi-line) reply; its text lines when its code is `want`.
async fn reply<S: AsyncRead + Unpin>(s: &mut BufReader<S>, want: u16) -> Result<Vec<String>, Failed> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = String::new();
        let n = s.read_line(&mut line).await.map_err(|e| (e.to_string(), true))?;
        if n == 0 {
            return Err(("the server closed the connection".into(), true));
        }
        total += n;
        if total > 64 * 1024 {
            return Err(("the server's reply is too long".into(), false));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err((format!("not an SMTP reply: {:?}", line.chars().take(80).collect::<String>()), false));
        };
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if !more {
            if code == want {
                return Ok(lines);
            }
            let text = format!("{code} {}", lines.join(" ").chars().take(300).collect::<String>());
            return Err((text, (400..500).contains(&code)));
        }
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 in lines of 76 characters, each ending in CRLF.
fn base64_lines(data: &[u8]) -> String {
    let b = base64(data);
    let mut out = String::with_capacity(b.len() + b.len() / 38 + 2);
    for chunk in b.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// One header line's worth of text: control characters (CR, LF, tabs)
/// become spaces; at most 200 characters.
pub fn header_text(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    one.trim().to_string()
}

/// The Subject header's value: as it is when short printable ASCII, else
/// RFC 2047 encoded words (base64, UTF-8), folded.
fn encode_subject(s: &str) -> String {
    if s.len() <= 70 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.contains("=?") {
        return s.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?b?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?utf-8?b?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// The whole message: headers, then the plain text (and the HTML, as
/// multipart/alternative), each part base64.
pub fn message(
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
    html: Option<&str>,
    message_id: &str,
    date: crate::model::time::Micros,
) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp_micros(date)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string();
    let mut m = format!(
        "Date: {date}\r\nFrom: {from}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n",
        to.join(", "),
        encode_subject(&header_text(subject))
    );
    let text = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    match html {
        None => {
            m += text;
            m += &base64_lines(body.as_bytes());
        }
        Some(h) => {
            let boundary = format!("=_edgeguard_{}", base64(message_id.as_bytes()).replace(['+', '/', '='], ""));
            m += &format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n");
            m += &format!("--{boundary}\r\n{text}{}", base64_lines(body.as_bytes()));
            m += &format!(
                "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                base64_lines(h.as_bytes())
            );
            m += &format!("--{boundary}--\r\n");
        }
    }
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_the_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn nothing_rendered_can_add_a_header() {
        let evil = "boiler\r\nBcc: everyone@example.com\r\n\r\n.\r\nMAIL FROM:<x@y>";
        let m = message("eg@plant.example", &["ops@plant.example".into()], evil, evil, Some(evil), "id@edgeguard", 0);
        let text = String::from_utf8(m).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(!head.lines().any(|l| l.starts_with("Bcc")), "{head}");
        assert!(!text.lines().any(|l| l == "." || l.starts_with("MAIL")), "{text}");
        assert_eq!(header_text("a\r\nb\tc"), "a  b c");
        // Every body line is base64.
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert!(body.lines().all(|l| l.len() <= 76 || l.starts_with("Content-Type")), "{body}");
    }

    #[test]
    fn subjects_in_utf8_are_encoded_words() {
        assert_eq!(encode_subject("[critical] boiler hot"), "[critical] boiler hot");
        let s = encode_subject("Kessel über 95 °C");
        assert!(s.starts_with("=?utf-8?b?") && s.ends_with("?="), "{s}");
        let long = encode_subject(&"é".repeat(60));
        assert!(long.lines().all(|l| l.len() <= 76), "{long}");
    }
}
