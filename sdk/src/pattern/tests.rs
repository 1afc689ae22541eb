use super::*;

fn id(text: &str) -> SpiffeId {
    SpiffeId::new(text).unwrap()
}

#[test]
fn path_patterns_match_segment_wise() {
    let cases = [
        // (pattern, path, matches)
        ("/", "/", true),
        ("/", "/orders", false),
        ("/orders", "/orders", true),
        ("/orders", "/orders/", false),
        ("/orders", "/Orders", false),
        ("/orders/*", "/orders/42", true),
        ("/orders/*", "/orders", false),
        ("/orders/*", "/orders/", false),
        ("/orders/*", "/orders/42/items", false),
        ("/orders/*/items", "/orders/42/items", true),
        ("/orders/*/items", "/orders//items", false),
        ("/orders/*/items", "/orders/42/items/1", false),
        ("/orders/**", "/orders", true),
        ("/orders/**", "/orders/42", true),
        ("/orders/**", "/orders/42/items", true),
        ("/orders/**", "/orders-archive", false),
        ("/orders/**", "/ordersx/1", false),
        ("/**", "/", true),
        ("/**", "/anything/at/all", true),
        ("/orders/*", "/orders/%2e%2e", true),
        ("/orders/**", "/orders/../admin", false),
        ("/orders/**", "/orders/./42", false),
        ("/**", "/..", false),
        ("/orders/*", "orders/42", false),
        ("/orders/*", "", false),
    ];
    for (pattern, path, expected) in cases {
        let parsed = PathPattern::parse(pattern).unwrap();
        assert_eq!(
            parsed.matches(path),
            expected,
            "pattern {pattern:?} on path {path:?}"
        );
    }
}

#[test]
fn invalid_path_patterns_are_rejected_by_name() {
    let cases = [
        ("orders/*", PatternError::NotAbsolute("orders/*".to_owned())),
        ("", PatternError::NotAbsolute(String::new())),
        (
            "/orders//items",
            PatternError::EmptySegment("/orders//items".to_owned()),
        ),
        (
            "/orders/",
            PatternError::EmptySegment("/orders/".to_owned()),
        ),
        (
            "/orders/../x",
            PatternError::DotSegment("/orders/../x".to_owned()),
        ),
        ("/ord*", PatternError::PartialWildcard("/ord*".to_owned())),
        (
            "/orders/***",
            PatternError::PartialWildcard("/orders/***".to_owned()),
        ),
        (
            "/**/items",
            PatternError::InnerDoubleWildcard("/**/items".to_owned()),
        ),
    ];
    for (pattern, expected) in cases {
        assert_eq!(PathPattern::parse(pattern), Err(expected), "{pattern:?}");
    }
}

#[test]
fn path_pattern_keeps_its_text() {
    let pattern: PathPattern = "/orders/*/items".parse().unwrap();
    assert_eq!(pattern.as_str(), "/orders/*/items");
    assert_eq!(pattern.to_string(), "/orders/*/items");
}

#[test]
fn spiffe_id_patterns_match_segment_wise() {
    let cases = [
        (
            "spiffe://example.org/gateway",
            "spiffe://example.org/gateway",
            true,
        ),
        (
            "spiffe://example.org/gateway",
            "spiffe://example.org/gateway2",
            false,
        ),
        (
            "spiffe://example.org/gateway",
            "spiffe://other.org/gateway",
            false,
        ),
        (
            "spiffe://example.org/gateway",
            "spiffe://example.org/gateway/x",
            false,
        ),
        (
            "spiffe://example.org/**",
            "spiffe://example.org/anything/below",
            true,
        ),
        ("spiffe://example.org/**", "spiffe://example.org", true),
        ("spiffe://example.org/**", "spiffe://example.com/x", false),
        (
            "spiffe://example.org/ns/prod/**",
            "spiffe://example.org/ns/prod",
            true,
        ),
        (
            "spiffe://example.org/ns/prod/**",
            "spiffe://example.org/ns/prod/web",
            true,
        ),
        (
            "spiffe://example.org/ns/prod/**",
            "spiffe://example.org/ns/production",
            false,
        ),
        (
            "spiffe://example.org/ns/*/web",
            "spiffe://example.org/ns/dev/web",
            true,
        ),
        (
            "spiffe://example.org/ns/*/web",
            "spiffe://example.org/ns/dev/db",
            false,
        ),
        ("spiffe://example.org", "spiffe://example.org", true),
        ("spiffe://example.org", "spiffe://example.org/x", false),
    ];
    for (pattern, spiffe_id, expected) in cases {
        let parsed = SpiffeIdPattern::parse(pattern).unwrap();
        assert_eq!(
            parsed.matches(&id(spiffe_id)),
            expected,
            "pattern {pattern:?} on {spiffe_id:?}"
        );
    }
}

