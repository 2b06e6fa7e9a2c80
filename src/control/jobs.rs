//! The control commands' Redis jobs: queueing one (`control_submit`, for both doors) and
//! reading a command's record (`GET /api/commands/{id}`).

use super::{submit_error, ControlRequest, Submitted};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::job::{as_string, as_u64, hash_fields, is_connection_error, Job, JobError, Redis};
use std::net::IpAddr;

/// Queue `command` for `client_id`. Built only by [`Submit::new`], which stamps who sends it
/// and from where — never what the message claims.
pub struct Submit {
    command: ControlRequest,
    client_id: String,
    /// The sender for the rate limit (`None`: anonymous).
    user: Option<String>,
    source: IpAddr,
}

impl Submit {
    pub fn new(
        mut command: ControlRequest,
        principal: &Principal,
        source: IpAddr,
        client_id: String,
    ) -> Submit {
        // The audit names the token's user and the client's address.
        command.operator = Some(principal.name().to_string());
        command.source = Some(source.to_string());
        Submit {
            command,
            client_id,
            user: principal.user.clone(),
            source,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        self.command.request_id.as_deref()
    }

    /// The command as it will be queued (stamped).
    pub fn command(&self) -> &ControlRequest {
        &self.command
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Job for Submit {
    /// The command as queued, or why not: the rate limit, or the library's refusal with its
    /// stable code.
    type Output = Result<Submitted, ApiError>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Self::Output, JobError> {
        let now = crate::time::now_millis();
        let desk = &mut *redis.desk;
        if let Err(e) = desk
            .control_rate()
            .take(self.user.as_deref(), self.source, now)
        {
            return Ok(Err(e));
        }
        let args =
            self.command
                .submit_json(&self.client_id, desk.instance(), desk.control_timeout_ms());
        let reply = redis::cmd("FCALL")
            .arg("control_submit")
            .arg(1)
            .arg(self.command.queue_key())
            .arg(args)
            .query::<redis::Value>(redis.con);
        let reply = match reply {
            Ok(v) => v,
            Err(e) if is_connection_error(&e) => return Err(e.into()),
            Err(e) => {
                let msg = e.detail().map_or_else(|| e.to_string(), str::to_string);
                let code = e.code().unwrap_or("");
                return Ok(Err(submit_error(&format!("{code} {msg}"))));
            }
        };
        let redis::Value::Array(items) = reply else {
            return Err(JobError::Unexpected("control_submit"));
        };
        let submitted = match (
            items.first().and_then(as_string),
            items.get(1).and_then(as_string),
            items.get(2).and_then(as_u64),
        ) {
            (Some(command_id), Some(status), Some(dup)) => Submitted {
                command_id,
                status,
                duplicate: dup == 1,
            },
            _ => return Err(JobError::Unexpected("control_submit")),
        };
        if !submitted.duplicate {
            redis.desk.queued(
                &submitted.command_id,
                &self.client_id,
                self.command.request_id.as_deref(),
                self.command.operator.as_deref(),
            );
        }
        Ok(Ok(submitted))
    }
}

/// A command's record (`HGETALL cmd:{id}`; empty: no such command).
pub struct Record {
    pub command_id: String,
}

impl Job for Record {
    type Output = Vec<(Vec<u8>, Vec<u8>)>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Self::Output, JobError> {
        let v: redis::Value = redis::cmd("HGETALL")
            .arg(format!("cmd:{}", self.command_id))
            .query(redis.con)?;
        Ok(hash_fields(v))
    }
}
