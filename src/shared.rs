//! [`SharedClient`]: a `Send + Sync + Clone` handle for multi-threaded runtimes.
//!
//! A [`Client`] is single-threaded by design: one loop, one ring, no locks. A service on a
//! multi-threaded runtime (`#[tokio::main]`, async-std, a pool of plain threads) wants one
//! handle it can clone into every task. `SharedClient` is that handle over N worker
//! threads, each running its own [`Client`] on its own runtime (the ring engine where the
//! kernel allows it) with its own connections to every node.
//!
//! # How a request travels
//! - The caller's thread has a seat: the worker it hands its requests to, picked once per
//!   thread (round-robin over the workers as threads first call), so requests from one
//!   thread queue behind each other and the worker batches them into one submission.
//! - The request goes into that worker's inbox, an unbounded lock-free queue
//!   (`tokio::sync::mpsc`, which needs no tokio runtime). The queue wakes the worker's
//!   inbox task through the worker's own waker: a flag and, only when the worker's loop
//!   is parked in the kernel, one `eventfd` write whose read is armed in the worker's ring.
//!   A busy worker takes new requests with no system call at all.
//! - The worker runs the request as a local task on its [`Client`]: a pipeline goes whole
//!   to one worker and keeps its one-submission fan-out.
//! - The reply comes back through a oneshot channel, which wakes the caller on whatever
//!   runtime it runs (or a parked plain thread, see [`SharedClient::blocking`]).
//!
//! Nothing here makes a cluster decision: each worker's [`Client`] does, in the core.
//! This module only moves requests and replies between threads.
//!
//! # Bounds
//! A request waiting in an inbox is bounded by the callers that wait for it: each caller
//! has one request in the queue at a time unless it spawns more. `Config::request_timeout`
//! covers a request's whole life on its worker (its time in the inbox is not counted:
//! the worker takes new requests before it runs anything else in a turn).

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, Span};

use crate::client::Client;
use crate::core::cmd::Cmd;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::pipeline::Pipeline;
use crate::core::reply::FromReply;
use crate::core::resp::Value;
use crate::core::stats::Stats;
use crate::engine;

/// Requests a worker takes from its inbox per wake, before it lets its tasks run.
const INBOX_BATCH: usize = 256;

/// A `Send + Sync + Clone` cluster client for multi-threaded runtimes: N worker threads,
/// each with its own [`Client`] on its own ring, fed through lock-free queues.
///
/// Clone it into every task; all clones share the workers. The workers end when the last
/// clone is dropped (their requests in flight finish first) or at
/// [`SharedClient::shutdown`].
///
/// A worker builds its [`Config`] itself, on its own thread, from the function given to
/// [`SharedClient::connect`]: a `Config` may hold single-threaded callbacks (a push
/// handler, a credentials provider), and each worker gets its own.
///
/// ```no_run
/// use redis_cluster_uring::{cmd, Config, Pipeline, SharedClient};
/// # async fn service() -> redis_cluster_uring::Result<()> {
/// // Inside #[tokio::main] (or any runtime, or none: see `blocking`).
/// let client = SharedClient::connect(&["127.0.0.1:7000"], Config::default).await?;
/// let mut tasks = Vec::new();
/// for i in 0..64 {
///     let client = client.clone();
///     tasks.push(tokio::spawn(async move {
///         client.query::<()>(cmd("SET").arg(format!("k{i}")).arg(i)).await?;
///         client.query::<Option<u64>>(cmd("GET").arg(format!("k{i}"))).await
///     }));
/// }
/// for task in tasks {
///     assert!(task.await.unwrap()?.is_some());
/// }
/// let mut pipe = Pipeline::new();
/// pipe.get("k1").get("k2").get("k3");
/// let values: Vec<Option<u64>> = client.query_pipeline(&pipe).await?;
/// # let _ = values;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SharedClient {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Each worker's inbox, by worker index.
    inboxes: Box<[mpsc::UnboundedSender<Job>]>,
}

