//! A Sentinel-watched site on the loopback: a `redis-server` master, a replica of it and
//! three `redis-sentinel`s (quorum 2, `down-after-milliseconds` 1000), each on a free port,
//! killed with the test.
#![allow(dead_code)]

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voltage_gateway::demo::RedisProcess;

pub const MASTER_NAME: &str = "site";

pub struct SentinelProcess {
    guard: Guard,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl SentinelProcess {
    fn start(master_port: u16) -> SentinelProcess {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "voltage-sentinel-{}-{port}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let conf = dir.join("sentinel.conf");
            // Sentinel rewrites its file: it must be its own and writable.
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new("redis-sentinel");
            // SAFETY: prctl only touches the child's own state.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel must be installed (./setup.sh test)");
            let mut guard = Guard(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if sentinel_con(port).is_some() {
                    return SentinelProcess { guard, port, dir };
                }
                if let Ok(Some(_)) = guard.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = guard.0.kill();
        }
        panic!("redis-sentinel did not start");
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.guard.0.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sentinel_con(port: u16) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut con = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    redis::cmd("PING").query::<String>(&mut con).ok()?;
    Some(con)
}

pub struct SentinelSite {
    /// Whichever was started as the master, and its replica (roles change with a failover).
    pub servers: Vec<RedisProcess>,
    pub sentinels: Vec<SentinelProcess>,
}

impl SentinelSite {
    /// Master + replica (in sync) + three sentinels that see both. The replica takes writes
    /// of its own (`replica-read-only no`), so a test can make it lag behind the master.
    pub fn start() -> SentinelSite {
        let master = redis();
        let mp = master.port().to_string();
        let replica = RedisProcess::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &mp,
            "--replica-read-only",
            "no",
        ])
        .unwrap();
        let sentinels: Vec<_> = (0..3)
            .map(|_| SentinelProcess::start(master.port()))
            .collect();
        let site = SentinelSite {
            servers: vec![master, replica],
            sentinels,
        };
        wait_until("replica in sync", Duration::from_secs(10), || {
            info(&site.servers[1], "replication").contains("master_link_status:up")
        });
        // Every sentinel knows the replica and its peers before anything is killed.
        wait_until("sentinels see the site", Duration::from_secs(20), || {
            site.sentinels.iter().all(|s| {
                let Some(mut con) = sentinel_con(s.port) else {
                    return false;
                };
                let m: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
                    .arg("master")
                    .arg(MASTER_NAME)
                    .query(&mut con)
                    .unwrap_or_default();
                let n = |k: &str| m.get(k).map(String::as_str);
                n("num-slaves") == Some("1") && n("num-other-sentinels") == Some("2")
            })
        });
        site
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port the sentinels name as the master now.
    pub fn master_port(&self) -> Option<u16> {
        let mut con = sentinel_con(self.sentinels[0].port)?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut con)
            .ok()?;
        Some(port)
    }

    pub fn server_on(&mut self, port: u16) -> &mut RedisProcess {
        self.servers.iter_mut().find(|s| s.port() == port).unwrap()
    }
}

/// `INFO section` of a server.
pub fn info(r: &RedisProcess, section: &str) -> String {
    let mut con = redis_con(r);
    redis::cmd("INFO")
        .arg(section)
        .query(&mut con)
        .unwrap_or_default()
}
