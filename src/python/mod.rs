//! L3 CPython host: initialises CPython in an (already forked, privilege-dropped) process,
//! loads WSGI scripts and serves requests with PEP 3333 semantics; also runs the early-phase
//! scripts (access, authentication, dispatch) and service scripts.
//!
//! It knows nothing of sockets, Apache or the wire protocol: requests arrive as a
//! [`RequestSpec`] plus a [`RequestIo`] implemented by the daemon worker (over the socket) or
//! by the embedded handler (over Apache brigades); the scoreboard comes through a reader
//! function the composition root installs.
//!
//! GIL discipline: [`initialize`] releases the GIL before returning, so any thread may enter
//! Python. [`AppHost::handle`] is called without the GIL, attaches only while Python code runs
//! and calls every [`RequestIo`] method detached, so implementations may block.
//!
//! Application groups: in a daemon process each named group runs in its own CPython
//! sub-interpreter sharing the main one's GIL and allocator (`subinterp`, which explains why
//! pyo3 is sound there); `%{GLOBAL}` and, for now, every group in embedded mode run in the main
//! interpreter. Each (script, group) pair gets its own module object.
//!
//! Files: `interpreter` (init/finalize), `settings` (what Python is told), `loader` (script
//! import and reload), `environ`, `input` (wsgi.input), `log_object` (wsgi.errors,
//! sys.stdout/stderr), `start_response`, `file_wrapper`, `modwsgi` (the `mod_wsgi` Python
//! module), `metrics` (its metrics API), `request` (per-request state and the only access
//! path to the [`RequestIo`]), `app` (the request driver, [`AppHost`]), `response_end`
//! (error pages and the log lines of a response that ended badly), `asgi` and `asgi_native`
//! (ASGI 3: the event loop's runtime; the path of most HTTP requests without the GIL on the
//! request thread), `phase_scripts`,
//! `service`, `signal_intercept` (WSGIRestrictSignal), `diagnostics` (stacks, GIL heartbeat),
//! `telemetry` and `gc_telemetry` (what the telemetry reporter reads), `subinterp` (application
//! groups' sub-interpreters).

mod app;
mod asgi;
mod asgi_native;
mod diagnostics;
mod environ;
mod file_wrapper;
mod gc_telemetry;
mod gil_gate;
mod input;
mod interp_state;
mod interpreter;
mod loader;
mod log_object;
mod metrics;
mod modwsgi;
mod native_class;
mod phase_scripts;
mod request;
mod response_end;
mod service;
mod settings;
mod signal_intercept;
mod start_response;
mod subinterp;
mod telemetry;
mod websocket;

#[cfg(test)]
mod tests;

use crate::logging::Level;

pub use app::AppHost;
pub use asgi::{ASGI_STARTUP_TIMEOUT, shutdown_all as asgi_shutdown};
pub use diagnostics::{clear_interrupt, gil_heartbeat, interrupt_thread, thread_stacks};
pub use gc_telemetry::{GcEvent, GcSnapshot, gc_events, gc_snapshot};
pub use gil_gate::{GilGate, waiting_for_body};
pub use interpreter::{
    FREE_THREADED_BUILD, build_python_tag, free_threading_warning, initialize, python_tag,
    python_version, run_shutdown_callbacks, venv_free_threaded, venv_python_tag, venv_version,
};

