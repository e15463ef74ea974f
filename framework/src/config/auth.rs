//! Authentication as configuration: the JWT keys a node accepts (each pinned to
//! one algorithm), where a JWKS document is, and what a token must say.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// JWT authentication (`[auth]` in TOML, `FRAMEWORK_AUTH_*` variables). Without
/// it the server reads no token (protocol v1's behaviour); with it, tokens come in
/// the upgrade request (`Authorization: Bearer <jwt>` or `?token=<jwt>`), in `Auth`
/// frames and in any frame's `token` field.
///
/// ```toml
/// [auth]
/// required = true
/// leeway = "30s"
/// audience = ["chat"]
///
/// [[auth.keys]]
/// algorithm = "HS256"
/// secret = "a long random secret"
///
/// [[auth.keys]]
/// kid = "2026-11"
/// algorithm = "ES256"
/// public_key_file = "/etc/chat/jwt-es256.pem"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse upgrades without a valid token with HTTP 401. Otherwise a
    /// connection without a token is anonymous (a bad token is refused either
    /// way: a client that presented credentials is never silently anonymous).
    #[serde(default)]
    pub required: bool,
    /// The keys tokens are verified with.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A JWKS document (a file path, or an `http://` URL), read at start and
    /// again, at most every `jwks_refresh`, when a token names a `kid` it lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The shortest time between two JWKS reads.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Clock skew allowed when checking `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Accepted `aud` values; empty: `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    #[serde(default)]
    pub issuer: Vec<String>,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: false,
            keys: Vec::new(),
            jwks: None,
            jwks_refresh: default_jwks_refresh(),
            leeway: default_leeway(),
            audience: Vec::new(),
            issuer: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Authentication with one HMAC secret (`HS256`).
    ///
    /// ```
    /// let auth = framework::config::AuthConfig::hs256("a long random secret");
    /// assert_eq!(auth.keys[0].algorithm, "HS256");
    /// ```
    pub fn hs256(secret: impl Into<String>) -> AuthConfig {
        AuthConfig {
            keys: vec![KeyConfig {
                algorithm: "HS256".into(),
                secret: Some(secret.into()),
                ..KeyConfig::default()
            }],
            ..AuthConfig::default()
        }
    }

    /// The same, refusing upgrades without a valid token.
    pub fn required(self) -> AuthConfig {
        AuthConfig {
            required: true,
            ..self
        }
    }
}

/// One verification key, pinned to one algorithm: a token whose header names
/// another algorithm is never verified with it (so `alg: none` and HS/RS key
/// confusion cannot pass).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their `kid` header; a key without one verifies
    /// tokens without a `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`,
    /// `PS512`, `ES256`, `ES384` or `EdDSA`.
    pub algorithm: String,
    /// The HMAC secret (HS*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file holding the HMAC secret (HS*), trimmed of surrounding whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The public key in PEM (RS*, PS*, ES*, EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A PEM file holding the public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
}
