//! The JWT half of the Workload API: `FetchJWTSVID`, `FetchJWTBundles` and `ValidateJWTSVID`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::try_join_all;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as ProtoValue};
use serde_json::{Map, Value};
use signet_core::audience::{AudienceError, check_audience};
use signet_core::ids::parse_spiffe_id;
use signet_core::jwk::jwks;
use signet_core::selector::Selector;
use signet_proto::workload::{
    JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse,
};
use spiffe::SpiffeId;
use tonic::Status;
use tracing::{debug, warn};

use super::delivery::Delivery;
use super::matching::{EntitledIdentity, match_identities};
use super::stream::{Caller, deny};
use crate::cache::Snapshot;
use crate::jwt::{self, FetchError, JwtSigner, JwtSubject, JwtSvidCache};

/// Issues JWT-SVIDs to callers through the token cache.
#[derive(Debug)]
pub(super) struct JwtSvidIssuer {
    /// None only in tests of the X.509 half, which run without a server.
    signer: Option<Arc<dyn JwtSigner>>,
    cache: JwtSvidCache,
}

// === impl JwtSvidIssuer ===

impl JwtSvidIssuer {
    pub(super) fn new(signer: Option<Arc<dyn JwtSigner>>) -> Self {
        Self {
            signer,
            cache: JwtSvidCache::new(),
        }
    }

    /// Returns one JWT-SVID for `audience` per identity of `caller` in `snapshot`, the default
    /// identity first, or only the one for `requested`.
    pub(super) async fn fetch(
        &self,
        snapshot: &Snapshot,
        caller: &Caller,
        audience: &[String],
        requested: Option<&SpiffeId>,
    ) -> Result<JwtsvidResponse, Status> {
        if !snapshot.is_synced() {
            return Err(Status::unavailable(
                "the agent has not received its entries from the server yet",
            ));
        }
        self.cache.prune(snapshot);
        let identities: Vec<EntitledIdentity<'_>> = match_identities(snapshot, &caller.selectors)
            .entitled
            .into_iter()
            .filter(|entitled| requested.is_none_or(|id| entitled.spiffe_id == *id))
            .collect();
        if identities.is_empty() {
            return Err(deny(caller, snapshot));
        }
        let Some(signer) = self.signer.as_deref() else {
            return Err(Status::unavailable(
                "could not fetch JWT-SVID: the agent has no server connection",
            ));
        };

        let now = SystemTime::now();
        let signing = identities
            .iter()
            .map(|entitled| self.cache.fetch(signer, subject(entitled), audience, now));
        let tokens = try_join_all(signing)
            .await
            .map_err(|error| fetch_failed(caller, &error))?;

        let svids = identities
            .iter()
            .zip(tokens)
            .map(|(entitled, token)| {
                debug!(
                    pid = caller.pid,
                    spiffe_id = %entitled.spiffe_id,
                    audience = ?audience,
                    expiry = %humantime::format_rfc3339_seconds(token.expires_at),
                    "Issuing JWT-SVID"
                );
                Jwtsvid {
                    spiffe_id: entitled.spiffe_id.to_string(),
                    svid: token.token.to_string(),
                    hint: entitled.identity.hint.clone(),
                }
            })
            .collect();
        Ok(JwtsvidResponse { svids })
    }
}

/// Returns the subject of the JWT-SVID for `entitled`.
fn subject<'a>(entitled: &'a EntitledIdentity<'_>) -> JwtSubject<'a> {
    JwtSubject {
        entry_id: &entitled.identity.entry_id,
        spiffe_id: &entitled.spiffe_id,
        from_template: entitled.identity.spiffe_id.is_template(),
    }
}

/// Returns the workload's status for a JWT-SVID the server did not sign: InvalidArgument when
/// the server rejected the request, so the workload does not retry it unchanged, else
/// Unavailable.
fn fetch_failed(caller: &Caller, error: &FetchError) -> Status {
    let message = format!("could not fetch JWT-SVID: {error}");
    if error.is_invalid_argument() {
        debug!(pid = caller.pid, error = %error, "Server rejected a JWT-SVID request");
        return Status::invalid_argument(message);
    }
    warn!(pid = caller.pid, error = %error, "Failed to fetch a JWT-SVID");
    Status::unavailable(message)
}

