//! [`AfterLayer`]: starts a request's after tasks when its response is finished.
//!
//! Laid out like tower-http's middleware: the layer, the service [`After`], its
//! [`ResponseFuture`], and the body wrapper [`AfterBody`] whose end or drop releases
//! the tasks.

mod body;
mod future;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

pub use self::body::AfterBody;
pub use self::future::ResponseFuture;
use crate::runtime::AfterRuntime;
use crate::scope::{LayerScope, Path, Release, RequestScope, current_span};

/// Gives every request a scope for `after!` and [`after()`](crate::after()), and starts
/// the tasks registered in it once the response is finished: its body reached its
/// end or the server dropped it (hyper drops empty, `HEAD` and `204` bodies unpolled).
/// If no response is produced (the handler panicked or was cancelled because the
/// client went away) the tasks start when the inner future is dropped.
///
/// Works with any tower HTTP service (axum, tonic, hyper). Place it outside
/// `CatchPanicLayer` and `TimeoutLayer`, so their responses are the ones it sees,
/// and outside any middleware that calls [`after()`](crate::after()): the last
/// `.layer()` call is the outermost. Each request's scope is made on entry and also
/// put in the request's extensions, where a `#[with_after]` handler finds it even
/// when middleware runs the handler in another task (two or three small
/// allocations per request; see the crate docs).
///
/// ```
/// use after_runtime::{after, AfterLayer, AfterRuntime};
/// use axum::{routing::get, Router};
///
/// let runtime = AfterRuntime::builder().build();
/// let app: Router = Router::new()
///     .route("/", get(|| async {
///         let _ = after(async { tracing::info!("the response is out") });
///         "hello"
///     }))
///     .layer(AfterLayer::new(runtime));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct AfterLayer {
    runtime: AfterRuntime,
}

impl AfterLayer {
    /// A layer whose requests' tasks run on `runtime`.
    ///
    /// ```
    /// # use after_runtime::{AfterLayer, AfterRuntime};
    /// let layer = AfterLayer::new(AfterRuntime::builder().build());
    /// # let _ = layer;
    /// ```
    pub fn new(runtime: AfterRuntime) -> Self {
        AfterLayer { runtime }
    }
}

impl<S> Layer<S> for AfterLayer {
    type Service = After<S>;

    fn layer(&self, inner: S) -> After<S> {
        After {
            inner,
            runtime: self.runtime.clone(),
        }
    }
}

/// The service [`AfterLayer`] wraps around another.
///
/// ```
/// use after_runtime::{layer::After, AfterRuntime};
/// use tower::service_fn;
///
/// let svc = After::new(
///     service_fn(|_req: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
///     }),
///     AfterRuntime::builder().build(),
/// );
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct After<S> {
    inner: S,
    runtime: AfterRuntime,
}

impl<S> After<S> {
    /// Wraps `inner` so its requests' tasks run on `runtime`.
    ///
    /// ```
    /// # use after_runtime::{layer::After, AfterRuntime};
    /// let svc = After::new(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }), AfterRuntime::builder().build());
    /// # let _ = svc;
    /// ```
    pub fn new(inner: S, runtime: AfterRuntime) -> Self {
        After { inner, runtime }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for After<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<AfterBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let scope = Arc::new(RequestScope::new(
            self.runtime.clone(),
            req.method().clone(),
            Path::new(req.uri().path()),
            current_span(),
        ));
        // Found by `#[with_after]` handlers that middleware moved to another task,
        // where the scope the response future makes current (while it polls the
        // inner service's) is not: their tasks stay on this runtime and wait for
        // this response.
        req.extensions_mut().insert(LayerScope(scope.clone()));
        let is_head = req.method() == http::Method::HEAD;
        ResponseFuture::new(self.inner.call(req), Release::new(scope), is_head)
    }
}
