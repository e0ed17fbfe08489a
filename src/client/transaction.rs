//! The transaction driver: atomic pipelines on the shared connection, and `WATCH`
//! sessions on a dedicated one. Every decision is [`TxRound`]'s; this file moves bytes.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::driver::{deadline_after, pause, Client, Deadline, ExecGuard, Lane, Leases, Pipeline};
use crate::core::cmd::{Cmd, ToArg};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::plan::BatchEntry;
use crate::core::pool::ConnId;
use crate::core::reply::{server_error, FromReply};
use crate::core::report::Reporter;
use crate::core::request::Request;
use crate::core::resp::Value;
use crate::core::round::{RoundLimits, RoundReply};
use crate::core::topology::NodeAddr;
use crate::core::transaction::{
    check_session_command, session_failed, transaction_ended, watch_answered, watch_command,
    SessionEnd, WatchAttempts,
};

/// A `WATCH` session's connection, handed to the closure of [`Client::transaction`]: read
/// the watched keys through it, then return the transaction to run.
///
/// It is valid only during the attempt it was given for; afterwards its queries fail with
/// [`ErrorKind::Unsupported`].
#[derive(Debug, Clone)]
pub struct Watched {
    client: Client,
    conn: ConnId,
    node: NodeAddr,
    live: Rc<Cell<bool>>,
}

impl Watched {
    /// Runs one command on the watched connection (a read of a watched key, typically)
    /// and converts its reply. Only regular commands are accepted; a `MOVED` reply is an
    /// error of kind [`ErrorKind::Moved`], which the helper answers by starting the
    /// attempt again on the slot's new owner.
    pub async fn query<T: FromReply>(&self, command: Cmd) -> Result<T> {
        if !self.live.get() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "this WATCH session's attempt is over",
            ));
        }
        check_session_command(&command)?;
        let mut buf = BytesMut::with_capacity(command.encoded_len());
        command.write_to(&mut buf);
        let value = self
            .client
            .round_trip_one(self.conn, &self.node, buf)
            .await?;
        match value {
            Value::Error(line) => Err(server_error(&line)),
            v => T::from_reply(v),
        }
    }

    /// The node the session runs on (the owner of the watched keys' slot).
    pub fn node(&self) -> &NodeAddr {
        &self.node
    }
}

impl Client {
    /// Runs `cmds` as `MULTI ... EXEC` on the shared connection of their slot's node.
    pub(super) async fn execute_atomic(&self, cmds: &[Cmd]) -> Result<Vec<Result<Value>>> {
        self.execute_atomic_reported(cmds, None).await
    }

    /// [`Client::execute_atomic`], filling `reporter` when there is one.
    pub(super) async fn execute_atomic_reported(
        &self,
        cmds: &[Cmd],
        reporter: Option<&mut Reporter>,
    ) -> Result<Vec<Result<Value>>> {
        self.ensure_open()?;
        let deadline = deadline_after(self.inner.config.request_timeout);
        let mut request = Request::atomic(
            cmds,
            RoundLimits::of(&self.inner.config),
            deadline,
            reporter,
        )
        .inspect_err(|_| self.inner.counters.add_refused())?
        .traced({
            let pool = self.inner.pool.borrow();
            self.inner.cluster.borrow().trace(cmds, pool.nodes())
        });
        self.inner.counters.add_execution();
        self.drive(&mut request, deadline, Lane::Shared, None).await;
        request.results()
    }

