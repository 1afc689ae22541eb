//! CPU time of processes, read from `/proc/<pid>/stat`, to tell which process a benchmark's
//! time went to.

use std::time::Duration;

use anyhow::{Context, bail};
use nix::unistd::{SysconfVar, sysconf};
use serde::Serialize;

/// CPU time, user plus system, of each process of a benchmark, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuSeconds {
    /// The `signet-server` process.
    pub server: f64,
    /// The `signet-agent` process.
    pub agent: f64,
    /// The `signet-bench` process: admin client and workload, parsing every stream message.
    pub bench: f64,
}

impl CpuSeconds {
    /// Returns the CPU time used between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            server: self.server - earlier.server,
            agent: self.agent - earlier.agent,
            bench: self.bench - earlier.bench,
        }
    }
}

/// Returns the user plus system CPU time that process `pid` has used, all threads together.
///
/// # Errors
///
/// Fails when the process is gone or its stat line has an unexpected shape.
pub fn process_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("unexpected contents of {path}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second()?))
}

/// Returns utime + stime, fields 14 and 15 of proc(5)'s stat line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name in field 2 may contain spaces and parentheses, so fields are counted
    // from the last closing parenthesis, after which field 3 (state) comes first.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn ticks_per_second() -> anyhow::Result<f64> {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => Ok(ticks as f64),
        Ok(_) => bail!("the system reports no clock tick rate"),
        Err(error) => bail!("failed to read the clock tick rate: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skips_command_with_spaces() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0 5 0 0";
        assert_eq!(cpu_ticks(stat), Some(280));
    }

    #[test]
    fn cpu_ticks_rejects_short_line() {
        assert_eq!(cpu_ticks("42 (x) S 1 2"), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu_time(std::process::id()).is_ok());
    }
}
