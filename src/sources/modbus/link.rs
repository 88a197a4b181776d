//! One Modbus link: opening it (TCP, RTU on a serial port, RTU over TCP) and
//! running one read request on it, with every failure named.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

use crate::compile::{ModbusPlan, SerialLine};
use crate::model::record::Flags;
use crate::spec::{ModbusTransport, Table};

/// Where a link goes; built once from the plan.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(String),
    RtuOverTcp(String),
    Serial(SerialLine),
}

impl Endpoint {
    pub fn of(plan: &ModbusPlan) -> Endpoint {
        match (plan.transport, &plan.serial) {
            (ModbusTransport::Rtu, Some(line)) => Endpoint::Serial(line.clone()),
            (ModbusTransport::RtuOverTcp, _) => Endpoint::RtuOverTcp(plan.address.clone().unwrap_or_default()),
            _ => Endpoint::Tcp(plan.address.clone().unwrap_or_default()),
        }
    }

    pub fn is_rtu(&self) -> bool {
        !matches!(self, Endpoint::Tcp(_))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::RtuOverTcp(a) => write!(f, "rtu-over-tcp://{a}"),
            Endpoint::Serial(l) => write!(f, "{} at {} baud", l.device, l.baud),
        }
    }
}

/// An open link. On a serial bus, `resync` asks the port to drop whatever
/// the OS has buffered before the next request goes out.
pub struct Link {
    pub ctx: Context,
    pub resync: Option<Arc<AtomicBool>>,
}

/// Opens the link. The caller bounds it with a timeout.
pub async fn open(endpoint: &Endpoint) -> io::Result<Link> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let stream = tcp(addr).await?;
            Ok(Link { ctx: tokio_modbus::client::tcp::attach_slave(stream, Slave(1)), resync: None })
        }
        Endpoint::RtuOverTcp(addr) => {
            let stream = tcp(addr).await?;
            Ok(Link { ctx: tokio_modbus::client::rtu::attach_slave(stream, Slave(1)), resync: None })
        }
        Endpoint::Serial(line) => {
            use tokio_serial::SerialPort;
            let port = crate::sources::serial::open(line).await?;
            // Bytes left from before must not be read as an answer.
            let _ = port.clear(tokio_serial::ClearBuffer::Input);
            let resync = Arc::new(AtomicBool::new(false));
            let port = BusPort { port, resync: resync.clone() };
            Ok(Link { ctx: tokio_modbus::client::rtu::attach_slave(port, Slave(1)), resync: Some(resync) })
        }
    }
}

/// A serial port that, when asked, drops the bytes the OS buffered before it
/// writes the next request: a late answer to a request that timed out must
/// not be read as the answer to the next one. (Closing and reopening the port
/// instead would toggle modem lines some RS-485 adapters use, and costs more.)
#[derive(Debug)]
struct BusPort {
    port: tokio_serial::SerialStream,
    resync: Arc<AtomicBool>,
}

impl AsyncRead for BusPort {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_read(cx, buf)
    }
}

impl AsyncWrite for BusPort {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.resync.swap(false, Ordering::Relaxed) {
            use tokio_serial::SerialPort;
            let _ = self.port.clear(tokio_serial::ClearBuffer::Input);
        }
        Pin::new(&mut self.port).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_shutdown(cx)
    }
}

async fn tcp(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and strictly one at a time: never wait for Nagle.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a read returned.
#[derive(Debug)]
pub enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Why a read returned no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No (complete) answer within the timeout.
    Timeout,
    /// The device answered with an exception code.
    Exception(u8),
    /// Frames that fail their CRC (RTU).
    Crc,
    /// The link is down, or failed while in use.
    Disconnected(String),
    /// An answer that does not belong to the request (wrong transaction,
    /// unit, function or length): another device answered (two with the
    /// same unit id on one bus), or the link is out of step. tokio-modbus
    /// reports the first three as `ProtocolError::{HeaderMismatch,
    /// FunctionCodeMismatch}`; the length is checked here.
    Mismatch(String),
}

impl Fault {
    pub fn flag(&self) -> Flags {
        match self {
            Fault::Timeout => Flags::TIMEOUT,
            Fault::Exception(c) => Flags::exception(*c),
            Fault::Crc => Flags::CRC,
            Fault::Disconnected(_) => Flags::DISCONNECTED,
            Fault::Mismatch(_) => Flags::MISMATCH,
        }
    }

    /// The device answered: only an exception means that.
    pub fn answered(&self) -> bool {
        matches!(self, Fault::Exception(_))
    }

    /// The link itself failed (not one request on it).
    pub fn is_link_failure(&self) -> bool {
        matches!(self, Fault::Disconnected(_))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Timeout => f.write_str("timed out"),
            Fault::Exception(c) => write!(f, "exception {c} ({})", exception_name(*c)),
            Fault::Crc => f.write_str("CRC errors"),
            Fault::Disconnected(e) => write!(f, "disconnected: {e}"),
            Fault::Mismatch(e) => write!(f, "answer does not match the request: {e}"),
        }
    }
}

pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "non-standard",
    }
}

/// Reads `count` registers or bits of `table` at `address` from `unit`,
/// waiting at most `timeout`. The answer's length is checked: a short or
/// long answer is a mismatch, never a shifted value.
pub async fn read(
    ctx: &mut Context,
    rtu: bool,
    unit: u8,
    table: Table,
    address: u16,
    count: u16,
    timeout: Duration,
) -> Result<Data, Fault> {
    ctx.set_slave(Slave(unit));
    let call = async {
        match table {
            Table::Coil => ctx.read_coils(address, count).await.map(|r| r.map(Data::Bits)),
            Table::Discrete => ctx.read_discrete_inputs(address, count).await.map(|r| r.map(Data::Bits)),
            Table::Holding => ctx.read_holding_registers(address, count).await.map(|r| r.map(Data::Words)),
            Table::Input => ctx.read_input_registers(address, count).await.map(|r| r.map(Data::Words)),
        }
    };
    let data = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(Fault::Timeout),
        Ok(Err(tokio_modbus::Error::Protocol(e))) => return Err(Fault::Mismatch(e.to_string())),
        Ok(Err(tokio_modbus::Error::Transport(e))) => {
            // The RTU decoder gives up with InvalidData after frames that
            // keep failing their CRC.
            return Err(if rtu && e.kind() == io::ErrorKind::InvalidData {
                Fault::Crc
            } else {
                Fault::Disconnected(e.to_string())
            });
        }
        Ok(Ok(Err(code))) => return Err(Fault::Exception(u8::from(code))),
        Ok(Ok(Ok(data))) => data,
    };
    // Bits come back padded to whole bytes; registers must match exactly.
    let ok = match &data {
        Data::Words(w) => w.len() == usize::from(count),
        Data::Bits(b) => b.len() >= usize::from(count),
    };
    if ok {
        Ok(data)
    } else {
        Err(Fault::Mismatch(format!(
            "asked for {count}, got {}",
            match &data {
                Data::Words(w) => w.len(),
                Data::Bits(b) => b.len(),
            }
        )))
    }
}
