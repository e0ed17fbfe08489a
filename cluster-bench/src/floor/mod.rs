//! The *floor*: the lowest cost any client could have for a pipeline on this cluster,
//! measured in the same run as the clients.
//!
//! Everything a client must decide per pipeline is done once, at setup: one
//! `CLUSTER SLOTS` gives the slot map, every command's slot gives its node, and every
//! node's batch is encoded once as the RESP bytes it sends. Each pipeline then costs
//! what no client can avoid: one send of each node's batch and one read per node, all
//! submitted by one `io_uring_enter` that waits for the replies (more only when a node's
//! replies come in pieces), and a count of complete replies, with no decoding and no
//! allocation. A client's cost above the floor is what its routing, encoding, decoding,
//! bookkeeping and runtime add.
//!
//! # Layout
//! - `frames.rs`: counts complete RESP replies in a buffer (pure).
//! - `batch.rs`: groups commands by owning node and encodes each batch (pure).
//! - `reader.rs`: one node's read buffer and the replies it still owes (pure).
//! - `ring.rs`: the io_uring, the sockets, and one pipeline's round trip.
//! - here: setup (slot map, connections, credentials) and the check, once, that the
//!   floor's pipeline gets the replies the commands ask for.
//!
//! It runs the fan-out and single-node workloads over plain TCP only; see
//! [`unsupported`] for the rest.

mod batch;
mod frames;
mod reader;
mod ring;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use redis_cluster_uring::resp::decode::decode_slice;
use redis_cluster_uring::resp::encode::encode_command;
use redis_cluster_uring::resp::{Decoded, Value};
use redis_cluster_uring::{NodeAddr, SlotMap};

use crate::clients::{self, Workload};
use crate::seeds::{self, Seed};
use batch::{plan_batches, NodeBatch};
use frames::FrameKind;
use ring::FloorRing;

/// Connect and setup replies: the library's default timeouts.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the floor does not run a case, or `None` when it does.
pub fn unsupported(workload: Workload, tls: bool) -> Option<&'static str> {
    if tls {
        return Some(
            "it sends raw RESP over plain TCP; a TLS floor would measure rustls's \
             encryption, not what a client adds",
        );
    }
    match workload {
        Workload::Fanout | Workload::SingleNode => None,
        Workload::Concurrent => Some(
            "concurrent callers measure how a client schedules many requests, and the \
             floor has no callers: it is one precomputed pipeline",
        ),
        Workload::Tasks | Workload::TasksFanout => Some(
            "tasks on a multi-thread runtime measure how a client serves many threads, and \
             the floor has one thread and no callers: it is one precomputed pipeline",
        ),
        Workload::Zipf => Some("zipf measures the client-side cache, which the floor has not"),
    }
}

/// The floor, set up for one case's pipeline and checked once.
#[derive(Debug)]
pub struct Floor {
    ring: FloorRing,
    /// Commands per pipeline.
    commands: usize,
    /// Pipelines run, the check's included.
    pipelines: u64,
}

/// Counts of a floor's I/O.
#[derive(Debug, Clone, Copy)]
pub struct FloorIo {
    /// Sends (one per node per pipeline).
    pub sends: u64,
    /// Read completions (one per node per pipeline, more when replies come in pieces).
    pub reads: u64,
    /// Pipelines.
    pub pipelines: u64,
}

impl Floor {
    /// Asks a seed for the slot map, plans and encodes the case's pipeline (the commands
    /// every client sends: [`clients::pipeline_args`]), connects to each node it uses,
    /// and runs it once, checking every reply (see [`Floor::check`]).
    pub fn connect(seeds: &[String], workload: Workload, k: usize) -> Result<Floor, String> {
        if let Some(why) = unsupported(workload, false) {
            return Err(format!("no floor for {}: {why}", workload.name()));
        }
        let commands = clients::pipeline_args(workload, k);
        let (map, seed) = slot_map(seeds)?;
        let batches = plan_batches(&commands, &map)?;
        let mut nodes = Vec::with_capacity(batches.len());
        for b in &batches {
            let stream = connect(&b.node, &seed)?;
            nodes.push((stream, b.bytes.clone(), b.indexes.len()));
        }
        let mut floor = Floor {
            ring: FloorRing::new(nodes)?,
            commands: k,
            pipelines: 0,
        };
        floor.check(&batches)?;
        Ok(floor)
    }

