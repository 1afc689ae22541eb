//! Policy files in TOML or YAML, chosen by the extension, with every error reported on its line.
//!
//! ```toml
//! mode = "enforce"                   # or "shadow"; optional, "enforce" by default
//!
//! [[rule]]
//! name = "billing-batch reads orders" # optional; logs show "rule #N" without it
//! effect = "allow"                    # "allow" or "deny"
//! peer = "spiffe://example.org/gateway"            # a pattern or a list of them
//! caller = "spiffe://example.org/billing-batch"    # a pattern or a list of them
//! methods = ["GET"]
//! paths = ["/orders/*"]
//!
//! [[rule]]
//! effect = "deny"
//! methods = ["DELETE"]
//! ```
//!
//! In YAML the rules are the list under the top-level key `rules`. The extensions are `.toml`,
//! `.yaml` and `.yml`. Every key but `effect` is optional, `grpc` takes
//! `package.Service/Method` entries, and unknown keys are errors.

use std::fmt;
use std::path::{Path, PathBuf};

use super::tree::{self, Key, Node, NodeValue};
use super::{Effect, Mode, Policy, PolicyBuilder, RuleBuilder, grpc_path, http_method};
use crate::pattern::{PathPattern, SpiffeIdPattern};

/// Error from reading a policy file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read policy file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid; every error found has its line.
    #[error("{}", Invalid { path, errors })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The errors, ordered by line.
        errors: Vec<LineError>,
    },
}

/// An error on one line of a policy file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LineError {
    /// The line, from 1.
    pub line: usize,
    /// The defect and its fix.
    pub message: String,
}

/// Formats the errors of an invalid file as `file:line: message` lines.
struct Invalid<'a> {
    path: &'a Path,
    errors: &'a [LineError],
}

/// Keys a rule may have.
const RULE_KEYS: &[&str] = &[
    "name", "effect", "peer", "caller", "methods", "paths", "grpc",
];

// === impl Policy ===

impl Policy {
    /// Reads a policy file, TOML or YAML by its extension.
    ///
    /// # Errors
    ///
    /// [`PolicyFileError::Read`] when the file cannot be read, and
    /// [`PolicyFileError::Invalid`] with every error found and its line.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let policy = signet_sdk::policy::Policy::from_file("/etc/orders/policy.toml")?;
    /// # Ok::<(), signet_sdk::policy::PolicyFileError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a policy file, TOML or YAML by the extension of `path`, which also
    /// names the file in errors.
    ///
    /// # Errors
    ///
    /// [`PolicyFileError::Invalid`] with every error found and its line.
    ///
    /// # Examples
    ///
    /// ```
    /// use signet_sdk::policy::{Mode, Policy};
    ///
    /// let yaml = "mode: shadow\nrules:\n  - effect: allow\n    peer: spiffe://example.org/web\n";
    /// let policy = Policy::parse("policy.yaml", yaml)?;
    /// assert_eq!(policy.mode(), Mode::Shadow);
    /// # Ok::<(), signet_sdk::policy::PolicyFileError>(())
    /// ```
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, PolicyFileError> {
        let path = path.as_ref();
        let invalid = |errors: Vec<LineError>| PolicyFileError::Invalid {
            path: path.to_owned(),
            errors,
        };
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        let (root, list_key) = match extension.as_deref() {
            Some("toml") => (tree::parse_toml(text), "rule"),
            Some("yaml" | "yml") => (tree::parse_yaml(text), "rules"),
            _ => (
                Err(error(
                    1,
                    "unknown policy file format: name the file *.toml, *.yaml or *.yml",
                )),
                "",
            ),
        };
        let root = root.map_err(|line_error| invalid(vec![line_error]))?;

        let mut errors = Vec::new();
        let builder = policy(root, list_key, &mut errors);
        errors.sort_by_key(|line_error| line_error.line);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        // Every value was checked above with its line, so the builder finds nothing new; its
        // error is still reported rather than assumed away.
        builder.build().map_err(|policy_error| {
            invalid(vec![error(
                1,
                format!("{policy_error}: {}", policy_error.error),
            )])
        })
    }
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        let noun = if count == 1 { "error" } else { "errors" };
        write!(
            f,
            "invalid policy file {} ({count} {noun})",
            self.path.display()
        )?;
        for line_error in self.errors {
            let path = self.path.display();
            write!(f, "\n{path}:{}: {}", line_error.line, line_error.message)?;
        }
        Ok(())
    }
}

/// Reads the top-level keys: `mode` and the list of rules under `list_key`.
fn policy(root: Node, list_key: &str, errors: &mut Vec<LineError>) -> PolicyBuilder {
    let mut builder = Policy::builder();
    let NodeValue::Table(keys) = root.value else {
        errors.push(error(
            root.line,
            "expected a table of keys at the top level",
        ));
        return builder;
    };
    let mut has_rules = false;
    for key in keys {
        match key.name.as_str() {
            "mode" => match text(&key.value).as_deref() {
                Some("enforce") => builder = builder.mode(Mode::Enforce),
                Some("shadow") => builder = builder.mode(Mode::Shadow),
                _ => errors.push(error(
                    key.value.line,
                    "invalid mode: write \"enforce\" or \"shadow\"",
                )),
            },
            name if name == list_key => {
                has_rules = true;
                let NodeValue::List(items) = key.value.value else {
                    errors.push(error(
                        key.line,
                        format!("{list_key:?} must be a list of rules"),
                    ));
                    continue;
                };
                for item in items {
                    if let Some(rule) = rule(item, errors) {
                        builder = builder.rule(rule);
                    }
                }
            }
            other => errors.push(error(
                key.line,
                format!("unknown top-level key {other:?}: the keys are \"mode\" and {list_key:?}"),
            )),
        }
    }
    if !has_rules {
        errors.push(error(
            root.line,
            format!("missing {list_key:?}: without rules the policy denies every request"),
        ));
    }
    builder
}

