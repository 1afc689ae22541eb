//! The SVID service: signing workload X509-SVIDs and JWT-SVIDs for the entries an agent is
//! authorized for, and minting either kind for operators on the admin socket. JWT-SVIDs of
//! template entries come from the `TemplateSvid` service in `template_svid`.

use std::time::Duration;

use signet_core::audience::AudienceError;
use signet_core::ids::{from_proto_id, parse_spiffe_id, to_proto_id};
use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, BatchNewX509svidResponse, MintJwtsvidRequest, MintJwtsvidResponse,
    MintX509svidRequest, MintX509svidResponse, NewJwtsvidRequest, NewJwtsvidResponse,
    NewX509svidParams, batch_new_x509svid_response, svid_server::Svid as SvidApi,
};
use signet_proto::spire::api::types;
use spiffe::SpiffeId;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::agent::x509_svid;
use super::error::ok_status;
use super::{ApiError, Services, unix_seconds};
use crate::authorization::cache::AuthorizedEntries;
use crate::ca::SignedX509Svid;
use crate::jwt::{JwtError, SignedJwtSvid};
use crate::metrics::SvidKind;
use crate::model::RegistrationEntry;

#[tonic::async_trait]
impl SvidApi for Services {
    async fn batch_new_x509svid(
        &self,
        request: Request<BatchNewX509svidRequest>,
    ) -> Result<Response<BatchNewX509svidResponse>, Status> {
        let authorized = async {
            let agent = self.authenticate_agent(&request).await?;
            self.authorized_entries(&agent).await
        };
        let entries = self.count_denied(SvidKind::X509, authorized.await)?;

        let results = request
            .into_inner()
            .params
            .into_iter()
            .map(|params| match self.sign_workload_svid(&entries, &params) {
                Ok(svid) => batch_new_x509svid_response::Result {
                    status: Some(ok_status()),
                    svid: Some(svid),
                },
                Err(error) => {
                    self.state.metrics.svid_denied(SvidKind::X509, error.code());
                    batch_new_x509svid_response::Result {
                        status: Some(error.to_proto_status()),
                        svid: None,
                    }
                }
            })
            .collect();
        Ok(Response::new(BatchNewX509svidResponse { results }))
    }

    async fn mint_x509svid(
        &self,
        request: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        let minted = self.require_admin().and_then(|()| {
            let request = request.into_inner();
            self.mint_x509_svid(&request.csr, request.ttl)
        });
        let svid = self.count_denied(SvidKind::X509, minted)?;
        Ok(Response::new(MintX509svidResponse { svid: Some(svid) }))
    }

    async fn mint_jwtsvid(
        &self,
        request: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        let minted = self.require_admin().and_then(|()| {
            let request = request.into_inner();
            let spiffe_id = from_proto_id(request.id.as_ref())?;
            let ttl = requested_ttl(request.ttl, self.state.jwt().default_ttl())?;
            let svid = self.sign_jwt_svid(&spiffe_id, &request.audience, ttl)?;
            Ok(jwt_svid(svid, &spiffe_id, String::new()))
        });
        let svid = self.count_denied(SvidKind::Jwt, minted)?;
        Ok(Response::new(MintJwtsvidResponse { svid: Some(svid) }))
    }

    async fn new_jwtsvid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        let signed = self.new_jwt_svid(request).await;
        let svid = self.count_denied(SvidKind::Jwt, signed)?;
        Ok(Response::new(NewJwtsvidResponse { svid: Some(svid) }))
    }
}

impl Services {
    /// Signs a JWT-SVID for the authorized entry that an agent's `NewJWTSVID` request names.
    async fn new_jwt_svid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<types::Jwtsvid, ApiError> {
        let agent = self.authenticate_agent(&request).await?;
        let request = request.into_inner();
        require_audience(&request.audience)?;
        let entries = self.authorized_entries(&agent).await?;
        let entry = find_authorized(&entries, &request.entry_id)?;
        let Some(spiffe_id) = entry.spiffe_id.spiffe_id() else {
            return Err(ApiError::FailedPrecondition(format!(
                "entry {:?} has the SPIFFE ID template {}: request its JWT-SVIDs with \
                 signet.server.svid.v1.TemplateSvid/NewJWTSVID and the concrete SPIFFE ID",
                entry.id, entry.spiffe_id
            )));
        };
        self.sign_entry_jwt_svid(entry, spiffe_id, &request.audience)
    }

