//! The JWT signing key as a rotating authority.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use spiffe::TrustDomain;

use super::AuthorityKind;
use crate::api::unix_seconds;
use crate::datastore::{Datastore, JwtAuthorityRecord};
use crate::jwt::{JwtKeyType, JwtSigner, JwtSigningKey};

/// Creates and stores JWT signing keys, each wrapped in a signer with the server's JWT settings.
#[derive(Clone, Debug)]
pub struct JwtKind {
    /// Trust domain of every JWT-SVID subject.
    pub trust_domain: TrustDomain,
    /// The `iss` claim of every token, if configured.
    pub issuer: Option<String>,
    /// Lifetime of tokens whose request sets none.
    pub default_ttl: Duration,
    /// Type of newly created keys.
    pub key_type: JwtKeyType,
    /// Lifetime of a key, the same as a CA's.
    pub key_ttl: Duration,
}

impl JwtKind {
    fn signer(&self, key: JwtSigningKey) -> JwtSigner {
        JwtSigner::new(
            self.trust_domain.clone(),
            self.issuer.clone(),
            self.default_ttl,
            key,
        )
    }
}

impl AuthorityKind for JwtKind {
    type Authority = JwtSigner;

    const NAME: &'static str = "JWT authority";
    const COMMAND: &'static str = "jwt";

    fn authority_id(authority: &JwtSigner) -> String {
        authority.key().key_id().to_owned()
    }

    fn validity(authority: &JwtSigner) -> (SystemTime, SystemTime) {
        (authority.key().not_before(), authority.key().not_after())
    }

    fn load(&self, dir: &Path) -> anyhow::Result<Option<JwtSigner>> {
        super::require_files(dir, &["jwt-key.pem", "jwt-key.json"])?;
        Ok(JwtSigningKey::load(dir, self.key_type)?.map(|key| self.signer(key)))
    }

    fn create(&self, dir: &Path) -> anyhow::Result<JwtSigner> {
        let key = JwtSigningKey::create(dir, self.key_type, self.key_ttl)?;
        Ok(self.signer(key))
    }

    async fn publish(&self, datastore: &Datastore, authority: &JwtSigner) -> anyhow::Result<()> {
        let key = authority.key();
        // The published expiry is the key's notAfter: every token's `exp` is cut to it, so no
        // token the key signed is valid after it.
        let record = JwtAuthorityRecord {
            key_id: key.key_id().to_owned(),
            public_key_der: key.public_key_der().to_vec(),
            expires_at: unix_seconds(key.not_after()),
        };
        datastore
            .append_jwt_authority(&record)
            .await
            .context("failed to add the JWT signing key to the bundle")?;
        Ok(())
    }

    async fn taint(&self, datastore: &Datastore, authority: &JwtSigner) -> anyhow::Result<()> {
        datastore
            .taint_jwt_authority(authority.key().key_id())
            .await
            .context("failed to taint the JWT signing key in the bundle")?;
        Ok(())
    }

    async fn remove(&self, datastore: &Datastore, authority: &JwtSigner) -> anyhow::Result<()> {
        datastore
            .remove_jwt_authority(authority.key().key_id())
            .await
            .context("failed to remove the JWT signing key from the bundle")?;
        Ok(())
    }

    fn reject_local_changes(&self) -> Option<String> {
        None
    }

    async fn still_in_use(
        &self,
        _datastore: &Datastore,
        _authority: &JwtSigner,
    ) -> anyhow::Result<Option<String>> {
        // NOTE: tokens already handed to workloads cannot be tracked. Agents drop their cached
        // tokens of a tainted key at once, and revoking makes the rest fail verification.
        Ok(None)
    }
}
