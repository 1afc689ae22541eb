//! SPIFFE ID templates: entry SPIFFE IDs whose path segments the agent fills from a workload's
//! selectors, such as `spiffe://example.org/unix/uid/{unix:uid}`.
//!
//! A placeholder `{TYPE:KEY}` is a whole path segment, and the agent replaces it with the value
//! `V` of the workload's selector `TYPE:KEY:V`. The trust domain never contains placeholders. An expanded ID
//! is an ordinary SPIFFE ID: each filled segment must hold only the characters the SPIFFE ID
//! standard allows in a path segment (letters, digits, `.`, `-` and `_`) and must not be `.` or
//! `..`.

use std::borrow::Cow;
use std::fmt;

use signet_proto::spire::api::types::Spiffeid;
use spiffe::{SpiffeId, TrustDomain};

use crate::ids::{self, IdError};
use crate::selector::{self, Selector};

/// A registration entry's SPIFFE ID as written: a plain SPIFFE ID, or a template with
/// placeholders in its path.
///
/// Always of the form `spiffe://<trust domain><path>` with a valid, lower-case trust domain, and
/// with a path that forms a valid SPIFFE ID once every placeholder is replaced by a valid segment.
/// Without placeholders it is a valid SPIFFE ID.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct SpiffeIdTemplate {
    form: Form,
}

/// A `{TYPE:KEY}` placeholder, always of a selector type and key that an attestor produces.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct Placeholder {
    kind: String,
    key: String,
}

/// Error for a rejected SPIFFE ID or template.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The text is not a valid SPIFFE ID, or would not be one with its placeholders filled.
    #[error("invalid SPIFFE ID {template:?}")]
    InvalidId {
        /// The rejected text.
        template: String,
        /// The SPIFFE ID parser's error.
        #[source]
        source: IdError,
    },
    /// A `{` or `}` appears in the trust domain, where placeholders are not allowed.
    #[error(
        "invalid SPIFFE ID template {template:?}: placeholders are allowed only in the path, \
         not in the trust domain"
    )]
    PlaceholderInTrustDomain {
        /// The rejected text.
        template: String,
    },
    /// A path segment contains a brace but is not exactly one `{TYPE:KEY}` placeholder.
    #[error(
        "invalid SPIFFE ID template {template:?}: segment {segment:?} must be exactly one \
         placeholder such as {{unix:uid}}, or contain no braces"
    )]
    MalformedPlaceholder {
        /// The rejected text.
        template: String,
        /// The path segment with the brace.
        segment: String,
    },
    /// The placeholder names a selector type and key that no attestor produces.
    #[error(
        "invalid SPIFFE ID template {template:?}: unknown placeholder {placeholder}: known \
         placeholders are {known}"
    )]
    UnknownPlaceholder {
        /// The rejected text.
        template: String,
        /// The placeholder as written.
        placeholder: String,
        /// Comma-separated list of the known `TYPE:KEY` pairs.
        known: String,
    },
    /// The placeholder names a selector whose values always contain `/`, so no value can fill a
    /// single path segment.
    #[error(
        "invalid SPIFFE ID template {template:?}: placeholder {placeholder} can never fill a path \
         segment, because its values are paths that contain '/'"
    )]
    UnusablePlaceholder {
        /// The rejected text.
        template: String,
        /// The placeholder as written.
        placeholder: String,
    },
}

/// Error for a template that a workload's selectors cannot fill. The entry then does not apply
/// to that workload.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpansionError {
    /// The workload has no selector of the placeholder's type and key.
    #[error("the workload has no {placeholder} selector")]
    MissingSelector {
        /// The placeholder, for example `{unix:uid}`.
        placeholder: String,
    },
    /// The workload has several selectors of the placeholder's type and key, so the value is
    /// ambiguous.
    #[error(
        "the workload has {count} {placeholder} selectors, but a placeholder needs exactly one"
    )]
    AmbiguousSelector {
        /// The placeholder, for example `{unix:supplementary_gid}`.
        placeholder: String,
        /// How many selectors matched.
        count: usize,
    },
    /// The selector's value is not a valid SPIFFE ID path segment.
    #[error(
        "the value {value:?} of {placeholder} is not a valid SPIFFE ID path segment (letters, \
         digits, '.', '-' and '_', not '.' or '..')"
    )]
    InvalidValue {
        /// The placeholder, for example `{unix:user}`.
        placeholder: String,
        /// The selector value.
        value: String,
    },
    /// The filled-in ID is not a valid SPIFFE ID, for example because it is too long.
    #[error("the expanded SPIFFE ID is invalid: {reason}")]
    InvalidId {
        /// The SPIFFE ID parser's error message.
        reason: String,
    },
}

