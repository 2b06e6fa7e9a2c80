//! Finding the Redis to talk to, and noticing when Sentinel moves it.
//!
//! With `redis+sentinel://` the feed asks the sentinels for the master's address before each
//! connect (the one that answered is asked first next time), checks with `ROLE` that the
//! server there is a master (a replica would refuse every write), and runs a watcher thread
//! that asks the sentinels every [`WATCH_EVERY`] and posts [`Event::Master`] when the address
//! changes: the feed then drops a connection to the old master (demoted, or cut off by a
//! partition) and connects to the new one at once instead of after its backoff. A connection
//! that drops because the master died is re-resolved the same way.

pub use super::inbox::MasterAddr;
use super::inbox::{Event, FeedHandle};
use super::FeedError;
use crate::redis_url::{host_port, RedisTarget, Sentinels};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the watcher asks the sentinels where the master is.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Longest a sentinel may take to answer the watcher (it never holds up the feed).
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(1000);

/// Where the feed connects: the configured URL, or the master the sentinels name now.
pub struct Locator {
    target: RedisTarget,
    timeout: Duration,
    /// The sentinel asked first (the last one that answered).
    preferred: usize,
}

/// What to connect to now.
pub struct Located {
    pub url: String,
    /// `host:port` (never the credentials) for what is logged and shown.
    pub addr: String,
    /// Found through Sentinel: the server must be checked to be the master.
    pub master: Option<MasterAddr>,
}

impl Locator {
    pub fn new(target: RedisTarget, timeout: Duration) -> Locator {
        Locator {
            target,
            timeout,
            preferred: 0,
        }
    }

    pub fn sentinels(&self) -> Option<&Sentinels> {
        match &self.target {
            RedisTarget::Sentinel(s) => Some(s),
            RedisTarget::Direct(_) => None,
        }
    }

    /// The address shown before anything was resolved.
    pub fn describe(&self) -> String {
        match &self.target {
            RedisTarget::Direct(url) => redis::Client::open(url.as_str()).map_or_else(
                |_| "the configured address".to_string(),
                |c| c.get_connection_info().addr().to_string(),
            ),
            RedisTarget::Sentinel(s) => s.describe(),
        }
    }

    pub fn locate(&mut self) -> Result<Located, FeedError> {
        let s = match &self.target {
            RedisTarget::Direct(url) => {
                return Ok(Located {
                    url: url.clone(),
                    addr: self.describe(),
                    master: None,
                })
            }
            RedisTarget::Sentinel(s) => s,
        };
        let (i, (host, port)) = ask_all(s, self.preferred, self.timeout)?;
        self.preferred = i;
        Ok(Located {
            url: s.master_url(&host, port),
            addr: host_port(&host, port),
            master: Some((host, port)),
        })
    }
}

/// Asks the sentinels in turn, from `first`, for the master; the first answer wins (with the
/// index of the sentinel that gave it).
fn ask_all(
    s: &Sentinels,
    first: usize,
    timeout: Duration,
) -> Result<(usize, MasterAddr), FeedError> {
    let n = s.hosts.len();
    let mut why = Vec::new();
    for k in 0..n {
        let i = (first + k) % n;
        let at = host_port(&s.hosts[i].0, s.hosts[i].1);
        match ask(s, i, timeout) {
            Ok(Some(addr)) => return Ok((i, addr)),
            Ok(None) => why.push(format!("{at} does not know it")),
            Err(e) => why.push(format!("{at}: {e}")),
        }
    }
    Err(FeedError::NoMaster {
        what: s.describe(),
        why: why.join("; "),
    })
}

/// `SENTINEL get-master-addr-by-name` on the `i`th sentinel (`None`: it knows no such master).
fn ask(s: &Sentinels, i: usize, timeout: Duration) -> redis::RedisResult<Option<MasterAddr>> {
    let client = redis::Client::open(s.sentinel_url(i).as_str())?;
    let con = &mut client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&s.master_name)
        .query(con)?;
    Ok(reply)
}

/// The server's role from `ROLE` (`master`, `slave`, `sentinel`).
pub fn role(con: &mut redis::Connection) -> redis::RedisResult<String> {
    let reply: redis::Value = redis::cmd("ROLE").query(con)?;
    let first = match reply {
        redis::Value::Array(v) => v.into_iter().next(),
        _ => None,
    };
    Ok(first
        .as_ref()
        .and_then(crate::job::as_string)
        .unwrap_or_default())
}

/// The watcher thread; stops (within 50 ms) when dropped.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    pub fn spawn(s: Sentinels, inbox: FeedHandle) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("redis-sentinel".into())
            .spawn(move || watch(&s, &inbox, &flag))?;
        Ok(Watch {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(s: &Sentinels, inbox: &FeedHandle, stop: &AtomicBool) {
    let mut preferred = 0;
    let mut last: Option<MasterAddr> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok((i, addr)) = ask_all(s, preferred, SENTINEL_TIMEOUT) {
            preferred = i;
            if last.as_ref() != Some(&addr) {
                last = Some(addr.clone());
                inbox.offer(Event::Master { addr });
            }
        }
        let mut slept = Duration::ZERO;
        while slept < WATCH_EVERY && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}
