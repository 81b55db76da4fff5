//! Python's standard streams and `wsgi.errors`, as mod_wsgi provides them: `io.TextIOWrapper`s
//! (utf-8, backslashreplace, write-through) over a binary [`LogBuffer`] that forwards complete
//! lines to the error log at Error level, like mod_wsgi's `[wsgi:error]` lines. A partial line
//! waits for its newline, `flush()`, or the end of the request.
//!
//! Inside a request a line carries `[remote ip:port]`: `wsgi.errors` remembers the address of
//! its own request (so a thread the request started still logs with it), while `sys.stdout`
//! and `sys.stderr` use the request the writing thread is serving, if any ([`RequestScope`]).
//!
//! Also the WSGIRestrictStdout / WSGIRestrictStdin replacements for `sys.stdout` and
//! `sys.stdin`, whose every use raises OSError.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::interp_state::InterpState;
use super::native_class;
use crate::logging::Level;

/// A partial line longer than this is logged without waiting for its newline.
const MAX_PARTIAL_LINE: usize = 8192;

thread_local! {
    /// "[remote ip:port] " of the request this thread is serving.
    static CURRENT_REMOTE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// "[remote ip:port] " from a request's CGI variables (None without REMOTE_ADDR).
pub(crate) fn remote_prefix<'a>(
    env: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<Arc<str>> {
    let mut addr = None;
    let mut port: &[u8] = b"0";
    for (name, value) in env {
        match name {
            b"REMOTE_ADDR" => addr = Some(value),
            b"REMOTE_PORT" => port = value,
            _ => {}
        }
    }
    let addr = addr?;
    // A kept-alive connection's requests come from one address: the text made for the
    // thread's last request is reused while its address and port are the same.
    type Last = (Vec<u8>, Vec<u8>, Option<Arc<str>>);
    thread_local! {
        static LAST: RefCell<Last> = const { RefCell::new((Vec::new(), Vec::new(), None)) };
    }
    LAST.with_borrow_mut(|(last_addr, last_port, prefix)| {
        if prefix.is_none() || last_addr != addr || last_port != port {
            last_addr.clear();
            last_addr.extend_from_slice(addr);
            last_port.clear();
            last_port.extend_from_slice(port);
            *prefix = Some(Arc::from(format!(
                "[remote {}:{}] ",
                String::from_utf8_lossy(addr),
                String::from_utf8_lossy(port)
            )));
        }
        prefix.clone()
    })
}

/// While alive, lines this thread writes to `sys.stdout`/`sys.stderr` (and records it sends
/// through `mod_wsgi.LogHandler`) carry the request's remote address.
pub(crate) struct RequestScope(());

impl RequestScope {
    pub(crate) fn enter(remote: Option<Arc<str>>) -> RequestScope {
        CURRENT_REMOTE.with(|c| *c.borrow_mut() = remote);
        RequestScope(())
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        CURRENT_REMOTE.with(|c| *c.borrow_mut() = None);
    }
}

fn current_remote() -> Option<Arc<str>> {
    CURRENT_REMOTE.with(|c| c.borrow().clone())
}

/// Logs `msg` (each of its lines) with the calling thread's request address, if any.
pub(crate) fn log_in_request(py: Python<'_>, level: Level, msg: &str) {
    // log-code: none (the entry point; its callers carry the codes)
    py.detach(|| log_in_request_detached(level, msg));
}

/// [`log_in_request`] for a caller not attached to Python.
pub(crate) fn log_in_request_detached(level: Level, msg: &str) {
    let remote = current_remote();
    for line in msg.split('\n') {
        match &remote {
            // log-code: none (what the application wrote, passed on as it is)
            Some(prefix) => super::log(level, &format!("{prefix}{line}")),
            // log-code: none (what the application wrote, passed on as it is)
            None => super::log(level, line),
        }
    }
}

/// `mod_wsgi.LogBuffer`, the binary writer under the text streams (wsgi.errors, sys.stdout,
/// sys.stderr), defined in each interpreter (`native_class.rs`) over the Rust [`LogBuffer`];
/// its member `name` is the stream's name.
static SPEC: native_class::Spec<LogBuffer> = native_class::Spec {
    name: c"mod_wsgi.LogBuffer",
    doc: c"The binary stream under wsgi.errors, sys.stdout and sys.stderr: lines go to the \
           Apache error log.",
    methods: Some(&METHODS.0),
    members: Some(&MEMBERS.0),
    slots: native_class::no_slots,
    _value: std::marker::PhantomData,
};

static METHODS: native_class::Table<ffi::PyMethodDef, 10> = native_class::Table([
    native_class::method!(c"write", py_write, c"write(data): log the complete lines."),
    native_class::method!(c"writelines", py_writelines, c"writelines(lines)"),
    native_class::method!(c"flush", py_flush, c"flush(): log a pending partial line."),
    native_class::method!(
        c"close",
        py_flush,
        c"close(): flush (the stream stays usable)."
    ),
    native_class::method!(c"isatty", py_false, c"False"),
    native_class::method!(c"readable", py_false, c"False"),
    native_class::method!(c"seekable", py_false, c"False"),
    native_class::method!(c"writable", py_true, c"True"),
    native_class::method!(c"fileno", py_fileno, c"OSError: no file descriptor."),
    native_class::METHODS_END,
]);

static MEMBERS: native_class::Table<ffi::PyMemberDef, 2> = native_class::Table([
    ffi::PyMemberDef {
        name: c"name".as_ptr(),
        type_code: ffi::Py_T_OBJECT_EX,
        offset: native_class::MEMBER_OFFSET,
        flags: ffi::Py_READONLY,
        doc: c"The stream's name.".as_ptr(),
    },
    ffi::PyMemberDef {
        name: std::ptr::null(),
        type_code: 0,
        offset: 0,
        flags: 0,
        doc: std::ptr::null(),
    },
]);

/// Defines `mod_wsgi.LogBuffer` in the current interpreter (with its class attributes
/// `closed = False` and `mode = "wb"`).
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    let class = native_class::define(py, &SPEC)?;
    class.setattr("closed", false)?;
    class.setattr("mode", "wb")?;
    Ok(class)
}

