//! The raw WebSocket service (`run_raw_websocket_service`) over real sockets: every
//! `RawConnection` method (`on_data`, `on_error`, `on_close`, `send`, `send_text`,
//! `recv`, `read_some`, `set_binary`, `set_text`, `id`, `remote_endpoint`,
//! `metrics`, `close`), text versus binary, the close codes 1000/1001/1002/1007/
//! 1009/1011, and panicking handlers that take down only their own connection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use framework::raw::{RawConnection, RawError, RawHandler, RawMessage};
use framework::session::SendError;
use framework::{App, AppHandle, Config};
use framework_tests::{any_port, eventually, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start_raw<M, H: RawHandler<M>>(config: Config, handler: H) -> AppHandle {
    App::new()
        .config(config)
        .run_raw_websocket_service(any_port(), handler)
        .start()
        .await
        .expect("server starts")
}

async fn connect_to(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("raw WebSocket connects");
    ws
}

async fn connect(handle: &AppHandle) -> Ws {
    connect_to(handle.raw_addrs()[0]).await
}

fn local_addr(ws: &Ws) -> SocketAddr {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().expect("local address"),
        _ => unreachable!("tests use plain TCP"),
    }
}

/// The next data message (pings and pongs skipped); panics when the stream ends or
/// nothing comes within [`DEADLINE`].
async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Err(_) => panic!("no message within {DEADLINE:?}"),
            Ok(None) => panic!("the stream ended"),
            Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return m,
        }
    }
}

/// Reads until the server's close frame and returns its code; `None` when the stream
/// ended without one. Data messages before it are skipped.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("no close within {DEADLINE:?}"))
}

/// Echoes text as text and binary as binary.
fn echo(conn: &RawConnection) {
    conn.on_data(|conn, msg| {
        let _ = match msg {
            RawMessage::Text(t) => conn.send_text(t.as_str()),
            RawMessage::Binary(b) => conn.send(b),
        };
    });
}

/// A handler that echoes and hands every connection to the test.
fn handing_over(
    tx: mpsc::UnboundedSender<RawConnection>,
) -> impl Fn(RawConnection) + Send + Sync + 'static {
    move |conn: RawConnection| {
        echo(&conn);
        let _ = tx.send(conn);
    }
}

async fn handed(rx: &mut mpsc::UnboundedReceiver<RawConnection>) -> RawConnection {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("the handler ran")
        .expect("handler alive")
}

/// One client-to-server WebSocket frame, masked as RFC 6455 requires (or not).
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;

/// Writes bytes to the socket under the WebSocket (bypassing tungstenite, which would
/// never send them).
async fn write_raw(ws: &mut Ws, bytes: &[u8]) {
    let tcp = ws.get_mut();
    tcp.write_all(bytes).await.expect("raw write");
    tcp.flush().await.expect("flush");
}

/// Collects `on_error` and `on_close` calls.
#[derive(Default, Clone)]
struct Observed {
    errors: Arc<std::sync::Mutex<Vec<RawError>>>,
    closes: Arc<AtomicUsize>,
}

impl Observed {
    fn watch(&self, conn: &RawConnection) {
        let errors = self.errors.clone();
        conn.on_error(move |_, e| errors.lock().unwrap().push(e.clone()));
        let closes = self.closes.clone();
        conn.on_close(move |_| {
            closes.fetch_add(1, Ordering::SeqCst);
        });
    }
    fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }
    fn error_codes(&self) -> Vec<u16> {
        self.errors
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.close_code)
            .collect()
    }
}

// --- receiving and sending -----------------------------------------------------------

