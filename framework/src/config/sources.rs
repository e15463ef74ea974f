//! Where configuration comes from: code, then a TOML file, then environment
//! variables, each layer overriding the one before (through figment).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize};

use super::Config;

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "FRAMEWORK_";

/// The environment variable naming the TOML file (default: none).
pub const CONFIG_FILE_VAR: &str = "FRAMEWORK_CONFIG";

/// A listener address: a port (on every interface) or `host:port`. In TOML and
/// the environment: `8081`, `"8081"`, `"127.0.0.1:8081"` or `"[::1]:8081"`.
///
/// ```
/// use framework::config::ListenSpec;
/// assert_eq!("8081".parse::<ListenSpec>().unwrap().0.to_string(), "0.0.0.0:8081");
/// assert_eq!("127.0.0.1:9".parse::<ListenSpec>().unwrap().0.port(), 9);
/// assert!("localhost:x".parse::<ListenSpec>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec(pub SocketAddr);

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(port) = s.parse::<u16>() {
            return Ok(ListenSpec(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        s.parse::<SocketAddr>().map(ListenSpec).map_err(|_| {
            format!("`{s}` is not a port or an address like 127.0.0.1:8081 or [::1]:8081")
        })
    }
}

impl Serialize for ListenSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ListenSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Port(p) => u16::try_from(p)
                .map(|p| ListenSpec(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)))
                .map_err(|_| serde::de::Error::custom(format!("port {p} is over 65535"))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Text that an environment variable may have spelled as a number.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Bool(b) => b.to_string(),
    })
}

/// [`text`], optional.
pub(super) fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Text(#[serde(deserialize_with = "text")] String);
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key no setting has (a typo, or an old name).
    #[error("unknown configuration key `{key}` (from {origin}); valid keys: {valid}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it came from.
        origin: String,
        /// Every valid key.
        valid: String,
    },
    /// A value that does not parse, or a file that cannot be read.
    #[error("invalid configuration: {0}")]
    Invalid(#[source] Box<figment::Error>),
    /// A raw listener is configured for a port no raw service is declared on.
    #[error(
        "`raw.{0}` configures a raw service declared on port {0}, but none is (declared: {1})"
    )]
    NoSuchRawService(u16, String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Invalid(Box::new(e))
    }
}

/// Every configuration key, with the listener keys.
fn valid_keys() -> Vec<&'static str> {
    let mut keys = vec!["websocket", "service", "raw"];
    keys.extend(CONFIG_KEYS);
    keys
}

/// The keys of [`Config`], in its field order (checked by a test against
/// `Config`'s serialization).
const CONFIG_KEYS: &[&str] = &[
    "max_message_size",
    "max_queued_bytes",
    "max_channels_per_session",
    "max_subscribers_per_channel",
    "max_connections_per_ip",
    "max_connections",
    "max_connections_per_user",
    "max_held_bytes",
    "max_held_bytes_per_ip",
    "handshake_timeout",
    "idle_timeout",
    "shutdown_timeout",
    "listen_backlog",
    "message_timeout",
    "ping_interval",
    "pong_timeout",
    "max_api_body",
    "body_timeout",
    "read_buffer_size",
    "write_buffer_size",
    "max_batch_frames",
    "allowed_origins",
    "websocket_path",
    "api_key",
    "auth",
    "cluster",
    "channels",
    "channel_options",
    "max_history_bytes",
    "permissions",
    "quotas",
    "drain_grace",
    "trusted_proxies",
    "forwarded_header",
    "proxy_protocol",
    "log_format",
    "tls",
];

/// Environment variables as a figment provider: `FRAMEWORK_IDLE_TIMEOUT=30s` is
/// key `idle_timeout`, `FRAMEWORK_RAW_8082=9000` is `raw.8082`. Values are parsed
/// like figment's own `Env` (numbers, booleans, `[a, b]` arrays).
struct EnvVars {
    vars: Vec<(String, String)>,
}

