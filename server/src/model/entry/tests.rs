//! Tests for registration entry validation.

use signet_core::ids;

use super::*;

fn trust_domain() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn proto_id(text: &str) -> Option<types::Spiffeid> {
    let rest = text.strip_prefix("spiffe://").unwrap();
    let (trust_domain, path) = match rest.split_once('/') {
        Some((trust_domain, path)) => (trust_domain, format!("/{path}")),
        None => (rest, String::new()),
    };
    Some(types::Spiffeid {
        trust_domain: trust_domain.to_owned(),
        path,
    })
}

fn valid_proto() -> types::Entry {
    types::Entry {
        id: String::new(),
        spiffe_id: proto_id("spiffe://example.org/web"),
        parent_id: proto_id("spiffe://example.org/spire/agent/join_token/abc"),
        selectors: vec![types::Selector {
            r#type: "unix".to_owned(),
            value: "uid:1000".to_owned(),
        }],
        ..types::Entry::default()
    }
}

fn full_proto() -> types::Entry {
    types::Entry {
        id: "entry-1".to_owned(),
        x509_svid_ttl: 600,
        jwt_svid_ttl: 300,
        expires_at: 4_000_000_000,
        dns_names: vec!["web.example.org".to_owned(), "*.example.org".to_owned()],
        revision_number: 3,
        hint: "hint".to_owned(),
        created_at: 1_700_000_000,
        ..valid_proto()
    }
}

fn parse(entry: types::Entry) -> Result<RegistrationEntry, EntryError> {
    RegistrationEntry::from_proto(entry, &trust_domain())
}

#[test]
fn valid_entry_is_accepted() {
    let entry = parse(full_proto()).unwrap();

    assert_eq!(entry.spiffe_id.to_string(), "spiffe://example.org/web");
    assert_eq!(
        entry.selectors,
        vec![Selector::parse("unix:uid:1000").unwrap()]
    );
    assert_eq!(entry.expires_at, 4_000_000_000);
}

#[test]
fn proto_round_trip_keeps_every_field() {
    let entry = parse(full_proto()).unwrap();

    assert_eq!(entry.to_proto(), full_proto());
    assert_eq!(parse(entry.to_proto()).unwrap(), entry);
}

#[test]
fn node_alias_entry_is_accepted() {
    let entry = types::Entry {
        parent_id: Some(ids::to_proto_id(&ids::server_id(&trust_domain()))),
        selectors: vec![types::Selector {
            r#type: "spiffe_id".to_owned(),
            value: "spiffe://example.org/spire/agent/join_token/abc".to_owned(),
        }],
        ..valid_proto()
    };
    assert!(parse(entry).is_ok());
}

/// One rejected entry: the change applied to a valid entry and the expected error.
struct Rejected {
    name: &'static str,
    change: fn(&mut types::Entry),
    expected: EntryError,
}