fn required<'py>(func: &str, arg: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    arg.ok_or_else(|| {
        PyTypeError::new_err(format!("{func}() takes exactly one argument (0 given)"))
    })
}

native_class::fastcall_method! {
    fn py_write(py, buffer: &LogBuffer, data) "write" {
        let written = buffer.write(py, &required("write", data)?)?;
        Ok(written.into_pyobject(py)?.into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_writelines(py, buffer: &LogBuffer, lines) "writelines" {
        for item in required("writelines", lines)?.try_iter()? {
            with_bytes(&item?, |bytes| buffer.write_bytes(py, bytes))?;
        }
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    /// `flush()` and `close()`.
    fn py_flush(py, buffer: &LogBuffer) "flush" {
        buffer.flush(py);
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    /// `isatty()`, `readable()`, `seekable()`.
    fn py_false(py, _buffer: &LogBuffer) "method" {
        Ok(false.into_pyobject(py)?.to_owned().into_ptr())
    }
}

native_class::fastcall_method! {
    /// `writable()`.
    fn py_true(py, _buffer: &LogBuffer) "writable" {
        Ok(true.into_pyobject(py)?.to_owned().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_fileno(py, buffer: &LogBuffer) "fileno" {
        Err(PyOSError::new_err(format!(
            "{} has no file descriptor (it writes to the error log)",
            buffer.name
        )))
    }
}

/// The Rust state of one `LogBuffer`: bytes in, error-log lines out.
pub(crate) struct LogBuffer {
    name: &'static str,
    /// Fixed "[remote ...] " (a request's wsgi.errors); `None` = the writing thread's request.
    /// Set again when a recycled wsgi.errors serves another request ([`request_errors`]).
    remote: Mutex<Option<Arc<str>>>,
    pending: Mutex<Vec<u8>>,
}

impl LogBuffer {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends bytes and returns the complete lines to log.
    fn take_lines(&self, data: &[u8]) -> Vec<String> {
        let mut pending = self.pending();
        let mut lines = Vec::new();
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if pending.is_empty() {
                lines.push(String::from_utf8_lossy(&rest[..pos]).into_owned());
            } else {
                pending.extend_from_slice(&rest[..pos]);
                lines.push(String::from_utf8_lossy(&pending).into_owned());
                pending.clear();
            }
            rest = &rest[pos + 1..];
        }
        pending.extend_from_slice(rest);
        if pending.len() > MAX_PARTIAL_LINE {
            lines.push(String::from_utf8_lossy(&pending).into_owned());
            pending.clear();
        }
        lines
    }

    fn emit(&self, py: Python<'_>, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let remote = self
            .remote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .or_else(current_remote);
        py.detach(|| {
            for line in &lines {
                match &remote {
                    // log-code: none (what the application wrote, passed on as it is)
                    Some(prefix) => super::log(Level::Error, &format!("{prefix}{line}")),
                    // log-code: none (what the application wrote, passed on as it is)
                    None => super::log(Level::Error, line),
                }
            }
        });
    }

    fn write_bytes(&self, py: Python<'_>, data: &[u8]) {
        let lines = self.take_lines(data);
        self.emit(py, lines);
    }
}

/// Runs `f` over the bytes of a bytes-like object (bytes, bytearray, memoryview, any buffer).
fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(f(&b.to_vec()));
    }
    let view = PyMemoryView::from(obj).map_err(|_| {
        PyTypeError::new_err(format!(
            "a bytes-like object is required, not '{}'",
            type_name(obj)
        ))
    })?;
    let copy = view.call_method0("tobytes")?;
    let bytes = copy.cast::<PyBytes>()?;
    Ok(f(bytes.as_bytes()))
}

impl LogBuffer {
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        with_bytes(data, |bytes| {
            self.write_bytes(py, bytes);
            bytes.len()
        })
    }

    /// Logs a pending partial line.
    fn flush(&self, py: Python<'_>) {
        let rest = std::mem::take(&mut *self.pending());
        if !rest.is_empty() {
            let line = String::from_utf8_lossy(&rest).into_owned();
            self.emit(py, vec![line]);
        }
    }
}

/// A text stream to the error log: `io.TextIOWrapper(LogBuffer, "utf-8", "backslashreplace",
/// write_through=True)`. `remote` fixes the request address (wsgi.errors); `None` uses the
/// writing thread's request (sys.stdout, sys.stderr).
pub(crate) fn new_stream<'py>(
    py: Python<'py>,
    name: &'static str,
    remote: Option<Arc<str>>,
) -> PyResult<Bound<'py, PyAny>> {
    // The interpreter's class and io.TextIOWrapper arguments; sys.stdout/stderr are made
    // while it is being set up, before its state is registered: then they are made here.
    if let Ok(state) = super::interp_state::current(py) {
        return stream_in(py, &state, name, remote).map(|errors| errors.stream);
    }
    let buffer = LogBuffer {
        name,
        remote: Mutex::new(remote),
        pending: Mutex::new(Vec::new()),
    };
    let name = pyo3::types::PyString::new(py, name).into_any();
    let buffer = native_class::new(&define(py)?, buffer, Some(name))?;
    let stream = text_io_wrapper(py)?.call((buffer,), Some(&stream_kwargs(py)?))?;
    let _ = stream.setattr("mode", "w");
    Ok(stream)
}

