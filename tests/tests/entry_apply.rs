//! `signet-server entry apply`: declarative registration from TOML and YAML files, on the real
//! server and agent binaries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, ensure};
use serde_json::Value;
use signet_e2e::cli::printed;
use signet_e2e::wait::PROPAGATION_TIMEOUT;
use signet_e2e::{Agent, EntrySpec, Server, current_uid_selector, workload};
use tempfile::TempDir;

/// Parent ID of the entries in the files, an agent that never attests.
const PARENT_PATH: &str = "/agent/node-1";

/// (entry ID, SPIFFE ID, revision number) of a stored entry.
type EntryState = (String, String, String);

/// Returns a TOML entry for `spiffe://example.org/<name>`, with an X509-SVID TTL.
fn toml_entry(server: &Server, name: &str, ttl: &str) -> String {
    format!(
        "[[entry]]\nspiffe_id = \"{}\"\nparent_id = \"{}\"\nselectors = [\"unix:uid:1000\"]\n\
         x509_svid_ttl = \"{ttl}\"\n\n",
        server.spiffe_id(&format!("/{name}")),
        server.spiffe_id(PARENT_PATH)
    )
}

/// Writes `text` to `name` in `dir` and returns the path.
fn write_file(dir: &TempDir, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.path().join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `entry apply -f <file> --owner <owner>` with `flags`, whatever the exit code.
async fn apply(
    server: &Server,
    file: &Path,
    owner: &str,
    flags: &[&str],
) -> anyhow::Result<Output> {
    let file = file.display().to_string();
    let mut args = vec!["entry", "apply", "-f", &file, "--owner", owner];
    args.extend_from_slice(flags);
    server.cli(&args).await
}

/// Runs `entry apply` that must succeed and returns the plan lines it printed.
async fn apply_ok(
    server: &Server,
    file: &Path,
    owner: &str,
    flags: &[&str],
) -> anyhow::Result<Vec<String>> {
    let output = apply(server, file, owner, flags).await?;
    ensure!(
        output.status.success(),
        "entry apply failed: {}",
        printed(&output)
    );
    let stdout = String::from_utf8(output.stdout).context("entry apply printed non-UTF-8")?;
    Ok(stdout.lines().map(str::to_owned).collect())
}

/// Returns the plan lines of one action, such as `create`, without the action word.
fn lines_of(plan: &[String], action: &str) -> Vec<String> {
    plan.iter()
        .filter_map(|line| line.strip_prefix(&format!("{action} ")))
        .map(str::to_owned)
        .collect()
}

/// Returns every stored entry, sorted by SPIFFE ID, from `entry show --output json`.
async fn stored_entries(server: &Server) -> anyhow::Result<Vec<EntryState>> {
    let stdout = server
        .cli_ok(&["entry", "show", "--output", "json"])
        .await?;
    let listing: Value =
        serde_json::from_str(&stdout).context("entry show printed invalid JSON")?;
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut entries: Vec<EntryState> = listing["entries"]
        .as_array()
        .with_context(|| format!("no entries list in {stdout}"))?
        .iter()
        .map(|entry| {
            let spiffe_id = &entry["spiffe_id"];
            (
                text(&entry["id"]),
                format!(
                    "spiffe://{}{}",
                    text(&spiffe_id["trust_domain"]),
                    text(&spiffe_id["path"])
                ),
                text(&entry["revision_number"]),
            )
        })
        .collect();
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(entries)
}

#[tokio::test]
async fn apply_creates_entries_and_reapply_changes_nothing() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let text = format!(
        "{}{}",
        toml_entry(&server, "web", "1h"),
        toml_entry(&server, "db", "10m")
    );
    let file = write_file(&dir, "entries.toml", &text).unwrap();

    let first = apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();
    let created = stored_entries(&server).await.unwrap();
    let second = apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();

    let parent = server.spiffe_id(PARENT_PATH);
    assert_eq!(
        lines_of(&first, "create"),
        [
            format!("{} {parent}", server.spiffe_id("/web")),
            format!("{} {parent}", server.spiffe_id("/db")),
        ]
    );
    assert_eq!(created.len(), 2);
    assert_eq!(lines_of(&second, "unchanged").len(), 2, "{second:?}");
    assert!(second.contains(&"0 created, 0 updated, 0 deleted, 2 unchanged (applied)".to_owned()));
    assert_eq!(stored_entries(&server).await.unwrap(), created);
}

#[tokio::test]
async fn modified_entry_is_updated_once() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let web = toml_entry(&server, "web", "1h");
    let file = write_file(
        &dir,
        "entries.toml",
        &format!("{web}{}", toml_entry(&server, "db", "1h")),
    )
    .unwrap();
    apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();
    let before = stored_entries(&server).await.unwrap();

    write_file(
        &dir,
        "entries.toml",
        &format!("{web}{}", toml_entry(&server, "db", "2h")),
    )
    .unwrap();
    let plan = apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();

    assert_eq!(lines_of(&plan, "update").len(), 1, "{plan:?}");
    assert!(lines_of(&plan, "update")[0].starts_with(&server.spiffe_id("/db")));
    assert_eq!(lines_of(&plan, "unchanged").len(), 1, "{plan:?}");
    let after = stored_entries(&server).await.unwrap();
    // Sorted by SPIFFE ID: db, then web.
    assert_eq!(after[0].0, before[0].0, "the updated entry keeps its ID");
    assert_eq!(after[0].2, "1");
    assert_eq!(after[1], before[1]);
}

