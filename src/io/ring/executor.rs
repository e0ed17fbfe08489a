//! The owned ring's executor: tasks, wakers and timers on one thread, parked in the ring.
//!
//! A loop turn runs every task that was woken, fires the timers that are due, then makes
//! one `io_uring_enter` that submits every operation the tasks queued and waits for the
//! first completion or the next timer ([`super::reactor::Reactor::turn`]). Completions
//! wake the tasks waiting on them; those run in the next turn.
//!
//! A waker is an `Arc` (wakers must be `Send`), so a task can be woken from another
//! thread (a channel sender, the resolver thread). A wake pushes the task on a shared list
//! and, only when the loop is parked in the kernel, writes to an eventfd whose read is
//! kept armed in the ring; a wake from the loop's own thread costs no system call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use super::driven::{self, SOCKET};
use super::reactor::Reactor;

/// Tasks polled per turn before the ring is entered again, so a task that keeps waking
/// itself cannot keep completions from being reaped.
const TASKS_PER_TURN: usize = 1024;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Runtime>>> = const { RefCell::new(None) };
}

/// The runtime [`block_on`] is running on this thread, if any.
pub(crate) fn current() -> Option<Rc<Runtime>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// True inside [`block_on`].
pub(crate) fn is_running() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// What wakers share with the loop.
#[derive(Debug)]
struct Shared {
    /// Tasks woken since the loop last looked.
    woken: Mutex<Vec<usize>>,
    /// The loop is parked in the kernel (or about to be): a wake must ring the eventfd.
    parked: AtomicBool,
    eventfd: OwnedFd,
}

impl Shared {
    fn wake(&self, task: usize) {
        match self.woken.lock() {
            Ok(mut woken) => woken.push(task),
            Err(poisoned) => poisoned.into_inner().push(task),
        }
        if self.parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live `u64` to an eventfd this struct owns.
            // A failed write (counter saturated) still leaves the eventfd readable.
            unsafe {
                libc::write(
                    self.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
    }
}

/// One task's waker (or a loop-driven socket's: see [`super::driven`]).
struct TaskWaker {
    task: usize,
    /// Already on the woken list: a second wake before it runs adds nothing.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl driven::Rearm for TaskWaker {
    fn rearm(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.wake(self.task);
        }
    }
}

struct Task {
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Arc<TaskWaker>,
}

/// The task key of the future passed to [`block_on`].
const MAIN: usize = usize::MAX;

/// One thread's executor and ring.
pub(crate) struct Runtime {
    tasks: RefCell<Slab<Task>>,
    shared: Arc<Shared>,
    /// Timers by deadline (and a sequence number, so two at the same instant differ).
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    timer_seq: Cell<u64>,
    pub(crate) reactor: RefCell<Reactor>,
    /// Connections whose bytes the loop moves itself.
    pub(super) sockets: RefCell<driven::Sockets>,
    /// Tasks that yielded ([`yield_now`]): woken after the turn's completions are
    /// reaped, so a task that yields lets the ring's input in (a read that arrived,
    /// an invalidation) before it runs again.
    deferred: RefCell<Vec<Waker>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("tasks", &self.tasks.borrow().len())
            .field("timers", &self.timers.borrow().len())
            .finish()
    }
}

impl Runtime {
    fn new() -> io::Result<Runtime> {
        // Blocking, on purpose: io_uring answers a read of a nonblocking descriptor
        // with EAGAIN at once instead of waiting, which would spin the loop. (A write
        // blocks only when the counter would overflow, 2^64 - 2 wakes unread.)
        // SAFETY: eventfd has no memory arguments; the descriptor it returns is owned
        // from here on by `OwnedFd`.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let reactor = Reactor::new(eventfd.as_raw_fd())?;
        Ok(Runtime {
            tasks: RefCell::new(Slab::new()),
            shared: Arc::new(Shared {
                woken: Mutex::new(Vec::new()),
                parked: AtomicBool::new(false),
                eventfd,
            }),
            timers: RefCell::new(BTreeMap::new()),
            timer_seq: Cell::new(0),
            reactor: RefCell::new(reactor),
            sockets: RefCell::new(driven::Sockets::default()),
            deferred: RefCell::new(Vec::new()),
        })
    }

