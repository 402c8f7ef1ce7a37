//! The public task contract: what a task may return ([`TaskOutput`]) and where it
//! was written ([`Location`]). The engine's own record of a task is in `job.rs`.
//!
//! A leaf: it imports nothing of the engine.

use std::fmt::Display;

/// The values an after task may end with: `()`, or `Result<(), E>` where `E: Display`.
///
/// An `Err` is logged at error level and counted in
/// [`Stats::failed`](crate::Stats::failed); it never reaches the client.
///
/// ```
/// use after_runtime::TaskOutput;
///
/// fn accepts<T: TaskOutput>(_: T) {}
/// accepts(());
/// accepts(Ok::<(), std::io::Error>(()));
/// accepts(Err::<(), String>("webhook returned 503".to_owned()));
/// ```
///
/// A task that never ends normally is accepted too: under edition 2024 its value is
/// the never type `!`.
///
/// ```
/// use after_runtime::TaskOutput;
///
/// fn accepts_task<F: std::future::Future<Output: TaskOutput>>(_: F) {}
/// accepts_task(async { todo!("send the receipt") });
/// ```
///
/// ```compile_fail
/// # fn accepts<T: after_runtime::TaskOutput>(_: T) {}
/// accepts(42); // a task's value is dropped, so it must be `()` or a `Result<(), E>`
/// ```
#[diagnostic::on_unimplemented(
    message = "an after task must end in `()` or `Result<(), E>` with `E: Display`, not `{Self}`",
    label = "this task ends in `{Self}`"
)]
pub trait TaskOutput: sealed::Sealed + Send + 'static {
    /// The error message, if the task failed.
    #[doc(hidden)]
    fn into_error(self) -> Option<String>;
}

impl TaskOutput for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: Display + Send + 'static> TaskOutput for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// A block that never ends normally (`todo!()`, `panic!`, an endless loop) has the
/// never type `!` as its value under edition 2024; stable Rust can name it only as a
/// function pointer's return type.
mod never {
    pub trait Returns {
        type Output;
    }

    impl<R> Returns for fn() -> R {
        type Output = R;
    }

    pub(crate) type Never = <fn() -> ! as Returns>::Output;
}

// Left out of the "types that implement it" list in errors: users should write
// `()` or `Result<(), E>`, and the type's spelling here would only confuse.
#[diagnostic::do_not_recommend]
impl TaskOutput for never::Never {
    fn into_error(self) -> Option<String> {
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
    impl Sealed for super::never::Never {}
}

/// Where a task was registered: its `after!` block or `after()` call.
///
/// Displays as `file:line:column`, the form rustc and panics use, so editors and
/// terminals can jump to it.
///
/// ```
/// use after_runtime::Location;
///
/// # #[tokio::main] async fn main() {
/// let here = Location::caller();
/// assert_eq!(here.file(), file!());
/// assert!(here.to_string().starts_with(file!()));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Location {
    file: &'static str,
    line: u32,
    column: u32,
}

impl Location {
    /// A location from its parts; generated code writes these.
    #[doc(hidden)]
    pub const fn new(file: &'static str, line: u32, column: u32) -> Self {
        Location { file, line, column }
    }

    /// Where this is called; inside a `#[track_caller]` function, where that
    /// function is called (and so on up), as [`std::panic::Location::caller`].
    /// [`after()`](fn@crate::after) is `#[track_caller]`, so a helper marked
    /// `#[track_caller]` that calls it records its own caller's line.
    ///
    /// ```
    /// # use after_runtime::Location;
    /// assert_eq!(Location::caller().line(), line!());
    /// ```
    #[track_caller]
    pub fn caller() -> Self {
        let caller = std::panic::Location::caller();
        Location::new(caller.file(), caller.line(), caller.column())
    }

    /// The source file, as `file!()` names it.
    ///
    /// ```
    /// # use after_runtime::Location;
    /// assert!(Location::caller().file().ends_with(".rs"));
    /// ```
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line, starting at 1.
    ///
    /// ```
    /// # use after_runtime::Location;
    /// assert!(Location::caller().line() >= 1);
    /// ```
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, starting at 1.
    ///
    /// ```
    /// # use after_runtime::Location;
    /// assert!(Location::caller().column() >= 1);
    /// ```
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
