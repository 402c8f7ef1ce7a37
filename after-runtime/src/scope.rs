//! The request scope: where a request's tasks wait until its response is finished,
//! and the task-locals that let `after()` find it.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use cookie::{Cookie, CookieJar};
use http::{HeaderMap, HeaderValue, Method, header::COOKIE};
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::error::{AfterError, AfterErrorKind};
use crate::executor;
use crate::outcome::{Delivery, Outcome};
use crate::runtime::{AfterRuntime, WaitingKey};
use crate::task::Location;
use crate::task::{Job, Jobs, TaskOutput};

tokio::task_local! {
    /// Set by `AfterLayer` around the inner service's future.
    pub(crate) static REQUEST: Arc<RequestScope>;
    /// Set by the executor around a running task. Tasks are spawned, so a running
    /// task's scope is always outside any request scope set within it: `REQUEST`,
    /// when set, is the innermost.
    pub(crate) static RUNNING: Arc<RequestScope>;
}

/// One request's tasks, and what they may read of it.
pub(crate) struct RequestScope {
    pub(crate) runtime: AfterRuntime,
    pub(crate) method: Method,
    /// The request's path, copied: a `Uri` from hyper is a slice of the connection's
    /// read buffer, and holding it for as long as the tasks run would pin 8 KiB per
    /// request.
    pub(crate) path: Path,
    /// The span current where the scope was made (where the request entered
    /// `AfterLayer`, or the handler's extractors ran without it); task spans follow
    /// from it.
    pub(crate) span: tracing::Span,
    /// The tokio runtime serving the request, where its tasks are spawned: the
    /// response may finish where no runtime is current.
    pub(crate) handle: Option<tokio::runtime::Handle>,
    headers: OnceLock<Arc<HeaderMap>>,
    /// Boxed: most requests never read their cookies, and the scope is moved.
    cookies: OnceLock<Box<CookieJar>>,
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
            .field("method", &self.method)
            .field("path", &self.path.as_str())
            .finish_non_exhaustive()
    }
}

/// A copied request path, stored inline when short (most are), so copying it costs
/// no allocation.
#[derive(Clone)]
pub(crate) enum Path {
    Inline { len: u8, bytes: [u8; Path::INLINE] },
    Heap(Box<str>),
}

impl Path {
    const INLINE: usize = 62;

