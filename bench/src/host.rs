//! Host state the benchmark reads or changes: resident memory of a process, the load average,
//! and the open-file limit.

use anyhow::{Context, bail};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{SysconfVar, sysconf};

/// Returns the resident memory (`VmRSS`) of process `pid`, in bytes.
///
/// # Errors
///
/// Fails when `/proc/<pid>/status` cannot be read or has no `VmRSS` line.
pub fn resident_memory_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    vm_rss_bytes(&status).with_context(|| format!("no VmRSS line in {path}"))
}

/// Returns the number of online CPUs of the machine, whatever this process is pinned to.
pub fn online_cpus() -> usize {
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(count)) if count > 0 => usize::try_from(count).unwrap_or(1),
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// Returns the 1-minute load average from `/proc/loadavg`, or `None` when it cannot be read.
pub fn load_average() -> Option<f64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    loadavg.split_whitespace().next()?.parse().ok()
}

/// Raises the soft limit on open files to at least `wanted`, within the hard limit, and
/// returns the new soft limit. Child processes started afterwards inherit it.
///
/// # Errors
///
/// Fails when the hard limit is below `wanted` or the limit cannot be changed.
pub fn raise_open_file_limit(wanted: u64) -> anyhow::Result<u64> {
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).context("failed to read the open-file limit")?;
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted {
        bail!(
            "the open-file hard limit is {hard}, below the {wanted} this run needs: raise it \
             (ulimit -Hn) or measure fewer connections"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard)
        .with_context(|| format!("failed to raise the open-file limit to {wanted}"))?;
    Ok(wanted)
}

/// Returns the `VmRSS` of a proc(5) status file in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kilobytes: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kilobytes * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_reads_kilobytes() {
        let status = "Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    1234 kB\nThreads: 1\n";
        assert_eq!(vm_rss_bytes(status), Some(1234 * 1024));
    }

    #[test]
    fn vm_rss_needs_its_line() {
        assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn own_resident_memory_is_readable() {
        assert!(resident_memory_bytes(std::process::id()).unwrap() > 0);
    }
}
