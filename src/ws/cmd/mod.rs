//! Client commands (PROTOCOL.md §3), one file each, the shape of mini-redis's `cmd/`: a
//! `parse` step (the message's `data` → the command, or an error with a stable code) and an
//! `apply` step (the command, the connection's context → replies and subscription changes).
//! A new command is a new file plus one line in [`parse`] and one in [`Command::apply`].

pub mod auth;
pub mod control;
pub mod ping;
pub mod subscribe;
pub mod unsubscribe;

use super::action::Action;
use crate::error::{ApiError, ErrorCode};
use crate::fanout::{ConnId, Fanout};
use crate::model::ChannelId;
use simd_json::prelude::*;
use simd_json::BorrowedValue;

pub use auth::Auth;
pub use control::Control;
pub use ping::Ping;
pub use subscribe::Subscribe;
pub use unsubscribe::Unsubscribe;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Control(Control),
    Ping(Ping),
    Auth(Auth),
}

/// A parsed client message: its id (when readable) and the command or why not.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub id: Option<String>,
    pub command: Result<Command, ApiError>,
}

/// What a command's apply step works with.
pub struct Ctx<'a> {
    pub conn: ConnId,
    /// The message's `id`: replies carry it as `request_id`.
    pub request_id: Option<&'a str>,
    /// When the message was received (Unix ms).
    pub now: i64,
    pub fanout: &'a mut Fanout,
    pub out: &'a mut Vec<Action>,
    /// Who the connection acts as (an `auth` message renews it).
    pub principal: &'a mut crate::auth::Principal,
    pub auth: &'a crate::auth::Auth,
    /// Who is on the other end of the connection (what its commands are queued for).
    pub peer: &'a Peer,
    /// Commands waiting for their job's answer, and how many may.
    pub in_flight: &'a mut usize,
    pub max_in_flight: usize,
}

/// The connection's client: its id and address (behind trusted proxies, the forwarded one)
/// — what a command is queued for and audited as coming from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub client_id: String,
    pub source: std::net::IpAddr,
}

impl Ctx<'_> {
    pub fn reply(&mut self, json: Vec<u8>) {
        self.out.push(Action::Reply(json));
    }

    /// `error {code, message, details, request_id}`.
    pub fn error(&mut self, err: &ApiError) {
        let e = crate::wire::ws::error(err, self.request_id, self.now);
        self.reply(e);
    }
}

impl Command {
    /// What the command costs of the connection's message budget: one message, and a
    /// subscribe one more per 10 channels (its snapshot is what amplifies).
    pub fn cost(&self) -> u32 {
        match self {
            Command::Subscribe(s) => 1 + (s.channels.len() / 10) as u32,
            _ => 1,
        }
    }

    /// Whether the command reads the site's data (so must wait until it is loaded).
    pub fn needs_site(&self) -> bool {
        matches!(self, Command::Subscribe(_) | Command::Unsubscribe(_))
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        match self {
            Command::Subscribe(c) => c.apply(ctx),
            Command::Unsubscribe(c) => c.apply(ctx),
            Command::Control(c) => c.apply(ctx),
            Command::Ping(c) => c.apply(ctx),
            Command::Auth(c) => c.apply(ctx),
        }
    }
}

/// Bounds on what one message may ask of the parser and of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest channel list (and most channels a connection may hold).
    pub max_channels: usize,
    /// Deepest nesting of arrays and objects. The JSON parser recurses per level and has no
    /// limit of its own: ~12,000 levels overflow a shard's stack and abort the process.
    pub max_depth: usize,
    /// Messages per second a connection may send (a subscribe also costs one per 10
    /// channels), and how many may come at once.
    pub messages_per_sec: u32,
    pub message_burst: u32,
    /// Commands (control) that may wait for Redis at once.
    pub max_in_flight: usize,
}

