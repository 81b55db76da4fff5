//! The telemetry reporter of a daemon process (WSGITelemetryService), as mod_wsgi 6 runs one
//! in each daemon process (and, started by the composition root, in each Apache child in
//! embedded mode): one thread that, every interval, sends the process's metrics
//! window and its slow requests (WSGISlowRequests) as datagrams to the ingester's Unix
//! socket, plus the process's started, stopping and stopped events and the garbage
//! collector's snapshot and collections (recorded by a `gc.callbacks` entry). Request threads only
//! add to the counters the reporter drains (`python::telemetry_tick`); the reporter never
//! takes the GIL, and its sends never block: a datagram the ingester cannot take (not
//! running, socket full) is dropped, as mod_wsgi drops it.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::logging;
use crate::metrics::telemetry_wire::{Datagram, field, kind};
use crate::python::{self, GcEvent, GcSnapshot, SlowRequest, TelemetryCapture, TelemetryTick};
use crate::util::now_us;

/// What WSGITelemetryService, WSGISlowRequests and WSGITelemetryOptions ask of a daemon.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TelemetryPlan {
    /// The ingester's Unix datagram socket.
    pub socket: PathBuf,
    pub interval: Duration,
    pub slow_threshold: Option<Duration>,
    pub capture_user_agent: bool,
    /// The running Apache ("Apache/2.4.62") and its MPM ("event"), found in the Apache
    /// parent at configuration time.
    pub apache_version: String,
    pub mpm_name: String,
}

