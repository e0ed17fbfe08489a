//! The few runtime services the async client needs (spawning a local task, timers, a
//! yield, a name lookup), from whichever runtime this thread runs: the owned ring's
//! executor inside `engine::start` with the ring engine, compio's runtime (ours from
//! `engine::start` or the application's own), tokio's otherwise (tokio-uring and the
//! epoll engine run on a tokio current-thread runtime). The client's code is the same on
//! every engine.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::compio;
use super::ring::executor;

/// The runtimes a thread may run, as far as the services are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Ring,
    Compio,
    Tokio,
}

/// The runtime running this thread (tokio when it is neither of the others: its calls
/// then panic outside any runtime, as tokio's own do).
fn running() -> Runtime {
    if executor::is_running() {
        Runtime::Ring
    } else if compio::is_running() {
        Runtime::Compio
    } else {
        Runtime::Tokio
    }
}

/// True when this thread runs a runtime the client can use.
pub(crate) fn available() -> bool {
    running() != Runtime::Tokio || tokio::runtime::Handle::try_current().is_ok()
}

/// A spawned task of any runtime; dropping it lets the task run on.
#[derive(Debug)]
pub(crate) enum Task {
    Ring(executor::JoinHandle<()>),
    Compio(compio::Task<()>),
    Tokio(tokio::task::JoinHandle<()>),
}

impl Task {
    /// Stops the task at its next turn.
    pub(crate) fn abort(&self) {
        match self {
            Task::Ring(h) => h.abort(),
            Task::Compio(h) => h.abort(),
            Task::Tokio(h) => h.abort(),
        }
    }
}

impl Future for Task {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Task::Ring(h) => Pin::new(h).poll(cx).map(|_| ()),
            Task::Compio(h) => Pin::new(h).poll(cx).map(|_| ()),
            Task::Tokio(h) => Pin::new(h).poll(cx).map(|_| ()),
        }
    }
}

/// Runs `future` as a task on this thread.
pub(crate) fn spawn_local<F: Future<Output = ()> + 'static>(future: F) -> Task {
    match running() {
        Runtime::Ring => Task::Ring(executor::spawn(future)),
        Runtime::Compio => Task::Compio(compio::Task::spawn(future)),
        Runtime::Tokio => Task::Tokio(tokio::task::spawn_local(future)),
    }
}

/// A timer of any runtime.
pub(crate) enum Sleep {
    Ring(executor::Sleep),
    Compio(Pin<Box<dyn Future<Output = ()>>>),
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Ring(s) => Pin::new(s).poll(cx),
            Sleep::Compio(s) => s.as_mut().poll(cx),
            Sleep::Tokio(s) => s.as_mut().poll(cx),
        }
    }
}

/// Waits until `at`.
pub(crate) fn sleep_until(at: Instant) -> Sleep {
    match running() {
        Runtime::Ring => Sleep::Ring(executor::sleep_until(at)),
        Runtime::Compio => Sleep::Compio(compio::sleep_until(at)),
        Runtime::Tokio => Sleep::Tokio(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(at),
        ))),
    }
}

/// Waits `d`.
pub(crate) fn sleep(d: Duration) -> Sleep {
    sleep_until(crate::core::round::saturating_later(Instant::now(), d))
}

/// `future`'s output, or `None` when `deadline` passes first (no deadline: never).
///
/// Every request with a timeout waits through here, so no engine allocates for it: the
/// ring's timer and tokio's `timeout_at` live in this future's own state (only compio's
/// timer, whose type cannot be named, is boxed).
pub(crate) async fn timeout_at<F: Future>(
    deadline: Option<Instant>,
    future: F,
) -> Option<F::Output> {
    let Some(at) = deadline else {
        return Some(future.await);
    };
    match running() {
        Runtime::Ring => race(future, executor::sleep_until(at)).await,
        Runtime::Compio => race(future, sleep_until(at)).await,
        Runtime::Tokio => tokio::time::timeout_at(tokio::time::Instant::from_std(at), future)
            .await
            .ok(),
    }
}

/// `future`'s output, or `None` when `timer` ends first.
async fn race<F: Future, T: Future<Output = ()>>(future: F, timer: T) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(timer);
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
    match running() {
        Runtime::Ring => executor::yield_now().await,
        Runtime::Compio => YieldNow(false).await,
        Runtime::Tokio => tokio::task::yield_now().await,
    }
}

/// Pending once, asking to be polled again: the task goes to the back of the run queue
/// (compio has no yield of its own).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Looks `host:port` up off the event loop: on tokio's or compio's blocking pool, or on
/// a thread of its own under the ring engine (name lookups are rare: clusters announce
/// IPs).
pub(crate) async fn lookup_host(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match running() {
        Runtime::Ring => {}
        Runtime::Compio => return compio::lookup_host(host, port).await,
        Runtime::Tokio => return Ok(tokio::net::lookup_host((host, port)).await?.collect()),
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
