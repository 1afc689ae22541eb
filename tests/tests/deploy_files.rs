//! Keeps the files in `deploy/` true to the binaries: every flag they pass exists, the example
//! configurations start a real server and agent, and every Kubernetes manifest parses.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on any error"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use saphyr::{LoadableYamlNode, YamlOwned};
use signet_e2e::{Agent, AgentOptions, Server, ServerOptions, binaries};

/// Where an invocation was found, and what it runs.
#[derive(Debug)]
struct Invocation {
    source: String,
    binary: &'static str,
    subcommand: Vec<String>,
    flags: Vec<String>,
}

/// A config key whose example value is a host path or a listening address, and the flag that
/// replaces it in the test.
struct Override {
    key: &'static str,
    flag: &'static str,
    value: fn(&Path) -> String,
}

/// Server keys that `Server::start_with` already sets by flag.
const SERVER_HARNESS_KEYS: &[&str] = &["trust_domain", "data_dir", "bind_address", "admin_socket"];

/// Agent keys that `Agent::start_with` already sets by flag.
const AGENT_HARNESS_KEYS: &[&str] = &[
    "trust_domain",
    "server_address",
    "data_dir",
    "socket_path",
    "trust_bundle_path",
];

/// Keys of both binaries that the test sets by flag, so that nothing listens beyond loopback.
const COMMON_OVERRIDES: &[Override] = &[
    Override {
        key: "health_address",
        flag: "--health-address",
        value: |_| "127.0.0.1:0".to_owned(),
    },
    Override {
        key: "metrics_address",
        flag: "--metrics-address",
        value: |_| "127.0.0.1:0".to_owned(),
    },
];

/// Agent keys that the test sets by flag, so that nothing is written outside its directory.
const AGENT_OVERRIDES: &[Override] = &[Override {
    key: "admin_socket",
    flag: "--admin-socket",
    value: |dir| dir.join("private").join("admin.sock").display().to_string(),
}];

/// Names Kubernetes manifests mount but do not define, because the operator creates them with
/// the commands in deploy/README.md.
const OPERATOR_CREATED: &[&str] = &["signet-bundle", "signet-agent-join-tokens"];

