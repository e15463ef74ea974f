//! JWT identity end to end: tokens at the upgrade (header and query), in `Auth`
//! frames and in a frame's own `token`; `Welcome` and `Auth`'s Ack carrying the
//! user and expiry; expiry closing with 1008 unless refreshed; the algorithm
//! pinned per key (HS, RS, PS, ES, EdDSA; `alg: none` and HS/RS confusion refused);
//! `aud`/`iss`; JWKS from a file and over HTTP with refresh on an unknown `kid`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use framework::client::{Client, ClientError};
use framework::config::{AuthConfig, KeyConfig};
use framework::dispatch::Claims;
use framework::node::Identity;
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, Request};
use framework_tests::{any_port, expect_server_error, DEADLINE};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "a test secret of more than sixteen bytes";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub` expiring in `ttl` seconds, with `extra` claims.
fn hs256(sub: &str, ttl: i64, extra: serde_json::Value) -> String {
    hs256_until(sub, now() as i64 + ttl, extra)
}

/// An HS256 token for `sub` whose `exp` is `exp`: for tests that compare the
/// expiry the server reports with the token's own, which `now()` read again
/// later may no longer give (the second can turn between the two reads).
fn hs256_until(sub: &str, exp: i64, extra: serde_json::Value) -> String {
    let mut claims = json!({ "sub": sub, "exp": exp });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn whoami(identity: Identity) -> Vec<u8> {
    identity.user_id().as_bytes().to_vec()
}

fn maybe(identity: Option<Identity>) -> Vec<u8> {
    identity.map_or(b"anonymous".to_vec(), |i| i.user_id().as_bytes().to_vec())
}

#[derive(serde::Deserialize)]
struct Role {
    role: String,
}

fn role(Claims(r): Claims<Role>) -> Vec<u8> {
    r.role.into_bytes()
}

async fn start(auth: AuthConfig) -> AppHandle {
    App::new()
        .config(Config {
            auth: Some(auth),
            ..Config::default()
        })
        .register_custom_handler(200, whoami)
        .register_custom_handler(201, maybe)
        .register_custom_handler(202, role)
        .run_websocket_service(any_port())
        .run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

fn ws(server: &AppHandle) -> String {
    format!("ws://{}/", server.websocket_addr())
}

/// The HTTP status of a refused upgrade.
fn status(result: Result<Client, ClientError>) -> u16 {
    match result {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(r))) => r.status().as_u16(),
        Ok(_) => 101,
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

async fn text(c: &Client, opcode: u16) -> Result<String, ClientError> {
    c.request(opcode, b"")
        .await
        .map(|f| String::from_utf8_lossy(&f.payload()).into_owned())
}

#[tokio::test]
async fn a_token_at_the_upgrade_identifies_the_connection() {
    let server = start(AuthConfig::hs256(SECRET)).await;
    let exp = now() + 3600;
    let token = hs256_until("ada", exp as i64, json!({ "role": "admin" }));
    let c = Client::connect_with_token(&ws(&server), &token)
        .await
        .unwrap();
    assert_eq!(c.user_id(), "ada", "Welcome carries the user");
    assert_eq!(c.expires_at_ms(), exp * 1000, "and the token's exp × 1000");
    assert_eq!(text(&c, 200).await.unwrap(), "ada");
    assert_eq!(text(&c, 201).await.unwrap(), "ada");
    assert_eq!(text(&c, 202).await.unwrap(), "admin");

    // The query parameter, for browsers; on run_service's path too.
    let q = Client::connect(&format!("ws://{}/ws?token={token}", server.service_addr()))
        .await
        .unwrap();
    assert_eq!(q.user_id(), "ada");
    server.shutdown().await;
}

#[tokio::test]
async fn deliveries_name_the_emitters_user() {
    let server = start(AuthConfig::hs256(SECRET)).await;
    let ada = Client::connect_with_token(&ws(&server), &hs256("ada", 3600, json!({})))
        .await
        .unwrap();
    let anon = Client::connect(&ws(&server)).await.unwrap();
    let reader = Client::connect(&ws(&server)).await.unwrap();
    reader.subscribe("room").await.unwrap();

    ada.publish("room", b"hi").await.unwrap();
    let got = reader.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(got.user_id(), Some("ada"), "Publish names the user");
    assert_eq!(got.emitter_id(), Some(ada.session_id()));

    anon.publish("room", b"who?").await.unwrap();
    let got = reader.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(got.user_id(), None, "anonymous: no user_id");
    assert_eq!(got.emitter_id(), Some(anon.session_id()));

    ada.send_to(reader.session_id(), b"psst").await.unwrap();
    let got = reader.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(got.opcode(), Opcode::Send.0);
    assert_eq!(got.user_id(), Some("ada"), "Send names the user");

    // A user who authenticates later is named from then on.
    anon.authenticate(&hs256("bob", 3600, json!({})))
        .await
        .unwrap();
    anon.publish("room", b"now known").await.unwrap();
    let got = reader.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(got.user_id(), Some("bob"));
    server.shutdown().await;
}

#[tokio::test]
async fn anonymous_connections_and_required_authentication() {
    let optional = start(AuthConfig::hs256(SECRET)).await;
    let anon = Client::connect(&ws(&optional)).await.unwrap();
    assert_eq!(anon.user_id(), "");
    assert_eq!(anon.expires_at_ms(), 0);
    assert_eq!(text(&anon, 201).await.unwrap(), "anonymous");
    expect_server_error(anon.request(200, b"").await, ErrorCode::Unauthorized);
    // A bad token is refused even where authentication is optional.
    let forged = hs256("ada", 3600, json!({})).replace('.', ".x");
    assert_eq!(
        status(Client::connect_with_token(&ws(&optional), &forged).await),
        401
    );
    optional.shutdown().await;

    let required = start(AuthConfig::hs256(SECRET).required()).await;
    assert_eq!(status(Client::connect(&ws(&required)).await), 401);
    let r = http::send(
        required.service_addr(),
        Request::get("/ws")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("token is required"), "{}", r.text());
    let ok = Client::connect_with_token(&ws(&required), &hs256("bo", 60, json!({}))).await;
    assert_eq!(ok.unwrap().user_id(), "bo");
    assert!(
        required
            .node()
            .metrics()
            .handshakes_refused
            .load(Ordering::Relaxed)
            >= 2,
        "refusals are counted"
    );
    required.shutdown().await;
}

#[tokio::test]
async fn auth_frames_present_and_refresh_tokens() {
    let server = start(AuthConfig::hs256(SECRET)).await;
    let c = Client::connect(&ws(&server)).await.unwrap();
    // Answered with an Ack although the frame did not ask for one.
    let exp = now() + 600;
    let token = hs256_until("cy", exp as i64, json!({}));
    let (user, expires) = c.authenticate(&token).await.unwrap();
    assert_eq!((user.as_str(), expires), ("cy", exp * 1000));
    assert_eq!(text(&c, 200).await.unwrap(), "cy");
    // A bad token: Unauthorized, and the previous identity stays.
    let err = c.authenticate(&hs256("cy", -120, json!({}))).await;
    let message = expect_server_error(err, ErrorCode::Unauthorized);
    assert!(message.contains("expired"), "{message}");
    expect_server_error(c.authenticate("not a jwt").await, ErrorCode::Unauthorized);
    assert_eq!(text(&c, 200).await.unwrap(), "cy");
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_token_applies_to_that_frame_only() {
    let server = start(AuthConfig::hs256(SECRET)).await;
    let c = Client::connect(&ws(&server)).await.unwrap();
    let token = hs256("dee", 600, json!({}));
    let mut fields = FrameFields::new(200);
    fields.token = Some(&token);
    let reply = c.call(fields).await.unwrap();
    assert_eq!(&reply.payload()[..], b"dee");
    // The connection itself is still anonymous.
    assert_eq!(text(&c, 201).await.unwrap(), "anonymous");
    // A frame whose token fails is Unauthorized and not handled.
    let mut bad = FrameFields::new(201);
    bad.token = Some("not.a.jwt");
    expect_server_error(c.call(bad).await, ErrorCode::Unauthorized);
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_closes_the_session_with_1008_unless_refreshed() {
    let server = start(AuthConfig {
        leeway: Duration::ZERO,
        ..AuthConfig::hs256(SECRET)
    })
    .await;
    // Expires in about two seconds.
    let short = Client::connect_with_token(&ws(&server), &hs256("ed", 2, json!({})))
        .await
        .unwrap();
    let refreshed = Client::connect_with_token(&ws(&server), &hs256("fay", 2, json!({})))
        .await
        .unwrap();
    refreshed
        .authenticate(&hs256("fay", 600, json!({})))
        .await
        .unwrap();
    let closed = async {
        while !short.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, closed)
        .await
        .expect("closed at expiry");
    assert_eq!(short.close_frame(), Some((1008, "token expired".into())));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        refreshed.ping().await.is_ok(),
        "the refreshed session lives on"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_has_at_most_max_connections_per_user_sessions() {
    let server = App::new()
        .config(Config {
            auth: Some(AuthConfig::hs256(SECRET)),
            max_connections_per_user: 2,
            ..Config::default()
        })
        .register_custom_handler(200, whoami)
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let ada = || hs256("ada", 600, json!({}));
    let first = Client::connect_with_token(&ws(&server), &ada())
        .await
        .unwrap();
    let second = Client::connect(&ws(&server)).await.unwrap();
    second.authenticate(&ada()).await.unwrap();
    // A fresh token for the same user on the same session does not count again.
    second.authenticate(&ada()).await.unwrap();
    // A third upgrade as ada: 429, answered before any session exists.
    assert_eq!(
        status(Client::connect_with_token(&ws(&server), &ada()).await),
        429
    );
    // A third session becoming ada through Auth: closed with 1008.
    let third = Client::connect(&ws(&server)).await.unwrap();
    assert!(third.authenticate(&ada()).await.is_err());
    let closed = async {
        while !third.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, closed)
        .await
        .expect("closed once over the limit");
    assert_eq!(
        third.close_frame(),
        Some((1008, "too many connections for this user".into()))
    );
    // Other users are not affected, and the two sessions live on.
    let bob = Client::connect_with_token(&ws(&server), &hs256("bob", 600, json!({})))
        .await
        .unwrap();
    assert_eq!(bob.user_id(), "bob");
    assert_eq!(text(&first, 200).await.unwrap(), "ada");
    assert_eq!(text(&second, 200).await.unwrap(), "ada");
    // A session that ends gives its place back.
    drop(first);
    let again = async {
        loop {
            match Client::connect_with_token(&ws(&server), &ada()).await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    let again = tokio::time::timeout(DEADLINE, again)
        .await
        .expect("ada's place is released when a session ends");
    assert_eq!(text(&again, 200).await.unwrap(), "ada");
    server.shutdown().await;
}

fn signed(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    claims: serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, &claims, key).unwrap()
}

fn key(alg: &str, file: &str, kid: Option<&str>) -> KeyConfig {
    KeyConfig {
        kid: kid.map(str::to_string),
        algorithm: alg.into(),
        public_key_file: Some(fixture(file)),
        ..KeyConfig::default()
    }
}

#[tokio::test]
async fn every_algorithm_family_with_pinned_keys() {
    let rsa = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let ec = std::fs::read(fixture("es256-private.pem")).unwrap();
    let ed = std::fs::read(fixture("ed25519-private.pem")).unwrap();
    let server = start(AuthConfig {
        keys: vec![
            key("RS256", "rs256-public.pem", None),
            key("PS256", "rs256-public.pem", Some("ps")),
            key("ES256", "es256-public.pem", Some("ec")),
            key("EdDSA", "ed25519-public.pem", Some("ed")),
        ],
        ..AuthConfig::default()
    })
    .await;
    let claims = |sub: &str| json!({ "sub": sub, "exp": now() + 600 });
    let rsa_key = EncodingKey::from_rsa_pem(&rsa).unwrap();
    let cases = [
        (signed(Algorithm::RS256, &rsa_key, None, claims("rs")), "rs"),
        (
            signed(Algorithm::PS256, &rsa_key, Some("ps"), claims("ps")),
            "ps",
        ),
        (
            signed(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&ec).unwrap(),
                Some("ec"),
                claims("es"),
            ),
            "es",
        ),
        (
            signed(
                Algorithm::EdDSA,
                &EncodingKey::from_ed_pem(&ed).unwrap(),
                Some("ed"),
                claims("ed"),
            ),
            "ed",
        ),
    ];
    for (token, user) in cases {
        let c = Client::connect_with_token(&ws(&server), &token)
            .await
            .unwrap();
        assert_eq!(c.user_id(), user);
    }

    // Refused: alg none; HS256 signed with the RSA public key as the secret (key
    // confusion); a PS256 token with RS256's (kid-less) key; a kid nobody has.
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims("mallory"))
    );
    let public_pem = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let confused = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        None,
        claims("mallory"),
    );
    let wrong_alg = signed(Algorithm::PS256, &rsa_key, None, claims("mallory"));
    let unknown_kid = signed(
        Algorithm::RS256,
        &rsa_key,
        Some("nobody"),
        claims("mallory"),
    );
    for token in [none, confused, wrong_alg, unknown_kid] {
        assert_eq!(
            status(Client::connect_with_token(&ws(&server), &token).await),
            401
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = start(AuthConfig {
        audience: vec!["chat".into()],
        issuer: vec!["https://id.example".into()],
        ..AuthConfig::hs256(SECRET)
    })
    .await;
    let good = hs256(
        "gus",
        600,
        json!({ "aud": "chat", "iss": "https://id.example" }),
    );
    assert_eq!(
        Client::connect_with_token(&ws(&server), &good)
            .await
            .unwrap()
            .user_id(),
        "gus"
    );
    for extra in [
        json!({ "aud": "other", "iss": "https://id.example" }),
        json!({ "aud": "chat", "iss": "https://evil.example" }),
        json!({ "iss": "https://id.example" }),
    ] {
        let token = hs256("gus", 600, extra);
        assert_eq!(
            status(Client::connect_with_token(&ws(&server), &token).await),
            401
        );
    }
    server.shutdown().await;
}

/// A fractional `exp` (jsonwebtoken accepts one) is still a deadline: the
/// identity expires at its millisecond, not at 0 ("never"). Found by the `jwt`
/// fuzz target (`fuzz/corpus/jwt/crash-fractional-exp`).
#[tokio::test]
async fn a_fractional_exp_still_expires() {
    let server = start(AuthConfig::hs256(SECRET)).await;
    let exp = now() as f64 + 600.5;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "ada", "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let c = Client::connect_with_token(&ws(&server), &token)
        .await
        .expect("admitted");
    assert_eq!(c.expires_at_ms(), (exp * 1000.0) as u64);
    assert_eq!(
        c.authenticate(&token).await.expect("an Ack").1,
        (exp * 1000.0) as u64
    );
    server.shutdown().await;
}

/// A JWKS document of HMAC keys (`oct`), by kid.
fn jwks(kids: &[&str]) -> String {
    let keys: Vec<_> = kids
        .iter()
        .map(|kid| {
            json!({
                "kty": "oct", "alg": "HS256", "kid": kid,
                "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{SECRET}-{kid}")),
            })
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn jwks_token(kid: &str, sub: &str) -> String {
    signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(format!("{SECRET}-{kid}").as_bytes()),
        Some(kid),
        json!({ "sub": sub, "exp": now() + 600 }),
    )
}

#[tokio::test]
async fn keys_from_a_jwks_file() {
    let path = std::env::temp_dir().join(format!("jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks(&["k1"])).unwrap();
    let server = start(AuthConfig {
        jwks: Some(path.display().to_string()),
        ..AuthConfig::default()
    })
    .await;
    let c = Client::connect_with_token(&ws(&server), &jwks_token("k1", "hal"))
        .await
        .unwrap();
    assert_eq!(c.user_id(), "hal");
    server.shutdown().await;
    std::fs::remove_file(path).unwrap();
}

/// A local JWKS server: serves the current document, counts the reads.
async fn jwks_server(doc: Arc<parking_lot::Mutex<String>>, reads: Arc<AtomicUsize>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (doc, reads) = (doc.clone(), reads.clone());
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                doc.lock().clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn keys_from_a_jwks_url_refreshed_on_an_unknown_kid_at_most_every_refresh_interval() {
    let doc = Arc::new(parking_lot::Mutex::new(jwks(&["k1"])));
    let reads = Arc::new(AtomicUsize::new(0));
    let addr = jwks_server(doc.clone(), reads.clone()).await;
    let server = start(AuthConfig {
        jwks: Some(format!("http://{addr}/jwks")),
        jwks_refresh: Duration::from_millis(300),
        ..AuthConfig::default()
    })
    .await;
    assert_eq!(reads.load(Ordering::SeqCst), 1, "read at start");
    let url = ws(&server);
    assert_eq!(
        Client::connect_with_token(&url, &jwks_token("k1", "ivy"))
            .await
            .unwrap()
            .user_id(),
        "ivy"
    );

    // The issuer rotates in k2: a token naming it makes the server read again.
    *doc.lock() = jwks(&["k1", "k2"]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        Client::connect_with_token(&url, &jwks_token("k2", "jo"))
            .await
            .unwrap()
            .user_id(),
        "jo"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 2);

    // Unknown kids in a burst do not hammer the JWKS server: one read per interval.
    for _ in 0..20 {
        let _ = Client::connect_with_token(&url, &jwks_token("k9", "x")).await;
    }
    assert!(
        reads.load(Ordering::SeqCst) <= 3,
        "{} reads",
        reads.load(Ordering::SeqCst)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_that_does_not_load_stops_start_up() {
    for auth in [
        AuthConfig::hs256("short"),
        AuthConfig {
            keys: vec![key("RS256", "es256-public.pem", None)],
            ..AuthConfig::default()
        },
        AuthConfig {
            keys: vec![KeyConfig {
                algorithm: "none".into(),
                secret: Some(SECRET.into()),
                ..KeyConfig::default()
            }],
            ..AuthConfig::default()
        },
        AuthConfig {
            jwks: Some("/no/such/jwks.json".into()),
            ..AuthConfig::default()
        },
    ] {
        let err = App::new()
            .config(Config {
                auth: Some(auth),
                ..Config::default()
            })
            .run_websocket_service(any_port())
            .start()
            .await
            .expect_err("a bad key must stop start-up");
        assert!(matches!(err, framework::app::AppError::Auth(_)), "{err}");
    }
}

#[tokio::test]
async fn without_authentication_tokens_are_ignored_and_auth_is_unknown() {
    let server = App::new()
        .register_custom_handler(201, maybe)
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let c = Client::connect_with_token(&ws(&server), "whatever")
        .await
        .unwrap();
    assert_eq!(text(&c, 201).await.unwrap(), "anonymous");
    let mut fields = FrameFields::new(Opcode::Auth.0);
    fields.token = Some("whatever");
    expect_server_error(c.call(fields).await, ErrorCode::UnknownOpcode);
    server.shutdown().await;
}
