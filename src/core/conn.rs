//! One connection as a state machine with no I/O: TLS records, the handshake, the reply
//! FIFO and push frames. The blocking client's backends (`blocking/ring.rs`,
//! `blocking/poll.rs`) only move its bytes: they hand it what the socket gave
//! ([`Conn::receive`]) and write what it says ([`Conn::take_output`]). Every path is
//! unit-tested below without a socket.
//!
//! Order is the only correlation: Redis answers in request order, so the n-th reply
//! belongs to the n-th [`Sink`]. A caller's commands are held back until the handshake is
//! done (as in the async client), so they never run on a connection that failed its
//! handshake, and they are reported unsent if it does.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;

use crate::core::cmd::Cmd;
use crate::core::config::{Config, ReadFrom};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::handshake::{Handshake, HandshakeOptions, HandshakeStep, ServerInfo};
use crate::core::plan::BatchEntry;
use crate::core::resp::decode::decode;
use crate::core::resp::{DecodeLimits, Value};
use crate::core::tls::{Rustls, TlsConfig, TlsLayer};
use crate::core::topology::{NodeAddr, SlotMap};

/// Who waits for a reply. `T` names a caller's command: its index in the request for
/// the blocking client (one request at a time), the request and the index for the async
/// client (many requests share a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink<T> {
    /// The handshake state machine.
    Handshake,
    /// A caller's command.
    Reply(T),
    /// The `+OK` of an `ASKING`.
    Discard,
}

/// Where the connection is in its life.
#[derive(Debug)]
enum Phase {
    /// Sending and judging the handshake (TLS, when there is TLS, runs first; the
    /// handshake's commands wait in `out_plain` meanwhile).
    Handshaking(Box<Handshake>),
    /// Callers' commands flow.
    Ready,
    /// Failed; nothing more is sent or delivered.
    Failed,
}

/// A command's failure as the round state machine wants it.
#[derive(Debug)]
pub(crate) struct Lost<T = usize> {
    /// The command (see [`Sink`]).
    pub(crate) index: T,
    /// Why.
    pub(crate) error: Error,
    /// Whether its bytes had been handed to the kernel.
    pub(crate) sent: bool,
}

/// One connection's protocol state; `T` names a caller's command (see [`Sink`]).
#[derive(Debug)]
pub(crate) struct Conn<T = usize> {
    addr: NodeAddr,
    phase: Phase,
    tls: Option<TlsLayer>,
    limits: DecodeLimits,
    /// Plaintext opened from TLS records and not yet decoded (unused without TLS: replies
    /// are then decoded straight from the backend's read buffer, no copy).
    plain_in: BytesMut,
    /// Plaintext to send (handshake commands, then callers' commands once ready).
    out_plain: BytesMut,
    /// A written buffer given back (see [`Conn::give_back`]): the next output buffer.
    spare: BytesMut,
    /// TLS records to send (handshake messages, alerts, sealed plaintext).
    out_cipher: BytesMut,
    /// Callers' commands held back until the handshake is done.
    held: BytesMut,
    /// Reply order. The last `unsent` sinks belong to bytes not yet handed out.
    fifo: VecDeque<Sink<T>>,
    /// How many of them are the handshake's.
    handshake_sinks: usize,
    unsent: usize,
    /// Sinks whose bytes were handed out, and sinks answered, since the start.
    sent_total: u64,
    answered_total: u64,
    /// Replies for callers, in arrival order, kept by `receive` (the tests' way; the pool
    /// takes each as it is decoded, with [`Conn::receive_with`]).
    #[cfg(test)]
    replies: Vec<(T, Value)>,
    info: Option<ServerInfo>,
    /// Push frames read (they answer no request).
    pushes: Vec<Value>,
    /// A subscriber's connection: once the handshake is done, every frame is an event
    /// (a RESP2 server sends messages and confirmations as plain arrays), and nothing
    /// sent on it awaits a reply.
    events_only: bool,
}

/// What [`Conn::take_output`] hands to the backend.
#[derive(Debug)]
pub(crate) struct Output {
    /// The bytes to write, in order.
    pub(crate) bytes: BytesMut,
    /// When the bytes end with a command whose reply is awaited: the number of sinks sent
    /// so far, including it. Once [`Conn::answered`] reaches it, the server has read every
    /// byte of this output, so the kernel is done with the buffer (a send that posts no
    /// completion on success relies on this). `None`: nothing will prove it.
    pub(crate) proof: Option<u64>,
}

