//! Random sequences of the runtime's operations, against a model of where each task
//! is: after every step the counts add up to `registered`, match the model, and stay
//! within the bounds.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::{job, scope, site};
use crate::config::{Builder, OverloadPolicy};
use crate::job::Job;
use crate::runtime::state::{Split, State, Submitted, WaitingKey};
use crate::scope::RequestScope;
use crate::stats::End;

/// Requests the sequences play with at once.
const REQUESTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A registration in this request: held while its response is open, else
    /// submitted.
    Register(usize),
    /// This request's response finished.
    Release(usize),
    /// A finished request is replaced by a new one.
    Renew(usize),
    /// A running task (picked by index) ended.
    Finish(usize, End),
    /// A `shutdown` call, with a grace in seconds or none.
    Shutdown(Option<u8>),
    /// The drain looks again, with requests in flight or not, this many seconds on.
    Drain(bool, u8),
    /// The deadline's cancellations: waiting tasks and unfinished responses.
    CancelAtDeadline,
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Succeeded),
        Just(End::Failed),
        Just(End::Panicked),
        Just(End::TimedOut),
        Just(End::Cancelled),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..REQUESTS).prop_map(Op::Register),
        2 => (0..REQUESTS).prop_map(Op::Release),
        1 => (0..REQUESTS).prop_map(Op::Renew),
        4 => (any::<usize>(), end()).prop_map(|(i, end)| Op::Finish(i, end)),
        1 => proptest::option::of(0u8..30).prop_map(Op::Shutdown),
        1 => (any::<bool>(), 0u8..40).prop_map(|(busy, secs)| Op::Drain(busy, secs)),
        1 => Just(Op::CancelAtDeadline),
    ]
}

fn policy() -> impl Strategy<Value = OverloadPolicy> {
    prop_oneof![
        Just(OverloadPolicy::Reject),
        Just(OverloadPolicy::ShedOldest)
    ]
}

/// One request as the scope would keep it.
struct Request {
    scope: Arc<RequestScope>,
    /// `None` once its response finished.
    held: Option<Vec<Job>>,
    waiting: Option<WaitingKey>,
}

impl Request {
    fn new() -> Self {
        Request {
            scope: scope(),
            held: Some(Vec::new()),
            waiting: None,
        }
    }
}

/// Where the model says each task is.
struct Model {
    state: State,
    requests: Vec<Request>,
    running: usize,
    queued: usize,
    start: Instant,
    max_concurrency: usize,
    max_pending: usize,
}

