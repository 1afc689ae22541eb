//! `signet-bench issuance`: X509-SVIDs per second through the server's BatchNewX509SVID, as an
//! attested agent sends them, next to the single-core rate of the P-256 signature and
//! verification each X509-SVID costs the server.
//!
//! Keys and CSRs are generated before the timed section. The server is pinned to one CPU and
//! this process to another, so the figure is the work of one server core.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use signet_proto::spire::api::server::svid::v1::NewX509svidParams;

use crate::affinity::Pinning;
use crate::binaries::Binaries;
use crate::cli::IssuanceArgs;
use crate::crypto::{self, Rate};
use crate::csr::KeyAndCsr;
use crate::report::{Machine, Throughput};
use crate::signing_fixture::SigningFixture;
use crate::{load, runner};

/// X509-SVIDs per second the server should sign on one core, a CSR signature check included.
pub const GOAL_PER_SECOND: f64 = 12_000.0;

/// How much to request and how.
#[derive(Clone, Copy, Debug)]
struct Plan {
    svids: u32,
    entries: u32,
    other_entries: u32,
    batch_size: u32,
    concurrency: u32,
    crypto_duration: Duration,
}

/// Report of `signet-bench issuance`.
#[derive(Debug, Serialize)]
pub struct IssuanceReport {
    /// Always "issuance".
    pub benchmark: &'static str,
    /// The host.
    pub machine: Machine,
    /// CPUs the server and this process were pinned to.
    pub pinning: Pinning,
    /// Registration entries the requests cycle through.
    pub entries: u32,
    /// Entries of other agents in the datastore.
    pub other_entries: u32,
    /// CSRs per BatchNewX509SVID call.
    pub batch_size: u32,
    /// Calls in flight at once.
    pub concurrency: u32,
    /// Distinct keys and CSRs, reused in turn across the requests.
    pub distinct_csrs: usize,
    /// The timed run; items are X509-SVIDs.
    pub throughput: Throughput,
    /// Single-thread rates of ring's P-256 ECDSA in this process.
    pub raw: RawP256,
    /// `throughput.per_second` divided by `raw.sign.per_second`.
    pub ratio_to_sign: f64,
    /// `throughput.per_second` divided by `raw.sign_and_verify_per_second`.
    pub ratio_to_sign_and_verify: f64,
    /// [`GOAL_PER_SECOND`].
    pub goal_per_second: f64,
    /// Whether the throughput reached the goal.
    pub goal_met: bool,
}

