//! Authentication of agents by the X509-SVID they present on the TLS endpoint.

use std::collections::HashMap;
use std::sync::Mutex;

use signet_core::ids::{parse_spiffe_id, redacted_agent_id};
use spiffe::SpiffeId;
use tonic::Request;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{ApiError, ServerState};
use crate::ca::certificate_serial_number;
use crate::model::AttestedAgent;

/// Path prefix of every agent SPIFFE ID.
const AGENT_PATH_PREFIX: &str = "/spire/agent/";

/// Checks that the caller is an attested, non-banned agent whose X509-SVID is its current one.
///
/// The TLS layer already verified the chain to the bundle and the validity period. This adds the
/// checks that need the datastore: an evicted agent, a banned agent, or an SVID replaced by
/// renewal is rejected. After `RenewAgent` the replaced serial stays valid until the agent first presents the
/// new one, so a renewal whose response is lost does not lock the agent out.
#[derive(Debug, Default)]
pub(super) struct AgentAuthenticator {
    /// Replaced serial numbers by agent SPIFFE ID.
    // NOTE: kept in memory only, so after a server restart only the newest serial is accepted.
    previous_serials: Mutex<HashMap<String, String>>,
    /// Unix time in seconds of each agent's last `GetAuthorizedEntries`, for `ExplainEntry`.
    // NOTE: kept in memory only, so it is empty after a server restart until agents sync again.
    last_syncs: Mutex<HashMap<String, i64>>,
}

impl AgentAuthenticator {
    /// Returns the stored record of the calling agent.
    pub(super) async fn authenticate<T>(
        &self,
        state: &ServerState,
        request: &Request<T>,
    ) -> Result<AttestedAgent, ApiError> {
        let (agent_id, serial) = caller_identity(request)?;
        if agent_id.trust_domain() != &state.trust_domain
            || !agent_id.path().starts_with(AGENT_PATH_PREFIX)
        {
            return Err(ApiError::PermissionDenied(format!(
                "caller {} is not an agent of trust domain {}",
                redacted_agent_id(&agent_id),
                state.trust_domain
            )));
        }

        let agent = state
            .datastore
            .fetch_agent(&agent_id)
            .await?
            .ok_or_else(|| {
                ApiError::PermissionDenied(format!(
                    "agent {} is not attested; it may have been evicted",
                    redacted_agent_id(&agent_id)
                ))
            })?;
        if agent.banned {
            return Err(ApiError::PermissionDenied(format!(
                "agent {} is banned",
                redacted_agent_id(&agent_id)
            )));
        }
        self.check_serial(&agent, &serial)?;
        Ok(agent)
    }

    /// Remembers the serial that a renewal replaced.
    pub(super) fn renewed(&self, agent_id: &SpiffeId, previous_serial: String) {
        self.lock().insert(agent_id.to_string(), previous_serial);
    }

    /// Forgets an agent's replaced serial and last sync, because the agent was evicted or
    /// attested again.
    pub(super) fn forget(&self, agent_id: &SpiffeId) {
        self.lock().remove(&agent_id.to_string());
        lock(&self.last_syncs).remove(&agent_id.to_string());
    }

    /// Forgets a banned agent's replaced serial, but keeps its last sync for `ExplainEntry`,
    /// which shows when the banned agent last received entries.
    pub(super) fn banned(&self, agent_id: &SpiffeId) {
        self.lock().remove(&agent_id.to_string());
    }

    /// Records that the agent fetched its authorized entries at `at` (Unix seconds).
    pub(super) fn record_sync(&self, agent_id: &SpiffeId, at: i64) {
        lock(&self.last_syncs).insert(agent_id.to_string(), at);
    }

    /// Returns when the agent last fetched its authorized entries since the server started.
    pub(super) fn last_sync(&self, agent_id: &SpiffeId) -> Option<i64> {
        lock(&self.last_syncs).get(&agent_id.to_string()).copied()
    }

    fn check_serial(&self, agent: &AttestedAgent, serial: &str) -> Result<(), ApiError> {
        let key = agent.spiffe_id.to_string();
        let mut previous_serials = self.lock();
        if agent.serial_number == serial {
            previous_serials.remove(&key);
            return Ok(());
        }
        if previous_serials
            .get(&key)
            .is_some_and(|previous| previous == serial)
        {
            return Ok(());
        }
        Err(ApiError::PermissionDenied(format!(
            "agent {} presented X509-SVID serial {serial}, which is not its current one",
            redacted_agent_id(&agent.spiffe_id)
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        lock(&self.previous_serials)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a map half-updated (single inserts and
    // removes), so a poisoned lock is still safe to use.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Returns the SPIFFE ID and serial number of the client certificate.
fn caller_identity<T>(request: &Request<T>) -> Result<(SpiffeId, String), ApiError> {
    let certs = request.peer_certs().unwrap_or_default();
    let Some(leaf) = certs.first() else {
        return Err(ApiError::Unauthenticated(
            "this RPC requires an agent X509-SVID as the TLS client certificate".to_owned(),
        ));
    };
    let (_, parsed) = X509Certificate::from_der(leaf).map_err(|_| {
        ApiError::Unauthenticated("the client certificate is not valid DER".to_owned())
    })?;
    let agent_id = uri_san(&parsed)?;
    let serial = certificate_serial_number(leaf).map_err(|_| {
        ApiError::Unauthenticated("the client certificate is not valid DER".to_owned())
    })?;
    Ok((agent_id, serial))
}

/// Returns the only URI SAN of an X509-SVID as a SPIFFE ID.
fn uri_san(leaf: &X509Certificate<'_>) -> Result<SpiffeId, ApiError> {
    let invalid = || {
        ApiError::Unauthenticated(
            "the client certificate is not an X509-SVID: it needs exactly one spiffe:// URI SAN"
                .to_owned(),
        )
    };
    let names = leaf
        .subject_alternative_name()
        .map_err(|_| invalid())?
        .ok_or_else(invalid)?;
    let mut uris = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => parse_spiffe_id(uri).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_keeps_last_sync_and_forget_drops_it() {
        let authenticator = AgentAuthenticator::default();
        let agent_id = SpiffeId::new("spiffe://example.org/spire/agent/join_token/a").unwrap();
        authenticator.record_sync(&agent_id, 1_700_000_000);

        authenticator.banned(&agent_id);
        assert_eq!(authenticator.last_sync(&agent_id), Some(1_700_000_000));

        authenticator.forget(&agent_id);
        assert_eq!(authenticator.last_sync(&agent_id), None);
    }
}
