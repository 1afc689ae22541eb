//! `signet-server entry create|show|update|delete|count`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use signet_core::duration::{parse_ttl, ttl_seconds};
use signet_core::ids::{parse_spiffe_id, parse_trust_domain, server_id, to_proto_id};
use signet_core::selector::Selector;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchDeleteEntryRequest, BatchUpdateEntryRequest, CountEntriesRequest,
    GetEntryRequest, ListEntriesRequest, count_entries_request, list_entries_request,
};
use signet_proto::spire::api::types::{self, EntryMask, SelectorMatch, selector_match};
use tonic::transport::Channel;

use super::entry_apply::{self, ApplyArgs};
use super::entry_explain::{self, ExplainArgs, Verdict};
use super::entry_json::EntryFile;
use super::output::{entry_json, print_entries, print_json, spiffe_id_text, status_json};
use super::{CommonArgs, OutputFormat, client, rpc_error};

/// Registration entry commands.
#[derive(Debug, clap::Subcommand)]
pub enum EntryCommand {
    /// Makes the entries of one owner equal to a TOML or YAML file: creates, updates and, with
    /// --prune, deletes entries in one transaction.
    Apply(ApplyArgs),
    /// Counts registration entries.
    Count(FilterArgs),
    /// Creates registration entries from flags or from a JSON file.
    Create(CreateArgs),
    /// Deletes a registration entry.
    Delete(DeleteArgs),
    /// Explains which attested agents may obtain the SVIDs of an entry and why the others may
    /// not. Exits 0 if at least one agent may, 1 if none may or no entry has the ID, 2 if the
    /// entry cannot be explained, and 64 for a usage error.
    Explain(ExplainArgs),
    /// Shows registration entries, all or those matching the filters.
    Show(FilterArgs),
    /// Changes fields of a registration entry; fields without a flag keep their value.
    Update(UpdateArgs),
}

/// Entry fields settable by flags.
#[derive(Debug, Default, clap::Args)]
pub(super) struct EntryFields {
    /// SPIFFE ID the entry issues, for example spiffe://example.org/web.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// SPIFFE ID of the agent (or node alias) that may obtain the SVID.
    #[arg(long, conflicts_with = "node")]
    parent_id: Option<String>,
    /// Makes this a node alias entry: the parent is the server, spiffe://<td>/spire/server.
    #[arg(long)]
    node: bool,
    /// Selector TYPE:VALUE the workload must have, for example unix:uid:1000 (repeatable).
    #[arg(long = "selector")]
    selectors: Vec<String>,
    /// X509-SVID lifetime in seconds or with a unit (600, 1h) [default: the server's default].
    #[arg(long, allow_hyphen_values = true)]
    x509_svid_ttl: Option<String>,
    /// JWT-SVID lifetime in seconds or with a unit (300, 5m) [default: the server's default].
    #[arg(long, allow_hyphen_values = true)]
    jwt_svid_ttl: Option<String>,
    /// DNS name added to the X509-SVID (repeatable).
    #[arg(long = "dns-name", allow_hyphen_values = true)]
    dns_names: Vec<String>,
    /// Hint that helps a workload tell its SVIDs apart.
    #[arg(long)]
    hint: Option<String>,
    /// Whether the workload may use the server's admin APIs (not supported yet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    admin: Option<bool>,
    /// Whether the workload is a downstream server (not supported yet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    downstream: Option<bool>,
    /// Whether the agent stores the SVID instead of serving it to a workload (not supported yet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    store_svid: Option<bool>,
    /// Trust domain whose bundle the workload also receives (repeatable; not supported yet).
    #[arg(long)]
    federates_with: Vec<String>,
    /// Unix time in seconds after which the entry no longer applies.
    #[arg(long, allow_negative_numbers = true)]
    entry_expiry: Option<i64>,
}

/// Flags of `entry create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    fields: EntryFields,
    /// ID for the new entry [default: a generated UUID].
    #[arg(long)]
    entry_id: Option<String>,
    /// JSON file with an "entries" array in SPIRE's format, instead of the field flags.
    #[arg(long, conflicts_with_all = ["spiffe_id", "parent_id", "node", "selectors", "entry_id"])]
    data: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags of `entry update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// ID of the entry to change.
    #[arg(long)]
    entry_id: String,
    #[command(flatten)]
    fields: EntryFields,
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags of `entry delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// ID of the entry to delete.
    #[arg(long)]
    entry_id: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// Filters of `entry show` and `entry count`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only the entry with this ID.
    #[arg(long)]
    entry_id: Option<String>,
    /// Only entries with this SPIFFE ID.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Only entries with this parent ID.
    #[arg(long)]
    parent_id: Option<String>,
    /// Only entries whose selectors match these (repeatable), by the --match-selectors-on rule.
    #[arg(long = "selector")]
    selectors: Vec<String>,
    /// Match rule of --selector: exact, subset, superset or any.
    #[arg(long, value_enum, default_value_t = MatchSelectors::Superset)]
    match_selectors_on: MatchSelectors,
    #[command(flatten)]
    common: CommonArgs,
}

