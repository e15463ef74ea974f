//! Authorization as configuration: who may do what, on which channels.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One condition under which an action is allowed. Written as text in TOML:
///
/// | text | allows |
/// |---|---|
/// | `"anyone"` | every connection, anonymous included |
/// | `"authenticated"` | connections with a valid token |
/// | `"nobody"` | no client (the server itself still may: its API, handlers) |
/// | `"claim:role=admin"` | tokens whose claim `role` is (or, for an array, contains) `admin` |
/// | `"claim:channels~{channel}"` | tokens whose array claim `channels` contains the channel's name |
///
/// ```
/// use framework::config::Grant;
/// let g: Grant = "claim:role=admin".parse().unwrap();
/// assert_eq!(g, Grant::Claim { name: "role".into(), value: "admin".into() });
/// assert!("someone".parse::<Grant>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every connection.
    Anyone,
    /// Connections with a valid token.
    Authenticated,
    /// No client.
    Nobody,
    /// A claim with this value (or an array claim containing it); `{channel}` and
    /// `{claim}` placeholders in `value` are filled in.
    Claim {
        /// The claim's name.
        name: String,
        /// The value it must have or contain.
        value: String,
    },
}

impl std::str::FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Grant, String> {
        match s.trim() {
            "anyone" => Ok(Grant::Anyone),
            "authenticated" => Ok(Grant::Authenticated),
            "nobody" => Ok(Grant::Nobody),
            other => {
                let rest = other.strip_prefix("claim:").ok_or_else(|| {
                    format!("`{other}` is not a grant: anyone, authenticated, nobody, claim:NAME=VALUE or claim:NAME~VALUE")
                })?;
                let (name, value) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once('~'))
                    .ok_or_else(|| format!("`{other}`: write claim:NAME=VALUE"))?;
                if name.is_empty() {
                    return Err(format!("`{other}`: the claim has no name"));
                }
                Ok(Grant::Claim {
                    name: name.trim().to_string(),
                    value: value.trim().to_string(),
                })
            }
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Anyone => f.write_str("anyone"),
            Grant::Authenticated => f.write_str("authenticated"),
            Grant::Nobody => f.write_str("nobody"),
            Grant::Claim { name, value } => write!(f, "claim:{name}={value}"),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Grant, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Who may do something: allowed when any grant holds. Absent in a rule: the
/// action is not restricted by it.
pub type Access = Vec<Grant>;

/// Access to the channels matching a pattern. `*` matches any run of characters;
/// `{sub}` (or any string claim, `{name}`) stands for the token's value, so
/// `private:{sub}` governs every `private:*` channel and lets each user into
/// their own only. The first rule whose pattern matches a channel decides; a
/// channel no rule matches is open to every action (protocol v1's behaviour).
///
/// ```toml
/// [[channels]]
/// pattern = "news:*"
/// publish = ["nobody"]            # only the server publishes news
///
/// [[channels]]
/// pattern = "private:{sub}"
/// subscribe = ["authenticated"]
/// publish = ["authenticated"]
///
/// [[channels]]
/// pattern = "team:*"
/// subscribe = ["claim:teams~{channel}"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// The channels it governs.
    pub pattern: String,
    /// Who may subscribe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Access>,
    /// Who may publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Access>,
    /// Who may list presence (besides being allowed to subscribe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Access>,
    /// Who may read history (besides being allowed to subscribe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Access>,
}

impl ChannelRule {
    /// A rule for `pattern` that restricts nothing yet.
    pub fn new(pattern: impl Into<String>) -> ChannelRule {
        ChannelRule {
            pattern: pattern.into(),
            ..ChannelRule::default()
        }
    }
}

/// What clients may do beyond channels (`[permissions]`).
///
/// ```toml
/// [permissions]
/// send = ["authenticated"]
/// broadcast = ["claim:role=admin"]
///
/// [permissions.opcodes]
/// 200 = ["authenticated"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Who may `Send`; absent: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Access>,
    /// Who may `Broadcast`; absent: anyone while authentication is off, nobody
    /// once it is on (a broadcast reaches every session: it needs a permission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Access>,
    /// Who may send each application opcode (by number); absent: anyone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opcodes: BTreeMap<String, Access>,
}
