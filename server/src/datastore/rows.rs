//! Conversion between model values and the portable column types (TEXT, BIGINT) of the schema.

use signet_core::ids;
use signet_core::selector::Selector;
use spiffe::SpiffeId;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::DatastoreError;

/// Reads one column of a row.
pub(super) fn column<T>(row: &AnyRow, name: &str) -> Result<T, DatastoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    Ok(row.try_get(name)?)
}

/// Stores a flag as 0 or 1, because SQLite has no boolean type.
pub(super) fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// Encodes a list of strings as a JSON array.
pub(super) fn json_list<T: ToString>(items: &[T]) -> String {
    let strings: Vec<String> = items.iter().map(ToString::to_string).collect();
    // Serialising a list of strings cannot fail; fall back to an empty list rather than panic.
    serde_json::to_string(&strings).unwrap_or_else(|_| "[]".to_owned())
}

/// Decodes a JSON array of strings, naming the record `what` if the text is not one.
pub(super) fn parse_json_list(text: &str, what: &str) -> Result<Vec<String>, DatastoreError> {
    serde_json::from_str(text).map_err(|e| invalid(what, format!("list column: {e}")))
}

/// Decodes a JSON array of selectors.
pub(super) fn parse_selectors(text: &str, what: &str) -> Result<Vec<Selector>, DatastoreError> {
    parse_json_list(text, what)?
        .iter()
        .map(|selector| Selector::parse(selector).map_err(|e| invalid(what, e.to_string())))
        .collect()
}

/// Decodes a stored SPIFFE ID.
pub(super) fn parse_spiffe_id(text: &str, what: &str) -> Result<SpiffeId, DatastoreError> {
    ids::parse_spiffe_id(text).map_err(|e| invalid(what, e.to_string()))
}

/// Decodes a stored TTL, which the model keeps as `i32` seconds.
pub(super) fn parse_ttl(value: i64, what: &str) -> Result<i32, DatastoreError> {
    i32::try_from(value).map_err(|_| invalid(what, format!("TTL {value} out of range")))
}

/// Builds the error for a row that does not form a valid record.
pub(super) fn invalid(what: &str, reason: String) -> DatastoreError {
    DatastoreError::InvalidRecord {
        what: what.to_owned(),
        reason,
    }
}
