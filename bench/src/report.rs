//! Parts of every report (the host, a throughput run) and the results of a propagation run:
//! every sample, their summary, and how latency grows with the number of X509-SVIDs the
//! workload has.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::cpu::CpuSeconds;
use crate::host::{load_average, online_cpus};
use crate::load::LoadRun;
use crate::stats::Summary;

/// Number of consecutive groups of samples the growth table splits a run into.
const SEGMENTS: usize = 10;

/// One created entry and the stream message that delivered its X509-SVID.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// SPIFFE ID of the created entry.
    pub spiffe_id: String,
    /// Duration of the BatchCreateEntry call, in milliseconds.
    pub create_ms: f64,
    /// Time from just before BatchCreateEntry to the arrival of the first stream message with
    /// the new X509-SVID, in milliseconds.
    pub latency_ms: f64,
    /// Number of X509-SVIDs in that message.
    pub svids: usize,
}

/// Latency over a run of consecutive samples.
#[derive(Debug, Serialize)]
pub struct Segment {
    /// Position of the first sample in the run, counting from 1.
    pub first: usize,
    /// Position of the last sample in the run.
    pub last: usize,
    /// X509-SVIDs in the message of the last sample.
    pub svids: usize,
    /// Latency of the samples, in milliseconds.
    pub latency_ms: Summary,
}

/// The host the benchmark ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Online logical CPUs of the machine.
    pub cpus: usize,
    /// `model name` of the first CPU in /proc/cpuinfo, or "unknown".
    pub cpu_model: String,
    /// 1-minute load average when the report was made, or `None` when unreadable. A value near
    /// or above `cpus` means other work competed with the benchmark.
    pub load_average: Option<f64>,
}

/// Calls to a server made with a fixed number in flight: their rate, latency and the server's
/// CPU time.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Items completed: SVIDs signed.
    pub items: u64,
    /// Wall-clock time of the run, in seconds.
    pub elapsed_seconds: f64,
    /// Items per second.
    pub per_second: f64,
    /// Latency of each call, in milliseconds.
    pub call_latency_ms: Summary,
    /// CPU time the server used during the run, in seconds.
    pub server_cpu_seconds: f64,
    /// Server CPU time per item, in microseconds.
    pub server_cpu_us_per_item: f64,
}

impl Throughput {
    /// Summarises `run`, which completed `items` while the server used `server_cpu_seconds`,
    /// or returns `None` when the run made no call.
    pub fn new(items: u64, run: &LoadRun, server_cpu_seconds: f64) -> Option<Self> {
        let elapsed_seconds = run.elapsed.as_secs_f64();
        Some(Self {
            items,
            elapsed_seconds,
            per_second: items as f64 / elapsed_seconds,
            call_latency_ms: Summary::of(&run.latencies_ms)?,
            server_cpu_seconds,
            server_cpu_us_per_item: server_cpu_seconds * 1e6 / items.max(1) as f64,
        })
    }
}

impl fmt::Display for Throughput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "throughput:  {:.0}/s ({} in {:.2} s)",
            self.per_second, self.items, self.elapsed_seconds
        )?;
        writeln!(f, "call:        {}", DisplayMs(&self.call_latency_ms))?;
        writeln!(
            f,
            "server CPU:  {:.2} s, {:.1} µs per item",
            self.server_cpu_seconds, self.server_cpu_us_per_item
        )
    }
}

/// Report of `signet-bench propagation`.
#[derive(Debug, Serialize)]
pub struct PropagationReport {
    /// Always "propagation".
    pub benchmark: &'static str,
    /// Number of entries created and measured.
    pub entries: usize,
    /// The host.
    pub machine: Machine,
    /// Entry created to X509-SVID delivered, in milliseconds.
    pub latency_ms: Summary,
    /// Duration of BatchCreateEntry alone, in milliseconds.
    pub create_ms: Summary,
    /// Wall-clock time of all iterations, in seconds.
    pub elapsed_seconds: f64,
    /// Entries created and delivered per second, one after another.
    pub entries_per_second: f64,
    /// CPU time each process used during the iterations.
    pub cpu_seconds: CpuSeconds,
    /// Latency over consecutive tenths of the run.
    pub segments: Vec<Segment>,
    /// Every sample, in creation order.
    pub samples: Vec<Sample>,
}

impl PropagationReport {
    /// Builds the report of `samples` taken in `elapsed` while the processes used `cpu`, or
    /// returns `None` without samples.
    pub fn new(samples: Vec<Sample>, elapsed: Duration, cpu_seconds: CpuSeconds) -> Option<Self> {
        let latencies: Vec<f64> = samples.iter().map(|sample| sample.latency_ms).collect();
        let creates: Vec<f64> = samples.iter().map(|sample| sample.create_ms).collect();
        let elapsed_seconds = elapsed.as_secs_f64();
        Some(Self {
            benchmark: "propagation",
            entries: samples.len(),
            machine: Machine::detect(),
            latency_ms: Summary::of(&latencies)?,
            create_ms: Summary::of(&creates)?,
            elapsed_seconds,
            entries_per_second: samples.len() as f64 / elapsed_seconds,
            cpu_seconds,
            segments: segments(&samples),
            samples,
        })
    }
}

