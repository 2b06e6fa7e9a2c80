//! The feed's side of control commands (queueing one is a job: `control/jobs.rs`): reading
//! the final states in `control:results` from where this instance left off (its cursor is
//! kept in Redis), every instance's — a sender may be connected here now whichever gateway
//! queued its command — and the site-wide timeout sweep (`control_expire_all`: any live
//! gateway ends the commands of one that died). The library keeps each final ack for its
//! sender (`ctl:acks:{client_id}`); the gateway holding the sender's client id takes it
//! (`control_acks_take`, so exactly one connection gets it), and a sender connecting later
//! takes it with its claim.

use super::FeedError;
use crate::alarm::EventId;
use crate::control::ControlResult;
use crate::log;
use std::time::{Duration, Instant};

pub const RESULTS_KEY: &str = "control:results";
/// The instance name of the commands automation rules queue (lua: RULES_INSTANCE).
pub const RULES_INSTANCE: &str = "rules";
/// Results read per round trip.
const PAGE: usize = 1000;
/// How often the pending commands are checked for timeouts.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// A command this instance queued and has not seen end yet: what its final ack needs if
/// Redis loses it.
struct InFlight {
    client_id: String,
    request_id: Option<String>,
    operator: Option<String>,
    /// Past this (its deadline and a margin) the library's own timeout has answered it.
    forget_at: Instant,
}

/// Commands tracked at most; beyond, a reset answers only these (the rest keep their
/// records in Redis until it is reset).
const MAX_TRACKED: usize = 100_000;

/// This instance's reading of `control:results`.
pub struct ResultReader {
    instance: String,
    /// The last entry read; `None` until loaded from Redis.
    cursor: Option<EventId>,
    next_expire: Instant,
    /// This instance's queued commands without a final result yet, by command id.
    in_flight: std::collections::HashMap<String, InFlight>,
}

impl ResultReader {
    pub fn new(instance: String) -> ResultReader {
        ResultReader {
            instance,
            cursor: None,
            next_expire: Instant::now(),
            in_flight: std::collections::HashMap::new(),
        }
    }

    /// `command_id` was queued for `client_id` with `timeout_ms`: until its result is read, a
    /// Redis reset must still end it.
    pub fn track(
        &mut self,
        command_id: &str,
        client_id: &str,
        request_id: Option<&str>,
        operator: Option<&str>,
        timeout_ms: u64,
    ) {
        let now = Instant::now();
        if self.in_flight.len() >= MAX_TRACKED {
            self.in_flight.retain(|_, c| c.forget_at > now);
            if self.in_flight.len() >= MAX_TRACKED {
                return;
            }
        }
        self.in_flight.insert(
            command_id.to_string(),
            InFlight {
                client_id: client_id.to_string(),
                request_id: request_id.map(str::to_string),
                operator: operator.map(str::to_string),
                forget_at: now + Duration::from_millis(timeout_ms) + Duration::from_secs(60),
            },
        );
    }

