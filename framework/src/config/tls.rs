//! TLS as configuration: where the certificate chain and its key are, and how
//! often the files are checked for a new certificate.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Serving TLS (`[tls]` in TOML, `FRAMEWORK_TLS_*` variables): every listener of
/// the app (`run_websocket_service`, `run_service`, raw services) then speaks
/// `wss://` / `https://` only, with the certificate chain and private key read
/// from PEM files. A file that does not load makes `start` fail.
///
/// The certificate is loaded again, without a restart and without touching the
/// connections already open, on SIGHUP and whenever either file changes (checked
/// every `reload_interval`); a new certificate that does not load is logged and
/// the one in use kept. See `docs/tls.md`.
///
/// ```toml
/// [tls]
/// cert_file = "/etc/framework/fullchain.pem"
/// key_file = "/etc/framework/key.pem"
/// ```
///
/// ```
/// use framework::config::TlsConfig;
/// let tls = TlsConfig::new("fullchain.pem", "key.pem");
/// assert_eq!(tls.reload_interval, std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain: the server's certificate first, then the
    /// intermediates (PEM, `-----BEGIN CERTIFICATE-----` blocks).
    pub cert_file: PathBuf,
    /// The private key of the first certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the two files are checked for a change (their modification
    /// time and size); `0s` turns the check off (SIGHUP still reloads).
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

impl TlsConfig {
    /// TLS with the chain in `cert_file` and its key in `key_file`, checked for
    /// changes every 10 s.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            reload_interval: default_reload_interval(),
        }
    }
}
