//! How stale the client-side cache (`Config::cache`) gets under real faults, measured.
//!
//! One client writes a counter as fast as it can (`INCR`, uncached, on a thread of its
//! own); the client under test reads it through its cache in a loop. Each side records
//! what it saw and when, against one shared `Instant`. A read that returned `v` is stale
//! if, before the read began, the writer had been acknowledged for a value above `v`;
//! it is stale by the time since the first such acknowledgement (the server sends its
//! `invalidate` push for the key in the same event-loop turn as that reply, so this is
//! the time since the invalidation was sent, to within a loopback trip).
//!
//! The counter is measured in steady state and across three faults on its slot, in
//! turn, on one cluster: `CLIENT KILL TYPE normal` on its primary (the reader's
//! connection dies with its invalidations), a live migration of its slot to another
//! primary, and `kill -9` of its primary until the replica is promoted. The report
//! (`cargo test --test staleness -- --nocapture`) gives per client and phase the reads,
//! the stale ones, their p50/p99/max staleness and the most stale reads in a row, and
//! for each fault when the reader saw it and when it caught up with the writer again.
//!
//! What is asserted is logical, never timing (the machines are shared and noisy; the
//! target of 10 ms after the invalidation is printed, not enforced):
//! - no entry stays stale for ever: after each fault, once the writer is acknowledged
//!   again, the reader reads that value or a later one (a liveness bound of 10 s), and at
//!   the end it reads exactly the server's last value;
//! - no stale entry survives the client seeing the fault: a read begun after the reader
//!   saw the connection loss (the end of its first read after the kill that was not a
//!   hit, or of a read that failed after the kill) or the slot's new owner (migration)
//!   returns at least what the writer had been acknowledged for before (and, after a
//!   failover, no increment the failover lost);
//! - reads never go backwards, except from an increment a failover lost back to what
//!   survived it; a read never returns a value the writer never wrote.
//!
//! A second scenario pins down, without timing, what bounds the staleness of a caller
//! that only hits: once the invalidation has been delivered to the process, the entry
//! goes within a few hits.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant};

use redis_cluster_uring::{cmd, slot_for_key, Config, ErrorKind};
use support::clients::{connect_blocking, on_both_clients, pause, AnyClient, ClientKind};
use support::Cluster;

on_both_clients! {
    a_cached_counter_across_client_kill_migration_and_failover(3, 1);
    an_invalidation_in_the_socket_ends_the_entry_within_a_few_hits(3, 0);
}

/// The counter.
const KEY: &str = "stale:{counter}";
/// Steady state measured before the first fault.
const STEADY: Duration = Duration::from_secs(1);
/// Measured after each fault once the reader caught up, before the next.
const SETTLE: Duration = Duration::from_secs(1);
/// Liveness bounds (not targets): the writer acknowledged again after a fault, and the
/// reader caught up with it.
const WRITER_BACK: Duration = Duration::from_secs(30);
const CAUGHT_UP: Duration = Duration::from_secs(10);
/// A run of reads of one value is cut at this length: the staleness of a run's reads is
/// counted at its last read, so it is exact to this resolution.
const RUN_SPAN: Duration = Duration::from_micros(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    ClientKill,
    Migration,
    Failover,
}

impl FaultKind {
    /// What the reader's sight of the fault is counted from.
    fn armed_by(self) -> &'static str {
        match self {
            FaultKind::ClientKill | FaultKind::Failover => "the kill returned",
            FaultKind::Migration => "the migration began",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::ClientKill => "client-kill",
            FaultKind::Migration => "migration",
            FaultKind::Failover => "kill-9-failover",
        }
    }
}

/// One fault, as the conductor made it.
#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    /// The command (or the first step) was sent.
    issued: Duration,
    /// From here on the reader looks for the fault: the kill returned (its connections
    /// are gone), or the migration began.
    armed: Duration,
    /// The migration's new owner, which the reader's slot map will show.
    new_owner: Option<u16>,
    /// The cluster is done changing: the kill returned, every node agrees on the
    /// migrated slot, the replica was promoted.
    complete: Duration,
    /// Liveness: the writer's first value acknowledged after `complete`, and when the
    /// reader first read it (or a later one); or why not.
    caught_up: Option<Result<(i64, Duration, Duration), String>>,
}