#[tokio::test]
async fn on_data_echo_keeps_binary_binary_and_text_text() {
    let kinds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = kinds.clone();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        let seen = seen.clone();
        conn.on_data(move |conn, msg| {
            seen.lock()
                .unwrap()
                .push((msg.is_text(), msg.as_text().map(str::to_owned)));
            let _ = match msg {
                RawMessage::Text(t) => conn.send_text(t.as_str()),
                RawMessage::Binary(b) => conn.send(b),
            };
        });
    })
    .await;
    let mut ws = connect(&server).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let messages = vec![
        Message::Binary(Bytes::from_static(&[0, 1, 2, 0xff])),
        Message::Text("héllo wörld".into()),
        Message::Binary(Bytes::new()),
        Message::Text("".into()),
        Message::Binary(big.into()),
        Message::Text("ünïcödé ✓".repeat(1000).into()),
    ];
    for m in &messages {
        ws.send(m.clone()).await.expect("send");
        assert_eq!(&next_data(&mut ws).await, m);
    }
    let kinds = kinds.lock().unwrap().clone();
    assert_eq!(
        kinds,
        vec![
            (false, None),
            (true, Some("héllo wörld".to_string())),
            (false, None),
            (true, Some(String::new())),
            (false, None),
            (true, Some("ünïcödé ✓".repeat(1000))),
        ]
    );
    server.shutdown().await;
}

/// A callback set from inside another takes every message after the one that
/// set it (a login step, then the session's real handler), and a handler that
/// reads with `recv` first and then sets `on_data` gets the rest there.
#[tokio::test]
async fn a_callback_replaced_mid_session_takes_every_later_message() {
    fn login(conn: &RawConnection, msg: RawMessage) {
        let name = msg.as_text().unwrap_or("?").to_owned();
        let _ = conn.send_text(format!("welcome {name}"));
        conn.on_data(move |conn, msg| {
            let _ = conn.send_text(format!("{name}: {}", msg.as_text().unwrap_or("?")));
        });
    }
    let server = start_raw(Config::default(), |conn: RawConnection| conn.on_data(login)).await;
    let mut ws = connect(&server).await;
    ws.send(Message::Text("ada".into())).await.expect("send");
    assert_eq!(
        next_data(&mut ws).await,
        Message::Text("welcome ada".into())
    );
    for n in 0..3 {
        ws.send(Message::Text(format!("m{n}").into()))
            .await
            .expect("send");
        assert_eq!(
            next_data(&mut ws).await,
            Message::Text(format!("ada: m{n}").into())
        );
    }
    server.shutdown().await;

    let server = start_raw(Config::default(), |conn: RawConnection| async move {
        let first = conn.recv().await.expect("a first message");
        conn.on_data(|conn, msg| {
            let _ = conn.send_text(format!("called {}", msg.as_text().unwrap_or("?")));
        });
        // After the switch: what the peer sends once it has this goes there.
        let _ = conn.send_text(format!("read {}", first.as_text().unwrap_or("?")));
    })
    .await;
    let mut ws = connect(&server).await;
    ws.send(Message::Text("a".into())).await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::Text("read a".into()));
    for m in ["b", "c"] {
        ws.send(Message::Text(m.into())).await.expect("send");
        assert_eq!(
            next_data(&mut ws).await,
            Message::Text(format!("called {m}").into())
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn recv_loop_gets_every_message_in_order_and_ends_with_the_connection() {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        let done = done_tx.clone();
        async move {
            let mut count = 0;
            while let Some(msg) = conn.recv().await {
                count += 1;
                let tag = if msg.is_text() { "text" } else { "binary" };
                let echo = format!("{tag}:{}", String::from_utf8_lossy(msg.data()));
                // send() is binary by default.
                conn.send(echo.into_bytes()).expect("queued");
            }
            let _ = done.send(count);
        }
    })
    .await;
    let mut ws = connect(&server).await;
    for i in 0..20 {
        let m = if i % 2 == 0 {
            Message::Text(format!("t{i}").into())
        } else {
            Message::Binary(format!("b{i}").into_bytes().into())
        };
        ws.send(m).await.expect("send");
    }
    for i in 0..20 {
        let want = if i % 2 == 0 {
            format!("text:t{i}")
        } else {
            format!("binary:b{i}")
        };
        match next_data(&mut ws).await {
            Message::Binary(b) => assert_eq!(b, want.as_bytes()),
            other => panic!("expected binary {want:?}, got {other:?}"),
        }
    }
    ws.close(None).await.expect("close");
    let count = tokio::time::timeout(DEADLINE, done_rx.recv())
        .await
        .expect("the recv loop ends when the client closes");
    assert_eq!(count, Some(20));
    server.shutdown().await;
}

