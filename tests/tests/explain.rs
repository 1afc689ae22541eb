//! `signet-agent explain` and `signet-server entry explain` on real processes: matches, near
//! misses, entries the agent has not synced, authorization through parents and node aliases,
//! bad input, and the agent's log line for a denied caller.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use signet_e2e::cli::{field, printed};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::workload;
use signet_e2e::{Agent, Deployment, EntrySpec, Server, current_uid, current_uid_selector};

/// Exit code of both explain commands when they fail to explain.
const EXPLAIN_FAILED: i32 = 2;
/// Exit code of both binaries for a usage error (`EX_USAGE`).
const USAGE_ERROR: i32 = 64;
/// Workload X509-SVID lifetime in the expiry test, short so that it expires during the test.
const SHORT_SVID_TTL_SECS: u64 = 10;
/// Bound for an X509-SVID to expire once the server stops: its lifetime plus room.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn pid_of_registered_process_matches() {
    let deployment = Deployment::start().await.unwrap();
    let agent = &deployment.agent;
    let pid = std::process::id().to_string();

    let json = known_entry(agent, &["--pid", &pid], &deployment.workload_id)
        .await
        .unwrap();
    let output = agent.explain(&["--pid", &pid]).await.unwrap();

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    let text = printed(&output);
    assert_eq!(field(&text, "Agent SPIFFE ID").unwrap(), agent.spiffe_id());
    assert!(
        text.contains(&format!(
            "Result: identity issued: {}",
            deployment.workload_id
        )),
        "{text}"
    );
    assert_eq!(json["identity_issued"], true);
    assert_eq!(json["agent_id"], agent.spiffe_id());
    let selectors = strings(&json["selectors"]);
    assert!(selectors.contains(&current_uid_selector()), "{selectors:?}");
    assert!(
        selectors
            .iter()
            .any(|selector| selector.starts_with("unix:sha256:")),
        "the agent may read its own user's executables: {selectors:?}"
    );
    let entry = entry_for(&json, &deployment.workload_id).unwrap();
    assert_eq!(entry["matches"], true);
    assert_eq!(entry["entry_id"], deployment.entry_id.as_str());
}

#[tokio::test]
async fn uid_shows_account_selectors_and_unknown_keys() {
    let deployment = Deployment::start().await.unwrap();
    let uid = current_uid().to_string();

    let json = known_entry(&deployment.agent, &["--uid", &uid], &deployment.workload_id)
        .await
        .unwrap();

    assert_eq!(json["identity_issued"], true);
    let selectors = strings(&json["selectors"]);
    assert!(selectors.contains(&current_uid_selector()), "{selectors:?}");
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::getuid()) {
        let user_selector = format!("unix:user:{}", user.name);
        assert!(selectors.contains(&user_selector), "{selectors:?}");
        let gid_selector = format!("unix:gid:{}", user.gid.as_raw());
        assert!(selectors.contains(&gid_selector), "{selectors:?}");
    }
    assert_eq!(
        strings(&json["unknown_selector_keys"]),
        ["unix:path", "unix:sha256", "unix:supplementary_gid"]
    );
}

#[tokio::test]
async fn uid_reports_entries_it_cannot_decide() {
    let deployment = Deployment::start().await.unwrap();
    let spiffe_id = deployment.server.spiffe_id("/workload/path-only");
    let entry = EntrySpec::new(&spiffe_id, deployment.agent.spiffe_id())
        .selector("unix:uid:1700")
        .selector("unix:path:/usr/bin/true");
    deployment.server.create_entry(&entry).await.unwrap();
    let args = ["--uid", "1700"];

    let json = known_entry(&deployment.agent, &args, &spiffe_id)
        .await
        .unwrap();
    let output = deployment.agent.explain(&args).await.unwrap();

    let text = printed(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("1 entries marked unknown above may match once the process runs"),
        "{text}"
    );
    assert_eq!(json["undetermined_entries"], 1);
}

