//! Registration entries: which SPIFFE ID a workload or node gets, under which parent, for which
//! selectors.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::time::Duration;

use signet_core::ids::{self, IdError};
use signet_core::selector::{Selector, SelectorError};
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::types;
use spiffe::{SpiffeId, TrustDomain};

use super::{unix_now, unix_time_text};

/// A validated registration entry.
///
/// `spiffe_id` and `parent_id` are always of the server's trust domain, `selectors` is never empty
/// and the TTLs and expiry are never negative. `spiffe_id` may be a template with placeholders
/// that the agent fills from a workload's selectors, except in node alias entries, which have
/// the parent `spiffe://<trust domain>/spire/server`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegistrationEntry {
    /// Entry ID: a UUID the datastore assigns, or an ID the caller chose.
    pub id: String,
    /// SPIFFE ID that SVIDs issued for this entry carry, or the template it is expanded from.
    pub spiffe_id: SpiffeIdTemplate,
    /// SPIFFE ID of the agent, or of another entry, that may obtain SVIDs for this entry.
    pub parent_id: SpiffeId,
    /// Selectors that a workload (or, for node alias entries, an agent) must all have.
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime in seconds, or 0 for the server default.
    pub x509_svid_ttl: i32,
    /// JWT-SVID lifetime in seconds, or 0 for the server default.
    pub jwt_svid_ttl: i32,
    /// Foreign trust domains whose bundles workloads of this entry receive.
    pub federates_with: Vec<TrustDomain>,
    /// Whether the workload may call the server's admin APIs.
    pub admin: bool,
    /// Whether the workload may act as a downstream server.
    pub downstream: bool,
    /// Unix time in seconds after which the entry no longer applies, or 0 for no expiry.
    pub expires_at: i64,
    /// DNS names added as SANs to the X509-SVID.
    pub dns_names: Vec<String>,
    /// Counter the datastore bumps on every update.
    pub revision_number: i64,
    /// Whether the agent stores the SVID instead of serving it over the Workload API.
    pub store_svid: bool,
    /// Free text that helps a workload choose among several SVIDs.
    pub hint: String,
    /// Unix time in seconds at which the datastore created the entry.
    pub created_at: i64,
}

/// Validation error of a registration entry.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The entry has no SPIFFE ID.
    #[error("missing spiffe_id: set the SPIFFE ID the entry issues")]
    MissingSpiffeId,
    /// The entry has no parent ID.
    #[error("missing parent_id: set the SPIFFE ID of the agent or entry that may obtain the SVID")]
    MissingParentId,
    /// The SPIFFE ID or template does not parse. The text names the value and the reason.
    #[error("invalid spiffe_id: {0}")]
    InvalidSpiffeId(String),
    /// A node alias entry (parent ID the server's ID) has a SPIFFE ID template, but agents are
    /// not attested with selectors that could fill it.
    #[error(
        "spiffe_id {id} is a template, but node alias entries (parent ID {parent_id}) need a \
         plain SPIFFE ID: remove the placeholders or use another parent ID"
    )]
    TemplateOnNodeEntry {
        /// The rejected template.
        id: String,
        /// The server's ID.
        parent_id: String,
    },
    /// The parent ID does not parse. The text names the value and the reason.
    #[error("invalid parent_id: {0}")]
    InvalidParentId(String),
    /// The SPIFFE ID or parent ID belongs to another trust domain.
    #[error(
        "{field} {id} is not in trust domain {trust_domain}: use an ID of the server's trust domain"
    )]
    ForeignTrustDomain {
        /// `spiffe_id` or `parent_id`.
        field: &'static str,
        /// The rejected ID.
        id: String,
        /// The server's trust domain.
        trust_domain: String,
    },
    /// The SPIFFE ID is the trust domain ID or a path reserved for the server and agents.
    #[error(
        "spiffe_id {id} is reserved: entries may not issue the trust domain ID or IDs under /spire/"
    )]
    ReservedSpiffeId {
        /// The rejected ID.
        id: String,
    },
    /// The entry has no selectors, so it would match every caller.
    #[error("an entry needs at least one selector")]
    MissingSelectors,
    /// A selector is malformed or of an unknown type.
    #[error(transparent)]
    InvalidSelector(#[from] SelectorError),
    /// A TTL is negative.
    #[error(
        "invalid {field} {value}: a TTL must be 0 (server default) or a positive number of seconds"
    )]
    NegativeTtl {
        /// `x509_svid_ttl` or `jwt_svid_ttl`.
        field: &'static str,
        /// The rejected TTL.
        value: i32,
    },
    /// The expiry is negative.
    #[error("invalid expires_at {0}: use 0 for no expiry or a Unix time in seconds")]
    NegativeExpiry(i64),
    /// The expiry is after 9999-12-31T23:59:59Z, the last time an X.509 certificate can show.
    #[error(
        "invalid expires_at {0}: the latest allowed expiry is {MAX_EXPIRES_AT} \
         (9999-12-31T23:59:59Z)"
    )]
    ExpiryTooLate(i64),
    /// The expiry is at or before the current time, so the entry would never apply.
    #[error(
        "invalid expires_at {expires_at} ({time}): the time is already in the past. Use a later \
         Unix time, or 0 for no expiry"
    )]
    ExpiryInPast {
        /// The rejected expiry in Unix seconds.
        expires_at: i64,
        /// The same time in RFC 3339.
        time: String,
    },
    /// The same selector appears twice in one entry.
    #[error("duplicate selector {0:?}: list each selector once")]
    DuplicateSelector(String),
    /// A field is set that the server does not implement, so the entry would not behave as
    /// requested.
    #[error("{0} is not supported yet: leave it unset")]
    Unsupported(&'static str),
    /// A DNS name is not a valid host name.
    #[error("invalid DNS name {0:?}: use letters, digits and hyphens in dot-separated labels")]
    InvalidDnsName(String),
    /// The hint is longer than 1024 bytes.
    #[error("hint of {0} bytes is too long: the maximum is 1024 bytes")]
    HintTooLong(usize),
    /// A federated trust domain is not a valid lower-case trust domain name.
    #[error("invalid federates_with trust domain {0:?}: use a lower-case name such as example.org")]
    InvalidFederatesWith(String),
    /// A caller-chosen entry ID has characters other than letters, digits, `-`, `_` and `.`.
    #[error(
        "invalid entry ID {0:?}: use at most 255 letters, digits, '-', '_' and '.', or leave it empty"
    )]
    InvalidEntryId(String),
}

