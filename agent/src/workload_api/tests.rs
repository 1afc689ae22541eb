use std::sync::Arc;
use std::time::Duration;

use signet_core::selector::Selector;
use signet_proto::workload::{
    JwtsvidRequest, X509BundlesRequest, X509BundlesResponse, X509svidRequest, X509svidResponse,
};
use spiffe::WorkloadApiClient;
use tonic::{Code, Request, Streaming};

use super::delivery::{self, Delivery};
use super::matching::match_identities;
use super::test_support::{
    TestServer, identity, own_uid_selector, signed_identity, snapshot, trust_domain, with_header,
};
use super::*;
use crate::cache::Snapshot;
use crate::test_util::TestCa;

async fn fetch_x509svid(server: &TestServer) -> Result<Streaming<X509svidResponse>, tonic::Status> {
    let response = server
        .client()
        .await
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await?;
    Ok(response.into_inner())
}

async fn fetch_x509_bundles(
    server: &TestServer,
) -> Result<Streaming<X509BundlesResponse>, tonic::Status> {
    let request = with_header(X509BundlesRequest {});
    let response = server.client().await.fetch_x509_bundles(request).await?;
    Ok(response.into_inner())
}

async fn next_message<T>(stream: &mut Streaming<T>) -> Result<T, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("stream message within 10 s")
        .map(|message| message.expect("stream still open"))
}

#[tokio::test(flavor = "current_thread")]
async fn missing_security_header_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let status = client
        .fetch_x509svid(Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "security header missing from request");

    let mut request = Request::new(X509BundlesRequest {});
    request
        .metadata_mut()
        .insert("workload.spiffe.io", "True".parse().unwrap());
    let status = client.fetch_x509_bundles(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut request = with_header(JwtsvidRequest::default());
    request
        .metadata_mut()
        .append("workload.spiffe.io", "true".parse().unwrap());
    let status = client.fetch_jwtsvid(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "current_thread")]
async fn unmatched_caller_gets_permission_denied() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let other_uid = Selector::parse("unix:uid:4294967294").unwrap();
    let other = signed_identity(&ca, "spiffe://example.org/other", vec![other_uid]);
    server.cache.publish(snapshot(&ca, vec![other]));

    let status = fetch_x509svid(&server).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");

    let status = fetch_x509_bundles(&server).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
}

#[tokio::test(flavor = "current_thread")]
async fn first_message_carries_svid_and_bundle() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let mut identity = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    identity.hint = "internal".to_owned();
    let material = Arc::clone(identity.svid.as_ref().unwrap());
    server.cache.publish(snapshot(&ca, vec![identity]));

    let mut stream = fetch_x509svid(&server).await.unwrap();
    let response = next_message(&mut stream).await.unwrap();

    assert_eq!(response.svids.len(), 1);
    let svid = &response.svids[0];
    assert_eq!(svid.spiffe_id, "spiffe://example.org/web");
    assert_eq!(svid.x509_svid, material.chain[0].to_vec());
    assert_eq!(svid.x509_svid_key, material.private_key_pkcs8.to_vec());
    assert_eq!(svid.bundle, ca.bundle()[0].to_vec());
    assert_eq!(svid.hint, "internal");
    assert!(response.federated_bundles.is_empty());

    let mut bundles = fetch_x509_bundles(&server).await.unwrap();
    let response = next_message(&mut bundles).await.unwrap();
    assert_eq!(response.bundles.len(), 1);
    assert_eq!(
        response.bundles["spiffe://example.org"],
        ca.bundle()[0].to_vec()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stream_sends_rotated_svid_once() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = "spiffe://example.org/web";
    let first = signed_identity(&ca, web, vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![first.clone()]));
    let mut stream = fetch_x509svid(&server).await.unwrap();
    let initial = next_message(&mut stream).await.unwrap();

    // A new revision with the same content must not produce a message.
    server.cache.publish(snapshot(&ca, vec![first]));
    let rotated = signed_identity(&ca, web, vec![own_uid_selector()]);
    let rotated_leaf = rotated.svid.as_ref().unwrap().chain[0].to_vec();
    server.cache.publish(snapshot(&ca, vec![rotated]));

    let update = next_message(&mut stream).await.unwrap();
    assert_ne!(update, initial);
    assert_eq!(update.svids[0].x509_svid, rotated_leaf);
}

