//! Exit statuses (DESIGN.md §5) and the error type that carries one.

use std::process::ExitCode;

/// The documented exit codes; sysexits.h numbers where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A component failed at run time.
    Failure = 1,
    /// Bad command line.
    Usage = 2,
    /// `--fail-on` matched.
    FailOn = 3,
    /// Bad input data under `--strict`.
    DataErr = 65,
    /// An input or spec file is missing.
    NoInput = 66,
    /// A device or broker was unavailable in `--once`.
    Unavailable = 69,
    /// An internal error.
    Software = 70,
    /// An I/O error (disk full, …).
    IoErr = 74,
    /// The store is locked by another process; retry later.
    TempFail = 75,
    /// Permission or authentication denied.
    NoPerm = 77,
    /// Invalid spec.
    Config = 78,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error that ends a command: a message for stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure { exit, message: message.into() }
    }
}

impl From<crate::engine::EngineError> for Failure {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        use crate::sinks::store::StoreError as S;
        let exit = match &e {
            E::Store(S::Locked { .. }) => Exit::TempFail,
            E::Store(S::Io { .. }) => Exit::IoErr,
            E::Store(S::Incompatible { .. }) => Exit::Failure,
            E::Input(_, io) if io.kind() == std::io::ErrorKind::NotFound => Exit::NoInput,
            E::Input(_, io) if io.kind() == std::io::ErrorKind::PermissionDenied => Exit::NoPerm,
            E::Input(..) | E::Output(_) => Exit::IoErr,
            E::Usage(_) => Exit::Usage,
            E::Setup(_) => Exit::Config,
        };
        Failure::new(exit, e.to_string())
    }
}
