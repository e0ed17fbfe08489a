//! Counts heap allocations, per thread and over the process, to report allocations per
//! command in steady state.
//!
//! A single-thread case reads its own thread's count ([`thread_allocations`]). A
//! multi-thread case (the `tasks` workloads) has its client's work spread over tokio's
//! workers and the client's own threads, so it reads the process's count
//! ([`process_allocations`]): every thread but those that called [`exclude_this_thread`]
//! (the delay proxy).
//!
//! The process count must not cost a shared cache line per allocation (the threads of a
//! multi-thread case would bounce it, and that would be charged to the client measured).
//! So each thread has a shard of its own, a cache line only it writes (a plain load and
//! store, no locked instruction), and the process count is the sum of the shards. Shards
//! are never reused: a thread that ends leaves its count behind, which keeps the sum
//! monotonic. Past [`SHARDS`] threads in the process's life, the rest share one atomic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Threads with a shard of their own; the bench starts a few per case.
const SHARDS: usize = 4096;

/// One thread's count, alone on its cache line.
#[repr(align(64))]
struct Shard(AtomicU64);

static SHARD_COUNTS: [Shard; SHARDS] = [const { Shard(AtomicU64::new(0)) }; SHARDS];
/// The count of threads past the last shard.
static OVERFLOW: AtomicU64 = AtomicU64::new(0);
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// A thread's shard before its first allocation.
const UNASSIGNED: usize = usize::MAX;
/// A thread left out of the process count.
const EXCLUDED: usize = usize::MAX - 1;

thread_local! {
    // Const-initialised and without a destructor, so reading them inside the allocator
    // never allocates or re-enters.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static SHARD: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// Adds one allocation to this thread's count and its shard.
fn count() {
    ALLOCATIONS.with(|c| c.set(c.get() + 1));
    SHARD.with(|s| {
        let mut shard = s.get();
        if shard == UNASSIGNED {
            shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            s.set(shard);
        }
        if let Some(Shard(n)) = SHARD_COUNTS.get(shard) {
            // Only this thread writes its shard: no read-modify-write needed.
            n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else if shard != EXCLUDED {
            OVERFLOW.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// The system allocator, counting allocations made by each thread.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the GlobalAlloc
// contract; the only addition is counter bumps, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by the calling thread so far.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Allocations made by every thread of the process so far, but those excluded. Another
/// thread's latest allocations may be missing, unless the caller has synchronised with
/// it (joined it, or awaited a task it ran).
pub fn process_allocations() -> u64 {
    let shards: u64 = SHARD_COUNTS
        .iter()
        .map(|Shard(n)| n.load(Ordering::Relaxed))
        .sum();
    shards + OVERFLOW.load(Ordering::Relaxed)
}

/// Leaves the calling thread's allocations out of [`process_allocations`] from now on
/// (those it made before stay in). For the bench's own threads that run beside a client,
/// the delay proxy.
pub fn exclude_this_thread() {
    SHARD.with(|s| s.set(EXCLUDED));
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test binary has the counting allocator too (it is set in `main.rs`), and the
    // harness's threads allocate beside these tests: each check reads one thread's own
    // counters, or is a lower bound.

    /// This thread's shard, assigned if it had none.
    fn own_shard() -> usize {
        count();
        SHARD.with(|s| s.get())
    }

    #[test]
    fn a_thread_counts_in_its_own_shard_and_the_process_sum() {
        let before = process_allocations();
        let counted = std::thread::spawn(|| {
            let shard = own_shard();
            let (shard_0, thread_0) = (
                SHARD_COUNTS[shard].0.load(Ordering::Relaxed),
                thread_allocations(),
            );
            for _ in 0..1000 {
                count();
            }
            (
                SHARD_COUNTS[shard].0.load(Ordering::Relaxed) - shard_0,
                thread_allocations() - thread_0,
            )
        })
        .join()
        .unwrap();
        assert_eq!(counted, (1000, 1000));
        assert!(process_allocations() - before >= 1000);
    }

    #[test]
    fn an_excluded_thread_counts_for_itself_only() {
        std::thread::spawn(|| {
            let shard = own_shard();
            exclude_this_thread();
            let (shard_0, thread_0, overflow_0) = (
                SHARD_COUNTS[shard].0.load(Ordering::Relaxed),
                thread_allocations(),
                OVERFLOW.load(Ordering::Relaxed),
            );
            for _ in 0..1000 {
                count();
            }
            assert_eq!(SHARD_COUNTS[shard].0.load(Ordering::Relaxed), shard_0);
            assert_eq!(thread_allocations() - thread_0, 1000);
            // No thread of this test binary has reached the overflow.
            assert_eq!(OVERFLOW.load(Ordering::Relaxed), overflow_0);
        })
        .join()
        .unwrap();
    }
}
