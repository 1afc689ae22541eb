//! Prometheus metrics of both daemons, scraped over loopback and read with a third-party parser
//! of the text format: names, counters that follow issuance and denials, and gauges read at scrape
//! time.

use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use signet_e2e::http::{self, free_loopback_address};
use signet_e2e::python::{self, Script};
use signet_e2e::wait::{self, PROPAGATION_TIMEOUT};
use signet_e2e::{Agent, AgentOptions, EntrySpec, Server, ServerOptions, workload};

/// The server's default CA lifetime, which bounds the CA expiry gauge.
const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);
/// The server's default agent X509-SVID lifetime, which bounds the agent SVID expiry gauge.
const DEFAULT_AGENT_SVID_TTL: Duration = Duration::from_secs(3600);

/// The gRPC code names a `reason` or `code` label may take.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Fetches `/metrics` from `address` and parses it.
async fn scrape(address: &str) -> anyhow::Result<Scrape> {
    let reply = http::get(address, "/metrics").await?;
    anyhow::ensure!(
        reply.status == 200,
        "GET /metrics returned {}",
        reply.status
    );
    let lines = reply.body.lines().map(|line| Ok(line.to_owned()));
    Ok(Scrape::parse(lines)?)
}

/// Returns the value of a counter or gauge sample.
fn number(sample: &Sample) -> Option<f64> {
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => Some(value),
        _ => None,
    }
}

/// Returns the samples named `name` whose labels include every pair of `labels`.
fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |sample| {
        sample.metric == name
            && labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
    })
}

/// Returns the sum of the samples named `name` whose labels include every pair of `labels`.
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels).filter_map(number).sum()
}

/// Returns the value of the one sample named `name` whose labels include every pair of `labels`.
fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let samples: Vec<&Sample> = matching(scrape, name, labels).collect();
    let [sample] = samples.as_slice() else {
        anyhow::bail!(
            "expected one {name} sample with {labels:?}, found {}",
            samples.len()
        );
    };
    number(sample).ok_or_else(|| anyhow::anyhow!("{name} is not a number"))
}

