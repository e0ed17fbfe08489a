//! Setting up an io_uring instance with the best features the kernel takes, and entering
//! it (submit and wait): shared by the blocking client's ring and the async client's owned
//! ring, so both probe and wait the same way.
//!
//! Each feature is probed, with a fallback:
//! - `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (6.1): completions are
//!   run only when this thread waits, with no interrupting task work. Refused (`EINVAL`):
//!   `COOP_TASKRUN`, then no flag.
//! - registered files (a sparse table, 5.19): no file lookup per operation. Refused: plain
//!   descriptors.
//! - `IOSQE_CQE_SKIP_SUCCESS` on sends (`IORING_FEAT_CQE_SKIP`, used only on kernels that
//!   also took `SINGLE_ISSUER`, i.e. 6.0+, where a short `MSG_WAITALL` send is finished
//!   by the kernel or reported as a failure): a successful send posts no completion.
//! - `IORING_ENTER_EXT_ARG` (5.11) and the operations each user names are required;
//!   without them the caller falls back (the poll backend, the epoll engine).

use std::io;

use io_uring::{IoUring, Probe};

/// The kernel features a ring uses (each one probed, with a fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingFeatures {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// Sockets are registered files.
    pub registered_files: bool,
    /// Successful sends post no completion (`IOSQE_CQE_SKIP_SUCCESS`).
    pub skip_send_completions: bool,
    /// A wait may gather several completions for a minimum time
    /// (`IORING_FEAT_MIN_TIMEOUT`, 6.12): see `engine::RingWait`.
    pub min_wait: bool,
}

fn einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// A ring of `entries` with the best setup flags the kernel takes, refused with a reason
/// unless it has a timed wait and every operation in `required` (code, name).
pub(crate) fn build(
    entries: u32,
    fixed_files: u32,
    required: &[(u8, &str)],
) -> io::Result<(IoUring, RingFeatures)> {
    let mut features = RingFeatures::default();
    // TASKRUN_FLAG marks pending completions in the shared ring, so a look for events
    // costs no system call when there are none.
    let ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(entries)
    {
        Ok(ring) => {
            features.defer_taskrun = true;
            ring
        }
        Err(e) if einval(&e) => match IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)
        {
            Ok(ring) => ring,
            Err(e) if einval(&e) => IoUring::new(entries)?,
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's io_uring has no timed wait (IORING_FEAT_EXT_ARG, 5.11)",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for &(code, name) in required {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring lacks {name}"),
            ));
        }
    }
    if fixed_files > 0 && ring.submitter().register_files_sparse(fixed_files).is_ok() {
        features.registered_files = true;
    }
    // Single issuer proves a 6.0+ kernel, where a short MSG_WAITALL send is retried by
    // the kernel or failed (and so posts a completion even with the skip flag).
    features.skip_send_completions =
        ring.params().is_feature_skip_cqe_on_success() && features.defer_taskrun;
    features.min_wait = ring.params().is_feature_min_timeout();
    Ok((ring, features))
}

/// One `io_uring_enter`: submits what is queued and waits until `want` completions are
/// in, or `timeout` passes, or (with `min_wait_us` > 0, `IORING_FEAT_MIN_TIMEOUT`) that
/// long has passed with at least one completion in. A wait cut short by its timeout or a
/// signal is no error: the caller looks at what completed.
pub(crate) fn enter(
    ring: &IoUring,
    want: usize,
    timeout: Option<std::time::Duration>,
    min_wait_us: u32,
) -> io::Result<()> {
    use io_uring::types::{SubmitArgs, Timespec};
    let ts = timeout.map(Timespec::from);
    let args = SubmitArgs::new().min_wait_usec(min_wait_us);
    let result = match &ts {
        Some(ts) => ring.submitter().submit_with_args(want, &args.timespec(ts)),
        None if min_wait_us > 0 => ring.submitter().submit_with_args(want, &args),
        None => ring.submitter().submit_and_wait(want),
    };
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
