//! Workload API calls through the `spiffe` crate (rust-spiffe), a client this project did not
//! write.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures::{Stream, StreamExt};
use spiffe::{TrustDomain, WorkloadApiClient, WorkloadApiError, X509Context, X509Svid};

use crate::svid::{self, SvidFacts};
use crate::wait;

/// Connects to the Workload API at `endpoint` (`unix:<path>`).
///
/// # Errors
///
/// Fails when the endpoint is invalid or refuses the connection.
pub async fn connect(endpoint: &str) -> anyhow::Result<WorkloadApiClient> {
    WorkloadApiClient::connect_to(endpoint)
        .await
        .with_context(|| format!("connecting to the Workload API at {endpoint}"))
}

/// Fetches X.509 contexts until one contains an SVID for `spiffe_id`, for at most `timeout`. The
/// agent may not know a new entry yet, so PermissionDenied counts as "not yet".
///
/// # Errors
///
/// Fails with the last error when no such context arrives in time.
pub async fn fetch_x509_context_with(
    endpoint: &str,
    spiffe_id: &str,
    timeout: Duration,
) -> anyhow::Result<X509Context> {
    let condition = format!("an X509-SVID for {spiffe_id} from {endpoint}");
    wait::eventually(&condition, timeout, || async {
        let client = connect(endpoint).await?;
        let context = client.fetch_x509_context().await?;
        ensure!(
            find_svid(&context, spiffe_id).is_some(),
            "the context contains only {:?}",
            spiffe_ids(&context)
        );
        Ok(context)
    })
    .await
}

/// Returns the next context on `stream` for which `accept` returns true, skipping the others.
///
/// # Errors
///
/// Fails when the stream ends or fails first, or after `timeout`.
pub async fn next_context_where<S>(
    stream: &mut S,
    timeout: Duration,
    accept: impl Fn(&X509Context) -> bool,
) -> anyhow::Result<X509Context>
where
    S: Stream<Item = Result<X509Context, WorkloadApiError>> + Unpin,
{
    let wait = async {
        loop {
            let Some(message) = stream.next().await else {
                bail!("the Workload API stream ended");
            };
            let context = message.context("the Workload API stream failed")?;
            if accept(&context) {
                return Ok(context);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .with_context(|| format!("no matching X.509 context within {timeout:?}"))?
}

/// Returns the SVID for `spiffe_id` in `context`, if any.
pub fn find_svid<'a>(context: &'a X509Context, spiffe_id: &str) -> Option<&'a X509Svid> {
    context
        .svids()
        .iter()
        .map(AsRef::as_ref)
        .find(|svid| svid.spiffe_id().to_string() == spiffe_id)
}

/// Returns the SPIFFE IDs of every SVID in `context`, in order.
pub fn spiffe_ids(context: &X509Context) -> Vec<String> {
    context
        .svids()
        .iter()
        .map(|svid| svid.spiffe_id().to_string())
        .collect()
}

/// Returns the DER authorities `context` contains for `trust_domain`.
///
/// # Errors
///
/// Fails when the context has no bundle for that trust domain.
pub fn bundle_der(context: &X509Context, trust_domain: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let trust_domain = TrustDomain::new(trust_domain)?;
    let bundle = context
        .bundle_set()
        .get(&trust_domain)
        .with_context(|| format!("the X.509 context has no bundle for {trust_domain}"))?;
    Ok(bundle
        .authorities()
        .iter()
        .map(|authority| authority.as_bytes().to_vec())
        .collect())
}

/// Returns the leaf-first DER chain of `svid`.
pub fn chain_der(svid: &X509Svid) -> Vec<Vec<u8>> {
    svid.cert_chain()
        .iter()
        .map(|certificate| certificate.as_bytes().to_vec())
        .collect()
}

/// Runs [`svid::check_x509_svid`] on the SVID for `spiffe_id` in `context` against the bundle
/// of `trust_domain` in the same context.
///
/// # Errors
///
/// Fails when the SVID or bundle is missing or a check fails.
pub fn check_served_svid(
    context: &X509Context,
    spiffe_id: &str,
    trust_domain: &str,
) -> anyhow::Result<SvidFacts> {
    let served = find_svid(context, spiffe_id)
        .with_context(|| format!("no SVID for {spiffe_id} in {:?}", spiffe_ids(context)))?;
    let chain = chain_der(served);
    let bundle = bundle_der(context, trust_domain)?;
    svid::check_x509_svid(&as_slices(&chain), &as_slices(&bundle), spiffe_id)
}

/// Borrows each DER buffer as a slice.
pub fn as_slices(ders: &[Vec<u8>]) -> Vec<&[u8]> {
    ders.iter().map(Vec::as_slice).collect()
}
