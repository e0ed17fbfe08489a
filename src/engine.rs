//! Choosing the I/O engine: the fastest one the kernel allows.
//!
//! [`start`] tries, in order, the ring engine (the client's own io_uring instance and a
//! small executor parked in it: one `io_uring_enter` per loop turn), tokio-uring, and
//! plain tokio on epoll, and says through `tracing` why it fell back. io_uring can be
//! missing (kernels before 5.1), switched off (`kernel.io_uring_disabled`), or filtered
//! by a container's seccomp profile (Docker's default refuses `io_uring_setup`). The
//! client code is the same on every engine; only the engine's socket calls and runtime
//! services differ. [`spawn_local`], [`sleep`], [`timeout`] and [`yield_now`] work on
//! every engine, for user code that must run on any of them.
//!
//! Applications already on compio get the compio engine: inside a compio runtime (their
//! own, or `start_with(Engine::Compio, ..)`) a client picks it. `Auto` never starts one.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use crate::core::error::{Error, ErrorKind, Result};

pub use crate::core::config::{Engine, ENGINE_ENV};
pub use crate::io::ring::setup::RingFeatures;

thread_local! {
    /// The engine of the runtime [`start`] runs on this thread, if any.
    static RUNNING: Cell<Option<Engine>> = const { Cell::new(None) };
}

/// The engine of the runtime that [`start`] is running on this thread, if any; inside a
/// compio runtime the application built itself, [`Engine::Compio`].
pub fn current() -> Option<Engine> {
    match RUNNING.with(|r| r.get()) {
        Some(engine) => Some(engine),
        None if crate::io::compio::is_running() => Some(Engine::Compio),
        None => None,
    }
}

/// Checks whether this process may use io_uring, by setting up (and dropping) a tiny ring.
/// The error says why not: no such system call (old kernel), not permitted (sysctl
/// `kernel.io_uring_disabled`, seccomp), or another errno.
pub fn probe_io_uring() -> Result<()> {
    match crate::io::uring::probe() {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(38) => "the kernel has no io_uring_setup (ENOSYS: kernel older than 5.1?)",
                Some(1) => "io_uring_setup is not permitted (EPERM: kernel.io_uring_disabled or a seccomp profile)",
                Some(13) => "io_uring_setup is not permitted (EACCES: kernel.io_uring_disabled=1 and not in io_uring_group?)",
                Some(12) => "no memory for a ring (ENOMEM: RLIMIT_MEMLOCK too low?)",
                _ => "io_uring_setup failed",
            };
            Err(Error::new(
                ErrorKind::IoUringUnavailable,
                format!("{why}: {e}"),
            ))
        }
    }
}

/// What the ring engine's loop did on this thread so far: turns of the loop and the
/// `io_uring_enter` calls they made. `None` outside the ring engine.
///
/// ```no_run
/// use redis_cluster_uring::engine::{self, Engine};
/// engine::start_with(Engine::Ring, async {
///     let turns = engine::ring_turns().unwrap();
///     assert!(turns.enters <= turns.turns + 1);
/// })
/// .unwrap();
/// ```
pub fn ring_turns() -> Option<RingTurns> {
    crate::io::ring::turns().map(|(turns, enters)| RingTurns { turns, enters })
}

/// Counts of the ring engine's loop ([`ring_turns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingTurns {
    /// Loop turns: each runs the woken tasks and the due timers, then enters the ring
    /// once at most.
    pub turns: u64,
    /// `io_uring_enter` calls (a turn with nothing to submit and ready work enters none).
    pub enters: u64,
}

/// How the ring engine's loop waits in the kernel when no task is ready
/// ([`set_ring_wait`]). Both submit everything queued in the same call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingWait {
    /// Waits for every completion the loop expects (each send in flight, a reply on each
    /// socket sent to), at most this long, then for the first one: a fan-out's replies
    /// from every node in one system call. The default, 20 µs: the lowest latency when
    /// the client's core is otherwise idle (a latency-critical service). Needs Linux
    /// 6.12 (`IORING_FEAT_MIN_TIMEOUT`); on older kernels the loop waits as for
    /// [`RingWait::First`].
    Gather(Duration),
    /// Wakes at the first completion: the least CPU per command, and the most throughput
    /// when every core is busy (a thread-per-core server whose cores are shared with
    /// other work, or with the Redis servers themselves), at a few more system calls per
    /// fan-out and a somewhat higher p50 on an idle core. See README's benchmark.
    First,
}

