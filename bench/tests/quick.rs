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

    assert_eq!(report["mode"], "steady");
    check_workload_api(&report).unwrap();
    for level in report["levels"].as_array().unwrap() {
        assert_eq!(level["held_streams"], level["connections"], "{level}");
        for kind in ["x509_first_message", "jwt_cached"] {
            let series = &level[kind];
            assert_eq!(series["offered_per_second"], 500.0, "{kind} in {level}");
            check_ordered(&series["send_lag_ms"]).unwrap();
        }
    }
}

#[test]
fn quick_workload_api_burst_prints_sane_json() {
    let report = run_quick_with("workload-api", &["--mode", "burst"]).unwrap();

    assert_eq!(report["mode"], "burst");
    assert!(report["goal_met"].is_null());
    check_workload_api(&report).unwrap();
    for level in report["levels"].as_array().unwrap() {
        assert_eq!(level["held_streams"], 0, "{level}");
        for kind in ["x509_first_message", "jwt_cached"] {
            assert!(
                level[kind]["offered_per_second"].is_null(),
                "{kind} in {level}"
            );
            assert!(level[kind]["send_lag_ms"].is_null(), "{kind} in {level}");
        }
    }
}

#[test]
fn quick_memory_prints_sane_json() {
    let report = run_quick("memory").unwrap();

    assert_eq!(report["benchmark"], "memory");
    for layout in ["spread", "one_stream"] {
        check_agent_series(&report["agent"][layout]).unwrap();
    }
    assert!(report["agent"]["goal_met"].is_boolean());

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

/// Checks one agent layout: a row per quick size and a slope between each pair of rows.
fn check_agent_series(series: &Value) -> anyhow::Result<()> {
    let rows = series["rows"].as_array().context("rows is not an array")?;
    let cached: Vec<_> = rows.iter().map(|row| &row["cached_svids"]).collect();
    if cached != [10, 20, 40] {
        bail!("cached_svids {cached:?}, expected [10, 20, 40]");
    }
    for row in rows {
        if number(row, "rss_mib")? <= 1.0 {
            bail!("implausible rss_mib in {row}");
        }
    }

    let slopes = series["slopes"]
        .as_array()
        .context("slopes is not an array")?;
    let steps: Vec<_> = slopes
        .iter()
        .map(|slope| (slope["from_svids"].as_u64(), slope["to_svids"].as_u64()))
        .collect();
    if steps != [(Some(10), Some(20)), (Some(20), Some(40))] {
        bail!("slope steps {steps:?}, expected 10 to 20 and 20 to 40");
    }
    for slope in slopes {
        number(slope, "bytes_per_svid")?;
    }
    Ok(())
}

fn run_quick(benchmark: &str) -> anyhow::Result<Value> {
    run_quick_with(benchmark, &[])
}

fn run_quick_with(benchmark: &str, options: &[&str]) -> anyhow::Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_signet-bench"))
        .args([benchmark, "--quick", "--output", "json"])
        .args(options)
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

/// Checks the parts of a `workload-api --quick` report that both modes share.
fn check_workload_api(report: &Value) -> anyhow::Result<()> {
    if report["benchmark"] != "workload-api" {
        bail!("benchmark {}, expected workload-api", report["benchmark"]);
    }
    let levels = report["levels"]
        .as_array()
        .context("levels is not an array")?;
    let connections: Vec<_> = levels.iter().map(|level| &level["connections"]).collect();
    if connections != [1, 10, 50] {
        bail!("connections {connections:?}, expected [1, 10, 50]");
    }
    for level in levels {
        for kind in ["x509_first_message", "jwt_cached"] {
            let series = &level[kind];
            if series["calls"].as_u64().unwrap_or(0) < 100 {
                bail!("{kind}: fewer than 100 calls in {level}");
            }
            check_ordered(&series["latency_ms"])?;
            let rate = number(series, "achieved_per_second")?;
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("{kind}.achieved_per_second {rate} is not a positive rate in {level}");
            }
            let cpu = number(series, "agent_cpu_us_per_call")?;
            if !(cpu >= 0.0 && cpu.is_finite()) {
                bail!("{kind}.agent_cpu_us_per_call {cpu} is not a CPU time in {level}");
            }
        }
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
