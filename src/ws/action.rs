//! What the protocol core asks of the IO shell: bytes to send, in order, work to run, and
//! whether to read on.

use crate::error::Upstream;
use crate::job::{take, Answer, Erased, Job};
use crate::wire::Frame;
use std::time::Duration;

/// What the connection must send (or run), in order.
#[derive(Debug)]
pub enum Action {
    /// A JSON message, sent as one text frame. Replies are never dropped while the
    /// connection lives.
    Reply(Vec<u8>),
    /// A ready, shared frame (the snapshot after a subscribe).
    Frame(Frame),
    /// Raw frames the WebSocket layer produced (pongs, pings, close frames, echoes).
    Raw(Vec<u8>),
    /// A Redis job a command needs: the shell runs it in the feed and hands the answer back
    /// through [`crate::ws::protocol::Protocol::answered`], which turns it into the replies.
    Ask(Ask),
}

impl PartialEq for Action {
    /// Work is never equal to anything (it has no identity to compare); the bytes are.
    fn eq(&self, other: &Action) -> bool {
        match (self, other) {
            (Action::Reply(a), Action::Reply(b)) | (Action::Raw(a), Action::Raw(b)) => a == b,
            (Action::Frame(a), Action::Frame(b)) => a == b,
            _ => false,
        }
    }
}

/// The continuation: the job's answer (or why there is none) and now → the reply.
type Continue = Box<dyn FnOnce(Result<Answer, Upstream>, i64) -> Vec<u8>>;

/// A job and what to reply once it is answered.
pub struct Ask {
    job: Box<dyn Erased>,
    /// How long the shell waits for the answer (then the continuation gets `TimedOut`).
    pub deadline: Duration,
    then: Then,
}

/// What a command replies once its job is answered.
pub struct Then(Continue);

impl Then {
    pub fn reply(self, answer: Result<Answer, Upstream>, now: i64) -> Vec<u8> {
        (self.0)(answer, now)
    }
}

impl Ask {
    /// Run `job` (waiting at most `deadline`), then reply what `then` makes of its output.
    pub fn new<J: Job>(
        job: J,
        deadline: Duration,
        then: impl FnOnce(Result<J::Output, Upstream>, i64) -> Vec<u8> + 'static,
    ) -> Ask {
        Ask {
            job: Box::new(job),
            deadline,
            then: Then(Box::new(move |a, now| then(take::<J::Output>(a), now))),
        }
    }

    /// The job, if it is a `J` (what tests look at).
    pub fn job<J: Job>(&self) -> Option<&J> {
        self.job.as_any().downcast_ref::<J>()
    }

    /// The job to run, and what to do with its answer.
    pub fn split(self) -> (Box<dyn Erased>, Then) {
        (self.job, self.then)
    }
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Whether the connection reads on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Open,
    /// The close handshake completed or the peer broke the protocol: flush and close.
    Closed,
}
