//! What a registered task is: its future, where it was written, and what it returns.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

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

    /// The location of the caller of the function calling this, as
    /// [`std::panic::Location::caller`].
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

/// A task's future, erased; it resolves to the task's error message, if it failed.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// A registered task, waiting for its request to finish or for a free slot.
pub(crate) struct Job {
    pub(crate) future: BoxFuture,
    pub(crate) location: Location,
}

impl Job {
    pub(crate) fn new<F>(future: F, location: Location) -> Self
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        Job {
            future: Box::pin(async move { future.await.into_error() }),
            location,
        }
    }
}

/// Tasks in registration order, the first inline: a request usually registers one.
impl Job {
    /// Drops a task that will not run (rejected, or cancelled before it started).
    /// A value it captured may panic in its `Drop`: that is contained here, and
    /// logged, so the bookkeeping around it (a shutdown, a rejection) always
    /// completes.
    pub(crate) fn drop_unrun(self) {
        let location = self.location;
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(self))) {
            tracing::error!(
                location = %location,
                "a value captured by an after task panicked while being dropped unrun",
            );
            forget_panic(panic);
        }
    }
}

/// Drops a panic's payload, containing a panic in the payload's own `Drop` (whose
/// payload is forgotten).
pub(crate) fn forget_panic(panic: Box<dyn std::any::Any + Send>) {
    if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(panic))) {
        std::mem::forget(again);
    }
}

#[derive(Default)]
pub(crate) struct Jobs {
    first: Option<Job>,
    rest: Vec<Job>,
}

impl Jobs {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The only task (or none), or every task back when there are several.
    pub(crate) fn single(self) -> Result<Option<Job>, Jobs> {
        if self.rest.is_empty() {
            Ok(self.first)
        } else {
            Err(self)
        }
    }

    pub(crate) fn push(&mut self, job: Job) {
        match self.first {
            None => self.first = Some(job),
            Some(_) => self.rest.push(job),
        }
    }
}

impl IntoIterator for Jobs {
    type Item = Job;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Job>, std::vec::IntoIter<Job>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}
