//! The floor's I/O: one io_uring, one nonblocking socket per node, and per pipeline one
//! send of each node's whole batch plus one read per node, all submitted by a single
//! `io_uring_enter` that also waits for the replies.
//!
//! The ring is set up as the library's blocking ring is (`src/blocking/ring.rs`), each
//! feature with the same fallback: `SINGLE_ISSUER | DEFER_TASKRUN` (else `COOP_TASKRUN`,
//! else none), registered files, and sends that post no completion on success where the
//! kernel (6.0+) finishes a short `MSG_WAITALL` send itself or reports it as a failure.
//! A wait has the library's default request timeout, so a silent server fails the case
//! instead of hanging the bench.
//!
//! # Buffer ownership
//! The kernel reads a node's batch and writes into its read buffer after the call that
//! submitted the operation has returned. Both buffers belong to the [`Link`] and are
//! touched by this code only when no operation of theirs is in flight: a batch is never
//! written after setup, and a read buffer is looked at, moved within or grown only once
//! its read's completion has been reaped. A pipeline that succeeded leaves nothing in
//! flight (every read completed, and a send that posts no completion was finished
//! because the server answered every command it carried). A pipeline that failed may
//! leave operations in flight, so the ring is then marked broken: it refuses further
//! pipelines and, when dropped, leaks the buffers rather than free memory the kernel
//! might still use.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::frames::FrameKind;
use super::reader::{Progress, ReplyReader};

/// Submission queue entries: a send and a read per node fit with room to spare (the
/// bench's clusters have at most 16 primaries).
const RING_ENTRIES: u32 = 64;
/// Read buffer per node to start with; a reply larger than what is left grows it.
const READ_BUFFER: usize = 64 * 1024;
/// The longest wait for completions: the library's default request timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which optional kernel features the ring's operations use.
#[derive(Debug, Clone, Copy)]
struct Features {
    /// Sockets are registered files.
    registered_files: bool,
    /// Successful sends post no completion (`IOSQE_CQE_SKIP_SUCCESS`).
    skip_send_completions: bool,
    /// Waits have a timeout (`IORING_FEAT_EXT_ARG`).
    timed_wait: bool,
}

/// One node: its socket, its batch, and its read buffer.
#[derive(Debug)]
struct Link {
    stream: TcpStream,
    /// The batch, encoded once; never written after setup.
    batch: Vec<u8>,
    /// Replies the batch asks for.
    replies: usize,
    /// The read buffer and the replies still owed.
    reader: ReplyReader,
    /// Its read completed with replies still owed: it needs another.
    read_again: bool,
}

/// What `user_data` says an operation is: the link's index, and read or send.
const SEND_BIT: u64 = 1 << 63;

/// The floor's ring and its node links.
pub struct FloorRing {
    ring: IoUring,
    links: Vec<Link>,
    features: Features,
    /// A pipeline failed and may have left operations in flight.
    broken: bool,
    /// Sends completed so far (with or without a completion of their own).
    pub sends: u64,
    /// Read completions so far.
    pub reads: u64,
}

impl std::fmt::Debug for FloorRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorRing")
            .field("links", &self.links.len())
            .field("features", &self.features)
            .field("broken", &self.broken)
            .finish()
    }
}