impl EnvVars {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                if name == CONFIG_FILE_VAR || key.is_empty() {
                    return None;
                }
                let key = if let Some(port) = key.strip_prefix("raw_") {
                    format!("raw.{port}")
                } else if let Some(field) = key.strip_prefix("auth_") {
                    format!("auth.{field}")
                } else if let Some(field) = key.strip_prefix("cluster_") {
                    format!("cluster.{field}")
                } else if let Some(field) = key.strip_prefix("tls_") {
                    format!("tls.{field}")
                } else {
                    key
                };
                Some((key, value))
            })
            .collect();
        Self { vars }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}*` environment variables"))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.vars {
            let value: Value = value.parse().unwrap_or_else(|e| match e {});
            if let Some(nested) = figment::util::nest(key, value).into_dict() {
                for (k, v) in nested {
                    match (dict.get_mut(&k), v) {
                        (Some(Value::Dict(_, existing)), Value::Dict(_, more)) => {
                            existing.extend(more)
                        }
                        (_, v) => {
                            dict.insert(k, v);
                        }
                    }
                }
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Top-level keys a provider sets that are not configuration keys.
fn unknown_keys(provider: &impl Provider) -> Result<Option<(String, String)>, Box<figment::Error>> {
    let valid = valid_keys();
    let source = provider.metadata().name.to_string();
    for dict in provider.data().map_err(Box::new)?.values() {
        if let Some(key) = dict.keys().find(|k| !valid.contains(&k.as_str())) {
            return Ok(Some((key.clone(), source)));
        }
    }
    Ok(None)
}

/// The configuration an app runs with: the [`Config`] and where its protocol,
/// HTTP and raw services listen.
///
/// Each value comes from, lowest precedence first:
/// 1. code: [`App::config`](crate::App::config), `main!(config = ..)`, the
///    addresses given to `run_websocket_service` / `run_service` / `main!`, the
///    ports declared by `#[raw_ws(port = ..)]`;
/// 2. a TOML file: `--config <path>` on a `main!` binary's command line, or the
///    file named by `FRAMEWORK_CONFIG`;
/// 3. environment variables: `FRAMEWORK_` + the key in upper case.
///
/// An unknown key or a value that does not parse is an error at start-up, never a
/// silent default.
///
#[doc = include_str!("../../docs/config.md")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Limits and timeouts.
    pub config: Config,
    /// The protocol WebSocket service's address (`run_websocket_service`).
    pub websocket: Option<ListenSpec>,
    /// The HTTP + WebSocket service's address (`run_service`).
    pub service: Option<ListenSpec>,
    /// Raw services, by the port they were declared on.
    pub raw: BTreeMap<u16, ListenSpec>,
}

#[derive(Serialize, Deserialize, Default)]
struct Listeners {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    websocket: Option<ListenSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ListenSpec>,
    #[serde(default)]
    raw: BTreeMap<String, ListenSpec>,
}

impl Settings {
    /// Layers `file` (when given) and the process's `FRAMEWORK_*` environment
    /// variables over `self` (the code's settings).
    pub fn load(self, file: Option<&Path>) -> Result<Settings, ConfigError> {
        self.load_from(file, std::env::vars())
    }

    /// [`load`](Self::load) with the environment given explicitly (for tests).
    ///
    /// ```
    /// use framework::config::Settings;
    /// let env = [("FRAMEWORK_IDLE_TIMEOUT".to_string(), "30s".to_string()),
    ///            ("FRAMEWORK_WEBSOCKET".to_string(), "127.0.0.1:9000".to_string())];
    /// let s = Settings::default().load_from(None, env).unwrap();
    /// assert_eq!(s.config.idle_timeout, std::time::Duration::from_secs(30));
    /// assert_eq!(s.websocket.unwrap().0.port(), 9000);
    ///
    /// let typo = [("FRAMEWORK_IDLE_TIMEOUTS".to_string(), "30s".to_string())];
    /// assert!(Settings::default().load_from(None, typo).is_err());
    /// ```
    pub fn load_from(
        self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let listeners = Listeners {
            websocket: self.websocket,
            service: self.service,
            raw: self
                .raw
                .iter()
                .map(|(port, addr)| (port.to_string(), *addr))
                .collect(),
        };
        let mut figment = Figment::from(Serialized::defaults(&self.config))
            .merge(Serialized::defaults(&listeners));
        if let Some(path) = file {
            if !path.exists() {
                return Err(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    path.display()
                ))
                .into());
            }
            let toml = Toml::file(path);
            check_keys(&toml)?;
            figment = figment.merge(toml);
        }
        let env = EnvVars::new(env);
        check_keys(&env)?;
        figment = figment.merge(env);

        let config: Config = figment.extract_lossy()?;
        let listeners: Listeners = figment.extract_lossy()?;
        let mut raw = BTreeMap::new();
        for (port, addr) in listeners.raw {
            let port = port.parse::<u16>().map_err(|_| {
                figment::Error::from(format!("`raw.{port}`: `{port}` is not a port"))
            })?;
            raw.insert(port, addr);
        }
        Ok(Settings {
            config,
            websocket: listeners.websocket,
            service: listeners.service,
            raw,
        })
    }

    /// The file named by `FRAMEWORK_CONFIG`, if set.
    pub fn file_from_env() -> Option<PathBuf> {
        std::env::var_os(CONFIG_FILE_VAR).map(PathBuf::from)
    }
}

