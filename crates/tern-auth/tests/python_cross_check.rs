//! Cross-implementation check: TokenRequests and JWTs made by an
//! independent Python signer (`tests/py/sign.py`, standard library only)
//! verify with the Rust code, and the Rust signer produces byte-identical
//! macs for the same inputs.
//!
//! Skipped, with a message, only when `python3` is not installed.

use std::process::Command;

use tern_auth::{
    ApiKey, AuthError, AuthLimits, Authenticator, Op, PrincipalKind, TokenFormat, TokenParams,
    TokenRequest,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/sign.py");
const KEY: &str = "app1.keyA:s3cr3t/with+base64=";
const NOW_MS: u64 = 1_700_000_000_123;

/// Runs the signer; `None` when python3 is absent.
fn python(args: &[&str]) -> Option<String> {
    let output = match Command::new("python3").arg(SCRIPT).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: python3 is not installed, so the cross-implementation check cannot run"
            );
            return None;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    assert!(
        output.status.success(),
        "sign.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_owned(),
    )
}

fn key() -> ApiKey {
    ApiKey::parse(KEY).expect("valid key")
}

fn auth() -> Authenticator {
    Authenticator::new(AuthLimits::default())
        .and_then(|a| a.with_keys([key()]))
        .expect("valid authenticator")
}

struct Case {
    ttl: Option<u64>,
    capability: Option<&'static str>,
    client_id: Option<&'static str>,
    nonce: &'static str,
}

