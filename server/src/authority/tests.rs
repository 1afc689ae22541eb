use std::path::Path;
use std::time::{Duration, SystemTime};

use spiffe::TrustDomain;
use tempfile::TempDir;

use super::*;
use crate::api::ChangeFeed;
use crate::ca::{CaConfig, KeyType};
use crate::jwt::JwtKeyType;
use crate::model::AttestedAgent;

const TTL: Duration = Duration::from_secs(600);

struct Fixture {
    dir: TempDir,
    datastore: Datastore,
    changes: ChangeFeed,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/datastore.sqlite3", dir.path().display());
        let datastore = Datastore::open(&url).await.unwrap();
        Self {
            dir,
            datastore,
            changes: ChangeFeed::new(0),
        }
    }

    async fn x509(&self) -> Rotation<X509Kind> {
        self.open(x509_kind(self.dir.path())).await
    }

    async fn jwt(&self) -> Rotation<JwtKind> {
        self.open(jwt_kind()).await
    }

    async fn open_x509(&self) -> anyhow::Result<Rotation<X509Kind>> {
        Rotation::open(
            x509_kind(self.dir.path()),
            self.dir.path(),
            self.datastore.clone(),
            self.changes.clone(),
        )
        .await
    }

    async fn open<K: AuthorityKind>(&self, kind: K) -> Rotation<K> {
        Rotation::open(
            kind,
            self.dir.path(),
            self.datastore.clone(),
            self.changes.clone(),
        )
        .await
        .unwrap()
    }

    async fn jwt_key_ids(&self) -> Vec<String> {
        let bundle = self.datastore.bundle().await.unwrap();
        bundle
            .jwt_authorities
            .into_iter()
            .map(|authority| authority.key_id)
            .collect()
    }
}

fn x509_kind(dir: &Path) -> X509Kind {
    X509Kind {
        config: CaConfig {
            trust_domain: trust_domain(),
            dir: dir.to_owned(),
            ca_ttl: TTL,
            key_type: KeyType::EcP256,
            upstream: None,
        },
    }
}

fn jwt_kind() -> JwtKind {
    JwtKind {
        trust_domain: trust_domain(),
        issuer: None,
        default_ttl: Duration::from_secs(300),
        key_type: JwtKeyType::Es256,
        key_ttl: TTL,
    }
}

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn precondition_message(error: RotationError) -> String {
    match error {
        RotationError::FailedPrecondition(message) => message,
        other => panic!("expected a failed precondition, got {other:?}"),
    }
}

/// Prepares and activates a new authority, returning the ID of the one it replaced.
async fn rotate<K: AuthorityKind>(rotation: &Rotation<K>) -> String {
    let replaced = rotation.status().await.active.authority_id;
    let prepared = rotation.prepare().await.unwrap();
    rotation.activate(&prepared.authority_id).await.unwrap();
    replaced
}

#[tokio::test]
async fn restart_keeps_the_active_authority() {
    let fixture = Fixture::new().await;
    let first = fixture.x509().await.status().await;

    let second = fixture.x509().await.status().await;

    assert_eq!(first, second);
    assert_eq!(second.prepared, None);
    let bundle = fixture.datastore.bundle().await.unwrap();
    assert_eq!(bundle.authorities.len(), 1);
}

#[tokio::test]
async fn prepared_authority_is_published_before_it_signs() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let active = rotation.status().await.active;
    let feed = fixture.changes.subscribe();

    let prepared = rotation.prepare().await.unwrap();

    assert_eq!(
        fixture.jwt_key_ids().await,
        [active.authority_id.clone(), prepared.authority_id.clone()]
    );
    assert_eq!(
        JwtKind::authority_id(&rotation.active()),
        active.authority_id
    );
    assert!(feed.has_changed().unwrap(), "agents were not notified");
}

#[tokio::test]
async fn activation_moves_active_to_old() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;

    let replaced = rotate(&rotation).await;

    let status = rotation.status().await;
    assert_eq!(status.old.unwrap().authority_id, replaced);
    assert_eq!(status.prepared, None);
    assert_eq!(
        JwtKind::authority_id(&rotation.active()),
        status.active.authority_id
    );
    let reopened = fixture.jwt().await.status().await;
    assert_eq!(reopened.active, status.active);
}

