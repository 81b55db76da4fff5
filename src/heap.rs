//! glibc heap policy for Apache children and daemons: few arenas, and freed memory given
//! back now and then. Request and response buffers come and go with the requests; glibc
//! otherwise keeps the peak of them mapped in every process, as free chunks among live ones.

use std::sync::atomic::{AtomicU64, Ordering};

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and each
/// keeps its freed memory: with dozens of request threads that is megabytes of RSS per
/// process for a few short-lived buffers each. Two arenas keep that small (as
/// MALLOC_ARENA_MAX=2 does for Python deployments). Called in each Apache child and daemon
/// before its request threads start.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes glibc's allocator settings.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// Counts requests and returns the heaps' free pages to the kernel every `every` of them:
/// `malloc_trim` walks the free chunks (tens of µs), so a per-request share well under 1 µs.
pub struct HeapTrimmer {
    requests: AtomicU64,
    every: u64,
}

impl HeapTrimmer {
    pub const fn new(every: u64) -> HeapTrimmer {
        HeapTrimmer {
            requests: AtomicU64::new(0),
            every,
        }
    }

    /// One more request; trims on every `every`-th. Returns whether it trimmed.
    pub fn request_done(&self) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if self.every == 0 || n % self.every != 0 {
            return false;
        }
        // SAFETY: malloc_trim only returns free pages of glibc's heaps to the kernel.
        unsafe { libc::malloc_trim(0) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_on_every_nth_request_only() {
        let trimmer = HeapTrimmer::new(3);
        let trimmed: Vec<bool> = (0..7).map(|_| trimmer.request_done()).collect();
        assert_eq!(trimmed, [false, false, true, false, false, true, false]);
        assert!(!HeapTrimmer::new(0).request_done());
    }
}
