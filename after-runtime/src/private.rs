//! What `#[with_after]` generates calls to. Not public API: no stability promises.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Once};

use axum_core::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use http::{Extensions, Method, Uri};

use crate::context::{Cookies, Headers};
use crate::job::Job;
use crate::runtime::AfterRuntime;
use crate::scope::{self, LayerScope, Path, Release, RequestScope};
use crate::task::TaskOutput;
pub use crate::task::{Location, TaskOptions};

/// The error type of an `after!` block that uses `?` and ends in a plain `Ok(())`,
/// in a statement, or in a `()` value, so `?` accepts any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The value of an `after!` block that uses `?` and does not end in `Ok(..)` or
/// `Err(..)`, which the macro cannot type: [`finish`] makes `()` (and a block that
/// never ends normally) `Ok::<(), BoxError>(())`, and keeps a `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "an after task must end in `()` or `Result<(), E>` with `E: Display`, not `{Self}`",
    label = "this block ends in `{Self}`"
)]
pub trait BlockValue {
    /// What the task returns.
    type Output;

    /// `self` as what the task returns.
    fn into_output(self) -> Self::Output;
}

impl BlockValue for () {
    type Output = Result<(), BoxError>;

    fn into_output(self) -> Self::Output {
        Ok(())
    }
}

impl<E> BlockValue for Result<(), E> {
    type Output = Self;

    fn into_output(self) -> Self {
        self
    }
}

// Left out of the "types that implement it" list in errors, as the spelling below
// would only confuse.
#[diagnostic::do_not_recommend]
impl BlockValue for never::Never {
    type Output = Result<(), BoxError>;

    fn into_output(self) -> Self::Output {
        self
    }
}

/// A block that never ends normally has the never type `!` as its value under
/// edition 2024; stable Rust can name it only as a function pointer's return type.
mod never {
    pub trait Returns {
        type Output;
    }

    impl<R> Returns for fn() -> R {
        type Output = R;
    }

    pub(crate) type Never = <fn() -> ! as Returns>::Output;
}

/// The task's value for a block that uses `?` and ends in `value`; see [`BlockValue`].
pub fn finish<T: BlockValue>(value: T) -> T::Output {
    value.into_output()
}

/// A request's scope as generated code holds it: borrowed in the handler, and owned
/// by each `after!` closure, which receives a clone of it.
#[derive(Clone)]
pub struct TaskContext(Arc<RequestScope>);

impl TaskContext {
    /// The request's headers.
    pub fn headers(&self) -> Headers {
        Headers(self.0.headers())
    }

    /// The request's cookies.
    pub fn cookies(&self) -> Cookies {
        Cookies(Some(self.0.clone()))
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The hidden first extractor of a `#[with_after]` handler with parameters of its
/// own whose blocks do not read the request's `headers` or `cookies` (without
/// parameters, [`OnlyScope`]).
///
/// Under `AfterLayer` it joins the layer's scope, found in the request's extensions
/// (so also when middleware runs the handler in another task), else the scope
/// current where it runs; without the layer, it makes its own on
/// [`AfterRuntime::global`] and releases it when the handler's future completes or
/// is dropped.
pub struct Scope {
    context: TaskContext,
    _release: Option<Release>,
}

impl Scope {
    /// The context `after!` registrations use.
    pub fn context(&self) -> &TaskContext {
        &self.context
    }

    fn join(method: &Method, uri: &Uri, extensions: &Extensions) -> Self {
        // The extension first: it is this request's, wherever its handler runs. The
        // current scope is another request's when middleware drives this handler
        // from within that request's poll (batching, single-flight).
        let layer = extensions
            .get::<LayerScope>()
            .map(|layer| layer.0.clone())
            .or_else(scope::layer_scope);
        let (scope, release) = match layer {
            Some(scope) => (scope, None),
            None => {
                warn_no_layer();
                let scope = Arc::new(RequestScope::new(
                    AfterRuntime::global(),
                    method.clone(),
                    Path::new(uri.path()),
                    scope::current_span(),
                ));
                (scope.clone(), Some(Release::standalone(scope)))
            }
        };
        Scope {
            context: TaskContext(scope),
            _release: release,
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Scope::join(&parts.method, &parts.uri, &parts.extensions))
    }
}

/// The hidden first extractor of a `#[with_after]` handler with parameters of its
/// own where some block reads `headers` or `cookies`: a [`Scope`] that also copies
/// the request's headers.
#[derive(Debug)]
pub struct ScopeWithHeaders(Scope);

impl ScopeWithHeaders {
    /// The context `after!` registrations use.
    pub fn context(&self) -> &TaskContext {
        self.0.context()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ScopeWithHeaders {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let scope = Scope::join(&parts.method, &parts.uri, &parts.extensions);
        // Headers are only visible here, while extracting: copied now, for every
        // request, whether or not a block runs.
        scope.context.0.capture_headers(&parts.headers);
        Ok(ScopeWithHeaders(scope))
    }
}

/// The hidden extractor of a `#[with_after]` handler with no parameter of its own:
/// a [`Scope`] (that copies the request's headers when `HEADERS`) taken from the
/// whole request, which spares axum splitting the request into parts for it.
#[derive(Debug)]
pub struct OnlyScope<const HEADERS: bool>(Scope);

impl<const HEADERS: bool> OnlyScope<HEADERS> {
    /// The context `after!` registrations use.
    pub fn context(&self) -> &TaskContext {
        self.0.context()
    }
}

impl<S: Send + Sync, const HEADERS: bool> FromRequest<S> for OnlyScope<HEADERS> {
    type Rejection = Infallible;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Infallible> {
        let scope = Scope::join(req.method(), req.uri(), req.extensions());
        if HEADERS {
            scope.context.0.capture_headers(req.headers());
        }
        Ok(OnlyScope(scope))
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
pub fn register<F, Fut>(context: &TaskContext, location: Location, task: F)
where
    F: FnOnce(TaskContext) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let future = task(context.clone());
    let _ = context.0.register(Job::new(future, location));
}

/// [`register`], for a block written with options (`after!(name = "..", { .. })`).
pub fn register_with<F, Fut>(
    context: &TaskContext,
    location: Location,
    options: TaskOptions,
    task: F,
) where
    F: FnOnce(TaskContext) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let future = task(context.clone());
    let _ = context
        .0
        .register(Job::with_options(future, location, options));
}