impl<T: Copy> Conn<T> {
    /// A fresh connection to `addr`: the TLS client hello (with TLS) and the handshake's
    /// first commands are queued at once.
    pub(crate) fn new(
        addr: NodeAddr,
        handshake: HandshakeOptions,
        tls: Option<TlsLayer>,
        limits: DecodeLimits,
    ) -> Result<Conn<T>> {
        let mut conn = Conn {
            phase: Phase::Ready,
            tls,
            ..Conn::stillborn(addr, limits)
        };
        if let Some(tls) = &mut conn.tls {
            tls.take_output(&mut conn.out_cipher)?;
        }
        let mut machine = Box::new(Handshake::new(handshake));
        let step = machine.start();
        conn.phase = Phase::Handshaking(machine);
        conn.step(step)?;
        Ok(conn)
    }

    /// A connection to `node` as the configuration wants it, decided here once for every
    /// driver: the credentials are asked now (a rotating provider is consulted on every
    /// connect and reconnect), a replica that serves reads gets `READONLY` (harmless on a
    /// primary if roles change), and with TLS the node's name is verified (a host that is
    /// no valid name fails this connection, never falls back to plain TCP). Every error
    /// names the node.
    pub(crate) fn to_node(
        node: &NodeAddr,
        config: &Config,
        map: &SlotMap,
        tls: Option<&(Arc<Rustls>, TlsConfig)>,
    ) -> Result<Conn<T>> {
        let handshake = HandshakeOptions {
            protocol: config.protocol,
            credentials: config.credentials.current().map_err(|e| at(node, e))?,
            client_name: config.client_name.clone(),
            database: config.database,
            read_only: config.read_from != ReadFrom::Primary && map.is_replica(node),
            // Replicas do not track: the cache fills only from primaries.
            tracking: config.cache.is_some() && !map.is_replica(node),
            ..HandshakeOptions::default()
        };
        let tls = match tls {
            Some((rustls, tls)) => {
                let name = tls.name_for(&node.host).map_err(|e| at(node, e))?;
                Some(TlsLayer::new(rustls.clone(), name).map_err(|e| at(node, e))?)
            }
            None => None,
        };
        Conn::new(node.clone(), handshake, tls, config.decode_limits)
    }

    /// A connection that failed before it started (its setup was refused): it sends
    /// nothing, and whatever is queued on it is lost unsent when it is failed.
    pub(crate) fn stillborn(addr: NodeAddr, limits: DecodeLimits) -> Conn<T> {
        Conn {
            addr,
            phase: Phase::Failed,
            tls: None,
            limits,
            plain_in: BytesMut::new(),
            out_plain: BytesMut::new(),
            spare: BytesMut::new(),
            out_cipher: BytesMut::new(),
            held: BytesMut::new(),
            fifo: VecDeque::new(),
            handshake_sinks: 0,
            unsent: 0,
            sent_total: 0,
            answered_total: 0,
            #[cfg(test)]
            replies: Vec::new(),
            info: None,
            pushes: Vec::new(),
            events_only: false,
        }
    }

    /// A connection past its handshake, for tests of what drives it.
    #[cfg(test)]
    pub(crate) fn ready_for_test(addr: NodeAddr) -> Conn<T> {
        Conn {
            phase: Phase::Ready,
            ..Conn::stillborn(addr, DecodeLimits::default())
        }
    }

    /// [`Conn::ready_for_test`] whose handshake turned tracking on.
    #[cfg(test)]
    pub(crate) fn tracking_for_test(addr: NodeAddr) -> Conn<T> {
        Conn {
            info: Some(ServerInfo {
                tracking: true,
                ..ServerInfo::default()
            }),
            ..Conn::ready_for_test(addr)
        }
    }

    /// The node.
    pub(crate) fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// True once the handshake is done.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// What the server said of itself in the handshake.
    pub(crate) fn server_info(&self) -> Option<&ServerInfo> {
        self.info.as_ref()
    }

    /// Sinks answered since the start (see [`Output::proof`]).
    pub(crate) fn answered(&self) -> u64 {
        self.answered_total
    }

    /// Makes this a subscriber's connection (see `events_only`).
    pub(crate) fn into_events_only(mut self) -> Conn<T> {
        self.events_only = true;
        self
    }

    /// Queues a command that gets no reply of its own on an events-only connection
    /// (`SUBSCRIBE`, `SUNSUBSCRIBE`, ...: the server answers with events).
    pub(crate) fn queue_unanswered(&mut self, command: &Cmd) {
        let target = if self.is_ready() {
            &mut self.out_plain
        } else {
            &mut self.held
        };
        command.write_to(target);
    }