/// A new text stream named `name` over a new `LogBuffer`, with the interpreter's classes.
fn stream_in<'py>(
    py: Python<'py>,
    state: &InterpState,
    name: &'static str,
    remote: Option<Arc<str>>,
) -> PyResult<RequestErrors<'py>> {
    let buffer = LogBuffer {
        name,
        remote: Mutex::new(remote),
        pending: Mutex::new(Vec::new()),
    };
    let member = pyo3::types::PyString::new(py, name).into_any();
    let buffer = native_class::new(state.log_buffer.bind(py), buffer, Some(member))?;
    let stream = state
        .text_io_wrapper
        .bind(py)
        .call((&buffer,), Some(state.stream_kwargs.bind(py)))?;
    // As on the streams Python itself opens.
    let _ = stream.setattr(
        state.fixed(py, super::environ::Fixed::mode),
        state.fixed(py, super::environ::Fixed::w),
    );
    Ok(RequestErrors { stream, buffer })
}

/// A request's `wsgi.errors`: the text stream, and the `LogBuffer` under it.
pub(crate) struct RequestErrors<'py> {
    pub(crate) stream: Bound<'py, PyAny>,
    buffer: Bound<'py, PyAny>,
}

/// Threads (by `metrics::thread_slot`) past this many keep no wsgi.errors for their next
/// request.
const SPARE_ERRORS_THREADS: usize = 1024;

/// `wsgi.errors` for a request from `remote`: the one this thread's last request in this
/// interpreter left unreferenced ([`recycle_errors`]), given the new address, or a new one. A
/// `TextIOWrapper` costs more to make and finalise than the rest of a small request's
/// environ.
pub(crate) fn request_errors<'py>(
    py: Python<'py>,
    state: &InterpState,
    remote: Option<Arc<str>>,
) -> PyResult<RequestErrors<'py>> {
    let slot = super::metrics::thread_slot();
    let spare = state
        .spare_errors
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(slot)
        .and_then(Option::take);
    if let Some((stream, buffer)) = spare {
        let buffer = buffer.into_bound(py);
        // SAFETY: `buffer` is an instance of this interpreter's LogBuffer class (made below)
        // and outlives the borrow.
        let value = unsafe { native_class::value::<LogBuffer>(buffer.as_ptr()) }?;
        *value.remote.lock().unwrap_or_else(|e| e.into_inner()) = remote;
        return Ok(RequestErrors {
            stream: stream.into_bound(py),
            buffer,
        });
    }
    stream_in(py, state, "<wsgi.errors>", remote)
}

