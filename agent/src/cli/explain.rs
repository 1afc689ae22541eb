//! `signet-agent explain`: queries the running agent, over its admin socket, for the identities
//! a process (or a process of a uid) would receive, and why the other entries do not match.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use signet_core::admin_socket;
use signet_proto::signet::agent::debug::v1::debug_client::DebugClient;
use signet_proto::signet::agent::debug::v1::explain_workload_request::Workload;
use signet_proto::signet::agent::debug::v1::{
    ExplainWorkloadRequest, ExplainWorkloadResponse, ExplainedEntry,
};

use super::OutputFormat;
use crate::config::{ADMIN_SOCKET_ENV, DEFAULT_ADMIN_SOCKET};

/// Arguments of `signet-agent explain`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("workload").required(true).args(["pid", "uid"])))]
pub struct ExplainArgs {
    /// PID of a running process, in the agent's PID namespace (1 to 2147483647).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// User ID of a process that is not running yet: shows the selectors every process of this
    /// uid gets from the user and group databases (0 to 4294967294, because 4294967295 is
    /// (uid_t)-1, which no user has).
    #[arg(long, value_parser = clap::value_parser!(u32).range(..i64::from(u32::MAX)))]
    pub uid: Option<u32>,
    /// Unix socket of the agent's admin API, as given to `signet-agent run --admin-socket`.
    #[arg(long, env = ADMIN_SOCKET_ENV, default_value = DEFAULT_ADMIN_SOCKET)]
    pub admin_socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// Outcome of an explanation: whether the workload would receive an identity.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// At least one entry matches.
    Issue,
    /// No entry matches.
    NoIdentity,
}

/// Requests the explanation of the workload from the agent and prints it.
///
/// # Errors
///
/// When the admin socket cannot be reached, the PID does not exist or the agent rejects the
/// request.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<Verdict> {
    let channel = admin_socket::connect(&args.admin_socket)
        .await
        .map_err(|error| connect_error(&error))?;
    let workload = match (args.pid, args.uid) {
        (Some(pid), _) => Workload::Pid(pid),
        (None, Some(uid)) => Workload::Uid(uid),
        (None, None) => anyhow::bail!("set --pid or --uid"),
    };
    let request = ExplainWorkloadRequest {
        workload: Some(workload),
    };
    let response = DebugClient::new(channel)
        .explain_workload(request)
        .await
        .map_err(|status| explain_error(&args.admin_socket, &status))?
        .into_inner();

    let verdict = verdict(&response);
    let text = match args.output {
        OutputFormat::Human => human_text(&workload, &response, verdict),
        OutputFormat::Json => format!("{}\n", json_value(&workload, &response, verdict)),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(verdict)
}

/// Describes a failed connection, with what to do for a missing daemon or a denied socket.
fn connect_error(error: &admin_socket::AdminSocketError) -> anyhow::Error {
    let cause = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    if error.is_permission_denied() {
        anyhow::anyhow!(
            "{error} ({cause}): only the agent's user (or root) may use the admin socket, so \
             run explain as that user"
        )
    } else {
        anyhow::anyhow!(
            "{error} ({cause}): is signet-agent running? Set --admin-socket to the socket the \
             agent was started with"
        )
    }
}

/// Describes a failed call. A socket that does not serve the debug API, such as the Workload
/// API socket or the server's admin socket, returns `Unimplemented` or closes the stream.
fn explain_error(socket: &std::path::Path, status: &tonic::Status) -> anyhow::Error {
    let foreign = status.code() == tonic::Code::Unimplemented || status.message().is_empty();
    if foreign {
        anyhow::anyhow!(
            "{} does not serve the agent's admin API ({:?}): set --admin-socket to the socket \
             given to `signet-agent run --admin-socket`",
            socket.display(),
            status.code()
        )
    } else {
        anyhow::anyhow!(
            "the agent could not explain the workload: {}",
            status.message()
        )
    }
}

/// Returns whether the workload receives an identity: an entry matches and its X509-SVID has
/// not expired unrenewed.
fn verdict(response: &ExplainWorkloadResponse) -> Verdict {
    let served = |entry: &ExplainedEntry| entry.matches && entry.svid_expired_at == 0;
    if response.entries.iter().any(served) {
        Verdict::Issue
    } else {
        Verdict::NoIdentity
    }
}

fn human_text(workload: &Workload, response: &ExplainWorkloadResponse, verdict: Verdict) -> String {
    let mut text = String::new();
    line(&mut text, "Agent SPIFFE ID", &response.agent_id);
    line(&mut text, "Workload", &workload_text(workload));
    for selector in &response.selectors {
        line(&mut text, "Selector", selector);
    }
    if !response.unknown_selector_keys.is_empty() {
        let keys = response.unknown_selector_keys.join(", ");
        line(
            &mut text,
            "Not known",
            &format!("{keys} (need a process the agent can inspect)"),
        );
    }
    line(&mut text, "Last sync", &sync_text(response));
    line(&mut text, "Entries", &response.entries.len().to_string());

    for entry in &response.entries {
        text.push('\n');
        entry_text(&mut text, entry);
    }

    text.push('\n');
    match verdict {
        Verdict::Issue => {
            let matching: Vec<&str> = response
                .entries
                .iter()
                .filter(|entry| entry.matches && entry.svid_expired_at == 0)
                .map(|entry| entry.spiffe_id.as_str())
                .collect();
            let _ = writeln!(text, "Result: identity issued: {}", matching.join(", "));
        }
        Verdict::NoIdentity => {
            text.push_str("Result: no identity issued\n");
            let unknown = undetermined_entries(response);
            if unknown > 0 {
                let _ = writeln!(
                    text,
                    "  - {unknown} entries marked unknown above may match once the process runs"
                );
            }
            for note in notes(response) {
                let _ = writeln!(text, "  - {note}");
            }
        }
    }
    text
}

