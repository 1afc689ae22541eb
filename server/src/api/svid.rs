//! The SVID service: signing workload X509-SVIDs for the entries an agent is authorized for.

use std::time::Duration;

use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, BatchNewX509svidResponse, MintJwtsvidRequest, MintJwtsvidResponse,
    MintX509svidRequest, MintX509svidResponse, NewJwtsvidRequest, NewJwtsvidResponse,
    NewX509svidParams, batch_new_x509svid_response, svid_server::Svid as SvidApi,
};
use signet_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::agent::x509_svid;
use super::error::ok_status;
use super::{ApiError, Services};
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

    // TODO: operator minting and JWT-SVIDs are not implemented yet.
    async fn mint_x509svid(
        &self,
        _request: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        Err(Status::unimplemented(
            "minting X509-SVIDs is not implemented",
        ))
    }

    async fn mint_jwtsvid(
        &self,
        _request: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        Err(Status::unimplemented("JWT-SVIDs are not implemented"))
    }

    async fn new_jwtsvid(
        &self,
        _request: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        Err(Status::unimplemented("JWT-SVIDs are not implemented"))
    }
}

impl Services {
    /// Signs the CSR for the entry named in `params`, which must be among `authorized` entries.
    fn sign_workload_svid(
        &self,
        authorized: &[RegistrationEntry],
        params: &NewX509svidParams,
    ) -> Result<types::X509svid, ApiError> {
        let entry = authorized
            .iter()
            .find(|entry| entry.id == params.entry_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "entry {:?} not found or not authorized for this agent",
                    params.entry_id
                ))
            })?;
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
        let svid =
            self.state
                .ca
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
