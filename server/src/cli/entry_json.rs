//! Registration entries in the JSON shape SPIRE's CLI reads (`entry create -data`) and prints
//! (`-output json`): protobuf JSON with the proto field names, where 64-bit integers are strings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signet_proto::spire::api::types;

/// A file of entries to create, as `{"entries": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntryFile {
    pub(super) entries: Vec<JsonEntry>,
}

/// One registration entry. Fields may also be written in lowerCamelCase, as protobuf JSON allows.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JsonEntry {
    #[serde(default)]
    id: String,
    #[serde(default, alias = "spiffeId")]
    spiffe_id: Option<JsonSpiffeId>,
    #[serde(default, alias = "parentId")]
    parent_id: Option<JsonSpiffeId>,
    #[serde(default)]
    selectors: Vec<JsonSelector>,
    #[serde(default, alias = "x509SvidTtl")]
    x509_svid_ttl: i32,
    #[serde(default, alias = "federatesWith")]
    federates_with: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    downstream: bool,
    #[serde(default, alias = "expiresAt", with = "int64")]
    expires_at: i64,
    #[serde(default, alias = "dnsNames")]
    dns_names: Vec<String>,
    #[serde(default, alias = "revisionNumber", with = "int64")]
    revision_number: i64,
    #[serde(default, alias = "storeSvid")]
    store_svid: bool,
    #[serde(default, alias = "jwtSvidTtl")]
    jwt_svid_ttl: i32,
    #[serde(default)]
    hint: String,
    #[serde(default, alias = "createdAt", with = "int64")]
    created_at: i64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct JsonSpiffeId {
    #[serde(alias = "trustDomain")]
    trust_domain: String,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct JsonSelector {
    r#type: String,
    value: String,
}

impl From<JsonEntry> for types::Entry {
    fn from(entry: JsonEntry) -> Self {
        Self {
            id: entry.id,
            spiffe_id: entry.spiffe_id.map(Into::into),
            parent_id: entry.parent_id.map(Into::into),
            selectors: entry.selectors.into_iter().map(Into::into).collect(),
            x509_svid_ttl: entry.x509_svid_ttl,
            federates_with: entry.federates_with,
            admin: entry.admin,
            downstream: entry.downstream,
            expires_at: entry.expires_at,
            dns_names: entry.dns_names,
            revision_number: entry.revision_number,
            store_svid: entry.store_svid,
            jwt_svid_ttl: entry.jwt_svid_ttl,
            hint: entry.hint,
            created_at: entry.created_at,
        }
    }
}

impl From<&types::Entry> for JsonEntry {
    fn from(entry: &types::Entry) -> Self {
        Self {
            id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.as_ref().map(Into::into),
            parent_id: entry.parent_id.as_ref().map(Into::into),
            selectors: entry.selectors.iter().map(Into::into).collect(),
            x509_svid_ttl: entry.x509_svid_ttl,
            federates_with: entry.federates_with.clone(),
            admin: entry.admin,
            downstream: entry.downstream,
            expires_at: entry.expires_at,
            dns_names: entry.dns_names.clone(),
            revision_number: entry.revision_number,
            store_svid: entry.store_svid,
            jwt_svid_ttl: entry.jwt_svid_ttl,
            hint: entry.hint.clone(),
            created_at: entry.created_at,
        }
    }
}

impl From<JsonSpiffeId> for types::Spiffeid {
    fn from(id: JsonSpiffeId) -> Self {
        Self {
            trust_domain: id.trust_domain,
            path: id.path,
        }
    }
}

impl From<&types::Spiffeid> for JsonSpiffeId {
    fn from(id: &types::Spiffeid) -> Self {
        Self {
            trust_domain: id.trust_domain.clone(),
            path: id.path.clone(),
        }
    }
}

impl From<JsonSelector> for types::Selector {
    fn from(selector: JsonSelector) -> Self {
        Self {
            r#type: selector.r#type,
            value: selector.value,
        }
    }
}

impl From<&types::Selector> for JsonSelector {
    fn from(selector: &types::Selector) -> Self {
        Self {
            r#type: selector.r#type.clone(),
            value: selector.value.clone(),
        }
    }
}

/// Protobuf JSON writes 64-bit integers as strings; reading accepts strings and numbers.
mod int64 {
    use super::*;

    pub(super) fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(Int64Visitor)
    }

    struct Int64Visitor;

    impl serde::de::Visitor<'_> for Int64Visitor {
        type Value = i64;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a 64-bit integer or a string holding one")
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::custom(format!("{value} does not fit in 64 bits")))
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<i64, E> {
            value
                .parse()
                .map_err(|_| E::custom(format!("{value:?} is not a 64-bit integer")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spire_data_file_is_read() {
        let text = r#"{
            "entries": [{
                "selectors": [{"type": "unix", "value": "uid:1000"}],
                "spiffe_id": {"trust_domain": "example.org", "path": "/web"},
                "parentId": {"trustDomain": "example.org", "path": "/spire/agent/join_token/abc"},
                "x509_svid_ttl": 600,
                "expires_at": "1900000000",
                "dns_names": ["web.example.org"],
                "admin": true
            }]
        }"#;

        let file: EntryFile = serde_json::from_str(text).unwrap();
        let entry = types::Entry::from(file.entries.into_iter().next().unwrap());

        assert_eq!(entry.spiffe_id.unwrap().path, "/web");
        assert_eq!(entry.parent_id.unwrap().trust_domain, "example.org");
        assert_eq!(entry.selectors[0].value, "uid:1000");
        assert_eq!(entry.x509_svid_ttl, 600);
        assert_eq!(entry.expires_at, 1_900_000_000);
        assert_eq!(entry.dns_names, ["web.example.org"]);
        assert!(entry.admin);
    }

    #[test]
    fn unknown_field_is_named() {
        let error =
            serde_json::from_str::<EntryFile>(r#"{"entries": [{"spiffe": 1}]}"#).unwrap_err();
        assert!(error.to_string().contains("spiffe"), "{error}");
    }

    #[test]
    fn int64_fields_are_written_as_strings() {
        let entry = types::Entry {
            created_at: 1_700_000_000,
            ..types::Entry::default()
        };

        let json = serde_json::to_value(JsonEntry::from(&entry)).unwrap();

        assert_eq!(json["created_at"], "1700000000");
        assert_eq!(json["x509_svid_ttl"], 0);
    }
}
