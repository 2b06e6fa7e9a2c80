//! `control {channel_id, point_id, command_type, value, operator?, reason?}`: validated here
//! (the channel exists; `set_value` targets `A`, `control` targets `C` with 0/1; the value is a
//! finite number) — a refused command is answered with the error and queues nothing. An
//! accepted one is handed to the shell ([`Action::Control`]), which queues it through the
//! feed and answers `control_ack queued`; the final `control_ack` follows when the device
//! side reports (or the timeout passes).

use super::{invalid, Ctx};
use crate::control::{CommandType, ControlRequest};
use crate::error::{ApiError, ErrorCode};
use crate::model::ChannelId;
use crate::ws::action::Action;
use simd_json::prelude::*;
use simd_json::BorrowedValue;

#[derive(Debug, Clone, PartialEq)]
pub struct Control(pub ControlRequest);

fn text(data: &BorrowedValue, name: &str) -> Result<Option<String>, ApiError> {
    match data.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| invalid(name, "must be a string")),
    }
}

impl Control {
    pub fn parse(data: Option<&BorrowedValue>) -> Result<Control, ApiError> {
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
        let req = ControlRequest {
            channel,
            point,
            command_type,
            value,
            operator: text(data, "operator")?,
            reason: text(data, "reason")?,
            request_id: None,
            source: None,
        };
        Ok(Control(req.validate()?))
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let mut req = self.0;
        if let Err(e) = ctx.principal.require(crate::auth::Role::Operator) {
            return ctx.error(&e);
        }
        // The audit names who the connection is, never what the message claims.
        req.operator = Some(ctx.principal.name().to_string());
        if !ctx.fanout.is_loaded() {
            return ctx.error(&ApiError::new(
                ErrorCode::ServiceUnavailable,
                "Data not loaded",
                "the site's data is not loaded from Redis yet; nothing was queued",
            ));
        }
        if !ctx.fanout.snapshot().channels.contains_key(&req.channel) {
            return ctx.error(&ApiError::channel_not_found(req.channel));
        }
        req.request_id = ctx.request_id.map(str::to_string);
        match req.validate() {
            Ok(req) => ctx.out.push(Action::Control(Box::new(req))),
            Err(e) => ctx.error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::super::{parse, Command};
    use super::*;

    const SEED: &str = r#"{"type":"control","id":"ctrl_001","timestamp":"2025-08-12T10:30:00Z","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50.0,"operator":"user_001","reason":"Production adjustment"}}"#;

    #[test]
    fn the_seed_example_parses() {
        let m = parse(SEED, &LIMITS);
        assert_eq!(m.id.as_deref(), Some("ctrl_001"));
        let Command::Control(Control(r)) = m.command.unwrap() else {
            panic!()
        };
        assert_eq!(r.channel, ChannelId(2001));
        assert_eq!(r.point, 20);
        assert_eq!(r.command_type, CommandType::SetValue);
        assert_eq!(r.value, 50.0);
        assert_eq!(r.operator.as_deref(), Some("user_001"));
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |data: &str| {
            let m = parse(
                &format!(r#"{{"type":"control","id":"c","data":{data}}}"#),
                &LIMITS,
            );
            m.command.unwrap_err().details
        };
        assert!(field("{}").contains("channel_id"));
        assert!(
            field(r#"{"channel_id":0,"point_id":1,"command_type":"control","value":1}"#)
                .contains("channel_id")
        );
        assert!(
            field(r#"{"channel_id":1,"point_id":-1,"command_type":"control","value":1}"#)
                .contains("point_id")
        );
        assert!(
            field(r#"{"channel_id":1,"point_id":1,"command_type":"open","value":1}"#)
                .contains("command_type")
        );
        assert!(
            field(r#"{"channel_id":1,"point_id":1,"command_type":"control","value":"1"}"#)
                .contains("value")
        );
        assert!(
            field(r#"{"channel_id":1,"point_id":1,"command_type":"control","value":2}"#)
                .contains("0 or 1")
        );
        assert!(field(
            r#"{"channel_id":1,"point_id":1,"command_type":"set_value","value":1,"reason":7}"#
        )
        .contains("reason"));
    }
}
