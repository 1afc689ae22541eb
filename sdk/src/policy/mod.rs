//! The request policy: rules over the peer, the caller, the HTTP method and the path, that allow
//! or deny each request.
//!
//! A rule matches a request when every condition it sets holds:
//!
//! - `peer`: the SPIFFE ID of the TLS peer matches one of the patterns;
//! - `caller`: the request carries a valid caller JWT-SVID whose SPIFFE ID matches one of the
//!   patterns;
//! - `methods`: the HTTP method is one of them, where `GET` also covers `HEAD`, because servers
//!   such as axum run their `GET` handler for `HEAD`;
//! - `paths` and `grpc`: the request path matches one of the [`PathPattern`]s, where a gRPC
//!   entry `package.Service/Method` stands for the path `/package.Service/Method` and
//!   `package.Service/*` for every method of the service.
//!
//! A condition that a rule leaves out matches everything; a condition with an empty list is an
//! error, so that `paths = []` never reads as "any path". The decision is:
//!
//! 0. deny as a bad request, before any rule is checked, when the path or the method is not in
//!    the canonical form defined below, which the [`layer`](crate::layer) turns into 400;
//! 1. deny, when any deny rule matches (deny wins over allow);
//! 2. allow, when any allow rule matches;
//! 3. otherwise deny (default deny). When the request has no caller and an allow rule would
//!    match it with a caller, the denial states that a caller JWT-SVID is required, which the
//!    [`layer`](crate::layer) turns into 401 instead of 403.
//!
//! An allow rule must name a peer or a caller, so that no rule allows anyone by accident. A deny
//! rule may name neither, and then applies to every peer and caller.
//!
//! A request path is canonical when it starts with `/`, has no empty segment (one trailing `/`
//! is allowed and matched as if absent: `/admin/` is `/admin`), no `.` or `..` segment (also
//! not as `%2e`, nor followed by `;` parameters as in `..;`), no `\`, and no percent-encoding
//! of `/`, `\`, `%` or of a character that needs none (letters, digits, `-`, `.`, `_`, `~`).
//! A method is canonical when it has no lower-case letter: methods are case-sensitive, so
//! `delete` is rejected rather than compared with `DELETE`.
//!
//! In [`Mode::Shadow`] the policy decides as usual, but the layer lets denied requests through
//! and logs what it would have denied.

mod canonical;
mod file;
mod reload;
mod tree;

use std::fmt;
use std::sync::Arc;

use http::Method;
use spiffe::SpiffeId;

use crate::pattern::{PathPattern, PatternError, SpiffeIdPattern};

pub use file::{LineError, PolicyFileError};
pub use reload::{PolicyWatcher, SharedPolicy};

/// The action of a matching rule.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Effect {
    /// The request goes on to the service.
    Allow,
    /// The request is rejected.
    Deny,
}

/// Whether denials are enforced or only logged.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Mode {
    /// Denied requests are rejected.
    #[default]
    Enforce,
    /// Denied requests go through, and each is logged as a request that would be denied.
    Shadow,
}

/// A validated policy: its mode and its rules in order.
#[derive(Clone, Debug)]
pub struct Policy {
    mode: Mode,
    rules: Vec<Rule>,
}

/// Builds a [`Policy`] in code.
#[derive(Clone, Debug, Default)]
pub struct PolicyBuilder {
    mode: Mode,
    rules: Vec<RuleBuilder>,
}

/// A validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    name: Arc<str>,
    effect: Effect,
    peers: Vec<SpiffeIdPattern>,
    callers: Vec<SpiffeIdPattern>,
    methods: Vec<Method>,
    paths: Vec<PathPattern>,
}

/// The unvalidated values of one rule, as written in code or in a policy file.
///
/// [`PolicyBuilder::build`] validates them.
#[derive(Clone, Debug)]
pub struct RuleBuilder {
    name: Option<String>,
    effect: Effect,
    peers: Vec<String>,
    callers: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
    grpc: Vec<String>,
    /// The lists that were set empty, by key name.
    empty: Vec<&'static str>,
}