    /// Runs the pipeline once, counting replies only.
    pub fn execute(&mut self) -> Result<(), String> {
        self.pipelines += 1;
        self.ring.execute(|_, _| {})
    }

    /// Its I/O so far, the check pipeline's included.
    pub fn io(&self) -> FloorIo {
        FloorIo {
            sends: self.ring.sends,
            reads: self.ring.reads,
            pipelines: self.pipelines,
        }
    }

    /// One pipeline whose replies are looked at: as many as commands, every SET answered
    /// with a simple string (`+OK`) and every GET of a pre-set key with a bulk string. A
    /// floor that counted the wrong thing (errors, nils, another node's replies) would
    /// measure nothing, and this stops the case before it is timed.
    fn check(&mut self, batches: &[NodeBatch]) -> Result<(), String> {
        let mut kinds: Vec<Vec<FrameKind>> = vec![Vec::new(); batches.len()];
        self.pipelines += 1;
        self.ring
            .execute(|node, kind| kinds[node].push(kind))
            .map_err(|e| format!("the floor's check pipeline failed: {e}"))?;
        let answered: usize = kinds.iter().map(Vec::len).sum();
        if answered != self.commands {
            return Err(format!(
                "the floor's check pipeline got {answered} replies to {} commands",
                self.commands
            ));
        }
        for (batch, kinds) in batches.iter().zip(&kinds) {
            for (&index, &kind) in batch.indexes.iter().zip(kinds) {
                let (command, want) = if clients::is_get(index) {
                    ("GET", FrameKind::Bulk)
                } else {
                    ("SET", FrameKind::Simple)
                };
                if kind != want {
                    return Err(format!(
                        "the floor's check: command {index} ({command}, to {}) was answered \
                         with {kind:?}, not {want:?}",
                        batch.node
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The slot map from the first seed that answers `CLUSTER SLOTS`, and that seed (its
/// credentials are used on every node).
fn slot_map(seeds: &[String]) -> Result<(SlotMap, Seed), String> {
    let mut last = "no seeds".to_string();
    for s in seeds {
        let seed = seeds::parse(s)?;
        if seed.tls {
            return Err("the floor runs over plain TCP only".into());
        }
        let addr = NodeAddr::new(seed.host.clone(), seed.port);
        let asked = connect(&addr, &seed).and_then(|mut stream| {
            let reply = request(&mut stream, &[b"CLUSTER", b"SLOTS"])?;
            SlotMap::from_cluster_slots_with_host(&reply, &seed.host).map_err(|e| e.to_string())
        });
        match asked {
            Ok(map) => return Ok((map, seed)),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!("the floor found no slot map: {last}"))
}

/// A blocking connection to `node` with `TCP_NODELAY`, authenticated with the seed's
/// credentials when it has some.
fn connect(node: &NodeAddr, seed: &Seed) -> Result<TcpStream, String> {
    let addr = (node.host.as_str(), node.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {node}: {e}"))?
        .next()
        .ok_or_else(|| format!("{node} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, SETUP_TIMEOUT)
        .map_err(|e| format!("connect to {node}: {e}"))?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(SETUP_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(SETUP_TIMEOUT)))
        .map_err(|e| format!("socket options for {node}: {e}"))?;
    if let Some(password) = &seed.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &seed.username {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        match request(&mut stream, &args)? {
            Value::SimpleString(_) => {}
            // The server's error names no password; the reply is safe to show.
            other => return Err(format!("authentication refused by {node}: {other:?}")),
        }
    }
    Ok(stream)
}

/// One command on a blocking connection and its whole reply (setup only).
fn request(stream: &mut TcpStream, args: &[&[u8]]) -> Result<Value, String> {
    let mut out = BytesMut::new();
    encode_command(&mut out, args.iter().copied());
    stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match decode_slice(&buf, &Default::default()).map_err(|e| e.to_string())? {
            Decoded::Complete(value, _) => return Ok(value),
            Decoded::Incomplete => {}
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the node closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
