use std::time::Duration;

use super::*;

const GATEWAY: &str = "spiffe://example.org/gateway";
const INVENTORY: &str = "spiffe://example.org/inventory";
const BILLING: &str = "spiffe://example.org/billing-batch";

/// The zero-trust gateway scenario: billing-batch reads orders through the gateway, inventory
/// reads order items directly, and no workload deletes.
const ORDERS_TOML: &str = r#"
[[rule]]
name = "billing-batch reads orders"
effect = "allow"
peer = "spiffe://example.org/gateway"
caller = "spiffe://example.org/billing-batch"
methods = ["GET"]
paths = ["/orders/*"]

[[rule]]
name = "inventory reads items"
effect = "allow"
peer = "spiffe://example.org/inventory"
methods = ["get"]
paths = ["/orders/*/items"]

[[rule]]
name = "no deletes"
effect = "deny"
methods = ["DELETE"]
"#;

fn id(text: &str) -> SpiffeId {
    SpiffeId::new(text).unwrap()
}

fn decide(
    policy: &Policy,
    peer: Option<&str>,
    caller: Option<&str>,
    method: Method,
    path: &str,
) -> Decision {
    let peer = peer.map(id);
    let caller = caller.map(id);
    policy.evaluate(&RequestFacts {
        peer: peer.as_ref(),
        caller: caller.as_ref(),
        method: &method,
        path,
    })
}

fn rule(name: &str) -> DecisionReason {
    DecisionReason::Rule(name.into())
}

fn orders() -> Policy {
    Policy::parse("orders.toml", ORDERS_TOML).unwrap()
}

#[test]
fn allow_rule_needs_every_condition() {
    let policy = orders();
    let allowed = decide(
        &policy,
        Some(GATEWAY),
        Some(BILLING),
        Method::GET,
        "/orders/42",
    );
    assert_eq!(allowed.effect, Effect::Allow);
    assert_eq!(allowed.reason, rule("billing-batch reads orders"));

    let other_caller = decide(
        &policy,
        Some(GATEWAY),
        Some(INVENTORY),
        Method::GET,
        "/orders/42",
    );
    assert_eq!(other_caller.reason, DecisionReason::DefaultDeny);

    let other_peer = decide(
        &policy,
        Some(INVENTORY),
        Some(BILLING),
        Method::GET,
        "/orders/42",
    );
    assert_eq!(other_peer.reason, DecisionReason::DefaultDeny);

    let other_method = decide(
        &policy,
        Some(GATEWAY),
        Some(BILLING),
        Method::POST,
        "/orders/42",
    );
    assert_eq!(other_method.reason, DecisionReason::DefaultDeny);

    let other_path = decide(
        &policy,
        Some(GATEWAY),
        Some(BILLING),
        Method::GET,
        "/orders/42/items",
    );
    assert_eq!(other_path.reason, DecisionReason::DefaultDeny);
}

#[test]
fn peer_only_rule_ignores_caller() {
    let policy = orders();
    for caller in [None, Some(BILLING)] {
        let decision = decide(
            &policy,
            Some(INVENTORY),
            caller,
            Method::GET,
            "/orders/7/items",
        );
        assert_eq!(
            decision.reason,
            rule("inventory reads items"),
            "caller {caller:?}"
        );
    }
}

#[test]
fn deny_wins_over_allow() {
    let policy = Policy::builder()
        .rule(RuleBuilder::allow().name("all of gateway").peer(GATEWAY))
        .rule(RuleBuilder::deny().name("no deletes").methods(["DELETE"]))
        .build()
        .unwrap();
    let decision = decide(&policy, Some(GATEWAY), None, Method::DELETE, "/orders/1");
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason, rule("no deletes"));
    let decision = decide(&policy, Some(GATEWAY), None, Method::PUT, "/orders/1");
    assert_eq!(decision.reason, rule("all of gateway"));
}

#[test]
fn default_deny_without_rules_or_identity() {
    let empty = Policy::builder().build().unwrap();
    let decision = decide(&empty, Some(GATEWAY), Some(BILLING), Method::GET, "/");
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason, DecisionReason::DefaultDeny);

    let decision = decide(&orders(), None, None, Method::GET, "/orders/42");
    assert_eq!(decision.reason, DecisionReason::DefaultDeny);
}