/// The handler's inbox holds 16 messages: a handler that does not read yet holds
/// the reader back (and the peer through TCP), loses nothing, and a client that
/// leaves while the reader waits for room still ends the session.
#[tokio::test]
async fn a_handler_that_reads_late_gets_every_message_and_a_full_inbox_ends_with_the_client() {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<u32>>();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        let (mut go, done) = (go_rx.clone(), done_tx.clone());
        async move {
            // Reads nothing until told to (or until the connection ends).
            let _ = go.wait_for(|go| *go).await;
            let mut got = Vec::new();
            while let Some(msg) = conn.recv().await {
                let n = u32::from_be_bytes(msg.data()[..4].try_into().expect("4 bytes"));
                got.push(n);
                conn.send(msg.data().to_vec()).expect("queued");
            }
            let _ = done.send(got);
        }
    })
    .await;
    let mut ws = connect(&server).await;
    for i in 0..100u32 {
        ws.send(Message::Binary(i.to_be_bytes().to_vec().into()))
            .await
            .expect("send");
    }
    go_tx.send(true).expect("the handler waits");
    for i in 0..100u32 {
        match next_data(&mut ws).await {
            Message::Binary(b) => assert_eq!(b, i.to_be_bytes().as_slice(), "in order"),
            other => panic!("expected binary {i}, got {other:?}"),
        }
    }
    ws.close(None).await.expect("close");
    let got = tokio::time::timeout(DEADLINE, done_rx.recv())
        .await
        .expect("the recv loop ends when the client closes")
        .expect("reported");
    assert_eq!(got, (0..100).collect::<Vec<_>>());

    // Again with a handler that ends without reading while the reader waits
    // for room (16 messages queued): the session ends, nothing is left behind.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<()>();
    let (full_tx, mut full_rx) = mpsc::unbounded_channel::<()>();
    let server2 = start_raw(Config::default(), move |conn: RawConnection| {
        let (mut stop, ended, full) = (stop_rx.clone(), ended_tx.clone(), full_tx.clone());
        conn.on_close(move |_| {
            let _ = ended.send(());
        });
        async move {
            // The reader has 16 queued and waits with the 17th.
            while conn.metrics().messages_in() < 17 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = full.send(());
            let _ = stop.wait_for(|stop| *stop).await;
            drop(conn);
        }
    })
    .await;
    let mut ws = connect(&server2).await;
    for i in 0..40u32 {
        ws.send(Message::Binary(i.to_be_bytes().to_vec().into()))
            .await
            .expect("send");
    }
    tokio::time::timeout(DEADLINE, full_rx.recv())
        .await
        .expect("the inbox fills")
        .expect("reported");
    stop_tx.send(true).expect("the handler waits");
    assert_eq!(close_code(&mut ws).await, Some(1000), "closed normally");
    tokio::time::timeout(DEADLINE, ended_rx.recv())
        .await
        .expect("the session ends")
        .expect("on_close fired");
    server.shutdown().await;
    server2.shutdown().await;
}

async fn next_report(report: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(DEADLINE, report.recv())
        .await
        .expect("a report")
        .expect("handler alive")
}

