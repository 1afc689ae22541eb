//! HTTP routes: the discovery document, the JWKS, and 404 for anything else.

use std::time::Duration;

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::sync::watch;

use crate::config::Config;
use crate::discovery::DiscoveryDocument;
use crate::domain::{DomainAllowList, RequestHostError, request_host};
use signet_core::provider_url::DISCOVERY_SUFFIX;

/// Time clients may cache the discovery document, which changes only with the configuration.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(300);

/// Upper bound of the JWKS `max-age`, which otherwise equals the poll interval, so a client's
/// copy is at most two poll intervals behind the server's bundle.
const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// `Retry-After` value in seconds, sent while no bundle has been read yet.
const RETRY_AFTER_SECONDS: &str = "5";

/// The latest JWKS as JSON, or `None` until the first bundle read succeeds.
pub type JwksReceiver = watch::Receiver<Option<Bytes>>;

/// The provider's routes and what they serve.
#[derive(Debug)]
pub struct Site {
    domains: DomainAllowList,
    discovery_path: String,
    keys_path: String,
    discovery_body: Bytes,
    discovery_cache_control: HeaderValue,
    jwks: JwksReceiver,
    jwks_cache_control: HeaderValue,
}

impl Site {
    /// Builds the routes of `config`, serving the JWKS that `jwks` contains at each request.
    ///
    /// The discovery document lives below the issuer's path. The JWKS lives at the path of
    /// `jwks_uri`, so a `jwks_uri` on a proxy or CDN host maps to the same path here.
    pub fn new(config: &Config, jwks: JwksReceiver) -> Self {
        let document = DiscoveryDocument::new(&config.issuer, &config.jwks_uri);
        let jwks_max_age = config.poll_interval.min(MAX_JWKS_MAX_AGE);
        Self {
            domains: config.domains.clone(),
            discovery_path: config.issuer.path_below(DISCOVERY_SUFFIX),
            keys_path: config.jwks_uri.path().to_owned(),
            discovery_body: Bytes::from(document.to_json()),
            discovery_cache_control: cache_control(DISCOVERY_MAX_AGE),
            jwks,
            jwks_cache_control: cache_control(jwks_max_age),
        }
    }

    /// Builds the response to `request`, whatever its body.
    pub fn respond<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let host = request_host(request);
        let response = self.route(request.method(), request.uri().path(), &host);
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            host = ?host,
            status = response.status().as_u16(),
            "Request"
        );
        response
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        host: &Result<String, RequestHostError>,
    ) -> Response<Full<Bytes>> {
        let host = match host {
            Ok(host) => host,
            Err(error) => return text(StatusCode::BAD_REQUEST, &format!("{error}\n")),
        };
        if !self.domains.contains(host) {
            return text(StatusCode::NOT_FOUND, "domain not served here\n");
        }
        let is_discovery = path == self.discovery_path;
        if !is_discovery && path != self.keys_path {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }

        if is_discovery {
            json(
                self.discovery_body.clone(),
                self.discovery_cache_control.clone(),
            )
        } else {
            self.keys()
        }
    }

    fn keys(&self) -> Response<Full<Bytes>> {
        let Some(body) = self.jwks.borrow().clone() else {
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "JWKS not available yet: the server's bundle has not been read\n",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            return response;
        };
        json(body, self.jwks_cache_control.clone())
    }
}

fn json(body: Bytes, cache_control: HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, cache_control);
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cache_control(max_age: Duration) -> HeaderValue {
    // The text is visible ASCII and spaces only, so it is always a valid header value.
    HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("no-store"))
}

#[cfg(test)]
mod tests;