/// What the writer saw.
#[derive(Debug, Default)]
struct WriterLog {
    /// Every acknowledged value with when its reply arrived: strictly increasing in both.
    acks: Vec<(i64, Duration)>,
    /// After a failed write, what the server held (`GET`) next to the highest value the
    /// writer may have written: values between them were lost (or never written).
    resyncs: Vec<Resync>,
    errors: BTreeMap<String, u64>,
    /// `INCR`s that answered a value written before, with no error in between.
    silent_losses: u64,
    /// Replies that do not follow from the writer's own history (a silent duplicate or
    /// loss): none is expected.
    anomalies: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Resync {
    at: Duration,
    survivor: i64,
    max_possible: i64,
}

/// State shared by the reader (the test thread), the writer and the conductor.
struct Shared {
    epoch: Instant,
    log: Mutex<WriterLog>,
    /// The writer's latest acknowledged value (after it is in `log`), and when.
    latest_ack: AtomicI64,
    latest_ack_at: AtomicU64,
    /// The highest value the writer has sent a command for (before it is sent).
    max_attempted: AtomicI64,
    stop_writer: AtomicBool,
    writer_stopped: AtomicBool,
    /// The reader's latest value, and how many reads it made.
    last_read: AtomicI64,
    reads: AtomicU64,
    faults: Mutex<Vec<Fault>>,
    /// Faults published (the reader looks for each).
    fault_count: AtomicUsize,
    /// The value the reader must end on (the server's, once the writer stopped).
    final_value: AtomicI64,
    finished: AtomicBool,
    conductor_error: Mutex<Option<String>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Sets a flag when dropped, so that the other threads end even when one panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// `at - from` in milliseconds, negative when `at` came first.
fn signed_ms(at: Duration, from: Duration) -> String {
    match at.checked_sub(from) {
        Some(d) => ms(d),
        None => format!("-{}", ms(from - at)),
    }
}

/// The writer: `INCR` as fast as it can on an uncached blocking client. After a failed
/// command (which may or may not have run) it reads the server's value and moves the
/// counter past every value it may have written (`INCRBY`), so that every value is
/// written once: a read's value names one write.
fn writer(cluster: &Cluster, shared: &Shared) {
    let _stopped = SetOnDrop(&shared.writer_stopped);
    let config = Config::default().request_timeout(Some(Duration::from_secs(1)));
    let mut client = connect_blocking(cluster, config);
    let (mut known, mut max_possible, mut resync) = (0i64, 0i64, false);
    let ack = |value: i64| {
        let at = shared.now();
        shared.log.lock().unwrap().acks.push((value, at));
        shared
            .latest_ack_at
            .store(at.as_nanos() as u64, Ordering::SeqCst);
        shared.latest_ack.store(value, Ordering::SeqCst);
    };
    let failed = |e: &redis_cluster_uring::Error| {
        *shared
            .log
            .lock()
            .unwrap()
            .errors
            .entry(format!("{:?}", e.kind()))
            .or_default() += 1;
        std::thread::sleep(Duration::from_millis(2));
    };
    let anomaly = |what: String| shared.log.lock().unwrap().anomalies.push(what);
    while !shared.stop_writer.load(Ordering::SeqCst) {
        if !resync {
            shared.max_attempted.store(known + 1, Ordering::SeqCst);
            match client.query::<i64>(cmd("INCR").arg(KEY)) {
                Ok(n) if n == known + 1 => {
                    ack(n);
                    known = n;
                    max_possible = n;
                }
                // Acknowledged increments lost without an error on this connection (a
                // failover its connection lived through): `n` is a value written
                // before, so it is not recorded, and the counter moves past it.
                Ok(n) if n <= known => {
                    shared.log.lock().unwrap().silent_losses += 1;
                    resync = true;
                }
                Ok(n) => {
                    anomaly(format!("INCR answered {n} after {known}: ran twice?"));
                    ack(n);
                    known = n;
                    max_possible = n;
                }
                Err(e) => {
                    max_possible = known + 1;
                    resync = true;
                    failed(&e);
                }
            }
            continue;
        }
        let survivor = match client.query::<Option<i64>>(cmd("GET").arg(KEY)) {
            Ok(Some(v)) => v,
            Ok(None) => {
                anomaly("the counter is gone".into());
                return;
            }
            Err(e) => {
                failed(&e);
                continue;
            }
        };
        shared.log.lock().unwrap().resyncs.push(Resync {
            at: shared.now(),
            survivor,
            max_possible,
        });
        if survivor > max_possible {
            anomaly(format!(
                "the server holds {survivor}, above any value written ({max_possible})"
            ));
            max_possible = survivor;
        }
        let target = max_possible + 1;
        shared.max_attempted.store(target, Ordering::SeqCst);
        match client.query::<i64>(cmd("INCRBY").arg(KEY).arg(target - survivor)) {
            Ok(n) => {
                if n != target {
                    anomaly(format!("INCRBY answered {n}, not {target}"));
                }
                ack(n);
                known = n;
                max_possible = n;
                resync = false;
            }
            Err(e) => {
                max_possible = target;
                failed(&e);
            }
        }
    }
}

/// Waits for `done` up to `bound`, polling; false on timeout.
fn wait_for(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The conductor: steady state, then each fault, each followed by the liveness check
/// and a settled stretch; then the writer stops and the reader must end on the server's
/// value.
fn conduct(cluster: &Cluster, shared: &Shared) -> Result<(), String> {
    let slot = slot_for_key(KEY.as_bytes()).get();
    if !wait_for(WRITER_BACK, || {
        shared.reads.load(Ordering::SeqCst) > 1000 && shared.latest_ack.load(Ordering::SeqCst) > 0
    }) {
        return Err("the reader or the writer never started".into());
    }
    std::thread::sleep(STEADY);
    for kind in [
        FaultKind::ClientKill,
        FaultKind::Migration,
        FaultKind::Failover,
    ] {
        let owner = cluster.master_for_slot(slot);
        let issued = shared.now();
        let mut fault = Fault {
            kind,
            issued,
            armed: issued,
            new_owner: None,
            complete: issued,
            caught_up: None,
        };
        let index = shared.faults.lock().unwrap().len();
        let publish = |fault: &Fault| {
            shared.faults.lock().unwrap().push(fault.clone());
            shared.fault_count.store(index + 1, Ordering::SeqCst);
        };
        let e = |e: test_cluster::HarnessError| format!("{}: {e}", kind.name());
        match kind {
            FaultKind::ClientKill => {
                cluster
                    .run(
                        owner,
                        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
                    )
                    .map_err(e)?;
                fault.armed = shared.now();
                fault.complete = fault.armed;
                publish(&fault);
            }
            FaultKind::Migration => {
                let to = cluster.other_master(owner);
                fault.new_owner = Some(to);
                publish(&fault);
                // The three steps of a live migration, the client working through each:
                // ASK for the moved key, then MOVED.
                cluster.begin_migration(slot, owner, to).map_err(e)?;
                std::thread::sleep(Duration::from_millis(200));
                cluster.move_keys(slot, owner, to).map_err(e)?;
                std::thread::sleep(Duration::from_millis(200));
                cluster.finish_migration(slot, owner, to).map_err(e)?;
                fault.complete = shared.now();
            }
            FaultKind::Failover => {
                cluster.kill_node(owner).map_err(e)?;
                fault.armed = shared.now();
                publish(&fault);
                let promoted = cluster.wait_for_failover(slot, owner).map_err(e)?;
                eprintln!("staleness: {owner} killed, {promoted} promoted");
                fault.complete = shared.now();
            }
        }
        // Liveness: the writer is acknowledged again after the fault; the reader reads
        // that value (or a later one) within the bound.
        let complete_nanos = fault.complete.as_nanos() as u64;
        let caught_up = if !wait_for(WRITER_BACK, || {
            shared.latest_ack_at.load(Ordering::SeqCst) > complete_nanos
        }) {
            Err(format!(
                "the writer was not acknowledged within {WRITER_BACK:?} of the fault"
            ))
        } else {
            let want = shared.latest_ack.load(Ordering::SeqCst);
            let acked_at = Duration::from_nanos(shared.latest_ack_at.load(Ordering::SeqCst));
            if wait_for(CAUGHT_UP, || {
                shared.last_read.load(Ordering::SeqCst) >= want
            }) {
                Ok((want, acked_at, shared.now()))
            } else {
                Err(format!(
                    "{CAUGHT_UP:?} after the writer was acknowledged for {want}, the reader \
                     still reads {}",
                    shared.last_read.load(Ordering::SeqCst)
                ))
            }
        };
        fault.caught_up = Some(caught_up);
        shared.faults.lock().unwrap()[index] = fault;
        std::thread::sleep(SETTLE);
    }
    shared.stop_writer.store(true, Ordering::SeqCst);
    if !wait_for(WRITER_BACK, || shared.writer_stopped.load(Ordering::SeqCst)) {
        return Err("the writer did not stop".into());
    }
    let owner = cluster.master_for_slot(slot);
    let value = cluster
        .run(owner, &["GET", KEY])
        .map_err(|e| format!("final GET: {e}"))?
        .text()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or("the counter is gone at the end")?;
    shared.final_value.store(value, Ordering::SeqCst);
    if !wait_for(CAUGHT_UP, || {
        shared.last_read.load(Ordering::SeqCst) == value
    }) {
        return Err(format!(
            "{CAUGHT_UP:?} after the writer stopped on {value}, the reader still reads {}",
            shared.last_read.load(Ordering::SeqCst)
        ));
    }
    Ok(())
}

/// Reads of one value in a row, begun within [`RUN_SPAN`], with the writer's latest
/// acknowledged value unchanged.
#[derive(Debug, Clone, Copy)]
struct Run {
    value: i64,
    /// The writer's latest acknowledged value when they began.
    acked: i64,
    first: Duration,
    last: Duration,
    reads: u32,
}

/// What the reader saw.
#[derive(Debug, Default)]
struct ReaderLog {
    runs: Vec<Run>,
    /// Failed reads: when they began, and the error's kind.
    errors: Vec<(Duration, ErrorKind, String)>,
    /// Values no write produced (nil, or above anything the writer had sent).
    never_written: Vec<String>,
    /// Per published fault: when the reader saw it, as the beginning and the end of the
    /// read that showed it: its first read begun after the kill that was not a hit, or
    /// that failed after the kill (the entries are gone by its end); or its first read
    /// with the new owner in its map (gone by its beginning).
    seen: Vec<Option<(Duration, Duration)>>,
}

/// Errors a fault may cause: anything else is a bug.
fn is_typed_fault(kind: ErrorKind, detail: &str) -> bool {
    matches!(
        kind,
        ErrorKind::Io | ErrorKind::Timeout | ErrorKind::ClusterDown | ErrorKind::Overloaded
    ) || (kind == ErrorKind::ServerError && detail.starts_with("TRYAGAIN"))
        || kind == ErrorKind::RedirectLimit
}

async fn read_until_finished<C: AnyClient>(client: &C, shared: &Shared) -> ReaderLog {
    let slot = slot_for_key(KEY.as_bytes());
    let mut log = ReaderLog::default();
    let mut faults: Vec<Fault> = Vec::new();
    let started = Instant::now();
    while !shared.finished.load(Ordering::SeqCst) {
        // A safety net should the conductor hang: its own bounds end far sooner.
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the scenario did not end"
        );
        if shared.fault_count.load(Ordering::SeqCst) > faults.len() {
            faults = shared.faults.lock().unwrap().clone();
            log.seen.resize(faults.len(), None);
        }
        let start = shared.now();
        let acked = shared.latest_ack.load(Ordering::SeqCst);
        // The faults the reader is looking for: a kill is seen by the first read begun
        // after it that is not a hit (or failed after it), a migration by the new owner
        // in the slot map.
        let mut looking_for_loss = false;
        for (fault, seen) in faults.iter().zip(log.seen.iter_mut()) {
            if seen.is_some() || start <= fault.armed {
                continue;
            }
            match (fault.kind, fault.new_owner) {
                (FaultKind::Migration, Some(to)) => {
                    if client.slot_map().node_for(slot).map(|n| n.port) == Some(to) {
                        *seen = Some((start, start));
                    }
                }
                _ => looking_for_loss = true,
            }
        }
        let hits = looking_for_loss.then(|| client.stats().cache_hits);
        let result = client.query::<Option<i64>>(cmd("GET").arg(KEY)).await;
        let end = shared.now();
        shared.reads.fetch_add(1, Ordering::Relaxed);
        // A read that failed after the kill saw it too, even begun before (it was in
        // flight on the connection, or waited for the dead node).
        if shared.fault_count.load(Ordering::SeqCst) > faults.len() {
            faults = shared.faults.lock().unwrap().clone();
            log.seen.resize(faults.len(), None);
        }
        let missed = hits.is_some_and(|hits| client.stats().cache_hits == hits);
        for (fault, seen) in faults.iter().zip(log.seen.iter_mut()) {
            let saw = (start > fault.armed && missed) || (end > fault.armed && result.is_err());
            if seen.is_none() && fault.kind != FaultKind::Migration && saw {
                *seen = Some((start, end));
            }
        }
        match result {
            Ok(Some(value)) => {
                let max = shared.max_attempted.load(Ordering::SeqCst);
                if value > max {
                    log.never_written.push(format!(
                        "read {value} at {} ms, the writer had sent at most {max}",
                        ms(start)
                    ));
                }
                shared.last_read.store(value, Ordering::SeqCst);
                match log.runs.last_mut() {
                    Some(run)
                        if run.value == value
                            && run.acked == acked
                            && start - run.first <= RUN_SPAN =>
                    {
                        run.last = start;
                        run.reads += 1;
                    }
                    _ => log.runs.push(Run {
                        value,
                        acked,
                        first: start,
                        last: start,
                        reads: 1,
                    }),
                }
            }
            Ok(None) => log
                .never_written
                .push(format!("read nil at {} ms", ms(start))),
            Err(e) => {
                log.errors.push((start, e.kind(), e.to_string()));
                pause(Duration::from_millis(1)).await;
            }
        }
    }
    log
}

/// The writer's history, with what failovers lost.
struct History {
    /// Acknowledged values that survived (increasing in value and time).
    acks: Vec<(i64, Duration)>,
    /// Acknowledged values the server lost.
    lost_acks: Vec<(i64, Duration)>,
    /// `(survivor, max_possible]` of each resync that found less than was written.
    lost: Vec<(i64, i64)>,
}

impl History {
    fn new(log: &WriterLog) -> History {
        let lost: Vec<(i64, i64)> = log
            .resyncs
            .iter()
            .filter(|r| r.survivor < r.max_possible)
            .map(|r| (r.survivor, r.max_possible))
            .collect();
        let is_lost = |v: i64| lost.iter().any(|&(s, m)| s < v && v <= m);
        let (lost_acks, acks) = log.acks.iter().partition(|(v, _)| is_lost(*v));
        History {
            acks,
            lost_acks,
            lost,
        }
    }

