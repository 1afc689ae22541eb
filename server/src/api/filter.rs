//! Filters of the entry and agent list and count RPCs.

use std::collections::BTreeSet;

use signet_core::ids::from_proto_id;
use signet_core::template::SpiffeIdTemplate;
use signet_proto::spire::api::server::agent::v1::{count_agents_request, list_agents_request};
use signet_proto::spire::api::server::entry::v1::{count_entries_request, list_entries_request};
use signet_proto::spire::api::types::{
    FederatesWithMatch, SelectorMatch, federates_with_match, selector_match,
};
use spiffe::SpiffeId;

use super::ApiError;
use super::unix_seconds;
use crate::model::{AttestedAgent, RegistrationEntry};

/// The conditions an entry must meet to be listed or counted; every set condition must hold.
#[derive(Debug, Default)]
pub(super) struct EntryFilter {
    spiffe_id: Option<SpiffeIdTemplate>,
    parent_id: Option<SpiffeId>,
    selectors: Option<SetMatch>,
    federates_with: Option<SetMatch>,
    hint: Option<String>,
    downstream: Option<bool>,
}

/// The conditions an agent must meet to be listed or counted; every set condition must hold.
#[derive(Debug, Default)]
pub(super) struct AgentFilter {
    attestation_type: Option<String>,
    selectors: Option<SetMatch>,
    banned: Option<bool>,
    can_reattest: Option<bool>,
    expires_before: Option<i64>,
}

/// A set of `type:value` selectors or trust domain names and how an entry's set must relate to it.
#[derive(Debug)]
struct SetMatch {
    values: BTreeSet<String>,
    behavior: Behavior,
}

/// SPIRE's match behaviours, shared by selectors and federated trust domains.
#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// At least one value in common.
    Any,
    /// The same set.
    Exact,
    /// The entry's set is contained in the filter's.
    Subset,
    /// The entry's set contains the filter's.
    Superset,
}

impl EntryFilter {
    /// Reads the filter of a `ListEntries` request.
    pub(super) fn from_list(
        filter: Option<list_entries_request::Filter>,
    ) -> Result<Self, ApiError> {
        let Some(filter) = filter else {
            return Ok(Self::default());
        };
        Ok(Self {
            spiffe_id: filter
                .by_spiffe_id
                .as_ref()
                .map(|id| {
                    SpiffeIdTemplate::from_parts(&id.trust_domain, &id.path)
                        .map_err(|error| ApiError::InvalidArgument(error.to_string()))
                })
                .transpose()?,
            parent_id: filter
                .by_parent_id
                .as_ref()
                .map(|id| from_proto_id(Some(id)))
                .transpose()?,
            selectors: filter.by_selectors.map(selector_match).transpose()?,
            federates_with: filter
                .by_federates_with
                .map(federates_with_match)
                .transpose()?,
            hint: filter.by_hint,
            downstream: filter.by_downstream,
        })
    }

    /// Reads the filter of a `CountEntries` request, which has the same fields as the list filter.
    pub(super) fn from_count(
        filter: Option<count_entries_request::Filter>,
    ) -> Result<Self, ApiError> {
        Self::from_list(filter.map(|filter| list_entries_request::Filter {
            by_spiffe_id: filter.by_spiffe_id,
            by_parent_id: filter.by_parent_id,
            by_selectors: filter.by_selectors,
            by_federates_with: filter.by_federates_with,
            by_hint: filter.by_hint,
            by_downstream: filter.by_downstream,
        }))
    }

    /// Returns whether the entry meets every condition.
    pub(super) fn matches(&self, entry: &RegistrationEntry) -> bool {
        self.spiffe_id
            .as_ref()
            .is_none_or(|id| *id == entry.spiffe_id)
            && self
                .parent_id
                .as_ref()
                .is_none_or(|id| *id == entry.parent_id)
            && self.hint.as_ref().is_none_or(|hint| *hint == entry.hint)
            && self
                .downstream
                .is_none_or(|downstream| downstream == entry.downstream)
            && self.selectors.as_ref().is_none_or(|set| {
                set.matches(entry.selectors.iter().map(ToString::to_string).collect())
            })
            && self.federates_with.as_ref().is_none_or(|set| {
                set.matches(
                    entry
                        .federates_with
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                )
            })
    }
}

impl AgentFilter {
    /// Reads the filter of a `ListAgents` request.
    pub(super) fn from_list(filter: Option<list_agents_request::Filter>) -> Result<Self, ApiError> {
        let Some(filter) = filter else {
            return Ok(Self::default());
        };
        let expires_before = match filter.by_expires_before.as_str() {
            "" => None,
            text => Some(parse_time(text)?),
        };
        Ok(Self {
            attestation_type: Some(filter.by_attestation_type).filter(|kind| !kind.is_empty()),
            selectors: filter.by_selector_match.map(selector_match).transpose()?,
            banned: filter.by_banned,
            can_reattest: filter.by_can_reattest,
            expires_before,
        })
    }

