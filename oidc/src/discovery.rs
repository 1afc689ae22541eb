//! The OpenID Connect discovery document (OpenID Connect Discovery 1.0, section 3).

use serde::Serialize;

use signet_core::provider_url::ProviderUrl;

/// Signature algorithms a Signet server can sign JWT-SVIDs with (`--jwt-key-type`), plus ES384
/// for P-384 keys that the bundle may hold.
const SIGNING_ALGORITHMS: [&str; 4] = ["ES256", "ES384", "PS256", "RS256"];

/// The discovery document. It only describes the JWKS: the provider has no authorization or
/// token endpoint.
#[derive(Debug, Serialize)]
pub struct DiscoveryDocument<'a> {
    issuer: &'a str,
    jwks_uri: &'a str,
    /// Required by the specification, but there is no such endpoint. SPIRE's provider publishes
    /// an empty string, and relying parties that accept its documents accept this one.
    authorization_endpoint: &'static str,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 4],
}

impl<'a> DiscoveryDocument<'a> {
    /// Describes a provider with this issuer and JWKS URL.
    pub fn new(issuer: &'a ProviderUrl, jwks_uri: &'a ProviderUrl) -> Self {
        Self {
            issuer: issuer.as_str(),
            jwks_uri: jwks_uri.as_str(),
            authorization_endpoint: "",
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: SIGNING_ALGORITHMS,
        }
    }

    /// Returns the document as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and string arrays cannot fail, so an empty object is
        // never served in practice.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn document_publishes_urls_unchanged() {
        let issuer = ProviderUrl::parse("https://OIDC.example.org/tenant/").unwrap();
        let jwks_uri = ProviderUrl::parse("https://cdn.example.org/jwks.json").unwrap();
        let document: Value =
            serde_json::from_str(&DiscoveryDocument::new(&issuer, &jwks_uri).to_json()).unwrap();

        assert_eq!(
            document,
            json!({
                "issuer": "https://OIDC.example.org/tenant/",
                "jwks_uri": "https://cdn.example.org/jwks.json",
                "authorization_endpoint": "",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256", "ES384", "PS256", "RS256"],
            })
        );
    }
}
