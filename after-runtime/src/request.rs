//! What a request's tasks share of it: who it was (method, path, span, the tokio
//! runtime that served it) and what they may read (headers, cookies).
//!
//! A leaf: it imports nothing of the engine. Everything here is copied out of the
//! request when it arrives, because values hyper hands out (a `Uri`, a
//! `HeaderValue`) are slices of the connection's read buffer, and holding one for as
//! long as the tasks run would pin that buffer.

use std::sync::{Arc, OnceLock};

use cookie::{Cookie, CookieJar};
use http::{HeaderMap, HeaderValue, Method, header::COOKIE};

/// Who a request was, as its tasks' logs, spans and spawning need it.
pub(crate) struct RequestInfo {
    pub(crate) method: Method,
    /// The request's path, copied: see the module docs.
    pub(crate) path: Path,
    /// The span current where the scope was made (where the request entered
    /// `AfterLayer`, or the handler's extractors ran without it); task spans follow
    /// from it.
    pub(crate) span: tracing::Span,
    /// The tokio runtime serving the request, where its tasks are spawned: the
    /// response may finish where no runtime is current. Not looked up for an
    /// `AfterRuntime` that spawns on threads or a handle of its own.
    pub(crate) handle: Option<tokio::runtime::Handle>,
}

impl RequestInfo {
    /// A request being served here; with `spawn_here`, on the current tokio runtime
    /// if there is one.
    #[inline]
    pub(crate) fn new(method: Method, path: Path, span: tracing::Span, spawn_here: bool) -> Self {
        RequestInfo {
            method,
            path,
            span,
            handle: spawn_here
                .then(|| tokio::runtime::Handle::try_current().ok())
                .flatten(),
        }
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

/// The request's headers, copied once when a block needs them, and its cookies,
/// parsed from them once on first use.
#[derive(Default)]
pub(crate) struct Captured {
    headers: OnceLock<Arc<HeaderMap>>,
    /// Boxed: most requests never read their cookies, and the scope is moved.
    cookies: OnceLock<Box<CookieJar>>,
}

impl Captured {
    /// Copies the request's headers, the first time only. Copied value by value
    /// rather than cloned: cloned values share hyper's read buffer and would pin it.
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

    /// The captured headers; none if they were never captured.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_path_is_kept_inline_and_a_long_one_on_the_heap() {
        let short = Path::new("/orders/7");
        assert!(matches!(short, Path::Inline { .. }));
        assert_eq!(short.as_str(), "/orders/7");
        let exact = "/".repeat(Path::INLINE);
        assert!(matches!(Path::new(&exact), Path::Inline { .. }));
        let long = "/é".repeat(Path::INLINE);
        let heap = Path::new(&long);
        assert!(matches!(heap, Path::Heap(_)));
        assert_eq!(heap.as_str(), long);
    }

    #[test]
    fn cookies_skip_pairs_that_do_not_parse() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; ; junk; b=2"));
        headers.append(COOKIE, HeaderValue::from_bytes(b"c=\xff; d=4").unwrap());
        let captured = Captured::default();
        captured.capture_headers(&headers);
        let jar = captured.cookies();
        let mut names: Vec<_> = jar.iter().map(|c| c.name().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "d"]);
    }

    #[test]
    fn headers_are_captured_once_and_keep_their_sensitivity() {
        let mut headers = HeaderMap::new();
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, secret);
        let captured = Captured::default();
        captured.capture_headers(&headers);
        captured.capture_headers(&HeaderMap::new()); // later calls change nothing
        let copy = captured.headers();
        let value = &copy[http::header::AUTHORIZATION];
        assert_eq!(value, "token");
        assert!(value.is_sensitive());
    }
}
