//! The SVID service: signing workload X509-SVIDs and JWT-SVIDs for the entries an agent is
//! authorized for, and minting either kind for operators on the admin socket.

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
use tonic::{Request, Response, Status};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::agent::x509_svid;
use super::error::ok_status;
use super::{ApiError, Services, unix_seconds};
use crate::jwt::{JwtError, SignedJwtSvid};
use crate::model::RegistrationEntry;

#[tonic::async_trait]
impl SvidApi for Services {
    async fn batch_new_x509svid(
        &self,
        request: Request<BatchNewX509svidRequest>,
    ) -> Result<Response<BatchNewX509svidResponse>, Status> {
        let agent = self.authenticate_agent(&request).await?;
        let entries = self.authorized_entries(&agent).await?;

        let results = request
            .into_inner()
            .params
            .into_iter()
            .map(|params| match self.sign_workload_svid(&entries, &params) {
                Ok(svid) => batch_new_x509svid_response::Result {
                    status: Some(ok_status()),
                    svid: Some(svid),
                },
                Err(error) => batch_new_x509svid_response::Result {
                    status: Some(error.to_proto_status()),
                    svid: None,
                },
            })
            .collect();
        Ok(Response::new(BatchNewX509svidResponse { results }))
    }

    async fn mint_x509svid(
        &self,
        request: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let svid = self.mint_x509_svid(&request.csr, request.ttl)?;
        Ok(Response::new(MintX509svidResponse { svid: Some(svid) }))
    }

    async fn mint_jwtsvid(
        &self,
        request: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let spiffe_id = from_proto_id(request.id.as_ref()).map_err(ApiError::from)?;
        let ttl = requested_ttl(request.ttl, self.state.jwt().default_ttl())?;
        let svid = self.sign_jwt_svid(&spiffe_id, &request.audience, ttl)?;
        Ok(Response::new(MintJwtsvidResponse {
            svid: Some(jwt_svid(svid, &spiffe_id, String::new())),
        }))
    }

    async fn new_jwtsvid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        let agent = self.authenticate_agent(&request).await?;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(ApiError::from(JwtError::InvalidAudience(AudienceError::Missing)).into());
        }
        let entries = self.authorized_entries(&agent).await?;
        let entry = find_authorized(&entries, &request.entry_id)?;

        let ttl = match u64::try_from(entry.jwt_svid_ttl) {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => self.state.jwt().default_ttl(),
        };
        let ttl = entry
            .ttl_within_expiry(ttl, super::unix_now())
            .ok_or_else(|| ApiError::NotFound(format!("entry {:?} has expired", entry.id)))?;
        let svid = self.sign_jwt_svid(&entry.spiffe_id, &request.audience, ttl)?;
        Ok(Response::new(NewJwtsvidResponse {
            svid: Some(jwt_svid(svid, &entry.spiffe_id, entry.hint.clone())),
        }))
    }
}

impl Services {
    /// Signs the CSR for the entry named in `params`, which must be among `authorized` entries.
    fn sign_workload_svid(
        &self,
        authorized: &[RegistrationEntry],
        params: &NewX509svidParams,
    ) -> Result<types::X509svid, ApiError> {
        let entry = find_authorized(authorized, &params.entry_id)?;
        if params.csr.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "missing CSR for entry {:?}",
                params.entry_id
            )));
        }

        let ttl = match u64::try_from(entry.x509_svid_ttl) {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => self.state.default_x509_svid_ttl,
        };
        let ttl = entry
            .ttl_within_expiry(ttl, super::unix_now())
            .ok_or_else(|| ApiError::NotFound(format!("entry {:?} has expired", entry.id)))?;
        let svid =
            self.state
                .ca()
                .sign_x509_svid(&params.csr, &entry.spiffe_id, ttl, &entry.dns_names)?;
        tracing::debug!(
            entry_id = %entry.id,
            spiffe_id = %entry.spiffe_id,
            serial = %svid.serial_number,
            "X509-SVID signed"
        );

        let mut svid = x509_svid(svid, &entry.spiffe_id);
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

        let svid = self
            .state
            .ca()
            .sign_x509_svid(csr, &spiffe_id, ttl, &dns_names)?;
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
        let svid = signer.sign(spiffe_id, audience, ttl)?;
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
fn find_authorized<'a>(
    authorized: &'a [RegistrationEntry],
    entry_id: &str,
) -> Result<&'a RegistrationEntry, ApiError> {
    authorized
        .iter()
        .find(|entry| entry.id == entry_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "entry {entry_id:?} not found or not authorized for this agent"
            ))
        })
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