    /// Reads the filter of a `CountAgents` request, which has the same fields as the list filter.
    pub(super) fn from_count(
        filter: Option<count_agents_request::Filter>,
    ) -> Result<Self, ApiError> {
        Self::from_list(filter.map(|filter| list_agents_request::Filter {
            by_attestation_type: filter.by_attestation_type,
            by_selector_match: filter.by_selector_match,
            by_banned: filter.by_banned,
            by_can_reattest: filter.by_can_reattest,
            by_expires_before: filter.by_expires_before,
        }))
    }

    /// Returns whether the agent meets every condition.
    pub(super) fn matches(&self, agent: &AttestedAgent) -> bool {
        self.attestation_type
            .as_ref()
            .is_none_or(|kind| *kind == agent.attestation_type)
            && self.banned.is_none_or(|banned| banned == agent.banned)
            && self
                .can_reattest
                .is_none_or(|can_reattest| can_reattest == agent.can_reattest)
            && self
                .expires_before
                .is_none_or(|time| agent.expires_at < time)
            && self.selectors.as_ref().is_none_or(|set| {
                set.matches(agent.selectors.iter().map(ToString::to_string).collect())
            })
    }
}

impl SetMatch {
    fn matches(&self, entry_values: BTreeSet<String>) -> bool {
        match self.behavior {
            Behavior::Any => !self.values.is_disjoint(&entry_values),
            Behavior::Exact => self.values == entry_values,
            Behavior::Subset => entry_values.is_subset(&self.values),
            Behavior::Superset => entry_values.is_superset(&self.values),
        }
    }
}

fn selector_match(filter: SelectorMatch) -> Result<SetMatch, ApiError> {
    use selector_match::MatchBehavior;

    let behavior = match MatchBehavior::try_from(filter.r#match) {
        Ok(MatchBehavior::MatchAny) => Behavior::Any,
        Ok(MatchBehavior::MatchExact) => Behavior::Exact,
        Ok(MatchBehavior::MatchSubset) => Behavior::Subset,
        Ok(MatchBehavior::MatchSuperset) => Behavior::Superset,
        Err(_) => return Err(unknown_behavior(filter.r#match)),
    };
    let values = filter
        .selectors
        .iter()
        .map(|selector| format!("{}:{}", selector.r#type, selector.value))
        .collect();
    Ok(SetMatch { values, behavior })
}

fn federates_with_match(filter: FederatesWithMatch) -> Result<SetMatch, ApiError> {
    use federates_with_match::MatchBehavior;

    let behavior = match MatchBehavior::try_from(filter.r#match) {
        Ok(MatchBehavior::MatchAny) => Behavior::Any,
        Ok(MatchBehavior::MatchExact) => Behavior::Exact,
        Ok(MatchBehavior::MatchSubset) => Behavior::Subset,
        Ok(MatchBehavior::MatchSuperset) => Behavior::Superset,
        Err(_) => return Err(unknown_behavior(filter.r#match)),
    };
    Ok(SetMatch {
        values: filter.trust_domains.into_iter().collect(),
        behavior,
    })
}

/// Parses an RFC 3339 time such as `2026-01-02T15:04:05Z` into Unix seconds.
fn parse_time(text: &str) -> Result<i64, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .map(unix_seconds)
        .map_err(|_| {
            ApiError::InvalidArgument(format!(
                "invalid by_expires_before {text:?}: use an RFC 3339 time such as 2026-01-02T15:04:05Z"
            ))
        })
}

fn unknown_behavior(value: i32) -> ApiError {
    ApiError::InvalidArgument(format!(
        "unknown match behavior {value}: use exact (0), subset (1), superset (2) or any (3)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str], behavior: Behavior) -> SetMatch {
        SetMatch {
            values: values.iter().map(|value| (*value).to_owned()).collect(),
            behavior,
        }
    }

    fn entry_set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn match_behaviors_follow_spire() {
        let filter = ["unix:uid:1", "unix:gid:2"];
        let cases: &[(&str, Behavior, &[&str], bool)] = &[
            (
                "exact same set",
                Behavior::Exact,
                &["unix:gid:2", "unix:uid:1"],
                true,
            ),
            ("exact smaller set", Behavior::Exact, &["unix:uid:1"], false),
            (
                "subset smaller set",
                Behavior::Subset,
                &["unix:uid:1"],
                true,
            ),
            (
                "subset larger set",
                Behavior::Subset,
                &["unix:uid:1", "unix:gid:2", "unix:user:x"],
                false,
            ),
            (
                "superset larger set",
                Behavior::Superset,
                &["unix:uid:1", "unix:gid:2", "unix:user:x"],
                true,
            ),
            (
                "superset smaller set",
                Behavior::Superset,
                &["unix:uid:1"],
                false,
            ),
            (
                "any overlap",
                Behavior::Any,
                &["unix:uid:1", "unix:user:x"],
                true,
            ),
            ("any disjoint", Behavior::Any, &["unix:user:x"], false),
        ];
        for (name, behavior, entry_values, expected) in cases {
            let matched = set(&filter, *behavior).matches(entry_set(entry_values));
            assert_eq!(matched, *expected, "{name}");
        }
    }

    #[test]
    fn unknown_behavior_is_rejected() {
        let filter = SelectorMatch {
            selectors: Vec::new(),
            r#match: 9,
        };
        assert!(matches!(
            selector_match(filter),
            Err(ApiError::InvalidArgument(_))
        ));
    }
}
