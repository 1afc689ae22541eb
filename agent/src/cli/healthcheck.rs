//! `signet-agent healthcheck`: succeeds when the agent responds on its Workload API socket.

use std::error::Error as StdError;

use anyhow::Context;
use spiffe::WorkloadApiError;
use spiffe::transport::TransportError;

use super::{HealthcheckArgs, connect, describe};

/// Checks that an agent responds to a Workload API call at the configured socket.
///
/// Any response from the agent counts, including `PermissionDenied` for a caller without an
/// identity, because the check is about the agent and not about this process's entitlement.
///
/// # Errors
///
/// When the socket cannot be reached, the connection fails before a response arrives, or no
/// response arrives within `--timeout`.
pub async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.endpoint()?;
    let target = describe(&endpoint);
    let check = async {
        let client = connect(&endpoint).await?;
        match client.fetch_x509_svid().await {
            Ok(_) => Ok(()),
            Err(error) if is_response_from_agent(&error) => Ok(()),
            Err(error) => {
                Err(error).with_context(|| format!("the agent at {target} did not respond"))
            }
        }
    };
    tokio::time::timeout(args.timeout, check)
        .await
        .with_context(|| {
            format!(
                "the agent at {target} did not respond within {}",
                humantime::format_duration(args.timeout)
            )
        })?
}

/// Tells an error the agent returned apart from a failure to talk to it.
fn is_response_from_agent(error: &WorkloadApiError) -> bool {
    match error {
        // The spiffe crate keeps tonic's status as the source. tonic attaches the cause to
        // statuses it makes up for local transport failures, and a status from the server has
        // none.
        WorkloadApiError::Transport(TransportError::Status(status)) => status
            .source()
            .and_then(|source| source.downcast_ref::<tonic::Status>())
            .is_some_and(|status| status.source().is_none()),
        WorkloadApiError::Transport(_) => false,
        _ => true,
    }
}
