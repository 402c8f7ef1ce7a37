//! The public task contract: what a task may return ([`TaskOutput`]) and where it
//! was written ([`Location`]). The engine's own record of a task is in `job.rs`.
//!
//! A leaf: it imports nothing of the engine.

use std::fmt::{self, Display};
use std::time::Duration;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Options for one task: a name and a timeout of its own. In `after!` they come
/// before the block (`after!(name = "welcome-mail", timeout = secs(5), { ... })`);
/// with a future, pass them to [`after_with`](crate::after_with).
///
/// - The **name** says which work a task is, in its log lines (field `task`), its
///   `after_task` span (field `task`), the `task` label of the
///   `after_task_duration_seconds` metric, the [`ShutdownReport`](crate::ShutdownReport)
///   and [`AfterRuntime::task_stats`](crate::AfterRuntime::task_stats). A
///   `&'static str`, so the set of names, and of metric labels, is bounded by the code.
///   Tasks without one are told apart by where they were registered.
/// - The **timeout** replaces the runtime's
///   [`task_timeout`](crate::Builder::task_timeout) for this task.
///
/// ```
/// use std::time::Duration;
/// use after_runtime::TaskOptions;
///
/// let mail = TaskOptions::new().name("welcome-mail").timeout(Duration::from_secs(5));
/// # let _ = mail;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TaskOptions {
    pub(crate) name: Option<&'static str>,
    pub(crate) timeout: Option<Duration>,
}

impl TaskOptions {
    /// No name, and the runtime's timeout.
    ///
    /// ```
    /// # use after_runtime::TaskOptions;
    /// assert_eq!(TaskOptions::new(), TaskOptions::default());
    /// ```
    pub const fn new() -> Self {
        TaskOptions {
            name: None,
            timeout: None,
        }
    }

    /// Names the task.
    ///
    /// ```
    /// # use after_runtime::TaskOptions;
    /// assert_ne!(TaskOptions::new().name("audit"), TaskOptions::new());
    /// ```
    pub const fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Cancels the task, counted as timed out, once it has run for `timeout`,
    /// whatever the runtime's [`task_timeout`](crate::Builder::task_timeout).
    ///
    /// ```
    /// # use after_runtime::TaskOptions;
    /// # use std::time::Duration;
    /// let quick = TaskOptions::new().timeout(Duration::from_millis(250));
    /// assert_ne!(quick, TaskOptions::new());
    /// ```
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Which after work a task is, as [`AfterRuntime::task_stats`](crate::AfterRuntime::task_stats)
/// groups tasks: by name, or, for tasks without one, by where they were registered.
///
/// Displays as the name, or as `file:line:column`.
///
/// ```
/// use after_runtime::{Location, TaskKey};
///
/// assert_eq!(TaskKey::Name("welcome-mail").to_string(), "welcome-mail");
/// let here = Location::caller();
/// assert_eq!(TaskKey::Location(here).to_string(), here.to_string());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum TaskKey {
    /// Tasks given this name, wherever they were registered.
    Name(&'static str),
    /// Tasks without a name registered here.
    Location(Location),
}

impl Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKey::Name(name) => f.write_str(name),
            TaskKey::Location(location) => Display::fmt(location, f),
        }
    }
}

/// Where a task was registered, and its name: what every log line, count and report
/// entry of the task says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    pub(crate) location: Location,
    pub(crate) name: Option<&'static str>,
}

impl Site {
    /// The group the task is counted in.
    pub(crate) fn key(&self) -> TaskKey {
        match self.name {
            Some(name) => TaskKey::Name(name),
            None => TaskKey::Location(self.location),
        }
    }
}

impl From<Location> for Site {
    fn from(location: Location) -> Self {
        Site {
            location,
            name: None,
        }
    }
}
