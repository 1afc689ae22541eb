//! Malformed and forged JWT-SVIDs sent to the agent's ValidateJWTSVID through clients this
//! project did not write (rust-spiffe and py-spiffe). Each must fail with InvalidArgument and a
//! message that names the failed check, without the token reaching the agent's log.
//!
//! Tokens whose claims are wrong but whose signature is genuine are signed with the server's
//! own JWT key, read from the data directory of the server the test started.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any error"
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::PublicKeyData as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm,
};
use serde_json::{Value, json};
use signet_e2e::python::{self, Script};
use signet_e2e::{Deployment, Server, ServerOptions, unix_now, workload};

const AUDIENCE: &str = "spiffe://example.org/db";
const OTHER_TRUST_DOMAIN: &str = "other.org";
const MIB: usize = 1024 * 1024;
/// Maximum length of an agent log line. Long token values must be cut, not logged whole.
const MAX_LOG_LINE: usize = 2048;

/// A bad token and the text the agent's error message must contain.
struct Case {
    name: &'static str,
    token: String,
    message: String,
}

impl Case {
    fn new(name: &'static str, token: String, message: impl Into<String>) -> Self {
        Self {
            name,
            token,
            message: message.into(),
        }
    }
}

/// The JWT key of a server the test started: its `kid` and PKCS#8 PEM private key.
struct ServerKey {
    key_id: String,
    pem: String,
}

impl ServerKey {
    fn read(server: &Server) -> Self {
        let authorities = server.data_dir().join("authorities/jwt");
        let journal: Value =
            serde_json::from_slice(&std::fs::read(authorities.join("journal.json")).unwrap())
                .unwrap();
        let generation = journal["active"]["generation"].as_u64().unwrap();
        let dir = authorities.join(generation.to_string());
        let metadata: Value =
            serde_json::from_slice(&std::fs::read(dir.join("jwt-key.json")).unwrap()).unwrap();
        Self {
            key_id: metadata["key_id"].as_str().unwrap().to_owned(),
            pem: std::fs::read_to_string(dir.join("jwt-key.pem")).unwrap(),
        }
    }

