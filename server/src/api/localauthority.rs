//! The LocalAuthority service: operators see and drive the rotation of the server's X.509 and JWT
//! authorities. Admin socket only.

use signet_proto::spire::api::server::localauthority::v1::{
    ActivateJwtAuthorityRequest, ActivateJwtAuthorityResponse, ActivateX509AuthorityRequest,
    ActivateX509AuthorityResponse, AuthorityState, GetJwtAuthorityStateRequest,
    GetJwtAuthorityStateResponse, GetX509AuthorityStateRequest, GetX509AuthorityStateResponse,
    PrepareJwtAuthorityRequest, PrepareJwtAuthorityResponse, PrepareX509AuthorityRequest,
    PrepareX509AuthorityResponse, RevokeJwtAuthorityRequest, RevokeJwtAuthorityResponse,
    RevokeX509AuthorityRequest, RevokeX509AuthorityResponse, RevokeX509UpstreamAuthorityRequest,
    RevokeX509UpstreamAuthorityResponse, TaintJwtAuthorityRequest, TaintJwtAuthorityResponse,
    TaintX509AuthorityRequest, TaintX509AuthorityResponse, TaintX509UpstreamAuthorityRequest,
    TaintX509UpstreamAuthorityResponse, local_authority_server::LocalAuthority,
};
use tonic::{Request, Response, Status};

use super::{ApiError, Services, unix_seconds};
use crate::authority::{AuthorityInfo, AuthorityKind, AuthorityStatus, Rotation};

