//! The one thread of a daemon process that waits for the Python GIL on the monitor's behalf,
//! so the thread that watches the process (signals, draining, the parent, deadlock-timeout)
//! never does: a request that holds the GIL in C code cannot stop the process from being
//! replaced.
//!
//! - Heartbeat (deadlock-timeout): about once a second the thread takes the GIL and records
//!   when it got it; the monitor compares that with the clock, without the GIL.
//! - Jobs (request-timeout: Python stacks, raising `mod_wsgi.RequestTimeout`): the monitor
//!   hands one over and waits a bounded time for its result. A job still waiting for the GIL
//!   then stays queued and later ones are refused, so the queue never grows.
//! - `stop` ends the thread before Python is finalised; it never touches Python after that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// How often the heartbeat takes the GIL.
const BEAT_EVERY: Duration = Duration::from_secs(1);

pub struct GilThread {
    jobs: Mutex<Option<Sender<Job>>>,
    /// A job was handed over and has not finished.
    busy: Arc<AtomicBool>,
    /// Milliseconds from `epoch` to the last heartbeat (0: no heartbeat).
    beat: Arc<AtomicU64>,
    epoch: Instant,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl GilThread {
    /// Starts the thread. `beat`, when given, takes and releases the GIL; it runs about once
    /// a second between jobs.
    pub fn start(beat: Option<fn()>) -> std::io::Result<GilThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let epoch = Instant::now();
        let last_beat = Arc::new(AtomicU64::new(0));
        let stamp = move |at: &AtomicU64| {
            let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            at.store(ms.max(1), Ordering::SeqCst);
        };
        if beat.is_some() {
            // Counts as taken now: a GIL held from the start is lost after the limit too.
            stamp(&last_beat);
        }
        let beat_store = Arc::clone(&last_beat);
        let handle = std::thread::Builder::new()
            .name("rwsgi-gil".into())
            .spawn(move || {
                let mut next_beat = Instant::now();
                loop {
                    if let Some(beat) = beat {
                        if Instant::now() >= next_beat {
                            beat();
                            stamp(&beat_store);
                            next_beat = Instant::now() + BEAT_EVERY;
                        }
                    }
                    let wait = next_beat
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(10));
                    match rx.recv_timeout(wait) {
                        Ok(job) => job(),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(GilThread {
            jobs: Mutex::new(Some(tx)),
            busy: Arc::new(AtomicBool::new(false)),
            beat: last_beat,
            epoch,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Runs `job` on the thread and waits up to `limit` for its result. None when it did not
    /// finish in time (it still runs later, once it can), when an earlier job has not
    /// finished (this one is not queued), or after `stop`.
    pub fn run_job<T: Send + 'static>(
        &self,
        limit: Duration,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let busy = Arc::clone(&self.busy);
        let boxed: Job = Box::new(move || {
            let _ = tx.send(job());
            busy.store(false, Ordering::SeqCst);
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|j| j.send(boxed).is_ok()),
            Err(_) => false,
        };
        if !sent {
            self.busy.store(false, Ordering::SeqCst);
            return None;
        }
        rx.recv_timeout(limit).ok()
    }

    /// How long since the heartbeat last took the GIL; None without a heartbeat.
    pub fn since_beat(&self) -> Option<Duration> {
        let ms = self.beat.load(Ordering::SeqCst);
        (ms > 0).then(|| {
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(ms))
        })
    }

    /// Ends the thread, waiting up to `limit`; true when it has ended (it will not touch
    /// Python again). False when it is still waiting for the GIL.
    pub fn stop(&self, limit: Duration) -> bool {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let Ok(mut handle) = self.handle.lock() else {
            return false;
        };
        let Some(h) = handle.take() else {
            return true;
        };
        let deadline = Instant::now() + limit;
        while !h.is_finished() {
            if Instant::now() >= deadline {
                *handle = Some(h);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static BEATS: AtomicUsize = AtomicUsize::new(0);
    fn count_beat() {
        BEATS.fetch_add(1, Ordering::SeqCst);
    }

    static STUCK: AtomicBool = AtomicBool::new(false);
    fn stuck_beat() {
        while STUCK.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_jobs_and_beats_and_stops_promptly() {
        let t = GilThread::start(Some(count_beat)).unwrap();
        assert_eq!(t.run_job(Duration::from_secs(5), || 6 * 7), Some(42));
        let deadline = Instant::now() + Duration::from_secs(5);
        while BEATS.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no heartbeat");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(t.since_beat().unwrap() < Duration::from_secs(5));
        // Stopping does not wait out the heartbeat's second.
        let started = Instant::now();
        assert!(t.stop(Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_millis(500));
        let beats = BEATS.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(BEATS.load(Ordering::SeqCst), beats, "beat after stop");
        assert_eq!(t.run_job(Duration::from_secs(1), || 1), None);
    }

    #[test]
    fn a_job_that_cannot_run_never_blocks_the_caller_past_its_limit() {
        let t = GilThread::start(None).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let started = Instant::now();
        let first = t.run_job(Duration::from_millis(200), move || {
            release_rx.recv().is_ok()
        });
        assert_eq!(first, None);
        assert!(started.elapsed() < Duration::from_secs(2));
        // While it is stuck, later jobs are refused at once rather than queued.
        let started = Instant::now();
        assert_eq!(t.run_job(Duration::from_secs(5), || 1), None);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(
            !t.stop(Duration::from_millis(100)),
            "stopped while a job runs"
        );
        release_tx.send(()).unwrap();
        assert!(t.stop(Duration::from_secs(5)));
    }

    #[test]
    fn a_stuck_heartbeat_ages() {
        STUCK.store(true, Ordering::SeqCst);
        let t = GilThread::start(Some(stuck_beat)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(t.since_beat().unwrap() >= Duration::from_millis(250));
        assert!(!t.stop(Duration::from_millis(50)));
        STUCK.store(false, Ordering::SeqCst);
        assert!(t.stop(Duration::from_secs(5)));
    }
}
