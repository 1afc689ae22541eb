//! Segment globs over request paths and SPIFFE IDs, the patterns that policy rules and peer
//! authorization match against.
//!
//! A path pattern starts with `/` and is split on `/` into segments, like the path it matches:
//!
//! - a literal segment matches exactly that segment, case-sensitively, as the request sent it
//!   (percent-encoding is not decoded, so write a segment the way clients send it);
//! - `*` matches exactly one segment, which must not be empty;
//! - `**` is allowed only as the last segment and matches zero or more segments of any kind.
//!
//! So `/orders/*` matches `/orders/42` but neither `/orders` nor `/orders/42/items`,
//! `/orders/*/items` matches `/orders/42/items`, and `/orders/**` matches `/orders`,
//! `/orders/42` and `/orders/42/items` but not `/orders-archive`. The pattern `/` matches only
//! the path `/`. A segment that mixes `*` with other characters (`ord*`) is rejected, so a
//! pattern never matches part of a segment.
//!
//! Request paths that contain a `.` or `..` segment match no pattern at all, because a server
//! behind the check may resolve them to another path. The [`policy`](crate::policy) refuses
//! such paths, and every other path not in canonical form, before it checks any rule, so they
//! get 400 rather than reaching an allow rule without a path condition.
//!
//! A path pattern cannot contain `?` or `#`: the query and the fragment are not part of the
//! path that a pattern matches.
//!
//! A SPIFFE ID pattern is `spiffe://<trust domain><path pattern>` with the same segment rules:
//! `spiffe://example.org/billing-batch` is one ID, `spiffe://example.org/**` is any ID of the
//! trust domain, and `spiffe://example.org/ns/prod/**` is `/ns/prod` and every ID below it,
//! but not `/ns/production`.

use std::fmt;
use std::str::FromStr;

use signet_core::ids::{parse_spiffe_id, parse_trust_domain};
use spiffe::{SpiffeId, TrustDomain};

/// Error from parsing a path or SPIFFE ID pattern. Every variant carries the rejected pattern.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A path pattern does not start with `/`.
    #[error("path pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    /// A path pattern contains an empty segment (`//` or a trailing `/`).
    #[error("pattern {0:?} has an empty segment: remove the doubled or trailing '/'")]
    EmptySegment(String),
    /// A path pattern contains a `.` or `..` segment, which no request path can match.
    #[error("pattern {0:?} has a '.' or '..' segment, which never matches")]
    DotSegment(String),
    /// A segment mixes `*` with other characters.
    #[error("pattern {0:?} has a segment that mixes '*' with text: use '*' or '**' alone")]
    PartialWildcard(String),
    /// `**` appears before the last segment.
    #[error("pattern {0:?} has '**' before the last segment: '**' may only end a pattern")]
    InnerDoubleWildcard(String),
    /// A path pattern contains `?` or `#`, which a request path never contains.
    #[error(
        "path pattern {0:?} contains '?' or '#', so it never matches: patterns match the path \
         without its query"
    )]
    QueryOrFragment(String),
    /// A SPIFFE ID pattern does not start with `spiffe://`.
    #[error("SPIFFE ID pattern {0:?} must start with \"spiffe://\"")]
    NotSpiffe(String),
    /// The trust domain of a SPIFFE ID pattern is invalid or not lower case.
    #[error("SPIFFE ID pattern {0:?} has an invalid trust domain")]
    InvalidTrustDomain(String),
    /// The literal segments of a SPIFFE ID pattern do not form a valid SPIFFE ID path.
    #[error(
        "SPIFFE ID pattern {0:?} is not a valid SPIFFE ID: path segments may contain only \
         letters, digits, '.', '-' and '_'"
    )]
    InvalidSpiffeId(String),
}

/// A segment glob over request paths, as the module documentation defines it.
///
/// Always contains a pattern that parsed without error.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// Whether the pattern ends in `**`, which is not kept in `segments`.
    any_tail: bool,
}

/// A pattern over SPIFFE IDs: a trust domain and a [`PathPattern`] over the ID's path.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SpiffeIdPattern {
    trust_domain: TrustDomain,
    path: PathPattern,
}

/// One segment of a [`PathPattern`] other than a final `**`.
#[derive(Clone, Debug, Eq, PartialEq)]
enum Segment {
    /// `*`: one non-empty segment.
    Any,
    Literal(String),
}

// === impl PathPattern ===

impl PathPattern {
    /// Parses a path pattern such as `/orders/*/items` or `/orders/**`.
    ///
    /// # Errors
    ///
    /// [`PatternError::NotAbsolute`], [`PatternError::EmptySegment`],
    /// [`PatternError::DotSegment`], [`PatternError::PartialWildcard`],
    /// [`PatternError::InnerDoubleWildcard`] or [`PatternError::QueryOrFragment`], each naming
    /// `text`.
    ///
    /// # Examples
    ///
    /// ```
    /// use signet_sdk::PathPattern;
    ///
    /// let pattern = PathPattern::parse("/orders/*/items")?;
    /// assert!(pattern.matches("/orders/42/items"));
    /// assert!(!pattern.matches("/orders/42"));
    /// # Ok::<(), signet_sdk::PatternError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute(text.to_owned()));
        };
        if rest.contains(['?', '#']) {
            return Err(PatternError::QueryOrFragment(text.to_owned()));
        }
        let mut pattern = Self {
            text: text.to_owned(),
            segments: Vec::new(),
            any_tail: false,
        };
        if rest.is_empty() {
            return Ok(pattern);
        }

        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        for (index, part) in parts.into_iter().enumerate() {
            let error = match part {
                "" => PatternError::EmptySegment,
                "." | ".." => PatternError::DotSegment,
                "**" if index == last => {
                    pattern.any_tail = true;
                    continue;
                }
                "**" => PatternError::InnerDoubleWildcard,
                "*" => {
                    pattern.segments.push(Segment::Any);
                    continue;
                }
                _ if part.contains('*') => PatternError::PartialWildcard,
                _ => {
                    pattern.segments.push(Segment::Literal(part.to_owned()));
                    continue;
                }
            };
            return Err(error(text.to_owned()));
        }
        Ok(pattern)
    }

    /// Returns the pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether `path` (a request path without its query) matches this pattern.
    ///
    /// A path that does not start with `/` or has a `.` or `..` segment never matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        if segments
            .iter()
            .any(|segment| matches!(*segment, "." | ".."))
        {
            return false;
        }
        self.matches_segments(&segments)
    }

    fn matches_segments(&self, segments: &[&str]) -> bool {
        let enough = if self.any_tail {
            segments.len() >= self.segments.len()
        } else {
            segments.len() == self.segments.len()
        };
        enough
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(pattern, segment)| match pattern {
                    Segment::Any => !segment.is_empty(),
                    Segment::Literal(literal) => literal == segment,
                })
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// === impl SpiffeIdPattern ===

