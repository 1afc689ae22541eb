//! `signet-agent api fetch x509` and `api watch`: print X509-SVIDs and bundles, and write them to
//! files.

use std::fs::DirBuilder;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use signet_core::fs::{PUBLIC_FILE_MODE, write_atomic, write_secret};
use spiffe::{Certificate, X509Context, X509Svid};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{FetchX509Args, OutputFormat, WatchArgs, connect, describe};

/// Printed summary of the SVIDs and bundles, without key material.
#[derive(Debug, Serialize)]
struct X509Report {
    svids: Vec<SvidReport>,
    bundles: Vec<BundleReport>,
}

#[derive(Debug, Serialize)]
struct SvidReport {
    spiffe_id: String,
    hint: Option<String>,
    /// The leaf's notAfter in RFC 3339.
    expires_at: String,
    trust_domain: String,
}

#[derive(Debug, Serialize)]
struct BundleReport {
    trust_domain: String,
    authorities: usize,
}

/// Fetches the caller's X509-SVIDs and bundles once, prints them and writes them if asked.
pub(super) async fn fetch(args: &FetchX509Args) -> anyhow::Result<()> {
    let endpoint = args.endpoint.endpoint()?;
    if let Some(dir) = &args.write {
        create_write_dir(dir)?;
    }
    let started = Instant::now();
    let client = connect(&endpoint).await?;
    let context = client.fetch_x509_context().await.with_context(|| {
        format!(
            "fetching X509-SVIDs from the Workload API at {} failed",
            describe(&endpoint)
        )
    })?;
    let elapsed = started.elapsed();

    let report = X509Report::new(&context)?;
    match args.output {
        OutputFormat::Human => print_human(&report, &format!("after {}", millis(elapsed))),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(dir) = &args.write {
        write_files(dir, &context)?;
        if args.output == OutputFormat::Human {
            println!(
                "Wrote the X509-SVIDs, keys and bundles to {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Prints every X509 context update until the agent closes the stream.
pub(super) async fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.endpoint()?;
    let client = connect(&endpoint).await?;
    let failed = || {
        format!(
            "watching the Workload API at {} failed",
            describe(&endpoint)
        )
    };
    let mut updates = client.stream_x509_contexts().await.with_context(failed)?;

    while let Some(update) = updates.next().await {
        let report = X509Report::new(&update.with_context(failed)?)?;
        match args.output {
            OutputFormat::Human => {
                let received = humantime::format_rfc3339_seconds(SystemTime::now());
                print_human(&report, &format!("at {received}"));
            }
            OutputFormat::Json => println!("{}", serde_json::to_string(&report)?),
        }
    }
    anyhow::bail!("the agent at {} closed the stream", describe(&endpoint))
}

// === impl X509Report ===

impl X509Report {
    fn new(context: &X509Context) -> anyhow::Result<Self> {
        let svids = context
            .svids()
            .iter()
            .map(|svid| SvidReport::new(svid))
            .collect::<anyhow::Result<_>>()?;
        let mut bundles: Vec<BundleReport> = context
            .bundle_set()
            .iter()
            .map(|(trust_domain, bundle)| BundleReport {
                trust_domain: trust_domain.to_string(),
                authorities: bundle.authorities().len(),
            })
            .collect();
        bundles.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
        Ok(Self { svids, bundles })
    }
}

impl SvidReport {
    fn new(svid: &X509Svid) -> anyhow::Result<Self> {
        Ok(Self {
            spiffe_id: svid.spiffe_id().to_string(),
            hint: svid.hint().map(str::to_owned),
            expires_at: humantime::format_rfc3339_seconds(not_after(svid.leaf())?).to_string(),
            trust_domain: svid.spiffe_id().trust_domain().to_string(),
        })
    }
}

fn print_human(report: &X509Report, when: &str) {
    let count = report.svids.len();
    let noun = if count == 1 {
        "X509-SVID"
    } else {
        "X509-SVIDs"
    };
    println!("Received {count} {noun} {when}");
    for svid in &report.svids {
        println!();
        println!("SPIFFE ID:     {}", svid.spiffe_id);
        if let Some(hint) = &svid.hint {
            println!("Hint:          {hint}");
        }
        println!("Expires at:    {}", svid.expires_at);
        println!("Trust domain:  {}", svid.trust_domain);
    }
    println!();
    for bundle in &report.bundles {
        let noun = if bundle.authorities == 1 {
            "authority"
        } else {
            "authorities"
        };
        println!(
            "Bundle:        {} ({} {noun})",
            bundle.trust_domain, bundle.authorities
        );
    }
}

/// Creates the `--write` directory, before anything is fetched or printed.
fn create_write_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--write {} exists and is not a directory: choose a directory",
            dir.display()
        );
    }
    DirBuilder::new()
        .recursive(true)
        .create(dir)
        .with_context(|| format!("creating {} failed", dir.display()))
}

/// Writes, for the N-th SVID, `svid.N.pem` (chain, leaf first), `svid.N.key` (PKCS#8, mode
/// 0600), `bundle.N.pem` (its own trust domain) and `federated_bundle.N.M.pem` (the others).
fn write_files(dir: &Path, context: &X509Context) -> anyhow::Result<()> {
    let mut bundles: Vec<_> = context.bundle_set().iter().collect();
    bundles.sort_by_key(|(trust_domain, _)| trust_domain.to_string());
    for (index, svid) in context.svids().iter().enumerate() {
        let own = svid.spiffe_id().trust_domain();
        write_public(dir, &format!("svid.{index}.pem"), svid.cert_chain())?;
        write_key(dir, &format!("svid.{index}.key"), svid)?;

        let (own_bundles, federated): (Vec<_>, Vec<_>) = bundles
            .iter()
            .partition(|(trust_domain, _)| *trust_domain == own);
        let own_authorities = own_bundles
            .first()
            .map(|(_, bundle)| bundle.authorities())
            .unwrap_or_default();
        write_public(dir, &format!("bundle.{index}.pem"), own_authorities)?;
        for (federated_index, (_, bundle)) in federated.iter().enumerate() {
            let name = format!("federated_bundle.{index}.{federated_index}.pem");
            write_public(dir, &name, bundle.authorities())?;
        }
    }
    Ok(())
}

fn write_public(dir: &Path, name: &str, certificates: &[Certificate]) -> anyhow::Result<()> {
    let blocks: Vec<pem::Pem> = certificates
        .iter()
        .map(|certificate| pem::Pem::new("CERTIFICATE", certificate.as_bytes()))
        .collect();
    let path = dir.join(name);
    write_atomic(
        &path,
        pem::encode_many(&blocks).as_bytes(),
        PUBLIC_FILE_MODE,
    )
    .with_context(|| format!("writing {} failed", path.display()))
}

fn write_key(dir: &Path, name: &str, svid: &X509Svid) -> anyhow::Result<()> {
    let block = pem::Pem::new("PRIVATE KEY", svid.private_key().as_bytes());
    let encoded = Zeroizing::new(pem::encode(&block));
    // Wipes the block's own copy of the key.
    drop(Zeroizing::new(block.into_contents()));
    let path = dir.join(name);
    write_secret(&path, encoded.as_bytes())
        .with_context(|| format!("writing {} failed", path.display()))
}

fn not_after(certificate: &Certificate) -> anyhow::Result<SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_bytes())
        .context("the agent returned an X509-SVID that is not a valid certificate")?;
    let seconds = parsed.validity().not_after.timestamp();
    let seconds = u64::try_from(seconds).context("the X509-SVID expires before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

fn millis(elapsed: Duration) -> String {
    format!("{}ms", elapsed.as_millis())
}
