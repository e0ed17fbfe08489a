//! Tables and JSON records (the figures are in `figures.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::clients::{CaseResult, ClientKind, TaskRuntime, Workload, TASKS_FANOUT_MAX_K};
use crate::zipf::ZipfFigures;

/// One measured case, reduced to figures.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// `fanout`, `single-node`, `concurrent`, `tasks`, `tasks-fanout` or `zipf`.
    pub workload: &'static str,
    /// Client name (`uring+tls` for a TLS row).
    pub client: &'static str,
    /// Over TLS (present only then, so plain records are as before).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Commands per pipeline (or concurrent callers, or tasks for `tasks`).
    pub k: usize,
    /// Injected reply delay per node.
    pub delay_ms: u64,
    /// Median latency of one operation (pipeline or command).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Throughput.
    pub cmds_per_s: f64,
    /// The client's CPU per command (its case thread and helper threads, see `cpu.rs`):
    /// `user_ns_per_cmd + sys_ns_per_cmd`.
    pub cpu_ns_per_cmd: f64,
    /// The user-space part: the client's own code.
    pub user_ns_per_cmd: f64,
    /// The kernel part: system calls and, on loopback, the TCP work they set off.
    pub sys_ns_per_cmd: f64,
    /// The client's CPU time in the measured window. The user/system split comes from
    /// timer-tick samples, so below [`ROUGH_SPLIT_MS`] it is rough (see `cpu.rs`).
    pub cpu_ms: f64,
    /// Heap allocations per command on the client thread (the multi-thread workloads: in
    /// the whole process but the delay proxy).
    pub allocs_per_cmd: f64,
    /// Failed operations.
    pub errors: u64,
    /// For this library: socket writes per operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_op: Option<f64>,
    /// For this library: socket reads per operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_per_op: Option<f64>,
    /// System calls per operation by the client thread (perf tracepoint), when countable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_per_op: Option<f64>,
    /// Why `syscalls_per_op` is absent (not root, mount failed, tracepoint missing...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_note: Option<String>,
    /// The ring engine: loop turns per operation (its system calls per turn are
    /// `syscalls_per_op / turns_per_op`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns_per_op: Option<f64>,
    /// With `--pin`: the CPUs of the client and of the servers, e.g. `client 0, servers 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// `p50_us` ÷ the floor's `p50_us` in the same case (workload, K, delay) of the same
    /// run; absent when the floor did not run it (see [`add_floor_ratios`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_div_floor: Option<f64>,
    /// `cpu_ns_per_cmd` ÷ the floor's, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_div_floor: Option<f64>,
    /// The `zipf` workload's figures (its rows only; see `zipf.rs`), in the same object.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub zipf: Option<ZipfFigures>,
    #[serde(skip)]
    kind: Option<(ClientKind, Workload)>,
    /// The multi-thread workloads: tasks, runtime threads and workers, for the table's
    /// title (the JSON keeps its fields).
    #[serde(skip)]
    runtime: Option<TaskRuntime>,
}

impl Record {
    /// Reduces a case result.
    pub fn new(
        workload: Workload,
        client: ClientKind,
        tls: bool,
        k: usize,
        delay_ms: u64,
        r: &CaseResult,
    ) -> Record {
        let us = |q: f64| r.latency.value_at_quantile(q) as f64 / 1000.0;
        let commands = r.commands.max(1) as f64;
        let per_op = |n: u64, ops: u64| n as f64 / ops.max(1) as f64;
        Record {
            workload: workload.name(),
            client: client.label(tls),
            tls,
            k,
            delay_ms,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            cmds_per_s: r.commands as f64 / r.elapsed.as_secs_f64(),
            cpu_ns_per_cmd: r.cpu.total_ns() as f64 / commands,
            user_ns_per_cmd: r.cpu.user_ns as f64 / commands,
            sys_ns_per_cmd: r.cpu.sys_ns as f64 / commands,
            cpu_ms: r.cpu.total_ns() as f64 / 1e6,
            allocs_per_cmd: r.allocations as f64 / commands,
            errors: r.errors,
            writes_per_op: r.io.map(|(w, _, ops)| per_op(w, ops)),
            reads_per_op: r.io.map(|(_, rd, ops)| per_op(rd, ops)),
            syscalls_per_op: r.syscalls.as_ref().ok().map(|&n| per_op(n, r.ops)),
            syscalls_note: r.syscalls.as_ref().err().cloned(),
            turns_per_op: r.turns.map(|t| per_op(t, r.ops)),
            pin: None,
            p50_div_floor: None,
            cpu_div_floor: None,
            zipf: None,
            kind: Some((client, workload)),
            runtime: r.runtime,
        }
    }

