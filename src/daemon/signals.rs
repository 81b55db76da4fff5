//! How a daemon process takes its signals without blocking them: as mod_wsgi does, each
//! signal the daemon manages gets a handler that only writes the signal's number to a pipe,
//! and the thread that watches the process reads the pipe in its own time. No thread has
//! any of them blocked, so every process the application starts (fork, fork+exec,
//! `posix_spawn`, `subprocess`, every `multiprocessing` start method) begins with an empty
//! signal mask; `exec` resets caught signals to their default action.
//!
//! - In a child forked from the daemon, a `pthread_atfork` handler puts the managed signals
//!   back to their default action (the child is not the daemon: SIGTERM must end it). A child
//!   made without the fork handlers (a raw `clone`) that gets one anyway resets it and raises
//!   it again, so it still gets the default action.
//! - SIGPIPE: Apache (and mod_wsgi with it) ignores it, so a write to a closed socket is an
//!   EPIPE error, not death. An ignored signal stays ignored across `exec`, though, and
//!   `os.posix_spawn` or `os.fork` + `exec` would start programs that cannot die of SIGPIPE.
//!   The daemon catches it with a handler that does nothing instead: writes still fail with
//!   EPIPE, and `exec` resets it to the default.

use std::os::fd::RawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

/// The pipe's write end (-1 until `install`), and the daemon's PID.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
static DAEMON_PID: AtomicI32 = AtomicI32::new(0);
/// The managed signals, one bit per number (for the fork handler, which must not allocate).
static MANAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs in the daemon on any thread, or in a child that did not run the fork handler.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls (getpid, signal, raise, write) on plain integers
    // read from atomics; errno is saved and restored around them.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::getpid() != DAEMON_PID.load(Ordering::Relaxed) {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        } else {
            let fd = PIPE_WRITE.load(Ordering::Relaxed);
            if fd >= 0 {
                let byte = sig as u8;
                // Non-blocking: a full pipe drops the byte (signals do not queue either).
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
        *libc::__errno_location() = errno;
    }
}

/// SIGPIPE's handler: a write to a closed socket fails with EPIPE.
extern "C" fn on_sigpipe(_sig: libc::c_int) {}

/// In a child forked from the daemon: the managed signals that have the daemon's handler get
/// their default action back, and the pipe is closed (the child must never write into the daemon's pipe).
extern "C" fn after_fork_in_child() {
    let managed = MANAGED.load(Ordering::Relaxed);
    for sig in 1..64 {
        if managed & (1u64 << sig) == 0 {
            continue;
        }
        // SAFETY: sigaction (async-signal-safe) reads the current action into a zeroed
        // struct; only the daemon's own handler is replaced by SIG_DFL, so a handler the
        // application installed (WSGIRestrictSignal Off, a service script) stays.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == on_signal as *const () as libc::sighandler_t
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
    for fd in [&PIPE_WRITE, &PIPE_READ] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the child's copy of the pipe, which nothing in the child uses.
            unsafe { libc::close(fd) };
        }
    }
}

fn set_handler(sig: Signal, handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(handler),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: both handlers only make async-signal-safe calls.
    unsafe { nix::sys::signal::sigaction(sig, &action) }.map(|_| ())
}

/// Installs the handlers for `signals` and SIGPIPE's, and clears this thread's signal mask
/// (every thread started later inherits it). Call once, in the daemon process, before it
/// starts any thread.
pub fn install(signals: &[Signal]) -> Result<(), String> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| format!("cannot create the signal pipe: {e}"))?;
    DAEMON_PID.store(std::process::id() as i32, Ordering::SeqCst);
    PIPE_READ.store(std::os::fd::IntoRawFd::into_raw_fd(read), Ordering::SeqCst);
    PIPE_WRITE.store(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
    let mut managed = 0u64;
    for sig in signals {
        managed |= 1u64 << (*sig as i32);
    }
    MANAGED.store(managed, Ordering::SeqCst);
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a child handler that only makes async-signal-safe calls.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    for sig in signals {
        set_handler(*sig, on_signal).map_err(|e| format!("cannot handle {sig}: {e}"))?;
    }
    set_handler(Signal::SIGPIPE, on_sigpipe).map_err(|e| format!("cannot handle SIGPIPE: {e}"))?;
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(|e| format!("cannot clear the signal mask: {e}"))
}

/// Waits up to `timeout` for a managed signal; None when none came.
pub fn next(timeout: Duration) -> Option<Signal> {
    let fd: RawFd = PIPE_READ.load(Ordering::SeqCst);
    if fd < 0 {
        std::thread::sleep(timeout);
        return None;
    }
    let mut byte = 0u8;
    for attempt in 0..2 {
        // SAFETY: reads one byte from the daemon's own non-blocking pipe into a local.
        if unsafe { libc::read(fd, (&raw mut byte).cast(), 1) } == 1 {
            return Signal::try_from(i32::from(byte)).ok();
        }
        if attempt == 1 {
            break;
        }
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll on one valid pollfd for at most `ms`. Interrupted (-1, EINTR: often
        // by the very signal that wrote the byte), the read is tried again.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) } == 0 {
            break;
        }
    }
    None
}
