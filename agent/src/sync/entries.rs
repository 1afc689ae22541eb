//! Turning the server's registration entries into the identities the Workload API serves.

use std::time::SystemTime;

use signet_core::ids::{from_proto_id, server_id};
use signet_core::selector::Selector;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::types::Entry;
use spiffe::{SpiffeId, TrustDomain};

/// A registration entry the agent serves, before its SVID is attached.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServedEntry {
    pub(crate) entry_id: String,
    /// The entry's SPIFFE ID, or the template that workloads' selectors fill in.
    pub(crate) spiffe_id: SpiffeIdTemplate,
    pub(crate) selectors: Vec<Selector>,
    pub(crate) hint: String,
    /// The server's revision of the entry: a new one means the SVID must be signed again.
    pub(crate) revision_number: i64,
    created_at: i64,
}

/// Returns the entries to serve, ordered by (created_at, entry_id).
///
/// Node entries are left out: the server uses them to decide which entries an agent may receive,
/// but they name agents, not workloads. A node entry has the server as parent (a node alias), or
/// a `spiffe_id` selector, which only agents have (the entry a join token with `--spiffe-id`
/// creates). Entries that are expired, in another trust domain or malformed are left out with a
/// warning.
pub(crate) fn served_entries(
    entries: Vec<Entry>,
    trust_domain: &TrustDomain,
    now: SystemTime,
) -> Vec<ServedEntry> {
    let server = server_id(trust_domain);
    let now_seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });

    let mut served: Vec<ServedEntry> = entries
        .into_iter()
        .filter(|entry| entry.expires_at == 0 || entry.expires_at > now_seconds)
        .filter_map(|entry| match convert(entry, trust_domain, &server) {
            Ok(served) => served,
            Err((entry_id, reason)) => {
                tracing::warn!(entry_id = %entry_id, reason = %reason, "Skipping invalid entry");
                None
            }
        })
        .collect();
    served.sort_by(|left, right| {
        (left.created_at, &left.entry_id).cmp(&(right.created_at, &right.entry_id))
    });
    served
}

