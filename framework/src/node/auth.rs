//! Authentication at run time: JWT verification with pinned algorithms
//! (jsonwebtoken), keys from configuration, PEM files and a JWKS document, and the
//! [`Identity`] a valid token gives a connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;

use crate::config::{AuthConfig, KeyConfig};

/// Who a connection (or one frame) is, from a verified JWT: the `sub` claim as the
/// user id, when the token expires, and every claim.
///
/// ```
/// use framework::node::Identity;
/// let id = Identity::new("ada", 0, serde_json::json!({"sub": "ada", "role": "admin"}));
/// assert_eq!(id.user_id(), "ada");
/// assert_eq!(id.claims()["role"], "admin");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Identity(Arc<IdentityInner>);

#[derive(Debug, PartialEq)]
struct IdentityInner {
    user_id: String,
    expires_at_ms: u64,
    claims: serde_json::Value,
}

impl Identity {
    /// An identity (tests, or an application's own authentication in an
    /// `on_connect` hook).
    pub fn new(user_id: impl Into<String>, expires_at_ms: u64, claims: serde_json::Value) -> Self {
        Identity(Arc::new(IdentityInner {
            user_id: user_id.into(),
            expires_at_ms,
            claims,
        }))
    }

    /// The user id: the token's `sub`.
    pub fn user_id(&self) -> &str {
        &self.0.user_id
    }

    /// When the token expires, in Unix milliseconds (0: never).
    pub fn expires_at_ms(&self) -> u64 {
        self.0.expires_at_ms
    }

    /// Every claim of the token.
    pub fn claims(&self) -> &serde_json::Value {
        &self.0.claims
    }

    /// The claims as `T`.
    pub fn claims_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0.claims)
    }
}

/// Why a token was refused (the client sees `Unauthorized` or HTTP 401 with a
/// short text; the details go to the server's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT, or a header that does not parse (this includes `alg: none`).
    #[error("the token is malformed")]
    Malformed,
    /// No configured key verifies the token's algorithm and `kid`.
    #[error("no key for this token")]
    NoKey,
    /// The signature or a claim is wrong.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// The token has no `sub`.
    #[error("the token has no sub")]
    NoSubject,
}

/// A configuration that cannot become a verifier.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key that does not load.
    #[error("auth key {index} ({algorithm}): {why}")]
    Key {
        /// Its position in `auth.keys`.
        index: usize,
        /// Its algorithm, as configured.
        algorithm: String,
        /// What is wrong.
        why: String,
    },
    /// The JWKS document cannot be read.
    #[error("JWKS {source_name}: {why}")]
    Jwks {
        /// The file or URL.
        source_name: String,
        /// What is wrong.
        why: String,
    },
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Jwks {
    source: String,
    keys: RwLock<Vec<Key>>,
    last_read: RwLock<Instant>,
    refresh: Duration,
}

/// Verifies tokens for one node.
pub struct Verifier {
    keys: Vec<Key>,
    jwks: Option<Jwks>,
    required: bool,
    leeway: u64,
    audience: Vec<String>,
    issuer: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("jwks", &self.jwks.as_ref().map(|j| &j.source))
            .field("required", &self.required)
            .finish()
    }
}

fn key_of(index: usize, k: &KeyConfig) -> Result<Key, AuthSetupError> {
    let fail = |why: String| AuthSetupError::Key {
        index,
        algorithm: k.algorithm.clone(),
        why,
    };
    let algorithm: Algorithm = k.algorithm.parse().map_err(|_| {
        fail("unknown algorithm (HS256/384/512, RS*, PS*, ES256/384, EdDSA)".into())
    })?;
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
    };
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), None) => s.as_bytes().to_vec(),
                (None, Some(path)) => String::from_utf8_lossy(&read(path)?)
                    .trim()
                    .as_bytes()
                    .to_vec(),
                _ => {
                    return Err(fail(
                        "an HMAC key needs exactly one of `secret`, `secret_file`".into(),
                    ))
                }
            };
            if secret.len() < 16 {
                return Err(fail("an HMAC secret must be at least 16 bytes".into()));
            }
            DecodingKey::from_secret(&secret)
        }
        _ => {
            let pem = match (&k.public_key, &k.public_key_file) {
                (Some(p), None) => p.as_bytes().to_vec(),
                (None, Some(path)) => read(path)?,
                _ => {
                    return Err(fail(
                        "a public key needs exactly one of `public_key`, `public_key_file`".into(),
                    ))
                }
            };
            let loaded = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            loaded.map_err(|e| fail(format!("not a {algorithm:?} public key in PEM: {e}")))?
        }
    };
    Ok(Key {
        kid: k.kid.clone(),
        algorithm,
        key,
    })
}

