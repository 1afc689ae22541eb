//! Files of registration entries for `entry apply`, in TOML or YAML.
//!
//! Both formats list entries with the keys of the `entry create` flags in snake_case:
//!
//! ```toml
//! [[entry]]
//! spiffe_id = "spiffe://example.org/web"
//! parent_id = "spiffe://example.org/spire/agent/join_token/abc"
//! selectors = ["unix:uid:1000"]
//! x509_svid_ttl = "1h"
//! ```
//!
//! In YAML the list is the top-level key `entries`. The extension chooses the format: `.toml`,
//! or `.yaml` and `.yml`. The keys `spiffe_id`, `parent_id` and `selectors` are required. The
//! optional keys are `x509_svid_ttl` and `jwt_svid_ttl` (seconds, or text with a unit such as
//! "1h"), `dns_names`, `hint` and `expires_at` (Unix seconds, or an RFC 3339 time). Unknown keys
//! are errors. The top-level key must be present, so a file that lists no entries states it with
//! `entry = []` or `entries: []`.
//!
//! A file is read in two steps that each report every error they find with its line number:
//! the parser turns the text into a tree of values with lines ([`Node`]), then [`fields`] checks
//! each value. A syntax error stops the parser, so only the first one is reported.

mod fields;
mod toml_file;
mod yaml_file;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use signet_proto::spire::api::types;
use spiffe::TrustDomain;

use crate::model::{EntryError, RegistrationEntry};

/// One entry of a file, with the lines its keys are on.
#[derive(Clone, Debug)]
pub(super) struct FileEntry {
    /// The entry as the API takes it.
    pub(super) entry: types::Entry,
    /// Line of the entry's first key.
    pub(super) line: usize,
    /// Line of each key that the file sets.
    key_lines: HashMap<&'static str, usize>,
}

/// The errors of a rejected file, each with its line number.
#[derive(Debug, Eq, PartialEq)]
pub(super) struct EntryFileErrors {
    file: String,
    errors: Vec<LineError>,
}

/// An error on one line of a file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(super) struct LineError {
    /// Line number, starting at 1.
    pub(super) line: usize,
    /// Description of the defect and of the fix.
    pub(super) message: String,
}

/// A value of the file and the line it starts on.
#[derive(Clone, Debug)]
struct Node {
    line: usize,
    value: NodeValue,
}

/// The kinds of value an entry file can contain.
#[derive(Clone, Debug)]
enum NodeValue {
    Integer(i64),
    List(Vec<Node>),
    Table(Vec<Key>),
    Text(String),
    /// Any other value (boolean, float, null), named by its type for the error message.
    Other(&'static str),
}

/// A key of a table and its value.
#[derive(Clone, Debug)]
struct Key {
    name: String,
    line: usize,
    value: Node,
}

/// The format of an entry file, named by its extension.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum EntryFileFormat {
    Toml,
    Yaml,
}

impl EntryFileFormat {
    /// Returns the format `path`'s extension names, in any letter case.
    pub(super) fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }
}

/// The error for a file whose extension names no supported format.
pub(super) const UNKNOWN_FORMAT: &str =
    "unknown file format: name the file *.toml, *.yaml or *.yml";

/// Reads the entries of a file whose format `path`'s extension names.
///
/// # Errors
///
/// Every error found, each with its line, or a single error when the extension is unknown or
/// the text is not valid TOML or YAML.
pub(super) fn parse_entry_file(path: &Path, text: &str) -> Result<Vec<FileEntry>, EntryFileErrors> {
    let file = path.display().to_string();
    let root = match EntryFileFormat::of(path) {
        Some(EntryFileFormat::Toml) => toml_file::parse(text).map(|root| (root, "entry")),
        Some(EntryFileFormat::Yaml) => yaml_file::parse(text).map(|root| (root, "entries")),
        None => Err(LineError {
            line: 1,
            message: UNKNOWN_FORMAT.to_owned(),
        }),
    };
    let (root, list_key) = root.map_err(|error| EntryFileErrors::new(&file, vec![error]))?;

    let mut errors = Vec::new();
    let entries = fields::entries(root, list_key, &mut errors);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(EntryFileErrors::new(&file, errors))
    }
}

/// Checks every entry as the server will, for the server's trust domain, so that an error
/// names its line before anything is sent.
///
/// # Errors
///
/// One error per invalid entry, on the line of the key at fault.
pub(super) fn check_entries(
    file: &Path,
    entries: &[FileEntry],
    trust_domain: &TrustDomain,
) -> Result<(), EntryFileErrors> {
    let errors: Vec<LineError> = entries
        .iter()
        .filter_map(|entry| {
            let error = RegistrationEntry::from_proto(entry.entry.clone(), trust_domain).err()?;
            Some(LineError {
                line: entry.line_of(&error),
                message: error.to_string(),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(EntryFileErrors::new(&file.display().to_string(), errors))
    }
}

// === impl FileEntry ===

impl FileEntry {
    /// Returns the line of the key that `error` is about, or of the entry.
    fn line_of(&self, error: &EntryError) -> usize {
        let key = match error {
            EntryError::InvalidSpiffeId(_) | EntryError::ReservedSpiffeId { .. } => "spiffe_id",
            EntryError::InvalidParentId(_) => "parent_id",
            EntryError::ForeignTrustDomain { field, .. }
            | EntryError::NegativeTtl { field, .. } => field,
            EntryError::MissingSelectors
            | EntryError::InvalidSelector(_)
            | EntryError::DuplicateSelector(_) => "selectors",
            EntryError::NegativeExpiry(_)
            | EntryError::ExpiryTooLate(_)
            | EntryError::ExpiryInPast { .. } => "expires_at",
            EntryError::InvalidDnsName(_) => "dns_names",
            EntryError::HintTooLong(_) => "hint",
            _ => return self.line,
        };
        self.key_lines.get(key).copied().unwrap_or(self.line)
    }
}

// === impl EntryFileErrors ===

impl EntryFileErrors {
    fn new(file: &str, mut errors: Vec<LineError>) -> Self {
        errors.sort_by_key(|error| error.line);
        Self {
            file: file.to_owned(),
            errors,
        }
    }

    /// Returns the errors, ordered by line.
    #[cfg(test)]
    pub(super) fn errors(&self) -> &[LineError] {
        &self.errors
    }
}

impl fmt::Display for EntryFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        let noun = if count == 1 { "error" } else { "errors" };
        write!(
            f,
            "invalid entry file {} ({count} {noun}), nothing changed",
            self.file
        )?;
        for error in &self.errors {
            write!(f, "\n{}:{}: {}", self.file, error.line, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for EntryFileErrors {}

/// The byte offsets where the lines of a text start, to turn parser offsets into line numbers
/// in logarithmic time: a file of thousands of entries has tens of thousands of spans.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, byte)| byte == b'\n')
            .map(|(index, _)| index + 1);
        Self {
            starts: std::iter::once(0).chain(newlines).collect(),
        }
    }

    /// Returns the 1-based line of byte `offset`.
    fn line_at(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

#[cfg(test)]
mod tests;