/// Match rules of selector filters.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum MatchSelectors {
    /// Entries with at least one of the selectors.
    Any,
    /// Entries with exactly the selectors.
    Exact,
    /// Entries whose selectors are all among the given ones.
    Subset,
    /// Entries with all the given selectors and maybe more.
    Superset,
}

pub(super) async fn execute(command: EntryCommand) -> anyhow::Result<()> {
    match command {
        EntryCommand::Apply(args) => entry_apply::apply(args).await,
        EntryCommand::Count(args) => count(args).await,
        EntryCommand::Create(args) => create(args).await,
        EntryCommand::Delete(args) => delete(args).await,
        EntryCommand::Explain(args) => match entry_explain::explain(&args).await? {
            Verdict::Authorized => Ok(()),
            Verdict::NoAgent => bail!("no attested agent is authorized for the entry"),
        },
        EntryCommand::Show(args) => show(args).await,
        EntryCommand::Update(args) => update(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let channel = client::connect(&args.common.admin_socket).await?;
    let entries = match &args.data {
        Some(path) => read_entry_file(path)?,
        None => {
            let (mut entry, _) = args.fields.to_entry(&channel).await?;
            require_create_fields(&entry)?;
            entry.id = args.entry_id.clone().unwrap_or_default();
            vec![entry]
        }
    };

    let response = EntryClient::new(channel)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: entries.clone(),
            output_mask: None,
        })
        .await
        .map_err(|status| rpc_error("create entries", &status))?
        .into_inner();

    let outcomes = response
        .results
        .into_iter()
        .zip(&entries)
        .map(|(result, requested)| Outcome {
            label: spiffe_id_text(requested.spiffe_id.as_ref()),
            status: result.status,
            entry: result.entry,
        })
        .collect();
    report(outcomes, "create entry", args.common.output)
}

async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let channel = client::connect(&args.common.admin_socket).await?;
    let (mut entry, input_mask) = args.fields.to_entry(&channel).await?;
    if input_mask == EntryMask::default() {
        bail!("nothing to update: set at least one field flag, for example --x509-svid-ttl");
    }
    entry.id.clone_from(&args.entry_id);

    let response = EntryClient::new(channel)
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![entry],
            input_mask: Some(input_mask),
            output_mask: None,
        })
        .await
        .map_err(|status| rpc_error("update the entry", &status))?
        .into_inner();

    let outcomes = response
        .results
        .into_iter()
        .map(|result| Outcome {
            label: args.entry_id.clone(),
            status: result.status,
            entry: result.entry,
        })
        .collect();
    report(outcomes, "update entry", args.common.output)
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let channel = client::connect(&args.common.admin_socket).await?;
    let response = EntryClient::new(channel)
        .batch_delete_entry(BatchDeleteEntryRequest {
            ids: vec![args.entry_id.clone()],
        })
        .await
        .map_err(|status| rpc_error("delete the entry", &status))?
        .into_inner();

    let result = response.results.into_iter().next();
    let status = result.as_ref().and_then(|result| result.status.as_ref());
    if let Some(status) = status.filter(|status| status.code != 0) {
        bail!(
            "failed to delete entry {:?}: {}",
            args.entry_id,
            status.message
        );
    }
    match args.common.output {
        OutputFormat::Human => {
            writeln!(
                io::stdout().lock(),
                "Deleted entry with ID: {}",
                args.entry_id
            )?;
        }
        OutputFormat::Json => print_json(&serde_json::json!({
            "results": [{ "status": status_json(status), "id": args.entry_id }],
        }))?,
    }
    Ok(())
}

async fn show(args: FilterArgs) -> anyhow::Result<()> {
    let channel = client::connect(&args.common.admin_socket).await?;
    let mut client = EntryClient::new(channel);
    let entries = match &args.entry_id {
        Some(id) => vec![
            client
                .get_entry(GetEntryRequest {
                    id: id.clone(),
                    output_mask: None,
                })
                .await
                .map_err(|status| rpc_error("show the entry", &status))?
                .into_inner(),
        ],
        None => list_all(&mut client, args.list_filter()?).await?,
    };

    match args.common.output {
        OutputFormat::Human => {
            let noun = if entries.len() == 1 {
                "entry"
            } else {
                "entries"
            };
            writeln!(io::stdout().lock(), "Found {} {noun}", entries.len())?;
            print_entries(&entries)?;
        }
        OutputFormat::Json => print_json(&serde_json::json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        }))?,
    }
    Ok(())
}

