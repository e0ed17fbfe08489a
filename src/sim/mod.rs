//! A deterministic simulation of the whole client: the real core (the cluster machine,
//! the request machine, the pool of connections with their sans-IO `Conn`s) driven
//! against a simulated cluster ([`world`]) with simulated time, seed by seed.
//!
//! [`SimClient`] is a driver like the blocking client's, with the world instead of
//! sockets: it opens connections, moves bytes, lets time pass and decides nothing. The
//! world injects the faults its seed chooses (replies late, split and coalesced;
//! connections cut after a command ran and before its reply; nodes stopped past the
//! deadline; transient error replies; live slot migrations with `ASK` and `MOVED`; a
//! `CLUSTER SLOTS` that lags). Every step is checked against named invariants; a
//! failure prints its seed, and `SIM_SEED=<seed> cargo test --lib sim::` replays it.
//!
//! Test-only: nothing here is part of the library.

mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::core::cluster::Cluster;
use crate::core::cmd::{cmd, Cmd};
use crate::core::config::Config;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::plan::{BatchEntry, NodeBatch};
use crate::core::pool::{ConnId, Pool, QueueLimits};
use crate::core::request::{Request, Step};
use crate::core::resp::Value;
use crate::core::topology::{NodeAddr, SlotMap};

use world::{sim_now, Faults, Rng, Seen, World};

/// The client under test: the core's machines, and which world link each connection is.
struct SimClient {
    cluster: Cluster,
    pool: Pool,
    /// World link of each pool connection (by slab key), and its read buffer.
    links: BTreeMap<usize, (ConnId, usize, BytesMut)>,
    /// Pool key of each world link.
    keys: BTreeMap<usize, usize>,
}

