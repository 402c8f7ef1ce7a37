//! What `#[with_after]` generates calls to. Not public API: no stability promises.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Once};

use axum_core::extract::FromRequestParts;
use http::request::Parts;

use crate::context::{Cookies, Headers};
use crate::job::Job;
use crate::runtime::AfterRuntime;
use crate::scope::{self, LayerScope, Path, Release, RequestScope};
pub use crate::task::Location;
use crate::task::TaskOutput;

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
        Cookies(Some(self.0.clone()))
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The hidden first extractor of a `#[with_after]` handler. `CAPTURE` is whether some
/// `after!` block mentions `headers` or `cookies`, so only then are headers copied.
/// `EAGER` is no longer used: the scope is always found while extracting.
///
/// Under `AfterLayer` it joins the layer's scope, found in the request's extensions
/// (so also when middleware runs the handler in another task), else in the
/// task-local; without the layer, it makes its own on [`AfterRuntime::global`] and
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
        let layer = parts
            .extensions
            .get::<LayerScope>()
            .map(|layer| layer.0.clone())
            .or_else(scope::layer_scope);
        let (scope, release) = match layer {
            Some(scope) => (scope, None),
            None => {
                warn_no_layer();
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
            context: Context(scope),
            _release: release,
        })
    }
}

/// Forgetting the layer is easy and otherwise silent: the tasks still run, on a
/// runtime the application may never drain. Said once per process.
fn warn_no_layer() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "a #[with_after] handler ran without AfterLayer: its after tasks run on \
             AfterRuntime::global(), started when the handler returns (not when the \
             response is sent) and not drained by your runtime's shutdown; add \
             `.layer(AfterLayer::new(runtime.clone()))` to the router, or drain \
             AfterRuntime::global().shutdown(grace) at exit",
        );
    });
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
