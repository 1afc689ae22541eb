//! Tests of entry files in both formats.

use std::path::Path;

use super::*;

const AGENT: &str = "spiffe://example.org/spire/agent/join_token/abc";

fn parse(name: &str, text: &str) -> Result<Vec<FileEntry>, EntryFileErrors> {
    parse_entry_file(Path::new(name), text)
}

/// Returns the (line, message) pairs of a rejected file.
fn errors(name: &str, text: &str) -> Vec<(usize, String)> {
    let rejected = parse(name, text).unwrap_err();
    rejected
        .errors()
        .iter()
        .map(|error| (error.line, error.message.clone()))
        .collect()
}

fn selector_texts(entry: &types::Entry) -> Vec<String> {
    entry
        .selectors
        .iter()
        .map(|selector| format!("{}:{}", selector.r#type, selector.value))
        .collect()
}

#[test]
fn toml_file_gives_every_field() {
    let text = format!(
        r#"
[[entry]]
spiffe_id = "spiffe://example.org/web"
parent_id = "{AGENT}"
selectors = ["unix:uid:1000", "unix:gid:50"]
x509_svid_ttl = "1h"
jwt_svid_ttl = 300
dns_names = ["web.example.org"]
hint = "web"
expires_at = 2027-01-15T08:00:00Z

[[entry]]
spiffe_id = "spiffe://example.org/db"
parent_id = "{AGENT}"
selectors = ["unix:uid:1001"]
"#
    );

    let entries = parse("entries.toml", &text).unwrap();

    assert_eq!(entries.len(), 2);
    let web = &entries[0].entry;
    assert_eq!(entries[0].line, 3);
    assert_eq!(web.spiffe_id.as_ref().unwrap().path, "/web");
    assert_eq!(
        web.parent_id.as_ref().unwrap().path,
        "/spire/agent/join_token/abc"
    );
    assert_eq!(selector_texts(web), ["unix:uid:1000", "unix:gid:50"]);
    assert_eq!(web.x509_svid_ttl, 3600);
    assert_eq!(web.jwt_svid_ttl, 300);
    assert_eq!(web.dns_names, ["web.example.org"]);
    assert_eq!(web.hint, "web");
    assert_eq!(web.expires_at, 1_800_000_000);
    assert_eq!(entries[1].line, 13);
    assert_eq!(entries[1].entry.x509_svid_ttl, 0);
}

#[test]
fn yaml_file_gives_every_field() {
    let text = format!(
        r#"entries:
  - spiffe_id: spiffe://example.org/web
    parent_id: {AGENT}
    selectors: ["unix:uid:1000"]
    x509_svid_ttl: 10m
    jwt_svid_ttl: 300
    dns_names:
      - web.example.org
    hint: web
    expires_at: "2027-01-15T08:00:00Z"
  - spiffe_id: spiffe://example.org/db
    parent_id: {AGENT}
    selectors:
      - unix:uid:1001
"#
    );

    let entries = parse("entries.yml", &text).unwrap();

    assert_eq!(entries.len(), 2);
    let web = &entries[0].entry;
    assert_eq!(entries[0].line, 2);
    assert_eq!(web.spiffe_id.as_ref().unwrap().path, "/web");
    assert_eq!(selector_texts(web), ["unix:uid:1000"]);
    assert_eq!(web.x509_svid_ttl, 600);
    assert_eq!(web.jwt_svid_ttl, 300);
    assert_eq!(web.dns_names, ["web.example.org"]);
    assert_eq!(web.hint, "web");
    assert_eq!(web.expires_at, 1_800_000_000);
    assert_eq!(entries[1].line, 11);
    assert_eq!(selector_texts(&entries[1].entry), ["unix:uid:1001"]);
}

#[test]
fn empty_lists_give_no_entries() {
    assert!(parse("a.toml", "entry = []\n").unwrap().is_empty());
    assert!(parse("a.yaml", "entries: []\n").unwrap().is_empty());
}

#[test]
fn toml_unknown_key_names_its_line() {
    let text = format!(
        "[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\nparent_id = \"{AGENT}\"\n\
         selectors = [\"unix:uid:1\"]\nx509_ttl = \"1h\"\n"
    );

    let found = errors("a.toml", &text);

    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 5);
    assert!(
        found[0].1.contains("unknown key \"x509_ttl\""),
        "{}",
        found[0].1
    );
}

#[test]
fn yaml_unknown_key_names_its_line() {
    let text = format!(
        "entries:\n  - spiffe_id: spiffe://example.org/web\n    parent_id: {AGENT}\n    \
         selectors: [unix:uid:1]\n    admin: true\n"
    );

    let found = errors("a.yaml", &text);

    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 5);
    assert!(
        found[0].1.contains("unknown key \"admin\""),
        "{}",
        found[0].1
    );
}