/// Error for a concrete SPIFFE ID that is not an expansion of a template.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConcreteIdError {
    /// The ID is in another trust domain than the template.
    #[error("{id} is not in the trust domain of {template}")]
    ForeignTrustDomain {
        /// The concrete ID.
        id: String,
        /// The template.
        template: String,
    },
    /// The ID has another number of path segments than the template.
    #[error("{id} has {actual} path segments, but {template} has {expected}")]
    SegmentCount {
        /// The concrete ID.
        id: String,
        /// The template.
        template: String,
        /// Segments in the template.
        expected: usize,
        /// Segments in the concrete ID.
        actual: usize,
    },
    /// A segment of the ID differs from a literal segment of the template.
    #[error("{id} differs from {template} in segment {position}: expected {expected:?}")]
    LiteralMismatch {
        /// The concrete ID.
        id: String,
        /// The template.
        template: String,
        /// One-based position of the segment.
        position: usize,
        /// The template's literal segment.
        expected: String,
    },
    /// The segment in a placeholder's position is not a valid SPIFFE ID path segment, or not a
    /// value the placeholder's selector can have, such as a uid that is not a number.
    #[error(
        "{id} fills {placeholder} with {value:?}, which is not a valid path segment or not a \
         value of a {placeholder} selector"
    )]
    InvalidValue {
        /// The concrete ID.
        id: String,
        /// The placeholder.
        placeholder: String,
        /// The segment of the concrete ID.
        value: String,
    },
}

/// Parsed form of a [`SpiffeIdTemplate`]. The agent stores one per cached entry, so a plain
/// SPIFFE ID keeps only the ID, and a check that needs its segments splits them from the path.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
enum Form {
    /// A path without placeholders.
    Plain(SpiffeId),
    /// A path with at least one placeholder.
    Template {
        trust_domain: TrustDomain,
        /// The path as written, placeholders included.
        path: String,
        segments: Vec<Segment>,
    },
}

#[derive(Clone, Debug, Eq, Hash, PartialEq)]
enum Segment {
    Literal(String),
    Placeholder(Placeholder),
}

// === impl SpiffeIdTemplate ===

