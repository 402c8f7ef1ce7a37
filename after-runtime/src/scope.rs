//! The request scope: where a request's tasks wait until its response is finished.
//!
//! - `scope.rs` (here): [`RequestScope`], its two states (the response is open, or
//!   finished with an outcome), the moves between them (`register` and `release`),
//!   and [`after()`], the public way to register into the current scope.
//! - `scope/release.rs`: [`Release`], the guard whose drop releases the tasks.
//! - `scope/current.rs`: the task-locals that let code find its scope, and
//!   [`outcome()`], which reads the running task's.
//!
//! The scope and the runtime import each other, one of the engine's two cycles (the
//! other is the runtime and the executor): the scope admits each registration into
//! the runtime (which counts it and applies the bounds), and the runtime holds
//! released tasks with their scope and, at the shutdown deadline, takes back the
//! tasks of scopes whose responses never finished. The scope never reaches the
//! executor.

mod current;
mod release;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cookie::CookieJar;
use http::{HeaderMap, Method};

use crate::error::{AfterError, AfterErrorKind};
use crate::job::{Job, Jobs};
use crate::log::{self, Event};
use crate::outcome::{Delivery, Outcome};
pub(crate) use crate::request::Path;
use crate::request::{Captured, RequestInfo};
use crate::runtime::{AfterRuntime, WaitingKey};
use crate::task::{Location, Site, TaskOptions, TaskOutput};

pub use self::current::outcome;
pub(crate) use self::current::{REQUEST, RUNNING, current_span, enter, layer_scope};
pub(crate) use self::release::Release;

/// One request's tasks, and what they may read of it.
pub(crate) struct RequestScope {
    pub(crate) runtime: AfterRuntime,
    pub(crate) request: RequestInfo,
    captured: Captured,
    state: Mutex<State>,
}

enum State {
    /// The response is not finished: tasks wait here.
    Open {
        jobs: Jobs,
        /// This scope's entry in the runtime's list of scopes whose tasks wait for a
        /// response, from its first registration on.
        waiting: Option<WaitingKey>,
    },
    /// The response is finished; new tasks go straight to the executor.
    Released(Outcome),
}

impl std::fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestScope")
            .field("method", &self.request.method)
            .field("path", &self.request.path.as_str())
            .finish_non_exhaustive()
    }
}

impl RequestScope {
    pub(crate) fn new(
        runtime: AfterRuntime,
        method: Method,
        path: Path,
        span: tracing::Span,
    ) -> Self {
        let spawn_here = !runtime.spawns_elsewhere();
        RequestScope {
            runtime,
            request: RequestInfo::new(method, path, span, spawn_here),
            captured: Captured::default(),
            state: Mutex::new(State::Open {
                jobs: Jobs::default(),
                waiting: None,
            }),
        }
    }

    /// A `GET` of `path` on a runtime of its own.
    #[cfg(test)]
    pub(crate) fn for_test(path: &str) -> Self {
        let runtime = AfterRuntime::builder().build();
        RequestScope::new(runtime, Method::GET, Path::new(path), tracing::Span::none())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits `job` (or counts its rejection) and queues it until the response is
    /// finished, or hands it to the executor if it already is. Never waits.
    pub(crate) fn register(self: &Arc<Self>, job: Job) -> Result<(), AfterError> {
        let mut state = self.state();
        let State::Open { jobs, waiting } = &mut *state else {
            drop(state);
            return self.runtime.submit(self, job);
        };
        // The first task also enters the scope in the runtime's waiting list, under
        // the same lock as its admission.
        let (admitted, unlocked) =
            self.runtime
                .admit(self, job.site, jobs.len(), waiting.is_none());
        let refused = match admitted {
            Ok(key) => {
                *waiting = waiting.or(key);
                jobs.push(job);
                None
            }
            Err(error) => Some((error, job)),
        };
        drop(state);
        // Outside the scope's lock: a metrics recorder, or the captures of a task shed
        // for this one, may run any code.
        drop(unlocked);
        let Some((error, job)) = refused else {
            return Ok(());
        };
        // Logged and dropped outside the scope's lock: a subscriber, or the task's
        // captures, may run any code.
        self.log(job.site, Event::Rejected(&error));
        job.drop_unrun(&self.request);
        Err(error)
    }

    /// The response is finished: hands every waiting task to the executor, in
    /// registration order. Later calls do nothing.
    // Inline into `Release::drop`, in another file now, as it was when they shared one.
    #[inline]
    pub(crate) fn release(self: &Arc<Self>, outcome: Outcome) {
        if let Some((jobs, waiting)) = self.close(outcome)
            && jobs.len() > 0
        {
            self.runtime.dispatch(self.clone(), waiting, jobs);
        }
    }

    /// The shutdown deadline passed before the response finished: takes the waiting
    /// tasks out, unrun, for the runtime to count and report.
    pub(crate) fn cancel_waiting(&self) -> Vec<Job> {
        self.close(Outcome::new(Delivery::NotProduced))
            .map(|(jobs, _)| jobs.into_iter().collect())
            .unwrap_or_default()
    }

    /// Marks the response finished with `outcome` and hands out the tasks that were
    /// waiting for it, in registration order, with the scope's waiting-list entry;
    /// `None` if it was already finished.
    #[inline]
    fn close(&self, outcome: Outcome) -> Option<(Jobs, Option<WaitingKey>)> {
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Released(outcome)) {
            State::Open { jobs, waiting } => Some((jobs, waiting)),
            released => {
                *state = released;
                None
            }
        }
    }

