//! The whole flow on the PostgreSQL datastore, including a server restart, and two servers
//! sharing one database.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{CertificateParams, KeyPair, SanType};
use signet_e2e::postgres::TestDatabase;
use signet_e2e::spire_api;
use signet_e2e::spire_api::agent::v1::agent_client::AgentClient;
use signet_e2e::spire_api::agent::v1::{
    AgentX509svidParams, AttestAgentRequest, attest_agent_request, attest_agent_response,
};
use signet_e2e::spire_api::svid::v1::svid_client::SvidClient;
use signet_e2e::spire_api::svid::v1::{BatchNewX509svidRequest, NewX509svidParams};
use signet_e2e::spire_api::types::{AttestationData, Status};
use signet_e2e::wait::PROPAGATION_TIMEOUT;
use signet_e2e::workload;
use signet_e2e::{Deployment, EntrySpec, Server, ServerOptions, TRUST_DOMAIN};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[tokio::test]
async fn postgres_datastore_serves_svids_across_restart() {
    let database = TestDatabase::create().await.unwrap();
    let options = ServerOptions {
        database: Some(database.url()),
        ..ServerOptions::default()
    };
    let mut deployment = Deployment::start_with(options, Some(600)).await.unwrap();
    let endpoint = deployment.agent.endpoint();

    let context =
        workload::fetch_x509_context_with(&endpoint, &deployment.workload_id, PROPAGATION_TIMEOUT)
            .await
            .unwrap();
    workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN).unwrap();

    deployment.server.restart().await.unwrap();
    assert_eq!(deployment.server.entry_count().await.unwrap(), 1);
    let token = deployment.server.create_token().await.unwrap();
    assert!(!token.is_empty());

    deployment.agent.stop().await.unwrap();
    deployment.server.stop().await.unwrap();
    database.remove().await.unwrap();
}

/// Two servers share one database: entries written through server B decide what server A signs
/// at the very next call, with no wait, because A checks the entries generation on every call.
#[tokio::test]
async fn peer_server_entry_writes_reach_issuance() {
    let database = TestDatabase::create().await.unwrap();
    let options = ServerOptions {
        database: Some(database.url()),
        ..ServerOptions::default()
    };
    let mut server_a = Server::start_with(options.clone()).await.unwrap();
    let mut server_b = Server::start_with(options).await.unwrap();
    let agent = SimulatedAgent::attest(&server_a).await.unwrap();
    let workload_id = server_a.spiffe_id("/workload");
    let csr = workload_csr(&workload_id).unwrap();

    // A call before the write makes server A cache the entries it then holds.
    let before = agent.new_x509_svid("not-yet-created", &csr).await.unwrap();
    assert_eq!(before.code, NOT_FOUND, "{}", before.message);

    let entry = EntrySpec::new(&workload_id, &agent.spiffe_id).selector("unix:uid:1");
    let entry_id = server_b.create_entry(&entry).await.unwrap();
    let created = agent.new_x509_svid(&entry_id, &csr).await.unwrap();
    assert_eq!(created.code, OK, "{}", created.message);

    server_b.delete_entry(&entry_id).await.unwrap();
    let deleted = agent.new_x509_svid(&entry_id, &csr).await.unwrap();
    assert_eq!(deleted.code, NOT_FOUND, "{}", deleted.message);

    server_a.stop().await.unwrap();
    server_b.stop().await.unwrap();
    database.remove().await.unwrap();
}

/// gRPC code of a successful item in a batch response.
const OK: i32 = 0;

/// gRPC code NOT_FOUND, which the server returns for an entry that is missing or not authorized.
const NOT_FOUND: i32 = 5;

/// An agent attested with a join token by the test itself, so that it calls BatchNewX509SVID for
/// exactly the entries and at exactly the moments the test chooses.
struct SimulatedAgent {
    spiffe_id: String,
    channel: Channel,
}

impl SimulatedAgent {
    /// Attests to `server` with a new join token and connects with the X509-SVID it receives.
    async fn attest(server: &Server) -> anyhow::Result<Self> {
        let token = server.create_token().await?;
        let bundle = server.bundle_pem().await?;
        let key = KeyPair::generate()?;
        let csr = CertificateParams::new(Vec::<String>::new())?
            .serialize_request(&key)?
            .der()
            .to_vec();

        let bootstrap = spire_api::connect_agent_api(&server.address(), &bundle).await?;
        let chain = attest_with_join_token(bootstrap, &token, csr).await?;
        let chain_pem: String = chain.iter().map(|der| pem("CERTIFICATE", der)).collect();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&bundle))
            .domain_name("localhost")
            .identity(Identity::from_pem(chain_pem, key.serialize_pem()));
        let channel = Channel::from_shared(format!("https://{}", server.address()))?
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Self {
            spiffe_id: server.join_token_agent_id(&token),
            channel,
        })
    }

    /// Calls BatchNewX509SVID for one entry and returns the status of its item.
    async fn new_x509_svid(&self, entry_id: &str, csr: &[u8]) -> anyhow::Result<Status> {
        let params = NewX509svidParams {
            entry_id: entry_id.to_owned(),
            csr: csr.to_vec(),
        };
        let response = SvidClient::new(self.channel.clone())
            .batch_new_x509svid(BatchNewX509svidRequest {
                params: vec![params],
            })
            .await?
            .into_inner();
        let [result] = response.results.as_slice() else {
            anyhow::bail!("expected one result, got {}", response.results.len());
        };
        if result.svid.is_some() != (result.status.as_ref().map(|s| s.code) == Some(OK)) {
            anyhow::bail!("an X509-SVID must come with status OK and only then: {result:?}");
        }
        result.status.clone().context("the result has no status")
    }
}

/// Runs AttestAgent with join token attestation data and returns the agent's X509-SVID chain.
async fn attest_with_join_token(
    channel: Channel,
    token: &str,
    csr: Vec<u8>,
) -> anyhow::Result<Vec<Vec<u8>>> {
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
    let mut responses = AgentClient::new(channel)
        .attest_agent(futures::stream::iter([request]))
        .await?
        .into_inner();
    match responses
        .message()
        .await?
        .and_then(|response| response.step)
    {
        Some(attest_agent_response::Step::Result(result)) => Ok(result
            .svid
            .context("AttestAgent returned no X509-SVID")?
            .cert_chain),
        other => anyhow::bail!("AttestAgent returned no result: {other:?}"),
    }
}

/// Returns a DER CSR whose only URI SAN is `spiffe_id`, as a workload's would be.
fn workload_csr(spiffe_id: &str) -> anyhow::Result<Vec<u8>> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
    Ok(params.serialize_request(&key)?.der().to_vec())
}

/// Encodes DER as PEM with the given label.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