/// What a caller hands a worker. The span is the caller's current one: the worker runs
/// the request inside it, so the request's own spans (`Config::telemetry`) are its
/// children, in the caller's trace.
enum Job {
    /// One command; its reply, unconverted (the caller converts it on its own thread).
    Query(Cmd, oneshot::Sender<Result<Value>>, Span),
    /// A pipeline, whole; every command's result (ignored or not).
    Execute(
        Arc<Pipeline>,
        oneshot::Sender<Result<Vec<Result<Value>>>>,
        Span,
    ),
    /// Anything else, run on the worker with its client ([`SharedClient::run`]).
    Run(OnWorker, Span),
    /// Stop taking requests, let those in flight finish for up to the grace, then answer.
    Shutdown(Duration, oneshot::Sender<()>),
}

/// A closure sent to a worker, and the local future it makes there.
type OnWorker = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Query(..) => "Query",
            Job::Execute(..) => "Execute",
            Job::Run(..) => "Run",
            Job::Shutdown(..) => "Shutdown",
        })
    }
}

/// Hands out seats: each caller thread's worker, round-robin in the order threads first
/// call.
static NEXT_SEAT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's seat (a worker index modulo the worker count).
    static SEAT: usize = NEXT_SEAT.fetch_add(1, Ordering::Relaxed);
    /// On a worker's own thread: its index, so its own requests stay on it, and
    /// [`SharedClient::blocking`] refuses to park the loop it would wait for.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The worker count [`SharedClient::connect`] starts: one per CPU this process may run