    /// A made-up fan-out record for layout tests.
    #[cfg(test)]
    pub fn sample(
        workload: &'static str,
        client: &'static str,
        k: usize,
        delay_ms: u64,
        p50_us: f64,
        user_ns_per_cmd: f64,
        sys_ns_per_cmd: f64,
    ) -> Record {
        Record {
            workload,
            client,
            tls: false,
            k,
            delay_ms,
            p50_us,
            p99_us: p50_us * 1.5,
            p999_us: p50_us * 2.0,
            cmds_per_s: k as f64 * 1e6 / p50_us,
            cpu_ns_per_cmd: user_ns_per_cmd + sys_ns_per_cmd,
            user_ns_per_cmd,
            sys_ns_per_cmd,
            cpu_ms: 500.0,
            allocs_per_cmd: 0.0,
            errors: 0,
            writes_per_op: None,
            reads_per_op: None,
            syscalls_per_op: None,
            syscalls_note: None,
            turns_per_op: None,
            pin: None,
            p50_div_floor: None,
            cpu_div_floor: None,
            zipf: None,
            kind: None,
            runtime: None,
        }
    }

    /// Whether the user/system split rests on too few timer ticks to trust.
    pub fn rough_split(&self) -> bool {
        self.cpu_ms < ROUGH_SPLIT_MS
    }

    fn client_kind(&self) -> Option<ClientKind> {
        self.kind.map(|(c, _)| c)
    }

    /// Whether this is the floor's row.
    fn is_floor(&self) -> bool {
        !self.tls && self.client == ClientKind::Floor.name()
    }
}

