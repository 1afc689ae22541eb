//! The X.509 CA as a rotating authority.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;

use super::AuthorityKind;
use crate::ca::{CaConfig, CertificateAuthority};
use crate::datastore::Datastore;

/// Creates and stores X.509 CAs with the server's CA settings.
#[derive(Clone, Debug)]
pub struct X509Kind {
    /// The CA settings; `dir` is replaced by each authority's own directory.
    pub config: CaConfig,
}

impl X509Kind {
    fn config_in(&self, dir: &Path) -> CaConfig {
        CaConfig {
            dir: dir.to_owned(),
            ..self.config.clone()
        }
    }
}

impl AuthorityKind for X509Kind {
    type Authority = CertificateAuthority;

    const NAME: &'static str = "X.509 authority";
    const COMMAND: &'static str = "x509";

    fn authority_id(authority: &CertificateAuthority) -> String {
        authority.authority_id().to_owned()
    }

    fn validity(authority: &CertificateAuthority) -> (SystemTime, SystemTime) {
        (authority.not_before(), authority.expires_at())
    }

    fn load(&self, dir: &Path) -> anyhow::Result<Option<CertificateAuthority>> {
        super::require_files(dir, &["ca-key.pem", "ca-cert.pem"])?;
        Ok(CertificateAuthority::load(&self.config_in(dir))?)
    }

    fn create(&self, dir: &Path) -> anyhow::Result<CertificateAuthority> {
        Ok(CertificateAuthority::create(&self.config_in(dir))?)
    }

    async fn publish(
        &self,
        datastore: &Datastore,
        authority: &CertificateAuthority,
    ) -> anyhow::Result<()> {
        for root in authority.x509_authorities() {
            datastore
                .append_bundle_authority(&root)
                .await
                .context("failed to add the CA to the bundle")?;
        }
        Ok(())
    }

    async fn taint(
        &self,
        datastore: &Datastore,
        authority: &CertificateAuthority,
    ) -> anyhow::Result<()> {
        for root in authority.x509_authorities() {
            datastore
                .taint_bundle_authority(&root)
                .await
                .context("failed to taint the CA in the bundle")?;
        }
        Ok(())
    }

    async fn remove(
        &self,
        datastore: &Datastore,
        authority: &CertificateAuthority,
    ) -> anyhow::Result<()> {
        for root in authority.x509_authorities() {
            datastore
                .remove_bundle_authority(&root)
                .await
                .context("failed to remove the CA from the bundle")?;
        }
        Ok(())
    }

    fn reject_local_changes(&self) -> Option<String> {
        // With an upstream CA the bundle contains the upstream roots, which every local CA shares.
        self.config.upstream.as_ref().map(|_| {
            "the bundle holds the upstream CA's roots, not this server's CA, so tainting or \
             revoking a local X.509 authority has no effect; rotate the upstream CA instead"
                .to_owned()
        })
    }

    async fn still_in_use(
        &self,
        datastore: &Datastore,
        authority: &CertificateAuthority,
    ) -> anyhow::Result<Option<String>> {
        let now = crate::api::unix_seconds(SystemTime::now());
        let agents = datastore
            .agents_signed_by(authority.authority_id(), now)
            .await
            .context("failed to list the agents")?;
        // The full agent ID, because operators pass it to `agent evict`; the join token in it
        // is used up once the agent attested.
        Ok(agents.first().map(|first| {
            format!(
                "{} agent(s) still hold an X509-SVID it signed (for example {first}); agents \
                 replace it within seconds of the taint while they reach the server, so retry \
                 shortly, or evict agents that are gone with `signet-server agent evict`",
                agents.len()
            )
        }))
    }
}
