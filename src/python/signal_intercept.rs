//! WSGIRestrictSignal On (mod_wsgi's default): `signal.signal` is replaced by an object that
//! ignores the registration, logs a warning naming the signal with the caller's Python stack,
//! and returns the handler currently installed, so code that registers handlers at import
//! (Webware's `RegisterSignalHandler`, many libraries) keeps working on request threads, where
//! the real `signal.signal` raises ValueError. The server's own signal handling stays intact.
//!
//! In a process forked from this one (e.g. by `multiprocessing`) calls pass through to the real
//! function: that process is no longer managed by mod_rwsgi.

use pyo3::prelude::*;

use super::{log_object, log_prefix};
use crate::logging::Level;

/// `signal.signal(signalnum, handler, /)` of a process with the restriction: `wrapped` is the
/// real function, `pid` the process the restriction applies to.
fn intercept<'py>(
    py: Python<'py>,
    wrapped: &Py<PyAny>,
    pid: u32,
    signalnum: &Bound<'py, PyAny>,
    handler: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if std::process::id() != pid {
        return wrapped.bind(py).call1((signalnum, handler));
    }
    let signal = py.import("signal")?;
    // Validates the number as the real function would (ValueError for a bad one), and the
    // handler (TypeError). None is accepted too: it is what `getsignal` returns for the
    // daemon's own handlers, so code that puts back the handler it got must not fail.
    let current = signal.call_method1("getsignal", (signalnum,))?;
    if !handler.is_callable()
        && !handler.is_none()
        && !handler.eq(signal.getattr("SIG_DFL")?)?
        && !handler.eq(signal.getattr("SIG_IGN")?)?
    {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object",
        ));
    }
    let name = signal
        .getattr("Signals")
        .and_then(|s| s.call1((signalnum,)))
        .and_then(|s| s.getattr("name"))
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| format!("signal {signalnum}"));
    let stack = py
        .import("traceback")
        .and_then(|t| t.call_method0("format_stack"))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_default();
    let msg = format!(
        "{}Ignoring signal.signal({name}, ...) called by the application: mod_rwsgi manages \
         signals (WSGIRestrictSignal On; set it Off to let applications install handlers). \
         Called from:\n{}",
        log_prefix(),
        stack.trim_end_matches('\n')
    );
    log_object::log_in_request(py, Level::Warning, &format!("RW0108: {msg}"));
    Ok(current)
}

/// Where the real `signal.signal` is kept in the `signal` module while it is intercepted.
const ORIGINAL: &str = "_mod_rwsgi_original_signal";

/// Replaces the current interpreter's `signal.signal` with the intercepting function: a
/// built-in function made in this interpreter (`PyCFunction` over a capsule), not an instance
/// of a `#[pyclass]` whose type object pyo3 shares between all interpreters of the process
/// (see `interp_state.rs`). The closure holds no Python object: the real function stays in
/// the `signal` module ([`ORIGINAL`]), because Py_FinalizeEx frees the closure while pyo3
/// does not count the thread as attached, and pyo3 (built without its reference pool) aborts
/// on a `Py<T>` dropped then.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?;
    if !signal.hasattr(ORIGINAL)? {
        signal.setattr(ORIGINAL, signal.getattr("signal")?)?;
    }
    let pid = std::process::id();
    let function = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"signal"),
        Some(c"signal(signalnum, handler, /): intercepted by mod_rwsgi (WSGIRestrictSignal On)."),
        move |args: &Bound<'_, pyo3::types::PyTuple>,
              kwargs: Option<&Bound<'_, pyo3::types::PyDict>>|
              -> PyResult<Py<PyAny>> {
            super::native_class::catch_panic("signal.signal", || {
                let py = args.py();
                if kwargs.is_some_and(|k| !k.is_empty()) || args.len() != 2 {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "signal() takes exactly 2 positional arguments ({} given)",
                        args.len()
                    )));
                }
                let (signalnum, handler) = (args.get_item(0)?, args.get_item(1)?);
                let wrapped = py.import("signal")?.getattr(ORIGINAL)?.unbind();
                Ok(intercept(py, &wrapped, pid, &signalnum, &handler)?.unbind())
            })
        },
    )?;
    signal.setattr("signal", function)
}
