//! The response future of [`After`](super::After).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use super::body::AfterBody;
use crate::scope::Slot;

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
        #[pin]
        inner: TaskLocalFuture<Slot, F>,
        is_head: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: TaskLocalFuture<Slot, F>, is_head: bool) -> Self {
        ResponseFuture { inner, is_head }
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
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        // Dropping a slot that holds a scope releases it as "not produced".
        let slot = this.inner.take_value();
        Poll::Ready(result.map(|response| {
            let release = slot.and_then(|slot| slot.into_release(response.status()));
            let is_head = *this.is_head;
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
            response.map(|body| AfterBody::new(body, release, is_head, declared))
        }))
    }
}