/// on (its affinity mask and cgroup quota, as `std::thread::available_parallelism` sees
/// them), at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl SharedClient {
    /// Starts [`default_workers`] worker threads, each connecting its own [`Client`]
    /// through `seeds` with the [`Config`] that `config` builds on that thread, and waits
    /// until every worker is connected.
    ///
    /// Works from any async runtime. Each worker runs the engine `Config::engine` names
    /// on a runtime of its own (`Auto`: the ring where the kernel allows it, epoll
    /// otherwise). Fails with the first worker's connection error (the other workers are
    /// stopped) or the error of a worker that could not start its runtime.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{Config, SharedClient};
    /// # async fn f() -> redis_cluster_uring::Result<()> {
    /// let client = SharedClient::connect(&["127.0.0.1:7000"], || Config::default().database(0)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect<S, F>(seeds: &[S], config: F) -> Result<SharedClient>
    where
        S: AsRef<str>,
        F: Fn() -> Config + Send + Sync + 'static,
    {
        SharedClient::connect_with_workers(seeds, default_workers(), config).await
    }

    /// Like [`SharedClient::connect`] with `workers` threads (at least one).
    pub async fn connect_with_workers<S, F>(
        seeds: &[S],
        workers: usize,
        config: F,
    ) -> Result<SharedClient>
    where
        S: AsRef<str>,
        F: Fn() -> Config + Send + Sync + 'static,
    {
        if workers == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a SharedClient needs at least one worker",
            ));
        }
        let seeds: Arc<[String]> = seeds.iter().map(|s| s.as_ref().to_string()).collect();
        let config = Arc::new(config);
        let mut inboxes = Vec::with_capacity(workers);
        let mut ready = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let (seeds, config) = (seeds.clone(), config.clone());
            std::thread::Builder::new()
                .name(format!("redis-worker-{index}"))
                .spawn(move || worker_main(index, &seeds, &*config, rx, ready_tx))
                .map_err(|e| Error::io("start a SharedClient worker thread", e))?;
            inboxes.push(tx);
            ready.push(ready_rx);
        }
        // Dropping the inboxes (on an error return) stops the workers already started.
        let client = SharedClient {
            inner: Arc::new(Shared {
                inboxes: inboxes.into_boxed_slice(),
            }),
        };
        for r in ready {
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Shutdown,
                        "a SharedClient worker ended before it connected",
                    ))
                }
            }
        }
        Ok(client)
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner.inboxes.len()
    }

    /// The inbox of this thread's worker.
    fn inbox(&self) -> &mpsc::UnboundedSender<Job> {
        let n = self.inner.inboxes.len();
        let seat = WORKER
            .with(|w| w.get())
            .unwrap_or_else(|| SEAT.with(|s| *s));
        &self.inner.inboxes[seat % n]
    }

    fn send(&self, job: Job) -> Result<()> {
        self.inbox().send(job).map_err(|_| shut_down())
    }

    /// Runs one command, like [`Client::query`], on this thread's worker. The reply is
    /// converted on the caller's thread.
    ///
    /// The command is moved to the worker; `&Cmd` is cloned.
    pub async fn query<T: FromReply>(&self, command: impl Into<Cmd>) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Query(command.into(), tx, Span::current()))?;
        T::from_reply(rx.await.map_err(|_| shut_down())??)
    }

    /// Runs a pipeline, like [`Client::execute`], whole on one worker: one submission
    /// for every node's batch.
    ///
    /// The pipeline is moved to the worker: pass a `Pipeline` or an `Arc<Pipeline>` to
    /// send it without a copy (a pipeline run again and again is best kept in an `Arc`);
    /// `&Pipeline` is cloned.
    pub async fn execute(&self, pipeline: impl Into<Arc<Pipeline>>) -> Result<Vec<Result<Value>>> {
        let pipeline = pipeline.into();
        let results = self.execute_every(pipeline.clone()).await?;
        pipeline.finish(results)
    }

    /// Runs a pipeline and converts its replies (those not ignored) into `T`, as one
    /// array: a `Vec`, a tuple, `()`. Fails on the first error reply, like
    /// [`Client::query_pipeline`].
    pub async fn query_pipeline<T: FromReply>(
        &self,
        pipeline: impl Into<Arc<Pipeline>>,
    ) -> Result<T> {
        let pipeline = pipeline.into();
        let results = self.execute_every(pipeline.clone()).await?;
        pipeline.convert(results)
    }

    /// Every command's result, from the worker (what to keep is decided here).
    async fn execute_every(&self, pipeline: Arc<Pipeline>) -> Result<Vec<Result<Value>>> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Execute(pipeline, tx, Span::current()))?;
        rx.await.map_err(|_| shut_down())?
    }

    /// Runs `f` on this thread's worker with its [`Client`] and returns what it returns:
    /// for what has no method here (scans, transactions, subscribers, reports), with the
    /// whole single-threaded API.
    ///
    /// The future `f` returns runs on the worker and need not be `Send`; its output
    /// crosses back, so it must be.
    ///
    /// ```no_run
    /// # async fn f(client: redis_cluster_uring::SharedClient) -> redis_cluster_uring::Result<()> {
    /// use redis_cluster_uring::scan::ScanOptions;
    /// let keys: Vec<String> = client
    ///     .run(|c| async move {
    ///         let mut scan = c.scan(ScanOptions { pattern: Some("user:*".into()), ..ScanOptions::default() });
    ///         let mut keys = Vec::new();
    ///         while let Some(batch) = scan.next_batch().await? {
    ///             keys.extend(batch.into_iter().map(|k| String::from_utf8_lossy(&k).into_owned()));
    ///         }
    ///         Ok::<_, redis_cluster_uring::Error>(keys)
    ///     })
    ///     .await??;
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |client| Box::pin(answer(tx, f(client))) as Pin<Box<_>>);
        self.send(Job::Run(job, Span::current()))?;
        rx.await.map_err(|_| shut_down())
    }

    /// Every worker's counters, added up.
    pub async fn stats(&self) -> Result<Stats> {
        let mut total = Stats::default();
        for w in 0..self.workers() {
            total += self.on_worker(w, |client| client.stats()).await?;
        }
        Ok(total)
    }

    /// Empties every worker's client-side cache ([`Client::cache_clear`]; each worker
    /// has a cache of its own, filled by its own connections).
    pub async fn cache_clear(&self) -> Result<()> {
        for w in 0..self.workers() {
            self.on_worker(w, |client| client.cache_clear()).await?;
        }
        Ok(())
    }

    /// Runs `f` on worker `w`'s client, between its requests.
    async fn on_worker<R: Send + 'static>(
        &self,
        w: usize,
        f: impl FnOnce(&Client) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |client: Client| {
            Box::pin(async move {
                let _ = tx.send(f(&client));
            }) as Pin<Box<_>>
        });
        self.inner.inboxes[w]
            .send(Job::Run(job, Span::none()))
            .map_err(|_| shut_down())?;
        rx.await.map_err(|_| shut_down())
    }

    /// Closes every worker's client as [`Client::shutdown`] does (requests in flight get
    /// up to `grace`) and waits until they are closed; the worker threads then end. Every
    /// clone sees the client closed: new requests fail with [`ErrorKind::Shutdown`].
    pub async fn shutdown(&self, grace: Duration) {
        let mut acks = Vec::new();
        for inbox in self.inner.inboxes.iter() {
            let (tx, rx) = oneshot::channel();
            if inbox.send(Job::Shutdown(grace, tx)).is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
    }

    /// A view of this client whose calls block the calling thread until the reply is
    /// in, for code on plain threads. It parks only the calling thread; on a worker's
    /// own thread (inside [`SharedClient::run`]) its calls fail with
    /// [`ErrorKind::Config`] instead of parking the loop they would wait for.
    ///
    /// ```no_run
    /// use redis_cluster_uring::{cmd, Config, SharedClient};
    /// # fn f(client: SharedClient) -> redis_cluster_uring::Result<()> {
    /// let blocking = client.blocking();
    /// std::thread::scope(|s| {
    ///     for i in 0..4 {
    ///         let blocking = &blocking;
    ///         s.spawn(move || blocking.query::<()>(cmd("SET").arg(format!("k{i}")).arg(i)));
    ///     }
    /// });
    /// let v: Option<u64> = blocking.query(cmd("GET").arg("k1"))?;
    /// # Ok(()) }
    /// ```
    pub fn blocking(&self) -> SharedBlocking {
        SharedBlocking {
            client: self.clone(),
        }
    }
}

