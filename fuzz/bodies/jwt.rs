//! Fuzz body `jwt`: `Verifier::verify_now` of a node whose `auth` has an HS256
//! key (no `kid`), a second HS256 key (`kid` "hs-2"), an ES256 public key (`kid`
//! "ec-1", `tests/fixtures/jwt/`), an audience and an issuer. The first byte
//! chooses how the rest becomes a token:
//!
//! - `0`: the bytes themselves (as UTF-8, lossily);
//! - `1`: one of several real tokens (valid HS256 and ES256 ones, expired, wrong
//!   audience, `alg: none`, an unknown `kid`) edited by the bytes (overwrite, insert,
//!   delete at positions they name);
//! - `2`: a header and claims JSON taken from the bytes, signed properly with one
//!   of the HS256 keys (so the claim checks after the signature are fuzzed), or
//!   signed with a key the node does not have, or not signed at all (an empty
//!   signature, as `alg: none` would have it).
//!
//! Checked: nothing panics; an edited token never verifies (the signature covers
//! every byte of header and claims); a token signed with a wrong key, or unsigned,
//! never verifies; an accepted token names HS256 or ES256 (never `none`), its
//! signature verifies independently (`jsonwebtoken::crypto::verify`) with the one
//! key its `alg` and `kid` name, it has a non-empty string `sub` (the identity's
//! user id), a numeric `exp` not past (beyond the leeway) whose milliseconds are the
//! identity's `expires_at_ms` (never 0, which means "never expires"), and the
//! configured `aud` and `iss`.
//!
//! Shared by the cargo-fuzz target (`fuzz/fuzz_targets/jwt.rs`) and the corpus
//! replay test (`tests/fuzz_corpus.rs`), which include this file by path.

use base64::Engine;
use framework::config::{AuthConfig, KeyConfig};
use framework::node::{AuthError, Identity, Verifier};
use framework::testing::TestNode;
use framework::{App, Config};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

/// The HS256 key without a `kid`.
pub const SECRET: &str = "jwt-fuzz-secret-number-one-32by!";
/// The HS256 key with `kid` "hs-2".
pub const SECRET_2: &str = "jwt-fuzz-secret-number-two-32by!";
/// A key the node does not have.
pub const WRONG_SECRET: &str = "jwt-fuzz-secret-nobody-knows-32!";
const ES256_PUBLIC: &str = include_str!("../../tests/fixtures/jwt/es256-public.pem");
const ES256_PRIVATE: &str = include_str!("../../tests/fixtures/jwt/es256-private.pem");
const AUDIENCE: &str = "fuzz";
const ISSUER: &str = "fuzzer";
const LEEWAY: u64 = 30;

struct Fixture {
    // Kept for the node's lifetime.
    _rt: tokio::runtime::Runtime,
    node: TestNode,
    /// Real tokens, some valid, and what the verifier says of each.
    bases: Vec<(String, Result<Identity, AuthError>)>,
}

impl Fixture {
    fn verifier(&self) -> &Verifier {
        self.node.node().verifier().expect("auth is configured")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    Header {
        kid: kid.map(str::to_string),
        ..Header::new(alg)
    }
}

fn sign(header: &Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("a token")
}

fn hs(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes())
}

/// The real tokens edited by mode 1, in a fixed order.
pub fn base_tokens() -> Vec<String> {
    let exp = now() + 10 * 365 * 24 * 3600;
    let good = serde_json::json!({
        "sub": "ada", "exp": exp, "aud": AUDIENCE, "iss": ISSUER, "role": "admin",
    });
    let es = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("the ES256 fixture");
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    vec![
        sign(&header(Algorithm::HS256, None), &good, &hs(SECRET)),
        sign(
            &header(Algorithm::HS256, Some("hs-2")),
            &good,
            &hs(SECRET_2),
        ),
        sign(&header(Algorithm::ES256, Some("ec-1")), &good, &es),
        // Expired.
        sign(
            &header(Algorithm::HS256, None),
            &serde_json::json!({"sub": "ada", "exp": 1000, "aud": AUDIENCE, "iss": ISSUER}),
            &hs(SECRET),
        ),
        // Wrong audience, array form; nbf in the future.
        sign(
            &header(Algorithm::HS256, None),
            &serde_json::json!({"sub": "ada", "exp": exp, "aud": ["x", "y"], "iss": ISSUER, "nbf": exp}),
            &hs(SECRET),
        ),
        // The right key under the wrong kid; an unknown kid.
        sign(&header(Algorithm::HS256, Some("ec-1")), &good, &hs(SECRET)),
        sign(&header(Algorithm::HS512, Some("zz")), &good, &hs(SECRET)),
        // alg none, and an HS256 header on an ES256 key's kid (key confusion).
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&good.to_string())
        ),
        sign(
            &header(Algorithm::HS256, Some("ec-1")),
            &good,
            &hs(ES256_PUBLIC),
        ),
    ]
}