/// Fills every record's `÷ floor` ratios from the floor's record of the same case
/// (workload, K, delay) in `records`; TLS rows are compared with the plain floor, the
/// least any client can cost on those nodes. Rows with no floor to compare keep `None`.
pub fn add_floor_ratios(records: &mut [Record]) {
    let floors: Vec<(&'static str, usize, u64, f64, f64)> = records
        .iter()
        .filter(|r| r.is_floor())
        .map(|r| (r.workload, r.k, r.delay_ms, r.p50_us, r.cpu_ns_per_cmd))
        .collect();
    for r in records {
        let floor = floors
            .iter()
            .find(|f| (f.0, f.1, f.2) == (r.workload, r.k, r.delay_ms));
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        r.p50_div_floor = floor.and_then(|f| div(r.p50_us, f.3));
        r.cpu_div_floor = floor.and_then(|f| div(r.cpu_ns_per_cmd, f.4));
    }
}

/// A `÷ floor` cell: the ratio, or `-` with no floor for the case.
fn floor_cell(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Below this much client CPU in a case's window, its user/system split is rough: the
/// kernel splits a thread's exact run time in the ratio of its timer-tick samples
/// (user or kernel mode at each tick), and 200 ms is 50 ticks at 250 Hz.
pub const ROUGH_SPLIT_MS: f64 = 200.0;

/// A user or system figure, `~` before it when the split is rough.
fn split_cell(r: &Record, v: f64) -> String {
    if r.rough_split() {
        format!("~{v:.0}")
    } else {
        format!("{v:.0}")
    }
}

/// Printed under the tables: what the CPU columns count and how to read the split; the
/// `~` note only when a row has one.
pub fn cpu_explained(records: &[Record]) -> String {
    let mut out = String::from(
        "
CPU ns/cmd = user ns/cmd + sys ns/cmd: the client's CPU time per command, its own thread
(getrusage RUSAGE_THREAD) plus any helper threads it started; the servers and the delay
proxy are not counted.
- user is the client's own code (encoding, routing, parsing, its runtime, allocations):
  the cost that tells clients apart.
- sys is the kernel working for the client, mostly loopback TCP: the thread that sends a
  segment also runs its delivery, the receiving end's TCP work included. It is paid per
  system call and segment, not per command, so it dominates at small K and is about the
  same for clients making as many system calls per pipeline (syscalls/op); a client that
  makes many more (about one per command) pays more.
",
    );
    if records.iter().any(|r| r.runtime.is_some()) {
        out.push_str(
            "
On the multi-thread workloads (tasks, tasks-fanout) the client's work is spread over
threads: CPU is every thread of the process but the main thread, the delay proxy and
other cases' threads (tokio's workers, shared's redis-worker threads, the case thread
waiting in block_on); allocs/cmd counts the allocations of every thread but the delay
proxy; syscalls/op is empty, as the perf counter counts one thread.
",
        );
    }
    if records.iter().any(Record::is_floor) {
        out.push_str(
            "
floor is not a client: the case's pipeline with every decision made once at setup (each
command's node from one CLUSTER SLOTS, each node's batch encoded as RESP bytes), then per
pipeline one send and one read per node on a raw io_uring, submitted by one io_uring_enter
that waits for the replies, which are counted, not decoded. It is the least any client can
cost on these nodes; p50 ÷ floor and CPU ÷ floor say how far each row is from it (the
floor of the same case in the same run; - where the floor did not run the case).
",
        );
    }
    if records.iter().any(Record::rough_split) {
        let _ = writeln!(
            out,
            "~ marks a rough split: under {ROUGH_SPLIT_MS:.0} ms of client CPU in the window. The kernel
splits a thread's exact run time by timer-tick samples (user or kernel mode at each tick),
and so few ticks give a rough ratio; a longer --duration firms it up."
        );
    }
    out
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The bench's answer in plain words, before the tables: for the fan-out pipeline (the
/// middle K run, no injected delay), the default client (`ring`) against the serial mode,
/// the fastest peer and the floor; and for tasks on a multi-thread runtime, `shared`
/// against the targets. `None` when the run has neither.
pub fn verdict(records: &[Record]) -> Option<String> {
    let parts: Vec<String> = [fanout_verdict(records), tasks_verdict(records)]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.concat())
}

/// A figure's target: at most `at_most` times the better peer's.
struct Target {
    name: &'static str,
    unit: &'static str,
    figure: fn(&Record) -> f64,
    at_most: f64,
}

/// The targets `shared` has on the `tasks` workload against the better peer: CPU per
/// command at most 0.7x, p50 and p99 no worse.
const TASKS_TARGETS: [Target; 3] = [
    Target {
        name: "CPU per command",
        unit: "ns",
        figure: |r| r.cpu_ns_per_cmd,
        at_most: 0.7,
    },
    Target {
        name: "p50",
        unit: "µs",
        figure: |r| r.p50_us,
        at_most: 1.0,
    },
    Target {
        name: "p99",
        unit: "µs",
        figure: |r| r.p99_us,
        at_most: 1.0,
    },
];

