//! mod_wsgi 6's internal metrics: `start_recording_metrics()`, `request_metrics()` (a window
//! drained by each call) and `process_metrics()` (cumulative since the process started).
//!
//! Cost on the request path: with recording off, a request only moves a few atomics (its
//! thread slot's busy mark and request count, the process's active and total counts). Once
//! recording is on, each finished request also takes the window's mutex briefly to fold its
//! phases into the histograms (mod_wsgi does the same under its accumulator lock).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::RequestTimes;
use super::request::{IoTotals, lock};
use crate::util::now_us;

/// Entries of each phase histogram: 16 octaves from 1 ms to 65536 ms in 4 linear
/// sub-buckets each, and one for 65536 ms and more.
pub(crate) const BUCKETS: usize = 65;

/// The histogram entry of a duration in seconds, as mod_wsgi: below 1 ms is entry 0; from
/// 1 ms the octave is the power of two the milliseconds fall in, split linearly in four
/// (a boundary value lands in the higher sub-bucket); 65536 ms and more is the last entry.
pub(crate) fn bucket_index(seconds: f64) -> usize {
    let ms = seconds * 1000.0;
    if ms.is_nan() || ms < 1.0 {
        return 0;
    }
    if ms >= 65536.0 {
        return BUCKETS - 1;
    }
    // ms in [2^octave, 2^(octave+1)).
    let octave = ms.log2().floor() as usize;
    let base = (1u64 << octave) as f64;
    let sub = (((ms / base) - 1.0) * 4.0) as usize;
    octave * 4 + sub.min(3)
}

/// µs since the epoch → seconds.
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One phase's aggregate over a window: total, extremes and histogram.
#[derive(Clone)]
struct Phase {
    total: f64,
    count: u64,
    min_us: u64,
    max_us: u64,
    buckets: [u64; BUCKETS],
}

impl Default for Phase {
    fn default() -> Phase {
        Phase {
            total: 0.0,
            count: 0,
            min_us: u64::MAX,
            max_us: 0,
            buckets: [0; BUCKETS],
        }
    }
}

impl Phase {
    fn record(&mut self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let us = (seconds * 1e6) as u64;
        self.total += seconds;
        self.count += 1;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        self.buckets[bucket_index(seconds)] += 1;
    }

    fn extremes(&self) -> (Option<u64>, Option<u64>) {
        if self.count == 0 {
            (None, None)
        } else {
            (Some(self.min_us), Some(self.max_us))
        }
    }
}

/// What one finished request contributes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Finished {
    /// 0-based worker slot.
    pub slot: usize,
    /// When the host took the request (the slot became busy) and gave it back, µs since
    /// the epoch.
    pub began_us: u64,
    pub ended_us: u64,
    pub times: RequestTimes,
    pub application_start_us: u64,
    pub application_finish_us: u64,
    /// None: start_response was never called (counted as 5xx, as mod_wsgi).
    pub status: Option<u16>,
    pub io: IoTotals,
    /// CPU seconds (user, system) the request's thread used.
    pub cpu: (f64, f64),
}

struct Window {
    start_us: u64,
    cpu_at_start: (f64, f64),
    request_count: u64,
    server: Phase,
    queue: Phase,
    daemon: Phase,
    application: Phase,
    request: Phase,
    input_read: Phase,
    output_write: Phase,
    gil_wait: Phase,
    gil_wait_count: u64,
    gil_wait_min_us: u64,
    gil_wait_max_us: u64,
    input_bytes: u64,
    input_reads: u64,
    output_bytes: u64,
    output_writes: u64,
    status: [u64; 5],
    slot_completed: Vec<u64>,
    /// Busy time of requests completed in the window, clipped at its start, µs.
    slot_busy_us: Vec<u64>,
    slot_cpu: Vec<f64>,
    slot_max_duration: Vec<f64>,
}

