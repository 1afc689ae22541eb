//! The agent API on TCP: only agents with a valid SVID get past it, and admin calls never do.

use signet_e2e::Server;
use signet_e2e::spire_api;
use signet_e2e::spire_api::agent::v1::CreateJoinTokenRequest;
use signet_e2e::spire_api::agent::v1::agent_client::AgentClient;
use signet_e2e::spire_api::bundle::v1::GetBundleRequest;
use signet_e2e::spire_api::bundle::v1::bundle_client::BundleClient;
use signet_e2e::spire_api::entry::v1::entry_client::EntryClient;
use signet_e2e::spire_api::entry::v1::{GetAuthorizedEntriesRequest, ListEntriesRequest};
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test]
async fn bundle_served_without_client_certificate() {
    let server = Server::start().await.unwrap();
    let channel = connect_without_client_certificate(&server).await.unwrap();

    let bundle = BundleClient::new(channel)
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(bundle.trust_domain, server.trust_domain());
    assert!(!bundle.x509_authorities.is_empty());
}

#[tokio::test]
async fn admin_calls_rejected_on_agent_api() {
    let server = Server::start().await.unwrap();
    let channel = connect_without_client_certificate(&server).await.unwrap();

    let list = EntryClient::new(channel.clone())
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::PermissionDenied, "ListEntries: {list:?}");

    let token = AgentClient::new(channel)
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            token: String::new(),
            agent_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        token.code(),
        Code::PermissionDenied,
        "CreateJoinToken: {token:?}"
    );
}

#[tokio::test]
async fn agent_calls_rejected_without_client_certificate() {
    let server = Server::start().await.unwrap();
    let channel = connect_without_client_certificate(&server).await.unwrap();

    let status = EntryClient::new(channel)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();

    assert!(
        matches!(
            status.code(),
            Code::PermissionDenied | Code::Unauthenticated
        ),
        "GetAuthorizedEntries without a client certificate: {status:?}"
    );
}

/// Connects over TLS, verifying the server against its bundle as an agent's first contact does.
async fn connect_without_client_certificate(server: &Server) -> anyhow::Result<Channel> {
    let bundle = server.bundle_pem().await?;
    spire_api::connect_agent_api(&server.address(), &bundle).await
}