/// One line: on `tasks` (plain TCP) at the run's first delay, `shared` against the better
/// of redis-rs and fred on each figure (the lower CPU, the lower p50, the lower p99), each
/// ratio with its target, met or missed (judged on the ratio as printed). `None` without
/// a `shared` row or a peer's.
fn tasks_verdict(records: &[Record]) -> Option<String> {
    let tasks: Vec<&Record> = records
        .iter()
        .filter(|r| r.workload == "tasks" && !r.tls)
        .collect();
    let delay = tasks.iter().map(|r| r.delay_ms).min()?;
    let case: Vec<&Record> = tasks.into_iter().filter(|r| r.delay_ms == delay).collect();
    let ours = case.iter().copied().find(|r| r.client == "shared")?;
    let peers: Vec<&Record> = case
        .iter()
        .copied()
        .filter(|r| matches!(r.client, "redis-rs" | "fred"))
        .collect();
    let names: Vec<&str> = peers.iter().map(|r| r.client).collect();
    let figures: Vec<String> = TASKS_TARGETS
        .iter()
        .map(|t| {
            let figure = t.figure;
            let peer = peers
                .iter()
                .copied()
                .min_by(|a, b| figure(a).total_cmp(&figure(b)))?;
            let ratio = figure(ours) / figure(peer);
            let met = (ratio * 100.0).round() / 100.0 <= t.at_most;
            Some(format!(
                "{} {:.0} against {:.0} {} ({}), {ratio:.2}x (target ≤ {:.1}: {})",
                t.name,
                figure(ours),
                figure(peer),
                t.unit,
                peer.client,
                t.at_most,
                if met { "met" } else { "missed" }
            ))
        })
        .collect::<Option<_>>()?;
    let against = match names[..] {
        [one] => format!("against {one}, the only peer run"),
        _ => format!("against the better of {}", names.join(" and ")),
    };
    Some(format!(
        "Verdict ({} tokio tasks issuing GETs on a multi-thread runtime, {delay} ms injected \
         delay; `shared` is this library's SharedClient) {against}: {}\n",
        ours.k,
        figures.join("; ")
    ))
}

/// The fan-out part of [`verdict`].
fn fanout_verdict(records: &[Record]) -> Option<String> {
    let fanout: Vec<&Record> = records
        .iter()
        .filter(|r| r.workload == "fanout" && !r.tls)
        .collect();
    let delay = fanout.iter().map(|r| r.delay_ms).min()?;
    let mut ks: Vec<usize> = fanout
        .iter()
        .filter(|r| r.delay_ms == delay && r.client == "ring")
        .map(|r| r.k)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    let k = *ks.get(ks.len() / 2)?;
    let case: Vec<&Record> = fanout
        .into_iter()
        .filter(|r| r.delay_ms == delay && r.k == k)
        .collect();
    let row = |name: &str| case.iter().copied().find(|r| r.client == name);
    let ours = row("ring")?;
    let mut out = format!(
        "Verdict (fan-out pipeline of {k} commands, {delay} ms injected delay; `ring` is this \
         library's default async client):\n"
    );
    if let Some(serial) = row("serial") {
        out.push_str(&format!(
            "- every node at once against one node after another: p50 {:.0} against {:.0} µs, \
             {:.1}x faster than the serial mode\n",
            ours.p50_us,
            serial.p50_us,
            serial.p50_us / ours.p50_us
        ));
    }
    let fastest = case
        .iter()
        .copied()
        .filter(|r| matches!(r.client, "redis-rs" | "redis-rs-sync" | "fred"))
        .min_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
    if let Some(peer) = fastest {
        out.push_str(&format!(
            "- against the fastest peer here, {}: p50 {:.0} against {:.0} µs ({:.2}x), CPU per \
             command {:.0} against {:.0} ns ({:.2}x)\n",
            peer.client,
            ours.p50_us,
            peer.p50_us,
            ours.p50_us / peer.p50_us,
            ours.cpu_ns_per_cmd,
            peer.cpu_ns_per_cmd,
            ours.cpu_ns_per_cmd / peer.cpu_ns_per_cmd
        ));
    }
    if let Some(floor) = row("floor") {
        out.push_str(&format!(
            "- against the floor (the least any client can cost): p50 {:.2}x, CPU per command \
             {:.2}x\n",
            ours.p50_us / floor.p50_us,
            ours.cpu_ns_per_cmd / floor.cpu_ns_per_cmd
        ));
    }
    Some(out)
}