async fn count(args: FilterArgs) -> anyhow::Result<()> {
    if args.entry_id.is_some() {
        bail!("entry count does not take --entry-id; use entry show --entry-id");
    }
    let filter = args.list_filter()?;
    let channel = client::connect(&args.common.admin_socket).await?;
    let count = EntryClient::new(channel)
        .count_entries(CountEntriesRequest {
            filter: Some(count_entries_request::Filter {
                by_spiffe_id: filter.by_spiffe_id,
                by_parent_id: filter.by_parent_id,
                by_selectors: filter.by_selectors,
                ..count_entries_request::Filter::default()
            }),
        })
        .await
        .map_err(|status| rpc_error("count entries", &status))?
        .into_inner()
        .count;

    match args.common.output {
        OutputFormat::Human if count == 1 => writeln!(io::stdout().lock(), "1 registration entry")?,
        OutputFormat::Human => writeln!(io::stdout().lock(), "{count} registration entries")?,
        OutputFormat::Json => print_json(&serde_json::json!({ "count": count }))?,
    }
    Ok(())
}

async fn list_all(
    client: &mut EntryClient<Channel>,
    filter: list_entries_request::Filter,
) -> anyhow::Result<Vec<types::Entry>> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_entries(ListEntriesRequest {
                filter: Some(filter.clone()),
                output_mask: None,
                page_size: 0,
                page_token,
            })
            .await
            .map_err(|status| rpc_error("list entries", &status))?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        page_token = page.next_page_token;
    }
}

/// The result of creating or updating one entry.
struct Outcome {
    label: String,
    status: Option<types::Status>,
    entry: Option<types::Entry>,
}

/// Prints the entries that succeeded; fails naming each entry that did not.
fn report(outcomes: Vec<Outcome>, action: &str, output: OutputFormat) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let mut json_results = Vec::new();
    for outcome in &outcomes {
        let status = outcome.status.as_ref();
        json_results.push(serde_json::json!({
            "status": status_json(status),
            "entry": outcome.entry.as_ref().map(entry_json),
        }));
        match (status.filter(|status| status.code != 0), &outcome.entry) {
            (Some(status), _) => failures.push(format!(
                "failed to {action} {}: {}",
                outcome.label, status.message
            )),
            (None, Some(entry)) if output == OutputFormat::Human => {
                print_entries(std::slice::from_ref(entry))?;
            }
            (None, _) => {}
        }
    }
    if output == OutputFormat::Json {
        print_json(&serde_json::json!({ "results": json_results }))?;
    }

    match failures.len() {
        0 => Ok(()),
        1 if outcomes.len() == 1 => bail!("{}", failures[0]),
        count => {
            for failure in &failures {
                eprintln!("{failure}");
            }
            bail!("{count} of {} entries failed", outcomes.len())
        }
    }
}

impl EntryFields {
    /// Builds the entry the flags describe and a mask of the fields they set.
    async fn to_entry(&self, channel: &Channel) -> anyhow::Result<(types::Entry, EntryMask)> {
        let mut entry = types::Entry::default();
        let mut mask = EntryMask::default();

        if let Some(text) = &self.spiffe_id {
            entry.spiffe_id = Some(proto_template(text)?);
            mask.spiffe_id = true;
        }
        if let Some(text) = &self.parent_id {
            entry.parent_id = Some(proto_id(text, "--parent-id")?);
            mask.parent_id = true;
        }
        if !self.selectors.is_empty() {
            entry.selectors = proto_selectors(&self.selectors)?;
            mask.selectors = true;
        }
        if let Some(text) = &self.x509_svid_ttl {
            entry.x509_svid_ttl = ttl(text, "--x509-svid-ttl")?;
            mask.x509_svid_ttl = true;
        }
        if let Some(text) = &self.jwt_svid_ttl {
            entry.jwt_svid_ttl = ttl(text, "--jwt-svid-ttl")?;
            mask.jwt_svid_ttl = true;
        }
        if !self.dns_names.is_empty() {
            entry.dns_names.clone_from(&self.dns_names);
            mask.dns_names = true;
        }
        if !self.federates_with.is_empty() {
            entry.federates_with = federated_trust_domains(&self.federates_with)?;
            mask.federates_with = true;
        }
        self.set_flags(&mut entry, &mut mask);

        // Only now the server is asked, so that bad flags fail before any connection is made.
        if self.node {
            let trust_domain = client::trust_domain(channel.clone()).await?;
            entry.parent_id = Some(to_proto_id(&server_id(&trust_domain)));
            mask.parent_id = true;
        }
        Ok((entry, mask))
    }

