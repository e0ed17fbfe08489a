//! The few runtime services the async client needs (spawning a local task, timers, a
//! yield, a name lookup), from whichever runtime this thread runs: the owned ring's
//! executor inside `engine::start` with the ring engine, tokio's otherwise (tokio-uring
//! and the epoll engine run on a tokio current-thread runtime). The client's code is the
//! same on every engine.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::ring::executor;

/// True when this thread runs a runtime the client can use.
pub(crate) fn available() -> bool {
    executor::is_running() || tokio::runtime::Handle::try_current().is_ok()
}

/// A spawned task of either runtime.
#[derive(Debug)]
pub(crate) enum Task {
    Ring(executor::JoinHandle<()>),
    Tokio(tokio::task::JoinHandle<()>),
}

impl Task {
    /// Stops the task at its next turn.
    pub(crate) fn abort(&self) {
        match self {
            Task::Ring(h) => h.abort(),
            Task::Tokio(h) => h.abort(),
        }
    }
}

impl Future for Task {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Task::Ring(h) => Pin::new(h).poll(cx).map(|_| ()),
            Task::Tokio(h) => Pin::new(h).poll(cx).map(|_| ()),
        }
    }
}

/// Runs `future` as a task on this thread.
pub(crate) fn spawn_local<F: Future<Output = ()> + 'static>(future: F) -> Task {
    if executor::is_running() {
        Task::Ring(executor::spawn(future))
    } else {
        Task::Tokio(tokio::task::spawn_local(future))
    }
}

/// A timer of either runtime.
pub(crate) enum Sleep {
    Ring(executor::Sleep),
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Ring(s) => Pin::new(s).poll(cx),
            Sleep::Tokio(s) => s.as_mut().poll(cx),
        }
    }
}

/// Waits until `at`.
pub(crate) fn sleep_until(at: Instant) -> Sleep {
    if executor::is_running() {
        Sleep::Ring(executor::sleep_until(at))
    } else {
        Sleep::Tokio(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(at),
        )))
    }
}

/// Waits `d`.
pub(crate) fn sleep(d: Duration) -> Sleep {
    sleep_until(crate::core::round::saturating_later(Instant::now(), d))
}

/// `future`'s output, or `None` when `deadline` passes first (no deadline: never).
pub(crate) async fn timeout_at<F: Future>(
    deadline: Option<Instant>,
    future: F,
) -> Option<F::Output> {
    let Some(at) = deadline else {
        return Some(future.await);
    };
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(sleep_until(at));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Gives the other tasks a turn.
pub(crate) async fn yield_now() {
    if executor::is_running() {
        executor::yield_now().await
    } else {
        tokio::task::yield_now().await
    }
}

/// Looks `host:port` up off the event loop: on tokio's blocking pool, or on a thread of
/// its own under the ring engine (name lookups are rare: clusters announce IPs).
pub(crate) async fn lookup_host(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if !executor::is_running() {
        return Ok(tokio::net::lookup_host((host, port)).await?.collect());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let host = host.to_owned();
    std::thread::Builder::new()
        .name("redis-cluster-uring-resolve".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            let _ = tx.send(found);
        })?;
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the resolver thread ended")))
}
