//! The agent's debug API on its admin socket: explains which identities a workload receives.
//!
//! Only the agent's user can open the admin socket (mode 0600 in a directory of mode 0700),
//! because the responses describe every entry the agent serves and the processes of every user.

mod explain;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use signet_core::admin_socket;
use signet_core::selector::Selector;
use signet_proto::signet::agent::debug::v1::debug_server::{Debug as DebugApi, DebugServer};
use signet_proto::signet::agent::debug::v1::explain_workload_request::Workload;
use signet_proto::signet::agent::debug::v1::{ExplainWorkloadRequest, ExplainWorkloadResponse};
use spiffe::SpiffeId;
use tokio::net::UnixListener;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::debug;

use self::explain::{WorkloadSelectors, explain_entries, unix_seconds};
use crate::cache::Cache;
use crate::workload_api::error_chain;
use crate::workload_attestor::{AttestationError, PeerProcess, UnixAttestor, account_selectors};

/// Serves the debug API on `listener` for the agent `agent_id` until `shutdown` completes.
///
/// # Errors
///
/// The transport error that stopped the server.
///
/// # Cancel safety
///
/// Dropping the future closes the listener at once; complete `shutdown` to let open calls end.
pub async fn serve(
    listener: UnixListener,
    cache: Cache,
    agent_id: SpiffeId,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = DebugService {
        cache,
        agent_id,
        attestor: Arc::new(UnixAttestor::new()),
    };
    admin_socket::serve(listener, Routes::new(DebugServer::new(service)), shutdown).await
}

/// Serves debug requests from the agent's cache and its workload attestor.
#[derive(Debug)]
struct DebugService {
    cache: Cache,
    agent_id: SpiffeId,
    attestor: Arc<UnixAttestor>,
}

#[tonic::async_trait]
impl DebugApi for DebugService {
    async fn explain_workload(
        &self,
        request: Request<ExplainWorkloadRequest>,
    ) -> Result<Response<ExplainWorkloadResponse>, Status> {
        let workload = request
            .into_inner()
            .workload
            .ok_or_else(|| Status::invalid_argument("set a PID or a uid to explain"))?;
        debug!(?workload, "Explaining a workload");
        let attestor = Arc::clone(&self.attestor);
        let selectors = tokio::task::spawn_blocking(move || attest(&attestor, workload))
            .await
            .map_err(|error| {
                Status::internal(format!("workload attestation task failed: {error}"))
            })??;

        let snapshot = self.cache.current();
        Ok(Response::new(ExplainWorkloadResponse {
            agent_id: self.agent_id.to_string(),
            selectors: selectors.attested.iter().map(ToString::to_string).collect(),
            unknown_selector_keys: selectors
                .unknown_keys
                .iter()
                .map(|key| format!("unix:{key}"))
                .collect(),
            synced: snapshot.is_synced(),
            cache_revision: snapshot.revision,
            last_sync_at: self.cache.last_sync().map_or(0, unix_seconds),
            entries: explain_entries(&snapshot, &selectors, SystemTime::now(), &|spiffe_id| {
                self.cache.expired_at(spiffe_id)
            }),
        }))
    }
}

/// Returns the selectors of the running process or of a process of the uid, with the keys that
/// stay unknown. Blocks on `/proc` and the account databases.
fn attest(attestor: &UnixAttestor, workload: Workload) -> Result<WorkloadSelectors, Status> {
    match workload {
        Workload::Pid(pid) => attest_pid(attestor, pid),
        Workload::Uid(uid) => attest_uid(uid),
    }
}

fn attest_pid(attestor: &UnixAttestor, pid: i32) -> Result<WorkloadSelectors, Status> {
    if pid <= 0 {
        return Err(Status::invalid_argument(format!(
            "invalid PID {pid}: give the positive PID of a running process"
        )));
    }
    let attested = PeerProcess::from_pid(pid)
        .and_then(|process| attestor.attest(&process))
        .map_err(|error| attestation_status(pid, &error))?;

    // The attestor leaves out the executable's selectors when it may not read it, as for
    // another user's process while the agent runs unprivileged.
    let unknown_keys = if has_key(&attested, "sha256") {
        Vec::new()
    } else {
        EXECUTABLE_KEYS.to_vec()
    };
    Ok(WorkloadSelectors {
        attested,
        unknown_keys,
    })
}

fn attest_uid(uid: u32) -> Result<WorkloadSelectors, Status> {
    if uid == u32::MAX {
        return Err(Status::invalid_argument(
            "invalid uid 4294967295: it is (uid_t)-1, which no user has",
        ));
    }
    let attested = account_selectors(uid).map_err(|error| Status::internal(error.to_string()))?;

    // Without an account, the primary group comes from how the process is started.
    let unknown_keys = if has_key(&attested, "gid") {
        PROCESS_KEYS.to_vec()
    } else {
        [PROCESS_KEYS, ACCOUNT_GROUP_KEYS].concat()
    };
    Ok(WorkloadSelectors {
        attested,
        unknown_keys,
    })
}

/// Returns whether one of the `unix` selectors has `key`, as `unix:<key>:<value>`.
fn has_key(selectors: &[Selector], key: &str) -> bool {
    selectors.iter().any(|selector| {
        selector
            .value()
            .split_once(':')
            .is_some_and(|(found, _)| found == key)
    })
}

fn attestation_status(pid: i32, error: &AttestationError) -> Status {
    match error {
        // A kernel thread has a /proc entry but no executable, so the attestor cannot tell it
        // from a process that exited.
        AttestationError::ProcessExited if is_listed_in_proc(pid) => {
            Status::failed_precondition(format!(
                "PID {pid} has no executable, as a kernel thread: give the PID of a user-space \
                 process"
            ))
        }
        AttestationError::ProcessExited => Status::not_found(format!(
            "no process with PID {pid}: check the PID, or explain by --uid for a process that is \
             not running"
        )),
        error => Status::failed_precondition(format!(
            "attesting PID {pid} failed: {}",
            error_chain(error)
        )),
    }
}

/// Returns whether `/proc` lists the PID, which holds for running processes and kernel threads.
fn is_listed_in_proc(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `unix` keys of the executable, which the agent can only read from a running process it may
/// inspect.
const EXECUTABLE_KEYS: &[&str] = &["path", "sha256"];
/// `unix` keys that only a running process has: its executable and the supplementary groups it
/// was started with.
const PROCESS_KEYS: &[&str] = &["path", "sha256", "supplementary_gid"];
/// `unix` keys of the primary group, which only the user database or a running process has.
const ACCOUNT_GROUP_KEYS: &[&str] = &["gid", "group"];
