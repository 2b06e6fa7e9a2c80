//! `ping` → `pong {server_time, latency}`: latency is the ms between the client's
//! `timestamp` and our receipt when it parses as ISO 8601, else 0.

use super::Ctx;
use crate::wire::ws::pong;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The client's `timestamp` (Unix ms), when readable.
    pub sent_ms: Option<i64>,
}

impl Ping {
    pub fn parse(timestamp: Option<&str>) -> Ping {
        Ping {
            sent_ms: timestamp.and_then(crate::time::parse_iso_millis),
        }
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let latency = self.sent_ms.map_or(0, |sent| (ctx.now - sent).max(0));
        let p = pong(ctx.request_id, latency, ctx.now);
        ctx.reply(p);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::super::{parse, Command};
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(
            parse(
                r#"{"type":"ping","id":"ping_001","timestamp":"2025-08-12T10:30:00Z"}"#,
                &LIMITS
            )
            .command
            .unwrap(),
            Command::Ping(Ping {
                sent_ms: Some(1_754_994_600_000)
            })
        );
        assert_eq!(Ping::parse(Some("{时间戳}")), Ping { sent_ms: None });
    }
}