    /// Signs a JWT-SVID for `spiffe_id`, the ID of `entry` or an expansion of its template, with
    /// the entry's JWT-SVID lifetime and hint.
    pub(super) fn sign_entry_jwt_svid(
        &self,
        entry: &RegistrationEntry,
        spiffe_id: &SpiffeId,
        audience: &[String],
    ) -> Result<types::Jwtsvid, ApiError> {
        let ttl = match u64::try_from(entry.jwt_svid_ttl) {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => self.state.jwt().default_ttl(),
        };
        let ttl = entry
            .ttl_within_expiry(ttl, super::unix_now())
            .ok_or_else(|| ApiError::NotFound(format!("entry {:?} has expired", entry.id)))?;
        let svid = self.sign_jwt_svid(spiffe_id, audience, ttl)?;
        Ok(jwt_svid(svid, spiffe_id, entry.hint.clone()))
    }

    /// Counts a failed SVID request as denied, with its gRPC code as the reason.
    pub(super) fn count_denied<T>(
        &self,
        kind: SvidKind,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        result.inspect_err(|error| self.state.metrics.svid_denied(kind, error.code()))
    }

    /// Signs an X509-SVID with the active CA, and records the signature in the metrics.
    pub(super) fn sign_x509_svid(
        &self,
        csr: &[u8],
        spiffe_id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
    ) -> Result<SignedX509Svid, ApiError> {
        let started = Instant::now();
        let svid = self
            .state
            .ca()
            .sign_x509_svid(csr, spiffe_id, ttl, dns_names)?;
        let metrics = &self.state.metrics;
        metrics.observe_signing(SvidKind::X509, started.elapsed());
        metrics.svid_issued(SvidKind::X509);
        Ok(svid)
    }
}

impl Services {
    /// Signs the CSR for the entry named in `params`, which must be among `authorized` entries.
    fn sign_workload_svid(
        &self,
        authorized: &AuthorizedEntries,
        params: &NewX509svidParams,
    ) -> Result<types::X509svid, ApiError> {
        let entry = find_authorized(authorized, &params.entry_id)?;
        if params.csr.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "missing CSR for entry {:?}",
                params.entry_id
            )));
        }
        let spiffe_id = workload_spiffe_id(entry, &params.csr)?;

        let ttl = match u64::try_from(entry.x509_svid_ttl) {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => self.state.default_x509_svid_ttl,
        };
        let ttl = entry
            .ttl_within_expiry(ttl, super::unix_now())
            .ok_or_else(|| ApiError::NotFound(format!("entry {:?} has expired", entry.id)))?;
        let svid = self.sign_x509_svid(&params.csr, &spiffe_id, ttl, &entry.dns_names)?;
        tracing::debug!(
            entry_id = %entry.id,
            spiffe_id = %spiffe_id,
            serial = %svid.serial_number,
            "X509-SVID signed"
        );

        let mut svid = x509_svid(svid, &spiffe_id);
        svid.hint = entry.hint.clone();
        Ok(svid)
    }
}

impl Services {
    /// Signs an X509-SVID for the one SPIFFE ID the CSR's URI SAN names, with the CSR's DNS SANs.
    fn mint_x509_svid(&self, csr: &[u8], ttl_seconds: i32) -> Result<types::X509svid, ApiError> {
        if csr.is_empty() {
            return Err(ApiError::InvalidArgument("missing CSR".to_owned()));
        }
        let ttl = requested_ttl(ttl_seconds, self.state.default_x509_svid_ttl)?;
        let (spiffe_id, dns_names) = csr_names(csr)?;

        let svid = self.sign_x509_svid(csr, &spiffe_id, ttl, &dns_names)?;
        tracing::debug!(
            spiffe_id = %spiffe_id,
            serial = %svid.serial_number,
            "X509-SVID minted"
        );
        Ok(x509_svid(svid, &spiffe_id))
    }