/// Checks the request fields of `FetchJWTSVID` and returns the requested SPIFFE ID, if any.
pub(super) fn check_fetch_request(request: &JwtsvidRequest) -> Result<Option<SpiffeId>, Status> {
    match check_audience(&request.audience) {
        Ok(()) => {}
        // SPIRE's exact message, which clients may match on.
        Err(AudienceError::Missing) => {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        Err(error) => return Err(Status::invalid_argument(error.to_string())),
    }
    if request.spiffe_id.is_empty() {
        return Ok(None);
    }
    parse_spiffe_id(&request.spiffe_id)
        .map(Some)
        .map_err(|error| Status::invalid_argument(format!("invalid requested SPIFFE ID: {error}")))
}

/// Checks the request fields of `ValidateJWTSVID`.
pub(super) fn check_validate_request(request: &ValidateJwtsvidRequest) -> Result<(), Status> {
    if request.audience.is_empty() {
        return Err(Status::invalid_argument("audience must be specified"));
    }
    if request.svid.is_empty() {
        return Err(Status::invalid_argument("svid must be specified"));
    }
    // No token of the size limit can carry a longer audience.
    if request.audience.len() > jwt::MAX_TOKEN_BYTES {
        return Err(Status::invalid_argument(format!(
            "audience is {} bytes, over the limit of {} bytes",
            request.audience.len(),
            jwt::MAX_TOKEN_BYTES
        )));
    }
    Ok(())
}

/// Validates the request's token against the JWT authorities of `snapshot`.
///
/// Any attested caller may validate, whether it is entitled to an identity or not. The agent
/// only has the bundle of its own trust domain, which every workload on the node may trust.
/// The SPIRE agent's handler also validates with the own trust domain's bundle for every
/// caller, adding federated bundles only through the caller's entries.
pub(super) fn validate(
    snapshot: &Snapshot,
    caller: &Caller,
    request: &ValidateJwtsvidRequest,
) -> Result<ValidateJwtsvidResponse, Status> {
    if !snapshot.is_synced() {
        return Err(Status::unavailable(
            "the agent has not received the trust bundle yet",
        ));
    }
    let validated = jwt::validate(
        &request.svid,
        &request.audience,
        &snapshot.trust_domain,
        &snapshot.jwt_authorities,
        SystemTime::now(),
    )
    .map_err(|error| {
        warn!(
            pid = caller.pid,
            audience = %jwt::quoted(&request.audience),
            error = %error,
            "Rejected JWT-SVID"
        );
        Status::invalid_argument(error.to_string())
    })?;

    debug!(
        pid = caller.pid,
        spiffe_id = %validated.spiffe_id,
        audience = %jwt::quoted(&request.audience),
        "Validated JWT-SVID"
    );
    Ok(ValidateJwtsvidResponse {
        spiffe_id: validated.spiffe_id.to_string(),
        claims: Some(claims_struct(validated.claims)),
    })
}

/// Returns the `FetchJWTBundles` message for a caller with `selectors`: the JWK Set of the own
/// trust domain, with a `kid` on every key and no `use` member.
pub(super) fn jwt_bundles(
    snapshot: &Snapshot,
    selectors: &[Selector],
) -> Delivery<JwtBundlesResponse> {
    if !snapshot.is_synced() {
        return Delivery::Waiting;
    }
    if match_identities(snapshot, selectors).entitled.is_empty() {
        return Delivery::Denied;
    }
    let keys: Vec<(String, Vec<u8>)> = snapshot
        .jwt_authorities
        .iter()
        .map(|authority| (authority.key_id.clone(), authority.public_key_der.clone()))
        .collect();
    let bundle = jwks(&keys, None).to_string().into_bytes();
    Delivery::Complete(JwtBundlesResponse {
        bundles: HashMap::from([(snapshot.trust_domain.id_string(), bundle)]),
    })
}

/// Converts the claims to a protobuf Struct, with `aud` always a list as SPIRE sends it.
fn claims_struct(mut claims: Map<String, Value>) -> Struct {
    if let Some(Value::String(audience)) = claims.get("aud") {
        let list = Value::Array(vec![Value::String(audience.clone())]);
        claims.insert("aud".to_owned(), list);
    }
    Struct {
        fields: claims
            .into_iter()
            .map(|(name, value)| (name, proto_value(value)))
            .collect(),
    }
}

fn proto_value(value: Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(value) => Kind::BoolValue(value),
        // JSON numbers become doubles, as in every protobuf JSON mapping.
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        Value::String(text) => Kind::StringValue(text),
        Value::Array(values) => Kind::ListValue(ListValue {
            values: values.into_iter().map(proto_value).collect(),
        }),
        Value::Object(members) => Kind::StructValue(Struct {
            fields: members
                .into_iter()
                .map(|(name, value)| (name, proto_value(value)))
                .collect(),
        }),
    };
    ProtoValue { kind: Some(kind) }
}