fn entry_text(text: &mut String, entry: &ExplainedEntry) {
    line(text, "Entry ID", &entry.entry_id);
    line(text, "SPIFFE ID", &entry.spiffe_id);
    for selector in &entry.selectors {
        line(text, "Selector", selector);
    }
    let outcome = if let Some(at) = entry_time(entry.svid_expired_at).filter(|_| entry.matches) {
        format!(
            "match, but the X509-SVID expired at {} and could not be renewed: is the server \
             reachable?",
            humantime::format_rfc3339_seconds(at)
        )
    } else if entry.matches && entry.has_svid {
        "match".to_owned()
    } else if entry.matches {
        "match, X509-SVID not signed yet".to_owned()
    } else if !entry.missing_selectors.is_empty() {
        format!("no match, missing {}", entry.missing_selectors.join(", "))
    } else if !entry.undetermined_selectors.is_empty() {
        format!(
            "unknown, matches only if the process has {}",
            entry.undetermined_selectors.join(", ")
        )
    } else {
        format!("no match: {}", entry.note)
    };
    line(text, "Result", &outcome);
}

/// Returns how many entries neither match nor miss a selector, because the request could not
/// determine some of the selectors they need.
fn undetermined_entries(response: &ExplainWorkloadResponse) -> usize {
    response
        .entries
        .iter()
        .filter(|entry| {
            !entry.matches
                && entry.missing_selectors.is_empty()
                && !entry.undetermined_selectors.is_empty()
        })
        .count()
}

/// Returns the hints shown when no entry matches.
fn notes(response: &ExplainWorkloadResponse) -> Vec<String> {
    let mut notes = Vec::new();
    let expired = response
        .entries
        .iter()
        .filter(|entry| entry.matches)
        .filter_map(|entry| entry_time(entry.svid_expired_at).map(|at| (entry, at)));
    for (entry, at) in expired {
        notes.push(format!(
            "The X509-SVID for {} expired at {} and could not be renewed: is the server \
             reachable? Check the agent's log.",
            entry.spiffe_id,
            humantime::format_rfc3339_seconds(at)
        ));
    }
    if let Some(at) = last_sync(response) {
        notes.push(format!(
            "This agent only knows the entries it received at its last sync, at {}. An entry \
             created later, or while the server is unreachable, is not listed.",
            humantime::format_rfc3339_seconds(at)
        ));
    } else if response.synced {
        notes.push(
            "This agent serves entries stored by its previous run and has not reached the \
             server since it started: check its log and the server address."
                .to_owned(),
        );
    } else {
        notes.push(
            "This agent has not received its entries from the server yet: check its log and \
             the server address."
                .to_owned(),
        );
    }
    notes.push(format!(
        "The server sends this agent only the entries whose parent ID is {} or a node alias \
         that matches it. Run `signet-server entry explain --spiffe-id ID` on the server to see \
         which agents may serve an entry.",
        response.agent_id
    ));
    notes
}

fn json_value(workload: &Workload, response: &ExplainWorkloadResponse, verdict: Verdict) -> Value {
    let workload = match workload {
        Workload::Pid(pid) => json!({ "pid": pid }),
        Workload::Uid(uid) => json!({ "uid": uid }),
    };
    let entries: Vec<Value> = response.entries.iter().map(entry_json).collect();
    json!({
        "agent_id": response.agent_id,
        "workload": workload,
        "selectors": response.selectors,
        "unknown_selector_keys": response.unknown_selector_keys,
        "synced": response.synced,
        "cache_revision": response.cache_revision,
        // Unix seconds as a string, like the times in the server's JSON output.
        "last_sync_at": (response.last_sync_at > 0).then(|| response.last_sync_at.to_string()),
        "entries": entries,
        "identity_issued": verdict == Verdict::Issue,
        "undetermined_entries": undetermined_entries(response),
    })
}

fn entry_json(entry: &ExplainedEntry) -> Value {
    json!({
        "entry_id": entry.entry_id,
        "spiffe_id": entry.spiffe_id,
        "selectors": entry.selectors,
        "missing_selectors": entry.missing_selectors,
        "undetermined_selectors": entry.undetermined_selectors,
        "matches": entry.matches,
        "has_svid": entry.has_svid,
        "note": entry.note,
        // Unix seconds as a string, like `last_sync_at`.
        "svid_expired_at": (entry.svid_expired_at > 0).then(|| entry.svid_expired_at.to_string()),
    })
}

fn workload_text(workload: &Workload) -> String {
    match workload {
        Workload::Pid(pid) => format!("PID {pid}"),
        Workload::Uid(uid) => format!("uid {uid} (no running process)"),
    }
}

fn sync_text(response: &ExplainWorkloadResponse) -> String {
    match last_sync(response) {
        Some(at) => format!(
            "{} (cache revision {})",
            humantime::format_rfc3339_seconds(at),
            response.cache_revision
        ),
        None => "none since the agent started".to_owned(),
    }
}

fn last_sync(response: &ExplainWorkloadResponse) -> Option<std::time::SystemTime> {
    entry_time(response.last_sync_at)
}

/// Returns the time of Unix `seconds`, or None for 0 (unset).
fn entry_time(seconds: i64) -> Option<std::time::SystemTime> {
    let seconds = u64::try_from(seconds).ok().filter(|seconds| *seconds > 0)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn line(text: &mut String, label: &str, value: &str) {
    let _ = writeln!(text, "{label:<16}: {value}");
}