#[test]
fn invalid_entries_are_rejected() {
    let cases = [
        Rejected {
            name: "missing spiffe_id",
            change: |e| e.spiffe_id = None,
            expected: EntryError::MissingSpiffeId,
        },
        Rejected {
            name: "missing parent_id",
            change: |e| e.parent_id = None,
            expected: EntryError::MissingParentId,
        },
        Rejected {
            name: "spiffe_id in another trust domain",
            change: |e| e.spiffe_id = proto_id("spiffe://evil.test/web"),
            expected: EntryError::ForeignTrustDomain {
                field: "spiffe_id",
                id: "spiffe://evil.test/web".to_owned(),
                trust_domain: "example.org".to_owned(),
            },
        },
        Rejected {
            name: "parent_id in another trust domain",
            change: |e| e.parent_id = proto_id("spiffe://evil.test/spire/agent/x"),
            expected: EntryError::ForeignTrustDomain {
                field: "parent_id",
                id: "spiffe://evil.test/spire/agent/x".to_owned(),
                trust_domain: "example.org".to_owned(),
            },
        },
        Rejected {
            name: "spiffe_id is the trust domain ID",
            change: |e| e.spiffe_id = proto_id("spiffe://example.org"),
            expected: EntryError::ReservedSpiffeId {
                id: "spiffe://example.org".to_owned(),
            },
        },
        Rejected {
            name: "spiffe_id is the server ID",
            change: |e| e.spiffe_id = proto_id("spiffe://example.org/spire/server"),
            expected: EntryError::ReservedSpiffeId {
                id: "spiffe://example.org/spire/server".to_owned(),
            },
        },
        Rejected {
            name: "no selectors",
            change: |e| e.selectors.clear(),
            expected: EntryError::MissingSelectors,
        },
        Rejected {
            name: "negative X509-SVID TTL",
            change: |e| e.x509_svid_ttl = -1,
            expected: EntryError::NegativeTtl {
                field: "x509_svid_ttl",
                value: -1,
            },
        },
        Rejected {
            name: "negative JWT-SVID TTL",
            change: |e| e.jwt_svid_ttl = -5,
            expected: EntryError::NegativeTtl {
                field: "jwt_svid_ttl",
                value: -5,
            },
        },
        Rejected {
            name: "negative expiry",
            change: |e| e.expires_at = -1,
            expected: EntryError::NegativeExpiry(-1),
        },
        Rejected {
            name: "expiry after year 9999",
            change: |e| e.expires_at = MAX_EXPIRES_AT + 1,
            expected: EntryError::ExpiryTooLate(MAX_EXPIRES_AT + 1),
        },
        Rejected {
            name: "expiry far after year 9999",
            change: |e| e.expires_at = 99_999_999_999_999_999,
            expected: EntryError::ExpiryTooLate(99_999_999_999_999_999),
        },
        Rejected {
            name: "expiry in the past",
            change: |e| e.expires_at = 1,
            expected: EntryError::ExpiryInPast {
                expires_at: 1,
                time: "1970-01-01T00:00:01Z".to_owned(),
            },
        },
        Rejected {
            name: "duplicate selector",
            change: |e| e.selectors.push(e.selectors[0].clone()),
            expected: EntryError::DuplicateSelector("unix:uid:1000".to_owned()),
        },
        Rejected {
            name: "federates_with",
            change: |e| e.federates_with = vec!["partner.test".to_owned()],
            expected: EntryError::Unsupported("federates_with"),
        },
        Rejected {
            name: "admin",
            change: |e| e.admin = true,
            expected: EntryError::Unsupported("admin"),
        },
        Rejected {
            name: "downstream",
            change: |e| e.downstream = true,
            expected: EntryError::Unsupported("downstream"),
        },
        Rejected {
            name: "store_svid",
            change: |e| e.store_svid = true,
            expected: EntryError::Unsupported("store_svid"),
        },
        Rejected {
            name: "hint too long",
            change: |e| e.hint = "h".repeat(1025),
            expected: EntryError::HintTooLong(1025),
        },
        Rejected {
            name: "invalid federated trust domain",
            change: |e| e.federates_with = vec!["Bad Domain".to_owned()],
            expected: EntryError::InvalidFederatesWith("Bad Domain".to_owned()),
        },
        Rejected {
            name: "entry ID with a slash",
            change: |e| e.id = "a/b".to_owned(),
            expected: EntryError::InvalidEntryId("a/b".to_owned()),
        },
    ];
    for case in cases {
        let mut entry = valid_proto();
        (case.change)(&mut entry);
        assert_eq!(parse(entry), Err(case.expected), "{}", case.name);
    }
}

#[test]
fn expiry_errors_name_the_value() {
    let too_late = EntryError::ExpiryTooLate(99_999_999_999_999_999).to_string();
    assert!(too_late.contains("99999999999999999"), "{too_late}");
    assert!(too_late.contains("9999-12-31T23:59:59Z"), "{too_late}");

    let mut entry = valid_proto();
    entry.expires_at = 1_700_000_000;
    let past = parse(entry).unwrap_err().to_string();
    assert!(past.contains("1700000000"), "{past}");
    assert!(past.contains("2023-11-14T22:13:20Z"), "{past}");
    assert!(past.contains("already in the past"), "{past}");
}

#[test]
fn latest_expiry_is_accepted() {
    let mut entry = valid_proto();
    entry.expires_at = MAX_EXPIRES_AT;
    assert_eq!(parse(entry).unwrap().expires_at, MAX_EXPIRES_AT);
}

#[test]
fn unsupported_field_error_names_the_field() {
    let message = EntryError::Unsupported("store_svid").to_string();
    assert_eq!(message, "store_svid is not supported yet: leave it unset");
}

#[test]
fn federated_trust_domains_accept_names_and_ids() {
    let parsed =
        parse_federates_with(&["partner.test".to_owned(), "spiffe://other.test".to_owned()])
            .unwrap();
    let names: Vec<String> = parsed.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["partner.test", "other.test"]);
}

#[test]
fn invalid_ids_name_the_value() {
    let mut entry = valid_proto();
    entry.spiffe_id = proto_id("spiffe://example.org/a//b");
    let error = parse(entry).unwrap_err();
    assert!(matches!(error, EntryError::InvalidSpiffeId(_)), "{error:?}");
    assert!(
        error.to_string().contains("spiffe://example.org/a//b"),
        "{error}"
    );

    let mut entry = valid_proto();
    entry.parent_id = Some(types::Spiffeid {
        trust_domain: "example.org/admin".to_owned(),
        path: String::new(),
    });
    let error = parse(entry).unwrap_err();
    assert!(matches!(error, EntryError::InvalidParentId(_)), "{error:?}");
}

#[test]
fn unknown_selector_type_is_rejected() {
    let mut entry = valid_proto();
    entry.selectors[0].r#type = "k8s".to_owned();
    let error = parse(entry).unwrap_err();
    assert!(matches!(error, EntryError::InvalidSelector(_)), "{error:?}");
    assert!(error.to_string().contains("k8s"), "{error}");
}

#[test]
fn hint_of_maximum_length_is_accepted() {
    let mut entry = valid_proto();
    entry.hint = "h".repeat(MAX_HINT_BYTES);
    assert!(parse(entry).is_ok());
}

