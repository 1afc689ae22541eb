//! The Agent service: join-token attestation, agent SVID renewal, join token creation and agent
//! management.

use std::pin::Pin;

use futures::Stream;
use signet_core::ids::{from_proto_id, join_token_agent_id, to_proto_id};
use signet_proto::spire::api::server::agent::v1::{
    AgentX509svidParams, AttestAgentRequest, AttestAgentResponse, BanAgentRequest,
    CountAgentsRequest, CountAgentsResponse, CreateJoinTokenRequest, DeleteAgentRequest,
    GetAgentRequest, ListAgentsRequest, ListAgentsResponse, RenewAgentRequest, RenewAgentResponse,
    agent_server::Agent as AgentApi, attest_agent_request, attest_agent_response,
};
use signet_proto::spire::api::types;
use spiffe::SpiffeId;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::filter::AgentFilter;
use super::paging::paginate;
use super::{ApiError, Services, mask, unix_now, unix_seconds};
use crate::ca::SignedX509Svid;
use crate::model::{AttestedAgent, JoinToken, RegistrationEntry};
use signet_core::ids::redacted_agent_id;

/// Attestation type of agents attested with a join token.
const JOIN_TOKEN_ATTESTOR: &str = "join_token";

/// Status message for every join token that cannot be used.
///
/// It never repeats the token, and it is the same for unknown and used tokens, so a caller cannot
/// probe which tokens existed.
const JOIN_TOKEN_REJECTED: &str = "join token does not exist or has already been used";