impl Model {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Register(i) => self.register(i),
            Op::Release(i) => self.release(i),
            Op::Renew(i) => {
                if self.requests[i].held.is_none() {
                    self.requests[i] = Request::new();
                }
            }
            Op::Finish(i, end) => {
                if self.running > 0 {
                    self.running -= 1;
                    let request = &self.requests[i % self.requests.len()].scope.request;
                    // Every task here is registered at `site()`: whichever ended, it was one.
                    if self.state.finish(end, site(), request).is_some() {
                        self.queued -= 1;
                        self.running += 1;
                    }
                }
            }
            Op::Shutdown(grace) => {
                let deadline = grace.map(|s| self.start + Duration::from_secs(s.into()));
                self.state.begin_shutdown(deadline);
            }
            Op::Drain(busy, secs) => {
                let now = self.start + Duration::from_secs(secs.into());
                self.state.close_if_drained(!busy, now);
            }
            Op::CancelAtDeadline => self.cancel_at_deadline(),
        }
    }

    fn register(&mut self, i: usize) {
        let request = &mut self.requests[i];
        match &mut request.held {
            Some(held) => {
                let first = request.waiting.is_none();
                let admitted = self.state.admit(&request.scope, site(), held.len(), first);
                if let Ok(key) = admitted.result {
                    request.waiting = request.waiting.or(key);
                    held.push(job(0));
                }
                // A shed task waited for a slot: it leaves the queue.
                self.queued -= usize::from(admitted.shed.is_some());
            }
            None => match self.state.submit(&request.scope, job(0)) {
                Submitted::Start(_) => self.running += 1,
                // In the place of a shed one, if one was.
                Submitted::Queued { shed } => self.queued += usize::from(shed.is_none()),
                Submitted::Refused(..) => {}
            },
        }
    }

    fn release(&mut self, i: usize) {
        let request = &mut self.requests[i];
        let Some(held) = request.held.take() else {
            return;
        };
        // As the scope does: a response with no task waiting dispatches nothing.
        if held.is_empty() {
            return;
        }
        let count = held.len();
        let mut jobs = crate::job::Jobs::default();
        held.into_iter().for_each(|job| jobs.push(job));
        match self.state.release(&request.scope, request.waiting, jobs) {
            Split::AllStart(all) => self.running += all.len(),
            Split::Some { start, cancelled } => {
                self.running += start.len();
                self.queued += count - start.len() - cancelled.len();
            }
        }
    }

    fn cancel_at_deadline(&mut self) {
        self.queued -= self.state.cancel_queued().len();
        for scope in self.state.take_unfinished() {
            let request = self
                .requests
                .iter_mut()
                .find(|r| Arc::ptr_eq(&r.scope, &scope))
                .expect("a listed scope is one of the requests");
            // As `cancel_waiting`: the scope counts as released, its tasks unrun.
            let jobs = request.held.take().unwrap_or_default();
            self.state.cancel_unfinished(&scope.request, &jobs);
        }
    }

    fn check(&self) {
        let s = self.state.stats();
        assert_eq!(
            s.succeeded
                + s.failed
                + s.panicked
                + s.timed_out
                + s.rejected
                + s.cancelled
                + s.pending
                + s.running,
            s.registered,
            "{s:?}"
        );
        let held: usize = self
            .requests
            .iter()
            .flat_map(|r| &r.held)
            .map(Vec::len)
            .sum();
        assert_eq!(s.running, self.running as u64, "{s:?}");
        assert_eq!(s.pending, (held + self.queued) as u64, "{s:?}");
        assert!(s.running <= self.max_concurrency as u64, "{s:?}");
        assert!(s.pending <= self.max_pending as u64, "{s:?}");
        assert_eq!(self.state.report().unfinished.len() as u64, s.cancelled);
        // The groups' counts add up to the runtime's.
        let groups = self.state.task_stats();
        let sum =
            |count: fn(&crate::stats::TaskStats) -> u64| groups.iter().map(count).sum::<u64>();
        assert_eq!(sum(|t| t.registered), s.registered);
        assert_eq!(sum(|t| t.in_flight()), s.pending + s.running);
        assert_eq!(
            [sum(|t| t.succeeded), sum(|t| t.failed), sum(|t| t.panicked)],
            [s.succeeded, s.failed, s.panicked]
        );
        assert_eq!(
            [
                sum(|t| t.timed_out),
                sum(|t| t.rejected),
                sum(|t| t.cancelled)
            ],
            [s.timed_out, s.rejected, s.cancelled]
        );
    }
}

proptest! {
    #[test]
    fn counts_add_up_and_stay_in_bounds_after_every_step(
        max_concurrency in 1usize..4,
        max_pending in 0usize..6,
        per_request in 0usize..4,
        overload in policy(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let config = Builder::default()
            .max_concurrency(max_concurrency)
            .max_pending(max_pending)
            .max_pending_per_request(per_request)
            .overload_policy(overload)
            .into_config();
        let mut model = Model {
            state: State::new(config),
            requests: (0..REQUESTS).map(|_| Request::new()).collect(),
            running: 0,
            queued: 0,
            start: Instant::now(),
            max_concurrency,
            max_pending,
        };
        for op in ops {
            model.apply(op);
            model.check();
        }
    }
}