/// The keys of a JWKS document; keys without an algorithm, or of a kind
/// jsonwebtoken cannot verify, are left out.
fn jwks_keys(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = jwk.common.key_algorithm?.to_string().parse().ok()?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect())
}

/// Reads a JWKS document from a file or an `http://` URL.
async fn read_jwks(source: &str) -> Result<Vec<u8>, String> {
    if !source.starts_with("http://") {
        // Small and read rarely: a blocking read does no harm.
        return std::fs::read(source).map_err(|e| format!("cannot read: {e}"));
    }
    let uri: http::Uri = source.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let request = http::Request::get(path)
            .header(http::header::HOST, host.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("HTTP: {e}"))?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let limited = http_body_util::Limited::new(response.into_body(), 1 << 20);
        let body = http_body_util::BodyExt::collect(limited)
            .await
            .map_err(|e| format!("HTTP body: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| "timed out".to_string())?
}

impl Verifier {
    /// Loads every key (and the JWKS document): a key that does not load stops
    /// start-up.
    pub(crate) async fn new(config: &AuthConfig) -> Result<Verifier, AuthSetupError> {
        let keys = config
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| key_of(i, k))
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = match &config.jwks {
            None => None,
            Some(source) => {
                let fail = |why: String| AuthSetupError::Jwks {
                    source_name: source.clone(),
                    why,
                };
                let text = read_jwks(source).await.map_err(fail)?;
                let keys = jwks_keys(&text).map_err(fail)?;
                Some(Jwks {
                    source: source.clone(),
                    keys: RwLock::new(keys),
                    last_read: RwLock::new(Instant::now()),
                    refresh: config.jwks_refresh,
                })
            }
        };
        Ok(Verifier {
            keys,
            jwks,
            required: config.required,
            leeway: config.leeway.as_secs(),
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// Whether upgrades without a token are refused.
    pub fn required(&self) -> bool {
        self.required
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut v = Validation::new(algorithm);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = !self.audience.is_empty();
        if !self.audience.is_empty() {
            v.set_audience(&self.audience);
            v.required_spec_claims.insert("aud".into());
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
            v.required_spec_claims.insert("iss".into());
        }
        v
    }

    fn check_with(&self, token: &str, key: &Key) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &key.key,
            &self.validation(key.algorithm),
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let claims = data.claims;
        let user_id = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::NoSubject)?
            .to_string();
        // jsonwebtoken accepts a fractional `exp` too: its millisecond, not 0
        // (which would mean "never expires").
        let expires_at_ms = claims.get("exp").map_or(0, |e| match e.as_u64() {
            Some(secs) => secs.saturating_mul(1000),
            None => e.as_f64().map_or(0, |secs| (secs * 1000.0) as u64),
        });
        Ok(Identity::new(user_id, expires_at_ms, claims))
    }

    /// Verifies `token` with the keys at hand (no I/O: a `kid` the JWKS lacks is
    /// `NoKey`).
    pub fn verify_now(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let matching = |k: &&Key| k.algorithm == header.alg && k.kid == header.kid;
        if let Some(key) = self.keys.iter().find(matching) {
            return self.check_with(token, key);
        }
        if let Some(jwks) = &self.jwks {
            let keys = jwks.keys.read();
            if let Some(key) = keys.iter().find(matching) {
                return self.check_with(token, key);
            }
        }
        Err(AuthError::NoKey)
    }

    /// Verifies `token`, reading the JWKS document again (at most every
    /// `jwks_refresh`) when the token names a `kid` it lacks.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match self.verify_now(token) {
            Err(AuthError::NoKey) => {}
            done => return done,
        }
        let Some(jwks) = &self.jwks else {
            return Err(AuthError::NoKey);
        };
        let has_kid = jsonwebtoken::decode_header(token)
            .map(|h| h.kid.is_some())
            .unwrap_or(false);
        let due = jwks.last_read.read().elapsed() >= jwks.refresh;
        if !has_kid || !due {
            return Err(AuthError::NoKey);
        }
        *jwks.last_read.write() = Instant::now();
        match read_jwks(&jwks.source).await.and_then(|t| jwks_keys(&t)) {
            Ok(keys) => *jwks.keys.write() = keys,
            Err(e) => tracing::warn!(jwks = %jwks.source, error = %e, "JWKS refresh failed"),
        }
        self.verify_now(token)
    }
}