#[test]
fn dns_names_are_checked() {
    let long_label = "a".repeat(64);
    let long_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(63),
    ]
    .join(".");
    let valid = [
        "localhost",
        "web.example.org",
        "*.example.org",
        "a-b.c1",
        "1.2.3.4",
    ];
    let invalid = [
        "",
        "-web.example.org",
        "web-.example.org",
        "web..example.org",
        "web.example.org.",
        "*",
        "a.*.example.org",
        "web_1.example.org",
        "web example.org",
        "wéb.example.org",
        long_label.as_str(),
        long_name.as_str(),
    ];
    for name in valid {
        assert!(check_dns_name(name).is_ok(), "{name:?} rejected");
    }
    for name in invalid {
        assert_eq!(
            check_dns_name(name),
            Err(EntryError::InvalidDnsName(name.to_owned())),
            "{name:?} accepted"
        );
    }
}

#[test]
fn entry_ids_are_checked() {
    assert!(check_entry_id("").is_ok());
    assert!(check_entry_id("1b4e28ba-2fa1-11d2-883f-0016d3cca427").is_ok());
    assert!(check_entry_id(&"x".repeat(255)).is_ok());
    for id in ["a b", "a/b", "ä", "a\n", &"x".repeat(256)] {
        assert!(check_entry_id(id).is_err(), "{id:?} accepted");
    }
}

#[test]
fn expiry_is_checked_against_now() {
    let mut entry = parse(valid_proto()).unwrap();
    assert!(!entry.is_expired_at(i64::MAX));
    entry.expires_at = 100;
    assert!(entry.is_expired_at(100));
    assert!(!entry.is_expired_at(99));
}

#[test]
fn svid_ttl_ends_by_the_entry_expiry() {
    let hour = Duration::from_secs(3600);
    let mut entry = parse(valid_proto()).unwrap();
    assert_eq!(entry.ttl_within_expiry(hour, 1_000), Some(hour));

    entry.expires_at = 1_012;
    assert_eq!(
        entry.ttl_within_expiry(hour, 1_000),
        Some(Duration::from_secs(12))
    );
    assert_eq!(
        entry.ttl_within_expiry(Duration::from_secs(5), 1_000),
        Some(Duration::from_secs(5))
    );
    assert_eq!(entry.ttl_within_expiry(hour, 1_012), None);
    assert_eq!(entry.ttl_within_expiry(hour, 2_000), None);
}

#[test]
fn template_entry_keeps_its_placeholders() {
    let mut proto = valid_proto();
    proto.spiffe_id = proto_id("spiffe://example.org/unix/uid/{unix:uid}");
    let entry = parse(proto.clone()).unwrap();

    assert!(entry.is_template());
    assert_eq!(
        entry.spiffe_id.to_string(),
        "spiffe://example.org/unix/uid/{unix:uid}"
    );
    assert_eq!(entry.to_proto(), proto);
}

#[test]
fn invalid_templates_are_rejected() {
    let template = "spiffe://example.org/unix/uid/{unix:uid}";
    let node_alias = |e: &mut types::Entry| {
        e.spiffe_id = proto_id("spiffe://example.org/unix/uid/{unix:uid}");
        e.parent_id = proto_id("spiffe://example.org/spire/server");
    };
    let mut alias = valid_proto();
    node_alias(&mut alias);
    assert_eq!(
        parse(alias),
        Err(EntryError::TemplateOnNodeEntry {
            id: template.to_owned(),
            parent_id: "spiffe://example.org/spire/server".to_owned(),
        })
    );

    let invalid_spiffe_ids = [
        "spiffe://example.org/uid-{unix:uid}",
        "spiffe://example.org/{unix:uid",
        "spiffe://example.org/{:uid}",
        "spiffe://example.org/{unix:}",
        "spiffe://example.org/{k8s:ns}",
        "spiffe://example.org/../{unix:uid}",
    ];
    for text in invalid_spiffe_ids {
        let mut entry = valid_proto();
        entry.spiffe_id = proto_id(text);
        let error = parse(entry).unwrap_err();
        assert!(
            matches!(&error, EntryError::InvalidSpiffeId(message) if message.contains(text)),
            "{text}: {error:?}"
        );
    }

    let mut in_trust_domain = valid_proto();
    in_trust_domain.spiffe_id = Some(types::Spiffeid {
        trust_domain: "{unix:uid}.org".to_owned(),
        path: "/web".to_owned(),
    });
    assert!(matches!(
        parse(in_trust_domain),
        Err(EntryError::InvalidSpiffeId(message)) if message.contains("trust domain")
    ));

    let mut in_parent = valid_proto();
    in_parent.parent_id = proto_id("spiffe://example.org/node/{unix:uid}");
    assert!(matches!(
        parse(in_parent),
        Err(EntryError::InvalidParentId(message)) if message.contains("placeholder")
    ));
}

#[test]
fn template_under_reserved_path_is_rejected() {
    let mut entry = valid_proto();
    entry.spiffe_id = proto_id("spiffe://example.org/spire/agent/{unix:uid}");
    assert_eq!(
        parse(entry),
        Err(EntryError::ReservedSpiffeId {
            id: "spiffe://example.org/spire/agent/{unix:uid}".to_owned(),
        })
    );
}
