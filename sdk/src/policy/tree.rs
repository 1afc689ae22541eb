//! TOML and YAML text turned into one tree of values with the line of each, so that policy
//! errors can name their line in either format.
//!
//! NOTE: `signet-server entry apply` reads its entry files into a similar tree in its
//! `cli::entry_file` module. Both could share one module in `signet-core`.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use toml_edit::{ImDocument, Item, TableLike, Value};

use super::file::LineError;

/// A value and the line (from 1) it starts on.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) line: usize,
    pub(super) value: NodeValue,
}

/// The kinds of value a policy file uses.
#[derive(Clone, Debug)]
pub(super) enum NodeValue {
    List(Vec<Node>),
    Table(Vec<Key>),
    Text(String),
    /// Any other value (number, boolean, null), named by its type for error messages.
    Other(&'static str),
}

/// A key of a table, with its line and value.
#[derive(Clone, Debug)]
pub(super) struct Key {
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) value: Node,
}

/// Parses TOML text.
///
/// # Errors
///
/// The parser's error at the line where it stopped.
pub(super) fn parse_toml(text: &str) -> Result<Node, LineError> {
    let lines = LineStarts::new(text);
    let document = ImDocument::parse(text).map_err(|error| LineError {
        line: lines.line_of(error.span().map(|span| span.start)),
        message: format!("invalid TOML: {}", error.message().trim_end()),
    })?;
    Ok(Node {
        line: 1,
        value: toml_table(document.as_table(), &lines),
    })
}

/// Parses YAML text, which must hold exactly one document.
///
/// # Errors
///
/// The parser's error at the line where it stopped, or an error for no document or several.
pub(super) fn parse_yaml(text: &str) -> Result<Node, LineError> {
    let mut documents = MarkedYamlOwned::load_from_str(text).map_err(|error| LineError {
        line: error.marker().line(),
        message: format!("invalid YAML: {}", error.info()),
    })?;
    let Some(document) = documents.pop() else {
        return Err(LineError {
            line: 1,
            message: "the file is empty: write `rules:` with a list of rules".to_owned(),
        });
    };
    if !documents.is_empty() {
        return Err(LineError {
            line: document.span.start.line(),
            message: "the file contains several YAML documents: keep only one".to_owned(),
        });
    }
    Ok(yaml_node(document))
}

fn toml_table(table: &dyn TableLike, lines: &LineStarts) -> NodeValue {
    let keys = table
        .iter()
        .filter_map(|(name, _)| table.get_key_value(name))
        .map(|(key, item)| {
            let line = lines.line_of(key.span().map(|span| span.start));
            Key {
                name: key.get().to_owned(),
                line,
                value: toml_item(item, line, lines),
            }
        })
        .collect();
    NodeValue::Table(keys)
}

/// Converts an item; `key_line` is the line of items that carry no span of their own.
fn toml_item(item: &Item, key_line: usize, lines: &LineStarts) -> Node {
    let line_or_key = |span: Option<std::ops::Range<usize>>| {
        span.map_or(key_line, |span| lines.line_of(Some(span.start)))
    };
    match item {
        Item::Value(value) => toml_value(value, lines),
        Item::Table(table) => Node {
            line: line_or_key(table.span()),
            value: toml_table(table, lines),
        },
        Item::ArrayOfTables(tables) => Node {
            line: key_line,
            value: NodeValue::List(
                tables
                    .iter()
                    .map(|table| Node {
                        line: line_or_key(table.span()),
                        value: toml_table(table, lines),
                    })
                    .collect(),
            ),
        },
        Item::None => Node {
            line: key_line,
            value: NodeValue::Other("nothing"),
        },
    }
}

fn toml_value(value: &Value, lines: &LineStarts) -> Node {
    let converted = match value {
        Value::String(text) => NodeValue::Text(text.value().clone()),
        Value::Array(items) => {
            NodeValue::List(items.iter().map(|item| toml_value(item, lines)).collect())
        }
        Value::InlineTable(table) => toml_table(table, lines),
        Value::Integer(_) => NodeValue::Other("integer"),
        Value::Float(_) => NodeValue::Other("float"),
        Value::Boolean(_) => NodeValue::Other("boolean"),
        Value::Datetime(_) => NodeValue::Other("date-time"),
    };
    Node {
        line: lines.line_of(value.span().map(|span| span.start)),
        value: converted,
    }
}

fn yaml_node(yaml: MarkedYamlOwned) -> Node {
    let line = yaml.span.start.line();
    let value = match yaml.data {
        YamlDataOwned::Value(ScalarOwned::String(text)) => NodeValue::Text(text),
        YamlDataOwned::Value(ScalarOwned::Integer(_)) => NodeValue::Other("integer"),
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => NodeValue::Other("float"),
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => NodeValue::Other("boolean"),
        YamlDataOwned::Value(ScalarOwned::Null) => NodeValue::Other("null"),
        YamlDataOwned::Sequence(items) => {
            NodeValue::List(items.into_iter().map(yaml_node).collect())
        }
        YamlDataOwned::Mapping(pairs) => NodeValue::Table(
            pairs
                .into_iter()
                .map(|(name, value)| Key {
                    line: name.span.start.line(),
                    name: match name.data {
                        YamlDataOwned::Value(ScalarOwned::String(text)) => text,
                        _ => "(a key that is not text)".to_owned(),
                    },
                    value: yaml_node(value),
                })
                .collect(),
        ),
        YamlDataOwned::Tagged(_, inner) => return yaml_node(*inner),
        YamlDataOwned::Alias(_) => NodeValue::Other("alias"),
        YamlDataOwned::Representation(..) | YamlDataOwned::BadValue => {
            NodeValue::Other("invalid value")
        }
    };
    Node { line, value }
}

/// Byte offsets where the lines of a text start, to turn parser offsets into line numbers.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let newlines = text.match_indices('\n').map(|(index, _)| index + 1);
        Self(std::iter::once(0).chain(newlines).collect())
    }

    /// Returns the line (from 1) of byte `offset`, or 1 when the parser gave no offset.
    fn line_of(&self, offset: Option<usize>) -> usize {
        offset.map_or(1, |offset| {
            self.0.partition_point(|&start| start <= offset).max(1)
        })
    }
}
