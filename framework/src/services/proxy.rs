//! Trusted proxies: who the client of a connection or a request is. A peer in
//! `trusted_proxies` names the client — in a PROXY protocol header at the start
//! of its connection (`proxy_protocol`, layer-4 balancers), or in the
//! `forwarded_header` of each request (HTTP proxies) — and that address is the
//! one admission, limits, quotas, `Connection::ip` and logs see. Anyone else is
//! the client itself: its headers are not read.
//!
//! A trusted proxy's own connection holds no connection slot: each of its
//! requests (and the session an upgrade becomes) takes one for the client it
//! forwards, so per-IP limits count clients, not the proxy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::accept::ConnInfo;
use super::admission::Refused;
use super::Shared;
use crate::config::{Config, ForwardedHeader, IpCidr};

/// The trusted proxies of an app, from its configuration.
pub(crate) struct Proxies {
    trusted: Vec<IpCidr>,
    header: ForwardedHeader,
    protocol: bool,
}

impl Proxies {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            trusted: config.trusted_proxies.clone(),
            header: config.forwarded_header,
            protocol: config.proxy_protocol,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client of a request that trusted `peer` forwarded: walking the
    /// configured header from the right (the hop nearest to us), the first
    /// address that is not itself a trusted proxy (RFC 7239 §7.3). Where the
    /// chain has an entry that is not an address (`unknown`, an obfuscated
    /// name), the client is the trusted hop that wrote it; with every hop
    /// trusted, the farthest one.
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        let mut client = peer;
        // Header lines in order, then their entries; walked from the last.
        for line in headers.get_all(self.header.name()).iter().rev() {
            let Ok(line) = line.to_str() else {
                return client;
            };
            for entry in line.rsplit(',') {
                let hop = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_node),
                };
                let Some(hop) = hop else {
                    return client;
                };
                client = hop;
                if !self.trusts(hop.ip()) {
                    return client;
                }
            }
        }
        client
    }
}

/// An address as proxies write them: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, optionally quoted. No port: 0. IPv4-mapped
/// IPv6 addresses are read as the IPv4 address.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim().trim_matches('"');
    let addr = if let Ok(ip) = text.parse::<IpAddr>() {
        SocketAddr::new(ip, 0)
    } else if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else {
        let ip = text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
        SocketAddr::new(ip, 0)
    };
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// The `for` parameter of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value)
    })
}

/// How a connection's requests are admitted, once it is known who sent it.
pub(crate) enum Peer {
    /// A client, admitted with its connection slot (or refused, every request).
    Client(Result<ConnInfo, Refused>),
    /// A trusted proxy: each request takes a slot for the client it forwards.
    Proxy(SocketAddr, Arc<Shared>),
}

impl Peer {
    /// Whether the connection may serve more than one request: not when every
    /// request is refused.
    pub(crate) fn keep_alive(&self) -> bool {
        !matches!(self, Peer::Client(Err(_)))
    }

    /// Admits one request: its client's address and connection slot (held by
    /// the caller while the request is served), or the refusal to answer.
    pub(crate) fn request(&self, headers: &HeaderMap) -> Result<ConnInfo, Refused> {
        match self {
            Peer::Client(admitted) => admitted.clone(),
            Peer::Proxy(proxy, shared) => {
                let admission = &shared.admission;
                let peer = admission.proxies.client(*proxy, headers);
                let slot = admission.slot(peer.ip())?;
                Ok(ConnInfo {
                    peer,
                    slot,
                    hold: None,
                })
            }
        }
    }
}

/// Who a new connection from `peer` comes from: run in the connection's own
/// task, before anything else is read. From a trusted proxy with
/// `proxy_protocol` on, its PROXY header is read first (within
/// `handshake_timeout`; `None`: the connection is dropped). A client takes its
/// connection slot here.
pub(crate) async fn admit(
    shared: &Arc<Shared>,
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Option<Peer> {
    let admission = &shared.admission;
    let proxies = &admission.proxies;
    let mut peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if proxies.protocol && proxies.trusts(peer.ip()) {
        let deadline = shared.node.config().handshake_timeout;
        match tokio::time::timeout(deadline, read_header(tcp)).await {
            Ok(Ok(Some(client))) => peer = client,
            // `LOCAL` (the balancer's own health check) or `UNKNOWN`: the proxy.
            Ok(Ok(None)) => {}
            Ok(Err(HeaderError::Invalid(why))) => {
                tracing::debug!(%peer, why, "refused: no valid PROXY protocol header");
                admission.count_refusal();
                // What follows is read as HTTP and answered 400 with the reason.
                return Some(Peer::Client(Err(Refused::new(
                    StatusCode::BAD_REQUEST,
                    format!("a trusted proxy must start with a PROXY protocol header: {why}"),
                ))));
            }
            Ok(Err(HeaderError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "connection lost before its PROXY header");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "no PROXY header within handshake_timeout");
                admission.count_refusal();
                return None;
            }
        }
    }
    if proxies.trusts(peer.ip()) {
        return Some(Peer::Proxy(peer, shared.clone()));
    }
    let admitted = admission.slot(peer.ip()).map(|slot| ConnInfo {
        peer,
        slot,
        hold: None,
    });
    Some(Peer::Client(admitted))
}