#[test]
fn deploy_files_use_existing_flags() {
    let invocations = deploy_invocations();
    for binary in [binaries::SERVER, binaries::AGENT] {
        assert!(
            invocations.iter().any(|found| found.binary == binary),
            "no {binary} command found in deploy/: {invocations:#?}"
        );
    }

    let mut help_texts = BTreeMap::new();
    let mut problems = Vec::new();
    for invocation in &invocations {
        let key = (invocation.binary, invocation.subcommand.clone());
        let help = help_texts
            .entry(key)
            .or_insert_with(|| help_text(invocation.binary, &invocation.subcommand));
        let help = match help {
            Ok(help) => help,
            Err(error) => {
                problems.push(format!("{}: {error}", invocation.source));
                continue;
            }
        };
        for flag in &invocation.flags {
            if !mentions_flag(help, flag) {
                problems.push(format!(
                    "{}: `{} {}` has no flag {flag}",
                    invocation.source,
                    invocation.binary,
                    invocation.subcommand.join(" ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn systemd_example_configs_start_binaries() {
    let server_toml = read(&deploy_dir().join("server.toml"));
    let agent_toml = read(&deploy_dir().join("agent.toml"));
    start_with_configs(&server_toml, &agent_toml).await;
}

#[tokio::test]
async fn kubernetes_config_maps_start_binaries() {
    let server_toml = config_map_entry("server.yaml", "signet-server", "server.toml");
    let agent_toml = config_map_entry("agent.yaml", "signet-agent", "agent.toml");
    start_with_configs(&server_toml, &agent_toml).await;
}

#[test]
fn kubernetes_manifests_parse() {
    let mut defined = BTreeSet::new();
    let mut mounted = BTreeSet::new();
    for path in files_with_extension(&deploy_dir().join("kubernetes"), "yaml") {
        let documents = yaml_documents(&path);
        assert!(!documents.is_empty(), "{} is empty", path.display());
        for document in &documents {
            let kind = text_at(document, &["kind"]);
            let name = text_at(document, &["metadata", "name"]);
            let context = format!("{} ({kind:?} {name:?})", path.display());
            assert!(
                text_at(document, &["apiVersion"]).is_some(),
                "{context}: no apiVersion"
            );
            let (Some(kind), Some(name)) = (kind, name) else {
                panic!("{context}: no kind or metadata.name");
            };
            if kind != "Namespace" {
                assert_eq!(
                    text_at(document, &["metadata", "namespace"]),
                    Some("signet"),
                    "{context}: every object goes into the namespace signet"
                );
            }
            if kind == "ConfigMap" || kind == "Secret" {
                defined.insert(name.to_owned());
            }
            collect_mounted_names(document, &mut mounted);
        }
    }

    let readme = read(&deploy_dir().join("README.md"));
    for name in &mounted {
        let is_documented = OPERATOR_CREATED.contains(&name.as_str()) && readme.contains(name);
        assert!(
            defined.contains(name) || is_documented,
            "{name} is mounted but neither defined in a manifest nor created in deploy/README.md"
        );
    }
}

// === Invocations in deploy files ===

/// Returns every `signet-server` and `signet-agent` command in the systemd units, Dockerfiles,
/// Kubernetes manifests and the shell blocks of deploy/README.md.
fn deploy_invocations() -> Vec<Invocation> {
    let deploy = deploy_dir();
    let mut found = Vec::new();
    for path in files_with_extension(&deploy.join("systemd"), "service") {
        found.extend(invocations_in_lines(&path, &logical_lines(&read(&path))));
    }
    for path in files_with_extension(&deploy.join("docker"), "Dockerfile") {
        found.extend(dockerfile_invocations(&path));
    }
    for path in files_with_extension(&deploy.join("kubernetes"), "yaml") {
        for document in yaml_documents(&path) {
            for command_line in container_command_lines(&document) {
                let lines: Vec<String> = command_line.lines().map(str::to_owned).collect();
                found.extend(invocations_in_lines(&path, &lines));
            }
        }
    }
    let readme = deploy.join("README.md");
    found.extend(invocations_in_lines(
        &readme,
        &shell_block_lines(&read(&readme)),
    ));
    found
}

/// Joins lines continued with a trailing backslash and drops comments.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines.retain(|line| !line.trim_start().starts_with('#'));
    lines
}

/// Returns the lines of the ```sh blocks of a Markdown file, continuations joined.
fn shell_block_lines(markdown: &str) -> Vec<String> {
    let mut block = String::new();
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, in_block) {
            (Some(language), false) => in_block = language.trim() == "sh",
            (Some(_), true) => {
                lines.extend(logical_lines(&block));
                block.clear();
                in_block = false;
            }
            (None, true) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, false) => {}
        }
    }
    lines
}

/// Returns the command a Dockerfile's image runs (ENTRYPOINT followed by CMD, both in JSON
/// form), and the commands of its HEALTHCHECK lines.
fn dockerfile_invocations(path: &Path) -> Vec<Invocation> {
    let mut entrypoint = Vec::new();
    let mut cmd = Vec::new();
    let mut lines = Vec::new();
    for line in logical_lines(&read(path)) {
        if let Some(array) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = json_array(path, array);
        } else if let Some(array) = line.strip_prefix("CMD ") {
            cmd = json_array(path, array);
        } else if let Some(check) = line.strip_prefix("HEALTHCHECK ") {
            lines.push(check.to_owned());
        }
    }
    entrypoint.extend(cmd);
    lines.push(entrypoint.join(" "));
    invocations_in_lines(path, &lines)
}

fn json_array(path: &Path, text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|error| {
        panic!(
            "{}: {text} is not a JSON array of strings: {error}",
            path.display()
        )
    })
}

/// Returns the command line (`command` then `args`) of every container and exec probe in a
/// manifest. A container without `command` runs its image's entrypoint, which is the binary
/// the image is named after.
fn container_command_lines(node: &YamlOwned) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(mapping) = node.as_mapping() {
        let command = node.as_mapping_get("command").map(string_list);
        let args = node.as_mapping_get("args").map(string_list);
        if command.is_some() || args.is_some() {
            let entrypoint = node
                .as_mapping_get("image")
                .and_then(YamlOwned::as_str)
                .map(image_binary);
            let mut argv = command.unwrap_or_else(|| entrypoint.into_iter().collect());
            argv.extend(args.unwrap_or_default());
            lines.push(argv.join(" "));
        }
        for value in mapping.values() {
            lines.extend(container_command_lines(value));
        }
    } else if let Some(items) = node.as_sequence() {
        for item in items {
            lines.extend(container_command_lines(item));
        }
    }
    lines
}

