//! Serving HTTP (hyper, axum, any tower service) on an [`MtlsListener`], with the peer's
//! SPIFFE ID in the extensions of every request.

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tower::{BoxError, Service, ServiceExt};

use crate::identity::{PeerIdentity, peer_id_of};
use crate::tls::MtlsListener;

/// Serves `service` on every connection of `listener`, over HTTP/1.1 or HTTP/2 as the client
/// chooses, and never returns while the listener accepts.
///
/// Each request gets the connection's [`PeerIdentity`] in its extensions, which the
/// [`PolicyLayer`](crate::PolicyLayer) reads. Run it in a task, or in `tokio::select!` with a
/// shutdown signal; connections in progress end with the runtime.
///
/// # Examples
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use signet_sdk::{AllowedPeers, MtlsListener, PolicyLayer, WorkloadIdentity, serve_http};
/// use signet_sdk::policy::Policy;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = WorkloadIdentity::builder().build().await?;
/// let config = identity.server_config(AllowedPeers::parse(["spiffe://example.org/**"])?)?;
/// let listener = MtlsListener::new(tokio::net::TcpListener::bind("127.0.0.1:8443").await?, config)?;
/// let policy = Policy::from_file("policy.toml")?;
/// let app = Router::new().route("/orders/{id}", get(|| async { "order" })).layer(PolicyLayer::new(policy));
/// serve_http(listener, app).await;
/// # Ok(())
/// # }
/// ```
///
/// # Cancel safety
///
/// Cancelling stops accepting; connections already accepted keep running in their tasks.
pub async fn serve_http<S, B>(mut listener: MtlsListener, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    while let Some(stream) = listener.accept().await {
        let peer = peer_id_of(stream.get_ref().1.peer_certificates().unwrap_or_default());
        let service = service
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(PeerIdentity(peer.clone()));
                }
                request
            });
        tokio::spawn(async move {
            let connection = TokioIo::new(stream);
            let service = TowerToHyperService::new(service);
            if let Err(error) = Builder::new(TokioExecutor::new())
                .serve_connection(connection, service)
                .await
            {
                tracing::debug!(error = %error, "HTTP connection ended with an error");
            }
        });
    }
}