#[test]
fn missing_caller_is_reported_when_a_caller_would_help() {
    let policy = orders();
    let decision = decide(&policy, Some(GATEWAY), None, Method::GET, "/orders/42");
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(
        decision.reason,
        DecisionReason::MissingCaller("billing-batch reads orders".into())
    );
    // With a caller that no rule names, the denial is a plain default deny.
    let decision = decide(
        &policy,
        Some(GATEWAY),
        Some(INVENTORY),
        Method::GET,
        "/orders/42",
    );
    assert_eq!(decision.reason, DecisionReason::DefaultDeny);
}

#[test]
fn grpc_entries_match_service_paths() {
    let policy = Policy::builder()
        .rule(
            RuleBuilder::allow()
                .peer(GATEWAY)
                .grpc(["orders.v1.Orders/Get", "stock.Stock/*"]),
        )
        .build()
        .unwrap();
    let allows = |path| decide(&policy, Some(GATEWAY), None, Method::POST, path).effect;
    assert_eq!(allows("/orders.v1.Orders/Get"), Effect::Allow);
    assert_eq!(allows("/orders.v1.Orders/Delete"), Effect::Deny);
    assert_eq!(allows("/stock.Stock/Reserve"), Effect::Allow);
}

#[test]
fn unnamed_rules_are_named_by_position() {
    let policy = Policy::builder()
        .rule(RuleBuilder::deny().methods(["DELETE"]))
        .rule(RuleBuilder::allow().peer(GATEWAY))
        .build()
        .unwrap();
    let names: Vec<&str> = policy.rules().iter().map(Rule::name).collect();
    assert_eq!(names, ["rule #1", "rule #2"]);
}

#[test]
fn builder_rejects_invalid_values_by_name() {
    let cases = [
        (
            RuleBuilder::allow().peer("spiffe://Example.org/x"),
            RuleError::Peer(PatternError::InvalidTrustDomain(
                "spiffe://Example.org/x".to_owned(),
            )),
        ),
        (
            RuleBuilder::allow().caller("billing-batch"),
            RuleError::Caller(PatternError::NotSpiffe("billing-batch".to_owned())),
        ),
        (
            RuleBuilder::allow().peer(GATEWAY).methods(["FETCH"]),
            RuleError::UnknownMethod("FETCH".to_owned()),
        ),
        (
            RuleBuilder::allow().peer(GATEWAY).paths(["orders"]),
            RuleError::Path(PatternError::NotAbsolute("orders".to_owned())),
        ),
        (
            RuleBuilder::allow()
                .peer(GATEWAY)
                .grpc(["orders.v1.Orders"]),
            RuleError::GrpcMethod("orders.v1.Orders".to_owned()),
        ),
        (
            RuleBuilder::allow().peer(GATEWAY).grpc(["*/Get"]),
            RuleError::GrpcMethod("*/Get".to_owned()),
        ),
        (RuleBuilder::allow().methods(["GET"]), RuleError::NoIdentity),
    ];
    for (builder, expected) in cases {
        let error = Policy::builder().rule(builder).build().unwrap_err();
        assert_eq!(error.rule, "rule #1");
        assert_eq!(error.error, expected);
    }
}

