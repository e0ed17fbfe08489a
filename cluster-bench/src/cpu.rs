//! CPU time of the client under test, split into user and system time.
//!
//! Every client runs on its own case thread (see `clients::run_case`), and almost all of
//! its work happens there: our engines, redis-rs and fred all run on a current-thread
//! runtime on that thread. That thread is measured precisely with
//! `getrusage(RUSAGE_THREAD)` (the kernel's exact run time, split into user and system
//! time in the ratio of its tick samples).
//!
//! A client may still start helper threads: tokio's blocking pool (fred resolves host
//! names there), io_uring's `iou-wrk-*` kernel workers. Their time is the client's too,
//! so it is added, read from `/proc/self/task/<tid>/stat` (in clock ticks, 10 ms here)
//! for every thread of the process except the main thread, the delay proxy and the case
//! threads themselves. A helper that starts and exits inside the window is missed; in
//! practice they sit idle while a case is measured.
//!
//! On the multi-thread workloads (`tasks.rs`) the case thread only waits in `block_on`,
//! and the client's work is on such helpers: tokio's worker threads and `SharedClient`'s
//! `redis-worker-*` threads, all counted the same way (each runtime is shut down at the
//! end of its case, so none lingers into the next).
//!
//! So `user + system` is the figure `cpu_ns_per_cmd` always reported, by construction.

use std::ops::Sub;

/// User and system CPU time, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time running the process's own code.
    pub user_ns: u64,
    /// Time in the kernel on the process's behalf (system calls, and on loopback the
    /// TCP work of both ends of the connection that the sending thread runs).
    pub sys_ns: u64,
}

impl CpuTime {
    /// User plus system.
    pub fn total_ns(self) -> u64 {
        self.user_ns + self.sys_ns
    }
}

impl Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
        }
    }
}

/// The calling thread's CPU time so far (`getrusage(RUSAGE_THREAD)`).
pub fn this_thread() -> CpuTime {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer we give it; the struct is
    // zero-initialised, so reading it is defined even if the call failed.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    CpuTime {
        user_ns: ns(usage.ru_utime),
        sys_ns: ns(usage.ru_stime),
    }
}

/// The name of the bench's own threads that are not the client's: the delay proxy.
pub const PROXY_THREAD: &str = "delay-proxy";

/// The prefix of case threads' names (each measures itself).
pub const CASE_THREAD_PREFIX: &str = "bench-";

/// CPU time of the threads that may be a client's helpers, by thread id.
#[derive(Debug, Default)]
pub struct Helpers {
    threads: Vec<(u32, CpuTime)>,
}

impl Helpers {
    /// Reads every thread of this process but the main thread, the delay proxy and the
    /// case threads.
    pub fn snapshot() -> Helpers {
        let main = std::process::id();
        let mut threads = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return Helpers::default();
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if tid == main {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, time)) = parse_stat(&stat) {
                if name != PROXY_THREAD && !name.starts_with(CASE_THREAD_PREFIX) {
                    threads.push((tid, time));
                }
            }
        }
        Helpers { threads }
    }

    /// CPU the helpers used since `earlier`: threads in both snapshots by their
    /// difference, threads born since by all of theirs.
    pub fn since(&self, earlier: &Helpers) -> CpuTime {
        let mut sum = CpuTime::default();
        for &(tid, now) in &self.threads {
            let before = earlier
                .threads
                .iter()
                .find(|(t, _)| *t == tid)
                .map_or(CpuTime::default(), |&(_, b)| b);
            let d = now - before;
            sum.user_ns += d.user_ns;
            sum.sys_ns += d.sys_ns;
        }
        sum
    }
}

/// Clock ticks per second for `/proc` times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The thread name and its utime/stime from a `/proc/.../stat` line. The name is in
/// parentheses and may hold spaces or parentheses itself, so fields are counted from
/// the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, CpuTime)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // After ")": state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ns_per_tick = 1_000_000_000 / ticks_per_second();
    Some((
        name,
        CpuTime {
            user_ns: utime * ns_per_tick,
            sys_ns: stime * ns_per_tick,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_past_an_awkward_name() {
        let line = "4242 (tokio (rt) worker) S 1 2 3 0 -1 4194368 10 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        let (name, t) = parse_stat(line).unwrap();
        assert_eq!(name, "tokio (rt) worker");
        let tick = 1_000_000_000 / ticks_per_second();
        assert_eq!(
            t,
            CpuTime {
                user_ns: 7 * tick,
                sys_ns: 3 * tick
            }
        );
    }

    #[test]
    fn helpers_count_differences_and_newcomers() {
        let t = |u, s| CpuTime {
            user_ns: u,
            sys_ns: s,
        };
        let before = Helpers {
            threads: vec![(1, t(10, 20)), (2, t(5, 5))],
        };
        let after = Helpers {
            threads: vec![(1, t(15, 30)), (3, t(1, 2))],
        };
        assert_eq!(after.since(&before), t(6, 12));
    }

    #[test]
    fn this_thread_moves_forward() {
        let a = this_thread();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = this_thread();
        assert!(b.total_ns() > a.total_ns());
    }

    #[test]
    fn this_process_threads_are_readable() {
        // The test harness's threads are "helpers" here; the snapshot must at least
        // parse them without panicking.
        let s = Helpers::snapshot();
        let _ = s.since(&Helpers::default());
    }
}
