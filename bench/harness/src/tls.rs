//! TLS of the TLS scenarios: the run's certificate (made with rcgen), the
//! peers' server configuration, the load generator's client configuration, and
//! what its connections negotiated. rustls with the `ring` provider, given
//! explicitly as the framework gives it (never a process default), no OpenSSL.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate, PEM: what the servers present and the load generator trusts.
pub const CERT_FILE: &str = "cert.pem";
/// Its private key, PEM (PKCS#8).
pub const KEY_FILE: &str = "key.pem";

/// The signature algorithm (and so the key type) of the run's certificate.
const ALGORITHM: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// The names the certificate is valid for: the servers listen on 127.0.0.1.
const NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Writes a new self-signed certificate for [`NAMES`] and its key into `dir`
/// ([`CERT_FILE`], [`KEY_FILE`]).
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = rcgen::KeyPair::generate_for(ALGORITHM)?;
    let names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    for (file, pem) in [(KEY_FILE, key.serialize_pem()), (CERT_FILE, cert.pem())] {
        let path = dir.join(file);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The run's certificate, in words (for the report).
pub fn describe() -> String {
    format!(
        "a self-signed certificate for {} ({ALGORITHM:?}: an ECDSA P-256 key, SHA-256 \
         signature) made with rcgen for the run, the load generator's only trusted root",
        NAMES.join(" and ")
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificate(dir: &Path) -> anyhow::Result<CertificateDer<'static>> {
    let path = dir.join(CERT_FILE);
    CertificateDer::from_pem_file(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// A peer's server configuration: the run's certificate, rustls' safe default
/// versions and suites, no ALPN (as fastwebsockets' `tls_server` example).
pub fn server_config(dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let path = dir.join(KEY_FILE);
    let key = PrivateKeyDer::from_pem_file(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certificate(dir)?], key)?;
    Ok(Arc::new(config))
}

/// The load generator's client configuration: the run's certificate as its
/// only root, rustls' safe default versions and suites (and its in-memory
/// session cache, for resumption), ALPN `http/1.1` (a WebSocket upgrade, and
/// Sockudo's HTTP API, which offers `h2` too).
pub fn client_config(dir: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate(dir)?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the first TLS connection of this process negotiated.
static SESSION: OnceLock<String> = OnceLock::new();
/// TLS handshakes of this process, and how many of them resumed a session.
static HANDSHAKES: AtomicU64 = AtomicU64::new(0);
static RESUMED: AtomicU64 = AtomicU64::new(0);

/// Notes a client connection's handshake: its version, cipher suite and key
/// exchange group (the first connection's are kept), and whether it resumed.
pub fn note(conn: &rustls::ClientConnection) {
    HANDSHAKES.fetch_add(1, Ordering::Relaxed);
    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        RESUMED.fetch_add(1, Ordering::Relaxed);
    }
    SESSION.get_or_init(|| {
        let name = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        format!(
            "{}, {}, {}",
            name(conn.protocol_version().map(|v| format!("{v:?}"))),
            name(
                conn.negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
            ),
            name(
                conn.negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
            ),
        )
    });
}

/// What this process's TLS connections negotiated and how many handshakes
/// they made (`None`: no TLS connection).
pub fn negotiated() -> Option<Negotiated> {
    Some(Negotiated {
        session: SESSION.get()?.clone(),
        handshakes: HANDSHAKES.load(Ordering::Relaxed),
        resumed: RESUMED.load(Ordering::Relaxed),
    })
}

/// The TLS sessions of a load generator's run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Negotiated {
    /// The first connection's protocol version, cipher suite and key exchange
    /// group, as rustls names them (`TLSv1_3, TLS13_AES_256_GCM_SHA384, X25519`).
    pub session: String,
    /// Handshakes made (connections opened, HTTPS requests included).
    pub handshakes: u64,
    /// Of them, those that resumed an earlier session.
    pub resumed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// The load generator's client reaches a peer's acceptor over the run's
    /// certificate, reads what it sends (also without waiting, as a publisher
    /// drops its replies) and notes what the handshake negotiated.
    #[tokio::test]
    async fn the_client_trusts_the_generated_certificate() {
        let dir = std::env::temp_dir().join(format!("framework-bench-tls-{}", std::process::id()));
        generate(&dir).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&dir).unwrap());
        let client = client_config(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            tls.write_all(b"hello").await.unwrap();
            tls.flush().await.unwrap();
            tls
        });
        let mut stream = crate::ws::Stream::connect(addr, Some(&client))
            .await
            .unwrap();
        let _server_side = server.await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 5 {
            match stream.try_read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"hello");
        let n = negotiated().unwrap();
        assert!(n.session.starts_with("TLSv1_3, TLS13_"), "{}", n.session);
        assert_eq!((n.handshakes, n.resumed), (1, 0));
    }
}
