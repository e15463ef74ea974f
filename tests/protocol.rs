//! Protocol v1 end to end: built-in opcodes over real sockets.

use std::time::Duration;

use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::App;
use framework_tests::{client, start, RawWs};

#[tokio::test]
async fn welcome_ping_publish_round_trip() {
    let server = start(App::new()).await;
    let a = client(&server).await;
    let b = client(&server).await;
    assert_ne!(a.session_id(), b.session_id());
    assert_eq!(a.node_id(), server.node().node_id());
    a.ping().await.unwrap();
    a.subscribe("room").await.unwrap();
    b.subscribe("room").await.unwrap();
    b.publish("room", b"hi").await.unwrap();
    for c in [&a, &b] {
        let d = c
            .recv_timeout(Duration::from_secs(5))
            .await
            .expect("delivery");
        assert_eq!(d.opcode(), Opcode::Publish.0);
        assert_eq!(d.channel(), Some("room"));
        assert_eq!(&d.payload()[..], b"hi");
        assert_eq!(d.emitter_id(), Some(b.session_id()));
        assert!(d.trace_id().is_some());
        assert!(d.token().is_none());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_is_bad_frame_and_connection_survives() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;
    raw.send_binary(vec![1u8, 2, 3]).await;
    let e = raw.next_frame().await.unwrap();
    assert_eq!(e.opcode(), Opcode::Error.0);
    assert_eq!(e.error_code(), ErrorCode::BadFrame);
    raw.send_binary(FrameFields::new(Opcode::Ping.0).encode())
        .await;
    assert_eq!(raw.next_frame().await.unwrap().opcode(), Opcode::Pong.0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_offers_deliveries_as_a_stream() {
    use futures_util::StreamExt;
    let server = start(App::new()).await;
    let a = client(&server).await;
    a.subscribe("s").await.unwrap();
    for i in 0..5u8 {
        a.publish("s", &[i]).await.unwrap();
    }
    let got: Vec<u8> = a
        .deliveries()
        .take(5)
        .map(|f| f.payload()[0])
        .collect()
        .await;
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    server.shutdown().await;
}
