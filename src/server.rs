//! Starting and stopping the whole gateway: the feed thread and the shards.

use crate::config::{Config, ConfigError};
use crate::feed::{self, Feed, FeedHandle, Published};
use crate::log;
use crate::shard::inbox::{AlarmBatch, Inbox, ShardEvent};
use crate::shard::{self, listener, Driver, Shared};
use crate::shutdown::Shutdown;
use crate::site::tick::Tick;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running gateway. Dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    driver: Driver,
    shared: Arc<Shared>,
    shutdown: Arc<Shutdown>,
    shards: Vec<JoinHandle<()>>,
    feed_handle: FeedHandle,
    feed: Option<JoinHandle<()>>,
}

/// Why the gateway could not start; the underlying error is kept as the source.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    /// `--driver uring` on a kernel without io_uring (the message says what to do).
    Driver(crate::shard::UringUnavailable),
    Bind(std::io::Error),
    /// A thread could not be created (names which).
    Thread(&'static str, std::io::Error),
    /// A shard failed while starting its runtime or listener.
    Shard(crate::shard::ShardFailed),
    /// A shard thread ended before saying whether it started.
    ShardExited,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Driver(e) => e.fmt(f),
            StartError::Shard(e) => e.fmt(f),
            StartError::ShardExited => f.write_str("a shard exited during start-up"),
            StartError::Bind(e) => e.fmt(f),
            StartError::Thread(which, e) => write!(f, "cannot start the {which} thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Bind(e) | StartError::Thread(_, e) => Some(e),
            StartError::Driver(e) => Some(e),
            StartError::Shard(e) => Some(e),
            StartError::ShardExited => None,
        }
    }
}