#[tonic::async_trait]
impl LocalAuthority for Services {
    async fn get_jwt_authority_state(
        &self,
        _request: Request<GetJwtAuthorityStateRequest>,
    ) -> Result<Response<GetJwtAuthorityStateResponse>, Status> {
        let (active, prepared, old) = self.slots(&self.state.jwt_authorities).await?;
        Ok(Response::new(GetJwtAuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_jwt_authority(
        &self,
        _request: Request<PrepareJwtAuthorityRequest>,
    ) -> Result<Response<PrepareJwtAuthorityResponse>, Status> {
        self.require_admin()?;
        let prepared = self.state.jwt_authorities.prepare().await;
        Ok(Response::new(PrepareJwtAuthorityResponse {
            prepared_authority: state(prepared)?,
        }))
    }

    async fn activate_jwt_authority(
        &self,
        request: Request<ActivateJwtAuthorityRequest>,
    ) -> Result<Response<ActivateJwtAuthorityResponse>, Status> {
        self.require_admin()?;
        let id = authority_id(request.into_inner().authority_id)?;
        let activated = self.state.jwt_authorities.activate(&id).await;
        Ok(Response::new(ActivateJwtAuthorityResponse {
            activated_authority: state(activated)?,
        }))
    }

    async fn taint_jwt_authority(
        &self,
        request: Request<TaintJwtAuthorityRequest>,
    ) -> Result<Response<TaintJwtAuthorityResponse>, Status> {
        self.require_admin()?;
        let id = authority_id(request.into_inner().authority_id)?;
        let tainted = self.state.jwt_authorities.taint(&id).await;
        Ok(Response::new(TaintJwtAuthorityResponse {
            tainted_authority: state(tainted)?,
        }))
    }

    async fn revoke_jwt_authority(
        &self,
        request: Request<RevokeJwtAuthorityRequest>,
    ) -> Result<Response<RevokeJwtAuthorityResponse>, Status> {
        self.require_admin()?;
        let id = authority_id(request.into_inner().authority_id)?;
        let revoked = self.state.jwt_authorities.revoke(&id).await;
        Ok(Response::new(RevokeJwtAuthorityResponse {
            revoked_authority: state(revoked)?,
        }))
    }

    async fn get_x509_authority_state(
        &self,
        _request: Request<GetX509AuthorityStateRequest>,
    ) -> Result<Response<GetX509AuthorityStateResponse>, Status> {
        let (active, prepared, old) = self.slots(&self.state.x509_authorities).await?;
        Ok(Response::new(GetX509AuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_x509_authority(
        &self,
        _request: Request<PrepareX509AuthorityRequest>,
    ) -> Result<Response<PrepareX509AuthorityResponse>, Status> {
        self.require_admin()?;
        let prepared = self.state.x509_authorities.prepare().await;
        Ok(Response::new(PrepareX509AuthorityResponse {
            prepared_authority: state(prepared)?,
        }))
    }

    async fn activate_x509_authority(
        &self,
        request: Request<ActivateX509AuthorityRequest>,
    ) -> Result<Response<ActivateX509AuthorityResponse>, Status> {
        self.require_admin()?;
        let id = x509_authority_id(request.into_inner().authority_id)?;
        let activated = self.state.x509_authorities.activate(&id).await;
        Ok(Response::new(ActivateX509AuthorityResponse {
            activated_authority: state(activated)?,
        }))
    }

    async fn taint_x509_authority(
        &self,
        request: Request<TaintX509AuthorityRequest>,
    ) -> Result<Response<TaintX509AuthorityResponse>, Status> {
        self.require_admin()?;
        let id = x509_authority_id(request.into_inner().authority_id)?;
        let tainted = self.state.x509_authorities.taint(&id).await;
        Ok(Response::new(TaintX509AuthorityResponse {
            tainted_authority: state(tainted)?,
        }))
    }

    async fn taint_x509_upstream_authority(
        &self,
        _request: Request<TaintX509UpstreamAuthorityRequest>,
    ) -> Result<Response<TaintX509UpstreamAuthorityResponse>, Status> {
        Err(upstream_unsupported())
    }

    async fn revoke_x509_authority(
        &self,
        request: Request<RevokeX509AuthorityRequest>,
    ) -> Result<Response<RevokeX509AuthorityResponse>, Status> {
        self.require_admin()?;
        let id = x509_authority_id(request.into_inner().authority_id)?;
        let revoked = self.state.x509_authorities.revoke(&id).await;
        Ok(Response::new(RevokeX509AuthorityResponse {
            revoked_authority: state(revoked)?,
        }))
    }

    async fn revoke_x509_upstream_authority(
        &self,
        _request: Request<RevokeX509UpstreamAuthorityRequest>,
    ) -> Result<Response<RevokeX509UpstreamAuthorityResponse>, Status> {
        Err(upstream_unsupported())
    }
}

/// The active, prepared and old slots of one kind, as the state responses carry them.
type Slots = (
    Option<AuthorityState>,
    Option<AuthorityState>,
    Option<AuthorityState>,
);

impl Services {
    async fn slots<K: AuthorityKind>(&self, rotation: &Rotation<K>) -> Result<Slots, ApiError> {
        self.require_admin()?;
        let AuthorityStatus {
            active,
            prepared,
            old,
        } = rotation.status().await;
        Ok((
            Some(to_proto(&active)),
            prepared.as_ref().map(to_proto),
            old.as_ref().map(to_proto),
        ))
    }
}

/// Checks an authority ID from a request: not empty, at most [`MAX_AUTHORITY_ID_LEN`] bytes, and
/// printable ASCII, so that error messages can name it.
fn authority_id(id: String) -> Result<String, ApiError> {
    let show = "`signet-server localauthority x509 show` (or `jwt show`) lists the IDs";
    if id.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "no authority ID given; {show}"
        )));
    }
    if id.len() > MAX_AUTHORITY_ID_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "the authority ID is {} bytes long, more than the {MAX_AUTHORITY_ID_LEN} any \
             authority has; {show}",
            id.len()
        )));
    }
    if !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::InvalidArgument(format!(
            "invalid authority ID {id:?}: only printable ASCII without spaces; {show}"
        )));
    }
    Ok(id)
}

/// Checks an X.509 authority ID and accepts it the way OpenSSL prints a subject key identifier
/// too: upper-case and with colons.
fn x509_authority_id(id: String) -> Result<String, ApiError> {
    Ok(authority_id(id)?.replace(':', "").to_ascii_lowercase())
}

/// Maximum length of an authority ID. An X.509 subject key identifier printed by OpenSSL (with
/// colons) or a JWT `kid` is far shorter.
const MAX_AUTHORITY_ID_LEN: usize = 256;

fn state(
    result: Result<AuthorityInfo, crate::authority::RotationError>,
) -> Result<Option<AuthorityState>, ApiError> {
    Ok(Some(to_proto(&result?)))
}

fn to_proto(info: &AuthorityInfo) -> AuthorityState {
    AuthorityState {
        authority_id: info.authority_id.clone(),
        expires_at: unix_seconds(info.expires_at),
    }
}

fn upstream_unsupported() -> Status {
    Status::unimplemented(
        "upstream authorities are managed by the upstream CA; Signet does not taint or revoke them",
    )
}
