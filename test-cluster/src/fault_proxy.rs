//! A fault-injecting TCP proxy for chaos tests (std only: threads and blocking sockets).
//!
//! [`FaultProxies::bind`] binds `n` listeners on free `127.0.0.1` ports before the
//! cluster exists, so their ports can be given to [`ClusterSpec::announce_ports`]: the
//! nodes then tell clients (in `CLUSTER SLOTS`, `MOVED`, `ASK`, ...) to use the proxies.
//! Once the cluster is up, [`FaultProxies::start`] relays proxy `i` to the real client
//! port of node `i`. The cluster bus does not go through the proxies (the harness
//! announces the real bus port), so gossip and failure detection are unaffected by the
//! faults below; only client traffic is. Replicas, however, reach their master through
//! its announced port, so a replication link to a proxied master goes through its proxy
//! too.
//!
//! The faults, per proxy, and what each models:
//!
//! * [`FaultProxies::cut_after`]: a connection dropped in the middle of a reply (a
//!   crashed node, a reset by a middlebox, a killed pod). The client receives an exact
//!   prefix of the server's bytes and then end-of-file, so it sees a reply torn at a
//!   chosen byte, after its request may already have been executed.
//! * [`FaultProxies::stall`]: a partition or a hung host with the TCP connection still
//!   up. Nothing moves in either direction, no error is reported; only timeouts can
//!   tell. [`FaultProxies::unstall`] heals it and the held bytes flow again, in order.
//! * [`FaultProxies::delay`]: a slow or distant link: every chunk of server bytes is
//!   held for a while before the client gets it. Requests pass at once.
//!
//! Connections through a proxy that has no fault behave as a plain relay: bytes are
//! forwarded as read (up to 64 KiB per chunk, `TCP_NODELAY` on both sides), and an
//! end-of-file in one direction is passed on as a half-close (`shutdown(Write)`) in that
//! direction. An I/O error in either direction closes both sockets of the connection.
//! If the node cannot be reached (connect refused or not done within 1 s), the accepted
//! client connection is closed at once.
//!
//! ```no_run
//! use test_cluster::fault_proxy::FaultProxies;
//! use test_cluster::{Cluster, ClusterSpec};
//! let mut proxies = FaultProxies::bind(3).unwrap();
//! let cluster = Cluster::start(ClusterSpec {
//!     announce_ports: Some(proxies.ports()),
//!     ..ClusterSpec::default()
//! })
//! .unwrap();
//! let targets: Vec<u16> = cluster.nodes().iter().map(|n| n.port).collect();
//! proxies.start(&targets);
//! proxies.cut_after(0, 5); // the next reply from node 0 is torn after 5 bytes
//! ```
//!
//! Dropping the [`FaultProxies`] stops accepting, shuts down every relayed connection
//! (clients see end-of-file) and joins every thread.
//!
//! [`ClusterSpec::announce_ports`]: crate::ClusterSpec::announce_ports

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the proxy waits to connect to its node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The relay buffer per direction and connection.
const CHUNK: usize = 64 * 1024;

