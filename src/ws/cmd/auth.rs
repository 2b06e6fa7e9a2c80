//! `auth {token}`: an open WebSocket renews its access token before it expires (browsers
//! cannot set headers on a WebSocket, so the first token came as `?token=`). The token must
//! be valid and of the connection's own user; the reply is `auth_ack` with the new expiry.
//! A token that expires without renewal leaves the connection with the anonymous role
//! (`auth_expired`), or closes it (4401) when anonymous clients may do nothing.

use super::{invalid, Ctx};
use crate::error::{ApiError, ErrorCode};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub token: String,
}

impl Auth {
    pub fn parse(data: Option<&BorrowedValue>) -> Result<Auth, ApiError> {
        let token = data
            .and_then(|d| d.get("token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 4096)
            .ok_or_else(|| invalid("token", "is required: the access token (a string)"))?;
        Ok(Auth {
            token: token.to_string(),
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        let fresh = match ctx.auth.authenticate(Some(&self.token), ctx.now) {
            Ok(p) => p,
            Err(e) => return ctx.error(&e),
        };
        if ctx.principal.user != fresh.user {
            return ctx.error(&ErrorCode::Forbidden.context(format!(
                    "this connection belongs to {}; a token of {} cannot renew it (reconnect with ?token=)",
                    ctx.principal.name(),
                    fresh.name()
                )));
        }
        *ctx.principal = fresh;
        let json = crate::api::auth::principal_json(ctx.principal);
        let ack = crate::wire::ws::auth_ack(ctx.request_id, &json, ctx.now);
        ctx.reply(ack);
    }
}
