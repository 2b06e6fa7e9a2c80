//! What one collect round reads: `netsrv_collect_data` from the cursor, the dirty hashes read in one pipelined
//! round trip, applied to the store and published once the cursor reaches Redis's head (a
//! reset rebuilds the site from scratch and is published only when complete), then new alarm
//! events, command results and a changed catalog, each handed to its sink.

use super::{hash_fields, library, no_functions, Feed, FeedError};
use crate::job::{as_string, as_u64, is_connection_error};
use crate::log;
use crate::site::change::Change;
use crate::site::store::Store;
use crate::site::Snapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the feed checks `cfg:version` for configuration changes made elsewhere.
const CATALOG_CHECK: Duration = Duration::from_secs(1);

/// What one `netsrv_collect_data` call returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub epoch: String,
    pub head_seq: u64,
    pub next_cursor: u64,
    pub reset: bool,
    pub more: bool,
    /// Dirty members (`1001:T`) in seq order.
    pub members: Vec<String>,
}

/// Decodes the flat reply `{epoch, head, next, reset, more, member, score, …}`.
pub fn parse_collect_reply(v: &redis::Value) -> Option<Collected> {
    let redis::Value::Array(items) = v else {
        return None;
    };
    if items.len() < 5 || (items.len() - 5) % 2 != 0 {
        return None;
    }
    Some(Collected {
        epoch: as_string(&items[0])?,
        head_seq: as_u64(&items[1])?,
        next_cursor: as_u64(&items[2])?,
        reset: as_u64(&items[3])? != 0,
        more: as_u64(&items[4])? != 0,
        members: items[5..]
            .chunks(2)
            .map(|pair| as_string(&pair[0]))
            .collect::<Option<Vec<_>>>()?,
    })
}

/// `HGETALL comsrv:{member}` for every member in one pipelined round trip. If Redis refuses
/// one of them (a key of the wrong type), the members are read one by one and the unreadable
/// ones count as empty, so one bad key cannot stall the feed for the whole site.
fn read_hashes(
    con: &mut redis::Connection,
    members: &[String],
) -> Result<Vec<redis::Value>, FeedError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for m in members {
        pipe.cmd("HGETALL").arg(format!("comsrv:{m}"));
    }
    match pipe.query(con) {
        Ok(hashes) => Ok(hashes),
        Err(e) if is_connection_error(&e) => Err(e.into()),
        Err(_) => members
            .iter()
            .map(|m| {
                let key = format!("comsrv:{m}");
                match redis::cmd("HGETALL").arg(&key).query::<redis::Value>(con) {
                    Ok(v) => Ok(v),
                    Err(e) if is_connection_error(&e) => Err(e.into()),
                    Err(e) => {
                        log::warn(&format!("skipping unreadable hash {key}: {e}"));
                        Ok(redis::Value::Nil)
                    }
                }
            })
            .collect(),
    }
}

impl Feed {
    fn call_collect(&self, con: &mut redis::Connection) -> redis::RedisResult<redis::Value> {
        redis::cmd("FCALL")
            .arg("netsrv_collect_data")
            .arg(3)
            .arg("netsrv:seq")
            .arg("netsrv:dirty")
            .arg("netsrv:epoch")
            .arg(self.cursor)
            .arg(&self.epoch)
            .arg(self.config.collect_batch)
            .arg(if self.wake.active {
                &["1"][..]
            } else {
                &[][..]
            })
            .query(con)
    }

