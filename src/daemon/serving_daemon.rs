//! The life of one request-serving daemon process after fork: the start-up it shares with
//! service daemons (`child_start`: restart backoff, privileges, directories, names, Python),
//! then preload scripts, serve, and stop in order.
//!
//! Signals: SIGTERM = shut down (shutdown-timeout); SIGUSR2 = drain (graceful-timeout), sent
//! by the daemon manager once this process' replacement is ready or Apache restarts
//! gracefully; SIGINT/SIGHUP = ask for a warm replacement (as an app restarting itself does);
//! SIGUSR1 = the same, draining within eviction-timeout. Touch-to-reload, maximum-requests,
//! restart-interval and request-timeout also ask for a warm replacement: this process keeps
//! its place until its successor has imported the scripts.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::daemon::child_start::{ChildKind, DaemonChild, Started};
use crate::daemon::control::{self, ControlMessage};
use crate::daemon::dispatcher::{Dispatcher, ServeSettings, WAKE_SIGNAL};
use crate::daemon::exit::DaemonExit;
use crate::daemon::gil_thread::GilThread;
use crate::daemon::signals;
use crate::daemon::spawn::ChildSetup;
use crate::daemon::telemetry::{Reporter, TelemetryPlan};
use crate::logging;
use crate::python::{self, AppHost, InterpreterSettings};

/// Everything a daemon process needs, owned (no Apache pointers).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DaemonPlan {
    pub group: String,
    pub listener_fd: RawFd,
    /// This process' end of its control socket to the daemon manager.
    pub control_fd: Option<RawFd>,
    pub setup: ChildSetup,
    pub interpreter: InterpreterSettings,
    pub serve: ServeSettings,
    /// (script path, application group) loaded before serving.
    pub preload: Vec<(std::path::PathBuf, String)>,
    /// (script path, application group, callable) of the preloaded ASGI applications whose
    /// lifespan.startup must complete before the daemon serves.
    pub asgi_startup: Vec<(std::path::PathBuf, String, String)>,
    /// Wait before starting (crash-loop backoff decided by the parent).
    pub start_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Drain window for planned restarts (SIGINT, touch-to-reload, maximum-requests).
    pub graceful_timeout: Duration,
    /// Drain window for SIGUSR1 (eviction); defaults to graceful_timeout.
    pub eviction_timeout: Duration,
    pub timers: Timers,
    /// The group's place in the metrics table (rwsgi-metrics endpoint), and this process'
    /// record in it (chosen by the manager at fork). Memory, not data: it crosses exec as
    /// `plan_wire::MetricsWire` instead.
    #[serde(skip)]
    pub metrics: Option<crate::daemon::metrics_shm::MetricsPlace>,
    pub metrics_record: Option<usize>,
    /// WSGITelemetryService and its companions: this process reports to the ingester.
    pub telemetry: Option<TelemetryPlan>,
}

impl DaemonPlan {
    /// This plan's process, as the start-up shared with service daemons sees it.
    pub fn child(&self, kind: ChildKind) -> DaemonChild<'_> {
        DaemonChild {
            kind,
            group: &self.group,
            control_fd: self.control_fd,
            setup: &self.setup,
            interpreter: &self.interpreter,
            start_delay: self.start_delay,
        }
    }
}

/// The monitor's timers (WSGIDaemonProcess options); None = off. Unlike mod_wsgi, each
/// works on its own: none depends on deadlock-timeout or inactivity-timeout being set.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timers {
    pub request_timeout: Option<Duration>,
    /// Raise mod_wsgi.RequestTimeout in an overdue request first; replace the process only
    /// if the request is still running this long after.
    pub interrupt_timeout: Option<Duration>,
    pub inactivity_timeout: Option<Duration>,
    pub restart_interval: Option<Duration>,
    pub deadlock_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
}