impl SimClient {
    fn new(world: &World, config: Config, seed: u64) -> SimClient {
        SimClient {
            cluster: Cluster::new(world.seeds(), config, seed),
            pool: Pool::new(sim_now),
            links: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    /// A pipeline, as the blocking client runs one.
    fn execute(&mut self, world: &mut World, cmds: &[Cmd]) -> Result<Vec<Result<Value>>> {
        self.maybe_refresh(world);
        let deadline = self.cluster.config().request_timeout.map(|t| sim_now() + t);
        let mut request = self
            .cluster
            .pipeline(cmds, self.pool.nodes(), deadline, None);
        self.drive(world, &mut request, deadline);
        self.maybe_refresh(world);
        request.results()
    }

    fn drive(
        &mut self,
        world: &mut World,
        request: &mut Request<'_>,
        deadline: Option<std::time::Instant>,
    ) {
        let exec = self.pool.new_exec(request.reply_slots());
        loop {
            match request.poll(sim_now(), self.cluster.map(), self.cluster.seeds()) {
                Step::Done => break,
                Step::Sleep(at) => {
                    self.maybe_refresh(world);
                    while sim_now() < at {
                        let mut seen = Vec::new();
                        world.advance(at, &mut seen);
                        self.handle(world, seen);
                    }
                }
                Step::Write(NodeBatch { node, entries, buf }) => {
                    let bytes = self.write_batch(world, exec, &node, &entries, buf);
                    request.written(node, entries, bytes, sim_now());
                }
                Step::Wait => {
                    let all_in = self.pump(world, deadline);
                    let pool = &mut self.pool;
                    request.waited(all_in, |i| pool.take_reply(exec, i));
                    if !all_in {
                        // As the blocking client: a connection owing replies given up on
                        // is closed.
                        let mut late = Vec::new();
                        self.pool.awaiting(&mut late);
                        for conn in late {
                            self.close(world, conn);
                        }
                    }
                    self.cluster.apply_effects(request.take_effects(), sim_now);
                }
            }
        }
        self.pool.abandon(exec);
    }

    fn write_batch(
        &mut self,
        world: &mut World,
        exec: usize,
        node: &NodeAddr,
        entries: &[BatchEntry],
        buf: BytesMut,
    ) -> usize {
        let bytes = buf.len();
        let queued = self.connection_for(world, node).and_then(|conn| {
            let limits = QueueLimits::of(self.cluster.config());
            self.pool.enqueue(conn, exec, entries, buf, limits)
        });
        match queued {
            Ok(()) => bytes,
            Err(e) => {
                self.pool.fail_unsent(exec, entries, &e);
                0
            }
        }
    }

    fn connection_for(&mut self, world: &mut World, node: &NodeAddr) -> Result<ConnId> {
        if let Some(conn) = self.pool.find(node) {
            return Ok(conn);
        }
        let conn = self.cluster.connection(node, None)?;
        let conn = self.pool.open(conn, 4096);
        match world.connect(node) {
            Some(link) => {
                self.links.insert(conn.key, (conn, link, BytesMut::new()));
                self.keys.insert(link, conn.key);
                self.cluster.counters().add_connect();
                Ok(conn)
            }
            None => {
                let e = Error::new(ErrorKind::Io, format!("{node}: no such node"));
                self.pool.fail(conn, &e);
                self.pool.release(conn);
                Err(e)
            }
        }
    }

    /// Moves bytes and time until no connection owes anything (true) or the deadline.
    fn pump(&mut self, world: &mut World, deadline: Option<std::time::Instant>) -> bool {
        let limit = self.cluster.config().connect_timeout;
        let mut awaiting = Vec::new();
        loop {
            self.flush(world);
            let now = sim_now();
            self.pool.awaiting(&mut awaiting);
            let mut wake = deadline;
            let mut overdue = Vec::new();
            for &conn in &awaiting {
                if let Some(e) = self.pool.handshake_overdue(conn, now, limit) {
                    overdue.push((conn, e));
                } else if let Some(due) = self.pool.handshake_due(conn, limit) {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
            for (conn, e) in overdue {
                self.fail(world, conn, &e);
            }
            self.pool.awaiting(&mut awaiting);
            if awaiting.is_empty() {
                return true;
            }
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            // Nothing will ever happen and nothing bounds the wait: a deadlock.
            let until = match (wake, world.next_event()) {
                (Some(w), _) => w,
                (None, Some(e)) => e,
                (None, None) => {
                    panic!("invariant `progress`: waiting for replies nothing will send")
                }
            };
            let mut seen = Vec::new();
            world.advance(until, &mut seen);
            self.handle(world, seen);
        }
    }

    fn flush(&mut self, world: &mut World) {
        for conn in self.pool.open_ids() {
            if !self.pool.wants_write(conn) {
                continue;
            }
            match self.pool.output(conn) {
                Some(Some(out)) => {
                    if let Some((_, link, _)) = self.links.get(&conn.key) {
                        world.send(*link, out.bytes.freeze());
                    }
                }
                Some(None) => {}
                None => self.close(world, conn),
            }
        }
    }

    fn handle(&mut self, world: &mut World, seen: Vec<Seen>) {
        for event in seen {
            match event {
                Seen::Bytes(link, bytes) => {
                    let Some(&key) = self.keys.get(&link) else {
                        continue;
                    };
                    let Some((conn, _, input)) = self.links.get_mut(&key) else {
                        continue;
                    };
                    let conn = *conn;
                    input.extend_from_slice(&bytes);
                    let mut pushes = Vec::new();
                    if let Err(e) = self.pool.receive(conn, input, &mut pushes, sim_now) {
                        self.fail(world, conn, &e);
                    }
                }
                Seen::Closed(link) => {
                    let Some(&key) = self.keys.get(&link) else {
                        continue;
                    };
                    let Some(&(conn, _, _)) = self.links.get(&key) else {
                        continue;
                    };
                    let e = Error::new(ErrorKind::Io, "closed the connection");
                    self.fail(world, conn, &e);
                }
            }
        }
    }

    fn fail(&mut self, world: &mut World, conn: ConnId, e: &Error) {
        self.pool.fail(conn, e);
        for node in self.pool.take_unreachable() {
            self.cluster.unreachable(&node, sim_now());
        }
        self.close(world, conn);
    }

    fn close(&mut self, world: &mut World, conn: ConnId) {
        self.pool.close(conn);
        if let Some((c, link, _)) = self.links.get(&conn.key) {
            if *c == conn {
                world.close(*link);
                self.keys.remove(link);
                self.links.remove(&conn.key);
                self.pool.release(conn);
            }
        }
    }

    /// Loads the slot map, as `connect` does (it fails when no node answers).
    fn connect(&mut self, world: &mut World) -> Result<()> {
        let fetched = self.fetch_slot_map(world);
        self.cluster
            .adopt(fetched, Vec::new(), self.pool.nodes_mut(), sim_now())
    }

    fn maybe_refresh(&mut self, world: &mut World) {
        if !self.cluster.wants_refresh(sim_now()) {
            return;
        }
        let fetched = self.fetch_slot_map(world);
        let adopted = self
            .cluster
            .adopt(fetched, Vec::new(), self.pool.nodes_mut(), sim_now());
        if adopted.is_ok() {
            let cluster = &self.cluster;
            let leaving = self.pool.close_idle(sim_now(), None, |a| cluster.keeps(a));
            for conn in leaving {
                self.close(world, conn);
            }
        }
    }

    fn fetch_slot_map(&mut self, world: &mut World) -> Result<SlotMap> {
        let mut fetch = self.cluster.fetch();
        while let Some(group) = fetch.next_group() {
            let cmds: Vec<Cmd> = group.iter().map(|_| cmd("CLUSTER").arg("SLOTS")).collect();
            let pins = group.iter().cloned().map(Some).collect();
            let deadline = Some(sim_now() + fetch.budget());
            let mut request =
                self.cluster
                    .plain(&cmds, pins, self.pool.nodes(), deadline, fetch.limits());
            self.drive(world, &mut request, deadline);
            let replies = request.results()?;
            for (node, reply) in group.iter().zip(replies) {
                if let Some(map) = fetch.answer(node, reply) {
                    return Ok(map);
                }
            }
            if let Some(map) = fetch.end_group() {
                return Ok(map);
            }
        }
        Err(fetch.into_error())
    }
}

/// What one seed did, for the failure message.
#[derive(Debug, Default)]
struct Trace {
    faults: Vec<String>,
}

/// What the seeds exercised, summed: a run that never redirected, retried, timed out or
/// lost a connection would prove nothing.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    redirects: u64,
    retries: u64,
    refreshes: u64,
    connects: u64,
    timeouts: u64,
    io_failures: u64,
    acked: u64,
    failed_writes: u64,
    served_by_promoted: u64,
}

/// Runs seed `seed`: a workload of pipelines over all slots under the faults it
/// chooses, then the faults healed, checking every invariant. Panics with the seed and
/// its fault schedule on the first broken one.
fn run_seed(seed: u64) -> Coverage {
    let mut coverage = Coverage::default();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let faults = Faults {
        drop: rng.below(3),
        transient: rng.below(4),
        stale_map: rng.below(30),
        max_latency: Duration::from_micros(50 + rng.below(3000)),
    };
    let mut world = World::new(3, seed, faults);
    let mut trace = Trace::default();
    trace.faults.push(format!("{faults:?}"));
    let reads = 24;
    for i in 0..reads {
        world.preload(format!("r:{i}").as_bytes(), format!("v{i}").as_bytes());
    }
    let config = Config::default()
        .request_timeout(Some(Duration::from_millis(100)))
        .connect_timeout(Duration::from_millis(50));
    let mut client = SimClient::new(&world, config, seed);
    // As a user would: `connect` until it loads a map (a cut connection can fail it).
    let mut connected = false;
    for _ in 0..20 {
        if client.connect(&mut world).is_ok() {
            connected = true;
            break;
        }
        pass_time(&mut world, &mut client, Duration::from_millis(100));
    }
    assert!(connected, "seed {seed}: connect never loaded a map");
    let check = |ok: bool, name: &str, detail: String, trace: &Trace| {
        assert!(
            ok,
            "invariant `{name}` broken: {detail}\nseed {seed} (replay: SIM_SEED={seed} cargo test --lib sim::)\nfaults: {:?}",
            trace.faults
        );
    };
    // Writes acknowledged, and writes that failed (may or may not have run).
    let mut acked: Vec<Bytes> = Vec::new();
    let mut failed: Vec<Bytes> = Vec::new();
    let rounds = 12;
    for round in 0..rounds {
        // Faults between requests, as the seed says.
        match rng.below(8) {
            0 => {
                let key = format!("r:{}", rng.below(reads));
                trace
                    .faults
                    .push(format!("round {round}: migrate the slot of {key}"));
                world.start_migration(key.as_bytes());
            }
            1 => {
                trace
                    .faults
                    .push(format!("round {round}: finish the migration"));
                world.finish_migration();
            }
            2 => {
                let node = rng.below(3) as usize;
                let ms = 20 + rng.below(200);
                trace
                    .faults
                    .push(format!("round {round}: pause node {node} for {ms} ms"));
                world.pause(node, Duration::from_millis(ms));
            }
            3 => {
                let node = rng.below(3) as usize;
                trace
                    .faults
                    .push(format!("round {round}: cut every link to node {node}"));
                world.kill_links(node);
            }
            4 if rng.chance(50) => {
                let shard = rng.below(3) as usize;
                let ms = 50 + rng.below(500);
                trace.faults.push(format!(
                    "round {round}: fail over shard {shard}, old primary down {ms} ms"
                ));
                world.failover(shard, Duration::from_millis(ms));
            }
            _ => {}
        }
        let n = 1 + rng.below(12) as usize;
        let mut cmds = Vec::with_capacity(n);
        // What each command's reply must be: a read's value, or a write's key (`OK`).
        let mut expect: Vec<Result<Bytes, Bytes>> = Vec::with_capacity(n);
        for j in 0..n {
            if rng.chance(50) {
                let i = rng.below(reads);
                cmds.push(cmd("GET").arg(format!("r:{i}")));
                expect.push(Ok(Bytes::from(format!("v{i}"))));
            } else {
                let key = format!("w:{round}:{j}");
                cmds.push(cmd("SET").arg(&key).arg(&key));
                expect.push(Err(Bytes::from(key)));
            }
        }
        let started = sim_now();
        let results = client.execute(&mut world, &cmds);
        let took = sim_now().saturating_duration_since(started);
        // Bounded: the deadline, plus the refreshes run around and during the request.
        check(
            took <= Duration::from_millis(100) + Duration::from_millis(1600),
            "finishes within its deadline plus a bound",
            format!("round {round} took {took:?}"),
            &trace,
        );
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                coverage.note(&e);
                check(
                    matches!(
                        e.kind(),
                        ErrorKind::Timeout | ErrorKind::Io | ErrorKind::ClusterDown
                    ),
                    "a whole request fails only by time or I/O",
                    format!("round {round}: {e}"),
                    &trace,
                );
                failed.extend(expect.iter().filter_map(|e| e.clone().err()));
                continue;
            }
        };
        check(
            results.len() == cmds.len(),
            "one result per command",
            format!("round {round}: {} for {}", results.len(), cmds.len()),
            &trace,
        );
        for ((c, want), got) in cmds.iter().zip(&expect).zip(results) {
            match (want, got) {
                (Ok(v), Ok(Value::Bulk(b))) => check(
                    b == v,
                    "every reply goes to the command that asked",
                    format!("round {round}: {c:?} got {b:?}, wants {v:?}"),
                    &trace,
                ),
                (Ok(_), Ok(other)) => check(
                    false,
                    "every reply goes to the command that asked",
                    format!("round {round}: {c:?} got {other:?}"),
                    &trace,
                ),
                (Err(key), Ok(v)) => {
                    check(
                        v == Value::SimpleString(Bytes::from_static(b"OK")),
                        "every reply goes to the command that asked",
                        format!("round {round}: {c:?} got {v:?}"),
                        &trace,
                    );
                    acked.push(key.clone());
                }
                (Err(key), Err(e)) => {
                    coverage.note(&e);
                    failed.push(key.clone());
                }
                (Ok(_), Err(e)) => coverage.note(&e),
            }
        }
    }
    for key in &acked {
        let runs = world.executions.get(key).copied().unwrap_or(0);
        check(
            runs == 1,
            "an acknowledged write ran exactly once",
            format!("{key:?} ran {runs} times"),
            &trace,
        );
    }
    for key in &failed {
        let runs = world.executions.get(key).copied().unwrap_or(0);
        check(
            runs <= 1,
            "a failed write ran at most once (never resent silently)",
            format!("{key:?} ran {runs} times"),
            &trace,
        );
    }
    // Healed: every request succeeds within a bounded simulated time.
    world.heal();
    let heal_started = sim_now();
    let mut all = Vec::new();
    for i in 0..reads {
        all.push(cmd("GET").arg(format!("r:{i}")));
    }
    let mut healed = false;
    let mut last = String::new();
    for _ in 0..10 {
        // A user's pause between attempts: time for the rate-limited refresh.
        pass_time(&mut world, &mut client, Duration::from_millis(100));
        let outcome = client.execute(&mut world, &all);
        last = format!(
            "{outcome:?}; map has {} shards; {:?}",
            client.cluster.map().shards().len(),
            client.cluster.counters().snapshot()
        );
        if let Ok(results) = outcome {
            if results.iter().all(|r| r.is_ok()) {
                for (i, r) in results.into_iter().enumerate() {
                    check(
                        matches!(&r, Ok(Value::Bulk(b)) if b == &format!("v{i}")),
                        "every reply goes to the command that asked",
                        format!("after healing, r:{i} got {r:?}"),
                        &trace,
                    );
                }
                healed = true;
                break;
            }
        }
    }
    check(
        healed,
        "after the faults heal, every request succeeds",
        format!(
            "still failing {:?} after healing: {last}",
            sim_now().saturating_duration_since(heal_started)
        ),
        &trace,
    );
    let stats = client.cluster.counters().snapshot();
    coverage.redirects = stats.redirects;
    coverage.retries = stats.retries;
    coverage.refreshes = stats.refreshes;
    coverage.connects = stats.connects;
    coverage.acked = acked.len() as u64;
    coverage.failed_writes = failed.len() as u64;
    coverage.served_by_promoted = world.served_by_promoted;
    for key in &acked {
        check(
            world.value_of(key).as_ref() == Some(key),
            "an acknowledged write is stored",
            format!("{key:?} is {:?}", world.value_of(key)),
            &trace,
        );
    }
    coverage
}

impl Coverage {
    fn note(&mut self, e: &Error) {
        match e.kind() {
            ErrorKind::Timeout => self.timeouts += 1,
            ErrorKind::Io => self.io_failures += 1,
            _ => {}
        }
    }

