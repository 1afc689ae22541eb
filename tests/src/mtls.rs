//! Mutual TLS between two workloads over loopback TCP with spiffe-rustls. Each side takes its
//! X509-SVID and bundle from a live `X509Source` that follows the Workload API stream, so every
//! new handshake uses the latest ones.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, ensure};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, HandshakeKind};
use spiffe::x509_source::SvidPicker;
use spiffe::{X509Source, X509Svid};
use spiffe_rustls::{LocalOnly, SpiffeId, TrustDomain, authorizer, mtls_client, mtls_server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::local_authority;
use crate::wait::{self, PROPAGATION_TIMEOUT};

/// Builds an `X509Source` on the Workload API at `endpoint` that serves the SVID for
/// `spiffe_id`, and waits up to 20 s until it has one.
///
/// # Errors
///
/// Fails when the source cannot start or never has an SVID for `spiffe_id`.
pub async fn x509_source(endpoint: &str, spiffe_id: &str) -> anyhow::Result<X509Source> {
    let source = X509Source::builder()
        .endpoint(endpoint)
        .picker(SpiffeIdPicker(spiffe_id.to_owned()))
        .build()
        .await
        .with_context(|| format!("starting an X509Source for {spiffe_id} on {endpoint}"))?;
    let condition = format!("the X509Source to hold an X509-SVID for {spiffe_id}");
    wait::eventually(&condition, PROPAGATION_TIMEOUT, || {
        let svid = source.svid();
        async move { Ok(svid?) }
    })
    .await?;
    Ok(source)
}

/// Returns the authority ID of the CA that signed the leaf of `svid`.
///
/// # Errors
///
/// Fails when the leaf has no AuthorityKeyIdentifier.
pub fn svid_authority_id(svid: &X509Svid) -> anyhow::Result<String> {
    local_authority::signing_authority_id(svid.leaf().as_bytes())
}

/// A TLS server on a loopback port that requires a client X509-SVID for one SPIFFE ID, reads
/// one request line and responds with [`RESPONSE`].
#[derive(Debug)]
pub struct MtlsServer {
    address: SocketAddr,
    failures: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

/// A client that opens a new TLS connection for every exchange, so each one is a full
/// handshake, and accepts only one server SPIFFE ID.
#[derive(Clone, Debug)]
pub struct MtlsClient {
    config: Arc<ClientConfig>,
}

/// What one successful exchange showed about the server.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Exchange {
    /// Authority ID of the CA that signed the server's leaf.
    pub server_authority_id: String,
}

/// A client that runs exchanges at a fixed interval in the background until stopped.
#[derive(Debug)]
pub struct Traffic {
    stop: oneshot::Sender<()>,
    task: JoinHandle<TrafficReport>,
}

/// Totals of a [`Traffic`] run.
#[derive(Clone, Debug, Default)]
pub struct TrafficReport {
    /// Exchanges that completed: handshake, request and response.
    pub exchanges: usize,
    /// Time and error of every failed exchange, time in seconds from the start.
    pub failures: Vec<String>,
    /// Authority IDs of every CA that signed a server leaf the client accepted.
    pub server_authority_ids: BTreeSet<String>,
}

/// The line a client sends.
pub const REQUEST: &str = "ping\n";

/// The line the server responds with.
pub const RESPONSE: &str = "pong\n";

/// Bound for one whole exchange, handshake included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

// === impl MtlsServer ===

impl MtlsServer {
    /// Listens on a free loopback port and serves every connection with the SVID that `source`
    /// has at that moment, accepting only clients whose SPIFFE ID is `client_id`.
    ///
    /// # Errors
    ///
    /// Fails when `client_id` is not a SPIFFE ID or the port cannot be bound.
    pub async fn start(source: X509Source, client_id: &str) -> anyhow::Result<Self> {
        let mut config = mtls_server(source)
            .authorize(authorizer::exact([client_id])?)
            .trust_domain_policy(LocalOnly(trust_domain_of(client_id)?))
            .build()
            .context("building the mTLS server config")?;
        // Every connection must verify the client's certificate again.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the mTLS server")?;
        let address = listener.local_addr()?;
        let failures = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            Arc::clone(&failures),
        ));
        Ok(Self {
            address,
            failures,
            task,
        })
    }

    /// Returns the address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the errors of every connection the server failed to serve so far.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.failures).clone()
    }
}

impl Drop for MtlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl MtlsClient ===

