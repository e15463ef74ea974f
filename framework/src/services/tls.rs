//! TLS on the listeners, with rustls (through tokio-rustls, `ring` provider): the
//! certificate in use, loaded from PEM files and swapped on reload while open
//! connections keep the one they were made with; the acceptors (ALPN `http/1.1`,
//! and `h2` first on `run_service`); and each connection's handshake, bounded by
//! the handshake timeout and run in the connection's own task.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;
use crate::node::Node;

/// ALPN protocol ids (RFC 7301).
const ALPN_HTTP1: &[u8] = b"http/1.1";
const ALPN_H2: &[u8] = b"h2";

/// Why a certificate or its key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no certificate (a PEM `-----BEGIN CERTIFICATE-----` block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{} holds no private key (a PEM PKCS#8, PKCS#1 or SEC1 block)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key cannot be used (an unsupported algorithm, or bytes that are not a key).
    #[error("the private key in {} cannot be used: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// The key is not the first certificate's.
    #[error("the private key in {} is not the key of the first certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The certificate every new handshake is given; replaced on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The modification time and size of a file, to notice that it changed.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// TLS of an app: one certificate, shared by every listener.
pub(crate) struct Tls {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    /// ALPN `http/1.1` only: WebSocket-only and raw listeners.
    http1: TlsAcceptor,
    /// ALPN `h2`, then `http/1.1`: `run_service`.
    http2: TlsAcceptor,
    /// The files' stamps when last loaded (or tried).
    stamps: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish()
    }
}

impl Tls {
    /// Loads the certificate of `config`; fails when it does not load.
    pub(crate) fn new(config: &TlsConfig) -> Result<Arc<Tls>, TlsError> {
        // An explicit provider: never the process default, which a program linking
        // rustls with two providers would have to choose first.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(&config.cert_file), stamp(&config.key_file));
        let current = Arc::new(Current(RwLock::new(load(config, &provider)?)));
        let acceptor = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            let mut server = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|source| TlsError::Key {
                    path: config.key_file.clone(),
                    source,
                })?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(server)))
        };
        Ok(Arc::new(Tls {
            http1: acceptor(&[ALPN_HTTP1])?,
            http2: acceptor(&[ALPN_H2, ALPN_HTTP1])?,
            config: config.clone(),
            provider,
            current,
            stamps: Mutex::new(stamps),
        }))
    }

    /// The acceptor of a listener: with `h2` offered (`run_service`) or not.
    pub(crate) fn acceptor(&self, h2: bool) -> TlsAcceptor {
        if h2 {
            self.http2.clone()
        } else {
            self.http1.clone()
        }
    }

    /// Loads the certificate again; new handshakes get it, open connections keep
    /// theirs. On failure the certificate in use stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        *self.stamps.lock() = (stamp(&self.config.cert_file), stamp(&self.config.key_file));
        let loaded = load(&self.config, &self.provider)?;
        *self.current.0.write() = loaded;
        Ok(())
    }

    /// Whether either file changed since it was last loaded (or tried).
    fn changed(&self) -> bool {
        let now = (stamp(&self.config.cert_file), stamp(&self.config.key_file));
        *self.stamps.lock() != now
    }

    /// [`reload`](Self::reload), counted and logged. The files are read on the
    /// calling thread: two small local files, read rarely.
    pub(crate) fn reload_counted(&self, node: &Node, why: &str) -> Result<(), TlsError> {
        let result = self.reload();
        let metrics = node.metrics();
        match &result {
            Ok(()) => {
                metrics.tls_reloads.fetch_add(1, Relaxed);
                tracing::info!(cert = %self.config.cert_file.display(), why, "TLS certificate reloaded");
            }
            Err(e) => {
                metrics.tls_reload_failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, why, "TLS certificate not reloaded; the one in use stays");
            }
        }
        result
    }

    /// Reloads on `hangup` (SIGHUP, see [`hangup`]) and when the files change
    /// (checked every `reload_interval`, unless zero), until `shutdown`.
    pub(crate) async fn watch(
        self: Arc<Self>,
        node: Node,
        shutdown: CancellationToken,
        mut hangup: Hangup,
    ) {
        let interval = self.config.reload_interval;
        let mut tick = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = {
                let _ = &mut hangup;
                std::future::pending::<Option<()>>()
            };
            let polled = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = signalled => {
                    let _ = self.reload_counted(&node, "SIGHUP");
                }
                _ = polled => {
                    if self.changed() {
                        let _ = self.reload_counted(&node, "the files changed");
                    }
                }
            }
        }
    }
}

/// SIGHUP, listened for (on Unix).
#[cfg(unix)]
pub(crate) type Hangup = Option<tokio::signal::unix::Signal>;
/// No SIGHUP off Unix.
#[cfg(not(unix))]
pub(crate) type Hangup = ();

/// Starts listening for SIGHUP: called before the listeners serve, so a SIGHUP
/// right after start reloads instead of ending the process (its default action).
/// Without it (it cannot be installed), reloads come from file changes only.
pub(crate) fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS reloads on file changes only");
                None
            }
        }
    }
}

/// Reads the chain and key of `config` and checks that they belong together.
fn load(config: &TlsConfig, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let (cert_path, key_path) = (&config.cert_file, &config.key_file);
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let pem_error = |path: &PathBuf, e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.clone(),
        message: e.to_string(),
    };
    let chain = read(cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.clone(),
        });
    }
    let key = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.clone(),
        },
        e => pem_error(key_path, e),
    })?;
    match CertifiedKey::from_der(certs, key, provider) {
        Ok(certified) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert_path.clone(),
            key: key_path.clone(),
        }),
        Err(source) => Err(TlsError::Key {
            path: key_path.clone(),
            source,
        }),
    }
}

/// The TLS handshake of an accepted connection, within `timeout`; a failure is
/// counted and logged (at debug: scanners fail handshakes all day) and ends only
/// this connection.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
    node: &Node,
    peer: std::net::SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let failed = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out (handshake_timeout)".to_string(),
    };
    node.metrics().tls_handshake_failures.fetch_add(1, Relaxed);
    tracing::debug!(%peer, error = %failed, "TLS handshake failed");
    None
}

/// Whether the handshake agreed on HTTP/2.
pub(crate) fn is_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}