thread_local! {
    static FIXTURE: Fixture = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let auth = AuthConfig {
            keys: vec![
                KeyConfig {
                    algorithm: "HS256".into(),
                    secret: Some(SECRET.into()),
                    ..KeyConfig::default()
                },
                KeyConfig {
                    kid: Some("hs-2".into()),
                    algorithm: "HS256".into(),
                    secret: Some(SECRET_2.into()),
                    ..KeyConfig::default()
                },
                KeyConfig {
                    kid: Some("ec-1".into()),
                    algorithm: "ES256".into(),
                    public_key: Some(ES256_PUBLIC.into()),
                    ..KeyConfig::default()
                },
            ],
            audience: vec![AUDIENCE.into()],
            issuer: vec![ISSUER.into()],
            leeway: std::time::Duration::from_secs(LEEWAY),
            ..AuthConfig::default()
        };
        let app = App::new().config(Config {
            auth: Some(auth),
            ..Config::default()
        });
        let node = rt.block_on(TestNode::new(app)).expect("the node starts");
        let verifier = node.node().verifier().expect("auth is configured");
        let bases = base_tokens()
            .into_iter()
            .map(|t| {
                let r = verifier.verify_now(&t);
                (t, r)
            })
            .collect::<Vec<_>>();
        // The fixture itself: the first three verify, the others do not.
        for (i, (t, r)) in bases.iter().enumerate() {
            assert_eq!(r.is_ok(), i < 3, "base token {i} {t}: {r:?}");
        }
        Fixture { _rt: rt, node, bases }
    };
}

/// The key the node holds for `alg` and `kid`, judged independently of the
/// verifier.
fn expected_key(alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
    match (alg, kid) {
        (Algorithm::HS256, None) => Some(DecodingKey::from_secret(SECRET.as_bytes())),
        (Algorithm::HS256, Some("hs-2")) => Some(DecodingKey::from_secret(SECRET_2.as_bytes())),
        (Algorithm::ES256, Some("ec-1")) => {
            Some(DecodingKey::from_ec_pem(ES256_PUBLIC.as_bytes()).expect("the ES256 fixture"))
        }
        _ => None,
    }
}