impl MtlsClient {
    /// Builds a client that presents the SVID that `source` has and accepts only a server whose
    /// SPIFFE ID is `server_id`.
    ///
    /// # Errors
    ///
    /// Fails when `server_id` is not a SPIFFE ID.
    pub fn new(source: X509Source, server_id: &str) -> anyhow::Result<Self> {
        let mut config = mtls_client(source)
            .authorize(authorizer::exact([server_id])?)
            .trust_domain_policy(LocalOnly(trust_domain_of(server_id)?))
            .build()
            .context("building the mTLS client config")?;
        // Every connection must verify the server's certificate again.
        config.resumption = Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Connects to `address`, completes a full handshake, sends [`REQUEST`] and reads
    /// [`RESPONSE`].
    ///
    /// # Errors
    ///
    /// Fails when any step fails, when the session was resumed, or after 5 s.
    pub async fn exchange(&self, address: SocketAddr) -> anyhow::Result<Exchange> {
        tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange_unbounded(address))
            .await
            .with_context(|| format!("the exchange took longer than {EXCHANGE_TIMEOUT:?}"))?
    }

    async fn exchange_unbounded(&self, address: SocketAddr) -> anyhow::Result<Exchange> {
        let tcp = TcpStream::connect(address).await?;
        let connector = TlsConnector::from(Arc::clone(&self.config));
        let tls = connector
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await
            .context("TLS handshake")?;

        let connection = tls.get_ref().1;
        let kind = connection.handshake_kind();
        ensure!(
            kind != Some(HandshakeKind::Resumed),
            "the session was resumed, so the server certificate was not verified again"
        );
        let leaf = connection
            .peer_certificates()
            .and_then(<[_]>::first)
            .context("the server sent no certificate")?;
        let server_authority_id = local_authority::signing_authority_id(leaf)?;

        let mut stream = BufReader::new(tls);
        stream.get_mut().write_all(REQUEST.as_bytes()).await?;
        let mut response = String::new();
        stream.read_line(&mut response).await?;
        ensure!(
            response == RESPONSE,
            "the server responded {response:?}, expected {RESPONSE:?}"
        );
        Ok(Exchange {
            server_authority_id,
        })
    }
}

// === impl Traffic ===

impl Traffic {
    /// Starts running `client` exchanges with `address`, one every `interval`.
    pub fn start(client: MtlsClient, address: SocketAddr, interval: Duration) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run_traffic(client, address, interval, stopped));
        Self { stop, task }
    }

    /// Stops after the exchange in progress and returns the totals.
    ///
    /// # Errors
    ///
    /// Fails when the traffic task panicked.
    pub async fn stop(self) -> anyhow::Result<TrafficReport> {
        // The task may have ended already; its report is still there.
        let _ = self.stop.send(());
        self.task.await.context("the traffic task failed")
    }
}

/// Picks the SVID with one SPIFFE ID from the X.509 context.
#[derive(Debug)]
struct SpiffeIdPicker(String);

impl SvidPicker for SpiffeIdPicker {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        svids
            .iter()
            .position(|svid| svid.spiffe_id().to_string() == self.0)
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, failures: Arc<Mutex<Vec<String>>>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Later connections then fail, and `failures()` reports why.
                lock(&failures).push(format!("accepting a connection: {error}"));
                return;
            }
        };
        let (acceptor, failures) = (acceptor.clone(), Arc::clone(&failures));
        tokio::spawn(async move {
            if let Err(error) = respond(&acceptor, tcp).await {
                lock(&failures).push(format!("{peer}: {error:#}"));
            }
        });
    }
}

async fn respond(acceptor: &TlsAcceptor, tcp: TcpStream) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await.context("TLS handshake")?;
    let mut stream = BufReader::new(tls);
    let mut request = String::new();
    stream.read_line(&mut request).await?;
    ensure!(request == REQUEST, "the client sent {request:?}");
    stream.get_mut().write_all(RESPONSE.as_bytes()).await?;
    stream.get_mut().shutdown().await?;
    Ok(())
}

async fn run_traffic(
    client: MtlsClient,
    address: SocketAddr,
    interval: Duration,
    mut stopped: oneshot::Receiver<()>,
) -> TrafficReport {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report = TrafficReport::default();
    loop {
        tokio::select! {
            _ = &mut stopped => return report,
            _ = ticks.tick() => {}
        }
        match client.exchange(address).await {
            Ok(exchange) => {
                report.exchanges += 1;
                report
                    .server_authority_ids
                    .insert(exchange.server_authority_id);
            }
            Err(error) => report.failures.push(format!(
                "{:.1} s: {error:#}",
                started.elapsed().as_secs_f64()
            )),
        }
    }
}

fn trust_domain_of(spiffe_id: &str) -> anyhow::Result<TrustDomain> {
    let id = SpiffeId::new(spiffe_id)?;
    Ok(TrustDomain::new(id.trust_domain_name())?)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer only pushes whole strings, so the data stays usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