#[tokio::test]
async fn near_miss_names_missing_selector() {
    let setup = NearMiss::start().await.unwrap();
    let pid = std::process::id().to_string();

    let json = known_entry(&setup.agent, &["--pid", &pid], &setup.workload_id)
        .await
        .unwrap();
    let output = setup.agent.explain(&["--pid", &pid]).await.unwrap();

    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let text = printed(&output);
    assert!(
        text.contains(&format!("no match, missing {}", setup.missing_selector)),
        "{text}"
    );
    assert!(text.contains("Result: no identity issued"), "{text}");
    assert!(text.contains("signet-server entry explain"), "{text}");
    assert_eq!(json["identity_issued"], false);
    let entry = entry_for(&json, &setup.workload_id).unwrap();
    assert_eq!(entry["matches"], false);
    assert_eq!(
        strings(&entry["missing_selectors"]),
        std::slice::from_ref(&setup.missing_selector)
    );
}

#[tokio::test]
async fn denied_caller_is_logged_with_pid_and_selectors() {
    let setup = NearMiss::start().await.unwrap();
    let pid = std::process::id().to_string();
    known_entry(&setup.agent, &["--pid", &pid], &setup.workload_id)
        .await
        .unwrap();

    let client = workload::connect(&setup.agent.endpoint()).await.unwrap();
    let denied = client.fetch_x509_context().await;

    assert!(denied.is_err(), "the caller has no identity: {denied:?}");
    let line = wait::eventually("the denial in the agent log", PROPAGATION_TIMEOUT, || {
        let log = setup.agent.log();
        let line = log
            .lines()
            .find(|line| {
                line.contains("No identity issued") && line.contains(&format!("pid={pid}"))
            })
            .map(str::to_owned);
        async move { line.context("no denial logged yet") }
    })
    .await
    .unwrap();
    assert!(line.contains(&current_uid_selector()), "{line}");
    assert!(line.contains("entries=1"), "{line}");
}