impl Window {
    fn new(slots: usize, start_us: u64) -> Window {
        Window {
            start_us,
            cpu_at_start: process_cpu(),
            request_count: 0,
            server: Phase::default(),
            queue: Phase::default(),
            daemon: Phase::default(),
            application: Phase::default(),
            request: Phase::default(),
            input_read: Phase::default(),
            output_write: Phase::default(),
            gil_wait: Phase::default(),
            gil_wait_count: 0,
            gil_wait_min_us: u64::MAX,
            gil_wait_max_us: 0,
            input_bytes: 0,
            input_reads: 0,
            output_bytes: 0,
            output_writes: 0,
            status: [0; 5],
            slot_completed: vec![0; slots],
            slot_busy_us: vec![0; slots],
            slot_cpu: vec![0.0; slots],
            slot_max_duration: vec![0.0; slots],
        }
    }

    fn add(&mut self, f: &Finished) {
        let t = &f.times;
        self.request_count += 1;
        if t.request_start_us > 0 {
            self.server
                .record(secs(f.ended_us.saturating_sub(t.request_start_us)));
            self.request
                .record(secs(f.ended_us.saturating_sub(t.request_start_us)));
        }
        if t.queue_start_us > 0 && t.daemon_start_us > 0 {
            self.queue
                .record(secs(t.daemon_start_us.saturating_sub(t.queue_start_us)));
        }
        if t.daemon_start_us > 0 {
            self.daemon
                .record(secs(f.ended_us.saturating_sub(t.daemon_start_us)));
        }
        if f.application_start_us > 0 {
            self.application.record(secs(
                f.application_finish_us
                    .saturating_sub(f.application_start_us),
            ));
        }
        let io = &f.io;
        self.input_read.record(io.input_time);
        self.output_write.record(io.output_time);
        self.gil_wait.record(io.gil_wait_time);
        self.gil_wait_count += io.gil_waits;
        if io.gil_waits > 0 {
            self.gil_wait_min_us = self.gil_wait_min_us.min(io.gil_wait_min_us);
            self.gil_wait_max_us = self.gil_wait_max_us.max(io.gil_wait_max_us);
        }
        self.input_bytes += io.input_bytes;
        self.input_reads += io.input_reads;
        self.output_bytes += io.output_bytes;
        self.output_writes += io.output_writes;
        self.status[status_class(f.status)] += 1;
        if f.slot < self.slot_completed.len() {
            let busy = f.ended_us.saturating_sub(f.began_us.max(self.start_us));
            self.slot_completed[f.slot] += 1;
            self.slot_busy_us[f.slot] += busy;
            self.slot_cpu[f.slot] += f.cpu.0 + f.cpu.1;
            let duration = secs(f.ended_us.saturating_sub(f.began_us));
            if duration > self.slot_max_duration[f.slot] {
                self.slot_max_duration[f.slot] = duration;
            }
        }
    }
}

/// 0..5 for 1xx..5xx; no status, or one outside 100..599, is 5xx.
fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(code @ 100..=599) => usize::from(code / 100 - 1),
        _ => 4,
    }
}

/// One worker thread's live state.
struct Slot {
    /// When its current request began, µs since the epoch; 0 = idle.
    busy_since_us: AtomicU64,
    requests: AtomicU64,
}

