//! CA and JWT key rotation: the X.509 CA moves through prepared, active and old while two
//! workloads keep opening mutual TLS connections, `localauthority` taints and revokes the old CA,
//! and a rotated JWT signing key leaves earlier tokens valid.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, ensure};
use futures::StreamExt;
use signet_e2e::local_authority::{self, Authority, AuthorityKind, AuthoritySlots, LocalAuthority};
use signet_e2e::mtls::{self, MtlsClient, MtlsServer, Traffic};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Deployment, EntrySpec, ServerOptions, TRUST_DOMAIN};
use spiffe::{JwtSvid, TrustDomain, X509Context, X509Source};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// CA lifetime. The next CA is prepared at half of it and activated at five sixths, so the
/// first rotation comes within a minute and each later one about 30 s after the previous. An old
/// CA stays in the bundle for about 10 s, which leaves room to taint and revoke it before it
/// expires.
const CA_TTL: Duration = Duration::from_secs(60);

/// Automatic rotations the X.509 test waits for.
const ROTATIONS: usize = 3;

/// Bound for [`ROTATIONS`] rotations, which the schedule completes within two [`CA_TTL`]s.
const ROTATIONS_TIMEOUT: Duration = Duration::from_secs(3 * CA_TTL.as_secs());

/// Shortest time a rotated root must be in the bundle before the first SVID it signed is
/// served. The schedule gives a third of [`CA_TTL`] (prepared at 1/2, active at 5/6).
const MIN_ROOT_LEAD: Duration = Duration::from_secs(CA_TTL.as_secs() / 6);

/// X509-SVID TTL of both workloads. The server cuts SVIDs signed near their CA's expiry shorter.
const SVID_TTL_SECS: u64 = 8;

/// Bound for both workloads, and then the agent itself, to replace SVIDs of a tainted CA: a
/// quarter of the SVID TTL. Agents renew at half the TTL anyway, so only a bound well below that
/// can tell a replacement caused by the taint from a planned renewal.
const TAINT_REPLACEMENT_TIMEOUT: Duration = Duration::from_secs(SVID_TTL_SECS / 4);

/// Time between two client connections.
const HANDSHAKE_INTERVAL: Duration = Duration::from_millis(150);

/// Minimum number of exchanges the X.509 test accepts: about a third of what
/// [`HANDSHAKE_INTERVAL`] gives over the rotations, so a client that stalls for long fails the
/// test.
const MIN_EXCHANGES: usize = 250;

/// Path of the SPIFFE ID the mTLS client workload gets.
const CLIENT_PATH: &str = "/workload/client";

/// Audience of the JWT-SVID fetched before the JWT key rotation.
const AUDIENCE: &str = "spiffe://example.org/db";

/// Audience of the JWT-SVID fetched after it. The agent caches a token per audience until its
/// half life, so only a new audience makes the server sign again.
const OTHER_AUDIENCE: &str = "spiffe://example.org/cache";

