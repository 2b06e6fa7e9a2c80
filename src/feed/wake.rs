//! The `netsrv:wake` subscriber: a thread of its own that blocks on its pub/sub connection and
//! turns each message into an [`Event::Woken`] in the feed's inbox, so the feed waits on one
//! queue. It reports when it is subscribed and when it loses the subscription; the feed then
//! polls every tick and starts a new subscriber later.

use super::inbox::{Event, FeedHandle};
use crate::log;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a missing wake-up subscription is attempted again (the tick covers meanwhile).
const WAKE_RETRY: Duration = Duration::from_secs(5);

/// The pub/sub channel the library publishes on when a write follows a caught-up collect.
pub const WAKE_CHANNEL: &str = "netsrv:wake";

/// The gateway `instance`'s own channel: other gateways (through the library) tell it there
/// that they took over one of its client ids.
pub fn instance_channel(instance: &str) -> String {
    format!("gw:instance:{instance}")
}

/// How long a read blocks before the thread checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Interruptions in a row after which the subscription is treated as broken (a persistent
/// error that merely looks transient must not turn the wait into a busy loop).
const MAX_INTERRUPTED: u32 = 3;

pub struct Subscriber {
    pub generation: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes on `con` in a new thread; its events carry `generation`.
    pub fn spawn(
        generation: u64,
        con: redis::Connection,
        inbox: FeedHandle,
        instance: String,
    ) -> std::io::Result<Subscriber> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("redis-wake".into())
            .spawn(move || listen(generation, con, &inbox, &flag, &instance))?;
        Ok(Subscriber {
            generation,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Subscriber {
    /// Stops the thread (within `STOP_CHECK`) and waits for it: dropping the connection
    /// unsubscribes.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen(
    generation: u64,
    mut con: redis::Connection,
    inbox: &FeedHandle,
    stop: &AtomicBool,
    instance: &str,
) {
    let lost = |why: String| inbox.offer(Event::WakeLost { generation, why });
    // The `PubSub` must live as long as the subscription: dropping it unsubscribes.
    let mut ps = con.as_pubsub();
    let own = instance_channel(instance);
    if let Err(e) = ps.subscribe(&[WAKE_CHANNEL, own.as_str()]) {
        return lost(e.to_string());
    }
    inbox.offer(Event::Subscribed { generation });
    let mut interrupted = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = ps.set_read_timeout(Some(STOP_CHECK)) {
            return lost(e.to_string());
        }
        match ps.get_message() {
            Ok(m) if m.get_channel_name() == WAKE_CHANNEL => {
                interrupted = 0;
                inbox.offer(Event::Woken { generation });
            }
            Ok(m) => {
                interrupted = 0;
                // Small and bounded by the library (`replace {client_id} {token}`).
                if let Ok(text) = m.get_payload::<String>() {
                    if text.len() <= 512 {
                        inbox.offer(Event::Peer { message: text });
                    }
                }
            }
            Err(e) if e.is_timeout() => interrupted = 0,
            // EINTR and kin: nothing was read and the subscription stands.
            Err(e)
                if matches!(e.retry_method(), redis::RetryMethod::RetryImmediately)
                    && interrupted < MAX_INTERRUPTED =>
            {
                interrupted += 1
            }
            Err(e) if matches!(e.retry_method(), redis::RetryMethod::RetryImmediately) => {
                return lost("interrupted repeatedly".into())
            }
            Err(e) => return lost(e.to_string()),
        }
    }
}

/// The wake-up subscription as the feed keeps it: the running subscriber (if any), whether it
/// confirmed, and when to try again after a failure (logged once per outage).
pub struct Waking {
    subscriber: Option<Subscriber>,
    generation: u64,
    /// It confirmed its subscription: collects ask the library to publish the next write.
    pub active: bool,
    retry_at: Instant,
    /// A failure was logged and has not been followed by a success yet.
    warned: bool,
}

impl Waking {
    pub fn new() -> Waking {
        Waking {
            subscriber: None,
            generation: 0,
            active: false,
            retry_at: Instant::now(),
            warned: false,
        }
    }

    /// Starts a subscriber over the connection `connect` opens (`enabled`: configured, and
    /// the library in Redis publishes there); a failure is retried after `WAKE_RETRY`.
    pub fn start(
        &mut self,
        enabled: bool,
        connect: impl FnOnce() -> Result<redis::Connection, super::FeedError>,
        inbox: &FeedHandle,
        tick_ms: u64,
        instance: &str,
    ) {
        self.retry_at = Instant::now() + WAKE_RETRY;
        if !enabled {
            return;
        }
        self.generation += 1;
        let spawned = connect().map_err(|e| e.to_string()).and_then(|c| {
            Subscriber::spawn(self.generation, c, inbox.clone(), instance.to_string())
                .map_err(|e| e.to_string())
        });
        match spawned {
            Ok(s) => self.subscriber = Some(s),
            Err(why) => self.failed(&why, tick_ms),
        }
    }

    pub fn stop(&mut self) {
        self.subscriber = None;
        self.active = false;
    }

    /// Whether news from subscriber `generation` is about the running one.
    pub fn current(&self, generation: u64) -> bool {
        self.subscriber
            .as_ref()
            .is_some_and(|s| s.generation == generation)
    }

    /// The running subscriber confirmed.
    pub fn subscribed(&mut self) {
        self.active = true;
        if std::mem::take(&mut self.warned) {
            log::info(&format!("{WAKE_CHANNEL} subscription restored"));
        }
    }

    /// The running subscriber lost its subscription (the data connection is unaffected).
    pub fn lost(&mut self, why: &str, tick_ms: u64) {
        self.stop();
        self.failed(why, tick_ms);
    }

    /// No subscriber runs and it is time to try again.
    pub fn due(&self, now: Instant) -> bool {
        self.subscriber.is_none() && now >= self.retry_at
    }

    /// Logged once per outage (the retry every `WAKE_RETRY` stays quiet until it succeeds).
    fn failed(&mut self, why: &str, tick_ms: u64) {
        self.retry_at = Instant::now() + WAKE_RETRY;
        if !std::mem::replace(&mut self.warned, true) {
            log::warn(&format!(
                "{WAKE_CHANNEL} subscription failed ({why}); polling every {tick_ms} ms, retrying every {} s",
                WAKE_RETRY.as_secs()
            ));
        }
    }
}
