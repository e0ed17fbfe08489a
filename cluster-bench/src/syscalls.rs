//! Counts the system calls a thread makes, with a perf tracepoint counter on
//! `raw_syscalls:sys_enter` for the calling thread.
//!
//! The counter needs the tracepoint's id, which tracefs publishes, and permission to open
//! perf events. [`prepare`] runs once before measuring: it finds the id, mounting tracefs
//! at `/sys/kernel/tracing` first when it is not mounted and the bench runs as root (as
//! `mount -t tracefs nodev /sys/kernel/tracing` would; it stays mounted), and checks that
//! a counter opens. When something is missing it says exactly what, and that sentence
//! goes to stderr and into every record as `syscalls_note`, so an empty column is
//! explained where it is read.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::path::Path;

/// The start of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`, 64 bytes), which is all
/// a counting tracepoint needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit field: all zero means enabled, counting user and kernel, not inherited.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

/// Where tracefs is mounted on current systems.
const TRACEFS: &str = "/sys/kernel/tracing";
/// Where older systems reach it, through debugfs.
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";
/// The tracepoint's id file, below a tracefs root.
const SYS_ENTER_ID: &str = "events/raw_syscalls/sys_enter/id";

/// How system calls will be counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracepoint {
    /// The id of `raw_syscalls:sys_enter`, for `perf_event_open`.
    pub id: u64,
    /// Set when [`prepare`] mounted tracefs itself: a sentence saying so.
    pub mounted: Option<String>,
}

/// Finds the tracepoint (mounting tracefs if needed and allowed) and checks a counter
/// opens; `Err` is the reason the system-call column will be empty.
pub fn prepare() -> Result<Tracepoint, String> {
    let mut mounted = None;
    let id = match read_id() {
        Ok(id) => id,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "not root: {TRACEFS}/{SYS_ENTER_ID} is readable by root only ({e})"
            ))
        }
        Err(_) if is_tracefs_mounted() => return Err(missing_tracepoint()),
        Err(_) => {
            if !Path::new(TRACEFS).is_dir() {
                return Err(format!(
                    "tracefs is not mounted and {TRACEFS} does not exist (a kernel without \
                     CONFIG_TRACING?)"
                ));
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return Err(format!(
                    "not root: tracefs is not mounted at {TRACEFS} and only root may mount it \
                     (run as root, or mount -t tracefs nodev {TRACEFS} first)"
                ));
            }
            mount_tracefs().map_err(|e| {
                format!(
                    "mount -t tracefs nodev {TRACEFS} failed with {}",
                    errno_text(&e)
                )
            })?;
            mounted = Some(format!(
                "mounted tracefs at {TRACEFS} to count system calls (left mounted)"
            ));
            read_id().map_err(|_| missing_tracepoint())?
        }
    };
    // One counter opened and dropped: a refusal shows now, once, not in every case.
    SyscallCounter::for_this_thread(id)?;
    Ok(Tracepoint { id, mounted })
}

fn missing_tracepoint() -> String {
    format!(
        "tracefs is mounted but the tracepoint raw_syscalls:sys_enter is missing \
         ({TRACEFS}/{SYS_ENTER_ID}; a kernel without CONFIG_FTRACE_SYSCALLS?)"
    )
}

/// The tracepoint's id from tracefs or its debugfs path. The error is the first root's,
/// which tells "missing" from "not allowed".
fn read_id() -> io::Result<u64> {
    let mut first = None;
    for root in [TRACEFS, DEBUGFS_TRACING] {
        match std::fs::read_to_string(format!("{root}/{SYS_ENTER_ID}")) {
            Ok(text) => {
                return text
                    .trim()
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
}

/// Whether a tracefs is mounted at [`TRACEFS`], from `/proc/self/mounts`.
fn is_tracefs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|mounts| is_mounted_in(&mounts))
        .unwrap_or(false)
}

fn is_mounted_in(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(TRACEFS) && kind == Some("tracefs")
    })
}

