//! A tower layer that counts Workload API calls by method and gRPC code and records how long the
//! agent took to respond.
//!
//! It wraps the whole gRPC server, so it also counts the calls the security header check rejects.
//! Only the five Workload API methods get a label. Calls to other paths, such as the gRPC health
//! service, are not recorded, so a client cannot create label values.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::AgentMetrics;

/// Wraps a service with [`RecordCalls`].
#[derive(Clone, Debug)]
pub struct RecordCallsLayer {
    metrics: AgentMetrics,
}

/// Records each Workload API call in the agent's metrics.
#[derive(Clone, Debug)]
pub struct RecordCalls<S> {
    inner: S,
    metrics: AgentMetrics,
}

/// The response future of [`RecordCalls`].
type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

// === impl RecordCallsLayer ===

impl RecordCallsLayer {
    /// Creates a layer that records into `metrics`.
    pub fn new(metrics: AgentMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RecordCallsLayer {
    type Service = RecordCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordCalls {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

// === impl RecordCalls ===

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for RecordCalls<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let method = workload_api_method(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = response.await;
            if let Some(method) = method {
                // A failed call carries its code in the headers (a trailers-only response).
                // Otherwise the call was accepted, and a stream's final code is not known yet.
                let code = match &response {
                    Ok(response) => Status::from_header_map(response.headers())
                        .map_or(Code::Ok, |status| status.code()),
                    Err(_) => Code::Internal,
                };
                metrics.observe_workload_api_call(method, code, started.elapsed());
            }
            response
        })
    }
}

/// Returns the method name of a Workload API request path, or `None` for any other path.
fn workload_api_method(path: &str) -> Option<&'static str> {
    let method = path.strip_prefix("/SpiffeWorkloadAPI/")?;
    WORKLOAD_API_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
}

/// The RPCs of the `SpiffeWorkloadAPI` service.
const WORKLOAD_API_METHODS: [&str; 5] = [
    "FetchJWTBundles",
    "FetchJWTSVID",
    "FetchX509Bundles",
    "FetchX509SVID",
    "ValidateJWTSVID",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_workload_api_methods_get_a_label() {
        let cases = [
            ("/SpiffeWorkloadAPI/FetchX509SVID", Some("FetchX509SVID")),
            (
                "/SpiffeWorkloadAPI/ValidateJWTSVID",
                Some("ValidateJWTSVID"),
            ),
            ("/SpiffeWorkloadAPI/FetchSomethingElse", None),
            ("/grpc.health.v1.Health/Check", None),
            ("/", None),
        ];
        for (path, expected) in cases {
            assert_eq!(workload_api_method(path), expected, "{path}");
        }
    }
}