/// Waits until the sum of the samples reaches `at_least`.
async fn wait_for_total(
    address: &str,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> anyhow::Result<f64> {
    wait::eventually(
        &format!("{name} {labels:?} >= {at_least}"),
        PROPAGATION_TIMEOUT,
        || async {
            let value = total(&scrape(address).await?, name, labels);
            anyhow::ensure!(value >= at_least, "{name} is {value}");
            Ok(value)
        },
    )
    .await
}

fn assert_prefixed(scrape: &Scrape, prefix: &str) {
    assert!(!scrape.samples.is_empty(), "no samples");
    for sample in &scrape.samples {
        assert!(
            sample.metric.starts_with(prefix),
            "{} lacks the prefix {prefix}",
            sample.metric
        );
    }
}

/// A server and an agent, both with a metrics endpoint, and no registration entry yet.
struct Scraped {
    server: Server,
    agent: Agent,
    join_token: String,
    server_metrics: String,
    agent_metrics: String,
}

impl Scraped {
    async fn start() -> anyhow::Result<Self> {
        let server_metrics = free_loopback_address()?;
        let server = Server::start_with(ServerOptions {
            metrics_address: Some(server_metrics.clone()),
            ..ServerOptions::default()
        })
        .await?;
        let join_token = server.create_token().await?;
        let agent_metrics = free_loopback_address()?;
        let agent = Agent::start_with(
            &server,
            &join_token,
            AgentOptions {
                metrics_address: Some(agent_metrics.clone()),
                ..AgentOptions::default()
            },
        )
        .await?;
        Ok(Self {
            server,
            agent,
            join_token,
            server_metrics,
            agent_metrics,
        })
    }

    /// Registers the test process as a workload of the agent and returns its SPIFFE ID.
    async fn register_workload(&self, path: &str) -> anyhow::Result<String> {
        let workload_id = self.server.spiffe_id(path);
        let parent_id = self.server.join_token_agent_id(&self.join_token);
        let entry =
            EntrySpec::new(&workload_id, parent_id).selector(signet_e2e::current_uid_selector());
        self.server.create_entry(&entry).await?;
        Ok(workload_id)
    }
}

#[tokio::test]
async fn issued_counter_follows_workload_svids() {
    let scraped = Scraped::start().await.unwrap();
    let issued = "signet_server_svids_issued_total";
    // The agent's own X509-SVID is the first one.
    let before = wait_for_total(&scraped.server_metrics, issued, &[("kind", "x509")], 1.0)
        .await
        .unwrap();

    let workload_id = scraped
        .register_workload("/workload/metrics")
        .await
        .unwrap();
    workload::fetch_x509_context_with(&scraped.agent.endpoint(), &workload_id, PROPAGATION_TIMEOUT)
        .await
        .unwrap();

    let server = scrape(&scraped.server_metrics).await.unwrap();
    assert!(total(&server, issued, &[("kind", "x509")]) >= before + 1.0);
    wait_for_total(
        &scraped.server_metrics,
        "signet_server_registration_entries",
        &[],
        1.0,
    )
    .await
    .unwrap();
    wait_for_total(
        &scraped.server_metrics,
        "signet_server_attested_agents",
        &[],
        1.0,
    )
    .await
    .unwrap();
    let attested = total(
        &server,
        "signet_server_agent_attestations_total",
        &[("result", "OK")],
    );
    assert_eq!(attested, 1.0);

    let agent = scrape(&scraped.agent_metrics).await.unwrap();
    assert!(total(&agent, "signet_agent_workload_svids_signed_total", &[]) >= 1.0);
    let calls = &[("method", "FetchX509SVID"), ("code", "OK")];
    assert!(total(&agent, "signet_agent_workload_api_calls_total", calls) >= 1.0);
    let latency = &[("method", "FetchX509SVID")];
    assert!(
        total(
            &agent,
            "signet_agent_workload_api_call_duration_seconds_count",
            latency
        ) >= 1.0
    );
    assert!(
        total(
            &agent,
            "signet_agent_workload_attestation_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(gauge(&agent, "signet_agent_cached_x509_svids", &[]).unwrap() >= 1.0);
    assert!(gauge(&agent, "signet_agent_last_sync_timestamp_seconds", &[]).unwrap() > 0.0);
}

#[tokio::test]
async fn issued_counter_follows_x509_mint() {
    let scraped = Scraped::start().await.unwrap();
    let issued = "signet_server_svids_issued_total";
    let before = wait_for_total(&scraped.server_metrics, issued, &[("kind", "x509")], 1.0)
        .await
        .unwrap();

    let minted_id = scraped.server.spiffe_id("/minted");
    scraped
        .server
        .cli_ok(&["x509", "mint", "--spiffe-id", &minted_id])
        .await
        .unwrap();

    let server = scrape(&scraped.server_metrics).await.unwrap();
    assert!(total(&server, issued, &[("kind", "x509")]) >= before + 1.0);
    let signing = &[("kind", "x509")];
    let signed = total(
        &server,
        "signet_server_svid_signing_duration_seconds_count",
        signing,
    );
    assert!(signed >= before + 1.0, "{signed} signatures timed");
}

#[tokio::test]
async fn denied_mint_counts_with_reason() {
    let scraped = Scraped::start().await.unwrap();
    let denied = "signet_server_svid_requests_denied_total";
    let before = total(&scrape(&scraped.server_metrics).await.unwrap(), denied, &[]);

    // The server signs only SPIFFE IDs of its own trust domain.
    let output = scraped
        .server
        .cli(&[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://other.test/workload",
        ])
        .await
        .unwrap();
    assert!(!output.status.success());

    let server = scrape(&scraped.server_metrics).await.unwrap();
    assert_eq!(total(&server, denied, &[("kind", "x509")]), before + 1.0);
    for sample in server
        .samples
        .iter()
        .filter(|sample| sample.metric == denied)
    {
        let reason = sample.labels.get("reason").unwrap();
        assert!(GRPC_CODES.contains(&reason), "unexpected reason {reason}");
    }
}

#[tokio::test]
async fn expiry_gauges_are_plausible() {
    let scraped = Scraped::start().await.unwrap();
    let server = scrape(&scraped.server_metrics).await.unwrap();
    let agent = scrape(&scraped.agent_metrics).await.unwrap();

    let expiry = "signet_server_active_authority_expiry_seconds";
    for kind in ["x509", "jwt"] {
        let seconds = gauge(&server, expiry, &[("kind", kind)]).unwrap();
        assert!(
            seconds > 0.0 && seconds <= DEFAULT_CA_TTL.as_secs_f64(),
            "{kind} authority expires in {seconds} s"
        );
        let prepared = gauge(
            &server,
            "signet_server_authority_prepared",
            &[("kind", kind)],
        );
        assert_eq!(prepared.unwrap(), 0.0);
    }
    let seconds = gauge(&agent, "signet_agent_agent_svid_expiry_seconds", &[]).unwrap();
    assert!(
        seconds > 0.0 && seconds <= DEFAULT_AGENT_SVID_TTL.as_secs_f64(),
        "the agent SVID expires in {seconds} s"
    );

    assert_prefixed(&server, "signet_server_");
    assert_prefixed(&agent, "signet_agent_");
}

#[tokio::test]
async fn headerless_call_counts_invalid_argument() {
    let scraped = Scraped::start().await.unwrap();
    let script = Script::load("raw_call.py").unwrap();
    let output = script
        .run(&[
            &scraped.agent.endpoint(),
            "FetchX509SVID",
            "--without-header",
        ])
        .await
        .unwrap();
    let json = python::json_output(&output).unwrap();
    assert_eq!(json["code"], "INVALID_ARGUMENT", "{json}");

    let labels = &[("method", "FetchX509SVID"), ("code", "INVALID_ARGUMENT")];
    let agent = scrape(&scraped.agent_metrics).await.unwrap();
    assert_eq!(
        total(&agent, "signet_agent_workload_api_calls_total", labels),
        1.0
    );
}

#[tokio::test]
async fn metrics_endpoint_is_off_by_default() {
    let server = Server::start().await.unwrap();
    assert!(
        !server.log().contains("HTTP endpoint listening"),
        "{}",
        server.log()
    );
}