fn einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// The ring with the flags of the library's blocking ring, falling back as it does.
fn build_ring() -> io::Result<(IoUring, bool)> {
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(RING_ENTRIES)
    {
        Ok(ring) => Ok((ring, true)),
        Err(e) if einval(&e) => match IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(RING_ENTRIES)
        {
            Ok(ring) => Ok((ring, false)),
            Err(e) if einval(&e) => Ok((IoUring::new(RING_ENTRIES)?, false)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

impl FloorRing {
    /// A ring over these connected sockets (made nonblocking here), each with the batch
    /// it sends and the number of replies that batch asks for. Must be called on the
    /// thread that runs the pipelines (the ring has a single issuer).
    pub fn new(nodes: Vec<(TcpStream, Vec<u8>, usize)>) -> Result<FloorRing, String> {
        if nodes.len() * 2 > RING_ENTRIES as usize {
            return Err(format!(
                "the floor's ring takes at most {} nodes",
                RING_ENTRIES / 2
            ));
        }
        let (ring, defer_taskrun) = build_ring().map_err(|e| format!("io_uring setup: {e}"))?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        for (code, name) in [
            (opcode::Send::CODE, "IORING_OP_SEND"),
            (opcode::Recv::CODE, "IORING_OP_RECV"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("the kernel's io_uring lacks {name}"));
            }
        }
        let mut links = Vec::with_capacity(nodes.len());
        for (stream, batch, replies) in nodes {
            stream
                .set_nonblocking(true)
                .map_err(|e| format!("nonblocking socket: {e}"))?;
            links.push(Link {
                stream,
                batch,
                replies,
                reader: ReplyReader::new(READ_BUFFER),
                read_again: false,
            });
        }
        let fds: Vec<RawFd> = links.iter().map(|l| l.stream.as_raw_fd()).collect();
        let features = Features {
            registered_files: ring.submitter().register_files(&fds).is_ok(),
            // As the library: single issuer proves 6.0+, where a short MSG_WAITALL send
            // is retried by the kernel or failed (and then posts a completion).
            skip_send_completions: ring.params().is_feature_skip_cqe_on_success() && defer_taskrun,
            timed_wait: ring.params().is_feature_ext_arg(),
        };
        Ok(FloorRing {
            ring,
            links,
            features,
            broken: false,
            sends: 0,
            reads: 0,
        })
    }

    /// Sends every node's batch and counts its replies until all are in, telling `seen`
    /// each reply's node (its index among the links) and kind, in order. Error replies
    /// make it an error once all replies are in; an I/O or protocol failure breaks the
    /// ring for good (see the module docs).
    pub fn execute(&mut self, mut seen: impl FnMut(usize, FrameKind)) -> Result<(), String> {
        if self.broken {
            return Err(
                "an earlier pipeline failed mid-flight; the floor's ring is retired".into(),
            );
        }
        match self.round_trip(&mut seen) {
            Ok(0) => Ok(()),
            Ok(errors) => Err(format!("{errors} error replies")),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// One pipeline; the error replies it counted.
    fn round_trip(&mut self, seen: &mut impl FnMut(usize, FrameKind)) -> Result<usize, String> {
        // Completions still to come: reads, and sends that post one on success.
        let mut pending = 0;
        // Every send before any read: the kernel issues them in this order within the one
        // call, so a node that answers while the others' sends go out has its reply
        // waiting when its read is issued, read at once instead of after a poll wake-up.
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            link.reader.expect(link.replies);
            self.push_send(i)?;
            if !self.features.skip_send_completions {
                pending += 1;
            }
        }
        for i in 0..self.links.len() {
            self.push_read(i)?;
            pending += 1;
        }
        let skip_sends = self.features.skip_send_completions;
        while pending > 0 {
            self.enter(pending)?;
            let Self {
                ring,
                links,
                sends,
                reads,
                ..
            } = self;
            for cqe in ring.completion() {
                let (index, is_send) = (
                    (cqe.user_data() & !SEND_BIT) as usize,
                    cqe.user_data() & SEND_BIT != 0,
                );
                let result = cqe.result();
                let link = links.get_mut(index).ok_or("a completion for no node")?;
                if is_send {
                    // Posted on success only without the skip flag, and on any failure.
                    if result < 0 {
                        return Err(format!("send: {}", io::Error::from_raw_os_error(-result)));
                    }
                    if result as usize != link.batch.len() {
                        return Err(format!("short send: {result} of {}", link.batch.len()));
                    }
                    if !skip_sends {
                        *sends += 1;
                        pending -= 1;
                    }
                    continue;
                }
                pending -= 1;
                *reads += 1;
                let n = match result {
                    n if n > 0 => n as usize,
                    0 => return Err("the node closed the connection".into()),
                    e => return Err(format!("read: {}", io::Error::from_raw_os_error(-e))),
                };
                let progress = link
                    .reader
                    .advance(n, |kind| seen(index, kind))
                    .map_err(|e| format!("node {index}: {e}"))?;
                if progress == Progress::More {
                    link.read_again = true;
                }
            }
            for i in 0..self.links.len() {
                if std::mem::take(&mut self.links[i].read_again) {
                    self.push_read(i)?;
                    pending += 1;
                }
            }
        }
        if self.features.skip_send_completions {
            // Sends that posted nothing are done: every node answered all they carried.
            self.sends += self.links.len() as u64;
        }
        Ok(self.links.iter().map(|l| l.reader.errors()).sum())
    }

    /// How an SQE names link `i`'s socket.
    fn target(&self, i: usize) -> Target {
        if self.features.registered_files {
            Target::Fixed(i as u32)
        } else {
            Target::Fd(self.links[i].stream.as_raw_fd())
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> Result<(), String> {
        // SAFETY: the kernel uses the memory an entry points at after this call returns,
        // so that memory must stay valid and untouched until the operation completes.
        // Every entry comes from push_send or push_read: a send of exactly the bytes of
        // a link's `batch`, or a read into the link's `reader.spare()` (that slice's own
        // pointer and length, so in bounds). Both are the heap memory of `Vec`s owned by
        // a `Link` in `self.links`; moving a `Link` would not move that memory, and
        // `links` is never changed after `new` anyway. `batch` is never written after
        // setup. A reader's buffer is looked at, moved within or resized only through
        // `spare` (to arm its next read) and `advance` (on its read's completion), and a
        // link has at most one read in flight, so never under a read in flight. Neither
        // is freed while an operation may be in flight: a round trip that returns Ok
        // leaves none (module docs), and one that fails marks the ring broken, whose drop
        // leaks the buffers. Descriptors need no such care: an operation in flight holds
        // its own reference to its socket, and a registered file stays open while
        // registered.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| "the floor's submission queue is full".to_string())
    }

    /// Queues link `i`'s whole batch as one send.
    fn push_send(&mut self, i: usize) -> Result<(), String> {
        let target = self.target(i);
        let batch = &self.links[i].batch;
        let len = u32::try_from(batch.len()).map_err(|_| "a batch over 4 GiB".to_string())?;
        let ptr = batch.as_ptr();
        let entry = match target {
            Target::Fixed(f) => opcode::Send::new(types::Fixed(f), ptr, len),
            Target::Fd(fd) => opcode::Send::new(types::Fd(fd), ptr, len),
        }
        .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
        .build()
        .user_data(i as u64 | SEND_BIT);
        let entry = if self.features.skip_send_completions {
            entry.flags(squeue::Flags::SKIP_SUCCESS)
        } else {
            entry
        };
        self.push(entry)
    }

    /// Queues a read into link `i`'s buffer after the bytes it holds.
    fn push_read(&mut self, i: usize) -> Result<(), String> {
        let target = self.target(i);
        let spare = self.links[i].reader.spare();
        // A read may take less than offered: the kernel never writes past `len`.
        let (ptr, len) = (
            spare.as_mut_ptr(),
            u32::try_from(spare.len()).unwrap_or(u32::MAX),
        );
        let entry = match target {
            Target::Fixed(f) => opcode::Recv::new(types::Fixed(f), ptr, len),
            Target::Fd(fd) => opcode::Recv::new(types::Fd(fd), ptr, len),
        }
        .build()
        .user_data(i as u64);
        self.push(entry)
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions.
    fn enter(&mut self, want: usize) -> Result<(), String> {
        let submitter = self.ring.submitter();
        let result = if self.features.timed_wait {
            let ts = types::Timespec::from(REPLY_TIMEOUT);
            submitter.submit_with_args(want, &types::SubmitArgs::new().timespec(&ts))
        } else {
            submitter.submit_and_wait(want)
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                Err(format!("no reply within {} s", REPLY_TIMEOUT.as_secs()))
            }
            Err(e) => Err(format!("io_uring_enter: {e}")),
        }
    }
}

impl Drop for FloorRing {
    fn drop(&mut self) {
        if self.broken {
            // Operations may still be in flight on these buffers: never free them.
            for link in &mut self.links {
                std::mem::forget(std::mem::take(&mut link.batch));
                link.reader.leak();
            }
        }
    }
}

/// How an SQE names a socket.
#[derive(Clone, Copy)]
enum Target {
    /// Index in the registered file table (link `i` is slot `i`).
    Fixed(u32),
    Fd(RawFd),
}
