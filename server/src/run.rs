//! `signet-server run`: starts the datastore, the CA and both endpoints, and stops them on a
//! signal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ChangeFeed, Endpoint, ServerState};
use crate::ca::{CaConfig, CertificateAuthority};
use crate::config::Config;
use crate::datastore::{BundleRecord, Datastore, JwtAuthorityRecord};
use crate::endpoints::{
    SERVER_IDENTITY_TTL, TlsSettings, bind_admin_socket, rotate_server_identity, serve_admin_api,
    serve_agent_api,
};
use crate::jwt::{JwtSigner, JwtSigningKey};

/// Time open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the server until `shutdown` completes or an endpoint fails.
///
/// # Errors
///
/// A failure to open the datastore or the CA, to bind an endpoint, or an endpoint that stopped
/// with an error.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = ?config, "Starting signet-server");
    let (state, tls, identity_expiry) = prepare(&config).await?;

    let tcp = TcpListener::bind(config.bind_address)
        .await
        .with_context(|| format!("failed to bind the agent API to {}", config.bind_address))?;
    let admin = bind_admin_socket(&config.admin_socket)?;
    tracing::info!(
        trust_domain = %config.trust_domain,
        bind_address = %tcp.local_addr().unwrap_or(config.bind_address),
        admin_socket = %config.admin_socket.display(),
        "Server ready"
    );

    let (stop, stopped) = watch::channel(false);
    let rotation = tokio::spawn(rotate_server_identity(
        Arc::clone(&state),
        tls.clone(),
        identity_expiry,
    ));
    let agent_api = tokio::spawn(serve_agent_api(
        tcp,
        tls,
        api::routes(Arc::clone(&state), Endpoint::Agent),
        wait_for_stop(stopped.clone()),
    ));
    let admin_api = tokio::spawn(serve_admin_api(
        admin,
        api::routes(Arc::clone(&state), Endpoint::Admin),
        wait_for_stop(stopped),
    ));

    let result = wait_for_shutdown(shutdown, agent_api, admin_api, || {
        stop.send_replace(true);
        state.changes.close();
    })
    .await;
    rotation.abort();
    remove_admin_socket(&config);
    state.datastore.close().await;
    tracing::info!("Server stopped");
    result
}

/// Opens the datastore and the CA, publishes the CA in the bundle and issues the server's own
/// X509-SVID. Returns the shared state, the TLS settings and the X509-SVID's expiry.
async fn prepare(config: &Config) -> anyhow::Result<(Arc<ServerState>, TlsSettings, SystemTime)> {
    signet_core::fs::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "failed to create data directory {}",
            config.data_dir.display()
        )
    })?;
    let datastore = Datastore::open(&config.database_url)
        .await
        .context("failed to open the datastore")?;
    let ca = Arc::new(load_ca(config).await?);
    publish_authorities(&datastore, &ca).await?;
    // The JWT key is in the bundle before the signer exists, so verifiers can check every token.
    let jwt_key = load_jwt_key(config).await?;
    let bundle = publish_jwt_authority(&datastore, &jwt_key).await?;
    let jwt = JwtSigner::new(
        config.trust_domain.clone(),
        config.jwt_issuer.clone(),
        config.default_jwt_svid_ttl,
        jwt_key,
    );

    let state = Arc::new(ServerState::new(
        config.trust_domain.clone(),
        datastore,
        Arc::clone(&ca),
        config.default_x509_svid_ttl,
        config.agent_svid_ttl,
        jwt,
        ChangeFeed::new(bundle.sequence_number),
    ));
    let identity = ca
        .issue_server_identity(SERVER_IDENTITY_TTL)
        .context("failed to issue the server X509-SVID")?;
    let identity_expiry = identity.expires_at;
    let tls = TlsSettings::new(identity, &bundle.authorities)?;
    Ok((state, tls, identity_expiry))
}

