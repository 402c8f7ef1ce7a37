//! The threads of [`Builder::dedicated_threads`](crate::Builder::dedicated_threads):
//! the tokio runtime an `AfterRuntime` owns, its threads' priority, and stopping it
//! without leaking a thread, from `shutdown` or from the drop of the last handle.
//!
//! The priority is set through the `thread-priority` crate rather than `libc`: it
//! wraps `pthread_setschedparam` and `setpriority` in a safe API, so this crate keeps
//! `unsafe_code = "forbid"`, and it is maintained for the platforms tokio runs on.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

use crate::config::ThreadPriority;

/// How long stopping the threads waits for them to end. Tasks have ended by then
/// (a shutdown drained them), so the threads end at once; the bound is for a task
/// that blocks its thread and never yields.
const JOIN_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    /// Whether this thread is one of some `AfterRuntime`'s own threads: such a
    /// thread cannot wait for its own runtime to stop.
    static OWN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// A tokio runtime of threads of the `AfterRuntime`'s own.
pub(super) struct OwnThreads {
    /// Taken by the first `stop`; held while it joins, so every caller of
    /// `shutdown` returns once the threads have ended.
    runtime: tokio::sync::Mutex<Option<Stopping>>,
}

impl OwnThreads {
    /// Starts `threads` threads named `name`, at `priority`; returns them and the
    /// handle tasks are spawned with.
    pub(super) fn start(
        threads: usize,
        priority: ThreadPriority,
        name: &str,
    ) -> io::Result<(Self, Handle)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || {
                let _ = OWN_THREAD.try_with(|own| own.set(true));
                lower_priority(priority);
            })
            .build()?;
        let handle = runtime.handle().clone();
        let runtime = tokio::sync::Mutex::new(Some(Stopping(Some(runtime))));
        Ok((OwnThreads { runtime }, handle))
    }

    /// Stops the threads and, with `join`, waits until they have ended (at most a
    /// bound, for a task that blocks its thread). Called from one of these threads,
    /// it cannot wait for itself: the threads stop once its task yields.
    pub(super) async fn stop(&self, join: bool) {
        let mut slot = self.runtime.lock().await;
        let Some(runtime) = slot.take() else {
            return;
        };
        if !join || on_own_thread() {
            drop(runtime); // stops in the background
            return;
        }
        // Waiting for threads blocks; an async context must not, so a plain thread
        // waits and this task awaits it.
        let (joined, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("after-join".into())
            .spawn(move || {
                runtime.join();
                let _ = joined.send(());
            });
        if spawned.is_ok() {
            let _ = done.await;
        }
    }
}

impl Drop for OwnThreads {
    /// The last handle of the `AfterRuntime` is gone: stop the threads. Where
    /// blocking is allowed (no tokio runtime is current), wait for them to end;
    /// elsewhere (a task, an async `main`) a plain thread waits instead, since
    /// dropping a tokio runtime in an async context panics.
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.get_mut().take() else {
            return;
        };
        if Handle::try_current().is_err() && !on_own_thread() {
            runtime.join();
        } else {
            // If no thread can be started, the closure drops `runtime` here, which
            // stops the threads in the background.
            let _ = std::thread::Builder::new()
                .name("after-join".into())
                .spawn(move || runtime.join());
        }
    }
}

impl std::fmt::Debug for OwnThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnThreads").finish_non_exhaustive()
    }
}

/// A runtime on its way to stopping: `join` waits for its threads; dropped
/// unjoined, it stops them in the background, which never blocks nor panics.
struct Stopping(Option<Runtime>);

impl Stopping {
    /// Stops the runtime and waits for its threads to end. Blocks: call it only
    /// where no tokio runtime is current.
    fn join(mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_timeout(JOIN_WAIT);
        }
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn on_own_thread() -> bool {
    OWN_THREAD.try_with(Cell::get).unwrap_or(false)
}

/// Sets the calling thread's priority (Linux), once, as it starts. A refusal is
/// logged once per process: the threads still run, at the priority they inherited.
#[cfg(target_os = "linux")]
fn lower_priority(priority: ThreadPriority) {
    use std::sync::Once;
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority as Os, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };

    let (value, policy) = match priority {
        ThreadPriority::Idle => (
            Os::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ),
        ThreadPriority::Nice(nice) => {
            let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
            (nice_priority(nice, policy), policy)
        }
        ThreadPriority::Inherit => return,
    };
    if let Err(error) = set_thread_priority_and_policy(thread_native_id(), value, policy) {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                ?priority,
                ?error,
                "after-runtime: could not set the priority of its dedicated threads; \
                 they run at the priority they inherited"
            );
        });
    }
}

/// The crate's portable value (0 to 99) that stands for the nice value `nice` under
/// `policy`: `setpriority` is reached through it.
#[cfg(target_os = "linux")]
fn nice_priority(
    nice: i8,
    policy: thread_priority::ThreadSchedulePolicy,
) -> thread_priority::ThreadPriority {
    use thread_priority::{ThreadPriority as Os, ThreadPriorityValue};

    let wanted =
        i32::from(nice.clamp(thread_priority::NICENESS_MAX, thread_priority::NICENESS_MIN));
    (0..=99u8)
        .filter_map(|p| ThreadPriorityValue::try_from(p).ok())
        .map(Os::Crossplatform)
        .min_by_key(|value| {
            value
                .to_posix(policy)
                .map_or(i32::MAX, |posix| (posix - wanted).abs())
        })
        .unwrap_or(Os::Min)
}

/// Elsewhere the threads keep the priority they inherited.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_priority: ThreadPriority) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};

    #[test]
    fn every_nice_value_has_a_portable_value_that_stands_for_it() {
        let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        for nice in -20..=19 {
            assert_eq!(
                nice_priority(nice, policy).to_posix(policy).unwrap(),
                i32::from(nice)
            );
        }
        // Out of range: clamped.
        assert_eq!(nice_priority(100, policy).to_posix(policy).unwrap(), 19);
        assert_eq!(nice_priority(-100, policy).to_posix(policy).unwrap(), -20);
    }
}
