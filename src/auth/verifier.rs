//! The password verifier: one thread that checks argon2id hashes (tens of milliseconds each,
//! by design) so no shard stalls its connections on a login. Jobs queue in a bounded channel;
//! when it is full the login is answered 503 rather than queued without end. Answers go back
//! through the asking shard's inbox, like the feed's.

use crate::error::Upstream;
use crate::feed::ReplyTo;
use crate::shard::inbox::{Inbox, ShardEvent};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;

/// Logins waiting for the verifier; more are refused (a login storm cannot queue unbounded
/// work or memory).
const QUEUE: usize = 64;

struct Job {
    password: String,
    hash: Option<String>,
    to: ReplyTo,
}

pub struct Verifier {
    tx: Sender<Job>,
}

impl Verifier {
    /// Starts the thread; it ends when the verifier is dropped.
    pub fn start(inboxes: Vec<Arc<Inbox>>) -> std::io::Result<Verifier> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("auth-verifier".into())
            .spawn(move || {
                for job in rx {
                    let ok = std::panic::catch_unwind(|| {
                        crate::auth::password::verify(&job.password, job.hash.as_deref())
                    })
                    .unwrap_or(false);
                    if let Some(inbox) = inboxes.get(job.to.shard) {
                        inbox.push(ShardEvent::Reply {
                            to: job.to,
                            reply: Box::new(Ok::<bool, Upstream>(ok)),
                        });
                    }
                }
            })?;
        Ok(Verifier { tx })
    }

    /// Queues a check of `password` against `hash` (`None`: unknown user); false when the
    /// queue is full.
    pub fn ask(&self, password: String, hash: Option<String>, to: ReplyTo) -> bool {
        match self.tx.try_send(Job { password, hash, to }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}
