//! JWT files of `signet-agent helper`: each configured JWT-SVID, fetched again at half its
//! remaining lifetime, and the JWT bundle of the SVID's trust domain as a JWK Set.
//!
//! The signal and the command follow X.509 updates only, as in spiffe-helper: software that
//! sends a JWT-SVID reads its file for each request.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;
use spiffe::transport::Endpoint;
use spiffe::{JwtBundle, JwtBundleSet, JwtSvid, TrustDomain, WorkloadApiClient};
use zeroize::Zeroizing;

use super::connect;
use super::files::{PlannedFile, write_all};
use super::jwt_config::{JwtPlan, JwtSvidFile};
use super::supervise::{MAX_BACKOFF, Supervision};

/// Shortest wait before fetching a JWT-SVID again, so that a token close to its expiry cannot
/// make the helper call the agent in a tight loop.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Writes the JWT bundle file and every JWT-SVID file once.
///
/// # Errors
///
/// When a fetch from the Workload API or a write fails.
pub(super) async fn write_once(client: &WorkloadApiClient, plan: &JwtPlan) -> anyhow::Result<()> {
    if let Some(path) = &plan.bundle_file {
        let trust_domain = own_trust_domain(client).await?;
        let bundles = client
            .fetch_jwt_bundles()
            .await
            .context("fetching the JWT bundles from the Workload API failed")?;
        write_bundle(plan, path, &trust_domain, &bundles)?;
    }
    for file in &plan.svids {
        let svid = fetch_svid(client, file).await?;
        write_svid(plan, file, &svid)?;
    }
    Ok(())
}

/// Follows the Workload API's JWT bundle stream and rewrites the bundle file on each update,
/// reconnecting with backoff after errors. Never returns.
pub(super) async fn keep_bundle_current(
    endpoint: &Endpoint,
    plan: &JwtPlan,
    path: &std::path::Path,
) {
    let mut supervision = Supervision::new("JWT bundles");
    loop {
        let error = match follow_bundles(endpoint, plan, path, &mut supervision).await {
            Ok(()) => anyhow::anyhow!("the agent closed the JWT bundle stream"),
            Err(error) => error,
        };
        supervision.failed(&error).await;
    }
}