#[test]
fn every_error_of_the_file_is_reported() {
    let text = format!(
        r#"[[entry]]
spiffe_id = "spiffe://example.org/web"
parent_id = "{AGENT}"
selectors = ["unix:uid:abc", "unix:gid:1", "k8s:ns:default"]

[[entry]]
spiffe_id = "not-an-id"
parent_id = "{AGENT}"
selectors = ["unix:uid:1"]
x509_svid_ttl = "forever"

[[entry]]
parent_id = "{AGENT}"
selectors = ["unix:uid:1"]
"#
    );

    let found = errors("a.toml", &text);
    let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();

    // Both bad selectors are on line 4, and the third entry starts on line 13.
    assert_eq!(lines, [4, 4, 7, 10, 13], "{found:?}");
    assert!(found[2].1.contains("invalid spiffe_id"), "{}", found[2].1);
    assert!(
        found[3].1.contains("invalid x509_svid_ttl"),
        "{}",
        found[3].1
    );
    assert!(found[4].1.contains("no \"spiffe_id\""), "{}", found[4].1);
}

#[test]
fn yaml_selector_error_names_item_line() {
    let text = format!(
        "entries:\n  - spiffe_id: spiffe://example.org/web\n    parent_id: {AGENT}\n    \
         selectors:\n      - unix:uid:1\n      - unix:uid:-1\n"
    );

    let found = errors("a.yaml", &text);

    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 6);
    assert!(found[0].1.contains("unix:uid:-1"), "{}", found[0].1);
}

#[test]
fn wrong_value_types_are_rejected() {
    let text = format!(
        "entries:\n  - spiffe_id: 12\n    parent_id: {AGENT}\n    selectors: unix:uid:1\n    \
         hint: true\n"
    );

    let found = errors("a.yaml", &text);
    let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();

    assert_eq!(lines, [2, 4, 5], "{found:?}");
    assert!(
        found[0].1.contains("must be a string, not a number"),
        "{}",
        found[0].1
    );
    assert!(found[1].1.contains("must be a list"), "{}", found[1].1);
}

#[test]
fn duplicate_entries_name_both_lines() {
    let entry = format!(
        "[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\nparent_id = \"{AGENT}\"\n\
         selectors = [\"unix:uid:1\", \"unix:gid:2\"]\n"
    );
    let text = format!(
        "{entry}{}",
        entry.replace(
            "\"unix:uid:1\", \"unix:gid:2\"",
            "\"unix:gid:2\", \"unix:uid:1\""
        )
    );

    let found = errors("a.toml", &text);

    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 6);
    assert!(found[0].1.contains("line 2"), "{}", found[0].1);
}

#[test]
fn top_level_must_hold_the_list() {
    let cases = [
        ("a.toml", "", 1, "missing \"entry\""),
        (
            "a.toml",
            "entry = []\nentries = []\n",
            2,
            "unknown top-level key \"entries\"",
        ),
        (
            "a.toml",
            "entry = \"web\"\n",
            1,
            "must be a list of entries",
        ),
        ("a.yaml", "", 1, "the file is empty"),
        ("a.yaml", "- spiffe_id: x\n", 1, "expected a table"),
        (
            "a.yaml",
            "entries: []\n---\nentries: []\n",
            3,
            "several YAML documents",
        ),
        ("a.json", "{}", 1, "unknown file format"),
    ];
    for (name, text, line, expected) in cases {
        let found = errors(name, text);
        assert_eq!(found.len(), 1, "{name} {text:?}: {found:?}");
        assert_eq!(found[0].0, line, "{name} {text:?}");
        assert!(
            found[0].1.contains(expected),
            "{name} {text:?}: {}",
            found[0].1
        );
    }
}

