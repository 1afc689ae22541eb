use http::header::HOST;
use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use crate::config::{RunArgs, Transport};

fn config(issuer: &str, jwks_uri: Option<&str>) -> Config {
    let mut config = Config::load(&RunArgs {
        issuer: Some(issuer.to_owned()),
        jwks_uri: jwks_uri.map(str::to_owned),
        insecure_http: true,
        ..RunArgs::default()
    })
    .unwrap();
    config.transport = Transport::InsecureHttp;
    config
}

fn site(config: &Config, jwks: Option<&str>) -> Site {
    let (_sender, receiver) = watch::channel(jwks.map(|text| Bytes::from(text.to_owned())));
    Site::new(config, receiver)
}

fn request(method: Method, host: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .body(())
        .unwrap()
}

async fn body_text(response: Response<Full<Bytes>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn discovery_document_is_served_below_issuer() {
    let config = config("https://oidc.example.org/tenant", None);
    let site = site(&config, None);
    let response = site.respond(&request(
        Method::GET,
        "oidc.example.org",
        "/tenant/.well-known/openid-configuration",
    ));

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=300");
    let document: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(document["issuer"], "https://oidc.example.org/tenant");
    assert_eq!(document["jwks_uri"], "https://oidc.example.org/tenant/keys");
}

#[tokio::test(flavor = "current_thread")]
async fn jwks_is_served_at_jwks_uri_path() {
    let config = config(
        "https://oidc.example.org",
        Some("https://oidc.example.org/jwks.json"),
    );
    let site = site(&config, Some(r#"{"keys":[]}"#));

    let response = site.respond(&request(Method::GET, "oidc.example.org:8443", "/jwks.json"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=10");
    assert_eq!(body_text(response).await, r#"{"keys":[]}"#);

    let default_path = site.respond(&request(Method::GET, "oidc.example.org", "/keys"));
    assert_eq!(default_path.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "current_thread")]
async fn jwks_before_first_read_is_unavailable() {
    let config = config("https://oidc.example.org", None);
    let response = site(&config, None).respond(&request(Method::GET, "oidc.example.org", "/keys"));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], RETRY_AFTER_SECONDS);
}

#[tokio::test(flavor = "current_thread")]
async fn jwks_follows_published_updates() {
    let config = config("https://oidc.example.org", None);
    let (sender, receiver) = watch::channel(None);
    let site = Site::new(&config, receiver);
    sender.send_replace(Some(Bytes::from_static(b"{\"keys\":[1]}")));

    let response = site.respond(&request(Method::GET, "oidc.example.org", "/keys"));
    assert_eq!(body_text(response).await, "{\"keys\":[1]}");
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_domain_gets_not_found() {
    let config = config("https://oidc.example.org", None);
    let site = site(&config, Some("{}"));
    for path in ["/keys", "/.well-known/openid-configuration"] {
        let response = site.respond(&request(Method::GET, "evil.example", path));
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body_text(response).await, "domain not served here\n");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_host_gets_bad_request() {
    let config = config("https://oidc.example.org", None);
    let site = site(&config, Some("{}"));
    let two_hosts = Request::builder()
        .uri("/keys")
        .header(HOST, "oidc.example.org")
        .header(HOST, "evil.example")
        .body(())
        .unwrap();
    let no_host = Request::builder().uri("/keys").body(()).unwrap();
    let cases = [
        (two_hosts, "more than one Host header\n"),
        (no_host, "missing Host header\n"),
        (
            request(Method::GET, "user@oidc.example.org", "/keys"),
            "invalid host: expected host[:port]\n",
        ),
    ];

    for (request, message) in cases {
        let response = site.respond(&request);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{message}");
        assert_eq!(body_text(response).await, message);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_path_gets_not_found() {
    let config = config("https://oidc.example.org/tenant", None);
    let site = site(&config, Some("{}"));
    for path in [
        "/",
        "/.well-known/openid-configuration",
        "/tenant/.well-known/openid-configuration/",
        "/keys",
        "/tenant/keys/extra",
    ] {
        let response = site.respond(&request(Method::GET, "oidc.example.org", path));
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn methods_other_than_get_and_head_are_rejected() {
    let config = config("https://oidc.example.org", None);
    let site = site(&config, Some("{}"));
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let response = site.respond(&request(method.clone(), "oidc.example.org", "/keys"));
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
    }
    let head = site.respond(&request(Method::HEAD, "oidc.example.org", "/keys"));
    assert_eq!(head.status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn absolute_form_uri_overrides_host() {
    let config = config("https://oidc.example.org", None);
    let site = site(&config, Some("{}"));
    let request = Request::builder()
        .uri("https://oidc.example.org/keys")
        .header(HOST, "evil.example")
        .body(())
        .unwrap();
    assert_eq!(site.respond(&request).status(), StatusCode::OK);

    let unlisted = Request::builder()
        .uri("https://evil.example/keys")
        .header(HOST, "oidc.example.org")
        .body(())
        .unwrap();
    assert_eq!(site.respond(&unlisted).status(), StatusCode::NOT_FOUND);
}