#[tokio::test]
async fn prune_deletes_only_own_removed_entry() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let manual = EntrySpec::new(server.spiffe_id("/manual"), server.spiffe_id(PARENT_PATH))
        .selector("unix:uid:1000");
    server.create_entry(&manual).await.unwrap();
    let other = write_file(&dir, "other.toml", &toml_entry(&server, "other", "1h")).unwrap();
    apply_ok(&server, &other, "team-other", &[]).await.unwrap();
    let web = toml_entry(&server, "web", "1h");
    let file = write_file(
        &dir,
        "entries.toml",
        &format!("{web}{}", toml_entry(&server, "db", "1h")),
    )
    .unwrap();
    apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();

    write_file(&dir, "entries.toml", &web).unwrap();
    let without_prune = apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();
    let with_prune = apply_ok(&server, &file, "team-payments", &["--prune"])
        .await
        .unwrap();

    assert!(
        lines_of(&without_prune, "delete").is_empty(),
        "{without_prune:?}"
    );
    assert_eq!(
        lines_of(&with_prune, "delete"),
        [format!(
            "{} {}",
            server.spiffe_id("/db"),
            server.spiffe_id(PARENT_PATH)
        )]
    );
    let remaining: Vec<String> = stored_entries(&server)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, spiffe_id, _)| spiffe_id)
        .collect();
    assert_eq!(
        remaining,
        [
            server.spiffe_id("/manual"),
            server.spiffe_id("/other"),
            server.spiffe_id("/web")
        ]
    );
}

#[tokio::test]
async fn dry_run_prints_plan_and_changes_nothing() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let file = write_file(
        &dir,
        "entries.yaml",
        &format!(
            "entries:\n  - spiffe_id: {}\n    parent_id: {}\n    selectors: [\"unix:uid:1000\"]\n",
            server.spiffe_id("/web"),
            server.spiffe_id(PARENT_PATH)
        ),
    )
    .unwrap();

    let plan = apply_ok(&server, &file, "team-payments", &["--dry-run"])
        .await
        .unwrap();
    let json = apply_ok(
        &server,
        &file,
        "team-payments",
        &["--dry-run", "--output", "json"],
    )
    .await
    .unwrap();

    assert_eq!(lines_of(&plan, "create").len(), 1, "{plan:?}");
    assert!(plan.contains(
        &"1 created, 0 updated, 0 deleted, 0 unchanged (dry run, nothing changed)".to_owned()
    ));
    let json: Value = serde_json::from_str(&json.join("\n")).unwrap();
    assert_eq!(json["dry_run"], Value::Bool(true));
    assert_eq!(json["created"].as_array().unwrap().len(), 1);
    assert_eq!(json["created"][0]["spiffe_id"]["path"], "/web");
    assert_eq!(server.entry_count().await.unwrap(), 0);
}

#[tokio::test]
async fn invalid_file_names_line_and_changes_nothing() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let good = toml_entry(&server, "web", "1h");
    // The bad selector is on line 10: the first entry takes lines 1 to 6.
    let bad = good
        .replace("/web", "/db")
        .replace("unix:uid:1000", "unix:uid:-5");
    let file = write_file(
        &dir,
        "entries.toml",
        &format!("{good}{bad}{}", toml_entry(&server, "api", "1h")),
    )
    .unwrap();

    let output = apply(&server, &file, "team-payments", &[]).await.unwrap();

    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains(&format!("{}:10: ", file.display())), "{text}");
    assert!(text.contains("unix:uid:-5"), "{text}");
    assert_eq!(server.entry_count().await.unwrap(), 0);
}

#[tokio::test]
async fn entry_of_other_owner_is_rejected() {
    let server = Server::start().await.unwrap();
    let dir = TempDir::new().unwrap();
    let web = toml_entry(&server, "web", "1h");
    let theirs = write_file(&dir, "theirs.toml", &web).unwrap();
    apply_ok(&server, &theirs, "team-other", &[]).await.unwrap();
    let before = stored_entries(&server).await.unwrap();
    let ours = write_file(
        &dir,
        "ours.toml",
        &format!("{}{web}", toml_entry(&server, "db", "1h")),
    )
    .unwrap();

    let output = apply(&server, &ours, "team-payments", &["--prune"])
        .await
        .unwrap();

    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("\"team-payments\""), "{text}");
    assert!(text.contains("\"team-other\""), "{text}");
    assert_eq!(stored_entries(&server).await.unwrap(), before);
}

#[tokio::test]
async fn workload_gets_svid_from_applied_entry() {
    let server = Server::start().await.unwrap();
    let join_token = server.create_token().await.unwrap();
    let workload_id = server.spiffe_id("/workload/applied");
    let dir = TempDir::new().unwrap();
    let file = write_file(
        &dir,
        "entries.yml",
        &format!(
            "entries:\n  - spiffe_id: {workload_id}\n    parent_id: {}\n    \
             selectors:\n      - {}\n",
            server.join_token_agent_id(&join_token),
            current_uid_selector()
        ),
    )
    .unwrap();
    apply_ok(&server, &file, "team-payments", &[])
        .await
        .unwrap();

    let agent = Agent::start(&server, &join_token).await.unwrap();
    let context =
        workload::fetch_x509_context_with(&agent.endpoint(), &workload_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();

    assert!(workload::find_svid(&context, &workload_id).is_some());
}
