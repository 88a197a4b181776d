//! Exit statuses (docs/contract.md §5) and the error type that carries one.

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
            E::Input(..) | E::Output(_) | E::StoreRead(..) => Exit::IoErr,
            E::Usage(_) => Exit::Usage,
            E::Setup(_) => Exit::Config,
            E::Runtime(_) | E::Internal(_) => Exit::Software,
        };
        Failure::new(exit, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError as E;

    fn exit(e: E) -> Exit {
        Failure::from(e).exit
    }

    #[test]
    fn engine_errors_exit_as_the_table_says() {
        let io = |k: std::io::ErrorKind| std::io::Error::new(k, "x");
        assert_eq!(exit(E::Runtime(io(std::io::ErrorKind::Other))), Exit::Software);
        assert_eq!(exit(E::Internal("a thread panicked".into())), Exit::Software);
        let duck = duckdb::Error::InvalidParameterCount(1, 2);
        assert_eq!(exit(E::StoreRead("s.duckdb".into(), duck)), Exit::IoErr);
        assert_eq!(exit(E::Input("f".into(), io(std::io::ErrorKind::NotFound))), Exit::NoInput);
        assert_eq!(exit(E::Input("f".into(), io(std::io::ErrorKind::PermissionDenied))), Exit::NoPerm);
        assert_eq!(exit(E::Input("f".into(), io(std::io::ErrorKind::Other))), Exit::IoErr);
        assert_eq!(exit(E::Usage("no sources".into())), Exit::Usage);
        assert_eq!(exit(E::Setup("secret".into())), Exit::Config);
    }

    #[test]
    fn engine_errors_carry_their_cause() {
        use std::error::Error as _;
        let e = E::Runtime(std::io::Error::other("no threads"));
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("no threads"));
        assert_eq!(e.to_string(), "cannot start the runtime: no threads");
    }
}
