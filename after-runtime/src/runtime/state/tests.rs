//! Each change of the state on its own, without tokio: plain calls on a `State`, as
//! the runtime makes them under its lock.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::{Split, State, Submitted, WaitingKey};
use crate::config::{Builder, OverloadPolicy};
use crate::error::AfterErrorKind;
use crate::job::{Job, Jobs};
use crate::request::Path;
use crate::runtime::AfterRuntime;
use crate::scope::RequestScope;
use crate::stats::{End, Stats};
use crate::task::{Location, Site};

mod sequences;

fn state(configure: impl FnOnce(Builder) -> Builder) -> State {
    State::new(configure(Builder::default()).into_config())
}

fn scope() -> Arc<RequestScope> {
    Arc::new(RequestScope::new(
        AfterRuntime::default(),
        Method::GET,
        Path::new("/"),
        tracing::Span::none(),
    ))
}

/// Where the tasks of these tests were registered: all unnamed, at one place.
fn site() -> Site {
    Location::new("state.rs", 0, 1).into()
}

fn job(line: u32) -> Job {
    Job::new(async {}, Location::new("state.rs", line, 1))
}

fn jobs(lines: impl IntoIterator<Item = u32>) -> Jobs {
    let mut jobs = Jobs::default();
    for line in lines {
        jobs.push(job(line));
    }
    jobs
}

fn lines(jobs: Jobs) -> Vec<u32> {
    jobs.into_iter()
        .map(|job| job.site.location.line())
        .collect()
}

/// Every registered task is in exactly one count.
fn assert_adds_up(stats: Stats) {
    assert_eq!(
        stats.settled() + stats.pending + stats.running,
        stats.registered,
        "{stats:?}"
    );
}

/// Admits `count` tasks into `scope` as if none were held yet, returning the key.
fn admit_all(state: &mut State, scope: &Arc<RequestScope>, count: usize) -> Option<WaitingKey> {
    let mut key = None;
    for held in 0..count {
        let admitted = state
            .admit(scope, site(), held, key.is_none())
            .result
            .expect("admitted");
        key = key.or(admitted);
    }
    key
}

#[test]
fn admit_counts_a_task_as_pending_and_enters_the_scope_in_the_waiting_list_once() {
    let mut state = state(|b| b);
    let scope = scope();
    let first = state.admit(&scope, site(), 0, true).result.unwrap();
    assert!(first.is_some());
    assert!(
        state
            .admit(&scope, site(), 1, false)
            .result
            .unwrap()
            .is_none()
    );
    let s = state.stats();
    assert_eq!((s.registered, s.pending), (2, 2));
    assert_eq!(state.waiting.len(), 1);
    assert_adds_up(s);
}

#[test]
fn admit_refuses_past_either_bound_and_counts_the_rejection() {
    let mut state = state(|b| b.max_pending(3).max_pending_per_request(2));
    let (a, b) = (scope(), scope());
    admit_all(&mut state, &a, 2);
    let per_request = state.admit(&a, site(), 2, false).result.unwrap_err();
    assert_eq!(per_request.kind(), AfterErrorKind::Overloaded);
    assert!(per_request.to_string().contains("max_pending_per_request"));

    admit_all(&mut state, &b, 1);
    let global = state.admit(&b, site(), 1, false).result.unwrap_err();
    assert_eq!(global.kind(), AfterErrorKind::Overloaded);
    assert!(global.to_string().contains("`max_pending` tasks"));

    let s = state.stats();
    assert_eq!((s.registered, s.pending, s.rejected), (5, 3, 2));
    assert_adds_up(s);
}

#[test]
fn once_closed_every_registration_is_refused_as_shut_down() {
    let mut state = state(|b| b);
    assert!(!state.begin_shutdown(None));
    assert!(state.close_if_drained(true, Instant::now()));
    let scope = scope();
    let admitted = state.admit(&scope, site(), 0, true).result.unwrap_err();
    assert_eq!(admitted.kind(), AfterErrorKind::ShutDown);
    let Submitted::Refused(submitted, _) = state.submit(&scope, job(1)) else {
        panic!("a closed runtime took a task");
    };
    assert_eq!(submitted.kind(), AfterErrorKind::ShutDown);
    let s = state.stats();
    assert_eq!((s.registered, s.rejected), (2, 2));
}

