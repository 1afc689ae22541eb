//! `signet-server entry apply`: makes the server's entries of one owner equal to a file.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use signet_proto::signet::server::registration::v1::registration_client::RegistrationClient;
use signet_proto::signet::server::registration::v1::{ApplyEntriesRequest, ApplyEntriesResponse};
use signet_proto::spire::api::types;

use super::entry_file::{EntryFileFormat, UNKNOWN_FORMAT, check_entries, parse_entry_file};
use super::output::{entry_json, print_json, spiffe_id_text};
use super::{CommonArgs, OutputFormat, client, rpc_error};
use crate::model::EntryOwner;

/// An example file for the help text.
const EXAMPLE: &str = "\
Example file entries.toml (YAML: a top-level `entries:` list with the same keys):

  [[entry]]
  spiffe_id = \"spiffe://example.org/payments/api\"
  parent_id = \"spiffe://example.org/node/web-1\"
  selectors = [\"unix:uid:1000\", \"unix:path:/usr/bin/payments-api\"]
  x509_svid_ttl = \"1h\"        # optional, as are jwt_svid_ttl, dns_names, hint, expires_at

An entry is identified by its spiffe_id, parent_id and set of selectors. Applying the same file
again changes nothing. An invalid file changes nothing, and every error is printed with its line.";

/// Flags of `entry apply`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLE)]
pub struct ApplyArgs {
    /// TOML (.toml) or YAML (.yaml, .yml) file that lists the entries.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Label of the entries this file manages, for example team-payments. Entries of other
    /// owners, or created with `entry create`, are never changed.
    #[arg(long)]
    owner: String,
    /// Also deletes the owner's entries that the file no longer lists.
    #[arg(long)]
    prune: bool,
    /// Prints the plan and changes nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Reads an entry file of a known format, at most [`MAX_FILE_BYTES`] long.
fn read_entry_file(path: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        EntryFileFormat::of(path).is_some(),
        "{}: {UNKNOWN_FORMAT}",
        path.display()
    );
    let file = std::fs::File::open(path)
        .with_context(|| format!("failed to open the entry file {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read the entry file {}", path.display()))?;
    anyhow::ensure!(
        u64::try_from(bytes.len()).unwrap_or(u64::MAX) <= MAX_FILE_BYTES,
        "{} is larger than {} MiB: split it into several files with one owner each",
        path.display(),
        MAX_FILE_BYTES >> 20
    );
    String::from_utf8(bytes).map_err(|error| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            error.utf8_error().valid_up_to()
        )
    })
}

/// Largest entry file read: about 200,000 entries, far beyond what one owner should manage.
const MAX_FILE_BYTES: u64 = 32 << 20;

/// Reads and checks the file, applies it in one request and prints the plan.
pub(super) async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let owner = EntryOwner::new(&args.owner).context("invalid --owner")?;
    let text = read_entry_file(&args.file)?;
    let entries = parse_entry_file(&args.file, &text)?;

    let channel = client::connect(&args.common.admin_socket).await?;
    let trust_domain = client::trust_domain(channel.clone()).await?;
    check_entries(&args.file, &entries, &trust_domain)?;

    let response = RegistrationClient::new(channel)
        .apply_entries(ApplyEntriesRequest {
            owner: owner.to_string(),
            entries: entries.into_iter().map(|entry| entry.entry).collect(),
            prune: args.prune,
            dry_run: args.dry_run,
        })
        .await
        .map_err(|status| rpc_error("apply the entries", &status))?
        .into_inner();

    match args.common.output {
        OutputFormat::Human => print_plan(&response, args.dry_run)?,
        OutputFormat::Json => print_json(&json!({
            "dry_run": args.dry_run,
            "created": response.created.iter().map(entry_json).collect::<Vec<_>>(),
            "updated": response.updated.iter().map(entry_json).collect::<Vec<_>>(),
            "deleted": response.deleted.iter().map(entry_json).collect::<Vec<_>>(),
            "unchanged": response.unchanged.iter().map(entry_json).collect::<Vec<_>>(),
        }))?,
    }
    Ok(())
}

/// Prints one `<action> <SPIFFE ID> <parent ID>` line per entry, then a summary.
fn print_plan(plan: &ApplyEntriesResponse, dry_run: bool) -> io::Result<()> {
    let groups: [(&str, &[types::Entry]); 4] = [
        ("create", &plan.created),
        ("update", &plan.updated),
        ("delete", &plan.deleted),
        ("unchanged", &plan.unchanged),
    ];
    let mut stdout = io::stdout().lock();
    for (action, entries) in groups {
        for entry in entries {
            writeln!(
                stdout,
                "{action} {} {}",
                spiffe_id_text(entry.spiffe_id.as_ref()),
                spiffe_id_text(entry.parent_id.as_ref())
            )?;
        }
    }
    let outcome = if dry_run {
        "dry run, nothing changed"
    } else {
        "applied"
    };
    writeln!(
        stdout,
        "{} created, {} updated, {} deleted, {} unchanged ({outcome})",
        plan.created.len(),
        plan.updated.len(),
        plan.deleted.len(),
        plan.unchanged.len()
    )
}
