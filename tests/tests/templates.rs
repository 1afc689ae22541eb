//! SPIFFE ID templates: one registration entry whose SPIFFE ID the agent fills from each
//! workload's selectors.

use std::time::Duration;

use anyhow::ensure;
use signet_e2e::python::{self, Script};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Agent, EntrySpec, Server, TRUST_DOMAIN};
use spiffe::JwtSvid;

/// Unprivileged uid that runs the second workload (`nobody` on Debian).
const OTHER_UID: u32 = 65534;

/// Template of the entry that both workloads match.
const UID_TEMPLATE: &str = "spiffe://example.org/unix/uid/{unix:uid}";

/// Audience of the JWT-SVIDs the workloads fetch.
const JWT_AUDIENCE: &str = "spiffe://example.org/db";

/// Short X509-SVID lifetime, so that the agent renews within the test at half of it.
const SHORT_SVID_TTL_SECS: u64 = 10;

/// Bound for a renewal: the SVID lifetime plus room for a slow machine.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(SHORT_SVID_TTL_SECS + 20);

/// A server and an agent with the given entries, all parented to the agent.
struct Setup {
    server: Server,
    agent: Agent,
    entry_ids: Vec<String>,
}

impl Setup {
    /// Starts a server, creates one entry per `(spiffe_id, selector, ttl)` under the agent to
    /// be, then starts the agent.
    async fn start(entries: &[(&str, &str, Option<u64>)]) -> anyhow::Result<Self> {
        let server = Server::start().await?;
        let join_token = server.create_token().await?;
        let agent_id = server.join_token_agent_id(&join_token);
        let mut entry_ids = Vec::new();
        for (spiffe_id, selector, ttl) in entries {
            let mut entry = EntrySpec::new(*spiffe_id, &agent_id).selector(*selector);
            if let Some(ttl) = ttl {
                entry = entry.x509_svid_ttl(*ttl);
            }
            entry_ids.push(server.create_entry(&entry).await?);
        }
        let agent = Agent::start(&server, &join_token).await?;
        Ok(Self {
            server,
            agent,
            entry_ids,
        })
    }

    /// Runs `fetch_x509.py` as `uid` and `gid` until it prints an SVID, and returns its JSON.
    async fn python_svid(&self, uid: u32, gid: u32) -> anyhow::Result<serde_json::Value> {
        self.python_until_success("fetch_x509.py", uid, gid, &[])
            .await
    }

