//! One node connection's life, over any engine: connect, then one writer loop and one
//! long-lived reader, both moving bytes between the socket and the connection's sans-IO
//! [`Conn`](crate::core::conn::Conn) in the pool, which does TLS, the handshake and the
//! reply order.
//!
//! The reader is the only code that reads the socket, and it never gives up a read
//! half-way: with io_uring an abandoned read still completes into its buffer, so a reader
//! that could be cancelled would lose bytes and shift every later reply. Timeouts
//! therefore act on requests (see [`crate::client::pool`]) and on the pool's record of the
//! connection (the handshake's deadline), never on reads.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::error::{Error, ErrorKind};
use crate::core::pool::{ConnId, Pool};
use crate::core::resp::Value;
use crate::core::stats::Counters as Stats;
use crate::core::topology::NodeAddr;
use crate::io::{rt, ByteStream, SocketOptions, Transport};

/// Below this much spare room the reader grows its buffer before the next read.
const MIN_READ_SPACE: usize = 4096;

/// What a connection task needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ConnOptions {
    /// Connect, TLS and the handshake must be done within this.
    pub(crate) connect_timeout: Duration,
    /// Wait before connecting (backoff after a failed connection to the same node).
    pub(crate) delay: Duration,
    pub(crate) read_buffer_size: usize,
    pub(crate) socket: SocketOptions,
    /// Where push frames go.
    pub(crate) push_handler: Option<crate::core::config::PushHandler>,
    /// Why the connection could not even be set up (a credentials provider that failed,
    /// a host that is no valid TLS name): it fails at once, with this.
    pub(crate) setup_error: Option<Error>,
}

/// Resolves a node address to every address it names. IP literals (what clusters
/// usually announce) need no lookup; a host name is looked up off the event loop (tokio
/// runs `getaddrinfo` on its blocking pool), so a slow resolver stalls only this
/// connection. A failure is a typed error for this node alone.
pub(crate) async fn resolve(addr: &NodeAddr) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = addr.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, addr.port)]);
    }
    if addr.host.is_empty() || addr.host == "?" {
        return Err(Error::new(
            ErrorKind::ClusterDown,
            format!("{addr}: the cluster does not know this node's endpoint"),
        ));
    }
    let found: Vec<SocketAddr> = rt::lookup_host(&addr.host, addr.port)
        .await
        .map_err(|e| Error::io(format!("resolve {addr}"), e))?;
    if found.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{addr} resolves to no address"),
        ));
    }
    Ok(found)
}

/// Runs a connection until it fails or the client goes away. Spawned once per connection
/// on the client's thread.
pub(crate) async fn run_connection<T: Transport>(link: Link) {
    let Link {
        pool,
        stats,
        conn,
        addr,
        options,
    } = link;
    if let Some(error) = options.setup_error.clone() {
        return fail_early(&pool, conn, &addr, error);
    }
    if !options.delay.is_zero() {
        rt::sleep(options.delay).await;
    }
    // Connect, TLS and the handshake all within the connect timeout. Callers' commands
    // wait in the connection meanwhile: it holds them until its handshake is done.
    let limit = options.connect_timeout;
    let deadline = Instant::now().checked_add(limit);
    let timed_out =
        |what: &str| Error::new(ErrorKind::Io, format!("{what} took longer than {limit:?}"));
    let stream = match within(deadline, connect::<T>(&addr, &options)).await {
        Some(Ok(stream)) => {
            if let Some(pool) = pool.upgrade() {
                pool.borrow_mut().socket_up(conn);
            }
            Rc::new(stream)
        }
        Some(Err(error)) => return fail_early(&pool, conn, &addr, error),
        None => return fail_early(&pool, conn, &addr, timed_out("connecting")),
    };
    let reader = rt::spawn_local(read_loop(
        stream.clone(),
        pool.clone(),
        stats.clone(),
        conn,
        options.clone(),
    ));
    // The handshake's deadline acts on the pool's record, never on a read: a connection
    // not ready by then fails, which stops the writer, whose shutdown ends the read.
    let watchdog = deadline.map(|at| {
        let pool = pool.clone();
        let addr = addr.clone();
        let error = timed_out("the handshake");
        rt::spawn_local(async move {
            rt::sleep_until(at).await;
            if let Some(pool) = pool.upgrade() {
                let mut pool = pool.borrow_mut();
                if !pool.is_closed(conn) && !pool.is_ready(conn) {
                    let error = Error::new(error.kind(), format!("{addr}: {}", error.detail()));
                    tracing::debug!(%addr, %error, "connection failed");
                    pool.fail(conn, &error);
                }
            }
        })
    });
    write_loop(&*stream, &pool, &stats, conn).await;
    // Whoever stopped first, the other must stop too: shutting the socket down
    // completes the reader's outstanding read, which is then its last.
    stream.shutdown();
    let _ = reader.await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Some(pool) = pool.upgrade() {
        pool.borrow_mut().release(conn);
    }
    tracing::debug!(%addr, "connection closed");
}