/// Prints one table per (delay, workload), then the fan-out ÷ single-node ratios. The
/// `zipf` rows have tables of their own (`zipf::tables`).
pub fn print_tables(records: &[Record]) -> String {
    let mut out = String::new();
    let mut groups: BTreeMap<(u64, &str), Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.zipf.is_none()) {
        groups.entry((r.delay_ms, r.workload)).or_default().push(r);
    }
    for ((delay, workload), rows) in &groups {
        let unit = if matches!(*workload, "concurrent" | "tasks") {
            "C"
        } else {
            "K"
        };
        let _ = writeln!(
            out,
            "\n## {workload}{}, injected delay {delay} ms",
            about_tasks(workload, rows)
        );
        let _ = writeln!(
            out,
            "| client | {unit} | p50 µs | p99 µs | p99.9 µs | cmds/s | CPU ns/cmd | user ns/cmd | sys ns/cmd | allocs/cmd | syscalls/op | writes/op | p50 ÷ best peer | p50 ÷ serial | CPU ÷ best peer | p50 ÷ floor | CPU ÷ floor |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let mut ks: Vec<usize> = rows.iter().map(|r| r.k).collect();
        ks.sort_unstable();
        ks.dedup();
        for k in ks {
            let at_k: Vec<&&Record> = rows.iter().filter(|r| r.k == k).collect();
            for r in &at_k {
                // Compared with rows over the same transport: TLS rows with TLS rows.
                let peers = || {
                    at_k.iter().filter(|p| {
                        p.tls == r.tls && p.client_kind().is_some_and(ClientKind::is_peer)
                    })
                };
                let best_p50 = peers().map(|r| r.p50_us).min_by(f64::total_cmp);
                let best_cpu = peers().map(|r| r.cpu_ns_per_cmd).min_by(f64::total_cmp);
                let serial = at_k
                    .iter()
                    .find(|s| s.tls == r.tls && s.client_kind() == Some(ClientKind::Serial))
                    .map(|r| r.p50_us);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                    r.client,
                    r.k,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.cmds_per_s,
                    r.cpu_ns_per_cmd,
                    split_cell(r, r.user_ns_per_cmd),
                    split_cell(r, r.sys_ns_per_cmd),
                    r.allocs_per_cmd,
                    r.syscalls_per_op.map_or("-".into(), |s| format!("{s:.1}")),
                    r.writes_per_op.map_or("-".into(), |w| format!("{w:.2}")),
                    ratio(r.p50_us, best_p50),
                    ratio(r.p50_us, serial),
                    ratio(r.cpu_ns_per_cmd, best_cpu),
                    floor_cell(r.p50_div_floor),
                    floor_cell(r.cpu_div_floor),
                );
                if r.errors > 0 {
                    let _ = writeln!(
                        out,
                        "|  ↳ {} failed operations | | | | | | | | | | | | | | | | |",
                        r.errors
                    );
                }
            }
        }
    }
    let has_pairs = records.iter().any(|f| {
        f.workload == "fanout"
            && records
                .iter()
                .any(|s| s.workload == "single-node" && s.client == f.client)
    });
    if !has_pairs {
        return out;
    }
    let _ = writeln!(
        out,
        "\n## fan-out ÷ single-node (p50): ≈1 when nodes run in parallel, ≈ number of nodes when serial"
    );
    let _ = writeln!(out, "| delay ms | client | K | ratio |");
    let _ = writeln!(out, "|---:|---|---:|---:|");
    for fan in records.iter().filter(|r| r.workload == "fanout") {
        if let Some(single) = records.iter().find(|s| {
            s.workload == "single-node"
                && s.client == fan.client
                && s.k == fan.k
                && s.delay_ms == fan.delay_ms
        }) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} |",
                fan.delay_ms,
                fan.client,
                fan.k,
                fan.p50_us / single.p50_us
            );
        }
    }
    out
}

