//! Agents simulated by the benchmark itself: each attests over the server's agent API with a
//! join token, as signet-agent does, then calls the SVID service with its own X509-SVID as
//! client certificate.

use std::io;
use std::sync::Arc;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, version};
use signet_core::tls::SpiffeServerVerifier;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::agent::v1::{
    AgentX509svidParams, AttestAgentRequest, attest_agent_request, attest_agent_response,
};
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, NewJwtsvidRequest, NewX509svidParams,
};
use signet_proto::spire::api::types::AttestationData;
use spiffe::{SpiffeId, TrustDomain};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::csr::KeyAndCsr;
use crate::deployment::Deployment;

/// Largest response accepted: a batch of many X509-SVIDs exceeds tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const ALPN_HTTP2: &[u8] = b"h2";

/// The server's agent API as seen before attestation: a TLS channel without a client
/// certificate, verified against the trust bundle and the server's SPIFFE ID.
#[derive(Debug)]
pub struct AgentApi {
    address: String,
    trust_domain: TrustDomain,
    verifier: Arc<SpiffeServerVerifier>,
    bootstrap: Channel,
}

/// An attested agent: its SPIFFE ID and a channel that presents its X509-SVID.
#[derive(Clone, Debug)]
pub struct SimulatedAgent {
    spiffe_id: SpiffeId,
    channel: Channel,
}

impl AgentApi {
    /// Prepares a connection to the agent API of the server in `deployment`, made on first use.
    ///
    /// # Errors
    ///
    /// Fails when the trust bundle cannot be read or cannot verify the server.
    pub async fn connect(deployment: &Deployment) -> anyhow::Result<Self> {
        let bundle = deployment.trust_bundle().await?;
        let trust_domain = deployment.trust_domain().clone();
        let server_id = signet_core::ids::server_id(&trust_domain);
        let verifier = Arc::new(
            SpiffeServerVerifier::new(&bundle, server_id)
                .context("the server's trust bundle cannot verify its certificate")?,
        );
        let address = deployment.server_address().to_owned();
        let bootstrap = connect_lazy(&address, client_config(verifier.clone(), None)?)?;
        Ok(Self {
            address,
            trust_domain,
            verifier,
            bootstrap,
        })
    }

    /// Attests a new agent with the join token `token`, as signet-agent does on its first start.
    /// The returned agent connects with its X509-SVID on first use.
    ///
    /// # Errors
    ///
    /// Fails when the server rejects the token or sends no X509-SVID.
    pub async fn attest(&self, token: &str) -> anyhow::Result<SimulatedAgent> {
        let spiffe_id = signet_core::ids::join_token_agent_id(&self.trust_domain, token)
            .context("the join token cannot form an agent SPIFFE ID")?;
        let key = KeyAndCsr::generate(&spiffe_id)?;
        let chain = self.attest_agent(token, key.csr_der().to_vec()).await?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pkcs8_der()));
        let tls = client_config(self.verifier.clone(), Some((chain, key)))?;
        Ok(SimulatedAgent {
            spiffe_id,
            channel: connect_lazy(&self.address, tls)?,
        })
    }

    /// Calls AttestAgent with join token attestation data and returns the signed chain.
    async fn attest_agent(
        &self,
        token: &str,
        csr: Vec<u8>,
    ) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let params = attest_agent_request::Params {
            data: Some(AttestationData {
                r#type: "join_token".to_owned(),
                payload: token.as_bytes().to_vec(),
            }),
            params: Some(AgentX509svidParams { csr }),
        };
        let request = AttestAgentRequest {
            step: Some(attest_agent_request::Step::Params(params)),
        };
        let mut responses = AgentClient::new(self.bootstrap.clone())
            .attest_agent(futures::stream::iter([request]))
            .await
            .context("AttestAgent failed")?
            .into_inner();
        let response = responses
            .message()
            .await
            .context("AttestAgent failed")?
            .and_then(|response| response.step);

        let svid = match response {
            Some(attest_agent_response::Step::Result(result)) => result.svid,
            Some(attest_agent_response::Step::Challenge(_)) => {
                bail!("the server asked for a challenge, which join token attestation lacks")
            }
            None => None,
        };
        let svid = svid.context("AttestAgent returned no X509-SVID")?;
        Ok(svid
            .cert_chain
            .into_iter()
            .map(CertificateDer::from)
            .collect())
    }
}

impl SimulatedAgent {
    /// Returns the agent's SPIFFE ID, the parent ID of the entries it may sign for.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Calls BatchNewX509SVID with `params` and returns the number of X509-SVIDs signed.
    ///
    /// # Errors
    ///
    /// Fails when the call fails or the server rejects any item.
    pub async fn new_x509_svids(&self, params: Vec<NewX509svidParams>) -> anyhow::Result<usize> {
        let response = SvidClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .batch_new_x509svid(BatchNewX509svidRequest { params })
            .await
            .context("BatchNewX509SVID failed")?
            .into_inner();
        for result in &response.results {
            match &result.status {
                Some(status) if status.code == 0 && result.svid.is_some() => {}
                Some(status) => bail!(
                    "BatchNewX509SVID rejected an item: {} (code {})",
                    status.message,
                    status.code
                ),
                None => bail!("BatchNewX509SVID returned an item without a status"),
            }
        }
        Ok(response.results.len())
    }

    /// Calls NewJWTSVID for the entry `entry_id` with one audience.
    ///
    /// # Errors
    ///
    /// Fails when the call fails or returns no JWT-SVID.
    pub async fn new_jwt_svid(&self, entry_id: &str, audience: &str) -> anyhow::Result<()> {
        let request = NewJwtsvidRequest {
            entry_id: entry_id.to_owned(),
            audience: vec![audience.to_owned()],
        };
        let response = SvidClient::new(self.channel.clone())
            .new_jwtsvid(request)
            .await
            .context("NewJWTSVID failed")?
            .into_inner();
        match response.svid {
            Some(svid) if !svid.token.is_empty() => Ok(()),
            _ => bail!("NewJWTSVID returned no JWT-SVID for entry {entry_id}"),
        }
    }
}

/// Builds TLS 1.3 client settings that verify the server with `verifier` and present
/// `client_auth` when given.
fn client_config(
    verifier: Arc<SpiffeServerVerifier>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> anyhow::Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13])
        .context("the ring provider lacks TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .context("the agent X509-SVID cannot be used as a client certificate")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP2.to_vec()];
    Ok(config)
}

/// Returns a channel that dials `address` over TCP and TLS on first use.
fn connect_lazy(address: &str, tls: ClientConfig) -> anyhow::Result<Channel> {
    // TLS is added by the connector, so the scheme is http.
    let uri: Uri = format!("http://{address}")
        .parse()
        .with_context(|| format!("invalid agent API address {address}"))?;
    let connector = TlsConnector::from(Arc::new(tls));
    let address = address.to_owned();
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            // The verifier checks the server's SPIFFE ID, not this name.
            let name = ServerName::try_from("localhost")
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    Ok(Endpoint::from(uri).connect_with_connector_lazy(connect))
}
