//! The compio engine's place in a build without the `compio` feature: never running, so
//! `Engine::Compio` is refused where it is chosen (`engine::start_with`, a client's
//! connect) and nothing here is reached. The types are uninhabited: no value of them can
//! exist, so the methods that take one have nothing to do.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

stream_not_built!(
    CompioStream,
    "this build has no compio engine (the `compio` feature)"
);

/// Refuses: there is no compio runtime in this build.
pub(crate) fn block_on<F: Future>(_future: F) -> io::Result<F::Output> {
    Err(not_built())
}

/// Never: there is no compio runtime in this build.
pub(crate) fn is_running() -> bool {
    false
}

/// A compio task: none is ever made in this build.
#[derive(Debug)]
pub(crate) struct Task<T>(PhantomData<fn() -> T>);

/// Why a [`Task`] has no output: there is no compio runtime in this build.
#[derive(Debug)]
pub(crate) struct NotBuilt;

impl std::fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this build has no compio engine")
    }
}

impl<T> Task<T> {
    /// Called only where [`is_running`] said yes, which it never does in this build; if
    /// it were, the future is dropped and the task has ended without an output.
    pub(crate) fn spawn<F: Future<Output = T> + 'static>(_future: F) -> Task<T> {
        Task(PhantomData)
    }

    pub(crate) fn abort(&self) {}

    pub(crate) fn is_finished(&self) -> bool {
        true
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, NotBuilt>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Err(NotBuilt))
    }
}

/// Never called: no compio runtime runs.
pub(crate) fn sleep_until(_at: Instant) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(std::future::pending())
}

/// Refuses: there is no compio runtime in this build.
pub(crate) async fn lookup_host(_host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
    Err(not_built())
}
