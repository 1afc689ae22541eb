//! Readiness of the server: the datastore responds and the active X.509 CA and JWT signing key
//! have not expired. The same check refreshes the metrics read from the datastore and the
//! authorities.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_core::health::Readiness;

use crate::api::ServerState;

/// Time between two readiness checks. Each one queries the datastore twice.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Checks whether the server can sign SVIDs, and updates the datastore counts and the rotation
/// phases in `state.metrics` on the way.
pub async fn check_readiness(state: Arc<ServerState>) -> Readiness {
    let counts = async {
        let entries = state.datastore.count_entries().await?;
        let agents = state.datastore.count_agents().await?;
        Ok::<_, crate::datastore::DatastoreError>((entries, agents))
    };
    match counts.await {
        Ok((entries, agents)) => state.metrics.set_counts(entries, agents),
        Err(error) => {
            tracing::debug!(error = %error, "Readiness check: datastore query failed");
            return Readiness::NotReady("the datastore is unreachable".to_owned());
        }
    }
    state
        .metrics
        .set_rotation_phase("x509", &state.x509_authorities.status().await);
    state
        .metrics
        .set_rotation_phase("jwt", &state.jwt_authorities.status().await);

    let now = SystemTime::now();
    if state.ca().expires_at() <= now {
        return Readiness::NotReady("the active X.509 CA has expired".to_owned());
    }
    if state.jwt().key().not_after() <= now {
        return Readiness::NotReady("the active JWT signing key has expired".to_owned());
    }
    Readiness::Ready
}
