use std::sync::Arc;
use std::time::Duration;

use prost_types::value::Kind;
use signet_core::selector::Selector;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
};
use spiffe::{JwtSvid, WorkloadApiClient};
use tonic::{Code, Status, Streaming};

use super::test_support::{
    TestServer, identity, own_uid_selector, signed_identity, snapshot, trust_domain, with_header,
};
use crate::cache::Snapshot;
use crate::jwt::test_support::{TestJwtKey, TestSigner};
use crate::test_util::TestCa;

const LIFETIME: Duration = Duration::from_secs(300);
const WEB: &str = "spiffe://example.org/web";
const DB: &str = "spiffe://example.org/db";

/// Starts a server with a counting signer. It serves `WEB` (hint "internal") and `DB` to the
/// test process, with the signer's key as the only JWT authority.
async fn start() -> (TestServer, Arc<TestSigner>, TestCa) {
    let signer = Arc::new(TestSigner::new(LIFETIME));
    let server = TestServer::start_with_signer(Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    server.cache.publish(jwt_snapshot(&ca, &signer.key));
    (server, signer, ca)
}

fn jwt_snapshot(ca: &TestCa, key: &TestJwtKey) -> Snapshot {
    let mut web = identity(WEB, vec![own_uid_selector()]);
    web.hint = "internal".to_owned();
    let db = identity(DB, vec![own_uid_selector()]);
    let mut snapshot = snapshot(ca, vec![web, db]);
    snapshot.jwt_authorities = vec![key.authority()];
    snapshot
}

async fn fetch_jwt_svid(
    server: &TestServer,
    audience: &[&str],
    spiffe_id: &str,
) -> Result<JwtsvidResponse, Status> {
    let request = JwtsvidRequest {
        audience: audience.iter().map(|value| (*value).to_owned()).collect(),
        spiffe_id: spiffe_id.to_owned(),
    };
    let response = server
        .client()
        .await
        .fetch_jwtsvid(with_header(request))
        .await?;
    Ok(response.into_inner())
}

async fn fetch_jwt_bundles(server: &TestServer) -> Result<Streaming<JwtBundlesResponse>, Status> {
    let request = with_header(JwtBundlesRequest {});
    let response = server.client().await.fetch_jwt_bundles(request).await?;
    Ok(response.into_inner())
}

async fn next_message<T>(stream: &mut Streaming<T>) -> Result<T, Status> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("stream message within 10 s")
        .map(|message| message.expect("stream still open"))
}

