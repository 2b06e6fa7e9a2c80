//! The definitions' Redis jobs: read one or all (`HGETALL`, with a destination's counters),
//! save and delete through the library's functions (which validate), and a page of a log
//! stream (`rule:firings`, `audit:control`).

use super::{Kind, Record};
use crate::alarm::{EventId, StreamEntry};
use crate::feed::stream;
use crate::job::{hash_fields, Job, JobError, Redis};

/// One definition (`id`) or every member of the kind's id set, sorted by id; empty ones
/// (deleted meanwhile) are left out.
pub struct Read {
    pub kind: Kind,
    pub id: Option<String>,
}

impl Job for Read {
    type Output = Vec<Record>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Vec<Record>, JobError> {
        let (kind, con) = (self.kind, &mut *redis.con);
        let mut ids: Vec<String> = match self.id {
            Some(id) => vec![id],
            None => redis::cmd("SMEMBERS").arg(kind.ids_key()).query(con)?,
        };
        ids.sort();
        let stats = kind.has_stats();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(format!("{}{id}", kind.prefix()));
            if stats {
                pipe.cmd("HGETALL")
                    .arg(format!("{}{id}:stats", kind.prefix()));
            }
        }
        let replies: Vec<redis::Value> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query(con)?
        };
        let per = if stats { 2 } else { 1 };
        Ok(ids
            .into_iter()
            .zip(replies.chunks(per))
            .map(|(id, r)| {
                let mut fields = hash_fields(r[0].clone());
                if let Some(s) = r.get(1) {
                    // A destination's counters, as `stats_*` fields.
                    fields.extend(hash_fields(s.clone()).into_iter().map(|(k, v)| {
                        let mut name = b"stats_".to_vec();
                        name.extend_from_slice(&k);
                        (name, v)
                    }));
                }
                (id, fields)
            })
            .filter(|(_, f)| !f.is_empty())
            .collect())
    }
}

/// Create or replace `id` with `body` (a JSON object) through the kind's save function.
pub struct Save {
    pub kind: Kind,
    pub id: String,
    pub body: String,
}

impl Job for Save {
    /// What the function answered as text (a model's computed value); `None`: nil.
    type Output = Option<String>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Option<String>, JobError> {
        let reply: redis::Value = redis::cmd("FCALL")
            .arg(self.kind.save_function())
            .arg(1)
            .arg(format!("{}{}", self.kind.prefix(), self.id))
            .arg(&self.body)
            .query(redis.con)?;
        Ok(match reply {
            redis::Value::Nil => None,
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => Some(String::new()),
        })
    }
}

/// Delete `id` through the kind's delete function.
pub struct Delete {
    pub kind: Kind,
    pub id: String,
}

impl Job for Delete {
    /// Whether there was one to delete.
    type Output = bool;

    fn run(self, redis: &mut Redis<'_>) -> Result<bool, JobError> {
        let reply: redis::Value = redis::cmd("FCALL")
            .arg(self.kind.delete_function())
            .arg(1)
            .arg(format!("{}{}", self.kind.prefix(), self.id))
            .query(redis.con)?;
        Ok(matches!(reply, redis::Value::Int(1)))
    }
}

/// At most `count` entries of a log stream after `after`, oldest first.
pub struct Page {
    pub stream: &'static str,
    pub after: EventId,
    pub count: usize,
}

impl Job for Page {
    type Output = Vec<StreamEntry>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Vec<StreamEntry>, JobError> {
        Ok(stream::after(
            redis.con,
            self.stream,
            self.after,
            self.count,
        )?)
    }
}