/// Runs the daemon; returns the exit code. The caller must `_exit` with it and never return
/// into Apache. A group with `threads=0` runs `daemon::service_daemon` instead.
pub fn serve_requests(plan: DaemonPlan) -> DaemonExit {
    let child = plan.child(ChildKind::Serving);
    // cpu-time-limit: SIGXCPU is the kernel's notice that the RLIMIT_CPU soft limit was
    // reached; WAKE_SIGNAL wakes the main thread (see `dispatcher`).
    let Started { parent, python } = match child.start(&[Signal::SIGXCPU, WAKE_SIGNAL]) {
        Ok(started) => started,
        Err(exit) => return exit,
    };
    let (host, host_error) = preload_app_host(&plan, python);
    if let Some(host) = &host {
        for (script, app_group, callable) in &plan.asgi_startup {
            let limit = plan
                .timers
                .startup_timeout
                .unwrap_or(python::ASGI_STARTUP_TIMEOUT);
            if let Err(e) = host.asgi_startup(script, app_group, callable, limit) {
                logging::error(&format!(
                    "RW0311: daemon process '{}' (pid {}): ASGI application '{callable}' of \
                     '{}' did not start: {e}; the process is not put into service",
                    plan.group,
                    std::process::id(),
                    script.display()
                ));
                return DaemonExit::Failed;
            }
        }
    }
    if let (Some(place), Some(record)) = (plan.metrics, plan.metrics_record) {
        crate::daemon::metrics_shm::observe(place, record);
    }
    let dispatcher = match Dispatcher::new(plan.serve.clone(), plan.listener_fd, host, host_error) {
        Ok(s) => s,
        Err(e) => {
            child.critical(&e.to_string());
            return DaemonExit::Failed;
        }
    };
    let gil = match start_gil_thread(&plan, &child, &dispatcher) {
        Ok(gil) => gil,
        Err(exit) => return exit,
    };
    let reporter = start_reporter(&plan);
    let threads = match dispatcher.start() {
        Ok(t) => t,
        Err(e) => {
            child.critical(&format!("cannot start threads: {e}"));
            return DaemonExit::Failed;
        }
    };
    logging::info(&format!(
        "RW0030: daemon process '{}' (pid {}) serving with {} threads",
        plan.group,
        std::process::id(),
        plan.serve.threads
    ));
    child.send_control(&ControlMessage::Ready);

    let gil = gil.as_ref();
    let mut stop = wait_for_stop(&plan, &dispatcher, parent, gil);
    if let StopKind::Replace { eviction } = stop.kind {
        stop.kind = replace_then_wait(
            &plan,
            &child,
            &dispatcher,
            parent,
            gil,
            eviction,
            &stop.reason,
        );
    }
    if let Some(r) = &reporter {
        r.stopping(&stop.reason, dispatcher.active() as u64);
    }
    let exit = if let StopKind::Deadlock = stop.kind {
        deadlock_exit(&plan, &stop.reason)
    } else {
        drain_and_exit(&plan, &dispatcher, threads, gil, &stop)
    };
    if let Some(r) = reporter {
        r.finish(&stop.reason, dispatcher.active() as u64);
    }
    exit
}

/// The telemetry reporter, when WSGITelemetryService is set; a reporter that cannot start
/// is logged and the process serves without it.
fn start_reporter(plan: &DaemonPlan) -> Option<Reporter> {
    let telemetry = plan.telemetry.as_ref()?;
    match Reporter::start(telemetry, &plan.group) {
        Ok(r) => Some(r),
        Err(e) => {
            logging::warning(&format!(
                "RW0201: daemon process '{}' (pid {}): no telemetry reporter for 'unix:{}': {e}",
                plan.group,
                std::process::id(),
                telemetry.socket.display()
            ));
            None
        }
    }
}

/// The application host, with the plan's preload scripts loaded (a failed preload is logged
/// and serving goes on); or None and why Python could not start.
fn preload_app_host(plan: &DaemonPlan, python: Result<(), String>) -> (Option<AppHost>, String) {
    let (host, host_error) = match python {
        Ok(()) => (Some(AppHost::new()), String::new()),
        Err(e) => (None, e),
    };
    if let Some(host) = &host {
        for (script, app_group) in &plan.preload {
            if let Err(e) = host.preload(script, app_group) {
                let script = script.display();
                logging::error(&format!(
                    "RW0029: daemon process '{}': failed to preload '{script}': {e}",
                    plan.group
                ));
            }
        }
    }
    (host, host_error)
}

