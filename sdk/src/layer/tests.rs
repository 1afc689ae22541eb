use std::convert::Infallible;

use http::Method;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::identity::PeerIdentity;
use crate::policy::{Policy, RuleBuilder};

const GATEWAY: &str = "spiffe://example.org/gateway";

fn policy(mode: Mode) -> Policy {
    Policy::builder()
        .mode(mode)
        .rule(
            RuleBuilder::allow()
                .name("gateway reads")
                .peer(GATEWAY)
                .methods(["GET"]),
        )
        .rule(
            RuleBuilder::allow()
                .name("billing via gateway")
                .peer(GATEWAY)
                .caller("spiffe://example.org/billing-batch")
                .methods(["POST"]),
        )
        .build()
        .unwrap()
}

fn request(method: Method, peer: Option<&str>, grpc: bool) -> Request<()> {
    let mut request = Request::builder()
        .method(method)
        .uri("/orders/1")
        .body(())
        .unwrap();
    if let Some(peer) = peer {
        let id = SpiffeId::new(peer).unwrap();
        request.extensions_mut().insert(PeerIdentity(id));
    }
    if grpc {
        *request.version_mut() = http::Version::HTTP_2;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    request
}

/// Sends `request` through the layer to a service that returns 200 with the peer it received.
async fn send(layer: PolicyLayer, request: Request<()>) -> (StatusCode, http::HeaderMap, String) {
    let inner = tower::service_fn(|request: Request<()>| async move {
        let identities = request.extensions().get::<Identities>().cloned();
        let peer = identities
            .and_then(|identities| identities.peer)
            .map_or_else(|| "none".to_owned(), |peer| peer.to_string());
        Ok::<_, Infallible>(Response::new(Full::from(peer)))
    });
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn allowed_request_reaches_service_with_identities() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    let (status, _, body) = send(layer, request(Method::GET, Some(GATEWAY), false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, GATEWAY);
}

#[tokio::test(flavor = "current_thread")]
async fn denied_request_gets_403_with_reason() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    let (status, headers, body) = send(layer, request(Method::DELETE, Some(GATEWAY), false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "no policy rule allows this request\n");
    assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
}

#[tokio::test(flavor = "current_thread")]
async fn request_without_peer_is_denied() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    let (status, _, _) = send(layer, request(Method::GET, None, false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "current_thread")]
async fn missing_required_caller_gets_401() {
    let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
    let layer = PolicyLayer::new(policy(Mode::Enforce)).callers(callers);
    let (status, headers, body) = send(layer, request(Method::POST, Some(GATEWAY), false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "a caller JWT-SVID is required\n");
    assert_eq!(headers[WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test(flavor = "current_thread")]
async fn rejected_caller_token_gets_401() {
    let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
    let layer = PolicyLayer::new(policy(Mode::Enforce)).callers(callers);
    let mut request = request(Method::GET, Some(GATEWAY), false);
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer x.y.z"),
    );
    let (status, _, body) = send(layer, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "JWT-SVID invalid\n");
}

#[tokio::test(flavor = "current_thread")]
async fn shadow_mode_lets_denied_request_through() {
    let layer = PolicyLayer::new(policy(Mode::Shadow));
    let (status, _, body) = send(layer, request(Method::DELETE, Some(GATEWAY), false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, GATEWAY);
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_denials_use_grpc_status() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    let (status, headers, _) =
        send(layer.clone(), request(Method::DELETE, Some(GATEWAY), true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "7");

    let callers = CallerJwt::new(spiffe::JwtBundleSet::new(), ["orders"]);
    let layer = layer.callers(callers);
    let (_, headers, _) = send(layer, request(Method::POST, Some(GATEWAY), true)).await;
    assert_eq!(headers["grpc-status"], "16");
}

#[tokio::test(flavor = "current_thread")]
async fn caller_rule_without_callers_gets_403_naming_the_cause() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    let (status, _, body) = send(layer, request(Method::POST, Some(GATEWAY), false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("validates no caller JWT-SVIDs"), "{body}");
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_look_alike_content_types_get_plain_http() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    // A gRPC content type over HTTP/1.1 is not gRPC.
    let mut http1 = request(Method::DELETE, Some(GATEWAY), true);
    *http1.version_mut() = http::Version::HTTP_11;
    let (status, _, _) = send(layer.clone(), http1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for content_type in ["application/grpcx", "application/grpc-web-text"] {
        let mut request = request(Method::DELETE, Some(GATEWAY), true);
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let (status, _, _) = send(layer.clone(), request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{content_type}");
    }
    for content_type in ["application/grpc+proto", "application/grpc; charset=utf-8"] {
        let mut request = request(Method::DELETE, Some(GATEWAY), true);
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let (_, headers, _) = send(layer.clone(), request).await;
        assert_eq!(headers["grpc-status"], "7", "{content_type}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn non_canonical_requests_get_400_before_any_rule() {
    let layer = PolicyLayer::new(policy(Mode::Enforce));
    for uri in [
        "/orders/../admin",
        "//orders/1",
        "http://x//orders/1",
        "/orders/%2e%2e",
    ] {
        let mut request = request(Method::GET, Some(GATEWAY), false);
        *request.uri_mut() = uri.parse().unwrap();
        let (status, _, _) = send(layer.clone(), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
    let mut request = request(Method::GET, Some(GATEWAY), true);
    *request.uri_mut() = "/./orders".parse().unwrap();
    let (_, headers, _) = send(layer, request).await;
    assert_eq!(headers["grpc-status"], "3");
}
