use super::*;

fn template(text: &str) -> SpiffeIdTemplate {
    SpiffeIdTemplate::parse(text).unwrap()
}

fn selectors(texts: &[&str]) -> Vec<Selector> {
    texts
        .iter()
        .map(|text| Selector::parse(text).unwrap())
        .collect()
}

fn id(text: &str) -> SpiffeId {
    SpiffeId::new(text).unwrap()
}

#[test]
fn plain_id_parses_as_concrete() {
    let parsed = template("spiffe://example.org/web/api");
    assert!(!parsed.is_template());
    assert_eq!(
        parsed.spiffe_id(),
        Some(&id("spiffe://example.org/web/api"))
    );
    assert_eq!(parsed.to_string(), "spiffe://example.org/web/api");
    assert_eq!(parsed.placeholders().count(), 0);
}

#[test]
fn template_keeps_text_as_written() {
    let text = "spiffe://example.org/ns/{unix:group}/uid/{unix:uid}";
    let parsed = template(text);
    assert!(parsed.is_template());
    assert_eq!(parsed.spiffe_id(), None);
    assert_eq!(parsed.to_string(), text);
    assert_eq!(parsed.path(), "/ns/{unix:group}/uid/{unix:uid}");
    assert_eq!(parsed.trust_domain().as_str(), "example.org");
    let names: Vec<String> = parsed.placeholders().map(ToString::to_string).collect();
    assert_eq!(names, ["{unix:group}", "{unix:uid}"]);
}

#[test]
fn from_parts_matches_parse() {
    let parts = SpiffeIdTemplate::from_parts("example.org", "/uid/{unix:uid}").unwrap();
    assert_eq!(parts, template("spiffe://example.org/uid/{unix:uid}"));
    let plain = SpiffeIdTemplate::from_parts("example.org", "/web").unwrap();
    assert_eq!(
        plain,
        SpiffeIdTemplate::from(id("spiffe://example.org/web"))
    );
}

#[test]
fn from_parts_rejects_smuggled_trust_domain() {
    for (trust_domain, path) in [
        ("example.org/admin", "/{unix:uid}"),
        ("example.org/{unix:uid}", ""),
        ("{unix:uid}", "/web"),
        ("Example.org", "/{unix:uid}"),
    ] {
        assert!(
            SpiffeIdTemplate::from_parts(trust_domain, path).is_err(),
            "{trust_domain:?} {path:?} accepted"
        );
    }
}

#[test]
fn parse_rejects_bad_templates() {
    let cases = [
        ("spiffe://{unix:uid}.org/web", "trust_domain"),
        ("spiffe://example.{unix:uid}/web", "trust_domain"),
        ("spiffe://example.org/uid-{unix:uid}", "malformed"),
        ("spiffe://example.org/{unix:uid}x", "malformed"),
        ("spiffe://example.org/{unix:uid", "malformed"),
        ("spiffe://example.org/unix:uid}", "malformed"),
        ("spiffe://example.org/{}", "malformed"),
        ("spiffe://example.org/{:uid}", "malformed"),
        ("spiffe://example.org/{unix:}", "malformed"),
        ("spiffe://example.org/{unix}", "malformed"),
        ("spiffe://example.org/{{unix:uid}}", "malformed"),
        ("spiffe://example.org/{unix:uid}{unix:gid}", "malformed"),
        ("spiffe://example.org/{k8s:ns}", "unknown"),
        ("spiffe://example.org/{unix:pid}", "unknown"),
        ("spiffe://example.org/{unix:uid:0}", "unknown"),
        ("spiffe://example.org/{spiffe_id:x}", "unknown"),
        ("spiffe://example.org/bin/{unix:path}", "unusable"),
        ("spiffe://example.org/{unix:uid}/", "invalid"),
        ("spiffe://example.org//{unix:uid}", "invalid"),
        ("spiffe://example.org/../{unix:uid}", "invalid"),
        ("spiffe://example.org/a%2Fb/{unix:uid}", "invalid"),
        ("spiffe://Example.org/{unix:uid}", "invalid"),
        ("spiffe://example.org:8443/{unix:uid}", "invalid"),
        ("http://example.org/{unix:uid}", "invalid"),
        ("example.org/{unix:uid}", "invalid"),
        ("spiffe://example.org/web/", "invalid"),
    ];
    for (text, expected) in cases {
        let kind = match SpiffeIdTemplate::parse(text).unwrap_err() {
            TemplateError::InvalidId { .. } => "invalid",
            TemplateError::PlaceholderInTrustDomain { .. } => "trust_domain",
            TemplateError::MalformedPlaceholder { .. } => "malformed",
            TemplateError::UnknownPlaceholder { .. } => "unknown",
            TemplateError::UnusablePlaceholder { .. } => "unusable",
        };
        assert_eq!(kind, expected, "template {text:?}");
    }
}

