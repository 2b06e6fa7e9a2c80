//! `subscribe {channels, data_types?, interval?}`: additive — adds channels or replaces
//! their types; `interval` applies to the connection. Replies: `subscribe_ack`, then
//! `error CHANNEL_NOT_FOUND` naming unknown ids, then ONE snapshot of what was subscribed.

use super::{channel_list, invalid, Ctx};
use crate::error::{ApiError, ErrorCode};
use crate::fanout::Interval;
use crate::model::{ChannelId, DataType, TypeMask};
use crate::wire::ws::{ack, Ack};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub channels: Vec<ChannelId>,
    pub types: TypeMask,
    pub interval: Interval,
}

impl Subscribe {
    /// Parses `data`; anything invalid is `INVALID_PARAMETER` naming the field.
    pub fn parse(data: Option<&BorrowedValue>, max_channels: usize) -> Result<Subscribe, ApiError> {
        let data = data
            .filter(|d| d.is_object())
            .ok_or_else(|| invalid("data", "must be an object with channels"))?;
        let channels = channel_list(data.get("channels"), max_channels, true)?.unwrap_or_default();
        let types = match data.get("data_types") {
            None => TypeMask::ALL,
            Some(v) if v.is_null() => TypeMask::ALL,
            Some(v) => {
                let arr = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                    invalid(
                        "data_types",
                        "must be a non-empty array of \"T\", \"S\", \"C\", \"A\"",
                    )
                })?;
                arr.iter()
                    .map(|t| {
                        t.as_str().and_then(DataType::parse).ok_or_else(|| {
                            invalid("data_types", "must hold only \"T\", \"S\", \"C\", \"A\"")
                        })
                    })
                    .collect::<Result<TypeMask, ApiError>>()?
            }
        };
        let interval = match data.get("interval") {
            None => Interval::DEFAULT,
            Some(v) if v.is_null() => Interval::DEFAULT,
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .and_then(Interval::from_ms)
                .ok_or_else(|| {
                    invalid(
                        "interval",
                        &format!(
                            "must be an integer number of ms in {}..={}",
                            Interval::MIN_MS,
                            Interval::MAX_MS
                        ),
                    )
                })?,
        };
        Ok(Subscribe {
            channels,
            types,
            interval,
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let result =
            ctx.fanout
                .subscribe(ctx.conn, &self.channels, self.types, self.interval, ctx.now);
        let s = match result {
            Ok(s) => s,
            Err(e) => return ctx.error(&e),
        };
        let a = ack(
            Ack::Subscribe,
            ctx.request_id,
            &s.subscribed,
            &s.failed,
            s.total,
            ctx.now,
        );
        ctx.reply(a);
        if !s.failed.is_empty() {
            let ids: Vec<String> = s.failed.iter().map(|c| c.to_string()).collect();
            ctx.error(
                &ErrorCode::ChannelNotFound
                    .context(format!("Channel ID {} not found", ids.join(", "))),
            );
        }
        if let Some(snapshot) = s.snapshot.filter(|_| !s.subscribed.is_empty()) {
            ctx.out.push(super::Action::Frame(snapshot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::super::{parse, Command};
    use super::*;

    fn sub(text: &str) -> Result<Subscribe, ApiError> {
        match parse(text, &LIMITS).command? {
            Command::Subscribe(s) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seed_subscribe() {
        let m = parse(
            r#"{"type":"subscribe","id":"sub_001","timestamp":"{时间戳}","data":{"channels":[1001,1002],"data_types":["T","S"],"interval":1000}}"#,
            &LIMITS,
        );
        assert_eq!(m.id.as_deref(), Some("sub_001"));
        assert_eq!(
            m.command.unwrap(),
            Command::Subscribe(Subscribe {
                channels: vec![ChannelId(1001), ChannelId(1002)],
                types: [DataType::Telemetry, DataType::Signal]
                    .into_iter()
                    .collect(),
                interval: Interval::from_ms(1000).unwrap(),
            })
        );
    }

    #[test]
    fn defaults_and_ranges() {
        let s = sub(r#"{"type":"subscribe","data":{"channels":[5,5]}}"#).unwrap();
        assert_eq!(s.channels, vec![ChannelId(5)]);
        assert_eq!(s.types, TypeMask::ALL);
        assert_eq!(s.interval, Interval::DEFAULT);
        for (bad, field) in [
            (r#"{"type":"subscribe","data":{"channels":[]}}"#, "channels"),
            (
                r#"{"type":"subscribe","data":{"channels":"1001"}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[0]}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1.5]}}"#,
                "channels",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[4294967296]}}"#,
                "channels",
            ),
            (r#"{"type":"subscribe","data":{}}"#, "channels"),
            (r#"{"type":"subscribe"}"#, "data"),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":99}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":60001}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"interval":"1000"}}"#,
                "interval",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"data_types":["X"]}}"#,
                "data_types",
            ),
            (
                r#"{"type":"subscribe","data":{"channels":[1],"data_types":[]}}"#,
                "data_types",
            ),
        ] {
            let e = sub(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter, "{bad}");
            assert!(e.details.contains(field), "{bad}: {e}");
        }
        let many = format!(
            r#"{{"type":"subscribe","data":{{"channels":[{}]}}}}"#,
            (1..=101)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(sub(&many).unwrap_err().details.contains("at most 100"));
    }
}
