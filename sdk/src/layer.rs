//! The tower layer that decides on every request with the policy, for axum, hyper and tonic.
//!
//! For each request the layer reads the peer's SPIFFE ID from the extensions
//! ([`PeerIdentity`](crate::PeerIdentity), or tonic's `TlsConnectInfo`), validates the caller
//! JWT-SVID when a [`CallerJwt`] is set, and evaluates the [`Policy`](crate::policy::Policy).
//! An allowed request goes on with [`Identities`] in its extensions. A denied one gets:
//!
//! | Cause | HTTP | gRPC |
//! | --- | --- | --- |
//! | path or method not in canonical form (see [`policy`](crate::policy)) | 400 | `InvalidArgument` |
//! | caller JWT-SVID present but rejected | 401 | `Unauthenticated` |
//! | no caller JWT-SVID where an allow rule needs one | 401 | `Unauthenticated` |
//! | deny rule, or no rule allows | 403 | `PermissionDenied` |
//!
//! with a short plain-text reason, and one warning line in the log with the peer, the caller,
//! the method, the path and the rule that decided. The token is never logged. In shadow mode
//! the same line reports that the request would be denied, and the request goes on.
//!
//! A denial is sent as gRPC only to an HTTP/2 request whose content type is `application/grpc`
//! or `application/grpc+<format>`, with or without `;` parameters. Any other request gets the
//! plain HTTP status.
//!
//! Without [`PolicyLayer::callers`] no request has a caller. A policy with a rule that names a
//! caller then logs an error when the layer wraps a service, and the requests such a rule would
//! allow get 403 stating that the service validates no caller JWT-SVIDs.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::TryFutureExt;
use futures::future::{Either as EitherFuture, MapOk, Ready, ready};
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use spiffe::SpiffeId;
use tower::{Layer, Service};

use crate::caller::CallerJwt;
use crate::identity::{Identities, peer_of};
use crate::policy::{DecisionReason, Effect, Mode, RequestFacts, SharedPolicy};

/// Applies a policy to every request; see the module documentation.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use signet_sdk::PolicyLayer;
/// use signet_sdk::policy::{Policy, RuleBuilder};
///
/// let policy = Policy::builder()
///     .rule(RuleBuilder::allow().peer("spiffe://example.org/gateway").methods(["GET"]))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "order" }))
///     .layer(PolicyLayer::new(policy));
/// # Ok::<(), signet_sdk::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PolicyLayer {
    policy: SharedPolicy,
    callers: Option<CallerJwt>,
}

/// The service [`PolicyLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct PolicyService<S> {
    inner: S,
    layer: PolicyLayer,
}

/// The response body of a [`PolicyService`]: the inner service's, or the text of a denial.
pub type PolicyBody<B> = Either<B, Full<Bytes>>;

/// The future of a [`PolicyService`].
pub type PolicyFuture<F, B, E> = EitherFuture<
    MapOk<F, fn(Response<B>) -> Response<PolicyBody<B>>>,
    Ready<Result<Response<PolicyBody<B>>, E>>,
>;

/// A denial: the status, its reason for the client, and the decision for the log.
struct Denial {
    status: StatusCode,
    reason: String,
    rule: String,
}

// === impl PolicyLayer ===

impl PolicyLayer {
    /// Returns a layer that applies `policy`: a [`Policy`](crate::policy::Policy), or a
    /// [`SharedPolicy`] that a [`PolicyWatcher`](crate::policy::PolicyWatcher) reloads.
    ///
    /// Without [`callers`](Self::callers), requests have no caller and rules that name one
    /// never match. Wrapping a service then logs an error when the policy names a caller.
    pub fn new(policy: impl Into<SharedPolicy>) -> Self {
        Self {
            policy: policy.into(),
            callers: None,
        }
    }

    /// Validates caller JWT-SVIDs with `callers`.
    #[must_use]
    pub fn callers(mut self, callers: CallerJwt) -> Self {
        self.callers = Some(callers);
        self
    }