/// The facts about one request that rules match against.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// SPIFFE ID of the TLS peer, when it presented an X509-SVID.
    pub peer: Option<&'a SpiffeId>,
    /// SPIFFE ID of the validated caller JWT-SVID, when the request carried one.
    pub caller: Option<&'a SpiffeId>,
    /// The HTTP method.
    pub method: &'a Method,
    /// The request path, without the query and without the authority of an absolute-form
    /// request target.
    pub path: &'a str,
}

/// The outcome of [`Policy::evaluate`] and the reason for it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub effect: Effect,
    /// The rule, or the absence of one, that decided.
    pub reason: DecisionReason,
}

/// The cause of a [`Decision`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum DecisionReason {
    /// The path or the method is not in canonical form (see the module documentation), so no
    /// rule was checked.
    NotCanonical(&'static str),
    /// No rule matched and no caller would have helped.
    DefaultDeny,
    /// No rule matched, but the named allow rule would match a request with a suitable caller
    /// JWT-SVID, and the request had none.
    MissingCaller(Arc<str>),
    /// The named rule matched.
    Rule(Arc<str>),
}

/// Error from validating one rule. Every variant names the rejected value.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A `peer` value is not a valid SPIFFE ID pattern.
    #[error("invalid peer")]
    Peer(#[source] PatternError),
    /// A `caller` value is not a valid SPIFFE ID pattern.
    #[error("invalid caller")]
    Caller(#[source] PatternError),
    /// A `paths` value is not a valid path pattern.
    #[error("invalid path")]
    Path(#[source] PatternError),
    /// A `grpc` value is not `package.Service/Method` or `package.Service/*`.
    #[error("invalid gRPC method {0:?}: write \"package.Service/Method\" or \"package.Service/*\"")]
    GrpcMethod(String),
    /// A `methods` value is not a standard HTTP method.
    #[error("unknown HTTP method {0:?}: use GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, ...")]
    UnknownMethod(String),
    /// A list condition was set to an empty list, which would read as "anything".
    #[error("{0:?} is an empty list: list at least one value, or leave the condition out")]
    EmptyList(&'static str),
    /// An allow rule names neither a peer nor a caller.
    #[error(
        "an allow rule must name a peer or a caller (use \"spiffe://<trust domain>/**\" for all)"
    )]
    NoIdentity,
}

/// Error from [`PolicyBuilder::build`]: the first invalid rule.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("invalid policy rule {rule:?}")]
pub struct PolicyError {
    /// Name of the rule, or `rule #N` (from 1) when it has none.
    pub rule: String,
    /// The invalid value and its defect.
    #[source]
    pub error: RuleError,
}

// === impl Policy ===

impl Policy {
    /// Returns a builder for a policy in enforce mode with no rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use signet_sdk::policy::{Policy, RuleBuilder};
    ///
    /// let policy = Policy::builder()
    ///     .rule(
    ///         RuleBuilder::allow()
    ///             .name("billing-batch reads orders")
    ///             .peer("spiffe://example.org/gateway")
    ///             .caller("spiffe://example.org/billing-batch")
    ///             .methods(["GET"])
    ///             .paths(["/orders/*"]),
    ///     )
    ///     .build()?;
    /// # Ok::<(), signet_sdk::policy::PolicyError>(())
    /// ```
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Returns the mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Returns the rules in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides on one request, as the module documentation describes.
    pub fn evaluate(&self, request: &RequestFacts<'_>) -> Decision {
        let defect = canonical::method_defect(request.method.as_str())
            .or_else(|| canonical::path_defect(request.path));
        if let Some(defect) = defect {
            return Decision {
                effect: Effect::Deny,
                reason: DecisionReason::NotCanonical(defect),
            };
        }
        let request = &RequestFacts {
            path: canonical::matched_path(request.path),
            ..*request
        };
        let decide = |effect, rule: &Rule| Decision {
            effect,
            reason: DecisionReason::Rule(rule.name.clone()),
        };
        if let Some(rule) = self.matching(Effect::Deny, request) {
            return decide(Effect::Deny, rule);
        }
        if let Some(rule) = self.matching(Effect::Allow, request) {
            return decide(Effect::Allow, rule);
        }

        let wants_caller = request.caller.is_none().then(|| {
            self.rules.iter().find(|rule| {
                rule.effect == Effect::Allow
                    && !rule.callers.is_empty()
                    && rule.matches_without_caller(request)
            })
        });
        let reason = match wants_caller.flatten() {
            Some(rule) => DecisionReason::MissingCaller(rule.name.clone()),
            None => DecisionReason::DefaultDeny,
        };
        Decision {
            effect: Effect::Deny,
            reason,
        }
    }

    fn matching(&self, effect: Effect, request: &RequestFacts<'_>) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.effect == effect && rule.matches(request))
    }
}

// === impl PolicyBuilder ===

impl PolicyBuilder {
    /// Sets the mode; the default is [`Mode::Enforce`].
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Appends a rule.
    #[must_use]
    pub fn rule(mut self, rule: RuleBuilder) -> Self {
        self.rules.push(rule);
        self
    }

    /// Validates every rule and returns the policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] naming the first invalid rule and its invalid value.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| {
                let name = rule.name_or_position(index);
                rule.build(name.clone())
                    .map_err(|error| PolicyError { rule: name, error })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            mode: self.mode,
            rules,
        })
    }
}

