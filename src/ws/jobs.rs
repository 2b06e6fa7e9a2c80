//! Client ids across gateways (the library's `netsrv_client_*`, lua/README.md — *Client ids*):
//! a connection that asks for a client id claims it in Redis too, so a connection on another
//! gateway holding it is told to close (4001 `replaced`) and the final acks that waited for
//! the id come with the claim; claims expire unless their gateway renews them, and are
//! released when the connection ends.

use crate::control::ControlResult;
use crate::job::{as_string, Job, JobError, Redis};

/// A claim lives this long unless renewed (its gateway renews every `RENEW_EVERY_MS`).
pub const CLAIM_TTL_MS: u64 = 180_000;
pub const RENEW_EVERY_MS: u64 = 60_000;

fn key(client_id: &str) -> String {
    format!("gw:client:{client_id}")
}

/// The claim of `client_id` by the connection `token` of `instance`, acting as `user`.
pub struct Claim {
    pub client_id: String,
    pub instance: String,
    pub token: String,
    pub user: String,
}

/// What a claim found.
#[derive(Debug)]
pub enum Claimed {
    /// Taken (from nobody, or from the same user elsewhere), with the acks that waited.
    Taken(Vec<ControlResult>),
    /// Another user's connection holds it (named).
    Held(String),
}

impl Job for Claim {
    type Output = Claimed;

    fn run(self, redis: &mut Redis<'_>) -> Result<Claimed, JobError> {
        let reply: redis::Value = redis::cmd("FCALL")
            .arg("netsrv_client_claim")
            .arg(1)
            .arg(key(&self.client_id))
            .arg(&self.instance)
            .arg(&self.token)
            .arg(&self.user)
            .arg(CLAIM_TTL_MS)
            .query(redis.con)?;
        let redis::Value::Array(mut parts) = reply else {
            return Err(JobError::Unexpected("netsrv_client_claim"));
        };
        let rest = parts.split_off(1.min(parts.len()));
        match parts.first().and_then(as_string).as_deref() {
            Some("held") => Ok(Claimed::Held(
                rest.first().and_then(as_string).unwrap_or_default(),
            )),
            Some("ok") => Ok(Claimed::Taken(
                rest.into_iter()
                    .flat_map(crate::feed::control::entries_of)
                    .collect(),
            )),
            _ => Err(JobError::Unexpected("netsrv_client_claim")),
        }
    }
}

/// The connection `token` let go of `client_id` (nothing when another holds it by now).
pub struct Release {
    pub client_id: String,
    pub token: String,
}

impl Job for Release {
    type Output = ();

    fn run(self, redis: &mut Redis<'_>) -> Result<(), JobError> {
        redis::cmd("FCALL")
            .arg("netsrv_client_release")
            .arg(1)
            .arg(key(&self.client_id))
            .arg(&self.token)
            .query::<i64>(redis.con)?;
        Ok(())
    }
}

/// Renews this gateway's claims (`client_id`, and `{instance} {token} {user}`: made again
/// when expired); the ids another connection holds by now (taken over while the message was
/// missed) are returned: their connections must close.
pub struct Renew {
    pub claims: Vec<(String, String)>,
}

/// Claims renewed per call (the library's bound).
pub const RENEW_BATCH: usize = 1000;

impl Job for Renew {
    type Output = Vec<String>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Vec<String>, JobError> {
        let mut lost = Vec::new();
        for batch in self.claims.chunks(RENEW_BATCH) {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg("netsrv_client_renew").arg(batch.len());
            for (id, _) in batch {
                cmd.arg(key(id));
            }
            cmd.arg(CLAIM_TTL_MS);
            for (_, claim) in batch {
                cmd.arg(claim);
            }
            let keys: Vec<String> = cmd.query(redis.con)?;
            lost.extend(
                keys.into_iter()
                    .filter_map(|k| k.strip_prefix("gw:client:").map(str::to_string)),
            );
        }
        Ok(lost)
    }
}

/// Acks taken for the connection `token` that it could not deliver (it was closing, or had
/// ended): back to the front of `ctl:acks:{client_id}`, and the gateway holding the id now
/// (another connection's claim) is told to take them.
pub struct ReturnAcks {
    pub client_id: String,
    pub token: String,
    pub acks: Vec<(crate::alarm::EventId, Option<String>)>,
}

impl Job for ReturnAcks {
    type Output = ();

    fn run(self, redis: &mut Redis<'_>) -> Result<(), JobError> {
        // Each call puts its acks in front: the last batch goes first, so the order holds.
        for batch in self.acks.chunks(RETURN_BATCH).rev() {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg("control_acks_return")
                .arg(2)
                .arg(format!("ctl:acks:{}", self.client_id))
                .arg(key(&self.client_id))
                .arg(&self.token);
            for (entry, operator) in batch {
                cmd.arg(entry.to_string())
                    .arg(operator.as_deref().unwrap_or(""));
            }
            cmd.query::<i64>(redis.con)?;
        }
        Ok(())
    }
}

/// Acks given back per call (the library's bound: a list keeps at most 100).
const RETURN_BATCH: usize = 100;