    /// Decides on one request, returning its identities and, when it is denied, the denial.
    fn check(&self, parts: &http::request::Parts) -> (Identities, Option<Denial>) {
        let peer = peer_of(&parts.extensions);
        let caller = match &self.callers {
            Some(callers) => callers.caller(&parts.headers),
            None => Ok(None),
        };
        let caller = match caller {
            Ok(caller) => caller,
            Err(error) => {
                let denial = Denial {
                    status: StatusCode::UNAUTHORIZED,
                    reason: error.to_string(),
                    rule: "caller JWT-SVID rejected".to_owned(),
                };
                return (Identities { peer, caller: None }, Some(denial));
            }
        };

        let decision = self.policy.current().evaluate(&RequestFacts {
            peer: peer.as_ref(),
            caller: caller.as_ref(),
            method: &parts.method,
            path: parts.uri.path(),
        });
        let validates_callers = self.callers.is_some();
        let denial =
            (decision.effect == Effect::Deny).then(|| denial(&decision.reason, validates_callers));
        (Identities { peer, caller }, denial)
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if self.callers.is_none() {
            warn_unused_callers(&self.policy);
        }
        PolicyService {
            inner,
            layer: self.clone(),
        }
    }
}

// === impl PolicyService ===

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PolicyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = PolicyFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let (identities, denial) = self.layer.check(&parts);

        if let Some(denial) = denial {
            let shadow = self.layer.policy.current().mode() == Mode::Shadow;
            log_denial(&parts, &identities, &denial, shadow);
            if !shadow {
                let is_grpc = is_grpc(&parts);
                return EitherFuture::Right(ready(Ok(denial.into_response(is_grpc))));
            }
        }
        parts.extensions.insert(identities);
        let inner: fn(Response<ResBody>) -> Response<PolicyBody<ResBody>> =
            |response| response.map(Either::Left);
        EitherFuture::Left(
            self.inner
                .call(Request::from_parts(parts, body))
                .map_ok(inner),
        )
    }
}

// === impl Denial ===

impl Denial {
    fn into_response<B>(self, is_grpc: bool) -> Response<PolicyBody<B>> {
        if is_grpc {
            let status = match self.status {
                StatusCode::BAD_REQUEST => tonic::Status::invalid_argument(self.reason),
                StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(self.reason),
                _ => tonic::Status::permission_denied(self.reason),
            };
            return status.into_http::<Full<Bytes>>().map(Either::Right);
        }
        let mut response = Response::new(Either::Right(Full::from(format!("{}\n", self.reason))));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Returns the denial for a policy decision to deny.
fn denial(reason: &DecisionReason, validates_callers: bool) -> Denial {
    let (status, text) = match reason {
        DecisionReason::NotCanonical(defect) => (StatusCode::BAD_REQUEST, *defect),
        DecisionReason::MissingCaller(_) if !validates_callers => (
            StatusCode::FORBIDDEN,
            "this service validates no caller JWT-SVIDs, which the policy requires",
        ),
        DecisionReason::MissingCaller(_) => {
            (StatusCode::UNAUTHORIZED, "a caller JWT-SVID is required")
        }
        DecisionReason::DefaultDeny => {
            (StatusCode::FORBIDDEN, "no policy rule allows this request")
        }
        DecisionReason::Rule(_) => (StatusCode::FORBIDDEN, "denied by policy"),
    };
    Denial {
        status,
        reason: text.to_owned(),
        rule: reason.to_string(),
    }
}

fn log_denial(
    parts: &http::request::Parts,
    identities: &Identities,
    denial: &Denial,
    shadow: bool,
) {
    let id = |id: &Option<SpiffeId>| {
        id.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    let message = if shadow {
        "Request would be denied (shadow mode)"
    } else {
        "Request denied"
    };
    tracing::warn!(
        peer = %id(&identities.peer),
        caller = %id(&identities.caller),
        method = %parts.method,
        path = %parts.uri.path(),
        rule = %denial.rule,
        status = denial.status.as_u16(),
        reason = %denial.reason,
        "{message}"
    );
}

/// Logs an error when the policy has a rule that names a caller, which no request can match
/// without [`PolicyLayer::callers`].
fn warn_unused_callers(policy: &SharedPolicy) {
    let policy = policy.current();
    if let Some(rule) = policy.rules().iter().find(|rule| rule.names_caller()) {
        tracing::error!(
            rule = rule.name(),
            "The policy names callers but the PolicyLayer validates no caller JWT-SVIDs: \
             call PolicyLayer::callers, or the rule never matches"
        );
    }
}

/// Returns whether a request is gRPC: HTTP/2 with the content type `application/grpc`, or
/// `application/grpc+<format>`, with or without parameters.
fn is_grpc(parts: &http::request::Parts) -> bool {
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return false;
    };
    let media_type = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let grpc = media_type == "application/grpc" || media_type.starts_with("application/grpc+");
    grpc && parts.version == http::Version::HTTP_2
}

#[cfg(test)]
mod tests;