/// Stops Python at process exit: ends the sub-interpreters (`subinterp::end_all`), then shuts
/// the main interpreter down (`interpreter::shutdown`, which finalises Python only when every
/// sub-interpreter was ended). Call once, from the process's main thread, when no request
/// is running.
pub fn shutdown() {
    if !interpreter::python_ready() {
        return;
    }
    let subs_ended = subinterp::end_all("shutdown", settings::process_info().destroy_interpreter);
    interpreter::shutdown(subs_ended);
}
pub use log_object::install_restricted_stdout;
pub use metrics::{
    RequestObserver, RequestSummary, ScoreboardProcess, ScoreboardWorker, ServerScoreboard,
    TelemetryTick, TickPhase, set_request_observer, set_scoreboard_reader, telemetry_tick,
};
pub use phase_scripts::{Access, Dispatch, Password, PhaseFailed, PhaseRequest, RealmHash};
pub use service::{ServiceEnd, run_service_script};
pub use settings::{ASGI_BLOCKED_LOOP_TIMEOUT, InterpreterSettings};
pub use subinterp::failed as sub_interpreter_failed;
pub use subinterp::per_interpreter_gil_refusal;
pub use telemetry::{SlowRequest, TelemetryCapture, enable as enable_telemetry, slow_requests};

/// The version of mod_wsgi whose behaviour this host reproduces; exposed as
/// `mod_wsgi.version` and `environ['mod_wsgi.version']`.
pub const MOD_WSGI_VERSION: (u32, u32, u32) = (6, 0, 5);