fn key_ids(response: &JwtBundlesResponse) -> Vec<String> {
    let jwks: serde_json::Value =
        serde_json::from_slice(&response.bundles["spiffe://example.org"]).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            assert!(key.get("use").is_none(), "{key}");
            key["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_jwt_svid_requires_audience() {
    let (server, signer, _ca) = start().await;

    let status = fetch_jwt_svid(&server, &[], "").await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "audience must be specified");
    assert_eq!(signer.calls(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_jwt_svid_returns_every_identity_default_first() {
    let (server, _signer, _ca) = start().await;

    let response = fetch_jwt_svid(&server, &["db-service"], "").await.unwrap();

    let ids: Vec<&str> = response
        .svids
        .iter()
        .map(|svid| svid.spiffe_id.as_str())
        .collect();
    assert_eq!(ids, [WEB, DB]);
    assert_eq!(response.svids[0].hint, "internal");
    for svid in &response.svids {
        let parsed = JwtSvid::parse_insecure(&svid.svid).unwrap();
        assert_eq!(parsed.spiffe_id().to_string(), svid.spiffe_id);
        assert_eq!(parsed.audience(), ["db-service"]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_jwt_svid_filters_by_spiffe_id() {
    let (server, _signer, _ca) = start().await;

    let response = fetch_jwt_svid(&server, &["a"], DB).await.unwrap();
    assert_eq!(response.svids.len(), 1);
    assert_eq!(response.svids[0].spiffe_id, DB);

    let status = fetch_jwt_svid(&server, &["a"], "spiffe://example.org/other")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");

    let status = fetch_jwt_svid(&server, &["a"], "not a SPIFFE ID")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("invalid requested SPIFFE ID"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_jwt_svid_denies_caller_without_identity() {
    let signer = Arc::new(TestSigner::new(LIFETIME));
    let server = TestServer::start_with_signer(Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    let other_uid = Selector::parse("unix:uid:4294967294").unwrap();
    server
        .cache
        .publish(snapshot(&ca, vec![identity(WEB, vec![other_uid])]));

    let status = fetch_jwt_svid(&server, &["a"], "").await.unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
    assert_eq!(signer.calls(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_jwt_svid_serves_template_identities_with_their_concrete_id() {
    let signer = Arc::new(TestSigner::new(LIFETIME));
    let server = TestServer::start_with_signer(Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    let mut template = identity(WEB, vec![own_uid_selector()]);
    template.spiffe_id = SpiffeIdTemplate::parse("spiffe://example.org/uid/{unix:uid}").unwrap();
    let plain = identity(DB, vec![own_uid_selector()]);
    let mut snapshot = snapshot(&ca, vec![template, plain]);
    snapshot.jwt_authorities = vec![signer.key.authority()];
    server.cache.publish(snapshot);

    let response = fetch_jwt_svid(&server, &["a"], "").await.unwrap();

    let concrete = format!("spiffe://example.org/uid/{}", nix::unistd::geteuid());
    let ids: Vec<&str> = response
        .svids
        .iter()
        .map(|svid| svid.spiffe_id.as_str())
        .collect();
    assert_eq!(ids, [concrete.as_str(), DB]);
    let token = JwtSvid::parse_insecure(&response.svids[0].svid).unwrap();
    assert_eq!(token.spiffe_id().to_string(), concrete);
    assert_eq!(signer.calls(), 2);
    assert_eq!(signer.template_calls(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn repeated_fetches_reuse_cached_tokens() {
    let (server, signer, _ca) = start().await;

    let first = fetch_jwt_svid(&server, &["x", "y"], WEB).await.unwrap();
    let second = fetch_jwt_svid(&server, &["y", "x"], WEB).await.unwrap();

    assert_eq!(signer.calls(), 1);
    assert_eq!(first.svids[0].svid, second.svids[0].svid);
}

#[tokio::test(flavor = "current_thread")]
async fn signing_failure_is_unavailable() {
    let signer = Arc::new(TestSigner {
        failure: Some(Status::unavailable("server down")),
        ..TestSigner::new(LIFETIME)
    });
    let server = TestServer::start_with_signer(Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    server.cache.publish(jwt_snapshot(&ca, &signer.key));

    let status = fetch_jwt_svid(&server, &["a"], "").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().starts_with("could not fetch JWT-SVID: "),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn server_rejection_is_invalid_argument() {
    let rejection = "an audience is 3000 bytes long: the maximum is 2048";
    let signer = Arc::new(TestSigner {
        failure: Some(Status::invalid_argument(rejection)),
        ..TestSigner::new(LIFETIME)
    });
    let server = TestServer::start_with_signer(Arc::clone(&signer) as _).await;
    let ca = TestCa::new();
    server.cache.publish(jwt_snapshot(&ca, &signer.key));

    let status = fetch_jwt_svid(&server, &["a"], "").await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message().matches(rejection).count(),
        1,
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn jwt_bundles_stream_sends_key_changes_only() {
    let (server, signer, ca) = start().await;
    let mut bundles = fetch_jwt_bundles(&server).await.unwrap();
    let first = next_message(&mut bundles).await.unwrap();
    assert_eq!(key_ids(&first), ["test-key"]);

    // An X.509-only change must not produce a JWT bundles message.
    let mut rotated_x509 = jwt_snapshot(&ca, &signer.key);
    rotated_x509.bundle.extend(TestCa::new().bundle());
    server.cache.publish(rotated_x509);
    let next_key = TestJwtKey::es256("next-key");
    let mut rotated = jwt_snapshot(&ca, &signer.key);
    rotated.jwt_authorities.push(next_key.authority());
    server.cache.publish(rotated);

    let update = next_message(&mut bundles).await.unwrap();
    assert_eq!(key_ids(&update), ["test-key", "next-key"]);
}

#[tokio::test(flavor = "current_thread")]
async fn jwt_bundles_deny_caller_without_identity() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    server.cache.publish(snapshot(&ca, Vec::new()));

    let status = fetch_jwt_bundles(&server).await.unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
}

#[tokio::test(flavor = "current_thread")]
async fn validate_jwt_svid_checks_required_fields() {
    let (server, _signer, _ca) = start().await;
    let mut client = server.client().await;

    for (request, message) in [
        (
            ValidateJwtsvidRequest {
                audience: String::new(),
                svid: "a.b.c".to_owned(),
            },
            "audience must be specified",
        ),
        (
            ValidateJwtsvidRequest {
                audience: "db".to_owned(),
                svid: String::new(),
            },
            "svid must be specified",
        ),
    ] {
        let status = client
            .validate_jwtsvid(with_header(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn validate_jwt_svid_rejects_oversized_input() {
    let (server, signer, _ca) = start().await;
    let mut client = server.client().await;
    let token = signer.key.token(WEB, &["db"], LIFETIME);

    for (request, message) in [
        (
            // Over tonic's default 4 MiB message limit, which the Workload API raises.
            ValidateJwtsvidRequest {
                audience: "db".to_owned(),
                svid: "A".repeat(5 * 1024 * 1024),
            },
            "JWT-SVID is 5242880 bytes, over the limit of 65536 bytes",
        ),
        (
            ValidateJwtsvidRequest {
                audience: "a".repeat(70_000),
                svid: token,
            },
            "audience is 70000 bytes, over the limit of 65536 bytes",
        ),
    ] {
        let status = client
            .validate_jwtsvid(with_header(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert_eq!(status.message(), message);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn validate_jwt_svid_returns_claims() {
    let (server, signer, _ca) = start().await;
    let token = signer.key.token(WEB, &["db"], LIFETIME);
    let mut client = server.client().await;

    let response = client
        .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
            audience: "db".to_owned(),
            svid: token,
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.spiffe_id, WEB);
    let claims = response.claims.unwrap().fields;
    assert_eq!(claims["sub"].kind, Some(Kind::StringValue(WEB.to_owned())));
    let Some(Kind::ListValue(audience)) = &claims["aud"].kind else {
        panic!("aud is not a list: {:?}", claims["aud"]);
    };
    assert_eq!(
        audience.values[0].kind,
        Some(Kind::StringValue("db".to_owned()))
    );
    assert!(matches!(claims["exp"].kind, Some(Kind::NumberValue(_))));
}

#[tokio::test(flavor = "current_thread")]
async fn validate_jwt_svid_rejects_invalid_token() {
    let (server, signer, _ca) = start().await;
    let mut client = server.client().await;
    let forged = TestJwtKey::es256("test-key").token(WEB, &["db"], LIFETIME);
    let wrong_audience = signer.key.token(WEB, &["other"], LIFETIME);

    for token in [forged, wrong_audience] {
        let status = client
            .validate_jwtsvid(with_header(ValidateJwtsvidRequest {
                audience: "db".to_owned(),
                svid: token,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn spiffe_crate_client_fetches_and_verifies_jwt_svid() {
    let (server, signer, ca) = start().await;
    server.cache.publish({
        let mut snapshot = jwt_snapshot(&ca, &signer.key);
        snapshot.identities[0] = signed_identity(&ca, WEB, vec![own_uid_selector()]);
        snapshot
    });
    let endpoint = format!("unix:{}", server.socket_path.display());
    let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();

    let svid = client.fetch_jwt_svid(["db"], None).await.unwrap();
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let verified = JwtSvid::parse_and_validate(svid.token(), &bundles, &["db"]).unwrap();
    let validated = client.validate_jwt_token("db", svid.token()).await.unwrap();

    assert_eq!(verified.spiffe_id().to_string(), WEB);
    assert_eq!(validated.spiffe_id().to_string(), WEB);
    assert!(bundles.get(&trust_domain()).is_some());
}