#[test]
fn parse_error_names_template_and_segment() {
    let message = SpiffeIdTemplate::parse("spiffe://example.org/uid-{unix:uid}")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("spiffe://example.org/uid-{unix:uid}"),
        "{message}"
    );
    assert!(message.contains("\"uid-{unix:uid}\""), "{message}");

    let message = SpiffeIdTemplate::parse("spiffe://example.org/{k8s:ns}")
        .unwrap_err()
        .to_string();
    assert!(message.contains("{k8s:ns}"), "{message}");
    assert!(message.contains("unix:uid"), "{message}");
}

#[test]
fn parse_limits_template_length() {
    let many = "/{unix:uid}".repeat(200);
    let text = format!("spiffe://example.org{many}");
    assert!(matches!(
        SpiffeIdTemplate::parse(&text),
        Err(TemplateError::InvalidId {
            source: IdError::TooLong { .. },
            ..
        })
    ));
}

#[test]
fn expand_fills_placeholders() {
    let parsed = template("spiffe://example.org/group/{unix:group}/uid/{unix:uid}");
    let present = selectors(&["unix:uid:65534", "unix:group:nogroup", "unix:gid:65534"]);
    assert_eq!(
        parsed.expand(&present).unwrap(),
        id("spiffe://example.org/group/nogroup/uid/65534")
    );
}

#[test]
fn expand_returns_plain_id_unchanged() {
    let parsed = template("spiffe://example.org/web");
    assert_eq!(parsed.expand(&[]).unwrap(), id("spiffe://example.org/web"));
}

#[test]
fn expand_rejects_missing_or_ambiguous_selector() {
    let parsed = template("spiffe://example.org/gid/{unix:supplementary_gid}");
    assert_eq!(
        parsed.expand(&selectors(&["unix:uid:0"])),
        Err(ExpansionError::MissingSelector {
            placeholder: "{unix:supplementary_gid}".to_owned()
        })
    );
    let two = selectors(&["unix:supplementary_gid:10", "unix:supplementary_gid:20"]);
    assert_eq!(
        parsed.expand(&two),
        Err(ExpansionError::AmbiguousSelector {
            placeholder: "{unix:supplementary_gid}".to_owned(),
            count: 2,
        })
    );
}

#[test]
fn expand_ignores_selectors_of_other_keys() {
    // `unix:user` must not match a user name that merely starts with "user".
    let parsed = template("spiffe://example.org/user/{unix:user}");
    let present = selectors(&["unix:group:user", "unix:user:alice"]);
    assert_eq!(
        parsed.expand(&present).unwrap(),
        id("spiffe://example.org/user/alice")
    );
}

#[test]
fn expand_rejects_values_that_are_no_path_segment() {
    let parsed = template("spiffe://example.org/user/{unix:user}");
    for value in [
        "..", ".", "a/b", "a%2Fb", "a b", "émile", "a:b", "a?b", "a#b",
    ] {
        let present = selectors(&[&format!("unix:user:{value}")]);
        assert_eq!(
            parsed.expand(&present),
            Err(ExpansionError::InvalidValue {
                placeholder: "{unix:user}".to_owned(),
                value: value.to_owned(),
            }),
            "value {value:?}"
        );
    }
}

