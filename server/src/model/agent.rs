//! Attested agents: the nodes that proved their identity to the server.

use signet_core::ids;
use signet_core::selector::Selector;
use signet_proto::spire::api::types;
use spiffe::SpiffeId;

use super::entry::selector_to_proto;

/// An agent that completed node attestation, with the serial number of its current X509-SVID.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AttestedAgent {
    /// The agent's SPIFFE ID, for example `spiffe://example.org/spire/agent/join_token/<token>`.
    pub spiffe_id: SpiffeId,
    /// Node attestor that attested the agent, for example `join_token`.
    pub attestation_type: String,
    /// Serial number of the agent's current X509-SVID, in lower-case hex.
    pub serial_number: String,
    /// Unix time in seconds at which the agent's X509-SVID expires.
    pub expires_at: i64,
    /// Node selectors the attestation produced.
    pub selectors: Vec<Selector>,
    /// Whether an operator banned the agent. A banned agent may neither renew nor attest again.
    pub banned: bool,
    /// Whether the agent may attest again instead of renewing.
    pub can_reattest: bool,
    /// ID of the CA that signed the agent's current X509-SVID; empty when unknown.
    pub x509_authority_id: String,
}

impl AttestedAgent {
    /// Builds the API form of the agent with every field set.
    pub fn to_proto(&self) -> types::Agent {
        types::Agent {
            id: Some(ids::to_proto_id(&self.spiffe_id)),
            attestation_type: self.attestation_type.clone(),
            x509svid_serial_number: self.serial_number.clone(),
            x509svid_expires_at: self.expires_at,
            selectors: self.selectors.iter().map(selector_to_proto).collect(),
            banned: self.banned,
            can_reattest: self.can_reattest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_proto_sets_every_field() {
        let agent = AttestedAgent {
            spiffe_id: SpiffeId::new("spiffe://example.org/spire/agent/join_token/abc").unwrap(),
            attestation_type: "join_token".to_owned(),
            serial_number: "0a1b".to_owned(),
            expires_at: 1_700_000_000,
            selectors: vec![Selector::parse("unix:uid:0").unwrap()],
            banned: true,
            can_reattest: true,
            x509_authority_id: String::new(),
        };

        let proto = agent.to_proto();

        let id = proto.id.unwrap();
        assert_eq!(id.trust_domain, "example.org");
        assert_eq!(id.path, "/spire/agent/join_token/abc");
        assert_eq!(proto.attestation_type, "join_token");
        assert_eq!(proto.x509svid_serial_number, "0a1b");
        assert_eq!(proto.x509svid_expires_at, 1_700_000_000);
        assert_eq!(proto.selectors.len(), 1);
        assert_eq!(proto.selectors[0].r#type, "unix");
        assert_eq!(proto.selectors[0].value, "uid:0");
        assert!(proto.banned);
        assert!(proto.can_reattest);
    }
}
