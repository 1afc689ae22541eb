//! `signet-server entry explain`: which attested agents may obtain an entry's SVIDs, and why the
//! others may not, as the server's authorization decides it.

use std::fmt::Write as _;
use std::io::{self, Write as _};

use anyhow::Context;
use serde_json::{Value, json};
use signet_core::template::SpiffeIdTemplate;
use signet_proto::signet::server::diagnostics::v1::diagnostics_client::DiagnosticsClient;
use signet_proto::signet::server::diagnostics::v1::explain_entry_request::Entry as EntryKey;
use signet_proto::signet::server::diagnostics::v1::{
    AgentVerdict, EntryExplanation, ExplainEntryRequest, ExplainEntryResponse,
};

use tonic::Code;

use super::output::{entry_json, entry_text, spiffe_id_text};
use super::{CommonArgs, OutputFormat, client, rpc_error};
use crate::model::unix_time_text;

/// Flags of `entry explain`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("entry").required(true).args(["spiffe_id", "entry_id"])))]
pub struct ExplainArgs {
    /// SPIFFE ID of the entries to explain, for example spiffe://example.org/web, or a SPIFFE ID
    /// template as written in its entries. A SPIFFE ID that no entry has exactly also explains
    /// the template entries that expand to it.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// ID of the entry to explain. An entry ID that does not exist exits 1, like an entry no
    /// agent is authorized for.
    #[arg(long)]
    entry_id: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Outcome of an explanation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// At least one attested agent may obtain the SVIDs of an explained entry.
    Authorized,
    /// No agent may, or no entry has the SPIFFE ID or entry ID.
    NoAgent,
}

/// Requests the explanation of the entry from the server and prints it.
///
/// # Errors
///
/// An invalid SPIFFE ID, an unreachable server, or a socket that does not serve the server's
/// admin API.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<Verdict> {
    let key = match (&args.spiffe_id, &args.entry_id) {
        (Some(text), _) => {
            let id = SpiffeIdTemplate::parse(text).with_context(|| {
                format!(
                    "invalid --spiffe-id {text:?}: use a SPIFFE ID such as \
                     spiffe://example.org/web, or a template such as \
                     spiffe://example.org/unix/uid/{{unix:uid}}"
                )
            })?;
            EntryKey::SpiffeId(id.to_proto())
        }
        (None, Some(entry_id)) => EntryKey::EntryId(entry_id.clone()),
        (None, None) => anyhow::bail!("set --spiffe-id or --entry-id"),
    };
    let channel = client::connect(&args.common.admin_socket).await?;
    let response = match DiagnosticsClient::new(channel)
        .explain_entry(ExplainEntryRequest { entry: Some(key) })
        .await
    {
        Ok(response) => response.into_inner(),
        // An unknown entry ID answers the question like an entry no agent may serve.
        Err(status) if status.code() == Code::NotFound && args.entry_id.is_some() => {
            ExplainEntryResponse::default()
        }
        Err(status) if status.code() == Code::Unimplemented => anyhow::bail!(
            "{} does not serve the server's admin API: set --admin-socket to the socket given to \
             `signet-server run --admin-socket`",
            args.common.admin_socket.display()
        ),
        Err(status) => return Err(rpc_error("explain the entry", &status)),
    };

    let verdict = verdict(&response);
    let text = match args.common.output {
        OutputFormat::Human => human_text(args, &response, verdict),
        OutputFormat::Json => format!("{}\n", json_value(&response, verdict)),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(verdict)
}

fn verdict(response: &ExplainEntryResponse) -> Verdict {
    let authorized = response
        .entries
        .iter()
        .flat_map(|explanation| &explanation.agents)
        .any(|agent| agent.authorized);
    if authorized {
        Verdict::Authorized
    } else {
        Verdict::NoAgent
    }
}

