//! The life of one daemon process after fork: prepare (privileges, directories, names),
//! wait out a restart backoff, start Python, preload scripts, serve, and shut down in order
//! on SIGTERM/SIGINT, on parent death, on a changed script or after maximum-requests.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::daemon::spawn::{self, ChildSetup};
use crate::daemon::worker::{ServeSettings, Server};
use crate::logging;
use crate::python::{self, AppHost, InterpreterSettings};

/// Everything a daemon process needs, owned (no Apache pointers).
#[derive(Clone, Debug)]
pub struct DaemonPlan {
    pub group: String,
    pub listener_fd: RawFd,
    pub setup: ChildSetup,
    pub interpreter: InterpreterSettings,
    pub serve: ServeSettings,
    /// (script path, application group) loaded before serving.
    pub preload: Vec<(String, String)>,
    /// Wait before starting (crash-loop backoff decided by the parent).
    pub start_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Drain window for planned restarts (SIGINT, touch-to-reload, maximum-requests).
    pub graceful_timeout: Duration,
    /// Drain window for SIGUSR1 (eviction); defaults to graceful_timeout.
    pub eviction_timeout: Duration,
    pub script_reloading: bool,
    pub timers: Timers,
}

/// The monitor's timers (WSGIDaemonProcess options); None = off. Unlike mod_wsgi, each
/// works on its own: none depends on deadlock-timeout or inactivity-timeout being set.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    pub request_timeout: Option<Duration>,
    pub inactivity_timeout: Option<Duration>,
    pub restart_interval: Option<Duration>,
    pub deadlock_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
}

/// Exit status of a daemon that stops on purpose to be replaced: the parent restarts it at
/// once, without crash-loop backoff.
pub const EXIT_PLANNED_RESTART: i32 = 0;

