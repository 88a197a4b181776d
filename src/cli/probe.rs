//! `edgeguard acquire --probe URL …`: read a window of registers once and
//! print every way to decode it, ranked against the value expected.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::args::PipelineArgs;
use super::exit::{Exit, Failure};
use super::{say, GlobalArgs};
use crate::compile::SerialLine;
use crate::model::ndjson::write_json_str;
use crate::sinks::stdout::OutputFormat;
use crate::sources::modbus::link::{self, Data, Endpoint, Fault};
use crate::sources::modbus::probe::{interpretations, Interpretation};
use crate::spec::{Parity, PointType, Table};

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Read a device once and print every decoding of a register window:
    /// tcp://HOST[:PORT], rtu-over-tcp://HOST:PORT or rtu:///dev/ttyUSB0.
    #[arg(long, value_name = "URL", help_heading = "Probe (decode explorer)")]
    pub probe: Option<String>,
    /// Unit id (slave address) to ask.
    #[arg(long, value_name = "ID", default_value_t = 1, requires = "probe", help_heading = "Probe (decode explorer)")]
    pub unit: u8,
    /// Register table.
    #[arg(long, value_enum, default_value = "holding", requires = "probe", help_heading = "Probe (decode explorer)")]
    pub table: ProbeTable,
    /// First register, as written in the device's manual (both 0- and 1-based readings are tried).
    #[arg(long, value_name = "N", requires = "probe", help_heading = "Probe (decode explorer)")]
    pub address: Option<u16>,
    /// The value you expect, `20..25` or `21.7`: ranks the decodings.
    #[arg(long, value_name = "LO..HI", value_parser = parse_expect, requires = "probe", help_heading = "Probe (decode explorer)")]
    pub expect: Option<(f64, f64)>,
    /// Baud rate of an `rtu://` device.
    #[arg(long, default_value_t = 9600, requires = "probe", help_heading = "Probe (decode explorer)")]
    pub baud: u32,
    /// Parity of an `rtu://` device.
    #[arg(long, value_enum, default_value = "even", requires = "probe", help_heading = "Probe (decode explorer)")]
    pub parity: ProbeParity,
    /// Stop bits of an `rtu://` device.
    #[arg(long, default_value_t = 1, requires = "probe", help_heading = "Probe (decode explorer)")]
    pub stop_bits: u8,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProbeTable {
    Coil,
    Discrete,
    Input,
    Holding,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProbeParity {
    None,
    Even,
    Odd,
}

fn parse_expect(s: &str) -> Result<(f64, f64), String> {
    let num = |t: &str| t.trim().parse::<f64>().map_err(|_| format!("`{t}` is not a number"));
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(s)?;
            // A single value: within 1 % (or ±0.5 around zero).
            let d = (v.abs() * 0.01).max(0.5);
            (v - d, v + d)
        }
    };
    if lo > hi {
        return Err(format!("{lo} is above {hi}"));
    }
    Ok((lo, hi))
}

fn endpoint(url: &str, a: &ProbeArgs) -> Result<Endpoint, Failure> {
    let usage = |m: String| Failure::new(Exit::Usage, m);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| usage(format!("--probe {url:?}: expected tcp://HOST:PORT or rtu:///dev/…")))?;
    let host_port = |r: &str| if r.contains(':') { r.to_string() } else { format!("{r}:502") };
    match scheme {
        "tcp" if !rest.is_empty() => Ok(Endpoint::Tcp(host_port(rest))),
        "rtu-over-tcp" if !rest.is_empty() => Ok(Endpoint::RtuOverTcp(host_port(rest))),
        "rtu" if rest.starts_with('/') => Ok(Endpoint::Serial(SerialLine {
            device: rest.to_string(),
            baud: a.baud,
            parity: match a.parity {
                ProbeParity::None => Parity::None,
                ProbeParity::Even => Parity::Even,
                ProbeParity::Odd => Parity::Odd,
            },
            data_bits: 8,
            stop_bits: a.stop_bits,
        })),
        _ => Err(usage(format!("--probe {url:?}: expected tcp://HOST:PORT, rtu-over-tcp://HOST:PORT or rtu:///dev/…"))),
    }
}