#[tokio::test]
async fn read_some_times_out_returns_a_message_and_then_none() {
    let (report_tx, mut report) = mpsc::unbounded_channel::<String>();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        let report = report_tx.clone();
        async move {
            let first = conn.read_some(Some(Duration::from_millis(100))).await;
            let _ = report.send(format!("first: elapsed={}", first.is_err()));
            conn.send_text("ready").expect("queued");
            let second = conn.read_some(Some(DEADLINE)).await;
            let _ = report.send(format!("second: {second:?}"));
            let third = conn.read_some(None).await;
            let _ = report.send(format!("third: {third:?}"));
            let fourth = conn.read_some(Some(DEADLINE)).await;
            let _ = report.send(format!("fourth: {fourth:?}"));
        }
    })
    .await;
    let mut ws = connect(&server).await;
    assert_eq!(next_report(&mut report).await, "first: elapsed=true");
    assert_eq!(next_data(&mut ws).await, Message::Text("ready".into()));
    ws.send(Message::Binary(Bytes::from_static(b"payload")))
        .await
        .expect("send");
    assert_eq!(
        next_report(&mut report).await,
        format!(
            "second: {:?}",
            Ok::<_, ()>(Some(RawMessage::Binary(Bytes::from_static(b"payload"))))
        )
    );
    ws.send(Message::Text("words".into())).await.expect("send");
    assert_eq!(
        next_report(&mut report).await,
        format!(
            "third: {:?}",
            Ok::<_, ()>(Some(RawMessage::Text("words".into())))
        )
    );
    ws.close(None).await.expect("close");
    assert_eq!(
        next_report(&mut report).await,
        format!("fourth: {:?}", Ok::<Option<RawMessage>, ()>(None))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn set_text_and_set_binary_choose_the_outgoing_frame_type() {
    let (report_tx, mut report) = mpsc::unbounded_channel::<(&'static str, bool)>();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        let r = |what, value| {
            let _ = report_tx.send((what, value));
        };
        r("default is text", conn.is_text());
        conn.send("a").expect("binary by default");
        conn.set_text(true);
        r("after set_text(true)", conn.is_text());
        conn.send("b").expect("text");
        r(
            "non-UTF-8 refused in text mode",
            conn.send(vec![0xff, 0xfe]) == Err(SendError::NotUtf8),
        );
        conn.set_binary(true);
        r("after set_binary(true)", conn.is_text());
        conn.send(vec![0xff, 0xfe])
            .expect("any bytes in binary mode");
        conn.set_binary(false);
        conn.send("d").expect("text");
        conn.set_text(false);
        conn.send("e").expect("binary");
        conn.send_text("f")
            .expect("send_text is text in binary mode");
        conn.set_text(true);
        conn.send_text("g").expect("and in text mode");
        conn.close();
    })
    .await;
    let mut ws = connect(&server).await;
    let want = [
        Message::Binary(Bytes::from_static(b"a")),
        Message::Text("b".into()),
        Message::Binary(Bytes::from_static(&[0xff, 0xfe])),
        Message::Text("d".into()),
        Message::Binary(Bytes::from_static(b"e")),
        Message::Text("f".into()),
        Message::Text("g".into()),
    ];
    for w in want {
        assert_eq!(next_data(&mut ws).await, w);
    }
    assert_eq!(close_code(&mut ws).await, Some(1000));
    let mut reports = Vec::new();
    while let Ok(r) = report.try_recv() {
        reports.push(r);
    }
    assert_eq!(
        reports,
        vec![
            ("default is text", false),
            ("after set_text(true)", true),
            ("non-UTF-8 refused in text mode", true),
            ("after set_binary(true)", false),
        ]
    );
    server.shutdown().await;
}

// --- identity and counters -------------------------------------------------------------

