//! The Workload API as third-party clients see it: rust-spiffe, py-spiffe and plain grpcio.

use futures::StreamExt;
use signet_e2e::python::{self, Script};
use signet_e2e::svid;
use signet_e2e::wait::PROPAGATION_TIMEOUT;
use signet_e2e::workload::{self, as_slices};
use signet_e2e::{Deployment, EntrySpec, TRUST_DOMAIN};
use spiffe::WorkloadApiError;

/// Unprivileged uid with no registration entry (`nobody` on Debian).
const UNREGISTERED_UID: u32 = 65534;

/// Room for the notBefore backdating a CA may apply to tolerate clock skew.
const BACKDATE_TOLERANCE_SECS: u64 = 60;

#[tokio::test]
async fn x509_svid_fetched_with_spiffe_crate() {
    let deployment = Deployment::start_with_ttl(Some(600)).await.unwrap();
    let context = deployment.fetch_x509_context().await.unwrap();

    let facts =
        workload::check_served_svid(&context, &deployment.workload_id, TRUST_DOMAIN).unwrap();
    let default_svid = context
        .default_svid()
        .expect("the context has a default SVID");
    assert_eq!(default_svid.spiffe_id().to_string(), deployment.workload_id);

    let lifetime = facts.lifetime().as_secs();
    assert!(
        (600..=600 + BACKDATE_TOLERANCE_SECS).contains(&lifetime),
        "X509-SVID lifetime is {lifetime} s, the entry sets 600 s"
    );
    assert!(
        facts.not_after > signet_e2e::unix_now(),
        "served X509-SVID already expired at {}",
        facts.not_after
    );
}

#[tokio::test]
async fn served_bundle_matches_server_bundle() {
    let deployment = Deployment::start().await.unwrap();
    let context = deployment.fetch_x509_context().await.unwrap();

    let served = workload::bundle_der(&context, TRUST_DOMAIN).unwrap();
    assert!(!served.is_empty(), "the served bundle has no authorities");
    for authority in &served {
        svid::check_authority(authority, TRUST_DOMAIN).unwrap();
    }

    let pem = deployment.server.bundle_pem().await.unwrap();
    let mut from_server = svid::pem_certificates(&pem).unwrap();
    let mut served_sorted = served.clone();
    from_server.sort();
    served_sorted.sort();
    assert_eq!(
        served_sorted, from_server,
        "agent and server bundles differ"
    );
}

#[tokio::test]
async fn x509_bundles_fetched_with_spiffe_crate() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let trust_domain = spiffe::TrustDomain::new(TRUST_DOMAIN).unwrap();
    let bundle = bundles
        .get(&trust_domain)
        .expect("FetchX509Bundles includes the own trust domain");
    assert!(!bundle.authorities().is_empty());
}

#[tokio::test]
async fn x509_svid_fetched_with_python_client() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    // py-spiffe keeps grpcio's default :authority, the socket path, so this also checks that
    // the agent accepts what every grpcio-based client sends.
    let script = Script::load("fetch_x509.py").unwrap();
    let output = script.run(&[&deployment.agent.endpoint()]).await.unwrap();
    let json = python::json_output(&output).unwrap();
    assert!(output.status.success(), "fetch_x509.py failed: {json}");

    assert_eq!(json["spiffe_id"], deployment.workload_id.as_str());
    assert_eq!(
        json["bundle_trust_domains"],
        serde_json::json!([TRUST_DOMAIN])
    );
    assert!(json["chain_length"].as_u64().unwrap() >= 1, "{json}");
    let expiry = json["expiry"].as_i64().unwrap();
    assert!(
        expiry > signet_e2e::unix_now(),
        "py-spiffe reports an expired SVID: {json}"
    );
}

#[tokio::test]
async fn unregistered_uid_denied_to_python_client() {
    assert!(
        signet_e2e::current_uid() == 0,
        "this test runs a workload as uid {UNREGISTERED_UID} and so must run as root (CI does)"
    );
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let script = Script::load("fetch_x509.py").unwrap();
    let output = script
        .run_as(Some(UNREGISTERED_UID), &[&deployment.agent.endpoint()])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert!(
        !output.status.success(),
        "uid {UNREGISTERED_UID} got an SVID: {json}"
    );

    // Reaching PermissionDenied also shows the socket accepts connections from this uid.
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("PERMISSION_DENIED"), "{error}");
    assert!(error.contains("no identity issued"), "{error}");
}

#[tokio::test]
async fn missing_security_header_is_rejected() {
    let deployment = Deployment::start().await.unwrap();

    let script = Script::load("raw_call.py").unwrap();
    let endpoint = deployment.agent.endpoint();
    let output = script
        .run(&[&endpoint, "FetchX509SVID", "--without-header"])
        .await
        .unwrap();

    let json = python::json_output(&output).unwrap();
    assert_eq!(json["code"], "INVALID_ARGUMENT", "{json}");
    assert_eq!(
        json["details"], "security header missing from request",
        "{json}"
    );
}

