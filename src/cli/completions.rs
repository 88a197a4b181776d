//! `edgeguard completions SHELL`: print a completion script.

use clap::Args;
use clap_complete::Shell;

use super::exit::{Exit, Failure};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(a: &CompletionsArgs) -> Result<Exit, Failure> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut super::command(), "edgeguard", &mut out);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Ok),
        Err(e) => Err(Failure::new(Exit::IoErr, format!("cannot write: {e}"))),
    }
}