const CASES: &[Case] = &[
    // A capability that needs canonicalising: whitespace, unsorted
    // resources, unsorted and repeated operations.
    Case {
        ttl: Some(3_600_000),
        capability: Some(
            r#"{ "sensors/#": ["subscribe", "publish", "subscribe"], "chat:*" : ["presence","history"], "*": ["subscribe"] }"#,
        ),
        client_id: Some("alice"),
        nonce: "nonce-0000000000000001",
    },
    // Empty clientId, no ttl, no capability: empty lines in the mac text.
    Case {
        ttl: None,
        capability: None,
        client_id: Some(""),
        nonce: "nonce-0000000000000002",
    },
    // Non-ASCII and characters JSON escapes.
    Case {
        ttl: Some(60_000),
        capability: Some(r#"{"café:*":["publish"],"q\"uote":["subscribe"]}"#),
        client_id: Some("zoë"),
        nonce: "nonce-ü-00000000000003",
    },
];

#[test]
fn python_token_requests_verify_and_match_rust_macs() {
    let auth = auth();
    for case in CASES {
        let timestamp = NOW_MS.to_string();
        let ttl = case.ttl.map(|t| t.to_string());
        let mut args = vec![
            "token-request",
            "--key",
            KEY,
            "--timestamp",
            &timestamp,
            "--nonce",
            case.nonce,
        ];
        if let Some(ttl) = &ttl {
            args.extend(["--ttl", ttl]);
        }
        if let Some(capability) = case.capability {
            args.extend(["--capability", capability]);
        }
        if let Some(client_id) = case.client_id {
            args.extend(["--client-id", client_id]);
        }
        let Some(json) = python(&args) else { return };
        let from_python: TokenRequest =
            serde_json::from_str(&json).expect("Python's TokenRequest decodes");

        // The Rust signer, same inputs: same canonical capability, same mac.
        let params = TokenParams {
            ttl: case.ttl,
            capability: case.capability.map(str::to_owned),
            client_id: case.client_id.filter(|c| !c.is_empty()).map(str::to_owned),
        };
        let from_rust = TokenRequest::sign(&key(), &params, NOW_MS, case.nonce).expect("signs");
        assert_eq!(
            from_rust.capability, from_python.capability,
            "canonical capability"
        );
        assert_eq!(from_rust.mac, from_python.mac, "mac for {json}");
        assert_eq!(from_rust, from_python);

        // The Python request is accepted, once.
        let details = auth
            .request_token(&from_python, NOW_MS + 5_000)
            .expect("Python request accepted");
        assert_eq!(details.client_id, params.client_id);
        if let Some(capability) = &from_python.capability {
            assert_eq!(&details.capability, capability);
        }
        let principal = auth
            .authenticate_token(&details.token, NOW_MS + 5_000)
            .expect("token valid");
        assert_eq!(principal.kind, PrincipalKind::Token);
        assert_eq!(
            auth.request_token(&from_python, NOW_MS + 5_000).err(),
            Some(AuthError::NonceReused)
        );
    }
}

#[test]
fn python_token_request_with_a_changed_field_is_refused() {
    let timestamp = NOW_MS.to_string();
    let Some(json) = python(&[
        "token-request",
        "--key",
        KEY,
        "--timestamp",
        &timestamp,
        "--nonce",
        "nonce-tamper-000001",
        "--capability",
        r#"{"chat:*":["subscribe"]}"#,
        "--client-id",
        "bob",
    ]) else {
        return;
    };
    let mut request: TokenRequest = serde_json::from_str(&json).expect("decodes");
    request.capability = Some(r#"{"*":["*"]}"#.into());
    assert_eq!(
        auth().request_token(&request, NOW_MS).err(),
        Some(AuthError::BadMac)
    );
}

#[test]
fn python_jwts_verify() {
    let auth = auth();
    let (iat, exp) = (NOW_MS / 1000, NOW_MS / 1000 + 600);
    let (iat_s, exp_s) = (iat.to_string(), exp.to_string());
    // Non-canonical capability JSON, Python's default separators (spaces).
    let Some(jwt) = python(&[
        "jwt",
        "--key",
        KEY,
        "--iat",
        &iat_s,
        "--exp",
        &exp_s,
        "--capability",
        r#"{"sensors/+/temp": ["subscribe"], "chat:*": ["publish", "subscribe"]}"#,
        "--client-id",
        "dev-1",
    ]) else {
        return;
    };
    let principal = auth
        .authenticate_token(&jwt, NOW_MS)
        .expect("Python JWT accepted");
    assert_eq!(principal.kind, PrincipalKind::Jwt);
    assert_eq!(principal.key_name.as_deref(), Some("app1.keyA"));
    assert_eq!(principal.client_id.as_deref(), Some("dev-1"));
    assert_eq!(principal.expires_at_ms, Some(exp * 1000));
    assert!(auth.check(&principal, &Op::Subscribe, "sensors/1/temp"));
    assert!(auth.check(&principal, &Op::Publish, "chat:lobby"));
    assert!(!auth.check(&principal, &Op::Publish, "sensors/1/temp"));
    assert!(auth.check_subscribe_filter(&principal, "sensors/+/temp"));

    // Signed with another secret under the same kid.
    let Some(forged) = python(&[
        "jwt",
        "--key",
        "app1.keyA:guessed",
        "--iat",
        &iat_s,
        "--exp",
        &exp_s,
        "--capability",
        r#"{"*":["*"]}"#,
    ]) else {
        return;
    };
    assert_eq!(
        auth.authenticate_token(&forged, NOW_MS).err(),
        Some(AuthError::BadSignature {
            format: TokenFormat::Jwt
        })
    );

    // Another algorithm named in the header.
    let Some(wrong_alg) = python(&[
        "jwt",
        "--key",
        KEY,
        "--iat",
        &iat_s,
        "--exp",
        &exp_s,
        "--capability",
        r#"{"*":["*"]}"#,
        "--alg",
        "HS512",
    ]) else {
        return;
    };
    assert_eq!(
        auth.authenticate_token(&wrong_alg, NOW_MS).err(),
        Some(AuthError::UnsupportedAlgorithm("HS512".into()))
    );

    // Expired.
    let Some(old) = python(&[
        "jwt",
        "--key",
        KEY,
        "--iat",
        &(iat - 600).to_string(),
        "--exp",
        &iat_s,
        "--capability",
        r#"{"*":["*"]}"#,
    ]) else {
        return;
    };
    assert!(matches!(
        auth.authenticate_token(&old, NOW_MS),
        Err(AuthError::Expired { .. })
    ));
}