#[tokio::test]
async fn x509_ca_rotation_keeps_mtls_traffic_working() {
    // A server workload (the deployment's entry) and a client workload, both for this process.
    let options = ServerOptions {
        ca_ttl: Some(CA_TTL),
        ..ServerOptions::default()
    };
    let deployment = Deployment::start_with(options, Some(SVID_TTL_SECS))
        .await
        .unwrap();
    let server_id = deployment.workload_id.clone();
    let client_id = deployment.server.spiffe_id(CLIENT_PATH);
    let entry = EntrySpec::new(&client_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector())
        .x509_svid_ttl(SVID_TTL_SECS);
    deployment.server.create_entry(&entry).await.unwrap();
    let endpoint = deployment.agent.endpoint();
    for spiffe_id in [&server_id, &client_id] {
        workload::fetch_x509_context_with(&endpoint, spiffe_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    }

    // Record the stream from here on, and start the traffic.
    let recorder = StreamRecorder::start(&endpoint).await.unwrap();
    let server_source = mtls::x509_source(&endpoint, &server_id).await.unwrap();
    let client_source = mtls::x509_source(&endpoint, &client_id).await.unwrap();
    let tls_server = MtlsServer::start(server_source.clone(), &client_id)
        .await
        .unwrap();
    check_peer_authorization(&tls_server, &server_source, &client_source, &server_id)
        .await
        .unwrap();
    let client = MtlsClient::new(client_source.clone(), &server_id).unwrap();
    let traffic = Traffic::start(client, tls_server.address(), HANDSHAKE_INTERVAL);

    // Automatic rotations.
    let x509 = LocalAuthority::new(&deployment.server, AuthorityKind::X509);
    let jwt = LocalAuthority::new(&deployment.server, AuthorityKind::Jwt);
    let first_jwt_key = jwt.show().await.unwrap().active;
    let rotations = wait_for_rotations(x509, ROTATIONS).await.unwrap();
    for rotation in &rotations {
        rotation.check_schedule().unwrap();
    }
    let tainted = rotations
        .last()
        .and_then(|rotation| rotation.after.old.clone())
        .expect("the last rotation left an old CA");

    // Taint and revoke the old CA. The outcome is checked last, so that a failure here does
    // not hide what the traffic and the stream showed.
    let sources = [(&server_id, &server_source), (&client_id, &client_source)];
    let removal = taint_and_revoke(x509, &tainted, &sources, &recorder).await;

    // The active CA cannot be revoked.
    let active = x509.show().await.unwrap().active;
    let rejected = x509.run("revoke", &active.authority_id).await.unwrap();
    let printed = signet_e2e::cli::printed(&rejected);
    assert!(
        !rejected.status.success(),
        "revoking the active CA succeeded: {printed}"
    );
    assert!(
        printed.contains(&active.authority_id),
        "the rejection does not name the active CA {}: {printed}",
        active.authority_id
    );

    // Totals of the whole run.
    let report = traffic.stop().await.unwrap();
    let log = recorder.stop();
    println!(
        "{} exchanges, {} X.509 context messages",
        report.exchanges, log.messages
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} exchanges failed: {:?}\nserver side: {:?}\nwarnings and errors of the server \
         and the agent:\n{}",
        report.failures.len(),
        report.failures.len() + report.exchanges,
        report.failures,
        tls_server.failures(),
        warnings_and_errors(&deployment.logs())
    );
    assert!(
        report.exchanges >= MIN_EXCHANGES,
        "only {} exchanges, expected at least {MIN_EXCHANGES}",
        report.exchanges
    );
    // The CA activated last may not have signed a server SVID before the traffic stopped.
    assert!(
        report.server_authority_ids.len() >= ROTATIONS,
        "the server's leaves were signed by only {:?} across {ROTATIONS} rotations",
        report.server_authority_ids
    );
    assert_eq!(log.error, None, "the X.509 context stream failed");
    let early_svids = log.svids_served_before_their_root();
    assert!(
        early_svids.is_empty(),
        "SVIDs served too soon after their root: {early_svids:#?}"
    );

    let last_jwt_key = jwt.show().await.unwrap().active;
    assert_ne!(
        last_jwt_key.authority_id, first_jwt_key.authority_id,
        "the JWT signing key did not rotate with the CA"
    );
    let replaced_after = removal.unwrap();
    println!("SVIDs of the tainted CA replaced {replaced_after:?} after the taint");
}

