//! JWT-SVIDs minted by the server's operator CLI, verified with the `spiffe` crate against the
//! JWT keys that `bundle show --format spiffe` publishes, and X509-SVIDs minted by the CLI.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any error"
)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use signet_e2e::files::mode;
use signet_e2e::svid::{check_x509_svid, pem_certificates};
use signet_e2e::{Server, ServerOptions, TRUST_DOMAIN, unix_now};
use spiffe::bundle::jwt::{JwtBundle, JwtBundleSet};
use spiffe::{JwtSvid, TrustDomain};

/// Returns the keys of the server's SPIFFE bundle whose `use` is `key_use`, as a JWK Set.
async fn bundle_keys(server: &Server, key_use: &str) -> Value {
    let text = server
        .cli_ok(&["bundle", "show", "--format", "spiffe"])
        .await
        .unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<Value> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["use"] == key_use)
        .cloned()
        .collect();
    json!({ "keys": keys })
}

/// Returns a bundle source with the server's `jwt-svid` keys for its trust domain.
async fn jwt_bundles(server: &Server) -> JwtBundleSet {
    let jwks = bundle_keys(server, "jwt-svid").await;
    bundle_set(&jwks)
}

fn bundle_set(jwks: &Value) -> JwtBundleSet {
    let trust_domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
    let bundle =
        JwtBundle::from_jwt_authorities(trust_domain, &serde_json::to_vec(jwks).unwrap()).unwrap();
    std::iter::once(bundle).collect()
}

async fn mint(server: &Server, extra: &[&str]) -> String {
    let mut args = vec!["jwt", "mint", "--spiffe-id", "spiffe://example.org/web"];
    args.extend_from_slice(extra);
    server.cli_ok(&args).await.unwrap().trim().to_owned()
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn minted_jwt_svid_verifies_with_spiffe_crate() {
    let server = Server::start().await.unwrap();

    let token = mint(&server, &["--audience", "db", "--ttl", "2m"]).await;

    let bundles = jwt_bundles(&server).await;
    let svid = JwtSvid::parse_and_validate(&token, &bundles, &["db"]).unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
    assert_eq!(svid.audience(), ["db".to_owned()]);
    let claims = decode_part(&token, 1);
    let lifetime = claims["exp"].as_i64().unwrap() - unix_now();
    assert!((100..=120).contains(&lifetime), "lifetime {lifetime}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    assert!(claims.get("iss").is_none(), "{claims}");
    let header = decode_part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header.as_object().unwrap().len(), 3, "{header}");
}

#[tokio::test]
async fn jwt_svid_audience_and_keys_are_enforced() {
    let server = Server::start().await.unwrap();
    let token = mint(&server, &["--audience", "db", "--audience", "cache"]).await;
    let bundles = jwt_bundles(&server).await;
    let no_jwt_keys = bundle_set(&json!({ "keys": [] }));

    let for_cache = JwtSvid::parse_and_validate(&token, &bundles, &["cache"]);
    let for_web = JwtSvid::parse_and_validate(&token, &bundles, &["web"]);
    let without_keys = JwtSvid::parse_and_validate(&token, &no_jwt_keys, &["db"]);

    assert!(for_cache.is_ok(), "{for_cache:?}");
    assert!(
        for_web.is_err(),
        "a token for db and cache verified for web"
    );
    assert!(without_keys.is_err(), "a token verified without JWT keys");
    let claims = decode_part(&token, 1);
    assert_eq!(claims["aud"], json!(["cache", "db"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 300, "default JWT-SVID TTL");
}

#[tokio::test]
async fn jwt_mint_sorts_and_deduplicates_audience() {
    let server = Server::start().await.unwrap();

    let token = mint(
        &server,
        &["--audience", "b", "--audience", "a", "--audience", "a"],
    )
    .await;

    assert_eq!(decode_part(&token, 1)["aud"], json!(["a", "b"]));
}

#[tokio::test]
async fn ttl_cut_to_key_expiry_warns_once() {
    let server = Server::start_with(ServerOptions {
        extra_args: vec!["--ca-ttl".to_owned(), "10m".to_owned()],
        ..ServerOptions::default()
    })
    .await
    .unwrap();

    for _ in 0..2 {
        mint(&server, &["--audience", "db", "--ttl", "1h"]).await;
    }

    let log = server.log();
    let warnings = log.matches("JWT-SVID TTL cut to the signing key's expiry; request a shorter");
    assert_eq!(warnings.count(), 1, "{log}");
}

#[tokio::test]
async fn jwt_key_survives_restart() {
    let mut server = Server::start().await.unwrap();
    let before = mint(&server, &["--audience", "db"]).await;

    server.restart().await.unwrap();
    let after = mint(&server, &["--audience", "db"]).await;

    let jwks = bundle_keys(&server, "jwt-svid").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert_eq!(
        decode_part(&before, 0)["kid"],
        decode_part(&after, 0)["kid"]
    );
    let bundles = bundle_set(&jwks);
    JwtSvid::parse_and_validate(&before, &bundles, &["db"]).unwrap();
    JwtSvid::parse_and_validate(&after, &bundles, &["db"]).unwrap();
}

#[tokio::test]
async fn rsa_key_type_and_issuer_are_used() {
    let options = ServerOptions {
        extra_args: vec![
            "--jwt-key-type".to_owned(),
            "ps256".to_owned(),
            "--jwt-issuer".to_owned(),
            "https://oidc.example.org".to_owned(),
            "--default-jwt-svid-ttl".to_owned(),
            "90s".to_owned(),
        ],
        ..ServerOptions::default()
    };
    let server = Server::start_with(options).await.unwrap();

    let token = mint(&server, &["--audience", "db"]).await;

    let bundles = jwt_bundles(&server).await;
    JwtSvid::parse_and_validate(&token, &bundles, &["db"]).unwrap();
    assert_eq!(decode_part(&token, 0)["alg"], "PS256");
    let claims = decode_part(&token, 1);
    assert_eq!(claims["iss"], "https://oidc.example.org");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90
    );
}

#[tokio::test]
async fn jwt_mint_writes_private_file() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.jwt");
    let path_text = path.to_str().unwrap();

    let stdout = mint(&server, &["--audience", "db", "--write", path_text]).await;

    let token = std::fs::read_to_string(&path).unwrap();
    assert!(!stdout.contains(&token), "the token was printed too");
    assert_eq!(mode(&path).unwrap(), 0o600);
    JwtSvid::parse_and_validate(&token, &jwt_bundles(&server).await, &["db"]).unwrap();
}

#[tokio::test]
async fn jwt_mint_rejects_bad_input() {
    let server = Server::start().await.unwrap();
    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "foreign trust domain",
            vec!["--spiffe-id", "spiffe://other.org/web", "--audience", "db"],
            "other.org",
        ),
        (
            "invalid SPIFFE ID",
            vec!["--spiffe-id", "not-an-id", "--audience", "db"],
            "not-an-id",
        ),
        (
            "invalid TTL",
            vec![
                "--spiffe-id",
                "spiffe://example.org/web",
                "--audience",
                "db",
                "--ttl",
                "0s",
            ],
            "0s",
        ),
    ];
    for (name, args, named_value) in cases {
        let mut command = vec!["jwt", "mint"];
        command.extend(args);
        let output = server.cli(&command).await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: succeeded");
        assert!(stderr.contains(named_value), "{name}: {stderr}");
    }

    let no_audience = server
        .cli(&["jwt", "mint", "--spiffe-id", "spiffe://example.org/web"])
        .await
        .unwrap();
    assert!(!no_audience.status.success());
}