#[test]
fn syntax_errors_name_their_line() {
    let toml = errors("a.toml", "entry = []\n[[entry]\n");
    assert_eq!(toml[0].0, 2, "{toml:?}");
    assert!(toml[0].1.starts_with("invalid TOML"), "{}", toml[0].1);

    let yaml = errors("a.yaml", "entries:\n  - spiffe_id: [unclosed\n");
    assert!(yaml[0].1.starts_with("invalid YAML"), "{}", yaml[0].1);
    assert!(yaml[0].0 >= 2, "{yaml:?}");
}

#[test]
fn server_checks_name_the_key_line() {
    let text = format!(
        "[[entry]]\nspiffe_id = \"spiffe://other.org/web\"\nparent_id = \"{AGENT}\"\n\
         selectors = [\"unix:uid:1\"]\n\n[[entry]]\nspiffe_id = \"spiffe://example.org/db\"\n\
         parent_id = \"{AGENT}\"\nselectors = [\"unix:uid:1\"]\ndns_names = [\"bad name\"]\n"
    );
    let entries = parse("a.toml", &text).unwrap();
    let trust_domain = TrustDomain::new("example.org").unwrap();

    let rejected = check_entries(Path::new("a.toml"), &entries, &trust_domain).unwrap_err();
    let lines: Vec<usize> = rejected.errors().iter().map(|error| error.line).collect();

    assert_eq!(lines, [2, 10]);
    let message = rejected.to_string();
    assert!(
        message.starts_with("invalid entry file a.toml (2 errors), nothing changed"),
        "{message}"
    );
    assert!(
        message.contains("\na.toml:2: spiffe_id spiffe://other.org/web is not in trust domain"),
        "{message}"
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let toml = format!(
        "[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nspiffe_id = \"spiffe://example.org/b\"\n\
         parent_id = \"{AGENT}\"\nselectors = [\"unix:uid:1\"]\n"
    );
    let yaml = format!(
        "entries:\n  - spiffe_id: spiffe://example.org/a\n    spiffe_id: spiffe://example.org/b\n    \
         parent_id: {AGENT}\n    selectors: [unix:uid:1]\n"
    );

    let toml_errors = errors("a.toml", &toml);
    let yaml_errors = errors("a.yaml", &yaml);

    assert_eq!(toml_errors[0].0, 3, "{toml_errors:?}");
    assert_eq!(yaml_errors[0].0, 3, "{yaml_errors:?}");
}

#[test]
fn line_index_numbers_lines_from_one() {
    let lines = LineIndex::new("a\nbc\n\nd");

    let found: Vec<usize> = [0, 1, 2, 4, 5, 6, 99]
        .into_iter()
        .map(|offset| lines.line_at(offset))
        .collect();

    assert_eq!(found, [1, 1, 2, 2, 3, 4, 4]);
}

#[test]
fn format_extension_ignores_case() {
    let cases = [
        ("a.toml", Some(EntryFileFormat::Toml)),
        ("A.TOML", Some(EntryFileFormat::Toml)),
        ("a.Yml", Some(EntryFileFormat::Yaml)),
        ("a.yaml", Some(EntryFileFormat::Yaml)),
        ("a.json", None),
        ("zero", None),
    ];
    for (name, format) in cases {
        assert_eq!(EntryFileFormat::of(Path::new(name)), format, "{name}");
    }
}

#[test]
fn spiffe_id_template_is_read_as_written() {
    let text = format!(
        r#"
[[entry]]
spiffe_id = "spiffe://example.org/unix/uid/{{unix:uid}}"
parent_id = "{AGENT}"
selectors = ["unix:gid:0"]
"#
    );

    let entries = parse("entries.toml", &text).unwrap();

    let spiffe_id = entries[0].entry.spiffe_id.as_ref().unwrap();
    assert_eq!(spiffe_id.path, "/unix/uid/{unix:uid}");
}

#[test]
fn malformed_template_names_its_line() {
    let text = r#"
[[entry]]
spiffe_id = "spiffe://example.org/uid-{unix:uid}"
parent_id = "spiffe://example.org/node/{unix:uid}"
selectors = ["unix:gid:0"]
"#;

    let errors = errors("entries.toml", text);

    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert!(errors[0].1.contains("uid-{unix:uid}"), "{errors:?}");
    assert_eq!(errors[1].0, 4);
}