#[tokio::test]
async fn entry_created_after_last_sync_is_unknown() {
    let mut deployment = Deployment::start().await.unwrap();
    let pid = std::process::id().to_string();
    known_entry(&deployment.agent, &["--pid", &pid], &deployment.workload_id)
        .await
        .unwrap();

    // The agent keeps dialing the old port, so it cannot sync the entry created below.
    deployment.server.restart_on_new_port().await.unwrap();
    let before = explain_json(&deployment.agent, &["--pid", &pid])
        .await
        .unwrap()
        .1;
    let last_sync = unix_seconds(&before["last_sync_at"]).unwrap();
    // Unix seconds on both sides: wait for the next second so the entry is visibly newer.
    wait::eventually(
        "the clock to pass the last sync",
        PROPAGATION_TIMEOUT,
        || async move {
            if signet_e2e::unix_now() > last_sync {
                Ok(())
            } else {
                bail!("still the second of the last sync")
            }
        },
    )
    .await
    .unwrap();
    let new_id = deployment.server.spiffe_id("/workload/unsynced");
    let entry =
        EntrySpec::new(&new_id, deployment.agent.spiffe_id()).selector(current_uid_selector());
    let entry_id = deployment.server.create_entry(&entry).await.unwrap();

    let (_, after) = explain_json(&deployment.agent, &["--pid", &pid])
        .await
        .unwrap();
    let shown = deployment
        .server
        .cli_ok(&["entry", "show", "--entry-id", &entry_id, "--output", "json"])
        .await
        .unwrap();

    assert!(entry_for(&after, &new_id).is_none(), "{after}");
    assert_eq!(unix_seconds(&after["last_sync_at"]).unwrap(), last_sync);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let created_at = unix_seconds(&first_entry(&shown).unwrap()["created_at"]).unwrap();
    assert!(
        created_at > last_sync,
        "created {created_at}, synced {last_sync}"
    );
    let output = deployment
        .server
        .cli(&["entry", "explain", "--spiffe-id", &new_id])
        .await
        .unwrap();
    let text = printed(&output);
    assert!(
        text.contains(&format!(
            "Agent {}: authorized, last sync none since the server started",
            deployment.agent.spiffe_id()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn entry_explain_covers_direct_alias_and_refused_agents() {
    let server = Server::start().await.unwrap();
    let node_id = server.spiffe_id("/node/group");
    let direct_token = server.create_token().await.unwrap();
    let alias_token = field(
        &server
            .cli_ok(&["token", "generate", "--spiffe-id", &node_id])
            .await
            .unwrap(),
        "Token",
    )
    .unwrap();
    let refused_token = server.create_token().await.unwrap();
    let workload_id = server.spiffe_id("/workload/shared");
    let direct_entry = EntrySpec::new(&workload_id, server.join_token_agent_id(&direct_token))
        .selector(current_uid_selector());
    let alias_entry = EntrySpec::new(&workload_id, &node_id).selector(current_uid_selector());
    let direct_entry_id = server.create_entry(&direct_entry).await.unwrap();
    let alias_entry_id = server.create_entry(&alias_entry).await.unwrap();
    let direct = Agent::start(&server, &direct_token).await.unwrap();
    let via_alias = Agent::start(&server, &alias_token).await.unwrap();
    let refused = Agent::start(&server, &refused_token).await.unwrap();

    // Agents sync right after they start; the server records the time of each sync.
    let json = wait::eventually("both agents to sync", PROPAGATION_TIMEOUT, || async {
        let (_, json) = entry_explain_json(&server, &["--spiffe-id", &workload_id]).await?;
        let synced = verdict(&json, &direct_entry_id, &direct.spiffe_id())?["last_sync_at"]
            .is_string()
            && verdict(&json, &alias_entry_id, &via_alias.spiffe_id())?["last_sync_at"].is_string();
        if synced {
            Ok(json)
        } else {
            bail!("not synced yet: {json}")
        }
    })
    .await
    .unwrap();
    let output = server
        .cli(&["entry", "explain", "--spiffe-id", &workload_id])
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    assert_eq!(json["authorized"], true);
    let direct_verdict = verdict(&json, &direct_entry_id, &direct.spiffe_id()).unwrap();
    assert_eq!(direct_verdict["authorized"], true);
    assert!(reasons(direct_verdict).contains("parent ID is the agent's SPIFFE ID"));
    let alias_verdict = verdict(&json, &alias_entry_id, &via_alias.spiffe_id()).unwrap();
    assert_eq!(alias_verdict["authorized"], true);
    assert!(reasons(alias_verdict).contains(&node_id), "{alias_verdict}");
    for entry_id in [&direct_entry_id, &alias_entry_id] {
        let refused_verdict = verdict(&json, entry_id, &refused.spiffe_id()).unwrap();
        assert_eq!(refused_verdict["authorized"], false);
        assert!(
            reasons(refused_verdict).contains("not the agent's SPIFFE ID")
                || reasons(refused_verdict).contains("not authorized for"),
            "{refused_verdict}"
        );
    }
    assert_eq!(
        verdict(&json, &direct_entry_id, &via_alias.spiffe_id()).unwrap()["authorized"],
        false
    );
}

#[tokio::test]
async fn entry_explain_names_missing_alias_selectors() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let agent = Agent::start(&server, &token).await.unwrap();
    let alias_id = server.spiffe_id("/node/selected");
    let required = format!("spiffe_id:{}", agent.spiffe_id());
    server
        .cli_ok(&[
            "entry",
            "create",
            "--node",
            "--spiffe-id",
            &alias_id,
            "--selector",
            &required,
        ])
        .await
        .unwrap();
    let workload_id = server.spiffe_id("/workload/under-server-alias");
    let entry_id = server
        .create_entry(&EntrySpec::new(&workload_id, &alias_id).selector(current_uid_selector()))
        .await
        .unwrap();

    let (code, json) = entry_explain_json(&server, &["--entry-id", &entry_id])
        .await
        .unwrap();

    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["authorized"], false);
    let refused = verdict(&json, &entry_id, &agent.spiffe_id()).unwrap();
    assert_eq!(
        strings(&refused["missing_alias_selectors"]),
        std::slice::from_ref(&required)
    );
    assert!(
        reasons(refused).contains("requires node selectors the agent lacks"),
        "{refused}"
    );
}

#[tokio::test]
async fn bad_input_exit_codes() {
    let deployment = Deployment::start().await.unwrap();

    let missing_pid = deployment
        .agent
        .explain(&["--pid", "2147483647"])
        .await
        .unwrap();
    let bad_id = deployment
        .server
        .cli(&["entry", "explain", "--spiffe-id", "not-a-spiffe-id"])
        .await
        .unwrap();
    let unknown_entry = deployment
        .server
        .cli(&["entry", "explain", "--entry-id", "no-such-entry"])
        .await
        .unwrap();

    assert_eq!(
        missing_pid.status.code(),
        Some(EXPLAIN_FAILED),
        "{}",
        printed(&missing_pid)
    );
    assert!(
        printed(&missing_pid).contains("no process with PID 2147483647"),
        "{}",
        printed(&missing_pid)
    );
    assert_eq!(
        bad_id.status.code(),
        Some(EXPLAIN_FAILED),
        "{}",
        printed(&bad_id)
    );
    assert!(
        printed(&bad_id).contains("invalid --spiffe-id \"not-a-spiffe-id\""),
        "{}",
        printed(&bad_id)
    );
    // An unknown entry ID is an entry no agent may serve, as an unknown SPIFFE ID is.
    assert_eq!(
        unknown_entry.status.code(),
        Some(1),
        "{}",
        printed(&unknown_entry)
    );
    assert!(
        printed(&unknown_entry).contains("No entry has ID no-such-entry"),
        "{}",
        printed(&unknown_entry)
    );

    // PID 2 is kthreadd when the test runs in the PID namespace of the host or VM.
    let is_kernel_thread =
        std::fs::read_to_string("/proc/2/comm").is_ok_and(|comm| comm.trim() == "kthreadd");
    if is_kernel_thread {
        let kernel_thread = deployment.agent.explain(&["--pid", "2"]).await.unwrap();
        let text = printed(&kernel_thread);
        assert_eq!(kernel_thread.status.code(), Some(EXPLAIN_FAILED), "{text}");
        assert!(text.contains("kernel thread"), "{text}");
    }

    for args in [["--uid", "4294967295"], ["--pid", "0"]] {
        let usage = deployment.agent.explain(&args).await.unwrap();
        assert_eq!(
            usage.status.code(),
            Some(USAGE_ERROR),
            "{}",
            printed(&usage)
        );
        assert!(
            !printed(&usage).contains("-2147483648"),
            "{}",
            printed(&usage)
        );
    }
}

#[tokio::test]
async fn expired_svid_is_reported_and_not_issued() {
    let mut deployment = Deployment::start_with_ttl(Some(SHORT_SVID_TTL_SECS))
        .await
        .unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let pid = std::process::id().to_string();

    deployment.server.stop().await.unwrap();
    let agent = &deployment.agent;
    let workload_id = &deployment.workload_id;
    let (code, json) = wait::eventually("the X509-SVID to expire", EXPIRY_TIMEOUT, || async {
        let (code, json) = explain_json(agent, &["--pid", &pid]).await?;
        let entry = entry_for(&json, workload_id).context("entry not listed")?;
        anyhow::ensure!(
            entry["svid_expired_at"].is_string(),
            "not expired yet: {json}"
        );
        Ok((code, json))
    })
    .await
    .unwrap();
    let output = agent.explain(&["--pid", &pid]).await.unwrap();
    let client = workload::connect(&agent.endpoint()).await.unwrap();
    let fetched = client.fetch_x509_context().await.unwrap_err();

    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["identity_issued"], false);
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    let text = printed(&output);
    assert!(text.contains("X509-SVID expired at"), "{text}");
    assert!(text.contains("could not be renewed"), "{text}");
    assert!(text.contains("Result: no identity issued"), "{text}");
    let fetched = format!("{fetched:?}");
    assert!(fetched.contains("expired"), "{fetched}");
    assert!(!fetched.contains("not signed yet"), "{fetched}");
}

#[tokio::test]
async fn banned_agent_keeps_its_last_sync() {
    let deployment = Deployment::start().await.unwrap();
    let server = &deployment.server;
    let agent_id = deployment.agent.spiffe_id();
    let entry_args = ["--entry-id", deployment.entry_id.as_str()];
    let synced_at = wait::eventually("the agent to sync", PROPAGATION_TIMEOUT, || async {
        let (_, json) = entry_explain_json(server, &entry_args).await?;
        unix_seconds(&verdict(&json, &deployment.entry_id, &agent_id)?["last_sync_at"])
    })
    .await
    .unwrap();

    server
        .cli_ok(&["agent", "ban", "--spiffe-id", &agent_id])
        .await
        .unwrap();
    let (code, json) = entry_explain_json(server, &entry_args).await.unwrap();

    let banned = verdict(&json, &deployment.entry_id, &agent_id).unwrap();
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(banned["authorized"], false);
    assert!(
        unix_seconds(&banned["last_sync_at"]).unwrap() >= synced_at,
        "{json}"
    );
    assert!(reasons(banned).contains("banned"), "{json}");
    assert!(banned["agent_svid_expires_at"].is_string(), "{json}");
}

#[tokio::test]
async fn entry_explain_accepts_templates_and_expanded_ids() {
    let server = Server::start().await.unwrap();
    let token = server.create_token().await.unwrap();
    let template = server.spiffe_id("/unix/uid/{unix:uid}");
    let entry = EntrySpec::new(&template, server.join_token_agent_id(&token))
        .selector(current_uid_selector());
    let entry_id = server.create_entry(&entry).await.unwrap();

    let (template_code, by_template) = entry_explain_json(&server, &["--spiffe-id", &template])
        .await
        .unwrap();
    let expanded = server.spiffe_id("/unix/uid/65534");
    let by_expansion = server
        .cli(&["entry", "explain", "--spiffe-id", &expanded])
        .await
        .unwrap();

    assert_eq!(template_code, Some(1), "{by_template}");
    assert_eq!(
        first_entry(&by_template).unwrap()["entry"]["id"],
        entry_id.as_str()
    );
    let text = printed(&by_expansion);
    assert!(
        text.contains(&format!("No entry has SPIFFE ID {expanded} exactly")),
        "{text}"
    );
    assert!(text.contains(&entry_id), "{text}");
}

#[tokio::test]
async fn explain_on_a_foreign_socket_names_the_problem() {
    let deployment = Deployment::start().await.unwrap();
    let pid = std::process::id().to_string();
    let workload_socket = deployment.agent.socket_path().display().to_string();
    let server_socket = deployment.server.admin_socket().display().to_string();
    let agent_socket = deployment.agent.admin_socket().display().to_string();

    for socket in [&workload_socket, &server_socket] {
        let args = ["explain", "--pid", &pid, "--admin-socket", socket];
        let output = run(signet_e2e::binaries::AGENT, &args).await.unwrap();
        assert_eq!(
            output.status.code(),
            Some(EXPLAIN_FAILED),
            "{}",
            printed(&output)
        );
        assert!(
            printed(&output).contains("does not serve the agent's admin API"),
            "{}",
            printed(&output)
        );
    }
    let entry_id = deployment.entry_id.as_str();
    let args = [
        "entry",
        "explain",
        "--entry-id",
        entry_id,
        "--admin-socket",
        &agent_socket,
    ];
    let output = run(signet_e2e::binaries::SERVER, &args).await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(EXPLAIN_FAILED),
        "{}",
        printed(&output)
    );
    assert!(
        printed(&output).contains("does not serve the server's admin API"),
        "{}",
        printed(&output)
    );
}