    /// Push frames read since the last call.
    pub(crate) fn take_pushes(&mut self) -> std::vec::Drain<'_, Value> {
        self.pushes.drain(..)
    }

    /// Queues a batch: one sink per command, `Discard` before each `ASKING`. `buf` holds
    /// the batch's encoded commands in the same order; `to` names each entry's command.
    pub(crate) fn queue(&mut self, entries: &[BatchEntry], buf: BytesMut, to: impl Fn(usize) -> T) {
        for entry in entries {
            if entry.asking {
                self.fifo.push_back(Sink::Discard);
                self.unsent += 1;
            }
            self.fifo.push_back(Sink::Reply(to(entry.index)));
            self.unsent += 1;
        }
        let target = self.target();
        if target.is_empty() && target.capacity() < buf.len() {
            // Adopt a batch larger than the buffer: no copy. A smaller one is copied, so
            // the buffer keeps its working size.
            *target = buf;
        } else {
            target.extend_from_slice(&buf);
        }
    }

    /// Queues one command, encoded straight into the output buffer (the single-command
    /// path allocates nothing here once the buffer has its working size).
    pub(crate) fn queue_command(&mut self, command: &Cmd, to: T) {
        self.fifo.push_back(Sink::Reply(to));
        self.unsent += 1;
        command.write_to(self.target());
    }

    /// Where callers' bytes go now: out, or held until the handshake is done.
    fn target(&mut self) -> &mut BytesMut {
        if self.is_ready() {
            &mut self.out_plain
        } else {
            &mut self.held
        }
    }

    /// Bytes queued by callers and not yet handed out (the backlog a cap applies to):
    /// while the handshake runs, `out_plain` holds only its own commands.
    pub(crate) fn queued_bytes(&self) -> usize {
        let out = if self.is_ready() {
            self.out_plain.len()
        } else {
            0
        };
        out + self.held.len()
    }

    /// Replies awaited by callers (the handshake's own aside: a cap on a caller's backlog
    /// must not refuse the first request on a connection still shaking hands).
    pub(crate) fn callers_awaited(&self) -> usize {
        self.fifo.len() - self.handshake_sinks
    }

    /// Replies awaited, for bytes handed out or not.
    pub(crate) fn awaited(&self) -> usize {
        self.fifo.len()
    }

    /// True while bytes handed out still await a reply (the node owes an answer).
    pub(crate) fn owes_replies(&self) -> bool {
        self.fifo.len() > self.unsent
    }

    /// A written buffer back from the backend, emptied: the next [`Conn::take_output`]
    /// swaps it in for the one it hands out, so two buffers alternate instead of one
    /// being allocated per write (callers queue into the other while a write is in
    /// flight), unless it grew far past `usual` for one large batch.
    pub(crate) fn give_back(&mut self, mut buf: BytesMut, usual: usize) {
        buf.clear();
        if buf.capacity() <= 4 * usual.max(4096) && buf.capacity() > self.spare.capacity() {
            self.spare = buf;
        }
    }

    /// True when [`Conn::take_output`] has bytes.
    pub(crate) fn wants_write(&self) -> bool {
        !self.out_cipher.is_empty() || !self.out_plain.is_empty()
    }

    /// The bytes to write now (ciphertext with TLS), or `None`. Their sinks count as sent
    /// from here on: once the bytes are handed to the kernel, a failure cannot tell whether
    /// the server ran them.
    pub(crate) fn take_output(&mut self) -> Result<Option<Output>> {
        let held_sinks = self.held_sinks();
        let going = self.unsent - held_sinks;
        let out = match &mut self.tls {
            None => &mut self.out_plain,
            Some(tls) => {
                if !self.out_plain.is_empty() {
                    if tls.is_handshaking() {
                        // Not yet: the plaintext waits for the TLS handshake.
                        return Ok(self.take_cipher());
                    }
                    tls.seal(&self.out_plain, &mut self.out_cipher)
                        .map_err(|e| at(&self.addr, e))?;
                    self.out_plain.clear();
                }
                &mut self.out_cipher
            }
        };
        if out.is_empty() {
            // Nothing to write: the buffer (and its capacity) stays.
            return Ok(None);
        }
        let bytes = std::mem::replace(out, std::mem::take(&mut self.spare));
        self.unsent = held_sinks;
        self.sent_total += going as u64;
        Ok(Some(Output {
            bytes,
            proof: (going > 0).then_some(self.sent_total),
        }))
    }

    fn take_cipher(&mut self) -> Option<Output> {
        let bytes = std::mem::take(&mut self.out_cipher);
        (!bytes.is_empty()).then_some(Output { bytes, proof: None })
    }

    /// Sinks at the back of the FIFO whose bytes are held for the end of the handshake.
    fn held_sinks(&self) -> usize {
        if self.held.is_empty() {
            0
        } else {
            // Everything queued by callers while handshaking is held; handshake sinks
            // are never at the back once callers queued behind them.
            self.fifo
                .iter()
                .rev()
                .take(self.unsent)
                .take_while(|s| !matches!(s, Sink::Handshake))
                .count()
        }
    }

    /// [`Conn::receive_with`], keeping the callers' replies for `take_replies` (the
    /// tests' way).
    #[cfg(test)]
    pub(crate) fn receive(&mut self, input: &mut BytesMut) -> Result<()> {
        let mut replies = std::mem::take(&mut self.replies);
        let received = self.receive_with(input, |to, value| replies.push((to, value)));
        self.replies = replies;
        received
    }

    /// Takes what the socket gave: `input` holds bytes read (appended by the backend).
    /// Whole replies are taken from it (without TLS) or it is emptied into the TLS layer;
    /// what remains is the start of a reply still arriving. Each caller's reply goes to
    /// `deliver` as it is decoded, in order (no vector in between). An error fails the
    /// connection (the caller then calls [`Conn::fail`]); the replies before it were
    /// delivered.
    pub(crate) fn receive_with(
        &mut self,
        input: &mut BytesMut,
        mut deliver: impl FnMut(T, Value),
    ) -> Result<()> {
        if matches!(self.phase, Phase::Failed) {
            input.clear();
            return Ok(());
        }
        match &mut self.tls {
            None => self.decode_from(input, &mut deliver),
            Some(tls) => {
                let addr = &self.addr;
                let closed = tls
                    .open(input, &mut self.plain_in)
                    .map_err(|e| at(addr, e))?;
                input.clear();
                if tls.wants_write() {
                    tls.take_output(&mut self.out_cipher)
                        .map_err(|e| at(addr, e))?;
                }
                let mut plain = std::mem::take(&mut self.plain_in);
                let decoded = self.decode_from(&mut plain, &mut deliver);
                self.plain_in = plain;
                decoded?;
                if closed {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("{} ended the TLS session", self.addr),
                    ));
                }
                Ok(())
            }
        }
    }

    fn decode_from(
        &mut self,
        buf: &mut BytesMut,
        deliver: &mut impl FnMut(T, Value),
    ) -> Result<()> {
        loop {
            let value = match decode(buf, &self.limits) {
                Ok(Some(v)) => v,
                Ok(None) => return Ok(()),
                Err(e) => return Err(at(&self.addr, e)),
            };
            if matches!(value, Value::Push(_)) || (self.events_only && self.fifo.is_empty()) {
                // Out-of-band: it answers no request.
                self.pushes.push(value);
                continue;
            }
            // Only sinks whose bytes went out can be answered.
            if self.fifo.len() <= self.unsent {
                return Err(Error::protocol(format!(
                    "{} sent a reply nothing asked for",
                    self.addr
                )));
            }
            let Some(sink) = self.fifo.pop_front() else {
                return Err(Error::protocol("reply without a request"));
            };
            self.answered_total += 1;
            match sink {
                Sink::Reply(index) => deliver(index, value),
                Sink::Discard => {}
                Sink::Handshake => {
                    self.handshake_sinks = self.handshake_sinks.saturating_sub(1);
                    let step = match &mut self.phase {
                        Phase::Handshaking(machine) => machine.on_reply(value),
                        _ => return Err(Error::protocol("handshake reply out of place")),
                    };
                    self.step(step)?;
                }
            }
        }
    }

    /// Does what the handshake says.
    fn step(&mut self, step: HandshakeStep) -> Result<()> {
        match step {
            HandshakeStep::Send(cmds) => {
                // Handshake commands go before anything held for callers.
                let mut out = BytesMut::with_capacity(cmds.iter().map(Cmd::encoded_len).sum());
                for c in &cmds {
                    c.write_to(&mut out);
                }
                self.out_plain.extend_from_slice(&out);
                // Their sinks sit before the held callers' sinks.
                let held = self.held_sinks();
                let at = self.fifo.len() - held;
                for _ in &cmds {
                    self.fifo.insert(at, Sink::Handshake);
                }
                self.handshake_sinks += cmds.len();
                self.unsent += cmds.len();
                Ok(())
            }
            HandshakeStep::Wait => Ok(()),
            HandshakeStep::Done(info) => {
                self.info = Some(info);
                self.phase = Phase::Ready;
                let held = std::mem::take(&mut self.held);
                if self.out_plain.is_empty() {
                    self.out_plain = held;
                } else {
                    self.out_plain.extend_from_slice(&held);
                }
                Ok(())
            }
            HandshakeStep::Failed(error) => Err(Error::new(
                error.kind(),
                format!("{}: {}", self.addr, error.detail()),
            )),
        }
    }

    /// Replies for callers that arrived, in order: (command index, reply).
    #[cfg(test)]
    pub(crate) fn take_replies(&mut self) -> std::vec::Drain<'_, (T, Value)> {
        self.replies.drain(..)
    }

    /// Ends the connection: every caller's command still waiting gets `error`, marked
    /// sent or not. Nothing is sent or delivered afterwards.
    pub(crate) fn fail(&mut self, error: &Error) -> Vec<Lost<T>> {
        self.phase = Phase::Failed;
        let first_unsent = self.fifo.len() - self.unsent;
        let lost = self
            .fifo
            .drain(..)
            .enumerate()
            .filter_map(|(i, sink)| match sink {
                Sink::Reply(index) => Some(Lost {
                    index,
                    error: error.clone(),
                    sent: i < first_unsent,
                }),
                _ => None,
            })
            .collect();
        self.unsent = 0;
        self.handshake_sinks = 0;
        self.held.clear();
        self.out_plain.clear();
        self.out_cipher.clear();
        lost
    }
}