/// Reads one rule, or returns `None` after adding its errors.
fn rule(node: Node, errors: &mut Vec<LineError>) -> Option<RuleBuilder> {
    let NodeValue::Table(keys) = node.value else {
        errors.push(error(node.line, "a rule must be a table of keys"));
        return None;
    };
    let errors_before = errors.len();
    let effect = keys.iter().find(|key| key.name == "effect");
    let effect = match effect.map(|key| (key.value.line, text(&key.value))) {
        Some((_, Some(value))) if value == "allow" => Effect::Allow,
        Some((_, Some(value))) if value == "deny" => Effect::Deny,
        Some((line, _)) => {
            errors.push(error(line, "invalid effect: write \"allow\" or \"deny\""));
            return None;
        }
        None => {
            errors.push(error(
                node.line,
                "the rule has no \"effect\": add effect = \"allow\" or \"deny\"",
            ));
            return None;
        }
    };

    let names_identity = keys
        .iter()
        .any(|key| key.name == "peer" || key.name == "caller");
    let mut rule = RuleBuilder::new(effect);
    for key in keys {
        rule = rule_key(rule, key, errors);
    }
    if effect == Effect::Allow && !names_identity {
        let message = "an allow rule must name a \"peer\" or a \"caller\" \
                       (use \"spiffe://<trust domain>/**\" for all)";
        errors.push(error(node.line, message));
    }
    (errors.len() == errors_before).then_some(rule)
}

/// Checks one key of a rule and adds its values to `rule`.
fn rule_key(mut rule: RuleBuilder, key: Key, errors: &mut Vec<LineError>) -> RuleBuilder {
    let Key { name, line, value } = key;
    match name.as_str() {
        "effect" => {}
        "name" => match text(&value) {
            Some(name) => rule = rule.name(name),
            None => errors.push(error(
                value.line,
                format!("\"name\" must be text, not {}", kind(&value.value)),
            )),
        },
        "peer" | "caller" => {
            for (line, id) in texts(&name, value, errors) {
                match SpiffeIdPattern::parse(&id) {
                    Ok(_) if name == "peer" => rule = rule.peer(id),
                    Ok(_) => rule = rule.caller(id),
                    Err(pattern_error) => errors.push(error(line, pattern_error.to_string())),
                }
            }
        }
        "methods" => {
            for (line, method) in texts(&name, value, errors) {
                match http_method(&method) {
                    Ok(_) => rule = rule.methods([method]),
                    Err(rule_error) => errors.push(error(line, rule_error.to_string())),
                }
            }
        }
        "paths" => {
            for (line, path) in texts(&name, value, errors) {
                match PathPattern::parse(&path) {
                    Ok(_) => rule = rule.paths([path]),
                    Err(pattern_error) => errors.push(error(line, pattern_error.to_string())),
                }
            }
        }
        "grpc" => {
            for (line, method) in texts(&name, value, errors) {
                match grpc_path(&method) {
                    Ok(_) => rule = rule.grpc([method]),
                    Err(rule_error) => errors.push(error(line, rule_error.to_string())),
                }
            }
        }
        other => errors.push(error(
            line,
            format!(
                "unknown key {other:?}: a rule has the keys {}",
                RULE_KEYS.join(", ")
            ),
        )),
    }
    rule
}

/// Returns the text of a text value.
fn text(node: &Node) -> Option<String> {
    match &node.value {
        NodeValue::Text(text) => Some(text.clone()),
        _ => None,
    }
}

/// Returns the texts of a value that is one text or a list of texts, each with its line.
fn texts(key: &str, node: Node, errors: &mut Vec<LineError>) -> Vec<(usize, String)> {
    let items = match node.value {
        NodeValue::List(items) if items.is_empty() => {
            let message = format!(
                "{key:?} is an empty list, which would match anything: list at least one value, \
                 or remove the key"
            );
            errors.push(error(node.line, message));
            return Vec::new();
        }
        NodeValue::List(items) => items,
        NodeValue::Text(text) => return vec![(node.line, text)],
        _ => vec![node],
    };
    items
        .into_iter()
        .filter_map(|item| match item.value {
            NodeValue::Text(text) => Some((item.line, text)),
            other => {
                let message = format!(
                    "{key:?} must be text or a list of texts, not {}",
                    kind(&other)
                );
                errors.push(error(item.line, message));
                None
            }
        })
        .collect()
}

/// Names the type of a value for error messages.
fn kind(value: &NodeValue) -> &'static str {
    match value {
        NodeValue::List(_) => "a list",
        NodeValue::Table(_) => "a table",
        NodeValue::Text(_) => "text",
        NodeValue::Other(kind) => kind,
    }
}

fn error(line: usize, message: impl Into<String>) -> LineError {
    LineError {
        line,
        message: message.into(),
    }
}