#[tokio::test]
async fn unreachable_agent_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock").display().to_string();
    let pid = std::process::id().to_string();

    let output = tokio::process::Command::new(
        signet_e2e::binaries::path(signet_e2e::binaries::AGENT).unwrap(),
    )
    .args(["explain", "--pid", &pid, "--admin-socket", &socket])
    .output()
    .await
    .unwrap();

    assert_eq!(
        output.status.code(),
        Some(EXPLAIN_FAILED),
        "{}",
        printed(&output)
    );
    assert!(printed(&output).contains(&socket), "{}", printed(&output));
}

/// A server and an agent with one entry for the test process's uid that also requires a gid the
/// process does not have.
struct NearMiss {
    _server: Server,
    agent: Agent,
    workload_id: String,
    missing_selector: String,
}

impl NearMiss {
    async fn start() -> anyhow::Result<Self> {
        let server = Server::start().await?;
        let token = server.create_token().await?;
        let workload_id = server.spiffe_id("/workload/near-miss");
        let other_gid = nix::unistd::getegid().as_raw().wrapping_add(1);
        let missing_selector = format!("unix:gid:{other_gid}");
        let entry = EntrySpec::new(&workload_id, server.join_token_agent_id(&token))
            .selector(current_uid_selector())
            .selector(&missing_selector);
        server.create_entry(&entry).await?;
        let agent = Agent::start(&server, &token).await?;
        Ok(Self {
            _server: server,
            agent,
            workload_id,
            missing_selector,
        })
    }
}

