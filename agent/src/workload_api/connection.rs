//! Accepted Workload API connections, tagged with the peer process the kernel reported.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use super::authority::AuthorityRewrite;
use crate::workload_attestor::PeerProcess;

/// A Unix socket connection from a workload.
///
/// tonic's own `UdsConnectInfo` carries only the peer credentials. This type also takes the
/// peer's pidfd at accept time, which the attestor needs to rule out PID reuse. Requests reach
/// the HTTP/2 server through [`AuthorityRewrite`], so clients that send the socket path as
/// `:authority` are served too.
#[derive(Debug)]
pub(super) struct WorkloadConnection {
    stream: AuthorityRewrite<UnixStream>,
    info: ConnectionInfo,
}

/// Connecting process of a connection, attached to every request on it.
#[derive(Clone, Debug)]
pub(super) struct ConnectionInfo {
    /// The connecting process, or `None` when the kernel did not report it.
    pub(super) peer: Option<PeerProcess>,
}

/// Returns the stream of connections accepted on `listener`.
pub(super) fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<WorkloadConnection>> + Send {
    async_stream::stream! {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => yield Ok(WorkloadConnection::new(stream)),
                Err(error) => {
                    // Errors such as EMFILE persist for a while, so pause instead of spinning.
                    warn!(%error, "Accepting a Workload API connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            }
        }
    }
}

// === impl WorkloadConnection ===

impl WorkloadConnection {
    fn new(stream: UnixStream) -> Self {
        let peer = match PeerProcess::from_stream(&stream) {
            Ok(peer) => Some(peer),
            Err(error) => {
                debug!(%error, "Workload API connection has no usable peer credentials");
                None
            }
        };
        Self {
            stream: AuthorityRewrite::new(stream),
            info: ConnectionInfo { peer },
        }
    }
}

impl Connected for WorkloadConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for WorkloadConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WorkloadConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
