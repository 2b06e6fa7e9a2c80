//! The `lua/` Function library, embedded in the binary and kept loaded in Redis.

/// The library source, loaded with `FUNCTION LOAD REPLACE`.
pub const SOURCE: &str = include_str!("../../lua/voltage.lua");

/// Must equal `LIBRARY_VERSION` in `lua/voltage.lua` (a unit test checks it).
pub const VERSION: i64 = 30;

/// What `ensure` did.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    AlreadyCurrent,
    /// Loaded because Redis lacked the library or held this older version.
    Loaded {
        previous: Option<i64>,
    },
}

/// The first library version whose `netsrv_collect_data` takes `<wake>` and whose writes
/// publish on `netsrv:wake`.
pub const WAKE_SINCE: i64 = 3;

/// The library version loaded in Redis, if any.
pub fn version(con: &mut redis::Connection) -> Option<i64> {
    redis::cmd("FCALL_RO")
        .arg("voltage_version")
        .arg(0)
        .query(con)
        .ok()
}

/// Loads the library when Redis lacks it or holds an older version. A newer version (another
/// gateway was upgraded first) is left alone: replacing it would downgrade that gateway.
pub fn ensure(con: &mut redis::Connection) -> redis::RedisResult<LoadOutcome> {
    let current = version(con);
    if current.is_some_and(|v| v >= VERSION) {
        return Ok(LoadOutcome::AlreadyCurrent);
    }
    load(con)?;
    Ok(LoadOutcome::Loaded { previous: current })
}

/// Rebuilds `lib:hooks` from the indexes (after loading over an older library, which did not
/// keep it: without it, writes would not reach their alarm rules, models and rules).
pub fn rebuild_hooks(con: &mut redis::Connection) -> redis::RedisResult<i64> {
    redis::cmd("FCALL")
        .arg("voltage_rebuild_hooks")
        .arg(0)
        .query(con)
}

/// `FUNCTION LOAD REPLACE` of the embedded library, then `lib:hooks` rebuilt for it.
pub fn load(con: &mut redis::Connection) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(SOURCE)
        .query::<String>(con)?;
    rebuild_hooks(con).map(drop)
}

/// True when Redis answered that a function of ours is not there (flushed or never loaded).
pub fn is_missing_function(err: &redis::RedisError) -> bool {
    err.to_string().contains("Function not found")
}

/// True when Redis does not know the command itself (FUNCTION/FCALL before Redis 7, or
/// renamed away).
pub fn is_unknown_command(err: &redis::RedisError) -> bool {
    err.to_string().contains("unknown command")
}

/// `redis_version` from `INFO server`, when Redis tells.
pub fn server_version(con: &mut redis::Connection) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_lua() {
        let line = format!("local LIBRARY_VERSION = {VERSION}");
        assert!(
            SOURCE.lines().any(|l| l.trim() == line),
            "lua/voltage.lua: {line}"
        );
        assert!(SOURCE.starts_with("#!lua name=voltage"));
    }
}