/// The request side of the outside world (implemented by the daemon over the socket, and by
/// Apache brigades in embedded mode).
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
    /// Has the client gone away while the request runs (the Apache side closed the daemon
    /// connection mid-request)? Asked by the ASGI runtime while the application waits.
    fn client_gone(&mut self) -> bool {
        false
    }
    /// The whole request body when it is already here without a read (none, or pushed
    /// with the head): a copy, the body stays readable. `None`: it must be read.
    fn body_ahead(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The largest response end (a list or tuple body) the host copies and sends through
    /// [`RequestIo::send_body_owned`] after the Python work; a larger one is sent from the
    /// Python objects, with the GIL released for the write.
    fn defer_limit(&self) -> usize {
        64 * 1024
    }
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
    /// WebSocket (after the application accepted it): waits up to `timeout` for the next
    /// event from the client, or for `wake` (the event loop's pipe) to become readable.
    fn ws_wait(
        &mut self,
        wake: std::os::fd::BorrowedFd<'_>,
        timeout: std::time::Duration,
    ) -> std::io::Result<WsEvent> {
        let _ = (wake, timeout);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// WebSocket: sends one message (`binary`: else text, UTF-8) to the client.
    fn ws_send(&mut self, binary: bool, data: &[u8]) -> std::io::Result<()> {
        let _ = (binary, data);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// WebSocket: closes it with `code` and `reason`.
    fn ws_close(&mut self, code: u16, reason: &[u8]) -> std::io::Result<()> {
        let _ = (code, reason);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// WebSocket (once accepted): the connection for the ASGI event loop thread, which
    /// sends and receives messages through it without this io ([`WsDirect`]); from then on
    /// [`RequestIo::ws_wait`] does not read the connection. `None` when the io has none
    /// (every message then goes through [`RequestIo::ws_wait`] and [`RequestIo::ws_send`]).
    fn ws_direct(&mut self) -> Option<std::sync::Arc<dyn WsDirect>> {
        None
    }
}

/// An accepted WebSocket's write side, shared between the request thread (which holds the
/// [`RequestIo`]) and the ASGI event loop thread, which must never block on it.
pub trait WsDirect: Send + Sync {
    /// Writes one message if that cannot block: [`DirectSend::Refused`] (nothing written)
    /// when the message is too large, an earlier one is not out yet, the request thread is
    /// writing, or the WebSocket is closing; then it must go through the request thread. An
    /// error is the connection's (the message is lost).
    fn try_send(&self, binary: bool, data: &[u8]) -> std::io::Result<DirectSend>;
    /// Writes what a [`DirectSend::Pending`] left, waiting up to `timeout` for the
    /// connection; true when nothing is left. Blocks: call it detached, on the request
    /// thread.
    fn flush_pending(&self, timeout: std::time::Duration) -> std::io::Result<bool>;
    /// No more direct sends (the WebSocket is over or closing).
    fn close(&self);
    /// The descriptor the loop thread watches for the client's messages (its own, open
    /// until [`WsDirect::stop_reading`]); `None` once stopped.
    fn read_fd(&self) -> Option<std::os::fd::RawFd>;
    /// The client's messages that are here, without waiting (empty when none, or when the
    /// request is over); a [`WsEvent::Close`] is the last. An error is the connection's.
    fn try_recv(&self) -> std::io::Result<Vec<WsEvent>>;
    /// The loop no longer watches [`WsDirect::read_fd`]: closes it.
    fn stop_reading(&self);
}

/// What [`WsDirect::try_send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectSend {
    /// The whole message is written.
    Sent,
    /// Written in part: the rest is kept, and the request thread must write it (it does
    /// while it waits for the client) before anything else goes out.
    Pending,
    /// Nothing written: the message must go through the request thread.
    Refused,
}

/// What [`RequestIo::ws_wait`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A message from the client (`binary`: else text, UTF-8).
    Message { binary: bool, data: Vec<u8> },
    /// The client closed the WebSocket (code 1006: its connection was lost).
    Close { code: u16, reason: Vec<u8> },
    /// The wake descriptor is readable.
    Woken,
    /// Nothing within the timeout.
    Timeout,
    /// The daemon is stopping and its drain time is over: close with 1012.
    Shutdown,
}

/// The address of the Apache request being served, for WSGIPassApacheRequest On: it reaches
/// the environ as mod_wsgi's `apache.request_rec` capsule (no name, no destructor) for
/// extension code that works on Apache's `request_rec` directly. Python code may use it only
/// while the request runs, as in mod_wsgi.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApacheRequestRec(std::ptr::NonNull<std::ffi::c_void>);

impl ApacheRequestRec {
    /// None for a null pointer.
    pub fn new(request_rec: *mut std::ffi::c_void) -> Option<ApacheRequestRec> {
        std::ptr::NonNull::new(request_rec).map(ApacheRequestRec)
    }

    pub(crate) fn as_ptr(self) -> *mut std::ffi::c_void {
        self.0.as_ptr()
    }
}

// SAFETY: the host never dereferences the address; it only hands it to Python in a capsule,
// on the thread serving the request, so sending or sharing the value itself is harmless.
unsafe impl Send for ApacheRequestRec {}
// SAFETY: as for Send: the value is an address that is copied, never read through here.
unsafe impl Sync for ApacheRequestRec {}

/// What to run for one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpec<'a> {
    /// The script file, as bytes from Apache's `r->filename` (need not be UTF-8); log lines
    /// show it lossily (`Path::display`).
    pub script_path: &'a std::path::Path,
    pub app_group: &'a str,
    /// Name of the WSGI callable in the script; "" means "application".
    pub callable: &'a str,
    /// CGI variables as bytes from Apache; values become latin-1 `str` (PEP 3333).
    pub env: &'a crate::pair_list::PairList,
    /// What a changed script, a removed `__mtime__` or a `reload_required()` answering True
    /// leads to (WSGIScriptReloading).
    pub script_reloading: ScriptReloading,
    /// When the request reached each stage: `mod_wsgi.request_start` and friends.
    pub times: RequestTimes,
    /// How the Apache child reached the daemon group (request_started's `daemon_connects`
    /// and `daemon_restarts`); 0 and 0 in embedded mode, as in mod_wsgi.
    pub daemon_attempts: DaemonAttempts,
    /// WSGIPassApacheRequest On in embedded mode: `environ['apache.request_rec']`.
    pub apache_request: Option<ApacheRequestRec>,
    /// The callable is an ASGI 3 application (`interface=asgi`, daemon mode): it is run by
    /// the interpreter's event loop (`asgi.rs`) with an `http` scope made from `env`.
    pub asgi: bool,
    /// An ASGI request that asks for a WebSocket (`Upgrade: websocket`): the application
    /// gets a `websocket` scope, its messages go through [`RequestIo::ws_wait`] and friends.
    pub websocket: bool,
}