fn human_text(args: &ExplainArgs, response: &ExplainEntryResponse, verdict: Verdict) -> String {
    let mut text = String::new();
    if response.entries.is_empty() {
        text.push_str(&no_entry_text(args));
        return text;
    }
    if let Some(id) = expanded_id(args, response) {
        let _ = writeln!(
            text,
            "No entry has SPIFFE ID {id} exactly. These template entries expand to it:\n"
        );
    }
    for explanation in &response.entries {
        explanation_text(&mut text, explanation);
        text.push('\n');
    }
    let result = match verdict {
        Verdict::Authorized => "Result: at least one agent is authorized",
        Verdict::NoAgent => "Result: no agent is authorized",
    };
    let _ = writeln!(text, "{result}");
    text
}

fn no_entry_text(args: &ExplainArgs) -> String {
    match (&args.spiffe_id, &args.entry_id) {
        (Some(id), _) => format!(
            "No entry has SPIFFE ID {id}, and no template entry expands to it: create one with \
             `entry create`, or check the ID with `entry show`\n"
        ),
        (None, Some(entry_id)) => format!(
            "No entry has ID {entry_id}: list the entries with `entry show`\nResult: no agent \
             is authorized\n"
        ),
        (None, None) => String::new(),
    }
}

/// Returns the requested SPIFFE ID when the server returned template entries that expand to
/// it, because no entry has it exactly.
fn expanded_id<'a>(args: &'a ExplainArgs, response: &ExplainEntryResponse) -> Option<&'a str> {
    let requested = args.spiffe_id.as_deref()?;
    let is_exact = |explanation: &EntryExplanation| {
        let entry = explanation.entry.as_ref();
        spiffe_id_text(entry.and_then(|entry| entry.spiffe_id.as_ref())) == requested
    };
    (!response.entries.iter().any(is_exact)).then_some(requested)
}

fn explanation_text(text: &mut String, explanation: &EntryExplanation) {
    let entry = explanation.entry.clone().unwrap_or_default();
    text.push_str(&entry_text(&entry));
    let _ = writeln!(
        text,
        "{:<17}: {}",
        "Created at",
        unix_time_text(entry.created_at)
    );
    if explanation.agents.is_empty() {
        text.push_str("No attested agents: attest an agent with a join token first\n");
    }
    for agent in &explanation.agents {
        let state = if agent.authorized {
            "authorized"
        } else {
            "not authorized"
        };
        let _ = writeln!(
            text,
            "Agent {}: {state}, last sync {}, X509-SVID expires at {}",
            spiffe_id_text(agent.agent_id.as_ref()),
            last_sync_text(agent),
            unix_time_text(agent.agent_svid_expires_at)
        );
        for reason in &agent.reasons {
            let _ = writeln!(text, "  - {reason}");
        }
    }
}

fn last_sync_text(agent: &AgentVerdict) -> String {
    match agent.last_sync_at {
        0 => "none since the server started".to_owned(),
        seconds => unix_time_text(seconds),
    }
}

fn json_value(response: &ExplainEntryResponse, verdict: Verdict) -> Value {
    let entries: Vec<Value> = response.entries.iter().map(explanation_json).collect();
    json!({
        "entries": entries,
        "authorized": verdict == Verdict::Authorized,
    })
}

fn explanation_json(explanation: &EntryExplanation) -> Value {
    let entry = explanation.entry.clone().unwrap_or_default();
    let agents: Vec<Value> = explanation
        .agents
        .iter()
        .map(|agent| {
            json!({
                "agent_id": spiffe_id_text(agent.agent_id.as_ref()),
                "authorized": agent.authorized,
                "reasons": agent.reasons,
                "missing_alias_selectors": agent.missing_alias_selectors,
                // Unix seconds as a string, like the times of protobuf JSON entries.
                "last_sync_at": (agent.last_sync_at != 0).then(|| agent.last_sync_at.to_string()),
                "agent_svid_expires_at": agent.agent_svid_expires_at.to_string(),
            })
        })
        .collect();
    json!({
        "entry": entry_json(&entry),
        "agents": agents,
    })
}