    /// Redis was reset: the commands it held will never report. Each gets its one final
    /// state here, `failed` with the reason (the device may or may not have acted on it).
    pub fn lost_in_reset(&mut self) -> Vec<ControlResult> {
        self.in_flight
            .drain()
            .map(|(command_id, c)| ControlResult {
                command_id,
                instance: self.instance.clone(),
                client_id: c.client_id,
                request_id: c.request_id,
                status: crate::control::FinalStatus::Failed,
                success: false,
                actual_value: None,
                message: Some(
                    "Redis was reset before the device reported: the command's state is lost and it may or may not have been executed; check the device, then send it again if needed"
                        .to_string(),
                ),
                operator: c.operator,
                entry: None,
            })
            .collect()
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Redis was reset or replaced: start again from the stored cursor (or the stream's end).
    pub fn reset(&mut self) {
        self.cursor = None;
    }

    fn cursor_key(&self) -> String {
        format!("cmd:cursor:{}", self.instance)
    }

    /// Times out overdue commands (at most every `EXPIRE_EVERY`), then returns the results
    /// (of every instance) that arrived since the last call.
    pub fn poll(&mut self, con: &mut redis::Connection) -> Result<Vec<ControlResult>, FeedError> {
        if Instant::now() >= self.next_expire {
            self.next_expire = Instant::now() + EXPIRE_EVERY;
            let mut pipe = redis::pipe();
            if self.cursor.is_none() {
                // Commands queued before the library listed instances are swept too.
                pipe.cmd("SADD")
                    .arg("cmd:instances")
                    .arg(&self.instance)
                    .arg(RULES_INSTANCE)
                    .ignore();
            }
            // Every instance's overdue commands (the library times each out once).
            pipe.cmd("FCALL").arg("control_expire_all").arg(0).ignore();
            match pipe.query::<()>(con) {
                Ok(()) => {}
                Err(e) if super::is_connection_error(&e) => return Err(e.into()),
                // A library without control functions (managed elsewhere): no commands.
                Err(_) => {}
            }
        }
        let cursor = match self.cursor {
            Some(c) => c,
            None => {
                let c = self.load(con)?;
                self.cursor = Some(c);
                c
            }
        };
        let mut out = Vec::new();
        let mut after = cursor;
        loop {
            let entries = super::stream::after(con, RESULTS_KEY, after, PAGE)?;
            let n = entries.len();
            for (id, fields) in entries {
                after = id;
                match ControlResult::from_fields(&fields) {
                    Ok(mut r) => {
                        r.entry = Some(id);
                        if r.instance == self.instance {
                            self.in_flight.remove(&r.command_id);
                        }
                        out.push(r)
                    }
                    Err(e) => log::warn_limited(
                        "control-results-entry",
                        &format!("{RESULTS_KEY} entry {id}: {e}; skipped"),
                    ),
                }
            }
            if n < PAGE {
                break;
            }
        }
        if after != cursor {
            // Kept in Redis: a restart resumes here, so results that arrive while this
            // gateway is down still reach their senders' reconnected sessions.
            redis::cmd("SET")
                .arg(self.cursor_key())
                .arg(after.to_string())
                .query::<()>(con)?;
            self.cursor = Some(after);
        }
        Ok(out)
    }

    /// The stored cursor, else the stream's end (nothing before this instance's first start
    /// is its business), which is stored.
    fn load(&self, con: &mut redis::Connection) -> Result<EventId, FeedError> {
        let stored: Option<String> = redis::cmd("GET").arg(self.cursor_key()).query(con)?;
        if let Some(id) = stored.as_deref().and_then(EventId::parse) {
            return Ok(id);
        }
        let end = super::stream::end(con, RESULTS_KEY)?;
        // Kept at once: results that arrive before this instance reads any (or while it is
        // down after its first start) are read from here, not skipped.
        redis::cmd("SET")
            .arg(self.cursor_key())
            .arg(end.to_string())
            .query::<()>(con)?;
        Ok(end)
    }
}

/// Takes the acks waiting for each `(client_id, user)` (the senders connected here now):
/// exactly one gateway's connection gets each, however many gateways read the result.
pub fn take_acks(
    con: &mut redis::Connection,
    holders: &[(String, String)],
) -> Result<Vec<ControlResult>, FeedError> {
    if holders.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (client_id, user) in holders {
        pipe.cmd("FCALL")
            .arg("control_acks_take")
            .arg(1)
            .arg(format!("ctl:acks:{client_id}"))
            .arg(user);
    }
    let replies: Vec<redis::Value> = pipe.query(con)?;
    Ok(replies.into_iter().flat_map(entries_of).collect())
}

/// The results in a reply of `control_acks_take` (a list of `[entry id, [field, value…]]`).
pub fn entries_of(reply: redis::Value) -> Vec<ControlResult> {
    let redis::Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let redis::Value::Array(mut pair) = e else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = crate::job::hash_fields(pair.pop()?);
            let id = crate::job::as_string(&pair[0]).and_then(|s| EventId::parse(&s))?;
            let mut r = ControlResult::from_fields(&fields).ok()?;
            r.entry = Some(id);
            Some(r)
        })
        .collect()
}
