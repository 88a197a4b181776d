//! Diagnostics: what is wrong with a spec, where, and what to do about it.
//!
//! Every problem has a stable [`Code`] (documented in the README and pinned by
//! snapshot tests), a position, the key path, and optionally a hint. They
//! render as text with the source line and a caret, as JSON lines, or as
//! GitHub workflow annotations.

use std::fmt::Write as _;

/// A 1-based line and column in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. The number never changes meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// E001 the file is not valid YAML.
    Syntax,
    /// E002 the file is not UTF-8.
    Encoding,
    /// E003 the file, its nesting or its alias expansion is too large.
    TooLarge,
    /// E004 a key appears twice in one map.
    DuplicateKey,
    /// E010 a key the spec does not define.
    UnknownField,
    /// E011 a value of the wrong type or shape.
    InvalidValue,
    /// E012 a required key is missing.
    MissingField,
    /// E013 an unknown component `type`.
    UnknownKind,
    /// E014 an unsupported spec `version`.
    Version,
    /// E020 an id that is not well-formed.
    InvalidId,
    /// E021 a channel produced by two places.
    DuplicateChannel,
    /// E030 a duration, rate, size or range that does not parse or makes no sense.
    InvalidQuantity,
    /// E032 units that disagree (a computed channel's inputs or result).
    UnitMismatch,
    /// E031 an address, URL, device or path that does not parse.
    InvalidAddress,
    /// E033 a time zone that is not in the IANA database.
    UnknownTimeZone,
    /// E040 a reference to a channel, source, detector or notifier that does not exist.
    UnknownReference,
    /// E041 a glob that matches no channel.
    GlobMatchesNothing,
    /// E042 computed channels that depend on each other in a cycle.
    Cycle,
    /// E043 a label (in `group.by` or `inhibit.equal`) that no alert has.
    UnknownLabel,
    /// E050 a Modbus point that does not fit its type, table or request limits.
    ModbusPoint,
    /// E051 Modbus points that partially overlap.
    ModbusOverlap,
    /// E060 a template or expression that does not compile.
    Template,
    /// E061 a template or expression that fails on a sample record.
    TemplateRender,
    /// E070 a secret written inline instead of `{env: …}` or `{file: …}`.
    InlineSecret,
    /// E080 a setting that is unsafe or contradicts another.
    Conflict,
    /// E090 a test's input series that does not parse.
    TestSeries,
    /// E091 a test expectation that says none or two things, or not when.
    TestExpectation,
    /// W101 a Modbus address that looks like a 1-based "40001" reference.
    LooksOneBased,
    /// W102 a setting that has no effect.
    Useless,
    /// W103 a poll cycle that cannot fit its interval (RTU time budget).
    PollBudget,
    /// W104 a deadband whose heartbeat is not shorter than the channel's `stale`.
    HeartbeatTooLong,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E001",
            Code::Encoding => "E002",
            Code::TooLarge => "E003",
            Code::DuplicateKey => "E004",
            Code::UnknownField => "E010",
            Code::InvalidValue => "E011",
            Code::MissingField => "E012",
            Code::UnknownKind => "E013",
            Code::Version => "E014",
            Code::InvalidId => "E020",
            Code::DuplicateChannel => "E021",
            Code::InvalidQuantity => "E030",
            Code::InvalidAddress => "E031",
            Code::UnitMismatch => "E032",
            Code::UnknownReference => "E040",
            Code::GlobMatchesNothing => "E041",
            Code::Cycle => "E042",
            Code::UnknownLabel => "E043",
            Code::UnknownTimeZone => "E033",
            Code::ModbusPoint => "E050",
            Code::ModbusOverlap => "E051",
            Code::Template => "E060",
            Code::TemplateRender => "E061",
            Code::InlineSecret => "E070",
            Code::Conflict => "E080",
            Code::TestSeries => "E090",
            Code::TestExpectation => "E091",
            Code::LooksOneBased => "W101",
            Code::Useless => "W102",
            Code::PollBudget => "W103",
            Code::HeartbeatTooLong => "W104",
        }
    }

    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Option<Span>,
    pub path: Option<String>,
    pub hint: Option<String>,
    pub note: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), span: None, path: None, hint: None, note: None }
    }

    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    pub fn path(mut self, path: &str) -> Self {
        if !path.is_empty() {
            self.path = Some(path.to_string());
        }
        self
    }

    #[cfg(test)]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint.or(self.hint);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn note_opt(mut self, note: Option<String>) -> Self {
        self.note = note.or(self.note);
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