/// Keeps a request's flushed `wsgi.errors` for a later request when no other reference to it
/// or its buffer is left (nothing of the request can then see it again) and it is as it was
/// made: no attribute added, not reconfigured. Otherwise it is simply dropped. Not on a
/// free-threaded build, whose reference counts other threads may be changing.
pub(crate) fn recycle_errors(py: Python<'_>, state: &InterpState, errors: RequestErrors<'_>) {
    if cfg!(Py_GIL_DISABLED) {
        return;
    }
    let RequestErrors { stream, buffer } = errors;
    // SAFETY: attached; both objects are live (owned here). The stream holds one reference
    // to its buffer, this code the other.
    let unshared =
        unsafe { ffi::Py_REFCNT(stream.as_ptr()) == 1 && ffi::Py_REFCNT(buffer.as_ptr()) == 2 };
    if !unshared || !as_made(state, &stream).unwrap_or(false) {
        return;
    }
    let slot = super::metrics::thread_slot();
    if slot >= SPARE_ERRORS_THREADS {
        return;
    }
    let mut spare = state
        .spare_errors
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    if spare.len() <= slot {
        spare.resize_with(slot + 1, || None);
    }
    // What it replaces (none: this thread took it) is dropped here, attached.
    spare[slot] = Some((stream.unbind(), buffer.unbind()));
}

/// Whether `stream` still has only the attribute and the configuration [`request_errors`]
/// gave it ([`stream_kwargs`]; `reconfigure()` is the only way to change them).
fn as_made(state: &InterpState, stream: &Bound<'_, PyAny>) -> PyResult<bool> {
    use super::environ::Fixed;
    let py = stream.py();
    let text_is = |name: Fixed, want: &std::ffi::CStr| -> PyResult<bool> {
        let value = stream.getattr(state.fixed(py, name))?;
        // SAFETY: attached; `value` is a live str and `want` NUL-terminated ASCII; the call
        // only compares them.
        Ok(value.is_instance_of::<pyo3::types::PyString>()
            && unsafe { ffi::PyUnicode_CompareWithASCIIString(value.as_ptr(), want.as_ptr()) } == 0)
    };
    let flag_is = |name: Fixed, want: bool| -> PyResult<bool> {
        Ok(stream
            .getattr(state.fixed(py, name))?
            .is(pyo3::types::PyBool::new(py, want).as_any()))
    };
    if !text_is(Fixed::encoding, c"utf-8")?
        || !text_is(Fixed::errors_attr, c"backslashreplace")?
        || !flag_is(Fixed::write_through, true)?
        || !flag_is(Fixed::line_buffering, false)?
    {
        return Ok(false);
    }
    // SAFETY: attached; `stream` is live and a TextIOWrapper, which has an instance dict;
    // the call returns a new reference to it (made if missing) or null with an error set.
    let dict = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_GenericGetDict(stream.as_ptr(), std::ptr::null_mut()),
        )?
    };
    Ok(dict.len()? == 1)
}

/// `io.TextIOWrapper` of the current interpreter.
pub(crate) fn text_io_wrapper(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("io")?.getattr("TextIOWrapper")
}

