//! The metrics table every daemon process writes and Apache children read for the
//! `rwsgi-metrics` endpoint (L2, std only: it works on a slice of atomics; where that slice
//! lives — a shared mapping made by the Apache parent — is the caller's business).
//!
//! Why shared counters and not a request on the daemon socket: a group's daemons share one
//! listening socket, so a connection reaches whichever process takes it (and a process whose
//! threads are all busy stops watching it). A table that each process updates with a few
//! relaxed atomic adds per request can be read for every process at any time, while all
//! threads are busy, with no Python and no thread in the daemon involved.
//!
//! Layout, in 64-bit words: one block per group (restart counts by reason, the counters of
//! its processes that have ended, a sequence number), then `records_per_group` records per
//! group, one per live daemon process (owner, pid, start time, threads, busy threads and its
//! counters). Only the daemon manager allocates and frees records (single-threaded); a
//! daemon writes only its own record's counters; readers never write.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the histogram buckets; one more bucket holds the rest (+Inf).
pub const BUCKET_BOUNDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BUCKETS: usize = BUCKET_BOUNDS.len() + 1;

/// Why the manager replaced a daemon process: the `reason` label of
/// `rwsgi_process_restarts_total`.
pub const RESTART_REASONS: [&str; 10] = [
    "reload",
    "maximum-requests",
    "maximum-rss",
    "restart-interval",
    "request-timeout",
    "signal",
    "killed",
    "exited",
    "planned",
    "other",
];

/// Index in [`RESTART_REASONS`] of a daemon's own reason for asking to be replaced (the text
/// of its Replace control message, see `daemon::serving_daemon` and `daemon::worker`).
pub fn classify_replace_reason(reason: &str) -> usize {
    let label = if reason.contains("touch-to-reload") || reason.contains("asked for a reload") {
        "reload"
    } else if reason.starts_with("maximum-requests") {
        "maximum-requests"
    } else if reason.starts_with("maximum-rss") {
        "maximum-rss"
    } else if reason.starts_with("restart-interval") {
        "restart-interval"
    } else if reason.starts_with("request-timeout") {
        "request-timeout"
    } else if reason.starts_with("received SIG") {
        "signal"
    } else {
        "other"
    };
    reason_index(label)
}

/// Index of a label of [`RESTART_REASONS`] ("other" for an unknown one).
pub fn reason_index(label: &str) -> usize {
    RESTART_REASONS
        .iter()
        .position(|r| *r == label)
        .unwrap_or(RESTART_REASONS.len() - 1)
}

// Counters (in a record, and a group's ended-process totals).
const C_STATUS: usize = 0; // 5 words: 1xx..5xx
const C_DURATION: usize = C_STATUS + 5; // BUCKETS words, then sum (µs), then count
const C_QUEUE: usize = C_DURATION + BUCKETS + 2;
const COUNTERS: usize = C_QUEUE + BUCKETS + 2;

// A record.
const R_OWNER: usize = 0; // 0 = free, else group index + 1
const R_PID: usize = 1;
const R_START_US: usize = 2;
const R_THREADS: usize = 3;
const R_BUSY: usize = 4;
const R_WEBSOCKETS: usize = 5; // open WebSockets
const R_COUNTERS: usize = 6;
const RECORD: usize = R_COUNTERS + COUNTERS;

// A group block.
const G_SEQ: usize = 0;
const G_RESTARTS: usize = 1;
const G_ENDED: usize = G_RESTARTS + RESTART_REASONS.len();
const GROUP: usize = G_ENDED + COUNTERS;

/// Records per group for `processes` processes: a slot may briefly hold its serving
/// process, one waiting for its replacement and ones still draining.
pub fn records_for(processes: usize) -> usize {
    processes.max(1) * 3 + 2
}

/// Words a table needs for groups of these process counts.
pub fn words_for(processes: &[usize]) -> usize {
    processes
        .iter()
        .map(|p| GROUP + records_for(*p) * RECORD)
        .sum()
}

/// A view of the table. `Copy`: it is only a slice reference plus the layout.
#[derive(Clone, Copy)]
pub struct MetricsTable {
    words: &'static [AtomicU64],
    /// Start word of each group's block, and its record count.
    groups: &'static [(usize, usize)],
}

impl std::fmt::Debug for MetricsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetricsTable({} groups)", self.groups.len())
    }
}

/// One finished request, as the table counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestSample {
    /// The response status; None (no response) counts as 5xx.
    pub status: Option<u16>,
    /// From Apache's request start to the response handed back, seconds.
    pub duration: f64,
    /// From the Apache child sending the request to the daemon taking it, seconds.
    pub queue_wait: Option<f64>,
}

