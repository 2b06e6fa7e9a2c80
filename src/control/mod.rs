//! Control commands, pure: what an operator asks (`set_value` on an `A` point, `control` 0/1
//! on a `C` point), how it is handed to the library's `control_submit`, and the final states
//! the device side reports through `control_report` (lua/README.md) as the gateway reads them
//! from `control:results`.

pub mod jobs;
pub mod rate;

use crate::error::{ApiError, ErrorCode, Upstream};
use crate::json;
use crate::model::{hash_field, ChannelId, DataType, PointId, Value};
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandType {
    /// A set-point: targets the channel's `A` points, any finite value.
    SetValue,
    /// A command: targets the channel's `C` points, 0 or 1.
    Control,
}

impl CommandType {
    pub fn parse(s: &str) -> Option<CommandType> {
        match s {
            "set_value" => Some(CommandType::SetValue),
            "control" => Some(CommandType::Control),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandType::SetValue => "set_value",
            CommandType::Control => "control",
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            CommandType::SetValue => DataType::Adjustment,
            CommandType::Control => DataType::Control,
        }
    }
}

/// A validated command (the seed's `control` message, or `POST /api/control`).
#[derive(Clone, Debug, PartialEq)]
pub struct ControlRequest {
    pub channel: ChannelId,
    pub point: PointId,
    pub command_type: CommandType,
    pub value: f64,
    pub operator: Option<String>,
    pub reason: Option<String>,
    /// The client's id for the request: a retry with the same id is the same command.
    pub request_id: Option<String>,
    /// Where it came from (the client's address), for the audit log.
    pub source: Option<String>,
}

/// Longest `operator` / `reason` accepted.
pub const MAX_TEXT: usize = 256;
/// Longest request id that de-duplicates (longer ones are refused).
pub const MAX_REQUEST_ID: usize = 128;

fn text(data: &BorrowedValue, name: &str) -> Result<Option<String>, ApiError> {
    match data.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| ApiError::invalid_parameter(name, "must be a string")),
    }
}

