//! The slow-body hole, measured: server-API bodies that are not authorized are
//! never read, so 100 clients pushing 1 MiB bodies at a server without the key
//! cost it next to nothing (buffered, they would cost 100 MiB). Its own test
//! binary with one test: RSS is per process.

use std::time::Duration;

use framework::{App, Config};
use framework_tests::http::read_response;
use framework_tests::{any_port, rss_mib, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A 1 MiB body, shared by every client (no per-client allocation).
static BODY: [u8; 1 << 20] = [b' '; 1 << 20];

/// Two handles on one socket: one pushes the body while the other reads.
fn duplicate(tcp: TcpStream) -> (TcpStream, TcpStream) {
    let std = tcp.into_std().expect("std socket");
    let other = std.try_clone().expect("dup");
    (
        TcpStream::from_std(std).expect("tokio socket"),
        TcpStream::from_std(other).expect("tokio socket"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_api_bodies_are_never_buffered() {
    let server = App::new()
        .config(Config {
            api_key: Some("secret".into()),
            max_api_body: 4 << 20,
            ..Config::default()
        })
        .run_service(any_port())
        .start()
        .await
        .expect("server starts");
    let addr = server.service_addr();
    // Warm up the runtime and allocator with one of each.
    let one = async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            BODY.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = tcp.into_split();
        // Push the body in the background: the answer comes without it.
        let pusher = tokio::spawn(async move {
            let _ = wr.write_all(&BODY).await;
        });
        let mut head = [0u8; 12];
        rd.read_exact(&mut head).await.unwrap();
        pusher.abort();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(tokio::time::timeout(DEADLINE, one).await.unwrap(), "401");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = rss_mib();
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
                BODY.len()
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            let (mut tcp, mut writer) = duplicate(tcp);
            let pusher = tokio::spawn(async move {
                let _ = writer.write_all(&BODY).await;
            });
            let status = read_response(&mut tcp).await.status;
            pusher.abort();
            status
        }));
    }
    let during = tokio::time::timeout(DEADLINE, async {
        let mut statuses = Vec::new();
        for c in clients {
            statuses.push(c.await.unwrap());
        }
        statuses
    })
    .await
    .expect("every unauthorized client is answered without its body");
    assert!(during.iter().all(|s| *s == 401), "{during:?}");
    let grown = rss_mib().saturating_sub(before);
    assert!(
        grown < 32,
        "RSS grew by {grown} MiB for 100 refused 1 MiB bodies"
    );
    server.shutdown().await;
}
