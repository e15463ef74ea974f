//! Helpers shared by the end-to-end tests: start a server on `127.0.0.1:0`, connect
//! clients, and speak raw WebSocket when a test needs to send malformed input.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use framework::client::Client;
use framework::protocol::{DecodeLimits, Frame};
use framework::{App, AppHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A loopback address with a free port.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// Starts `app` with a protocol WebSocket service on a free loopback port.
pub async fn start(app: App) -> AppHandle {
    app.run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// The `ws://` URL of a running server.
pub fn url(handle: &AppHandle) -> String {
    format!("ws://{}/", handle.websocket_addr())
}

/// A connected protocol client.
pub async fn client(handle: &AppHandle) -> Client {
    Client::connect(&url(handle))
        .await
        .expect("client connects")
}

/// A raw WebSocket to the server, for sending what the client would never send.
pub struct RawWs {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWs {
    /// Connects and consumes the `Welcome` frame.
    pub async fn connect(handle: &AppHandle) -> (RawWs, Frame) {
        let (ws, _) = tokio_tungstenite::connect_async(url(handle))
            .await
            .expect("raw connect");
        let mut raw = RawWs { ws };
        let welcome = raw.next_frame().await.expect("welcome");
        (raw, welcome)
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends any message.
    pub async fn send(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next message within 10 s (`None` when the stream ended or timed out).
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            _ => None,
        }
    }

    /// The next binary message decoded as a protocol frame.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.next_message().await? {
                Message::Binary(b) => {
                    return Some(
                        Frame::decode(b, &DecodeLimits::for_max_size(64 << 20))
                            .expect("server frames verify"),
                    )
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a close frame arrives and returns its code (`None`: no close frame).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await? {
                Message::Close(Some(c)) => return Some(c.code.into()),
                Message::Close(None) => return None,
                _ => continue,
            }
        }
    }
}