fn check_keys(provider: &impl Provider) -> Result<(), ConfigError> {
    match unknown_keys(provider).map_err(ConfigError::Invalid)? {
        Some((key, origin)) => Err(ConfigError::UnknownKey {
            key,
            origin,
            valid: valid_keys().join(", "),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_config_field_is_a_known_key() {
        let serialized = Figment::from(Serialized::defaults(Config::default()));
        let dict = serialized.data().unwrap();
        let mut keys: Vec<&str> = dict[&Profile::Default].keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut listed = CONFIG_KEYS.to_vec();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    fn env_overrides_file_overrides_code() {
        let dir = std::env::temp_dir().join(format!("framework-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.toml");
        std::fs::write(
            &file,
            "idle_timeout = \"2m\"\nmax_message_size = 4096\nwebsocket = 9001\n[raw]\n8082 = \"127.0.0.1:9082\"\n",
        )
        .unwrap();
        let code = Settings {
            config: Config {
                max_message_size: 1,
                max_queued_bytes: 77,
                ..Config::default()
            },
            websocket: Some("8081".parse().unwrap()),
            ..Settings::default()
        };
        let s = code
            .load_from(
                Some(&file),
                env(&[
                    ("FRAMEWORK_MAX_MESSAGE_SIZE", "8192"),
                    ("FRAMEWORK_API_KEY", "12345"),
                    (
                        "FRAMEWORK_ALLOWED_ORIGINS",
                        "[https://a.example, https://b.example]",
                    ),
                    ("OTHER", "ignored"),
                ]),
            )
            .unwrap();
        assert_eq!(s.config.max_message_size, 8192, "env beats file");
        assert_eq!(
            s.config.idle_timeout,
            Duration::from_secs(120),
            "file beats code"
        );
        assert_eq!(s.config.max_queued_bytes, 77, "code beats defaults");
        assert_eq!(s.config.api_key.as_deref(), Some("12345"));
        assert_eq!(s.config.allowed_origins.len(), 2);
        assert_eq!(s.websocket.unwrap().0.port(), 9001);
        assert_eq!(s.raw[&8082].0.to_string(), "127.0.0.1:9082");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        for (name, value) in [
            ("FRAMEWORK_WEBSOCKET", "not-a-port"),
            ("FRAMEWORK_WEBSOCKET", "70000"),
            ("FRAMEWORK_IDLE_TIMEOUT", "soon"),
            ("FRAMEWORK_MAX_MESSAGE_SIZE", "-1"),
            ("FRAMEWORK_WEBSOCKET_PORT", "8081"),
            ("FRAMEWORK_RAW_X", "9000"),
        ] {
            let result = Settings::default().load_from(None, env(&[(name, value)]));
            assert!(result.is_err(), "{name}={value} must be refused");
        }
        let missing =
            Settings::default().load_from(Some(Path::new("/no/such/file.toml")), env(&[]));
        assert!(missing.is_err());
    }

    #[test]
    fn authentication_from_a_file_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("framework-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.toml");
        std::fs::write(
            &file,
            "[auth]\naudience = [\"chat\"]\n[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"from the file, long enough\"\n",
        )
        .unwrap();
        let s = Settings::default()
            .load_from(
                Some(&file),
                env(&[
                    ("FRAMEWORK_AUTH_REQUIRED", "true"),
                    ("FRAMEWORK_AUTH_LEEWAY", "5s"),
                ]),
            )
            .unwrap();
        let auth = s.config.auth.expect("[auth] configured");
        assert!(auth.required, "from the environment");
        assert_eq!(auth.leeway, Duration::from_secs(5));
        assert_eq!(auth.audience, ["chat"]);
        assert_eq!(auth.keys[0].algorithm, "HS256");
        // A typo inside [auth] is an error too.
        std::fs::write(&file, "[auth]\nrequird = true\n").unwrap();
        assert!(Settings::default()
            .load_from(Some(&file), env(&[]))
            .is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_documented_example_file_loads() {
        let doc = include_str!("../../docs/config.md");
        let example = doc
            .rsplit("```toml\n")
            .next()
            .and_then(|b| b.split("```").next())
            .expect("the example file");
        let dir = std::env::temp_dir().join(format!("framework-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.toml");
        std::fs::write(&file, example).unwrap();
        let s = Settings::default().load_from(Some(&file), env(&[]));
        std::fs::remove_dir_all(dir).unwrap();
        let s = s.expect("the example in docs/config.md loads");
        assert_eq!(s.config.trusted_proxies.len(), 1);
        assert_eq!(s.raw[&8082].0.port(), 9082);
    }

    #[test]
    fn proxies_and_logging_from_the_environment() {
        let s = Settings::default()
            .load_from(
                None,
                env(&[
                    (
                        "FRAMEWORK_TRUSTED_PROXIES",
                        "[127.0.0.1, 10.0.0.0/8, fd00::/8]",
                    ),
                    ("FRAMEWORK_FORWARDED_HEADER", "forwarded"),
                    ("FRAMEWORK_PROXY_PROTOCOL", "true"),
                    ("FRAMEWORK_LOG_FORMAT", "json"),
                ]),
            )
            .unwrap();
        let c = s.config;
        let listed: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(listed, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(c.forwarded_header, super::super::ForwardedHeader::Forwarded);
        assert!(c.proxy_protocol);
        assert_eq!(c.log_format, super::super::LogFormat::Json);
        // One block alone needs no brackets.
        let one = Settings::default()
            .load_from(None, env(&[("FRAMEWORK_TRUSTED_PROXIES", "::1")]))
            .unwrap();
        assert_eq!(one.config.trusted_proxies.len(), 1);
        for (name, value) in [
            ("FRAMEWORK_TRUSTED_PROXIES", "[10.0.0.0/33]"),
            ("FRAMEWORK_TRUSTED_PROXIES", "proxy.local"),
            ("FRAMEWORK_FORWARDED_HEADER", "x-real-ip"),
            ("FRAMEWORK_LOG_FORMAT", "xml"),
        ] {
            let result = Settings::default().load_from(None, env(&[(name, value)]));
            assert!(result.is_err(), "{name}={value} must be refused");
        }
    }

    #[test]
    fn tls_from_a_file_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("framework-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.toml");
        std::fs::write(
            &file,
            "[tls]\ncert_file = \"/etc/chain.pem\"\nkey_file = \"/etc/key.pem\"\n",
        )
        .unwrap();
        let s = Settings::default()
            .load_from(Some(&file), env(&[("FRAMEWORK_TLS_RELOAD_INTERVAL", "0s")]))
            .unwrap();
        let tls = s.config.tls.expect("[tls] configured");
        assert_eq!(tls.cert_file, Path::new("/etc/chain.pem"));
        assert_eq!(tls.key_file, Path::new("/etc/key.pem"));
        assert_eq!(tls.reload_interval, Duration::ZERO, "from the environment");
        // The environment alone, over the code's.
        let code = Settings {
            config: Config {
                tls: Some(super::super::TlsConfig::new("a.pem", "b.pem")),
                ..Config::default()
            },
            ..Settings::default()
        };
        let s = code
            .load_from(None, env(&[("FRAMEWORK_TLS_CERT_FILE", "/run/c.pem")]))
            .unwrap();
        let tls = s.config.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/run/c.pem"));
        assert_eq!(tls.key_file, Path::new("b.pem"));
        // A cert without a key, or a typo, is an error.
        for bad in [
            vec![("FRAMEWORK_TLS_CERT_FILE", "/run/c.pem")],
            vec![
                ("FRAMEWORK_TLS_CERT_FILE", "c"),
                ("FRAMEWORK_TLS_KEY_FILE", "k"),
                ("FRAMEWORK_TLS_KEYFILE", "k"),
            ],
            vec![
                ("FRAMEWORK_TLS_CERT_FILE", "c"),
                ("FRAMEWORK_TLS_KEY_FILE", "k"),
                ("FRAMEWORK_TLS_RELOAD_INTERVAL", "often"),
            ],
        ] {
            assert!(
                Settings::default().load_from(None, env(&bad)).is_err(),
                "{bad:?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn raw_ports_from_the_environment() {
        let s = Settings::default()
            .load_from(None, env(&[("FRAMEWORK_RAW_8082", "9000")]))
            .unwrap();
        assert_eq!(s.raw[&8082].0.port(), 9000);
    }
}