/// Parses one text message: the envelope `{type, id, timestamp, data}`, then the command's
/// own `data`, within `limits`.
pub fn parse(text: &str, limits: &Limits) -> Incoming {
    let max_channels = limits.max_channels;
    if !crate::json::nesting_within(text.as_bytes(), limits.max_depth) {
        return Incoming {
            id: None,
            command: Err(ErrorCode::InvalidJson.context(format!(
                "message nests arrays/objects deeper than {} levels",
                limits.max_depth
            ))),
        };
    }
    let mut bytes = text.as_bytes().to_vec();
    let value = match simd_json::to_borrowed_value(&mut bytes) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                id: None,
                command: Err(
                    ErrorCode::InvalidJson.context(format!("message is not valid JSON: {e}"))
                ),
            }
        }
    };
    let id = value.get("id").and_then(|v| match v.as_str() {
        Some(s) => Some(s.to_owned()),
        None if v.is_number() => Some(v.to_string()),
        None => None,
    });
    let command = if !value.is_object() {
        Err(ErrorCode::InvalidMessage
            .context("a message must be a JSON object {type, id, timestamp, data}"))
    } else {
        let data = value.get("data");
        match value.get("type").map(|t| t.as_str()) {
            None | Some(None) => {
                Err(ErrorCode::InvalidMessage
                    .context("field 'type' is required and must be a string"))
            }
            Some(Some("subscribe")) => Subscribe::parse(data, max_channels).map(Command::Subscribe),
            Some(Some("unsubscribe")) => {
                Unsubscribe::parse(data, max_channels).map(Command::Unsubscribe)
            }
            Some(Some("control")) => Control::parse(data).map(Command::Control),
            Some(Some("auth")) => Auth::parse(data).map(Command::Auth),
            Some(Some("ping")) => Ok(Command::Ping(Ping::parse(
                value.get("timestamp").and_then(|v| v.as_str()),
            ))),
            Some(Some(other)) => Err(ErrorCode::UnknownType.context(format!(
                "unknown type '{other}'; expected subscribe, unsubscribe, control, ping or auth"
            ))),
        }
    };
    Incoming { id, command }
}

fn invalid(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_parameter(field, expected)
}

/// A `channels` list: 1..=max distinct ids in 1..=4294967295 (duplicates dropped, order
/// kept). Absent (or, when not `required`, null or empty) → `None`.
fn channel_list(
    v: Option<&BorrowedValue>,
    max: usize,
    required: bool,
) -> Result<Option<Vec<ChannelId>>, ApiError> {
    let field = "channels";
    let Some(v) = v else {
        return if required {
            Err(invalid(field, "is required: an array of channel ids"))
        } else {
            Ok(None)
        };
    };
    if !required && v.is_null() {
        return Ok(None);
    }
    let arr = v
        .as_array()
        .ok_or_else(|| invalid(field, "must be an array of channel ids"))?;
    if arr.is_empty() {
        return if required {
            Err(invalid(field, "must not be empty"))
        } else {
            Ok(None)
        };
    }
    if arr.len() > max {
        return Err(invalid(field, &format!("must list at most {max} channels")));
    }
    let mut out = Vec::with_capacity(arr.len());
    for item in arr {
        let id = item
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .ok_or_else(|| invalid(field, "must hold integers in 1..=4294967295"))?;
        let id = ChannelId(id as u32);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const LIMITS: Limits = Limits {
        max_channels: 100,
        max_depth: 32,
        messages_per_sec: 100,
        message_burst: 100,
        max_in_flight: 16,
    };

    fn cmd(text: &str) -> Result<Command, ApiError> {
        parse(text, &LIMITS).command
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        assert!(crate::json::nesting_within(
            br#"{"a":[[1]],"b":"[[[[[[[["}"#,
            3
        ));
        assert!(!crate::json::nesting_within(br#"{"a":[[[1]]]}"#, 3));
        assert!(
            crate::json::nesting_within(br#"{"a":"\"[[[[\\"}"#, 1),
            "escaped quotes stay in the string"
        );
        let deep = "[".repeat(12_000);
        let e = cmd(&deep).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        assert!(e.details.contains("deeper than 32"), "{e}");
        // The protocol's own messages are three levels deep at most.
        assert!(
            cmd(r#"{"type":"subscribe","data":{"channels":[1001],"data_types":["T"]}}"#).is_ok()
        );
    }

    #[test]
    fn envelope_errors_keep_the_id() {
        let e = parse(r#"{"type":"dance","id":"d1"}"#, &LIMITS);
        assert_eq!(e.command.unwrap_err().code, ErrorCode::UnknownType);
        assert_eq!(e.id.as_deref(), Some("d1"));
        assert_eq!(cmd("{nope").unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(cmd("[1,2]").unwrap_err().code, ErrorCode::InvalidMessage);
        assert_eq!(
            cmd(r#"{"id":"x"}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            cmd(r#"{"type":5}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            parse(r#"{"type":"ping","id":7}"#, &LIMITS).id.as_deref(),
            Some("7")
        );
    }
}
