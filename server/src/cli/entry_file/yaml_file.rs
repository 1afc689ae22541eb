//! YAML entry files: the document becomes a [`Node`] tree with the line of every key and value.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use super::{Key, LineError, Node, NodeValue};

/// Parses YAML text, which must contain exactly one document, into a tree.
///
/// # Errors
///
/// The parser's error at the line where it stopped, or an error when the text contains no
/// document or several.
pub(super) fn parse(text: &str) -> Result<Node, LineError> {
    let mut documents = MarkedYamlOwned::load_from_str(text).map_err(|error| LineError {
        line: error.marker().line(),
        message: format!("invalid YAML: {}", error.info()),
    })?;
    match (documents.pop(), documents.is_empty()) {
        (Some(document), true) => Ok(node(document)),
        (None, _) => Err(LineError {
            line: 1,
            message: "the file is empty: write `entries:` with a list of entries".to_owned(),
        }),
        (Some(document), false) => Err(LineError {
            line: document.span.start.line(),
            message: "the file contains several YAML documents: keep only one".to_owned(),
        }),
    }
}

fn node(yaml: MarkedYamlOwned) -> Node {
    let line = yaml.span.start.line();
    let value = match yaml.data {
        YamlDataOwned::Value(ScalarOwned::String(text)) => NodeValue::Text(text),
        YamlDataOwned::Value(ScalarOwned::Integer(number)) => NodeValue::Integer(number),
        YamlDataOwned::Value(ScalarOwned::Null) => NodeValue::Other("null"),
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => NodeValue::Other("boolean"),
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => NodeValue::Other("float"),
        YamlDataOwned::Sequence(items) => NodeValue::List(items.into_iter().map(node).collect()),
        YamlDataOwned::Mapping(pairs) => NodeValue::Table(pairs.into_iter().map(key).collect()),
        YamlDataOwned::Tagged(_, inner) => return node(*inner),
        YamlDataOwned::Representation(..) | YamlDataOwned::BadValue => {
            NodeValue::Other("invalid value")
        }
        YamlDataOwned::Alias(_) => NodeValue::Other("alias"),
    };
    Node { line, value }
}

/// Converts a mapping pair. A key that is not text gets a name no entry key has, so it is
/// reported as unknown.
fn key((name, value): (MarkedYamlOwned, MarkedYamlOwned)) -> Key {
    let line = name.span.start.line();
    let name = match name.data {
        YamlDataOwned::Value(ScalarOwned::String(text)) => text,
        _ => "(a key that is not text)".to_owned(),
    };
    Key {
        name,
        line,
        value: node(value),
    }
}
