//! The admin API through a client generated from SPIRE's own .proto files: a SPIRE tool pointed
//! at the admin socket must work unchanged.

use signet_e2e::spire_api;
use signet_e2e::spire_api::agent::v1::agent_client::AgentClient;
use signet_e2e::spire_api::agent::v1::{
    CountAgentsRequest, CreateJoinTokenRequest, ListAgentsRequest,
};
use signet_e2e::spire_api::bundle::v1::GetBundleRequest;
use signet_e2e::spire_api::bundle::v1::bundle_client::BundleClient;
use signet_e2e::spire_api::entry::v1::entry_client::EntryClient;
use signet_e2e::spire_api::entry::v1::{
    BatchCreateEntryRequest, CountEntriesRequest, GetEntryRequest, ListEntriesRequest,
    list_entries_request,
};
use signet_e2e::spire_api::types::{Entry, Selector, Spiffeid};
use signet_e2e::svid;
use signet_e2e::{Agent, Server, TRUST_DOMAIN};
use tonic::Code;

/// gRPC status code numbers that per-item `Status` messages carry.
const CODE_OK: i32 = 0;

#[tokio::test]
async fn bundle_fetched_with_spire_client() {
    let server = Server::start().await.unwrap();
    let channel = spire_api::connect_admin(&server.admin_socket())
        .await
        .unwrap();

    let bundle = BundleClient::new(channel)
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(bundle.trust_domain, TRUST_DOMAIN);
    assert!(!bundle.x509_authorities.is_empty(), "{bundle:?}");
    for authority in &bundle.x509_authorities {
        svid::check_authority(&authority.asn1, TRUST_DOMAIN).unwrap();
    }
}

#[tokio::test]
async fn entries_round_trip_through_spire_client() {
    let server = Server::start().await.unwrap();
    let channel = spire_api::connect_admin(&server.admin_socket())
        .await
        .unwrap();
    let mut entries = EntryClient::new(channel);
    let wanted = sample_entry();

    let created = entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![wanted.clone()],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();

    let [result] = created.results.as_slice() else {
        panic!("one result per entry: {created:?}");
    };
    let status = result.status.clone().unwrap_or_default();
    assert_eq!(status.code, CODE_OK, "{status:?}");
    let id = result
        .entry
        .as_ref()
        .map(|entry| entry.id.clone())
        .unwrap_or_default();
    assert!(!id.is_empty(), "the created entry has no ID: {result:?}");

    let fetched = entries
        .get_entry(GetEntryRequest {
            id: id.clone(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_same_entry(&fetched, &wanted);
    assert_eq!(fetched.id, id);

    let listed = entries
        .list_entries(ListEntriesRequest {
            filter: Some(list_entries_request::Filter {
                by_spiffe_id: wanted.spiffe_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed_ids: Vec<&str> = listed
        .entries
        .iter()
        .map(|entry| entry.id.as_str())
        .collect();
    assert_eq!(listed_ids, vec![id.as_str()]);

    let count = entries
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 1);
}

#[tokio::test]
async fn batch_create_reports_each_entry() {
    let server = Server::start().await.unwrap();
    let channel = spire_api::connect_admin(&server.admin_socket())
        .await
        .unwrap();
    let mut entries = EntryClient::new(channel);
    let valid = sample_entry();
    let foreign_parent = Entry {
        parent_id: Some(spiffe_id("other.org", "/agent")),
        spiffe_id: Some(spiffe_id(TRUST_DOMAIN, "/foreign-parent")),
        ..valid.clone()
    };

    let response = entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![valid.clone(), foreign_parent, valid],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();

    let codes: Vec<i32> = response
        .results
        .iter()
        .map(|result| result.status.clone().unwrap_or_default().code)
        .collect();
    let expected = vec![
        CODE_OK,
        Code::InvalidArgument as i32,
        Code::AlreadyExists as i32,
    ];
    assert_eq!(codes, expected, "{response:?}");
    let count = entries
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 1);
}

#[tokio::test]
async fn join_token_from_spire_client_attests_agent() {
    let server = Server::start().await.unwrap();
    let channel = spire_api::connect_admin(&server.admin_socket())
        .await
        .unwrap();
    let mut agents = AgentClient::new(channel);

    let token = agents
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            token: String::new(),
            agent_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!token.value.is_empty());
    let remaining = token.expires_at - signet_e2e::unix_now();
    assert!(
        (590..=610).contains(&remaining),
        "token expires in {remaining} s, asked for 600"
    );

    let before = agents
        .count_agents(CountAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.count, 0);

    let agent = Agent::start(&server, &token.value).await.unwrap();

    let after = agents
        .count_agents(CountAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.count, 1);
    let listed = agents
        .list_agents(ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let [attested] = listed.agents.as_slice() else {
        panic!("one attested agent: {listed:?}");
    };
    let id = attested.id.clone().unwrap_or_default();
    assert_eq!(
        format!("spiffe://{}{}", id.trust_domain, id.path),
        agent.spiffe_id()
    );
    assert_eq!(attested.attestation_type, "join_token");
    assert!(!attested.banned);
    assert!(
        attested.x509svid_expires_at > signet_e2e::unix_now(),
        "{attested:?}"
    );
}

#[tokio::test]
async fn zero_ttl_join_token_is_rejected() {
    let server = Server::start().await.unwrap();
    let channel = spire_api::connect_admin(&server.admin_socket())
        .await
        .unwrap();

    let status = AgentClient::new(channel)
        .create_join_token(CreateJoinTokenRequest {
            ttl: 0,
            token: String::new(),
            agent_id: None,
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

fn sample_entry() -> Entry {
    Entry {
        spiffe_id: Some(spiffe_id(TRUST_DOMAIN, "/db")),
        parent_id: Some(spiffe_id(TRUST_DOMAIN, "/spire/agent/join_token/abc")),
        selectors: vec![selector("unix", "uid:1000"), selector("unix", "gid:1000")],
        x509_svid_ttl: 900,
        jwt_svid_ttl: 300,
        dns_names: vec!["db.example.org".to_owned()],
        hint: "primary".to_owned(),
        ..Default::default()
    }
}

fn assert_same_entry(actual: &Entry, expected: &Entry) {
    assert_eq!(actual.spiffe_id, expected.spiffe_id);
    assert_eq!(actual.parent_id, expected.parent_id);
    let mut actual_selectors = actual.selectors.clone();
    actual_selectors.sort_by(|a, b| (&a.r#type, &a.value).cmp(&(&b.r#type, &b.value)));
    let mut expected_selectors = expected.selectors.clone();
    expected_selectors.sort_by(|a, b| (&a.r#type, &a.value).cmp(&(&b.r#type, &b.value)));
    assert_eq!(actual_selectors, expected_selectors);
    assert_eq!(actual.x509_svid_ttl, expected.x509_svid_ttl);
    assert_eq!(actual.jwt_svid_ttl, expected.jwt_svid_ttl);
    assert_eq!(actual.dns_names, expected.dns_names);
    assert_eq!(actual.hint, expected.hint);
    assert!(actual.created_at > 0, "created_at is not set: {actual:?}");
}

fn spiffe_id(trust_domain: &str, path: &str) -> Spiffeid {
    Spiffeid {
        trust_domain: trust_domain.to_owned(),
        path: path.to_owned(),
    }
}

fn selector(kind: &str, value: &str) -> Selector {
    Selector {
        r#type: kind.to_owned(),
        value: value.to_owned(),
    }
}