    fn sign_jwt_svid(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<SignedJwtSvid, ApiError> {
        let signer = self.state.jwt();
        let started = Instant::now();
        let svid = signer.sign(spiffe_id, audience, ttl)?;
        self.state
            .metrics
            .observe_signing(SvidKind::Jwt, started.elapsed());
        self.state.metrics.svid_issued(SvidKind::Jwt);
        tracing::debug!(
            spiffe_id = %spiffe_id,
            audience = ?audience,
            key_id = %signer.key().key_id(),
            expiry = %humantime::format_rfc3339_seconds(svid.expires_at),
            "JWT-SVID signed"
        );
        Ok(svid)
    }
}

/// Returns the entry `entry_id` if it is among the `authorized` entries. An entry that exists but
/// is not authorized gets the same error as a missing one, so agents cannot probe for entries.
pub(super) fn find_authorized<'a>(
    authorized: &'a AuthorizedEntries,
    entry_id: &str,
) -> Result<&'a RegistrationEntry, ApiError> {
    authorized.find(entry_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "entry {entry_id:?} not found or not authorized for this agent"
        ))
    })
}

/// Returns the SPIFFE ID of an X509-SVID for `entry`: the entry's own ID, or for a template the
/// ID in the CSR's URI SAN once it is shown to be an expansion of the template.
fn workload_spiffe_id(entry: &RegistrationEntry, csr: &[u8]) -> Result<SpiffeId, ApiError> {
    if let Some(id) = entry.spiffe_id.spiffe_id() {
        return Ok(id.clone());
    }
    let (requested, _) = csr_names(csr)?;
    check_expansion(entry, &requested)?;
    Ok(requested)
}

/// Checks that the concrete ID an agent `requested` for `entry` is an expansion of the entry's
/// template, or the entry's own ID for a plain entry.
///
/// The server cannot check that the filled-in values are the workload's selectors. The agent is
/// trusted to attest workloads for the entries it is authorized for, for templates as for plain
/// entries.
pub(super) fn check_expansion(
    entry: &RegistrationEntry,
    requested: &SpiffeId,
) -> Result<(), ApiError> {
    entry
        .spiffe_id
        .check_expansion(requested)
        .map_err(|error| ApiError::PermissionDenied(format!("entry {:?}: {error}", entry.id)))
}

/// Rejects a JWT-SVID request without an audience.
pub(super) fn require_audience(audience: &[String]) -> Result<(), ApiError> {
    if audience.is_empty() {
        return Err(ApiError::from(JwtError::InvalidAudience(
            AudienceError::Missing,
        )));
    }
    Ok(())
}

/// Returns the TTL of a mint request: `default` for 0, an error for a negative value.
fn requested_ttl(ttl_seconds: i32, default: Duration) -> Result<Duration, ApiError> {
    match u64::try_from(ttl_seconds) {
        Ok(0) => Ok(default),
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(ApiError::InvalidArgument(format!(
            "invalid ttl {ttl_seconds}: use a positive number of seconds, or 0 for the default"
        ))),
    }
}

/// Returns the SPIFFE ID and DNS names a CSR requests. The CA checks the signature and the trust
/// domain, so this only extracts the subject alternative names.
fn csr_names(csr: &[u8]) -> Result<(SpiffeId, Vec<String>), ApiError> {
    let invalid = |reason: &str| ApiError::InvalidArgument(format!("invalid CSR: {reason}"));
    let (_, request) = X509CertificationRequest::from_der(csr)
        .map_err(|_| invalid("not a DER PKCS#10 certification request"))?;

    let mut uris = Vec::new();
    let mut dns_names = Vec::new();
    let extensions = request.requested_extensions().into_iter().flatten();
    for extension in extensions {
        let ParsedExtension::SubjectAlternativeName(names) = extension else {
            continue;
        };
        for name in &names.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(*uri),
                GeneralName::DNSName(dns_name) => dns_names.push((*dns_name).to_owned()),
                _ => {}
            }
        }
    }

    let [uri] = uris.as_slice() else {
        return Err(invalid(&format!(
            "it must carry exactly one URI SAN with the SPIFFE ID, but has {}",
            uris.len()
        )));
    };
    let spiffe_id = parse_spiffe_id(uri).map_err(ApiError::from)?;
    Ok((spiffe_id, dns_names))
}

/// Builds the API form of a signed JWT-SVID.
fn jwt_svid(svid: SignedJwtSvid, spiffe_id: &SpiffeId, hint: String) -> types::Jwtsvid {
    types::Jwtsvid {
        token: svid.token,
        id: Some(to_proto_id(spiffe_id)),
        expires_at: unix_seconds(svid.expires_at),
        issued_at: unix_seconds(svid.issued_at),
        hint,
    }
}

#[cfg(test)]
mod tests;
