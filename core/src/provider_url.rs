//! The issuer and JWKS URLs: checked once, then published exactly as the operator wrote them.

use std::fmt;

use url::Url;

/// Path suffix of the discovery document below the issuer (OpenID Connect Discovery 1.0,
/// section 4).
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// Path suffix of the default JWKS URL below the issuer, as SPIRE's discovery provider uses.
pub const DEFAULT_KEYS_SUFFIX: &str = "/keys";

/// An absolute `http` or `https` URL with a host and no user info, query or fragment.
///
/// The text is kept as written, because OIDC relying parties compare the discovery document's
/// `issuer` with the tokens' `iss` byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderUrl {
    text: String,
    url: Url,
}

/// Error for a URL that cannot be an issuer or JWKS URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderUrlError {
    /// The text is not an absolute URL.
    #[error("expected an absolute URL such as https://oidc.example.org ({0})")]
    Malformed(String),
    /// The scheme is neither `https` nor `http`.
    #[error("scheme {0:?} is not supported; use https (or http behind a TLS proxy)")]
    Scheme(String),
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The URL has a user name or password.
    #[error("the URL must not contain a user name or password")]
    UserInfo,
    /// The URL has a query or fragment, which an OIDC issuer must not have.
    #[error("the URL must not contain a query (?) or fragment (#)")]
    QueryOrFragment,
    /// The path has `.` or `..` segments, which clients resolve away, so the published text
    /// would name another path than the one served.
    #[error("the URL path must not contain . or .. segments")]
    DotSegment,
}

impl ProviderUrl {
    /// Checks `text` and keeps it unchanged.
    ///
    /// # Errors
    ///
    /// [`ProviderUrlError`] naming the first rule the URL breaks.
    pub fn parse(text: &str) -> Result<Self, ProviderUrlError> {
        let url =
            Url::parse(text).map_err(|error| ProviderUrlError::Malformed(error.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(ProviderUrlError::Scheme(url.scheme().to_owned()));
        }
        if url.host().is_none() {
            return Err(ProviderUrlError::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ProviderUrlError::UserInfo);
        }
        // `Url` drops an empty `?` or `#`, so look at the text as well.
        if url.query().is_some() || url.fragment().is_some() || text.contains(['?', '#']) {
            return Err(ProviderUrlError::QueryOrFragment);
        }
        if has_dot_segment(text) {
            return Err(ProviderUrlError::DotSegment);
        }
        Ok(Self {
            text: text.to_owned(),
            url,
        })
    }

    /// Returns the URL exactly as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the host as the domain allow-list spells it: IPv6 without brackets.
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        }
    }

    /// Returns the request path this URL names, percent-encoded and always starting with `/`.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// Returns the request path of `suffix` below this URL, with no doubled `/`.
    pub fn path_below(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.path().trim_end_matches('/'))
    }

    /// Returns the URL of `suffix` below this one, built from the configured text.
    ///
    /// # Errors
    ///
    /// [`ProviderUrlError`] if the result is not a valid URL, which a valid base and a plain
    /// path suffix cannot cause.
    pub fn join(&self, suffix: &str) -> Result<Self, ProviderUrlError> {
        Self::parse(&format!("{}{suffix}", self.text.trim_end_matches('/')))
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Returns whether the path of `text`, an absolute URL, has a `.` or `..` segment, also when
/// percent-encoded.
fn has_dot_segment(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map_or("", |(_, path)| path);
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_text_is_kept_byte_for_byte() {
        for text in [
            "https://oidc.example.org",
            "https://oidc.example.org/",
            "https://OIDC.example.org:8443/tenant/a",
            "http://127.0.0.1:8443",
        ] {
            assert_eq!(ProviderUrl::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn invalid_urls_are_rejected() {
        let parse = |text| ProviderUrl::parse(text).unwrap_err();
        assert!(matches!(
            parse("oidc.example.org"),
            ProviderUrlError::Malformed(_)
        ));
        for text in ["ftp://oidc.example.org", "spiffe://example.org"] {
            assert!(matches!(parse(text), ProviderUrlError::Scheme(_)), "{text}");
        }
        assert_eq!(
            parse("https://user:pw@oidc.example.org"),
            ProviderUrlError::UserInfo
        );
        for text in [
            "https://oidc.example.org/?a=b",
            "https://oidc.example.org/?",
            "https://oidc.example.org/#top",
        ] {
            assert_eq!(parse(text), ProviderUrlError::QueryOrFragment, "{text}");
        }
        for text in [
            "https://x/a/../b",
            "https://x/./keys",
            "https://x/a/%2E%2e/b",
            "https://x/..",
        ] {
            assert_eq!(parse(text), ProviderUrlError::DotSegment, "{text}");
        }
        assert!(matches!(
            parse("https://oidc.example.org:99999"),
            ProviderUrlError::Malformed(_)
        ));
        assert!(ProviderUrl::parse("https://x/a..b/.well").is_ok());
    }

    #[test]
    fn paths_below_issuer_have_one_slash() {
        let root = ProviderUrl::parse("https://oidc.example.org/").unwrap();
        assert_eq!(
            root.path_below(DISCOVERY_SUFFIX),
            "/.well-known/openid-configuration"
        );
        let tenant = ProviderUrl::parse("https://oidc.example.org/tenant/").unwrap();
        assert_eq!(
            tenant.path_below(DISCOVERY_SUFFIX),
            "/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            tenant.join(DEFAULT_KEYS_SUFFIX).unwrap().as_str(),
            "https://oidc.example.org/tenant/keys"
        );
    }

    #[test]
    fn host_is_canonical() {
        let cases = [
            ("https://OIDC.Example.org:8443", "oidc.example.org"),
            ("http://127.0.0.1:1", "127.0.0.1"),
            ("http://[::1]:8443/", "::1"),
        ];
        for (text, host) in cases {
            assert_eq!(ProviderUrl::parse(text).unwrap().host(), host, "{text}");
        }
    }
}