    fn add(&mut self, o: Coverage) {
        self.redirects += o.redirects;
        self.retries += o.retries;
        self.refreshes += o.refreshes;
        self.connects += o.connects;
        self.timeouts += o.timeouts;
        self.io_failures += o.io_failures;
        self.acked += o.acked;
        self.failed_writes += o.failed_writes;
        self.served_by_promoted += o.served_by_promoted;
    }
}

/// Lets `d` of simulated time pass with nobody calling the client (bytes still move).
fn pass_time(world: &mut World, client: &mut SimClient, d: Duration) {
    let until = sim_now() + d;
    while sim_now() < until {
        let mut seen = Vec::new();
        world.advance(until, &mut seen);
        client.handle(world, seen);
    }
}

/// Seeds run by default; `SIM_SEEDS` runs more, `SIM_SEED` replays one.
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    (0..n).collect()
}

#[test]
fn simulated_cluster_under_faults_keeps_every_invariant() {
    let seeds = seeds();
    let mut total = Coverage::default();
    for &seed in &seeds {
        total.add(run_seed(seed));
    }
    println!("{} seeds: {total:?}", seeds.len());
    if seeds.len() >= 100 {
        // The faults happened: redirects (MOVED and ASK), retries of transient errors,
        // refreshes, reconnects, timeouts, lost connections, writes acknowledged and
        // writes failed.
        let c = total;
        for (what, n) in [
            ("redirects", c.redirects),
            ("retries", c.retries),
            ("refreshes", c.refreshes),
            (
                "reconnects",
                c.connects.saturating_sub(3 * seeds.len() as u64),
            ),
            ("timeouts", c.timeouts),
            ("lost connections", c.io_failures),
            ("acknowledged writes", c.acked),
            ("failed writes", c.failed_writes),
            (
                "commands served by a promoted replica",
                c.served_by_promoted,
            ),
        ] {
            assert!(n > 0, "no {what} in {} seeds: {c:?}", seeds.len());
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    // Determinism is what makes a failing seed worth printing.
    let run = |seed: u64| {
        let mut world = World::new(3, seed, Faults::NONE);
        world.preload(b"r:1", b"v1");
        let mut client = SimClient::new(&world, Config::default(), seed);
        let results = client
            .execute(
                &mut world,
                &[cmd("GET").arg("r:1"), cmd("SET").arg("w").arg("1")],
            )
            .unwrap();
        (
            format!("{results:?}"),
            world.executions.clone(),
            world.rng.next(),
        )
    };
    assert_eq!(run(7), run(7));
}
