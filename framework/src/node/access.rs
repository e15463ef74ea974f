//! Authorization at run time: the configured channel rules and permissions,
//! evaluated for every frame against its sender's identity.

use std::collections::HashMap;

use crate::config::{glob_match, ChannelRule, Grant, Permissions};
use crate::node::Identity;
use crate::protocol::Opcode;

/// What a frame asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Subscribe to a channel.
    Subscribe(&'a str),
    /// Publish to a channel.
    Publish(&'a str),
    /// List a channel's presence.
    Presence(&'a str),
    /// Read a channel's history.
    History(&'a str),
    /// Send to one session.
    Send,
    /// Broadcast to every session.
    Broadcast,
    /// An application opcode.
    Opcode(u16),
}

impl<'a> Action<'a> {
    /// The action of a frame with `opcode` (and `channel`); `None` for frames no
    /// rule can govern (`Ping`, `Unsubscribe`, `Auth`, ...).
    pub fn of(opcode: u16, channel: Option<&'a str>) -> Option<Action<'a>> {
        Self::of_lazy(opcode, || channel)
    }

    /// [`of`](Self::of), reading the channel only for the opcodes that name
    /// one (the dispatcher asks for every frame).
    pub(crate) fn of_lazy(
        opcode: u16,
        channel: impl FnOnce() -> Option<&'a str>,
    ) -> Option<Action<'a>> {
        let on = |f: fn(&'a str) -> Action<'a>| channel().map(f);
        match Opcode(opcode) {
            Opcode::Subscribe => on(Action::Subscribe),
            Opcode::Publish => on(Action::Publish),
            Opcode::Presence => on(Action::Presence),
            Opcode::History => on(Action::History),
            Opcode::Send => Some(Action::Send),
            Opcode::Broadcast => Some(Action::Broadcast),
            Opcode(n) if n >= crate::protocol::FIRST_APPLICATION_OPCODE => Some(Action::Opcode(n)),
            _ => None,
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The sender is anonymous and the action needs more.
    Unauthenticated,
    /// The sender's identity does not allow it.
    Forbidden,
}

struct Channel {
    rule: ChannelRule,
    /// The pattern with every `{placeholder}` as `*`: which channels it governs.
    shape: String,
    has_placeholders: bool,
}

/// A node's authorization rules.
pub(crate) struct Access {
    channels: Vec<Channel>,
    send: Option<Vec<Grant>>,
    broadcast: Option<Vec<Grant>>,
    opcodes: HashMap<u16, Vec<Grant>>,
}

/// `{name}` placeholders replaced: `{channel}` by the channel, others by the
/// identity's string claim; `None` when a claim is missing.
fn expand(template: &str, channel: Option<&str>, identity: Option<&Identity>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 1..end];
        let value = match name {
            "channel" => channel?.to_string(),
            claim => identity?.claims().get(claim)?.as_str()?.to_string(),
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn shape_of(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut inside = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                inside = true;
                out.push('*');
            }
            '}' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

fn holds(grant: &Grant, channel: Option<&str>, identity: Option<&Identity>) -> bool {
    match grant {
        Grant::Anyone => true,
        Grant::Authenticated => identity.is_some(),
        Grant::Nobody => false,
        Grant::Claim { name, value } => {
            let (Some(id), Some(want)) = (identity, expand(value, channel, identity)) else {
                return false;
            };
            match id.claims().get(name) {
                Some(serde_json::Value::String(s)) => *s == want,
                Some(serde_json::Value::Array(items)) => {
                    items.iter().any(|i| i.as_str() == Some(want.as_str()))
                }
                // Numbers and booleans compare by their JSON text.
                Some(other) => other.to_string().as_str() == want.as_str(),
                None => false,
            }
        }
    }
}

fn allowed(
    grants: &[Grant],
    channel: Option<&str>,
    identity: Option<&Identity>,
) -> Result<(), Denied> {
    if grants.iter().any(|g| holds(g, channel, identity)) {
        Ok(())
    } else if identity.is_none() {
        Err(Denied::Unauthenticated)
    } else {
        Err(Denied::Forbidden)
    }
}

impl Access {
    /// `opcodes` adds requirements from code (`App::require`, the macros) to the
    /// configured ones.
    pub(crate) fn new(
        channels: &[ChannelRule],
        permissions: &Permissions,
        opcodes: &[(u16, Vec<Grant>)],
        authentication: bool,
    ) -> Access {
        let mut by_opcode: HashMap<u16, Vec<Grant>> = HashMap::new();
        for (key, grants) in &permissions.opcodes {
            if let Ok(opcode) = key.parse::<u16>() {
                by_opcode
                    .entry(opcode)
                    .or_default()
                    .extend(grants.iter().cloned());
            }
        }
        for (opcode, grants) in opcodes {
            by_opcode
                .entry(*opcode)
                .or_default()
                .extend(grants.iter().cloned());
        }
        let broadcast = match (&permissions.broadcast, authentication) {
            (Some(g), _) => Some(g.clone()),
            // With authentication on, a broadcast needs an explicit permission.
            (None, true) => Some(vec![Grant::Nobody]),
            (None, false) => None,
        };
        Access {
            channels: channels
                .iter()
                .map(|rule| Channel {
                    shape: shape_of(&rule.pattern),
                    has_placeholders: rule.pattern.contains('{'),
                    rule: rule.clone(),
                })
                .collect(),
            send: permissions.send.clone(),
            broadcast,
            opcodes: by_opcode,
        }
    }

    /// Whether `action` needs the sender's identity to be decided (so callers can
    /// skip looking it up).
    pub(crate) fn governs(&self, action: Action<'_>) -> bool {
        match action {
            Action::Send => self.send.is_some(),
            Action::Broadcast => self.broadcast.is_some(),
            Action::Opcode(op) => self.opcodes.contains_key(&op),
            Action::Subscribe(c)
            | Action::Publish(c)
            | Action::Presence(c)
            | Action::History(c) => self.channels.iter().any(|ch| glob_match(&ch.shape, c)),
        }
    }

    /// Whether the sender (`identity`, `None` when anonymous) may do `action`.
    pub(crate) fn check(
        &self,
        action: Action<'_>,
        identity: Option<&Identity>,
    ) -> Result<(), Denied> {
        let (channel, grants) = match action {
            Action::Send => (None, self.send.as_deref()),
            Action::Broadcast => (None, self.broadcast.as_deref()),
            Action::Opcode(op) => (None, self.opcodes.get(&op).map(Vec::as_slice)),
            Action::Subscribe(c)
            | Action::Publish(c)
            | Action::Presence(c)
            | Action::History(c) => {
                let Some(ch) = self.channels.iter().find(|ch| glob_match(&ch.shape, c)) else {
                    return Ok(());
                };
                if ch.has_placeholders {
                    // The channel must be this identity's own.
                    let own = expand(&ch.rule.pattern, Some(c), identity);
                    if !own.is_some_and(|p| glob_match(&p, c)) {
                        return Err(if identity.is_none() {
                            Denied::Unauthenticated
                        } else {
                            Denied::Forbidden
                        });
                    }
                }
                let grants = match action {
                    Action::Subscribe(_) => &ch.rule.subscribe,
                    Action::Publish(_) => &ch.rule.publish,
                    Action::Presence(_) => &ch.rule.presence,
                    _ => &ch.rule.history,
                };
                // Presence and history show what subscribers see: whoever may
                // not subscribe may not read them either.
                if matches!(action, Action::Presence(_) | Action::History(_)) {
                    if let Some(subscribe) = ch.rule.subscribe.as_deref() {
                        allowed(subscribe, Some(c), identity)?;
                    }
                }
                (Some(c), grants.as_deref())
            }
        };
        match grants {
            Some(grants) => allowed(grants, channel, identity),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(sub: &str, claims: serde_json::Value) -> Identity {
        Identity::new(sub, 0, claims)
    }

    fn grants(list: &[&str]) -> Option<Vec<Grant>> {
        Some(list.iter().map(|g| g.parse().unwrap()).collect())
    }

    #[test]
    fn channel_rules_with_templates_and_claims() {
        let rules = [
            ChannelRule {
                publish: grants(&["nobody"]),
                ..ChannelRule::new("news:*")
            },
            ChannelRule {
                subscribe: grants(&["authenticated"]),
                ..ChannelRule::new("private:{sub}")
            },
            ChannelRule {
                subscribe: grants(&["claim:teams~{channel}", "claim:role=admin"]),
                ..ChannelRule::new("team:*")
            },
        ];
        let a = Access::new(&rules, &Permissions::default(), &[], true);
        let ada = id("ada", json!({"sub": "ada", "teams": ["team:red"]}));
        let boss = id("boss", json!({"sub": "boss", "role": "admin"}));
        assert_eq!(
            a.check(Action::Publish("news:x"), Some(&ada)),
            Err(Denied::Forbidden)
        );
        assert_eq!(a.check(Action::Subscribe("news:x"), None), Ok(()));
        assert_eq!(
            a.check(Action::Subscribe("private:ada"), Some(&ada)),
            Ok(())
        );
        assert_eq!(
            a.check(Action::Subscribe("private:bob"), Some(&ada)),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            a.check(Action::Subscribe("private:ada"), None),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(a.check(Action::Subscribe("team:red"), Some(&ada)), Ok(()));
        assert_eq!(
            a.check(Action::Subscribe("team:blue"), Some(&ada)),
            Err(Denied::Forbidden)
        );
        assert_eq!(a.check(Action::Subscribe("team:blue"), Some(&boss)), Ok(()));
        assert_eq!(
            a.check(Action::Subscribe("open"), None),
            Ok(()),
            "no rule: v1"
        );
        // With authentication on and no permission, nobody broadcasts.
        assert_eq!(
            a.check(Action::Broadcast, Some(&boss)),
            Err(Denied::Forbidden)
        );
        assert_eq!(a.check(Action::Send, None), Ok(()));
    }

    #[test]
    fn permissions_and_opcode_requirements() {
        let permissions = Permissions {
            send: grants(&["authenticated"]),
            broadcast: grants(&["claim:role=admin"]),
            opcodes: [("200".to_string(), vec![Grant::Authenticated])].into(),
        };
        let a = Access::new(
            &[],
            &permissions,
            &[(201, vec!["claim:role=admin".parse().unwrap()])],
            true,
        );
        let boss = id("boss", json!({"role": "admin"}));
        let ada = id("ada", json!({}));
        assert_eq!(a.check(Action::Send, None), Err(Denied::Unauthenticated));
        assert_eq!(a.check(Action::Broadcast, Some(&boss)), Ok(()));
        assert_eq!(
            a.check(Action::Broadcast, Some(&ada)),
            Err(Denied::Forbidden)
        );
        assert_eq!(a.check(Action::Opcode(200), Some(&ada)), Ok(()));
        assert_eq!(
            a.check(Action::Opcode(201), Some(&ada)),
            Err(Denied::Forbidden)
        );
        assert_eq!(a.check(Action::Opcode(202), None), Ok(()));
        // Without authentication, broadcasts stay open (v1).
        let open = Access::new(&[], &Permissions::default(), &[], false);
        assert_eq!(open.check(Action::Broadcast, None), Ok(()));
        assert!(!open.governs(Action::Broadcast));
    }
}
