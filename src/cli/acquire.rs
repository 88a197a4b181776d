//! `edgeguard acquire SPEC`: sources → channel validation, to stdout and the
//! store; or, with `--probe`, the Modbus decode explorer.

use clap::Args;

use super::args::PipelineArgs;
use super::exit::{Exit, Failure};
use super::pipeline::run_stage;
use super::probe::ProbeArgs;
use super::GlobalArgs;
use crate::engine::Stage;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec", "probe"])))]
pub struct AcquireArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

pub fn run(args: &AcquireArgs, g: &GlobalArgs) -> Result<Exit, Failure> {
    if args.probe.probe.is_some() {
        return super::probe::run(&args.probe, &args.pipeline, g);
    }
    run_stage(&args.pipeline, g, Stage::Validate)
}
