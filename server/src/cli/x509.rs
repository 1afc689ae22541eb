//! `signet-server x509 mint`: creates a key locally and has the server sign an X509-SVID for it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use serde_json::json;
use signet_core::duration::{parse_ttl, ttl_seconds};
use signet_core::ids::parse_spiffe_id;
use signet_proto::spire::api::server::svid::v1::MintX509svidRequest;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use zeroize::Zeroizing;

use super::bundle::pem_certificate;
use super::output::print_json;
use super::{CommonArgs, OutputFormat, client, rpc_error};

/// X509-SVID commands.
#[derive(Debug, clap::Subcommand)]
pub enum X509Command {
    /// Mints an X509-SVID with a new ECDSA P-256 key, and prints the certificates, the key and
    /// the trust bundle as PEM, or writes them to a directory with --write.
    Mint(MintArgs),
}

/// Flags of `x509 mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// SPIFFE ID of the X509-SVID, in the server's trust domain.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime of the X509-SVID, in seconds or with a unit (3600, 1h) [default: the server's
    /// default X509-SVID TTL].
    #[arg(long)]
    ttl: Option<String>,
    /// DNS name to add as a SAN. Repeat the flag for several names.
    #[arg(long)]
    dns_name: Vec<String>,
    /// Directory to write svid.pem, key.pem (mode 0600) and bundle.pem to, instead of printing.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The PEM documents of a minted X509-SVID. The key is wiped from memory when dropped.
struct MintedSvid {
    chain: String,
    key: Zeroizing<String>,
    bundle: String,
}

pub(super) async fn execute(command: X509Command) -> anyhow::Result<()> {
    let X509Command::Mint(args) = command;
    let ttl = match &args.ttl {
        Some(text) => parse_ttl(text)
            .and_then(ttl_seconds)
            .with_context(|| format!("invalid --ttl {text:?}"))?,
        None => 0,
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("failed to generate an ECDSA P-256 key")?;
    let csr = csr(&key, &args.spiffe_id, &args.dns_name)?;

    let channel = client::connect(&args.common.admin_socket).await?;
    let svid = SvidClient::new(channel.clone())
        .mint_x509svid(MintX509svidRequest { csr, ttl })
        .await
        .map_err(|status| rpc_error("mint the X509-SVID", &status))?
        .into_inner()
        .svid
        .context("the server returned no X509-SVID")?;
    let bundle = client::fetch_bundle(channel).await?;

    let minted = MintedSvid {
        chain: svid
            .cert_chain
            .iter()
            .map(|der| pem_certificate(der))
            .collect(),
        key: Zeroizing::new(key.serialize_pem()),
        bundle: bundle
            .x509_authorities
            .iter()
            .map(|authority| pem_certificate(&authority.asn1))
            .collect(),
    };
    match &args.write {
        Some(dir) => write_files(dir, &minted, args.common.output),
        None => Ok(print_minted(&minted, args.common.output)?),
    }
}

/// Builds a CSR for `key` with the SPIFFE ID as its only URI SAN, plus the DNS names.
fn csr(key: &KeyPair, spiffe_id: &str, dns_names: &[String]) -> anyhow::Result<Vec<u8>> {
    let spiffe_id =
        parse_spiffe_id(spiffe_id).with_context(|| format!("invalid --spiffe-id {spiffe_id:?}"))?;
    let mut sans = vec![SanType::URI(
        spiffe_id
            .to_string()
            .try_into()
            .with_context(|| format!("invalid --spiffe-id {spiffe_id}"))?,
    )];
    for name in dns_names {
        let dns_name = name
            .clone()
            .try_into()
            .with_context(|| format!("invalid --dns-name {name:?}"))?;
        sans.push(SanType::DnsName(dns_name));
    }

    let mut params = CertificateParams::new(Vec::<String>::new())
        .context("failed to build the certificate request")?;
    params.subject_alt_names = sans;
    let request = params
        .serialize_request(key)
        .context("failed to sign the certificate request")?;
    Ok(request.der().to_vec())
}

fn print_minted(minted: &MintedSvid, output: OutputFormat) -> std::io::Result<()> {
    match output {
        OutputFormat::Human => {
            println!("X509-SVID:\n{}", minted.chain);
            println!("Private key:\n{}", minted.key.as_str());
            println!("Root CAs:\n{}", minted.bundle);
            Ok(())
        }
        OutputFormat::Json => print_json(&json!({
            "svid": minted.chain,
            "key": minted.key.as_str(),
            "bundle": minted.bundle,
        })),
    }
}

/// Writes svid.pem, key.pem and bundle.pem to `dir`, creating it with mode 0700 if missing.
fn write_files(dir: &Path, minted: &MintedSvid, output: OutputFormat) -> anyhow::Result<()> {
    if !dir.exists() {
        signet_core::fs::create_private_dir(dir)
            .with_context(|| format!("failed to create directory {}", dir.display()))?;
    }
    let svid_path = dir.join("svid.pem");
    let key_path = dir.join("key.pem");
    let bundle_path = dir.join("bundle.pem");
    let public = signet_core::fs::PUBLIC_FILE_MODE;
    signet_core::fs::write_atomic(&svid_path, minted.chain.as_bytes(), public)
        .with_context(|| format!("failed to write {}", svid_path.display()))?;
    signet_core::fs::write_secret(&key_path, minted.key.as_bytes())
        .with_context(|| format!("failed to write {}", key_path.display()))?;
    signet_core::fs::write_atomic(&bundle_path, minted.bundle.as_bytes(), public)
        .with_context(|| format!("failed to write {}", bundle_path.display()))?;

    match output {
        OutputFormat::Human => {
            println!("X509-SVID written to {}", svid_path.display());
            println!("Private key written to {}", key_path.display());
            println!("Root CAs written to {}", bundle_path.display());
        }
        OutputFormat::Json => print_json(&json!({
            "svid_path": svid_path,
            "key_path": key_path,
            "bundle_path": bundle_path,
        }))?,
    }
    Ok(())
}
