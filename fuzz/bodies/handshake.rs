//! Fuzz body `handshake`: untrusted bytes as an HTTP/1.1 upgrade request, parsed
//! with `httparse` (hyper's parser) into `http::request::Parts` the way hyper
//! would (a request head hyper answers 400 is skipped; an unfinished head is
//! finished with an empty line), then the real admission policy of a protocol
//! listener (`framework::__private::fuzz::Admission`, a thin wrapper of the
//! crate-private one): the RFC 6455 headers and the `Sec-WebSocket-Key`, the
//! Origin allowlist, the token (`Authorization: Bearer`, `?token=`) verified by
//! the node's HS256 key, and `on_connect` hooks reading headers and the query.
//!
//! Checked: nothing panics; an admitted request has the handshake headers, a
//! 16-byte key, allowed origins only and, when it carried a token, its identity;
//! a request without them is refused 426/400; every refusal has a status a client
//! can act on (400, 401, 403, 426, 503).
//!
//! Shared by the cargo-fuzz target (`fuzz/fuzz_targets/handshake.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`), which include this file by path.

use std::collections::HashMap;

use base64::Engine;
use framework::__private::fuzz::Admission;
use framework::config::AuthConfig;
use framework::dispatch::hooks::{Query, Refusal};
use framework::dispatch::Extension;
use framework::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use framework::node::Identity;
use framework::testing::TestNode;
use framework::{App, Config};

/// The HS256 secret of the node's `auth`.
pub const SECRET: &str = "handshake-secret-of-32-bytes-ok!";
/// The one allowed browser origin.
pub const ORIGIN: &str = "https://app.example";

/// What the hooks attach.
#[derive(Clone, Debug)]
struct Seen(usize);

/// Refuses a request naming `deny` in its query, attaches the parameter count.
fn by_query(Query(q): Query<HashMap<String, String>>) -> Result<Extension<Seen>, Refusal> {
    if q.contains_key("deny") {
        return Err(Refusal::forbidden("denied by query"));
    }
    Ok(Extension(Seen(q.len())))
}

/// Reads headers and the identity; refuses on `X-Refuse`.
async fn by_headers(headers: HeaderMap, who: Option<Identity>) -> Result<(), Refusal> {
    if headers.contains_key("x-refuse") {
        return Err(Refusal::new(StatusCode::UNAUTHORIZED, "refused by header"));
    }
    if let Some(id) = who {
        if id.user_id() == "mallory" {
            return Err(Refusal::forbidden("not mallory"));
        }
    }
    Ok(())
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    // Kept for the node's lifetime.
    _node: TestNode,
    admission: Admission,
}

thread_local! {
    static FIXTURE: Fixture = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let app = App::new()
            .config(Config {
                auth: Some(AuthConfig::hs256(SECRET)),
                allowed_origins: vec![ORIGIN.into(), "null".into()],
                ..Config::default()
            })
            .on_connect(by_query)
            .on_connect(by_headers);
        let node = rt.block_on(TestNode::new(app)).expect("the node starts");
        let admission = Admission::new(&node);
        Fixture { rt, _node: node, admission }
    };
}

/// The request head as hyper would hand it over, or `None` where hyper answers 400.
fn parse(data: &[u8]) -> Option<framework::http::request::Parts> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let finished;
    let complete = match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => true,
        Ok(httparse::Status::Partial) => false,
        Err(_) => return None,
    };
    if !complete {
        finished = [data, b"\r\n\r\n"].concat();
        headers = [httparse::EMPTY_HEADER; 64];
        req = httparse::Request::new(&mut headers);
        match req.parse(&finished) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri: Uri = req.path?.parse().ok()?;
    let mut builder = framework::http::Request::builder().method(method).uri(uri);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some(parts)
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// RFC 6455's handshake (a GET with its headers), judged independently of the
/// framework.
fn handshake_ok(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && headers.get(header::SEC_WEBSOCKET_KEY).is_some_and(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16)
        })
}

/// The `sub` of `token` if the node's key signed it and it has not expired,
/// judged independently of the framework.
fn verified_sub(token: &str) -> Option<String> {
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 3600;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).ok()?;
    data.claims.get("sub")?.as_str().map(str::to_string)
}