    pub(crate) fn new(path: &str) -> Self {
        if path.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..path.len()].copy_from_slice(path.as_bytes());
            Path::Inline {
                len: path.len() as u8,
                bytes,
            }
        } else {
            Path::Heap(path.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` at a char boundary, so always UTF-8.
            Path::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Path::Heap(path) => path,
        }
    }
}

impl RequestScope {
    pub(crate) fn new(
        runtime: AfterRuntime,
        method: Method,
        path: Path,
        span: tracing::Span,
    ) -> Self {
        RequestScope {
            runtime,
            method,
            path,
            span,
            handle: tokio::runtime::Handle::try_current().ok(),
            headers: OnceLock::new(),
            cookies: OnceLock::new(),
            state: Mutex::new(State::Open {
                jobs: Jobs::default(),
                waiting: None,
            }),
        }
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
        let (admitted, counts) = self.runtime.admit(self, jobs.len(), waiting.is_none());
        let refused = match admitted {
            Ok(key) => {
                *waiting = waiting.or(key);
                jobs.push(job);
                None
            }
            Err(error) => Some((error, job)),
        };
        drop(state);
        // Published outside the scope's lock: a metrics recorder may run any code.
        drop(counts);
        let Some((error, job)) = refused else {
            return Ok(());
        };
        // Logged and dropped outside the scope's lock: a subscriber, or the task's
        // captures, may run any code.
        executor::log_rejected(self, job.location, &error);
        job.drop_unrun();
        Err(error)
    }

    /// The response is finished: hands every waiting task to the executor, in
    /// registration order. Later calls do nothing.
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

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match &*self.state() {
            State::Released(outcome) => Some(*outcome),
            State::Open { .. } => None,
        }
    }

    /// Copies the request's headers for the tasks. Copied value by value rather than
    /// cloned: cloned values share hyper's read buffer and would pin it.
    pub(crate) fn capture_headers(&self, headers: &HeaderMap) {
        self.headers.get_or_init(|| {
            let mut copy = HeaderMap::with_capacity(headers.len());
            for (name, value) in headers {
                let mut owned =
                    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
                owned.set_sensitive(value.is_sensitive());
                copy.append(name.clone(), owned);
            }
            Arc::new(copy)
        });
    }

    pub(crate) fn headers(&self) -> Arc<HeaderMap> {
        self.headers.get_or_init(Default::default).clone()
    }

    /// The request's cookies, parsed once on first use. Pairs that do not parse
    /// (invalid UTF-8, no `=`, empty) are skipped, as axum-extra's `CookieJar` does.
    pub(crate) fn cookies(&self) -> &CookieJar {
        self.cookies.get_or_init(|| {
            let mut jar = CookieJar::new();
            let headers = self.headers.get_or_init(Default::default);
            // Split on `;` before decoding, so one bad pair costs only itself.
            let pairs = headers
                .get_all(COOKIE)
                .into_iter()
                .flat_map(|value| value.as_bytes().split(|&b| b == b';'));
            for pair in pairs {
                let Ok(pair) = std::str::from_utf8(pair) else {
                    continue;
                };
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                if let Ok(cookie) = Cookie::parse_encoded(pair.to_owned()) {
                    jar.add_original(cookie);
                }
            }
            Box::new(jar)
        })
    }
}

/// Releases a request's tasks when dropped, with the outcome it holds. Under
/// `AfterLayer` it is made with the request, held by the response future until the
/// response head is out, then by the body; dropped before a response, it releases
/// the tasks as "not produced".
pub(crate) struct Release {
    scope: Arc<RequestScope>,
    pub(crate) outcome: Outcome,
    /// Keeps a draining runtime waiting for this request: it may still register, and
    /// its tasks wait for its response. Dropped after the release (fields drop after
    /// `drop`), so a draining runtime never sees a moment with nothing in flight.
    _in_flight: TaskTrackerToken,
}

impl Release {
    /// For a request entering `AfterLayer`: "not produced" until a response is.
    pub(crate) fn new(scope: Arc<RequestScope>) -> Self {
        Release {
            _in_flight: scope.runtime.token(),
            scope,
            outcome: Outcome::new(Delivery::NotProduced),
        }
    }

    /// For a scope made without `AfterLayer`, released when its handler ends.
    pub(crate) fn standalone(scope: Arc<RequestScope>) -> Self {
        let mut release = Release::new(scope);
        release.outcome = Outcome::new(Delivery::Unobserved);
        release
    }

    /// Whether a task can still be registered in the scope: one is already waiting,
    /// or code other than this guard (a handler moved to another task, a clone of
    /// the request's extensions) still holds the scope. When not, the response's
    /// body need not be watched.
    pub(crate) fn may_hold_tasks(&self) -> bool {
        Arc::strong_count(&self.scope) > 1 || self.scope.has_waiting()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.scope.release(self.outcome);
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// The request's scope, as `AfterLayer` puts it in the request's extensions: found
/// by `#[with_after]`'s extractor wherever the handler runs, also when middleware
/// moves the handler's future to another task (`tokio::spawn(next.run(req))`),
/// where the task-local is not set.
#[derive(Clone)]
pub(crate) struct LayerScope(pub(crate) Arc<RequestScope>);

/// The span current here, which task spans follow from. With no subscriber ever set
/// there is none, and asking for it costs a thread-local lookup per request.
pub(crate) fn current_span() -> tracing::Span {
    if tracing::dispatcher::has_been_set() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

/// The scope a registration made here belongs to: the request's under `AfterLayer`
/// (the innermost, when a request is served from within a task), else the running
/// task's.
pub(crate) fn current() -> Option<Arc<RequestScope>> {
    layer_scope().or_else(|| RUNNING.try_with(Arc::clone).ok())
}

/// Whether this code runs inside a request scope `AfterLayer` set.
fn in_layer() -> bool {
    REQUEST.try_with(|_| ()).is_ok()
}

/// The request scope `AfterLayer` set, if this code runs inside one.
pub(crate) fn layer_scope() -> Option<Arc<RequestScope>> {
    REQUEST.try_with(Arc::clone).ok()
}

pub(crate) fn running_outcome() -> Option<Outcome> {
    // Inside a request served from within a task, that request has no outcome yet.
    if in_layer() {
        return None;
    }
    RUNNING.try_with(|scope| scope.outcome()).ok().flatten()
}

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
    let location = Location::caller();
    let scope = current().ok_or(AfterError::new(AfterErrorKind::NoScope))?;
    scope.register(Job::new(future, location))
}
