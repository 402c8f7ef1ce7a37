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
#[derive(Clone)]
pub struct Context(Arc<RequestScope>);

impl Context {
    /// The request's headers.
    pub fn headers(&self) -> Headers {
        Headers(self.0.headers())
    }

    /// The request's cookies.
    pub fn cookies(&self) -> Cookies {
        Cookies(self.0.clone())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The hidden first extractor of a `#[with_after]` handler. `CAPTURE` is whether some
/// `after!` block mentions `headers` or `cookies`, so only then are headers cloned.
///
/// Under `AfterLayer` it joins the layer's scope; without it, it makes its own and
/// releases it when the handler's future completes or is dropped.
pub struct Scope<const CAPTURE: bool> {
    context: Context,
    _release: Option<Release>,
}

impl<const CAPTURE: bool> Scope<CAPTURE> {
    /// The context `after!` registrations use.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl<const CAPTURE: bool> fmt::Debug for Scope<CAPTURE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, const CAPTURE: bool> FromRequestParts<S> for Scope<CAPTURE> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
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
            scope.capture_headers(&parts.headers);
        }
        Ok(Scope {
            context: Context(scope),
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
    let future = task(context.clone());
    let _ = context.0.register(Job::new(future, location));
}
