//! `signet-bench jwt-signing`: JWT-SVIDs per second through the server's NewJWTSVID, as an
//! attested agent requests them, next to the single-core ES256 rate of ring, the library the
//! server signs with.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::affinity::Pinning;
use crate::binaries::Binaries;
use crate::cli::JwtSigningArgs;
use crate::crypto::{self, Rate};
use crate::report::{Machine, Throughput};
use crate::signing_fixture::SigningFixture;
use crate::{load, runner};

/// Audience of every requested JWT-SVID.
const AUDIENCE: &str = "spiffe://example.org/bench/audience";
/// Entries the requests cycle through. NewJWTSVID reads every entry of the agent per call, so
/// more entries measure the datastore rather than signing.
const ENTRIES: u32 = 10;
/// Time spent measuring the raw rate.
const CRYPTO_DURATION: Duration = Duration::from_secs(2);
/// Time spent measuring the raw rate with `--quick`.
const QUICK_CRYPTO_DURATION: Duration = Duration::from_millis(200);

/// Report of `signet-bench jwt-signing`.
#[derive(Debug, Serialize)]
pub struct JwtSigningReport {
    /// Always "jwt-signing".
    pub benchmark: &'static str,
    /// The host.
    pub machine: Machine,
    /// CPUs the server and this process were pinned to.
    pub pinning: Pinning,
    /// Calls in flight at once.
    pub concurrency: u32,
    /// The timed run; items are JWT-SVIDs, one per call.
    pub throughput: Throughput,
    /// Single-thread rate of ring's ES256 signature (P-256, fixed-length form) in this process,
    /// without the JSON and base64url encoding of a token.
    pub raw_es256_sign: Rate,
    /// `throughput.per_second` divided by `raw_es256_sign.per_second`.
    pub ratio_to_sign: f64,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// Fails when the setup or a call fails; the logs are then kept, as [`runner::run`] describes.
pub async fn run(args: &JwtSigningArgs) -> anyhow::Result<()> {
    let requests = args.request_count();
    let concurrency = args.concurrency;
    let crypto_duration = if args.quick {
        QUICK_CRYPTO_DURATION
    } else {
        CRYPTO_DURATION
    };
    runner::run("jwt-signing", &args.common, |binaries, dir| async move {
        measure(binaries, &dir, requests, concurrency, crypto_duration).await
    })
    .await
}

async fn measure(
    binaries: Binaries,
    dir: &Path,
    requests: u32,
    concurrency: u32,
    crypto_duration: Duration,
) -> anyhow::Result<JwtSigningReport> {
    let fixture = SigningFixture::start(binaries, dir, "jwt", ENTRIES).await?;
    let entry_ids: Vec<&str> = fixture
        .entries
        .iter()
        .cycle()
        .take(requests as usize)
        .map(|(entry_id, _)| entry_id.as_str())
        .collect();

    let pinning = Pinning::server_and_bench(fixture.deployment.server_pid()?)?;
    let raw_es256_sign = crypto::es256_sign_rate(crypto_duration)?;

    // One untimed call warms the connection.
    let agent = &fixture.agent;
    if let Some(first) = entry_ids.first() {
        agent.new_jwt_svid(first, AUDIENCE).await?;
    }

    let cpu_before = fixture.server_cpu_seconds()?;
    let run = load::run(entry_ids, concurrency as usize, |entry_id| async move {
        agent.new_jwt_svid(entry_id, AUDIENCE).await
    })
    .await?;
    let server_cpu = fixture.server_cpu_seconds()? - cpu_before;
    fixture.deployment.stop().await?;

    let throughput = Throughput::new(u64::from(requests), &run, server_cpu)
        .ok_or_else(|| anyhow::anyhow!("the run made no call"))?;
    Ok(JwtSigningReport {
        benchmark: "jwt-signing",
        machine: Machine::detect(),
        pinning,
        concurrency,
        ratio_to_sign: throughput.per_second / raw_es256_sign.per_second,
        throughput,
        raw_es256_sign,
    })
}

impl fmt::Display for JwtSigningReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "JWT-SVID signing through NewJWTSVID")?;
        writeln!(f, "machine:     {}", self.machine)?;
        writeln!(f, "pinning:     {}", self.pinning.note)?;
        writeln!(
            f,
            "requests:    {} calls in flight, one JWT-SVID each",
            self.concurrency
        )?;
        write!(f, "{}", self.throughput)?;
        writeln!(
            f,
            "raw ES256:   {:.0}/s (ring, signature only, one thread)",
            self.raw_es256_sign.per_second
        )?;
        writeln!(f, "ratio:       {:.3} of raw ES256", self.ratio_to_sign)
    }
}
