//! `control {channel_id, point_id, command_type, value, operator?, reason?}`: parsed as
//! `POST /api/control` is ([`ControlRequest::parse`]), then checked against the connection
//! (its role, the site loaded, the channel known, at most `control.max_in_flight` commands
//! waiting at once) — a refused command is answered with the error and queues nothing. An
//! accepted one asks the feed to queue it ([`Submit`]) and answers `control_ack queued` (or
//! the error) when Redis has; the final `control_ack` follows when the device side reports
//! (or the timeout passes).

use super::Ctx;
use crate::control::jobs::Submit;
use crate::control::ControlRequest;
use crate::error::{ApiError, ErrorCode};
use crate::ws::action::{Action, Ask};
use simd_json::BorrowedValue;
use std::time::Duration;

/// How long a control command may wait for Redis to queue it.
const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Control(pub ControlRequest);

impl Control {
    pub fn parse(data: Option<&BorrowedValue>) -> Result<Control, ApiError> {
        ControlRequest::parse(data).map(Control)
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let mut req = self.0;
        if let Err(e) = ctx.principal.require(crate::auth::Role::Operator) {
            return ctx.error(&e);
        }
        if !ctx.fanout.is_loaded() {
            return ctx.error(
                &ErrorCode::ServiceUnavailable
                    .context("the site's data is not loaded from Redis yet; nothing was queued"),
            );
        }
        if !ctx.fanout.snapshot().channels.contains_key(&req.channel) {
            return ctx.error(&ApiError::channel_not_found(req.channel));
        }
        if *ctx.in_flight >= ctx.max_in_flight {
            return ctx.error(&ErrorCode::RateLimited.context(format!(
                    "at most {} control commands may wait for their queued ack at once; nothing was queued",
                    ctx.max_in_flight
                )));
        }
        req.request_id = ctx.request_id.map(str::to_string);
        let req = match req.validate() {
            Ok(req) => req,
            Err(e) => return ctx.error(&e),
        };
        let rid = req.request_id.clone();
        let job = Submit::new(
            req,
            ctx.principal,
            ctx.peer.source,
            ctx.peer.client_id.clone(),
        );
        *ctx.in_flight += 1;
        let ask = Ask::new(job, DEADLINE, move |queued, now| {
            let rid = rid.as_deref();
            match queued {
                Ok(Ok(s)) => {
                    crate::wire::ws::control_ack_queued(rid, &s.command_id, &s.status, now)
                }
                Ok(Err(e)) => crate::wire::ws::error(&e, rid, now),
                Err(why) => crate::wire::ws::error(&crate::control::not_queued(&why), rid, now),
            }
        });
        ctx.out.push(Action::Ask(ask));
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
        assert_eq!(r.channel, crate::model::ChannelId(2001));
        assert_eq!(r.point, 20);
        assert_eq!(r.command_type, crate::control::CommandType::SetValue);
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