/// `Some("did you mean `x`?")` when a candidate is within edit distance 2
/// (or 3 for long words).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = if word.len() > 8 { 3 } else { 2 };
    candidates
        .into_iter()
        .filter_map(|c| {
            let d = strsim::damerau_levenshtein(word, c);
            // `client` for `client_id`: a clear prefix counts as close.
            let prefix = word.len() >= 3 && (c.starts_with(word) || word.starts_with(c));
            (d <= limit && d < c.len().max(word.len()) || prefix).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Output formats of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagFormat {
    /// Human-readable, with the source line and a caret.
    Text,
    /// One JSON object per line.
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

/// Renders one diagnostic for a file whose text is `source`.
pub fn render(d: &Diagnostic, file: &str, source: &str, format: DiagFormat, color: bool) -> String {
    match format {
        DiagFormat::Text => render_text(d, file, source, color),
        DiagFormat::Json => render_json(d, file),
        DiagFormat::Github => render_github(d, file),
    }
}

fn render_text(d: &Diagnostic, file: &str, source: &str, color: bool) -> String {
    let (red, yellow, blue, bold, reset) =
        if color { ("\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[1m", "\x1b[0m") } else { ("", "", "", "", "") };
    let (label, tone) = match d.severity() {
        Severity::Error => ("error", red),
        Severity::Warning => ("warning", yellow),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{bold}{tone}{label}[{}]{reset}{bold}: {}{reset}", d.code.as_str(), d.message);
    match d.span {
        Some(Span { line, col }) => {
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}{blue}-->{reset} {file}:{line}:{col}");
            if let Some(text) = source.lines().nth(line.saturating_sub(1)) {
                let text = text.trim_end();
                let shown: String = text.chars().take(160).collect();
                let caret_col = col.saturating_sub(1).min(shown.chars().count());
                let width = caret_width(&shown, caret_col);
                let lead: String = shown.chars().take(caret_col).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                let _ = writeln!(out, "{pad} {blue}|{reset}");
                let _ = writeln!(out, "{blue}{line} |{reset} {shown}");
                let _ = writeln!(out, "{pad} {blue}|{reset} {lead}{tone}{}{reset}", "^".repeat(width));
            }
        }
        None => {
            let _ = writeln!(out, " {blue}-->{reset} {file}");
        }
    }
    if let Some(path) = &d.path {
        let _ = writeln!(out, "  {blue}={reset} at: {path}");
    }
    if let Some(note) = &d.note {
        let _ = writeln!(out, "  {blue}={reset} note: {note}");
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(out, "  {blue}={reset} hint: {hint}");
    }
    out
}

/// Underlines the word (key or scalar) that starts at `col`.
fn caret_width(line: &str, col: usize) -> usize {
    let rest: String = line.chars().skip(col).collect();
    let quoted = rest.starts_with('"') || rest.starts_with('\'');
    let n = if quoted {
        let q = rest.chars().next().unwrap_or('"');
        rest.chars().skip(1).position(|c| c == q).map_or(rest.chars().count(), |p| p + 2)
    } else {
        rest.chars().take_while(|c| !matches!(c, ':' | ',' | '}' | ']' | '#') && !c.is_whitespace()).count()
    };
    n.max(1)
}

fn render_json(d: &Diagnostic, file: &str) -> String {
    let v = serde_json::json!({
        "file": file,
        "line": d.span.map(|s| s.line),
        "column": d.span.map(|s| s.col),
        "severity": d.severity(),
        "code": d.code.as_str(),
        "message": d.message,
        "path": d.path,
        "hint": d.hint,
        "note": d.note,
    });
    format!("{v}\n")
}

fn render_github(d: &Diagnostic, file: &str) -> String {
    // https://docs.github.com/actions/reference/workflow-commands-for-github-actions
    let level = match d.severity() {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut msg = d.message.clone();
    if let Some(p) = &d.path {
        msg += &format!(" (at {p})");
    }
    if let Some(h) = &d.hint {
        msg += &format!(" — {h}");
    }
    let esc = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| esc(s).replace(':', "%3A").replace(',', "%2C");
    match d.span {
        Some(s) => format!(
            "::{level} file={},line={},col={},title={}::{}\n",
            prop(file),
            s.line,
            s.col,
            d.code.as_str(),
            esc(&msg)
        ),
        None => format!("::{level} file={},title={}::{}\n", prop(file), d.code.as_str(), esc(&msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(did_you_mean("adress", ["address", "unit"]).as_deref(), Some("did you mean `address`?"));
        assert_eq!(did_you_mean("zz", ["address", "unit"]), None);
    }

    #[test]
    fn text_has_location_snippet_and_caret() {
        let d = Diagnostic::error(Code::UnknownField, "unknown field `adress`")
            .at(Span { line: 2, col: 3 })
            .path("sources.a.adress")
            .hint("did you mean `address`?");
        let out = render(&d, "p.yaml", "x:\n  adress: 1\n", DiagFormat::Text, false);
        assert_eq!(
            out,
            "error[E010]: unknown field `adress`\n --> p.yaml:2:3\n  |\n2 |   adress: 1\n  |   ^^^^^^\n  = at: sources.a.adress\n  = hint: did you mean `address`?\n"
        );
    }

    #[test]
    fn github_annotations_escape_properties() {
        let d = Diagnostic::error(Code::Syntax, "bad\nthing").at(Span { line: 1, col: 2 });
        assert_eq!(
            render(&d, "a,b.yaml", "", DiagFormat::Github, false),
            "::error file=a%2Cb.yaml,line=1,col=2,title=E001::bad%0Athing\n"
        );
    }
}
