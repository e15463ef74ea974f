//! Authorization end to end: channel rules by pattern (templates, claims,
//! "nobody"), Send/Broadcast permissions (a broadcast needs one once
//! authentication is on; the server API can always broadcast), opcode
//! requirements from the builder. A refused action is `Forbidden`, or
//! `Unauthorized` when anonymous, and nothing of it is delivered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use framework::client::Client;
use framework::config::{AuthConfig, ChannelRule, Grant, Permissions};
use framework::dispatch::authorize::Attempt;
use framework::dispatch::State;
use framework::node::{Action, Denied, Identity};
use framework::protocol::ErrorCode;
use framework::HandlerError;
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, Request};
use framework_tests::{any_port, expect_server_error};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "another test secret, long enough";

fn token(sub: &str, extra: serde_json::Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
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

fn grants(list: &[&str]) -> Option<Vec<Grant>> {
    Some(list.iter().map(|g| g.parse().unwrap()).collect())
}

async fn start(permissions: Permissions) -> AppHandle {
    App::new()
        .config(Config {
            auth: Some(AuthConfig::hs256(SECRET)),
            api_key: Some("api".into()),
            channels: vec![
                ChannelRule {
                    publish: grants(&["nobody"]),
                    ..ChannelRule::new("news:*")
                },
                ChannelRule {
                    subscribe: grants(&["authenticated"]),
                    publish: grants(&["authenticated"]),
                    ..ChannelRule::new("private:{sub}")
                },
                ChannelRule {
                    subscribe: grants(&["claim:teams~{channel}", "claim:role=admin"]),
                    ..ChannelRule::new("team:*")
                },
            ],
            permissions,
            ..Config::default()
        })
        .register_custom_handler(200, || b"secret".to_vec())
        .register_custom_handler(201, || b"open".to_vec())
        .require(200, [Grant::Authenticated])
        .run_websocket_service(any_port())
        .run_service(any_port())
        .start()
        .await
        .unwrap()
}

async fn as_user(server: &AppHandle, sub: &str, extra: serde_json::Value) -> Client {
    Client::connect_with_token(
        &format!("ws://{}/", server.websocket_addr()),
        &token(sub, extra),
    )
    .await
    .unwrap()
}

async fn anonymous(server: &AppHandle) -> Client {
    Client::connect(&format!("ws://{}/", server.websocket_addr()))
        .await
        .unwrap()
}

#[tokio::test]
async fn channel_rules_decide_who_subscribes_and_publishes() {
    let server = start(Permissions::default()).await;
    let ada = as_user(&server, "ada", json!({ "teams": ["team:red"] })).await;
    let boss = as_user(&server, "boss", json!({ "role": "admin" })).await;
    let anon = anonymous(&server).await;

    // news:* — anyone subscribes, no client publishes; the server API does.
    ada.subscribe("news:today").await.unwrap();
    expect_server_error(
        ada.publish("news:today", b"fake").await,
        ErrorCode::Forbidden,
    );
    expect_server_error(
        anon.publish("news:today", b"fake").await,
        ErrorCode::Unauthorized,
    );
    let sent = http::send(
        server.service_addr(),
        Request::post_json(
            "/api/publish",
            r#"{"channel":"news:today","payload":"cmVhbA=="}"#,
        )
        .header("X-Api-Key", "api"),
    )
    .await;
    assert_eq!(sent.status, 200);
    let got = ada
        .recv_timeout(Duration::from_secs(5))
        .await
        .expect("the real news");
    assert_eq!(
        &got.payload()[..],
        b"real",
        "the refused publishes delivered nothing"
    );

    // private:{sub} — each user's own only.
    ada.subscribe("private:ada").await.unwrap();
    ada.publish("private:ada", b"note").await.unwrap();
    expect_server_error(ada.subscribe("private:boss").await, ErrorCode::Forbidden);
    expect_server_error(anon.subscribe("private:ada").await, ErrorCode::Unauthorized);

    // team:* — by claims.
    ada.subscribe("team:red").await.unwrap();
    expect_server_error(ada.subscribe("team:blue").await, ErrorCode::Forbidden);
    boss.subscribe("team:blue").await.unwrap();

    // Channels no rule matches are open, anonymous included.
    anon.subscribe("lobby").await.unwrap();
    anon.publish("lobby", b"hi").await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn broadcast_needs_a_permission_once_authentication_is_on() {
    let server = start(Permissions::default()).await;
    let ada = as_user(&server, "ada", json!({})).await;
    expect_server_error(ada.broadcast(b"all").await, ErrorCode::Forbidden);
    expect_server_error(
        anonymous(&server).await.broadcast(b"all").await,
        ErrorCode::Unauthorized,
    );
    // The server API always can.
    let r = http::send(
        server.service_addr(),
        Request::post_json("/api/broadcast", r#"{"payload":"aGk="}"#).header("X-Api-Key", "api"),
    )
    .await;
    assert_eq!(r.status, 200);
    let got = ada
        .recv_timeout(Duration::from_secs(5))
        .await
        .expect("the API's broadcast");
    assert_eq!(&got.payload()[..], b"hi");
    server.shutdown().await;

    let server = start(Permissions {
        broadcast: grants(&["claim:role=admin"]),
        send: grants(&["authenticated"]),
        ..Permissions::default()
    })
    .await;
    let boss = as_user(&server, "boss", json!({ "role": "admin" })).await;
    let ada = as_user(&server, "ada", json!({})).await;
    boss.broadcast(b"from the boss").await.unwrap();
    expect_server_error(ada.broadcast(b"x").await, ErrorCode::Forbidden);
    ada.send_to(boss.session_id(), b"psst").await.unwrap();
    let anon = anonymous(&server).await;
    expect_server_error(
        anon.send_to(boss.session_id(), b"x").await,
        ErrorCode::Unauthorized,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_opcode_can_require_authentication() {
    let server = start(Permissions::default()).await;
    let anon = anonymous(&server).await;
    expect_server_error(anon.request(200, b"").await, ErrorCode::Unauthorized);
    assert_eq!(
        &anon.request(201, b"").await.unwrap().payload()[..],
        b"open"
    );
    let ada = as_user(&server, "ada", json!({})).await;
    assert_eq!(
        &ada.request(200, b"").await.unwrap().payload()[..],
        b"secret"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_per_user_quota_is_shared_by_the_users_connections_only() {
    use framework::config::{QuotaRule, QuotaScope};
    let server = App::new()
        .config(Config {
            auth: Some(AuthConfig::hs256(SECRET)),
            ..Config::default()
        })
        .register_custom_handler(201, || b"open".to_vec())
        .quota(
            QuotaRule::opcode(201)
                .per(QuotaScope::User)
                .frames("2/10s burst 2".parse().unwrap()),
        )
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let (ada1, ada2) = (
        as_user(&server, "ada", json!({})).await,
        as_user(&server, "ada", json!({})).await,
    );
    assert!(ada1.request(201, b"").await.is_ok());
    assert!(ada2.request(201, b"").await.is_ok());
    // Ada's two connections drew from one budget of 2.
    expect_server_error(ada1.request(201, b"").await, ErrorCode::RateLimited);
    expect_server_error(ada2.request(201, b"").await, ErrorCode::RateLimited);
    // Another user, and anonymous connections (each its own budget), are not
    // affected.
    let bob = as_user(&server, "bob", json!({})).await;
    assert!(bob.request(201, b"").await.is_ok());
    for _ in 0..2 {
        let anon = anonymous(&server).await;
        assert!(anon.request(201, b"").await.is_ok());
        assert!(anon.request(201, b"").await.is_ok());
    }
    server.shutdown().await;
}

/// Mallory may listen but not speak; opcode 202 is looked up "in a database"
/// (async, shared state) and answered with the authorizer's own error.
fn not_mallory(attempt: Attempt, who: Option<Identity>) -> bool {
    let speaks = !matches!(attempt.action(), Action::Subscribe(_));
    !(speaks && who.is_some_and(|w| w.user_id() == "mallory"))
}

struct Allowed(Vec<String>);

async fn on_the_list(
    attempt: Attempt,
    who: Option<Identity>,
    State(list): State<Allowed>,
) -> Result<(), HandlerError> {
    tokio::task::yield_now().await;
    let listed = who.is_some_and(|w| list.0.iter().any(|u| u == w.user_id()));
    if attempt.opcode() != 202 || listed {
        Ok(())
    } else {
        Err(HandlerError::new(ErrorCode::NotFound, "not on the list"))
    }
}

#[tokio::test]
async fn authorizers_in_code_decide_after_the_configuration() {
    let server = App::new()
        .config(Config {
            auth: Some(AuthConfig::hs256(SECRET)),
            ..Config::default()
        })
        .with_state(Allowed(vec!["ada".into()]))
        .register_custom_handler(201, || b"open".to_vec())
        .register_custom_handler(202, || b"listed".to_vec())
        .register_custom_handler(203, || -> Vec<u8> { unreachable!("refused first") })
        .authorize(not_mallory)
        .authorize(on_the_list)
        .authorize(|attempt: Attempt| {
            assert_ne!(attempt.opcode(), 203, "an authorizer that panics");
            true
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let ada = as_user(&server, "ada", json!({})).await;
    let mallory = as_user(&server, "mallory", json!({})).await;
    let anon = anonymous(&server).await;

    // Mallory may subscribe, not publish: Forbidden, and nothing delivered.
    ada.subscribe("room").await.unwrap();
    mallory.subscribe("room").await.unwrap();
    expect_server_error(mallory.publish("room", b"spam").await, ErrorCode::Forbidden);
    expect_server_error(mallory.request(201, b"").await, ErrorCode::Forbidden);
    ada.publish("room", b"hi").await.unwrap();
    let got = ada.recv_timeout(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        &got.payload()[..],
        b"hi",
        "mallory's publish was not delivered"
    );

    // The async authorizer with state, and its own error code.
    assert_eq!(
        &ada.request(202, b"").await.unwrap().payload()[..],
        b"listed"
    );
    let e = expect_server_error(mallory.request(202, b"").await, ErrorCode::Forbidden);
    assert!(!e.contains("list"), "the first authorizer refused: {e}");
    let e = expect_server_error(anon.request(202, b"").await, ErrorCode::NotFound);
    assert!(e.contains("not on the list"), "{e}");
    assert_eq!(
        &anon.request(201, b"").await.unwrap().payload()[..],
        b"open"
    );

    // A panicking authorizer refuses with Internal; the session lives on.
    expect_server_error(ada.request(203, b"").await, ErrorCode::Internal);
    assert!(ada.ping().await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_denial_for_an_anonymous_sender_is_unauthorized_and_state_is_checked_at_start() {
    let server = App::new()
        .register_custom_handler(201, || b"open".to_vec())
        .authorize(|who: Option<Identity>| -> Result<(), Denied> {
            who.map(|_| ()).ok_or(Denied::Forbidden)
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let anon = anonymous(&server).await;
    expect_server_error(anon.request(201, b"").await, ErrorCode::Unauthorized);
    // Frames no rule governs are not shown to authorizers.
    assert!(anon.ping().await.is_ok());
    server.shutdown().await;

    let missing = App::new()
        .authorize(on_the_list)
        .run_websocket_service(any_port())
        .start()
        .await;
    let err = missing.expect_err("the authorizer's state is missing");
    assert!(err.to_string().contains("Allowed"), "{err}");
}
