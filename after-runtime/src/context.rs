//! What an `after!` block sees of its request: `headers` and `cookies`.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use cookie::Cookie;
use http::HeaderMap;

use crate::scope::RequestScope;

/// The request's headers, as bound to `headers` inside an `after!` block.
///
/// Captured once when the request arrived and shared by all of its tasks; derefs to
/// [`http::HeaderMap`].
///
/// ```
/// use after_runtime::{after, with_after};
/// use axum::http::header::USER_AGENT;
///
/// #[with_after]
/// async fn handler() -> &'static str {
///     after! {
///         let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
///         tracing::info!(agent, "served");
///     }
///     "ok"
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Clone)]
pub struct Headers(pub(crate) Arc<HeaderMap>);

impl Deref for Headers {
    type Target = HeaderMap;

    fn deref(&self) -> &HeaderMap {
        &self.0
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The request's cookies, as bound to `cookies` inside an `after!` block.
///
/// Parsed with the [`cookie`] crate on first use and shared by all of the request's
/// tasks. Pairs that do not parse (invalid UTF-8, no `=`, empty) are skipped, never a
/// panic, as with axum-extra's `CookieJar`.
///
/// ```
/// use after_runtime::{after, with_after};
///
/// #[with_after]
/// async fn handler() -> &'static str {
///     after! {
///         let session = cookies.get("session-id").map(|c| c.value().to_owned());
///         tracing::info!(?session, "served");
///     }
///     "ok"
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
#[derive(Clone)]
pub struct Cookies(pub(crate) Option<Arc<RequestScope>>);

impl Cookies {
    /// The cookie called `name`, if the request sent one.
    ///
    /// ```
    /// # use after_runtime::Cookies;
    /// fn session(cookies: &Cookies) -> Option<&str> {
    ///     cookies.get("session-id").map(|c| c.value())
    /// }
    /// # let _ = session;
    /// ```
    pub fn get(&self, name: &str) -> Option<&Cookie<'static>> {
        self.0.as_ref()?.cookies().get(name)
    }

    /// Every cookie the request sent (the last one of each name).
    ///
    /// ```
    /// # use after_runtime::Cookies;
    /// fn names(cookies: &Cookies) -> Vec<String> {
    ///     cookies.iter().map(|c| c.name().to_owned()).collect()
    /// }
    /// # let _ = names;
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &Cookie<'static>> {
        self.0.iter().flat_map(|scope| scope.cookies().iter())
    }
}

impl fmt::Debug for Cookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
