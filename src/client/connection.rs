//! One node connection's life, over any engine: connect, then one writer loop and one
//! long-lived reader.
//!
//! The reader is the only code that reads the socket, and it never gives up a read
//! half-way: with io_uring an abandoned read still completes into its buffer, so a reader
//! that could be cancelled would lose bytes and shift every later reply. Timeouts
//! therefore act on requests (see [`crate::client::pool`]), never on reads.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;

use crate::client::pool::{ConnId, Delivery, Pool};
use crate::core::cmd::Cmd;
use crate::core::error::{Error, ErrorKind};
use crate::core::handshake::{Handshake, HandshakeOptions, HandshakeStep, ServerInfo};
use crate::core::resp::decode::decode;
use crate::core::resp::DecodeLimits;
use crate::core::resp::Value;
use crate::core::stats::Counters as Stats;
use crate::core::tls::TlsLayer;
use crate::core::topology::NodeAddr;
use crate::io::tls::TlsStream;
use crate::io::{ByteStream, SocketOptions, Transport};

/// Below this much spare room the reader grows its buffer before the next read.
const MIN_READ_SPACE: usize = 4096;

/// What a connection task needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ConnOptions {
    pub(crate) connect_timeout: Duration,
    /// Wait before connecting (backoff after a failed connection to the same node).
    pub(crate) delay: Duration,
    pub(crate) limits: DecodeLimits,
    pub(crate) read_buffer_size: usize,
    pub(crate) socket: SocketOptions,
    /// What the handshake sends, or the error that stops the connection before it
    /// starts (a credentials provider that failed).
    pub(crate) handshake: Result<HandshakeOptions, Error>,
    /// Where push frames go.
    pub(crate) push_handler: Option<crate::core::config::PushHandler>,
    /// TLS, when the cluster speaks it (an error when this node's name is not usable:
    /// the connection fails, it never goes plain).
    pub(crate) tls: Option<Result<TlsConnect, Error>>,
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
    let found: Vec<SocketAddr> = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| Error::io(format!("resolve {addr}"), e))?
        .collect();
    if found.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{addr} resolves to no address"),
        ));
    }
    Ok(found)
}

/// TLS for one connection: the client's rustls configuration and the name verified.
#[derive(Debug, Clone)]
pub(crate) struct TlsConnect {
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    pub(crate) name: rustls::pki_types::ServerName<'static>,
}

/// Runs a connection until it fails or the client goes away. Spawned once per connection
/// on the client's thread.
pub(crate) async fn run_connection<T: Transport>(link: Link) {
    // Connect, TLS and the handshake all within the connect timeout. Callers' commands
    // wait in the pool meanwhile: the writer starts only once the connection is ready.
    let deadline = tokio::time::Instant::now().checked_add(link.options.connect_timeout);
    let limit = link.options.connect_timeout;
    let timed_out = move || {
        Error::new(
            ErrorKind::Io,
            format!("connecting took longer than {limit:?}"),
        )
    };
    let tcp = match within(deadline, connect::<T>(&link.addr, &link.options)).await {
        Some(Ok(stream)) => stream,
        Some(Err(error)) => return fail_early(&link.pool, link.conn, &link.addr, error),
        None => return fail_early(&link.pool, link.conn, &link.addr, timed_out()),
    };
    match link.options.tls.clone() {
        None => link.serve(tcp, deadline).await,
        Some(tls) => {
            let established = async {
                let tls = tls?;
                let layer = TlsLayer::new(tls.config, tls.name)?;
                TlsStream::establish(tcp, layer, link.wake_writer.clone()).await
            };
            match within(deadline, established).await {
                Some(Ok(stream)) => link.serve(stream, deadline).await,
                Some(Err(error)) => fail_early(&link.pool, link.conn, &link.addr, error),
                None => fail_early(&link.pool, link.conn, &link.addr, timed_out()),
            }
        }
    }
}

/// A connection that failed before it could be used: every caller waiting on it gets the
/// error, which names the node.
fn fail_early(pool: &Weak<RefCell<Pool>>, conn: ConnId, addr: &NodeAddr, error: Error) {
    let error = Error::new(error.kind(), format!("{addr}: {}", error.detail()));
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
    pub(crate) wake_writer: Rc<Notify>,
    pub(crate) options: ConnOptions,
}

