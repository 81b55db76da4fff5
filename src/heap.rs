//! glibc heap policy for Apache children and daemons: few arenas, and freed memory given
//! back now and then. Request and response buffers come and go with the requests; glibc
//! otherwise keeps the peak of them mapped in every process, as free chunks among live ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core), and each
/// keeps its freed memory: with dozens of request threads that is megabytes of RSS per
/// process for a few short-lived buffers each. Two arenas keep that small (as
/// MALLOC_ARENA_MAX=2 does for Python deployments). Called in each Apache child and daemon
/// before its request threads start.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes glibc's allocator settings.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// How often a busy process trims its heap at least (see [`HeapTrimmer`]).
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Counts requests and returns the heaps' free pages to the kernel every `every` of them, and
/// at the first request `interval` or more after the last trim: `malloc_trim` walks every
/// free chunk, too slow to run per request, so its cost is shared by `every` requests. The
/// time rule matters after a burst of large bodies followed by fewer, smaller requests:
/// their freed buffers would otherwise stay resident until the `every`-th request.
pub struct HeapTrimmer {
    requests: AtomicU64,
    every: u64,
    /// Milliseconds on the coarse monotonic clock at the last trim (0: none yet).
    last_trim_ms: AtomicU64,
    interval_ms: u64,
}

impl HeapTrimmer {
    pub const fn new(every: u64, interval: Duration) -> HeapTrimmer {
        HeapTrimmer {
            requests: AtomicU64::new(0),
            every,
            last_trim_ms: AtomicU64::new(0),
            interval_ms: interval.as_millis() as u64,
        }
    }

    /// One more request; trims on every `every`-th, or when `interval` has passed since the
    /// last trim (a process's first request only starts the clock). Returns whether it
    /// trimmed.
    pub fn request_done(&self) -> bool {
        self.request_done_at(now_ms())
    }

    /// [`HeapTrimmer::request_done`] at `now` (milliseconds on a monotonic clock, never 0).
    fn request_done_at(&self, now: u64) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_trim_ms.load(Ordering::Relaxed);
        let by_count = self.every != 0 && n % self.every == 0;
        let by_time = self.interval_ms != 0 && last != 0 && now >= last + self.interval_ms;
        if last == 0 || by_count || by_time {
            // One thread wins the trim (the others see the new stamp).
            let won = self
                .last_trim_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if won && (by_count || by_time) {
                // SAFETY: malloc_trim only returns free pages of glibc's heaps to the kernel.
                unsafe { libc::malloc_trim(0) };
                return true;
            }
        }
        false
    }
}

/// The coarse monotonic clock in milliseconds (a vDSO read, no system call).
fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_on_every_nth_request() {
        let trimmer = HeapTrimmer::new(3, Duration::ZERO);
        let trimmed: Vec<bool> = (0..7).map(|_| trimmer.request_done()).collect();
        assert_eq!(trimmed, [false, false, true, false, false, true, false]);
        assert!(!HeapTrimmer::new(0, Duration::ZERO).request_done());
    }

    #[test]
    fn trims_once_an_interval_has_passed_since_the_last_trim() {
        let trimmer = HeapTrimmer::new(0, Duration::from_millis(100));
        // The first request starts the clock; the next ones come too soon.
        assert!(!trimmer.request_done_at(1_000));
        assert!(!trimmer.request_done_at(1_099));
        assert!(trimmer.request_done_at(1_100));
        assert!(
            !trimmer.request_done_at(1_150),
            "the trim restarted the clock"
        );
        assert!(!trimmer.request_done_at(1_199));
        assert!(trimmer.request_done_at(1_250));
    }
}