impl ControlRequest {
    /// `{channel_id, point_id, command_type, value, operator?, reason?}` — the WebSocket
    /// `control`'s `data` and the body of `POST /api/control` alike — checked field by field
    /// (each refusal names its field), then together ([`ControlRequest::validate`]).
    pub fn parse(data: Option<&BorrowedValue>) -> Result<ControlRequest, ApiError> {
        let invalid = ApiError::invalid_parameter;
        let data = data.filter(|d| d.is_object()).ok_or_else(|| {
            invalid(
                "data",
                "must be an object with channel_id, point_id, command_type, value",
            )
        })?;
        let channel = data
            .get("channel_id")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(ChannelId)
            .ok_or_else(|| invalid("channel_id", "must be an integer in 1..=4294967295"))?;
        let point = data
            .get("point_id")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid("point_id", "must be an integer in 0..=4294967295"))?;
        let command_type = data
            .get("command_type")
            .and_then(|v| v.as_str())
            .and_then(CommandType::parse)
            .ok_or_else(|| invalid("command_type", "must be \"set_value\" or \"control\""))?;
        let value = data
            .get("value")
            .filter(|v| v.is_number())
            .and_then(|v| v.cast_f64())
            .ok_or_else(|| invalid("value", "must be a number"))?;
        ControlRequest {
            channel,
            point,
            command_type,
            value,
            operator: text(data, "operator")?,
            reason: text(data, "reason")?,
            request_id: None,
            source: None,
        }
        .validate()
    }

    /// Checks what the fields say together: the value is finite, a `control` is 0 or 1, the
    /// texts are bounded.
    pub fn validate(self) -> Result<ControlRequest, ApiError> {
        if !self.value.is_finite() {
            return Err(ApiError::invalid_parameter(
                "value",
                "must be a finite number",
            ));
        }
        if self.command_type == CommandType::Control && self.value != 0.0 && self.value != 1.0 {
            return Err(ApiError::invalid_parameter(
                "value",
                "must be 0 or 1 for command_type control",
            ));
        }
        for (name, v) in [("operator", &self.operator), ("reason", &self.reason)] {
            if v.as_ref().is_some_and(|v| v.len() > MAX_TEXT) {
                return Err(ApiError::invalid_parameter(
                    name,
                    &format!("must be at most {MAX_TEXT} bytes"),
                ));
            }
        }
        if self
            .request_id
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > MAX_REQUEST_ID)
        {
            return Err(ApiError::invalid_parameter(
                "request_id",
                &format!("must be 1-{MAX_REQUEST_ID} bytes"),
            ));
        }
        Ok(self)
    }

    /// The `TODO` list it is queued on.
    pub fn queue_key(&self) -> String {
        format!(
            "comsrv:{}:{}:TODO",
            self.channel.0,
            self.command_type.data_type().as_str()
        )
    }

    /// The `control_submit` argument.
    pub fn submit_json(&self, client_id: &str, instance: &str, timeout_ms: u64) -> String {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"point_id\":");
        json::write_u64(&mut out, u64::from(self.point));
        out.extend_from_slice(b",\"command_type\":\"");
        out.extend_from_slice(self.command_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        let mut f = ryu::Buffer::new();
        out.extend_from_slice(f.format_finite(self.value).as_bytes());
        out.extend_from_slice(b",\"client_id\":");
        json::write_str(&mut out, client_id);
        out.extend_from_slice(b",\"instance\":");
        json::write_str(&mut out, instance);
        out.extend_from_slice(b",\"timeout_ms\":");
        json::write_u64(&mut out, timeout_ms);
        for (name, v) in [
            ("request_id", &self.request_id),
            ("operator", &self.operator),
            ("reason", &self.reason),
            ("source", &self.source),
        ] {
            if let Some(v) = v {
                out.push(b',');
                json::write_key(&mut out, name);
                json::write_str(&mut out, v);
            }
        }
        out.push(b'}');
        String::from_utf8(out).expect("written from UTF-8 pieces")
    }
}

/// `control_submit`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub command_id: String,
    /// `queued`, or — for a retried request — the command's current status.
    pub status: String,
    pub duplicate: bool,
}

/// The library's error reply for a refused command → the stable code it names.
pub fn submit_error(message: &str) -> ApiError {
    let msg = message.trim_start_matches("ERR ").to_string();
    let code = if msg.starts_with("INVALID_PARAMETER") {
        ErrorCode::InvalidParameter
    } else if msg.starts_with("CHANNEL_NOT_FOUND") {
        ErrorCode::ChannelNotFound
    } else {
        ErrorCode::ControlFailed
    };
    code.context(msg)
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalStatus {
    Executed,
    Failed,
    Timeout,
}

impl FinalStatus {
    pub fn parse(s: &str) -> Option<FinalStatus> {
        match s {
            "executed" => Some(FinalStatus::Executed),
            "failed" => Some(FinalStatus::Failed),
            "timeout" => Some(FinalStatus::Timeout),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Executed => "executed",
            FinalStatus::Failed => "failed",
            FinalStatus::Timeout => "timeout",
        }
    }
}

/// A final state as `control:results` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlResult {
    pub command_id: String,
    /// The gateway instance that queued it (only that one answers its sender).
    pub instance: String,
    pub client_id: String,
    pub request_id: Option<String>,
    pub status: FinalStatus,
    pub success: bool,
    pub actual_value: Option<Value>,
    pub message: Option<String>,
    /// Who sent it (the user name, `anonymous`, `rule:{id}`): its final ack goes only to a
    /// connection acting for them.
    pub operator: Option<String>,
    /// Its `control:results` entry: an ack taken from Redis but not delivered is given back
    /// by it (`None` for the ones a Redis reset lost, made by this gateway).
    pub entry: Option<crate::alarm::EventId>,
}