fn bucket_of(seconds: f64) -> usize {
    BUCKET_BOUNDS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(BUCKETS - 1)
}

fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(code @ 100..=599) => usize::from(code / 100 - 1),
        _ => 4,
    }
}

/// A daemon's own record: what its request threads update.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    words: &'static [AtomicU64],
}

impl Record {
    /// A request began on one of this process' threads.
    pub fn began(&self) {
        self.words[R_BUSY].fetch_add(1, Ordering::Relaxed);
    }

    /// A request that [`Record::began`] ended without being served here (it is resent to
    /// another process, which counts it).
    pub fn abandoned(&self) {
        self.words[R_BUSY].fetch_sub(1, Ordering::Relaxed);
    }

    /// A WebSocket was accepted (`opened`) or ended on one of this process' threads.
    pub fn websocket(&self, opened: bool) {
        if opened {
            self.words[R_WEBSOCKETS].fetch_add(1, Ordering::Relaxed);
        } else {
            self.words[R_WEBSOCKETS].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A request that [`Record::began`] ended.
    pub fn ended(&self, sample: &RequestSample) {
        let c = &self.words[R_COUNTERS..];
        c[C_STATUS + status_class(sample.status)].fetch_add(1, Ordering::Relaxed);
        add_observation(&c[C_DURATION..], sample.duration);
        if let Some(wait) = sample.queue_wait {
            add_observation(&c[C_QUEUE..], wait);
        }
        self.words[R_BUSY].fetch_sub(1, Ordering::Relaxed);
    }
}

fn add_observation(hist: &[AtomicU64], seconds: f64) {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    hist[bucket_of(seconds)].fetch_add(1, Ordering::Relaxed);
    hist[BUCKETS].fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    hist[BUCKETS + 1].fetch_add(1, Ordering::Relaxed);
}

/// Counted requests: by status class, and two histograms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub status: [u64; 5],
    pub duration: Histogram,
    pub queue_wait: Histogram,
}

/// Non-cumulative bucket counts (the last is +Inf), sum of observations and their count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Counts {
    fn read(c: &[AtomicU64]) -> Counts {
        let hist = |h: &[AtomicU64]| {
            let mut buckets = [0; BUCKETS];
            for (b, w) in buckets.iter_mut().zip(h) {
                *b = w.load(Ordering::Relaxed);
            }
            Histogram {
                buckets,
                sum_seconds: h[BUCKETS].load(Ordering::Relaxed) as f64 / 1e6,
                count: h[BUCKETS + 1].load(Ordering::Relaxed),
            }
        };
        let mut status = [0; 5];
        for (s, w) in status.iter_mut().zip(&c[C_STATUS..]) {
            *s = w.load(Ordering::Relaxed);
        }
        Counts {
            status,
            duration: hist(&c[C_DURATION..]),
            queue_wait: hist(&c[C_QUEUE..]),
        }
    }

    fn add(&mut self, other: &Counts) {
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        for (mine, theirs) in [
            (&mut self.duration, &other.duration),
            (&mut self.queue_wait, &other.queue_wait),
        ] {
            for (a, b) in mine.buckets.iter_mut().zip(theirs.buckets) {
                *a += b;
            }
            mine.sum_seconds += theirs.sum_seconds;
            mine.count += theirs.count;
        }
    }
}

/// A live daemon process as the table shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSnapshot {
    pub pid: u32,
    /// When the manager forked it, seconds since the Unix epoch.
    pub start_time: f64,
    pub threads: u64,
    pub busy: u64,
    /// WebSockets open in it.
    pub websockets: u64,
}

/// One group at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupSnapshot {
    /// Every request its processes served, live or ended.
    pub counts: Counts,
    pub processes: Vec<ProcessSnapshot>,
    pub restarts: [u64; RESTART_REASONS.len()],
}

impl MetricsTable {
    /// A table over `words`, laid out for groups with these process counts.
    ///
    /// # Panics
    /// If `words` is shorter than [`words_for`]`(processes)`.
    pub fn new(words: &'static [AtomicU64], processes: &[usize]) -> MetricsTable {
        assert!(
            words.len() >= words_for(processes),
            "metrics table too small"
        );
        let mut at = 0;
        let groups: Vec<(usize, usize)> = processes
            .iter()
            .map(|p| {
                let start = at;
                at += GROUP + records_for(*p) * RECORD;
                (start, records_for(*p))
            })
            .collect();
        MetricsTable {
            words,
            groups: Box::leak(groups.into_boxed_slice()),
        }
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn group_block(&self, g: usize) -> &'static [AtomicU64] {
        let (start, _) = self.groups[g];
        &self.words[start..start + GROUP]
    }

