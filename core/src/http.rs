//! A small HTTP/1.1 server for the operational endpoints of the daemons: Prometheus metrics and
//! the health probes.
//!
//! Every response is built in memory by a [`HttpRoutes`] handler, and only `GET` and `HEAD`
//! are accepted, so the server needs no request body handling.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

/// Content type of the plain-text responses of the health probes and the errors.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A response built in memory.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HttpResponse {
    /// The status code.
    pub status: StatusCode,
    /// The value of the `Content-Type` header.
    pub content_type: &'static str,
    /// The body, which a `HEAD` request does not receive.
    pub body: String,
}

/// The paths one listener serves.
pub trait HttpRoutes: Send + Sync + 'static {
    /// Returns the response for `path`, or `None` when this handler does not serve the path.
    fn respond(&self, path: &str) -> Option<HttpResponse>;
}

/// A bound TCP listener and the handlers of its paths.
pub struct HttpEndpoint {
    listener: TcpListener,
    routes: Vec<Arc<dyn HttpRoutes>>,
}

/// Error from binding an HTTP endpoint.
#[derive(Debug, thiserror::Error)]
#[error("failed to bind the {purpose} endpoint to {address}")]
pub struct HttpBindError {
    /// Purpose of the endpoint, such as "metrics" or "health".
    pub purpose: &'static str,
    /// The address from the settings.
    pub address: SocketAddr,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

// === impl HttpResponse ===

impl HttpResponse {
    /// Builds a plain-text response.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: TEXT_PLAIN,
            body: body.into(),
        }
    }
}

// === impl HttpEndpoint ===

impl HttpEndpoint {
    /// Binds the endpoints the settings enable: `metrics` serves `/metrics` and `health` the
    /// probes, each at its address. When both addresses are equal, one listener serves both.
    ///
    /// # Errors
    ///
    /// [`HttpBindError`] naming the first address that could not be bound.
    pub async fn bind_enabled(
        metrics: Option<(SocketAddr, Arc<dyn HttpRoutes>)>,
        health: Option<(SocketAddr, Arc<dyn HttpRoutes>)>,
    ) -> Result<Vec<Self>, HttpBindError> {
        let routes = [("metrics", metrics), ("health", health)]
            .into_iter()
            .filter_map(|(purpose, enabled)| {
                enabled.map(|(address, handler)| (purpose, address, handler))
            });
        let mut endpoints: Vec<(SocketAddr, Self)> = Vec::new();
        for (purpose, address, handler) in routes {
            if let Some((_, endpoint)) = endpoints.iter_mut().find(|(bound, _)| *bound == address) {
                endpoint.routes.push(handler);
                continue;
            }
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| HttpBindError {
                    purpose,
                    address,
                    source,
                })?;
            tracing::info!(
                purpose,
                address = %listener.local_addr().unwrap_or(address),
                "HTTP endpoint listening"
            );
            endpoints.push((
                address,
                Self {
                    listener,
                    routes: vec![handler],
                },
            ));
        }
        Ok(endpoints
            .into_iter()
            .map(|(_, endpoint)| endpoint)
            .collect())
    }

    /// Returns the address the endpoint listens on.
    ///
    /// # Errors
    ///
    /// The I/O error of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves requests until `shutdown` completes. A failed accept is logged and retried, so the
    /// endpoint never stops on its own.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops accepting connections. Connections already
    /// accepted finish their current request in their own tasks.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let routes: Arc<[Arc<dyn HttpRoutes>]> = self.routes.into();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(stream, Arc::clone(&routes)));
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Failed to accept an HTTP connection");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                },
                () = &mut shutdown => return,
            }
        }
    }
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("listener", &self.listener)
            .field("routes", &self.routes.len())
            .finish()
    }
}

async fn serve_connection(stream: TcpStream, routes: Arc<[Arc<dyn HttpRoutes>]>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = route(&routes, request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(into_hyper(response)) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(error = %error, "HTTP connection failed");
    }
}

/// Finds the response to a request. hyper drops the body of the response to a `HEAD` request and
/// keeps its `Content-Length`, so both methods share one path.
fn route(routes: &[Arc<dyn HttpRoutes>], method: &Method, path: &str) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return HttpResponse::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed: use GET or HEAD\n"),
        );
    }
    routes
        .iter()
        .find_map(|handler| handler.respond(path))
        .unwrap_or_else(|| {
            HttpResponse::text(StatusCode::NOT_FOUND, format!("no page at {path}\n"))
        })
}

fn into_hyper(response: HttpResponse) -> Response<Full<Bytes>> {
    let status = response.status;
    let mut hyper_response = Response::new(Full::new(Bytes::from(response.body)));
    *hyper_response.status_mut() = status;
    let headers = hyper_response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    hyper_response
}

/// Time a client has to send its request headers, so an idle connection cannot be held open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (for example when out of file descriptors) before the next one.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl HttpRoutes for Fixed {
        fn respond(&self, path: &str) -> Option<HttpResponse> {
            (path == "/page").then(|| HttpResponse::text(StatusCode::OK, "page\n"))
        }
    }

    fn routes() -> Vec<Arc<dyn HttpRoutes>> {
        vec![Arc::new(Fixed)]
    }

    #[test]
    fn get_and_head_reach_the_handler() {
        for method in [Method::GET, Method::HEAD] {
            let response = route(&routes(), &method, "/page");
            assert_eq!(response.status, StatusCode::OK, "{method}");
        }
    }

    #[test]
    fn unknown_path_is_not_found() {
        let response = route(&routes(), &Method::GET, "/other");
        assert_eq!(response.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn post_is_not_allowed() {
        let response = route(&routes(), &Method::POST, "/page");
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