// === impl RegistrationEntry ===

impl RegistrationEntry {
    /// Validates an entry received over the API for the server's `trust_domain`.
    ///
    /// `id`, `revision_number` and `created_at` are copied as given, because the datastore sets
    /// them when it stores the entry.
    ///
    /// # Errors
    ///
    /// Every [`EntryError`] variant. The IDs may be missing, invalid, of another trust domain or
    /// reserved. Selectors may be missing, invalid or repeated. TTLs may be negative, and the
    /// expiry negative, past or after year 9999. DNS names, federated trust domains and entry IDs
    /// may be invalid, the hint over 1024 bytes, and some fields not supported yet.
    pub fn from_proto(entry: types::Entry, trust_domain: &TrustDomain) -> Result<Self, EntryError> {
        check_entry_id(&entry.id)?;
        let spiffe_id = parse_spiffe_id(entry.spiffe_id.as_ref(), trust_domain)?;
        let parent_id = parse_parent_id(entry.parent_id.as_ref(), trust_domain)?;
        check_node_entry_id(&spiffe_id, &parent_id)?;
        let selectors = parse_selectors(&entry.selectors)?;
        check_ttl("x509_svid_ttl", entry.x509_svid_ttl)?;
        check_ttl("jwt_svid_ttl", entry.jwt_svid_ttl)?;
        check_expiry(entry.expires_at, unix_now())?;
        for name in &entry.dns_names {
            check_dns_name(name)?;
        }
        if entry.hint.len() > MAX_HINT_BYTES {
            return Err(EntryError::HintTooLong(entry.hint.len()));
        }
        let federates_with = parse_federates_with(&entry.federates_with)?;
        check_supported(&entry)?;

        Ok(Self {
            id: entry.id,
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: entry.x509_svid_ttl,
            jwt_svid_ttl: entry.jwt_svid_ttl,
            federates_with,
            admin: entry.admin,
            downstream: entry.downstream,
            expires_at: entry.expires_at,
            dns_names: entry.dns_names,
            revision_number: entry.revision_number,
            store_svid: entry.store_svid,
            hint: entry.hint,
            created_at: entry.created_at,
        })
    }