    /// Optimistic locking: watches `keys` on a dedicated connection to their slot's node,
    /// calls `body` (which reads through the [`Watched`] handle and returns the
    /// transaction to run), then runs it with `EXEC` on the same connection. When a
    /// watched key changed meanwhile (`EXEC` answers nil), everything runs again, up to
    /// `Config::max_watch_attempts` times, then [`ErrorKind::WatchConflict`]. A slot that
    /// moved also starts the attempt again, on the new owner.
    ///
    /// Returning an empty pipeline ends the session without a transaction (`UNWATCH`) and
    /// returns no results. The keys, and those of the returned pipeline, must share one
    /// slot ([`ErrorKind::CrossSlot`] otherwise).
    ///
    /// ```no_run
    /// use redis_cluster_uring::{cmd, engine, Client, Config, Pipeline};
    /// engine::start(async {
    ///     let client = Client::connect(&["127.0.0.1:7000"], Config::default()).await?;
    ///     // Move 10 from one balance to another, only if the first has enough.
    ///     let results = client
    ///         .transaction(&["{acct}a", "{acct}b"], |conn| async move {
    ///             let a: i64 = conn.query::<Option<i64>>(cmd("GET").arg("{acct}a")).await?.unwrap_or(0);
    ///             let mut tx = Pipeline::new();
    ///             if a >= 10 {
    ///                 tx.add(cmd("DECRBY").arg("{acct}a").arg(10));
    ///                 tx.add(cmd("INCRBY").arg("{acct}b").arg(10));
    ///             }
    ///             Ok(tx)
    ///         })
    ///         .await?;
    ///     println!("{results:?}");
    ///     Ok::<(), redis_cluster_uring::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn transaction<K, F, Fut>(
        &self,
        keys: &[K],
        mut body: F,
    ) -> Result<Vec<Result<Value>>>
    where
        K: ToArg,
        F: FnMut(Watched) -> Fut,
        Fut: Future<Output = Result<Pipeline>>,
    {
        self.ensure_open()?;
        let (watch, slot) = watch_command(keys)?;
        self.inner.counters.add_execution();
        let limits = RoundLimits::of(&self.inner.config);
        let mut attempts = WatchAttempts::new(slot, limits, self.inner.config.max_watch_attempts);
        loop {
            let started = self.inner.cluster.borrow_mut().watch_node(&mut attempts);
            self.wake_refresh_if_due();
            let node = started?;
            let conn = self.dedicated_connection_for(&node);
            // Closed on every early return: its WATCH (or MULTI) state is unknown then.
            let mut lease = Leases {
                pool: self.inner.pool.clone(),
                conns: vec![conn],
                max_idle: self.inner.config.blocking_pool_size,
            };
            let mut buf = BytesMut::with_capacity(watch.encoded_len());
            watch.write_to(&mut buf);
            let reply = self.round_trip_one(conn, &node, buf).await?;
            let end = match watch_answered(reply)? {
                Some(end) => end,
                None => {
                    let live = Rc::new(Cell::new(true));
                    let handle = Watched {
                        client: self.clone(),
                        conn,
                        node: node.clone(),
                        live: live.clone(),
                    };
                    let pipe = body(handle).await;
                    live.set(false);
                    match pipe {
                        Ok(pipe) if pipe.is_empty() => {
                            let mut buf = BytesMut::new();
                            crate::core::cmd::cmd("UNWATCH").write_to(&mut buf);
                            self.round_trip_one(conn, &node, buf).await?;
                            lease.give_back();
                            return Ok(Vec::new());
                        }
                        Ok(pipe) => {
                            let deadline = deadline_after(self.inner.config.request_timeout);
                            let mut request = Request::watched(
                                &pipe.cmds,
                                slot,
                                &node,
                                limits,
                                deadline,
                                &self.inner.counters,
                            )?;
                            self.drive(&mut request, deadline, Lane::Dedicated, Some(conn))
                                .await;
                            match transaction_ended(request.finish(), &pipe)? {
                                SessionEnd::Done(results) => {
                                    lease.give_back();
                                    return Ok(results);
                                }
                                SessionEnd::Again { end, clean } => {
                                    if clean {
                                        // EXEC (nil or discarded) ended the watches.
                                        lease.give_back();
                                    } else {
                                        // Refused for now, the watches gone; the lease
                                        // closes the connection, which may be the reason.
                                        drop(lease);
                                    }
                                    end
                                }
                            }
                        }
                        // A read found the slot gone: drop the session and follow (the
                        // lease closes the connection and its watches).
                        Err(e) => session_failed(e)?,
                    }
                }
            };
            let ended = self.inner.cluster.borrow_mut().attempt_ended(
                &mut attempts,
                &node,
                end,
                Instant::now(),
            );
            self.wake_refresh_if_due();
            let wait = ended?;
            if !wait.is_zero() {
                pause(wait).await;
            }
        }
    }

    /// Writes `buf` (which gets `n` replies) to `conn` and collects the replies in order;
    /// the flag is true when the deadline came first (the missing replies are `None`, and
    /// are still read and dropped in order when they come).
    async fn round_trip(
        &self,
        conn: ConnId,
        buf: BytesMut,
        n: usize,
        deadline: Option<Deadline>,
    ) -> (Vec<Option<RoundReply>>, bool) {
        let pool = &self.inner.pool;
        let exec = pool.borrow_mut().new_exec(n);
        let _guard = ExecGuard {
            pool: pool.clone(),
            exec,
        };
        let entries: Vec<BatchEntry> = (0..n)
            .map(|index| BatchEntry {
                index,
                asking: false,
            })
            .collect();
        self.dispatch(exec, conn, &entries, buf);
        let all_in = self.wait_round(exec, deadline).await;
        let mut pool = pool.borrow_mut();
        let replies = (0..n).map(|i| pool.take_reply(exec, i)).collect();
        (replies, !all_in)
    }

    /// One command's reply on `conn`, within `request_timeout`.
    async fn round_trip_one(&self, conn: ConnId, node: &NodeAddr, buf: BytesMut) -> Result<Value> {
        let deadline = deadline_after(self.inner.config.request_timeout);
        let (mut replies, timed_out) = self.round_trip(conn, buf, 1, deadline).await;
        RoundReply::single(replies.pop().flatten(), timed_out, node)
    }
}