#[test]
fn submit_starts_at_once_when_a_slot_is_free_whatever_waits() {
    let mut state = state(|b| b.max_concurrency(1).max_pending(0));
    assert!(matches!(
        state.submit(&scope(), job(1)),
        Submitted::Start(_)
    ));
    let s = state.stats();
    assert_eq!((s.registered, s.running, s.pending), (1, 1, 0));
}

#[test]
fn submit_waits_for_a_slot_within_max_pending() {
    let mut state = state(|b| b.max_concurrency(1).max_pending(1));
    let scope = scope();
    assert!(matches!(state.submit(&scope, job(1)), Submitted::Start(_)));
    assert!(matches!(
        state.submit(&scope, job(2)),
        Submitted::Queued { .. }
    ));
    let Submitted::Refused(error, job) = state.submit(&scope, job(3)) else {
        panic!("past max_pending");
    };
    assert_eq!(error.kind(), AfterErrorKind::Overloaded);
    assert_eq!(
        job.site.location.line(),
        3,
        "the refused task is handed back"
    );
    let s = state.stats();
    assert_eq!((s.running, s.pending, s.rejected), (1, 1, 1));
    assert_adds_up(s);
}

#[test]
fn release_starts_every_task_when_the_slots_suffice() {
    let mut state = state(|b| b.max_concurrency(3));
    let scope = scope();
    let key = admit_all(&mut state, &scope, 3);
    let Split::AllStart(all) = state.release(&scope, key, jobs(1..=3)) else {
        panic!("three slots for three tasks");
    };
    assert_eq!(lines(all), [1, 2, 3]);
    let s = state.stats();
    assert_eq!((s.running, s.pending), (3, 0));
    assert!(state.waiting.is_empty(), "the scope left the waiting list");
}

#[test]
fn release_starts_what_fits_and_queues_the_rest_in_order_for_finish_to_start() {
    let mut state = state(|b| b.max_concurrency(2));
    let scope = scope();
    let key = admit_all(&mut state, &scope, 4);
    let Split::Some { start, cancelled } = state.release(&scope, key, jobs(1..=4)) else {
        panic!("two slots for four tasks");
    };
    assert_eq!((lines(start), lines(cancelled)), (vec![1, 2], vec![]));
    assert_eq!((state.stats().running, state.stats().pending), (2, 2));

    let next = state.finish(End::Succeeded, Location::caller().into(), &scope.request);
    assert_eq!(next.map(|(_, job)| job.site.location.line()), Some(3));
    let next = state.finish(End::Failed, Location::caller().into(), &scope.request);
    assert_eq!(next.map(|(_, job)| job.site.location.line()), Some(4));
    assert!(
        state
            .finish(End::Panicked, Location::caller().into(), &scope.request)
            .is_none()
    );
    let s = state.stats();
    assert_eq!(
        (s.running, s.pending, s.succeeded, s.failed, s.panicked),
        (1, 0, 1, 1, 1)
    );
    assert_adds_up(s);
}

#[test]
fn tasks_released_after_closing_are_cancelled_and_listed() {
    let mut state = state(|b| b);
    let scope = scope();
    let key = admit_all(&mut state, &scope, 2);
    state.begin_shutdown(None);
    state.close_if_drained(true, Instant::now());
    let Split::Some { start, cancelled } = state.release(&scope, key, jobs([7, 8])) else {
        panic!("closed");
    };
    assert_eq!((lines(start), lines(cancelled)), (vec![], vec![7, 8]));
    let report = state.report();
    assert_eq!(report.stats.cancelled, 2);
    let listed: Vec<u32> = report
        .unfinished
        .iter()
        .map(|t| t.location.line())
        .collect();
    assert_eq!(listed, [7, 8]);
    assert!(
        report
            .unfinished
            .iter()
            .all(|t| t.method == Method::GET && t.path == "/"),
        "each names its request: {report}"
    );
}

