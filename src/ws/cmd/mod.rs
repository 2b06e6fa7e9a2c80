//! Client commands (PROTOCOL.md §3), one file each, the shape of mini-redis's `cmd/`: a
//! `parse` step (the message's `data` → the command, or an error with a stable code) and an
//! `apply` step (the command, the connection's context → replies and subscription changes).
//! A new command is a new file plus one line in [`parse`] and one in [`Command::apply`].

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

pub use control::Control;
pub use ping::Ping;
pub use subscribe::Subscribe;
pub use unsubscribe::Unsubscribe;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Control(Control),
    Ping(Ping),
}

/// A parsed client message: its id (when readable) and the command or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub fn apply(self, ctx: &mut Ctx<'_>) {
        match self {
            Command::Subscribe(c) => c.apply(ctx),
            Command::Unsubscribe(c) => c.apply(ctx),
            Command::Control(c) => c.apply(ctx),
            Command::Ping(c) => c.apply(ctx),
        }
    }
}

/// Parses one text message: the envelope `{type, id, timestamp, data}`, then the command's
/// own `data`. `max_channels` bounds channel lists.
pub fn parse(text: &str, max_channels: usize) -> Incoming {
    let mut bytes = text.as_bytes().to_vec();
    let value = match simd_json::to_borrowed_value(&mut bytes) {
        Ok(v) => v,
        Err(e) => {
            return Incoming {
                id: None,
                command: Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    "Invalid JSON",
                    format!("message is not valid JSON: {e}"),
                )),
            }
        }
    };
    let id = value.get("id").and_then(|v| match v.as_str() {
        Some(s) => Some(s.to_owned()),
        None if v.is_number() => Some(v.to_string()),
        None => None,
    });
    let command = if !value.is_object() {
        Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "Invalid message",
            "a message must be a JSON object {type, id, timestamp, data}",
        ))
    } else {
        let data = value.get("data");
        match value.get("type").map(|t| t.as_str()) {
            None | Some(None) => Err(ApiError::new(
                ErrorCode::InvalidMessage,
                "Invalid message",
                "field 'type' is required and must be a string",
            )),
            Some(Some("subscribe")) => Subscribe::parse(data, max_channels).map(Command::Subscribe),
            Some(Some("unsubscribe")) => {
                Unsubscribe::parse(data, max_channels).map(Command::Unsubscribe)
            }
            Some(Some("control")) => Control::parse(data).map(Command::Control),
            Some(Some("ping")) => Ok(Command::Ping(Ping::parse(
                value.get("timestamp").and_then(|v| v.as_str()),
            ))),
            Some(Some(other)) => Err(ApiError::new(
                ErrorCode::UnknownType,
                "Unknown message type",
                format!("unknown type '{other}'; expected subscribe, unsubscribe, control or ping"),
            )),
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

    fn cmd(text: &str) -> Result<Command, ApiError> {
        parse(text, 100).command
    }

    #[test]
    fn envelope_errors_keep_the_id() {
        let e = parse(r#"{"type":"dance","id":"d1"}"#, 10);
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
            parse(r#"{"type":"ping","id":7}"#, 1).id.as_deref(),
            Some("7")
        );
    }
}
