//! Checks of the keys and values of an entry file, collecting every error with its line.

use std::collections::HashMap;

use signet_core::duration::{parse_ttl, ttl_seconds};
use signet_core::ids::{parse_spiffe_id, to_proto_id};
use signet_core::selector::Selector;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::types;

use super::{FileEntry, Key, LineError, Node, NodeValue};

/// Keys an entry may have, in the order the help lists them.
const ENTRY_KEYS: &[&str] = &[
    "spiffe_id",
    "parent_id",
    "selectors",
    "x509_svid_ttl",
    "jwt_svid_ttl",
    "dns_names",
    "hint",
    "expires_at",
];

/// Returns the entries under the top-level key `list_key` of `root`, adding every error found
/// to `errors`.
pub(super) fn entries(root: Node, list_key: &str, errors: &mut Vec<LineError>) -> Vec<FileEntry> {
    let NodeValue::Table(keys) = root.value else {
        errors.push(error(
            root.line,
            format!("expected a table with the key {list_key:?}"),
        ));
        return Vec::new();
    };
    let mut list = None;
    for key in keys {
        if key.name == list_key {
            list = Some(key.value);
        } else {
            errors.push(error(
                key.line,
                format!(
                    "unknown top-level key {:?}: the only key is {list_key:?}",
                    key.name
                ),
            ));
        }
    }
    let Some(list) = list else {
        errors.push(error(
            root.line,
            format!("missing {list_key:?}: list the entries, or write an empty list to have none"),
        ));
        return Vec::new();
    };
    let NodeValue::List(items) = list.value else {
        errors.push(error(
            list.line,
            format!("{list_key:?} must be a list of entries"),
        ));
        return Vec::new();
    };

    let entries: Vec<FileEntry> = items
        .into_iter()
        .filter_map(|item| entry(item, errors))
        .collect();
    check_duplicates(&entries, errors);
    entries
}

/// Builds one entry, or returns `None` after adding its errors.
fn entry(node: Node, errors: &mut Vec<LineError>) -> Option<FileEntry> {
    let NodeValue::Table(keys) = node.value else {
        errors.push(error(
            node.line,
            "an entry must be a table of keys".to_owned(),
        ));
        return None;
    };
    let line = keys.first().map_or(node.line, |key| key.line);
    let mut parsed = FileEntry {
        entry: types::Entry::default(),
        line,
        key_lines: HashMap::new(),
    };
    let errors_before = errors.len();
    for key in keys {
        set_key(&mut parsed, key, errors);
    }
    for required in ["spiffe_id", "parent_id", "selectors"] {
        if !parsed.key_lines.contains_key(required) {
            errors.push(error(line, format!("the entry has no {required:?}")));
        }
    }
    (errors.len() == errors_before).then_some(parsed)
}

/// Sets the field that `key` names, or adds an error.
fn set_key(parsed: &mut FileEntry, key: Key, errors: &mut Vec<LineError>) {
    let Some(name) = ENTRY_KEYS.iter().copied().find(|name| *name == key.name) else {
        let message = format!(
            "unknown key {:?}: an entry has the keys {}",
            key.name,
            ENTRY_KEYS.join(", ")
        );
        errors.push(error(key.line, message));
        return;
    };
    parsed.key_lines.insert(name, key.line);
    let entry = &mut parsed.entry;
    let result = match name {
        "spiffe_id" => spiffe_id_template(key.value, name).map(|id| entry.spiffe_id = Some(id)),
        "parent_id" => spiffe_id(key.value, name).map(|id| entry.parent_id = Some(id)),
        "selectors" => selectors(key.value, errors).map(|list| entry.selectors = list),
        "x509_svid_ttl" => ttl(key.value, name).map(|seconds| entry.x509_svid_ttl = seconds),
        "jwt_svid_ttl" => ttl(key.value, name).map(|seconds| entry.jwt_svid_ttl = seconds),
        "dns_names" => text_list(key.value, name, errors).map(|names| entry.dns_names = names),
        "hint" => text(key.value, name).map(|hint| entry.hint = hint),
        _ => expires_at(key.value).map(|time| entry.expires_at = time),
    };
    if let Err(failure) = result {
        errors.push(failure);
    }
}

fn spiffe_id(node: Node, name: &str) -> Result<types::Spiffeid, LineError> {
    let line = node.line;
    let text = text(node, name)?;
    let id = parse_spiffe_id(&text).map_err(|e| error(line, format!("invalid {name}: {e}")))?;
    Ok(to_proto_id(&id))
}

/// Parses an entry's SPIFFE ID, which may be a template with placeholders such as `{unix:uid}`.
fn spiffe_id_template(node: Node, name: &str) -> Result<types::Spiffeid, LineError> {
    let line = node.line;
    let text = text(node, name)?;
    let id =
        SpiffeIdTemplate::parse(&text).map_err(|e| error(line, format!("invalid {name}: {e}")))?;
    Ok(id.to_proto())
}