impl SpiffeIdTemplate {
    /// Parses a SPIFFE ID or a SPIFFE ID template from untrusted text, strictly.
    ///
    /// Text without braces must be a valid SPIFFE ID, as for [`ids::parse_spiffe_id`].
    ///
    /// # Errors
    ///
    /// [`TemplateError::InvalidId`] when the text is not a SPIFFE ID even with its placeholders
    /// filled, [`TemplateError::PlaceholderInTrustDomain`],
    /// [`TemplateError::MalformedPlaceholder`], [`TemplateError::UnknownPlaceholder`] or
    /// [`TemplateError::UnusablePlaceholder`] for a bad placeholder.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let invalid = |source: IdError| TemplateError::InvalidId {
            template: text.to_owned(),
            source,
        };
        if !has_brace(text) {
            return ids::parse_spiffe_id(text).map(Self::from).map_err(invalid);
        }
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(invalid(IdError::TooLong {
                length: text.len(),
                max: MAX_TEMPLATE_LEN,
            }));
        }

        let (prefix, trust_domain, path) = split_id(text);
        if has_brace(trust_domain) {
            return Err(TemplateError::PlaceholderInTrustDomain {
                template: text.to_owned(),
            });
        }
        let segments = path
            .split('/')
            .skip(1)
            .map(|segment| parse_segment(text, segment))
            .collect::<Result<Vec<_>, _>>()?;

        // The literal parts are valid exactly when the ID with every placeholder replaced by a
        // one-letter segment is a valid SPIFFE ID.
        let probe: Vec<&str> = segments.iter().map(Segment::probe).collect();
        let probe_id = format!("{prefix}/{}", probe.join("/"));
        let probe_id = ids::parse_spiffe_id(&probe_id).map_err(invalid)?;
        Ok(Self {
            form: Form::Template {
                trust_domain: probe_id.trust_domain().clone(),
                path: path.to_owned(),
                segments,
            },
        })
    }

    /// Parses the API's split form: a trust domain name and a path that may hold placeholders.
    ///
    /// # Errors
    ///
    /// [`TemplateError::PlaceholderInTrustDomain`] when the trust domain has a brace,
    /// [`TemplateError::InvalidId`] when it is not a valid trust domain name, and otherwise as
    /// for [`SpiffeIdTemplate::parse`].
    pub fn from_parts(trust_domain: &str, path: &str) -> Result<Self, TemplateError> {
        let text = format!("spiffe://{trust_domain}{path}");
        if has_brace(trust_domain) {
            return Err(TemplateError::PlaceholderInTrustDomain { template: text });
        }
        ids::parse_trust_domain(trust_domain).map_err(|source| TemplateError::InvalidId {
            template: text.clone(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Splits the ID into the API's trust domain and path fields, placeholders included.
    pub fn to_proto(&self) -> Spiffeid {
        Spiffeid {
            trust_domain: self.trust_domain().to_string(),
            path: self.path().to_owned(),
        }
    }

    /// Returns the trust domain, which never contains placeholders.
    pub fn trust_domain(&self) -> &TrustDomain {
        match &self.form {
            Form::Plain(id) => id.trust_domain(),
            Form::Template { trust_domain, .. } => trust_domain,
        }
    }

    /// Returns the path as written, placeholders included.
    pub fn path(&self) -> &str {
        match &self.form {
            Form::Plain(id) => id.path(),
            Form::Template { path, .. } => path,
        }
    }

    /// Returns whether the path has at least one placeholder.
    pub fn is_template(&self) -> bool {
        matches!(self.form, Form::Template { .. })
    }

    /// Returns the SPIFFE ID itself when the path has no placeholders.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        match &self.form {
            Form::Plain(id) => Some(id),
            Form::Template { .. } => None,
        }
    }

    /// Returns the placeholders in path order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        let segments: &[Segment] = match &self.form {
            Form::Plain(_) => &[],
            Form::Template { segments, .. } => segments,
        };
        segments.iter().filter_map(|segment| match segment {
            Segment::Placeholder(placeholder) => Some(placeholder),
            Segment::Literal(_) => None,
        })
    }

    /// Fills every placeholder from the workload's `selectors` and returns the concrete SPIFFE
    /// ID. A plain SPIFFE ID is returned as it is.
    ///
    /// # Errors
    ///
    /// [`ExpansionError::MissingSelector`] or [`ExpansionError::AmbiguousSelector`] unless
    /// exactly one selector fills a placeholder, [`ExpansionError::InvalidValue`] when its value
    /// is not a valid path segment, [`ExpansionError::InvalidId`] when the result is not a valid
    /// SPIFFE ID (too long).
    pub fn expand(&self, selectors: &[Selector]) -> Result<SpiffeId, ExpansionError> {
        let (trust_domain, segments) = match &self.form {
            Form::Plain(id) => return Ok(id.clone()),
            Form::Template {
                trust_domain,
                segments,
                ..
            } => (trust_domain, segments),
        };
        let mut path = String::new();
        for segment in segments {
            let value = match segment {
                Segment::Literal(literal) => literal.as_str(),
                Segment::Placeholder(placeholder) => placeholder.value_in(selectors)?,
            };
            path.push('/');
            path.push_str(value);
        }
        ids::parse_spiffe_id(&format!("spiffe://{trust_domain}{path}")).map_err(|error| {
            ExpansionError::InvalidId {
                reason: error.to_string(),
            }
        })
    }

    /// Checks that `id` is an expansion of this template: same trust domain and number of path
    /// segments, literal segments equal, and a valid path segment in each placeholder's place.
    ///
    /// This cannot show that the values are the workload's own selectors: whoever asks with such
    /// an ID is trusted to have attested the workload.
    ///
    /// # Errors
    ///
    /// Each [`ConcreteIdError`] variant names the first difference found.
    pub fn check_expansion(&self, id: &SpiffeId) -> Result<(), ConcreteIdError> {
        if id.trust_domain() != self.trust_domain() {
            return Err(ConcreteIdError::ForeignTrustDomain {
                id: id.to_string(),
                template: self.to_string(),
            });
        }
        let segments = self.segments();
        let values: Vec<&str> = id.path().split('/').skip(1).collect();
        if values.len() != segments.len() {
            return Err(ConcreteIdError::SegmentCount {
                id: id.to_string(),
                template: self.to_string(),
                expected: segments.len(),
                actual: values.len(),
            });
        }
        for (position, (segment, value)) in segments.iter().zip(values).enumerate() {
            self.check_segment(id, position + 1, segment, value)?;
        }
        Ok(())
    }

    /// Returns the path segments, split from the path of a plain SPIFFE ID.
    fn segments(&self) -> Cow<'_, [Segment]> {
        match &self.form {
            Form::Plain(id) => Cow::Owned(literal_segments(id.path())),
            Form::Template { segments, .. } => Cow::Borrowed(segments),
        }
    }

    fn check_segment(
        &self,
        id: &SpiffeId,
        position: usize,
        segment: &Segment,
        value: &str,
    ) -> Result<(), ConcreteIdError> {
        match segment {
            Segment::Literal(literal) if literal != value => {
                Err(ConcreteIdError::LiteralMismatch {
                    id: id.to_string(),
                    template: self.to_string(),
                    position,
                    expected: literal.clone(),
                })
            }
            Segment::Placeholder(placeholder) if !placeholder.can_fill(value) => {
                Err(ConcreteIdError::InvalidValue {
                    id: id.to_string(),
                    placeholder: placeholder.to_string(),
                    value: value.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

impl From<SpiffeId> for SpiffeIdTemplate {
    fn from(id: SpiffeId) -> Self {
        Self {
            form: Form::Plain(id),
        }
    }
}

impl fmt::Display for SpiffeIdTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain(), self.path())
    }
}

// === impl Placeholder ===

impl Placeholder {
    /// Returns whether `value` is a valid path segment that a selector of this placeholder can
    /// have, so the server rejects `/unix/uid/root` for `{unix:uid}`.
    fn can_fill(&self, value: &str) -> bool {
        let selector_value = format!("{}:{value}", self.key);
        is_path_segment(value) && Selector::new(&self.kind, &selector_value).is_ok()
    }

    /// Returns the selector type, for example `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Returns the key within the type, for example `uid`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Returns the value of the one selector `TYPE:KEY:VALUE` among `selectors`, if it is a valid
    /// path segment.
    fn value_in<'a>(&self, selectors: &'a [Selector]) -> Result<&'a str, ExpansionError> {
        let values: Vec<&str> = selectors
            .iter()
            .filter(|selector| selector.kind() == self.kind)
            .filter_map(|selector| {
                let (key, value) = selector.value().split_once(':')?;
                (key == self.key).then_some(value)
            })
            .collect();
        let value = match values.as_slice() {
            [value] => *value,
            [] => {
                return Err(ExpansionError::MissingSelector {
                    placeholder: self.to_string(),
                });
            }
            several => {
                return Err(ExpansionError::AmbiguousSelector {
                    placeholder: self.to_string(),
                    count: several.len(),
                });
            }
        };
        if !is_path_segment(value) {
            return Err(ExpansionError::InvalidValue {
                placeholder: self.to_string(),
                value: value.to_owned(),
            });
        }
        Ok(value)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}:{}}}", self.kind, self.key)
    }
}