#[tokio::test]
async fn ids_are_unique_and_stable_and_remote_endpoint_is_the_client_address() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        // Answers "id" with the id the callback sees.
        conn.on_data(|conn, msg| {
            if msg.as_text() == Some("id") {
                let _ = conn.send_text(conn.id().to_string());
            }
        });
        let _ = tx.send(conn);
    })
    .await;
    let mut ids = HashSet::new();
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut ws = connect(&server).await;
        let conn = handed(&mut rx).await;
        let id = conn.id();
        assert!(!id.is_nil());
        // A version 8 UUID: the node's routing key (its id's first 6 bytes, how a
        // cluster routes sends), then 74 random bits.
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.as_bytes()[..6], server.node().node_id().as_bytes()[..6]);
        assert!(ids.insert(id), "id {id} repeated");
        assert_eq!(conn.remote_endpoint(), local_addr(&ws));
        assert!(format!("{conn:?}").contains(&id.to_string()));
        for _ in 0..2 {
            ws.send(Message::Text("id".into())).await.expect("send");
            assert_eq!(
                next_data(&mut ws).await,
                Message::Text(id.to_string().into())
            );
        }
        assert_eq!(conn.clone().id(), id, "stable across clones");
        sockets.push(ws);
    }
    assert_eq!(ids.len(), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_messages_and_bytes_in_and_out() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = start_raw(Config::default(), handing_over(tx)).await;
    let before_connect = SystemTime::now();
    let mut ws = connect(&server).await;
    let conn = handed(&mut rx).await;
    let m = conn.metrics();
    assert_eq!(
        (
            m.messages_in(),
            m.bytes_in(),
            m.messages_out(),
            m.bytes_out()
        ),
        (0, 0, 0, 0)
    );
    assert!(m.connected_since() <= SystemTime::now());
    assert!(m.connected_since() + Duration::from_secs(1) >= before_connect);

    let sent = [
        Message::Binary(Bytes::from_static(b"hello")),
        Message::Binary(Bytes::from_static(b"worlds!")),
        Message::Text("abc".into()),
    ];
    for msg in &sent {
        ws.send(msg.clone()).await.expect("send");
        assert_eq!(&next_data(&mut ws).await, msg);
    }
    eventually("3 messages / 15 bytes each way", DEADLINE, || {
        (
            m.messages_in(),
            m.bytes_in(),
            m.messages_out(),
            m.bytes_out(),
        ) == (3, 15, 3, 15)
    })
    .await;
    assert_eq!(m.dropped(), 0);
    assert!(m.since_last_activity() < DEADLINE);
    assert!(m.last_activity() >= m.connected_since());

    // Control frames are not messages.
    ws.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .expect("ping");
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(&p[..], b"p");
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    assert_eq!(m.messages_in(), 3);

    // Sending to a closed connection fails and counts as dropped.
    ws.close(None).await.expect("close");
    drop(ws);
    eventually("send fails after the client left", DEADLINE, || {
        conn.send(&b"late"[..]) == Err(SendError::Closed)
    })
    .await;
    assert!(conn.metrics().dropped() >= 1);
    server.shutdown().await;
}

// --- closing ------------------------------------------------------------------------------

