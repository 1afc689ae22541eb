//! `signet-agent api fetch jwt`, `api fetch jwt-bundle` and `api validate jwt`: JWT-SVIDs and
//! JWT bundles through the Workload API.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use signet_core::ids::parse_spiffe_id;
use spiffe::{JwtBundleSet, JwtSvid};
use zeroize::Zeroizing;

use super::{FetchJwtArgs, FetchJwtBundleArgs, OutputFormat, ValidateJwtArgs, connect, describe};
use crate::helper::jwt::jwk_set;

/// One fetched JWT-SVID. It contains the token, because printing it is what the command is for.
#[derive(Debug, Serialize)]
struct JwtSvidReport {
    spiffe_id: String,
    hint: Option<String>,
    audience: Vec<String>,
    /// The token's `exp` in RFC 3339.
    expires_at: String,
    token: String,
}

/// Fetches JWT-SVIDs for the audience and prints them with their tokens.
pub(super) async fn fetch(args: &FetchJwtArgs) -> anyhow::Result<()> {
    let spiffe_id = args
        .spiffe_id
        .as_deref()
        .map(parse_spiffe_id)
        .transpose()
        .context("invalid --spiffe-id")?;
    let endpoint = args.endpoint.endpoint()?;
    let client = connect(&endpoint).await?;
    let svids = client
        .fetch_all_jwt_svids(&args.audience, spiffe_id.as_ref())
        .await
        .with_context(|| {
            format!(
                "fetching JWT-SVIDs from the Workload API at {} failed",
                describe(&endpoint)
            )
        })?;

    let reports: Vec<JwtSvidReport> = svids.iter().map(JwtSvidReport::new).collect();
    match args.output {
        OutputFormat::Human => print_svids(&reports),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
    }
    Ok(())
}

/// Fetches the JWT bundles and prints each trust domain's JWK Set.
pub(super) async fn fetch_bundles(args: &FetchJwtBundleArgs) -> anyhow::Result<()> {
    let endpoint = args.endpoint.endpoint()?;
    let client = connect(&endpoint).await?;
    let bundles = client.fetch_jwt_bundles().await.with_context(|| {
        format!(
            "fetching JWT bundles from the Workload API at {} failed",
            describe(&endpoint)
        )
    })?;

    let sets = jwk_sets(&bundles)?;
    match args.output {
        OutputFormat::Human => {
            for (trust_domain, set) in &sets {
                println!("JWT bundle of {trust_domain}:");
                println!("{}", serde_json::to_string_pretty(set)?);
            }
        }
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&sets)?),
    }
    Ok(())
}

/// Returns the token of `validate jwt` from --svid, standard input (`--svid -`) or --svid-file,
/// without surrounding blanks.
pub(super) fn read_token(args: &ValidateJwtArgs) -> anyhow::Result<Zeroizing<String>> {
    let text = match (&args.svid, &args.svid_file) {
        (Some(svid), _) if svid == "-" => {
            let mut text = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the JWT-SVID from standard input failed")?;
            text
        }
        (Some(svid), _) => Zeroizing::new(svid.clone()),
        (None, Some(path)) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWT-SVID from {} failed", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give the JWT-SVID with --svid or --svid-file"),
    };
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "the JWT-SVID is empty");
    Ok(Zeroizing::new(token.to_owned()))
}

/// Has the agent validate a JWT-SVID and prints its SPIFFE ID and claims. An invalid token is
/// an error, so the command exits with status 1.
pub(super) async fn validate(args: &ValidateJwtArgs) -> anyhow::Result<()> {
    let token = read_token(args)?;
    let endpoint = args.endpoint.endpoint()?;
    let client = connect(&endpoint).await?;
    let svid = client
        .validate_jwt_token(&args.audience, &token)
        .await
        .with_context(|| {
            format!(
                "the agent at {} did not accept the JWT-SVID for audience {:?}",
                describe(&endpoint),
                args.audience
            )
        })?;
    // The agent verified the signature, so reading the payload without verifying it again is
    // safe here.
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token.as_str())
        .context("the JWT-SVID payload is not JSON")?;

    match args.output {
        OutputFormat::Human => {
            println!("The JWT-SVID is valid");
            println!();
            println!("SPIFFE ID:  {}", svid.spiffe_id());
            println!("Claims:     {}", serde_json::to_string_pretty(&claims)?);
        }
        OutputFormat::Json => {
            let report = serde_json::json!({
                "spiffe_id": svid.spiffe_id().to_string(),
                "claims": claims,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

// === impl JwtSvidReport ===

impl JwtSvidReport {
    fn new(svid: &JwtSvid) -> Self {
        let expires_at = SystemTime::from(svid.expiry());
        Self {
            spiffe_id: svid.spiffe_id().to_string(),
            hint: svid.hint().map(str::to_owned),
            audience: svid.audience().to_vec(),
            expires_at: humantime::format_rfc3339_seconds(expires_at).to_string(),
            token: svid.token().to_owned(),
        }
    }
}

fn print_svids(reports: &[JwtSvidReport]) {
    let count = reports.len();
    let noun = if count == 1 { "JWT-SVID" } else { "JWT-SVIDs" };
    println!("Received {count} {noun}");
    for report in reports {
        println!();
        println!("SPIFFE ID:   {}", report.spiffe_id);
        if let Some(hint) = &report.hint {
            println!("Hint:        {hint}");
        }
        println!("Audience:    {}", report.audience.join(", "));
        println!("Expires at:  {}", report.expires_at);
        println!("Token:       {}", report.token);
    }
}

/// Returns each trust domain's keys as a JWK Set, ordered by trust domain.
fn jwk_sets(bundles: &JwtBundleSet) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut sets = BTreeMap::new();
    for (trust_domain, bundle) in bundles.iter() {
        sets.insert(trust_domain.id_string(), jwk_set(bundle)?);
    }
    Ok(sets)
}