impl Default for RingWait {
    fn default() -> RingWait {
        RingWait::Gather(Duration::from_micros(
            crate::io::ring::DEFAULT_GATHER_US.into(),
        ))
    }
}

/// Sets how the ring engine's loop on this thread waits ([`RingWait`]), from now on.
/// Fails with [`ErrorKind::Config`] outside the ring engine, or for a gather of a
/// second or more.
///
/// ```no_run
/// use redis_cluster_uring::engine::{self, Engine, RingWait};
/// engine::start_with(Engine::Ring, async {
///     // A thread-per-core server whose cores are all busy: least CPU per command.
///     engine::set_ring_wait(RingWait::First).unwrap();
///     assert_eq!(engine::ring_wait(), Some(RingWait::First));
/// })
/// .unwrap();
/// ```
pub fn set_ring_wait(wait: RingWait) -> Result<()> {
    let us = match wait {
        RingWait::First => 0,
        RingWait::Gather(d) if d >= Duration::from_secs(1) => {
            return Err(Error::new(
                ErrorKind::Config,
                format!("a ring gather of {d:?}: it must be under a second"),
            ))
        }
        // At least 1 µs: zero would mean `First`.
        RingWait::Gather(d) => u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1),
    };
    if crate::io::ring::set_gather_us(us) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            "set_ring_wait outside the ring engine (engine::start with Engine::Ring)",
        ))
    }
}

/// How the ring engine's loop on this thread waits, `None` outside it. A kernel without
/// the minimum wait reports [`RingWait::First`] whatever was set.
pub fn ring_wait() -> Option<RingWait> {
    crate::io::ring::gather_us().map(|us| match us {
        Some(0) | None => RingWait::First,
        Some(us) => RingWait::Gather(Duration::from_micros(us.into())),
    })
}

/// The io_uring features the ring engine uses on this thread, `None` outside it.
pub fn ring_features() -> Option<RingFeatures> {
    crate::io::ring::features()
}

/// Checks whether this process may run the ring engine: a ring with every feature it
/// requires (timed waits, connect, send and receive operations). The error says why not.
pub fn probe_ring() -> Result<()> {
    crate::io::ring::probe().map_err(|e| {
        Error::new(
            ErrorKind::IoUringUnavailable,
            format!("the ring engine cannot run: {e}"),
        )
    })
}

/// The engines [`start`] tries for `Auto`, fastest first (measured by `cluster-bench`:
/// see README), then the fallback that needs nothing of the kernel.
const PREFERENCE: [Engine; 3] = [Engine::Ring, Engine::IoUring, Engine::Epoll];

fn probe(engine: Engine) -> Result<()> {
    built(engine)?;
    match engine {
        Engine::Ring => probe_ring(),
        // compio's driver is io_uring only here (its `polling` fallback is not built).
        Engine::IoUring | Engine::Compio => probe_io_uring(),
        _ => Ok(()),
    }
}

/// Whether this build has `engine`: tokio-uring and compio are features (on by default).
pub(crate) fn built(engine: Engine) -> Result<()> {
    let missing = match engine {
        Engine::IoUring if !cfg!(feature = "tokio-uring") => "tokio-uring",
        Engine::Compio if !cfg!(feature = "compio") => "compio",
        _ => return Ok(()),
    };
    Err(Error::new(
        ErrorKind::Config,
        format!("Engine::{engine} is not in this build (the `{missing}` feature)"),
    ))
}

/// The environment override, when `requested` is `Auto`.
fn forced(requested: Engine) -> Result<Engine> {
    Ok(match (requested, Engine::from_env()?) {
        (Engine::Auto, Some(forced)) => forced,
        (r, _) => r,
    })
}