/// mod_wsgi's reload checks before a request runs a loaded script: its file's mtime differs
/// from the module's `__mtime__` (or `__mtime__` was removed), or the script's module-level
/// `reload_required(resource)` returns True (an exception in it is logged, no reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptReloading {
    /// WSGIScriptReloading Off: a loaded script is used as it is.
    Off,
    /// Embedded mode: the script is re-imported in place, as mod_wsgi does.
    InPlace,
    /// Daemon mode: the request is not run ([`Outcome::ReloadRequired`]); the daemon replaces
    /// its process, as mod_wsgi restarts it. The caller has checked the script file's mtime
    /// itself ([`AppHost::script_changed`]) just before: only the hooks are checked here.
    ReplaceProcess,
}

/// How an Apache child reached the daemon group for a request (protocol `ReqHead` fields of
/// the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonAttempts {
    /// Connections made (or taken from the child's pool), the one the request came on included.
    pub connects: u32,
    /// Times the request was sent again because a daemon process was being replaced or had
    /// gone.
    pub restarts: u32,
}

/// The instants of a request before the application runs, in microseconds since the Unix
/// epoch; 0 = "no such stage" (embedded mode has no queue and no daemon), shown as 0.0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestTimes {
    /// Apache received the request (`r->request_time`).
    pub request_start_us: u64,
    /// Apache handed it to the daemon socket.
    pub queue_start_us: u64,
    /// The daemon process read it and began handling it.
    pub daemon_start_us: u64,
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
    /// [`ScriptReloading::ReplaceProcess`]: the script must be reloaded (logged); nothing of
    /// the request was run or sent.
    ReloadRequired,
}

/// The one logging entry point of this layer (tests capture lines here).
pub(crate) fn log(level: Level, msg: &str) {
    #[cfg(test)]
    tests::capture_log(level, msg);
    // log-code: none (the entry point; its callers carry the codes)
    crate::logging::log(level, msg);
}

/// [`log`] with the line formatted only when `level` can reach a log.
macro_rules! py_log_at {
    ($level:expr, $($fmt:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            // log-code: none (the macro; its callers carry the codes)
            $crate::python::log(level, &::std::format!($($fmt)+));
        }
    }};
}
pub(crate) use py_log_at;

/// [`log_detached`] with the line formatted only when `level` can reach a log.
macro_rules! py_log_detached_at {
    ($py:expr, $level:expr, $($fmt:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            // log-code: none (the macro; its callers carry the codes)
            $crate::python::log_detached($py, level, &::std::format!($($fmt)+));
        }
    }};
}
pub(crate) use py_log_detached_at;

/// Logs without holding the GIL (an error-log write may block).
pub(crate) fn log_detached(py: pyo3::Python<'_>, level: Level, msg: &str) {
    // log-code: none (the entry point; its callers carry the codes)
    py.detach(|| log(level, msg));
}

/// "(wsgi:group) " in a daemon process, "" when embedded: the prefix of this layer's own
/// messages (application output lines are logged as written).
pub(crate) fn log_prefix() -> &'static str {
    settings::process_info().log_prefix.as_str()
}

/// Where a script runs, as mod_wsgi names it in its log lines: "main interpreter of daemon
/// process 'g'", "interpreter 'NAME' of daemon process 'g'" (a sub-interpreter) or "main
/// interpreter in embedded mode", where a non-empty group, run in the main interpreter, is
/// named after it.
pub(crate) fn interp_context(app_group: &str) -> String {
    if subinterp::uses_sub_interpreter(app_group) {
        in_process(format!("interpreter '{app_group}'"))
    } else {
        main_interp_context(app_group)
    }
}

/// [`interp_context`] for code that runs in the main interpreter whatever its group names
/// (service scripts).
pub(crate) fn main_interp_context(app_group: &str) -> String {
    in_process(if app_group.is_empty() {
        "main interpreter".to_string()
    } else {
        format!("main interpreter (application group '{app_group}')")
    })
}

