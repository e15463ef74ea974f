//! The client's options ([`ClientBuilder`]) and how it connects with them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::connection::{open, upgrade_request, Tracking};
use super::control::Control;
use super::reconnect::{ReconnectPolicy, Supervisor};
use super::{Client, ClientError};

/// Builds a [`Client`] with options: a token, a request timeout, reconnection,
/// the certificates a `wss://` server is checked against.
///
/// ```no_run
/// use std::time::Duration;
/// use framework::client::{Client, ReconnectPolicy};
/// # async fn f() -> Result<(), framework::client::ClientError> {
/// let client = Client::builder("ws://127.0.0.1:8081/")
///     .token("eyJhbGciOi...")
///     .timeout(Duration::from_secs(5))
///     .reconnect(ReconnectPolicy { max_attempts: Some(50), ..ReconnectPolicy::default() })
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    timeout: Duration,
    reconnect: Option<ReconnectPolicy>,
    tls: Tls,
}

/// How a `wss://` server's certificate is checked.
#[derive(Clone, Default)]
enum Tls {
    /// Against the system's root certificates.
    #[default]
    System,
    /// Against these root certificates only (PEM), parsed at connect.
    Roots(Arc<[u8]>),
    /// With this configuration.
    Config(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("reconnect", &self.reconnect)
            .field(
                "tls",
                &match self.tls {
                    Tls::System => "system roots",
                    Tls::Roots(_) => "given roots",
                    Tls::Config(_) => "given config",
                },
            )
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for `url` with the defaults: no token, a 10 s timeout, no
    /// reconnection.
    pub(super) fn new(url: String) -> Self {
        ClientBuilder {
            url,
            token: None,
            timeout: Duration::from_secs(10),
            reconnect: None,
            tls: Tls::System,
        }
    }

    /// Checks a `wss://` server's certificate against the CA certificates in
    /// `pem` (one or more `-----BEGIN CERTIFICATE-----` blocks) instead of the
    /// system's roots: for a private CA, or a test's. Read when connecting; PEM
    /// without a certificate fails `connect` with [`ClientError::Tls`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("ca.pem")?;
    /// let client = framework::client::Client::builder("wss://chat.internal:8443/")
    ///     .tls_root_certificates(ca)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_root_certificates(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls = Tls::Roots(pem.as_ref().into());
        self
    }

    /// Connects to `wss://` servers with this rustls configuration (roots, client
    /// certificates, protocol versions), instead of the system's roots.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use framework::rustls;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let builder = framework::client::Client::builder("wss://127.0.0.1:8443/")
    ///     .tls_config(Arc::new(config));
    /// # let _ = builder;
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Tls::Config(config);
        self
    }

    /// Presents `token` in the `Authorization: Bearer` header of the upgrade (of
    /// every reconnection too, until [`Client::authenticate`] replaces it).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long correlated calls wait for an answer (default 10 s); on a
    /// reconnecting client this includes waiting for the connection to come back.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnects by itself with `policy` whenever the connection is lost (see
    /// [`Client::connect_reconnecting`]). Without it (the default) a lost
    /// connection closes the client.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Connects and waits for `Welcome`. The first connection is not retried: its
    /// failure is returned.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let request = upgrade_request(&self.url, self.token.as_deref())?;
        let tls = match &self.tls {
            Tls::System => None,
            Tls::Roots(pem) => Some(config_with_roots(pem)?),
            Tls::Config(config) => Some(config.clone()),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let tracking = Arc::new(Tracking::default());
        let opened = open(request, tls.clone(), tracking.clone(), events_tx.clone()).await?;
        let reconnecting = self.reconnect.is_some();
        let ctl = Arc::new(Control::new(
            &opened,
            tracking,
            self.timeout,
            reconnecting,
            self.token,
        ));
        match self.reconnect {
            Some(policy) => {
                let supervisor = Supervisor {
                    ctl: ctl.clone(),
                    url: self.url,
                    tls,
                    policy,
                    events_tx,
                };
                tokio::spawn(supervisor.run(opened.ended));
            }
            None => drop(events_tx),
        }
        Ok(Client {
            ctl,
            events: tokio::sync::Mutex::new(events),
        })
    }
}

/// A client configuration trusting only the CA certificates in `pem`.
fn config_with_roots(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("root certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("root certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(
            "no certificate in the root certificates' PEM".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