/// Why no PROXY header was read.
#[derive(Debug)]
enum HeaderError {
    /// The bytes are no PROXY header, or a malformed one.
    Invalid(&'static str),
    /// The connection failed or closed first.
    Io(io::Error),
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        HeaderError::Io(e)
    }
}

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The longest v2 header accepted: the fixed part, addresses and TLVs of a
/// few hundred bytes (what cloud balancers add stays well under it).
const V2_MAX: usize = 16 + 2048;

/// Reads a PROXY protocol header (v1 or v2) and nothing after it: the stream is
/// peeked, and only bytes known to be the header's are consumed, so what
/// follows is read by HTTP as it arrived. `None`: a `LOCAL` / `UNKNOWN` header,
/// which names no client.
async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut head = Vec::with_capacity(64);
    let mut peeked = vec![0; V2_MAX];
    loop {
        let n = tcp.peek(&mut peeked[..V2_MAX - head.len()]).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let (take, complete) = scan(&head, &peeked[..n])?;
        let start = head.len();
        head.resize(start + take, 0);
        // Bytes seen by peek are there: this returns at once.
        tcp.read_exact(&mut head[start..]).await?;
        if complete {
            return parse(&head);
        }
    }
}

/// Given the header bytes consumed so far and what is waiting, how many of the
/// waiting bytes belong to the header, and whether it is then complete. When
/// incomplete, every waiting byte belongs to it (so the next peek waits for
/// more instead of seeing the same bytes again).
fn scan(head: &[u8], waiting: &[u8]) -> Result<(usize, bool), HeaderError> {
    let mut all = Vec::with_capacity(head.len() + waiting.len());
    all.extend_from_slice(head);
    all.extend_from_slice(waiting);
    let starts = |sig: &[u8]| sig.starts_with(&all[..all.len().min(sig.len())]);
    if starts(V2_SIGNATURE) {
        if all.len() < 16 {
            return Ok((waiting.len(), false));
        }
        let total = 16 + usize::from(u16::from_be_bytes([all[14], all[15]]));
        if total > V2_MAX {
            return Err(HeaderError::Invalid("the PROXY v2 header is too long"));
        }
        let need = total - head.len();
        return Ok((need.min(waiting.len()), waiting.len() >= need));
    }
    if starts(V1_PREFIX) {
        return match all.windows(2).position(|w| w == b"\r\n") {
            Some(i) if i + 2 <= V1_MAX => Ok((i + 2 - head.len(), true)),
            Some(_) => Err(HeaderError::Invalid("the PROXY v1 header is too long")),
            None if all.len() >= V1_MAX => {
                Err(HeaderError::Invalid("the PROXY v1 header is too long"))
            }
            None => Ok((waiting.len(), false)),
        };
    }
    Err(HeaderError::Invalid("it sent no PROXY protocol header"))
}