// === impl Segment ===

impl Segment {
    /// Returns the segment with a placeholder replaced by a valid one-letter segment.
    fn probe(&self) -> &str {
        match self {
            Self::Literal(literal) => literal,
            Self::Placeholder(_) => "x",
        }
    }
}

/// Returns whether `value` may be a SPIFFE ID path segment: not empty, not `.` or `..`, and only
/// letters, digits, `.`, `-` and `_`.
pub fn is_path_segment(value: &str) -> bool {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_');
    !value.is_empty() && value != "." && value != ".." && value.bytes().all(allowed)
}

fn literal_segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .skip(1)
        .map(|segment| Segment::Literal(segment.to_owned()))
        .collect()
}

fn has_brace(text: &str) -> bool {
    text.contains(['{', '}'])
}

/// Splits `spiffe://<trust domain><path>` into the part before the path, the trust domain and
/// the path, without validating any of them. Text without the scheme keeps its prefix, so that
/// the SPIFFE ID parser rejects it.
fn split_id(text: &str) -> (&str, &str, &str) {
    let scheme_len = if text.starts_with(SCHEME) {
        SCHEME.len()
    } else {
        0
    };
    let path_start = text
        .get(scheme_len..)
        .and_then(|rest| rest.find('/'))
        .map_or(text.len(), |index| scheme_len + index);
    let (prefix, path) = text.split_at(path_start);
    let trust_domain = prefix.get(scheme_len..).unwrap_or_default();
    (prefix, trust_domain, path)
}

fn parse_segment(template: &str, segment: &str) -> Result<Segment, TemplateError> {
    if !has_brace(segment) {
        return Ok(Segment::Literal(segment.to_owned()));
    }
    let malformed = || TemplateError::MalformedPlaceholder {
        template: template.to_owned(),
        segment: segment.to_owned(),
    };
    let inner = segment
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|inner| !has_brace(inner))
        .ok_or_else(malformed)?;
    let (kind, key) = inner.split_once(':').ok_or_else(malformed)?;
    if kind.is_empty() || key.is_empty() {
        return Err(malformed());
    }
    if !selector::is_known_key(kind, key) {
        return Err(TemplateError::UnknownPlaceholder {
            template: template.to_owned(),
            placeholder: segment.to_owned(),
            known: selector::known_keys(),
        });
    }
    if PATH_VALUED_KEYS.contains(&(kind, key)) {
        return Err(TemplateError::UnusablePlaceholder {
            template: template.to_owned(),
            placeholder: segment.to_owned(),
        });
    }
    Ok(Segment::Placeholder(Placeholder {
        kind: kind.to_owned(),
        key: key.to_owned(),
    }))
}

const SCHEME: &str = "spiffe://";

/// Selector keys whose values are absolute paths, which contain `/` and so are never a path
/// segment.
const PATH_VALUED_KEYS: &[(&str, &str)] = &[("unix", "path")];

/// Longest accepted template, the bound the SPIFFE ID standard sets for the IDs it expands to.
const MAX_TEMPLATE_LEN: usize = 2048;

#[cfg(test)]
mod tests;
