//! Runs every `signet-bench` benchmark with `--quick` against the real server and agent
//! binaries, which `cargo build --workspace --bins` must have built into the same target
//! directory. The checks cover the JSON shape and plausible values, never timing bounds.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

const QUICK_ENTRIES: usize = 50;

#[test]
fn quick_propagation_prints_sane_json() {
    // One run for every check, because each run starts a server and an agent.
    let report = run_quick("propagation").unwrap();

    assert_eq!(report["benchmark"], "propagation");
    assert_eq!(report["entries"], QUICK_ENTRIES);
    check_samples(&report).unwrap();
    check_summary(&report).unwrap();
}

#[test]
fn quick_issuance_prints_sane_json() {
    let report = run_quick("issuance").unwrap();

    assert_eq!(report["benchmark"], "issuance");
    check_throughput(&report["throughput"], 1000).unwrap();
    for rate in ["sign", "verify"] {
        assert!(number(&report["raw"][rate], "per_second").unwrap() > 0.0);
    }
    check_ratio(&report, "ratio_to_sign").unwrap();
    check_ratio(&report, "ratio_to_sign_and_verify").unwrap();
    assert!(report["goal_met"].is_boolean());
    assert!(report["pinning"]["note"].is_string());
}

#[test]
fn quick_jwt_signing_prints_sane_json() {
    let report = run_quick("jwt-signing").unwrap();

    assert_eq!(report["benchmark"], "jwt-signing");
    check_throughput(&report["throughput"], 200).unwrap();
    assert!(number(&report["raw_es256_sign"], "per_second").unwrap() > 0.0);
    check_ratio(&report, "ratio_to_sign").unwrap();
}

#[test]
fn quick_workload_api_prints_sane_json() {
    let report = run_quick("workload-api").unwrap();

    assert_eq!(report["benchmark"], "workload-api");
    let levels = report["levels"].as_array().unwrap();
    let connections: Vec<_> = levels.iter().map(|level| &level["connections"]).collect();
    assert_eq!(connections, [1, 10, 50]);
    for level in levels {
        assert!(level["calls"].as_u64().unwrap() >= 100);
        check_ordered(&level["x509_first_message_ms"]).unwrap();
        check_ordered(&level["jwt_cached_ms"]).unwrap();
    }
}

#[test]
fn quick_memory_prints_sane_json() {
    let report = run_quick("memory").unwrap();

    assert_eq!(report["benchmark"], "memory");
    let agent = report["agent"].as_array().unwrap();
    let cached: Vec<_> = agent.iter().map(|row| &row["cached_svids"]).collect();
    assert_eq!(cached, [10, 20, 40]);
    for row in agent {
        assert!(number(row, "rss_mib").unwrap() > 1.0);
    }

    let server = report["server"].as_array().unwrap();
    let sizes: Vec<_> = server
        .iter()
        .map(|row| {
            (
                row["entries"].as_u64().unwrap(),
                row["agents"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sizes, [(100, 5), (200, 10), (400, 20)]);
    for row in server {
        for key in ["rss_mib_running", "rss_mib_after_start"] {
            assert!(number(row, key).unwrap() > 1.0, "{key} in {row}");
        }
        assert!(number(row, "cold_start_ms").unwrap() > 0.0);
    }
}

fn run_quick(benchmark: &str) -> anyhow::Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_signet-bench"))
        .args([benchmark, "--quick", "--output", "json"])
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
    check_ordered(&report["latency_ms"])?;

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

/// Checks that the throughput of a signing benchmark counts `items` and agrees with itself.
fn check_throughput(throughput: &Value, items: u64) -> anyhow::Result<()> {
    if throughput["items"] != items {
        bail!("items {}, expected {items}", throughput["items"]);
    }
    let rate = number(throughput, "per_second")?;
    let elapsed = number(throughput, "elapsed_seconds")?;
    if (rate * elapsed - items as f64).abs() > 1e-6 * items as f64 {
        bail!("per_second {rate} x elapsed_seconds {elapsed} is not {items}");
    }
    if number(throughput, "server_cpu_seconds")? <= 0.0 {
        bail!("the server used no CPU time while signing");
    }
    check_ordered(&throughput["call_latency_ms"])
}

fn check_ratio(report: &Value, key: &str) -> anyhow::Result<()> {
    let ratio = number(report, key)?;
    if !(ratio > 0.0 && ratio.is_finite()) {
        bail!("{key} {ratio} is not a positive ratio");
    }
    Ok(())
}

/// Checks that a latency summary is positive and ordered from min to max.
fn check_ordered(latency: &Value) -> anyhow::Result<()> {
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
    Ok(())
}

fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .with_context(|| format!("{key} is no number in {value}"))
}