    /// Hands a connected socket to the loop, which moves its bytes from now on.
    pub(super) fn drive(
        &self,
        stream: Box<dyn driven::Socket>,
        endpoint: Box<dyn crate::io::Endpoint>,
    ) {
        let mut sockets = self.sockets.borrow_mut();
        let task = self.waker_for(SOCKET + sockets.vacant_key());
        sockets.insert(stream, endpoint, Waker::from(task.clone()), task);
    }

    fn waker_for(&self, task: usize) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            task,
            queued: AtomicBool::new(false),
            shared: self.shared.clone(),
        })
    }

    /// Adds a task; it first runs at the next turn.
    pub(crate) fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let waker = self.waker_for(entry.key());
        entry.insert(Task {
            future: Some(future),
            waker: waker.clone(),
        });
        waker.wake_by_ref();
    }

    /// Registers a timer; the key removes it.
    pub(crate) fn add_timer(&self, at: Instant, waker: Waker) -> (Instant, u64) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.timers.borrow_mut().insert((at, seq), waker);
        (at, seq)
    }

    pub(crate) fn remove_timer(&self, key: (Instant, u64)) {
        self.timers.borrow_mut().remove(&key);
    }

    pub(crate) fn update_timer(&self, key: (Instant, u64), waker: &Waker) {
        if let Some(w) = self.timers.borrow_mut().get_mut(&key) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    }

    /// Wakes the timers that are due; the time to the next one.
    fn fire_timers(&self, now: Instant) -> Option<Duration> {
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((&(at, _), _)) if at <= now => timers.pop_first(),
                    Some((&(at, _), _)) => return Some(at - now),
                    None => return None,
                }
            };
            if let Some((_, waker)) = due {
                waker.wake();
            }
        }
    }

    fn take_woken(&self, into: &mut Vec<usize>) {
        let mut woken = match self.shared.woken.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Appended, never swapped: `into` may still hold tasks to run.
        into.append(&mut woken);
    }

    fn poll_task(&self, key: usize) {
        let (future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.get_mut(key) else {
                return;
            };
            // Polled below: a wake from now on queues it again.
            task.waker.queued.store(false, Ordering::Release);
            match task.future.take() {
                Some(f) => (f, task.waker.clone()),
                None => return,
            }
        };
        let mut future = future;
        let waker = Waker::from(waker);
        // A task that panics ends alone, as on tokio's runtime: its handle reports it,
        // and the other tasks go on.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        let done = !matches!(polled, Ok(Poll::Pending));
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks.try_remove(key);
        } else if let Some(task) = tasks.get_mut(key) {
            task.future = Some(future);
        }
    }
}

