//! The allow-list of host names the provider serves, matched against each request's `Host`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use http::Request;
use http::header::HOST;
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

    /// Returns whether the list contains `host`, a value that [`request_host`] returned.
    pub fn contains(&self, host: &str) -> bool {
        self.domains.contains(host)
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

/// Error for a request whose host is not exactly one valid `host[:port]`, which the provider
/// rejects with 400 (RFC 9112 section 3.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestHostError {
    /// The request has neither a `Host` header nor an absolute-form target.
    #[error("missing Host header")]
    Missing,
    /// The request has more than one `Host` header.
    #[error("more than one Host header")]
    Repeated,
    /// The host is not a DNS name or IP address with an optional port, or it has user
    /// information (`user@host`).
    #[error("invalid host: expected host[:port]")]
    Invalid,
}

/// Returns the canonical host of a request, as [`DomainAllowList`] stores it, without the port.
///
/// The authority of an absolute-form request target takes precedence over `Host`
/// (RFC 9112 section 3.2.2), but more than one `Host` header is rejected in any case.
///
/// # Errors
///
/// [`RequestHostError`] when the request names no host, names several, or names an invalid one.
pub fn request_host<B>(request: &Request<B>) -> Result<String, RequestHostError> {
    let mut headers = request.headers().get_all(HOST).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err(RequestHostError::Repeated);
    }

    let authority = match (request.uri().authority(), header) {
        (Some(authority), _) => authority.as_str(),
        (None, Some(value)) => value.to_str().map_err(|_| RequestHostError::Invalid)?,
        (None, None) => return Err(RequestHostError::Missing),
    };
    canonical_request_host(authority)
}

/// Brings a request's `host[:port]` to the form the list stores, rejecting user information.
fn canonical_request_host(value: &str) -> Result<String, RequestHostError> {
    // `Authority` accepts `user@host`, which is never a valid `Host` value.
    if value.contains('@') {
        return Err(RequestHostError::Invalid);
    }
    let authority = value
        .parse::<Authority>()
        .map_err(|_| RequestHostError::Invalid)?;
    // `Authority` also accepts a port that is not a number.
    let has_port = authority.as_str().len() > authority.host().len();
    if has_port && authority.port_u16().is_none() {
        return Err(RequestHostError::Invalid);
    }
    canonical_domain(authority.host()).map_err(|_| RequestHostError::Invalid)
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

    /// Returns whether `list` serves a request with this `Host` value.
    fn serves(list: &DomainAllowList, host: &str) -> bool {
        canonical_request_host(host).is_ok_and(|host| list.contains(&host))
    }

    fn request(uri: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_header_matches_ignoring_port_and_case() {
        let list = allow(&["oidc.example.org"]);
        for host in [
            "oidc.example.org",
            "OIDC.Example.ORG",
            "oidc.example.org:8443",
        ] {
            assert!(serves(&list, host), "{host} should be allowed");
        }
    }

    #[test]
    fn host_header_not_listed_is_rejected() {
        let list = allow(&["oidc.example.org"]);
        for host in [
            "example.org",
            "evil.example",
            "oidc.example.org.evil.example",
        ] {
            assert!(!serves(&list, host), "{host:?} should be rejected");
        }
    }

    #[test]
    fn invalid_request_hosts_are_rejected() {
        for host in [
            "",
            "bad host",
            "user@oidc.example.org",
            "user:secret@oidc.example.org:8443",
            "oidc.example.org@evil.example",
            "oidc.example.org:port",
            "oidc.example.org:99999",
            "oidc.example.org:",
            "oidc.example.org:8443/keys",
            "http://oidc.example.org",
            "bücher.example",
        ] {
            assert_eq!(
                canonical_request_host(host),
                Err(RequestHostError::Invalid),
                "{host:?}"
            );
        }
    }

    #[test]
    fn request_host_requires_exactly_one_host() {
        assert_eq!(
            request_host(&request("/keys", &["OIDC.example.org:8443"])),
            Ok("oidc.example.org".to_owned())
        );
        assert_eq!(
            request_host(&request("/keys", &[])),
            Err(RequestHostError::Missing)
        );
        assert_eq!(
            request_host(&request("/keys", &["oidc.example.org", "evil.example"])),
            Err(RequestHostError::Repeated)
        );
        assert_eq!(
            request_host(&request("/keys", &["oidc.example.org", "oidc.example.org"])),
            Err(RequestHostError::Repeated)
        );
    }

    #[test]
    fn request_host_prefers_absolute_form_target() {
        assert_eq!(
            request_host(&request("http://oidc.example.org/keys", &["evil.example"])),
            Ok("oidc.example.org".to_owned())
        );
        assert_eq!(
            request_host(&request("http://oidc.example.org/keys", &[])),
            Ok("oidc.example.org".to_owned())
        );
        assert_eq!(
            request_host(&request(
                "http://user@oidc.example.org/keys",
                &["oidc.example.org"]
            )),
            Err(RequestHostError::Invalid)
        );
        assert_eq!(
            request_host(&request(
                "http://oidc.example.org/keys",
                &["a.example", "b.example"]
            )),
            Err(RequestHostError::Repeated)
        );
    }

    #[test]
    fn ip_addresses_match_in_any_spelling() {
        let list = allow(&["127.0.0.1", "[::1]"]);
        assert!(serves(&list, "127.0.0.1:8443"));
        assert!(serves(&list, "[::1]:8443"));
        assert!(serves(&list, "[0:0:0:0:0:0:0:1]"));
        assert!(!serves(&list, "127.0.0.2"));

        let unbracketed = allow(&["::1"]);
        assert!(serves(&unbracketed, "[::1]"));
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
        assert!(serves(
            &allow(&["xn--bcher-kva.example"]),
            "xn--bcher-kva.example"
        ));
    }
}
