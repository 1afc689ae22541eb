//! `signet-agent healthcheck`: succeeds when the agent reports `SERVING` for
//! `signet.agent.v1.Agent` through the gRPC health service on its Workload API socket.

use std::io::{self, Write as _};

use anyhow::Context;
use signet_core::health::{AGENT_SERVICE, check_serving};

use super::{HealthcheckArgs, describe};

/// Asks the agent at the configured socket for its readiness with `grpc.health.v1.Health/Check`
/// on the service [`AGENT_SERVICE`], and prints "Agent is healthy." when it is ready. Another
/// daemon's socket, such as a signet-server admin socket, fails the check because it does not
/// report that service.
///
/// The health service needs neither the Workload API security header nor an identity for the
/// caller, so any process can run the check.
///
/// # Errors
///
/// When the socket cannot be reached, the agent is not ready (not attested or not synced yet),
/// or no response arrives within `--timeout`.
pub async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.endpoint()?;
    let target = describe(&endpoint);
    let check = async {
        let channel = spiffe::transport::connect(&endpoint)
            .await
            .with_context(|| {
                format!(
                    "connecting to the agent at {target} failed (is signet-agent running with \
                     this socket path?)"
                )
            })?;
        check_serving(channel, AGENT_SERVICE, args.timeout)
            .await
            .with_context(|| format!("the agent at {target} is not healthy"))
    };
    tokio::time::timeout(args.timeout, check)
        .await
        .with_context(|| {
            format!(
                "the agent at {target} did not respond within {}",
                humantime::format_duration(args.timeout)
            )
        })??;
    // The same line as `signet-server healthcheck`, so scripts and people see both alike.
    writeln!(io::stdout().lock(), "Agent is healthy.")?;
    Ok(())
}