impl Server {
    /// Binds, starts the feed and every shard, and returns once all shards accept.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let mut config = config;
        config.validate().map_err(StartError::Config)?;
        let fds = raise_fd_limit();
        config.max_connections = config.connection_limit(fds).map_err(StartError::Config)?;
        let driver = Driver::resolve(config.driver).map_err(StartError::Driver)?;
        let n = config.shard_count();
        let listeners = listener::bind(config.listen, n, 4096, listener::PORT_FREE_WAIT)
            .map_err(StartError::Bind)?;
        let addr = listeners[0].local_addr().map_err(StartError::Bind)?;
        config.control.instance_id = config.control.instance(addr);
        crate::log::set_instance(&config.control.instance_id);
        let config = Arc::new(config);
        let published = Published::new();
        let inboxes: Vec<Arc<Inbox>> = (0..n).map(|_| Arc::default()).collect();
        let (feed_handle, feed_inbox) = feed::inbox::channel();
        let secret = match crate::config::signing_secret(&config.auth)
            .map_err(StartError::Config)?
        {
            Some(s) => s,
            None => {
                log::warn(
                    "no auth.secret, auth.secret_file or VOLTAGE_AUTH_SECRET: access tokens are signed with a random key made at start-up — they stop working when the gateway restarts, and gateways cannot share logins; set a secret for production",
                );
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| {
                    StartError::Thread("auth key", std::io::Error::other(e.to_string()))
                })?;
                key
            }
        };
        let auth = Arc::new(crate::auth::Auth::new(&config.auth, &secret));
        let verifier = crate::auth::verifier::Verifier::start(inboxes.clone())
            .map_err(|e| StartError::Thread("auth verifier", e))?;
        let (recorder, history) = if config.history.enabled() {
            let recorder = crate::history::recorder::Recorder::start(&config.history)
                .map_err(|e| StartError::Thread("history recorder", e))?;
            let history = crate::history::querier::History::start(
                &config.history,
                recorder.status_handle(),
                inboxes.clone(),
            )
            .map_err(|e| StartError::Thread("history querier", e))?;
            (Some(recorder), Some(history))
        } else {
            (None, None)
        };
        let shared = Shared::new(
            config.clone(),
            published.clone(),
            feed_handle.clone(),
            inboxes.clone(),
            auth.clone(),
            verifier,
            history,
        );
        let shutdown = Shutdown::new();

        // The feed answers a shard's request through that shard's inbox.
        let postman: feed::Postman = {
            let inboxes = inboxes.clone();
            Box::new(move |to, reply| {
                if let Some(inbox) = inboxes.get(to.shard) {
                    inbox.push(ShardEvent::Reply { to, reply });
                }
            })
        };
        let health_inboxes = inboxes.clone();
        let catalog_inboxes = inboxes.clone();
        let alarm_inboxes = inboxes.clone();
        let control_shared = shared.clone();
        // Each tick is built once (fragments rendered once) and handed to every shard.
        let feed = Feed::new(
            config,
            published,
            (feed_handle.clone(), feed_inbox),
            postman,
        )
        .with_auth(auth)
        .on_health(move |health| {
            for inbox in &health_inboxes {
                inbox.push(ShardEvent::Source(health.clone()));
            }
        })
        .on_catalog(move |catalog| {
            for inbox in &catalog_inboxes {
                inbox.push(ShardEvent::Catalog(catalog.clone()));
            }
        })
        .on_alarms(move |alarms, active| {
            let batch = Arc::new(AlarmBatch {
                alarms: alarms.to_vec(),
                active: active.clone(),
            });
            for inbox in &alarm_inboxes {
                inbox.push(ShardEvent::Alarms(batch.clone()));
            }
        })
        .on_peer({
            let shared = control_shared.clone();
            move |message| {
                let mut words = message.split(' ');
                if let (Some("replace"), Some(id), Some(token), None) =
                    (words.next(), words.next(), words.next(), words.next())
                {
                    shared.replaced_elsewhere(id, token);
                }
            }
        })
        .holders({
            let shared = control_shared.clone();
            move |client_id| shared.registry.holder(client_id).map(|(_, name)| name)
        })
        .on_control(move |results| {
            // The final ack goes to whichever connection holds the sender's client id now
            // (a reconnected sender included), on whatever shard.
            let now = crate::time::now_millis();
            for r in results {
                let json = crate::wire::ws::control_ack_final(&r, now);
                control_shared.route_control_ack(
                    &r.client_id,
                    r.operator.as_deref(),
                    json,
                    r.entry,
                );
            }
        })
        .on_changes({
            let mut last = 0;
            move |snap, changes| {
                let tick = Tick::new(snap.clone(), changes, crate::time::now_millis()).after(last);
                last = tick.seq;
                let tick = Arc::new(tick);
                for inbox in &inboxes {
                    inbox.push(ShardEvent::Tick(tick.clone()));
                }
                if let Some(r) = &recorder {
                    r.record(&tick);
                }
            }
        });
        let feed = std::thread::Builder::new()
            .name("redis-feed".into())
            .spawn(move || feed.run())
            .map_err(|e| StartError::Thread("feed", e))?;

        let mut server = Server {
            addr,
            driver,
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            shards: Vec::with_capacity(n),
            feed_handle,
            feed: Some(feed),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (i, l) in listeners.into_iter().enumerate() {
            let h = shard::spawn(
                i,
                l,
                driver,
                shared.clone(),
                shutdown.clone(),
                ready_tx.clone(),
            )
            .map_err(|e| StartError::Thread("shard", e))?;
            server.shards.push(h);
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError::Shard(e)),
                Err(_) => return Err(StartError::ShardExited),
            }
        }
        log::info(&format!(
            "voltage-gateway listening on {addr} ({n} shards, {} driver), Redis {}, at most {} connections ({fds} file descriptors, {} from one address)",
            driver.as_str(),
            shared.config.redis_url_redacted(),
            shared.config.max_connections,
            shared.config.max_connections_per_ip,
        ));
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The feed's latest snapshot and Redis health.
    pub fn published(&self) -> &Arc<Published> {
        &self.shared.published
    }

    /// Stops accepting, lets in-flight responses finish (bounded by `shutdown_grace_ms`),
    /// stops the feed and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.trigger();
        for h in self.shards.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.feed.take() {
            self.feed_handle.stop();
            let _ = h.join();
        }
    }
}

/// Raises the soft file-descriptor limit to the hard one (a process may, without privileges)
/// and returns the limit now in force. Public for `voltage-loadtest`, which needs the same.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