async fn load_ca(config: &Config) -> anyhow::Result<CertificateAuthority> {
    let ca_config = CaConfig {
        trust_domain: config.trust_domain.clone(),
        data_dir: config.data_dir.clone(),
        ca_ttl: config.ca_ttl,
        key_type: config.ca_key_type,
        upstream: config.upstream.clone(),
    };
    // NOTE: the CA is loaded once per start and not rotated while the server runs, so after
    // ca_ttl every signing fails until the server restarts and creates a new CA.
    // Key generation (RSA above all) and file I/O block, so they run off the async workers.
    let ca = tokio::task::spawn_blocking(move || CertificateAuthority::load_or_create(&ca_config))
        .await
        .context("the CA task failed")?
        .context("failed to load or create the CA")?;
    tracing::info!(
        expiry = %humantime::format_rfc3339_seconds(ca.expires_at()),
        "CA ready"
    );
    Ok(ca)
}

/// Adds the CA's roots to the stored bundle, which keeps older roots so that SVIDs they signed
/// still verify.
async fn publish_authorities(
    datastore: &Datastore,
    ca: &CertificateAuthority,
) -> anyhow::Result<BundleRecord> {
    let mut bundle = datastore
        .bundle()
        .await
        .context("failed to read the bundle")?;
    for authority in ca.x509_authorities() {
        bundle = datastore
            .append_bundle_authority(&authority)
            .await
            .context("failed to add the CA to the bundle")?;
    }
    tracing::info!(
        authorities = bundle.authorities.len(),
        sequence_number = bundle.sequence_number,
        "Bundle ready"
    );
    Ok(bundle)
}

/// Loads the JWT signing key from the data directory or creates one that lives as long as a CA.
async fn load_jwt_key(config: &Config) -> anyhow::Result<JwtSigningKey> {
    let data_dir = config.data_dir.clone();
    let key_type = config.jwt_key_type;
    let ttl = config.ca_ttl;
    // RSA key generation and file I/O block, so they run off the async workers.
    let key = tokio::task::spawn_blocking(move || {
        JwtSigningKey::load_or_create(&data_dir, key_type, ttl)
    })
    .await
    .context("the JWT signing key task failed")?
    .context("failed to load or create the JWT signing key")?;
    tracing::info!(
        key_id = %key.key_id(),
        key_type = %key.key_type(),
        expiry = %humantime::format_rfc3339_seconds(key.not_after()),
        "JWT signing key ready"
    );
    Ok(key)
}

/// Adds the JWT signing key to the stored bundle, which keeps older keys so that tokens they
/// signed still verify.
///
/// The published expiry is the key's notAfter: every token's `exp` is cut to it, so no token
/// the key signed is valid after it.
async fn publish_jwt_authority(
    datastore: &Datastore,
    key: &JwtSigningKey,
) -> anyhow::Result<BundleRecord> {
    let authority = JwtAuthorityRecord {
        key_id: key.key_id().to_owned(),
        public_key_der: key.public_key_der().to_vec(),
        expires_at: api::unix_seconds(key.not_after()),
    };
    let bundle = datastore
        .append_jwt_authority(&authority)
        .await
        .context("failed to add the JWT signing key to the bundle")?;
    tracing::info!(
        jwt_authorities = bundle.jwt_authorities.len(),
        sequence_number = bundle.sequence_number,
        "JWT authorities ready"
    );
    Ok(bundle)
}

/// Waits for the shutdown signal or for an endpoint to stop, then stops both endpoints and waits
/// for them at most [`SHUTDOWN_GRACE`].
async fn wait_for_shutdown(
    shutdown: impl Future<Output = ()>,
    mut agent_api: JoinHandle<Result<(), tonic::transport::Error>>,
    mut admin_api: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: impl FnOnce(),
) -> anyhow::Result<()> {
    let result = tokio::select! {
        () = shutdown => Ok(()),
        result = &mut agent_api => endpoint_result("agent API", result),
        result = &mut admin_api => endpoint_result("admin API", result),
    };
    stop();

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = (&mut agent_api).await;
        let _ = (&mut admin_api).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "Connections still open after the grace period; closing them");
        agent_api.abort();
        admin_api.abort();
    }
    result
}

fn endpoint_result(
    name: &str,
    result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(())) => Err(anyhow::anyhow!("the {name} stopped unexpectedly")),
        Ok(Err(error)) => Err(anyhow::Error::new(error).context(format!("the {name} failed"))),
        Err(error) => Err(anyhow::Error::new(error).context(format!("the {name} task failed"))),
    }
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn remove_admin_socket(config: &Config) {
    if let Err(error) = std::fs::remove_file(&config.admin_socket) {
        tracing::debug!(error = %error, "Failed to remove the admin socket");
    }
}