/// Single-thread rates of the two operations each X509-SVID costs the server.
#[derive(Debug, Serialize)]
pub struct RawP256 {
    /// ECDSA P-256 signatures.
    pub sign: Rate,
    /// ECDSA P-256 verifications.
    pub verify: Rate,
    /// One signature plus one verification per item, the crypto-bound ceiling of one core.
    pub sign_and_verify_per_second: f64,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// Fails when the setup or a call fails; the logs are then kept, as [`runner::run`] describes.
pub async fn run(args: &IssuanceArgs) -> anyhow::Result<()> {
    let (svids, entries) = args.sizes();
    let plan = Plan {
        svids,
        entries,
        other_entries: args.other_entries,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        crypto_duration: if args.quick {
            QUICK_CRYPTO_DURATION
        } else {
            CRYPTO_DURATION
        },
    };
    runner::run("issuance", &args.common, |binaries, dir| async move {
        measure(binaries, &dir, plan).await
    })
    .await
}

async fn measure(binaries: Binaries, dir: &Path, plan: Plan) -> anyhow::Result<IssuanceReport> {
    let fixture = SigningFixture::start(binaries, dir, "issuance", plan.entries).await?;
    fixture.add_other_entries(plan.other_entries).await?;
    let csrs = generate_csrs(&fixture, plan.svids)?;
    let batches = batches(&fixture, &csrs, &plan);

    // Pin before measuring the raw rates, so that they come from the load generator's core.
    let pinning = Pinning::server_and_bench(fixture.deployment.server_pid()?)?;
    let raw = RawP256::measure(plan.crypto_duration)?;

    // One untimed call warms the connection and the server's caches.
    let warm_up: Vec<_> = batches.first().cloned().unwrap_or_default();
    fixture.agent.new_x509_svids(warm_up).await?;

    let cpu_before = fixture.server_cpu_seconds()?;
    let agent = &fixture.agent;
    let run = load::run(batches, plan.concurrency as usize, |batch| async move {
        agent.new_x509_svids(batch).await.map(drop)
    })
    .await?;
    let server_cpu = fixture.server_cpu_seconds()? - cpu_before;
    fixture.deployment.stop().await?;

    let throughput = Throughput::new(u64::from(plan.svids), &run, server_cpu)
        .ok_or_else(|| anyhow::anyhow!("the run made no call"))?;
    Ok(IssuanceReport::new(
        plan,
        csrs.len(),
        pinning,
        throughput,
        raw,
    ))
}

/// Generates the keys and CSRs the requests use in turn, outside the timed section.
fn generate_csrs(fixture: &SigningFixture, svids: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let count = (svids as usize).min(MAX_DISTINCT_CSRS);
    fixture
        .entries
        .iter()
        .cycle()
        .take(count)
        .map(|(_, spiffe_id)| Ok(KeyAndCsr::generate(spiffe_id)?.csr_der().to_vec()))
        .collect()
}

/// Splits `plan.svids` requests into batches, item `i` for entry `i mod entries` with CSR
/// `i mod csrs`.
fn batches(fixture: &SigningFixture, csrs: &[Vec<u8>], plan: &Plan) -> Vec<Vec<NewX509svidParams>> {
    let params: Vec<_> = fixture
        .entries
        .iter()
        .cycle()
        .zip(csrs.iter().cycle())
        .take(plan.svids as usize)
        .map(|((entry_id, _), csr)| NewX509svidParams {
            entry_id: entry_id.clone(),
            csr: csr.clone(),
        })
        .collect();
    params
        .chunks(plan.batch_size as usize)
        .map(<[_]>::to_vec)
        .collect()
}

impl IssuanceReport {
    fn new(
        plan: Plan,
        distinct_csrs: usize,
        pinning: Pinning,
        throughput: Throughput,
        raw: RawP256,
    ) -> Self {
        let per_second = throughput.per_second;
        Self {
            benchmark: "issuance",
            machine: Machine::detect(),
            pinning,
            entries: plan.entries,
            other_entries: plan.other_entries,
            batch_size: plan.batch_size,
            concurrency: plan.concurrency,
            distinct_csrs,
            ratio_to_sign: per_second / raw.sign.per_second,
            ratio_to_sign_and_verify: per_second / raw.sign_and_verify_per_second,
            goal_per_second: GOAL_PER_SECOND,
            goal_met: per_second >= GOAL_PER_SECOND,
            throughput,
            raw,
        }
    }
}

impl fmt::Display for IssuanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "X509-SVID issuance through BatchNewX509SVID")?;
        writeln!(f, "machine:     {}", self.machine)?;
        writeln!(f, "pinning:     {}", self.pinning.note)?;
        writeln!(
            f,
            "requests:    {} entries, {} CSRs per call, {} calls in flight, {} distinct CSRs",
            self.entries, self.batch_size, self.concurrency, self.distinct_csrs
        )?;
        writeln!(
            f,
            "datastore:   {} entries of other agents",
            self.other_entries
        )?;
        write!(f, "{}", self.throughput)?;
        writeln!(
            f,
            "raw P-256:   sign {:.0}/s, verify {:.0}/s, sign + verify {:.0}/s (ring, one thread)",
            self.raw.sign.per_second,
            self.raw.verify.per_second,
            self.raw.sign_and_verify_per_second
        )?;
        writeln!(
            f,
            "ratio:       {:.3} of sign, {:.3} of sign + verify",
            self.ratio_to_sign, self.ratio_to_sign_and_verify
        )?;
        writeln!(
            f,
            "goal:        {:.0}/s, {}",
            self.goal_per_second,
            if self.goal_met { "met" } else { "not met" }
        )
    }
}

impl RawP256 {
    fn measure(duration: Duration) -> anyhow::Result<Self> {
        let sign = crypto::p256_sign_rate(duration)?;
        let verify = crypto::p256_verify_rate(duration)?;
        let sign_and_verify_per_second = 1.0 / (1.0 / sign.per_second + 1.0 / verify.per_second);
        Ok(Self {
            sign,
            verify,
            sign_and_verify_per_second,
        })
    }
}

/// Most distinct keys and CSRs generated; requests reuse them in turn, which costs the server
/// the same as fresh ones.
const MAX_DISTINCT_CSRS: usize = 1000;
/// Time spent measuring each raw rate.
const CRYPTO_DURATION: Duration = Duration::from_secs(2);
/// Time spent measuring each raw rate with `--quick`.
const QUICK_CRYPTO_DURATION: Duration = Duration::from_millis(200);