    fn set_flags(&self, entry: &mut types::Entry, mask: &mut EntryMask) {
        if let Some(hint) = &self.hint {
            entry.hint.clone_from(hint);
            mask.hint = true;
        }
        if let Some(admin) = self.admin {
            entry.admin = admin;
            mask.admin = true;
        }
        if let Some(downstream) = self.downstream {
            entry.downstream = downstream;
            mask.downstream = true;
        }
        if let Some(store_svid) = self.store_svid {
            entry.store_svid = store_svid;
            mask.store_svid = true;
        }
        if let Some(expiry) = self.entry_expiry {
            entry.expires_at = expiry;
            mask.expires_at = true;
        }
    }
}

impl FilterArgs {
    fn list_filter(&self) -> anyhow::Result<list_entries_request::Filter> {
        let by_selectors = if self.selectors.is_empty() {
            None
        } else {
            let behavior = match self.match_selectors_on {
                MatchSelectors::Any => selector_match::MatchBehavior::MatchAny,
                MatchSelectors::Exact => selector_match::MatchBehavior::MatchExact,
                MatchSelectors::Subset => selector_match::MatchBehavior::MatchSubset,
                MatchSelectors::Superset => selector_match::MatchBehavior::MatchSuperset,
            };
            Some(SelectorMatch {
                selectors: proto_selectors(&self.selectors)?,
                r#match: behavior as i32,
            })
        };
        Ok(list_entries_request::Filter {
            by_spiffe_id: self.spiffe_id.as_deref().map(proto_template).transpose()?,
            by_parent_id: self
                .parent_id
                .as_deref()
                .map(|id| proto_id(id, "--parent-id"))
                .transpose()?,
            by_selectors,
            ..list_entries_request::Filter::default()
        })
    }
}

fn require_create_fields(entry: &types::Entry) -> anyhow::Result<()> {
    if entry.spiffe_id.is_none() {
        bail!("missing --spiffe-id: set the SPIFFE ID the entry issues");
    }
    if entry.parent_id.is_none() {
        bail!("missing --parent-id: set the agent's SPIFFE ID, or --node for a node alias entry");
    }
    if entry.selectors.is_empty() {
        bail!("missing --selector: set at least one, for example --selector unix:uid:1000");
    }
    Ok(())
}

fn read_entry_file(path: &std::path::Path) -> anyhow::Result<Vec<types::Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read --data file {}", path.display()))?;
    let file: EntryFile = serde_json::from_str(&text)
        .with_context(|| format!("invalid --data file {}", path.display()))?;
    Ok(file.entries.into_iter().map(Into::into).collect())
}

fn proto_id(text: &str, flag: &str) -> anyhow::Result<types::Spiffeid> {
    let id = parse_spiffe_id(text).with_context(|| format!("invalid {flag}"))?;
    Ok(to_proto_id(&id))
}

/// Parses `--spiffe-id`, which may be a template with placeholders such as `{unix:uid}`.
fn proto_template(text: &str) -> anyhow::Result<types::Spiffeid> {
    let id = SpiffeIdTemplate::parse(text).context("invalid --spiffe-id")?;
    Ok(id.to_proto())
}

fn proto_selectors(texts: &[String]) -> anyhow::Result<Vec<types::Selector>> {
    texts
        .iter()
        .map(|text| {
            let selector = Selector::parse(text).context("invalid --selector")?;
            Ok(types::Selector {
                r#type: selector.kind().to_owned(),
                value: selector.value().to_owned(),
            })
        })
        .collect()
}

fn ttl(text: &str, flag: &str) -> anyhow::Result<i32> {
    parse_ttl(text)
        .and_then(ttl_seconds)
        .with_context(|| format!("invalid {flag} {text:?}"))
}

/// Accepts `example.com` or SPIRE's `spiffe://example.com` form.
fn federated_trust_domains(texts: &[String]) -> anyhow::Result<Vec<String>> {
    texts
        .iter()
        .map(|text| {
            let name = text.strip_prefix("spiffe://").unwrap_or(text);
            let trust_domain = parse_trust_domain(name).context("invalid --federates-with")?;
            Ok(trust_domain.to_string())
        })
        .collect()
}
