//! Printing of entries and agents for people (SPIRE's layout) and as JSON.

use std::io::{self, Write};

use serde_json::{Value, json};
use signet_proto::spire::api::types;

use super::entry_json::JsonEntry;
use crate::model::unix_time_text;

/// Prints entries in SPIRE's `Label : value` layout, each followed by a blank line.
pub(super) fn print_entries(entries: &[types::Entry]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    for entry in entries {
        writeln!(stdout, "{}", entry_text(entry))?;
    }
    Ok(())
}

/// Returns an entry in SPIRE's `Label : value` layout.
pub(super) fn entry_text(entry: &types::Entry) -> String {
    let mut lines = vec![
        line("Entry ID", &entry.id),
        line("SPIFFE ID", &spiffe_id_text(entry.spiffe_id.as_ref())),
        line("Parent ID", &spiffe_id_text(entry.parent_id.as_ref())),
        line("Revision", &entry.revision_number.to_string()),
    ];
    if entry.downstream {
        lines.push(line("Downstream", "true"));
    }
    lines.push(line("X509-SVID TTL", &ttl_text(entry.x509_svid_ttl)));
    lines.push(line("JWT-SVID TTL", &ttl_text(entry.jwt_svid_ttl)));
    lines.push(line("Expiration time", &expiry_text(entry.expires_at)));

    for selector in &entry.selectors {
        lines.push(line(
            "Selector",
            &format!("{}:{}", selector.r#type, selector.value),
        ));
    }
    for trust_domain in &entry.federates_with {
        lines.push(line("FederatesWith", trust_domain));
    }
    for dns_name in &entry.dns_names {
        lines.push(line("DNS name", dns_name));
    }

    if entry.admin {
        lines.push(line("Admin", "true"));
    }
    if entry.store_svid {
        lines.push(line("StoreSvid", "true"));
    }
    if !entry.hint.is_empty() {
        lines.push(line("Hint", &entry.hint));
    }
    lines.concat()
}

/// Returns an agent in SPIRE's `Label : value` layout.
pub(super) fn agent_text(agent: &types::Agent) -> String {
    let mut lines = vec![
        line("SPIFFE ID", &spiffe_id_text(agent.id.as_ref())),
        line("Attestation type", &agent.attestation_type),
        line("Expiration time", &expiry_text(agent.x509svid_expires_at)),
        line("Serial number", &agent.x509svid_serial_number),
        line("Can re-attest", &agent.can_reattest.to_string()),
    ];
    if agent.banned {
        lines.push(line("Banned", "true"));
    }
    for selector in &agent.selectors {
        lines.push(line(
            "Selector",
            &format!("{}:{}", selector.r#type, selector.value),
        ));
    }
    lines.concat()
}

/// Returns an entry as protobuf JSON.
pub(super) fn entry_json(entry: &types::Entry) -> Value {
    serde_json::to_value(JsonEntry::from(entry)).unwrap_or(Value::Null)
}

/// Returns an agent as protobuf JSON.
pub(super) fn agent_json(agent: &types::Agent) -> Value {
    json!({
        "id": agent.id.as_ref().map(spiffe_id_json),
        "attestation_type": agent.attestation_type,
        "x509svid_serial_number": agent.x509svid_serial_number,
        "x509svid_expires_at": agent.x509svid_expires_at.to_string(),
        "selectors": agent.selectors.iter().map(|selector| json!({
            "type": selector.r#type,
            "value": selector.value,
        })).collect::<Vec<_>>(),
        "banned": agent.banned,
        "can_reattest": agent.can_reattest,
    })
}

/// Returns a per-item status as protobuf JSON.
pub(super) fn status_json(status: Option<&types::Status>) -> Value {
    let (code, message) = status.map_or((0, ""), |status| (status.code, status.message.as_str()));
    json!({ "code": code, "message": message })
}

/// Prints a JSON value on one line.
pub(super) fn print_json(value: &Value) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{value}")
}

/// Returns `spiffe://<trust domain><path>`.
pub(super) fn spiffe_id_text(id: Option<&types::Spiffeid>) -> String {
    id.map(|id| format!("spiffe://{}{}", id.trust_domain, id.path))
        .unwrap_or_default()
}

fn spiffe_id_json(id: &types::Spiffeid) -> Value {
    json!({ "trust_domain": id.trust_domain, "path": id.path })
}

fn line(label: &str, value: &str) -> String {
    format!("{label:<17}: {value}\n")
}

fn ttl_text(seconds: i32) -> String {
    match seconds {
        0 => "default".to_owned(),
        seconds => seconds.to_string(),
    }
}

fn expiry_text(unix_seconds: i64) -> String {
    match unix_seconds {
        0 => "never".to_owned(),
        seconds => unix_time_text(seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_text_uses_spire_labels() {
        let entry = types::Entry {
            id: "entry-1".to_owned(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".to_owned(),
                path: "/web".to_owned(),
            }),
            selectors: vec![types::Selector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            x509_svid_ttl: 600,
            ..types::Entry::default()
        };

        let text = entry_text(&entry);

        assert!(text.contains("Entry ID         : entry-1\n"), "{text}");
        assert!(
            text.contains("SPIFFE ID        : spiffe://example.org/web\n"),
            "{text}"
        );
        assert!(
            text.contains("Selector         : unix:uid:1000\n"),
            "{text}"
        );
        assert!(text.contains("X509-SVID TTL    : 600\n"), "{text}");
        assert!(text.contains("JWT-SVID TTL     : default\n"), "{text}");
        assert!(text.contains("Expiration time  : never\n"), "{text}");
    }

    #[test]
    fn entry_text_shows_any_stored_expiry() {
        let cases = [
            (1_800_000_000, "2027-01-15T08:00:00Z"),
            (99_999_999_999_999_999, "99999999999999999 (Unix seconds)"),
            (i64::MAX, "9223372036854775807 (Unix seconds)"),
            (-1, "-1 (Unix seconds)"),
        ];
        for (expires_at, expected) in cases {
            let entry = types::Entry {
                expires_at,
                ..types::Entry::default()
            };
            let text = entry_text(&entry);
            assert!(
                text.contains(&format!("Expiration time  : {expected}\n")),
                "{text}"
            );
        }
    }
}