/// Converts one entry, returning Ok(None) for node entries and Err((id, reason)) for unusable
/// ones.
fn convert(
    entry: Entry,
    trust_domain: &TrustDomain,
    server: &SpiffeId,
) -> Result<Option<ServedEntry>, (String, String)> {
    let reject = |reason: String| (entry.id.clone(), reason);
    let parent_id =
        from_proto_id(entry.parent_id.as_ref()).map_err(|error| reject(error.to_string()))?;
    if &parent_id == server {
        return Ok(None);
    }
    let spiffe_id = entry
        .spiffe_id
        .as_ref()
        .ok_or_else(|| reject("the entry has no SPIFFE ID".to_owned()))?;
    let spiffe_id = SpiffeIdTemplate::from_parts(&spiffe_id.trust_domain, &spiffe_id.path)
        .map_err(|error| reject(error.to_string()))?;
    if spiffe_id.trust_domain() != trust_domain {
        return Err(reject(format!(
            "SPIFFE ID {spiffe_id} is outside trust domain {trust_domain}"
        )));
    }
    let mut selectors = entry
        .selectors
        .iter()
        .map(|selector| Selector::new(&selector.r#type, &selector.value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| reject(error.to_string()))?;
    // Collecting through a Result leaves room for four selectors, and the cache keeps the
    // vector for as long as it serves the entry.
    selectors.shrink_to_fit();
    if selectors.is_empty() {
        return Err(reject("the entry has no selectors".to_owned()));
    }
    if selectors
        .iter()
        .any(|selector| selector.kind() == NODE_SELECTOR_TYPE)
    {
        return Ok(None);
    }

    Ok(Some(ServedEntry {
        entry_id: entry.id,
        spiffe_id,
        selectors,
        hint: entry.hint,
        revision_number: entry.revision_number,
        created_at: entry.created_at,
    }))
}

/// Selector type that names an attested agent, never a workload.
const NODE_SELECTOR_TYPE: &str = "spiffe_id";

#[cfg(test)]
mod tests {
    use signet_core::ids::to_proto_id;
    use signet_proto::spire::api::types::Selector as ProtoSelector;

    use super::*;

    fn trust_domain() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn entry(id: &str, spiffe_id: &str, parent_id: &str, created_at: i64) -> Entry {
        Entry {
            id: id.to_owned(),
            spiffe_id: Some(to_proto_id(&SpiffeId::new(spiffe_id).unwrap())),
            parent_id: Some(to_proto_id(&SpiffeId::new(parent_id).unwrap())),
            selectors: vec![ProtoSelector {
                r#type: "unix".to_owned(),
                value: "uid:1000".to_owned(),
            }],
            created_at,
            ..Entry::default()
        }
    }

    const AGENT: &str = "spiffe://example.org/spire/agent/join_token/abc";

    #[test]
    fn node_alias_entries_are_skipped() {
        let entries = vec![
            entry(
                "alias",
                "spiffe://example.org/node",
                "spiffe://example.org/spire/server",
                1,
            ),
            entry(
                "workload",
                "spiffe://example.org/web",
                "spiffe://example.org/node",
                2,
            ),
        ];
        let served = served_entries(entries, &trust_domain(), SystemTime::now());
        let ids: Vec<_> = served.iter().map(|entry| entry.entry_id.as_str()).collect();
        assert_eq!(ids, ["workload"]);
    }

    #[test]
    fn join_token_alias_entries_are_skipped() {
        let mut alias = entry("alias", "spiffe://example.org/node", AGENT, 1);
        alias.selectors[0] = ProtoSelector {
            r#type: "spiffe_id".to_owned(),
            value: AGENT.to_owned(),
        };
        assert!(served_entries(vec![alias], &trust_domain(), SystemTime::now()).is_empty());
    }

    #[test]
    fn entries_are_ordered_by_creation_then_id() {
        let entries = vec![
            entry("c", "spiffe://example.org/c", AGENT, 5),
            entry("b", "spiffe://example.org/b", AGENT, 1),
            entry("a", "spiffe://example.org/a", AGENT, 5),
        ];
        let served = served_entries(entries, &trust_domain(), SystemTime::now());
        let ids: Vec<_> = served.iter().map(|entry| entry.entry_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
    }

    #[test]
    fn expired_entries_are_skipped() {
        let mut expired = entry("old", "spiffe://example.org/old", AGENT, 1);
        expired.expires_at = 1000;
        let mut valid = entry("new", "spiffe://example.org/new", AGENT, 1);
        valid.expires_at = 3000;
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2000);
        let served = served_entries(vec![expired, valid], &trust_domain(), now);
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].entry_id, "new");
    }

    #[test]
    fn selectors_keep_no_spare_capacity() {
        let entries = vec![entry("web", "spiffe://example.org/web", AGENT, 1)];

        let served = served_entries(entries, &trust_domain(), SystemTime::now());

        assert_eq!(served[0].selectors.len(), 1);
        assert_eq!(served[0].selectors.capacity(), 1);
    }

    #[test]
    fn invalid_entries_are_skipped() {
        let mut no_selectors = entry("empty", "spiffe://example.org/a", AGENT, 1);
        no_selectors.selectors.clear();
        let mut bad_selector = entry("bad", "spiffe://example.org/b", AGENT, 1);
        bad_selector.selectors[0].r#type = "nope".to_owned();
        let foreign = entry("foreign", "spiffe://other.org/c", AGENT, 1);
        let mut missing_id = entry("missing", "spiffe://example.org/d", AGENT, 1);
        missing_id.spiffe_id = None;

        let entries = vec![no_selectors, bad_selector, foreign, missing_id];
        assert!(served_entries(entries, &trust_domain(), SystemTime::now()).is_empty());
    }
}