/// The thread that takes the GIL for the monitor, when deadlock-timeout or request-timeout
/// needs it; `Err` is the exit of a daemon that could not start it.
fn start_gil_thread(
    plan: &DaemonPlan,
    child: &DaemonChild<'_>,
    dispatcher: &Dispatcher,
) -> Result<Option<GilThread>, DaemonExit> {
    // The monitor (this thread) never waits for the GIL itself: this thread takes it for
    // the heartbeat and for request-timeout's stacks and RequestTimeout. Without it
    // deadlock-timeout would silently be off, so a daemon that cannot start it does not serve.
    let t = &plan.timers;
    if dispatcher.host().is_none() || (t.deadlock_timeout.is_none() && t.request_timeout.is_none())
    {
        return Ok(None);
    }
    let beat = t.deadlock_timeout.map(|_| python::gil_heartbeat as fn());
    match GilThread::start(beat) {
        Ok(g) => Ok(Some(g)),
        Err(e) => {
            child.critical(&format!(
                "cannot start the thread that takes the Python GIL for deadlock-timeout and \
                 request-timeout: {e}"
            ));
            Err(DaemonExit::Failed)
        }
    }
}

/// Asks the manager for a warm replacement and, if it was asked, serves on until told to
/// drain; returns how to stop from here.
fn replace_then_wait(
    plan: &DaemonPlan,
    child: &DaemonChild<'_>,
    dispatcher: &Dispatcher,
    parent: nix::unistd::Pid,
    gil: Option<&GilThread>,
    eviction: bool,
    reason: &str,
) -> StopKind {
    let scripts = dispatcher
        .host()
        .map(|h| h.loaded_scripts())
        .unwrap_or_default();
    let asked = child.send_control(&ControlMessage::Replace {
        reason: reason.to_string(),
        scripts,
    });
    let drain_kind = if eviction {
        StopKind::Eviction
    } else {
        StopKind::Graceful
    };
    if !asked {
        return drain_kind;
    }
    logging::info(&format!(
        "RW0031: daemon process '{}' (pid {}): {}; asked for a replacement, {} until it is \
         ready",
        plan.group,
        std::process::id(),
        reason,
        if dispatcher.is_accepting() {
            "serving"
        } else {
            "new requests wait"
        }
    ));
    match wait_for_drain_signal(plan, parent, gil) {
        StopKind::Graceful => drain_kind,
        other => other,
    }
}

/// The GIL was lost: exit at once, without running Python.
fn deadlock_exit(plan: &DaemonPlan, reason: &str) -> DaemonExit {
    logging::error(&format!(
        "RW0032: daemon process '{}' (pid {}) stopping: {reason}; exiting at once",
        plan.group,
        std::process::id(),
    ));
    DaemonExit::Failed
}

