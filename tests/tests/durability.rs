//! SIGKILL in the middle of writes: a killed server restarts with every acknowledged registration
//! entry complete and the same CA, and a killed agent resumes from its data directory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use signet_e2e::files;
use signet_e2e::postgres::TestDatabase;
use signet_e2e::spire_api;
use signet_e2e::spire_api::bundle::v1::GetBundleRequest;
use signet_e2e::spire_api::bundle::v1::bundle_client::BundleClient;
use signet_e2e::spire_api::entry::v1::entry_client::EntryClient;
use signet_e2e::spire_api::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_e2e::spire_api::types::{Entry, Selector, Spiffeid};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Deployment, EntrySpec, Server, ServerOptions, TRUST_DOMAIN};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Entries acknowledged before each SIGKILL of the server. Different counts, with several writers
/// in flight, land the kills at different points of the write and signing paths.
const KILL_AFTER_ACKNOWLEDGED: [usize; 4] = [50, 90, 140, 200];

/// Writers that create entries at the same time, so that some create call is in flight whenever
/// the server is killed.
const WRITERS: usize = 4;

/// X509-SVID TTL of the workload entry and agent SVID TTL, in seconds. The agent then signs and
/// renews every few seconds, so the kills hit signing and the agent's own writes.
const SHORT_SVID_TTL_SECS: u64 = 10;

/// Bound for the writers to reach the next kill point, and for them to stop after the kill.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound for the agent to write its data directory. The agent renews at about half of its SVID
/// lifetime, so one lifetime plus a margin for a slow machine is enough.
const AGENT_WRITE_TIMEOUT: Duration = Duration::from_secs(SHORT_SVID_TTL_SECS + 20);

/// Times the agent is killed right after it wrote its data directory.
const AGENT_KILLS: usize = 3;

/// gRPC status code that per-item `Status` messages carry on success.
const CODE_OK: i32 = 0;

#[tokio::test]
async fn killed_sqlite_server_keeps_acknowledged_entries() {
    let deployment = start_busy_deployment(ServerOptions::default())
        .await
        .unwrap();

    kill_during_writes(deployment, &KILL_AFTER_ACKNOWLEDGED)
        .await
        .unwrap();
}

#[tokio::test]
async fn killed_postgres_server_keeps_acknowledged_entries() {
    let database = TestDatabase::create().await.unwrap();
    let options = ServerOptions {
        database: Some(database.url()),
        ..ServerOptions::default()
    };
    let deployment = start_busy_deployment(options).await.unwrap();

    kill_during_writes(deployment, &KILL_AFTER_ACKNOWLEDGED[..1])
        .await
        .unwrap();

    database.remove().await.unwrap();
}

