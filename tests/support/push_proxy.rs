//! A push-injecting TCP proxy: put in front of every node of a test cluster, it relays
//! requests unchanged and, going back to the client, inserts one RESP3 push frame before
//! every `every`-th whole reply frame. A client that hands a push to a request as its
//! reply gets the wrong answers behind such a proxy.
//!
//! Shape: [`PushProxies::bind`] the listeners first, start the cluster with
//! `announce_ports: Some(proxies.ports())` (one per node, masters first) so that the nodes
//! tell clients to come through the proxies, then [`PushProxies::start`] with the nodes'
//! real ports. Plain std: blocking sockets, two threads per relayed connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis_cluster_uring::resp::decode::decode_slice;
use redis_cluster_uring::resp::{DecodeLimits, Decoded};

/// The push frame inserted into the reply stream.
pub const PUSH_FRAME: &[u8] = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$8\r\ninjected\r\n";

/// One relayed connection: clones of both sockets (to shut them down from outside) and
/// its two copying threads.
struct Relay {
    client: TcpStream,
    server: TcpStream,
    threads: [JoinHandle<()>; 2],
}

impl Relay {
    fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    fn close(self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// State shared by the accept threads and the owner.
struct Shared {
    stop: AtomicBool,
    injected: AtomicU64,
    relays: Mutex<Vec<Relay>>,
}

/// Proxy listeners on loopback: bound by [`PushProxies::bind`], serving after
/// [`PushProxies::start`]. Dropping it stops accepting, closes every relayed connection
/// and joins all threads.
pub struct PushProxies {
    /// Bound listeners until `start` hands them to the accept threads.
    listeners: Vec<TcpListener>,
    ports: Vec<u16>,
    accept_threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl PushProxies {
    /// Binds n listeners on free 127.0.0.1 ports (not yet serving: connections wait in
    /// the backlog until [`PushProxies::start`]).
    pub fn bind(n: usize) -> std::io::Result<PushProxies> {
        let listeners = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(PushProxies {
            listeners,
            ports,
            accept_threads: Vec::new(),
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                injected: AtomicU64::new(0),
                relays: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The listening ports, in bind order.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// Starts relaying listener i to `127.0.0.1:targets[i]`. Going server->client, every
    /// `every`-th whole reply frame of a connection is preceded by one injected push
    /// ([`PUSH_FRAME`]); `every == 0` injects nothing. Pushes go in only at frame
    /// boundaries; if the server's bytes stop decoding, the rest of that connection is
    /// passed through unchanged.
    ///
    /// Panics if called twice or with the wrong number of targets.
    pub fn start(&mut self, targets: &[u16], every: usize) {
        assert_eq!(
            self.listeners.len(),
            self.ports.len(),
            "PushProxies::start called twice"
        );
        assert_eq!(
            targets.len(),
            self.listeners.len(),
            "one target per proxy listener"
        );
        for (listener, &target) in std::mem::take(&mut self.listeners).into_iter().zip(targets) {
            let shared = Arc::clone(&self.shared);
            let handle = std::thread::Builder::new()
                .name(format!("push-proxy-accept-{target}"))
                .spawn(move || accept_loop(listener, target, every, shared))
                .expect("spawn a push-proxy accept thread");
            self.accept_threads.push(handle);
        }
    }

    /// Push frames injected so far, over all connections.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }
}

impl Drop for PushProxies {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // A blocked accept returns for a connection: make one to each serving listener.
        if !self.accept_threads.is_empty() {
            for &port in &self.ports {
                let _ = TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_secs(1),
                );
            }
        }
        for t in self.accept_threads.drain(..) {
            let _ = t.join();
        }
        // No accept thread is left to add relays: close and join them all.
        let relays =
            std::mem::take(&mut *self.shared.relays.lock().unwrap_or_else(|p| p.into_inner()));
        for relay in relays {
            relay.close();
        }
    }
}

fn accept_loop(listener: TcpListener, target: u16, every: usize, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Dropping `client` on failure closes it: the node is unreachable.
        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
            continue;
        };
        let Some(relay) = relay(client, server, every, &shared) else {
            continue;
        };
        let mut relays = shared.relays.lock().unwrap_or_else(|p| p.into_inner());
        // Forget connections that are over, so their sockets are closed.
        relays.retain(|r| !r.is_finished());
        relays.push(relay);
    }
}

/// Starts the two copying threads of one connection.
fn relay(
    client: TcpStream,
    server: TcpStream,
    every: usize,
    shared: &Arc<Shared>,
) -> Option<Relay> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (c_in, s_out) = (client.try_clone().ok()?, server.try_clone().ok()?);
    let (s_in, c_out) = (server.try_clone().ok()?, client.try_clone().ok()?);
    let requests = std::thread::Builder::new()
        .name("push-proxy-requests".into())
        .spawn(move || {
            // Requests: straight through.
            let _ = std::io::copy(&mut &c_in, &mut &s_out);
            let _ = c_in.shutdown(Shutdown::Both);
            let _ = s_out.shutdown(Shutdown::Both);
        })
        .ok()?;
    let counter = Arc::clone(shared);
    let replies = match std::thread::Builder::new()
        .name("push-proxy-replies".into())
        .spawn(move || {
            copy_replies(&s_in, &c_out, every, &counter.injected);
            let _ = s_in.shutdown(Shutdown::Both);
            let _ = c_out.shutdown(Shutdown::Both);
        }) {
        Ok(t) => t,
        Err(_) => {
            // Unblocks the request thread; dropping the handle detaches it.
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return None;
        }
    };
    Some(Relay {
        client,
        server,
        threads: [requests, replies],
    })
}

/// Copies the server's replies to the client frame by frame, inserting a push before every
/// `every`-th frame, until either side closes.
fn copy_replies(
    mut server: &TcpStream,
    mut client: &TcpStream,
    every: usize,
    injected: &AtomicU64,
) {
    let limits = DecodeLimits::default();
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes read but not yet forwarded: the start of an incomplete frame.
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut frames = 0usize;
    let mut passthrough = every == 0;
    loop {
        let n = match server.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if passthrough {
            if client.write_all(&chunk[..n]).is_err() {
                return;
            }
            continue;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while used < pending.len() {
            match decode_slice(&pending[used..], &limits) {
                Ok(Decoded::Complete(_, len)) => {
                    frames += 1;
                    if frames % every == 0 {
                        out.extend_from_slice(PUSH_FRAME);
                        injected.fetch_add(1, Ordering::SeqCst);
                    }
                    out.extend_from_slice(&pending[used..used + len]);
                    used += len;
                }
                Ok(Decoded::Incomplete) => break,
                Err(_) => {
                    // Not RESP we can frame: forward the rest as is, inject no more.
                    out.extend_from_slice(&pending[used..]);
                    used = pending.len();
                    passthrough = true;
                }
            }
        }
        pending.drain(..used);
        if !out.is_empty() {
            if client.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}