    /// Builds the API form of the entry with every field set.
    pub fn to_proto(&self) -> types::Entry {
        types::Entry {
            id: self.id.clone(),
            spiffe_id: Some(self.spiffe_id.to_proto()),
            parent_id: Some(ids::to_proto_id(&self.parent_id)),
            selectors: self.selectors.iter().map(selector_to_proto).collect(),
            x509_svid_ttl: self.x509_svid_ttl,
            federates_with: self
                .federates_with
                .iter()
                .map(ToString::to_string)
                .collect(),
            admin: self.admin,
            downstream: self.downstream,
            expires_at: self.expires_at,
            dns_names: self.dns_names.clone(),
            revision_number: self.revision_number,
            store_svid: self.store_svid,
            jwt_svid_ttl: self.jwt_svid_ttl,
            hint: self.hint.clone(),
            created_at: self.created_at,
        }
    }

    /// Returns whether the entry's SPIFFE ID is a template with placeholders.
    pub fn is_template(&self) -> bool {
        self.spiffe_id.is_template()
    }

    /// Returns whether the entry has an expiry and it is at or before `now` (Unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    /// Shortens `ttl` so that an SVID issued at `now` (Unix seconds) expires no later than the
    /// entry. Returns `None` when the entry has expired.
    pub fn ttl_within_expiry(&self, ttl: Duration, now: i64) -> Option<Duration> {
        if self.expires_at == 0 {
            return Some(ttl);
        }
        let remaining = u64::try_from(self.expires_at.checked_sub(now)?).ok()?;
        match remaining {
            0 => None,
            seconds => Some(ttl.min(Duration::from_secs(seconds))),
        }
    }
}

/// Builds the API form of a selector.
pub(crate) fn selector_to_proto(selector: &Selector) -> types::Selector {
    types::Selector {
        r#type: selector.kind().to_owned(),
        value: selector.value().to_owned(),
    }
}

fn check_entry_id(id: &str) -> Result<(), EntryError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.len() > MAX_ENTRY_ID_BYTES || !id.chars().all(allowed) {
        return Err(EntryError::InvalidEntryId(id.to_owned()));
    }
    Ok(())
}

fn parse_spiffe_id(
    id: Option<&types::Spiffeid>,
    trust_domain: &TrustDomain,
) -> Result<SpiffeIdTemplate, EntryError> {
    let id = id.ok_or(EntryError::MissingSpiffeId)?;
    let id = SpiffeIdTemplate::from_parts(&id.trust_domain, &id.path)
        .map_err(|error| EntryError::InvalidSpiffeId(describe(&error)))?;
    if id.trust_domain() != trust_domain {
        return Err(EntryError::ForeignTrustDomain {
            field: "spiffe_id",
            id: id.to_string(),
            trust_domain: trust_domain.to_string(),
        });
    }
    if id.path().is_empty() || id.path().starts_with(RESERVED_PATH_PREFIX) {
        return Err(EntryError::ReservedSpiffeId { id: id.to_string() });
    }
    Ok(id)
}

/// Rejects a template on a node alias entry: the server matches node alias entries against an
/// agent's node selectors, and never expands their SPIFFE ID.
fn check_node_entry_id(
    spiffe_id: &SpiffeIdTemplate,
    parent_id: &SpiffeId,
) -> Result<(), EntryError> {
    let server_id = ids::server_id(spiffe_id.trust_domain());
    if spiffe_id.is_template() && *parent_id == server_id {
        return Err(EntryError::TemplateOnNodeEntry {
            id: spiffe_id.to_string(),
            parent_id: server_id.to_string(),
        });
    }
    Ok(())
}

fn parse_parent_id(
    id: Option<&types::Spiffeid>,
    trust_domain: &TrustDomain,
) -> Result<SpiffeId, EntryError> {
    if let Some(id) = id.filter(|id| has_placeholder(id)) {
        return Err(EntryError::InvalidParentId(format!(
            "\"spiffe://{}{}\" contains a placeholder: placeholders are allowed only in the \
             path of spiffe_id",
            id.trust_domain, id.path
        )));
    }
    let id = ids::from_proto_id(id).map_err(|error| match error {
        IdError::Missing => EntryError::MissingParentId,
        error => EntryError::InvalidParentId(describe(&error)),
    })?;
    check_trust_domain("parent_id", &id, trust_domain)?;
    Ok(id)
}

fn has_placeholder(id: &types::Spiffeid) -> bool {
    let brace = |text: &str| text.contains(['{', '}']);
    brace(&id.trust_domain) || brace(&id.path)
}

