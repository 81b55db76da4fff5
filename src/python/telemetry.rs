//! What this process's telemetry reporter (`daemon::telemetry`) reads, as plain data: each
//! tick's window of the metrics (`metrics::telemetry_tick`) and the slow requests of
//! WSGISlowRequests: those still running past the threshold, and those that ended after it.
//!
//! Cost on the request path: nothing unless [`enable`] was called; with a slow threshold, a
//! request copies its method, host and path into its thread's slot (a mutex only the
//! reporter also takes, once a tick) and, if it took longer than the threshold, pushes one
//! record onto a bounded queue.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use super::RequestSpec;
use super::metrics::Finished;
use super::request::lock;
use crate::util::now_us;

/// What WSGITelemetryService and its companions ask of this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct TelemetryCapture {
    /// WSGISlowRequests in µs; None = no slow-request records.
    pub slow_threshold_us: Option<u64>,
    /// WSGITelemetryOptions +CaptureUserAgent.
    pub capture_user_agent: bool,
}

/// One slow request: still running (`completed: false`) or ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlowRequest {
    pub completed: bool,
    /// When the request reached Apache (or the host took it), µs since the epoch.
    pub start_us: u64,
    pub duration: f64,
    /// `mod_wsgi.thread_id` of the thread serving it.
    pub thread_id: u64,
    /// The Apache child that took the request (`mod_wsgi.server_pid`); 0 if unknown.
    pub server_pid: u64,
    pub log_id: String,
    pub method: String,
    pub scheme: String,
    pub hostname: String,
    pub script_name: String,
    pub path_info: String,
    pub protocol: String,
    pub peer_ip: String,
    /// Only with +CaptureUserAgent.
    pub user_agent: String,
    pub server_time: f64,
    pub queue_time: f64,
    pub daemon_time: f64,
    pub application_time: f64,
    pub gil_wait_time: f64,
    pub gil_wait_count: u64,
    pub input_bytes: u64,
    pub input_reads: u64,
    pub output_bytes: u64,
    pub output_writes: u64,
    pub input_read_time: f64,
    pub output_write_time: f64,
    /// Final status; 0 while running (or if none was sent).
    pub status: u16,
    pub cpu_user_time: f64,
    pub cpu_system_time: f64,
    pub active_at_start: u64,
    pub active_at_completion: u64,
}

/// At most this many ended slow requests wait for the next tick; older ones are dropped.
const COMPLETED_LIMIT: usize = 256;
/// At most this many running slow requests are reported per tick (as mod_wsgi).
const ACTIVE_LIMIT: usize = 16;

struct SlowState {
    threshold_us: u64,
    capture_user_agent: bool,
    /// Per worker slot: the request it runs, while it runs.
    active: Vec<Mutex<Option<SlowRequest>>>,
    completed: Mutex<VecDeque<SlowRequest>>,
}

static CAPTURE: OnceLock<TelemetryCapture> = OnceLock::new();
static SLOW: OnceLock<SlowState> = OnceLock::new();

/// Turns telemetry on in this process (once, before it serves; a second call is ignored):
/// the metrics window is recorded for the reporter, the garbage collector's figures too
/// (`gc_telemetry`), and `mod_wsgi.request_metrics()` and `process_metrics()` answer None,
/// as mod_wsgi does while its external reporter runs.
pub fn enable(capture: TelemetryCapture) {
    if CAPTURE.set(capture).is_err() {
        return;
    }
    super::metrics::give_window_to_reporter();
    if let Err(e) = super::gc_telemetry::install() {
        super::log(
            crate::logging::Level::Warning,
            &format!(
                "RW0203: {}telemetry: no garbage-collector figures: {e}",
                super::log_prefix()
            ),
        );
    }
    if let Some(threshold_us) = capture.slow_threshold_us {
        let slots = super::metrics::slot_count();
        let _ = SLOW.set(SlowState {
            threshold_us,
            capture_user_agent: capture.capture_user_agent,
            active: (0..slots).map(|_| Mutex::new(None)).collect(),
            completed: Mutex::new(VecDeque::new()),
        });
    }
}

fn env_value(env: &crate::pair_list::PairList, key: &[u8]) -> String {
    env.get(key)
        .map(|v| v.iter().map(|b| char::from(*b)).collect())
        .unwrap_or_default()
}

