//! Quota rules as configuration: what is counted (frames, payload bytes), for
//! which frames (an opcode, a channel pattern), per what (connection, address,
//! node), and at what rate.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::Opcode;

/// `count` per `per`, in bursts of up to `burst`: a token bucket (GCRA) that holds
/// `burst` and refills `count` every `per`. Written `"10/s"`, `"600/m"`,
/// `"5/250ms"`, or with a burst, `"10/s burst 40"` (the burst defaults to `count`).
///
/// ```
/// use framework::config::Rate;
/// let r: Rate = "10/s burst 40".parse().unwrap();
/// assert_eq!((r.count, r.per.as_secs(), r.burst), (10, 1, 40));
/// assert_eq!("1 MiB/s".parse::<Rate>().unwrap().count, 1 << 20);
/// assert!("ten per second".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Frames (or bytes) refilled every `per`.
    pub count: u32,
    /// The refill period.
    pub per: Duration,
    /// The most that may pass at once.
    pub burst: u32,
}

impl Rate {
    /// `count` per second, bursts of `count`.
    pub fn per_second(count: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(1),
            burst: count,
        }
    }

    /// The same rate with bursts of up to `burst`.
    pub fn burst(self, burst: u32) -> Rate {
        Rate { burst, ..self }
    }
}

fn count(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a count"))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (B, KiB, MiB, GiB)")),
    };
    u32::try_from(n * scale)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a count in 1..=4294967295"))
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let (rate, burst) = match s.split_once("burst") {
            Some((rate, burst)) => (rate, Some(count(burst)?)),
            None => (s, None),
        };
        let (n, per) = rate
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a rate like 10/s or 10/s burst 40"))?;
        let count = count(n)?;
        let per = match per.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other)
                .map_err(|_| format!("`{other}` is not a period (s, m, h, or e.g. 250ms)"))?,
        };
        if per.is_zero() {
            return Err(format!("`{s}`: the period must be longer than zero"));
        }
        Ok(Rate {
            count,
            per,
            burst: burst.unwrap_or(count),
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a quota is counted per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    /// Each connection has its own budget.
    #[default]
    Connection,
    /// All connections from one IP address share a budget.
    Ip,
    /// All connections of one authenticated user share a budget (anonymous
    /// connections: each its own, as `connection`).
    User,
    /// The whole node shares one budget.
    Node,
}

/// An opcode by its schema name (`"Publish"`) or value (`200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpcodeRef(pub u16);

impl Serialize for OpcodeRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match Opcode(self.0).variant_name() {
            Some(name) => s.serialize_str(name),
            None => s.serialize_u16(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for OpcodeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OpcodeRef, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Value(u16),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Value(v) => Ok(OpcodeRef(v)),
            Raw::Name(name) => Opcode::ENUM_VALUES
                .iter()
                .find(|o| o.variant_name() == Some(name.as_str()))
                .map(|o| OpcodeRef(o.0))
                .or_else(|| name.parse().ok().map(OpcodeRef))
                .ok_or_else(|| serde::de::Error::custom(format!("`{name}` is not an opcode"))),
        }
    }
}

/// One quota: for the frames it matches, counted per its scope, frames and/or
/// payload bytes at a [`Rate`]. A frame over any matching quota is answered
/// `Error`/`RateLimited` with `retry_after_ms` (unless its handler takes the
/// `QuotaResult` extractor and decides itself), and is not handled.
///
/// In TOML:
///
/// ```toml
/// [[quotas]]
/// opcode = "Broadcast"
/// per = "connection"
/// frames = "10/s burst 20"
/// bytes = "1 MiB/s burst 2 MiB"
///
/// [[quotas]]
/// opcode = "Publish"
/// channel = "chat:*"
/// per = "ip"
/// frames = "50/s"
///
/// [[quotas]]
/// opcode = 200
/// per = "user"
/// frames = "100/m burst 10"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRule {
    /// The opcode it applies to; absent: every frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode: Option<OpcodeRef>,
    /// Only frames whose channel matches this pattern (`*` matches any run of
    /// characters: `chat:*`, `*:private`); absent: any frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Whose budget it is: `"connection"` (the default), `"ip"`, `"user"`
    /// (the authenticated user's connections together) or `"node"`.
    #[serde(default)]
    pub per: QuotaScope,
    /// Frames allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Rate>,
    /// Payload bytes allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Rate>,
}

impl QuotaRule {
    /// A rule for `opcode`, per connection, with no rate yet.
    pub fn opcode(opcode: impl crate::protocol::IntoOpcode) -> QuotaRule {
        QuotaRule {
            opcode: Some(OpcodeRef(opcode.into_opcode())),
            channel: None,
            per: QuotaScope::Connection,
            frames: None,
            bytes: None,
        }
    }

    /// Counted per `scope`.
    pub fn per(self, scope: QuotaScope) -> QuotaRule {
        QuotaRule { per: scope, ..self }
    }

    /// Frames at `rate`.
    pub fn frames(self, rate: Rate) -> QuotaRule {
        QuotaRule {
            frames: Some(rate),
            ..self
        }
    }

    /// Payload bytes at `rate`.
    pub fn bytes(self, rate: Rate) -> QuotaRule {
        QuotaRule {
            bytes: Some(rate),
            ..self
        }
    }

    /// Only frames on channels matching `pattern`.
    pub fn channel(self, pattern: impl Into<String>) -> QuotaRule {
        QuotaRule {
            channel: Some(pattern.into()),
            ..self
        }
    }
}

/// The quotas every node has unless configured otherwise: one session's
/// `Broadcast`s and `Publish`es are limited, so a sender that would flood its
/// receivers' queues is slowed before anyone is evicted.
pub fn default_quotas() -> Vec<QuotaRule> {
    vec![
        QuotaRule::opcode(Opcode::Broadcast)
            .frames(Rate::per_second(10).burst(20))
            .bytes(Rate::per_second(1 << 20).burst(2 << 20)),
        QuotaRule::opcode(Opcode::Publish)
            .frames(Rate::per_second(5000).burst(10_000))
            .bytes(Rate::per_second(8 << 20).burst(16 << 20)),
    ]
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
///
/// ```
/// use framework::config::glob_match;
/// assert!(glob_match("chat:*", "chat:rust"));
/// assert!(glob_match("*:private", "ada:private"));
/// assert!(glob_match("*", "anything"));
/// assert!(!glob_match("chat:*", "news:today"));
/// assert!(glob_match("a*b*c", "a--b--c"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}