#[tokio::test]
async fn killed_agent_resumes_from_data_dir() {
    let mut deployment = start_busy_deployment(ServerOptions::default())
        .await
        .unwrap();
    let data_dir = deployment.agent.data_dir();

    for _ in 0..AGENT_KILLS {
        let before = snapshot(&data_dir).unwrap();
        wait::eventually(
            "the agent to write its data directory",
            AGENT_WRITE_TIMEOUT,
            || {
                let (data_dir, before) = (&data_dir, &before);
                async move {
                    ensure!(snapshot(data_dir)? != *before, "unchanged");
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
        deployment.agent.kill().await.unwrap();

        let restarted = deployment.agent.restart().await;
        check_private_key_files(&data_dir).unwrap();
        if let Err(error) = restarted {
            // A kill between two file writes may leave files that do not belong together, as in
            // `agent_rejects_key_of_other_renewal`. The agent cannot resume then.
            assert_unusable_state_named(&error, &data_dir);
            return;
        }

        let context = deployment.fetch_x509_context().await.unwrap();
        workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN).unwrap();
    }

    let log = deployment.agent.log();
    let resumed = log.matches("Resuming with the stored agent SVID").count();
    assert_eq!(resumed, AGENT_KILLS, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn agent_rejects_key_of_other_renewal() {
    let mut deployment = start_busy_deployment(ServerOptions::default())
        .await
        .unwrap();
    let data_dir = deployment.agent.data_dir();
    let key_files = files::key_files(&data_dir);
    let [key_path] = key_files.as_slice() else {
        panic!(
            "one key file expected in {}: {key_files:?}",
            data_dir.display()
        );
    };
    let old_key = fs::read(key_path).unwrap();
    wait::eventually("the agent to renew its SVID", AGENT_WRITE_TIMEOUT, || {
        let (key_path, old_key) = (key_path, &old_key);
        async move {
            ensure!(fs::read(key_path)? != *old_key, "same key");
            Ok(())
        }
    })
    .await
    .unwrap();
    deployment.agent.kill().await.unwrap();

    // A key and a chain from different renewals, as a kill between their two writes leaves.
    fs::write(key_path, &old_key).unwrap();
    let error = deployment.agent.restart().await.unwrap_err();

    assert_unusable_state_named(&error, &data_dir);
    check_private_key_files(&data_dir).unwrap();
}

/// Starts a deployment whose agent renews its own SVID and the workload's every few seconds.
async fn start_busy_deployment(mut options: ServerOptions) -> anyhow::Result<Deployment> {
    options.extra_args.extend([
        "--agent-svid-ttl".to_owned(),
        format!("{SHORT_SVID_TTL_SECS}s"),
    ]);
    let deployment = Deployment::start_with(options, Some(SHORT_SVID_TTL_SECS)).await?;
    deployment.fetch_x509_context().await?;
    Ok(deployment)
}

/// Kills the server once for each count in `kill_points`, after that many more entries were
/// acknowledged, and checks the entries and the CA after each restart. The agent of `deployment`
/// signs an X509-SVID for every new entry meanwhile.
async fn kill_during_writes(
    mut deployment: Deployment,
    kill_points: &[usize],
) -> anyhow::Result<()> {
    let ledger = Arc::new(watch::Sender::new(Ledger::default()));
    let next_number = Arc::new(AtomicU32::new(0));
    let parent_id = spiffe_id_parts(&deployment.agent.spiffe_id());
    let roots = bundle_roots(&deployment.server).await?;

    for &count in kill_points {
        let target = ledger.borrow().acknowledged.len() + count;
        let mut writers = JoinSet::new();
        for _ in 0..WRITERS {
            writers.spawn(write_entries(
                deployment.server.admin_socket(),
                parent_id.clone(),
                Arc::clone(&ledger),
                Arc::clone(&next_number),
            ));
        }
        wait_for_acknowledged(&ledger, target, &mut writers).await?;

        deployment.server.kill().await?;
        stop_writers(writers).await?;
        deployment.server.restart().await?;

        let listed = list_entries(&deployment.server).await?;
        check_entries(&listed, &ledger.borrow(), &deployment.workload_id)?;
        let roots_after = bundle_roots(&deployment.server).await?;
        ensure!(
            roots_after == roots,
            "the bundle's X.509 authorities changed across the kill"
        );
        check_private_key_files(&deployment.server.data_dir())?;
    }

    // Only a signature made after the last restart can serve an entry created now.
    let new_id = deployment.server.spiffe_id("/durability/after-kill");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await?;
    let context = workload::fetch_x509_context_with(
        &deployment.agent.endpoint(),
        &new_id,
        PROPAGATION_TIMEOUT,
    )
    .await?;
    workload::check_served_svid(&context, &new_id, TRUST_DOMAIN)?;
    Ok(())
}

/// Entries the writers sent, and the ones the server acknowledged.
#[derive(Debug, Default)]
struct Ledger {
    /// Every entry sent, by SPIFFE ID, whatever the outcome.
    attempted: HashMap<String, Entry>,
    /// Entries whose create call returned OK, by the entry ID the server gave.
    acknowledged: HashMap<String, Entry>,
}

/// Creates numbered entries one per call until a call fails, and returns that failure.
async fn write_entries(
    admin_socket: PathBuf,
    parent_id: Spiffeid,
    ledger: Arc<watch::Sender<Ledger>>,
    next_number: Arc<AtomicU32>,
) -> anyhow::Error {
    let mut client = match spire_api::connect_admin(&admin_socket).await {
        Ok(channel) => EntryClient::new(channel),
        Err(error) => return error,
    };
    loop {
        let entry = numbered_entry(next_number.fetch_add(1, Ordering::Relaxed), &parent_id);
        ledger.send_modify(|ledger| {
            ledger
                .attempted
                .insert(spiffe_id_text(entry.spiffe_id.as_ref()), entry.clone());
        });
        match create_entry(&mut client, entry.clone()).await {
            Ok(id) => ledger.send_modify(|ledger| {
                ledger.acknowledged.insert(id, entry);
            }),
            Err(error) => return error,
        }
    }
}

/// Creates `entry` and returns its ID, or fails unless the server reports success.
async fn create_entry(client: &mut EntryClient<Channel>, entry: Entry) -> anyhow::Result<String> {
    let response = client
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![entry],
            output_mask: None,
        })
        .await?
        .into_inner();
    let [result] = response.results.as_slice() else {
        bail!("one result per entry expected: {response:?}");
    };
    let status = result.status.clone().unwrap_or_default();
    ensure!(status.code == CODE_OK, "entry not created: {status:?}");
    let id = result.entry.as_ref().map(|entry| entry.id.clone());
    id.filter(|id| !id.is_empty())
        .with_context(|| format!("the created entry has no ID: {result:?}"))
}

/// Waits until `target` entries are acknowledged. Fails when a writer stops first, because
/// nothing was killed yet.
async fn wait_for_acknowledged(
    ledger: &watch::Sender<Ledger>,
    target: usize,
    writers: &mut JoinSet<anyhow::Error>,
) -> anyhow::Result<()> {
    let mut updates = ledger.subscribe();
    let reached = async {
        tokio::select! {
            reached = updates.wait_for(|ledger| ledger.acknowledged.len() >= target) => {
                reached.map(drop).context("the ledger closed")
            }
            Some(stopped) = writers.join_next() => {
                let error = stopped.context("a writer panicked")?;
                Err(error.context("a writer stopped before the server was killed"))
            }
        }
    };
    tokio::time::timeout(WRITE_TIMEOUT, reached)
        .await
        .with_context(|| format!("fewer than {target} entries acknowledged in {WRITE_TIMEOUT:?}"))?
}

/// Waits for every writer to see its connection fail after the kill.
async fn stop_writers(mut writers: JoinSet<anyhow::Error>) -> anyhow::Result<()> {
    let stopped = async {
        while let Some(stopped) = writers.join_next().await {
            stopped.context("a writer panicked")?;
        }
        Ok(())
    };
    tokio::time::timeout(WRITE_TIMEOUT, stopped)
        .await
        .context("writers still running after the kill")?
}

/// Checks that every acknowledged entry is listed with all its fields, and that every listed
/// entry is complete and is the workload entry or one that a writer sent.
fn check_entries(listed: &[Entry], ledger: &Ledger, workload_id: &str) -> anyhow::Result<()> {
    let by_id: HashMap<&str, &Entry> = listed
        .iter()
        .map(|entry| (entry.id.as_str(), entry))
        .collect();

    for (id, sent) in &ledger.acknowledged {
        let stored = by_id
            .get(id.as_str())
            .with_context(|| format!("acknowledged entry {id} is missing: {sent:?}"))?;
        ensure!(
            content(stored) == content(sent),
            "acknowledged entry {id} changed:\nsent   {sent:?}\nstored {stored:?}"
        );
    }
    for stored in listed {
        let spiffe_id = spiffe_id_text(stored.spiffe_id.as_ref());
        if spiffe_id == workload_id {
            continue;
        }
        let sent = ledger
            .attempted
            .get(&spiffe_id)
            .with_context(|| format!("listed entry was never sent: {stored:?}"))?;
        ensure!(
            content(stored) == content(sent),
            "entry half-written:\nsent   {sent:?}\nstored {stored:?}"
        );
    }
    Ok(())
}

async fn list_entries(server: &Server) -> anyhow::Result<Vec<Entry>> {
    let channel = spire_api::connect_admin(&server.admin_socket()).await?;
    // Page size 0 lists every entry in one response.
    let response = EntryClient::new(channel)
        .list_entries(ListEntriesRequest::default())
        .await?
        .into_inner();
    ensure!(
        response.next_page_token.is_empty(),
        "the listing has more pages"
    );
    Ok(response.entries)
}

/// Returns the DER X.509 authorities of the server's trust bundle.
async fn bundle_roots(server: &Server) -> anyhow::Result<Vec<Vec<u8>>> {
    let channel = spire_api::connect_admin(&server.admin_socket()).await?;
    let bundle = BundleClient::new(channel)
        .get_bundle(GetBundleRequest::default())
        .await?
        .into_inner();
    ensure!(!bundle.x509_authorities.is_empty(), "empty bundle");
    Ok(bundle
        .x509_authorities
        .into_iter()
        .map(|authority| authority.asn1)
        .collect())
}

/// Returns entry number `number`, with every field set to a value of its own, so that a
/// partly stored entry differs from it.
fn numbered_entry(number: u32, parent_id: &Spiffeid) -> Entry {
    Entry {
        spiffe_id: Some(Spiffeid {
            trust_domain: TRUST_DOMAIN.to_owned(),
            path: format!("/durability/entry-{number}"),
        }),
        parent_id: Some(parent_id.clone()),
        // No process of the test runs with these IDs, so the SVIDs stay in the agent's cache.
        selectors: vec![
            unix_selector(&format!("gid:{}", 200_000 + number)),
            unix_selector(&format!("uid:{}", 100_000 + number)),
        ],
        x509_svid_ttl: 600 + i32::try_from(number % 600).unwrap_or_default(),
        jwt_svid_ttl: 300 + i32::try_from(number % 300).unwrap_or_default(),
        dns_names: vec![format!("entry-{number}.example.org")],
        hint: format!("hint-{number}"),
        ..Entry::default()
    }
}

/// Returns `entry` without the fields the server assigns (ID, revision, creation time) and with
/// sorted selectors, for comparison with the entry a writer sent.
fn content(entry: &Entry) -> Entry {
    let mut content = Entry {
        id: String::new(),
        revision_number: 0,
        created_at: 0,
        ..entry.clone()
    };
    content
        .selectors
        .sort_by(|a, b| (&a.r#type, &a.value).cmp(&(&b.r#type, &b.value)));
    content
}

fn unix_selector(value: &str) -> Selector {
    Selector {
        r#type: "unix".to_owned(),
        value: value.to_owned(),
    }
}

/// Splits `spiffe://<trust domain><path>` into the API's parts.
fn spiffe_id_parts(spiffe_id: &str) -> Spiffeid {
    let rest = spiffe_id.strip_prefix("spiffe://").unwrap_or(spiffe_id);
    let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Spiffeid {
        trust_domain: trust_domain.to_owned(),
        path: path.to_owned(),
    }
}

fn spiffe_id_text(spiffe_id: Option<&Spiffeid>) -> String {
    spiffe_id.map_or_else(String::new, |id| {
        format!("spiffe://{}{}", id.trust_domain, id.path)
    })
}

/// Returns the name and contents of every file in `dir`, temporary files included.
fn snapshot(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        // A temporary file may be renamed between the listing and the read.
        if let Ok(contents) = fs::read(&path) {
            files.insert(path.to_string_lossy().into_owned(), contents);
        }
    }
    Ok(files)
}

/// Checks that a failed agent start names the unusable state in `data_dir` instead of panicking.
fn assert_unusable_state_named(error: &anyhow::Error, data_dir: &Path) {
    let message = format!("{error:#}");
    assert!(
        message.contains("unusable agent state in"),
        "restart failed for another reason:\n{message}"
    );
    assert!(
        message.contains(&*data_dir.to_string_lossy()),
        "the message does not name a file in {}:\n{message}",
        data_dir.display()
    );
    assert!(!message.contains("panicked"), "{message}");
}

/// Fails unless `dir` contains a key file and every key file has mode 0600.
fn check_private_key_files(dir: &Path) -> anyhow::Result<()> {
    let keys = files::key_files(dir);
    ensure!(!keys.is_empty(), "no key file in {}", dir.display());
    for key in keys {
        let mode = files::mode(&key)?;
        ensure!(mode == 0o600, "{} has mode {mode:o}", key.display());
    }
    Ok(())
}