    /// Runs the Python script `name` with the agent's endpoint and `args` as `uid` and `gid`
    /// until it succeeds, and returns its JSON.
    async fn python_until_success(
        &self,
        name: &str,
        uid: u32,
        gid: u32,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        let script = Script::load(name)?;
        let endpoint = self.agent.endpoint();
        let script_args: Vec<&str> = [endpoint.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let condition = format!("{name} succeeding for uid {uid} gid {gid}");
        wait::eventually(&condition, PROPAGATION_TIMEOUT, || async {
            let output = script.run_with_ids(Some((uid, gid)), &script_args).await?;
            let json = python::json_output(&output)?;
            ensure!(output.status.success(), "{name} failed: {json}");
            Ok(json)
        })
        .await
    }
}

fn assert_root() {
    assert!(
        signet_e2e::current_uid() == 0,
        "this test runs a workload as uid {OTHER_UID} and so must run as root (CI does)"
    );
}

#[tokio::test]
async fn template_entry_gives_each_workload_its_own_id() {
    assert_root();
    let setup = Setup::start(&[(UID_TEMPLATE, "unix:gid:0", None)])
        .await
        .unwrap();
    let root_id = "spiffe://example.org/unix/uid/0";
    let other_id = format!("spiffe://example.org/unix/uid/{OTHER_UID}");

    let context =
        workload::fetch_x509_context_with(&setup.agent.endpoint(), root_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    assert_eq!(workload::spiffe_ids(&context), [root_id]);
    workload::check_served_svid(&context, root_id, TRUST_DOMAIN).unwrap();

    // The second workload shares only the gid with the test process.
    let json = setup.python_svid(OTHER_UID, 0).await.unwrap();
    assert_eq!(json["spiffe_id"], other_id.as_str(), "{json}");
    assert_eq!(json["spiffe_ids"], serde_json::json!([other_id]), "{json}");

    let printed = setup
        .server
        .cli_ok(&["entry", "show", "--entry-id", &setup.entry_ids[0]])
        .await
        .unwrap();
    assert!(printed.contains(UID_TEMPLATE), "{printed}");
}

#[tokio::test]
async fn jwt_svids_carry_each_workload_id() {
    assert_root();
    let setup = Setup::start(&[(UID_TEMPLATE, "unix:gid:0", None)])
        .await
        .unwrap();
    let root_id = "spiffe://example.org/unix/uid/0";
    let other_id = format!("spiffe://example.org/unix/uid/{OTHER_UID}");
    // The agent serves JWT-SVIDs once it has the entry, which the X509-SVID shows.
    workload::fetch_x509_context_with(&setup.agent.endpoint(), root_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    let client = workload::connect(&setup.agent.endpoint()).await.unwrap();
    let svid = client.fetch_jwt_svid([JWT_AUDIENCE], None).await.unwrap();
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let verified = JwtSvid::parse_and_validate(svid.token(), &bundles, &[JWT_AUDIENCE]).unwrap();
    assert_eq!(verified.spiffe_id().to_string(), root_id);
    assert_eq!(verified.audience(), [JWT_AUDIENCE]);

    // The second workload shares only the gid with the test process.
    let json = setup
        .python_until_success("fetch_jwt.py", OTHER_UID, 0, &[JWT_AUDIENCE])
        .await
        .unwrap();
    assert_eq!(json["spiffe_id"], other_id.as_str(), "{json}");
    assert_eq!(json["verified_spiffe_id"], other_id.as_str(), "{json}");
    assert_eq!(json["validated_spiffe_id"], other_id.as_str(), "{json}");
}

#[tokio::test]
async fn missing_placeholder_selector_is_denied() {
    assert_root();
    // A process started by a root parent with another uid has no supplementary groups.
    let groups_template = "spiffe://example.org/groups/{unix:supplementary_gid}";
    let uid_selector = format!("unix:uid:{OTHER_UID}");
    let setup = Setup::start(&[
        (groups_template, &uid_selector, None),
        (UID_TEMPLATE, "unix:gid:0", None),
    ])
    .await
    .unwrap();

    // The entry that cannot be filled does not keep the other one from applying.
    let json = setup.python_svid(OTHER_UID, 0).await.unwrap();
    let other_id = format!("spiffe://example.org/unix/uid/{OTHER_UID}");
    assert_eq!(json["spiffe_ids"], serde_json::json!([other_id]), "{json}");

    // With its own gid, the workload matches only the entry it cannot fill.
    let script = Script::load("fetch_x509.py").unwrap();
    let output = script
        .run_with_ids(Some((OTHER_UID, OTHER_UID)), &[&setup.agent.endpoint()])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert!(!output.status.success(), "got an SVID: {json}");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("PERMISSION_DENIED"), "{error}");

    let log = setup.agent.log();
    let warning = log
        .lines()
        .find(|line| line.contains("SPIFFE ID template does not apply"))
        .unwrap_or_else(|| panic!("no template warning in the agent log:\n{log}"));
    assert!(warning.contains(&setup.entry_ids[0]), "{warning}");
    assert!(warning.contains("{unix:supplementary_gid}"), "{warning}");
}

#[tokio::test]
async fn explain_by_uid_leaves_process_placeholders_undetermined() {
    let uid = signet_e2e::current_uid();
    let uid_selector = signet_e2e::current_uid_selector();
    let template = "spiffe://example.org/bin/{unix:sha256}";
    let setup = Setup::start(&[(template, &uid_selector, None)])
        .await
        .unwrap();

    let text = wait::eventually(
        "the agent to sync the entry",
        PROPAGATION_TIMEOUT,
        || async {
            let output = setup.agent.explain(&["--uid", &uid.to_string()]).await?;
            let text = signet_e2e::cli::printed(&output);
            ensure!(text.contains(template), "entry not synced yet: {text}");
            Ok(text)
        },
    )
    .await
    .unwrap();

    assert!(
        text.contains("unknown, matches only if the process has unix:sha256:<value>"),
        "{text}"
    );
    assert!(!text.contains("no match"), "{text}");
}

#[tokio::test]
async fn invalid_templates_are_rejected_by_entry_create() {
    let server = Server::start().await.unwrap();
    let agent_id = server.join_token_agent_id("unused");
    let server_id = format!("spiffe://{TRUST_DOMAIN}/spire/server");
    let cases = [
        (
            "spiffe://example.org/uid-{unix:uid}",
            agent_id.as_str(),
            "exactly one placeholder",
        ),
        (
            "spiffe://example.org/{unix:uid",
            agent_id.as_str(),
            "exactly one placeholder",
        ),
        (
            "spiffe://example.org/{k8s:ns}",
            agent_id.as_str(),
            "unknown placeholder",
        ),
        (
            "spiffe://{unix:uid}.org/web",
            agent_id.as_str(),
            "not in the trust domain",
        ),
        (
            "spiffe://example.org/bin/{unix:path}",
            agent_id.as_str(),
            "paths that contain '/'",
        ),
        (UID_TEMPLATE, server_id.as_str(), "node alias"),
    ];
    for (spiffe_id, parent_id, expected) in cases {
        let entry = EntrySpec::new(spiffe_id, parent_id).selector("unix:gid:0");
        let output = server.cli(&entry.create_args()).await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{spiffe_id} accepted");
        assert!(stderr.contains(expected), "{spiffe_id}: {stderr}");
        assert!(stderr.contains(spiffe_id), "{spiffe_id}: {stderr}");
    }
    assert_eq!(server.entry_count().await.unwrap(), 0);
}

#[tokio::test]
async fn template_svid_is_renewed() {
    let uid_selector = signet_e2e::current_uid_selector();
    let setup = Setup::start(&[(UID_TEMPLATE, &uid_selector, Some(SHORT_SVID_TTL_SECS))])
        .await
        .unwrap();
    let own_id = format!(
        "spiffe://example.org/unix/uid/{}",
        signet_e2e::current_uid()
    );
    let endpoint = setup.agent.endpoint();

    let client = workload::connect(&endpoint).await.unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let first = workload::next_context_where(&mut stream, PROPAGATION_TIMEOUT, |context| {
        workload::find_svid(context, &own_id).is_some()
    })
    .await
    .unwrap();
    let first = workload::check_served_svid(&first, &own_id, TRUST_DOMAIN).unwrap();

    let renewed = workload::next_context_where(&mut stream, RENEWAL_TIMEOUT, |context| {
        workload::check_served_svid(context, &own_id, TRUST_DOMAIN)
            .is_ok_and(|facts| facts.serial != first.serial)
    })
    .await
    .unwrap();
    let second = workload::check_served_svid(&renewed, &own_id, TRUST_DOMAIN).unwrap();
    assert!(
        second.not_after > first.not_after,
        "the renewed X509-SVID does not outlive the first: {first:?} then {second:?}"
    );
    assert!(
        signet_e2e::unix_now() < first.not_after,
        "the X509-SVID was replaced only after it expired at {}",
        first.not_after
    );
}
