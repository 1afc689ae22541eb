//! TLS settings of the agent endpoint, replaced live when the server identity is renewed.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio_rustls::TlsAcceptor;

use super::EndpointError;
use crate::api::ServerState;
use crate::ca::{CertificateAuthority, ServerIdentity};

/// Lifetime of the server's own X509-SVID; it is renewed at half of it.
pub const SERVER_IDENTITY_TTL: Duration = Duration::from_secs(3600);

/// Shortest wait between renewal attempts, so a failing CA is not retried in a busy loop.
const MIN_RENEWAL_DELAY: Duration = Duration::from_secs(5);

/// The current TLS server settings, which each new connection takes at accept.
///
/// Agents may present a client certificate, which must chain to the bundle. Attestation and
/// `GetBundle` work without one, because the API layer checks who the caller is.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsSettings {
    /// Builds the settings from the server identity and the bundle (DER roots).
    ///
    /// # Errors
    ///
    /// [`EndpointError::Tls`] when the identity is unusable, [`EndpointError::ClientVerifier`]
    /// when the bundle contains no usable root.
    pub fn new(identity: ServerIdentity, bundle: &[Vec<u8>]) -> Result<Self, EndpointError> {
        let config = server_config(identity, bundle)?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// Replaces the settings for connections accepted from now on.
    ///
    /// # Errors
    ///
    /// As for [`TlsSettings::new`]; the old settings then stay in use.
    pub fn update(
        &self,
        identity: ServerIdentity,
        bundle: &[Vec<u8>],
    ) -> Result<(), EndpointError> {
        let config = Arc::new(server_config(identity, bundle)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// Returns an acceptor with the current settings.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&config))
    }
}

/// Renews the server identity at half its lifetime and whenever the bundle changes, with the
/// bundle read afresh each time, until the task is dropped.
///
/// A bundle change renews at once so that the TLS endpoint trusts a newly prepared CA before
/// agents present X509-SVIDs it signed, and presents an X509-SVID from the active CA.
pub async fn rotate_server_identity(
    state: Arc<ServerState>,
    tls: TlsSettings,
    mut expires_at: SystemTime,
) {
    let mut changes = state.changes.subscribe();
    let mut sequence_number = changes.borrow_and_update().bundle_sequence_number;
    loop {
        tokio::select! {
            () = tokio::time::sleep(renewal_delay(expires_at, SystemTime::now())) => {}
            changed = changes.wait_for(|notice| notice.bundle_sequence_number != sequence_number) => {
                match changed {
                    Ok(notice) => sequence_number = notice.bundle_sequence_number,
                    // The feed is gone only when the server stops.
                    Err(_) => return,
                }
            }
        }
        match renew(&state, &tls).await {
            Ok(new_expiry) => {
                tracing::info!(
                    expiry = %humantime::format_rfc3339_seconds(new_expiry),
                    "Server X509-SVID renewed"
                );
                expires_at = new_expiry;
            }
            Err(error) => {
                tracing::error!(error = %error, "Failed to renew the server X509-SVID");
            }
        }
    }
}

async fn renew(state: &ServerState, tls: &TlsSettings) -> anyhow::Result<SystemTime> {
    let identity = server_ca(state)
        .await
        .issue_server_identity(SERVER_IDENTITY_TTL)?;
    let expires_at = identity.expires_at;
    let bundle = state.datastore.bundle().await?;
    tls.update(identity, &bundle.authorities)?;
    Ok(expires_at)
}

/// Returns the CA that signs the server's own X509-SVID: the one agents have trusted longest
/// (see [`crate::authority::Rotation::established`]).
pub async fn server_ca(state: &ServerState) -> Arc<CertificateAuthority> {
    state.x509_authorities.established(SystemTime::now()).await
}

/// Returns how long to wait before renewing a certificate that expires at `expires_at`: half of
/// the remaining lifetime, but at least [`MIN_RENEWAL_DELAY`].
fn renewal_delay(expires_at: SystemTime, now: SystemTime) -> Duration {
    let remaining = expires_at.duration_since(now).unwrap_or_default();
    (remaining / 2).max(MIN_RENEWAL_DELAY)
}

fn server_config(
    identity: ServerIdentity,
    bundle: &[Vec<u8>],
) -> Result<ServerConfig, EndpointError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(bundle)?, Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(EndpointError::ClientVerifier)?;

    let mut config = ServerConfig::builder_with_provider(Arc::<CryptoProvider>::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(EndpointError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(EndpointError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn roots(bundle: &[Vec<u8>]) -> Result<Arc<RootCertStore>, EndpointError> {
    let mut roots = RootCertStore::empty();
    for der in bundle {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(EndpointError::Tls)?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_waits_half_the_remaining_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);

        assert_eq!(
            renewal_delay(now + Duration::from_secs(3600), now),
            Duration::from_secs(1800)
        );
        assert_eq!(renewal_delay(now, now), MIN_RENEWAL_DELAY);
        assert_eq!(
            renewal_delay(now - Duration::from_secs(10), now),
            MIN_RENEWAL_DELAY
        );
    }
}
