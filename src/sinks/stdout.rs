//! The data output: records on stdout (or `--output FILE`) as NDJSON, CSV or
//! an aligned table. The only place in the crate that writes records to stdout
//! (commands print their own reports: `validate`, `--probe`, `--silences`, …).
//!
//! Output is written in large buffered chunks. A closed pipe (`| head -1`)
//! is not an error: [`OutputError::Closed`] tells the engine to stop quietly.
//! When stdout or `--output` is `/dev/null` nothing is formatted at all.

use std::fs::File;
use std::io::{self, IsTerminal, Write};

use crate::model::ndjson::write_f64;
use crate::model::record::Record;
use crate::model::time::write_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Ndjson,
    Csv,
    Table,
}

/// Which record kinds are printed (`--only reading,anomaly,alert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Only {
    pub reading: bool,
    pub anomaly: bool,
    pub alert: bool,
    pub other: bool,
}

impl Default for Only {
    fn default() -> Self {
        Only { reading: true, anomaly: true, alert: true, other: true }
    }
}

impl Only {
    pub fn parse(list: &str) -> Result<Only, String> {
        let mut o = Only { reading: false, anomaly: false, alert: false, other: false };
        for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            match k {
                "reading" | "readings" => o.reading = true,
                "anomaly" | "anomalies" => o.anomaly = true,
                "alert" | "alerts" => o.alert = true,
                _ => return Err(format!("`{k}` is not a record kind (reading, anomaly, alert)")),
            }
        }
        Ok(o)
    }

    fn wants(&self, r: &Record) -> bool {
        match r {
            Record::Reading(_) => self.reading,
            Record::Anomaly(_) => self.anomaly,
            Record::Alert(_) => self.alert,
            Record::Delivery(_) => self.other,
            // A known kind whose fields did not parse is still that kind.
            Record::Other { kind, .. } => match &**kind {
                "anomaly" => self.anomaly,
                "alert" => self.alert,
                _ => self.other,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (EPIPE): stop quietly, exit 0.
    #[error("the reader of the output went away")]
    Closed,
    #[error("cannot write output: {0}")]
    Io(#[source] io::Error),
}

pub struct Output {
    sink: Option<Box<dyn Write + Send>>,
    format: OutputFormat,
    only: Only,
    color: bool,
    buf: Vec<u8>,
    header_done: bool,
    pub records: u64,
}

/// True when `path` (`/proc/self/fd/1` for stdout) is the null device:
/// formatting can be skipped entirely.
fn is_devnull(path: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(null), Ok(out)) = (std::fs::metadata("/dev/null"), std::fs::metadata(path)) else {
            return false;
        };
        null.rdev() == out.rdev() && null.ino() == out.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

impl Output {
    /// `path` None means stdout. `format` None picks table on a terminal and
    /// NDJSON otherwise.
    pub fn open(path: Option<&str>, format: Option<OutputFormat>, only: Only, color: bool) -> io::Result<Output> {
        let (sink, is_tty): (Option<Box<dyn Write + Send>>, bool) = match path {
            Some(p) if p != "-" && is_devnull(p) => (None, false),
            Some(p) if p != "-" => (Some(Box::new(File::create(p)?)), false),
            _ if is_devnull("/proc/self/fd/1") => (None, false),
            _ => (Some(Box::new(io::stdout())), io::stdout().is_terminal()),
        };
        let format = format.unwrap_or(if is_tty { OutputFormat::Table } else { OutputFormat::Ndjson });
        Ok(Output {
            sink,
            format,
            only,
            color: color && is_tty,
            buf: Vec::with_capacity(1 << 20),
            header_done: false,
            records: 0,
        })
    }

    pub fn write_batch(&mut self, batch: &[Record]) -> Result<(), OutputError> {
        if self.sink.is_none() {
            return Ok(());
        }
        let only = self.only;
        for r in batch.iter().filter(|r| only.wants(r)) {
            self.records += 1;
            match self.format {
                OutputFormat::Ndjson => r.write_ndjson(&mut self.buf),
                OutputFormat::Csv => self.csv(r),
                OutputFormat::Table => self.table(r),
            }
        }
        if self.buf.len() >= 1 << 16 || self.format == OutputFormat::Table {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        let Some(sink) = self.sink.as_mut() else { return Ok(()) };
        let result = sink.write_all(&self.buf).and_then(|()| sink.flush());
        self.buf.clear();
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.sink = None;
                Err(OutputError::Closed)
            }
            Err(e) => Err(OutputError::Io(e)),
        }
    }

    fn csv(&mut self, r: &Record) {
        let out = &mut self.buf;
        if !self.header_done {
            out.extend_from_slice(b"kind,ts,channel,value,unit,quality,flags,source\n");
            self.header_done = true;
        }
        match r {
            Record::Reading(r) => {
                out.extend_from_slice(b"reading,");
                write_rfc3339(r.ts, out);
                out.push(b',');
                csv_field(out, &r.channel);
                out.push(b',');
                if let Some(v) = r.value.filter(|v| v.is_finite()) {
                    write_f64(out, v);
                } else if let Some(t) = &r.text {
                    csv_field(out, t);
                }
                out.push(b',');
                csv_field(out, r.unit.as_deref().unwrap_or(""));
                out.push(b',');
                out.extend_from_slice(r.quality.as_str().as_bytes());
                out.push(b',');
                for (i, n) in r.flags.names().enumerate() {
                    if i > 0 {
                        out.push(b';');
                    }
                    out.extend_from_slice(n.as_bytes());
                }
                out.push(b',');
                csv_field(out, &r.source);
                out.push(b'\n');
            }
            other @ (Record::Anomaly(_) | Record::Alert(_) | Record::Delivery(_) | Record::Other { .. }) => {
                // Other kinds have other columns; CSV keeps their kind only.
                out.extend_from_slice(other.kind().as_bytes());
                out.extend_from_slice(b",,,,,,,\n");
            }
        }
    }

    #[allow(clippy::write_literal)] // the header row goes through the same widths as the data rows
    fn table(&mut self, r: &Record) {
        use std::fmt::Write as _;
        let mut line = String::new();
        if !self.header_done {
            let _ = writeln!(
                line,
                "{:<24}  {:<28}  {:>12}  {:<6}  {:<7}  {:<16}  {}",
                "TS", "CHANNEL", "VALUE", "UNIT", "QUALITY", "FLAGS", "SOURCE"
            );
            self.header_done = true;
        }
        match r {
            Record::Reading(r) => {
                let mut ts = Vec::with_capacity(27);
                write_rfc3339(r.ts, &mut ts);
                let value = match (r.value.filter(|v| v.is_finite()), &r.text) {
                    (Some(v), _) => format!("{v}"),
                    (None, Some(t)) => format!("{t:?}"),
                    (None, None) => "—".to_string(),
                };
                let flags: Vec<&str> = r.flags.names().collect();
                let (on, off) = match (self.color, r.quality) {
                    (true, crate::model::record::Quality::Suspect) => ("\x1b[33m", "\x1b[0m"),
                    (true, crate::model::record::Quality::Bad) => ("\x1b[31m", "\x1b[0m"),
                    _ => ("", ""),
                };
                let _ = writeln!(
                    line,
                    "{:<24}  {:<28}  {:>12}  {:<6}  {on}{:<7}{off}  {:<16}  {}",
                    String::from_utf8_lossy(&ts),
                    r.channel,
                    value,
                    r.unit.as_deref().unwrap_or(""),
                    r.quality.as_str(),
                    flags.join(","),
                    r.source
                );
            }
            other @ (Record::Anomaly(_) | Record::Alert(_) | Record::Delivery(_) | Record::Other { .. }) => {
                let mut l = Vec::with_capacity(256);
                other.write_ndjson(&mut l);
                let _ = writeln!(line, "{:<24}  {}", other.kind(), String::from_utf8_lossy(&l).trim_end());
            }
        }
        self.buf.extend_from_slice(line.as_bytes());
    }
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Rows of a SQL answer (`edgeguard query`) on stdout, in `format` (None:
/// a table on a terminal, NDJSON otherwise): NDJSON one object per row,
/// CSV with a header of the column names, or an aligned table. A closed
/// pipe is [`OutputError::Closed`].
pub fn write_rows(
    columns: &[String],
    rows: &[serde_json::Map<String, serde_json::Value>],
    format: Option<OutputFormat>,
) -> Result<(), OutputError> {
    let out = io::stdout();
    let format = format.unwrap_or(if out.is_terminal() { OutputFormat::Table } else { OutputFormat::Ndjson });
    // A cell as text: strings bare, null empty, anything else as JSON.
    let cell = |row: &serde_json::Map<String, serde_json::Value>, c: &str| match row.get(c) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut buf = Vec::with_capacity(1 << 16);
    match format {
        OutputFormat::Ndjson => {
            for row in rows {
                serde_json::to_writer(&mut buf, row).map_err(|e| OutputError::Io(e.into()))?;
                buf.push(b'\n');
            }
        }
        OutputFormat::Csv => {
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                csv_field(&mut buf, c);
            }
            buf.push(b'\n');
            for row in rows {
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    csv_field(&mut buf, &cell(row, c));
                }
                buf.push(b'\n');
            }
        }
        OutputFormat::Table => {
            const WIDEST: usize = 48;
            let text: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|c| {
                            let t = cell(r, c).replace(['\n', '\r', '\t'], " ");
                            match t.char_indices().nth(WIDEST) {
                                Some((at, _)) => format!("{}…", &t[..at]),
                                None => t,
                            }
                        })
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| text.iter().map(|r| r[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0))
                .collect();
            let mut line = |cells: &[String]| {
                let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                buf.extend_from_slice(parts.join("  ").trim_end().as_bytes());
                buf.push(b'\n');
            };
            line(columns);
            for r in &text {
                line(r);
            }
        }
    }
    let mut out = out.lock();
    match out.write_all(&buf).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(OutputError::Closed),
        Err(e) => Err(OutputError::Io(e)),
    }
}
