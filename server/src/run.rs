//! `signet-server run`: starts the datastore, the CA and both endpoints, and stops them on a
//! signal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use signet_core::health::{HealthState, SERVER_SERVICE};
use signet_core::http::{HttpEndpoint, HttpRoutes};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ChangeFeed, Endpoint, ServerState, SvidTtls};
use crate::authority::{JwtKind, Rotation, X509Kind, run_schedule};
use crate::ca::CaConfig;
use crate::config::Config;
use crate::datastore::Datastore;
use crate::endpoints::{
    SERVER_IDENTITY_TTL, TlsSettings, bind_admin_socket, rotate_server_identity, serve_admin_api,
    serve_agent_api, server_ca,
};
use crate::health::{READINESS_INTERVAL, check_readiness};
use crate::metrics::MetricsRoutes;

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
    let (health, health_service) = HealthState::new(SERVER_SERVICE).await;
    let metrics_routes: Arc<dyn HttpRoutes> = Arc::new(MetricsRoutes::new(Arc::clone(&state)));
    let http_endpoints = HttpEndpoint::bind_enabled(
        config
            .metrics_address
            .map(|address| (address, metrics_routes)),
        config
            .health_address
            .map(|address| (address, health.routes())),
    )
    .await?;

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
    let schedule = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            run_schedule(
                &state.x509_authorities,
                &state.jwt_authorities,
                &state.datastore,
                &state.changes,
            )
            .await;
        })
    };
    // The first check runs before the endpoints open, so the first health check can pass.
    health
        .publish(check_readiness(Arc::clone(&state)).await)
        .await;
    let readiness = {
        let state = Arc::clone(&state);
        let health = health.clone();
        tokio::spawn(async move {
            health
                .keep_updated(READINESS_INTERVAL, || check_readiness(Arc::clone(&state)))
                .await;
        })
    };
    let http: Vec<_> = http_endpoints
        .into_iter()
        .map(|endpoint| tokio::spawn(endpoint.serve(wait_for_stop(stopped.clone()))))
        .collect();
    let agent_api = tokio::spawn(serve_agent_api(
        tcp,
        tls,
        api::routes(Arc::clone(&state), Endpoint::Agent).add_service(health_service.clone()),
        wait_for_stop(stopped.clone()),
    ));
    let admin_api = tokio::spawn(serve_admin_api(
        admin,
        api::routes(Arc::clone(&state), Endpoint::Admin).add_service(health_service),
        wait_for_stop(stopped),
    ));

    let result = wait_for_shutdown(shutdown, agent_api, admin_api, || {
        stop.send_replace(true);
        state.changes.close();
    })
    .await;
    rotation.abort();
    schedule.abort();
    readiness.abort();
    http.iter().for_each(JoinHandle::abort);
    remove_admin_socket(&config);
    state.datastore.close().await;
    tracing::info!("Server stopped");
    result
}

/// Opens the datastore and the authorities, publishes them in the bundle and issues the server's
/// own X509-SVID. Returns the shared state, the TLS settings and the X509-SVID's expiry.
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
    let changes = ChangeFeed::new(0);
    let x509 = Rotation::open(
        x509_kind(config),
        &config.data_dir,
        datastore.clone(),
        changes.clone(),
    )
    .await
    .context("failed to load or create the X.509 CA")?;
    // Every JWT key is in the bundle before its signer exists, so verifiers can check every token.
    let jwt = Rotation::open(
        jwt_kind(config),
        &config.data_dir,
        datastore.clone(),
        changes.clone(),
    )
    .await
    .context("failed to load or create the JWT signing key")?;
    let bundle = datastore
        .bundle()
        .await
        .context("failed to read the bundle")?;
    changes.bundle_changed(bundle.sequence_number);
    tracing::info!(
        authorities = bundle.authorities.len(),
        jwt_authorities = bundle.jwt_authorities.len(),
        sequence_number = bundle.sequence_number,
        "Bundle ready"
    );

    let ttls = SvidTtls {
        default_x509_svid_ttl: config.default_x509_svid_ttl,
        agent_svid_ttl: config.agent_svid_ttl,
    };
    let state = Arc::new(ServerState::new(
        config.trust_domain.clone(),
        datastore,
        x509,
        jwt,
        ttls,
        changes,
    ));
    let identity = server_ca(&state)
        .await
        .issue_server_identity(SERVER_IDENTITY_TTL)
        .context("failed to issue the server X509-SVID")?;
    let identity_expiry = identity.expires_at;
    let tls = TlsSettings::new(identity, &bundle.authorities)?;
    Ok((state, tls, identity_expiry))
}

fn x509_kind(config: &Config) -> X509Kind {
    X509Kind {
        config: CaConfig {
            trust_domain: config.trust_domain.clone(),
            dir: config.data_dir.clone(),
            ca_ttl: config.ca_ttl,
            key_type: config.ca_key_type,
            upstream: config.upstream.clone(),
        },
    }
}

fn jwt_kind(config: &Config) -> JwtKind {
    JwtKind {
        trust_domain: config.trust_domain.clone(),
        issuer: config.jwt_issuer.clone(),
        default_ttl: config.default_jwt_svid_ttl,
        key_type: config.jwt_key_type,
        // A JWT signing key lives as long as a CA and rotates on the same schedule.
        key_ttl: config.ca_ttl,
    }
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