#[tokio::test]
async fn unregistered_uid_denied_every_x509_method() {
    assert!(
        signet_e2e::current_uid() == 0,
        "this test runs a workload as uid {UNREGISTERED_UID} and so must run as root (CI does)"
    );
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let script = Script::load("raw_call.py").unwrap();
    let endpoint = deployment.agent.endpoint();

    for method in ["FetchX509SVID", "FetchX509Bundles"] {
        let output = script
            .run_as(Some(UNREGISTERED_UID), &[&endpoint, method])
            .await
            .unwrap();
        let json = python::json_output(&output).unwrap();
        assert_eq!(json["code"], "PERMISSION_DENIED", "{method}: {json}");
        assert_eq!(json["details"], "no identity issued", "{method}: {json}");
    }
}

#[tokio::test]
async fn deleted_entry_ends_stream_with_permission_denied() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let first = stream.next().await.expect("a first message").unwrap();
    assert!(workload::find_svid(&first, &deployment.workload_id).is_some());

    deployment
        .server
        .delete_entry(&deployment.entry_id)
        .await
        .unwrap();

    let ending = tokio::time::timeout(PROPAGATION_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(context))
                    if workload::find_svid(&context, &deployment.workload_id).is_some() => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the stream reacts to the deleted entry within the bound");
    match ending {
        Some(Err(WorkloadApiError::NoIdentityIssued)) => {}
        other => panic!("expected PermissionDenied \"no identity issued\", got {other:?}"),
    }
}

#[tokio::test]
async fn updated_selector_withdraws_svid() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    stream.next().await.expect("a first message").unwrap();

    let other_uid = format!("unix:uid:{}", signet_e2e::current_uid() + 4242);
    deployment
        .server
        .cli_ok(&[
            "entry",
            "update",
            "--entry-id",
            &deployment.entry_id,
            "--selector",
            &other_uid,
        ])
        .await
        .unwrap();

    let ending = workload::next_context_where(&mut stream, PROPAGATION_TIMEOUT, |context| {
        workload::find_svid(context, &deployment.workload_id).is_none()
    })
    .await;
    let error = ending.expect_err("the stream ends once the entry no longer matches");
    assert!(
        matches!(
            error.downcast_ref::<WorkloadApiError>(),
            Some(WorkloadApiError::NoIdentityIssued)
        ),
        "expected PermissionDenied \"no identity issued\", got {error:#}"
    );
}

#[tokio::test]
async fn deleted_entry_leaves_stream_with_remaining_identity() {
    let deployment = Deployment::start().await.unwrap();
    let other_id = deployment.server.spiffe_id("/workload/remaining");
    let other = EntrySpec::new(&other_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&other).await.unwrap();
    let endpoint = deployment.agent.endpoint();
    workload::fetch_x509_context_with(&endpoint, &other_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    let client = workload::connect(&endpoint).await.unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let first = stream.next().await.expect("a first message").unwrap();
    assert!(workload::find_svid(&first, &deployment.workload_id).is_some());

    deployment
        .server
        .delete_entry(&deployment.entry_id)
        .await
        .unwrap();

    let update = workload::next_context_where(&mut stream, PROPAGATION_TIMEOUT, |context| {
        workload::find_svid(context, &deployment.workload_id).is_none()
    })
    .await
    .unwrap();
    assert_eq!(workload::spiffe_ids(&update), vec![other_id.clone()]);
    workload::check_served_svid(&update, &other_id, TRUST_DOMAIN).unwrap();
}

#[tokio::test]
async fn entry_created_during_stream_appears() {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();

    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    stream.next().await.expect("a first message").unwrap();

    let new_id = deployment.server.spiffe_id("/workload/added");
    let entry = EntrySpec::new(&new_id, deployment.agent.spiffe_id())
        .selector(signet_e2e::current_uid_selector());
    deployment.server.create_entry(&entry).await.unwrap();

    let update = workload::next_context_where(&mut stream, PROPAGATION_TIMEOUT, |context| {
        workload::find_svid(context, &new_id).is_some()
    })
    .await
    .unwrap();
    workload::check_served_svid(&update, &new_id, TRUST_DOMAIN).unwrap();
    assert!(workload::find_svid(&update, &deployment.workload_id).is_some());
}

#[tokio::test]
async fn svid_chain_verifies_against_served_bundle_only() {
    let deployment = Deployment::start().await.unwrap();
    let context = deployment.fetch_x509_context().await.unwrap();
    let served = workload::find_svid(&context, &deployment.workload_id).unwrap();
    let chain = workload::chain_der(served);

    // A bundle from another server's CA must not verify this SVID.
    let other = signet_e2e::Server::start().await.unwrap();
    let other_pem = other.bundle_pem().await.unwrap();
    let other_bundle = svid::pem_certificates(&other_pem).unwrap();
    let result = svid::verify_chain(&as_slices(&chain), &as_slices(&other_bundle));
    assert!(
        result.is_err(),
        "an SVID verified against another CA's bundle"
    );
}