/// Parses every selector, adding an error for each invalid one.
fn selectors(node: Node, errors: &mut Vec<LineError>) -> Result<Vec<types::Selector>, LineError> {
    let line = node.line;
    let selectors = list(node, "selectors", errors, |item| {
        let line = item.line;
        let selector =
            Selector::parse(&text(item, "selectors")?).map_err(|e| error(line, e.to_string()))?;
        Ok(types::Selector {
            r#type: selector.kind().to_owned(),
            value: selector.value().to_owned(),
        })
    })?;
    if selectors.is_empty() {
        let message = "selectors is empty: list at least one, for example \"unix:uid:1000\"";
        return Err(error(line, message.to_owned()));
    }
    Ok(selectors)
}

/// Returns the items of a list of strings.
fn text_list(
    node: Node,
    name: &str,
    errors: &mut Vec<LineError>,
) -> Result<Vec<String>, LineError> {
    list(node, name, errors, |item| text(item, name))
}

/// Converts every item of a list. When items fail, the error of the last one is returned and
/// those of the others are added to `errors`, so that each is reported once.
fn list<T>(
    node: Node,
    name: &str,
    errors: &mut Vec<LineError>,
    convert: impl Fn(Node) -> Result<T, LineError>,
) -> Result<Vec<T>, LineError> {
    let NodeValue::List(items) = node.value else {
        return Err(error(
            node.line,
            format!("{name} must be a list of strings"),
        ));
    };
    let mut values = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for item in items {
        match convert(item) {
            Ok(value) => values.push(value),
            Err(failure) => failures.push(failure),
        }
    }
    match failures.pop() {
        None => Ok(values),
        Some(last) => {
            errors.extend(failures);
            Err(last)
        }
    }
}

fn text(node: Node, name: &str) -> Result<String, LineError> {
    match node.value {
        NodeValue::Text(text) => Ok(text),
        _ => Err(error(
            node.line,
            format!("{name} must be a string, not {}", kind(&node.value)),
        )),
    }
}

/// Accepts seconds as a number, or text with a unit such as "1h".
fn ttl(node: Node, name: &str) -> Result<i32, LineError> {
    let invalid = |detail: String| error(node.line, format!("invalid {name}: {detail}"));
    match &node.value {
        NodeValue::Integer(seconds) => i32::try_from(*seconds)
            .map_err(|_| invalid(format!("{seconds} seconds is out of range"))),
        NodeValue::Text(text) => parse_ttl(text)
            .and_then(ttl_seconds)
            .map_err(|e| invalid(format!("{text:?}: {e}"))),
        other => Err(invalid(format!(
            "expected seconds or text such as \"1h\", not {}",
            kind(other)
        ))),
    }
}

/// Accepts Unix seconds, or an RFC 3339 time such as "2027-01-01T00:00:00Z".
fn expires_at(node: Node) -> Result<i64, LineError> {
    let invalid = |detail: String| error(node.line, format!("invalid expires_at: {detail}"));
    match &node.value {
        NodeValue::Integer(seconds) => Ok(*seconds),
        NodeValue::Text(text) => {
            let time = humantime::parse_rfc3339(text)
                .map_err(|e| invalid(format!("{text:?} is not an RFC 3339 time ({e})")))?;
            Ok(crate::api::unix_seconds(time))
        }
        other => Err(invalid(format!(
            "expected Unix seconds or an RFC 3339 time, not {}",
            kind(other)
        ))),
    }
}

/// Rejects two entries with the same SPIFFE ID, parent ID and set of selectors, naming both lines.
fn check_duplicates(entries: &[FileEntry], errors: &mut Vec<LineError>) {
    let mut seen: HashMap<(String, String, Vec<String>), usize> = HashMap::new();
    for entry in entries {
        let identity = identity(&entry.entry);
        if let Some(first) = seen.insert(identity, entry.line) {
            errors.push(error(
                entry.line,
                format!(
                    "the entry repeats the one on line {first}: entries with the same spiffe_id, \
                     parent_id and selectors are the same entry"
                ),
            ));
        }
    }
}

fn identity(entry: &types::Entry) -> (String, String, Vec<String>) {
    let id = |id: Option<&types::Spiffeid>| {
        id.map(|id| format!("{}{}", id.trust_domain, id.path))
            .unwrap_or_default()
    };
    let mut selectors: Vec<String> = entry
        .selectors
        .iter()
        .map(|selector| format!("{}:{}", selector.r#type, selector.value))
        .collect();
    selectors.sort();
    selectors.dedup();
    (
        id(entry.spiffe_id.as_ref()),
        id(entry.parent_id.as_ref()),
        selectors,
    )
}

fn kind(value: &NodeValue) -> &'static str {
    match value {
        NodeValue::Integer(_) => "a number",
        NodeValue::List(_) => "a list",
        NodeValue::Table(_) => "a table",
        NodeValue::Text(_) => "a string",
        NodeValue::Other(kind) => kind,
    }
}

fn error(line: usize, message: String) -> LineError {
    LineError { line, message }
}
