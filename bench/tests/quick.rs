//! Runs `signet-bench propagation --quick` against the real server and agent binaries, which
//! `cargo build --workspace --bins` must have built into the same target directory.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

const QUICK_ENTRIES: usize = 50;

#[test]
fn quick_propagation_prints_sane_json() {
    // One run for every check, because each run starts a server and an agent.
    let report = run_quick().unwrap();

    assert_eq!(report["benchmark"], "propagation");
    assert_eq!(report["entries"], QUICK_ENTRIES);
    check_samples(&report).unwrap();
    check_summary(&report).unwrap();
}

fn run_quick() -> anyhow::Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_signet-bench"))
        .args(["propagation", "--quick", "--output", "json"])
        .output()
        .context("failed to start signet-bench")?;
    if !output.status.success() {
        bail!(
            "signet-bench failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("signet-bench printed no JSON object")
}

fn check_samples(report: &Value) -> anyhow::Result<()> {
    let samples = report["samples"]
        .as_array()
        .context("samples is not an array")?;
    if samples.len() != QUICK_ENTRIES {
        bail!("{} samples, expected {QUICK_ENTRIES}", samples.len());
    }

    for (index, sample) in samples.iter().enumerate() {
        let create_ms = number(sample, "create_ms")?;
        let latency_ms = number(sample, "latency_ms")?;
        if create_ms <= 0.0 {
            bail!("sample {index}: create_ms {create_ms} is not positive");
        }
        // The stream message may arrive before the BatchCreateEntry response does, so the
        // latency is not bounded below by the create time.
        if latency_ms <= 0.0 {
            bail!("sample {index}: latency_ms {latency_ms} is not positive");
        }

        // The message contains the initial X509-SVID and one more per iteration so far.
        if sample["svids"] != index + 2 {
            bail!(
                "sample {index}: svids {}, expected {}",
                sample["svids"],
                index + 2
            );
        }
        let expected_id = format!("spiffe://example.org/bench/entry-{}", index + 1);
        if sample["spiffe_id"] != expected_id.as_str() {
            bail!(
                "sample {index}: spiffe_id {}, expected {expected_id}",
                sample["spiffe_id"]
            );
        }
    }
    Ok(())
}

fn check_summary(report: &Value) -> anyhow::Result<()> {
    let latency = &report["latency_ms"];
    let ordered = ["min", "p50", "p90", "p99", "max"]
        .map(|key| number(latency, key).map(|value| (key, value)));
    let mut previous = (0.0, "zero");
    for entry in ordered {
        let (key, value) = entry?;
        if value < previous.0 || value <= 0.0 {
            bail!(
                "latency_ms.{key} {value} is below {} {}",
                previous.1,
                previous.0
            );
        }
        previous = (value, key);
    }

    let rate = number(report, "entries_per_second")?;
    let elapsed = number(report, "elapsed_seconds")?;
    if (rate * elapsed - QUICK_ENTRIES as f64).abs() > 1e-6 {
        bail!("entries_per_second {rate} x elapsed_seconds {elapsed} is not {QUICK_ENTRIES}");
    }

    let cpu = &report["cpu_seconds"];
    for process in ["server", "agent", "bench"] {
        let seconds = number(cpu, process)?;
        if !(seconds >= 0.0 && seconds.is_finite()) {
            bail!("cpu_seconds.{process} {seconds} is not a CPU time");
        }
    }
    Ok(())
}

fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("{key} is no number in {value}"))
}
