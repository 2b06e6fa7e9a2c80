//! `/api/auth/*`: login (`{username, password}` → an access token and a refresh token),
//! refresh (a refresh token → a new pair; the old one is used up), logout (revokes the
//! login's tokens) and me (who the request acts as). The password check itself runs on the
//! verifier thread; the handler's continuation issues or refuses.

use super::{Call, Step};
use crate::auth::{Principal, Tokens};
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::json;
use crate::wire::iso;
use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::time::Duration;

/// Longest password (or token) accepted: argon2 hashes whatever it gets, so an unbounded
/// one would be a CPU lever.
const MAX_SECRET: usize = 1024;

/// The body as a JSON object (small: the HTTP body limit applies first).
fn object(body: &[u8], max_depth: usize, shape: &str) -> Result<OwnedValue, ApiError> {
    let shape = format!("a JSON object {shape}");
    let v = crate::http::body::parse_body(body, max_depth, &shape)?;
    if !v.is_object() {
        return Err(ErrorCode::InvalidJson.context(format!("the body must be {shape}")));
    }
    Ok(v)
}

fn string_field(v: &OwnedValue, name: &str, max: usize) -> Result<String, ApiError> {
    let s = v
        .get(name)
        .and_then(|x| x.as_str())
        .ok_or_else(|| ApiError::invalid_parameter(name, "is required: a string"))?;
    if s.is_empty() || s.len() > max {
        return Err(ApiError::invalid_parameter(
            name,
            &format!("must be 1-{max} bytes"),
        ));
    }
    Ok(s.to_string())
}

/// `{username, password}`.
pub fn parse_login(body: &[u8], max_depth: usize) -> Result<(String, String), ApiError> {
    let v = object(body, max_depth, "{username, password}")?;
    let user = string_field(&v, "username", 64)?;
    if !crate::auth::valid_username(&user) {
        return Err(ApiError::invalid_parameter(
            "username",
            "must be 1-64 of A-Za-z0-9_.@-",
        ));
    }
    Ok((user, string_field(&v, "password", MAX_SECRET)?))
}

/// `{refresh_token}` (optional for logout, which may use the access token instead).
pub fn parse_refresh(
    body: &[u8],
    max_depth: usize,
    required: bool,
) -> Result<Option<String>, ApiError> {
    if body.is_empty() && !required {
        return Ok(None);
    }
    let v = object(body, max_depth, "{refresh_token}")?;
    match v.get("refresh_token") {
        None if !required => Ok(None),
        _ => string_field(&v, "refresh_token", MAX_SECRET).map(Some),
    }
}

fn tokens_json(t: &Tokens) -> Vec<u8> {
    let mut d = Vec::with_capacity(512);
    d.extend_from_slice(b"{\"access_token\":");
    json::write_str(&mut d, &t.access_token);
    d.extend_from_slice(b",\"refresh_token\":");
    json::write_str(&mut d, &t.refresh_token);
    d.extend_from_slice(b",\"token_type\":\"Bearer\",\"expires_in\":");
    json::write_u64(&mut d, t.expires_in);
    d.extend_from_slice(b",\"user\":{\"username\":");
    json::write_str(&mut d, &t.user);
    d.extend_from_slice(b",\"role\":");
    json::write_str(&mut d, t.role.as_str());
    d.extend_from_slice(b"}}");
    d
}

/// How long a login waits for the verifier (a queue of logins ahead of it included).
const LOGIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a session's Redis work may take.
const SESSION_DEADLINE: Duration = Duration::from_secs(3);

fn sessions_unavailable(e: crate::error::Upstream) -> ApiError {
    e.unavailable("logins are kept in Redis, which does not answer; retry")
}

/// `POST /api/auth/login`: the failed-login counters are read (Redis), the password is
/// checked on the verifier thread, then the login is started (Redis) or the failure counted.
pub fn login(c: &Call<'_>) -> Result<Step, ApiError> {
    let (user, password) = parse_login(&c.req.body, c.view.max_depth())?;
    let (auth, ip) = (c.view.auth, c.view.client_ip);
    let hash = auth.password_hash(&user).map(str::to_string);
    Ok(Step::redis(
        auth.check_login(ip, &user),
        SESSION_DEADLINE,
        move |seen, view, _| {
            view.auth.login_gate(&seen.map_err(sessions_unavailable)?)?;
            Ok(Step::verify(
                password,
                hash,
                LOGIN_DEADLINE,
                move |ok, view, now| {
                    let ok =
                        ok.map_err(|e| e.unavailable("the password could not be checked; retry"))?;
                    let started = match ok {
                        true => view
                            .auth
                            .start_login(&user, ip, now, view.gateway.random()?),
                        false => None,
                    };
                    let Some((job, pending)) = started else {
                        // Counted before the answer: a guesser cannot outrun the limit.
                        return Ok(Step::redis(
                            view.auth.login_failed(ip, &user),
                            SESSION_DEADLINE,
                            |_, _, _| {
                                Err(ErrorCode::Unauthorized.context("wrong user name or password"))
                            },
                        ));
                    };
                    Ok(Step::redis(
                        job,
                        SESSION_DEADLINE,
                        move |ended, view, now| {
                            let t = view.auth.logged_in(
                                pending,
                                &ended.map_err(sessions_unavailable)?,
                                now,
                            );
                            Ok(Response::success(&tokens_json(&t), Some("Logged in"), now).into())
                        },
                    ))
                },
            ))
        },
    ))
}

