//! Steps shared by every benchmark around its measurement: locate the binaries, make a temporary
//! directory, keep it when the measurement fails, and print the report.

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::binaries::Binaries;
use crate::cli::{CommonArgs, OutputFormat};

/// Runs `measure` with the binaries `common` names and a new temporary directory, then prints
/// its report in the format `common` selects.
///
/// # Errors
///
/// Fails when a binary is missing or `measure` fails. The temporary directory is then kept and
/// named in the error, because it contains the server and agent logs.
pub async fn run<R, F, Fut>(benchmark: &str, common: &CommonArgs, measure: F) -> anyhow::Result<()>
where
    R: Serialize + Display,
    F: FnOnce(Binaries, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    let binaries = Binaries::locate(common.server_bin.as_deref(), common.agent_bin.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("signet-bench-")
        .tempdir()
        .context("failed to create a temporary directory")?;

    let report = match measure(binaries, dir.path().to_owned()).await {
        Ok(report) => report,
        Err(error) => {
            let log_dir = dir.keep();
            return Err(error.context(format!(
                "{benchmark} benchmark failed, and the server and agent logs are in {}",
                log_dir.display()
            )));
        }
    };

    match common.output {
        OutputFormat::Human => print!("{report}"),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string(&report).context("failed to encode the report as JSON")?
        ),
    }
    Ok(())
}
