//! The response future of [`After`](super::After).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::Response;
use pin_project_lite::pin_project;

use super::body::AfterBody;
use crate::outcome::Delivery;
use crate::scope::{REQUEST, Release, enter};

pin_project! {
    /// Runs the inner service's future inside the request scope, and hands the
    /// scope to the response body.
    ///
    /// ```
    /// use after_runtime::{after, layer::After, AfterRuntime};
    /// use tower::{Service, ServiceExt};
    ///
    /// # #[tokio::main] async fn main() {
    /// let mut svc = After::new(
    ///     tower::service_fn(|_: http::Request<()>| async {
    ///         after(async {}).unwrap(); // inside the scope the future sets
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    ///     }),
    ///     AfterRuntime::builder().build(),
    /// );
    /// let future = svc.ready().await.unwrap().call(http::Request::new(()));
    /// let response = future.await.unwrap(); // a `Response<AfterBody<String>>`
    /// assert_eq!(response.status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        // Polled and dropped with the request's scope current; dropped as soon as it
        // has produced the response, so that only code that can still register
        // holds the scope.
        #[pin]
        inner: Option<F>,
        // Holds the scope. Dropped with the future before a response: the tasks
        // start, "not produced".
        release: Option<Release>,
        started: Instant,
        is_head: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped before it produced a response (the client went away, a timeout
            // fired): inside the scope, as it was polled, so an `after()` in a
            // `Drop` of the handler's registers into this request.
            if let Some(release) = this.release.as_ref()
                && this.inner.is_some()
            {
                let mut inner = this.inner;
                enter(&REQUEST, &release.scope, move || inner.set(None));
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, release: Release, is_head: bool) -> Self {
        ResponseFuture {
            inner: Some(inner),
            release: Some(release),
            started: Instant::now(),
            is_head,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<AfterBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let Some(scope) = this.release.as_ref().map(|release| &release.scope) else {
                panic!("`ResponseFuture` polled after completion");
            };
            let mut inner = this.inner;
            enter(&REQUEST, scope, || {
                let polled = inner.as_mut().as_pin_mut().map(|inner| inner.poll(cx));
                if let Some(Poll::Ready(_)) = polled {
                    inner.set(None);
                }
                polled
            })
        };
        let result = ready!(polled.expect("`ResponseFuture` polled after completion"));
        // On an error, dropping the release starts the tasks as "not produced".
        let release = this.release.take();
        Poll::Ready(result.map(|response| {
            let status = response.status();
            let release = release.and_then(|mut release| {
                release.outcome.status = Some(status);
                release.outcome.time_to_response = Some(this.started.elapsed());
                release.outcome.delivery = Delivery::Aborted;
                // Nothing registered, and nothing left that could: the tasks are
                // released (none) now, and the body passes through unwatched.
                release.may_hold_tasks().then_some(release)
            });
            // These responses have no body on the wire, whatever the service
            // returned: the server drops it once the head is out.
            let no_body = *this.is_head
                || status.is_informational()
                || status == http::StatusCode::NO_CONTENT
                || status == http::StatusCode::NOT_MODIFIED;
            // Only a body that releases tasks, and whose length its size hint does
            // not give, needs the declared `Content-Length` (a header lookup).
            let declared = release.as_ref().and_then(|_| {
                let body = response.body();
                if body.is_end_stream() || body.size_hint().exact().is_some() {
                    return None;
                }
                let length = response.headers().get(http::header::CONTENT_LENGTH)?;
                length.to_str().ok()?.parse().ok()
            });
            response.map(|body| AfterBody::new(body, release, no_body, declared))
        }))
    }
}