#[test]
fn finish_counts_each_end_once() {
    let mut state = state(|b| b.max_concurrency(8));
    let scope = scope();
    let ends = [
        End::Succeeded,
        End::Failed,
        End::Panicked,
        End::TimedOut,
        End::Cancelled,
    ];
    for _ in ends {
        assert!(matches!(state.submit(&scope, job(1)), Submitted::Start(_)));
    }
    for end in ends {
        assert!(
            state
                .finish(end, Location::caller().into(), &scope.request)
                .is_none()
        );
    }
    let s = state.stats();
    assert_eq!(
        (
            s.succeeded,
            s.failed,
            s.panicked,
            s.timed_out,
            s.cancelled,
            s.running
        ),
        (1, 1, 1, 1, 1, 0)
    );
    assert_eq!(state.report().unfinished.len(), 1);
    assert_adds_up(s);
}

#[test]
fn only_a_shutdown_waits_for_the_last_task() {
    let mut state = state(|b| b);
    let scope = scope();
    assert!(matches!(state.submit(&scope, job(1)), Submitted::Start(_)));
    state.finish(End::Succeeded, Location::caller().into(), &scope.request);
    assert!(!state.idle_and_watched(), "nobody waits while running");
    assert!(matches!(state.submit(&scope, job(2)), Submitted::Start(_)));
    state.begin_shutdown(None);
    assert!(!state.idle_and_watched(), "a task still runs");
    state.finish(End::Succeeded, Location::caller().into(), &scope.request);
    assert!(state.idle_and_watched());
}

#[test]
fn the_earliest_deadline_any_caller_gave_applies() {
    let mut state = state(|b| b);
    let now = Instant::now();
    state.begin_shutdown(Some(now + Duration::from_secs(30)));
    state.begin_shutdown(None);
    state.begin_shutdown(Some(now + Duration::from_secs(10)));
    state.begin_shutdown(Some(now + Duration::from_secs(20)));
    assert_eq!(state.deadline(), Some(now + Duration::from_secs(10)));
}

#[test]
fn the_drain_closes_only_when_idle_or_late() {
    let mut state = state(|b| b);
    let now = Instant::now();
    let scope = scope();
    assert!(matches!(state.submit(&scope, job(1)), Submitted::Start(_)));
    state.begin_shutdown(Some(now + Duration::from_secs(10)));
    assert!(!state.close_if_drained(true, now), "a task runs");
    assert!(
        !state.close_if_drained(false, now),
        "a request is in flight"
    );
    assert!(!state.is_closed());
    assert!(state.close_if_drained(false, now + Duration::from_secs(10)));
    assert!(state.is_closed());
    state.done();
    assert!(state.begin_shutdown(None), "a later call finds it done");
}

#[test]
fn at_the_deadline_waiting_tasks_are_taken_and_counted_as_cancelled() {
    let mut state = state(|b| b.max_concurrency(1));
    let released = scope();
    assert!(matches!(
        state.submit(&released, job(1)),
        Submitted::Start(_)
    ));
    assert!(matches!(
        state.submit(&released, job(2)),
        Submitted::Queued { .. }
    ));
    let open = scope();
    admit_all(&mut state, &open, 2);

    let queued = state.cancel_queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1.site.location.line(), 2);

    let unfinished = state.take_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert!(Arc::ptr_eq(&unfinished[0], &open));
    assert!(state.take_unfinished().is_empty(), "taken once");
    state.cancel_unfinished(&open.request, &[job(3), job(4)]);

    let s = state.stats();
    assert_eq!((s.cancelled, s.running, s.pending), (3, 1, 0));
    assert_adds_up(s);
    let listed: Vec<u32> = state
        .report()
        .unfinished
        .iter()
        .map(|t| t.location.line())
        .collect();
    assert_eq!(listed, [2, 3, 4]);
}

#[test]
fn a_stale_waiting_key_never_removes_another_scopes_entry() {
    let mut state = state(|b| b);
    let (first, second) = (scope(), scope());
    let stale = admit_all(&mut state, &first, 1);
    state.take_unfinished(); // the deadline emptied the list
    admit_all(&mut state, &second, 1); // the slab may give the same key again
    let Split::AllStart(_) = state.release(&first, stale, jobs([1])) else {
        panic!("slots are free");
    };
    assert_eq!(state.waiting.len(), 1, "the second scope is still listed");
    assert!(Arc::ptr_eq(&state.take_unfinished()[0], &second));
}