/// A connection that failed before it could be used: every caller waiting on it gets the
/// error, which names the node.
fn fail_early(pool: &Weak<RefCell<Pool>>, conn: ConnId, addr: &NodeAddr, error: Error) {
    let prefix = format!("{addr}: ");
    let error = if error.detail().starts_with(&prefix) {
        error
    } else {
        Error::new(error.kind(), format!("{prefix}{}", error.detail()))
    };
    tracing::debug!(%addr, %error, "connection failed");
    if let Some(pool) = pool.upgrade() {
        let mut pool = pool.borrow_mut();
        pool.fail(conn, &error);
        pool.release(conn);
    }
}

/// One connection, as its task starts from it and its reader and writer share it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) pool: Weak<RefCell<Pool>>,
    pub(crate) stats: Rc<Stats>,
    pub(crate) conn: ConnId,
    pub(crate) addr: NodeAddr,
    pub(crate) options: ConnOptions,
}

/// Connects to the first address of `addr` that accepts, trying each in turn, all
/// within the connect timeout.
async fn connect<T: Transport>(addr: &NodeAddr, options: &ConnOptions) -> Result<T, Error> {
    let timed_out = || {
        Error::new(
            ErrorKind::Io,
            format!(
                "connect to {addr} timed out after {:?}",
                options.connect_timeout
            ),
        )
    };
    let deadline = Instant::now().checked_add(options.connect_timeout);
    let candidates = within(deadline, resolve(addr))
        .await
        .ok_or_else(timed_out)??;
    let mut last = None;
    let count = candidates.len();
    for (i, sock) in candidates.into_iter().enumerate() {
        // Each address gets its share of the time left, so one that never answers (an
        // unreachable IPv6 route) cannot use up the timeout of those after it.
        let share = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(count - i).unwrap_or(u32::MAX);
            Instant::now() + share
        });
        match within(share, T::connect(sock, &options.socket)).await {
            Some(Ok(stream)) => return Ok(stream),
            Some(Err(e)) => last = Some(Error::io(format!("connect to {addr} ({sock})"), e)),
            None => last = Some(timed_out()),
        }
    }
    Err(last.unwrap_or_else(timed_out))
}

/// `f`'s output, or `None` when `deadline` passes first.
async fn within<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    rt::timeout_at(deadline, f).await
}

async fn write_loop<S: ByteStream>(
    stream: &S,
    pool: &Weak<RefCell<Pool>>,
    stats: &Stats,
    conn: ConnId,
) {
    loop {
        // Waits (woken by the pool) until there is something to write; `None` once the
        // connection or the client is gone.
        let out = std::future::poll_fn(|cx| match pool.upgrade() {
            Some(pool) => pool.borrow_mut().poll_output(conn, cx),
            None => std::task::Poll::Ready(None),
        })
        .await;
        let Some(out) = out else { return };
        stats.add_write(out.len());
        let (res, buf) = stream.write_all(out).await;
        if res.is_ok() {
            if let Some(pool) = pool.upgrade() {
                pool.borrow_mut().give_back_output(conn, buf);
            }
        }
        if let Err(e) = res {
            if let Some(pool) = pool.upgrade() {
                let addr = pool.borrow().addr(conn).cloned();
                let error = match addr {
                    Some(a) => Error::io(format!("write to {a}"), e),
                    None => Error::io("write", e),
                };
                pool.borrow_mut().fail(conn, &error);
            }
            return;
        }
    }
}