    fn is_lost(&self, v: i64) -> bool {
        self.lost.iter().any(|&(s, m)| s < v && v <= m)
    }

    /// When the writer was first acknowledged for a value above `v`.
    fn first_ack_above(&self, v: i64) -> Option<Duration> {
        let i = self.acks.partition_point(|&(a, _)| a <= v);
        self.acks.get(i).map(|&(_, at)| at)
    }

    /// The highest value acknowledged before `t` (the counter starts at 0).
    fn acked_before(&self, t: Duration) -> i64 {
        let i = self.acks.partition_point(|&(_, at)| at < t);
        i.checked_sub(1).map_or(0, |i| self.acks[i].0)
    }

    fn acks_between(&self, from: Duration, to: Duration) -> usize {
        self.acks
            .iter()
            .chain(&self.lost_acks)
            .filter(|&&(_, at)| from <= at && at < to)
            .count()
    }
}

/// The staleness of the reads begun in `[from, to)`.
#[derive(Debug, Default)]
struct Phase {
    reads: u64,
    stale: u64,
    /// Per stale run: its staleness (at its last read) and its reads.
    staleness: Vec<(Duration, u64)>,
    /// The most stale reads in a row.
    streak: u64,
    errors: usize,
    acks: usize,
}

impl Phase {
    fn measure(history: &History, reader: &ReaderLog, from: Duration, to: Duration) -> Phase {
        let mut phase = Phase {
            acks: history.acks_between(from, to),
            errors: reader
                .errors
                .iter()
                .filter(|(at, ..)| from <= *at && *at < to)
                .count(),
            ..Phase::default()
        };
        let mut streak = 0;
        for run in reader
            .runs
            .iter()
            .filter(|r| from <= r.first && r.first < to)
        {
            phase.reads += u64::from(run.reads);
            let newer = history
                .first_ack_above(run.value)
                .filter(|&newer| newer < run.last);
            let Some(newer) = newer else {
                streak = 0;
                continue;
            };
            // Every read of the run began with the same latest acknowledgement in view:
            // all are stale, or (when the newer one was published mid-run) the last.
            let stale = if newer < run.first {
                u64::from(run.reads)
            } else {
                1
            };
            phase.stale += stale;
            phase.staleness.push((run.last - newer, stale));
            streak = if newer < run.first { streak + stale } else { 1 };
            phase.streak = phase.streak.max(streak);
        }
        phase.staleness.sort_unstable();
        phase
    }

