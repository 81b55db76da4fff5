//! The start-up every daemon process shares, whether it serves requests (`serving_daemon`)
//! or runs a service script (`service_daemon`, a `threads=0` group), in this order: drop
//! what it inherited from Apache, wait out the restart backoff, prepare (`spawn::prepare_child`: privileges,
//! directories, names), handle its signals (`signals`: through a pipe, never blocked, so
//! the processes the application starts get SIGTERM), start Python. Its failure lines and its messages to the daemon manager are written here too, so
//! a fix to one kind of daemon reaches the other.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::daemon::control::ControlMessage;
use crate::daemon::exit::DaemonExit;
use crate::daemon::signals;
use crate::daemon::spawn::{self, ChildSetup};
use crate::logging;
use crate::python::{self, InterpreterSettings};

/// What the daemon process runs once started: only the backoff line tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    /// Serves requests (`daemon::serving_daemon`).
    Serving,
    /// Runs its group's service scripts (`daemon::service_daemon`).
    Service,
}

/// The signals every daemon process takes from the daemon manager in its own time
/// (`signals::next`), blocked in no thread.
const MANAGER_SIGNALS: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGHUP,
];

/// A message to the daemon manager that cannot be written within this is given up
/// (the manager reads its sockets whenever they are readable).
const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One daemon process, as its start-up needs it and its log lines name it (borrowed from
/// its `DaemonPlan`).
pub struct DaemonChild<'p> {
    pub kind: ChildKind,
    pub group: &'p str,
    /// This process' end of its control socket to the daemon manager.
    pub control_fd: Option<RawFd>,
    pub setup: &'p ChildSetup,
    pub interpreter: &'p InterpreterSettings,
    /// Wait before starting (crash-loop backoff decided by the parent).
    pub start_delay: Duration,
}

/// A daemon process after `DaemonChild::start`.
pub struct Started {
    /// The daemon manager, as it was at fork: a different parent later means it is gone.
    pub parent: nix::unistd::Pid,
    /// Python is up, or why not (already logged as critical).
    pub python: Result<(), String>,
}

impl DaemonChild<'_> {
    /// Runs the shared start-up. `Err` is the exit of a process that could not be prepared
    /// (logged); a Python that did not start is `Started::python`, for the caller to decide
    /// (a request-serving daemon answers each request with the error, a service daemon
    /// exits). `own_signals` are taken through `signals::next` besides the manager's.
    pub fn start(&self, own_signals: &[Signal]) -> Result<Started, DaemonExit> {
        let parent = nix::unistd::getppid();
        // The backoff comes before the other steps, so a daemon that fails even to prepare
        // cannot crash-loop; Apache's signal handlers and descriptors are dropped first.
        let _ = spawn::release_inherited(self.setup);
        if !self.start_delay.is_zero() {
            self.note_backoff();
            std::thread::sleep(self.start_delay);
        }
        crate::heap::limit_malloc_arenas();
        if let Err(e) = spawn::prepare_child(self.setup) {
            self.critical(&e.to_string());
            return Err(DaemonExit::Unprepared);
        }
        // Before any thread starts: each thread then starts with an empty mask, and so does
        // every process the application starts from one.
        let handled: Vec<Signal> = MANAGER_SIGNALS.iter().chain(own_signals).copied().collect();
        if let Err(e) = signals::install(&handled) {
            self.critical(&e);
            return Err(DaemonExit::Unprepared);
        }
        let python = spawn::apply_environment(self.setup)
            .map_err(|e| e.to_string())
            .and_then(|()| python::initialize(self.interpreter));
        if let Err(e) = &python {
            self.critical(e);
        }
        Ok(Started { parent, python })
    }

    fn note_backoff(&self) {
        match self.kind {
            ChildKind::Serving => logging::notice(&format!(
                "RW0028: daemon process '{}' (pid {}): waiting {} s before starting (it kept dying \
                 soon after start)",
                self.group,
                std::process::id(),
                self.start_delay.as_secs()
            )),
            ChildKind::Service => logging::notice(&format!(
                "RW0109: daemon process '{}' (pid {}): waiting {} s before starting its service \
                 script again (it kept ending soon after start)",
                self.group,
                std::process::id(),
                self.start_delay.as_secs()
            )),
        }
    }

    /// Logs why this daemon cannot serve or run, naming its group and PID.
    pub fn critical(&self, what: &str) {
        logging::log(
            logging::Level::Crit,
            &format!(
                "RW0035: daemon process '{}' (pid {}): {what}",
                self.group,
                std::process::id()
            ),
        );
    }

    /// Sends `msg` to the daemon manager; false when there is none or it cannot be reached
    /// within [`CONTROL_SEND_TIMEOUT`], or the message cannot be encoded (logged).
    pub fn send_control(&self, msg: &ControlMessage) -> bool {
        let Some(fd) = self.control_fd else {
            return false;
        };
        let bytes = match msg.encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                logging::warning(&format!(
                    "RW0150: daemon process '{}' (pid {}): cannot ask the daemon manager: {e}",
                    self.group,
                    std::process::id()
                ));
                return false;
            }
        };
        // SAFETY: the control socket is kept open for the whole life of this process; the
        // UnixStream is never dropped (ManuallyDrop), so the descriptor stays ours.
        let stream = std::mem::ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(fd) });
        let sent = stream
            .set_write_timeout(Some(CONTROL_SEND_TIMEOUT))
            .and_then(|()| (&*stream).write_all(&bytes));
        match sent {
            Ok(()) => true,
            Err(e) => {
                logging::warning(&format!(
                    "RW0036: daemon process '{}' (pid {}): cannot reach the daemon manager: {e}",
                    self.group,
                    std::process::id()
                ));
                false
            }
        }
    }
}