/// The keyword arguments of `io.TextIOWrapper` for an error-log stream.
pub(crate) fn stream_kwargs(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let kwargs = pyo3::types::PyDict::new(py);
    // `as_made` checks a recycled wsgi.errors against these.
    kwargs.set_item("encoding", "utf-8")?;
    kwargs.set_item("errors", "backslashreplace")?;
    // Each write goes straight to the buffer, which splits lines itself: with
    // line_buffering, TextIOWrapper would also flush the buffer after every newline and so log
    // a partial line that follows it early.
    kwargs.set_item("write_through", true)?;
    Ok(kwargs)
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// `sys.stdout` under WSGIRestrictStdout On and `sys.stdin` under WSGIRestrictStdin On: every
/// attribute access, iteration or `with` raises OSError naming the stream and the directive.
/// A Python class defined in each interpreter that installs one (not a `#[pyclass]`, whose one
/// type object pyo3 shares between all interpreters of the process; see `interp_state.rs`).
const RESTRICTED_PY: &std::ffi::CStr = cr#"
def restricted(message, text):
    class Restricted:
        __slots__ = ()
        _mod_rwsgi_restricted = True

        def __getattribute__(self, name):
            raise OSError(message)

        def __iter__(self):
            raise OSError(message)

        def __next__(self):
            raise OSError(message)

        def __enter__(self):
            raise OSError(message)

        def __exit__(self, *args):
            raise OSError(message)

        def __repr__(self):
            return text

    return Restricted()
"#;

/// Whether `obj` is a restricted stream (its class, looked up on the type: the instance
/// refuses every attribute).
pub(crate) fn is_restricted(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .getattr("_mod_rwsgi_restricted")
        .is_ok_and(|v| v.is_truthy().unwrap_or(false))
}

/// A restricted stream object of the current interpreter.
fn restricted<'py>(
    py: Python<'py>,
    stream: &str,
    directive: &str,
    uses: &str,
    advice: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let globals = pyo3::types::PyDict::new(py);
    globals.set_item("__name__", "mod_wsgi")?;
    py.run(RESTRICTED_PY, Some(&globals), None)?;
    let make = globals
        .get_item("restricted")?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("restricted not defined"))?;
    make.call1((
        format!(
            "{stream} access restricted by mod_rwsgi: {directive} is On, so a WSGI application \
             must not use {uses}. {advice}"
        ),
        format!("<restricted {stream} ({directive} On)>"),
    ))
}

/// Installs the restricted stdout as `target.stdout` (`target` is `sys` in production, or any
/// namespace in tests).
pub fn install_restricted_stdout(target: &Bound<'_, PyAny>) -> PyResult<()> {
    let restricted = restricted(
        target.py(),
        "sys.stdout",
        "WSGIRestrictStdout",
        "print() or sys.stdout",
        "Write to sys.stderr or environ['wsgi.errors'], use the logging module, or set \
         WSGIRestrictStdout Off.",
    )?;
    target.setattr("stdout", restricted)
}

/// Installs the restricted stdin as `target.stdin`.
pub(crate) fn install_restricted_stdin(target: &Bound<'_, PyAny>) -> PyResult<()> {
    let restricted = restricted(
        target.py(),
        "sys.stdin",
        "WSGIRestrictStdin",
        "input() or sys.stdin",
        "A request's body is environ['wsgi.input']; or set WSGIRestrictStdin Off.",
    )?;
    target.setattr("stdin", restricted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> LogBuffer {
        LogBuffer {
            name: "test",
            remote: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn lines_are_split_across_writes_and_partial_lines_wait() {
        let b = buffer();
        assert_eq!(b.take_lines(b"one\ntw"), ["one"]);
        assert_eq!(b.take_lines(b"o\n\nthree"), ["two", ""]);
        assert_eq!(*b.pending(), b"three");
        assert_eq!(b.take_lines(b"\n"), ["three"]);
        assert!(b.pending().is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_long_partial_lines_are_logged() {
        let b = buffer();
        assert_eq!(b.take_lines(b"caf\xe9\n"), ["caf\u{fffd}"]);
        let long = vec![b'x'; MAX_PARTIAL_LINE + 1];
        let lines = b.take_lines(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_PARTIAL_LINE + 1);
        assert!(b.pending().is_empty());
    }

    #[test]
    fn remote_prefix_names_address_and_port() {
        let env = |pairs: &[(&str, &str)]| -> crate::pair_list::PairList {
            pairs.iter().copied().collect()
        };
        assert_eq!(
            remote_prefix(&env(&[("REMOTE_PORT", "5000"), ("REMOTE_ADDR", "::1")])).as_deref(),
            Some("[remote ::1:5000] ")
        );
        assert_eq!(
            remote_prefix(&env(&[("REMOTE_ADDR", "10.0.0.1")])).as_deref(),
            Some("[remote 10.0.0.1:0] ")
        );
        assert_eq!(remote_prefix(&env(&[("REMOTE_PORT", "1")])), None);
    }

    #[test]
    fn request_scope_sets_and_clears_the_thread_address() {
        {
            let _scope = RequestScope::enter(Some(Arc::from("[remote a:1] ")));
            assert_eq!(current_remote().as_deref(), Some("[remote a:1] "));
        }
        assert_eq!(current_remote(), None);
    }
}