async fn read_loop<S: ByteStream>(
    stream: Rc<S>,
    pool: Weak<RefCell<Pool>>,
    stats: Rc<Stats>,
    conn: ConnId,
    options: ConnOptions,
) {
    let mut pushes = Vec::new();
    let mut buf = BytesMut::with_capacity(options.read_buffer_size);
    loop {
        buf = ready_for_read(buf, options.read_buffer_size);
        if buf.capacity() - buf.len() < MIN_READ_SPACE {
            let want = options.read_buffer_size.max(MIN_READ_SPACE);
            if !buf.try_reclaim(want) {
                // The replies just decoded still share the buffer until their callers
                // run: let them, then the buffer can be reused in place instead of a new
                // one allocated (about once per 40 batches).
                rt::yield_now().await;
                buf.reserve(want);
            }
        }
        let (res, returned) = stream.read(buf).await;
        buf = returned;
        let Some(pool) = pool.upgrade() else { return };
        let failure = {
            let mut pool = pool.borrow_mut();
            match res {
                Ok(0) => Some(Error::new(
                    ErrorKind::Io,
                    format!("{} closed the connection", describe(&pool, conn)),
                )),
                Err(e) => Some(Error::io(format!("read from {}", describe(&pool, conn)), e)),
                Ok(n) => {
                    stats.add_read(n);
                    // A frame that cannot be parsed poisons the stream (nothing after it
                    // can be framed); replies before it were delivered and are kept.
                    pool.receive(conn, &mut buf, &mut pushes, Instant::now)
                        .err()
                }
            }
        };
        // The pool is not borrowed any more: the handler may call the client.
        hand_over(&options, &stats, conn, &pool, &mut pushes);
        let mut pool = pool.borrow_mut();
        if let Some(error) = failure {
            pool.fail(conn, &error);
            return;
        }
        if pool.is_closed(conn) {
            return;
        }
    }
}

/// Gives the push frames read to the user's handler, if there is one; without one they
/// are dropped. Each is counted.
fn hand_over(
    options: &ConnOptions,
    stats: &Stats,
    conn: ConnId,
    pool: &RefCell<Pool>,
    pushes: &mut Vec<Value>,
) {
    if pushes.is_empty() {
        return;
    }
    for _ in pushes.iter() {
        stats.add_push();
    }
    let Some(handler) = &options.push_handler else {
        pushes.clear();
        return;
    };
    let node = pool.borrow().addr(conn).cloned();
    if let Some(node) = node {
        tracing::trace!(%node, frames = pushes.len(), "push frames");
        for push in pushes.drain(..) {
            handler.call(&node, push);
        }
    }
    pushes.clear();
}

/// After a large reply, gives the memory back: an empty buffer far above its usual size
/// starts again at the usual size (replies already decoded keep their own slices alive as
/// long as callers hold them). A buffer holding part of a reply is kept as it is.
fn ready_for_read(buf: BytesMut, usual: usize) -> BytesMut {
    if buf.is_empty() && buf.capacity() > 4 * usual.max(MIN_READ_SPACE) {
        BytesMut::with_capacity(usual)
    } else {
        buf
    }
}

fn describe(pool: &Pool, conn: ConnId) -> String {
    pool.addr(conn)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "node".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_shrinks_back_after_a_large_reply() {
        let usual = 64 * 1024;
        let mut big = BytesMut::with_capacity(64 * 1024 * 1024);
        big.extend_from_slice(b"$3\r\nabc\r\n");
        // Part of a reply still in it: kept.
        let big = ready_for_read(big, usual);
        assert!(big.capacity() >= 64 * 1024 * 1024);
        let mut big = big;
        let _ = big.split();
        let small = ready_for_read(big, usual);
        assert!(small.capacity() < 4 * usual);
        // A buffer of the usual size is left alone.
        let usual_buf = BytesMut::with_capacity(usual);
        let ptr = usual_buf.as_ptr();
        assert_eq!(ready_for_read(usual_buf, usual).as_ptr(), ptr);
    }
}