#[tokio::test]
async fn x509_mint_writes_svid_key_and_bundle() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("svid");

    server
        .cli_ok(&[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/minted",
            "--dns-name",
            "minted.example.org",
            "--ttl",
            "10m",
            "--write",
            out.to_str().unwrap(),
        ])
        .await
        .unwrap();

    let chain = pem_certificates(&std::fs::read_to_string(out.join("svid.pem")).unwrap()).unwrap();
    let bundle =
        pem_certificates(&std::fs::read_to_string(out.join("bundle.pem")).unwrap()).unwrap();
    let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let bundle: Vec<&[u8]> = bundle.iter().map(Vec::as_slice).collect();
    let facts = check_x509_svid(&chain, &bundle, "spiffe://example.org/minted").unwrap();
    assert!(
        facts.lifetime() <= Duration::from_secs(610)
            && facts.lifetime() >= Duration::from_secs(600),
        "lifetime {:?}",
        facts.lifetime()
    );
    assert_eq!(mode(&out.join("key.pem")).unwrap(), 0o600);
    assert_eq!(mode(&out).unwrap(), 0o700);
    let key = std::fs::read_to_string(out.join("key.pem")).unwrap();
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "key.pem is no PKCS#8 PEM"
    );
}

#[tokio::test]
async fn x509_mint_prints_pem_sections() {
    let server = Server::start().await.unwrap();

    let stdout = server
        .cli_ok(&[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/printed",
        ])
        .await
        .unwrap();

    for section in ["X509-SVID:", "Private key:", "Root CAs:"] {
        assert!(stdout.contains(section), "missing {section}");
    }
    let certificates = pem_certificates(&stdout).unwrap();
    assert!(certificates.len() >= 2, "expected the SVID and the root");
}
