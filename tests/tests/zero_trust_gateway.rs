//! The zero-trust gateway example (`examples/zero-trust-gateway`): runs its scenario, with
//! Debian's nginx as the gateway, and checks every row of its report.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use signet_e2e::binaries;
use tokio::process::Command;

/// Name of the example's runner binary.
const RUNNER: &str = "zero-trust-gateway";

/// Bound on the whole scenario: a server, an agent, nginx, orders, eleven calls and a rotation
/// of the gateway's X509-SVID.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Each call of the scenario: caller, request, expected outcome (HTTP status, or 0 for a TLS
/// failure) and words the reason must contain, where the reason distinguishes the row from
/// another with the same status.
const EXPECTED: [(&str, &str, u16, &str); 11] = [
    (
        "billing-batch",
        "GET /orders/42",
        200,
        "billing-batch via spiffe://example.org/gateway",
    ),
    (
        "inventory",
        "GET /orders/42/items",
        200,
        "items of order 42",
    ),
    ("billing-batch", "DELETE /orders/42", 403, ""),
    ("inventory", "GET /orders/42", 403, ""),
    (
        "billing-batch",
        "GET /orders/42",
        401,
        "audience does not include orders",
    ),
    ("billing-batch", "GET /orders/42", 401, "expired"),
    ("billing-batch", "GET /orders/42", 401, ""),
    ("billing-batch", "GET /orders/42", 403, ""),
    ("reports", "GET /orders/42", 403, ""),
    ("no identity", "GET /orders/42", 0, "CertificateRequired"),
    (
        "billing-batch",
        "GET /orders/42",
        200,
        "billing-batch via spiffe://example.org/gateway",
    ),
];

#[tokio::test]
async fn zero_trust_gateway_scenario_has_every_expected_outcome() {
    let mut command = Command::new(binaries::path(RUNNER).unwrap());
    command
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let runner = command.spawn().unwrap();
    let pid = Pid::from_raw(runner.id().unwrap().cast_signed());
    let Ok(output) = tokio::time::timeout(SCENARIO_TIMEOUT, runner.wait_with_output()).await else {
        // SIGTERM rather than SIGKILL, so that the runner stops nginx and the other processes.
        let _ = kill(pid, Signal::SIGTERM);
        panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}");
    };
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));

    assert_eq!(rows.len(), EXPECTED.len(), "{rows:#?}");
    for (row, (caller, request, status, reason)) in rows.iter().zip(EXPECTED) {
        assert_eq!(row["caller"], caller, "{row:#}");
        assert_eq!(row["request"], request, "{row:#}");
        let outcome = &row["outcome"];
        if status == 0 {
            assert_eq!(outcome["outcome"], "tls_failure", "{row:#}");
            assert!(
                outcome["error"].as_str().unwrap().contains(reason),
                "{row:#}"
            );
        } else {
            assert_eq!(outcome["outcome"], "response", "{row:#}");
            assert_eq!(outcome["status"], status, "{row:#}");
            assert!(
                outcome["body"].as_str().unwrap().contains(reason),
                "{row:#}"
            );
        }
    }
    assert!(
        output.status.success(),
        "the runner reported a failure: {stderr}"
    );
}