    fn record_words(&self, g: usize, r: usize) -> &'static [AtomicU64] {
        let (start, _) = self.groups[g];
        let at = start + GROUP + r * RECORD;
        &self.words[at..at + RECORD]
    }

    /// The record `index` of group `g`, for the daemon that owns it.
    pub fn record(&self, g: usize, index: usize) -> Option<Record> {
        let (_, count) = *self.groups.get(g)?;
        (index < count).then(|| Record {
            words: self.record_words(g, index),
        })
    }

    /// Manager: takes a free record of group `g` for a new process; None when all are taken.
    pub fn allocate(&self, g: usize, threads: u64, start_us: u64) -> Option<usize> {
        let (_, count) = *self.groups.get(g)?;
        let index =
            (0..count).find(|r| self.record_words(g, *r)[R_OWNER].load(Ordering::Acquire) == 0)?;
        let w = self.record_words(g, index);
        w[R_PID].store(0, Ordering::Relaxed);
        w[R_START_US].store(start_us, Ordering::Relaxed);
        w[R_THREADS].store(threads, Ordering::Relaxed);
        w[R_BUSY].store(0, Ordering::Relaxed);
        w[R_WEBSOCKETS].store(0, Ordering::Relaxed);
        w[R_OWNER].store(g as u64 + 1, Ordering::Release);
        Some(index)
    }

    /// Manager: the forked process' pid.
    pub fn set_pid(&self, g: usize, index: usize, pid: u32) {
        if let Some(r) = self.record(g, index) {
            r.words[R_PID].store(u64::from(pid), Ordering::Release);
        }
    }

    /// Manager: the record's process is gone: its counts move to the group's ended totals,
    /// and the record is free again. Readers see either the record or the totals, never both
    /// or neither (the group's sequence number is odd meanwhile).
    pub fn release(&self, g: usize, index: usize) {
        if self.record(g, index).is_none() {
            return;
        }
        let block = self.group_block(g);
        let w = self.record_words(g, index);
        block[G_SEQ].fetch_add(1, Ordering::SeqCst);
        for i in 0..COUNTERS {
            let v = w[R_COUNTERS + i].swap(0, Ordering::SeqCst);
            block[G_ENDED + i].fetch_add(v, Ordering::SeqCst);
        }
        w[R_OWNER].store(0, Ordering::SeqCst);
        block[G_SEQ].fetch_add(1, Ordering::SeqCst);
    }

    /// Manager: a restart of group `g` for reason `reason` (an index in [`RESTART_REASONS`]).
    pub fn count_restart(&self, g: usize, reason: usize) {
        if g < self.groups.len() && reason < RESTART_REASONS.len() {
            self.group_block(g)[G_RESTARTS + reason].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Manager (a new one, after its predecessor died): every record still owned belongs to a
    /// process that is gone or going; count them as ended.
    pub fn release_all(&self) {
        for g in 0..self.groups.len() {
            for r in 0..self.groups[g].1 {
                if self.record_words(g, r)[R_OWNER].load(Ordering::Acquire) != 0 {
                    self.release(g, r);
                }
            }
        }
    }

    /// Reader: group `g` now. Retries while the manager moves an ended process' counts.
    pub fn snapshot(&self, g: usize) -> GroupSnapshot {
        let block = self.group_block(g);
        let mut snap = GroupSnapshot::default();
        for _ in 0..1000 {
            let before = block[G_SEQ].load(Ordering::SeqCst);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            snap = self.read_group(g);
            if block[G_SEQ].load(Ordering::SeqCst) == before {
                break;
            }
        }
        snap
    }

    fn read_group(&self, g: usize) -> GroupSnapshot {
        let block = self.group_block(g);
        let mut counts = Counts::read(&block[G_ENDED..]);
        let mut processes = Vec::new();
        for r in 0..self.groups[g].1 {
            let w = self.record_words(g, r);
            if w[R_OWNER].load(Ordering::SeqCst) != g as u64 + 1 {
                continue;
            }
            counts.add(&Counts::read(&w[R_COUNTERS..]));
            let pid = w[R_PID].load(Ordering::Acquire);
            if pid == 0 {
                continue; // being forked
            }
            processes.push(ProcessSnapshot {
                pid: u32::try_from(pid).unwrap_or(0),
                start_time: w[R_START_US].load(Ordering::Relaxed) as f64 / 1e6,
                threads: w[R_THREADS].load(Ordering::Relaxed),
                // A request ending between a reader's loads can leave the count one high
                // for an instant; never report more busy threads than there are.
                busy: w[R_BUSY]
                    .load(Ordering::Relaxed)
                    .min(w[R_THREADS].load(Ordering::Relaxed)),
                // Never negative (a close read before its open), never above the threads.
                websockets: (w[R_WEBSOCKETS].load(Ordering::Relaxed) as i64)
                    .clamp(0, w[R_THREADS].load(Ordering::Relaxed) as i64)
                    as u64,
            });
        }
        let mut restarts = [0; RESTART_REASONS.len()];
        for (i, r) in restarts.iter_mut().enumerate() {
            *r = block[G_RESTARTS + i].load(Ordering::Relaxed);
        }
        GroupSnapshot {
            counts,
            processes,
            restarts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(processes: &[usize]) -> MetricsTable {
        let words: Vec<AtomicU64> = (0..words_for(processes))
            .map(|_| AtomicU64::new(0))
            .collect();
        MetricsTable::new(Box::leak(words.into_boxed_slice()), processes)
    }

    #[test]
    fn requests_are_counted_per_group_and_survive_their_process() {
        let t = table(&[2, 1]);
        let a = t.allocate(0, 5, 1_000_000).unwrap();
        t.set_pid(0, a, 42);
        let rec = t.record(0, a).unwrap();
        for status in [Some(200), Some(404), None, Some(302), Some(200)] {
            rec.began();
            rec.ended(&RequestSample {
                status,
                duration: 0.003,
                queue_wait: Some(0.0001),
            });
        }
        rec.began(); // one still running
        rec.websocket(true);
        rec.websocket(true);
        rec.websocket(false);
        let s = t.snapshot(0);
        assert_eq!(s.counts.status, [0, 2, 1, 1, 1]);
        assert_eq!(s.counts.duration.count, 5);
        assert_eq!(s.counts.duration.buckets[bucket_of(0.003)], 5);
        assert!((s.counts.duration.sum_seconds - 0.015).abs() < 1e-6);
        assert_eq!(s.counts.queue_wait.buckets[0], 5);
        assert_eq!(
            s.processes,
            vec![ProcessSnapshot {
                pid: 42,
                start_time: 1.0,
                threads: 5,
                busy: 1,
                websockets: 1
            }]
        );
        assert_eq!(t.snapshot(1), GroupSnapshot::default());
        t.release(0, a);
        let after = t.snapshot(0);
        assert!(after.processes.is_empty());
        assert_eq!(after.counts, s.counts);
        // The record is reused, starting from zero.
        let b = t.allocate(0, 5, 2_000_000).unwrap();
        assert_eq!(b, a);
        t.set_pid(0, b, 43);
        assert_eq!(t.snapshot(0).counts, s.counts);
        assert_eq!(t.snapshot(0).processes[0].busy, 0);
    }

    #[test]
    fn records_run_out_instead_of_overlapping() {
        let t = table(&[1]);
        let taken: Vec<usize> = (0..records_for(1))
            .filter_map(|_| t.allocate(0, 1, 1))
            .collect();
        assert_eq!(taken.len(), records_for(1));
        assert_eq!(t.allocate(0, 1, 1), None);
        assert_eq!(t.allocate(7, 1, 1), None);
        assert!(t.record(0, records_for(1)).is_none());
        t.release_all();
        assert!(t.allocate(0, 1, 1).is_some());
    }

    #[test]
    fn restarts_are_counted_by_reason() {
        let t = table(&[1]);
        t.count_restart(
            0,
            classify_replace_reason("the WSGI script changed (touch-to-reload)"),
        );
        t.count_restart(0, classify_replace_reason("maximum-requests=5 reached"));
        t.count_restart(0, reason_index("killed"));
        t.count_restart(0, 99);
        let s = t.snapshot(0);
        assert_eq!(s.restarts[reason_index("reload")], 1);
        assert_eq!(s.restarts[reason_index("maximum-requests")], 1);
        assert_eq!(s.restarts[reason_index("killed")], 1);
        assert_eq!(s.restarts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn replace_reasons_map_to_labels() {
        for (text, label) in [
            ("the WSGI script changed (touch-to-reload)", "reload"),
            (
                "the WSGI script asked for a reload (__mtime__, reload_required)",
                "reload",
            ),
            ("maximum-requests=100 reached", "maximum-requests"),
            (
                "maximum-rss=100 MB exceeded: resident set is 120.0 MB",
                "maximum-rss",
            ),
            ("restart-interval=60 s reached", "restart-interval"),
            ("request-timeout=5 s exceeded", "request-timeout"),
            ("received SIGINT", "signal"),
            ("something new", "other"),
        ] {
            assert_eq!(
                RESTART_REASONS[classify_replace_reason(text)],
                label,
                "{text}"
            );
        }
    }

    #[test]
    fn bucket_bounds_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.001), 0);
        assert_eq!(bucket_of(0.0011), 1);
        assert_eq!(bucket_of(60.0), 14);
        assert_eq!(bucket_of(61.0), 15);
    }
}
