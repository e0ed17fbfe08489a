//! One node connection's life, over any engine: connect, then move bytes between the
//! socket and the connection's sans-IO [`Conn`](crate::core::conn::Conn) in the pool,
//! which does TLS, the handshake and the reply order.
//!
//! What the bytes mean is decided once, by the connection's [`Wire`] (an
//! [`Endpoint`]): the ring engine's loop drives the socket itself and calls it from its
//! completions (no task per connection); the other engines run a reader task and a writer
//! loop that call it.
//!
//! A read is never given up half-way: with io_uring an abandoned read still completes
//! into its buffer, so a reader that could be cancelled would lose bytes and shift every
//! later reply. Timeouts therefore act on requests (see [`crate::client::pool`]) and on
//! the pool's record of the connection (the handshake's deadline), never on reads.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::core::error::{Error, ErrorKind};
use crate::core::pool::{ConnId, Pool};
use crate::core::resp::Value;
use crate::core::stats::Counters as Stats;
use crate::core::topology::NodeAddr;
use crate::io::{rt, ByteStream, Endpoint, SocketOptions, Transport};

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
            stream
        }
        Some(Err(error)) => return fail_early(&pool, conn, &addr, error),
        None => return fail_early(&pool, conn, &addr, timed_out("connecting")),
    };
    // The handshake's deadline acts on the pool's record, never on a read: a connection
    // not ready by then fails, which ends its output, whose end shuts the socket down.
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
    let wire = Wire {
        pool,
        stats,
        conn,
        addr,
        options,
        pushes: Vec::new(),
        watchdog,
    };
    // The ring engine's loop moves the bytes itself; the other engines run a reader
    // task and this task as the writer.
    let (stream, wire) = match T::drive(stream, wire) {
        Ok(()) => return,
        Err(back) => back,
    };
    let stream = Rc::new(stream);
    let wire = Rc::new(RefCell::new(wire));
    let reader = rt::spawn_local(read_loop(stream.clone(), wire.clone()));
    write_loop(&*stream, &wire).await;
    // Whoever stopped first, the other must stop too: shutting the socket down
    // completes the reader's outstanding read, which is then its last.
    stream.shutdown();
    let _ = reader.await;
    wire.borrow_mut().closed();
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

/// A connection's side of its socket: what the bytes read mean and which bytes to write
/// next, for whichever code moves them (the ring's loop, or a reader and a writer task).
pub(crate) struct Wire {
    pool: Weak<RefCell<Pool>>,
    stats: Rc<Stats>,
    conn: ConnId,
    addr: NodeAddr,
    options: ConnOptions,
    /// Push frames read, on their way to the handler (kept to reuse its memory).
    pushes: Vec<Value>,
    /// The handshake's deadline, ended with the connection.
    watchdog: Option<rt::Task>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("conn", &self.conn)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Wire {
    fn usual_room(&self) -> usize {
        self.options.read_buffer_size.max(MIN_READ_SPACE)
    }
}

impl Endpoint for Wire {
    fn room(&self, buf: BytesMut) -> Result<BytesMut, BytesMut> {
        let mut buf = ready_for_read(buf, self.options.read_buffer_size);
        if buf.capacity() - buf.len() < MIN_READ_SPACE && !buf.try_reclaim(self.usual_room()) {
            return Err(buf);
        }
        Ok(buf)
    }

    fn grow(&self, buf: &mut BytesMut) {
        if buf.capacity() - buf.len() < MIN_READ_SPACE {
            buf.reserve(self.usual_room());
        }
    }

    fn received(&mut self, res: io::Result<usize>, buf: &mut BytesMut) -> bool {
        let Some(pool) = self.pool.upgrade() else {
            return false;
        };
        let conn = self.conn;
        let failure = {
            let mut pool = pool.borrow_mut();
            match res {
                Ok(0) => Some(Error::new(
                    ErrorKind::Io,
                    format!("{} closed the connection", describe(&pool, conn)),
                )),
                Err(e) => Some(Error::io(format!("read from {}", describe(&pool, conn)), e)),
                Ok(n) => {
                    self.stats.add_read(n);
                    // A frame that cannot be parsed poisons the stream (nothing after it
                    // can be framed); replies before it were delivered and are kept.
                    pool.receive(conn, buf, &mut self.pushes, Instant::now)
                        .err()
                }
            }
        };
        // The pool is not borrowed any more: the handler may call the client.
        hand_over(&self.options, &self.stats, conn, &pool, &mut self.pushes);
        let mut pool = pool.borrow_mut();
        if let Some(error) = failure {
            pool.fail(conn, &error);
            return false;
        }
        !pool.is_closed(conn)
    }

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Option<BytesMut>> {
        let out = match self.pool.upgrade() {
            Some(pool) => pool.borrow_mut().poll_output(self.conn, cx),
            None => Poll::Ready(None),
        };
        if let Poll::Ready(Some(out)) = &out {
            self.stats.add_write(out.len());
        }
        out
    }

    fn sent(&mut self, res: io::Result<()>, buf: BytesMut) -> bool {
        let Some(pool) = self.pool.upgrade() else {
            return false;
        };
        let mut pool = pool.borrow_mut();
        match res {
            Ok(()) => {
                pool.give_back_output(self.conn, buf);
                true
            }
            Err(e) => {
                let error = match pool.addr(self.conn) {
                    Some(a) => Error::io(format!("write to {a}"), e),
                    None => Error::io("write", e),
                };
                pool.fail(self.conn, &error);
                false
            }
        }
    }

    fn closed(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.borrow_mut().release(self.conn);
        }
        tracing::debug!(addr = %self.addr, "connection closed");
    }
}

async fn write_loop<S: ByteStream>(stream: &S, wire: &RefCell<Wire>) {
    loop {
        // Waits (woken by the pool) until there is something to write; `None` once the
        // connection or the client is gone.
        let out = std::future::poll_fn(|cx| wire.borrow_mut().poll_output(cx)).await;
        let Some(out) = out else { return };
        let (res, buf) = stream.write_all(out).await;
        if !wire.borrow_mut().sent(res, buf) {
            return;
        }
    }
}

async fn read_loop<S: ByteStream>(stream: Rc<S>, wire: Rc<RefCell<Wire>>) {
    let size = wire.borrow().options.read_buffer_size;
    let mut buf = BytesMut::with_capacity(size);
    loop {
        let room = wire.borrow().room(buf);
        buf = match room {
            Ok(buf) => buf,
            Err(buf) => {
                // The replies just decoded still share the buffer until their callers
                // run: let them, then the buffer can be reused in place instead of a new
                // one allocated (about once per 40 batches).
                rt::yield_now().await;
                let room = wire.borrow().room(buf);
                let mut buf = room.unwrap_or_else(|buf| buf);
                wire.borrow().grow(&mut buf);
                buf
            }
        };
        let (res, returned) = stream.read(buf).await;
        buf = returned;
        if !wire.borrow_mut().received(res, &mut buf) {
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
