//! Calls from the agent to the server's agent API, one method per RPC.

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use signet_core::ids::to_proto_id;
use signet_core::jwk::jwk_from_public_key_der;
use signet_proto::signet::server::svid::v1::NewJwtsvidRequest as TemplateJwtSvidRequest;
use signet_proto::signet::server::svid::v1::template_svid_client::TemplateSvidClient;
use signet_proto::signet::server::sync::v1::sync_client::SyncClient;
use signet_proto::signet::server::sync::v1::{ChangeNotice, WatchChangesRequest};
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::agent::v1::{
    AgentX509svidParams, AttestAgentRequest, RenewAgentRequest, attest_agent_request,
    attest_agent_response,
};
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::entry::v1::GetAuthorizedEntriesRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, NewJwtsvidRequest, NewX509svidParams, batch_new_x509svid_response,
};
use signet_proto::spire::api::types::{AttestationData, Entry, JwtKey, Jwtsvid, X509svid};
use spiffe::{SpiffeId, TrustDomain};
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::NodeError;
use super::outage::OutageLog;
use super::rejection::RejectionSignal;
use crate::cache::JwtAuthority;
use crate::taint::TaintedAuthorities;

/// Largest response the agent accepts; entry lists of large deployments exceed tonic's 4 MiB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

const JOIN_TOKEN_ATTESTATION: &str = "join_token";

/// Client of the server's agent API over one channel. Clones share the connection.
#[derive(Clone, Debug)]
pub struct ServerClient {
    channel: Channel,
    rejection_signal: RejectionSignal,
    outage_log: OutageLog,
}

/// Outcome of one `BatchNewX509SVID` item.
pub type SignResult = batch_new_x509svid_response::Result;

/// The own trust domain's bundle as the server sent it.
#[derive(Clone, Debug)]
pub struct TrustBundle {
    /// X.509 authorities (DER), never empty.
    pub x509_authorities: Vec<CertificateDer<'static>>,
    /// JWT-SVID signing keys that have a key ID and a usable public key.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// The X.509 authorities the server marked as tainted, a subset of `x509_authorities`.
    pub tainted: TaintedAuthorities,
}

