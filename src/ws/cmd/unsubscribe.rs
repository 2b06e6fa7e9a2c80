//! `unsubscribe {channels?}`: removes the listed channels, or every channel when the list is
//! missing or empty. Reply: `unsubscribe_ack {request_id, unsubscribed, failed, total}`.

use super::{channel_list, invalid, Ctx};
use crate::error::ApiError;
use crate::model::ChannelId;
use crate::wire::ws::{ack, Ack};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// `None` = every channel.
    pub channels: Option<Vec<ChannelId>>,
}

impl Unsubscribe {
    pub fn parse(
        data: Option<&BorrowedValue>,
        max_channels: usize,
    ) -> Result<Unsubscribe, ApiError> {
        let data = data.filter(|d| !d.is_null());
        match data {
            Some(d) if !d.is_object() => Err(invalid("data", "must be an object")),
            _ => channel_list(data.and_then(|d| d.get("channels")), max_channels, false)
                .map(|channels| Unsubscribe { channels }),
        }
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let (removed, failed, total) =
            ctx.fanout
                .unsubscribe(ctx.conn, self.channels.as_deref(), ctx.now);
        let a = ack(
            Ack::Unsubscribe,
            ctx.request_id,
            &removed,
            &failed,
            total,
            ctx.now,
        );
        ctx.reply(a);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::super::{parse, Command};
    use super::*;

    fn channels(text: &str) -> Option<Vec<ChannelId>> {
        match parse(text, &LIMITS).command.unwrap() {
            Command::Unsubscribe(u) => u.channels,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_and_all() {
        assert_eq!(
            channels(r#"{"type":"unsubscribe","id":"u","data":{"channels":[1001]}}"#),
            Some(vec![ChannelId(1001)])
        );
        assert_eq!(channels(r#"{"type":"unsubscribe"}"#), None);
        assert_eq!(
            channels(r#"{"type":"unsubscribe","data":{"channels":[]}}"#),
            None
        );
        let e = parse(r#"{"type":"unsubscribe","data":[1]}"#, &LIMITS).command;
        assert!(e.unwrap_err().details.contains("data"));
    }
}
