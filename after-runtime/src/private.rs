//! What `#[with_after]` generates calls to. Not public API: no stability promises.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use http::request::Parts;

use crate::context::{Cookies, Headers};
use crate::runtime::AfterRuntime;
use crate::scope::{self, Path, Release, RequestScope};
pub use crate::task::Location;
use crate::task::{Job, TaskOutput};

/// The error type a block with `?` ending in a plain `Ok(())` gets.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's scope as generated code holds it: in the handler, and as the argument
/// of each `after!` closure.
///
/// Under `AfterLayer`, a handler whose blocks read neither `headers` nor `cookies`, and
/// are all written directly in its body, holds `None`: the layer's scope, which the
/// layer makes at the first registration, so a request whose `after!` blocks never
/// run allocates nothing for them (S11). It is looked up where it is used: in the
/// handler's own task, inside the layer's scope.
pub struct Context(Option<Arc<RequestScope>>);

impl Context {
    /// The scope; `None` only for the layer's, used outside the layer's scope, which
    /// generated code never does.
    fn scope(&self) -> Option<Arc<RequestScope>> {
        self.0.clone().or_else(scope::layer_scope)
    }

    /// The request's headers.
    pub fn headers(&self) -> Headers {
        Headers(
            self.scope()
                .map(|scope| scope.headers())
                .unwrap_or_default(),
        )
    }

    /// The request's cookies.
    pub fn cookies(&self) -> Cookies {
        Cookies(self.scope())
    }
}

impl Clone for Context {
    fn clone(&self) -> Self {
        Context(self.scope())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(scope) => fmt::Debug::fmt(scope, f),
            None => f.write_str("Context(AfterLayer's)"),
        }
    }
}

/// The hidden first extractor of a `#[with_after]` handler. `CAPTURE` is whether some
/// `after!` block mentions `headers` or `cookies`, so only then are headers cloned.
/// `EAGER` is whether some `after!` sits in a closure, an async block or another
/// macro's input, which may run away from the handler's task (a scoped thread, a
/// rayon pool) where the layer's scope cannot be looked up.
///
/// Under `AfterLayer` it joins the layer's scope, looked up at the first registration
/// unless `CAPTURE` or `EAGER` needs it now; without the layer, it makes its own and
/// releases it when the handler's future completes or is dropped.
pub struct Scope<const CAPTURE: bool, const EAGER: bool> {
    context: Context,
    _release: Option<Release>,
}

impl<const CAPTURE: bool, const EAGER: bool> Scope<CAPTURE, EAGER> {
    /// The context `after!` registrations use.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl<const CAPTURE: bool, const EAGER: bool> fmt::Debug for Scope<CAPTURE, EAGER> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, const CAPTURE: bool, const EAGER: bool> FromRequestParts<S>
    for Scope<CAPTURE, EAGER>
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let layer = scope::in_layer();
        if layer && !CAPTURE && !EAGER {
            // The scope waits for the first registration: S11.
            return Ok(Scope {
                context: Context(None),
                _release: None,
            });
        }
        let (scope, release) = match scope::layer_scope() {
            Some(scope) => (scope, None),
            None => {
                let scope = Arc::new(RequestScope::new(
                    AfterRuntime::global(),
                    parts.method.clone(),
                    Path::new(parts.uri.path()),
                    scope::current_span(),
                ));
                (scope.clone(), Some(Release::standalone(scope)))
            }
        };
        if CAPTURE {
            // Headers are only visible here, while extracting: copied now, for every
            // request, whether or not a block runs.
            scope.capture_headers(&parts.headers);
        }
        Ok(Scope {
            context: Context(Some(scope)),
            _release: release,
        })
    }
}

/// Registers the task an `after!` block was rewritten into. Failures to register are
/// already counted and logged by the runtime; the block has nowhere to return them.
pub fn register<F, Fut>(context: &Context, location: Location, task: F)
where
    F: FnOnce(Context) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let layer_scope;
    let scope = match &context.0 {
        Some(scope) => scope,
        None => match scope::layer_scope() {
            Some(scope) => {
                layer_scope = scope;
                &layer_scope
            }
            None => {
                // A handler future polled outside the layer it was extracted in:
                // there is no scope, and so no runtime, to count the task in.
                tracing::error!(
                    location = %location,
                    "after task dropped: its handler ran outside the AfterLayer that served it",
                );
                return;
            }
        },
    };
    let future = task(Context(Some(scope.clone())));
    let _ = scope.register(Job::new(future, location));
}