impl fmt::Display for PropagationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Summary.
        writeln!(
            f,
            "entry created -> X509-SVID on an open FetchX509SVID stream"
        )?;
        writeln!(f, "machine:    {}", self.machine)?;
        writeln!(f, "entries:    {}, created one after another", self.entries)?;
        writeln!(f, "latency:    {}", DisplayMs(&self.latency_ms))?;
        writeln!(f, "create RPC: {}", DisplayMs(&self.create_ms))?;
        writeln!(
            f,
            "throughput: {:.1} entries/s ({} entries in {:.1} s)",
            self.entries_per_second, self.entries, self.elapsed_seconds
        )?;
        writeln!(
            f,
            "CPU time:   server {:.1} s, agent {:.1} s, signet-bench {:.1} s",
            self.cpu_seconds.server, self.cpu_seconds.agent, self.cpu_seconds.bench
        )?;

        // Growth table.
        writeln!(f)?;
        writeln!(f, "latency as the workload's X509-SVID set grows:")?;
        writeln!(
            f,
            "{:>13} {:>7} {:>8} {:>8}",
            "entries", "SVIDs", "p50 ms", "max ms"
        )?;
        for segment in &self.segments {
            writeln!(
                f,
                "{:>13} {:>7} {:>8.1} {:>8.1}",
                format!("{}-{}", segment.first, segment.last),
                segment.svids,
                segment.latency_ms.p50,
                segment.latency_ms.max
            )?;
        }
        Ok(())
    }
}

impl Machine {
    /// Reads the CPU count and model of this host.
    pub fn detect() -> Self {
        let cpus = online_cpus();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|cpuinfo| model_name(&cpuinfo))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus,
            cpu_model,
            load_average: load_average(),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} CPUs, {}", self.cpus, self.cpu_model)?;
        if let Some(load) = self.load_average {
            write!(f, ", load average {load:.2}")?;
        }
        Ok(())
    }
}

/// A summary printed as `p50 1.2 ms  p90 ...`.
#[derive(Debug)]
pub struct DisplayMs<'a>(pub &'a Summary);

impl fmt::Display for DisplayMs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.0;
        write!(
            f,
            "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (min {:.1}, mean {:.1})",
            summary.p50, summary.p90, summary.p99, summary.max, summary.min, summary.mean
        )
    }
}

/// Splits `samples` into up to [`SEGMENTS`] consecutive runs of equal length, the last one
/// shorter when the count does not divide evenly.
fn segments(samples: &[Sample]) -> Vec<Segment> {
    let length = samples.len().div_ceil(SEGMENTS).max(1);
    samples
        .chunks(length)
        .enumerate()
        .filter_map(|(index, chunk)| {
            let latencies: Vec<f64> = chunk.iter().map(|sample| sample.latency_ms).collect();
            Some(Segment {
                first: index * length + 1,
                last: index * length + chunk.len(),
                svids: chunk.last()?.svids,
                latency_ms: Summary::of(&latencies)?,
            })
        })
        .collect()
}

fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(latency_ms: f64, svids: usize) -> Sample {
        Sample {
            spiffe_id: format!("spiffe://example.org/bench/entry-{svids}"),
            create_ms: 1.0,
            latency_ms,
            svids,
        }
    }

    #[test]
    fn segments_cover_every_sample_in_order() {
        let samples: Vec<Sample> = (1..=25)
            .map(|i| sample(f64::from(i), i as usize + 1))
            .collect();
        let segments = segments(&samples);
        assert_eq!(segments.len(), 9);
        assert_eq!((segments[0].first, segments[0].last), (1, 3));
        assert_eq!((segments[8].first, segments[8].last), (25, 25));
        assert_eq!(segments[8].svids, 26);
        assert_eq!(segments[0].latency_ms.max, 3.0);
    }

    #[test]
    fn segments_of_few_samples_hold_one_each() {
        let samples: Vec<Sample> = (1..=3).map(|i| sample(f64::from(i), 2)).collect();
        assert_eq!(segments(&samples).len(), 3);
    }

    #[test]
    fn report_rates_entries_over_elapsed_time() {
        let samples = vec![sample(5.0, 2), sample(7.0, 3)];
        let report =
            PropagationReport::new(samples, Duration::from_millis(500), CpuSeconds::default())
                .unwrap();
        assert_eq!(report.entries, 2);
        assert_eq!(report.entries_per_second, 4.0);
        assert_eq!(report.latency_ms.max, 7.0);
    }

    #[test]
    fn report_needs_samples() {
        assert!(
            PropagationReport::new(Vec::new(), Duration::from_secs(1), CpuSeconds::default())
                .is_none()
        );
    }

    #[test]
    fn model_name_reads_first_cpu() {
        let cpuinfo =
            "processor\t: 0\nmodel name\t: Example CPU @ 2.00GHz\n\nmodel name\t: Other\n";
        assert_eq!(
            model_name(cpuinfo).as_deref(),
            Some("Example CPU @ 2.00GHz")
        );
    }
}