#[test]
fn invalid_spiffe_id_patterns_are_rejected_by_name() {
    let cases = [
        (
            "https://example.org/x",
            PatternError::NotSpiffe("https://example.org/x".to_owned()),
        ),
        (
            "example.org/x",
            PatternError::NotSpiffe("example.org/x".to_owned()),
        ),
        (
            "spiffe://Example.org/x",
            PatternError::InvalidTrustDomain("spiffe://Example.org/x".to_owned()),
        ),
        (
            "spiffe:///x",
            PatternError::InvalidTrustDomain("spiffe:///x".to_owned()),
        ),
        (
            "spiffe://example.org/a b",
            PatternError::InvalidSpiffeId("spiffe://example.org/a b".to_owned()),
        ),
        (
            "spiffe://example.org/x/",
            PatternError::EmptySegment("spiffe://example.org/x/".to_owned()),
        ),
        (
            "spiffe://example.org/web*",
            PatternError::PartialWildcard("spiffe://example.org/web*".to_owned()),
        ),
        (
            "spiffe://example.org/**/x",
            PatternError::InnerDoubleWildcard("spiffe://example.org/**/x".to_owned()),
        ),
    ];
    for (pattern, expected) in cases {
        assert_eq!(
            SpiffeIdPattern::parse(pattern),
            Err(expected),
            "{pattern:?}"
        );
    }
}

#[test]
fn constructors_match_like_parsed_patterns() {
    let trust_domain = TrustDomain::new("example.org").unwrap();
    let exact = SpiffeIdPattern::exact(&id("spiffe://example.org/gateway"));
    assert!(exact.matches(&id("spiffe://example.org/gateway")));
    assert!(!exact.matches(&id("spiffe://example.org/gateway/x")));
    assert_eq!(exact.to_string(), "spiffe://example.org/gateway");

    let domain = SpiffeIdPattern::trust_domain(trust_domain.clone());
    assert!(domain.matches(&id("spiffe://example.org/a/b")));
    assert!(!domain.matches(&id("spiffe://other.org/a")));
    assert_eq!(domain.to_string(), "spiffe://example.org/**");

    let prefix = SpiffeIdPattern::path_prefix(trust_domain, "/ns/prod/");
    assert!(prefix.matches(&id("spiffe://example.org/ns/prod/web")));
    assert!(!prefix.matches(&id("spiffe://example.org/ns/production")));
    assert_eq!(
        prefix,
        SpiffeIdPattern::parse("spiffe://example.org/ns/prod/**").unwrap()
    );
}

#[test]
fn every_ascii_character_in_a_pattern_parses_or_errs() {
    for byte in 0u8..=127 {
        let character = char::from(byte);
        let text = format!("/a{character}b");
        let parsed = PathPattern::parse(&text);
        if character == '*' {
            assert_eq!(parsed, Err(PatternError::PartialWildcard(text)));
        } else if character == '/' {
            assert!(parsed.is_ok());
        } else if "?#".contains(character) {
            assert_eq!(parsed, Err(PatternError::QueryOrFragment(text)));
        } else {
            assert!(parsed.unwrap().matches(&text), "{text:?}");
        }
        // SPIFFE ID patterns accept only the SPIFFE ID path characters.
        let spiffe = format!("spiffe://example.org/a{character}b");
        let valid = character.is_ascii_alphanumeric() || "-._/".contains(character);
        assert_eq!(SpiffeIdPattern::parse(&spiffe).is_ok(), valid, "{spiffe:?}");
    }
}

#[test]
fn patterns_with_a_query_are_rejected() {
    let error = PathPattern::parse("/orders?x=1").unwrap_err();
    assert_eq!(
        error,
        PatternError::QueryOrFragment("/orders?x=1".to_owned())
    );
}

#[test]
fn spiffe_id_pattern_errors_do_not_call_it_a_path_pattern() {
    let error = SpiffeIdPattern::parse("spiffe://example.org//gateway").unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("pattern \"spiffe://"), "{message}");
}
