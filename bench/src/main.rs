//! The `signet-bench` binary: runs one benchmark and prints its report.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use signet_bench::cli::{Cli, Command};
use signet_bench::{issuance, jwt_signing, memory, propagation, workload_api};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Issuance(args) => runtime.block_on(issuance::run(&args)),
        Command::JwtSigning(args) => runtime.block_on(jwt_signing::run(&args)),
        Command::Memory(args) => runtime.block_on(memory::run(&args)),
        Command::Propagation(args) => runtime.block_on(propagation::run(&args)),
        Command::WorkloadApi(args) => runtime.block_on(workload_api::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