/// Runs `future` to completion on a new runtime on this thread: tasks spawned with
/// [`spawn`] run beside it; when it ends, tasks still pending are dropped.
pub(crate) fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    if is_running() {
        return Err(io::Error::other(
            "the ring engine is already running on this thread",
        ));
    }
    let rt = Rc::new(Runtime::new()?);
    CURRENT.with(|c| *c.borrow_mut() = Some(rt.clone()));
    // Clears the thread's runtime however this ends (a panicking task included), after
    // dropping the tasks while it is still reachable (their drops may use it).
    struct Reset(Rc<Runtime>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let tasks = std::mem::take(&mut *self.0.tasks.borrow_mut());
            drop(tasks);
            let sockets = std::mem::take(&mut *self.0.sockets.borrow_mut());
            drop(sockets);
            self.0.timers.borrow_mut().clear();
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
    let _reset = Reset(rt.clone());
    let main_waker = Arc::new(TaskWaker {
        task: MAIN,
        queued: AtomicBool::new(true),
        shared: rt.shared.clone(),
    });
    let waker = Waker::from(main_waker.clone());
    let mut future = std::pin::pin!(future);
    let mut woken = vec![MAIN];
    let mut batch = Vec::new();
    loop {
        let mut polled = 0;
        while !woken.is_empty() && polled < TASKS_PER_TURN {
            std::mem::swap(&mut woken, &mut batch);
            for key in batch.drain(..) {
                polled += 1;
                if key == MAIN {
                    main_waker.queued.store(false, Ordering::Release);
                    if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker))
                    {
                        return Ok(out);
                    }
                } else if key >= SOCKET {
                    rt.sockets.borrow_mut().woken(key);
                } else {
                    rt.poll_task(key);
                }
            }
            rt.take_woken(&mut woken);
        }
        let next_timer = rt.fire_timers(Instant::now());
        rt.take_woken(&mut woken);
        // Every task of the turn ran: the sockets' reads are armed and their output
        // sent, in the turn's one system call.
        driven::flush(&rt.reactor, &rt.sockets);
        rt.take_woken(&mut woken);
        let wait = if woken.is_empty() && rt.deferred.borrow().is_empty() {
            // Parked from here: a wake from another thread must ring the eventfd. Checked
            // once more after saying so, so a wake just before is not missed.
            rt.shared.parked.store(true, Ordering::SeqCst);
            rt.take_woken(&mut woken);
            woken.is_empty()
        } else {
            false
        };
        let timeout = if wait {
            next_timer
        } else {
            Some(Duration::ZERO)
        };
        let turned = rt.reactor.borrow_mut().turn(wait, timeout);
        rt.shared.parked.store(false, Ordering::SeqCst);
        turned?;
        // Completions wake their tasks (and the eventfd's read is armed again).
        rt.reactor.borrow_mut().complete();
        // Reads go straight to their connections, which wake the callers.
        driven::complete(&rt.reactor, &rt.sockets);
        // The tasks that yielded run again now, after what the kernel had was taken in.
        let deferred = std::mem::take(&mut *rt.deferred.borrow_mut());
        deferred.into_iter().for_each(Waker::wake);
        rt.take_woken(&mut woken);
    }
}

/// Spawns a task on this thread's runtime.
///
/// # Panics
/// Outside [`block_on`].
pub(crate) fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        ended: false,
        aborted: false,
        joiner: None,
        task: None,
    }));
    let task = Joined {
        future: Box::pin(future),
        state: state.clone(),
    };
    let rt = current().expect("spawn outside the ring engine");
    rt.spawn(Box::pin(task));
    JoinHandle { state }
}

struct JoinState<T> {
    output: Option<T>,
    /// The task is gone: finished (its output is or was in `output`), aborted, panicked,
    /// or dropped with the runtime.
    ended: bool,
    aborted: bool,
    /// Who awaits the handle.
    joiner: Option<Waker>,
    /// The task's own waker, to run it once more when aborted.
    task: Option<Waker>,
}