#[tokio::test(flavor = "current_thread")]
async fn bundle_stream_sends_new_authority() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![web.clone()]));
    let mut bundles = fetch_x509_bundles(&server).await.unwrap();
    next_message(&mut bundles).await.unwrap();

    let next_ca = TestCa::new();
    let mut rotated = snapshot(&ca, vec![web]);
    rotated.bundle.extend(next_ca.bundle());
    server.cache.publish(rotated);

    let update = next_message(&mut bundles).await.unwrap();
    let expected: Vec<u8> = [ca.bundle()[0].to_vec(), next_ca.bundle()[0].to_vec()].concat();
    assert_eq!(update.bundles["spiffe://example.org"], expected);
}

#[tokio::test(flavor = "current_thread")]
async fn stream_ends_when_identity_is_withdrawn() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![web]));
    let mut svids = fetch_x509svid(&server).await.unwrap();
    let mut bundles = fetch_x509_bundles(&server).await.unwrap();
    next_message(&mut svids).await.unwrap();
    next_message(&mut bundles).await.unwrap();

    server.cache.publish(snapshot(&ca, Vec::new()));

    let status = next_message(&mut svids).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
    let status = next_message(&mut bundles).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "current_thread")]
async fn first_message_waits_for_signing() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = "spiffe://example.org/web";
    let unsigned = identity(web, vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![unsigned]));

    let client = server.client().await;
    let request = tokio::spawn(async move {
        let mut client = client;
        client.fetch_x509svid(with_header(X509svidRequest {})).await
    });
    server.cache.publish(snapshot(
        &ca,
        vec![signed_identity(&ca, web, vec![own_uid_selector()])],
    ));

    let mut stream = request.await.unwrap().unwrap().into_inner();
    let response = next_message(&mut stream).await.unwrap();
    assert_eq!(response.svids[0].spiffe_id, web);
}

#[tokio::test(flavor = "current_thread")]
async fn spiffe_crate_client_fetches_svid() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![web]));

    let endpoint = format!("unix:{}", server.socket_path.display());
    let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    let bundles = client.fetch_x509_bundles().await.unwrap();

    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
    assert!(bundles.get(&trust_domain()).is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_ends_open_streams_and_removes_socket() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let web = signed_identity(&ca, "spiffe://example.org/web", vec![own_uid_selector()]);
    server.cache.publish(snapshot(&ca, vec![web]));
    let mut stream = fetch_x509svid(&server).await.unwrap();
    next_message(&mut stream).await.unwrap();
    let socket_path = server.socket_path.clone();

    let reader = tokio::spawn(async move { next_message(&mut stream).await });
    server.shutdown().await.unwrap();

    let status = reader.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!socket_path.exists());
}

#[tokio::test(flavor = "current_thread")]
async fn bind_sets_modes_and_replaces_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("agent").join("public").join("api.sock");

    drop(WorkloadApiListener::bind(&socket_path).unwrap());
    assert!(
        socket_path.exists(),
        "a dropped listener leaves a stale socket behind"
    );
    let listener = WorkloadApiListener::bind(&socket_path).unwrap();

    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket_path), 0o777);
    assert_eq!(mode(socket_path.parent().unwrap()), 0o755);
    assert_eq!(mode(&dir.path().join("agent")), 0o755);
    assert_eq!(listener.socket_path(), socket_path);
}

#[tokio::test(flavor = "current_thread")]
async fn bind_refuses_socket_of_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("api.sock");
    let _running = WorkloadApiListener::bind(&socket_path).unwrap();

    let error = WorkloadApiListener::bind(&socket_path).unwrap_err();

    assert!(
        matches!(&error, WorkloadApiError::InUse { path } if path == &socket_path),
        "{error:?}"
    );
    assert!(error.to_string().contains("--socket-path"), "{error}");
    std::os::unix::net::UnixStream::connect(&socket_path)
        .expect("the running agent's socket is left in place");
}

