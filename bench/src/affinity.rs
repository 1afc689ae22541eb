//! CPU pinning of the server and of the benchmark's load generator, so that a throughput figure
//! is the work of one core.

use anyhow::Context;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use serde::Serialize;

use crate::host::online_cpus;

/// CPU assignment of the server and the load generator.
#[derive(Clone, Debug, Serialize)]
pub struct Pinning {
    /// CPU the server's threads were pinned to, or `None` when not pinned.
    pub server_cpu: Option<usize>,
    /// CPU this process's threads were pinned to, or `None` when not pinned.
    pub bench_cpu: Option<usize>,
    /// Method of pinning, or the reason for not pinning.
    pub note: String,
}

impl Pinning {
    /// Pins every thread of process `server_pid` to CPU 0 and every thread of this process to
    /// CPU 1. On a machine with one CPU it pins nothing and records that.
    ///
    /// # Errors
    ///
    /// Fails when a thread list cannot be read or the kernel refuses the affinity.
    pub fn server_and_bench(server_pid: u32) -> anyhow::Result<Self> {
        let cpus = online_cpus();
        if cpus < 2 {
            return Ok(Self {
                server_cpu: None,
                bench_cpu: None,
                note: "not pinned: the machine has one CPU, which the server and the load \
                       generator share"
                    .to_owned(),
            });
        }
        pin_process(server_pid, SERVER_CPU)?;
        pin_process(std::process::id(), BENCH_CPU)?;
        Ok(Self {
            server_cpu: Some(SERVER_CPU),
            bench_cpu: Some(BENCH_CPU),
            note: format!(
                "sched_setaffinity on every thread: signet-server on CPU {SERVER_CPU}, \
                 signet-bench on CPU {BENCH_CPU}, of {cpus} CPUs"
            ),
        })
    }
}

/// Pins every current thread of process `pid` to `cpu`. Threads started later inherit the
/// affinity of the thread that starts them.
fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} is outside the CPU set"))?;
    let tasks = format!("/proc/{pid}/task");
    let entries =
        std::fs::read_dir(&tasks).with_context(|| format!("failed to list threads in {tasks}"))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list threads in {tasks}"))?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        sched_setaffinity(Pid::from_raw(tid), &set)
            .with_context(|| format!("failed to pin thread {tid} of process {pid} to CPU {cpu}"))?;
    }
    Ok(())
}

const SERVER_CPU: usize = 0;
const BENCH_CPU: usize = 1;
