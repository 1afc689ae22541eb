//! Workload identity for Rust services on Signet (or any SPIFFE Workload API).
//!
//! A service behind a gateway learns two identities per request and decides with a policy:
//!
//! - the **peer**: the workload at the other end of the mutual TLS connection (the gateway, or
//!   another service), from its X509-SVID;
//! - the **caller**: optionally, the client behind the gateway, from a JWT-SVID that the
//!   request carries in a header (`authorization: Bearer …` by default) and that the service
//!   validates locally against the JWT bundles, for its own audience.
//!
//! The pieces:
//!
//! - [`WorkloadIdentity`]: the service's X509-SVID and bundles from the Workload API
//!   (`SPIFFE_ENDPOINT_SOCKET` or an explicit socket), kept current by the agent's stream. It
//!   builds rustls server and client configurations with `spiffe-rustls`, which authorize
//!   peers by [`AllowedPeers`] during the handshake.
//! - [`MtlsListener`] and [`serve_http`]: accept mutual TLS connections and serve hyper or
//!   axum with the peer's SPIFFE ID in each request's extensions. For tonic, pass the listener
//!   to `serve_with_incoming`; tonic puts the peer certificates into the extensions itself.
//! - [`policy`]: rules over peer, caller, method and path ([`pattern`] defines the segment
//!   globs), built in code or read from a TOML or YAML file that
//!   [`PolicyWatcher`](policy::PolicyWatcher) reloads when it changes.
//! - [`caller`]: validation of the caller JWT-SVID.
//! - [`layer`]: the tower layer that applies the policy, returns 401/403 or gRPC
//!   `Unauthenticated`/`PermissionDenied`, and gives handlers the [`Identities`].
//!
//! # Examples
//!
//! The policy of an `orders` service behind a gateway:
//!
//! ```
//! use http::Method;
//! use signet_sdk::policy::{Effect, Policy, RequestFacts};
//! use spiffe::SpiffeId;
//!
//! let policy = Policy::parse("orders.toml", r#"
//!     [[rule]]
//!     name = "billing-batch reads orders through the gateway"
//!     effect = "allow"
//!     peer = "spiffe://example.org/gateway"
//!     caller = "spiffe://example.org/billing-batch"
//!     methods = ["GET"]
//!     paths = ["/orders/*"]
//!
//!     [[rule]]
//!     name = "inventory reads order items"
//!     effect = "allow"
//!     peer = "spiffe://example.org/inventory"
//!     methods = ["GET"]
//!     paths = ["/orders/*/items"]
//! "#)?;
//!
//! let gateway = SpiffeId::new("spiffe://example.org/gateway")?;
//! let billing = SpiffeId::new("spiffe://example.org/billing-batch")?;
//! let read = RequestFacts {
//!     peer: Some(&gateway),
//!     caller: Some(&billing),
//!     method: &Method::GET,
//!     path: "/orders/42",
//! };
//! assert_eq!(policy.evaluate(&read).effect, Effect::Allow);
//!
//! let delete = RequestFacts { method: &Method::DELETE, ..read };
//! assert_eq!(policy.evaluate(&delete).effect, Effect::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A server with mutual TLS, caller JWT-SVIDs and a reloaded policy file (it needs an agent):
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Extension, Router, routing::get};
//! use signet_sdk::policy::PolicyWatcher;
//! use signet_sdk::{AllowedPeers, CallerJwt, Identities, MtlsListener, PolicyLayer};
//! use signet_sdk::{WorkloadIdentity, serve_http};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = WorkloadIdentity::builder().build().await?;
//! let peers = AllowedPeers::parse(["spiffe://example.org/gateway", "spiffe://example.org/inventory"])?;
//! let listener = MtlsListener::new(
//!     tokio::net::TcpListener::bind("127.0.0.1:8443").await?,
//!     identity.server_config(peers)?,
//! )?;
//! let (policy, _watcher) = PolicyWatcher::spawn("orders.toml", Duration::from_secs(2))?;
//! let callers = CallerJwt::new(identity.jwt_source().await?, ["spiffe://example.org/orders"]);
//!
//! let app = Router::new()
//!     .route("/orders/{id}", get(|Extension(ids): Extension<Identities>| async move {
//!         format!("order for {:?}", ids.caller)
//!     }))
//!     .layer(PolicyLayer::new(policy).callers(callers));
//! serve_http(listener, app).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Limitations
//!
//! - Logging always goes through `tracing`; there is no feature that compiles it out.
//! - [`serve_http`] has no graceful shutdown: connections end when the runtime stops.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod caller;
mod identity;
pub mod layer;
pub mod pattern;
pub mod policy;
mod serve;
mod tls;
mod workload;

pub use caller::{CallerError, CallerJwt};
pub use http::HeaderName;
pub use identity::{Identities, PeerIdentity};
pub use layer::{PolicyBody, PolicyFuture, PolicyLayer, PolicyService};
pub use pattern::{PathPattern, PatternError, SpiffeIdPattern};
pub use serve::serve_http;
pub use spiffe::SpiffeId;
pub use tls::{AllowedPeers, MtlsListener};
pub use workload::{
    DEFAULT_INITIAL_SYNC_TIMEOUT, ENDPOINT_SOCKET_ENV, SvidSelection, WorkloadIdentity,
    WorkloadIdentityBuilder, WorkloadIdentityError,
};