/// Why a `control:results` entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResult(pub &'static str);

impl fmt::Display for BadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable control result: {}", self.0)
    }
}

impl ControlResult {
    pub fn from_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<ControlResult, BadResult> {
        let get = |name: &'static str| hash_field(fields, name).ok_or(BadResult(name));
        let opt = |name| get(name).ok().filter(|s| !s.is_empty());
        Ok(ControlResult {
            command_id: get("command_id")?.to_string(),
            instance: get("instance")?.to_string(),
            client_id: get("client_id")?.to_string(),
            request_id: opt("request_id").map(str::to_string),
            status: FinalStatus::parse(get("status")?).ok_or(BadResult("status"))?,
            success: get("success")? == "1",
            actual_value: opt("actual_value").map(Value::from_redis),
            message: opt("message").map(str::to_string),
            operator: opt("operator").map(str::to_string),
            entry: None,
        })
    }
}

/// A command that could not be queued, for either door: whether it may have been queued
/// after all decides what the client should do.
pub fn not_queued(why: &Upstream) -> ApiError {
    let then = match why {
        Upstream::TimedOut => {
            "it may still be queued: send it again with the same request id to learn its state \
             (a repeated id is never queued twice)"
        }
        _ => "nothing was queued",
    };
    ErrorCode::ServiceUnavailable
        .context(format!("the command could not be queued ({why}); {then}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> ControlRequest {
        ControlRequest {
            channel: ChannelId(2001),
            point: 20,
            command_type: CommandType::SetValue,
            value: 50.0,
            operator: Some("user_001".into()),
            source: None,
            reason: Some("Production adjustment".into()),
            request_id: Some("ctrl_001".into()),
        }
    }

    #[test]
    fn the_seed_command_is_handed_to_the_library() {
        let r = seed().validate().unwrap();
        assert_eq!(r.queue_key(), "comsrv:2001:A:TODO");
        assert_eq!(
            r.submit_json("ui_1", "gw1", 10_000),
            r#"{"point_id":20,"command_type":"set_value","value":50.0,"client_id":"ui_1","instance":"gw1","timeout_ms":10000,"request_id":"ctrl_001","operator":"user_001","reason":"Production adjustment"}"#
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let bad = |f: fn(&mut ControlRequest)| {
            let mut r = seed();
            f(&mut r);
            r.validate().unwrap_err().details
        };
        assert!(bad(|r| r.value = f64::NAN).contains("value"));
        assert!(bad(|r| {
            r.command_type = CommandType::Control;
            r.value = 2.0
        })
        .contains("0 or 1"));
        assert!(bad(|r| r.reason = Some("x".repeat(300))).contains("reason"));
        assert!(bad(|r| r.request_id = Some(String::new())).contains("request_id"));
        assert_eq!(
            submit_error("ERR CHANNEL_NOT_FOUND channel 9 not found").code,
            ErrorCode::ChannelNotFound
        );
        assert_eq!(
            submit_error("ERR WRONGTYPE x").code,
            ErrorCode::ControlFailed
        );
    }

    #[test]
    fn reads_a_result_entry() {
        let f: Vec<(Vec<u8>, Vec<u8>)> = [
            ("command_id", "CMD_7"),
            ("instance", "gw1"),
            ("client_id", "ui_1"),
            ("request_id", ""),
            ("status", "executed"),
            ("success", "1"),
            ("actual_value", "50"),
            ("message", ""),
            ("time", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        let r = ControlResult::from_fields(&f).unwrap();
        assert_eq!(r.status, FinalStatus::Executed);
        assert_eq!(r.request_id, None);
        assert_eq!(r.actual_value.unwrap().json(), "50");
        assert_eq!(
            ControlResult::from_fields(&f[..2]).unwrap_err(),
            BadResult("client_id")
        );
    }
}