fn check_trust_domain(
    field: &'static str,
    id: &SpiffeId,
    trust_domain: &TrustDomain,
) -> Result<(), EntryError> {
    if id.is_member_of(trust_domain) {
        return Ok(());
    }
    Err(EntryError::ForeignTrustDomain {
        field,
        id: id.to_string(),
        trust_domain: trust_domain.to_string(),
    })
}

fn parse_selectors(selectors: &[types::Selector]) -> Result<Vec<Selector>, EntryError> {
    if selectors.is_empty() {
        return Err(EntryError::MissingSelectors);
    }
    let parsed: Vec<Selector> = selectors
        .iter()
        .map(|selector| Selector::new(&selector.r#type, &selector.value))
        .collect::<Result<_, _>>()?;

    let mut seen = BTreeSet::new();
    if let Some(duplicate) = parsed.iter().find(|selector| !seen.insert(*selector)) {
        return Err(EntryError::DuplicateSelector(duplicate.to_string()));
    }
    Ok(parsed)
}

/// Checks that the expiry is 0 (none), or a time after `now` that an X.509 certificate can show.
fn check_expiry(expires_at: i64, now: i64) -> Result<(), EntryError> {
    if expires_at < 0 {
        return Err(EntryError::NegativeExpiry(expires_at));
    }
    if expires_at > MAX_EXPIRES_AT {
        return Err(EntryError::ExpiryTooLate(expires_at));
    }
    if expires_at != 0 && expires_at <= now {
        return Err(EntryError::ExpiryInPast {
            expires_at,
            time: unix_time_text(expires_at),
        });
    }
    Ok(())
}

/// Rejects the fields the server stores but does not act on, because an entry that sets them
/// would not behave as the operator expects.
fn check_supported(entry: &types::Entry) -> Result<(), EntryError> {
    let unsupported = [
        ("federates_with", !entry.federates_with.is_empty()),
        ("admin", entry.admin),
        ("downstream", entry.downstream),
        ("store_svid", entry.store_svid),
    ];
    match unsupported.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(EntryError::Unsupported(field)),
        None => Ok(()),
    }
}

fn check_ttl(field: &'static str, value: i32) -> Result<(), EntryError> {
    if value < 0 {
        return Err(EntryError::NegativeTtl { field, value });
    }
    Ok(())
}

/// Checks a DNS SAN: dot-separated labels of letters, digits and inner hyphens, where the first
/// label may be the wildcard `*`.
fn check_dns_name(name: &str) -> Result<(), EntryError> {
    let invalid = || EntryError::InvalidDnsName(name.to_owned());
    if name.is_empty() || name.len() > MAX_DNS_NAME_BYTES {
        return Err(invalid());
    }
    let labels = name.strip_prefix("*.").unwrap_or(name);
    if labels.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_DNS_LABEL_BYTES
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Parses federated trust domains, given as names or, as SPIRE also accepts, as trust domain IDs
/// (`spiffe://example.org`).
fn parse_federates_with(trust_domains: &[String]) -> Result<Vec<TrustDomain>, EntryError> {
    trust_domains
        .iter()
        .map(|value| {
            let name = value.strip_prefix("spiffe://").unwrap_or(value);
            ids::parse_trust_domain(name)
                .map_err(|_| EntryError::InvalidFederatesWith(value.clone()))
        })
        .collect()
}

/// Joins an ID error and its causes into one line, because entry errors travel as text in
/// per-item API statuses.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Path prefix of the SPIFFE IDs of the server and of agents, which entries may not issue.
const RESERVED_PATH_PREFIX: &str = "/spire/";

/// Latest entry expiry in Unix seconds: 9999-12-31T23:59:59Z, the last time that X.509
/// certificates (RFC 5280 GeneralizedTime) and RFC 3339 can show.
const MAX_EXPIRES_AT: i64 = 253_402_300_799;

/// Maximum length of an entry hint, in bytes.
const MAX_HINT_BYTES: usize = 1024;

/// Maximum length of a caller-chosen entry ID, in bytes.
const MAX_ENTRY_ID_BYTES: usize = 255;

/// Maximum length of a DNS name in bytes, as in RFC 1035 without the trailing dot.
const MAX_DNS_NAME_BYTES: usize = 253;

/// Maximum length of a DNS label in bytes (RFC 1035).
const MAX_DNS_LABEL_BYTES: usize = 63;

#[cfg(test)]
mod tests;