#[tokio::test]
async fn jwt_key_rotation_keeps_earlier_tokens_valid() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let jwt = LocalAuthority::new(&deployment.server, AuthorityKind::Jwt);
    let first_key = jwt.show().await.unwrap().active;
    let earlier = client.fetch_jwt_svid([AUDIENCE], None).await.unwrap();
    assert_eq!(earlier.key_id(), first_key.authority_id);

    // Prepare, wait until workloads can verify with the new key, then activate it.
    jwt.prepare().await.unwrap();
    let prepared = jwt
        .show()
        .await
        .unwrap()
        .prepared
        .expect("prepare filled the prepared slot");
    let kids = [
        first_key.authority_id.as_str(),
        prepared.authority_id.as_str(),
    ];
    wait_for_jwt_bundle_with(&client, &kids).await.unwrap();
    jwt.run_ok("activate", &prepared.authority_id)
        .await
        .unwrap();
    let slots = jwt.show().await.unwrap();
    assert_eq!(slots.active.authority_id, prepared.authority_id);
    assert_eq!(slots.old, Some(first_key.clone()));

    // New tokens carry the new kid, and the earlier token still validates.
    let later = client.fetch_jwt_svid([OTHER_AUDIENCE], None).await.unwrap();
    assert_eq!(later.key_id(), prepared.authority_id);
    let bundles = wait_for_jwt_bundle_with(&client, &kids).await.unwrap();
    JwtSvid::parse_and_validate(earlier.token(), &bundles, &[AUDIENCE]).unwrap();
    JwtSvid::parse_and_validate(later.token(), &bundles, &[OTHER_AUDIENCE]).unwrap();
    let validated = client
        .validate_jwt_token(AUDIENCE, earlier.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), deployment.workload_id);
    let output = deployment
        .agent
        .cli(&[
            "api",
            "validate",
            "jwt",
            "--audience",
            AUDIENCE,
            "--svid",
            earlier.token(),
        ])
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the agent CLI rejects a token of the old key: {}",
        signet_e2e::cli::printed(&output)
    );
}

/// One change of the active CA, as `x509 show` polling saw it.
#[derive(Clone, Debug)]
struct Rotation {
    /// Slots at the last poll before the change.
    before: AuthoritySlots,
    /// Slots at the first poll after it.
    after: AuthoritySlots,
}

impl Rotation {
    /// Checks that the prepared CA became active and the active one became old.
    fn check_schedule(&self) -> anyhow::Result<()> {
        let prepared = self
            .before
            .prepared
            .as_ref()
            .with_context(|| format!("no CA was prepared before the rotation {self:#?}"))?;
        ensure!(
            self.after.active.authority_id == prepared.authority_id,
            "the new active CA is not the prepared one: {self:#?}"
        );
        ensure!(
            self.after.old.as_ref() == Some(&self.before.active),
            "the previous active CA did not become old: {self:#?}"
        );
        Ok(())
    }
}

/// Polls `x509 show` until the active CA changed `count` times and returns each change.
async fn wait_for_rotations(
    x509: LocalAuthority<'_>,
    count: usize,
) -> anyhow::Result<Vec<Rotation>> {
    let last = RefCell::new(x509.show().await?);
    let rotations = RefCell::new(Vec::new());
    let (last, rotations_ref) = (&last, &rotations);
    wait::eventually(
        &format!("{count} CA rotations"),
        ROTATIONS_TIMEOUT,
        || async move {
            let slots = x509.show().await?;
            let before = last.replace(slots.clone());
            let mut rotations = rotations_ref.borrow_mut();
            if slots.active != before.active {
                rotations.push(Rotation {
                    before,
                    after: slots,
                });
            }
            ensure!(
                rotations.len() >= count,
                "{} rotations so far",
                rotations.len()
            );
            Ok(())
        },
    )
    .await?;
    Ok(rotations.into_inner())
}

