//! Why a connected period of the feed ended.

use super::library;

/// Redis does not know FUNCTION/FCALL: the error, with the version it reports.
pub(super) fn no_functions(con: &mut redis::Connection) -> FeedError {
    FeedError::NoFunctions {
        version: library::server_version(con),
    }
}

/// Why a connected period of the feed ended. Worded for `/health/detailed`; the Redis error
/// is kept as the source.
#[derive(Debug)]
pub enum FeedError {
    Redis(redis::RedisError),
    /// Connecting, or the first command on a new connection, failed: what answered may not be
    /// a Redis server at all.
    Handshake(redis::RedisError),
    /// Redis has no Functions (older than 7, or FUNCTION disabled); its version if it said.
    NoFunctions {
        version: Option<String>,
    },
    /// Redis answered something the feed cannot read (names the command).
    UnexpectedReply(&'static str),
    /// The library is missing and the gateway may not load it.
    LibraryMissing,
    /// No sentinel named a master (`what`: the master and sentinels; `why`: each one's answer).
    NoMaster {
        what: String,
        why: String,
    },
    /// The server the sentinels named is not (or no longer) a master.
    NotMaster {
        addr: String,
        role: String,
    },
    /// The sentinels name another master than the one connected to.
    MasterMoved {
        from: String,
        to: String,
    },
}

/// The feed's readers (streams, the alarm log) serve jobs too.
impl From<FeedError> for crate::job::JobError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Redis(e) | FeedError::Handshake(e) => crate::job::JobError::Redis(e),
            FeedError::UnexpectedReply(what) => crate::job::JobError::Unexpected(what),
            FeedError::NoFunctions { .. } | FeedError::LibraryMissing => {
                crate::job::JobError::Unexpected("the Function library")
            }
            FeedError::NoMaster { .. }
            | FeedError::NotMaster { .. }
            | FeedError::MasterMoved { .. } => crate::job::JobError::Unexpected("the Redis master"),
        }
    }
}

impl From<redis::RedisError> for FeedError {
    fn from(e: redis::RedisError) -> Self {
        FeedError::Redis(e)
    }
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Redis(e) | FeedError::Handshake(e) => e.fmt(f),
            FeedError::NoFunctions { version } => write!(
                f,
                "Redis has no Functions (version {})",
                version.as_deref().unwrap_or("unknown")
            ),
            FeedError::UnexpectedReply(what) => write!(f, "unexpected reply from {what}"),
            FeedError::LibraryMissing => f.write_str(
                "netsrv_collect_data is not loaded in Redis and --no-load-functions is set",
            ),
            FeedError::NoMaster { what, why } => write!(f, "no sentinel names the {what} ({why})"),
            FeedError::NotMaster { addr, role } => write!(
                f,
                "the sentinels name {addr} as the master, but it is a {role}: waiting for the failover to finish"
            ),
            FeedError::MasterMoved { from, to } => {
                write!(f, "the sentinels moved the master from {from} to {to}")
            }
        }
    }
}

impl std::error::Error for FeedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FeedError::Redis(e) | FeedError::Handshake(e) => Some(e),
            _ => None,
        }
    }
}