impl Link {
    /// The handshake, then the writer loop here and the reader as its own task, over any
    /// byte stream (plain or TLS).
    async fn serve<S: ByteStream>(self, stream: S, deadline: Option<tokio::time::Instant>) {
        let Link {
            pool,
            stats,
            conn,
            addr,
            wake_writer,
            options,
        } = self;
        let shaken = within(deadline, async {
            let handshake = options.handshake.clone()?;
            let started = tokio::time::Instant::now();
            let (info, leftover) = shake_hands(&stream, handshake, &options).await?;
            Ok::<_, Error>((info, started.elapsed(), leftover))
        })
        .await;
        let (info, rtt, leftover) = match shaken {
            Some(Ok(done)) => done,
            Some(Err(error)) => return fail_early(&pool, conn, &addr, error),
            None => {
                let error = Error::new(
                    ErrorKind::Io,
                    format!(
                        "the handshake took longer than {:?}",
                        options.connect_timeout
                    ),
                );
                return fail_early(&pool, conn, &addr, error);
            }
        };
        let stream = Rc::new(stream);
        tracing::debug!(%addr, ?info, "connected");
        if let Some(pool) = pool.upgrade() {
            pool.borrow_mut().connected(conn, info, rtt);
        }
        let reader = tokio::task::spawn_local(read_loop(
            stream.clone(),
            pool.clone(),
            stats.clone(),
            conn,
            options.clone(),
            leftover,
        ));
        write_loop(&*stream, &pool, &stats, conn, &wake_writer).await;
        // Whoever stopped first, the other must stop too: shutting the socket down
        // completes the reader's outstanding read, which is then its last.
        stream.shutdown();
        let _ = reader.await;
        if let Some(pool) = pool.upgrade() {
            pool.borrow_mut().release(conn);
        }
        tracing::debug!(%addr, "connection closed");
    }
}

/// Connects to the first address of `addr` that accepts, trying each in turn, all
/// within the connect timeout.
async fn connect<T: Transport>(addr: &NodeAddr, options: &ConnOptions) -> Result<T, Error> {
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let timed_out = || {
        Error::new(
            ErrorKind::Io,
            format!(
                "connect to {addr} timed out after {:?}",
                options.connect_timeout
            ),
        )
    };
    let deadline = tokio::time::Instant::now().checked_add(options.connect_timeout);
    let candidates = within(deadline, resolve(addr))
        .await
        .ok_or_else(timed_out)??;
    let mut last = None;
    let count = candidates.len();
    for (i, sock) in candidates.into_iter().enumerate() {
        // Each address gets its share of the time left, so one that never answers (an
        // unreachable IPv6 route) cannot use up the timeout of those after it.
        let share = deadline.map(|d| {
            let left = d.saturating_duration_since(tokio::time::Instant::now());
            let share = left / u32::try_from(count - i).unwrap_or(u32::MAX);
            tokio::time::Instant::now() + share
        });
        match within(share, T::connect(sock, &options.socket)).await {
            Some(Ok(stream)) => return Ok(stream),
            Some(Err(e)) => last = Some(Error::io(format!("connect to {addr} ({sock})"), e)),
            None => last = Some(timed_out()),
        }
    }
    Err(last.unwrap_or_else(timed_out))
}