/// Keeps the JWT-SVID `file` current: fetches a token, writes it, and fetches again at half its
/// remaining lifetime. Never returns.
pub(super) async fn keep_svid_current(endpoint: &Endpoint, plan: &JwtPlan, file: &JwtSvidFile) {
    let mut supervision = Supervision::new("JWT-SVID");
    loop {
        let fetched = async { fetch_svid(&connect(endpoint).await?, file).await }.await;
        let svid = match fetched {
            Ok(svid) => svid,
            Err(error) => {
                supervision.failed(&error).await;
                continue;
            }
        };
        supervision.succeeded();
        let mut wait = refresh_delay(SystemTime::from(svid.expiry()), SystemTime::now());
        if let Err(error) = write_svid(plan, file, &svid) {
            tracing::error!(
                error = format!("{error:#}"),
                "Failed to write the JWT-SVID file"
            );
            wait = wait.min(MAX_BACKOFF);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Returns how long to wait before fetching a JWT-SVID that expires at `expiry` again: half of
/// its remaining lifetime, and at least [`MIN_REFRESH`].
///
/// The agent hands out a cached token until half of its lifetime has passed, so a fetch at half
/// the remaining lifetime always comes after that point and gets a new token.
#[must_use]
pub fn refresh_delay(expiry: SystemTime, now: SystemTime) -> Duration {
    let remaining = expiry.duration_since(now).unwrap_or_default();
    (remaining / 2).max(MIN_REFRESH)
}

/// Returns the keys of `bundle` as a JWK Set, ordered by key ID so that an unchanged bundle
/// gives the same file.
///
/// # Errors
///
/// When a key of the bundle is not valid JSON.
pub fn jwk_set(bundle: &JwtBundle) -> anyhow::Result<Value> {
    let mut authorities: Vec<_> = bundle.jwt_authorities().collect();
    authorities.sort_by(|a, b| a.key_id().cmp(b.key_id()));
    let keys = authorities
        .into_iter()
        .map(|authority| serde_json::from_slice(authority.jwk_json()))
        .collect::<Result<Vec<Value>, _>>()
        .with_context(|| {
            format!(
                "the JWT bundle of {} holds invalid JSON",
                bundle.trust_domain()
            )
        })?;
    Ok(serde_json::json!({ "keys": keys }))
}

/// Connects, then rewrites the bundle file for every update of the stream until it ends.
async fn follow_bundles(
    endpoint: &Endpoint,
    plan: &JwtPlan,
    path: &std::path::Path,
    supervision: &mut Supervision,
) -> anyhow::Result<()> {
    let client = connect(endpoint).await?;
    let trust_domain = own_trust_domain(&client).await?;
    let mut updates = client
        .stream_jwt_bundles()
        .await
        .context("watching the JWT bundles failed")?;
    while let Some(bundles) = updates.next().await {
        let bundles = bundles.context("the JWT bundle stream failed")?;
        supervision.succeeded();
        if let Err(error) = write_bundle(plan, path, &trust_domain, &bundles) {
            tracing::error!(
                error = format!("{error:#}"),
                "Failed to write the JWT bundle file"
            );
        }
    }
    Ok(())
}

/// Returns the trust domain of the caller's X509-SVID, whose JWT bundle the helper writes.
async fn own_trust_domain(client: &WorkloadApiClient) -> anyhow::Result<TrustDomain> {
    let svid = client
        .fetch_x509_svid()
        .await
        .context("fetching the X509-SVID to learn the trust domain failed")?;
    Ok(svid.spiffe_id().trust_domain().clone())
}

async fn fetch_svid(client: &WorkloadApiClient, file: &JwtSvidFile) -> anyhow::Result<JwtSvid> {
    client
        .fetch_jwt_svid(&file.audience, None)
        .await
        .with_context(|| {
            format!(
                "fetching a JWT-SVID for the audience {:?} from the Workload API failed",
                file.audience
            )
        })
}

fn write_svid(plan: &JwtPlan, file: &JwtSvidFile, svid: &JwtSvid) -> anyhow::Result<()> {
    let planned = PlannedFile {
        path: file.path.clone(),
        contents: Zeroizing::new(svid.token().to_owned()),
        mode: plan.svid_file_mode,
    };
    write_all(std::slice::from_ref(&planned))?;
    let expiry = SystemTime::from(svid.expiry());
    tracing::info!(
        spiffe_id = %svid.spiffe_id(),
        audience = ?file.audience,
        expiry = %humantime::format_rfc3339_seconds(expiry),
        path = %file.path.display(),
        "Wrote the JWT-SVID file"
    );
    Ok(())
}

fn write_bundle(
    plan: &JwtPlan,
    path: &std::path::Path,
    trust_domain: &TrustDomain,
    bundles: &JwtBundleSet,
) -> anyhow::Result<()> {
    // NOTE: only the JWT bundle of the SVID's own trust domain is written; the agent serves no
    // other trust domain's keys.
    let bundle = bundles
        .get_ref(trust_domain)
        .with_context(|| format!("the agent returned no JWT bundle for {trust_domain}"))?;
    let mut contents = serde_json::to_string_pretty(&jwk_set(bundle)?)?;
    contents.push('\n');
    let planned = PlannedFile {
        path: path.to_path_buf(),
        contents: Zeroizing::new(contents),
        mode: plan.bundle_file_mode,
    };
    write_all(std::slice::from_ref(&planned))?;
    tracing::info!(%trust_domain, path = %path.display(), "Wrote the JWT bundle file");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn refresh_comes_at_half_the_remaining_lifetime() {
        let cases = [
            ("fresh five-minute token", 300, 0, 150 * SECOND),
            ("token a third used", 300, 100, 100 * SECOND),
            ("token about to expire", 300, 299, MIN_REFRESH),
            ("expired token", 300, 400, MIN_REFRESH),
        ];
        for (name, expiry, now, expected) in cases {
            assert_eq!(refresh_delay(at(expiry), at(now)), expected, "{name}");
        }
    }

    #[test]
    fn refresh_never_comes_before_the_agent_renews() {
        // The agent renews a token once half of its lifetime has passed. A fetch at the planned
        // time must always come at or after that point.
        for lifetime in [2_u64, 3, 10, 61, 300, 3600] {
            for age in 0..lifetime {
                let now = at(1000 + age);
                let delay = refresh_delay(at(1000 + lifetime), now);
                let age_at_fetch = now + delay;
                assert!(
                    age_at_fetch >= at(1000) + Duration::from_secs(lifetime) / 2,
                    "lifetime {lifetime}, age {age}"
                );
            }
        }
    }

    #[test]
    fn jwk_set_is_sorted_by_key_id() {
        let trust_domain = TrustDomain::new("example.org").unwrap();
        let mut bundle = JwtBundle::new(trust_domain);
        for kid in ["b", "a", "c"] {
            let jwk = format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"x","y":"y"}}"#);
            bundle.add_jwk_authority_json(jwk.as_bytes()).unwrap();
        }
        let set = jwk_set(&bundle).unwrap();
        let kids: Vec<&str> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["a", "b", "c"]);
    }

    #[test]
    fn bundle_file_has_own_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt_bundle.json");
        let plan = JwtPlan {
            bundle_file_mode: 0o644,
            ..JwtPlan::default()
        };
        let own = TrustDomain::new("example.org").unwrap();
        let mut bundle = JwtBundle::new(own.clone());
        bundle
            .add_jwk_authority_json(br#"{"kty":"EC","crv":"P-256","kid":"k1","x":"x","y":"y"}"#)
            .unwrap();
        let mut other = JwtBundle::new(TrustDomain::new("other.org").unwrap());
        other
            .add_jwk_authority_json(br#"{"kty":"EC","crv":"P-256","kid":"k2","x":"x","y":"y"}"#)
            .unwrap();
        let bundles: JwtBundleSet = [bundle, other].into_iter().collect();

        write_bundle(&plan, &path, &own, &bundles).unwrap();

        let written: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["keys"].as_array().unwrap().len(), 1);
        assert_eq!(written["keys"][0]["kid"], "k1");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn missing_own_bundle_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let own = TrustDomain::new("example.org").unwrap();
        let error = write_bundle(
            &JwtPlan::default(),
            &dir.path().join("jwt_bundle.json"),
            &own,
            &JwtBundleSet::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("example.org"), "{error}");
    }
}