struct Metrics {
    recording: AtomicBool,
    window: Mutex<Option<Window>>,
    slots: Vec<Slot>,
    request_count: AtomicU64,
    busy_us: AtomicU64,
    active: AtomicU64,
    restart_time_us: u64,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
/// Threads that served a request so far; each took the next number as its slot.
static THREADS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Sets up the process's metrics; `threads` is the process's worker-thread ceiling.
pub(crate) fn init(threads: usize) {
    let _ = METRICS.get_or_init(|| Metrics {
        recording: AtomicBool::new(false),
        window: Mutex::new(None),
        slots: (0..threads.max(1))
            .map(|_| Slot {
                busy_since_us: AtomicU64::new(0),
                requests: AtomicU64::new(0),
            })
            .collect(),
        request_count: AtomicU64::new(0),
        busy_us: AtomicU64::new(0),
        active: AtomicU64::new(0),
        restart_time_us: now_us(),
    });
}

/// This thread's 0-based slot: the order in which threads first served a request (also
/// `environ['mod_wsgi.thread_id']`).
pub(crate) fn thread_slot() -> usize {
    use std::cell::Cell;
    thread_local! {
        static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SLOT.with(|slot| match slot.get() {
        Some(n) => n,
        None => {
            let n = THREADS_STARTED.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(n));
            n
        }
    })
}

pub(crate) fn recording() -> bool {
    METRICS
        .get()
        .is_some_and(|m| m.recording.load(Ordering::Relaxed))
}

/// Marks the slot busy; returns the instant (µs since the epoch) the request began.
pub(crate) fn request_began(slot: usize) -> u64 {
    let began = now_us();
    if let Some(m) = METRICS.get() {
        m.active.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = m.slots.get(slot) {
            s.busy_since_us.store(began, Ordering::Relaxed);
        }
    }
    began
}

/// Counts a request that ended; `finished` carries the details when recording is on.
pub(crate) fn request_ended(
    slot: usize,
    began_us: u64,
    ended_us: u64,
    finished: Option<&Finished>,
) {
    let Some(m) = METRICS.get() else {
        return;
    };
    if let Some(f) = finished
        && let Some(window) = lock(&m.window).as_mut()
    {
        window.add(f);
    }
    if let Some(s) = m.slots.get(slot) {
        s.busy_since_us.store(0, Ordering::Relaxed);
        s.requests.fetch_add(1, Ordering::Relaxed);
    }
    m.busy_us
        .fetch_add(ended_us.saturating_sub(began_us), Ordering::Relaxed);
    m.request_count.fetch_add(1, Ordering::Relaxed);
    m.active.fetch_sub(1, Ordering::Relaxed);
}

/// What the host tells an observer outside Python about each request it handles (the
/// daemon's shared metrics table), whether or not recording is on.
#[derive(Clone, Copy, Debug)]
pub struct RequestSummary {
    /// The status sent (500 for the error page of a failed app); None if no response.
    pub status: Option<u16>,
    pub times: RequestTimes,
    /// When the host took the request and gave it back, µs since the epoch.
    pub began_us: u64,
    pub ended_us: u64,
    /// The script asked for a reload before the request ran: Apache resends it to the
    /// replacement process, where it is counted.
    pub resent: bool,
}

/// Told of every request the host handles; must be cheap (atomics), it runs on the
/// request path.
pub trait RequestObserver: Send + Sync {
    fn began(&self);
    fn ended(&self, summary: &RequestSummary);
    /// An ASGI application accepted a WebSocket (`opened`), or an accepted one ended.
    fn websocket(&self, opened: bool) {
        let _ = opened;
    }
}

static OBSERVER: OnceLock<Box<dyn RequestObserver>> = OnceLock::new();

/// Installs the process's observer (once; a second call is ignored).
pub fn set_request_observer(observer: Box<dyn RequestObserver>) {
    let _ = OBSERVER.set(observer);
}

pub(crate) fn observer() -> Option<&'static dyn RequestObserver> {
    OBSERVER.get().map(|o| o.as_ref())
}

/// Apache's scoreboard as `server_metrics()` shows it; read by the function the
/// composition root installs (the python layer knows nothing of Apache).
#[derive(Clone, Debug, Default)]
pub struct ServerScoreboard {
    pub server_limit: i64,
    pub thread_limit: i64,
    pub running_generation: i64,
    /// Seconds since the Unix epoch.
    pub restart_time: f64,
    pub processes: Vec<ScoreboardProcess>,
}

#[derive(Clone, Debug, Default)]
pub struct ScoreboardProcess {
    pub pid: i64,
    pub generation: i64,
    pub quiescing: bool,
    pub workers: Vec<ScoreboardWorker>,
}

#[derive(Clone, Debug, Default)]
pub struct ScoreboardWorker {
    pub thread_num: i64,
    pub generation: i64,
    /// mod_status's letter: "_" ready, "W" writing, "." dead ...
    pub status: &'static str,
    pub access_count: u64,
    pub bytes_served: u64,
    /// Seconds since the Unix epoch.
    pub start_time: f64,
    pub stop_time: f64,
    pub last_used: f64,
    /// Latin-1 bytes, as mod_wsgi decodes them.
    pub client: Vec<u8>,
    pub request: Vec<u8>,
    pub vhost: Vec<u8>,
}