/// Runs the binary `name` with `args` as given, without the harness's `--admin-socket`.
async fn run(name: &str, args: &[&str]) -> anyhow::Result<Output> {
    let output = tokio::process::Command::new(signet_e2e::binaries::path(name)?)
        .args(args)
        .output()
        .await?;
    Ok(output)
}

/// Runs `signet-agent explain <args> --output json` and returns its exit code and output.
async fn explain_json(agent: &Agent, args: &[&str]) -> anyhow::Result<(Option<i32>, Value)> {
    let output = agent
        .explain(&[args, &["--output", "json"]].concat())
        .await?;
    Ok((output.status.code(), parse_json(&output)?))
}

/// Runs `signet-server entry explain <args> --output json` and returns its exit code and output.
async fn entry_explain_json(
    server: &Server,
    args: &[&str],
) -> anyhow::Result<(Option<i32>, Value)> {
    let output = server
        .cli(&[&["entry", "explain"], args, &["--output", "json"]].concat())
        .await?;
    Ok((output.status.code(), parse_json(&output)?))
}

/// Waits until the agent lists the entry with `spiffe_id`, and returns the JSON explanation.
async fn known_entry(agent: &Agent, args: &[&str], spiffe_id: &str) -> anyhow::Result<Value> {
    wait::eventually(
        "the agent to sync the entry",
        PROPAGATION_TIMEOUT,
        || async {
            let (_, json) = explain_json(agent, args).await?;
            match entry_for(&json, spiffe_id) {
                Some(_) => Ok(json),
                None => bail!("entry not synced yet: {json}"),
            }
        },
    )
    .await
}

