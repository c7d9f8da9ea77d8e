//! The Authenticator through its public API: key auth, TokenRequest
//! exchange (mac, window, nonce, ttl, capability), tokens and JWTs, checks
//! with deny rules, and building from config.

use std::sync::Arc;

use tern_auth::{
    ApiKey, AuthConfig, AuthError, AuthLimits, Authenticator, Capability, DenyRule, Op, OpSet,
    PrincipalKind, TokenFormat, TokenParams, TokenRequest, Who, encode_hs256, issue_token, mac_of,
};

const NOW: u64 = 1_700_000_000_000;
const NONCE: &str = "0123456789abcdef";

fn admin() -> ApiKey {
    ApiKey::parse("app.admin:admin-secret").expect("valid key")
}

fn device() -> ApiKey {
    ApiKey::parse("app.device:device-secret")
        .expect("valid key")
        .with_capability(cap(
            r#"{"sensors/#":["publish","subscribe"],"cmd:*":["subscribe"]}"#,
        ))
}

fn cap(json: &str) -> Capability {
    Capability::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn auth() -> Authenticator {
    auth_with(AuthLimits::default())
}

fn auth_with(limits: AuthLimits) -> Authenticator {
    Authenticator::new(limits)
        .and_then(|a| a.with_keys([admin(), device()]))
        .expect("valid authenticator")
}

fn signed(key: &ApiKey, params: TokenParams, timestamp: u64, nonce: &str) -> TokenRequest {
    TokenRequest::sign(key, &params, timestamp, nonce).expect("signs")
}

#[test]
fn key_authentication() {
    let auth = auth();
    let p = auth
        .authenticate_key("app.device", "device-secret")
        .expect("valid");
    assert_eq!(p.kind, PrincipalKind::Key);
    assert_eq!(p.key_name.as_deref(), Some("app.device"));
    assert_eq!(p.expires_at_ms, None);
    assert!(p.capability.allows(&Op::Publish, "sensors/1"));
    assert_eq!(
        auth.authenticate_key("app.device", "wrong").err(),
        Some(AuthError::BadSecret)
    );
    assert_eq!(
        auth.authenticate_key("app.nobody", "device-secret").err(),
        Some(AuthError::UnknownKey("app.nobody".into()))
    );
}

#[test]
fn duplicate_keys_and_bad_limits_are_refused() {
    let dup =
        Authenticator::new(AuthLimits::default()).and_then(|a| a.with_keys([admin(), admin()]));
    assert_eq!(dup.err(), Some(AuthError::DuplicateKey("app.admin".into())));
    let bad = AuthLimits {
        ttl_default_ms: 10,
        ttl_max_ms: 5,
        clock_skew_ms: 0,
        ..AuthLimits::default()
    };
    assert!(matches!(
        Authenticator::new(bad),
        Err(AuthError::InvalidSetting(_))
    ));
}

#[test]
fn token_request_exchange() {
    let auth = auth();
    let params = TokenParams {
        ttl: Some(600_000),
        capability: Some(r#"{"sensors/+/temp":["subscribe"]}"#.into()),
        client_id: Some("thermo-1".into()),
    };
    let details = auth
        .request_token(&signed(&device(), params, NOW, NONCE), NOW)
        .expect("issued");
    assert_eq!(details.key_name, "app.device");
    assert_eq!(details.issued, NOW);
    assert_eq!(details.expires, NOW + 600_000);
    assert_eq!(details.capability, r#"{"sensors/+/temp":["subscribe"]}"#);
    assert_eq!(details.client_id.as_deref(), Some("thermo-1"));

    let p = auth
        .authenticate_token(&details.token, NOW + 1)
        .expect("valid");
    assert_eq!(p.kind, PrincipalKind::Token);
    assert_eq!(p.client_id.as_deref(), Some("thermo-1"));
    assert_eq!(p.expires_at_ms, Some(NOW + 600_000));
    assert!(auth.check(&p, &Op::Subscribe, "sensors/1/temp"));
    assert!(!auth.check(&p, &Op::Publish, "sensors/1/temp"));
    assert!(auth.check_subscribe_filter(&p, "sensors/+/temp"));
    assert!(!auth.check_subscribe_filter(&p, "sensors/#"));
    assert!(matches!(
        auth.authenticate_token(&details.token, NOW + 600_000),
        Err(AuthError::Expired { .. })
    ));
}

#[test]
fn defaults_without_ttl_or_capability() {
    let auth = auth();
    let details = auth
        .request_token(&signed(&device(), TokenParams::default(), NOW, NONCE), NOW)
        .expect("issued");
    assert_eq!(
        details.expires - details.issued,
        3_600_000,
        "default ttl 1 h"
    );
    assert_eq!(
        details.capability,
        device().capability().canonical(),
        "the key's capability"
    );
    assert_eq!(details.client_id, None);
}

#[test]
fn capability_is_intersected_with_the_key() {
    let auth = auth();
    let ask = |json: &str, nonce: &str| {
        let params = TokenParams {
            capability: Some(json.into()),
            ..TokenParams::default()
        };
        auth.request_token(&signed(&device(), params, NOW, nonce), NOW)
    };
    // `*` yields the key's.
    let all = ask(r#"{"*":["*"]}"#, "nonce-aaaaaaaaaaaa").expect("issued");
    assert_eq!(all.capability, device().capability().canonical());
    // Only what the key allows survives.
    let some = ask(
        r#"{"sensors/1/#":["*"],"admin":["publish"]}"#,
        "nonce-bbbbbbbbbbbb",
    )
    .expect("issued");
    assert_eq!(
        some.capability,
        r#"{"sensors/1/#":["publish","subscribe"]}"#
    );
    // Nothing left: refused.
    assert_eq!(
        ask(r#"{"admin":["publish"]}"#, "nonce-cccccccccccc").err(),
        Some(AuthError::CapabilityNotAllowed)
    );
    // An unparseable capability (signed as is: `sign` would refuse it).
    let mut bad = TokenRequest {
        key_name: "app.device".into(),
        capability: Some(r#"{"admin":["eat"]}"#.into()),
        timestamp: Some(NOW),
        nonce: Some("nonce-dddddddddddd".into()),
        ..TokenRequest::default()
    };
    bad.mac = Some(mac_of(&device(), &bad.mac_text(r#"{"admin":["eat"]}"#)));
    let err = auth.request_token(&bad, NOW).err();
    assert!(
        matches!(err, Some(AuthError::InvalidCapability(_))),
        "{err:?}"
    );
    assert_eq!(err.map(|e| e.http_status()), Some(400));
}

#[test]
fn mac_window_and_nonce_rules() {
    let auth = auth();
    let request = signed(&device(), TokenParams::default(), NOW, NONCE);
    // Signed by another key under this key's name.
    let mut forged = signed(&admin(), TokenParams::default(), NOW, "forged-nonce-0000");
    forged.key_name = "app.device".into();
    assert_eq!(
        auth.request_token(&forged, NOW).err(),
        Some(AuthError::BadMac)
    );
    // Timestamp 2 min + 1 ms away, either way.
    assert!(matches!(
        auth.request_token(&request, NOW + 120_001),
        Err(AuthError::TimestampOutOfWindow { .. })
    ));
    assert!(matches!(
        auth.request_token(&request, NOW - 120_001),
        Err(AuthError::TimestampOutOfWindow { .. })
    ));
    // Refused requests did not use the nonce up.
    assert!(auth.request_token(&request, NOW + 120_000).is_ok());
    // A replay is refused.
    assert_eq!(
        auth.request_token(&request, NOW + 1).err(),
        Some(AuthError::NonceReused)
    );
    // The same nonce from another key is fine.
    assert!(
        auth.request_token(&signed(&admin(), TokenParams::default(), NOW, NONCE), NOW)
            .is_ok()
    );
    // A short nonce is refused.
    let short = signed(&device(), TokenParams::default(), NOW, "short");
    assert!(matches!(
        auth.request_token(&short, NOW),
        Err(AuthError::NonceTooShort { .. })
    ));
    // An unknown key.
    let mut unknown = request.clone();
    unknown.key_name = "app.gone".into();
    assert_eq!(
        auth.request_token(&unknown, NOW).err(),
        Some(AuthError::UnknownKey("app.gone".into()))
    );
}

#[test]
fn nonce_cache_bound_refuses_rather_than_grows() {
    let auth = auth_with(AuthLimits {
        nonce_cache_entries_max: 3,
        ..AuthLimits::default()
    });
    for i in 0..3 {
        let r = signed(
            &device(),
            TokenParams::default(),
            NOW,
            &format!("nonce-number-{i:04}"),
        );
        assert!(auth.request_token(&r, NOW).is_ok());
    }
    let fourth = signed(&device(), TokenParams::default(), NOW, "nonce-number-0003");
    let err = auth.request_token(&fourth, NOW).err();
    assert_eq!(err, Some(AuthError::NonceCacheFull { entries_max: 3 }));
    assert_eq!(err.map(|e| e.http_status()), Some(429));
    assert_eq!(auth.nonces_remembered(), 3);
    // Once the window has passed, the old nonces are forgotten.
    let later = NOW + 120_001;
    let fifth = signed(
        &device(),
        TokenParams::default(),
        later,
        "nonce-number-0004",
    );
    assert!(auth.request_token(&fifth, later).is_ok());
    assert_eq!(auth.nonces_remembered(), 1);
}

#[test]
fn ttl_limits() {
    let auth = auth_with(AuthLimits {
        ttl_default_ms: 1_000,
        ttl_max_ms: 10_000,
        clock_skew_ms: 0,
        ..AuthLimits::default()
    });
    let with_ttl = |ttl, nonce: &str| {
        let params = TokenParams {
            ttl: Some(ttl),
            ..TokenParams::default()
        };
        auth.request_token(&signed(&device(), params, NOW, nonce), NOW)
    };
    assert!(with_ttl(10_000, "ttl-nonce-000000a").is_ok());
    assert_eq!(
        with_ttl(10_001, "ttl-nonce-000000b").err(),
        Some(AuthError::TtlTooLong {
            ttl_ms: 10_001,
            max_ms: 10_000
        })
    );
    assert_eq!(
        with_ttl(0, "ttl-nonce-000000c").err(),
        Some(AuthError::TtlZero)
    );
    // The default 24 h maximum.
    let auth = self::auth();
    let params = TokenParams {
        ttl: Some(86_400_001),
        ..TokenParams::default()
    };
    assert!(matches!(
        auth.request_token(&signed(&device(), params, NOW, NONCE), NOW),
        Err(AuthError::TtlTooLong { .. })
    ));
}

#[test]
fn request_token_with_key() {
    let auth = auth();
    let params = TokenParams {
        ttl: Some(60_000),
        capability: Some(r#"{"cmd:*":["subscribe"]}"#.into()),
        client_id: Some("dev-7".into()),
    };
    let details = auth
        .request_token_with_key("app.device", "device-secret", &params, NOW)
        .expect("issued");
    assert_eq!(details.capability, r#"{"cmd:*":["subscribe"]}"#);
    assert_eq!(details.expires, NOW + 60_000);
    assert_eq!(
        auth.request_token_with_key("app.device", "nope", &params, NOW)
            .err(),
        Some(AuthError::BadSecret)
    );
    let greedy = TokenParams {
        capability: Some(r#"{"admin:*":["*"]}"#.into()),
        ..params
    };
    assert_eq!(
        auth.request_token_with_key("app.device", "device-secret", &greedy, NOW)
            .err(),
        Some(AuthError::CapabilityNotAllowed)
    );
}

#[test]
fn tokens_are_limited_by_the_key_when_verified() {
    // A token claiming more than its key allows (e.g. issued before the key
    // was narrowed) is cut down to the key's capability.
    let wide = issue_token(&device(), 60_000, &Capability::all(), None, NOW);
    let auth = auth();
    let p = auth.authenticate_token(&wide.token, NOW).expect("valid");
    assert_eq!(*p.capability, **device().capability());
    // A token of a key that is no longer configured.
    let gone = ApiKey::parse("app.gone:x").expect("valid key");
    let orphan = issue_token(&gone, 60_000, &Capability::all(), None, NOW);
    assert!(matches!(
        auth.authenticate_token(&orphan.token, NOW),
        Err(AuthError::TokenKeyUnknown { .. })
    ));
    assert_eq!(
        auth.authenticate_token("no-dots-at-all", NOW)
            .err()
            .map(|e| e.ably_code()),
        Some(40145)
    );
    assert!(auth.authenticate_token("a.b.c.d", NOW).is_err());
}

#[test]
fn jwt_through_the_authenticator() {
    let auth = auth();
    let now_s = NOW / 1000;
    let jwt = encode_hs256(
        &device(),
        now_s,
        now_s + 300,
        &cap(r#"{"cmd:*":["subscribe"]}"#),
        Some("d1"),
    );
    let p = auth.authenticate_token(&jwt, NOW).expect("valid");
    assert_eq!(p.kind, PrincipalKind::Jwt);
    assert_eq!(p.key_name.as_deref(), Some("app.device"));
    assert_eq!(p.client_id.as_deref(), Some("d1"));
    assert_eq!(p.expires_at_ms, Some(NOW + 300_000));
    assert!(auth.check(&p, &Op::Subscribe, "cmd:reboot"));
    // A JWT claiming beyond its key gets the intersection.
    let wide = encode_hs256(&device(), now_s, now_s + 300, &Capability::all(), None);
    let p = auth.authenticate_token(&wide, NOW).expect("valid");
    assert!(!auth.check(&p, &Op::Publish, "admin"));
    // Expired, and signed with a wrong secret.
    let old = encode_hs256(
        &device(),
        now_s - 600,
        now_s - 300,
        &Capability::all(),
        None,
    );
    assert_eq!(
        auth.authenticate_token(&old, NOW)
            .err()
            .map(|e| e.ably_code()),
        Some(40142)
    );
    let impostor = ApiKey::parse("app.device:guess").expect("valid key");
    let forged = encode_hs256(&impostor, now_s, now_s + 300, &Capability::all(), None);
    assert_eq!(
        auth.authenticate_token(&forged, NOW).err(),
        Some(AuthError::BadSignature {
            format: TokenFormat::Jwt
        })
    );
}

#[test]
fn deny_rules_override_capabilities() {
    let auth = auth().with_deny_rules([
        DenyRule::new(Who::Anyone, OpSet::from_ops([Op::Subscribe]), "admin/#").expect("valid"),
        DenyRule::new(Who::Anonymous, OpSet::all(), "private:*").expect("valid"),
        DenyRule::new(
            Who::ClientId("mallory".into()),
            OpSet::from_ops([Op::Publish]),
            "#",
        )
        .expect("valid"),
        DenyRule::new(
            Who::Key("app.device".into()),
            OpSet::all(),
            "sensors/secret/#",
        )
        .expect("valid"),
    ]);
    let admin = auth
        .authenticate_key("app.admin", "admin-secret")
        .expect("valid");
    // Capability `*` allows it, the rule refuses it.
    assert!(!auth.check(&admin, &Op::Subscribe, "admin/users"));
    assert!(
        auth.check(&admin, &Op::Publish, "admin/users"),
        "only subscribe is denied"
    );
    // Overlap: any filter that could receive admin messages is refused.
    assert!(!auth.check_subscribe_filter(&admin, "#"));
    assert!(!auth.check_subscribe_filter(&admin, "+/users"));
    assert!(!auth.check_subscribe_filter(&admin, "admin"));
    assert!(!auth.check_subscribe_filter(&admin, "$share/g/admin/#"));
    assert!(auth.check_subscribe_filter(&admin, "users/#"));
    assert!(auth.check_subscribe_filter(&admin, "chat:lobby"));
    // Anonymous only.
    let anon = auth.anonymous(Arc::new(Capability::all()));
    assert!(!auth.check(&anon, &Op::History, "private:x"));
    assert!(auth.check(&admin, &Op::History, "private:x"));
    assert!(!auth.check_subscribe_filter(&anon, "private:x"));
    // By client id (on a token).
    let params = TokenParams {
        client_id: Some("mallory".into()),
        ..TokenParams::default()
    };
    let details = auth
        .request_token_with_key("app.admin", "admin-secret", &params, NOW)
        .expect("issued");
    let mallory = auth.authenticate_token(&details.token, NOW).expect("valid");
    assert!(!auth.check(&mallory, &Op::Publish, "chat"));
    assert!(
        !auth.check(&mallory, &Op::Publish, "chat:lobby"),
        "`#` matches every non-$ name"
    );
    assert!(auth.check(&mallory, &Op::Subscribe, "chat:lobby"));
    // By key: also for the key's tokens.
    let device = auth
        .authenticate_key("app.device", "device-secret")
        .expect("valid");
    assert!(!auth.check(&device, &Op::Publish, "sensors/secret/1"));
    assert!(!auth.check_subscribe_filter(&device, "sensors/#"));
    assert!(auth.check_subscribe_filter(&device, "sensors/public/#"));
    let token = auth
        .request_token_with_key("app.device", "device-secret", &TokenParams::default(), NOW)
        .expect("issued");
    let via_token = auth.authenticate_token(&token.token, NOW).expect("valid");
    assert!(!auth.check(&via_token, &Op::Publish, "sensors/secret/1"));
    assert!(auth.check(&via_token, &Op::Publish, "sensors/public/1"));
}

#[test]
fn from_config() {
    let config: AuthConfig = toml::from_str(
        r#"
        [[keys]]
        key = "app.admin:admin-secret"

        [[keys]]
        key = "app.device:device-secret"
        capability = '{"sensors/#":["publish","subscribe"]}'

        [[deny]]
        who = "key:app.device"
        ops = ["subscribe"]
        filter = "sensors/secret/#"

        [limits]
        ttl_default_ms = 60000
        ttl_max_ms = 600000
        "#,
    )
    .expect("parses");
    let auth = Authenticator::from_config(&config).expect("valid");
    let mut too_short = config.clone();
    too_short.limits.ttl_default_ms = 3_600_000;
    assert!(matches!(
        Authenticator::from_config(&too_short),
        Err(AuthError::InvalidSetting(_))
    ));
    assert_eq!(auth.limits().ttl_max_ms, 600_000);
    assert_eq!(auth.deny_rules().len(), 1);
    let device = auth
        .authenticate_key("app.device", "device-secret")
        .expect("valid");
    assert!(auth.check(&device, &Op::Publish, "sensors/secret/x"));
    assert!(!auth.check(&device, &Op::Subscribe, "sensors/secret/x"));
    assert!(!auth.check(&device, &Op::Publish, "other"));
    let bad: AuthConfig =
        toml::from_str("[[deny]]\nwho = \"everyone\"\nfilter = \"x\"").expect("parses");
    assert!(matches!(
        Authenticator::from_config(&bad),
        Err(AuthError::InvalidDenySubject(_))
    ));
}

#[test]
fn authenticator_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<tern_auth::Principal>();
}