impl SpiffeIdPattern {
    /// Parses a SPIFFE ID pattern such as `spiffe://example.org/ns/prod/**`.
    ///
    /// The trust domain must be in canonical lower-case form, and the literal segments must be
    /// valid SPIFFE ID path segments.
    ///
    /// # Errors
    ///
    /// [`PatternError::NotSpiffe`], [`PatternError::InvalidTrustDomain`],
    /// [`PatternError::InvalidSpiffeId`], or the errors of [`PathPattern::parse`], each naming
    /// `text`.
    ///
    /// # Examples
    ///
    /// ```
    /// use signet_sdk::SpiffeIdPattern;
    /// use spiffe::SpiffeId;
    ///
    /// let prod = SpiffeIdPattern::parse("spiffe://example.org/ns/prod/**")?;
    /// assert!(prod.matches(&SpiffeId::new("spiffe://example.org/ns/prod/web").unwrap()));
    /// assert!(!prod.matches(&SpiffeId::new("spiffe://example.org/ns/production").unwrap()));
    /// # Ok::<(), signet_sdk::PatternError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let Some(rest) = text.strip_prefix("spiffe://") else {
            return Err(PatternError::NotSpiffe(text.to_owned()));
        };
        let (name, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let trust_domain = parse_trust_domain(name)
            .map_err(|_| PatternError::InvalidTrustDomain(text.to_owned()))?;
        if path.is_empty() {
            // The trust domain's own ID, `spiffe://example.org`, which has no path.
            return Ok(Self {
                trust_domain,
                path: PathPattern {
                    text: String::new(),
                    segments: Vec::new(),
                    any_tail: false,
                },
            });
        }

        let path = PathPattern::parse(path).map_err(|error| rename(error, text))?;
        // The wildcards stand for segments the SPIFFE ID rules accept, so the literal segments
        // are valid exactly when the pattern with each wildcard replaced parses as an ID.
        let sample: String = path
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Any => "/x".to_owned(),
                Segment::Literal(literal) => format!("/{literal}"),
            })
            .collect();
        parse_spiffe_id(&format!("spiffe://{name}{sample}"))
            .map_err(|_| PatternError::InvalidSpiffeId(text.to_owned()))?;
        Ok(Self { trust_domain, path })
    }

    /// Returns a pattern that matches exactly `id`.
    pub fn exact(id: &SpiffeId) -> Self {
        Self {
            trust_domain: id.trust_domain().clone(),
            path: PathPattern {
                text: id.path().to_owned(),
                segments: literal_segments(id.path()),
                any_tail: false,
            },
        }
    }

    /// Returns a pattern that matches every SPIFFE ID of `trust_domain`.
    pub fn trust_domain(trust_domain: TrustDomain) -> Self {
        Self::path_prefix(trust_domain, "/")
    }

    /// Returns a pattern that matches the SPIFFE IDs of `trust_domain` whose path is `prefix` or
    /// lies below it, segment by segment: the prefix `/ns/prod` matches `/ns/prod` and
    /// `/ns/prod/web` but not `/ns/production`.
    ///
    /// `prefix` is taken literally (a `*` in it is a literal character, which no SPIFFE ID
    /// contains), and a trailing `/` is ignored.
    pub fn path_prefix(trust_domain: TrustDomain, prefix: &str) -> Self {
        Self {
            trust_domain,
            path: PathPattern {
                text: format!("{}/**", prefix.trim_end_matches('/')),
                segments: literal_segments(prefix),
                any_tail: true,
            },
        }
    }

    /// Returns whether `id` matches this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        if id.trust_domain() != &self.trust_domain {
            return false;
        }
        let segments: Vec<&str> = id.path().split('/').skip(1).collect();
        self.path.matches_segments(&segments)
    }
}

impl FromStr for SpiffeIdPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for SpiffeIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// Returns the non-empty segments of `path` as literals.
fn literal_segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| Segment::Literal(segment.to_owned()))
        .collect()
}

/// Puts the whole SPIFFE ID pattern, not only its path, into a path pattern error.
fn rename(error: PatternError, text: &str) -> PatternError {
    let text = text.to_owned();
    match error {
        PatternError::EmptySegment(_) => PatternError::EmptySegment(text),
        PatternError::DotSegment(_) => PatternError::DotSegment(text),
        PatternError::PartialWildcard(_) => PatternError::PartialWildcard(text),
        PatternError::InnerDoubleWildcard(_) => PatternError::InnerDoubleWildcard(text),
        _ => PatternError::InvalidSpiffeId(text),
    }
}

#[cfg(test)]
mod tests;