/// [`SharedClient`]'s calls, each blocking the calling thread until its reply is in.
/// Made by [`SharedClient::blocking`].
#[derive(Debug, Clone)]
pub struct SharedBlocking {
    client: SharedClient,
}

impl SharedBlocking {
    /// [`SharedClient::query`], waited for.
    pub fn query<T: FromReply>(&self, command: impl Into<Cmd>) -> Result<T> {
        wait(self.client.query(command))?
    }

    /// [`SharedClient::execute`], waited for.
    pub fn execute(&self, pipeline: impl Into<Arc<Pipeline>>) -> Result<Vec<Result<Value>>> {
        wait(self.client.execute(pipeline))?
    }

    /// [`SharedClient::query_pipeline`], waited for.
    pub fn query_pipeline<T: FromReply>(&self, pipeline: impl Into<Arc<Pipeline>>) -> Result<T> {
        wait(self.client.query_pipeline(pipeline))?
    }

    /// The async client this view waits on.
    pub fn shared(&self) -> &SharedClient {
        &self.client
    }
}

fn shut_down() -> Error {
    Error::new(ErrorKind::Shutdown, "client shut down")
}

/// Runs `future` to its end on this thread, parking the thread between wakes. Refused on
/// a worker's thread, whose loop the future may need.
fn wait<F: Future>(future: F) -> Result<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    if WORKER.with(|w| w.get()).is_some() || engine::current().is_some() {
        return Err(Error::new(
            ErrorKind::Config,
            "SharedClient::blocking called on a runtime's thread: it would park the loop \
             that must run the request (await the SharedClient instead)",
        ));
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Ok(out);
        }
        std::thread::park();
    }
}