/// `POST /api/auth/refresh`: the token is used up in Redis (any gateway's), a new pair issued.
pub fn refresh(c: &Call<'_>) -> Result<Step, ApiError> {
    let token = parse_refresh(&c.req.body, c.view.max_depth(), true)?.unwrap_or_default();
    let (job, pending) = c
        .view
        .auth
        .refresh(&token, c.now, c.view.gateway.random()?)?;
    Ok(Step::redis(
        job,
        SESSION_DEADLINE,
        move |outcome, view, now| {
            let t = view
                .auth
                .refreshed(pending, outcome.map_err(sessions_unavailable)?, now)?;
            Ok(Response::success(&tokens_json(&t), Some("Refreshed"), now).into())
        },
    ))
}

/// `POST /api/auth/logout`: revokes the login of the refresh token in the body, or of the
/// access token the request carries, on every gateway.
pub fn logout(c: &Call<'_>) -> Result<Step, ApiError> {
    let view = c.view;
    let token = parse_refresh(&c.req.body, view.max_depth(), false)?;
    let void = || {
        ErrorCode::Unauthorized.context(
            "the refresh token names no live login (unknown, expired or already ended); nothing was revoked",
        )
    };
    let by_token = token.is_some();
    let Some(job) = view
        .auth
        .logout(token.as_deref(), view.principal.family.as_deref(), c.now)
    else {
        return Err(match by_token {
            true => void(),
            // Nothing names a login to end: unauthenticated, like any other act without one.
            false => ErrorCode::Unauthorized.context(
                "no login to end: send {refresh_token} or the access token as Authorization: Bearer",
            ),
        });
    };
    let family = job.family.clone();
    Ok(Step::redis(
        job,
        SESSION_DEADLINE,
        move |ended, view, now| {
            let ended = ended.map_err(sessions_unavailable)?;
            // Ended in Redis (by an access token: always) — refused here at once.
            if ended || !by_token {
                view.auth.ended_here(&family, now);
            }
            if !ended && by_token {
                return Err(void());
            }
            Ok(Response::success(b"null", Some("Logged out"), now).into())
        },
    ))
}

/// `{username, role, anonymous, expires_at}` of a principal (also the WebSocket's
/// `auth_ack`).
pub fn principal_json(p: &Principal) -> Vec<u8> {
    let mut d = Vec::with_capacity(128);
    d.extend_from_slice(b"{\"username\":");
    match &p.user {
        Some(u) => json::write_str(&mut d, u),
        None => d.extend_from_slice(b"null"),
    }
    d.extend_from_slice(b",\"role\":");
    match p.role {
        Some(r) => json::write_str(&mut d, r.as_str()),
        None => d.extend_from_slice(b"null"),
    }
    d.extend_from_slice(b",\"anonymous\":");
    d.extend_from_slice(if p.is_anonymous() { b"true" } else { b"false" });
    d.extend_from_slice(b",\"expires_at\":");
    match p.expires_ms {
        Some(ms) => {
            d.push(b'"');
            d.extend_from_slice(iso(ms).as_bytes());
            d.push(b'"');
        }
        None => d.extend_from_slice(b"null"),
    }
    d.push(b'}');
    d
}

/// `GET /api/auth/me`.
pub fn me(c: &Call<'_>) -> Result<Step, ApiError> {
    Ok(Response::success(&principal_json(c.view.principal), None, c.now).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(
            parse_login(br#"{"username":"alice","password":"pw"}"#, 32).unwrap(),
            ("alice".into(), "pw".into())
        );
        let e = parse_login(br#"{"username":"alice"}"#, 32).unwrap_err();
        assert!(e.details.contains("password"), "{e}");
        let e = parse_login(br#"{"username":"a b","password":"x"}"#, 32).unwrap_err();
        assert!(e.details.contains("username"), "{e}");
        let long = format!(r#"{{"username":"a","password":"{}"}}"#, "x".repeat(2000));
        assert!(parse_login(long.as_bytes(), 32).is_err());
        assert_eq!(
            parse_login(b"[]", 32).unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(parse_refresh(b"", 32, false).unwrap(), None);
        assert!(parse_refresh(b"", 32, true).is_err());
        assert_eq!(
            parse_refresh(br#"{"refresh_token":"rt_x"}"#, 32, true)
                .unwrap()
                .as_deref(),
            Some("rt_x")
        );
    }
}