/// "`interp` of daemon process 'g'", or "`interp` in embedded mode".
fn in_process(interp: String) -> String {
    let group = &settings::process_info().process_group;
    if group.is_empty() {
        format!("{interp} in embedded mode")
    } else {
        format!("{interp} of daemon process '{group}'")
    }
}

/// This process as mod_wsgi names it: "daemon process 'g'", or "embedded mode" (an Apache
/// child).
pub(crate) fn process_context() -> String {
    let group = &settings::process_info().process_group;
    if group.is_empty() {
        "embedded mode".to_string()
    } else {
        format!("daemon process '{group}'")
    }
}

/// The exception's type as mod_wsgi's log line names it: the type's `tp_name` (the class
/// name for classes defined in Python and for builtins, `module.Name` for C types).
fn exception_type_name(py: pyo3::Python<'_>, err: &pyo3::PyErr) -> String {
    use pyo3::types::PyTypeMethods;
    let ty = err.get_type(py);
    // SAFETY: `ty` is a live type object we hold a reference to; tp_name is a NUL-terminated
    // string owned by the type (or null), valid while the type lives.
    let name = unsafe { (*ty.as_type_ptr()).tp_name };
    if name.is_null() {
        return "Exception".into();
    }
    // SAFETY: as above.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// mod_wsgi's header line for a Python exception raised by a WSGI script (its alerts match
/// it): "[script /p] ValueError exception raised processing WSGI script '/p' for main
/// interpreter of daemon process 'g'." A SystemExit's is "[script /p] SystemExit exception
/// raised by WSGI script '/p' for ...; ignored." The traceback follows it, one line each.
/// The path is shown lossily (`Path::display`) when it is not UTF-8.
pub(crate) fn python_error(
    py: pyo3::Python<'_>,
    err: &pyo3::PyErr,
    script_path: &(impl AsRef<std::path::Path> + ?Sized),
    app_group: &str,
) -> String {
    python_error_in(py, err, script_path, &interp_context(app_group))
}

/// [`python_error`] naming the interpreter as `context` ([`interp_context`]'s form).
pub(crate) fn python_error_in(
    py: pyo3::Python<'_>,
    err: &pyo3::PyErr,
    script_path: &(impl AsRef<std::path::Path> + ?Sized),
    context: &str,
) -> String {
    let script_path = script_path.as_ref().display();
    // SystemExit has its own header in mod_wsgi: the script asked to exit, which is ignored.
    let (raised, ignored) = if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        ("by", "; ignored")
    } else {
        ("processing", "")
    };
    format!(
        "{}[script {script_path}] {} exception raised {raised} WSGI script '{script_path}' \
         for {}{ignored}.\n{}",
        log_prefix(),
        exception_type_name(py, err),
        context,
        format_exception(py, err)
    )
}

/// A `str` with lone surrogates, which have no UTF-8 form: a file name that is not UTF-8,
/// as `os.fsdecode` shows it. Shown as its bytes would be, lossily (one U+FFFD per byte that
/// is not UTF-8), like a script path in a log line.
fn lossy_text(text: &pyo3::Bound<'_, pyo3::types::PyString>) -> String {
    use pyo3::prelude::*;
    text.call_method1("encode", ("utf-8", "surrogateescape"))
        .and_then(|b| Ok(b.cast_into::<pyo3::types::PyBytes>()?))
        .map(|b| String::from_utf8_lossy(b.as_bytes()).into_owned())
        .unwrap_or_else(|_| text.to_string_lossy().into_owned())
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
            let line = line?.cast_into::<pyo3::types::PyString>()?;
            match line.to_str() {
                Ok(line) => text.push_str(line),
                Err(_) => text.push_str(&lossy_text(&line)),
            }
        }
        Ok(text)
    })();
    match formatted {
        Ok(text) => text.trim_end_matches('\n').to_string(),
        Err(_) => format!("{err}"),
    }
}