/// Fault-injecting proxies, one per node; see the [module documentation](self).
#[derive(Debug)]
pub struct FaultProxies {
    proxies: Vec<Proxy>,
    cuts: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Proxy {
    port: u16,
    /// Until [`FaultProxies::start`] hands it to the accepting thread.
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every change of the faults, of a connection, and on shutdown.
    changed: Condvar,
    /// Shared by all proxies of one [`FaultProxies`].
    cuts: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    shutdown: bool,
    stalled: bool,
    delay: Duration,
    /// The budget the next registered connection takes (see `cut_after`).
    pending_cut: Option<u64>,
    next_id: u64,
    conns: HashMap<u64, ConnEntry>,
    /// One per accepted connection; finished ones are pruned as new ones come.
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct ConnEntry {
    client: TcpStream,
    server: TcpStream,
    /// Server->client bytes this connection may still relay before it is cut.
    budget: Option<u64>,
    /// Cut or failed: both relay threads stop.
    cut: bool,
}

impl ConnEntry {
    fn shutdown(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxies {
    /// Binds `n` listeners on free `127.0.0.1` ports (not yet serving: a client that
    /// connects before [`FaultProxies::start`] waits in the listen backlog).
    pub fn bind(n: usize) -> std::io::Result<FaultProxies> {
        let cuts = Arc::new(AtomicU64::new(0));
        let mut proxies = Vec::with_capacity(n);
        for _ in 0..n {
            let listener = TcpListener::bind(("127.0.0.1", 0))?;
            let port = listener.local_addr()?.port();
            proxies.push(Proxy {
                port,
                listener: Some(listener),
                shared: Arc::new(Shared {
                    state: Mutex::new(State::default()),
                    changed: Condvar::new(),
                    cuts: Arc::clone(&cuts),
                }),
                acceptor: None,
            });
        }
        Ok(FaultProxies { proxies, cuts })
    }

    /// The listening ports, proxy 0 first; give them to
    /// [`ClusterSpec::announce_ports`](crate::ClusterSpec::announce_ports) (masters
    /// first, then replicas, as the cluster numbers its nodes).
    pub fn ports(&self) -> Vec<u16> {
        self.proxies.iter().map(|p| p.port).collect()
    }

    /// Starts relaying listener `i` to `127.0.0.1:targets[i]` (the real client port of
    /// node `i`); call once, after the cluster is up. Proxies without a target (when
    /// `targets` is shorter) and proxies already started are left as they are. A proxy
    /// whose thread cannot be spawned is reported on stderr and does not serve.
    pub fn start(&mut self, targets: &[u16]) {
        for (i, (proxy, &target)) in self.proxies.iter_mut().zip(targets).enumerate() {
            let Some(listener) = proxy.listener.take() else {
                continue;
            };
            let shared = Arc::clone(&proxy.shared);
            match std::thread::Builder::new()
                .name(format!("fault-proxy-{i}"))
                .spawn(move || accept_loop(listener, target, shared))
            {
                Ok(handle) => proxy.acceptor = Some(handle),
                Err(e) => eprintln!("fault proxy {i}: cannot spawn its thread: {e}"),
            }
        }
    }

    /// Arms a one-shot cut on proxy `i` that tears the connection after exactly `bytes`
    /// more server->client bytes:
    ///
    /// * every connection open on proxy `i` now gets a budget of `bytes` (replacing any
    ///   budget it had);
    /// * the next connection proxy `i` opens gets the same budget (this also covers a
    ///   client that has connected but that the proxy has not accepted yet); a later
    ///   call replaces this pending budget;
    /// * a connection whose budget runs out is cut: of the chunk that exhausts it only
    ///   the first `remaining budget` bytes are relayed, then both of its sockets are
    ///   shut down (the client reads that exact prefix, then end-of-file; the node sees
    ///   end-of-file) and [`FaultProxies::cuts`] counts one; with `bytes == 0`, open
    ///   connections are cut at once and a new one as soon as it is opened;
    /// * the first cut on proxy `i` drops the pending budget, so connections opened after
    ///   a cut are not affected (a reconnect works). Budgets already given to other open
    ///   connections stay until they run out, the connection closes, or
    ///   [`FaultProxies::clear`].
    ///
    /// Budgets count only bytes relayed after the call (or after the connection opened).
    ///
    /// Panics if `i` is not a proxy index.
    pub fn cut_after(&self, i: usize, bytes: u64) {
        let shared = &self.proxies[i].shared;
        let mut st = lock(&shared.state);
        st.pending_cut = Some(bytes);
        let mut cut_now = false;
        for entry in st.conns.values_mut().filter(|e| !e.cut) {
            if bytes == 0 {
                entry.cut = true;
                entry.budget = None;
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                entry.shutdown();
                cut_now = true;
            } else {
                entry.budget = Some(bytes);
            }
        }
        if cut_now {
            st.pending_cut = None;
        }
        drop(st);
        shared.changed.notify_all();
    }

    /// Stalls proxy `i`: from now on no byte is relayed in either direction on any of its
    /// connections (open or new). Bytes are held (at most one chunk per direction and
    /// connection inside the proxy, the rest in the kernel's buffers, so senders
    /// eventually block), sockets stay open, no error is reported. New connections are
    /// still accepted and connected to the node. No busy waiting.
    ///
    /// Panics if `i` is not a proxy index.
    pub fn stall(&self, i: usize) {
        self.update(i, |st| st.stalled = true);
    }

    /// Ends a [`FaultProxies::stall`] of proxy `i`: the held bytes are relayed, in order.
    ///
    /// Panics if `i` is not a proxy index.
    pub fn unstall(&self, i: usize) {
        self.update(i, |st| st.stalled = false);
    }

    /// Delays server->client bytes on proxy `i`: each chunk the proxy reads from the node
    /// is relayed once `d` has passed since it was read (`Duration::ZERO`: at once).
    /// The setting is read when the chunk is released, so a change also applies to
    /// chunks being held. A connection relays its chunks in order, one at a time, so a
    /// reply that arrives in several chunks is delayed by `d` per chunk. Client->server
    /// bytes are not delayed.
    ///
    /// Panics if `i` is not a proxy index.
    pub fn delay(&self, i: usize, d: Duration) {
        self.update(i, |st| st.delay = d);
    }

    /// Drops every fault of proxy `i`: unstalls it, sets the delay to zero, and removes
    /// the pending cut and every connection's cut budget.
    ///
    /// Panics if `i` is not a proxy index.
    pub fn clear(&self, i: usize) {
        self.update(i, |st| {
            st.stalled = false;
            st.delay = Duration::ZERO;
            st.pending_cut = None;
            for entry in st.conns.values_mut() {
                entry.budget = None;
            }
        });
    }

    /// Connections proxy `i` relays now and has not cut. A client's closed connection
    /// leaves only once its relay threads have seen both ends close, a moment later.
    ///
    /// Panics if `i` is not a proxy index.
    pub fn open_connections(&self, i: usize) -> usize {
        let st = lock(&self.proxies[i].shared.state);
        st.conns.values().filter(|e| !e.cut).count()
    }

    /// Connections cut by [`FaultProxies::cut_after`] so far, over all proxies. A cut is
    /// counted before its sockets are shut down, so a client that has seen the
    /// end-of-file of a cut also sees it counted.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    fn update(&self, i: usize, change: impl FnOnce(&mut State)) {
        let shared = &self.proxies[i].shared;
        change(&mut lock(&shared.state));
        shared.changed.notify_all();
    }
}

impl Drop for FaultProxies {
    fn drop(&mut self) {
        // Stop everything first, so all proxies wind down in parallel.
        for proxy in &self.proxies {
            let mut st = lock(&proxy.shared.state);
            st.shutdown = true;
            for entry in st.conns.values() {
                entry.shutdown();
            }
            drop(st);
            proxy.shared.changed.notify_all();
        }
        for proxy in &mut self.proxies {
            proxy.listener = None;
            if let Some(acceptor) = proxy.acceptor.take() {
                // Wake the blocking accept; it sees the shutdown and returns. If even a
                // loopback connect fails, the thread is left behind rather than joined
                // forever.
                let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));
                if TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok() {
                    let _ = acceptor.join();
                }
            }
            // The acceptor is gone (or never ran), so no handle is added any more.
            let threads = std::mem::take(&mut lock(&proxy.shared.state).threads);
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, target: u16, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        let mut st = lock(&shared.state);
        if st.shutdown {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                let conn_shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("fault-proxy-conn-{target}"))
                    .spawn(move || serve_conn(client, target, conn_shared));
                st.threads.retain(|t| !t.is_finished());
                match spawned {
                    Ok(handle) => st.threads.push(handle),
                    Err(e) => eprintln!("fault proxy for {target}: cannot spawn a thread: {e}"),
                }
            }
            Err(e) => {
                drop(st);
                if e.kind() != ErrorKind::Interrupted {
                    // Out of descriptors and the like: do not spin on it.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// What to do with a chunk read from the node.
enum Release {
    /// Relay it all.
    All,
    /// Relay this many bytes of it, then cut the connection.
    Cut(usize),
}

impl Shared {
    /// Blocks while proxy faults hold a chunk read at `read_at` (stall; delay when
    /// `read_at` is given). `None` when the relay must stop (shutdown, or the connection
    /// is cut); otherwise the state, still locked.
    fn wait_release(&self, id: u64, read_at: Option<Instant>) -> Option<MutexGuard<'_, State>> {
        let mut st = lock(&self.state);
        loop {
            if st.shutdown || st.conns.get(&id).is_none_or(|e| e.cut) {
                return None;
            }
            if st.stalled {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(read_at) = read_at else {
                return Some(st);
            };
            let now = Instant::now();
            let due = read_at + st.delay;
            if now >= due {
                return Some(st);
            }
            st = self
                .changed
                .wait_timeout(st, due - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops connection `id` in both directions: shuts its sockets down and wakes a relay
    /// thread that may be holding a chunk for it.
    fn stop(&self, id: u64) {
        let mut st = lock(&self.state);
        if let Some(entry) = st.conns.get_mut(&id) {
            entry.cut = true;
            entry.shutdown();
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Marks connection `id` cut (counted, pending cut dropped); the caller shuts its
    /// sockets down.
    fn mark_cut(&self, st: &mut State, id: u64) {
        if let Some(entry) = st.conns.get_mut(&id) {
            entry.cut = true;
            entry.budget = None;
        }
        st.pending_cut = None;
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

fn serve_conn(client: TcpStream, target: u16, shared: Arc<Shared>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], target));
    let Ok(server) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return; // dropping `client` closes it: the node is unreachable
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client_rd), Ok(client_wr), Ok(server_rd), Ok(server_wr)) = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let id = {
        let mut st = lock(&shared.state);
        if st.shutdown {
            return;
        }
        let id = st.next_id;
        st.next_id += 1;
        let budget = st.pending_cut.take();
        st.conns.insert(
            id,
            ConnEntry {
                client,
                server,
                budget,
                cut: false,
            },
        );
        if budget == Some(0) {
            shared.mark_cut(&mut st, id);
            if let Some(entry) = st.conns.get(&id) {
                entry.shutdown();
            }
        }
        id
    };
    let up_shared = Arc::clone(&shared);
    let upstream = std::thread::Builder::new()
        .name(format!("fault-proxy-up-{target}"))
        .spawn(move || relay_up(id, client_rd, server_wr, &up_shared));
    match upstream {
        Ok(upstream) => {
            relay_down(id, server_rd, client_wr, &shared);
            let _ = upstream.join();
        }
        Err(e) => eprintln!("fault proxy for {target}: cannot spawn a thread: {e}"),
    }
    if let Some(entry) = lock(&shared.state).conns.remove(&id) {
        entry.shutdown();
    }
}

/// Client -> server: held while stalled, never delayed or cut.
fn relay_up(id: u64, mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        match shared.wait_release(id, None) {
            // Shutdown or cut: whoever did it shuts the sockets down.
            None => return,
            Some(st) => drop(st),
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    shared.stop(id);
}

/// Server -> client: held while stalled, delayed, and cut at the byte budget.
fn relay_down(id: u64, mut server: TcpStream, mut client: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let release = {
            let Some(mut st) = shared.wait_release(id, Some(Instant::now())) else {
                return;
            };
            let budget = st.conns.get_mut(&id).and_then(|e| e.budget.as_mut());
            match budget {
                Some(left) if *left <= n as u64 => {
                    let keep = *left as usize;
                    shared.mark_cut(&mut st, id);
                    Release::Cut(keep)
                }
                Some(left) => {
                    *left -= n as u64;
                    Release::All
                }
                None => Release::All,
            }
        };
        match release {
            Release::All => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Release::Cut(keep) => {
                let _ = client.write_all(&buf[..keep]);
                break;
            }
        }
    }
    shared.stop(id);
}