static SCOREBOARD_READER: OnceLock<fn() -> Option<ServerScoreboard>> = OnceLock::new();

/// Installs the scoreboard reader (once, in the Apache parent before it forks).
pub fn set_scoreboard_reader(reader: fn() -> Option<ServerScoreboard>) {
    let _ = SCOREBOARD_READER.set(reader);
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

/// `server_metrics()`: the scoreboard when this process' gate is on (`WSGIServerMetrics On`
/// in embedded mode, `server-metrics=on` in a daemon group) and a scoreboard is there;
/// None otherwise, as mod_wsgi.
pub(crate) fn server_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    if !super::settings::process_info().server_metrics {
        return Ok(None);
    }
    let Some(board) = SCOREBOARD_READER.get().and_then(|read| py.detach(read)) else {
        return Ok(None);
    };
    let now = secs(now_us());
    let d = PyDict::new(py);
    d.set_item("server_limit", board.server_limit)?;
    d.set_item("thread_limit", board.thread_limit)?;
    d.set_item("running_generation", board.running_generation)?;
    d.set_item("restart_time", board.restart_time)?;
    d.set_item("current_time", now)?;
    d.set_item("running_time", (now - board.restart_time).max(0.0) as i64)?;
    let processes = PyList::empty(py);
    for (num, p) in board.processes.iter().enumerate() {
        let pd = PyDict::new(py);
        pd.set_item("process_num", num)?;
        pd.set_item("pid", p.pid)?;
        pd.set_item("generation", p.generation)?;
        pd.set_item("quiescing", p.quiescing)?;
        let workers = PyList::empty(py);
        for w in &p.workers {
            let wd = PyDict::new(py);
            wd.set_item("thread_num", w.thread_num)?;
            wd.set_item("generation", w.generation)?;
            wd.set_item("status", w.status)?;
            wd.set_item("access_count", w.access_count)?;
            wd.set_item("bytes_served", w.bytes_served)?;
            wd.set_item("start_time", w.start_time)?;
            wd.set_item("stop_time", w.stop_time)?;
            wd.set_item("last_used", w.last_used)?;
            wd.set_item("client", latin1(&w.client))?;
            wd.set_item("request", latin1(&w.request))?;
            wd.set_item("vhost", latin1(&w.vhost))?;
            workers.append(wd)?;
        }
        pd.set_item("workers", workers)?;
        processes.append(pd)?;
    }
    d.set_item("processes", processes)?;
    Ok(Some(d))
}

/// `start_recording_metrics()`: idempotent; the first window starts now. While telemetry
/// runs, the reporter owns the window and this does nothing.
pub(crate) fn start_recording() {
    if !reporter_owns_window() {
        start_recording_window();
    }
}

/// Set once, before the process serves, when its telemetry reporter owns the window.
static REPORTER_OWNS_WINDOW: OnceLock<()> = OnceLock::new();

fn reporter_owns_window() -> bool {
    REPORTER_OWNS_WINDOW.get().is_some()
}

/// Gives the window to the telemetry reporter (`telemetry_tick`): recording starts, and
/// `request_metrics()` and `process_metrics()` answer None from now on.
pub(crate) fn give_window_to_reporter() {
    let _ = REPORTER_OWNS_WINDOW.set(());
    start_recording_window();
}

/// Starts recording the window (for `request_metrics()` or the telemetry reporter).
fn start_recording_window() {
    let Some(m) = METRICS.get() else {
        return;
    };
    let mut window = lock(&m.window);
    if window.is_none() {
        *window = Some(Window::new(m.slots.len(), now_us()));
        m.recording.store(true, Ordering::Relaxed);
    }
}