/// Stops accepting, waits up to the stop's drain window for requests in flight, then ends
/// the worker threads and the GIL thread and finalises Python.
fn drain_and_exit(
    plan: &DaemonPlan,
    dispatcher: &Dispatcher,
    threads: Vec<std::thread::JoinHandle<()>>,
    gil: Option<&GilThread>,
    stop: &Stop,
) -> DaemonExit {
    let orderly = if matches!(stop.kind, StopKind::Shutdown) {
        DaemonExit::Stopped
    } else {
        DaemonExit::PlannedRestart
    };
    let drain = match stop.kind {
        StopKind::Shutdown => plan.shutdown_timeout,
        StopKind::Graceful => plan.graceful_timeout,
        StopKind::Eviction => plan.eviction_timeout,
        StopKind::Deadlock | StopKind::Replace { .. } => Duration::ZERO,
    };
    logging::info(&format!(
        "RW0033: daemon process '{}' (pid {}) stopping: {}; {} request(s) in flight, waiting up to {} s",
        plan.group,
        std::process::id(),
        stop.reason,
        dispatcher.active(),
        drain.as_secs()
    ));
    dispatcher.stop_accepting();
    let deadline = Instant::now() + drain;
    while dispatcher.active() > 0 && Instant::now() < deadline {
        // A request holding the GIL must not keep the process for the whole drain.
        if let Some(limit) = plan.timers.deadlock_timeout {
            if gil_lost(limit, gil) {
                return deadlock_exit(plan, &deadlock_reason(limit));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if dispatcher.active() > 0 {
        // WebSockets still open get close 1012 (service restart); their requests end
        // within a quarter second of being told.
        dispatcher.close_websockets();
        let deadline = Instant::now() + Duration::from_secs(2);
        while dispatcher.active() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if dispatcher.active() > 0 {
        logging::warning(&format!(
            "RW0034: daemon process '{}' (pid {}): {} request(s) still running after {} s; exiting \
             anyway",
            plan.group,
            std::process::id(),
            dispatcher.active(),
            drain.as_secs()
        ));
        return orderly;
    }
    for t in threads {
        let _ = t.join();
    }
    // Nothing may take the GIL while Python is finalised.
    if gil.is_some_and(|g| !g.stop(Duration::from_secs(5))) {
        logging::warning(&format!(
            "RW0140: daemon process '{}' (pid {}): the thread that takes the Python GIL for the \
             monitor did not end within 5 s (a thread holds the GIL); exiting without \
             finalising Python",
            plan.group,
            std::process::id()
        ));
        return orderly;
    }
    if dispatcher.host().is_some() {
        // lifespan.shutdown of the ASGI applications: within graceful-timeout, or
        // shutdown-timeout when none is set.
        let lifespan = if plan.graceful_timeout.is_zero() {
            plan.shutdown_timeout
        } else {
            plan.graceful_timeout
        };
        python::asgi_shutdown(lifespan);
        python::shutdown();
    }
    orderly
}

enum StopKind {
    /// SIGTERM (Apache stopping or restarting), or the manager is gone.
    Shutdown,
    /// Drain within graceful-timeout: SIGUSR2 from the manager, or a restart that needs no
    /// successor first (inactivity-timeout, startup-timeout).
    Graceful,
    /// Drain within eviction-timeout.
    Eviction,
    /// Ask the manager for a warm replacement, then drain when told.
    Replace { eviction: bool },
    /// The GIL could not be taken for deadlock-timeout: exit without running Python.
    Deadlock,
}

/// After asking for a replacement: serve on until told to drain (Graceful), to shut down,
/// or the GIL is lost. A manager that has not answered within
/// [`control::answer_deadline`] (a message it lost or could not read) is not waited for any
/// longer: the process drains, and the manager restarts it when it exits.
fn wait_for_drain_signal(
    plan: &DaemonPlan,
    parent: nix::unistd::Pid,
    gil: Option<&GilThread>,
) -> StopKind {
    let limit = control::answer_deadline(plan.timers.startup_timeout);
    let deadline = Instant::now() + limit;
    loop {
        if Instant::now() >= deadline {
            logging::warning(&format!(
                "RW0151: daemon process '{}' (pid {}): the daemon manager did not answer the \
                 request for a replacement within {} s; draining without it",
                plan.group,
                std::process::id(),
                limit.as_secs()
            ));
            return StopKind::Graceful;
        }
        match signals::next(TICK) {
            Some(Signal::SIGUSR2) => return StopKind::Graceful,
            Some(Signal::SIGTERM) => return StopKind::Shutdown,
            _ => {}
        }
        if nix::unistd::getppid() != parent {
            return StopKind::Shutdown;
        }
        if plan
            .timers
            .deadlock_timeout
            .is_some_and(|limit| gil_lost(limit, gil))
        {
            return StopKind::Deadlock;
        }
    }
}

/// request-timeout as mod_wsgi 6 applies it: `limit · (1 + ln threads)`, so a process
/// with many threads is not recycled for one slow request as eagerly as a single-threaded
/// one. The client still gets its 504 after `limit` (Apache's side does not scale).
pub fn scaled_request_timeout(limit: Duration, threads: usize) -> Duration {
    limit.mul_f64(1.0 + (threads.max(1) as f64).ln())
}

/// Overdue requests: with interrupt-timeout, raise mod_wsgi.RequestTimeout in the thread
/// first and replace the process only if the request outlives interrupt-timeout; without
/// it, replace the process at once. Python stacks are logged either way.
fn check_request_timeout(
    plan: &DaemonPlan,
    dispatcher: &Arc<Dispatcher>,
    gil: Option<&GilThread>,
    limit: Duration,
    scaled: Duration,
    interrupted: &mut std::collections::HashMap<usize, (u64, Instant)>,
) -> Option<Stop> {
    let overdue = dispatcher.overdue_requests(scaled);
    interrupted.retain(|index, (since, _)| overdue.iter().any(|o| o.0 == *index && o.1 == *since));
    let scaled_text = if scaled == limit {
        String::new()
    } else {
        format!(
            " ({:.1} s with {} threads)",
            scaled.as_secs_f64(),
            plan.serve.threads
        )
    };
    for (index, since, elapsed) in overdue {
        let stacks = || match gil {
            Some(gil) => gil
                .run_job(GIL_WAIT, python::thread_stacks)
                .unwrap_or_else(|| {
                    format!(
                        "(not collected: the Python GIL was not free within {} s)",
                        GIL_WAIT.as_secs()
                    )
                }),
            None => String::new(),
        };
        match (plan.timers.interrupt_timeout, interrupted.get(&index)) {
            (Some(grace), Some((_, at))) => {
                if at.elapsed() >= grace {
                    return Some(Stop {
                        kind: StopKind::Replace { eviction: false },
                        reason: format!(
                            "request-timeout={} s exceeded and the request did not stop within \
                             interrupt-timeout={} s",
                            limit.as_secs(),
                            grace.as_secs()
                        ),
                    });
                }
            }
            (Some(grace), None) if gil.is_some() => {
                let ident = dispatcher.thread_ident(index);
                let same = Arc::clone(dispatcher);
                // Checked again with the GIL held: the request may have ended meanwhile.
                let raised = gil.and_then(|g| {
                    g.run_job(GIL_WAIT, move || {
                        ident != 0
                            && same
                                .interrupt_request(index, since, || python::interrupt_thread(ident))
                    })
                });
                logging::warning(&format!(
                    "RW0037: daemon process '{}' (pid {}): a request has run {:.1} s, over \
                     request-timeout={} s{scaled_text}; {} (interrupt-timeout={} s); Python \
                     stacks:\n{}",
                    plan.group,
                    std::process::id(),
                    elapsed.as_secs_f64(),
                    limit.as_secs(),
                    match raised {
                        Some(true) => "raised mod_wsgi.RequestTimeout in its thread",
                        Some(false) => "its thread runs no Python to interrupt",
                        None =>
                            "the Python GIL was not free to raise mod_wsgi.RequestTimeout in \
                                 its thread (raised once it is, if the request still runs)",
                    },
                    grace.as_secs(),
                    stacks()
                ));
                if raised == Some(true) {
                    // mod_wsgi 6's line (its test suite matches it); its thread numbers
                    // count from 0, as the dispatcher's do.
                    logging::info(&format!(
                        "RW0161: Injected RequestTimeout into thread {index} of daemon process \
                         '{}'.",
                        plan.group
                    ));
                }
                interrupted.insert(index, (since, Instant::now()));
            }
            _ => {
                logging::warning(&format!(
                    "RW0038: daemon process '{}' (pid {}): a request has run {:.1} s, over \
                     request-timeout={} s{scaled_text}; Python stacks:\n{}",
                    plan.group,
                    std::process::id(),
                    elapsed.as_secs_f64(),
                    limit.as_secs(),
                    stacks()
                ));
                return Some(Stop {
                    kind: StopKind::Replace { eviction: false },
                    reason: format!("request-timeout={} s exceeded", limit.as_secs()),
                });
            }
        }
    }
    None
}

/// The monitor's tick: how long it waits for a signal before it looks at its timers.
const TICK: Duration = Duration::from_millis(250);

/// How long the monitor waits for a job of the GIL thread (stacks, RequestTimeout).
const GIL_WAIT: Duration = Duration::from_secs(1);

/// True when the GIL heartbeat is older than `limit` (and the second between beats).
fn gil_lost(limit: Duration, gil: Option<&GilThread>) -> bool {
    gil.and_then(GilThread::since_beat)
        .is_some_and(|age| age > limit + Duration::from_secs(1))
}

fn deadlock_reason(limit: Duration) -> String {
    format!(
        "the Python GIL could not be taken for deadlock-timeout={} s",
        limit.as_secs()
    )
}

struct Stop {
    kind: StopKind,
    reason: String,
}

/// Blocks until the daemon should stop, and says why.
fn wait_for_stop(
    plan: &DaemonPlan,
    dispatcher: &Arc<Dispatcher>,
    parent: nix::unistd::Pid,
    gil: Option<&GilThread>,
) -> Stop {
    let started = Instant::now();
    // Worker index -> (start of the interrupted request, when it was interrupted).
    let mut interrupted: std::collections::HashMap<usize, (u64, Instant)> =
        std::collections::HashMap::new();
    loop {
        if let Some(sig) = signals::next(TICK) {
            if sig == Signal::SIGXCPU {
                return Stop {
                    kind: StopKind::Replace { eviction: false },
                    reason: format!(
                        "cpu-time-limit={} s of CPU time reached (SIGXCPU)",
                        plan.setup.limits.cpu_time.unwrap_or_default()
                    ),
                };
            }
            let kind = match sig {
                WAKE_SIGNAL => None,
                Signal::SIGINT | Signal::SIGHUP => Some(StopKind::Replace { eviction: false }),
                Signal::SIGUSR1 => Some(StopKind::Replace { eviction: true }),
                Signal::SIGUSR2 => Some(StopKind::Graceful),
                _ => Some(StopKind::Shutdown),
            };
            if let Some(kind) = kind {
                return Stop {
                    kind,
                    reason: format!("received {}", sig.as_str()),
                };
            }
        }
        if nix::unistd::getppid() != parent {
            return Stop {
                kind: StopKind::Shutdown,
                reason: "the daemon manager process is gone".into(),
            };
        }
        let t = &plan.timers;
        if let Some(limit) = t.restart_interval {
            if started.elapsed() >= limit {
                return Stop {
                    kind: StopKind::Replace { eviction: false },
                    reason: format!("restart-interval={} s reached", limit.as_secs()),
                };
            }
        }
        if let Some(limit) = t.startup_timeout {
            if dispatcher.loading_for().is_some_and(|d| d >= limit) {
                return Stop {
                    kind: StopKind::Graceful,
                    reason: format!(
                        "the WSGI script did not load within startup-timeout={} s",
                        limit.as_secs()
                    ),
                };
            }
        }
        if let Some(limit) = t.inactivity_timeout {
            if dispatcher.active() == 0 && dispatcher.idle_for().is_some_and(|idle| idle >= limit) {
                return Stop {
                    kind: StopKind::Graceful,
                    reason: format!("no request for inactivity-timeout={} s", limit.as_secs()),
                };
            }
        }
        if let Some(limit) = t.request_timeout {
            let scaled = scaled_request_timeout(limit, plan.serve.threads);
            if let Some(stop) =
                check_request_timeout(plan, dispatcher, gil, limit, scaled, &mut interrupted)
            {
                return stop;
            }
        }
        if let Some(limit) = t.deadlock_timeout {
            if gil_lost(limit, gil) {
                return Stop {
                    kind: StopKind::Deadlock,
                    reason: deadlock_reason(limit),
                };
            }
        }
        if dispatcher.restart_requested() {
            return Stop {
                kind: StopKind::Replace { eviction: false },
                reason: dispatcher.restart_reason(),
            };
        }
        // A touched script is noticed by the next request for it (the worker checks that
        // request's script only, as mod_wsgi does), not by polling every loaded script here.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_scales_with_ln_threads() {
        let t = Duration::from_secs(60);
        assert_eq!(scaled_request_timeout(t, 1), t);
        assert_eq!(scaled_request_timeout(t, 0), t);
        let four = scaled_request_timeout(t, 4).as_secs_f64();
        assert!((four - 60.0 * (1.0 + 4f64.ln())).abs() < 0.01, "{four}");
        assert!(scaled_request_timeout(t, 15) > scaled_request_timeout(t, 4));
    }
}
