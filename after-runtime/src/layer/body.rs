//! The response body wrapper whose end, or drop, starts the request's tasks.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::outcome::Delivery;
use crate::scope::Release;

pin_project! {
    /// The response body of [`After`](super::After): the inner body unchanged, plus a
    /// drop guard that starts the request's tasks when the body ends (delivered) or
    /// is dropped before its end (aborted).
    ///
    /// It is a guard rather than an end-of-stream check because hyper drops bodies
    /// it knows are done (empty, `HEAD`, `204`, known length) without polling them to
    /// the end. Holds nothing when the request registered nothing.
    ///
    /// ```
    /// use after_runtime::{after, layer::After, AfterRuntime};
    /// use http_body_util::BodyExt;
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main] async fn main() {
    /// let runtime = AfterRuntime::builder().build();
    /// let svc = After::new(
    ///     tower::service_fn(|_: http::Request<()>| async {
    ///         after(async {}).unwrap();
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    ///     }),
    ///     runtime.clone(),
    /// );
    /// let body = svc.oneshot(http::Request::new(())).await.unwrap().into_body();
    /// assert_eq!(runtime.stats().pending, 1); // held while the body is unread
    /// let bytes = body.collect().await.unwrap().to_bytes();
    /// assert_eq!(bytes, "hi");
    /// assert_eq!(runtime.stats().pending, 0); // the body ended: the task started
    /// # }
    /// ```
    pub struct AfterBody<B> {
        #[pin]
        inner: B,
        release: Option<Release>,
        // Bytes still to send when the length is known (`Content-Length` or an exact
        // size hint): hyper stops polling once it has written them.
        remaining: Option<u64>,
    }
}

impl<B: Body> AfterBody<B> {
    pub(crate) fn new(
        inner: B,
        release: Option<Release>,
        no_body: bool,
        declared: Option<u64>,
    ) -> Self {
        let mut release = release;
        let remaining = release
            .as_ref()
            .and(declared.or_else(|| inner.size_hint().exact()));
        if let Some(release) = &mut release {
            // Nothing left to send: the response is whole once the head is out, which
            // is when hyper drops the body.
            if no_body || inner.is_end_stream() || remaining == Some(0) {
                release.outcome.delivery = Delivery::Delivered;
            }
        }
        AfterBody {
            inner,
            release,
            remaining,
        }
    }
}

impl<B> std::fmt::Debug for AfterBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterBody")
            .field("release", &self.release)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for AfterBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        if this.release.is_none() {
            // Nothing to release (most requests): pass frames straight through.
            return this.inner.poll_frame(cx);
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let (Some(Ok(frame)), Some(remaining)) = (&frame, this.remaining.as_mut())
            && let Some(data) = frame.data_ref()
        {
            *remaining = remaining.saturating_sub(data.remaining() as u64);
        }
        let finished = match &frame {
            None => Some(Delivery::Delivered),
            Some(Err(_)) => Some(Delivery::Aborted),
            Some(Ok(_)) if this.inner.is_end_stream() || *this.remaining == Some(0) => {
                Some(Delivery::Delivered)
            }
            Some(Ok(_)) => None,
        };
        if let Some(delivery) = finished
            && let Some(mut release) = this.release.take()
        {
            release.outcome.delivery = delivery;
            // Dropping it starts the tasks now, not when the server drops the body.
            drop(release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