#[tokio::test]
async fn activation_needs_the_prepared_id() {
    let fixture = Fixture::new().await;
    let rotation = fixture.x509().await;
    let active = rotation.status().await.active.authority_id;

    let nothing_prepared = precondition_message(rotation.activate(&active).await.unwrap_err());
    rotation.prepare().await.unwrap();
    let active_named = precondition_message(rotation.activate(&active).await.unwrap_err());
    let unknown = rotation.activate("0011").await.unwrap_err();

    assert!(
        nothing_prepared.contains("localauthority x509 prepare"),
        "{nothing_prepared}"
    );
    assert!(
        active_named.contains(&active) && active_named.contains("active authority"),
        "{active_named}"
    );
    assert!(
        matches!(&unknown, RotationError::NotFound(message) if message.contains("\"0011\"")),
        "{unknown}"
    );
}

#[tokio::test]
async fn only_the_old_authority_is_tainted_once() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let old = rotate(&rotation).await;
    let active = rotation.status().await.active.authority_id;

    let active_rejection = precondition_message(rotation.taint(&active).await.unwrap_err());
    let tainted = rotation.taint(&old).await.unwrap();
    let again = precondition_message(rotation.taint(&old).await.unwrap_err());

    assert!(
        active_rejection.contains("only the old"),
        "{active_rejection}"
    );
    assert!(tainted.tainted);
    assert!(again.contains("tainted already"), "{again}");
    let bundle = fixture.datastore.bundle().await.unwrap();
    assert_eq!(bundle.tainted_jwt_key_ids, std::slice::from_ref(&old));
    assert!(fixture.jwt().await.status().await.old.unwrap().tainted);
}

#[tokio::test]
async fn revoke_needs_a_taint_first() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let old = rotate(&rotation).await;

    let rejection = precondition_message(rotation.revoke(&old).await.unwrap_err());
    rotation.taint(&old).await.unwrap();
    let revoked = rotation.revoke(&old).await.unwrap();

    assert!(rejection.contains("taint it first"), "{rejection}");
    assert_eq!(revoked.authority_id, old);
    assert!(!fixture.jwt_key_ids().await.contains(&old));
    assert_eq!(rotation.status().await.old, None);
}

#[tokio::test]
async fn x509_revoke_waits_for_agents() {
    let fixture = Fixture::new().await;
    let rotation = fixture.x509().await;
    let old = rotate(&rotation).await;
    rotation.taint(&old).await.unwrap();
    let agent = agent_signed_by(&old);
    fixture.datastore.create_agent(&agent).await.unwrap();

    let rejection = precondition_message(rotation.revoke(&old).await.unwrap_err());
    let renewed = AttestedAgent {
        x509_authority_id: rotation.status().await.active.authority_id,
        ..agent
    };
    fixture.datastore.update_agent(&renewed).await.unwrap();
    rotation.revoke(&old).await.unwrap();

    assert!(
        rejection.contains("1 agent(s)") && rejection.contains("join_token/a1"),
        "{rejection}"
    );
    let bundle = fixture.datastore.bundle().await.unwrap();
    assert_eq!(bundle.authorities.len(), 1);
}

#[tokio::test]
async fn schedule_rotates_on_time() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let first = rotation.status().await.active;
    let not_before = first.expires_at - TTL;

    rotation.advance(not_before + TTL / 3).await.unwrap();
    let early = rotation.status().await;
    rotation.advance(not_before + TTL * 6 / 10).await.unwrap();
    let prepared = rotation.status().await;
    rotation.advance(not_before + TTL * 9 / 10).await.unwrap();
    let activated = rotation.status().await;

    assert_eq!(early.prepared, None);
    let prepared_id = prepared.prepared.unwrap().authority_id;
    assert_eq!(prepared.active, first);
    assert_eq!(activated.active.authority_id, prepared_id);
    assert_eq!(activated.old.unwrap().authority_id, first.authority_id);
}

#[tokio::test]
async fn expired_old_authority_is_forgotten_and_pruned() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let old = rotate(&rotation).await;
    let after_old_expiry = SystemTime::now() + TTL + Duration::from_secs(1);

    rotation.advance(after_old_expiry).await.unwrap();
    fixture
        .datastore
        .prune_bundle(after_old_expiry)
        .await
        .unwrap();

    // By then the active authority has expired too, so it was replaced and is the old one.
    let status = rotation.status().await;
    assert_ne!(status.old.unwrap().authority_id, old);
    assert!(!fixture.jwt_key_ids().await.contains(&old));
}