impl ServerClient {
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            channel,
            rejection_signal: RejectionSignal::new(),
            outage_log: OutageLog::default(),
        }
    }

    /// Makes this client report rejections of the agent to `signal`.
    pub(crate) fn with_rejection_signal(mut self, signal: RejectionSignal) -> Self {
        self.rejection_signal = signal;
        self
    }

    /// Makes this client report the outcome of its calls to `outage_log`.
    pub(crate) fn with_outage_log(mut self, outage_log: OutageLog) -> Self {
        self.outage_log = outage_log;
        self
    }

    /// Attests with a join token and returns the agent X509-SVID the server signed for `csr`.
    ///
    /// # Errors
    ///
    /// [`NodeError::JoinTokenRejected`] when the server does not accept the token,
    /// [`NodeError::Rpc`] for other failures, [`NodeError::UnexpectedChallenge`] when the server
    /// requests a challenge response.
    pub(crate) async fn attest_with_join_token(
        &self,
        token: &str,
        csr: Vec<u8>,
    ) -> Result<X509svid, NodeError> {
        let params = attest_agent_request::Params {
            data: Some(AttestationData {
                r#type: JOIN_TOKEN_ATTESTATION.to_owned(),
                payload: token.as_bytes().to_vec(),
            }),
            params: Some(AgentX509svidParams { csr }),
        };
        let request = AttestAgentRequest {
            step: Some(attest_agent_request::Step::Params(params)),
        };

        let mut client = AgentClient::new(self.channel.clone());
        let mut responses = client
            .attest_agent(tokio_stream::iter([request]))
            .await
            .map_err(attest_error)?
            .into_inner();
        let response = responses.message().await.map_err(attest_error)?;

        match response.and_then(|response| response.step) {
            Some(attest_agent_response::Step::Result(result)) => {
                result.svid.ok_or(NodeError::MissingSvid("AttestAgent"))
            }
            Some(attest_agent_response::Step::Challenge(_)) => Err(NodeError::UnexpectedChallenge),
            None => Err(NodeError::MissingSvid("AttestAgent")),
        }
    }

    /// Renews the agent X509-SVID of the caller, signing `csr`.
    ///
    /// # Errors
    ///
    /// [`NodeError::Rpc`] when the call fails, [`NodeError::MissingSvid`] on an empty response.
    pub(crate) async fn renew_agent(&self, csr: Vec<u8>) -> Result<X509svid, NodeError> {
        let request = RenewAgentRequest {
            params: Some(AgentX509svidParams { csr }),
        };
        let response = AgentClient::new(self.channel.clone())
            .renew_agent(request)
            .await;
        let response = self
            .observe(response)
            .map_err(|status| NodeError::rpc("RenewAgent", &status))?
            .into_inner();
        response.svid.ok_or(NodeError::MissingSvid("RenewAgent"))
    }

    /// Fetches the X.509 authorities of `trust_domain` from the server.
    ///
    /// # Errors
    ///
    /// As for [`ServerClient::trust_bundle`].
    pub async fn bundle(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<Vec<CertificateDer<'static>>, NodeError> {
        Ok(self.trust_bundle(trust_domain).await?.x509_authorities)
    }

    /// Fetches the bundle of `trust_domain` from the server: X.509 authorities and JWT keys.
    ///
    /// JWT keys without a key ID or with a public key that is not RSA, EC P-256 or EC P-384 are
    /// left out with a warning, because no JWT-SVID can be verified with them.
    ///
    /// # Errors
    ///
    /// [`NodeError::Rpc`] when the call fails, [`NodeError::InvalidBundle`] when the bundle is
    /// for another trust domain or has no X.509 authority.
    pub async fn trust_bundle(&self, trust_domain: &TrustDomain) -> Result<TrustBundle, NodeError> {
        let bundle = BundleClient::new(self.channel.clone())
            .get_bundle(GetBundleRequest::default())
            .await;
        let bundle = self
            .observe(bundle)
            .map_err(|status| NodeError::rpc("GetBundle", &status))?
            .into_inner();
        if bundle.trust_domain != trust_domain.as_str() {
            return Err(NodeError::InvalidBundle(format!(
                "server sent the bundle of trust domain {:?}, expected {trust_domain}",
                bundle.trust_domain
            )));
        }
        let tainted: Vec<_> = bundle
            .x509_authorities
            .iter()
            .filter(|authority| authority.tainted)
            .map(|authority| CertificateDer::from(authority.asn1.clone()))
            .collect();
        let tainted = TaintedAuthorities::new(&tainted);
        let x509_authorities: Vec<_> = bundle
            .x509_authorities
            .into_iter()
            .map(|authority| CertificateDer::from(authority.asn1))
            .collect();
        if x509_authorities.is_empty() {
            return Err(NodeError::InvalidBundle(
                "server sent a bundle without X.509 authorities".to_owned(),
            ));
        }
        let jwt_authorities = bundle
            .jwt_authorities
            .into_iter()
            .filter_map(jwt_authority)
            .collect();
        Ok(TrustBundle {
            x509_authorities,
            jwt_authorities,
            tainted,
        })
    }

    /// Fetches the registration entries this agent is authorized for.
    ///
    /// # Errors
    ///
    /// The status of a failed call.
    pub async fn authorized_entries(&self) -> Result<Vec<Entry>, Status> {
        let response = EntryClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .get_authorized_entries(GetAuthorizedEntriesRequest::default())
            .await;
        let response = self.observe(response)?;
        Ok(response.into_inner().entries)
    }

    /// Asks the server to sign one X509-SVID per item, returning one result per item in order.
    ///
    /// # Errors
    ///
    /// The status of a failed call.
    pub async fn new_x509_svids(
        &self,
        params: Vec<NewX509svidParams>,
    ) -> Result<Vec<SignResult>, Status> {
        let response = SvidClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .batch_new_x509svid(BatchNewX509svidRequest { params })
            .await;
        let response = self.observe(response)?;
        Ok(response.into_inner().results)
    }

    /// Asks the server to sign a JWT-SVID for the registration entry `entry_id` with `audience`
    /// as its `aud` claim.
    ///
    /// # Errors
    ///
    /// The status of a failed call.
    pub async fn new_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<Option<Jwtsvid>, Status> {
        let request = NewJwtsvidRequest {
            entry_id: entry_id.to_owned(),
            audience: audience.to_vec(),
        };
        let response = SvidClient::new(self.channel.clone())
            .new_jwtsvid(request)
            .await;
        let response = self.observe(response)?;
        Ok(response.into_inner().svid)
    }

    /// Asks the server to sign a JWT-SVID for `spiffe_id`, an expansion of the SPIFFE ID template
    /// of the registration entry `entry_id`, with `audience` as its `aud` claim.
    ///
    /// # Errors
    ///
    /// The status of a failed call.
    pub async fn new_template_jwt_svid(
        &self,
        entry_id: &str,
        spiffe_id: &SpiffeId,
        audience: &[String],
    ) -> Result<Option<Jwtsvid>, Status> {
        let request = TemplateJwtSvidRequest {
            entry_id: entry_id.to_owned(),
            spiffe_id: Some(to_proto_id(spiffe_id)),
            audience: audience.to_vec(),
        };
        let response = TemplateSvidClient::new(self.channel.clone())
            .new_jwtsvid(request)
            .await;
        let response = self.observe(response)?;
        Ok(response.into_inner().svid)
    }

    /// Opens the stream of change notices.
    ///
    /// # Errors
    ///
    /// The status of a failed call.
    pub async fn watch_changes(&self) -> Result<Streaming<ChangeNotice>, Status> {
        let response = SyncClient::new(self.channel.clone())
            .watch_changes(WatchChangesRequest {})
            .await;
        let response = self.observe(response)?;
        Ok(response.into_inner())
    }

    /// Reports the outcome of a call to the node's rejection signal and outage log, and returns
    /// it.
    fn observe<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        match &result {
            Ok(_) => {
                self.outage_log.record_response();
            }
            Err(status) => {
                self.rejection_signal.observe(status);
                self.outage_log.record_failure(status);
            }
        }
        result
    }
}

/// Converts a JWT key from the bundle, or returns None (after logging why) for an unusable one.
fn jwt_authority(key: JwtKey) -> Option<JwtAuthority> {
    if let Err(error) = jwk_from_public_key_der(&key.public_key, &key.key_id) {
        tracing::warn!(key_id = %key.key_id, error = %error, "Ignoring unusable JWT key in the bundle");
        return None;
    }
    let expires_at = u64::try_from(key.expires_at)
        .ok()
        .filter(|seconds| *seconds > 0)
        .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
    Some(JwtAuthority {
        key_id: key.key_id,
        public_key_der: key.public_key,
        expires_at,
        tainted: key.tainted,
    })
}

fn attest_error(status: Status) -> NodeError {
    match status.code() {
        Code::InvalidArgument | Code::NotFound | Code::PermissionDenied | Code::Unauthenticated => {
            NodeError::JoinTokenRejected {
                message: status.message().to_owned(),
            }
        }
        _ => NodeError::rpc("AttestAgent", &status),
    }
}