/// Returns the binary an image runs: its name without registry path and tag.
fn image_binary(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    name.split(':').next().unwrap_or(name).to_owned()
}

fn string_list(node: &YamlOwned) -> Vec<String> {
    node.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(YamlOwned::as_str)
        .map(str::to_owned)
        .collect()
}

/// Finds the invocations of either binary in shell-like lines. A binary name right after an
/// option (`-t signet-server`, `--bin signet-server`) is that option's value, not a command.
fn invocations_in_lines(path: &Path, lines: &[String]) -> Vec<Invocation> {
    let mut found = Vec::new();
    for line in lines {
        let tokens: Vec<&str> = line.split_whitespace().map(trim_token).collect();
        for (position, token) in tokens.iter().enumerate() {
            let Some(binary) = binary_named(token) else {
                continue;
            };
            let after_option = position
                .checked_sub(1)
                .and_then(|previous| tokens.get(previous))
                .is_some_and(|previous| previous.starts_with('-') && *previous != "--");
            if after_option {
                continue;
            }
            let (subcommand, flags) = parse_arguments(&tokens[position + 1..]);
            found.push(Invocation {
                source: format!("{}: `{}`", path.display(), line.trim()),
                binary,
                subcommand,
                flags,
            });
        }
    }
    found
}

/// Strips the quotes, brackets and commas of JSON and YAML flow lists around a token.
fn trim_token(token: &str) -> &str {
    token.trim_matches(|c| matches!(c, '"' | '\'' | '[' | ']' | ','))
}

/// Returns the binary a token runs: its bare name, or a path ending in a `bin` directory.
fn binary_named(token: &str) -> Option<&'static str> {
    let command = token.rsplit_once('=').map_or(token, |(_, value)| value);
    [binaries::SERVER, binaries::AGENT]
        .into_iter()
        .find(|name| command == *name || command.ends_with(&format!("/bin/{name}")))
}

/// Splits the arguments after a binary into its subcommand words and its long flags, up to
/// the end of the shell command.
fn parse_arguments(tokens: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut subcommand = Vec::new();
    let mut flags = Vec::new();
    for token in tokens {
        if SHELL_SEPARATORS.contains(token) {
            break;
        }
        let word = token.trim_end_matches([';', ')']);
        if let Some(flag) = word.strip_prefix("--") {
            let name = flag.split('=').next().unwrap_or(flag);
            flags.push(format!("--{name}"));
        } else if flags.is_empty() && is_subcommand_word(word) {
            subcommand.push(word.to_owned());
        }
        if word.len() != token.len() {
            break;
        }
    }
    (subcommand, flags)
}

/// Tokens that end a shell command.
const SHELL_SEPARATORS: &[&str] = &["|", "||", "&&", ";", ">", ">>", "<", "&", "2>&1", ")"];

