//! The configuration's Redis jobs: read the channels, one channel or its point table; save,
//! replace or delete them — each write one `MULTI` that also moves `cfg:version`, so every
//! gateway on this Redis reads the new catalog (this one before it answers).

use super::{points_key, Catalog, ChannelDef, PointDef, CHANNELS_KEY, VERSION_KEY};
use crate::job::{hash_fields, Job, JobError, Redis};
use crate::model::ChannelId;

/// Every configured channel.
pub struct Channels;

impl Job for Channels {
    type Output = Catalog;

    fn run(self, redis: &mut Redis<'_>) -> Result<Catalog, JobError> {
        let v: redis::Value = redis::cmd("HGETALL").arg(CHANNELS_KEY).query(redis.con)?;
        Ok(Catalog::from_fields(&hash_fields(v)))
    }
}

/// One channel's definition (`None`: not configured).
pub struct Channel(pub ChannelId);

impl Job for Channel {
    type Output = Option<ChannelDef>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Option<ChannelDef>, JobError> {
        let id = self.0 .0.to_string();
        let v: Option<String> = redis::cmd("HGET")
            .arg(CHANNELS_KEY)
            .arg(&id)
            .query(redis.con)?;
        Ok(v.and_then(|json| ChannelDef::from_stored(&id, &json)))
    }
}

/// One channel's point table (empty: none).
pub struct Points(pub ChannelId);

impl Job for Points {
    type Output = Vec<PointDef>;

    fn run(self, redis: &mut Redis<'_>) -> Result<Vec<PointDef>, JobError> {
        let v: redis::Value = redis::cmd("HGETALL")
            .arg(points_key(self.0))
            .query(redis.con)?;
        Ok(hash_fields(v)
            .iter()
            .filter_map(|(_, json)| PointDef::from_stored(std::str::from_utf8(json).ok()?))
            .collect())
    }
}

/// Create or replace a channel's definition.
pub struct SaveChannel(pub ChannelDef);

impl Job for SaveChannel {
    type Output = ();

    fn run(self, redis: &mut Redis<'_>) -> Result<(), JobError> {
        let def = &self.0;
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(CHANNELS_KEY)
            .arg(def.id.0.to_string())
            .arg(def.to_json())
            .cmd("INCR")
            .arg(VERSION_KEY)
            .query::<redis::Value>(redis.con)?;
        redis.catalog_changed();
        Ok(())
    }
}

/// Replace a channel's point table (an empty one removes it).
pub struct ReplacePoints {
    pub channel: ChannelId,
    pub points: Vec<PointDef>,
}

impl Job for ReplacePoints {
    type Output = ();

    fn run(self, redis: &mut Redis<'_>) -> Result<(), JobError> {
        let key = points_key(self.channel);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key);
        if !self.points.is_empty() {
            let hset = pipe.cmd("HSET").arg(&key);
            for p in &self.points {
                hset.arg(p.field()).arg(p.to_json());
            }
        }
        pipe.cmd("INCR").arg(VERSION_KEY);
        pipe.query::<redis::Value>(redis.con)?;
        redis.catalog_changed();
        Ok(())
    }
}

/// Remove a channel's definition and its point table.
pub struct DeleteChannel(pub ChannelId);

impl Job for DeleteChannel {
    /// Whether it was configured.
    type Output = bool;

    fn run(self, redis: &mut Redis<'_>) -> Result<bool, JobError> {
        let (removed, _, _): (i64, i64, i64) = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(CHANNELS_KEY)
            .arg(self.0 .0.to_string())
            .cmd("DEL")
            .arg(points_key(self.0))
            .cmd("INCR")
            .arg(VERSION_KEY)
            .query(redis.con)?;
        redis.catalog_changed();
        Ok(removed == 1)
    }
}