#[tokio::test]
async fn damaged_journal_stops_the_start() {
    let fixture = Fixture::new().await;
    fixture.jwt().await;
    let journal = fixture.dir.path().join("authorities/jwt/journal.json");
    std::fs::write(&journal, "{").unwrap();

    let error = Rotation::open(
        jwt_kind(),
        fixture.dir.path(),
        fixture.datastore.clone(),
        fixture.changes.clone(),
    )
    .await
    .unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("journal.json"), "{message}");
    assert!(message.contains("aside"), "{message}");
}

fn agent_signed_by(authority_id: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: spiffe::SpiffeId::new("spiffe://example.org/spire/agent/join_token/a1").unwrap(),
        attestation_type: "join_token".to_owned(),
        serial_number: "01".to_owned(),
        expires_at: crate::api::unix_seconds(SystemTime::now() + TTL),
        selectors: Vec::new(),
        banned: false,
        can_reattest: false,
        x509_authority_id: authority_id.to_owned(),
    }
}

#[tokio::test]
async fn unnamed_authority_is_deleted() {
    let fixture = Fixture::new().await;
    let before = fixture.x509().await.status().await;
    // A crash after creating an authority's files and before the journal names it.
    let orphan = fixture.dir.path().join("authorities/x509/7");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("ca-key.pem"), "partial").unwrap();

    let after = fixture.x509().await.status().await;

    assert_eq!(after, before);
    assert!(!orphan.exists());
}

#[tokio::test]
async fn activation_waits_for_tainted_old_revoke() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let old = rotate(&rotation).await;
    rotation.taint(&old).await.unwrap();
    let prepared = rotation.prepare().await.unwrap();

    let rejection =
        precondition_message(rotation.activate(&prepared.authority_id).await.unwrap_err());

    assert!(rejection.contains(&old), "{rejection}");
    assert!(rejection.contains("revoke it first"), "{rejection}");
}

#[tokio::test]
async fn replaced_prepared_authority_leaves_bundle() {
    let fixture = Fixture::new().await;
    let rotation = fixture.jwt().await;
    let first = rotation.prepare().await.unwrap();

    let second = rotation.prepare().await.unwrap();

    let key_ids = fixture.jwt_key_ids().await;
    assert!(!key_ids.contains(&first.authority_id));
    assert!(key_ids.contains(&second.authority_id));
}

#[tokio::test]
async fn missing_journal_with_authorities_stops_start() {
    let fixture = Fixture::new().await;
    fixture.x509().await;
    std::fs::remove_file(fixture.dir.path().join("authorities/x509/journal.json")).unwrap();

    let error = fixture.open_x509().await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("no journal"), "{message}");
    assert!(fixture.dir.path().join("authorities/x509/0").exists());
}

#[tokio::test]
async fn missing_key_file_stops_start() {
    let fixture = Fixture::new().await;
    fixture.x509().await;
    let key = fixture.dir.path().join("authorities/x509/0/ca-key.pem");
    std::fs::remove_file(&key).unwrap();

    let error = fixture.open_x509().await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("ca-key.pem is missing"), "{message}");
}

#[tokio::test]
async fn shared_jwt_key_file_stops_start() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::new().await;
    fixture.jwt().await;
    let key = fixture.dir.path().join("authorities/jwt/0/jwt-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let error = Rotation::open(
        jwt_kind(),
        fixture.dir.path(),
        fixture.datastore.clone(),
        fixture.changes.clone(),
    )
    .await
    .unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("chmod 600"), "{message}");
}

#[tokio::test]
async fn server_identity_ca_is_the_established_one() {
    let fixture = Fixture::new().await;
    let rotation = fixture.x509().await;
    let old = rotate(&rotation).await;
    let active = rotation.status().await.active;
    let now = SystemTime::now();

    let early = rotation.established(now).await;
    let late = rotation.established(now + TTL - TTL / 20).await;

    assert_eq!(early.authority_id(), old);
    assert_eq!(late.authority_id(), active.authority_id);
}