/// Runs the handshake state machine over a fresh connection: writes what it says, feeds
/// it each reply. Returns what the server said of itself and any bytes read past the
/// handshake's last reply.
async fn shake_hands<S: ByteStream>(
    stream: &S,
    handshake: HandshakeOptions,
    options: &ConnOptions,
) -> Result<(ServerInfo, BytesMut), Error> {
    let mut machine = Handshake::new(handshake);
    let mut buf = BytesMut::with_capacity(options.read_buffer_size);
    let mut step = machine.start();
    loop {
        step = match step {
            HandshakeStep::Send(cmds) => {
                let mut out = BytesMut::with_capacity(cmds.iter().map(Cmd::encoded_len).sum());
                for c in &cmds {
                    c.write_to(&mut out);
                }
                let (res, _) = stream.write_all(out).await;
                res.map_err(|e| Error::io("handshake write", e))?;
                HandshakeStep::Wait
            }
            HandshakeStep::Wait => {
                let reply = loop {
                    match decode(&mut buf, &options.limits)? {
                        // Out-of-band: answers nothing.
                        Some(Value::Push(_)) => continue,
                        Some(reply) => break reply,
                        None => {}
                    }
                    if buf.capacity() - buf.len() < MIN_READ_SPACE {
                        buf.reserve(options.read_buffer_size.max(MIN_READ_SPACE));
                    }
                    let (res, returned) = stream.read(buf).await;
                    buf = returned;
                    match res {
                        Ok(0) => {
                            return Err(Error::new(
                                ErrorKind::Io,
                                "the server closed the connection during the handshake",
                            ))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(Error::io("handshake read", e)),
                    }
                };
                machine.on_reply(reply)
            }
            HandshakeStep::Done(info) => return Ok((info, buf)),
            HandshakeStep::Failed(error) => return Err(error),
        };
    }
}

/// `f`'s output, or `None` when `deadline` passes first.
async fn within<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    f: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

async fn write_loop<S: ByteStream>(
    stream: &S,
    pool: &Weak<RefCell<Pool>>,
    stats: &Stats,
    conn: ConnId,
    wake_writer: &Notify,
) {
    loop {
        let out = match pool.upgrade() {
            Some(pool) => pool.borrow_mut().take_output(conn),
            None => None,
        };
        let Some(out) = out else { return };
        // An empty write still goes out when the stream has bytes of its own to send
        // (TLS records produced while reading).
        if out.is_empty() && !stream.has_pending_output() {
            // A permit stored by `notify_one` between `take_output` and here makes this
            // return at once, so no queued batch can be missed.
            wake_writer.notified().await;
            continue;
        }
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
    mut buf: BytesMut,
) {
    let mut pushes = Vec::new();
    // Replies that arrived with the handshake's last one are delivered before the first
    // read, through the same path as any read.
    let mut first = (!buf.is_empty()).then_some(Ok(buf.len()));
    loop {
        let res = match first.take() {
            Some(leftover) => leftover,
            None => {
                buf = ready_for_read(buf, options.read_buffer_size);
                if buf.capacity() - buf.len() < MIN_READ_SPACE {
                    let want = options.read_buffer_size.max(MIN_READ_SPACE);
                    if !buf.try_reclaim(want) {
                        // The replies just decoded still share the buffer until their
                        // callers run: let them, then the buffer can be reused in place
                        // instead of a new one allocated (about once per 40 batches).
                        tokio::task::yield_now().await;
                        buf.reserve(want);
                    }
                }
                let (res, returned) = stream.read(buf).await;
                buf = returned;
                res
            }
        };
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
                    let failure = deliver_all(
                        &mut pool,
                        &stats,
                        conn,
                        &mut buf,
                        &options.limits,
                        &mut pushes,
                    );
                    pool.read_progress(conn, std::time::Instant::now);
                    failure
                }
            }
        };
        // The pool is not borrowed any more: the handler may call the client.
        hand_over(&options, conn, &pool, &mut pushes);
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

/// Gives the push frames read to the user's handler, if there is one (they were counted
/// already); without one they are dropped.
fn hand_over(options: &ConnOptions, conn: ConnId, pool: &RefCell<Pool>, pushes: &mut Vec<Value>) {
    if pushes.is_empty() {
        return;
    }
    let Some(handler) = &options.push_handler else {
        pushes.clear();
        return;
    };
    let node = pool.borrow().addr(conn).cloned();
    if let Some(node) = node {
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

/// Decodes every whole reply in `buf` and hands each to its sink. A decode error poisons
/// the stream (nothing after it can be framed), so it ends the connection; replies before
/// it were delivered already and are kept.
fn deliver_all(
    pool: &mut Pool,
    stats: &Stats,
    conn: ConnId,
    buf: &mut BytesMut,
    limits: &DecodeLimits,
    pushes: &mut Vec<Value>,
) -> Option<Error> {
    loop {
        match decode(buf, limits) {
            Ok(Some(value)) => match pool.deliver(conn, value) {
                Ok(Delivery::Reply) => {}
                // Out-of-band data (invalidations, messages): it answers no request.
                Ok(Delivery::Push(push)) => {
                    stats.add_push();
                    tracing::trace!(node = %describe(pool, conn), "push frame");
                    pushes.push(push);
                }
                Err(e) => return Some(e),
            },
            Ok(None) => return None,
            Err(e) => {
                return Some(Error::protocol(format!(
                    "{}: {}",
                    describe(pool, conn),
                    e.detail()
                )))
            }
        }
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
