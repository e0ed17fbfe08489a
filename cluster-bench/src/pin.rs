//! `--pin`: the client on one CPU, the servers it talks to on the others.
//!
//! Unpinned, the client, the three redis-servers and the delay proxy share every core,
//! so a client's latency includes waiting for a server's time slice and its CPU figure
//! includes the cache misses of the servers running on the same core. Pinned, the client
//! process (every thread it has or starts) runs on the first CPU it may use; the servers
//! the bench started, and the delay proxy that stands in for the network, run on the
//! rest. `sched_setaffinity` applies to one thread, so each is pinned by its thread id,
//! from `/proc/<pid>/task`; threads started later inherit their parent's CPUs.

use std::io;

/// Which CPUs each side gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The client's CPU.
    pub client: usize,
    /// The servers' (and the delay proxy's) CPUs.
    pub servers: Vec<usize>,
}

impl Plan {
    /// Splits the CPUs this process may run on: the first for the client, the rest for
    /// the servers. `Err` says why there is no split (one CPU: nothing to separate).
    pub fn from_cpus(cpus: &[usize]) -> Result<Plan, String> {
        match cpus {
            [] => Err("no CPU found in this process's affinity mask; not pinning".into()),
            [only] => Err(format!(
                "only one CPU ({only}) is available, so client and servers cannot be \
                 separated; not pinning"
            )),
            [client, servers @ ..] => Ok(Plan {
                client: *client,
                servers: servers.to_vec(),
            }),
        }
    }

    /// The plan for this machine.
    pub fn for_this_machine() -> Result<Plan, String> {
        let cpus = allowed_cpus().map_err(|e| format!("sched_getaffinity failed: {e}"))?;
        Plan::from_cpus(&cpus)
    }

    /// Short form for the records: `client 0, servers 1`.
    pub fn summary(&self) -> String {
        format!(
            "client {}, servers {}",
            self.client,
            cpu_list(&self.servers)
        )
    }
}

/// `1`, `1,2` or `1-7`.
pub fn cpu_list(cpus: &[usize]) -> String {
    match cpus {
        [first, .., last] if last - first + 1 == cpus.len() && cpus.len() > 2 => {
            format!("{first}-{last}")
        }
        _ => cpus
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size passed is the size of the set the kernel writes into.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set within CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins one thread (by thread id; 0 is the caller) to `cpus`.
pub fn pin_thread(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes within the set for cpu < CPU_SETSIZE, which
        // `allowed_cpus` guarantees for every CPU it returned.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the set is initialised and its size is the one given.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The thread ids of a process.
fn threads_of(pid: u32) -> io::Result<Vec<libc::pid_t>> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            threads.push(tid);
        }
    }
    Ok(threads)
}

/// Pins every thread of process `pid` to `cpus`; returns how many.
pub fn pin_process(pid: u32, cpus: &[usize]) -> Result<usize, String> {
    let threads = threads_of(pid).map_err(|e| format!("list threads of {pid}: {e}"))?;
    for &tid in &threads {
        pin_thread(tid, cpus).map_err(|e| format!("sched_setaffinity({tid}): {e}"))?;
    }
    Ok(threads.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_first_cpu_from_the_rest() {
        assert_eq!(
            Plan::from_cpus(&[0, 1]),
            Ok(Plan {
                client: 0,
                servers: vec![1]
            })
        );
        let wide = Plan::from_cpus(&[2, 3, 4, 5]).unwrap();
        assert_eq!(wide.summary(), "client 2, servers 3-5");
        let one = Plan::from_cpus(&[3]).unwrap_err();
        assert!(one.contains("only one CPU (3)"), "{one}");
        assert!(Plan::from_cpus(&[]).is_err());
    }

    #[test]
    fn cpu_lists_read_naturally() {
        assert_eq!(cpu_list(&[1]), "1");
        assert_eq!(cpu_list(&[1, 2]), "1,2");
        assert_eq!(cpu_list(&[1, 2, 3]), "1-3");
        assert_eq!(cpu_list(&[1, 3, 4]), "1,3,4");
    }

    #[test]
    fn pins_a_thread_of_its_own_and_reads_it_back() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_thread(0, &[last]).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
    }
}