#[tokio::test]
async fn close_sends_1000_and_on_close_fires_once() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let observed = Observed::default();
    let watch = observed.clone();
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        watch.watch(&conn);
        echo(&conn);
        let _ = tx.send(conn);
    })
    .await;

    let mut ws = connect(&server).await;
    let conn = handed(&mut rx).await;
    ws.send(Message::Text("before".into())).await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::Text("before".into()));
    conn.send(&b"queued before close"[..]).expect("queued");
    conn.close();
    // What was queued before close() is written first.
    assert_eq!(
        next_data(&mut ws).await,
        Message::Binary(Bytes::from_static(b"queued before close"))
    );
    assert_eq!(close_code(&mut ws).await, Some(1000));
    eventually("on_close fired", DEADLINE, || observed.closes() == 1).await;

    // close_with picks the code.
    let mut ws = connect(&server).await;
    let conn = handed(&mut rx).await;
    conn.close_with(4000, "bye");
    match tokio::time::timeout(DEADLINE, ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(c))))) => {
            assert_eq!(u16::from(c.code), 4000);
            assert_eq!(c.reason.as_str(), "bye");
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    eventually("on_close fired for the second", DEADLINE, || {
        observed.closes() == 2
    })
    .await;
    // A server-initiated normal close is not an error.
    assert!(
        observed.error_codes().is_empty(),
        "{:?}",
        observed.error_codes()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(observed.closes(), 2, "on_close fires once per connection");
    server.shutdown().await;
}

#[tokio::test]
async fn on_close_fires_once_when_the_client_disconnects() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let closed_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = Observed::default();
    let (watch, ids) = (observed.clone(), closed_ids.clone());
    let server = start_raw(Config::default(), move |conn: RawConnection| {
        watch.watch(&conn);
        let ids = ids.clone();
        // Replaces the counting callback: on_close keeps the last handler only.
        let closes = watch.closes.clone();
        conn.on_close(move |conn| {
            closes.fetch_add(1, Ordering::SeqCst);
            ids.lock().unwrap().push(conn.id());
        });
        echo(&conn);
        let _ = tx.send(conn);
    })
    .await;

    // A close handshake.
    let mut ws = connect(&server).await;
    let first = handed(&mut rx).await;
    ws.send(Message::Text("x".into())).await.expect("send");
    next_data(&mut ws).await;
    ws.close(None).await.expect("close");
    eventually("on_close after a close frame", DEADLINE, || {
        observed.closes() == 1
    })
    .await;

    // An abrupt disconnect (TCP reset, no close frame).
    let ws = connect(&server).await;
    let second = handed(&mut rx).await;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_zero_linger().expect("linger");
    }
    drop(ws);
    eventually("on_close after a reset", DEADLINE, || {
        observed.closes() == 2
    })
    .await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(observed.closes(), 2, "once per connection");
    assert_eq!(*closed_ids.lock().unwrap(), vec![first.id(), second.id()]);
    assert!(
        observed.error_codes().is_empty(),
        "a client leaving is not an error: {:?}",
        observed.error_codes()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_that_keeps_nothing_closes_the_connection() {
    let server = start_raw(Config::default(), |_conn: RawConnection| {}).await;
    let mut ws = connect(&server).await;
    assert_eq!(close_code(&mut ws).await, Some(1000));
    server.shutdown().await;
}

// --- errors: 1009, 1007, 1002 --------------------------------------------------------------

fn small_messages() -> Config {
    Config {
        max_message_size: 1024,
        ..Config::default()
    }
}

/// A server whose connections echo and report errors and closes.
async fn observed_server(config: Config) -> (AppHandle, Observed) {
    let observed = Observed::default();
    let watch = observed.clone();
    let server = start_raw(config, move |conn: RawConnection| {
        watch.watch(&conn);
        echo(&conn);
    })
    .await;
    (server, observed)
}

#[tokio::test]
async fn the_default_maximum_is_max_message_size_one_mib() {
    // Once 64 MiB (about 142 MB held per connection mid-message); now the
    // protocol services' default.
    assert_eq!(Config::default().max_message_size, 1 << 20);
    let (server, observed) = observed_server(Config::default()).await;
    let mut ws = connect(&server).await;
    let at_limit = Message::Binary(vec![7u8; 1 << 20].into());
    ws.send(at_limit.clone()).await.expect("send");
    assert_eq!(next_data(&mut ws).await, at_limit);
    ws.send(Message::Binary(vec![7u8; (1 << 20) + 1].into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1009));
    eventually("on_error(1009)", DEADLINE, || {
        observed.error_codes() == [1009]
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_and_fires_on_error() {
    let (server, observed) = observed_server(small_messages()).await;

    // At the limit: fine.
    let mut ws = connect(&server).await;
    let at_limit = Message::Binary(vec![7u8; 1024].into());
    ws.send(at_limit.clone()).await.expect("send");
    assert_eq!(next_data(&mut ws).await, at_limit);
    // One byte over: 1009.
    ws.send(Message::Binary(vec![7u8; 1025].into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1009));
    eventually("on_error(1009) and on_close", DEADLINE, || {
        observed.error_codes() == [1009] && observed.closes() == 1
    })
    .await;

    // Over the limit in fragments that are each under it.
    let mut ws = connect(&server).await;
    let mut bytes = frame(false, BINARY, &[1u8; 700], true);
    bytes.extend(frame(true, CONTINUATION, &[2u8; 700], true));
    write_raw(&mut ws, &bytes).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    eventually("second on_error(1009)", DEADLINE, || {
        observed.error_codes() == [1009, 1009] && observed.closes() == 2
    })
    .await;

    // A text message over the limit too.
    let mut ws = connect(&server).await;
    ws.send(Message::Text("x".repeat(2000).into()))
        .await
        .expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1009));
    server.shutdown().await;
}

/// The close of a connection the server fails goes out at once, not when some
/// timeout ends the session (here a long `shutdown_timeout`, which bounds how
/// long a closing session's writer may take).
#[tokio::test]
async fn a_failed_connection_is_told_at_once() {
    let config = Config {
        max_message_size: 1024,
        shutdown_timeout: Duration::from_secs(120),
        ..Config::default()
    };
    let (server, _observed) = observed_server(config).await;
    for (bytes, code) in [
        (frame(true, TEXT, b"\xff not utf-8", true), 1007),
        (frame(true, BINARY, &[0u8; 2000], true), 1009),
        (frame(true, 3, b"reserved opcode", true), 1002),
    ] {
        let mut ws = connect(&server).await;
        // An echo first: the session is running, its writer idle.
        ws.send(Message::Binary(vec![1u8; 8].into()))
            .await
            .expect("send");
        next_data(&mut ws).await;
        let started = std::time::Instant::now();
        write_raw(&mut ws, &bytes).await;
        assert_eq!(close_code(&mut ws).await, Some(code));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "close {code} took {:?}",
            started.elapsed()
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let (server, observed) = observed_server(Config::default()).await;

    // One frame with bytes that are not UTF-8.
    let mut ws = connect(&server).await;
    write_raw(&mut ws, &frame(true, TEXT, b"ok \xff\xfe not utf-8", true)).await;
    assert_eq!(close_code(&mut ws).await, Some(1007));
    eventually("on_error(1007)", DEADLINE, || {
        observed.error_codes() == [1007]
    })
    .await;

    // A valid character split across two fragments is fine...
    let mut ws = connect(&server).await;
    let mut bytes = frame(false, TEXT, b"caf\xc3", true);
    bytes.extend(frame(true, CONTINUATION, b"\xa9", true));
    write_raw(&mut ws, &bytes).await;
    assert_eq!(next_data(&mut ws).await, Message::Text("café".into()));
    // ...an invalid sequence across fragments is not.
    let mut bytes = frame(false, TEXT, b"caf\xc3", true);
    bytes.extend(frame(true, CONTINUATION, b"\x28", true));
    write_raw(&mut ws, &bytes).await;
    assert_eq!(close_code(&mut ws).await, Some(1007));

    // Binary messages may carry any bytes.
    let mut ws = connect(&server).await;
    write_raw(&mut ws, &frame(true, BINARY, b"\xff\xfe", true)).await;
    assert_eq!(
        next_data(&mut ws).await,
        Message::Binary(Bytes::from_static(b"\xff\xfe"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_protocol_violation_closes_with_1002() {
    let (server, observed) = observed_server(Config::default()).await;
    // A client frame without a mask.
    let mut ws = connect(&server).await;
    write_raw(&mut ws, &frame(true, BINARY, b"unmasked", false)).await;
    assert_eq!(close_code(&mut ws).await, Some(1002));
    // A reserved opcode.
    let mut ws = connect(&server).await;
    write_raw(&mut ws, &frame(true, 0x3, b"x", true)).await;
    assert_eq!(close_code(&mut ws).await, Some(1002));
    // A continuation with nothing to continue.
    let mut ws = connect(&server).await;
    write_raw(&mut ws, &frame(true, CONTINUATION, b"x", true)).await;
    assert_eq!(close_code(&mut ws).await, Some(1002));
    eventually("on_error(1002) three times", DEADLINE, || {
        observed.error_codes() == [1002, 1002, 1002]
    })
    .await;
    server.shutdown().await;
}

// --- panics -----------------------------------------------------------------------------------

/// Connection number `n` (0-based) of a server: the second (n == 1) misbehaves via
/// `panicking`, every other one echoes. Checks that the second is closed with 1011
/// while the first and a third keep echoing.
async fn only_the_panicking_connection_closes<M, H: RawHandler<M>>(
    handler: impl Fn(Arc<AtomicUsize>) -> H,
    send_first: bool,
) {
    let server = start_raw(Config::default(), handler(Arc::new(AtomicUsize::new(0)))).await;
    let mut a = connect(&server).await;
    let ping = Message::Binary(Bytes::from_static(b"still here"));
    a.send(ping.clone()).await.expect("send");
    assert_eq!(next_data(&mut a).await, ping);

    let mut b = connect(&server).await;
    if send_first {
        b.send(Message::Text("boom".into())).await.expect("send");
    }
    assert_eq!(
        close_code(&mut b).await,
        Some(1011),
        "the panicking connection closes with 1011"
    );

    for _ in 0..3 {
        a.send(ping.clone()).await.expect("send");
        assert_eq!(next_data(&mut a).await, ping, "the other connection echoes");
    }
    let mut c = connect(&server).await;
    c.send(ping.clone()).await.expect("send");
    assert_eq!(next_data(&mut c).await, ping, "a new connection echoes");
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_sync_handler_closes_only_its_connection_with_1011() {
    only_the_panicking_connection_closes(
        |n: Arc<AtomicUsize>| {
            move |conn: RawConnection| {
                if n.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic!("deliberate panic in a sync raw handler");
                }
                echo(&conn);
            }
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn a_panicking_async_handler_closes_only_its_connection_with_1011() {
    only_the_panicking_connection_closes(
        |n: Arc<AtomicUsize>| {
            move |conn: RawConnection| {
                let n = n.clone();
                async move {
                    let mine = n.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    if mine == 1 {
                        panic!("deliberate panic in an async raw handler");
                    }
                    while let Some(msg) = conn.recv().await {
                        let _ = conn.send(msg.into_bytes());
                    }
                }
            }
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn a_panicking_on_data_callback_closes_only_its_connection_with_1011() {
    only_the_panicking_connection_closes(
        |n: Arc<AtomicUsize>| {
            move |conn: RawConnection| {
                let mine = n.fetch_add(1, Ordering::SeqCst);
                conn.on_data(move |conn, msg| {
                    if mine == 1 {
                        panic!("deliberate panic in on_data");
                    }
                    let _ = conn.send(msg.into_bytes());
                });
            }
        },
        true,
    )
    .await;
}

// --- shutdown ------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_closes_raw_sessions_with_1001() {
    let observed = Observed::default();
    let watch = observed.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let server = App::new()
        // Callback style.
        .run_raw_websocket_service(any_port(), move |conn: RawConnection| {
            watch.watch(&conn);
            echo(&conn);
        })
        // recv() loop style.
        .run_raw_websocket_service(any_port(), move |conn: RawConnection| {
            let done = done_tx.clone();
            async move {
                while let Some(msg) = conn.recv().await {
                    let _ = conn.send(msg.into_bytes());
                }
                let _ = done.send(());
            }
        })
        .start()
        .await
        .expect("server starts");
    let addrs = server.raw_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    let mut callback_style = connect_to(addrs[0]).await;
    let mut loop_style = connect_to(addrs[1]).await;
    for ws in [&mut callback_style, &mut loop_style] {
        ws.send(Message::Binary(Bytes::from_static(b"hi")))
            .await
            .expect("send");
        assert_eq!(
            next_data(ws).await,
            Message::Binary(Bytes::from_static(b"hi"))
        );
    }

    tokio::time::timeout(DEADLINE, server.shutdown())
        .await
        .expect("shutdown finishes");
    assert_eq!(close_code(&mut callback_style).await, Some(1001));
    assert_eq!(close_code(&mut loop_style).await, Some(1001));
    eventually("on_close on shutdown", DEADLINE, || observed.closes() == 1).await;
    assert!(
        observed.error_codes().is_empty(),
        "shutdown is not an error: {:?}",
        observed.error_codes()
    );
    tokio::time::timeout(DEADLINE, done_rx.recv())
        .await
        .expect("the recv loop ends on shutdown")
        .expect("handler reported");
}

#[tokio::test]
async fn raw_sessions_count_in_the_node_metrics() {
    let server = start_raw(Config::default(), |conn: RawConnection| echo(&conn)).await;
    let metrics = || server.node().metrics().sessions_active();
    let mut a = connect(&server).await;
    let ping = Message::Binary(Bytes::from_static(b"x"));
    a.send(ping.clone()).await.expect("send");
    assert_eq!(next_data(&mut a).await, ping);
    assert_eq!(metrics(), 1);
    a.close(None).await.expect("close");
    framework_tests::eventually("the raw session is counted closed", DEADLINE, || {
        metrics() == 0
    })
    .await;
    server.shutdown().await;
}
