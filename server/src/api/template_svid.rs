//! The `TemplateSvid` service: JWT-SVIDs for registration entries with a SPIFFE ID template.
//!
//! SPIRE's `NewJWTSVID` names only the entry, so it cannot identify which expansion of a template
//! the token is for. Here the agent names the concrete SPIFFE ID it filled in from the
//! workload's selectors, and the server checks it against the template exactly as it checks the
//! URI SAN of an X509-SVID request.

use signet_core::ids::from_proto_id;
use signet_proto::signet::server::svid::v1::{
    NewJwtsvidRequest, NewJwtsvidResponse, template_svid_server::TemplateSvid,
};
use signet_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::svid::{check_expansion, find_authorized, require_audience};
use super::{ApiError, Services};
use crate::metrics::SvidKind;

#[tonic::async_trait]
impl TemplateSvid for Services {
    async fn new_jwtsvid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        let signed = self.new_template_jwt_svid(request).await;
        let svid = self.count_denied(SvidKind::Jwt, signed)?;
        Ok(Response::new(NewJwtsvidResponse { svid: Some(svid) }))
    }
}

impl Services {
    /// Signs a JWT-SVID for the concrete SPIFFE ID of an authorized entry that an agent's
    /// `TemplateSvid/NewJWTSVID` request names.
    async fn new_template_jwt_svid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<types::Jwtsvid, ApiError> {
        let agent = self.authenticate_agent(&request).await?;
        let request = request.into_inner();
        require_audience(&request.audience)?;
        let spiffe_id = from_proto_id(request.spiffe_id.as_ref())?;
        let entries = self.authorized_entries(&agent).await?;
        let entry = find_authorized(&entries, &request.entry_id)?;
        check_expansion(entry, &spiffe_id)?;
        self.sign_entry_jwt_svid(entry, &spiffe_id, &request.audience)
    }
}