/// `e` naming the node it came from, as the async client's connection errors do.
fn at(addr: &NodeAddr, e: Error) -> Error {
    Error::new(e.kind(), format!("{addr}: {}", e.detail()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cmd::cmd;
    use crate::core::handshake::Credentials;

    fn options() -> HandshakeOptions {
        HandshakeOptions {
            lib: None,
            ..HandshakeOptions::default()
        }
    }

    fn hello_ok() -> &'static [u8] {
        b"%1\r\n+proto\r\n:3\r\n"
    }

    fn batch(cmds: &[(usize, bool, Cmd)]) -> (Vec<BatchEntry>, BytesMut) {
        let mut buf = BytesMut::new();
        let mut entries = Vec::new();
        for (index, asking, c) in cmds {
            if *asking {
                cmd("ASKING").write_to(&mut buf);
            }
            c.write_to(&mut buf);
            entries.push(BatchEntry {
                index: *index,
                asking: *asking,
            });
        }
        (entries, buf)
    }

    fn ready() -> Conn {
        let mut c = Conn::new(
            NodeAddr::new("h", 1),
            options(),
            None,
            DecodeLimits::default(),
        )
        .unwrap();
        let out = c.take_output().unwrap().unwrap();
        assert!(out.bytes.starts_with(b"*2\r\n$5\r\nHELLO"));
        c.receive(&mut BytesMut::from(hello_ok())).unwrap();
        assert!(c.is_ready());
        c
    }

    #[test]
    fn commands_wait_for_the_handshake_then_go_in_order() {
        let mut c = Conn::new(
            NodeAddr::new("h", 1),
            options(),
            None,
            DecodeLimits::default(),
        )
        .unwrap();
        let (entries, buf) = batch(&[(0, false, cmd("GET").arg("a"))]);
        c.queue(&entries, buf, |i| i);
        let out = c.take_output().unwrap().unwrap();
        // Only the handshake goes: the caller's GET is held.
        assert!(!out.bytes.windows(3).any(|w| w == b"GET"));
        assert_eq!(out.proof, Some(1));
        assert!(!c.wants_write());
        c.receive(&mut BytesMut::from(hello_ok())).unwrap();
        assert!(c.is_ready());
        let out = c.take_output().unwrap().unwrap();
        assert!(out.bytes.windows(3).any(|w| w == b"GET"));
        assert_eq!(out.proof, Some(2));
        c.receive(&mut BytesMut::from(&b"$1\r\nv\r\n"[..])).unwrap();
        assert_eq!(c.answered(), 2);
        let got: Vec<_> = c.take_replies().collect();
        assert_eq!(got, vec![(0, Value::Bulk("v".into()))]);
        assert_eq!(c.awaited(), 0);
    }

    #[test]
    fn replies_split_at_every_byte_land_in_order_and_asking_ok_is_dropped() {
        let replies: &[u8] = b"+OK\r\n$1\r\na\r\n>2\r\n$4\r\ninfo\r\n:1\r\n:7\r\n";
        for cut in 0..=replies.len() {
            let mut c = ready();
            let (entries, buf) = batch(&[
                (3, true, cmd("GET").arg("k")),
                (5, false, cmd("INCR").arg("n")),
            ]);
            c.queue(&entries, buf, |i| i);
            c.take_output().unwrap().unwrap();
            let mut input = BytesMut::from(&replies[..cut]);
            c.receive(&mut input).unwrap();
            input.extend_from_slice(&replies[cut..]);
            c.receive(&mut input).unwrap();
            assert!(input.is_empty());
            let got: Vec<_> = c.take_replies().collect();
            assert_eq!(
                got,
                vec![(3, Value::Bulk("a".into())), (5, Value::Int(7))],
                "cut at {cut}"
            );
            assert_eq!(c.take_pushes().count(), 1);
        }
    }

    #[test]
    fn written_buffers_alternate_instead_of_being_allocated_per_write() {
        let mut c = ready();
        let write = |c: &mut Conn| {
            c.queue_command(&cmd("GET").arg("k"), 0);
            c.take_output().unwrap().unwrap().bytes
        };
        let a = write(&mut c);
        let a_ptr = a.as_ptr();
        c.give_back(a, 4096);
        let b = write(&mut c);
        assert_ne!(
            b.as_ptr(),
            a_ptr,
            "A was given back while B was being filled"
        );
        let b_ptr = b.as_ptr();
        c.give_back(b, 4096);
        assert_eq!(write(&mut c).as_ptr(), a_ptr, "A again: no allocation");
        // Nothing to write: no buffer changes hands.
        assert!(c.take_output().unwrap().is_none());
        assert_eq!(write(&mut c).as_ptr(), b_ptr);
        // A buffer far past the usual size is let go.
        let mut big = BytesMut::with_capacity(1 << 20);
        big.extend_from_slice(b"x");
        c.give_back(big, 4096);
        assert_ne!(write(&mut c).capacity(), 1 << 20);
    }

    #[test]
    fn a_failure_tells_sent_from_unsent() {
        let mut c = ready();
        let (e1, b1) = batch(&[(0, false, cmd("SET").arg("a").arg(1))]);
        c.queue(&e1, b1, |i| i);
        c.take_output().unwrap().unwrap();
        let (e2, b2) = batch(&[(1, false, cmd("SET").arg("b").arg(1))]);
        c.queue(&e2, b2, |i| i);
        let lost = c.fail(&Error::new(ErrorKind::Io, "reset"));
        let summary: Vec<(usize, bool)> = lost.iter().map(|l| (l.index, l.sent)).collect();
        assert_eq!(summary, vec![(0, true), (1, false)]);
        assert!(c.awaited() == 0 && !c.wants_write());
    }

    #[test]
    fn held_commands_are_unsent_when_the_handshake_fails() {
        let mut c = Conn::new(
            NodeAddr::new("h", 1),
            HandshakeOptions {
                credentials: Some(Credentials::password("nope")),
                ..options()
            },
            None,
            DecodeLimits::default(),
        )
        .unwrap();
        let (entries, buf) = batch(&[(0, false, cmd("GET").arg("a"))]);
        c.queue(&entries, buf, |i| i);
        c.take_output().unwrap().unwrap();
        let e = c
            .receive(&mut BytesMut::from(&b"-WRONGPASS invalid password\r\n"[..]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.detail().starts_with("h:1"));
        let lost = c.fail(&e);
        assert_eq!(lost.len(), 1);
        assert!(!lost[0].sent);
    }

    #[test]
    fn resp2_fallback_commands_go_before_held_ones() {
        let mut c = Conn::new(
            NodeAddr::new("h", 1),
            HandshakeOptions {
                credentials: Some(Credentials::password("pw")),
                ..options()
            },
            None,
            DecodeLimits::default(),
        )
        .unwrap();
        c.take_output().unwrap().unwrap();
        let (entries, buf) = batch(&[(0, false, cmd("GET").arg("a"))]);
        c.queue(&entries, buf, |i| i);
        c.receive(&mut BytesMut::from(
            &b"-ERR unknown command 'HELLO'\r\n"[..],
        ))
        .unwrap();
        let out = c.take_output().unwrap().unwrap();
        assert!(out.bytes.starts_with(b"*2\r\n$4\r\nAUTH"));
        assert!(!out.bytes.windows(3).any(|w| w == b"GET"));
        c.receive(&mut BytesMut::from(&b"+OK\r\n"[..])).unwrap();
        assert!(c.is_ready());
        let out = c.take_output().unwrap().unwrap();
        assert!(out.bytes.starts_with(b"*2\r\n$3\r\nGET"));
        c.receive(&mut BytesMut::from(&b"$-1\r\n"[..])).unwrap();
        assert_eq!(c.take_replies().next(), Some((0, Value::Nil)));
    }

    #[test]
    fn unasked_replies_and_garbage_are_protocol_errors() {
        let mut c = ready();
        let e = c.receive(&mut BytesMut::from(&b"+OK\r\n"[..])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let mut c = ready();
        let (entries, buf) = batch(&[(0, false, cmd("GET").arg("a"))]);
        c.queue(&entries, buf, |i| i);
        // Not yet written: a reply cannot be for it.
        let e = c.receive(&mut BytesMut::from(&b"+OK\r\n"[..])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let mut c = ready();
        c.queue(
            &entries_of(0),
            BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]),
            |i| i,
        );
        c.take_output().unwrap();
        let e = c
            .receive(&mut BytesMut::from(&b"?what\r\n"[..]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }

    #[test]
    fn a_node_connection_is_set_up_as_the_configuration_says() {
        use crate::core::config::ReadFrom;
        use crate::core::handshake::Protocol;
        let primary = NodeAddr::new("10.0.0.1", 7000);
        let replica = NodeAddr::new("10.0.0.2", 7001);
        let mut map = SlotMap::split_evenly(std::slice::from_ref(&primary));
        map.add_replica(0, replica.clone());
        let config = Config::default()
            .protocol(Protocol::Resp2)
            .credentials(Credentials::user("app", "s3cret"))
            .client_name("svc-a");
        let first = |node: &NodeAddr, config: &Config| {
            let mut c: Conn = Conn::to_node(node, config, &map, None).unwrap();
            let out = c.take_output().unwrap().unwrap().bytes;
            String::from_utf8_lossy(&out).into_owned()
        };
        let said = first(&replica, &config);
        // RESP2 asked; the credentials and the name are sent.
        assert!(said.contains("HELLO\r\n$1\r\n2\r\n"), "{said}");
        assert!(said.contains("AUTH") && said.contains("app") && said.contains("s3cret"));
        assert!(said.contains("SETNAME") && said.contains("svc-a"), "{said}");
        assert!(!said.contains("READONLY"), "reads go to primaries: {said}");
        let reads = config.clone().read_from(ReadFrom::Nearest);
        assert!(first(&replica, &reads).contains("READONLY"));
        assert!(
            !first(&primary, &reads).contains("READONLY"),
            "a primary is not a replica"
        );
        let plain = first(&primary, &Config::default());
        assert!(plain.contains("HELLO\r\n$1\r\n3\r\n"), "{plain}");
        assert!(!plain.contains("AUTH") && !plain.contains("svc-a"));
    }

    #[test]
    fn the_handshake_tells_what_the_server_is() {
        let mut c = Conn::<usize>::new(
            NodeAddr::new("h", 1),
            options(),
            None,
            DecodeLimits::default(),
        )
        .unwrap();
        assert!(c.server_info().is_none());
        c.take_output().unwrap().unwrap();
        c.receive(&mut BytesMut::from(
            &b"%3\r\n+server\r\n+valkey\r\n+version\r\n+9.0.0\r\n+proto\r\n:3\r\n"[..],
        ))
        .unwrap();
        let info = c.server_info().unwrap();
        assert_eq!(info.server.as_deref(), Some("valkey"));
        assert_eq!(info.version.as_deref(), Some("9.0.0"));
    }

    #[test]
    fn an_events_only_command_goes_out_with_no_reply_awaited() {
        let mut c = ready().into_events_only();
        c.queue_unanswered(&cmd("SUBSCRIBE").arg("ch"));
        let out = c.take_output().unwrap().unwrap();
        assert!(out.bytes.windows(9).any(|w| w == b"SUBSCRIBE"));
        // Nothing awaits a reply: nothing for a failure to call sent.
        assert_eq!(out.proof, None);
        assert_eq!(c.awaited(), 0);
    }

    #[test]
    fn one_queued_command_awaits_one_reply() {
        let mut c = ready();
        c.queue_command(&cmd("GET").arg("k"), 9);
        assert_eq!(c.awaited(), 1);
        assert!(!c.owes_replies(), "not handed out yet");
        let out = c.take_output().unwrap().unwrap();
        assert_eq!(out.proof, Some(2), "the handshake's sink, then this one");
        assert!(c.owes_replies());
    }

    #[test]
    fn a_batch_is_adopted_only_into_an_empty_buffer_too_small_for_it() {
        let mut c = ready();
        // A large batch into the empty buffer: taken as it is, no copy.
        let (entries, buf) = batch(&[(0, false, cmd("SET").arg("k").arg(vec![b'v'; 8192]))]);
        let ptr = buf.as_ptr();
        c.queue(&entries, buf, |i| i);
        let out = c.take_output().unwrap().unwrap().bytes;
        assert_eq!(out.as_ptr(), ptr, "the batch's own buffer, adopted");
        // A second batch, larger than the first's buffer, is appended behind it, never
        // put in its place. (No pointer is compared here: appending may reallocate.)
        let mut c = ready();
        let (entries, buf) = batch(&[(0, false, cmd("SET").arg("k").arg(vec![b'v'; 8192]))]);
        c.queue(&entries, buf, |i| i);
        let (entries, buf) = batch(&[(1, false, cmd("SET").arg("j").arg(vec![b'w'; 20_000]))]);
        c.queue(&entries, buf, |i| i);
        let out = c.take_output().unwrap().unwrap().bytes;
        assert_eq!(out.iter().filter(|&&b| b == b'v').count(), 8192);
        assert_eq!(out.iter().filter(|&&b| b == b'w').count(), 20_000);
        // A small batch into a roomy empty buffer is copied: the buffer keeps its size.
        let mut c = ready();
        c.give_back(BytesMut::with_capacity(8192), 4096);
        c.queue_command(&cmd("PING"), 0);
        let spare = c.take_output().unwrap().unwrap().bytes;
        c.give_back(spare, 4096);
        let (entries, buf) = batch(&[(1, false, cmd("GET").arg("k"))]);
        let small = buf.as_ptr();
        c.queue(&entries, buf, |i| i);
        let out = c.take_output().unwrap().unwrap().bytes;
        assert_ne!(out.as_ptr(), small, "copied");
        assert!(out.capacity() >= 8192);
        // Exactly the buffer's size: copied too (it fits).
        let mut c = ready();
        c.give_back(BytesMut::with_capacity(8192), 4096);
        c.queue_command(&cmd("PING"), 0);
        c.take_output().unwrap().unwrap();
        // (The bytes' content does not matter to queueing.)
        let exact = BytesMut::from(&vec![b'x'; 8192][..]);
        let ptr = exact.as_ptr();
        c.queue(&entries_of(5), exact, |i| i);
        assert_ne!(c.take_output().unwrap().unwrap().bytes.as_ptr(), ptr);
    }

    #[test]
    fn a_given_back_buffer_is_kept_up_to_four_times_the_usual_size() {
        let mut c = ready();
        let write = |c: &mut Conn| {
            c.queue_command(&cmd("GET").arg("k"), 0);
            c.take_output().unwrap().unwrap().bytes
        };
        // 16 KiB for a usual 4 KiB: kept, and handed out again.
        let kept = BytesMut::with_capacity(16 * 1024);
        let ptr = kept.as_ptr();
        c.give_back(kept, 4096);
        write(&mut c);
        assert_eq!(write(&mut c).as_ptr(), ptr);
        // A smaller one than the spare held is not kept in its place.
        let mut c = ready();
        c.give_back(BytesMut::with_capacity(16 * 1024), 4096);
        c.give_back(BytesMut::with_capacity(1024), 4096);
        write(&mut c);
        assert!(write(&mut c).capacity() >= 16 * 1024);
    }

    #[test]
    fn over_tls_the_handshake_and_commands_go_sealed() {
        use crate::core::tls::tests::{pki, server};
        use std::io::{Read, Write};
        let pki = pki();
        let config = crate::core::tls::TlsConfig::new()
            .add_root_pem(pki.ca_pem.as_bytes())
            .unwrap();
        let layer = TlsLayer::new(
            config.build().unwrap(),
            config.name_for("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut c: Conn = Conn::new(
            NodeAddr::new("127.0.0.1", 1),
            options(),
            Some(layer),
            DecodeLimits::default(),
        )
        .unwrap();
        let mut srv = server(&pki);
        let mut plain = Vec::new();
        let mut input = BytesMut::new();
        let (entries, buf) = batch(&[(0, false, cmd("GET").arg("k"))]);
        c.queue(&entries, buf, |i| i);
        let mut answered_hello = false;
        for _ in 0..20 {
            while let Some(out) = c.take_output().unwrap() {
                let mut slice = &out.bytes[..];
                while !slice.is_empty() {
                    srv.read_tls(&mut slice).unwrap();
                }
            }
            srv.process_new_packets().unwrap();
            let _ = srv.reader().read_to_end(&mut plain);
            if !answered_hello && plain.windows(5).any(|w| w == b"HELLO") {
                srv.writer().write_all(hello_ok()).unwrap();
                answered_hello = true;
            }
            if plain.windows(3).any(|w| w == b"GET") {
                srv.writer().write_all(b"$1\r\nv\r\n").unwrap();
            }
            let mut back = Vec::new();
            while srv.wants_write() {
                srv.write_tls(&mut back).unwrap();
            }
            input.extend_from_slice(&back);
            c.receive(&mut input).unwrap();
            if let Some(reply) = c.take_replies().next() {
                assert_eq!(reply, (0, Value::Bulk("v".into())));
                assert!(!plain.is_empty() && answered_hello);
                return;
            }
        }
        panic!(
            "no reply over TLS; the server read {:?}",
            String::from_utf8_lossy(&plain)
        );
    }

    fn entries_of(index: usize) -> Vec<BatchEntry> {
        vec![BatchEntry {
            index,
            asking: false,
        }]
    }

    #[test]
    fn nil_value_check() {
        // `Value::Nil` is what a RESP2 null bulk decodes to.
        let mut b = BytesMut::from(&b"$-1\r\n"[..]);
        assert_eq!(
            decode(&mut b, &DecodeLimits::default()).unwrap(),
            Some(Value::Nil)
        );
    }
}
