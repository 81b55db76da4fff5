//! A daemon process of a `threads=0` group: it serves no requests and runs the group's
//! WSGIImportScript (a service script, mod_wsgi's sidecar pattern) in its main thread.
//!
//! - SIGTERM (Apache stopping, or the daemon manager gone) raises SystemExit in the script;
//!   the process then exits as stopped.
//! - A touched script (checked every second: there are no requests to check it on), or
//!   SIGUSR1/SIGUSR2/SIGHUP from the manager,
//!   raises SystemExit through SIGINT; the process exits as a planned restart and the
//!   manager starts it again at once.
//! - A script that returns or raises ends the process as failed: the manager restarts it,
//!   with its crash-loop backoff if that keeps happening soon after start.
//!
//! A watcher thread takes the manager's signals (`signals`: none is blocked) and polls the
//! scripts' mtimes once a second; SIGTERM and SIGINT have Python's handlers while the script
//! runs, so Python raises SystemExit in the main thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::daemon::child_start::{ChildKind, Started};
use crate::daemon::control::ControlMessage;
use crate::daemon::exit::DaemonExit;
use crate::daemon::serving_daemon::DaemonPlan;
use crate::daemon::signals;
use crate::logging;
use crate::python::{self, ServiceEnd};

/// Runs a service-script daemon; returns its exit status (the caller `_exit`s with it).
pub fn run_service_scripts(plan: DaemonPlan) -> DaemonExit {
    let child = plan.child(ChildKind::Service);
    // The manager's signals come through `signals::next` until the script runs; then
    // SIGTERM and SIGINT have Python's handlers.
    let Started { parent, python } = match child.start(&[]) {
        Ok(started) => started,
        Err(exit) => return exit,
    };
    if python.is_err() {
        return DaemonExit::Failed;
    }
    child.send_control(&ControlMessage::Ready);
    if plan.preload.is_empty() {
        logging::error(&format!(
            "RW0110: daemon process '{}' (pid {}) has threads=0 (a service script group) but no \
             WSGIImportScript names it: nothing to run; waiting to be stopped",
            plan.group,
            std::process::id()
        ));
        loop {
            match signals::next(Duration::from_secs(1)) {
                Some(Signal::SIGTERM) => return DaemonExit::Stopped,
                Some(_) => return DaemonExit::PlannedRestart,
                None => {}
            }
        }
    }

    let watched: Vec<(PathBuf, Option<SystemTime>)> = plan
        .preload
        .iter()
        .map(|(script, _)| (script.clone(), mtime(script)))
        .collect();
    let group = plan.group.clone();
    let watcher = std::thread::Builder::new()
        .name("rwsgi-service-watch".into())
        .spawn(move || watch(&group, parent, &watched));
    if let Err(e) = watcher {
        child.critical(&format!("cannot start the watcher thread: {e}"));
        return DaemonExit::Failed;
    }

    let mut end = ServiceEnd::Returned;
    for (script, app_group) in &plan.preload {
        end = python::run_service_script(script, app_group);
        if end != ServiceEnd::Returned {
            break;
        }
    }
    // Python's handlers stay installed: a second SIGTERM during shutdown raises again in
    // Python code (atexit), never kills the process half-way through Rust.
    let exit = match end {
        ServiceEnd::Signalled(sig) if sig == Signal::SIGTERM as i32 => DaemonExit::Stopped,
        ServiceEnd::Signalled(_) => DaemonExit::PlannedRestart,
        ServiceEnd::Returned | ServiceEnd::Failed => DaemonExit::Failed,
    };
    logging::info(&format!(
        "RW0111: daemon process '{}' (pid {}): service script {}",
        plan.group,
        std::process::id(),
        match exit {
            DaemonExit::Stopped => "stopped by SIGTERM (SystemExit)",
            DaemonExit::PlannedRestart => "stopped to be restarted (SystemExit)",
            _ if end == ServiceEnd::Failed => "failed; it will be started again",
            _ => "ended; it will be started again",
        }
    ));
    python::shutdown();
    exit
}

/// The watcher: every second, checks the parent and the scripts' mtimes, and takes the
/// manager's drain signals. Asks the main thread to stop through SIGTERM (parent gone) or
/// SIGINT (restart), once.
fn watch(group: &str, parent: nix::unistd::Pid, watched: &[(PathBuf, Option<SystemTime>)]) {
    let me = nix::unistd::getpid();
    let mut sent = false;
    loop {
        let sig = signals::next(Duration::from_secs(1));
        if sent {
            // Python's handlers were not installed yet when it was sent: send it again
            // once they may be, until they take it.
            if let Some(sig @ (Signal::SIGTERM | Signal::SIGINT)) = sig {
                std::thread::sleep(Duration::from_millis(50));
                let _ = nix::sys::signal::kill(me, sig);
            }
            continue;
        }
        let why = if sig == Some(Signal::SIGTERM) {
            // Not meant for this thread: pass it on to the script.
            Some((Signal::SIGTERM, "SIGTERM".to_string()))
        } else if let Some(sig) = sig {
            Some((
                Signal::SIGINT,
                format!("{} from the daemon manager", sig.as_str()),
            ))
        } else if nix::unistd::getppid() != parent {
            Some((Signal::SIGTERM, "the daemon manager is gone".to_string()))
        } else {
            watched
                .iter()
                .find(|(path, at_start)| mtime(path) != *at_start)
                .map(|(path, _)| {
                    let path = path.display();
                    (Signal::SIGINT, format!("service script '{path}' changed"))
                })
        };
        if let Some((signal, reason)) = why {
            logging::info(&format!(
                "RW0112: daemon process '{group}' (pid {me}): {reason}; stopping the service script"
            ));
            let _ = nix::sys::signal::kill(me, signal);
            sent = true;
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