/// CPU seconds (user, system) of the whole process.
fn process_cpu() -> (f64, f64) {
    rusage_cpu(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// CPU seconds (user, system) of the calling thread.
pub(crate) fn thread_cpu() -> (f64, f64) {
    rusage_cpu(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

fn rusage_cpu(who: nix::sys::resource::UsageWho) -> (f64, f64) {
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    nix::sys::resource::getrusage(who)
        .map_or((0.0, 0.0), |u| (tv(u.user_time()), tv(u.system_time())))
}

/// (current, peak) resident set size in bytes.
fn memory() -> (u64, u64) {
    let rss = crate::util::resident_set_bytes(None).unwrap_or(0);
    let max_rss = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map_or(0, |u| u.max_rss() as u64 * 1024);
    (rss, max_rss)
}

/// `request_metrics()`: the window since the previous call (or since recording started),
/// then a fresh window. None until recording started.
pub(crate) fn request_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let Some(m) = METRICS.get().filter(|_| !reporter_owns_window()) else {
        return Ok(None);
    };
    let stop_us = now_us();
    let Some(w) = py.detach(|| {
        let mut window = lock(&m.window);
        let old = window.take()?;
        *window = Some(Window::new(m.slots.len(), stop_us));
        Some(old)
    }) else {
        return Ok(None);
    };
    let cpu_now = process_cpu();
    let (rss, max_rss) = memory();
    let period = secs(stop_us.saturating_sub(w.start_us));
    let d = PyDict::new(py);
    let n = w.request_count;
    d.set_item("pid", std::process::id())?;
    d.set_item("start_time", secs(w.start_us))?;
    d.set_item("stop_time", secs(stop_us))?;
    d.set_item("sample_period", period)?;
    d.set_item("request_count", n)?;
    d.set_item(
        "request_throughput",
        if period > 0.0 { n as f64 / period } else { 0.0 },
    )?;
    set_thread_items(&d, m, &w, stop_us, period)?;
    set_phase_items(py, &d, &w)?;
    set_io_items(&d, &w)?;
    let rate = |now: f64, then: f64| {
        if period > 0.0 {
            (now - then).max(0.0) / period
        } else {
            0.0
        }
    };
    let user = rate(cpu_now.0, w.cpu_at_start.0);
    let system = rate(cpu_now.1, w.cpu_at_start.1);
    for (prefix, value) in [
        ("cpu_user", user),
        ("cpu_system", system),
        ("cpu", user + system),
    ] {
        d.set_item(format!("{prefix}_utilization"), value)?;
        // Deprecated aliases mod_wsgi keeps.
        d.set_item(format!("{prefix}_time"), value)?;
    }
    d.set_item("memory_rss", rss)?;
    d.set_item("memory_max_rss", max_rss)?;
    Ok(Some(d))
}

/// Per slot over a window ending at `stop_us`: busy time (µs, requests still running add
/// the part of their time inside the window), seconds the current request has run, and
/// whether the slot served at all.
fn slot_usage(m: &Metrics, w: &Window, stop_us: u64) -> (Vec<u64>, Vec<f64>, Vec<bool>) {
    let slots = m.slots.len();
    let mut busy_us = w.slot_busy_us.clone();
    let mut current_elapsed = vec![0.0; slots];
    let mut active = vec![false; slots];
    for (i, slot) in m.slots.iter().enumerate() {
        let since = slot.busy_since_us.load(Ordering::Relaxed);
        if since > 0 {
            busy_us[i] += stop_us.saturating_sub(since.max(w.start_us));
            current_elapsed[i] = secs(stop_us.saturating_sub(since));
            active[i] = true;
        }
        active[i] |= w.slot_completed[i] > 0;
    }
    (busy_us, current_elapsed, active)
}

/// The window's `request_threads_*` items and `capacity_utilization`, counting the part of
/// requests still running that falls inside the window (ending at `stop_us`).
fn set_thread_items(
    d: &Bound<'_, PyDict>,
    m: &Metrics,
    w: &Window,
    stop_us: u64,
    period: f64,
) -> PyResult<()> {
    let slots = m.slots.len();
    let (busy_us, current_elapsed, active) = slot_usage(m, w, stop_us);
    let busy_total: u64 = busy_us.iter().sum();
    d.set_item("request_threads_maximum", slots)?;
    d.set_item(
        "request_threads_started",
        THREADS_STARTED.load(Ordering::Relaxed).min(slots),
    )?;
    d.set_item(
        "request_threads_active",
        active.iter().filter(|a| **a).count(),
    )?;
    d.set_item(
        "capacity_utilization",
        if period > 0.0 {
            secs(busy_total) / (period * slots as f64)
        } else {
            0.0
        },
    )?;
    d.set_item("request_threads_completed", w.slot_completed.clone())?;
    d.set_item("request_threads_buckets", w.slot_completed.clone())?;
    d.set_item(
        "request_threads_busy_time",
        busy_us.iter().map(|us| secs(*us)).collect::<Vec<_>>(),
    )?;
    d.set_item("request_threads_cpu_time", w.slot_cpu.clone())?;
    d.set_item("request_threads_current_elapsed", current_elapsed)?;
    d.set_item("request_threads_max_duration", w.slot_max_duration.clone())?;
    Ok(())
}

/// The window's per-phase times (mean, extremes, buckets; queue and daemon time are None
/// in embedded mode) and its GIL wait times.
fn set_phase_items(py: Python<'_>, d: &Bound<'_, PyDict>, w: &Window) -> PyResult<()> {
    let n = w.request_count;
    let mean = |p: &Phase| if n == 0 { 0.0 } else { p.total / n as f64 };
    let daemon_mode = !super::settings::process_info().process_group.is_empty();
    let phases: [(&str, &Phase, bool); 7] = [
        ("server_time", &w.server, true),
        ("queue_time", &w.queue, daemon_mode),
        ("daemon_time", &w.daemon, daemon_mode),
        ("application_time", &w.application, true),
        ("request_time", &w.request, true),
        ("input_read_time", &w.input_read, true),
        ("output_write_time", &w.output_write, true),
    ];
    for (name, phase, applies) in phases {
        let (min, max) = phase.extremes();
        if applies {
            d.set_item(name, mean(phase))?;
            d.set_item(format!("{name}_min_us"), min)?;
            d.set_item(format!("{name}_max_us"), max)?;
        } else {
            d.set_item(name, py.None())?;
            d.set_item(format!("{name}_min_us"), py.None())?;
            d.set_item(format!("{name}_max_us"), py.None())?;
        }
        d.set_item(format!("{name}_buckets"), phase.buckets.to_vec())?;
    }
    d.set_item("gil_wait_time", mean(&w.gil_wait))?;
    let gil_extremes = (w.gil_wait_count > 0).then_some((w.gil_wait_min_us, w.gil_wait_max_us));
    d.set_item("gil_wait_time_min_us", gil_extremes.map(|e| e.0))?;
    d.set_item("gil_wait_time_max_us", gil_extremes.map(|e| e.1))?;
    d.set_item("gil_wait_count", w.gil_wait_count)?;
    d.set_item("gil_wait_time_buckets", w.gil_wait.buckets.to_vec())?;
    Ok(())
}

/// The window's input and output totals and its responses by status class.
fn set_io_items(d: &Bound<'_, PyDict>, w: &Window) -> PyResult<()> {
    d.set_item("input_bytes", w.input_bytes)?;
    d.set_item("input_reads", w.input_reads)?;
    d.set_item("output_bytes", w.output_bytes)?;
    d.set_item("output_writes", w.output_writes)?;
    for (i, count) in w.status.iter().enumerate() {
        d.set_item(format!("status_{}xx", i + 1), count)?;
    }
    Ok(())
}

/// One phase of a telemetry tick: mean seconds per request, exact (min, max) seconds when
/// a request ended in the window, histogram.
#[derive(Clone, Debug, Default)]
pub struct TickPhase {
    pub mean: f64,
    pub extremes: Option<(f64, f64)>,
    pub buckets: Vec<u64>,
}

/// One tick of the telemetry stream: the window since the previous tick, as plain data.
#[derive(Clone, Debug, Default)]
pub struct TelemetryTick {
    pub sample_period: f64,
    pub request_count: u64,
    pub capacity_utilization: f64,
    /// CPU used in the window per second of it, (user, system).
    pub cpu: (f64, f64),
    pub memory_rss: u64,
    pub memory_max_rss: u64,
    pub threads_maximum: u64,
    pub threads_started: u64,
    pub threads_active: u64,
    /// Server, queue, daemon, application, request, GIL wait, input read, output write
    /// (queue and daemon only in a daemon process: `daemon_timing`).
    pub phases: [TickPhase; 8],
    pub daemon_timing: bool,
    pub input_bytes: u64,
    pub input_reads: u64,
    pub output_bytes: u64,
    pub output_writes: u64,
    /// Responses by class, 1xx to 5xx (no status counts as 5xx).
    pub status: [u64; 5],
    pub slot_completed: Vec<u64>,
    pub slot_busy_time: Vec<f64>,
    pub slot_cpu_time: Vec<f64>,
    pub slot_current_elapsed: Vec<f64>,
    pub slot_max_duration: Vec<f64>,
    /// Requests served since the process started, and in flight now.
    pub lifetime_requests: u64,
    pub active_requests: u64,
}

/// Drains the window for the telemetry reporter and starts the next; None before it is
/// recorded (telemetry not enabled, or no metrics in this process).
pub fn telemetry_tick() -> Option<TelemetryTick> {
    let m = METRICS.get()?;
    let stop_us = now_us();
    let w = {
        let mut window = lock(&m.window);
        let old = window.take()?;
        *window = Some(Window::new(m.slots.len(), stop_us));
        old
    };
    let cpu_now = process_cpu();
    let (memory_rss, memory_max_rss) = memory();
    let period = secs(stop_us.saturating_sub(w.start_us));
    let per_second = |v: f64| {
        if period > 0.0 {
            v.max(0.0) / period
        } else {
            0.0
        }
    };
    let (busy_us, current_elapsed, active) = slot_usage(m, &w, stop_us);
    let slots = m.slots.len();
    let n = w.request_count;
    let phase = |p: &Phase| TickPhase {
        mean: if n == 0 { 0.0 } else { p.total / n as f64 },
        extremes: match p.extremes() {
            (Some(min), Some(max)) => Some((secs(min), secs(max))),
            _ => None,
        },
        buckets: p.buckets.to_vec(),
    };
    let mut gil = phase(&w.gil_wait);
    gil.extremes =
        (w.gil_wait_count > 0).then(|| (secs(w.gil_wait_min_us), secs(w.gil_wait_max_us)));
    Some(TelemetryTick {
        sample_period: period,
        request_count: n,
        capacity_utilization: per_second(secs(busy_us.iter().sum())) / slots as f64,
        cpu: (
            per_second(cpu_now.0 - w.cpu_at_start.0),
            per_second(cpu_now.1 - w.cpu_at_start.1),
        ),
        memory_rss,
        memory_max_rss,
        threads_maximum: slots as u64,
        threads_started: THREADS_STARTED.load(Ordering::Relaxed).min(slots) as u64,
        threads_active: active.iter().filter(|a| **a).count() as u64,
        phases: [
            phase(&w.server),
            phase(&w.queue),
            phase(&w.daemon),
            phase(&w.application),
            phase(&w.request),
            gil,
            phase(&w.input_read),
            phase(&w.output_write),
        ],
        daemon_timing: !super::settings::process_info().process_group.is_empty(),
        input_bytes: w.input_bytes,
        input_reads: w.input_reads,
        output_bytes: w.output_bytes,
        output_writes: w.output_writes,
        status: w.status,
        slot_busy_time: busy_us.iter().map(|us| secs(*us)).collect(),
        slot_completed: w.slot_completed,
        slot_cpu_time: w.slot_cpu,
        slot_current_elapsed: current_elapsed,
        slot_max_duration: w.slot_max_duration,
        lifetime_requests: m.request_count.load(Ordering::Relaxed),
        active_requests: m.active.load(Ordering::Relaxed),
    })
}

/// Worker slots of this process (1 before the metrics are set up).
pub(crate) fn slot_count() -> usize {
    METRICS.get().map_or(1, |m| m.slots.len())
}

/// Requests in flight in this process.
pub(crate) fn active_count() -> u64 {
    METRICS
        .get()
        .map_or(0, |m| m.active.load(Ordering::Relaxed))
}

/// `process_metrics()`: cumulative since the process started. None until recording started.
pub(crate) fn process_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let Some(m) = METRICS
        .get()
        .filter(|m| m.recording.load(Ordering::Relaxed) && !reporter_owns_window())
    else {
        return Ok(None);
    };
    let now = now_us();
    let (user, system) = process_cpu();
    let (rss, max_rss) = memory();
    let d = PyDict::new(py);
    d.set_item("pid", std::process::id())?;
    d.set_item("restart_time", secs(m.restart_time_us))?;
    d.set_item("current_time", secs(now))?;
    d.set_item(
        "running_time",
        now.saturating_sub(m.restart_time_us) / 1_000_000,
    )?;
    d.set_item("request_count", m.request_count.load(Ordering::Relaxed))?;
    // Requests in flight count up to now.
    let in_flight_us: u64 = m
        .slots
        .iter()
        .map(|s| s.busy_since_us.load(Ordering::Relaxed))
        .filter(|since| *since > 0)
        .map(|since| now.saturating_sub(since))
        .sum();
    d.set_item(
        "request_busy_time",
        secs(m.busy_us.load(Ordering::Relaxed) + in_flight_us),
    )?;
    d.set_item(
        "request_threads",
        THREADS_STARTED.load(Ordering::Relaxed).min(m.slots.len()),
    )?;
    d.set_item("active_requests", m.active.load(Ordering::Relaxed))?;
    d.set_item("cpu_user_time", user)?;
    d.set_item("cpu_system_time", system)?;
    d.set_item("cpu_time", user + system)?;
    d.set_item("memory_rss", rss)?;
    d.set_item("memory_max_rss", max_rss)?;
    let threads = PyList::empty(py);
    let started = THREADS_STARTED.load(Ordering::Relaxed).min(m.slots.len());
    for (i, slot) in m.slots.iter().take(started).enumerate() {
        let t = PyDict::new(py);
        t.set_item("thread_id", i + 1)?;
        t.set_item("request_count", slot.requests.load(Ordering::Relaxed))?;
        threads.append(t)?;
    }
    d.set_item("threads", threads)?;
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_mod_wsgis_octaves() {
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(0.0009), 0);
        // 1 ms starts octave 0; 1.25 ms its second sub-bucket; 1.99 ms its last.
        assert_eq!(bucket_index(0.001), 0);
        assert_eq!(bucket_index(0.00125), 1);
        assert_eq!(bucket_index(0.00199), 3);
        assert_eq!(bucket_index(0.002), 4);
        assert_eq!(bucket_index(0.003), 6);
        assert_eq!(bucket_index(0.1), 6 * 4 + 2); // 100 ms = 64 * 1.5625
        assert_eq!(bucket_index(65.535), 63);
        assert_eq!(bucket_index(65.536), 64);
        assert_eq!(bucket_index(1e9), 64);
        assert_eq!(bucket_index(f64::NAN), 0);
    }

    #[test]
    fn status_classes_fold_the_unknown_into_5xx() {
        assert_eq!(status_class(Some(100)), 0);
        assert_eq!(status_class(Some(204)), 1);
        assert_eq!(status_class(Some(304)), 2);
        assert_eq!(status_class(Some(404)), 3);
        assert_eq!(status_class(Some(503)), 4);
        assert_eq!(status_class(None), 4);
        assert_eq!(status_class(Some(700)), 4);
    }

    #[test]
    fn a_window_clips_busy_time_at_its_start_and_sums_phases() {
        let mut w = Window::new(2, 1_000_000);
        let f = Finished {
            slot: 1,
            began_us: 500_000,
            ended_us: 1_500_000,
            times: RequestTimes {
                request_start_us: 400_000,
                queue_start_us: 450_000,
                daemon_start_us: 480_000,
            },
            application_start_us: 600_000,
            application_finish_us: 1_400_000,
            status: Some(201),
            ..Default::default()
        };
        w.add(&f);
        assert_eq!(w.request_count, 1);
        assert_eq!(w.slot_busy_us, vec![0, 500_000]);
        assert_eq!(w.slot_completed, vec![0, 1]);
        assert_eq!(w.status, [0, 1, 0, 0, 0]);
        assert_eq!(w.queue.extremes(), (Some(30_000), Some(30_000)));
        assert_eq!(w.application.max_us, 800_000);
        assert_eq!(w.request.max_us, 1_100_000);
        assert!((w.slot_max_duration[1] - 1.0).abs() < 1e-9);
    }
}
