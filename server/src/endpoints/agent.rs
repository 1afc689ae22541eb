//! The agent endpoint: the API on a TCP port, with TLS 1.3 and optional client certificates.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Server;

use super::TlsSettings;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept (for example when out of file descriptors) before the next one.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Connections that finished the handshake and wait for the gRPC server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Serves `routes` over TLS on `listener` until `shutdown` completes.
///
/// Handshakes run in their own tasks, so a slow or silent client does not hold up others.
///
/// # Errors
///
/// The transport error that stopped the server.
pub async fn serve_agent_api(
    listener: TcpListener,
    tls: TlsSettings,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(tls_connections(listener, tls), shutdown)
        .await
}

/// Accepts TCP connections and yields those that completed a TLS handshake.
///
/// The accept task stops when the returned stream is dropped.
fn tls_connections(
    listener: TcpListener,
    tls: TlsSettings,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(handshake(stream, tls.clone(), sender.clone()));
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "Failed to accept an agent connection");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                },
                () = sender.closed() => break,
            }
        }
    });
    ReceiverStream::new(receiver)
}

async fn handshake(
    stream: TcpStream,
    tls: TlsSettings,
    sender: mpsc::Sender<Result<TlsStream<TcpStream>, io::Error>>,
) {
    let peer = stream.peer_addr().ok();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(error = %error, "Failed to disable Nagle's algorithm");
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => {
            // A send error means the server is shutting down, which drops the connection.
            let _ = sender.send(Ok(stream)).await;
        }
        Ok(Err(error)) => {
            tracing::debug!(peer = ?peer, error = %error, "TLS handshake failed");
        }
        Err(_) => {
            tracing::debug!(peer = ?peer, "TLS handshake timed out");
        }
    }
}
