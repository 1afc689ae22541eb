//! Reads the facts the unix attestor needs from `/proc`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::AttestationError;

/// Process facts read from `/proc/<pid>/status`.
#[derive(Debug, Eq, PartialEq)]
pub(super) struct ProcessStatus {
    /// Effective user ID.
    pub(super) uid: u32,
    /// Effective group ID.
    pub(super) gid: u32,
    /// Supplementary group IDs, in the order the kernel lists them.
    pub(super) supplementary_gids: Vec<u32>,
}

/// Reads the effective IDs and supplementary groups of `pid`.
pub(super) fn read_status(pid: i32) -> Result<ProcessStatus, AttestationError> {
    let path = proc_path(pid, "status");
    let text = read_proc_file(&path)?;
    parse_status(&text).ok_or(AttestationError::MalformedProcFile { path })
}

/// Reads the start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub(super) fn read_start_time(pid: i32) -> Result<u64, AttestationError> {
    let path = proc_path(pid, "stat");
    let text = read_proc_file(&path)?;
    parse_start_time(&text).ok_or(AttestationError::MalformedProcFile { path })
}

/// Returns the path of `pid`'s `/proc` entry `name`.
pub(super) fn proc_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

fn read_proc_file(path: &Path) -> Result<String, AttestationError> {
    fs::read_to_string(path).map_err(|source| proc_error(path, source))
}

/// Maps a failed `/proc` read, treating a missing entry as a process that has exited.
pub(super) fn proc_error(path: &Path, source: io::Error) -> AttestationError {
    match source.raw_os_error() {
        Some(code) if code == nix::libc::ENOENT || code == nix::libc::ESRCH => {
            AttestationError::ProcessExited
        }
        _ => AttestationError::ReadProcFile {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn parse_status(text: &str) -> Option<ProcessStatus> {
    let uid = effective_id(field(text, "Uid:")?)?;
    let gid = effective_id(field(text, "Gid:")?)?;
    let supplementary_gids = field(text, "Groups:")?
        .split_whitespace()
        .map(|gid| gid.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    Some(ProcessStatus {
        uid,
        gid,
        supplementary_gids,
    })
}

/// Picks the effective ID from a `Uid:` or `Gid:` value (real, effective, saved, filesystem).
fn effective_id(value: &str) -> Option<u32> {
    value.split_whitespace().nth(1)?.parse().ok()
}

fn parse_start_time(text: &str) -> Option<u64> {
    // The command name in field 2 may contain spaces and parentheses, so count fields from the last
    // closing parenthesis. Field 3 is the first one after it, so field 22 is the 20th.
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tapp\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nFDSize:\t64\n\
        Groups:\t4 24 27 \nNStgid:\t42\n";

    #[test]
    fn status_takes_effective_ids_and_groups() {
        let status = parse_status(STATUS).unwrap();
        assert_eq!(status.uid, 1001);
        assert_eq!(status.gid, 101);
        assert_eq!(status.supplementary_gids, vec![4, 24, 27]);
    }

    #[test]
    fn status_accepts_empty_groups() {
        let text = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(
            parse_status(text).unwrap().supplementary_gids,
            Vec::<u32>::new()
        );
    }

    #[test]
    fn status_rejects_missing_or_bad_fields() {
        let cases = [
            "Gid:\t0\t0\t0\t0\nGroups:\t\n",
            "Uid:\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n",
            "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
            "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t4 x\n",
        ];
        for text in cases {
            assert_eq!(parse_status(text), None, "{text:?}");
        }
    }

    #[test]
    fn start_time_skips_command_with_parentheses() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 \
            200 18446744073709551615";
        assert_eq!(parse_start_time(text), Some(987_654));
    }

    #[test]
    fn start_time_rejects_short_stat() {
        assert_eq!(parse_start_time("42 (app) S 1 42"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn own_start_time_is_stable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let first = read_start_time(pid).unwrap();
        assert_eq!(read_start_time(pid).unwrap(), first);
    }
}