/// A request began on `slot` (`active` requests in the process now, including it).
pub(crate) fn request_began(slot: usize, began_us: u64, active: u64, spec: &RequestSpec<'_>) {
    let Some(s) = SLOW.get() else {
        return;
    };
    let Some(cell) = s.active.get(slot) else {
        return;
    };
    let env = spec.env;
    let https = env_value(env, b"HTTPS");
    let host = env_value(env, b"HTTP_HOST");
    let t = spec.times;
    let record = SlowRequest {
        start_us: if t.request_start_us > 0 {
            t.request_start_us
        } else {
            began_us
        },
        thread_id: slot as u64 + 1,
        server_pid: env_value(env, b"mod_wsgi.server_pid").parse().unwrap_or(0),
        log_id: env_value(env, b"UNIQUE_ID"),
        method: env_value(env, b"REQUEST_METHOD"),
        scheme: if matches!(https.to_ascii_lowercase().as_str(), "on" | "1") {
            "https".into()
        } else {
            "http".into()
        },
        hostname: if host.is_empty() {
            env_value(env, b"SERVER_NAME")
        } else {
            host
        },
        script_name: env_value(env, b"SCRIPT_NAME"),
        path_info: env_value(env, b"PATH_INFO"),
        protocol: env_value(env, b"SERVER_PROTOCOL"),
        peer_ip: env_value(env, b"REMOTE_ADDR"),
        user_agent: if s.capture_user_agent {
            env_value(env, b"HTTP_USER_AGENT")
        } else {
            String::new()
        },
        server_time: phase(t.request_start_us, t.queue_start_us.max(t.daemon_start_us)),
        queue_time: phase(t.queue_start_us, t.daemon_start_us),
        active_at_start: active,
        ..SlowRequest::default()
    };
    *lock(cell) = Some(record);
}

/// Seconds from `from_us` to `to_us`; 0 when either is unknown.
fn phase(from_us: u64, to_us: u64) -> f64 {
    if from_us == 0 || to_us == 0 {
        return 0.0;
    }
    to_us.saturating_sub(from_us) as f64 / 1e6
}

/// The request on `slot` ended (`finished` is there while telemetry is on; `active` requests
/// remain). One that took at least the threshold is queued for the next tick.
pub(crate) fn request_ended(slot: usize, finished: Option<&Finished>, active: u64) {
    let Some(s) = SLOW.get() else {
        return;
    };
    let Some(record) = s.active.get(slot).and_then(|cell| lock(cell).take()) else {
        return;
    };
    let Some(f) = finished else {
        return;
    };
    let duration_us = f.ended_us.saturating_sub(record.start_us);
    if duration_us < s.threshold_us {
        return;
    }
    let t = &f.times;
    let io = &f.io;
    let done = SlowRequest {
        completed: true,
        duration: duration_us as f64 / 1e6,
        daemon_time: phase(t.daemon_start_us, f.application_start_us),
        application_time: phase(f.application_start_us, f.application_finish_us),
        gil_wait_time: io.gil_wait_time,
        gil_wait_count: io.gil_waits,
        input_bytes: io.input_bytes,
        input_reads: io.input_reads,
        output_bytes: io.output_bytes,
        output_writes: io.output_writes,
        input_read_time: io.input_time,
        output_write_time: io.output_time,
        status: f.status.unwrap_or(0),
        cpu_user_time: f.cpu.0,
        cpu_system_time: f.cpu.1,
        active_at_completion: active + 1,
        ..record
    };
    let mut q = lock(&s.completed);
    if q.len() >= COMPLETED_LIMIT {
        q.pop_front();
    }
    q.push_back(done);
}

/// The slow requests to report now: those that ended since the last call, then (at most
/// [`ACTIVE_LIMIT`]) those still running for at least the threshold.
pub fn slow_requests() -> Vec<SlowRequest> {
    let Some(s) = SLOW.get() else {
        return Vec::new();
    };
    let mut out: Vec<SlowRequest> = lock(&s.completed).drain(..).collect();
    let now = now_us();
    let mut running = 0;
    for cell in &s.active {
        if running == ACTIVE_LIMIT {
            break;
        }
        let Some(r) = lock(cell).clone() else {
            continue;
        };
        let elapsed = now.saturating_sub(r.start_us);
        if elapsed < s.threshold_us {
            continue;
        }
        running += 1;
        out.push(SlowRequest {
            duration: elapsed as f64 / 1e6,
            ..r
        });
    }
    out
}
