//! Choosing the I/O engine: io_uring where the kernel allows it, epoll otherwise.
//!
//! io_uring can be missing (kernels before 5.1), switched off (`kernel.io_uring_disabled`),
//! or filtered by a container's seccomp profile (Docker's default refuses
//! `io_uring_setup`). [`start`] probes once and runs the future on a tokio-uring runtime
//! when the probe succeeds, or on a plain current-thread tokio runtime with the epoll
//! engine when it does not, saying why through `tracing`. The client code is the same on
//! both; only the engine's few socket calls differ.

use std::cell::Cell;
use std::future::Future;

use crate::core::error::{Error, ErrorKind, Result};

pub use crate::core::config::{Engine, ENGINE_ENV};

thread_local! {
    /// The engine of the runtime [`start`] runs on this thread, if any.
    static RUNNING: Cell<Option<Engine>> = const { Cell::new(None) };
}

/// The engine of the runtime that [`start`] is running on this thread, if any.
pub fn current() -> Option<Engine> {
    RUNNING.with(|r| r.get())
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

/// Resolves `Auto` (and the environment override) to a concrete engine.
pub(crate) fn resolve(requested: Engine) -> Result<Engine> {
    let requested = match (requested, Engine::from_env()?) {
        (Engine::Auto, Some(forced)) => forced,
        (r, _) => r,
    };
    match requested {
        Engine::Epoll => Ok(Engine::Epoll),
        Engine::IoUring => probe_io_uring().map(|_| Engine::IoUring),
        Engine::Auto => match probe_io_uring() {
            Ok(()) => Ok(Engine::IoUring),
            Err(e) => {
                tracing::warn!(reason = %e, "io_uring unavailable, using the epoll engine");
                Ok(Engine::Epoll)
            }
        },
    }
}

/// Runs `future` to completion on a runtime for `engine` on this thread: a tokio-uring
/// runtime for io_uring, a current-thread tokio runtime with a `LocalSet` for epoll.
/// Clients created inside pick the same engine.
///
/// # Panics
/// When [`ENGINE_ENV`] holds an unknown value or no runtime can be built at all; use
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
        // Auto never asks for io_uring unconditionally; only a bad environment value or
        // a failure to build any runtime gets here.
        Err(e) => panic!("cannot start a runtime: {e}"),
    }
}

/// Like [`start`] with an explicit engine; `Engine::IoUring` where the kernel refuses it
/// is an error of kind [`ErrorKind::IoUringUnavailable`], not a panic.
pub fn start_with<F: Future>(engine: Engine, future: F) -> Result<F::Output> {
    let engine = resolve(engine)?;
    let previous = RUNNING.with(|r| r.replace(Some(engine)));
    let out = match engine {
        Engine::IoUring => crate::io::uring::block_on(future)
            .map_err(|e| Error::io("start the io_uring runtime", e)),
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
