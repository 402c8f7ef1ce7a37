//! The engine's record of a registered task: its erased future and where it was
//! written ([`Job`]), and a request's tasks in registration order ([`Jobs`]).
//!
//! A leaf: it imports nothing of the engine.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::log::{self, Event};
use crate::request::RequestInfo;
use crate::task::{Location, Site, TaskOptions, TaskOutput};

/// A task's future, erased, with its own timeout.
pub(crate) type BoxFuture = Pin<Box<dyn TaskFuture>>;

/// A task's future as the executor runs it.
pub(crate) trait TaskFuture: Send {
    /// Polls the task; it resolves to its error message, if it failed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>>;

    /// Its own timeout, in place of the runtime's. Kept in the box, beside the
    /// future: only a task that waits reads it, and every task waiting for its
    /// response (and the executor's future, moved into tokio's task cell) is 16
    /// bytes smaller for it.
    fn timeout(&self) -> Option<Duration>;
}

pin_project! {
    /// A registered future and its timeout.
    struct Erased<F> {
        #[pin]
        future: F,
        timeout: Option<Duration>,
    }
}

impl<F> TaskFuture for Erased<F>
where
    F: Future + Send,
    F::Output: TaskOutput,
{
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.project().future.poll(cx).map(TaskOutput::into_error)
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A registered task, waiting for its request to finish or for a free slot.
pub(crate) struct Job {
    pub(crate) future: BoxFuture,
    pub(crate) site: Site,
}

impl Job {
    pub(crate) fn new<F>(future: F, location: Location) -> Self
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        Job::with_options(future, location, TaskOptions::new())
    }

    pub(crate) fn with_options<F>(future: F, location: Location, options: TaskOptions) -> Self
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        Job {
            future: Box::pin(Erased {
                future,
                timeout: options.timeout,
            }),
            site: Site {
                location,
                name: options.name,
            },
        }
    }

    /// Drops a task that will not run (rejected, or cancelled before it started).
    /// A value it captured may panic in its `Drop`: that is contained here, and
    /// logged, so the bookkeeping around it (a shutdown, a rejection) always
    /// completes.
    pub(crate) fn drop_unrun(self, request: &RequestInfo) {
        let site = self.site;
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(self))) {
            log::task_event(&request.span, request, site, Event::DropPanicked);
            forget_panic(panic);
        }
    }
}

/// Drops a panic's payload, containing a panic in the payload's own `Drop` (whose
/// payload is forgotten).
pub(crate) fn forget_panic(panic: Box<dyn std::any::Any + Send>) {
    if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(panic))) {
        std::mem::forget(again);
    }
}

/// Tasks in registration order, the first inline: a request usually registers one.
#[derive(Default)]
pub(crate) struct Jobs {
    first: Option<Job>,
    rest: Vec<Job>,
}

impl Jobs {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The only task (or none), or every task back when there are several.
    pub(crate) fn single(self) -> Result<Option<Job>, Jobs> {
        if self.rest.is_empty() {
            Ok(self.first)
        } else {
            Err(self)
        }
    }

    pub(crate) fn push(&mut self, job: Job) {
        match self.first {
            None => self.first = Some(job),
            Some(_) => self.rest.push(job),
        }
    }
}

impl IntoIterator for Jobs {
    type Item = Job;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Job>, std::vec::IntoIter<Job>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(line: u32) -> Job {
        Job::new(async {}, Location::new("job.rs", line, 1))
    }

    fn lines(jobs: Jobs) -> Vec<u32> {
        jobs.into_iter()
            .map(|job| job.site.location.line())
            .collect()
    }

    #[test]
    fn jobs_keep_registration_order() {
        let mut jobs = Jobs::default();
        assert_eq!(jobs.len(), 0);
        for line in 1..=3 {
            jobs.push(job(line));
        }
        assert_eq!(jobs.len(), 3);
        assert_eq!(lines(jobs), [1, 2, 3]);
    }

    #[test]
    fn single_gives_the_only_job_or_all_of_them_back() {
        assert!(matches!(Jobs::default().single(), Ok(None)));
        let mut one = Jobs::default();
        one.push(job(1));
        assert!(matches!(one.single(), Ok(Some(j)) if j.site.location.line() == 1));
        let mut two = Jobs::default();
        two.push(job(1));
        two.push(job(2));
        let Err(back) = two.single() else {
            panic!("two jobs are not one");
        };
        assert_eq!(lines(back), [1, 2]);
    }

    /// Panics when dropped.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("captured value panicked in drop");
        }
    }

    #[test]
    fn a_capture_that_panics_when_dropped_unrun_is_contained() {
        let bomb = Bomb;
        let job = Job::new(
            async move {
                let _keep = &bomb;
            },
            Location::new("job.rs", 1, 1),
        );
        let request = RequestInfo::new(
            http::Method::GET,
            crate::request::Path::new("/"),
            tracing::Span::none(),
            true,
        );
        job.drop_unrun(&request); // returns: the panic did not escape
    }
}