fn parse_json(output: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("explain printed no JSON: {}", printed(output)))
}

fn entry_for<'a>(json: &'a Value, spiffe_id: &str) -> Option<&'a Value> {
    json["entries"]
        .as_array()?
        .iter()
        .find(|entry| entry["spiffe_id"] == spiffe_id)
}

/// Returns the verdict for `agent_id` on the explained entry `entry_id`.
fn verdict<'a>(json: &'a Value, entry_id: &str, agent_id: &str) -> anyhow::Result<&'a Value> {
    json["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|explained| explained["entry"]["id"] == entry_id)
        .flat_map(|explained| explained["agents"].as_array().into_iter().flatten())
        .find(|verdict| verdict["agent_id"] == agent_id)
        .with_context(|| format!("no verdict for {agent_id} on {entry_id}: {json}"))
}

fn first_entry(json: &Value) -> anyhow::Result<&Value> {
    json["entries"]
        .get(0)
        .or_else(|| json.as_array().and_then(|entries| entries.first()))
        .with_context(|| format!("no entry in {json}"))
}

fn reasons(verdict: &Value) -> String {
    strings(&verdict["reasons"]).join("; ")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

fn unix_seconds(value: &Value) -> anyhow::Result<i64> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("not Unix seconds: {value}"))
}
