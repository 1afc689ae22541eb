//! TOML entry files: the document becomes a [`Node`] tree with the line of every key and value.

use toml_edit::{ArrayOfTables, ImDocument, Item, TableLike, Value};

use super::{Key, LineError, LineIndex, Node, NodeValue};

/// Parses TOML text into a tree.
///
/// # Errors
///
/// The parser's error, at the line where the parser stopped.
pub(super) fn parse(text: &str) -> Result<Node, LineError> {
    let lines = LineIndex::new(text);
    let document = ImDocument::parse(text).map_err(|error| LineError {
        line: error.span().map_or(1, |span| lines.line_at(span.start)),
        message: format!("invalid TOML: {}", error.message()),
    })?;
    let converter = Converter { lines };
    Ok(Node {
        line: 1,
        value: converter.table(document.as_table()),
    })
}

/// Converts toml_edit items, whose spans are byte offsets into the parsed text.
struct Converter {
    lines: LineIndex,
}

impl Converter {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        span.map_or(1, |span| self.lines.line_at(span.start))
    }

    /// Converts a table or an inline table, which the file may use alike.
    fn table(&self, table: &dyn TableLike) -> NodeValue {
        let keys = table
            .iter()
            .filter_map(|(name, _)| table.get_key_value(name))
            .map(|(key, item)| Key {
                name: key.get().to_owned(),
                line: self.line(key.span()),
                value: self.item(item, self.line(key.span())),
            })
            .collect();
        NodeValue::Table(keys)
    }

    /// Converts an item. `key_line` is the line of items without a span of their own.
    fn item(&self, item: &Item, key_line: usize) -> Node {
        match item {
            Item::Value(value) => self.value(value),
            Item::Table(table) => Node {
                line: table
                    .span()
                    .map_or(key_line, |span| self.lines.line_at(span.start)),
                value: self.table(table),
            },
            Item::ArrayOfTables(tables) => self.array_of_tables(tables, key_line),
            Item::None => Node {
                line: key_line,
                value: NodeValue::Other("nothing"),
            },
        }
    }

    fn array_of_tables(&self, tables: &ArrayOfTables, key_line: usize) -> Node {
        let items = tables
            .iter()
            .map(|table| Node {
                // A table's span starts at its `[[...]]` header.
                line: table
                    .span()
                    .map_or(key_line, |span| self.lines.line_at(span.start)),
                value: self.table(table),
            })
            .collect();
        Node {
            line: key_line,
            value: NodeValue::List(items),
        }
    }

    fn value(&self, value: &Value) -> Node {
        let converted = match value {
            Value::String(text) => NodeValue::Text(text.value().clone()),
            Value::Integer(number) => NodeValue::Integer(*number.value()),
            // An offset date-time is RFC 3339 text, which `expires_at` accepts.
            Value::Datetime(time) => NodeValue::Text(time.value().to_string()),
            Value::Array(items) => {
                NodeValue::List(items.iter().map(|item| self.value(item)).collect())
            }
            Value::InlineTable(table) => self.table(table),
            Value::Float(_) => NodeValue::Other("float"),
            Value::Boolean(_) => NodeValue::Other("boolean"),
        };
        Node {
            line: self.line(value.span()),
            value: converted,
        }
    }
}
