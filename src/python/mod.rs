//! L3 CPython host: initialises CPython in an (already forked, privilege-dropped) process,
//! loads WSGI scripts and serves requests with PEP 3333 semantics.
//!
//! It knows nothing of sockets, Apache or the wire protocol: requests arrive as a
//! [`RequestSpec`] plus a [`RequestIo`] implemented by the daemon worker (over the socket) or,
//! later, by the embedded handler (over Apache brigades).
//!
//! GIL discipline: [`initialize`] releases the GIL before returning, so any thread may enter
//! Python. [`AppHost::handle`] is called without the GIL, attaches only while Python code runs
//! and calls every [`RequestIo`] method detached, so implementations may block.
//!
//! Application groups: pyo3 classes cannot live in sub-interpreters (PyO3/pyo3#4570), so every
//! group runs in the main interpreter; each (script, group) pair gets its own module object.
//!
//! Files: `interpreter` (init/finalize), `loader` (script import and reload), `environ`,
//! `input` (wsgi.input), `log_object` (wsgi.errors, sys.stdout/stderr), `start_response`,
//! `file_wrapper`, `modwsgi` (the `mod_wsgi` Python module), `request` (per-request state and
//! the only access path to the [`RequestIo`]), `app` (the request driver, [`AppHost`]).

mod app;
mod diagnostics;
mod environ;
mod file_wrapper;
mod input;
mod interpreter;
mod loader;
mod log_object;
mod modwsgi;
mod request;
mod signal_intercept;
mod start_response;

#[cfg(test)]
mod tests;

use crate::logging::Level;

pub use app::AppHost;
pub use diagnostics::{gil_heartbeat, interrupt_thread, thread_stacks};
pub use interpreter::{InterpreterSettings, initialize, run_shutdown_callbacks, shutdown};
pub use log_object::install_restricted_stdout;

/// The version of mod_wsgi whose behaviour this host reproduces; exposed as
/// `mod_wsgi.version` and `environ['mod_wsgi.version']`.
pub const MOD_WSGI_VERSION: (u32, u32, u32) = (6, 0, 5);

/// The request side of the outside world (implemented by the daemon over the socket, and later
/// by Apache brigades in embedded mode).
///
/// Every method is called with the GIL RELEASED, so implementations may block.
pub trait RequestIo: Send {
    /// Reads up to `max` bytes of the request body; an empty vector means end of body.
    fn read_body(&mut self, max: usize) -> std::io::Result<Vec<u8>>;
    /// Sends the status line and headers (called at most once per request).
    fn send_head(
        &mut self,
        status: u16,
        reason: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> std::io::Result<()>;
    /// Sends body bytes; may buffer.
    fn send_body(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Sends body bytes the io may keep instead of copying (the response's last bytes,
    /// gathered after the Python work).
    fn send_body_owned(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        self.send_body(&data)
    }
    /// Pushes buffered output to the client now.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Sends `len` bytes of the regular file `fd` from `offset`. `Ok(false)` means "not
    /// supported": the host falls back to reading the file itself. The fd stays owned by Python
    /// and is only valid for the duration of the call.
    fn send_file(
        &mut self,
        fd: std::os::fd::RawFd,
        offset: u64,
        len: u64,
    ) -> std::io::Result<bool> {
        let _ = (fd, offset, len);
        Ok(false)
    }
}

/// What to run for one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpec<'a> {
    pub script_path: &'a str,
    pub app_group: &'a str,
    /// Name of the WSGI callable in the script; "" means "application".
    pub callable: &'a str,
    /// CGI variables as bytes from Apache; values become latin-1 `str` (PEP 3333).
    pub env: &'a [(Vec<u8>, Vec<u8>)],
    /// Check the script's mtime (inequality, as mod_wsgi) and reload it when it changed.
    pub script_reloading: bool,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response was produced completely.
    Completed,
    /// A [`RequestIo`] call failed (the client went away); `close()` was still called.
    ClientGone,
    /// The application failed. `head_sent: false`: a 500 response was sent in its place;
    /// `head_sent: true`: the response is truncated and the connection should be aborted.
    AppError { head_sent: bool },
    /// The WSGI script could not be loaded (traceback logged); nothing was sent.
    LoadFailed,
}

/// The one logging entry point of this layer (tests capture lines here).
pub(crate) fn log(level: Level, msg: &str) {
    #[cfg(test)]
    tests::capture_log(level, msg);
    crate::logging::log(level, msg);
}

/// Logs without holding the GIL (an error-log write may block).
pub(crate) fn log_detached(py: pyo3::Python<'_>, level: Level, msg: &str) {
    py.detach(|| log(level, msg));
}

/// "(wsgi:group) " in a daemon process, "" when embedded: the prefix of this layer's own
/// messages (application output lines are logged as written).
pub(crate) fn log_prefix() -> &'static str {
    interpreter::process_info().log_prefix.as_str()
}

/// Formats a Python exception with its traceback as one block (lines joined by "\n", no
/// trailing newline).
pub(crate) fn format_exception(py: pyo3::Python<'_>, err: &pyo3::PyErr) -> String {
    use pyo3::prelude::*;
    let formatted = (|| -> PyResult<String> {
        let lines = py
            .import("traceback")?
            .getattr("format_exception")?
            .call1((err.get_type(py), err.value(py), err.traceback(py)))?;
        let mut text = String::new();
        for line in lines.try_iter()? {
            text.push_str(&line?.extract::<String>()?);
        }
        Ok(text)
    })();
    match formatted {
        Ok(text) => text.trim_end_matches('\n').to_string(),
        Err(_) => format!("{err}"),
    }
}