    /// Collects batches until the cursor reaches Redis's head, then publishes once.
    pub(super) fn collect_until_current(
        &mut self,
        con: &mut redis::Connection,
    ) -> Result<(), FeedError> {
        let mut changes = Vec::new();
        // Some while a reset is being read: the site is rebuilt from scratch (so channels
        // that vanished are dropped) and published only when complete.
        let mut fresh: Option<Store> = None;
        if self.force_resync {
            self.cursor = 0;
            fresh = Some(Store::default());
        }
        let result = self.collect_batches(con, &mut changes, &mut fresh);
        match (result.is_ok(), fresh) {
            (true, Some(new)) => {
                changes = self.store.diff(&new);
                self.store = new;
                self.force_resync = false;
            }
            // A resync cut short by an error starts over on the next attempt.
            (false, Some(_)) => self.force_resync = true,
            _ => {}
        }
        // Even after an error, what was applied to the store is published: otherwise those
        // changes would never reach clients (the retry sees no difference any more).
        let first_load = !self.published.snapshot.load().loaded;
        if !changes.is_empty() || (first_load && result.is_ok()) {
            let snap = Arc::new(Snapshot {
                seq: self.cursor,
                epoch: self.epoch.clone(),
                loaded: true,
                channels: self.store.channels.clone(),
            });
            self.published.snapshot.store(snap.clone());
            if let Some(f) = self.on_changes.as_mut() {
                f(&snap, &changes);
            }
        }
        result
    }

    fn collect_batches(
        &mut self,
        con: &mut redis::Connection,
        changes: &mut Vec<Change>,
        fresh: &mut Option<Store>,
    ) -> Result<(), FeedError> {
        loop {
            let reply = match self.call_collect(con) {
                Err(e) if library::is_missing_function(&e) && self.config.load_functions => {
                    log::warn("Function library missing in Redis (flushed?); reloading it");
                    library::load(con)?;
                    self.call_collect(con)?
                }
                Err(e) if library::is_missing_function(&e) => {
                    return Err(FeedError::LibraryMissing)
                }
                Err(e) if library::is_unknown_command(&e) => return Err(no_functions(con)),
                other => other?,
            };
            let c = parse_collect_reply(&reply)
                .ok_or(FeedError::UnexpectedReply("netsrv_collect_data"))?;
            if c.reset {
                log::warn(&format!(
                    "Redis was reset or replaced (epoch '{}' -> '{}'); resynchronising",
                    self.epoch, c.epoch
                ));
                *fresh = Some(Store::default());
                changes.clear();
                self.alarms.reset();
                self.desk.results.reset();
                self.revocations.reset();
                // Commands Redis lost with the reset end now, once each, with the reason.
                let lost = self.desk.results.lost_in_reset();
                if !lost.is_empty() {
                    log::warn(&format!(
                        "{} control commands in flight were lost with the reset; their senders are told they failed",
                        lost.len()
                    ));
                    crate::metrics::bump(&self.published.feed.control_failed, lost.len() as u64);
                    if let Some(f) = self.on_control.as_mut() {
                        f(lost);
                    }
                }
            }
            let hashes = read_hashes(con, &c.members)?;
            for (m, h) in c.members.iter().zip(hashes) {
                let fields = hash_fields(h);
                match fresh.as_mut() {
                    Some(f) => drop(f.apply(m, &fields)),
                    None => changes.extend(self.store.apply(m, &fields)),
                }
            }
            self.epoch = c.epoch;
            self.cursor = c.next_cursor;
            if !c.more {
                return Ok(());
            }
        }
    }

    /// Reads the configured channels again when `cfg:version` moved (checked about once a
    /// second: another gateway's change shows within that; this gateway's at once).
    pub(super) fn poll_catalog(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        if self
            .catalog_checked
            .is_some_and(|t| t.elapsed() < CATALOG_CHECK)
        {
            return Ok(());
        }
        self.catalog_checked = Some(Instant::now());
        let version: Option<i64> = redis::cmd("GET")
            .arg(crate::catalog::VERSION_KEY)
            .query(con)
            .unwrap_or(None);
        if self.catalog_version == Some(version) {
            return Ok(());
        }
        let fields = hash_fields(
            redis::cmd("HGETALL")
                .arg(crate::catalog::CHANNELS_KEY)
                .query::<redis::Value>(con)?,
        );
        self.catalog_version = Some(version);
        let catalog = Arc::new(crate::catalog::Catalog::from_fields(&fields));
        self.published.catalog.store(catalog.clone());
        if let Some(f) = self.on_catalog.as_mut() {
            f(&catalog);
        }
        Ok(())
    }