/// A worker thread: builds its config, starts its runtime, connects, says so, serves.
fn worker_main(
    index: usize,
    seeds: &[String],
    config: &(dyn Fn() -> Config + Send + Sync),
    inbox: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<Result<()>>,
) {
    WORKER.with(|w| w.set(Some(index)));
    let config = config();
    // The thread is the worker's own, so is its runtime: `engine::start_with` builds the
    // one `Config::engine` names (`Auto`: the ring where the kernel allows it).
    let engine = config.engine;
    let mut ready = Some(ready);
    let started = engine::start_with(engine, async {
        // A worker shares the cores with the threads that feed it: waking at the first
        // completion, rather than gathering for up to 20 µs, spares a timer wake and a
        // context switch per turn (26% less CPU per GET and a lower p50 with 64 tokio
        // tasks, DESIGN.md). Not the ring engine: nothing to set.
        let _ = engine::set_ring_wait(engine::RingWait::First);
        let client = match Client::connect(seeds, config).await {
            Ok(client) => client,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                }
                return;
            }
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        serve(client, inbox).await;
    });
    match (started, ready.take()) {
        (Err(e), Some(ready)) => drop(ready.send(Err(e))),
        // After connecting: the worker's callers now get `Shutdown`; say why, once.
        (Err(e), None) => tracing::error!(worker = index, error = %e, "SharedClient worker ended"),
        (Ok(()), _) => {}
    }
}

/// Takes requests from the inbox and runs each as a local task, until every sender is
/// gone or a shutdown arrives.
async fn serve(client: Client, mut inbox: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(INBOX_BATCH);
    let mut shutdown = None;
    while inbox.recv_many(&mut jobs, INBOX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            match job {
                Job::Query(command, reply, span) => {
                    let client = client.clone();
                    let work = async move { client.query::<Value>(&command).await };
                    drop(engine::spawn_local(answer(reply, work).instrument(span)));
                }
                Job::Execute(pipeline, reply, span) => {
                    let client = client.clone();
                    let work = async move { client.execute_every(&pipeline).await };
                    drop(engine::spawn_local(answer(reply, work).instrument(span)));
                }
                Job::Run(f, span) => drop(engine::spawn_local(f(client.clone()).instrument(span))),
                Job::Shutdown(grace, ack) => {
                    // Take no more: later sends fail; what is queued still runs (and
                    // fails with `Shutdown` once the client is closed).
                    inbox.close();
                    shutdown.get_or_insert((grace, Vec::new())).1.push(ack);
                }
            }
        }
        if shutdown.is_some() {
            break;
        }
    }
    // Every sender gone, or a shutdown: requests in flight get their grace.
    let (grace, acks) = shutdown.unwrap_or((Duration::from_secs(1), Vec::new()));
    inbox.close();
    while let Ok(job) = inbox.try_recv() {
        fail(job);
    }
    client.shutdown(grace).await;
    for ack in acks {
        let _ = ack.send(());
    }
}

/// Runs `work` and sends its output, unless the caller stops waiting first: then `work`
/// is dropped at once, which cancels it as dropping a [`Client`] call does (a blocking
/// command's dedicated connection is closed, a shared connection's late replies are
/// read and dropped). A `BLPOP` given up on must not pop an element nobody receives.
async fn answer<T>(mut reply: oneshot::Sender<T>, work: impl Future<Output = T>) {
    let mut work = pin!(work);
    let out = std::future::poll_fn(|cx| {
        if reply.poll_closed(cx).is_ready() {
            return Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(out) = out {
        let _ = reply.send(out);
    }
}

/// Answers a request that arrived after the shutdown.
fn fail(job: Job) {
    match job {
        Job::Query(_, reply, _) => drop(reply.send(Err(shut_down()))),
        Job::Execute(_, reply, _) => drop(reply.send(Err(shut_down()))),
        // Dropping its reply sender tells the caller.
        Job::Run(..) => {}
        Job::Shutdown(_, ack) => drop(ack.send(())),
    }
}