    /// Signs `claims` with ES256 and this key, with `kid` in the header when given.
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(Algorithm::ES256)
        };
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` with this key and `header`, whose `alg` must be ES256.
    fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap();
        jsonwebtoken::encode(header, claims, &key).unwrap()
    }

    fn pkcs8_der(&self) -> Vec<u8> {
        rcgen::KeyPair::from_pem(&self.pem).unwrap().serialize_der()
    }

    fn public_key_der(&self) -> Vec<u8> {
        rcgen::KeyPair::from_pem(&self.pem)
            .unwrap()
            .subject_public_key_info()
    }
}

fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Builds a compact JWS from `header` and `claims`, signed with the ECDSA key `pkcs8_der`
/// whatever `alg` the header names.
fn sign_raw(
    header: &Value,
    claims: &Value,
    algorithm: &'static EcdsaSigningAlgorithm,
    pkcs8_der: &[u8],
) -> String {
    let input = format!("{}.{}", encode_json(header), encode_json(claims));
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8_der, &rng).unwrap();
    let signature = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// Replaces the payload of `token` with `claims`, keeping its header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], encode_json(claims), parts[2])
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Returns a token of exactly `size` bytes: a plausible header, a huge payload, a short signature.
fn oversized(size: usize) -> String {
    let header = encode_json(&json!({ "alg": "ES256", "kid": "k", "typ": "JWT" }));
    let signature = "c2lnbmF0dXJl";
    let filler = size - header.len() - signature.len() - 2;
    format!("{header}.{}.{signature}", "A".repeat(filler))
}

/// Claims of a well-formed token for the workload, valid for five minutes.
fn good_claims(workload_id: &str) -> Value {
    let now = unix_now();
    json!({ "sub": workload_id, "aud": [AUDIENCE], "iat": now, "exp": now + 300 })
}

fn with_claim(claims: &Value, name: &str, value: Option<Value>) -> Value {
    let mut claims = claims.clone();
    let members = claims.as_object_mut().unwrap();
    match value {
        Some(value) => members.insert(name.to_owned(), value),
        None => members.remove(name),
    };
    claims
}

/// Returns every bad token: forged headers, wrong claims under a genuine signature, foreign keys,
/// size and shape.
async fn bad_tokens(deployment: &Deployment, genuine: &str, other: &Server) -> Vec<Case> {
    let key = ServerKey::read(&deployment.server);
    let kid = key.key_id.as_str();
    let claims = good_claims(&deployment.workload_id);
    let signed = |claims: &Value| key.sign(Some(kid), claims);
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::ES256)
    };
    let p384_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_der();
    let other_key = ServerKey::read(other);
    let other_td_token = other
        .cli_ok(&[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://other.org/web",
            "--audience",
            AUDIENCE,
        ])
        .await
        .unwrap()
        .trim()
        .to_owned();
    let genuine_parts: Vec<&str> = genuine.split('.').collect();
    let hs256_header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    let hs256 = jsonwebtoken::encode(
        &hs256_header,
        &payload(genuine),
        &EncodingKey::from_secret(&key.public_key_der()),
    )
    .unwrap();
    let mut tampered = payload(genuine);
    tampered["sub"] = json!("spiffe://example.org/admin");

    vec![
        Case::new(
            "alg none",
            format!(
                "{}.{}.",
                encode_json(&json!({ "alg": "none", "typ": "JWT" })),
                genuine_parts[1]
            ),
            r#"algorithm "none" is not allowed"#,
        ),
        Case::new(
            "alg of 40 000 characters",
            format!(
                "{}.{}.{}",
                encode_json(&json!({ "alg": "X".repeat(40_000), "kid": kid })),
                genuine_parts[1],
                genuine_parts[2]
            ),
            "is not allowed",
        ),
        Case::new(
            "sub of 40 000 characters",
            signed(&with_claim(
                &claims,
                "sub",
                Some(json!(format!(
                    "spiffe://example.org/{}",
                    "x".repeat(40_000)
                ))),
            )),
            "is not a valid SPIFFE ID",
        ),
        Case::new(
            "HS256 keyed with the public key",
            hs256,
            r#"algorithm "HS256" is not allowed"#,
        ),
        Case::new(
            "ES384 header on a P-256 key",
            sign_raw(
                &json!({ "alg": "ES384", "kid": kid, "typ": "JWT" }),
                &claims,
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.pkcs8_der(),
            ),
            "cannot verify ES384 signatures",
        ),
        Case::new(
            "ES256 header signed by a P-384 key",
            sign_raw(
                &json!({ "alg": "ES256", "kid": kid, "typ": "JWT" }),
                &claims,
                &ECDSA_P384_SHA384_FIXED_SIGNING,
                &p384_key,
            ),
            "signature is invalid",
        ),
        Case::new("missing kid", key.sign(None, &claims), "header has no kid"),
        Case::new(
            "unknown kid",
            key.sign(Some("no-such-key"), &claims),
            r#"no JWT authority with key ID "no-such-key""#,
        ),
        Case::new(
            "sub in another trust domain",
            other_td_token,
            "no JWT bundle for trust domain other.org",
        ),
        Case::new(
            "kid of another trust domain's key",
            other_key.sign(Some(&other_key.key_id), &claims),
            format!("no JWT authority with key ID {:?}", other_key.key_id),
        ),
        Case::new(
            "aud missing",
            signed(&with_claim(&claims, "aud", None)),
            "no valid aud claim",
        ),
        Case::new(
            "aud empty array",
            signed(&with_claim(&claims, "aud", Some(json!([])))),
            "no valid aud claim",
        ),
        Case::new(
            "aud empty string",
            signed(&with_claim(&claims, "aud", Some(json!("")))),
            "no valid aud claim",
        ),
        Case::new(
            "aud without the audience",
            signed(&with_claim(&claims, "aud", Some(json!(["other"])))),
            format!(r#"does not contain "{AUDIENCE}""#),
        ),
        Case::new(
            "exp missing",
            signed(&with_claim(&claims, "exp", None)),
            "no valid exp claim",
        ),
        Case::new(
            "exp in the past",
            signed(&with_claim(&claims, "exp", Some(json!(unix_now() - 60)))),
            "expired at",
        ),
        Case::new(
            "exp not a number",
            signed(&with_claim(&claims, "exp", Some(json!("tomorrow")))),
            "no valid exp claim",
        ),
        Case::new(
            "nbf in the future",
            signed(&with_claim(&claims, "nbf", Some(json!(unix_now() + 3600)))),
            "is not valid before",
        ),
        Case::new(
            "jku header member",
            key.sign_with_header(
                &Header {
                    jku: Some("https://127.0.0.1:1/keys".to_owned()),
                    ..header.clone()
                },
                &claims,
            ),
            r#"header member "jku" is not allowed"#,
        ),
        Case::new(
            "typ JWE",
            key.sign_with_header(
                &Header {
                    typ: Some("JWE".to_owned()),
                    ..header.clone()
                },
                &claims,
            ),
            r#"header typ "JWE" is not JWT or JOSE"#,
        ),
        Case::new(
            "sub not a SPIFFE ID",
            signed(&with_claim(&claims, "sub", Some(json!("web")))),
            r#"sub "web" is not a valid SPIFFE ID"#,
        ),
        Case::new(
            "sub missing",
            signed(&with_claim(&claims, "sub", None)),
            "no valid sub claim",
        ),
        Case::new(
            "tampered payload",
            with_payload(genuine, &tampered),
            "signature is invalid",
        ),
        Case::new(
            "64 KiB and one byte",
            oversized(64 * 1024 + 1),
            "65536 bytes",
        ),
        Case::new("3 MiB", oversized(3 * MIB), "65536 bytes"),
        Case::new("5 MiB", oversized(5 * MIB), "65536 bytes"),
        Case::new("two parts", genuine_parts[..2].join("."), "found 2"),
        Case::new(
            "four parts",
            format!("{genuine}.{}", genuine_parts[2]),
            "found 4",
        ),
        Case::new("one part", "not-a-jwt".to_owned(), "found 1"),
        Case::new(
            "parts not base64url",
            "!!!.@@@.###".to_owned(),
            "header is not base64url",
        ),
        Case::new(
            "header not JSON",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("alg"),
                genuine_parts[1],
                genuine_parts[2]
            ),
            "header is not a JSON object",
        ),
    ]
}

async fn start() -> (Deployment, Server) {
    let deployment = Deployment::start().await.unwrap();
    deployment.fetch_x509_context().await.unwrap();
    let other = Server::start_with(ServerOptions {
        trust_domain: OTHER_TRUST_DOMAIN.to_owned(),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    (deployment, other)
}

#[tokio::test]
async fn bad_jwt_svids_are_invalid_argument() {
    let (deployment, other) = start().await;
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let genuine = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let cases = bad_tokens(&deployment, &genuine, &other).await;

    let mut failures = Vec::new();
    for case in &cases {
        match client.validate_jwt_token(AUDIENCE, &case.token).await {
            Ok(svid) => failures.push(format!("{}: accepted as {}", case.name, svid.spiffe_id())),
            Err(error) if !error.is_invalid_argument() => {
                failures.push(format!("{}: not InvalidArgument: {error}", case.name));
            }
            Err(error) if !error.to_string().contains(&case.message) => failures.push(format!(
                "{}: message {:?} lacks {:?}",
                case.name,
                error.to_string(),
                case.message
            )),
            // Printed so that `--nocapture` shows what a client sees for each case.
            Err(error) => println!("{}: {error}", case.name),
        }
    }

    // The agent still serves, and still accepts the genuine token.
    let validated = client.validate_jwt_token(AUDIENCE, &genuine).await.unwrap();
    assert_eq!(validated.spiffe_id().to_string(), deployment.workload_id);
    client.fetch_jwt_svid([AUDIENCE], None).await.unwrap();

    let log = deployment.agent.log();
    let signature = genuine.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature),
        "the agent logged a token signature"
    );
    assert!(
        log.contains("Rejected JWT-SVID"),
        "the agent logged no rejection"
    );
    assert!(!log.contains("panicked"), "the agent panicked");
    if let Some(line) = log.lines().find(|line| line.len() > MAX_LOG_LINE) {
        failures.push(format!("log line of {} bytes: {:.200}", line.len(), line));
    }
    for case in &cases {
        if log.contains(&case.token) {
            failures.push(format!("{}: the agent logged the token", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn python_client_gets_invalid_argument() {
    let (deployment, other) = start().await;
    let client = workload::connect(&deployment.agent.endpoint())
        .await
        .unwrap();
    let genuine = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let cases: Vec<Case> = bad_tokens(&deployment, &genuine, &other)
        .await
        .into_iter()
        .filter(|case| {
            ["alg none", "tampered payload", "aud without the audience"].contains(&case.name)
        })
        .collect();
    let tokens: serde_json::Map<String, Value> = cases
        .iter()
        .map(|case| (case.name.to_owned(), json!(case.token)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens.json");
    std::fs::write(&tokens_file, serde_json::to_vec(&tokens).unwrap()).unwrap();

    let script = Script::load("validate_jwt.py").unwrap();
    let output = script
        .run(&[
            &deployment.agent.endpoint(),
            AUDIENCE,
            tokens_file.to_str().unwrap(),
        ])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert!(output.status.success(), "validate_jwt.py failed: {json}");

    assert_eq!(cases.len(), 3);
    for case in &cases {
        let result = &json[case.name];
        assert_eq!(
            result["code"], "INVALID_ARGUMENT",
            "{}: {result}",
            case.name
        );
        let details = result["details"].as_str().unwrap();
        assert!(
            details.contains(&case.message),
            "{}: {details:?} lacks {:?}",
            case.name,
            case.message
        );
    }
}