/// Taints the old CA `tainted`, waits until both workloads dropped its SVIDs, revokes it and
/// waits until it left the bundle. Returns how long the workloads took.
///
/// The server rejects the revocation while an agent still has an SVID of the tainted CA, its
/// own agent SVID included, so revoking is retried within the same bound.
async fn taint_and_revoke(
    x509: LocalAuthority<'_>,
    tainted: &Authority,
    sources: &[(&String, &X509Source)],
    recorder: &StreamRecorder,
) -> anyhow::Result<Duration> {
    let authority_id = tainted.authority_id.as_str();
    x509.run_ok("taint", authority_id).await?;
    let tainted_at = Instant::now();
    wait::eventually(
        "both workloads to hold X509-SVIDs not signed by the tainted CA",
        TAINT_REPLACEMENT_TIMEOUT,
        || hold_no_svid_of(sources, authority_id),
    )
    .await?;
    let replaced_after = tainted_at.elapsed();

    wait::eventually(
        "the server to accept revoking the tainted CA",
        TAINT_REPLACEMENT_TIMEOUT,
        || x509.run_ok("revoke", authority_id),
    )
    .await?;
    wait::eventually(
        "the revoked CA to leave the bundle",
        PROPAGATION_TIMEOUT,
        || {
            let served = recorder.latest_bundle();
            async move {
                ensure!(!served.contains(authority_id), "still in {served:?}");
                Ok(())
            }
        },
    )
    .await?;
    ensure!(
        signet_e2e::unix_now() < tainted.expires_at,
        "the revoked CA {authority_id} left the bundle only after it expired at {}",
        tainted.expires_at
    );
    Ok(replaced_after)
}

/// Succeeds when none of the `sources` has an X509-SVID signed by `authority_id`.
async fn hold_no_svid_of(
    sources: &[(&String, &X509Source)],
    authority_id: &str,
) -> anyhow::Result<()> {
    for (spiffe_id, source) in sources {
        let svid = source.svid()?;
        ensure!(
            mtls::svid_authority_id(&svid)? != authority_id,
            "{spiffe_id} still holds an X509-SVID signed by {authority_id}"
        );
    }
    Ok(())
}

/// Checks that each side rejects a peer with another SPIFFE ID than the one it accepts.
async fn check_peer_authorization(
    tls_server: &MtlsServer,
    server_source: &X509Source,
    client_source: &X509Source,
    server_id: &str,
) -> anyhow::Result<()> {
    let impostor = MtlsClient::new(server_source.clone(), server_id)?;
    let impostor_result = impostor.exchange(tls_server.address()).await;
    ensure!(
        impostor_result.is_err(),
        "the server accepted a client presenting its own SPIFFE ID {server_id}"
    );

    let client_id = client_source.svid()?.spiffe_id().to_string();
    let misdirected = MtlsClient::new(client_source.clone(), &client_id)?;
    let misdirected_result = misdirected.exchange(tls_server.address()).await;
    ensure!(
        misdirected_result.is_err(),
        "a client that accepts only {client_id} accepted the server {server_id}"
    );
    Ok(())
}

/// Returns the lines of `logs` at warn or error level, so that a failed exchange can be matched
/// with what the server and the agent reported at the time.
fn warnings_and_errors(logs: &str) -> String {
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    lines.join("\n")
}

/// Waits until FetchJWTBundles contains every key in `kids` and returns the bundles.
async fn wait_for_jwt_bundle_with(
    client: &spiffe::WorkloadApiClient,
    kids: &[&str],
) -> anyhow::Result<spiffe::JwtBundleSet> {
    let trust_domain = TrustDomain::new(TRUST_DOMAIN)?;
    wait::eventually(
        &format!("the JWT bundle to hold the keys {kids:?}"),
        PROPAGATION_TIMEOUT,
        || async {
            let bundles = client.fetch_jwt_bundles().await?;
            let bundle = bundles
                .get(&trust_domain)
                .context("no JWT bundle for the own trust domain")?;
            for kid in kids {
                ensure!(
                    bundle.find_jwt_authority(kid).is_some(),
                    "the JWT bundle lacks {kid}"
                );
            }
            Ok(bundles)
        },
    )
    .await
}

/// Follows FetchX509SVID with rust-spiffe and records when each root and SVID first arrived.
#[derive(Debug)]
struct StreamRecorder {
    log: Arc<Mutex<StreamLog>>,
    task: JoinHandle<()>,
}