/// Resolves `Auto` (and the environment override) to a concrete engine for [`start`]:
/// the fastest one the kernel allows.
pub(crate) fn resolve(requested: Engine) -> Result<Engine> {
    match forced(requested)? {
        Engine::Auto => {
            let mut reasons = Vec::new();
            for engine in PREFERENCE {
                match probe(engine) {
                    Ok(()) => {
                        if !reasons.is_empty() {
                            tracing::warn!(reason = %reasons.join("; "), %engine, "faster engines unavailable");
                        }
                        return Ok(engine);
                    }
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            Ok(Engine::Epoll)
        }
        engine => probe(engine).map(|()| engine),
    }
}

/// Resolves an engine for a client created in a tokio runtime the caller built (not
/// [`start`]): `Auto` means tokio-uring when the kernel allows it, epoll otherwise; the
/// ring and compio engines cannot run there.
pub(crate) fn resolve_in_tokio(requested: Engine) -> Result<Engine> {
    match forced(requested)? {
        Engine::Ring => Err(Error::new(
            ErrorKind::Config,
            "Engine::Ring runs only inside engine::start (it is its own runtime)",
        )),
        Engine::Compio => Err(Error::new(
            ErrorKind::Config,
            "Engine::Compio runs only inside a compio runtime (yours, or engine::start's)",
        )),
        Engine::Epoll => Ok(Engine::Epoll),
        Engine::IoUring => {
            built(Engine::IoUring)?;
            probe_io_uring().map(|()| Engine::IoUring)
        }
        Engine::Auto => match built(Engine::IoUring).and_then(|()| probe_io_uring()) {
            Ok(()) => Ok(Engine::IoUring),
            Err(e) => {
                tracing::warn!(reason = %e, "io_uring unavailable, using the epoll engine");
                Ok(Engine::Epoll)
            }
        },
    }
}

/// Runs `future` to completion on a runtime for `engine` on this thread: the ring's own
/// executor for the ring, a tokio-uring runtime for io_uring, a current-thread tokio
/// runtime with a `LocalSet` for epoll, a compio runtime for compio. Clients created
/// inside pick the same engine.
///
/// # Panics
/// When [`ENGINE_ENV`] holds an unknown value or names an engine this build leaves out
/// (a feature), or no runtime can be built at all; use
/// [`start_with`] to get those as errors instead.
///
/// ```no_run
/// use redis_cluster_uring::{engine, Client, Config};
/// let out = engine::start(async {
///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
///     client.ping().await
/// });
/// ```
pub fn start<F: Future>(future: F) -> F::Output {
    match start_with(Engine::Auto, future) {
        Ok(out) => out,
        // Auto never asks for io_uring unconditionally; only a bad environment value (an
        // unknown engine, or one this build leaves out) or a failure to build any
        // runtime gets here.
        Err(e) => panic!("cannot start a runtime: {e}"),
    }
}

/// Like [`start`] with an explicit engine; `Engine::IoUring` where the kernel refuses it
/// is an error of kind [`ErrorKind::IoUringUnavailable`], not a panic.
pub fn start_with<F: Future>(engine: Engine, future: F) -> Result<F::Output> {
    let engine = resolve(engine)?;
    let previous = RUNNING.with(|r| r.replace(Some(engine)));
    let out = match engine {
        Engine::Ring => {
            tracing::info!("running on the ring engine");
            crate::io::ring::executor::block_on(future)
                .map_err(|e| Error::io("run the ring engine", e))
        }
        Engine::IoUring => crate::io::uring::block_on(future)
            .map_err(|e| Error::io("start the io_uring runtime", e)),
        Engine::Compio => {
            tracing::info!("running on the compio engine");
            crate::io::compio::block_on(future)
                .map_err(|e| Error::io("start the compio runtime", e))
        }
        _ => {
            tracing::info!("running on the epoll engine");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("start the tokio runtime", e))?;
            let local = tokio::task::LocalSet::new();
            Ok(local.block_on(&runtime, future))
        }
    };
    RUNNING.with(|r| r.set(previous));
    out
}

/// A task started by [`spawn_local`]; awaiting it gives its output, or an error of kind
/// [`ErrorKind::Shutdown`] when it ended without one (aborted, panicked, or its runtime
/// ended).
#[derive(Debug)]
pub struct JoinHandle<T> {
    inner: Join<T>,
}

#[derive(Debug)]
enum Join<T> {
    Ring(crate::io::ring::executor::JoinHandle<T>),
    Compio(crate::io::compio::Task<T>),
    Tokio(tokio::task::JoinHandle<T>),
}

impl<T> JoinHandle<T> {
    /// True once the task ended (finished, aborted or panicked).
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Join::Ring(h) => h.is_finished(),
            Join::Compio(h) => h.is_finished(),
            Join::Tokio(h) => h.is_finished(),
        }
    }

    /// Stops the task: its future is dropped at the runtime's next turn.
    pub fn abort(&self) {
        match &self.inner {
            Join::Ring(h) => h.abort(),
            Join::Compio(h) => h.abort(),
            Join::Tokio(h) => h.abort(),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        let ended = || Error::new(ErrorKind::Shutdown, "the task ended without an output");
        match &mut self.get_mut().inner {
            Join::Ring(h) => std::pin::Pin::new(h).poll(cx).map(|o| o.ok_or_else(ended)),
            Join::Compio(h) => std::pin::Pin::new(h).poll(cx).map(|r| {
                r.map_err(|e| Error::new(ErrorKind::Shutdown, format!("the task ended: {e}")))
            }),
            Join::Tokio(h) => std::pin::Pin::new(h).poll(cx).map(|r| {
                r.map_err(|e| Error::new(ErrorKind::Shutdown, format!("the task ended: {e}")))
            }),
        }
    }
}

