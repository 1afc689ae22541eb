//! Wires the provider together: bundle poller, routes and listener.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Transport};
use crate::routes::Site;
use crate::serve::serve;
use crate::source::BundlePoller;
use crate::tls::ReloadingCertificate;

/// Serves the discovery document and JWKS until `shutdown` completes.
///
/// # Errors
///
/// When the TLS files cannot be loaded or the listen address cannot be bound. An unreachable
/// server is no error: the JWKS route returns 503 until the first bundle read succeeds.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let tls = tls_acceptor(&config.transport)?;
    let listener = TcpListener::bind(config.listen_address)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen_address))?;
    let (poller, jwks) = BundlePoller::new(&config.admin_socket, config.poll_interval);
    let site = Arc::new(Site::new(&config, jwks));

    tracing::info!(
        address = %listener.local_addr().unwrap_or(config.listen_address),
        issuer = %config.issuer,
        jwks_uri = %config.jwks_uri,
        domains = %config.domains,
        tls = tls.is_some(),
        "Listening"
    );
    let poll_task = tokio::spawn(poller.run());
    serve(listener, site, tls, shutdown).await;
    poll_task.abort();
    Ok(())
}

fn tls_acceptor(transport: &Transport) -> anyhow::Result<Option<TlsAcceptor>> {
    let Transport::Tls { cert, key } = transport else {
        tracing::warn!("Serving plain HTTP (--insecure-http): a TLS proxy must front this port");
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ReloadingCertificate::load(cert, key, provider)
        .and_then(ReloadingCertificate::server_config)
        .context("failed to load the TLS certificate")?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
