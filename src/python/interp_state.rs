//! What each interpreter of the process has of its own (issue 32, step 1 of the own-GIL
//! design in `subinterp.rs`): its `mod_wsgi` module, the constant part of the WSGI environ and
//! the Python classes the request path hands to applications that are defined in Python
//! (`wsgi.file_wrapper`, `mod_wsgi.RequestTimeout`). Made by `modwsgi::install` in the
//! interpreter it belongs to (the main one at initialisation, a sub-interpreter when it is
//! created), used only there and dropped there ([`forget`], before a sub-interpreter is
//! ended), so no object here crosses interpreters.

use std::sync::{Arc, Mutex, Weak};

use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyModule, PyString, PyType};

/// Whether the interpreter `py` is attached to is the main one.
pub(crate) fn in_main_interpreter(_py: Python<'_>) -> bool {
    // SAFETY: the token proves a thread state is current, so PyInterpreterState_Get returns
    // its interpreter; PyInterpreterState_Main only reads the runtime's pointer to the main
    // interpreter.
    unsafe { pyo3::ffi::PyInterpreterState_Get() == pyo3::ffi::PyInterpreterState_Main() }
}

/// One interpreter's own objects.
pub(crate) struct InterpState {
    /// Its `mod_wsgi` module (also `sys.modules['mod_rwsgi']`).
    pub(crate) module: Py<PyModule>,
    /// The environ keys whose values are the same for every request of this process.
    pub(crate) base_environ: Py<PyDict>,
    /// The interned environ keys of `environ::KNOWN_KEYS`.
    pub(crate) known_keys: Vec<Py<PyString>>,
    /// The str last made for each known key's value (`environ::new_known_values`).
    pub(crate) known_values: Vec<Option<Mutex<RememberedValue>>>,
    /// The other str constants of the request path (`environ::Fixed`).
    pub(crate) fixed: Vec<Py<PyString>>,
    /// `mod_wsgi.StartResponse` and `mod_wsgi.Write`, the classes of a request's
    /// `start_response` and of the `write` callable it returns.
    pub(crate) start_response: Py<PyType>,
    pub(crate) write: Py<PyType>,
    /// `io.TextIOWrapper` and its keyword arguments for the error-log streams (never changed:
    /// a call passes a copy to the callee).
    pub(crate) text_io_wrapper: Py<PyAny>,
    pub(crate) stream_kwargs: Py<PyDict>,
    /// `mod_wsgi.Input`, the class of `wsgi.input`.
    pub(crate) input: Py<PyType>,
    /// `mod_wsgi.WebSocket`, the class of an ASGI WebSocket request's
    /// `mod_rwsgi.websocket`.
    pub(crate) websocket: Py<PyType>,
    /// `mod_wsgi.FileWrapper`, also `environ['wsgi.file_wrapper']`.
    pub(crate) file_wrapper: Py<PyType>,
    /// `mod_wsgi.RequestTimeout`.
    pub(crate) request_timeout: Py<PyType>,
    /// `mod_wsgi.LogBuffer`, the binary stream under wsgi.errors and sys.stdout/stderr.
    pub(crate) log_buffer: Py<PyType>,
    /// Per thread (`metrics::thread_slot`), the wsgi.errors stream (and its buffer) its last
    /// request left unreferenced, for its next one (`log_object::recycle_errors`).
    pub(crate) spare_errors: Mutex<Vec<Option<SpareErrors>>>,
}

/// The bytes a known environ key's value was last made from, and the str made from them.
pub(crate) type RememberedValue = (Vec<u8>, Option<Py<PyString>>);

/// A recycled wsgi.errors: the text stream and the `LogBuffer` under it.
pub(crate) type SpareErrors = (Py<PyAny>, Py<PyAny>);

/// Interpreter id → its state (ids are never reused). Callers hold an `Arc` only while
/// attached to that interpreter, so the last one is dropped there too.
static STATES: Mutex<Vec<(i64, Arc<InterpState>)>> = Mutex::new(Vec::new());

/// The id of the interpreter whose thread state is current (0 for the main one).
pub(crate) fn current_interpreter_id(_py: Python<'_>) -> i64 {
    // SAFETY: the token proves this thread is attached, so a thread state is current and
    // PyInterpreterState_Get returns its (live) interpreter.
    unsafe { pyo3::ffi::PyInterpreterState_GetID(pyo3::ffi::PyInterpreterState_Get()) }
}

/// Makes `state` the current interpreter's. Call attached, in that interpreter.
pub(crate) fn register(py: Python<'_>, state: InterpState) {
    let id = current_interpreter_id(py);
    let replaced = {
        let mut states = STATES
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        let replaced = take(&mut states, id);
        states.push((id, Arc::new(state)));
        replaced
    };
    // Dropped attached, in this interpreter, without the lock.
    drop(replaced);
}

/// Drops the current interpreter's state (a sub-interpreter about to be ended). Call
/// attached, in that interpreter.
pub(crate) fn forget(py: Python<'_>) {
    let id = current_interpreter_id(py);
    let gone = take(
        &mut STATES
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner()),
        id,
    );
    drop(gone);
}

/// Removes and returns the entries of interpreter `id`.
fn take(states: &mut Vec<(i64, Arc<InterpState>)>, id: i64) -> Vec<(i64, Arc<InterpState>)> {
    let (gone, kept) = std::mem::take(states)
        .into_iter()
        .partition(|(other, _)| *other == id);
    *states = kept;
    gone
}

thread_local! {
    /// This thread's last lookup: interpreter id → its state (weak: the registry owns the
    /// states, and a forgotten one is not kept alive by threads that looked it up). The
    /// request path takes the state from here without the registry's lock.
    static LAST: std::cell::RefCell<(i64, Weak<InterpState>)> =
        const { std::cell::RefCell::new((-1, Weak::new())) };
}

/// The current interpreter's state; an error when `modwsgi::install` has not run in it.
pub(crate) fn current(py: Python<'_>) -> PyResult<Arc<InterpState>> {
    let id = current_interpreter_id(py);
    let cached = LAST
        .try_with(|last| {
            let last = last.borrow();
            if last.0 == id { last.1.upgrade() } else { None }
        })
        .ok()
        .flatten();
    if let Some(state) = cached {
        return Ok(state);
    }
    let state = STATES
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(other, _)| *other == id)
        .map(|(_, state)| Arc::clone(state))
        .ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(format!(
                "mod_wsgi is not initialised in this Python interpreter (id {id})"
            ))
        })?;
    let _ = LAST.try_with(|last| *last.borrow_mut() = (id, Arc::downgrade(&state)));
    Ok(state)
}
