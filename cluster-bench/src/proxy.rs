//! A delay proxy: put in front of every node, it holds each chunk of a node's replies for
//! `delay` before passing it on, which is what a client a millisecond away from its
//! cluster sees. Requests pass through at once.
//!
//! It runs on its own thread and runtime, so its work (CPU time and allocations) is not
//! charged to the client being measured. Delays are absolute deadlines per chunk (a queue
//! of `(due, bytes)`), so two chunks 10 µs apart leave 10 µs apart: the proxy adds
//! latency, not serialisation.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Proxy listeners bound (so their ports can be announced) but not yet serving.
#[derive(Debug)]
pub struct Pending {
    listeners: Vec<std::net::TcpListener>,
}

impl Pending {
    /// Binds `n` listeners on free loopback ports.
    pub fn bind(n: usize) -> std::io::Result<Pending> {
        let listeners = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        for l in &listeners {
            l.set_nonblocking(true)?;
        }
        Ok(Pending { listeners })
    }

    /// The ports, in order.
    pub fn ports(&self) -> Vec<u16> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
            .collect()
    }

    /// Serves listener i in front of `targets[i]` on a new thread, which lives until the
    /// process exits. Returns that thread's id once it runs (for `--pin`).
    pub fn start(self, targets: Vec<u16>, delay: Duration) -> std::io::Result<libc::pid_t> {
        let delays = vec![delay; targets.len()];
        self.start_each(targets, delays)
    }

    /// As [`Pending::start`], with its own delay for each target (one slow node).
    pub fn start_each(
        self,
        targets: Vec<u16>,
        delays: Vec<Duration>,
    ) -> std::io::Result<libc::pid_t> {
        let listeners = self.listeners;
        let (started, tid) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(crate::cpu::PROXY_THREAD.into())
            .spawn(move || {
                // Not the client's: the multi-thread cases count every other thread's
                // allocations.
                crate::alloc::exclude_this_thread();
                // SAFETY: gettid has no preconditions and cannot fail.
                let _ = started.send(unsafe { libc::gettid() });
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("delay proxy: cannot start a runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for ((listener, target), delay) in
                        listeners.into_iter().zip(targets).zip(delays)
                    {
                        let Ok(listener) = TcpListener::from_std(listener) else {
                            continue;
                        };
                        tasks.push(tokio::spawn(serve(listener, target, delay)));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })?;
        tid.recv()
            .map_err(|_| std::io::Error::other("the proxy thread ended at once"))
    }
}

async fn serve(listener: TcpListener, target: u16, delay: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(async move {
            let upstream = SocketAddr::from(([127, 0, 0, 1], target));
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            // Requests: straight through.
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                let _ = server_tx.shutdown().await;
            });
            // Replies: stamped on arrival, released at arrival + delay.
            let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match server_rx.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if queue
                                .send((Instant::now() + delay, buf[..n].to_vec()))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
            while let Some((at, bytes)) = due.recv().await {
                // The timer has millisecond ticks: a node without delay is not put on it.
                if !delay.is_zero() {
                    tokio::time::sleep_until(at).await;
                }
                if client_tx.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = client_tx.shutdown().await;
        });
    }
}
