//! What channels keep and tell (protocol v1.1): history, presence and join/leave
//! events, by channel pattern. A channel no pattern matches behaves exactly as in
//! protocol v1: no offsets, no presence, nothing new on the wire.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::glob_match;

/// The options of the channels matching `pattern` (`[[channel_options]]` in TOML;
/// `App::channel_options` in code). `*` matches any run of characters; the first
/// entry whose pattern matches a channel decides.
///
/// ```toml
/// [[channel_options]]
/// pattern = "chat:*"
/// history_size = 100      # keep the last 100 publications ...
/// history_ttl = "10m"     # ... for at most ten minutes
/// presence = true         # `Presence` lists the subscribers
/// join_leave = true       # subscribers get `Join` / `Leave` events
///
/// [[channel_options]]
/// pattern = "news:*"
/// history_size = 20
/// history_ttl = "1h"
/// allow_publish = false   # only the server (HTTP API, handlers) publishes
/// ```
///
/// ```
/// use std::time::Duration;
/// use framework::config::ChannelOptions;
/// let chat = ChannelOptions::new("chat:*")
///     .history(100, Duration::from_secs(600))
///     .presence(true)
///     .join_leave(true);
/// assert!(chat.matches("chat:rust") && !chat.matches("news:today"));
/// assert!(chat.has_history());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelOptions {
    /// The channels these options apply to.
    pub pattern: String,
    /// How many publications the history keeps (the oldest are trimmed); 0: no
    /// history, no offsets.
    #[serde(default)]
    pub history_size: usize,
    /// How long a publication stays in the history; required with
    /// `history_size`.
    #[serde(default, with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
    /// How long a channel's history state (its epoch and latest offset) outlives
    /// its last publication; after that the channel starts a new epoch.
    #[serde(default = "default_meta_ttl", with = "humantime_serde")]
    pub history_meta_ttl: Duration,
    /// Whether `Presence` lists the channel's subscribers.
    #[serde(default)]
    pub presence: bool,
    /// Whether subscribers get `Join` and `Leave` events about the others.
    #[serde(default)]
    pub join_leave: bool,
    /// Whether clients may `Publish` here (`false`: `Forbidden`; the server API
    /// and handlers still publish).
    #[serde(default = "yes")]
    pub allow_publish: bool,
}

fn default_meta_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn yes() -> bool {
    true
}

impl ChannelOptions {
    /// Options for `pattern` that add nothing yet (a v1 channel).
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            history_size: 0,
            history_ttl: None,
            history_meta_ttl: default_meta_ttl(),
            presence: false,
            join_leave: false,
            allow_publish: true,
        }
    }

    /// Keeps the last `size` publications, each for at most `ttl`.
    pub fn history(mut self, size: usize, ttl: Duration) -> Self {
        self.history_size = size;
        self.history_ttl = Some(ttl);
        self
    }

    /// Turns presence on or off.
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }

    /// Turns join/leave events on or off.
    pub fn join_leave(mut self, on: bool) -> Self {
        self.join_leave = on;
        self
    }

    /// Whether clients may publish.
    pub fn allow_publish(mut self, allow: bool) -> Self {
        self.allow_publish = allow;
        self
    }

    /// Whether `channel` is governed by these options.
    pub fn matches(&self, channel: &str) -> bool {
        glob_match(&self.pattern, channel)
    }

    /// Whether these channels keep a history (and their publications carry
    /// offsets).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && self.history_ttl.is_some_and(|t| !t.is_zero())
    }

    /// The history bounds, when there is a history.
    pub fn history_bounds(&self) -> Option<HistoryBounds> {
        self.has_history().then(|| HistoryBounds {
            size: self.history_size,
            ttl: self.history_ttl.unwrap_or_default(),
            meta_ttl: self
                .history_meta_ttl
                .max(self.history_ttl.unwrap_or_default()),
        })
    }

    /// Why these options cannot be used, if they cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.pattern.is_empty() {
            return Some("a channel_options entry has an empty pattern".into());
        }
        if self.history_size > 0 && self.history_ttl.is_none_or(|t| t.is_zero()) {
            return Some(format!(
                "channel_options `{}`: history_size needs a non-zero history_ttl",
                self.pattern
            ));
        }
        if self.history_size > MAX_HISTORY_SIZE {
            return Some(format!(
                "channel_options `{}`: history_size is at most {MAX_HISTORY_SIZE}",
                self.pattern
            ));
        }
        None
    }
}

/// The largest `history_size` a channel may have.
pub const MAX_HISTORY_SIZE: usize = 1_000_000;

/// How much of a channel's history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    /// Publications kept at most.
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
    /// How long the channel's epoch and offset outlive its last publication.
    pub meta_ttl: Duration,
}

/// The options of `channel`: the first entry of `options` that matches it.
///
/// ```
/// use framework::config::{options_for, ChannelOptions};
/// let all = [ChannelOptions::new("chat:*").presence(true), ChannelOptions::new("*")];
/// assert!(options_for(&all, "chat:a").unwrap().presence);
/// assert!(!options_for(&all, "news").unwrap().presence);
/// assert!(options_for(&all[..1], "news").is_none());
/// ```
pub fn options_for<'a>(options: &'a [ChannelOptions], channel: &str) -> Option<&'a ChannelOptions> {
    options.iter().find(|o| o.matches(channel))
}