/// `mount -t tracefs nodev /sys/kernel/tracing`, by the system call.
fn mount_tracefs() -> io::Result<()> {
    const SOURCE: &CStr = c"nodev";
    const TARGET: &CStr = c"/sys/kernel/tracing";
    const KIND: &CStr = c"tracefs";
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, and a
    // null `data` is allowed (no mount options).
    let rc = unsafe {
        libc::mount(
            SOURCE.as_ptr(),
            TARGET.as_ptr(),
            KIND.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `errno 1 (EPERM: Operation not permitted)`.
fn errno_text(e: &io::Error) -> String {
    let errno = e.raw_os_error().unwrap_or(0);
    let text = e.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text);
    format!("errno {errno} ({}: {text})", errno_name(errno))
}

/// The symbolic name of the errno values a mount or perf_event_open commonly fails with.
fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOENT => "ENOENT",
        libc::ENODEV => "ENODEV",
        libc::EROFS => "EROFS",
        libc::EBUSY => "EBUSY",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        _ => "?",
    }
}

/// An open counter for the calling thread.
pub struct SyscallCounter {
    file: File,
}

impl SyscallCounter {
    /// Opens a counter for the calling thread, or says why the system refused it.
    pub fn for_this_thread(tracepoint: u64) -> Result<SyscallCounter, String> {
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: tracepoint,
            ..PerfEventAttr::default()
        };
        // SAFETY: `attr` is a valid, fully initialised perf_event_attr prefix whose `size`
        // tells the kernel how much of it to read; pid 0 / cpu -1 mean "this thread, any
        // CPU"; group -1 and flags 0 ask for a plain counter. The kernel does not keep the
        // pointer after the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                0,
                -1,
                -1,
                0,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map_or("?".into(), |s| s.trim().to_string());
            return Err(format!(
                "perf_event_open on the tracepoint failed with {} \
                 (kernel.perf_event_paranoid = {paranoid}; root or CAP_PERFMON is needed \
                 above -1, and a seccomp profile may forbid the call)",
                errno_text(&e)
            ));
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd as i32) };
        Ok(SyscallCounter { file })
    }

    /// System calls made by the thread since the counter was opened.
    /// This thread's system calls so far, counted on `tracepoint` (or why they cannot
    /// be): each call of the closure reads the counter.
    pub fn reader_for_this_thread(
        tracepoint: &Result<u64, String>,
    ) -> impl FnMut() -> Result<u64, String> {
        let mut counter = tracepoint.clone().and_then(SyscallCounter::for_this_thread);
        move || match &mut counter {
            Ok(c) => c
                .read()
                .map_err(|e| format!("reading the perf counter failed: {e}")),
            Err(why) => Err(why.clone()),
        }
    }

    pub fn read(&mut self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        self.file.read_exact(&mut buf)?;
        Ok(u64::from_ne_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_reads_as_name_and_text() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno_text(&e), "errno 1 (EPERM: Operation not permitted)");
    }

    #[test]
    fn finds_tracefs_in_the_mount_table() {
        let mounts = "proc /proc proc rw 0 0\nnodev /sys/kernel/tracing tracefs rw,relatime 0 0\n";
        assert!(is_mounted_in(mounts));
        assert!(!is_mounted_in("proc /proc proc rw 0 0\n"));
        // debugfs at its own place is not tracefs at /sys/kernel/tracing.
        assert!(!is_mounted_in("debugfs /sys/kernel/debug debugfs rw 0 0\n"));
    }

    #[test]
    fn counts_this_threads_calls_where_the_tracepoint_is_readable() {
        // Not `prepare`: a unit test does not mount file systems.
        let Ok(id) = read_id() else {
            return;
        };
        match SyscallCounter::for_this_thread(id) {
            Ok(mut counter) => {
                let a = counter.read().unwrap();
                for _ in 0..10 {
                    // SAFETY: getppid has no preconditions.
                    unsafe { libc::getppid() };
                }
                let b = counter.read().unwrap();
                assert!(b - a >= 10, "{a} -> {b}");
            }
            Err(why) => assert!(why.contains("perf_event_open"), "{why}"),
        }
    }
}