/// The sending side: the socket and what every datagram of this process carries.
struct Sender {
    sock: UnixDatagram,
    target: PathBuf,
    pid: u32,
    seq: AtomicU32,
    hostname: String,
    group: String,
    parent_pid: u64,
    python_version: String,
    apache_version: String,
    mpm_name: String,
    interval: f64,
    slow_threshold: f64,
    started_us: u64,
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Sender {
    fn datagram(&self, kind: u8, stamp_us: u64) -> Datagram {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Datagram::new(kind, self.pid, seq, seconds(stamp_us))
    }

    /// Sends without blocking; a datagram that cannot go now is dropped.
    fn send(&self, d: &Datagram) {
        let _ = self.sock.send_to(d.as_bytes(), &self.target);
    }

    fn identity(&self, d: &mut Datagram) {
        d.bytes(field::MOD_WSGI_VERSION, mod_rwsgi_version().as_bytes())
            .bytes(field::PYTHON_VERSION, self.python_version.as_bytes())
            .bytes(field::APACHE_VERSION, self.apache_version.as_bytes())
            .bytes(field::MPM_NAME, self.mpm_name.as_bytes())
            .bytes(field::HOSTNAME, self.hostname.as_bytes())
            .bytes(field::PROCESS_GROUP, self.group.as_bytes())
            .u64(field::PROCESS_PARENT_PID, self.parent_pid);
    }

    fn started(&self) {
        let mut d = self.datagram(kind::PROCESS_STARTED, self.started_us);
        self.identity(&mut d);
        self.send(&d);
    }

    fn tick(&self) {
        if let Some(t) = python::telemetry_tick() {
            let mut d = self.datagram(kind::REQUEST, now_us());
            self.identity(&mut d);
            d.f64(field::TELEMETRY_INTERVAL, self.interval)
                .f64(field::SLOW_REQUESTS_THRESHOLD, self.slow_threshold);
            encode_tick(&mut d, &t);
            self.send(&d);
        }
        let stamp = now_us();
        for slow in python::slow_requests() {
            let mut d = self.datagram(kind::SLOW_REQUEST, stamp);
            encode_slow(&mut d, &slow);
            self.send(&d);
        }
        self.gc();
    }

    /// The garbage collector's snapshot, then its collections since the last tick (at most
    /// [`GC_EVENTS_PER_TICK`]; the rest go with the next tick).
    fn gc(&self) {
        let Some(snapshot) = python::gc_snapshot() else {
            return;
        };
        let (events, dropped) = python::gc_events(GC_EVENTS_PER_TICK);
        let mut d = self.datagram(kind::GC_SNAPSHOT, now_us());
        encode_gc_snapshot(&mut d, &snapshot, dropped);
        self.send(&d);
        for e in &events {
            let mut d = self.datagram(kind::GC_EVENT, now_us());
            encode_gc_event(&mut d, e);
            self.send(&d);
        }
    }

    fn lifecycle(&self, kind: u8, reason: &str) -> Datagram {
        let mut d = self.datagram(kind, now_us());
        d.bytes(field::HOSTNAME, self.hostname.as_bytes())
            .bytes(field::PROCESS_GROUP, self.group.as_bytes())
            .bytes(field::SHUTDOWN_REASON, reason.as_bytes());
        d
    }
}

/// At most this many GC event datagrams per tick (as mod_wsgi).
const GC_EVENTS_PER_TICK: usize = 64;

/// The GC snapshot's fields, in mod_wsgi's order.
fn encode_gc_snapshot(d: &mut Datagram, g: &GcSnapshot, dropped: u64) {
    let groups = [
        (field::GC_COUNT0, &g.count),
        (field::GC_THRESHOLD0, &g.threshold),
        (field::GC_COLLECTIONS0, &g.collections),
        (field::GC_COLLECTED0, &g.collected),
        (field::GC_UNCOLLECTABLE0, &g.uncollectable),
    ];
    for (first, values) in groups {
        for (i, v) in values.iter().enumerate() {
            d.u64(first + i as u16, *v);
        }
    }
    d.u64(field::GC_IS_ENABLED, u64::from(g.is_enabled))
        .u64(field::GC_FREEZE_COUNT, g.freeze_count)
        .u64(field::GC_DROPPED_EVENTS, dropped);
}

/// One collection's fields.
fn encode_gc_event(d: &mut Datagram, e: &GcEvent) {
    d.f64(field::GC_EVENT_START_STAMP, seconds(e.start_us))
        .f64(field::GC_EVENT_DURATION, seconds(e.duration_us))
        .u64(field::GC_EVENT_GENERATION, u64::from(e.generation))
        .u64(field::GC_EVENT_COLLECTED, e.collected)
        .u64(field::GC_EVENT_UNCOLLECTABLE, e.uncollectable);
}

/// What the stream calls mod_wsgi's version: mod_rwsgi's, named as such.
fn mod_rwsgi_version() -> String {
    format!("mod_rwsgi {}", env!("CARGO_PKG_VERSION"))
}

/// The tick's fields, in mod_wsgi's order.
fn encode_tick(d: &mut Datagram, t: &TelemetryTick) {
    let period = t.sample_period;
    d.f64(field::SAMPLE_PERIOD, period)
        .u64(field::REQUEST_COUNT, t.request_count)
        .f64(
            field::REQUEST_THROUGHPUT,
            if period > 0.0 {
                t.request_count as f64 / period
            } else {
                0.0
            },
        )
        .f64(field::CAPACITY_UTILIZATION, t.capacity_utilization)
        .f64(field::CPU_USER_UTILIZATION, t.cpu.0)
        .f64(field::CPU_SYSTEM_UTILIZATION, t.cpu.1)
        .f64(field::CPU_UTILIZATION, t.cpu.0 + t.cpu.1)
        .u64(field::MEMORY_RSS, t.memory_rss)
        .u64(field::MEMORY_MAX_RSS, t.memory_max_rss)
        .u64(field::REQUEST_THREADS_MAXIMUM, t.threads_maximum)
        .u64(field::REQUEST_THREADS_STARTED, t.threads_started)
        .u64(field::REQUEST_THREADS_ACTIVE, t.threads_active);
    let ids = [
        field::SERVER_TIME,
        field::QUEUE_TIME,
        field::DAEMON_TIME,
        field::APPLICATION_TIME,
        field::REQUEST_TIME,
        field::GIL_WAIT_TIME,
        field::INPUT_READ_TIME,
        field::OUTPUT_WRITE_TIME,
    ];
    for (id, phase) in ids.iter().zip(&t.phases) {
        if (*id == field::QUEUE_TIME || *id == field::DAEMON_TIME) && !t.daemon_timing {
            continue;
        }
        d.f64(*id, phase.mean);
        if let Some((min, max)) = phase.extremes {
            d.f64(id + field::MIN_OFFSET, min)
                .f64(id + field::MAX_OFFSET, max);
        }
        d.i32_array(id + field::BUCKETS_OFFSET, &phase.buckets);
    }
    d.u64(field::INPUT_BYTES_TOTAL, t.input_bytes)
        .u64(field::INPUT_READS_TOTAL, t.input_reads)
        .u64(field::OUTPUT_BYTES_TOTAL, t.output_bytes)
        .u64(field::OUTPUT_WRITES_TOTAL, t.output_writes);
    for (i, count) in t.status.iter().enumerate() {
        d.u64(field::STATUS_1XX_TOTAL + i as u16, *count);
    }
    if !t.slot_completed.is_empty() {
        d.i32_array(field::REQUEST_THREADS_COMPLETED, &t.slot_completed)
            .f64_array(field::REQUEST_THREADS_BUSY_TIME, &t.slot_busy_time)
            .f64_array(field::REQUEST_THREADS_CPU_TIME, &t.slot_cpu_time)
            .f64_array(
                field::REQUEST_THREADS_CURRENT_ELAPSED,
                &t.slot_current_elapsed,
            )
            .f64_array(field::REQUEST_THREADS_MAX_DURATION, &t.slot_max_duration);
    }
}

/// A slow request's fields, in mod_wsgi's order.
fn encode_slow(d: &mut Datagram, s: &SlowRequest) {
    d.u64(field::SLOW_RECORD_STATE, u64::from(s.completed))
        .f64(field::SLOW_START_STAMP, seconds(s.start_us))
        .f64(field::SLOW_DURATION, s.duration)
        .u64(field::SLOW_THREAD_ID, s.thread_id)
        .u64(field::SLOW_INPUT_BYTES, s.input_bytes)
        .u64(field::SLOW_INPUT_READS, s.input_reads)
        .u64(field::SLOW_OUTPUT_BYTES, s.output_bytes)
        .u64(field::SLOW_OUTPUT_WRITES, s.output_writes)
        .f64(field::SLOW_CPU_USER_TIME, s.cpu_user_time)
        .f64(field::SLOW_CPU_SYSTEM_TIME, s.cpu_system_time)
        .f64(field::SLOW_SERVER_TIME, s.server_time)
        .f64(field::SLOW_QUEUE_TIME, s.queue_time)
        .f64(field::SLOW_DAEMON_TIME, s.daemon_time)
        .f64(field::SLOW_APPLICATION_TIME, s.application_time)
        .f64(field::SLOW_GIL_WAIT_TIME, s.gil_wait_time)
        .u64(field::SLOW_GIL_WAIT_COUNT, s.gil_wait_count)
        .f64(field::SLOW_INPUT_READ_TIME, s.input_read_time)
        .f64(field::SLOW_OUTPUT_WRITE_TIME, s.output_write_time)
        .u64(field::SLOW_ACTIVE_AT_START, s.active_at_start)
        .u64(field::SLOW_ACTIVE_AT_COMPLETION, s.active_at_completion)
        .u64(field::SLOW_STATUS, u64::from(s.status))
        .u64(field::SLOW_SERVER_PID, s.server_pid)
        .bytes(field::SLOW_LOG_ID, s.log_id.as_bytes())
        .bytes(field::SLOW_METHOD, s.method.as_bytes())
        .bytes(field::SLOW_SCHEME, s.scheme.as_bytes())
        .bytes(field::SLOW_HOSTNAME, s.hostname.as_bytes())
        .bytes(field::SLOW_SCRIPT_NAME, s.script_name.as_bytes())
        .bytes(field::SLOW_PATH_INFO, s.path_info.as_bytes())
        .bytes(field::SLOW_PROTOCOL, s.protocol.as_bytes())
        .bytes(field::SLOW_PEER_IP, s.peer_ip.as_bytes())
        .bytes(field::SLOW_USER_AGENT, s.user_agent.as_bytes());
}

/// A running reporter; [`Reporter::finish`] ends it.
pub struct Reporter {
    sender: Arc<Sender>,
    /// Set to true to end the thread; the condvar wakes it.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    /// Turns telemetry on in this process (before it serves) and starts the reporter
    /// thread, which announces the process. `group` is the daemon process group; "" for an
    /// Apache child in embedded mode. `Err`: the socket or thread could not be made
    /// (the caller logs it and serves without telemetry).
    pub fn start(plan: &TelemetryPlan, group: &str) -> io::Result<Reporter> {
        python::enable_telemetry(TelemetryCapture {
            slow_threshold_us: plan
                .slow_threshold
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            capture_user_agent: plan.capture_user_agent,
        });
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let sender = Arc::new(Sender {
            sock,
            target: plan.socket.clone(),
            pid: std::process::id(),
            seq: AtomicU32::new(0),
            hostname,
            group: group.to_owned(),
            parent_pid: u64::from(nix::unistd::getppid().as_raw().unsigned_abs()),
            python_version: python::python_version(),
            apache_version: plan.apache_version.clone(),
            mpm_name: plan.mpm_name.clone(),
            interval: plan.interval.as_secs_f64(),
            slow_threshold: plan.slow_threshold.map_or(0.0, |d| d.as_secs_f64()),
            started_us: now_us(),
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (s, st, interval) = (Arc::clone(&sender), Arc::clone(&stop), plan.interval);
        let thread = std::thread::Builder::new()
            .name("rwsgi-telemetry".into())
            .spawn(move || report(&s, &st, interval))?;
        let who = if group.is_empty() {
            format!("Apache child (pid {})", std::process::id())
        } else {
            format!("daemon process '{group}' (pid {})", std::process::id())
        };
        logging::info(&format!(
            "RW0200: {who}: telemetry reporter started; target 'unix:{}', interval {:.3} s",
            plan.socket.display(),
            plan.interval.as_secs_f64()
        ));
        Ok(Reporter {
            sender,
            stop,
            thread: Some(thread),
        })
    }

    /// The process decided to stop (`reason`) with `active` requests in flight.
    pub fn stopping(&self, reason: &str, active: u64) {
        let mut d = self.sender.lifecycle(kind::PROCESS_STOPPING, reason);
        d.u64(field::ACTIVE_REQUESTS_AT_DECISION, active);
        self.sender.send(&d);
    }

    /// Ends the thread, sends the window since its last tick and the stopped event.
    pub fn finish(mut self, reason: &str, active: u64) {
        {
            let (flag, wake) = &*self.stop;
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = &self.sender;
        s.tick();
        let lifetime = python::telemetry_tick().map_or(0, |t| t.lifetime_requests);
        let mut d = s.lifecycle(kind::PROCESS_STOPPED, reason);
        d.f64(
            field::PROCESS_UPTIME,
            seconds(now_us().saturating_sub(s.started_us)),
        )
        .u64(field::LIFETIME_REQUEST_COUNT, lifetime)
        .u64(field::ACTIVE_REQUESTS_AT_EXIT, active)
        .u64(field::GRACEFUL_DRAIN, u64::from(active == 0));
        s.send(&d);
    }
}

/// The reporter thread: announce the process, then a tick every `interval` until stopped.
fn report(sender: &Sender, stop: &(Mutex<bool>, Condvar), interval: Duration) {
    sender.started();
    let (flag, wake) = stop;
    let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, _) = wake
            .wait_timeout_while(stopped, interval, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = guard;
        if *stopped {
            return;
        }
        // Not holding the stop lock while sampling and sending.
        drop(stopped);
        sender.tick();
        stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    }
}
