//! Starting and stopping the whole gateway: the feed thread and the shards.

use crate::config::Config;
use crate::fanout::tick::Tick;
use crate::feed::Feed;
use crate::log;
use crate::shard::inbox::ShardEvent;
use crate::shard::{self, listener, Driver};
use crate::shutdown::Shutdown;
use crate::state::Shared;
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
    feed_stop: Option<crossbeam_channel::Sender<()>>,
    feed: Option<JoinHandle<()>>,
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Binds, starts the feed and every shard, and returns once all shards accept.
    pub fn start(config: Config) -> Result<Server, StartError> {
        config.validate().map_err(|e| StartError(e.to_string()))?;
        let driver = Driver::resolve(config.driver).map_err(StartError)?;
        let n = config.shard_count();
        let listeners =
            listener::bind(config.listen, n, 4096).map_err(|e| StartError(e.to_string()))?;
        let addr = listeners[0]
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let shared = Shared::new(Arc::new(config));
        let shutdown = Shutdown::new();

        let (feed_stop, feed_rx) = crossbeam_channel::bounded::<()>(1);
        let inboxes = shared.inboxes.clone();
        // Each tick is built once (fragments rendered once) and handed to every shard.
        let feed = Feed::new(shared.clone(), feed_rx).on_changes(move |snap, changes| {
            let tick = Arc::new(Tick::new(snap.clone(), changes, crate::time::now_millis()));
            for inbox in &inboxes {
                inbox.push(ShardEvent::Tick(tick.clone()));
            }
        });
        let feed = std::thread::Builder::new()
            .name("redis-feed".into())
            .spawn(move || feed.run())
            .map_err(|e| StartError(format!("cannot start the feed thread: {e}")))?;

        let mut server = Server {
            addr,
            driver,
            shared: shared.clone(),
            shutdown: shutdown.clone(),
            shards: Vec::with_capacity(n),
            feed_stop: Some(feed_stop),
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
            .map_err(|e| StartError(format!("cannot start shard {i}: {e}")))?;
            server.shards.push(h);
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError(e)),
                Err(_) => return Err(StartError("a shard exited during start-up".into())),
            }
        }
        log::info(&format!(
            "voltage-gateway listening on {addr} ({n} shards, {} driver), Redis {}",
            driver.as_str(),
            shared.config.redis_url
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
        drop(self.feed_stop.take());
        if let Some(h) = self.feed.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