#[test]
fn yaml_file_reads_like_toml() {
    let yaml = "\
mode: shadow
rules:
  - name: billing-batch reads orders
    effect: allow
    peer: spiffe://example.org/gateway
    caller: [spiffe://example.org/billing-batch]
    methods: [GET]
    paths: [/orders/*]
";
    let policy = Policy::parse("orders.yml", yaml).unwrap();
    assert_eq!(policy.mode(), Mode::Shadow);
    let decision = decide(
        &policy,
        Some(GATEWAY),
        Some(BILLING),
        Method::GET,
        "/orders/1",
    );
    assert_eq!(decision.reason, rule("billing-batch reads orders"));
}

fn file_errors(path: &str, text: &str) -> Vec<(usize, String)> {
    match Policy::parse(path, text) {
        Err(PolicyFileError::Invalid { errors, .. }) => errors
            .into_iter()
            .map(|error| (error.line, error.message))
            .collect(),
        other => panic!("expected an invalid file, got {other:?}"),
    }
}

#[test]
fn toml_errors_name_their_lines() {
    let text = r#"mode = "strict"

[[rule]]
effect = "allow"
peer = "spiffe://example.org/gateway"
methods = ["GET", "FETCH"]
paths = ["/orders/*", "orders"]
colour = "blue"

[[rule]]
effect = "permit"
"#;
    let errors = file_errors("policy.toml", text);
    let lines: Vec<usize> = errors.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [1, 6, 7, 8, 11], "{errors:?}");
    assert!(errors[1].1.contains("\"FETCH\""), "{errors:?}");
    assert!(errors[2].1.contains("\"orders\""), "{errors:?}");
    assert!(errors[3].1.contains("\"colour\""), "{errors:?}");
}

#[test]
fn yaml_errors_name_their_lines() {
    let text = "\
rules:
  - effect: allow
    peer: spiffe://example.org/gate way
  - effect: allow
    methods: [GET]
";
    let errors = file_errors("policy.yaml", text);
    let lines: Vec<usize> = errors.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [3, 4], "{errors:?}");
    assert!(errors[0].1.contains("gate way"), "{errors:?}");
    assert!(
        errors[1].1.contains("must name a \"peer\" or a \"caller\""),
        "{errors:?}"
    );
}

#[test]
fn syntax_errors_name_their_lines() {
    let toml = file_errors("policy.toml", "[[rule]]\neffect = \"allow\"\npeer = \n");
    assert_eq!(toml.len(), 1);
    assert_eq!(toml[0].0, 3, "{toml:?}");

    let yaml = file_errors("policy.yaml", "rules:\n  - effect: allow\n    peer: [a\n");
    assert_eq!(yaml.len(), 1);
    assert!(yaml[0].0 >= 3, "{yaml:?}");
}

#[test]
fn file_without_rules_or_known_extension_is_rejected() {
    let errors = file_errors("policy.toml", "mode = \"enforce\"\n");
    assert!(errors[0].1.contains("missing \"rule\""), "{errors:?}");

    let errors = file_errors("policy.json", "{}");
    assert!(
        errors[0].1.contains("*.toml, *.yaml or *.yml"),
        "{errors:?}"
    );
}

#[test]
fn invalid_file_error_names_file_and_line() {
    let error = Policy::parse("/etc/orders/policy.toml", "[[rule]]\neffect = \"nope\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/etc/orders/policy.toml:2: invalid effect"),
        "{error}"
    );
}

#[test]
fn broken_file_keeps_previous_policy() {
    let shared = SharedPolicy::new(orders());
    let path = std::path::Path::new("orders.toml");

    reload::apply(
        path,
        &reload::LastRead::Contents(b"[[rule]]\neffect = 1\n".to_vec()),
        &shared,
    );
    assert_eq!(
        shared.current().rules().len(),
        3,
        "a broken file replaced the policy"
    );

    let read_error = reload::LastRead::Failed("no such file".to_owned());
    reload::apply(path, &read_error, &shared);
    assert_eq!(
        shared.current().rules().len(),
        3,
        "a read error replaced the policy"
    );

    let valid = b"[[rule]]\neffect = \"allow\"\npeer = \"spiffe://example.org/**\"\n".to_vec();
    reload::apply(path, &reload::LastRead::Contents(valid), &shared);
    assert_eq!(shared.current().rules().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn watcher_reloads_changed_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("policy.toml");
    std::fs::write(&path, ORDERS_TOML).unwrap();
    let (shared, _watcher) = PolicyWatcher::spawn(&path, Duration::from_millis(20)).unwrap();
    assert_eq!(shared.current().rules().len(), 3);

    std::fs::write(&path, "[[rule]]\neffect = \"deny\"\n").unwrap();
    let reloaded = async {
        while shared.current().rules().len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reloaded)
        .await
        .expect("the watcher did not reload the changed file within 5 s");
}

#[test]
fn watcher_refuses_to_start_on_invalid_file() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("policy.yaml");
    std::fs::write(&path, "rules: 3\n").unwrap();
    let error = PolicyWatcher::spawn(&path, Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(error, PolicyFileError::Invalid { .. }),
        "{error:?}"
    );

    let missing = directory.path().join("missing.toml");
    let error = PolicyWatcher::spawn(&missing, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(error, PolicyFileError::Read { .. }), "{error:?}");
}

/// Builds a policy that lets the gateway do anything except touch `/admin`.
fn admin_denied() -> Policy {
    Policy::builder()
        .rule(
            RuleBuilder::deny()
                .name("no admin")
                .paths(["/admin", "/admin/**"]),
        )
        .rule(
            RuleBuilder::deny()
                .name("no reads")
                .methods(["GET"])
                .paths(["/secret"]),
        )
        .rule(RuleBuilder::deny().name("no deletes").methods(["DELETE"]))
        .rule(RuleBuilder::allow().name("gateway").peer(GATEWAY))
        .build()
        .unwrap()
}

#[test]
fn non_canonical_paths_rejected_before_rules() {
    let policy = admin_denied();
    for path in [
        "/orders/../admin",
        "/./admin",
        "/admin/.",
        "//admin",
        "//admin/x",
        "/%2e%2e/admin",
        "/orders/..%2fadmin",
        "/..;/admin",
    ] {
        let decision = decide(&policy, Some(GATEWAY), None, Method::GET, path);
        assert_eq!(decision.effect, Effect::Deny, "{path}");
        assert!(
            matches!(decision.reason, DecisionReason::NotCanonical(_)),
            "{path}: {:?}",
            decision.reason
        );
    }
}

#[test]
fn trailing_slash_matches_as_the_path_without_it() {
    let policy = admin_denied();
    let decision = decide(&policy, Some(GATEWAY), None, Method::GET, "/admin/");
    assert_eq!(decision.reason, rule("no admin"));
    let decision = decide(&policy, Some(GATEWAY), None, Method::GET, "/orders/");
    assert_eq!(decision.effect, Effect::Allow);
}

#[test]
fn head_is_matched_as_get() {
    let policy = admin_denied();
    let decision = decide(&policy, Some(GATEWAY), None, Method::HEAD, "/secret");
    assert_eq!(decision.reason, rule("no reads"));

    let reads = Policy::builder()
        .rule(RuleBuilder::allow().peer(GATEWAY).methods(["GET"]))
        .build()
        .unwrap();
    let decision = decide(&reads, Some(GATEWAY), None, Method::HEAD, "/orders");
    assert_eq!(decision.effect, Effect::Allow);
}

#[test]
fn lower_case_method_is_rejected() {
    let policy = admin_denied();
    let delete = Method::from_bytes(b"delete").unwrap();
    let decision = decide(&policy, Some(GATEWAY), None, delete, "/orders/1");
    assert_eq!(decision.effect, Effect::Deny);
    assert!(matches!(decision.reason, DecisionReason::NotCanonical(_)));
}

#[test]
fn empty_lists_are_errors_in_code() {
    let empty: [&str; 0] = [];
    for rule in [
        RuleBuilder::deny().methods(empty),
        RuleBuilder::deny().paths(empty),
        RuleBuilder::deny().grpc(empty),
    ] {
        let error = Policy::builder().rule(rule).build().unwrap_err();
        assert!(matches!(error.error, RuleError::EmptyList(_)), "{error:?}");
    }
}

#[test]
fn empty_lists_are_errors_in_files() {
    for key in ["paths", "methods", "grpc", "caller", "peer"] {
        let text = format!(
            "[[rule]]\neffect = \"allow\"\npeer = \"spiffe://example.org/gateway\"\n\
             [[rule]]\neffect = \"deny\"\n{key} = []\n"
        );
        let error = Policy::parse("policy.toml", &text).unwrap_err();
        let PolicyFileError::Invalid { errors, .. } = error else {
            panic!("{key}: not an invalid-file error");
        };
        assert_eq!(errors[0].line, 6, "{key}: {errors:?}");
        assert!(
            errors[0].message.contains("empty list"),
            "{key}: {errors:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn watcher_keeps_reloading_while_the_policy_lives() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("policy.toml");
    std::fs::write(&path, ORDERS_TOML).unwrap();
    let (shared, _) = PolicyWatcher::spawn(&path, Duration::from_millis(20)).unwrap();

    std::fs::write(&path, "[[rule]]\neffect = \"deny\"\n").unwrap();
    let reloaded = async {
        while shared.current().rules().len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reloaded)
        .await
        .expect("dropping the watcher stopped reloading");
}
