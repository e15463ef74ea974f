//! Trusted proxies end to end: a peer in `trusted_proxies` names the client in
//! `X-Forwarded-For` / `Forwarded` (each request and upgrade) or in a PROXY
//! protocol v1/v2 header (its connection), and that address is what
//! `Connection::peer_addr`, the `on_connect` hooks, per-IP limits and quotas
//! see; the same headers from anyone else change nothing (a client cannot
//! choose its address).
//!
//! The test is the proxy at 127.0.0.1, and a direct client at 127.0.0.2 (all of
//! 127.0.0.0/8 is loopback on Linux).

use std::net::SocketAddr;
use std::time::Duration;

use framework::config::{ForwardedHeader, QuotaRule, QuotaScope};
use framework::dispatch::hooks::PeerAddr;
use framework::dispatch::Extension;
use framework::protocol::{ErrorCode, FrameFields};
use framework::session::Connection;
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, read_response, Request};
use framework_tests::{any_port, tcp_from, RawWs, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: &str = "127.0.0.1";
const DIRECT: &str = "127.0.0.2";

/// The address the `on_connect` hook saw.
#[derive(Clone)]
struct Seen(SocketAddr);

fn seen(PeerAddr(addr): PeerAddr) -> Extension<Seen> {
    Extension(Seen(addr))
}

/// Opcode 200: the session's address, and the hook's.
fn whoami(conn: Connection, Extension(Seen(hook)): Extension<Seen>) -> Vec<u8> {
    format!("{} {hook}", conn.peer_addr()).into_bytes()
}

async fn start(config: Config) -> AppHandle {
    App::new()
        .config(config)
        .on_connect(seen)
        .register_custom_handler(200, whoami)
        .register_custom_handler(201, || ())
        .quota(
            QuotaRule::opcode(201)
                .per(QuotaScope::Ip)
                .frames("1/m".parse().unwrap()),
        )
        .run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

fn trusting(proxies: &[&str]) -> Config {
    Config {
        trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        ..Config::default()
    }
}

fn url(server: &AppHandle) -> String {
    format!("ws://{}/ws", server.service_addr())
}

/// A session from `from`, with `prefix` written first (a PROXY header) and
/// `headers` on the upgrade; its HTTP status when refused.
async fn session(
    server: &AppHandle,
    from: &str,
    prefix: &[u8],
    headers: &[(&str, &str)],
) -> Result<RawWs, u16> {
    let mut tcp = tcp_from(from, server.service_addr()).await;
    tcp.write_all(prefix).await.unwrap();
    let (ws, _welcome) = RawWs::handshake(tcp, &url(server), headers).await?;
    Ok(ws)
}

/// What the server sees of `ws`: the session's address and the hook's, which
/// must agree.
async fn address_of(ws: &mut RawWs) -> String {
    let reply = ws.request(FrameFields::new(200)).await;
    let text = String::from_utf8_lossy(&reply.payload()).into_owned();
    let (session, hook) = text.split_once(' ').expect("two addresses");
    assert_eq!(session, hook, "Connection and on_connect agree");
    session.to_string()
}

async fn seen_as(
    server: &AppHandle,
    from: &str,
    prefix: &[u8],
    headers: &[(&str, &str)],
) -> String {
    let mut ws = session(server, from, prefix, headers)
        .await
        .expect("admitted");
    address_of(&mut ws).await
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_in_x_forwarded_for() {
    let server = start(trusting(&[PROXY, "10.0.0.0/8"])).await;
    let xff = "X-Forwarded-For";
    assert_eq!(
        seen_as(&server, PROXY, b"", &[(xff, "203.0.113.7")]).await,
        "203.0.113.7:0"
    );
    // What a client claimed stays on the left of what the proxy appended; inner
    // trusted proxies are walked through.
    assert_eq!(
        seen_as(
            &server,
            PROXY,
            b"",
            &[(xff, "6.6.6.6, 203.0.113.7, 10.1.1.1")]
        )
        .await,
        "203.0.113.7:0"
    );
    // `Forwarded` is not the configured header: not read.
    // Without the header, the proxy itself is the client.
    let fwd = ("Forwarded", "for=198.51.100.1");
    for headers in [&[fwd][..], &[]] {
        let me = seen_as(&server, PROXY, b"", headers).await;
        assert!(me.starts_with("127.0.0.1:"), "{me}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn forwarded_is_read_when_configured() {
    let server = start(Config {
        forwarded_header: ForwardedHeader::Forwarded,
        ..trusting(&[PROXY])
    })
    .await;
    let headers = [
        (
            "Forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        ),
        ("X-Forwarded-For", "198.51.100.1"),
    ];
    assert_eq!(
        seen_as(&server, PROXY, b"", &headers).await,
        "[2001:db8:cafe::17]:4711"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_cannot_choose_its_address() {
    let spoofs = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.7"),
    ];
    // Not a trusted proxy: its headers are not read.
    let server = start(trusting(&[PROXY])).await;
    let me = seen_as(&server, DIRECT, b"", &spoofs).await;
    assert!(me.starts_with("127.0.0.2:"), "{me}");
    server.shutdown().await;
    // Nobody trusted (the default): not even the loopback.
    let server = start(Config::default()).await;
    let me = seen_as(&server, PROXY, b"", &spoofs).await;
    assert!(me.starts_with("127.0.0.1:"), "{me}");
    server.shutdown().await;
    // A PROXY header from an untrusted peer is not honoured: it is read as HTTP,
    // which it is not (400).
    let server = start(Config {
        proxy_protocol: true,
        ..trusting(&[PROXY])
    })
    .await;
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n";
    assert_eq!(session(&server, DIRECT, header, &[]).await.err(), Some(400));
    // The client the proxy names is not trusted itself: the headers it adds
    // after are not read either.
    let me = seen_as(&server, PROXY, header, &spoofs).await;
    assert_eq!(me, "203.0.113.7:51000");
    server.shutdown().await;
}

#[tokio::test]
async fn per_ip_limits_and_quotas_count_the_forwarded_client_not_the_proxy() {
    let server = start(Config {
        max_connections_per_ip: 2,
        ..trusting(&[PROXY])
    })
    .await;
    let xff = |ip| [("X-Forwarded-For", ip)];
    let (a, b) = ("203.0.113.7", "203.0.113.8");
    let mut a1 = session(&server, PROXY, b"", &xff(a)).await.unwrap();
    let mut a2 = session(&server, PROXY, b"", &xff(a)).await.unwrap();
    // Every session comes from the proxy's address, yet only `a` is full.
    assert_eq!(session(&server, PROXY, b"", &xff(a)).await.err(), Some(429));
    let r = http::send(
        server.service_addr(),
        Request::get("/healthz").header("X-Forwarded-For", a),
    )
    .await;
    assert_eq!(r.status, 429, "plain HTTP counts for the client too");
    let mut b1 = session(&server, PROXY, b"", &xff(b)).await.unwrap();
    // The per-IP quota of opcode 201 (one a minute) is `a`'s, shared by its
    // sessions; `b` has its own.
    assert_eq!(
        a1.request(FrameFields::new(201)).await.error_code(),
        ErrorCode::None
    );
    assert_eq!(
        a2.request(FrameFields::new(201)).await.error_code(),
        ErrorCode::RateLimited
    );
    assert_eq!(
        b1.request(FrameFields::new(201)).await.error_code(),
        ErrorCode::None
    );
    // A session's end frees its client's slot.
    drop(a1);
    let again = async {
        loop {
            if let Ok(ws) = session(&server, PROXY, b"", &xff(a)).await {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, again)
        .await
        .expect("a's slot is free again");
    server.shutdown().await;
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let server = start(Config {
        proxy_protocol: true,
        max_connections_per_ip: 1,
        ..trusting(&[PROXY])
    })
    .await;
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n";
    let mut held = session(&server, PROXY, v1, &[]).await.unwrap();
    assert_eq!(address_of(&mut held).await, "203.0.113.7:51000");
    // The limit is the client's: a second connection for it is refused, one
    // for another client is not.
    assert_eq!(session(&server, PROXY, v1, &[]).await.err(), Some(429));

    let v2 = |command, addrs: (SocketAddr, SocketAddr)| {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            addrs,
        )
        .build()
        .unwrap()
    };
    let client: SocketAddr = "[2001:db8::7]:4711".parse().unwrap();
    let to: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let header = v2(ppp::v2::Command::Proxy, (client, to));
    assert_eq!(
        seen_as(&server, PROXY, &header, &[]).await,
        "[2001:db8::7]:4711"
    );
    // LOCAL (a balancer's own health check): the proxy itself, which may then
    // name the client in a header as any trusted HTTP proxy.
    let local = v2(ppp::v2::Command::Local, (client, to));
    let xff = [("X-Forwarded-For", "198.51.100.9")];
    assert_eq!(
        seen_as(&server, PROXY, &local, &xff).await,
        "198.51.100.9:0"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_proxy_protocol_a_trusted_peer_must_send_the_header_and_others_are_served() {
    let server = start(Config {
        proxy_protocol: true,
        handshake_timeout: Duration::from_millis(500),
        ..trusting(&[PROXY])
    })
    .await;
    let addr = server.service_addr();
    // No header: refused with the reason.
    let mut tcp = tcp_from(PROXY, addr).await;
    tcp.write_all(&Request::get("/healthz").to_bytes(addr))
        .await
        .unwrap();
    let r = read_response(&mut tcp).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("PROXY protocol header"), "{}", r.text());
    // A malformed one: 400.
    let mut tcp = tcp_from(PROXY, addr).await;
    tcp.write_all(b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n")
        .await
        .unwrap();
    tcp.write_all(&Request::get("/healthz").to_bytes(addr))
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp).await.status, 400);
    // Half a header, then silence: closed after handshake_timeout.
    let mut tcp = tcp_from(PROXY, addr).await;
    tcp.write_all(b"PROXY TCP4 203.0").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {read:?} {rest:?}"
    );
    // A direct client (not a proxy) is served as it is.
    let mut tcp = tcp_from(DIRECT, addr).await;
    tcp.write_all(&Request::get("/healthz").to_bytes(addr))
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp).await.status, 200);
    // A header that arrives in pieces is read whole, and nothing after it.
    let mut tcp = tcp_from(PROXY, addr).await;
    tcp.write_all(b"PROXY TCP4 203.0.").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(b"113.7 127.0.0.1 51000 443\r\n")
        .await
        .unwrap();
    let (mut ws, _) = RawWs::handshake(tcp, &url(&server), &[]).await.unwrap();
    assert_eq!(address_of(&mut ws).await, "203.0.113.7:51000");
    server.shutdown().await;
}
