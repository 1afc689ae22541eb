//! The scenario's workloads, the executables that identify them, and their registration
//! entries.
//!
//! Every process runs under the same uid here, so each workload is identified by the path of
//! its executable (`unix:path` selector). The agent reads it from `/proc/<pid>/exe`, which needs
//! no privileges for processes of the agent's own user. The gateway's identity goes to
//! `signet-agent helper`, the process that fetches nginx's certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use signet_e2e::{EntrySpec, Server, binaries};

use super::nginx;
use crate::{ORDERS_DNS_NAME, spiffe_id};

/// Lifetime of the gateway's X509-SVID. It is short so that nginx reloads a rotated certificate
/// during the scenario, because the agent renews it at half its lifetime.
pub(super) const GATEWAY_SVID_TTL: Duration = Duration::from_secs(20);

/// The executables of the scenario, by the canonical paths that the agent reads from `/proc`.
#[derive(Debug)]
pub(super) struct Programs {
    /// The orders service.
    pub orders: PathBuf,
    /// The inventory service.
    pub inventory: PathBuf,
    /// The billing-batch client.
    pub billing_batch: PathBuf,
    /// This runner, which also acts as the `reports` workload.
    pub runner: PathBuf,
    /// `signet-agent`, whose `helper` subcommand writes nginx's certificate files.
    pub signet_agent: PathBuf,
    /// Debian's nginx.
    pub nginx: PathBuf,
}

// === impl Programs ===

impl Programs {
    /// Finds the example's binaries next to this runner, the Signet binaries where the test
    /// harness finds them, and nginx.
    ///
    /// # Errors
    ///
    /// When one is missing, telling how to build or install it.
    pub(super) fn locate() -> anyhow::Result<Self> {
        let runner = canonical(&std::env::current_exe().context("locating this program")?)?;
        let dir = runner
            .parent()
            .with_context(|| format!("{} has no directory", runner.display()))?;
        let sibling = |name: &str| {
            let path = dir.join(name);
            ensure!(
                path.is_file(),
                "{} not found: build the example with `cargo build -p zero-trust-gateway --bins`",
                path.display()
            );
            canonical(&path)
        };
        Ok(Self {
            orders: sibling("orders")?,
            inventory: sibling("inventory")?,
            billing_batch: sibling("billing-batch")?,
            signet_agent: canonical(&binaries::path(binaries::AGENT)?)?,
            nginx: nginx::locate()?,
            runner,
        })
    }

    /// Returns each workload's name, executable and DNS name, in registration order.
    fn workloads(&self) -> [(&'static str, &Path, Option<&'static str>); 5] {
        [
            ("gateway", &self.signet_agent, None),
            ("orders", &self.orders, Some(ORDERS_DNS_NAME)),
            ("inventory", &self.inventory, None),
            ("billing-batch", &self.billing_batch, None),
            ("reports", &self.runner, None),
        ]
    }
}

/// Registers one entry per workload under the agent `parent_id`, selected by executable path.
///
/// # Errors
///
/// When `entry create` fails.
pub(super) async fn register(
    server: &Server,
    parent_id: &str,
    programs: &Programs,
) -> anyhow::Result<()> {
    for (name, executable, dns_name) in programs.workloads() {
        let mut entry = EntrySpec::new(spiffe_id(name), parent_id)
            .selector(format!("unix:path:{}", executable.display()));
        if name == "gateway" {
            entry = entry.x509_svid_ttl(GATEWAY_SVID_TTL.as_secs());
        }
        let mut args = entry.create_args();
        if let Some(dns_name) = dns_name {
            args.extend(["--dns-name".to_owned(), dns_name.to_owned()]);
        }
        server
            .cli_ok(&args)
            .await
            .with_context(|| format!("registering {name} failed"))?;
    }
    Ok(())
}

fn canonical(path: &Path) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("resolving {} failed", path.display()))
}
