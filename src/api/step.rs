//! What a handler answers: a response now, or the work it needs done first (a Redis job,
//! a password check, a history query) and the pure function that turns the work's result
//! into the next step. The connection runs the work with its deadline and calls that
//! function with a fresh view — so handlers stay pure and the connection's loop does not
//! grow with routes.

use super::View;
use crate::error::{ApiError, Upstream};
use crate::history::{HistoryQuery, Page};
use crate::http::Response;
use crate::job::{take, Answer, Erased, Job};
use std::time::Duration;

/// The continuation: the work's answer (or why there is none), a view, now → the next step.
type Continue = Box<dyn FnOnce(Result<Answer, Upstream>, &View<'_>, i64) -> Result<Step, ApiError>>;

/// What a handler does once its work is answered.
pub struct Then(Continue);

impl Then {
    /// Goes on with the work's answer (an error becomes its response).
    pub fn finish(self, answer: Result<Answer, Upstream>, view: &View<'_>, now: i64) -> Step {
        (self.0)(answer, view, now).unwrap_or_else(|e| Step::Done(Response::error(&e, now)))
    }
}

pub enum Step {
    Done(Response),
    Ask(Ask),
}

/// Work to do before the handler can go on.
pub struct Ask {
    pub work: Work,
    /// How long the connection waits for the answer.
    pub deadline: Duration,
    /// How long it waits before asking (a record polled until it changes).
    pub delay: Duration,
    then: Then,
}

/// Who does the work.
pub enum Work {
    /// The feed, on its Redis connection.
    Redis(Box<dyn Erased>),
    /// The password verifier: `password` against `hash` (`None`: unknown user).
    Verify {
        password: String,
        hash: Option<String>,
    },
    /// The history querier (InfluxDB).
    History(HistoryQuery),
}

impl Ask {
    /// The work to run, and what to do with its answer.
    pub fn split(self) -> (Work, Then) {
        (self.work, self.then)
    }
}

impl Step {
    fn ask(work: Work, deadline: Duration, then: Continue) -> Step {
        Step::Ask(Ask {
            work,
            deadline,
            delay: Duration::ZERO,
            then: Then(then),
        })
    }

    /// Run `job` in the feed (waiting at most `deadline`), then `then` with its output.
    pub fn redis<J: Job>(
        job: J,
        deadline: Duration,
        then: impl FnOnce(Result<J::Output, Upstream>, &View<'_>, i64) -> Result<Step, ApiError>
            + 'static,
    ) -> Step {
        Step::ask(
            Work::Redis(Box::new(job)),
            deadline,
            Box::new(move |a, view, now| then(take::<J::Output>(a), view, now)),
        )
    }

    /// Check a password on the verifier thread, then `then` with whether it matched.
    pub fn verify(
        password: String,
        hash: Option<String>,
        deadline: Duration,
        then: impl FnOnce(Result<bool, Upstream>, &View<'_>, i64) -> Result<Step, ApiError> + 'static,
    ) -> Step {
        Step::ask(
            Work::Verify { password, hash },
            deadline,
            Box::new(move |a, view, now| then(take::<bool>(a), view, now)),
        )
    }

    /// Ask the history store, then `then` with the page.
    pub fn history(
        query: HistoryQuery,
        deadline: Duration,
        then: impl FnOnce(Result<Page, Upstream>, &View<'_>, i64) -> Result<Step, ApiError> + 'static,
    ) -> Step {
        Step::ask(
            Work::History(query),
            deadline,
            Box::new(move |a, view, now| then(take::<Page>(a), view, now)),
        )
    }

    /// The same work, asked for only after `delay`.
    pub fn after(self, delay: Duration) -> Step {
        match self {
            Step::Ask(ask) => Step::Ask(Ask { delay, ..ask }),
            done => done,
        }
    }
}

impl From<Response> for Step {
    fn from(r: Response) -> Step {
        Step::Done(r)
    }
}