#[test]
fn shed_oldest_drops_the_task_that_waited_longest_for_a_slot_for_the_new_one() {
    let mut state = state(|b| {
        b.max_concurrency(1)
            .max_pending(2)
            .overload_policy(OverloadPolicy::ShedOldest)
    });
    let released = scope();
    assert!(matches!(
        state.submit(&released, job(1)),
        Submitted::Start(_)
    ));
    assert!(matches!(
        state.submit(&released, job(2)),
        Submitted::Queued { shed: None }
    ));
    assert!(matches!(
        state.submit(&released, job(3)),
        Submitted::Queued { shed: None }
    ));

    // Full: a submitted task takes the place of the oldest waiting for a slot.
    let Submitted::Queued { shed: Some(shed) } = state.submit(&released, job(4)) else {
        panic!("the oldest is shed");
    };
    assert_eq!(shed.1.site.location.line(), 2);
    // And so does a task held for its response.
    let open = scope();
    let admitted = state.admit(&open, site(), 0, true);
    assert!(admitted.result.unwrap().is_some());
    assert_eq!(
        admitted.shed.map(|shed| shed.1.site.location.line()),
        Some(3)
    );

    let s = state.stats();
    assert_eq!(
        (s.registered, s.running, s.pending, s.rejected),
        (5, 1, 2, 2)
    );
    assert_adds_up(s);
    // The queue kept its order: the newest submitted task is next.
    let next = state.finish(End::Succeeded, Location::caller().into(), &released.request);
    assert_eq!(next.map(|(_, job)| job.site.location.line()), Some(4));
}

#[test]
fn shed_oldest_refuses_the_new_task_when_none_waits_for_a_slot() {
    let mut state = state(|b| b.max_pending(1).overload_policy(OverloadPolicy::ShedOldest));
    let open = scope();
    admit_all(&mut state, &open, 1);
    // The one waiting task waits for its response, not for a slot: never shed.
    let admitted = state.admit(&scope(), site(), 0, true);
    assert!(admitted.shed.is_none());
    assert_eq!(
        admitted.result.unwrap_err().kind(),
        AfterErrorKind::Overloaded
    );
    let s = state.stats();
    assert_eq!((s.registered, s.pending, s.rejected), (2, 1, 1));
}

#[test]
fn shed_oldest_leaves_the_per_request_bound_alone() {
    let mut state = state(|b| {
        b.max_concurrency(1)
            .max_pending(1)
            .max_pending_per_request(1)
            .overload_policy(OverloadPolicy::ShedOldest)
    });
    let released = scope();
    assert!(matches!(
        state.submit(&released, job(1)),
        Submitted::Start(_)
    ));
    assert!(matches!(
        state.submit(&released, job(2)),
        Submitted::Queued { .. }
    ));
    let admitted = state.admit(&scope(), site(), 1, false);
    assert!(
        admitted.shed.is_none(),
        "nothing is shed for a refused task"
    );
    let error = admitted.result.unwrap_err();
    assert!(error.to_string().contains("max_pending_per_request"));
    assert_eq!(state.stats().pending, 1);
}

#[test]
fn one_name_at_two_addresses_is_one_group() {
    let mut state = state(|b| b);
    let scope = scope();
    // The same text twice, at two addresses, as one name in two crates would be.
    let here: &'static str = Box::leak(String::from("mail").into_boxed_str());
    let there: &'static str = Box::leak(String::from("mail").into_boxed_str());
    assert_ne!(here.as_ptr(), there.as_ptr());
    for name in [here, there] {
        let site = Site {
            location: Location::caller(),
            name: Some(name),
        };
        state.admit(&scope, site, 0, false);
    }
    let unnamed = state.admit(&scope, site(), 0, false);
    assert!(unnamed.result.is_ok());
    let groups = state.task_stats();
    let summary: Vec<_> = groups
        .iter()
        .map(|g| (g.task.to_string(), g.registered))
        .collect();
    assert_eq!(
        summary,
        [("mail".to_owned(), 2), ("state.rs:0:1".to_owned(), 1)]
    );
}
