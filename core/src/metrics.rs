//! Helpers for the Prometheus metrics of the daemons: the `/metrics` response, the latency
//! buckets and times as seconds from now.
//!
//! Each daemon keeps its metrics in a typed struct of `prometheus-client` handles. Label values
//! are `&'static str`, so a label can only take values written in the source, never a SPIFFE ID,
//! PID or entry ID.

use std::time::SystemTime;

use hyper::StatusCode;
use prometheus_client::encoding::text;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::http::HttpResponse;

/// Path of the Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the OpenMetrics text format that `prometheus-client` writes; Prometheus reads
/// it as well as its older text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes every metric of `registry` into the response to `GET /metrics`.
pub fn metrics_response(registry: &Registry) -> HttpResponse {
    let mut body = String::new();
    match text::encode(&mut body, registry) {
        Ok(()) => HttpResponse {
            status: StatusCode::OK,
            content_type: OPENMETRICS_CONTENT_TYPE,
            body,
        },
        // Writing to a String cannot fail, so only a metric's own encoder can report an error.
        Err(error) => {
            tracing::warn!(error = %error, "Failed to encode the metrics");
            HttpResponse::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to encode the metrics\n",
            )
        }
    }
}

/// Returns a histogram for a latency in seconds, with buckets from 0.5 ms to about 8 s that
/// double each step.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Returns the name of a gRPC code as the gRPC specification spells it, such as `NOT_FOUND`, for
/// use as a label value.
pub fn grpc_code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Returns the seconds from `now` until `time`; negative once `time` has passed.
pub fn seconds_until(time: SystemTime, now: SystemTime) -> f64 {
    match time.duration_since(now) {
        Ok(remaining) => remaining.as_secs_f64(),
        Err(passed) => -passed.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn seconds_until_is_negative_after_the_time() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        assert_eq!(seconds_until(now + minute, now), 60.0);
        assert_eq!(seconds_until(now - minute, now), -60.0);
    }

    #[test]
    fn response_ends_with_eof_marker() {
        let mut registry = Registry::default();
        registry.register("signet_test_latency_seconds", "test", latency_histogram());

        let response = metrics_response(&registry);

        assert_eq!(response.status, StatusCode::OK);
        assert!(response.body.contains("signet_test_latency_seconds_bucket"));
        assert!(response.body.ends_with("# EOF\n"), "{}", response.body);
    }
}