/// A spawned future, with the handle's shared state.
struct Joined<T> {
    future: Pin<Box<dyn Future<Output = T>>>,
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> Future for Joined<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.borrow().aborted {
            return Poll::Ready(());
        }
        match self.future.as_mut().poll(cx) {
            Poll::Ready(out) => {
                self.state.borrow_mut().output = Some(out);
                Poll::Ready(())
            }
            Poll::Pending => {
                let mut state = self.state.borrow_mut();
                match &state.task {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => state.task = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Joined<T> {
    /// However the task ends (done, aborted, panicked, dropped with the runtime), whoever
    /// awaits its handle hears of it.
    fn drop(&mut self) {
        let joiner = match self.state.try_borrow_mut() {
            Ok(mut state) => {
                state.ended = true;
                state.task = None;
                state.joiner.take()
            }
            Err(_) => None,
        };
        if let Some(w) = joiner {
            w.wake();
        }
    }
}

/// A spawned task: await it for its output (`None` when it ended without one: aborted,
/// panicked, or dropped with the runtime), or abort it.
pub(crate) struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinHandle")
    }
}

impl<T> JoinHandle<T> {
    /// True once the task ended.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.state.borrow();
        state.ended || state.output.is_some()
    }

    /// Drops the task's future at its next turn.
    pub(crate) fn abort(&self) {
        let task = {
            let mut state = self.state.borrow_mut();
            state.aborted = true;
            state.task.take()
        };
        if let Some(w) = task {
            w.wake();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.state.borrow_mut();
        if let Some(out) = state.output.take() {
            return Poll::Ready(Some(out));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        state.joiner = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A timer on this thread's runtime.
#[derive(Debug)]
pub(crate) struct Sleep {
    at: Instant,
    key: Option<(Instant, u64)>,
}

/// Waits until `at`.
pub(crate) fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, key: None }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            if let Some(key) = self.key.take() {
                if let Some(rt) = current() {
                    rt.remove_timer(key);
                }
            }
            return Poll::Ready(());
        }
        let Some(rt) = current() else {
            // No runtime to wake us: never due (only reachable from a misuse).
            return Poll::Pending;
        };
        match self.key {
            Some(key) => rt.update_timer(key, cx.waker()),
            None => self.key = Some(rt.add_timer(self.at, cx.waker().clone())),
        }
        // A timer that fired but was not yet due by our clock (the kernel's wait ends a
        // little early) is put back.
        if let Some(key) = self.key {
            if !rt.timers.borrow().contains_key(&key) {
                self.key = Some(rt.add_timer(self.at, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Some(rt) = current() {
                rt.remove_timer(key);
            }
        }
    }
}

/// Gives the other tasks a turn, and the ring one: the task runs again after the loop
/// has entered the kernel (without waiting) and handed out what completed, as tokio's
/// `yield_now` waits for its driver. A task that only yields still lets reads in.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        match current() {
            Some(rt) => rt.deferred.borrow_mut().push(cx.waker().clone()),
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime, or `None` where the kernel refuses io_uring (the epoll engine covers
    /// that; `tests/engine.rs` checks the fallback).
    fn run<F: Future>(f: F) -> Option<F::Output> {
        if let Err(e) = super::super::probe() {
            eprintln!("skipped: {e}");
            return None;
        }
        Some(block_on(f).unwrap())
    }

    #[test]
    fn a_task_woken_while_others_run_is_never_lost() {
        // Tasks that wake each other in turn, many times, with a timer between: every
        // wake must run its task (a lost one hangs the test, a spin never parks).
        let out = run(async {
            let count = Rc::new(Cell::new(0u32));
            let mut handles = Vec::new();
            for _ in 0..8 {
                let count = count.clone();
                handles.push(spawn(async move {
                    for i in 0..50 {
                        yield_now().await;
                        if i % 10 == 0 {
                            sleep_until(Instant::now() + Duration::from_millis(1)).await;
                        }
                        count.set(count.get() + 1);
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            count.get()
        });
        if let Some(n) = out {
            assert_eq!(n, 400);
        }
    }

    #[test]
    fn timers_fire_in_order_and_a_dropped_one_never_fires() {
        let out = run(async {
            let order = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let mut handles = Vec::new();
            for (name, ms) in [("c", 30u64), ("a", 10), ("b", 20)] {
                let order = order.clone();
                handles.push(spawn(async move {
                    sleep_until(start + Duration::from_millis(ms)).await;
                    order.borrow_mut().push(name);
                }));
            }
            // Registered, then dropped: its entry goes with it.
            let dropped = spawn(async {
                sleep_until(Instant::now() + Duration::from_secs(3600)).await;
            });
            yield_now().await;
            dropped.abort();
            for h in handles {
                h.await.unwrap();
            }
            assert!(dropped.await.is_none());
            let timers = current().unwrap().timers.borrow().len();
            let order = order.borrow().clone();
            (order, start.elapsed(), timers)
        });
        if let Some((order, elapsed, timers)) = out {
            assert_eq!(order, ["a", "b", "c"]);
            assert!(elapsed >= Duration::from_millis(30));
            assert_eq!(timers, 0);
        }
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait_in_the_kernel() {
        let out = run(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let thread = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(7).unwrap();
            });
            // Nothing else to do: the loop parks in io_uring_enter with no timeout, and
            // only the eventfd can end that.
            let got = rx.await.unwrap();
            thread.join().unwrap();
            got
        });
        if let Some(got) = out {
            assert_eq!(got, 7);
        }
    }

    #[test]
    fn a_panicking_task_ends_alone() {
        let out = run(async {
            let bad = spawn(async {
                if Instant::now().elapsed() < Duration::from_secs(3600) {
                    panic!("a task's own failure");
                }
            });
            let good = spawn(async { 5 });
            (bad.await.is_none(), good.await)
        });
        if let Some((bad_ended, good)) = out {
            assert!(bad_ended);
            assert_eq!(good, Some(5));
        }
    }
}