#[tokio::test(flavor = "current_thread")]
async fn bind_leaves_regular_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("api.sock");
    fs::write(&socket_path, b"not a socket").unwrap();

    let error = WorkloadApiListener::bind(&socket_path).unwrap_err();

    assert!(
        matches!(error, WorkloadApiError::NotASocket { .. }),
        "{error:?}"
    );
    assert_eq!(fs::read(&socket_path).unwrap(), b"not a socket");
}

#[test]
fn entitlement_needs_every_selector() {
    let ca = TestCa::new();
    let uid = Selector::parse("unix:uid:1000").unwrap();
    let gid = Selector::parse("unix:gid:1000").unwrap();
    let snapshot = snapshot(
        &ca,
        vec![
            identity("spiffe://example.org/a", vec![uid.clone()]),
            identity("spiffe://example.org/b", vec![uid.clone(), gid.clone()]),
            identity("spiffe://example.org/c", Vec::new()),
        ],
    );

    let ids = |selectors: &[Selector]| -> Vec<String> {
        match_identities(&snapshot, selectors)
            .entitled
            .iter()
            .map(|entitled| entitled.spiffe_id.path().to_owned())
            .collect()
    };

    assert_eq!(ids(std::slice::from_ref(&uid)), ["/a"]);
    assert_eq!(ids(&[uid, gid.clone()]), ["/a", "/b"]);
    assert_eq!(ids(&[gid]), Vec::<String>::new());
}

#[test]
fn duplicate_hints_keep_first_identity() {
    let ca = TestCa::new();
    let uid = Selector::parse("unix:uid:1000").unwrap();
    let mut identities = Vec::new();
    for (entry_id, hint) in [("a", "internal"), ("b", "internal"), ("c", ""), ("d", "")] {
        let mut identity = identity("spiffe://example.org/x", vec![uid.clone()]);
        identity.entry_id = entry_id.to_owned();
        identity.hint = hint.to_owned();
        identities.push(identity);
    }
    let snapshot = snapshot(&ca, identities);

    let entitled = match_identities(&snapshot, &[uid]).entitled;
    let ids: Vec<&str> = entitled
        .iter()
        .map(|entitled| entitled.identity.entry_id.as_str())
        .collect();

    assert_eq!(ids, ["a", "c", "d"]);
}

#[test]
fn delivery_waits_until_synced_and_signed() {
    let ca = TestCa::new();
    let uid = Selector::parse("unix:uid:1000").unwrap();
    let selectors = std::slice::from_ref(&uid);
    let unsigned = identity("spiffe://example.org/a", vec![uid.clone()]);
    let signed = signed_identity(&ca, "spiffe://example.org/b", vec![uid.clone()]);

    let mut unsynced = snapshot(&ca, vec![signed.clone()]);
    unsynced.bundle.clear();
    assert_eq!(x509_svids(&unsynced, selectors), Delivery::Waiting);
    assert_eq!(
        delivery::x509_bundles(&unsynced, selectors),
        Delivery::Waiting
    );

    let pending = snapshot(&ca, vec![unsigned.clone()]);
    assert_eq!(x509_svids(&pending, selectors), Delivery::Waiting);

    let partial = snapshot(&ca, vec![unsigned, signed.clone()]);
    assert!(matches!(
        x509_svids(&partial, selectors),
        Delivery::Partial(_)
    ));

    let complete = snapshot(&ca, vec![signed]);
    assert!(matches!(
        x509_svids(&complete, selectors),
        Delivery::Complete(_)
    ));

    let nobody = snapshot(&ca, Vec::new());
    assert_eq!(x509_svids(&nobody, selectors), Delivery::Denied);
}

/// Returns the `FetchX509SVID` message of `snapshot` for a caller with `selectors`.
fn x509_svids(snapshot: &Snapshot, selectors: &[Selector]) -> Delivery<X509svidResponse> {
    delivery::x509_svids(snapshot, &match_identities(snapshot, selectors).entitled)
}
