//! Mutual TLS for servers: which peers may connect, and a listener that completes handshakes
//! before it hands out connections.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use rustls::ServerConfig;
use spiffe::SpiffeId;
use spiffe_rustls::Authorizer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pattern::{PatternError, SpiffeIdPattern};

/// The SPIFFE IDs a TLS peer may have: the connection is authorized when any pattern matches.
///
/// An empty set authorizes no peer.
#[derive(Clone, Debug, Default)]
pub struct AllowedPeers {
    patterns: Vec<SpiffeIdPattern>,
}

/// Accepts TCP connections and completes their TLS handshakes concurrently, yielding only the
/// connections whose handshake succeeded.
///
/// It is a [`Stream`] of connections, which tonic's `serve_with_incoming` takes as is, and
/// [`serve_http`](crate::serve_http) takes it for hyper and axum. A failed handshake (no client
/// certificate, untrusted chain, peer not allowed) closes that connection and is logged with
/// the reason. The log line is a warning at most once a minute per client IP address, and at
/// debug level otherwise. Beyond 4096 tracked addresses every failure warns. Dropping the
/// listener stops accepting.
#[derive(Debug)]
pub struct MtlsListener {
    connections: mpsc::Receiver<TlsStream<TcpStream>>,
    accept_task: JoinHandle<()>,
    local_addr: std::net::SocketAddr,
}

// === impl AllowedPeers ===

impl AllowedPeers {
    /// Returns the set of `patterns`.
    pub fn new(patterns: impl IntoIterator<Item = SpiffeIdPattern>) -> Self {
        Self {
            patterns: patterns.into_iter().collect(),
        }
    }

    /// Parses [`SpiffeIdPattern`]s such as `spiffe://example.org/gateway` (one ID),
    /// `spiffe://example.org/**` (the trust domain) or `spiffe://example.org/ns/prod/**`.
    ///
    /// # Errors
    ///
    /// The [`PatternError`] of the first invalid pattern.
    ///
    /// # Examples
    ///
    /// ```
    /// use signet_sdk::AllowedPeers;
    ///
    /// let peers = AllowedPeers::parse(["spiffe://example.org/gateway", "spiffe://example.org/ns/prod/**"])?;
    /// # Ok::<(), signet_sdk::PatternError>(())
    /// ```
    pub fn parse<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|text| SpiffeIdPattern::parse(text.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Returns whether `id` is allowed.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(id))
    }
}

impl Authorizer for AllowedPeers {
    fn authorize(&self, peer: &SpiffeId) -> bool {
        let allowed = self.allows(peer);
        if !allowed {
            tracing::warn!(peer = %peer, "TLS peer not allowed");
        }
        allowed
    }
}

// === impl MtlsListener ===

impl MtlsListener {
    /// Starts accepting on `listener` with `config`, which normally comes from
    /// [`WorkloadIdentity::server_config`](crate::WorkloadIdentity::server_config). Must be
    /// called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// The error of reading the listener's local address.
    pub fn new(listener: TcpListener, config: ServerConfig) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, sender));
        Ok(Self {
            connections,
            accept_task,
            local_addr,
        })
    }

    /// Returns the address the listener is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Returns the next connection whose handshake succeeded. Returns `None` only if the
    /// accepting task has ended, which happens when the runtime shuts down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection not yet returned stays queued.
    pub async fn accept(&mut self) -> Option<TlsStream<TcpStream>> {
        self.connections.recv().await
    }
}

impl Stream for MtlsListener {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|next| next.map(Ok))
    }
}

impl Drop for MtlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Accepts connections until the listener is dropped, handshaking each in its own task so
/// that a slow client holds up no other.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let failures = Arc::new(HandshakeFailures::default());
    let local = listener
        .local_addr()
        .map_or_else(|_| "-".to_owned(), |address| address.to_string());
    loop {
        let (tcp, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Per-connection errors (the peer reset before accept) leave the listener usable.
            Err(error) if is_connection_error(&error) => continue,
            // Other errors, such as too many open files, last a while: pause rather than spin.
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed, retrying");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        let failures = failures.clone();
        let local = local.clone();
        tokio::spawn(async move {
            let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // The receiver is gone only when the listener was dropped.
                    let _ = sender.send(stream).await;
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "handshake timed out".to_owned(),
            };
            if failures.should_warn(address.ip(), Instant::now()) {
                tracing::warn!(%local, %address, %reason, "TLS handshake failed");
            } else {
                tracing::debug!(%local, %address, %reason, "TLS handshake failed");
            }
        });
    }
}

/// The time each client address last had a failed handshake logged at warning level.
#[derive(Debug, Default)]
struct HandshakeFailures {
    last_warned: Mutex<HashMap<IpAddr, Instant>>,
}

impl HandshakeFailures {
    /// Records a failure from `ip` at `now` and returns whether it is logged at warning level.
    fn should_warn(&self, ip: IpAddr, now: Instant) -> bool {
        let mut last_warned = self
            .last_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last_warned.len() >= FAILURE_ADDRESSES_REMEMBERED {
            last_warned.retain(|_, at| now.duration_since(*at) < FAILURE_WARNING_INTERVAL);
        }
        let due = last_warned
            .get(&ip)
            .is_none_or(|at| now.duration_since(*at) >= FAILURE_WARNING_INTERVAL);
        if due && last_warned.len() < FAILURE_ADDRESSES_REMEMBERED {
            last_warned.insert(ip, now);
        }
        due
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Pause after an accept error that is not about one connection.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Bound on one TLS handshake, so that idle connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections that completed their handshake and wait for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// Minimum time between two warnings about failed handshakes from one IP address.
const FAILURE_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Maximum number of client addresses remembered, beyond which every failure warns.
const FAILURE_ADDRESSES_REMEMBERED: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_warn_once_a_minute_per_address() {
        let failures = HandshakeFailures::default();
        let start = Instant::now();
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        assert!(failures.should_warn(one, start));
        assert!(!failures.should_warn(one, start + Duration::from_secs(1)));
        assert!(failures.should_warn(two, start + Duration::from_secs(1)));
        assert!(failures.should_warn(one, start + FAILURE_WARNING_INTERVAL));
    }
}