/// Runs the daemon; returns the exit code. The caller must `_exit` with it and never return
/// into Apache.
pub fn run(plan: DaemonPlan) -> i32 {
    let parent = nix::unistd::getppid();
    // The backoff comes before the other steps, so a daemon that fails even to prepare
    // cannot crash-loop; Apache's signal handlers and descriptors are dropped first.
    let _ = spawn::release_inherited(&plan.setup);
    if !plan.start_delay.is_zero() {
        logging::notice(&format!(
            "daemon process '{}' (pid {}): waiting {} s before starting (it kept dying soon \
             after start)",
            plan.group,
            std::process::id(),
            plan.start_delay.as_secs()
        ));
        std::thread::sleep(plan.start_delay);
    }
    if let Err(e) = spawn::prepare_child(&plan.setup) {
        logging::log(
            logging::Level::Crit,
            &format!(
                "daemon process '{}' (pid {}): {e}",
                plan.group,
                std::process::id()
            ),
        );
        return 2;
    }
    // Signals are taken by the main thread with sigtimedwait; every thread inherits this
    // mask. SIGPIPE is ignored so a closed socket is an EPIPE error, not death.
    let mut waited = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGHUP,
    ] {
        waited.add(sig);
    }
    let _ = waited.thread_block();
    // SAFETY: ignoring SIGPIPE is always sound.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };

    let (host, host_error) = match python::initialize(&plan.interpreter) {
        Ok(()) => (Some(AppHost::new()), String::new()),
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!(
                    "daemon process '{}' (pid {}): {e}",
                    plan.group,
                    std::process::id()
                ),
            );
            (None, e)
        }
    };
    if let Some(host) = &host {
        for (script, app_group) in &plan.preload {
            if let Err(e) = host.preload(script, app_group) {
                logging::error(&format!(
                    "daemon process '{}': failed to preload '{script}': {e}",
                    plan.group
                ));
            }
        }
    }
    let server = match Server::new(plan.serve.clone(), plan.listener_fd, host, host_error) {
        Ok(s) => s,
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!("daemon process '{}': {e}", plan.group),
            );
            return 1;
        }
    };
    let threads = match server.start() {
        Ok(t) => t,
        Err(e) => {
            logging::log(
                logging::Level::Crit,
                &format!("daemon process '{}': cannot start threads: {e}", plan.group),
            );
            return 1;
        }
    };
    logging::info(&format!(
        "daemon process '{}' (pid {}) serving with {} threads",
        plan.group,
        std::process::id(),
        plan.serve.threads
    ));

    let heartbeat = Arc::new(AtomicU64::new(0));
    if server.host().is_some() && plan.timers.deadlock_timeout.is_some() {
        let beat = Arc::clone(&heartbeat);
        let epoch = Instant::now();
        let _ = std::thread::Builder::new()
            .name("rwsgi-gil-heartbeat".into())
            .spawn(move || {
                loop {
                    python::gil_heartbeat();
                    beat.store(epoch.elapsed().as_secs().max(1), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
    }
    let stop = wait_for_stop(&plan, &server, &waited, parent, &heartbeat);
    if let StopKind::Deadlock = stop.kind {
        logging::error(&format!(
            "daemon process '{}' (pid {}) stopping: {}; exiting at once",
            plan.group,
            std::process::id(),
            stop.reason
        ));
        return 1;
    }
    let drain = match stop.kind {
        StopKind::Shutdown => plan.shutdown_timeout,
        StopKind::Graceful => plan.graceful_timeout,
        StopKind::Eviction => plan.eviction_timeout,
        StopKind::Deadlock => Duration::ZERO,
    };
    logging::info(&format!(
        "daemon process '{}' (pid {}) stopping: {}; {} request(s) in flight, waiting up to {} s",
        plan.group,
        std::process::id(),
        stop.reason,
        server.active(),
        drain.as_secs()
    ));
    server.stop_accepting();
    let deadline = Instant::now() + drain;
    while server.active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if server.active() > 0 {
        logging::warning(&format!(
            "daemon process '{}' (pid {}): {} request(s) still running after {} s; exiting \
             anyway",
            plan.group,
            std::process::id(),
            server.active(),
            drain.as_secs()
        ));
        return EXIT_PLANNED_RESTART;
    }
    for t in threads {
        let _ = t.join();
    }
    if server.host().is_some() {
        python::shutdown();
    }
    0
}

enum StopKind {
    /// SIGTERM (Apache stopping or restarting), or the parent is gone.
    Shutdown,
    /// SIGINT, touch-to-reload, maximum-requests: finish in-flight requests.
    Graceful,
    /// SIGUSR1.
    Eviction,
    /// The GIL could not be taken for deadlock-timeout: exit without running Python.
    Deadlock,
}

struct Stop {
    kind: StopKind,
    reason: String,
}

/// Blocks until the daemon should stop, and says why.
fn wait_for_stop(
    plan: &DaemonPlan,
    server: &Server,
    waited: &SigSet,
    parent: nix::unistd::Pid,
    heartbeat: &AtomicU64,
) -> Stop {
    let started = Instant::now();
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
    };
    let mut last_script_check = Instant::now();
    loop {
        // SAFETY: sigtimedwait with a valid, blocked signal set and a valid timeout.
        let sig = unsafe {
            libc::sigtimedwait(
                waited.as_ref() as *const libc::sigset_t,
                std::ptr::null_mut(),
                &timeout,
            )
        };
        if sig > 0 {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("signal");
            let kind = match Signal::try_from(sig) {
                Ok(Signal::SIGINT) | Ok(Signal::SIGHUP) => StopKind::Graceful,
                Ok(Signal::SIGUSR1) => StopKind::Eviction,
                _ => StopKind::Shutdown,
            };
            return Stop {
                kind,
                reason: format!("received {name}"),
            };
        }
        if nix::unistd::getppid() != parent {
            return Stop {
                kind: StopKind::Shutdown,
                reason: "the Apache parent process is gone".into(),
            };
        }
        let t = &plan.timers;
        if let Some(limit) = t.restart_interval {
            if started.elapsed() >= limit {
                return Stop {
                    kind: StopKind::Graceful,
                    reason: format!("restart-interval={} s reached", limit.as_secs()),
                };
            }
        }
        if let Some(limit) = t.startup_timeout {
            if server.loading_for().is_some_and(|d| d >= limit) {
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
            if server.active() == 0 && server.idle_for().is_some_and(|idle| idle >= limit) {
                return Stop {
                    kind: StopKind::Graceful,
                    reason: format!("no request for inactivity-timeout={} s", limit.as_secs()),
                };
            }
        }
        if let Some(limit) = t.request_timeout {
            if let Some(longest) = server.longest_request().filter(|d| *d >= limit) {
                if server.host().is_some() {
                    logging::warning(&format!(
                        "daemon process '{}' (pid {}): a request has run {:.1} s, over \
                         request-timeout={} s; Python stacks:\n{}",
                        plan.group,
                        std::process::id(),
                        longest.as_secs_f64(),
                        limit.as_secs(),
                        python::thread_stacks()
                    ));
                }
                return Stop {
                    kind: StopKind::Graceful,
                    reason: format!("request-timeout={} s exceeded", limit.as_secs()),
                };
            }
        }
        if let Some(limit) = t.deadlock_timeout {
            let beat = heartbeat.load(Ordering::SeqCst);
            let now = started.elapsed().as_secs();
            // The heartbeat counts from its own start, a moment after ours: compare ages.
            if beat > 0 && now.saturating_sub(beat) > limit.as_secs() + 1 {
                return Stop {
                    kind: StopKind::Deadlock,
                    reason: format!(
                        "the Python GIL could not be taken for deadlock-timeout={} s",
                        limit.as_secs()
                    ),
                };
            }
        }
        if server.restart_requested() {
            return Stop {
                kind: StopKind::Graceful,
                reason: server.restart_reason(),
            };
        }
        if plan.script_reloading && last_script_check.elapsed() >= Duration::from_secs(1) {
            last_script_check = Instant::now();
            if server.host().is_some_and(|h| h.scripts_changed()) {
                return Stop {
                    kind: StopKind::Graceful,
                    reason: "the WSGI script changed (touch-to-reload)".into(),
                };
            }
        }
    }
}
