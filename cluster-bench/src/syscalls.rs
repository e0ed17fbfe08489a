//! Counts the system calls a thread makes, with a perf tracepoint counter on
//! `raw_syscalls:sys_enter` for the calling thread. Needs tracefs and permission to open
//! perf events (root, or `kernel.perf_event_paranoid` low enough); without them the count
//! is simply not reported.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

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

/// An open counter for the calling thread.
pub struct SyscallCounter {
    file: File,
}

impl SyscallCounter {
    /// Opens a counter for the calling thread, if the system allows it.
    pub fn for_this_thread() -> Option<SyscallCounter> {
        let id: u64 = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .find_map(|root| {
                std::fs::read_to_string(format!("{root}/events/raw_syscalls/sys_enter/id")).ok()
            })?
            .trim()
            .parse()
            .ok()?;
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id,
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
            return None;
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd as i32) };
        Some(SyscallCounter { file })
    }

    /// System calls made by the thread since the counter was opened.
    pub fn read(&mut self) -> Option<u64> {
        let mut buf = [0u8; 8];
        self.file.read_exact(&mut buf).ok()?;
        Some(u64::from_ne_bytes(buf))
    }
}