/// Runs the probe: `count` registers from `--address` (one more below it,
/// for the 1-based reading of the address).
pub fn run(a: &ProbeArgs, p: &PipelineArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    let (count, format, timeout) = (p.count, p.format, p.timeout.unwrap_or(Duration::from_secs(1)));
    let url = a.probe.as_deref().unwrap_or_default();
    let ep = endpoint(url, a)?;
    let typed = a.address.ok_or_else(|| Failure::new(Exit::Usage, "--probe needs --address N"))?;
    let count = count.unwrap_or(4);
    let table = match a.table {
        ProbeTable::Coil => Table::Coil,
        ProbeTable::Discrete => Table::Discrete,
        ProbeTable::Input => Table::Input,
        ProbeTable::Holding => Table::Holding,
    };
    let limit = if matches!(table, Table::Coil | Table::Discrete) { 2000 } else { 124 };
    if count == 0 || count > limit {
        return Err(Failure::new(Exit::Usage, format!("--count is 1–{limit} for a probe of this table")));
    }
    let start = typed.saturating_sub(1);
    let n = (u64::from(typed - start) + count).min(u64::from(u16::MAX - start) + 1) as u16;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Software, format!("cannot start the runtime: {e}")))?;
    let result: Result<Data, Fault> = rt.block_on(async {
        let mut ctx = match tokio::time::timeout(timeout.max(Duration::from_secs(1)), link::open(&ep)).await {
            Ok(Ok(link)) => link.ctx,
            Ok(Err(e)) => return Err(Fault::Disconnected(e.to_string())),
            Err(_) => return Err(Fault::Disconnected("connection timed out".into())),
        };
        let first = link::read(&mut ctx, ep.is_rtu(), a.unit, table, start, n, timeout).await;
        match first {
            // The register below the typed address may not exist: read only the window asked for.
            Err(Fault::Exception(2)) if start < typed => {
                link::read(&mut ctx, ep.is_rtu(), a.unit, table, typed, count as u16, timeout).await
            }
            other => other,
        }
    });
    let data = match result {
        Ok(d) => d,
        Err(f @ Fault::Exception(_)) => {
            return Err(Failure::new(Exit::Failure, format!("{ep} unit {}: {f}", a.unit)));
        }
        Err(f) => return Err(Failure::new(Exit::Unavailable, format!("{ep} unit {}: {f}", a.unit))),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let table_fmt = match format {
        Some(OutputFormat::Table) => true,
        Some(_) => false,
        None => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let written = match data {
        Data::Bits(bits) => {
            let first = if bits.len() > count as usize { start } else { typed };
            print_bits(&mut out, first, &bits[..bits.len().min(n as usize)], table_fmt)
        }
        Data::Words(words) => {
            let first = if words.len() == n as usize { start } else { typed };
            let all = interpretations(first, &words, typed, a.expect);
            let shown = print_words(&mut out, &all, table_fmt);
            if let Some(best) = all.first().filter(|b| a.expect.is_none() || b.matches) {
                let yaml = yaml_point(best, table, typed);
                if table_fmt {
                    shown.and_then(|()| writeln!(out, "\nbest match:\n{yaml}"))
                } else {
                    say(g, &format!("best match:\n{yaml}"));
                    shown
                }
            } else {
                if a.expect.is_some() {
                    say(g, "no decoding falls in --expect; check the unit, table and address");
                }
                shown
            }
        }
    };
    written.and_then(|()| out.flush()).or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(Failure::new(Exit::IoErr, format!("cannot write output: {e}")))
        }
    })?;
    Ok(Exit::Ok)
}