    /// The staleness below which `q` of the stale reads fall.
    fn quantile(&self, q: f64) -> Duration {
        let want = (self.stale as f64 * q).ceil() as u64;
        let mut seen = 0;
        for &(d, n) in &self.staleness {
            seen += n;
            if seen >= want {
                return d;
            }
        }
        Duration::ZERO
    }

    fn line(&self, client: ClientKind, name: &str) -> String {
        format!(
            "staleness({client}, {name}): reads={}, stale={} ({:.3}%), staleness of the stale \
             reads p50={} ms p99={} ms max={} ms, most in a row={}, read errors={}, writes={}",
            self.reads,
            self.stale,
            self.stale as f64 * 100.0 / self.reads.max(1) as f64,
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.staleness.last().map_or(Duration::ZERO, |s| s.0)),
            self.streak,
            self.errors,
            self.acks,
        )
    }
}

async fn a_cached_counter_across_client_kill_migration_and_failover<'s, C: AnyClient>(
    cluster: &'s Cluster,
    helpers: &'s Scope<'s, '_>,
) {
    let slot = slot_for_key(KEY.as_bytes()).get();
    // The counter starts at 0, on the replica too (the failover must not lose it).
    let owner = cluster.master_for_slot(slot);
    let set = ["SET", KEY, "0"].map(|a| a.as_bytes().to_vec()).to_vec();
    let wait = ["WAIT", "1", "5000"]
        .map(|a| a.as_bytes().to_vec())
        .to_vec();
    let replies = cluster.pipeline(owner, &[set, wait]).unwrap();
    assert_eq!(replies[1].int(), Some(1), "the replica has the counter");

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        log: Mutex::default(),
        latest_ack: AtomicI64::new(0),
        latest_ack_at: AtomicU64::new(0),
        max_attempted: AtomicI64::new(0),
        stop_writer: AtomicBool::new(false),
        writer_stopped: AtomicBool::new(false),
        last_read: AtomicI64::new(-1),
        reads: AtomicU64::new(0),
        faults: Mutex::default(),
        fault_count: AtomicUsize::new(0),
        final_value: AtomicI64::new(-1),
        finished: AtomicBool::new(false),
        conductor_error: Mutex::default(),
    });
    // Whatever happens to the test thread, the helpers end (the scope joins them).
    let _stop_writer = SetOnDrop(&shared.stop_writer);
    let _finished = SetOnDrop(&shared.finished);
    let config = Config::default()
        .cache(redis_cluster_uring::CacheConfig::default())
        .request_timeout(Some(Duration::from_secs(1)));
    let client = C::connect(cluster, config).await;

    let writer_shared = shared.clone();
    helpers.spawn(move || writer(cluster, &writer_shared));
    let conductor_shared = shared.clone();
    helpers.spawn(move || {
        let shared = &*conductor_shared;
        let _finished = SetOnDrop(&shared.finished);
        let _stop_writer = SetOnDrop(&shared.stop_writer);
        if let Err(e) = conduct(cluster, shared) {
            *shared.conductor_error.lock().unwrap() = Some(e);
        }
    });

    let reader = read_until_finished(&client, &shared).await;
    let end = shared.now();
    // Let the writer end before reading its log.
    while !shared.writer_stopped.load(Ordering::SeqCst) {
        pause(Duration::from_millis(5)).await;
    }
    let writer = std::mem::take(&mut *shared.log.lock().unwrap());
    let faults = shared.faults.lock().unwrap().clone();
    let history = History::new(&writer);
    let kind = C::kind();

    // The report: steady state, then each fault until the next (or the writer's stop).
    let mut problems: Vec<String> = Vec::new();
    let first_fault = faults.first().map_or(end, |f| f.issued);
    let reads_from = reader.runs.first().map_or(Duration::ZERO, |r| r.first);
    eprintln!(
        "{}",
        Phase::measure(&history, &reader, reads_from, first_fault).line(kind, "steady")
    );
    for (i, fault) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(end, |f| f.issued);
        let phase = Phase::measure(&history, &reader, fault.issued, until);
        let seen = reader.seen.get(i).copied().flatten();
        let seen_at = seen.map(|(_, end)| end);
        // Logical check: no read begun after the reader saw the fault returns less than
        // what the writer had been acknowledged for before it (or, after a failover, an
        // increment the failover lost).
        let mut stale_after_seen = 0u64;
        if let Some(seen) = seen_at {
            let floor = match fault.kind {
                FaultKind::Migration => history.acked_before(seen),
                _ => history.acked_before(fault.issued),
            };
            for run in reader
                .runs
                .iter()
                .filter(|r| r.first > seen && r.first < until)
            {
                if run.value < floor || history.is_lost(run.value) {
                    stale_after_seen += u64::from(run.reads);
                    if stale_after_seen == u64::from(run.reads) {
                        problems.push(format!(
                            "{}: read {} at {} ms, after the reader saw the fault at {} ms \
                             (acknowledged before: {floor}{})",
                            fault.kind.name(),
                            run.value,
                            ms(run.first),
                            ms(seen),
                            if history.is_lost(run.value) {
                                ", and the failover lost it"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
        } else {
            problems.push(format!(
                "{}: the reader never saw the fault",
                fault.kind.name()
            ));
        }
        let caught_up = match &fault.caught_up {
            Some(Ok((value, acked_at, read_at))) => format!(
                "writer back {} ms after the fault ended, read by the reader {} ms later ({value})",
                ms(acked_at.saturating_sub(fault.complete)),
                ms(read_at.saturating_sub(*acked_at)),
            ),
            Some(Err(e)) => {
                problems.push(format!("{}: {e}", fault.kind.name()));
                format!("NOT CAUGHT UP: {e}")
            }
            None => "not checked (the conductor stopped)".into(),
        };
        eprintln!(
            "{}; fault took {} ms; the read that saw it began {} ms and ended {} ms after {}; {caught_up}; stale reads after it={stale_after_seen}",
            phase.line(kind, fault.kind.name()),
            ms(fault.complete - fault.issued),
            seen.map_or("never".into(), |(s, _)| signed_ms(s, fault.armed)),
            seen.map_or("never".into(), |(_, e)| signed_ms(e, fault.armed)),
            fault.kind.armed_by(),
        );
    }
    for r in &writer.resyncs {
        eprintln!(
            "staleness({kind}): after a failed write, at {} ms, the server held {} (the writer \
             may have written up to {}; acknowledged and lost: {})",
            ms(r.at),
            r.survivor,
            r.max_possible,
            history
                .lost_acks
                .iter()
                .filter(|&&(v, _)| r.survivor < v && v <= r.max_possible)
                .count()
        );
    }
    let stats = client.stats();
    let final_value = shared.final_value.load(Ordering::SeqCst);
    eprintln!(
        "staleness({kind}): {} reads in {} s, writer acknowledged {} times ({} acknowledged \
         increments lost, {} lost with no error seen, errors {:?}), reader errors {}, final value {final_value}, \
         cache hits {} misses {} invalidations {} refused fills {}",
        reader.runs.iter().map(|r| u64::from(r.reads)).sum::<u64>(),
        end.as_secs_f64().round(),
        history.acks.len() + history.lost_acks.len(),
        history.lost_acks.len(),
        writer.silent_losses,
        writer.errors,
        reader.errors.len(),
        stats.cache_hits,
        stats.cache_misses,
        stats.cache_invalidations,
        stats.cache_refused_fills,
    );

    // Reads never go backwards, except from a value a failover lost to what survived.
    for pair in reader.runs.windows(2) {
        let (a, b) = (pair[0].value, pair[1].value);
        let allowed = writer
            .resyncs
            .iter()
            .any(|r| r.survivor <= b && r.survivor < a && a <= r.max_possible);
        if b < a && !allowed {
            problems.push(format!(
                "read {b} at {} ms after {a} at {} ms",
                ms(pair[1].first),
                ms(pair[0].last)
            ));
        }
    }
    let unexpected: Vec<&(Duration, ErrorKind, String)> = reader
        .errors
        .iter()
        .filter(|(_, kind, detail)| !is_typed_fault(*kind, detail))
        .collect();
    if let Some(e) = shared.conductor_error.lock().unwrap().take() {
        problems.push(format!("conductor: {e}"));
    }
    problems.extend(reader.never_written.iter().cloned());
    problems.extend(writer.anomalies.iter().map(|a| format!("writer: {a}")));
    problems.extend(
        unexpected
            .iter()
            .take(5)
            .map(|(at, kind, e)| format!("reader error at {} ms: {kind:?} {e}", ms(*at))),
    );
    assert_eq!(faults.len(), 3, "every fault was made: {problems:#?}");
    assert!(
        problems.is_empty(),
        "staleness({kind}): {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The local port of the connection to the node on `port` that has tracking on (`t` in
/// `CLIENT LIST`'s flags): the cached client's, the only one that tracks.
fn tracking_connection(cluster: &Cluster, port: u16) -> u16 {
    let list = cluster
        .run(port, &["CLIENT", "LIST"])
        .unwrap()
        .text()
        .unwrap_or_default();
    let tracking: Vec<u16> = list
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
        })
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("addr="))
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
        })
        .collect();
    assert_eq!(tracking.len(), 1, "one tracking connection: {list}");
    tracking[0]
}

/// The kernel's queues of the TCP socket `127.0.0.1:local` → `127.0.0.1:remote`
/// (`/proc/net/tcp`): bytes sent but not yet acknowledged by the peer, and bytes
/// received but not yet read by the socket's owner.
fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (local, remote) = (
        format!("0100007F:{local:04X}"),
        format!("0100007F:{remote:04X}"),
    );
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&local.as_str()) || f.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, rx) = f.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Once the server's `invalidate` push for another client's write has been delivered
/// to this process, a caller that only hits the entry sees it go within a few hits: the
/// blocking client looks at its sockets on every call; the async client's caller yields
/// to the loop every 64 hits (`HITS_BETWEEN_YIELDS`), which is meant to let it read the
/// push.
///
/// Not timing: the test thread holds the client still (no call, no await) until the
/// push has reached the client's side (the server has served a later command, so it
/// wrote the push; its socket has no byte the client's kernel did not acknowledge), then
/// counts the hits that still answer the old value.
async fn an_invalidation_in_the_socket_ends_the_entry_within_a_few_hits<C: AnyClient>(
    cluster: &Cluster,
    _: &Scope<'_, '_>,
) {
    // Well above the 64 hits between two yields, and the loop turns that may take to
    // deliver the push to the cache; far below what a loop that never reads would show.
    const FEW: u64 = 1024;
    let config = Config::default().cache(redis_cluster_uring::CacheConfig::default());
    let client = C::connect(cluster, config).await;
    let key = "arrived:{k}";
    let port = cluster.master_for_slot(slot_for_key(key.as_bytes()).get());
    for round in 0..3 {
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        cluster.run(port, &["SET", key, &old]).unwrap();
        // Read until cached (the first read after the write may race its invalidation).
        let start = Instant::now();
        loop {
            let before = client.stats().cache_hits;
            let v: Option<String> = client.query(cmd("GET").arg(key)).await.unwrap();
            if v.as_deref() == Some(old.as_str()) && client.stats().cache_hits > before {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never cached");
            pause(Duration::from_millis(1)).await;
        }
        let local = tracking_connection(cluster, port);
        // Another client's write: the server pushes `invalidate` to the client's
        // connection. From here the client does not run until the push has reached it:
        // written by the server before it serves a later command (the PING), and
        // acknowledged by the client's kernel.
        cluster.run(port, &["SET", key, &new]).unwrap();
        cluster.run(port, &["PING"]).unwrap();
        let start = Instant::now();
        while tcp_queues(port, local).is_none_or(|(unacked, _)| unacked > 0) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the push never reached the client"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Where it is: unread in the socket, or already taken by the kernel for the
        // client (an io_uring read that ran).
        let unread = tcp_queues(local, port).map_or(0, |(_, rx)| rx);
        let mut stale = 0u64;
        loop {
            let v: Option<String> = client.query(cmd("GET").arg(key)).await.unwrap();
            if v.as_deref() == Some(new.as_str()) {
                break;
            }
            assert_eq!(v.as_deref(), Some(old.as_str()));
            stale += 1;
            // Liveness only: hits alone must end the entry at some point.
            assert!(stale < 10_000_000, "the entry outlived ten million hits");
        }
        eprintln!(
            "staleness({}): with the invalidation delivered ({unread} bytes unread in its \
             socket), the client answered the old value {stale} more times",
            C::kind()
        );
        assert!(
            stale <= FEW,
            "{}: with the invalidation already delivered to the client ({unread} bytes \
             unread in its socket), {stale} cache hits in a row still answered the old \
             value (at most {FEW} expected: a caller answered from the cache yields to the \
             loop every 64 hits)",
            C::kind()
        );
    }
}
