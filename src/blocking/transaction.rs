//! Transactions on the blocking client: atomic pipelines and `WATCH` sessions. Every
//! decision is the pure [`TxRound`]'s and `crate::core::transaction`'s, as in the async client;
//! this file moves bytes.
//!
//! A `WATCH` session needs no dedicated connection here: the client has one caller, so
//! nothing else runs on the node's connection between `WATCH` and `EXEC`. What it must
//! guard against instead is that connection being replaced (a timeout or an error closes
//! it, and the next request would open a new one without the watches), so every query of
//! the session and the `EXEC` first check that the connection is still the one `WATCH`
//! ran on; and a session that ends early closes it, so no stale watch is left behind for
//! a later transaction.

use std::time::Instant;

use super::driver::{deadline_after, Client};
use crate::core::cmd::{cmd, Cmd, ToArg};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::pipeline::Pipeline;
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
    AttemptEnd, SessionEnd, WatchAttempts,
};

/// A `WATCH` session on a blocking client, handed to the closure of
/// [`Client::transaction`]: read the watched keys through it, then return the
/// transaction to run.
#[derive(Debug)]
pub struct Watched<'c> {
    client: &'c mut Client,
    node: NodeAddr,
    /// The connection holding the watches: its token and serial.
    conn: ConnId,
}