fn fmt_value(i: &Interpretation) -> String {
    match (&i.text, i.value) {
        (Some(t), _) => format!("{t:?}"),
        (None, Some(v)) => {
            // Scaled values print without binary noise (23.500000000000004).
            let r = (v * 1e9).round() / 1e9;
            if r.abs() < 1e15 {
                format!("{r}")
            } else {
                format!("{v:e}")
            }
        }
        (None, None) => "NaN/inf".into(),
    }
}

fn kind_name(k: PointType) -> String {
    format!("{k:?}").to_lowercase()
}

fn print_words(out: &mut impl Write, all: &[Interpretation], table: bool) -> std::io::Result<()> {
    if table {
        writeln!(
            out,
            "{:>7}  {:>9}  {:<6}  {:<5}  {:<5}  {:<20}  match",
            "address", "(1-based)", "type", "order", "scale", "value"
        )?;
        for i in all {
            writeln!(
                out,
                "{:>7}  {:>9}  {:<6}  {:<5}  {:<5}  {:<20}  {}",
                i.address,
                u32::from(i.address) + 1,
                kind_name(i.kind),
                format!("{:?}", i.order),
                i.scale,
                fmt_value(i),
                if i.matches { "✓" } else { "" }
            )?;
        }
        return Ok(());
    }
    let mut line = Vec::with_capacity(160);
    for i in all {
        line.clear();
        line.extend_from_slice(
            format!(
                "{{\"address\":{},\"address_1based\":{},\"type\":\"{}\",\"order\":\"{:?}\",\"scale\":{},",
                i.address,
                u32::from(i.address) + 1,
                kind_name(i.kind),
                i.order,
                i.scale
            )
            .as_bytes(),
        );
        match (&i.text, i.value) {
            (Some(t), _) => {
                line.extend_from_slice(b"\"text\":");
                write_json_str(&mut line, t);
            }
            (None, Some(_)) => line.extend_from_slice(format!("\"value\":{}", fmt_value(i)).as_bytes()),
            (None, None) => line.extend_from_slice(b"\"value\":null"),
        }
        line.extend_from_slice(format!(",\"match\":{}}}\n", i.matches).as_bytes());
        out.write_all(&line)?;
    }
    Ok(())
}

fn print_bits(out: &mut impl Write, first: u16, bits: &[bool], table: bool) -> std::io::Result<()> {
    for (k, b) in bits.iter().enumerate() {
        let addr = u32::from(first) + k as u32;
        if table {
            writeln!(out, "{addr:>7}  {:>9}  {}", addr + 1, u8::from(*b))?;
        } else {
            writeln!(out, "{{\"address\":{addr},\"address_1based\":{},\"value\":{}}}", addr + 1, u8::from(*b))?;
        }
    }
    Ok(())
}

/// The point to paste into a spec. When the best decoding starts one below
/// the typed address, the manual counts from 1: say so with `address_base`.
fn yaml_point(best: &Interpretation, table: Table, typed: u16) -> String {
    let table = format!("{table:?}").to_lowercase();
    let (address, note) = if typed > 0 && best.address == typed - 1 {
        (typed, "   # with `address_base: 1` on the source (the manual counts from 1)")
    } else {
        (best.address, "")
    };
    let mut fields = format!("channel: CHANGE.ME, table: {table}, address: {address}, type: {}", kind_name(best.kind));
    if best.kind != PointType::String
        && !matches!(best.order, crate::spec::ByteOrder::ABCD | crate::spec::ByteOrder::AB)
    {
        fields += &format!(", order: {:?}", best.order);
    }
    if best.kind == PointType::String {
        fields += ", length: N";
        if best.order == crate::spec::ByteOrder::BA {
            fields += ", order: BA";
        }
    }
    if best.scale != 1.0 {
        fields += &format!(", scale: {}", best.scale);
    }
    format!("  - {{{fields}}}{note}   # reads {}", fmt_value(best))
}
