//! The HTTP/1.1 listener, over TLS or plain TCP, with bounds on slow and numerous clients.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::routes::Site;

/// Most connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Time a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client has to send a request's headers, also bounding idle keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept, so running out of file descriptors does not spin the loop.
const ACCEPT_ERROR_DELAY: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until `shutdown` completes, serving `site` on each.
///
/// With `tls` set, every connection must complete a TLS handshake first.
pub async fn serve(
    listener: TcpListener,
    site: Arc<Site>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = accept(&listener, &limit) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            continue;
        };
        let (site, tls) = (Arc::clone(&site), tls.clone());
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => serve_tls(acceptor, stream, site).await,
                None => serve_http(stream, site).await,
            }
            drop(permit);
        });
    }
}

/// Waits for a free connection slot and a connection; `None` when accepting failed.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> Option<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    // Nothing closes the semaphore, so acquiring cannot fail.
    let permit = Arc::clone(limit).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(error) => {
            // Per-connection errors (the peer reset before accept, out of file descriptors)
            // leave the listener usable.
            tracing::warn!(%error, "Failed to accept a connection");
            tokio::time::sleep(ACCEPT_ERROR_DELAY).await;
            None
        }
    }
}

async fn serve_tls(acceptor: TlsAcceptor, stream: TcpStream, site: Arc<Site>) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(stream, site).await,
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

async fn serve_http<S>(stream: S, site: Arc<Site>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let response = site.respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