fn is_subcommand_word(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Runs `<binary> <subcommand> --help` and returns its output.
fn help_text(binary: &str, subcommand: &[String]) -> Result<String, String> {
    let path = binaries::path(binary).map_err(|error| format!("{error:#}"))?;
    let output = Command::new(path)
        .args(subcommand)
        .arg("--help")
        .output()
        .map_err(|error| format!("running {binary} --help: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{binary} {} --help` failed: {}",
            subcommand.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Tells whether clap's help text lists `flag` as an option. A mention in another option's
/// description does not count, nor does a longer flag that starts with it.
fn mentions_flag(help: &str, flag: &str) -> bool {
    help.lines().any(|line| {
        let option = line.trim_start();
        // A short form comes first: `-h, --help`.
        let option = match option.split_once(", ") {
            Some((short, long)) if short.len() == 2 && short.starts_with('-') => long,
            _ => option,
        };
        option
            .strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=', '<']))
    })
}

// === Example configurations ===

/// Starts a server with `server_toml` and an agent with `agent_toml`, and checks that the agent
/// attests. Flags, which win over the file, replace the trust domain and the keys that name host
/// paths or addresses. Every other key and value goes through the binaries' own validation.
async fn start_with_configs(server_toml: &str, agent_toml: &str) {
    let dir = tempfile::tempdir().unwrap();

    let server_config = dir.path().join("server.toml");
    fs::write(&server_config, server_toml).unwrap();
    let mut server_args = vec!["--config".to_owned(), path_text(&server_config)];
    server_args.extend(override_args(
        server_toml,
        SERVER_HARNESS_KEYS,
        COMMON_OVERRIDES,
        dir.path(),
    ));
    let server = Server::start_with(ServerOptions {
        extra_args: server_args,
        ..ServerOptions::default()
    })
    .await
    .unwrap();

    let agent_config = dir.path().join("agent.toml");
    fs::write(&agent_config, agent_toml).unwrap();
    let mut agent_args = vec!["--config".to_owned(), path_text(&agent_config)];
    let agent_overrides: Vec<&Override> = COMMON_OVERRIDES.iter().chain(AGENT_OVERRIDES).collect();
    agent_args.extend(override_args(
        agent_toml,
        AGENT_HARNESS_KEYS,
        agent_overrides,
        dir.path(),
    ));
    let token = server.create_token().await.unwrap();
    let agent = Agent::start_with(
        &server,
        &token,
        AgentOptions {
            extra_args: agent_args,
            ..AgentOptions::default()
        },
    )
    .await
    .unwrap();

    let agents = server.cli_ok(&["agent", "list"]).await.unwrap();
    assert!(
        agents.contains(&agent.spiffe_id()),
        "agent {} not attested: {agents}",
        agent.spiffe_id()
    );
}

/// Returns the flags that replace the location keys of `toml_text`. Fails on a location key
/// that neither the harness nor an override covers, because the binary would then use the
/// example's host path or address.
fn override_args<'a>(
    toml_text: &str,
    harness_keys: &[&str],
    overrides: impl IntoIterator<Item = &'a Override>,
    dir: &Path,
) -> Vec<String> {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let overrides: Vec<&Override> = overrides.into_iter().collect();
    let mut args = Vec::new();
    for key in table.keys() {
        if harness_keys.contains(&key.as_str()) {
            continue;
        }
        match overrides
            .iter()
            .find(|candidate| candidate.key == key.as_str())
        {
            Some(found) => args.extend([found.flag.to_owned(), (found.value)(dir)]),
            None => assert!(
                !is_location_key(key),
                "example key {key} names a host path or address: add an override for it"
            ),
        }
    }
    args
}

fn is_location_key(key: &str) -> bool {
    ["database", "upstream_ca_cert", "upstream_ca_key"].contains(&key)
        || ["_address", "_dir", "_path", "_socket"]
            .iter()
            .any(|suffix| key.ends_with(suffix))
}

/// Returns the text of `entry` in the ConfigMap `name` of a Kubernetes manifest.
fn config_map_entry(file: &str, name: &str, entry: &str) -> String {
    let path = deploy_dir().join("kubernetes").join(file);
    yaml_documents(&path)
        .iter()
        .find(|document| {
            text_at(document, &["kind"]) == Some("ConfigMap")
                && text_at(document, &["metadata", "name"]) == Some(name)
        })
        .and_then(|document| text_at(document, &["data", entry]).map(str::to_owned))
        .unwrap_or_else(|| panic!("{}: no ConfigMap {name} with {entry}", path.display()))
}

// === YAML ===

fn yaml_documents(path: &Path) -> Vec<YamlOwned> {
    YamlOwned::load_from_str(&read(path))
        .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()))
}

fn text_at<'a>(node: &'a YamlOwned, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .try_fold(node, |current, key| current.as_mapping_get(key))?
        .as_str()
}

/// Adds the names of the ConfigMaps and Secrets that volumes below `node` mount.
fn collect_mounted_names(node: &YamlOwned, names: &mut BTreeSet<String>) {
    if let Some(mapping) = node.as_mapping() {
        let config_map = text_at(node, &["configMap", "name"]);
        let secret = text_at(node, &["secret", "secretName"]);
        names.extend(config_map.into_iter().chain(secret).map(str::to_owned));
        for value in mapping.values() {
            collect_mounted_names(value, names);
        }
    } else if let Some(items) = node.as_sequence() {
        for item in items {
            collect_mounted_names(item, names);
        }
    }
}

// === Files ===

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Returns the files in `dir` whose name ends in `.extension`, sorted.
fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .{extension} file in {}",
        dir.display()
    );
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}
