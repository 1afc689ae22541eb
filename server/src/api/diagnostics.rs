//! The Diagnostics service: `ExplainEntry`, which returns for each attested agent whether it may
//! obtain an entry's SVIDs and why (admin socket only).

use signet_core::ids::to_proto_id;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::signet::server::diagnostics::v1::diagnostics_server::Diagnostics as DiagnosticsApi;
use signet_proto::signet::server::diagnostics::v1::explain_entry_request::Entry as EntryKey;
use signet_proto::signet::server::diagnostics::v1::{
    AgentVerdict as ProtoVerdict, EntryExplanation, ExplainEntryRequest, ExplainEntryResponse,
};
use tonic::{Request, Response, Status};

use super::{ApiError, Services, unix_now};
use crate::authorization::explain::{AgentVerdict, explain_entry};
use crate::model::RegistrationEntry;

#[tonic::async_trait]
impl DiagnosticsApi for Services {
    async fn explain_entry(
        &self,
        request: Request<ExplainEntryRequest>,
    ) -> Result<Response<ExplainEntryResponse>, Status> {
        self.require_admin()?;
        let key = request.into_inner().entry.ok_or_else(|| {
            ApiError::InvalidArgument("set the SPIFFE ID or the entry ID to explain".to_owned())
        })?;

        let entries = self
            .state
            .datastore
            .list_entries()
            .await
            .map_err(ApiError::from)?;
        let agents = self
            .state
            .datastore
            .list_agents()
            .await
            .map_err(ApiError::from)?;
        let selected = select_entries(&entries, key)?;
        let now = unix_now();
        let explanations = selected
            .into_iter()
            .map(|entry| EntryExplanation {
                entry: Some(entry.to_proto()),
                agents: explain_entry(entry, &agents, &entries, now)
                    .into_iter()
                    .map(|verdict| self.verdict_proto(verdict))
                    .collect(),
            })
            .collect();
        Ok(Response::new(ExplainEntryResponse {
            entries: explanations,
        }))
    }
}

impl Services {
    fn verdict_proto(&self, verdict: AgentVerdict) -> ProtoVerdict {
        ProtoVerdict {
            agent_id: Some(to_proto_id(&verdict.agent_id)),
            authorized: verdict.authorized,
            reasons: verdict.reasons,
            missing_alias_selectors: verdict
                .missing_alias_selectors
                .iter()
                .map(ToString::to_string)
                .collect(),
            last_sync_at: self
                .state
                .authenticator
                .last_sync(&verdict.agent_id)
                .unwrap_or(0),
            agent_svid_expires_at: verdict.svid_expires_at,
        }
    }
}

/// Returns the entries with the requested SPIFFE ID or template text (possibly none), or the one
/// with the requested entry ID.
///
/// A concrete SPIFFE ID that no entry has exactly selects the template entries that expand to it,
/// so that the operator sees which of them could issue it.
fn select_entries(
    entries: &[RegistrationEntry],
    key: EntryKey,
) -> Result<Vec<&RegistrationEntry>, ApiError> {
    match key {
        EntryKey::SpiffeId(id) => {
            let requested =
                SpiffeIdTemplate::from_parts(&id.trust_domain, &id.path).map_err(|error| {
                    ApiError::InvalidArgument(format!("invalid SPIFFE ID to explain: {error}"))
                })?;
            let exact: Vec<&RegistrationEntry> = entries
                .iter()
                .filter(|entry| entry.spiffe_id == requested)
                .collect();
            match requested.spiffe_id() {
                Some(concrete) if exact.is_empty() => Ok(entries
                    .iter()
                    .filter(|entry| entry.spiffe_id.is_template())
                    .filter(|entry| entry.spiffe_id.check_expansion(concrete).is_ok())
                    .collect()),
                _ => Ok(exact),
            }
        }
        EntryKey::EntryId(entry_id) => entries
            .iter()
            .find(|entry| entry.id == entry_id)
            .map(|entry| vec![entry])
            .ok_or_else(|| ApiError::NotFound(format!("entry {entry_id:?} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use signet_proto::spire::api::types::Spiffeid;

    use super::*;

    fn entry(id: &str, spiffe_id: &str) -> RegistrationEntry {
        RegistrationEntry {
            id: id.to_owned(),
            spiffe_id: SpiffeIdTemplate::parse(spiffe_id).unwrap(),
            parent_id: spiffe::SpiffeId::new("spiffe://example.org/spire/agent/join_token/a")
                .unwrap(),
            selectors: Vec::new(),
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            expires_at: 0,
            dns_names: Vec::new(),
            revision_number: 0,
            store_svid: false,
            hint: String::new(),
            created_at: 0,
        }
    }

    fn by_id(trust_domain: &str, path: &str) -> EntryKey {
        EntryKey::SpiffeId(Spiffeid {
            trust_domain: trust_domain.to_owned(),
            path: path.to_owned(),
        })
    }

    fn ids(selected: &[&RegistrationEntry]) -> Vec<String> {
        selected.iter().map(|entry| entry.id.clone()).collect()
    }

    #[test]
    fn template_text_selects_the_template_entry() {
        let entries = [
            entry("template", "spiffe://example.org/unix/uid/{unix:uid}"),
            entry("plain", "spiffe://example.org/unix/uid/65534"),
        ];

        let selected =
            select_entries(&entries, by_id("example.org", "/unix/uid/{unix:uid}")).unwrap();

        assert_eq!(ids(&selected), ["template"]);
    }

    #[test]
    fn concrete_id_without_exact_entry_selects_expanding_templates() {
        let entries = [
            entry("uid", "spiffe://example.org/unix/uid/{unix:uid}"),
            entry("user", "spiffe://example.org/unix/user/{unix:user}"),
        ];

        let selected = select_entries(&entries, by_id("example.org", "/unix/uid/65534")).unwrap();

        assert_eq!(ids(&selected), ["uid"]);
    }

    #[test]
    fn concrete_id_with_exact_entry_selects_only_it() {
        let entries = [
            entry("uid", "spiffe://example.org/unix/uid/{unix:uid}"),
            entry("plain", "spiffe://example.org/unix/uid/65534"),
        ];

        let selected = select_entries(&entries, by_id("example.org", "/unix/uid/65534")).unwrap();

        assert_eq!(ids(&selected), ["plain"]);
    }
}
