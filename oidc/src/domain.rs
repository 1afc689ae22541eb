//! The allow-list of host names the provider serves, matched against each request's `Host`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use http::uri::Authority;

/// Host names and IP addresses that requests may name in their `Host` header.
///
/// Entries are stored in one canonical form: DNS names in lower-case ASCII (punycode for
/// international names), IP addresses as [`IpAddr`] prints them. Requests are brought to the same
/// form before the lookup, so `EXAMPLE.org:8443` matches `example.org`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainAllowList {
    domains: BTreeSet<String>,
}

/// Error for a configured domain that is neither a DNS name nor an IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The value is not a valid DNS name or IP address.
    #[error("expected a DNS name such as oidc.example.org or an IP address, without port")]
    Invalid,
    /// The value is an international name that is not in its ASCII (punycode) form.
    #[error("write international names in their punycode form, here {0}")]
    NotPunycode(String),
}

impl DomainAllowList {
    /// Builds the list from configured names.
    ///
    /// # Errors
    ///
    /// [`DomainError`] for the first name that is not a DNS name or IP address; the caller names
    /// the value.
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, (String, DomainError)> {
        let domains = names
            .into_iter()
            .map(|name| canonical_domain(name).map_err(|error| (name.to_owned(), error)))
            .collect::<Result<_, _>>()?;
        Ok(Self { domains })
    }

    /// Returns whether a request with this `Host` header value may be served.
    ///
    /// The port is ignored. A missing or malformed header is never allowed.
    pub fn is_allowed(&self, host_header: Option<&str>) -> bool {
        host_header
            .and_then(|value| value.parse::<Authority>().ok())
            .and_then(|authority| canonical_domain(authority.host()).ok())
            .is_some_and(|host| self.domains.contains(&host))
    }

    /// Returns the canonical names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }
}

impl fmt::Display for DomainAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().collect();
        f.write_str(&names.join(","))
    }
}

/// Brings a configured or requested host to the form the list stores.
fn canonical_domain(name: &str) -> Result<String, DomainError> {
    let bare = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(address) = bare.parse::<IpAddr>() {
        return Ok(address.to_string());
    }

    // `url::Host` applies the WHATWG host rules, including IDNA, so it rejects what no DNS name
    // may contain and distinguishes an international name from its punycode form.
    match url::Host::parse(name) {
        Ok(url::Host::Domain(ascii)) if ascii == name.to_ascii_lowercase() => Ok(ascii),
        Ok(url::Host::Domain(ascii)) => Err(DomainError::NotPunycode(ascii)),
        _ => Err(DomainError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(names: &[&str]) -> DomainAllowList {
        DomainAllowList::new(names.iter().copied()).unwrap()
    }

    #[test]
    fn host_header_matches_ignoring_port_and_case() {
        let list = allow(&["oidc.example.org"]);
        for host in [
            "oidc.example.org",
            "OIDC.Example.ORG",
            "oidc.example.org:8443",
        ] {
            assert!(list.is_allowed(Some(host)), "{host} should be allowed");
        }
    }

    #[test]
    fn host_header_not_listed_is_rejected() {
        let list = allow(&["oidc.example.org"]);
        for host in [
            "example.org",
            "evil.example",
            "oidc.example.org.evil.example",
            "oidc.example.org@evil.example",
            "",
            "bad host",
        ] {
            assert!(!list.is_allowed(Some(host)), "{host:?} should be rejected");
        }
        assert!(!list.is_allowed(None));
    }

    #[test]
    fn ip_addresses_match_in_any_spelling() {
        let list = allow(&["127.0.0.1", "[::1]"]);
        assert!(list.is_allowed(Some("127.0.0.1:8443")));
        assert!(list.is_allowed(Some("[::1]:8443")));
        assert!(list.is_allowed(Some("[0:0:0:0:0:0:0:1]")));
        assert!(!list.is_allowed(Some("127.0.0.2")));

        let unbracketed = allow(&["::1"]);
        assert!(unbracketed.is_allowed(Some("[::1]")));
    }

    #[test]
    fn configured_names_are_canonical() {
        let list = allow(&["OIDC.Example.org", "127.0.0.1"]);
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            ["127.0.0.1", "oidc.example.org"]
        );
    }

    #[test]
    fn invalid_configured_names_are_rejected() {
        for name in [
            "",
            "a b",
            "example.org:8443",
            "https://example.org",
            "exa/mple",
        ] {
            let error = DomainAllowList::new([name]).unwrap_err();
            assert_eq!(error, (name.to_owned(), DomainError::Invalid), "{name:?}");
        }
    }

    #[test]
    fn international_name_requires_punycode() {
        let error = DomainAllowList::new(["bücher.example"]).unwrap_err();
        assert_eq!(
            error.1,
            DomainError::NotPunycode("xn--bcher-kva.example".to_owned())
        );
        assert!(allow(&["xn--bcher-kva.example"]).is_allowed(Some("xn--bcher-kva.example")));
    }
}