    /// Whether a task waits in the scope for its response.
    fn has_waiting(&self) -> bool {
        matches!(&*self.state(), State::Open { jobs, .. } if jobs.len() > 0)
    }

    /// What became of the response; `None` while it is not finished.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match &*self.state() {
            State::Released(outcome) => Some(*outcome),
            State::Open { .. } => None,
        }
    }

    /// Logs `event` for a task of this request, under the request's span.
    pub(crate) fn log(&self, site: Site, event: Event<'_>) {
        log::task_event(&self.request.span, &self.request, site, event);
    }

    /// Copies the request's headers for the tasks.
    pub(crate) fn capture_headers(&self, headers: &HeaderMap) {
        self.captured.capture_headers(headers);
    }

    /// The headers captured for the tasks; none if no block asked for them.
    pub(crate) fn headers(&self) -> Arc<HeaderMap> {
        self.captured.headers()
    }

    /// The request's cookies, parsed on first use.
    pub(crate) fn cookies(&self) -> &CookieJar {
        self.captured.cookies()
    }
}

/// The request's scope, as `AfterLayer` puts it in the request's extensions: found
/// by `#[with_after]`'s extractor wherever the handler runs, also when middleware
/// moves the handler's future to another task (`tokio::spawn(next.run(req))`),
/// where the task-local is not set.
#[derive(Clone)]
pub(crate) struct LayerScope(pub(crate) Arc<RequestScope>);

/// Runs `future` after the current request's response has been sent.
///
/// Call it anywhere in a request's task under [`AfterLayer`](crate::AfterLayer): the
/// handler, a helper it awaits, middleware inside the layer, or a running after task
/// (where the new task starts at once). It only enqueues: it never waits and never
/// blocks. The future may end in `()` or `Result<(), E>` with `E: Display`; an
/// `Err` or a panic is logged and counted, never seen by the client.
///
/// # Errors
///
/// Outside a request scope, [`AfterErrorKind::NoScope`]: the future is dropped unrun
/// and the caller told, never silently. After shutdown or past `max_pending`,
/// [`AfterErrorKind::ShutDown`] or [`AfterErrorKind::Overloaded`], also counted in
/// [`Stats::rejected`](crate::Stats::rejected).
///
/// # Example
///
/// ```
/// use after_runtime::{after, AfterLayer, AfterRuntime};
/// use axum::{routing::post, Router};
///
/// async fn signup() -> &'static str {
///     // A helper can register work too; it runs once the response is out.
///     send_welcome_mail("ada@example.com");
///     "welcome"
/// }
///
/// fn send_welcome_mail(to: &'static str) {
///     let registered = after(async move {
///         // ... talk to the mail server ...
///         Ok::<(), std::io::Error>(())
///     });
///     if let Err(err) = registered {
///         tracing::warn!(%err, to, "welcome mail not scheduled");
///     }
/// }
///
/// let runtime = AfterRuntime::builder().build();
/// let app: Router = Router::new()
///     .route("/signup", post(signup))
///     .layer(AfterLayer::new(runtime));
/// # let _ = app;
/// ```
#[track_caller]
pub fn after<F>(future: F) -> Result<(), AfterError>
where
    F: Future + Send + 'static,
    F::Output: TaskOutput,
{
    after_with(TaskOptions::new(), future)
}

/// [`after()`](fn@after) with [`TaskOptions`]: a name for the task's logs, span,
/// metric label, shutdown report and [`task_stats`](crate::AfterRuntime::task_stats),
/// and a timeout of its own.
///
/// # Errors
///
/// As [`after()`](fn@after).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use after_runtime::{AfterLayer, AfterRuntime, TaskOptions, after_with};
/// use axum::{routing::post, Router};
///
/// const WELCOME_MAIL: TaskOptions =
///     TaskOptions::new().name("welcome-mail").timeout(Duration::from_secs(5));
///
/// async fn signup() -> &'static str {
///     let registered = after_with(WELCOME_MAIL, async move {
///         // ... talk to the mail server ...
///         Ok::<(), std::io::Error>(())
///     });
///     if let Err(err) = registered {
///         tracing::warn!(%err, "welcome mail not scheduled");
///     }
///     "welcome"
/// }
///
/// let runtime = AfterRuntime::builder().build();
/// let app: Router = Router::new()
///     .route("/signup", post(signup))
///     .layer(AfterLayer::new(runtime));
/// # let _ = app;
/// ```
#[track_caller]
pub fn after_with<F>(options: TaskOptions, future: F) -> Result<(), AfterError>
where
    F: Future + Send + 'static,
    F::Output: TaskOutput,
{
    let location = Location::caller();
    let scope = current::current().ok_or(AfterError::new(AfterErrorKind::NoScope))?;
    scope.register(Job::with_options(future, location, options))
}