impl StreamRecorder {
    /// Opens the stream at `endpoint` and records it in the background.
    async fn start(endpoint: &str) -> anyhow::Result<Self> {
        let client = workload::connect(endpoint).await?;
        let mut stream = client.stream_x509_contexts().await?;
        let log = Arc::new(Mutex::new(StreamLog::default()));
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            let error = loop {
                let Some(message) = stream.next().await else {
                    break "the stream ended".to_owned();
                };
                let recorded = message
                    .map_err(anyhow::Error::from)
                    .and_then(|context| lock(&task_log).record(&context));
                if let Err(error) = recorded {
                    break format!("{error:#}");
                }
            };
            lock(&task_log).error = Some(error);
        });
        Ok(Self { log, task })
    }

    /// Returns the authority IDs of the bundle in the latest message.
    fn latest_bundle(&self) -> BTreeSet<String> {
        lock(&self.log).latest_bundle.clone()
    }

    /// Stops recording and returns the log.
    fn stop(self) -> StreamLog {
        self.task.abort();
        std::mem::take(&mut *lock(&self.log))
    }
}

/// What the X.509 context stream served, in arrival order.
#[derive(Debug, Default)]
struct StreamLog {
    /// Number of messages so far.
    messages: usize,
    /// First arrival of each root, by authority ID.
    roots: BTreeMap<String, Arrival>,
    /// Every distinct SVID, by leaf DER.
    svids: BTreeMap<Vec<u8>, ServedSvid>,
    /// Authority IDs of the bundle in the latest message.
    latest_bundle: BTreeSet<String>,
    /// Why the stream stopped, if it did.
    error: Option<String>,
}

impl StreamLog {
    fn record(&mut self, context: &X509Context) -> anyhow::Result<()> {
        let arrival = Arrival {
            message: self.messages,
            at: Instant::now(),
        };
        self.messages += 1;

        let bundle = workload::bundle_der(context, TRUST_DOMAIN)?;
        self.latest_bundle = bundle
            .iter()
            .map(|der| local_authority::subject_key_id(der))
            .collect::<anyhow::Result<_>>()?;
        for authority_id in &self.latest_bundle {
            self.roots.entry(authority_id.clone()).or_insert(arrival);
        }

        for svid in context.svids() {
            let served = ServedSvid {
                spiffe_id: svid.spiffe_id().to_string(),
                authority_id: mtls::svid_authority_id(svid)?,
                arrival,
            };
            self.svids
                .entry(svid.leaf().as_bytes().to_vec())
                .or_insert(served);
        }
        Ok(())
    }

    /// Returns each SVID whose root never arrived, or arrived by rotation less than
    /// [`MIN_ROOT_LEAD`] before the SVID.
    fn svids_served_before_their_root(&self) -> Vec<String> {
        let mut early = Vec::new();
        for svid in self.svids.values() {
            let Some(root) = self.roots.get(&svid.authority_id) else {
                early.push(format!("{svid}: the root never arrived"));
                continue;
            };
            // Roots of the first message came with nothing before them to precede.
            if root.message == 0 {
                continue;
            }
            let lead = svid.arrival.at.saturating_duration_since(root.at);
            if root.message >= svid.arrival.message || lead < MIN_ROOT_LEAD {
                early.push(format!(
                    "{svid}: the root arrived in message {}, {lead:?} before",
                    root.message
                ));
            }
        }
        early
    }
}

/// When a root or SVID first arrived on the stream.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    /// Index of the message, from 0.
    message: usize,
    /// Time of arrival.
    at: Instant,
}

/// An SVID as it first arrived on the stream.
#[derive(Clone, Debug)]
struct ServedSvid {
    /// The SVID's SPIFFE ID.
    spiffe_id: String,
    /// Authority ID of the CA that signed it.
    authority_id: String,
    /// When it first arrived.
    arrival: Arrival,
}

impl fmt::Display for ServedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "X509-SVID for {} signed by {} in message {}",
            self.spiffe_id, self.authority_id, self.arrival.message
        )
    }
}

fn lock(log: &Mutex<StreamLog>) -> MutexGuard<'_, StreamLog> {
    // The recorder only replaces whole fields, so a panic leaves a usable log.
    log.lock().unwrap_or_else(PoisonError::into_inner)
}