// === impl Rule ===

impl Rule {
    /// Returns the rule's name, or `rule #N` (from 1) when it was given none.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the rule's effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Returns whether the rule has a `caller` condition.
    pub fn names_caller(&self) -> bool {
        !self.callers.is_empty()
    }

    fn matches(&self, request: &RequestFacts<'_>) -> bool {
        self.matches_without_caller(request) && any_id(&self.callers, request.caller)
    }

    fn matches_without_caller(&self, request: &RequestFacts<'_>) -> bool {
        any_id(&self.peers, request.peer)
            && (self.methods.is_empty() || self.methods.iter().any(|m| covers(m, request.method)))
            && (self.paths.is_empty() || self.paths.iter().any(|path| path.matches(request.path)))
    }
}

// === impl RuleBuilder ===

impl RuleBuilder {
    /// Starts an allow rule that matches everything until conditions are added.
    pub fn allow() -> Self {
        Self::new(Effect::Allow)
    }

    /// Starts a deny rule that matches everything until conditions are added.
    pub fn deny() -> Self {
        Self::new(Effect::Deny)
    }

    /// Starts a rule with `effect`.
    pub fn new(effect: Effect) -> Self {
        Self {
            name: None,
            effect,
            peers: Vec::new(),
            callers: Vec::new(),
            methods: Vec::new(),
            paths: Vec::new(),
            grpc: Vec::new(),
            empty: Vec::new(),
        }
    }

    /// Sets the name that logs show when this rule decides.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a [`SpiffeIdPattern`] the peer may match.
    #[must_use]
    pub fn peer(mut self, pattern: impl Into<String>) -> Self {
        self.peers.push(pattern.into());
        self
    }

    /// Adds a [`SpiffeIdPattern`] the caller may match.
    #[must_use]
    pub fn caller(mut self, pattern: impl Into<String>) -> Self {
        self.callers.push(pattern.into());
        self
    }