impl Watched<'_> {
    /// Runs one command on the session's connection (a read of a watched key, typically)
    /// and converts its reply. Only regular commands are accepted; a `MOVED` reply is an
    /// error of kind [`ErrorKind::Moved`], which [`Client::transaction`] answers by
    /// starting the attempt again on the slot's new owner. When the connection was lost
    /// (and its watches with it) the error is of kind [`ErrorKind::Io`].
    pub fn query<T: FromReply>(&mut self, command: Cmd) -> Result<T> {
        check_session_command(&command)?;
        match self
            .client
            .session_round_trip(&self.node, self.conn, command)?
        {
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
    /// Optimistic locking, as [`crate::Client::transaction`]: watches `keys` on their
    /// slot's node, calls `body` (which reads through the [`Watched`] handle and returns
    /// the transaction to run), then runs it with `EXEC` on the same connection. When a
    /// watched key changed meanwhile (`EXEC` answers nil), everything runs again, up to
    /// `Config::max_watch_attempts` times, then [`ErrorKind::WatchConflict`]. A slot that
    /// moved also starts the attempt again, on the new owner (within `max_redirects`),
    /// and so does a transaction the server refused for now (`TRYAGAIN`, `CLUSTERDOWN`:
    /// within `max_retries`, with backoff, then that refusal is the error).
    ///
    /// Returning an empty pipeline ends the session without a transaction (`UNWATCH`) and
    /// returns no results. The keys, and those of the returned pipeline, must share one
    /// slot ([`ErrorKind::CrossSlot`] otherwise).
    ///
    /// ```no_run
    /// use redis_cluster_uring::{blocking, cmd, Config, Pipeline};
    /// let mut client = blocking::Client::connect(&["127.0.0.1:7000"], Config::default())?;
    /// // Move 10 from one balance to another, only if the first has enough.
    /// let results = client.transaction(&["{acct}a", "{acct}b"], |conn| {
    ///     let a: i64 = conn.query::<Option<i64>>(cmd("GET").arg("{acct}a"))?.unwrap_or(0);
    ///     let mut tx = Pipeline::new();
    ///     if a >= 10 {
    ///         tx.add(cmd("DECRBY").arg("{acct}a").arg(10));
    ///         tx.add(cmd("INCRBY").arg("{acct}b").arg(10));
    ///     }
    ///     Ok(tx)
    /// })?;
    /// println!("{results:?}");
    /// # Ok::<(), redis_cluster_uring::Error>(())
    /// ```
    pub fn transaction<K, F>(&mut self, keys: &[K], mut body: F) -> Result<Vec<Result<Value>>>
    where
        K: ToArg,
        F: FnMut(&mut Watched<'_>) -> Result<Pipeline>,
    {
        let (watch, slot) = watch_command(keys)?;
        self.cluster.counters().add_execution();
        self.housekeeping();
        let mut attempts = WatchAttempts::new(
            slot,
            RoundLimits::of(self.cluster.config()),
            self.cluster.config().max_watch_attempts,
        );
        loop {
            let node = self.cluster.watch_node(&mut attempts)?;
            let end = match self.watch_on(&node, watch.clone())? {
                Err(end) => end,
                Ok(conn) => {
                    let mut watched = Watched {
                        client: self,
                        node: node.clone(),
                        conn,
                    };
                    // A panic in the closure must not leave the watches on the node's
                    // connection, where they would abort a later transaction.
                    let pipe = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        body(&mut watched)
                    })) {
                        Ok(pipe) => pipe,
                        Err(panic) => {
                            self.close_session(conn);
                            std::panic::resume_unwind(panic)
                        }
                    };
                    match self.end_session(&node, conn, slot, pipe)? {
                        SessionEnd::Done(results) => return Ok(results),
                        SessionEnd::Again { end, .. } => end,
                    }
                }
            };
            let pause = self
                .cluster
                .attempt_ended(&mut attempts, &node, end, Instant::now())?;
            if !pause.is_zero() {
                // A pause: the time to refresh the map the next attempt is routed by.
                self.maybe_refresh();
                std::thread::sleep(pause);
            }
        }
    }

    /// Sends `WATCH` to `node`: the connection now holding the watches, or the attempt's
    /// end when the slot is elsewhere.
    fn watch_on(
        &mut self,
        node: &NodeAddr,
        watch: Cmd,
    ) -> Result<std::result::Result<ConnId, AttemptEnd>> {
        let conn =
            self.connection_for(node, deadline_after(self.cluster.config().request_timeout))?;
        let reply = self.session_round_trip(node, conn, watch)?;
        Ok(match watch_answered(reply)? {
            Some(end) => Err(end),
            None => Ok(conn),
        })
    }

    /// Runs what the session's closure returned: `UNWATCH` for nothing, or the
    /// transaction with `EXEC` on the watched connection. Whatever ends the session early
    /// (an error, a refusal) closes that connection, so no watch outlives the session.
    fn end_session(
        &mut self,
        node: &NodeAddr,
        conn: ConnId,
        slot: crate::core::slot::Slot,
        pipe: Result<Pipeline>,
    ) -> Result<SessionEnd> {
        let outcome = match pipe {
            Ok(pipe) if pipe.is_empty() => self
                .session_round_trip(node, conn, cmd("UNWATCH"))
                .map(|_| SessionEnd::Done(Vec::new())),
            Ok(pipe) => self.exec_watched(node, conn, slot, &pipe),
            // A read found the slot gone: drop the session's watches and follow.
            Err(e) => session_failed(e).map(|end| SessionEnd::Again { end, clean: false }),
        };
        match &outcome {
            // EXEC (committed, nil or discarded) and UNWATCH leave no watch behind.
            Ok(SessionEnd::Done(_)) | Ok(SessionEnd::Again { clean: true, .. }) => {}
            // Early ends (and a refusal, which may be a lost connection's) close it.
            Ok(SessionEnd::Again { clean: false, .. }) | Err(_) => self.close_session(conn),
        }
        outcome
    }

    fn exec_watched(
        &mut self,
        node: &NodeAddr,
        conn: ConnId,
        slot: crate::core::slot::Slot,
        pipe: &Pipeline,
    ) -> Result<SessionEnd> {
        let deadline = deadline_after(self.cluster.config().request_timeout);
        let mut request = Request::watched(
            pipe.commands(),
            slot,
            node,
            RoundLimits::of(self.cluster.config()),
            deadline,
            self.cluster.counters(),
        )?;
        self.check_session(node, conn)?;
        self.drive(&mut request, deadline);
        self.maybe_refresh();
        transaction_ended(request.finish(), pipe)
    }

    /// Fails unless `node`'s connection is still `conn` (the one holding the watches).
    fn check_session(&self, node: &NodeAddr, conn: ConnId) -> Result<()> {
        if self.pool.find(node) == Some(conn) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Io,
                format!("{node}: the WATCH session's connection was lost (and its watches with it); nothing was run"),
            ))
        }
    }

    /// Closes the session's connection if it is still open.
    fn close_session(&mut self, conn: ConnId) {
        if !self.pool.is_closed(conn) {
            self.close(conn);
        }
    }

    /// One command on the session's connection, within `request_timeout`; no redirect is
    /// followed (a `MOVED` is the error value), nothing is retried.
    fn session_round_trip(&mut self, node: &NodeAddr, conn: ConnId, command: Cmd) -> Result<Value> {
        self.check_session(node, conn)?;
        let deadline = deadline_after(self.cluster.config().request_timeout);
        let mut buf = bytes::BytesMut::with_capacity(command.encoded_len());
        command.write_to(&mut buf);
        let entries = [BatchEntry {
            index: 0,
            asking: false,
        }];
        let exec = self.pool.new_exec(1);
        self.write_batch(exec, node, &entries, buf, deadline);
        let timed_out = !self.pump(Some(exec), deadline, None);
        let reply = self.pool.take_reply(exec, 0);
        if timed_out {
            self.close_late();
        }
        self.pool.abandon(exec);
        RoundReply::single(reply, timed_out, node)
    }

    /// `MULTI`, the commands and `EXEC` in one write to their slot's node, judged as a
    /// whole by [`TxRound`] exactly as in the async client.
    pub(super) fn execute_atomic(
        &mut self,
        cmds: &[Cmd],
        reporter: Option<&mut Reporter>,
    ) -> Result<Vec<Result<Value>>> {
        self.housekeeping();
        let deadline = deadline_after(self.cluster.config().request_timeout);
        let mut request = Request::atomic(
            cmds,
            RoundLimits::of(self.cluster.config()),
            deadline,
            reporter,
        )
        .inspect_err(|_| self.cluster.counters().add_refused())?
        .traced(self.cluster.trace(cmds, self.pool.nodes()));
        self.cluster.counters().add_execution();
        self.drive(&mut request, deadline);
        self.maybe_refresh();
        request.results()
    }
}