/// The client a complete header names.
fn parse(head: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let canonical = |ip: IpAddr, port| Some(SocketAddr::new(ip.to_canonical(), port));
    if head.starts_with(V2_SIGNATURE) {
        let header = ppp::v2::Header::try_from(head)
            .map_err(|_| HeaderError::Invalid("a malformed PROXY v2 header"))?;
        if header.command == ppp::v2::Command::Local {
            return Ok(None);
        }
        return Ok(match header.addresses {
            ppp::v2::Addresses::IPv4(a) => canonical(a.source_address.into(), a.source_port),
            ppp::v2::Addresses::IPv6(a) => canonical(a.source_address.into(), a.source_port),
            ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
        });
    }
    let header = ppp::v1::Header::try_from(head)
        .map_err(|_| HeaderError::Invalid("a malformed PROXY v1 header"))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => canonical(a.source_address.into(), a.source_port),
        ppp::v1::Addresses::Tcp6(a) => canonical(a.source_address.into(), a.source_port),
        ppp::v1::Addresses::Unknown => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(trusted: &[&str], header: ForwardedHeader) -> Proxies {
        Proxies::new(&Config {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            forwarded_header: header,
            ..Config::default()
        })
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    const PROXY: &str = "10.0.0.5:40000";

    fn client_of(p: &Proxies, name: &str, values: &[&str]) -> String {
        p.client(PROXY.parse().unwrap(), &headers(name, values))
            .to_string()
    }

    #[test]
    fn x_forwarded_for_gives_the_right_most_untrusted_address() {
        let p = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let xff = "x-forwarded-for";
        assert_eq!(client_of(&p, xff, &["203.0.113.7"]), "203.0.113.7:0");
        // A client's own claim stays on the left of what the proxy appended.
        assert_eq!(
            client_of(&p, xff, &["6.6.6.6, 203.0.113.7"]),
            "203.0.113.7:0"
        );
        // Inner proxies are walked through; several lines are one list.
        assert_eq!(
            client_of(&p, xff, &["6.6.6.6, 203.0.113.7", "10.1.1.1"]),
            "203.0.113.7:0"
        );
        assert_eq!(
            client_of(&p, xff, &["[2001:db8::7]:443"]),
            "[2001:db8::7]:443"
        );
        assert_eq!(client_of(&p, xff, &["::ffff:192.0.2.9"]), "192.0.2.9:0");
        // Not an address: the trusted hop that wrote it.
        assert_eq!(client_of(&p, xff, &["6.6.6.6, unknown"]), PROXY);
        assert_eq!(
            client_of(&p, xff, &["6.6.6.6, garbage, 10.1.1.1"]),
            "10.1.1.1:0"
        );
        // No header: the proxy itself. Every hop trusted: the farthest.
        assert_eq!(client_of(&p, xff, &[]), PROXY);
        assert_eq!(client_of(&p, xff, &["10.9.9.9, 10.1.1.1"]), "10.9.9.9:0");
        // The other header is not read.
        assert_eq!(client_of(&p, "forwarded", &["for=203.0.113.7"]), PROXY);
    }

    #[test]
    fn forwarded_is_read_as_rfc_7239_says() {
        let p = proxies(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let fwd = "forwarded";
        assert_eq!(
            client_of(&p, fwd, &["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            "192.0.2.60:0"
        );
        assert_eq!(
            client_of(&p, fwd, &["for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\""]),
            "[2001:db8:cafe::17]:4711"
        );
        assert_eq!(
            client_of(&p, fwd, &["for=192.0.2.43, for=10.2.2.2;proto=https"]),
            "192.0.2.43:0"
        );
        assert_eq!(client_of(&p, fwd, &["for=6.6.6.6, for=_hidden"]), PROXY);
        assert_eq!(client_of(&p, fwd, &["proto=https"]), PROXY);
        assert_eq!(client_of(&p, "x-forwarded-for", &["203.0.113.7"]), PROXY);
    }

    fn scanned(bytes: &[u8]) -> Result<Option<SocketAddr>, &'static str> {
        match scan(&[], bytes) {
            Ok((take, true)) => parse(&bytes[..take]).map_err(|e| match e {
                HeaderError::Invalid(why) => why,
                HeaderError::Io(_) => "io",
            }),
            Ok((_, false)) => Err("incomplete"),
            Err(HeaderError::Invalid(why)) => Err(why),
            Err(HeaderError::Io(_)) => Err("io"),
        }
    }

    #[test]
    fn proxy_headers_are_read_to_their_end_and_no_further() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(scan(&[], v1).unwrap(), (43, true));
        assert_eq!(scanned(v1), Ok(Some("203.0.113.7:51000".parse().unwrap())));
        assert_eq!(scanned(b"PROXY UNKNOWN\r\n"), Ok(None));
        assert_eq!(
            scanned(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n"),
            Ok(Some("[2001:db8::7]:4711".parse().unwrap()))
        );
        // In pieces: what is there is taken, the rest waited for.
        assert_eq!(scan(&[], b"PROXY TCP4 203.").unwrap(), (15, false));
        let (take, done) = scan(b"PROXY TCP4 203.", b"0.113.7 10.0.0.1 1 2\r\nGET").unwrap();
        assert_eq!((take, done), (22, true));

        let addrs: (SocketAddr, SocketAddr) = (
            "[2001:db8::7]:4711".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        let mut v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addrs,
        )
        .build()
        .unwrap();
        let len = v2.len();
        v2.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(scan(&[], &v2).unwrap(), (len, true));
        assert_eq!(scanned(&v2), Ok(Some(addrs.0)));
        assert_eq!(scan(&[], &v2[..10]).unwrap(), (10, false));
        assert_eq!(scan(&v2[..10], &v2[10..]).unwrap(), (len - 10, true));
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(scanned(&local), Ok(None));

        assert_eq!(
            scanned(b"GET / HTTP/1.1\r\n"),
            Err("it sent no PROXY protocol header")
        );
        assert_eq!(
            scanned(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n"),
            Err("a malformed PROXY v1 header")
        );
        assert_eq!(
            scanned(&[b"PROXY ".as_slice(), &[b'1'; 120]].concat()),
            Err("the PROXY v1 header is too long")
        );
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(scanned(&long), Err("the PROXY v2 header is too long"));
    }
}