/// What every accepted token must be.
fn check_accepted(token: &str, identity: &Identity) {
    let header = jsonwebtoken::decode_header(token).expect("an accepted token has a header");
    let key = expected_key(header.alg, header.kid.as_deref())
        .unwrap_or_else(|| panic!("accepted with no key for {header:?}: {token}"));
    let (message, signature) = token.rsplit_once('.').expect("three parts");
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, header.alg)
            .unwrap_or(false),
        "accepted, yet not signed by the key its header names: {token}"
    );
    let claims = identity.claims();
    let sub = claims.get("sub").and_then(|s| s.as_str());
    assert_eq!(sub, Some(identity.user_id()), "{claims}");
    assert!(!identity.user_id().is_empty());
    let exp = claims.get("exp").and_then(|e| e.as_f64());
    let exp = exp.unwrap_or_else(|| panic!("accepted without a numeric exp: {claims}"));
    assert!(
        exp + LEEWAY as f64 + 1.0 >= now() as f64,
        "accepted expired: {claims}"
    );
    // The session ends at `exp`: 0 would mean "never".
    assert_ne!(
        identity.expires_at_ms(),
        0,
        "accepted, never expiring: {claims}"
    );
    match claims.get("exp").and_then(|e| e.as_u64()) {
        Some(e) => assert_eq!(identity.expires_at_ms(), e.saturating_mul(1000)),
        // A fractional exp: its millisecond, saturating at u64::MAX like an
        // integer one (beyond 2^53 an f64 is coarser than a millisecond).
        None => {
            let want = (exp * 1000.0).min(u64::MAX as f64);
            assert!(
                (identity.expires_at_ms() as f64 - want).abs() <= 1.0 + want * f64::EPSILON,
                "expires at {} ms, exp {exp}: {claims}",
                identity.expires_at_ms()
            );
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == AUDIENCE,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted without the audience: {claims}");
    assert_eq!(
        claims.get("iss").and_then(|i| i.as_str()),
        Some(ISSUER),
        "{claims}"
    );
}

/// Mode 1: `token` edited by `ops` (three bytes each: what, where, which byte).
fn edit(token: &str, ops: &[u8]) -> Vec<u8> {
    let mut t = token.as_bytes().to_vec();
    for op in ops.chunks_exact(3).take(8) {
        let at = usize::from(op[1]) * 3 % (t.len() + 1);
        match op[0] % 3 {
            0 if at < t.len() => t[at] = op[2],
            1 => t.insert(at, op[2]),
            2 if at < t.len() => {
                t.remove(at);
            }
            _ => {}
        }
    }
    t
}

/// The fuzz body.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    FIXTURE.with(|f| {
        let verifier = f.verifier();
        match mode % 3 {
            0 => {
                let token = String::from_utf8_lossy(rest);
                if let Ok(id) = verifier.verify_now(&token) {
                    check_accepted(&token, &id);
                }
            }
            1 => {
                let Some((&which, ops)) = rest.split_first() else {
                    return;
                };
                let (base, expected) = &f.bases[usize::from(which) % f.bases.len()];
                let edited = edit(base, ops);
                let token = String::from_utf8_lossy(&edited);
                let result = verifier.verify_now(&token);
                if token == base.as_str() {
                    assert_eq!(&result, expected);
                } else {
                    assert!(
                        result.is_err(),
                        "an edited token verified: {token} ({result:?})"
                    );
                }
                if let Ok(id) = &result {
                    check_accepted(&token, id);
                }
            }
            _ => {
                let Some((&key, json)) = rest.split_first() else {
                    return;
                };
                // Header and claims, split at the first 0xff (else in the middle).
                let cut = json
                    .iter()
                    .position(|&b| b == 0xff)
                    .unwrap_or(json.len() / 2);
                let (head, claims) = (&json[..cut], json.get(cut + 1..).unwrap_or_default());
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let message = format!("{}.{}", b64.encode(head), b64.encode(claims));
                // 0, 1: the node's keys; 2: a key it does not have; 3: unsigned.
                let (secret, kid) = match key % 4 {
                    0 => (Some(SECRET), None),
                    1 => (Some(SECRET_2), Some("hs-2")),
                    2 => (Some(WRONG_SECRET), None),
                    _ => (None, None),
                };
                let signature = secret.map_or_else(String::new, |secret| {
                    jsonwebtoken::crypto::sign(message.as_bytes(), &hs(secret), Algorithm::HS256)
                        .expect("HMAC signs anything")
                });
                let token = format!("{message}.{signature}");
                if let Ok(id) = verifier.verify_now(&token) {
                    assert!(
                        key % 4 < 2,
                        "accepted, signed by no key of the node: {token}"
                    );
                    check_accepted(&token, &id);
                    let header = jsonwebtoken::decode_header(&token).expect("it was accepted");
                    assert_eq!(header.alg, Algorithm::HS256, "{token}");
                    assert_eq!(
                        header.kid.as_deref(),
                        kid,
                        "verified by another key: {token}"
                    );
                }
            }
        }
    });
}

/// Seed inputs: each real token as it is and lightly edited, and signed
/// header/claims pairs.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, t) in base_tokens().into_iter().enumerate() {
        out.push([&[0u8][..], t.as_bytes()].concat());
        out.push(vec![1, i as u8]);
        out.push(vec![1, i as u8, 0, 7, b'A', 2, 40, 0]);
    }
    let exp = now() + 10 * 365 * 24 * 3600;
    let claims = [
        serde_json::json!({"sub": "ada", "exp": exp, "aud": AUDIENCE, "iss": ISSUER}),
        serde_json::json!({"sub": "ada", "exp": exp as f64 + 0.5, "aud": [AUDIENCE, "x"], "iss": ISSUER, "nbf": 1}),
        serde_json::json!({"sub": "", "exp": exp, "aud": AUDIENCE, "iss": ISSUER}),
        serde_json::json!({"sub": 7, "exp": "soon", "aud": AUDIENCE, "iss": [ISSUER]}),
    ];
    let headers = [
        (0u8, r#"{"alg":"HS256","typ":"JWT"}"#),
        (1, r#"{"alg":"HS256","kid":"hs-2"}"#),
        (0, r#"{"alg":"HS256","crit":["exp"],"jwk":{"kty":"oct"}}"#),
        // A key the node does not have; unsigned, as alg none and as HS256.
        (2, r#"{"alg":"HS256","typ":"JWT"}"#),
        (3, r#"{"alg":"none","typ":"JWT"}"#),
        (3, r#"{"alg":"HS256"}"#),
    ];
    for (key, h) in headers {
        for c in &claims {
            let mut input = vec![2, key];
            input.extend_from_slice(h.as_bytes());
            input.push(0xff);
            input.extend_from_slice(c.to_string().as_bytes());
            out.push(input);
        }
    }
    out
}