/// What a multi-thread workload's table title says of how it ran: tasks, runtime threads,
/// `shared`'s workers. Empty for the other workloads.
fn about_tasks(workload: &str, rows: &[&Record]) -> String {
    let Some(runtime) = rows.iter().find_map(|r| r.runtime) else {
        return String::new();
    };
    let workers = rows
        .iter()
        .find_map(|r| r.runtime.and_then(|rt| rt.workers))
        .map_or(String::new(), |w| {
            format!(
                " (shared: {w} worker thread{})",
                if w == 1 { "" } else { "s" }
            )
        });
    let each = match workload {
        "tasks" => "a GET of its own key".to_string(),
        _ => format!("the fan-out pipeline of K commands (K up to {TASKS_FANOUT_MAX_K})"),
    };
    format!(
        ": {} tokio tasks on a multi-thread runtime of {} thread{}{workers}, each in a loop of {each}",
        runtime.tasks,
        runtime.threads,
        if runtime.threads == 1 { "" } else { "s" },
    )
}

/// For every row measured both over TLS and plain TCP (same servers, same run): the two
/// latencies and CPU costs side by side and TLS ÷ plain. `None` when no row has a pair.
pub fn tls_table(records: &[Record]) -> Option<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## TLS ÷ plain TCP: the same nodes through their TLS and their plain ports"
    );
    let _ = writeln!(
        out,
        "| workload | client | K | delay ms | p50 µs plain | p50 µs TLS | p99 µs plain | p99 µs TLS | CPU ns/cmd plain | CPU ns/cmd TLS | p50 TLS÷plain | p99 TLS÷plain | CPU TLS÷plain | p50 TLS ÷ floor | CPU TLS ÷ floor |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut pairs = 0;
    let mut plain: Vec<&Record> = records.iter().filter(|r| !r.tls).collect();
    // Fan-out first: it is the case the library is for.
    plain.sort_by_key(|r| (r.workload != "fanout", r.workload, r.delay_ms, r.k));
    for p in plain {
        let Some(t) = records.iter().find(|t| {
            t.tls
                && t.kind == p.kind
                && t.k == p.k
                && t.delay_ms == p.delay_ms
                && t.workload == p.workload
        }) else {
            continue;
        };
        pairs += 1;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            p.workload,
            p.client,
            p.k,
            p.delay_ms,
            p.p50_us,
            t.p50_us,
            p.p99_us,
            t.p99_us,
            p.cpu_ns_per_cmd,
            t.cpu_ns_per_cmd,
            ratio(t.p50_us, Some(p.p50_us)),
            ratio(t.p99_us, Some(p.p99_us)),
            ratio(t.cpu_ns_per_cmd, Some(p.cpu_ns_per_cmd)),
            floor_cell(t.p50_div_floor),
            floor_cell(t.cpu_div_floor),
        );
    }
    (pairs > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_reads_the_middle_k_without_delay_against_serial_the_fastest_peer_and_the_floor()
    {
        let mut records = Vec::new();
        for (delay, scale) in [(0, 1.0), (1, 10.0)] {
            for k in [16, 128, 1024] {
                let k_f = k as f64;
                records.push(case("ring", k, delay, 100.0 * scale + k_f, 700.0));
                records.push(case("serial", k, delay, 300.0 * scale + k_f, 1400.0));
                records.push(case("redis-rs", k, delay, 500.0 * scale + k_f, 3500.0));
                records.push(case("redis-rs-sync", k, delay, 200.0 * scale + k_f, 800.0));
                records.push(case("floor", k, delay, 160.0 * scale + k_f, 350.0));
            }
        }
        let verdict = verdict(&records).unwrap();
        assert!(
            verdict.contains("fan-out pipeline of 128 commands, 0 ms"),
            "{verdict}"
        );
        // 428 against 228 µs: the serial mode's p50 over ours.
        assert!(
            verdict.contains("p50 228 against 428 µs, 1.9x faster"),
            "{verdict}"
        );
        // The fastest peer is redis-rs-sync (328 µs), not redis-rs.
        assert!(
            verdict.contains("fastest peer here, redis-rs-sync: p50 228 against 328 µs (0.70x)"),
            "{verdict}"
        );
        assert!(
            verdict.contains("CPU per command 700 against 800 ns (0.88x)"),
            "{verdict}"
        );
        assert!(
            verdict.contains(
                "floor (the least any client can cost): p50 0.79x, CPU per command 2.00x"
            ),
            "{verdict}"
        );
        // Without a ring row there is nothing to say; without peers, the rest is said.
        let no_ring: Vec<Record> = records
            .iter()
            .filter(|r| r.client != "ring")
            .cloned()
            .collect();
        assert!(super::verdict(&no_ring).is_none());
        let alone: Vec<Record> = records
            .iter()
            .filter(|r| r.client == "ring")
            .cloned()
            .collect();
        let verdict = super::verdict(&alone).unwrap();
        assert!(
            !verdict.contains("peer") && !verdict.contains("serial") && !verdict.contains("floor"),
            "{verdict}"
        );
    }

    #[test]
    fn the_tasks_verdict_holds_shared_to_the_better_peer_on_each_figure_at_the_first_delay() {
        let tasks = |client, delay_ms, p50, p99, cpu| {
            let mut r = Record::sample("tasks", client, 64, delay_ms, p50, cpu, 0.0);
            r.p99_us = p99;
            r
        };
        let mut records = vec![
            // At 0 ms: fred has the lower CPU and p50, redis-rs the lower p99.
            tasks("shared", 0, 100.0, 300.0, 2600.0),
            tasks("redis-rs", 0, 120.0, 280.0, 5000.0),
            tasks("fred", 0, 90.0, 400.0, 4000.0),
            // A later delay, where every target is met, is not the one judged.
            tasks("shared", 1, 1000.0, 1000.0, 1000.0),
            tasks("redis-rs", 1, 2000.0, 2000.0, 5000.0),
            tasks("fred", 1, 2000.0, 2000.0, 5000.0),
            // Nor a TLS row.
            tasks("shared+tls", 0, 1.0, 1.0, 1.0),
        ];
        records[6].tls = true;
        let verdict = verdict(&records).unwrap();
        assert_eq!(verdict.lines().count(), 1, "{verdict}");
        assert!(
            verdict.contains("64 tokio tasks issuing GETs on a multi-thread runtime, 0 ms"),
            "{verdict}"
        );
        assert!(
            verdict.contains("against the better of redis-rs and fred"),
            "{verdict}"
        );
        assert!(
            verdict
                .contains("CPU per command 2600 against 4000 ns (fred), 0.65x (target ≤ 0.7: met)"),
            "{verdict}"
        );
        assert!(
            verdict.contains("p50 100 against 90 µs (fred), 1.11x (target ≤ 1.0: missed)"),
            "{verdict}"
        );
        assert!(
            verdict.contains("p99 300 against 280 µs (redis-rs), 1.07x (target ≤ 1.0: missed)"),
            "{verdict}"
        );
        // Judged as printed: 0.704 shows as 0.70, and meets 0.7.
        records[0].cpu_ns_per_cmd = 2816.0;
        assert!(
            super::verdict(&records)
                .unwrap()
                .contains("0.70x (target ≤ 0.7: met)"),
            "{verdict}"
        );
        // One peer: the line names it alone; none, or no shared row: no line.
        let one_peer: Vec<Record> = records
            .iter()
            .filter(|r| r.client != "fred")
            .cloned()
            .collect();
        let verdict = super::verdict(&one_peer).unwrap();
        assert!(
            verdict.contains("against redis-rs, the only peer run:"),
            "{verdict}"
        );
        let alone: Vec<Record> = records
            .iter()
            .filter(|r| r.client.starts_with("shared"))
            .cloned()
            .collect();
        assert!(super::verdict(&alone).is_none());
        let no_shared: Vec<Record> = records
            .iter()
            .filter(|r| !r.client.starts_with("shared"))
            .cloned()
            .collect();
        assert!(super::verdict(&no_shared).is_none());
        // Beside the fan-out verdict, after it.
        records.push(case("ring", 16, 0, 100.0, 700.0));
        let both = super::verdict(&records).unwrap();
        assert!(both.starts_with("Verdict (fan-out"), "{both}");
        assert!(both.contains("\nVerdict (64 tokio tasks"), "{both}");
    }

    fn case(client: &'static str, k: usize, delay_ms: u64, p50: f64, cpu: f64) -> Record {
        Record::sample("fanout", client, k, delay_ms, p50, cpu, 0.0)
    }

    #[test]
    fn floor_ratios_come_from_the_floor_of_the_same_case() {
        let mut records = vec![
            case("floor", 16, 0, 10.0, 50.0),
            case("uring", 16, 0, 25.0, 200.0),
            case("floor", 128, 0, 40.0, 20.0),
            case("uring", 128, 0, 60.0, 100.0),
            // No floor at this delay.
            case("uring", 16, 1, 2000.0, 300.0),
        ];
        add_floor_ratios(&mut records);
        let got: Vec<(Option<f64>, Option<f64>)> = records
            .iter()
            .map(|r| (r.p50_div_floor, r.cpu_div_floor))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1.0), Some(1.0)),
                (Some(2.5), Some(4.0)),
                (Some(1.0), Some(1.0)),
                (Some(1.5), Some(5.0)),
                (None, None),
            ]
        );
    }

    #[test]
    fn tls_rows_are_compared_with_the_plain_floor() {
        let mut tls = case("uring+tls", 16, 0, 30.0, 300.0);
        tls.tls = true;
        let mut records = vec![case("floor", 16, 0, 10.0, 100.0), tls];
        add_floor_ratios(&mut records);
        assert_eq!(records[1].p50_div_floor, Some(3.0));
        assert_eq!(records[1].cpu_div_floor, Some(3.0));
    }

    #[test]
    fn every_table_row_has_the_floor_columns_and_a_dash_without_a_floor() {
        let mut records = vec![
            case("floor", 16, 0, 10.0, 50.0),
            case("uring", 16, 0, 25.0, 200.0),
            case("uring", 16, 1, 2000.0, 300.0),
        ];
        add_floor_ratios(&mut records);
        let out = print_tables(&records);
        let header = out.lines().find(|l| l.starts_with("| client |")).unwrap();
        assert!(
            header.ends_with("| p50 ÷ floor | CPU ÷ floor |"),
            "{header}"
        );
        let columns = header.matches('|').count();
        for line in out.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(line.matches('|').count(), columns, "{line}");
        }
        let row = |prefix: &str| {
            out.lines()
                .filter(|l| l.starts_with(prefix))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert!(
            row("| floor | 16 |")[0].ends_with("| 1.00 | 1.00 |"),
            "{out}"
        );
        let uring = row("| uring | 16 |");
        assert!(uring[0].ends_with("| 2.50 | 4.00 |"), "{out}");
        assert!(uring[1].ends_with("| - | - |"), "{out}");
        let json = serde_json::to_string(&records).unwrap();
        assert_eq!(json.matches("\"p50_div_floor\":2.5").count(), 1, "{json}");
        // A row with no floor has no such fields, not a null.
        assert_eq!(json.matches("p50_div_floor").count(), 2, "{json}");
    }

    #[test]
    fn the_tls_table_has_the_floor_columns() {
        let mut tls = case("uring+tls", 16, 0, 30.0, 300.0);
        tls.tls = true;
        tls.kind = Some((ClientKind::Uring, Workload::Fanout));
        let mut plain = case("uring", 16, 0, 20.0, 200.0);
        plain.kind = tls.kind;
        let mut records = vec![case("floor", 16, 0, 10.0, 100.0), plain, tls];
        add_floor_ratios(&mut records);
        let table = tls_table(&records).unwrap();
        let header = table.lines().find(|l| l.starts_with("| workload")).unwrap();
        assert!(
            header.ends_with("| p50 TLS ÷ floor | CPU TLS ÷ floor |"),
            "{header}"
        );
        let row = table.lines().find(|l| l.starts_with("| fanout")).unwrap();
        assert!(row.ends_with("| 3.00 | 3.00 |"), "{row}");
    }
}