#[test]
fn parse_error_says_why_path_placeholder_is_rejected() {
    let message = SpiffeIdTemplate::parse("spiffe://example.org/bin/{unix:path}")
        .unwrap_err()
        .to_string();
    assert!(message.contains("{unix:path}"), "{message}");
    assert!(message.contains("contain '/'"), "{message}");
}

#[test]
fn expand_rejects_too_long_result() {
    let parsed = template("spiffe://example.org/user/{unix:user}");
    let long_user = format!("unix:user:{}", "a".repeat(2048));
    assert!(matches!(
        parsed.expand(&selectors(&[&long_user])),
        Err(ExpansionError::InvalidId { .. })
    ));
}

#[test]
fn path_segment_accepts_exactly_the_spec_characters() {
    for byte in 0u8..=255 {
        let text = String::from_utf8_lossy(&[byte]).into_owned();
        let expected = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_');
        assert_eq!(is_path_segment(&text), expected, "byte {byte:#04x}");
    }
    assert!(is_path_segment("..."));
    assert!(is_path_segment("a.b"));
    assert!(!is_path_segment(""));
    assert!(!is_path_segment(".."));
}

#[test]
fn check_expansion_accepts_expanded_ids() {
    let parsed = template("spiffe://example.org/unix/uid/{unix:uid}");
    assert_eq!(
        parsed.check_expansion(&id("spiffe://example.org/unix/uid/1000")),
        Ok(())
    );
    let present = selectors(&["unix:uid:0"]);
    let expanded = parsed.expand(&present).unwrap();
    assert_eq!(parsed.check_expansion(&expanded), Ok(()));
}

#[test]
fn check_expansion_rejects_other_ids() {
    let parsed = template("spiffe://example.org/unix/uid/{unix:uid}");
    let cases = [
        ("spiffe://other.org/unix/uid/1000", "trust_domain"),
        ("spiffe://example.org.evil/unix/uid/1000", "trust_domain"),
        ("spiffe://example.org/unix/uid/1000/admin", "count"),
        ("spiffe://example.org/unix/uid", "count"),
        ("spiffe://example.org/unix/uid/a/b", "count"),
        ("spiffe://example.org/admin/uid/1000", "literal"),
        ("spiffe://example.org/unix/gid/0", "literal"),
        ("spiffe://example.org/unix/uid/...", "value"),
        ("spiffe://example.org/unix/uid/root", "value"),
        ("spiffe://example.org/unix/uid/007", "value"),
    ];
    for (text, expected) in cases {
        let kind = match parsed.check_expansion(&id(text)) {
            Ok(()) => "ok",
            Err(ConcreteIdError::ForeignTrustDomain { .. }) => "trust_domain",
            Err(ConcreteIdError::SegmentCount { .. }) => "count",
            Err(ConcreteIdError::LiteralMismatch { .. }) => "literal",
            Err(ConcreteIdError::InvalidValue { .. }) => "value",
        };
        assert_eq!(kind, expected, "concrete ID {text:?}");
    }
}

#[test]
fn check_expansion_accepts_user_names_as_segments() {
    let parsed = template("spiffe://example.org/user/{unix:user}");
    assert_eq!(
        parsed.check_expansion(&id("spiffe://example.org/user/svc.web-1")),
        Ok(())
    );
}

#[test]
fn check_expansion_never_sees_dot_segments_or_escapes() {
    // The SPIFFE ID parser already rejects these, so they cannot reach the template check.
    for text in [
        "spiffe://example.org/unix/uid/..",
        "spiffe://example.org/unix/uid/.",
        "spiffe://example.org/unix/uid/a%2Fb",
        "spiffe://example.org/unix/uid/",
    ] {
        assert!(ids::parse_spiffe_id(text).is_err(), "{text:?} parsed");
    }
}

#[test]
fn check_expansion_of_plain_id_requires_equality() {
    let plain = SpiffeIdTemplate::from(id("spiffe://example.org/web"));
    assert_eq!(
        plain.check_expansion(&id("spiffe://example.org/web")),
        Ok(())
    );
    assert!(
        plain
            .check_expansion(&id("spiffe://example.org/db"))
            .is_err()
    );
}