    /// Adds HTTP methods, such as `GET`, in any letter case.
    #[must_use]
    pub fn methods<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        extend(&mut self.methods, methods, "methods", &mut self.empty);
        self
    }

    /// Adds [`PathPattern`]s.
    #[must_use]
    pub fn paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        extend(&mut self.paths, paths, "paths", &mut self.empty);
        self
    }

    /// Adds gRPC methods as `package.Service/Method`, or `package.Service/*` for all methods of
    /// a service.
    #[must_use]
    pub fn grpc<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        extend(&mut self.grpc, methods, "grpc", &mut self.empty);
        self
    }

    fn name_or_position(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("rule #{}", index + 1))
    }

    /// Validates the values, reporting the first invalid one.
    fn build(self, name: String) -> Result<Rule, RuleError> {
        if let Some(key) = self.empty.first() {
            return Err(RuleError::EmptyList(key));
        }
        if self.effect == Effect::Allow && self.peers.is_empty() && self.callers.is_empty() {
            return Err(RuleError::NoIdentity);
        }
        let ids = |patterns: Vec<String>| -> Result<Vec<_>, PatternError> {
            patterns
                .iter()
                .map(|text| SpiffeIdPattern::parse(text))
                .collect()
        };
        let mut paths: Vec<PathPattern> = self
            .paths
            .iter()
            .map(|text| PathPattern::parse(text))
            .collect::<Result<_, _>>()
            .map_err(RuleError::Path)?;
        for method in &self.grpc {
            paths.push(grpc_path(method)?);
        }
        Ok(Rule {
            name: name.into(),
            effect: self.effect,
            peers: ids(self.peers).map_err(RuleError::Peer)?,
            callers: ids(self.callers).map_err(RuleError::Caller)?,
            methods: self
                .methods
                .iter()
                .map(|text| http_method(text))
                .collect::<Result<_, _>>()?,
            paths,
        })
    }
}

// === impl DecisionReason ===

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCanonical(defect) => write!(f, "request not in canonical form: {defect}"),
            Self::DefaultDeny => f.write_str("default deny"),
            Self::MissingCaller(rule) => write!(f, "{rule} (no caller JWT-SVID)"),
            Self::Rule(rule) => f.write_str(rule),
        }
    }
}

/// Returns whether `id` matches one of `patterns`, or `patterns` sets no condition.
fn any_id(patterns: &[SpiffeIdPattern], id: Option<&SpiffeId>) -> bool {
    patterns.is_empty() || id.is_some_and(|id| patterns.iter().any(|pattern| pattern.matches(id)))
}

/// Appends `values` to `list`, recording `key` in `empty` when there are none.
fn extend<I: IntoIterator<Item = S>, S: Into<String>>(
    list: &mut Vec<String>,
    values: I,
    key: &'static str,
    empty: &mut Vec<&'static str>,
) {
    let before = list.len();
    list.extend(values.into_iter().map(Into::into));
    if list.len() == before {
        empty.push(key);
    }
}

/// Returns whether the rule method `rule` covers the request method `request`: itself, and
/// `GET` also `HEAD`.
fn covers(rule: &Method, request: &Method) -> bool {
    rule == request || (*rule == Method::GET && *request == Method::HEAD)
}

/// Parses a standard HTTP method in any letter case.
fn http_method(text: &str) -> Result<Method, RuleError> {
    let upper = text.to_ascii_uppercase();
    STANDARD_METHODS
        .iter()
        .find(|method| method.as_str() == upper)
        .cloned()
        .ok_or_else(|| RuleError::UnknownMethod(text.to_owned()))
}

/// Turns `package.Service/Method` into the path pattern of its requests.
fn grpc_path(method: &str) -> Result<PathPattern, RuleError> {
    let invalid = || RuleError::GrpcMethod(method.to_owned());
    let (service, name) = method.split_once('/').ok_or_else(invalid)?;
    let valid_part = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._".contains(c))
    };
    if !valid_part(service) || !(name == "*" || valid_part(name)) {
        return Err(invalid());
    }
    PathPattern::parse(&format!("/{service}/{name}")).map_err(|_| invalid())
}

/// The methods of RFC 9110 and PATCH (RFC 5789).
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

#[cfg(test)]
mod tests;