    /// Reads new alarm events and hands them on with the active set after them.
    pub(super) fn poll_alarms(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        if let Some(new) = self.alarms.poll(con)? {
            let f = &self.published.feed;
            for a in &new {
                let c = match a.event.status {
                    crate::alarm::AlarmStatus::Triggered => &f.alarm_triggers,
                    crate::alarm::AlarmStatus::Recovered => &f.alarm_recoveries,
                    crate::alarm::AlarmStatus::Acknowledged => &f.alarm_acks,
                };
                crate::metrics::bump(c, 1);
            }
            let active = self.alarms.active().clone();
            self.published.alarms.store(active.clone());
            if let Some(f) = self.on_alarms.as_mut() {
                f(&new, &active);
            }
        }
        Ok(())
    }

    /// Takes the acks waiting for those of `client_ids` held here now and hands them on.
    pub(super) fn take_waiting_acks<'a>(
        &mut self,
        con: &mut redis::Connection,
        client_ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), FeedError> {
        let mut holders: Vec<(String, String)> = Vec::new();
        if let Some(holder) = self.holder.as_ref() {
            for id in client_ids {
                if !crate::api::control::is_http_client_id(id)
                    && !holders.iter().any(|(c, _)| c == id)
                {
                    if let Some(user) = holder(id) {
                        holders.push((id.to_string(), user));
                    }
                }
            }
        }
        let delivered = super::control::take_acks(con, &holders)?;
        if !delivered.is_empty() {
            if let Some(f) = self.on_control.as_mut() {
                f(delivered);
            }
        }
        Ok(())
    }

    /// Reads the final states of commands, counts this instance's, and hands on the acks of
    /// the senders connected here now (taken from Redis: one connection gets each).
    pub(super) fn poll_results(&mut self, con: &mut redis::Connection) -> Result<(), FeedError> {
        let results = self.desk.results.poll(con)?;
        let mine = self.desk.results.instance().to_string();
        // Acks given back to Redis for a connection of this gateway since the last look.
        let recheck = std::mem::take(&mut self.desk.recheck_acks);
        self.take_waiting_acks(
            con,
            results
                .iter()
                .map(|r| r.client_id.as_str())
                .chain(recheck.iter().map(String::as_str)),
        )?;
        // Counted by the instance that queued them (every instance reads every result).
        for r in results.iter().filter(|r| r.instance == mine) {
            let f = &self.published.feed;
            let c = match r.status.as_str() {
                "executed" => &f.control_executed,
                "failed" => &f.control_failed,
                _ => &f.control_timeout,
            };
            crate::metrics::bump(c, 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    #[test]
    fn parses_collect_reply() {
        let bulk = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let reply = V::Array(vec![
            bulk("e1"),
            V::Int(7),
            V::Int(7),
            V::Int(0),
            V::Int(0),
            bulk("1001:T"),
            V::Int(6),
            bulk("1002:S"),
            V::Int(7),
        ]);
        let c = parse_collect_reply(&reply).unwrap();
        assert_eq!(c.epoch, "e1");
        assert_eq!(c.head_seq, 7);
        assert_eq!(c.members, vec!["1001:T", "1002:S"]);
        assert!(!c.reset && !c.more);
        assert!(parse_collect_reply(&V::Array(vec![bulk("e")])).is_none());
        assert!(parse_collect_reply(&V::Int(1)).is_none());
    }

    #[test]
    fn hash_fields_pairs() {
        let f = hash_fields(V::Array(vec![
            V::BulkString(b"1".to_vec()),
            V::BulkString(b"2.5".to_vec()),
        ]));
        assert_eq!(f, vec![(b"1".to_vec(), b"2.5".to_vec())]);
    }
}