/// The fuzz body.
pub fn run(data: &[u8]) {
    let Some(parts) = parse(data) else { return };
    let (method, headers) = (parts.method.clone(), parts.headers.clone());
    let query_len = parts.uri.query().map_or(0, str::len);
    FIXTURE.with(|f| {
        let peer = ([127, 0, 0, 1], 40000).into();
        let result = f.rt.block_on(f.admission.admit(parts, peer));
        match result {
            Ok((key, extensions)) => {
                assert!(
                    handshake_ok(&method, &headers),
                    "admitted without the handshake ({method})"
                );
                assert_eq!(Some(&key), headers.get(header::SEC_WEBSOCKET_KEY));
                for origin in headers.get_all(header::ORIGIN) {
                    assert!(
                        origin.as_bytes() == ORIGIN.as_bytes() || origin.as_bytes() == b"null",
                        "admitted from origin {origin:?}"
                    );
                }
                let Some(Seen(params)) = extensions.get::<Seen>() else {
                    panic!("a hook did not run");
                };
                assert!(
                    *params <= query_len,
                    "{params} parameters in {query_len} bytes"
                );
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().split_once(' '))
                    .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim());
                match (extensions.get::<Identity>(), bearer) {
                    // Anonymous: no bearer token was presented (a token in the query
                    // only counts when the header has none).
                    (None, bearer) => {
                        assert!(bearer.is_none(), "a bearer token presented, yet anonymous")
                    }
                    // The identity is the bearer token's, which the node's key signed.
                    (Some(id), Some(token)) => assert_eq!(
                        verified_sub(token).as_deref(),
                        Some(id.user_id()),
                        "admitted as {id:?} with the bearer token {token}"
                    ),
                    (Some(id), None) => assert!(
                        query_len > 0 && id.user_id() != "mallory",
                        "an identity {id:?} without a token"
                    ),
                }
            }
            Err((status, message, extra)) => {
                assert!(
                    [
                        StatusCode::BAD_REQUEST,
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::UPGRADE_REQUIRED,
                        StatusCode::SERVICE_UNAVAILABLE,
                        StatusCode::METHOD_NOT_ALLOWED,
                    ]
                    .contains(&status),
                    "refused with {status}: {message}"
                );
                // RFC 6455 §4.2.1: a method other than GET is refused first,
                // whatever its headers; a GET never for its method.
                assert_eq!(
                    status == StatusCode::METHOD_NOT_ALLOWED,
                    method != Method::GET,
                    "{method} refused with {status}: {message}"
                );
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    assert_eq!(extra.len(), 1, "405 names the method allowed");
                }
                if !handshake_ok(&method, &headers) {
                    assert!(
                        [
                            StatusCode::UPGRADE_REQUIRED,
                            StatusCode::BAD_REQUEST,
                            StatusCode::METHOD_NOT_ALLOWED
                        ]
                        .contains(&status),
                        "bad handshake refused with {status}: {message}"
                    );
                }
                if status == StatusCode::UPGRADE_REQUIRED {
                    assert_eq!(extra.len(), 1, "426 names what to upgrade to");
                }
            }
        }
    });
}

/// A token the node accepts for `sub`, signed with [`SECRET`].
pub fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 10 * 365 * 24 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

/// Seed inputs: upgrade requests that are admitted, and ones refused for each
/// reason.
pub fn seeds() -> Vec<Vec<u8>> {
    let ok = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let ada = token("ada");
    let mallory = token("mallory");
    [
        format!("{ok}\r\n"),
        format!("{ok}Origin: {ORIGIN}\r\n\r\n"),
        format!("{ok}Origin: https://evil.example\r\n\r\n"),
        format!("{ok}Origin: {ORIGIN}\r\nOrigin: null\r\n\r\n"),
        format!("{ok}Authorization: Bearer {ada}\r\n\r\n"),
        format!("{ok}Authorization: bearer {mallory}\r\n\r\n"),
        format!("{ok}Authorization: Bearer x.y.z\r\n\r\n"),
        format!("{ok}Authorization: Basic YWRhOmFkYQ==\r\n\r\n"),
        format!("{ok}X-Refuse: 1\r\n\r\n"),
        ok.replace("GET /ws", &format!("GET /ws?token={ada}&a=b")) + "\r\n",
        ok.replace("GET /ws", "GET /ws?deny=1") + "\r\n",
        ok.replace("GET /ws", "POST /ws") + "\r\n",
        ok.replace("GET /ws", "GET /ws?a=%ZZ&a=2") + "\r\n",
        ok.replace("Version: 13", "Version: 8") + "\r\n",
        ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=") + "\r\n",
        ok.replace("Upgrade: websocket\r\n", "") + "\r\n",
        ok.replace("keep-alive, Upgrade", "close") + "\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