/// The response stream of `AttestAgent`.
type AttestAgentStream = Pin<Box<dyn Stream<Item = Result<AttestAgentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentApi for Services {
    async fn count_agents(
        &self,
        request: Request<CountAgentsRequest>,
    ) -> Result<Response<CountAgentsResponse>, Status> {
        self.require_admin()?;
        let filter = AgentFilter::from_count(request.into_inner().filter)?;
        let agents = self
            .state
            .datastore
            .list_agents()
            .await
            .map_err(ApiError::from)?;
        let count = agents.iter().filter(|agent| filter.matches(agent)).count();
        Ok(Response::new(CountAgentsResponse {
            count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let filter = AgentFilter::from_list(request.filter)?;

        let mut agents = self
            .state
            .datastore
            .list_agents()
            .await
            .map_err(ApiError::from)?;
        agents.retain(|agent| filter.matches(agent));
        let page = paginate(
            agents,
            |agent| agent.spiffe_id.to_string(),
            |token| SpiffeId::new(token).is_ok(),
            request.page_size,
            &request.page_token,
        )?;

        let agents = page
            .items
            .iter()
            .map(|agent| mask::filter_agent(agent.to_proto(), request.output_mask.as_ref()))
            .collect();
        Ok(Response::new(ListAgentsResponse {
            agents,
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<types::Agent>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        let agent_id = from_proto_id(request.id.as_ref()).map_err(ApiError::from)?;
        let agent = self
            .state
            .datastore
            .fetch_agent(&agent_id)
            .await
            .map_err(ApiError::from)?;
        let agent = agent.ok_or_else(|| agent_not_found(&agent_id))?;
        Ok(Response::new(mask::filter_agent(
            agent.to_proto(),
            request.output_mask.as_ref(),
        )))
    }

    async fn delete_agent(
        &self,
        request: Request<DeleteAgentRequest>,
    ) -> Result<Response<()>, Status> {
        self.require_admin()?;
        let agent_id = from_proto_id(request.into_inner().id.as_ref()).map_err(ApiError::from)?;
        self.state
            .datastore
            .delete_agent(&agent_id)
            .await
            .map_err(|error| not_found_or(error, agent_not_found(&agent_id)))?;

        self.state.authenticator.forget(&agent_id);
        self.state.changes.notify();
        tracing::info!(agent_id = %redacted_agent_id(&agent_id), "Agent evicted");
        Ok(Response::new(()))
    }

    async fn ban_agent(&self, request: Request<BanAgentRequest>) -> Result<Response<()>, Status> {
        self.require_admin()?;
        let agent_id = from_proto_id(request.into_inner().id.as_ref()).map_err(ApiError::from)?;
        self.state
            .datastore
            .ban_agent(&agent_id)
            .await
            .map_err(|error| not_found_or(error, agent_not_found(&agent_id)))?;

        self.state.authenticator.banned(&agent_id);
        self.state.changes.notify();
        tracing::info!(agent_id = %redacted_agent_id(&agent_id), "Agent banned");
        Ok(Response::new(()))
    }

    type AttestAgentStream = AttestAgentStream;

    async fn attest_agent(
        &self,
        request: Request<Streaming<AttestAgentRequest>>,
    ) -> Result<Response<AttestAgentStream>, Status> {
        let mut stream = request.into_inner();
        let Some(attest_agent_request::Step::Params(params)) =
            stream.message().await?.and_then(|request| request.step)
        else {
            return Err(ApiError::InvalidArgument(
                "the first AttestAgent message must carry the attestation parameters".to_owned(),
            )
            .into());
        };

        let started = Instant::now();
        let result = self.attest_with_join_token(params).await;
        let code = result
            .as_ref()
            .map_or_else(ApiError::code, |_| tonic::Code::Ok);
        self.state
            .metrics
            .observe_attestation(started.elapsed(), code);
        let result = result.inspect_err(|error| {
            // The message never contains the token, so it is safe to log.
            tracing::warn!(error = %error, "Agent attestation failed");
        })?;
        let response = AttestAgentResponse {
            step: Some(attest_agent_response::Step::Result(result)),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(response)
        }))))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let agent = self.authenticate_agent(&request).await?;
        let csr = csr(request.into_inner().params)?;
        let svid = self.sign_agent_svid(&csr, &agent.spiffe_id)?;

        let previous_serial = agent.serial_number.clone();
        let renewed = AttestedAgent {
            serial_number: svid.serial_number.clone(),
            expires_at: unix_seconds(svid.expires_at),
            x509_authority_id: svid.authority_id.clone(),
            ..agent
        };
        self.state
            .datastore
            .update_agent(&renewed)
            .await
            .map_err(|error| {
                let not_found = ApiError::NotFound(format!(
                    "agent {} not found",
                    redacted_agent_id(&renewed.spiffe_id)
                ));
                not_found_or(error, not_found)
            })?;
        self.state
            .authenticator
            .renewed(&renewed.spiffe_id, previous_serial);

        tracing::debug!(
            agent_id = %redacted_agent_id(&renewed.spiffe_id),
            serial = %svid.serial_number,
            "Agent X509-SVID renewed"
        );
        Ok(Response::new(RenewAgentResponse {
            svid: Some(x509_svid(svid, &renewed.spiffe_id)),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<types::JoinToken>, Status> {
        self.require_admin()?;
        let request = request.into_inner();
        if request.ttl <= 0 {
            return Err(ApiError::InvalidArgument(format!(
                "invalid join token ttl {}: use a positive number of seconds",
                request.ttl
            ))
            .into());
        }

        let token = JoinToken {
            value: match request.token.as_str() {
                "" => uuid::Uuid::new_v4().to_string(),
                value => value.to_owned(),
            },
            expires_at: unix_now().saturating_add(i64::from(request.ttl)),
        };
        let agent_id =
            join_token_agent_id(&self.state.trust_domain, &token.value).map_err(|_| {
                ApiError::InvalidArgument(
                    "invalid join token: use letters, digits, '-', '_' and '.' only".to_owned(),
                )
            })?;
        let alias = request
            .agent_id
            .map(|node_id| self.node_alias_entry(node_id, &agent_id))
            .transpose()?;

        self.store_join_token(&token).await?;
        if let Some(alias) = alias {
            let alias = self
                .state
                .datastore
                .create_entry(alias)
                .await
                .map_err(ApiError::from)?;
            tracing::info!(entry_id = %alias.id, spiffe_id = %alias.spiffe_id, "Node alias entry created");
            self.state.changes.notify();
        }
        Ok(Response::new(types::JoinToken {
            value: token.value.clone(),
            expires_at: token.expires_at,
        }))
    }
}

impl Services {
    /// Attests an agent with the join token in `params` and signs its first X509-SVID.
    async fn attest_with_join_token(
        &self,
        params: attest_agent_request::Params,
    ) -> Result<attest_agent_response::Result, ApiError> {
        let (token, csr) = join_token_params(params)?;
        let agent_id = join_token_agent_id(&self.state.trust_domain, &token)
            .map_err(|_| ApiError::PermissionDenied(JOIN_TOKEN_REJECTED.to_owned()))?;

        let existing = self.state.datastore.fetch_agent(&agent_id).await?;
        if existing.as_ref().is_some_and(|agent| agent.banned) {
            return Err(ApiError::PermissionDenied(format!(
                "agent {} is banned",
                redacted_agent_id(&agent_id)
            )));
        }
        // Signing comes before the token is consumed, so a bad CSR does not burn the token.
        let svid = self.sign_agent_svid(&csr, &agent_id)?;
        self.consume_join_token(&token).await?;

        let agent = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: JOIN_TOKEN_ATTESTOR.to_owned(),
            serial_number: svid.serial_number.clone(),
            expires_at: unix_seconds(svid.expires_at),
            selectors: Vec::new(),
            banned: false,
            can_reattest: false,
            x509_authority_id: svid.authority_id.clone(),
        };
        match existing {
            Some(_) => self.state.datastore.update_agent(&agent).await?,
            None => self.state.datastore.create_agent(&agent).await?,
        }
        self.state.authenticator.forget(&agent_id);
        self.state.changes.notify();
        tracing::info!(
            agent_id = %redacted_agent_id(&agent_id),
            serial = %svid.serial_number,
            "Agent attested"
        );

        Ok(attest_agent_response::Result {
            svid: Some(x509_svid(svid, &agent_id)),
            reattestable: false,
        })
    }

    /// Deletes the token so it cannot be used again; fails unless it existed and had not expired.
    async fn consume_join_token(&self, token: &str) -> Result<(), ApiError> {
        match self.state.datastore.consume_join_token(token).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::PermissionDenied(JOIN_TOKEN_REJECTED.to_owned())),
        }
    }

    async fn store_join_token(&self, token: &JoinToken) -> Result<(), ApiError> {
        match self.state.datastore.create_join_token(token).await {
            Ok(()) => {
                tracing::info!(expires_at = token.expires_at, "Join token created");
                Ok(())
            }
            // The datastore's message could contain the token.
            Err(error) if error.is_already_exists() => Err(ApiError::AlreadyExists(
                "a join token with this value exists already".to_owned(),
            )),
            Err(error) => Err(error.into()),
        }
    }

    /// Builds the entry that gives agents attested with this token the SPIFFE ID `node_id` too,
    /// as SPIRE does for `token generate -spiffeID`.
    fn node_alias_entry(
        &self,
        node_id: types::Spiffeid,
        agent_id: &SpiffeId,
    ) -> Result<RegistrationEntry, ApiError> {
        let entry = types::Entry {
            spiffe_id: Some(node_id),
            parent_id: Some(to_proto_id(agent_id)),
            selectors: vec![types::Selector {
                r#type: "spiffe_id".to_owned(),
                value: agent_id.to_string(),
            }],
            ..types::Entry::default()
        };
        Ok(RegistrationEntry::from_proto(
            entry,
            &self.state.trust_domain,
        )?)
    }

    fn sign_agent_svid(&self, csr: &[u8], agent_id: &SpiffeId) -> Result<SignedX509Svid, ApiError> {
        self.sign_x509_svid(csr, agent_id, self.state.agent_svid_ttl, &[])
    }
}

/// Returns the join token and the CSR of the first `AttestAgent` message.
fn join_token_params(params: attest_agent_request::Params) -> Result<(String, Vec<u8>), ApiError> {
    let data = params
        .data
        .ok_or_else(|| ApiError::InvalidArgument("missing attestation data".to_owned()))?;
    if data.r#type != JOIN_TOKEN_ATTESTOR {
        return Err(ApiError::InvalidArgument(format!(
            "unsupported attestation type {:?}: this server supports join_token",
            data.r#type
        )));
    }
    let csr = csr(params.params)?;
    let token = String::from_utf8(data.payload)
        .map_err(|_| ApiError::PermissionDenied(JOIN_TOKEN_REJECTED.to_owned()))?;
    Ok((token, csr))
}

/// Returns the CSR of an agent X509-SVID request.
fn csr(params: Option<AgentX509svidParams>) -> Result<Vec<u8>, ApiError> {
    params
        .map(|params| params.csr)
        .filter(|csr| !csr.is_empty())
        .ok_or_else(|| ApiError::InvalidArgument("missing CSR for the agent X509-SVID".to_owned()))
}

/// Builds the API form of a signed X509-SVID.
pub(super) fn x509_svid(svid: SignedX509Svid, spiffe_id: &SpiffeId) -> types::X509svid {
    types::X509svid {
        cert_chain: svid.chain.into_iter().map(|cert| cert.to_vec()).collect(),
        id: Some(to_proto_id(spiffe_id)),
        expires_at: unix_seconds(svid.expires_at),
        hint: String::new(),
    }
}

/// Builds the error of an admin RPC about an unknown agent. It names the full ID, as the operator
/// sent it, because only the server's user can reach the admin socket and these errors are not
/// logged.
fn agent_not_found(agent_id: &SpiffeId) -> ApiError {
    ApiError::NotFound(format!("agent {agent_id} not found"))
}

/// Replaces the datastore's not-found error with `not_found`, so that the caller decides whether
/// the message may show a join token.
fn not_found_or(error: crate::datastore::DatastoreError, not_found: ApiError) -> ApiError {
    if error.is_not_found() {
        not_found
    } else {
        error.into()
    }
}