/// Runs `future` as a task on this thread, beside the others, on whichever engine
/// [`start`] (or your own tokio runtime with a `LocalSet`, or your own compio runtime)
/// runs here. Works on every engine; inside the ring and compio engines
/// `tokio::task::spawn_local` does not (there is no tokio runtime there). Dropping the
/// handle lets the task run on, on every engine.
///
/// ```no_run
/// use redis_cluster_uring::engine;
/// engine::start(async {
///     let task = engine::spawn_local(async { 6 * 7 });
///     assert_eq!(task.await.unwrap(), 42);
/// });
/// ```
///
/// # Panics
/// Outside any runtime.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let inner = if crate::io::ring::executor::is_running() {
        Join::Ring(crate::io::ring::executor::spawn(future))
    } else if crate::io::compio::is_running() {
        Join::Compio(crate::io::compio::Task::spawn(future))
    } else {
        Join::Tokio(tokio::task::spawn_local(future))
    };
    JoinHandle { inner }
}

/// Waits `duration` on this thread's runtime timer (every engine; inside the ring and
/// compio engines `tokio::time` does not work, there is no tokio runtime there).
///
/// ```no_run
/// use std::time::Duration;
/// use redis_cluster_uring::engine;
/// engine::start(async {
///     engine::sleep(Duration::from_millis(5)).await;
/// });
/// ```
pub async fn sleep(duration: std::time::Duration) {
    crate::io::rt::sleep(duration).await
}

/// `future`'s output, or an error of kind [`ErrorKind::Timeout`] when `duration` passes
/// first (the future is then dropped). Every engine.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_cluster_uring::{engine, ErrorKind};
/// engine::start(async {
///     let never = std::future::pending::<()>();
///     let e = engine::timeout(Duration::from_millis(5), never).await.unwrap_err();
///     assert_eq!(e.kind(), ErrorKind::Timeout);
/// });
/// ```
pub async fn timeout<F: Future>(duration: std::time::Duration, future: F) -> Result<F::Output> {
    let deadline = std::time::Instant::now().checked_add(duration);
    crate::io::rt::timeout_at(deadline, future)
        .await
        .ok_or_else(|| Error::new(ErrorKind::Timeout, format!("took longer than {duration:?}")))
}

/// Lets the other tasks of this thread run before going on. Every engine.
pub async fn yield_now() {
    crate::io::rt::yield_now().await
}
