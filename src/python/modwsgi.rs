//! The `mod_wsgi` Python module (also importable as `mod_rwsgi`): process facts, the
//! FileWrapper type, `RequestTimeout`, `LogHandler` and the event API (`subscribe_events`,
//! `subscribe_shutdown`).
//!
//! As in mod_wsgi, subscribers are kept in the module's `event_callbacks` and
//! `shutdown_callbacks` lists and called as `callback(name, **event)`; a callback returning a
//! dict merges it into the event seen by the next callbacks. Exceptions are logged, never
//! propagated.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyTuple};

use super::native_class;
use super::settings::ProcessInfo;
use super::{MOD_WSGI_VERSION, format_exception, log_detached, log_prefix};
use crate::logging::Level;

/// `mod_wsgi.RequestTimeout`, defined in each interpreter (see `interp_state.rs`).
const REQUEST_TIMEOUT_PY: &std::ffi::CStr = cr#"
class RequestTimeout(BaseException):
    """Raised in a request's thread when it ran past request-timeout (interrupt-timeout is set)."""
"#;

/// Whether `err` is the current interpreter's `mod_wsgi.RequestTimeout`.
pub(crate) fn is_request_timeout(py: Python<'_>, err: &PyErr) -> bool {
    super::interp_state::current(py)
        .is_ok_and(|state| err.is_instance(py, state.request_timeout.bind(py)))
}

/// Creates the module of the current interpreter (the main one, or the sub-interpreter of
/// application group `app_group`) and inserts it in its sys.modules as `mod_wsgi` and
/// `mod_rwsgi`. Built from functions and classes, not a `#[pymodule]` (whose import pyo3
/// refuses in a second interpreter).
pub(crate) fn install(py: Python<'_>, info: &ProcessInfo, app_group: &str) -> PyResult<()> {
    let m = PyModule::new(py, "mod_wsgi")?;
    m.add("version", MOD_WSGI_VERSION)?;
    m.add("process_group", info.process_group.as_str())?;
    m.add("application_group", app_group)?;
    m.add("maximum_processes", info.processes)?;
    m.add("threads_per_process", info.threads)?;
    let file_wrapper = super::file_wrapper::define(py)?;
    m.add("FileWrapper", &file_wrapper)?;
    let request_timeout = {
        let globals = PyDict::new(py);
        globals.set_item("__name__", "mod_wsgi")?;
        py.run(REQUEST_TIMEOUT_PY, Some(&globals), None)?;
        globals
            .get_item("RequestTimeout")?
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("RequestTimeout not defined"))?
            .cast_into::<pyo3::types::PyType>()?
    };
    m.add("RequestTimeout", &request_timeout)?;
    m.add("event_callbacks", PyList::empty(py))?;
    m.add("shutdown_callbacks", PyList::empty(py))?;
    m.add_function(wrap_pyfunction!(subscribe_events, &m)?)?;
    m.add_function(wrap_pyfunction!(subscribe_shutdown, &m)?)?;
    m.add_function(wrap_pyfunction!(log_record, &m)?)?;
    m.add_function(wrap_pyfunction!(module_getattr, &m)?)?;
    m.add_function(wrap_pyfunction!(request_data, &m)?)?;
    m.add_function(wrap_pyfunction!(start_recording_metrics, &m)?)?;
    m.add_function(wrap_pyfunction!(request_metrics, &m)?)?;
    m.add_function(wrap_pyfunction!(process_metrics, &m)?)?;
    m.add_function(wrap_pyfunction!(server_metrics, &m)?)?;
    super::metrics::init(info.threads.max(1) as usize);
    let modules = py.import("sys")?.getattr("modules")?;
    adopt_companion_package_path(py, &m);
    modules.set_item("mod_wsgi", &m)?;
    modules.set_item("mod_rwsgi", &m)?;
    super::interp_state::register(
        py,
        super::interp_state::InterpState {
            base_environ: super::environ::new_base(py, &file_wrapper)?,
            known_keys: super::environ::new_known_keys(py),
            known_values: super::environ::new_known_values(),
            fixed: super::environ::new_fixed(py),
            text_io_wrapper: super::log_object::text_io_wrapper(py)?.unbind(),
            stream_kwargs: super::log_object::stream_kwargs(py)?.unbind(),
            start_response: super::start_response::define(py)?.unbind(),
            write: super::start_response::define_write(py)?.unbind(),
            input: super::input::define(py)?.unbind(),
            websocket: super::websocket::define(py)?.unbind(),
            log_buffer: super::log_object::define(py)?.unbind(),
            spare_errors: std::sync::Mutex::new(Vec::new()),
            module: m.unbind(),
            file_wrapper: file_wrapper.unbind(),
            request_timeout: request_timeout.unbind(),
        },
    );
    Ok(())
}

/// The `mod_wsgi` package pip installs (mod_wsgi-express: `mod_wsgi.express`,
/// `mod_wsgi.server` ...) has the name of this module. As mod_wsgi does, its `__path__` is
/// copied onto this module so its subpackages stay importable (the handler script
/// `mod_wsgi-express setup-server` writes imports `mod_wsgi.express.runtime`). Not
/// installed: nothing to do; failing to import: logged with its traceback.
fn adopt_companion_package_path(py: Python<'_>, m: &Bound<'_, PyModule>) {
    match py.import("mod_wsgi") {
        Ok(package) => {
            if let Ok(path) = package.getattr("__path__") {
                let _ = m.setattr("__path__", path);
            }
        }
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) => {}
        Err(e) => {
            let msg = format!(
                "{}the installed 'mod_wsgi' Python package failed to import, so its \
                 subpackages (mod_wsgi.express ...) are not available:\n{}",
                log_prefix(),
                format_exception(py, &e)
            );
            log_detached(py, Level::Error, &format!("RW0116: {msg}"));
        }
    }
}

/// `start_recording_metrics()`: from now on finished requests are recorded for
/// `request_metrics()`; `process_metrics()` answers. Idempotent.
#[pyfunction]
fn start_recording_metrics() -> PyResult<()> {
    native_class::catch_panic("start_recording_metrics", || {
        super::metrics::start_recording();
        Ok(())
    })
}

/// `request_metrics()`: the window since the last call, drained; None until recording.
#[pyfunction]
fn request_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    native_class::catch_panic("request_metrics", || super::metrics::request_metrics(py))
}

/// `process_metrics()`: cumulative figures of this process; None until recording.
#[pyfunction]
fn process_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    native_class::catch_panic("process_metrics", || super::metrics::process_metrics(py))
}

/// `server_metrics()`: Apache's scoreboard (processes and workers), when WSGIServerMetrics
/// On (embedded) / server-metrics=on (daemon group) opens the gate; None otherwise.
#[pyfunction]
fn server_metrics(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    native_class::catch_panic("server_metrics", || super::metrics::server_metrics(py))
}

/// The request the calling thread is serving: its id and its `request_data()` dict.
struct Current {
    request_id: Option<String>,
    data: Option<Py<PyDict>>,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Current>> = const { std::cell::RefCell::new(None) };
}

/// Marks the calling thread as serving a request until dropped (`request_data()` works,
/// events carry the request's id and data).
pub(crate) struct RequestContext {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RequestContext {
    pub(crate) fn enter(request_id: Option<String>) -> RequestContext {
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Current {
                request_id,
                data: None,
            })
        });
        RequestContext {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        // Dropped attached (the context lives inside the request's attach, in its
        // interpreter): the dict (if any) is released here, at once.
        let _ = CURRENT.try_with(|c| c.borrow_mut().take());
    }
}

/// The current request's data dict, made on first use; None outside a request.
fn current_data(py: Python<'_>) -> Option<Bound<'_, PyDict>> {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let current = current.as_mut()?;
        let data = current.data.get_or_insert_with(|| PyDict::new(py).unbind());
        Some(data.bind(py).clone())
    })
}

/// Adds `request_id` (when Apache gave one) and `request_data` to an event.
pub(crate) fn set_request_fields(py: Python<'_>, event: &Bound<'_, PyDict>) -> PyResult<()> {
    let request_id = CURRENT.with(|c| c.borrow().as_ref().and_then(|c| c.request_id.clone()));
    if let Some(id) = request_id {
        event.set_item("request_id", id)?;
    }
    if let Some(data) = current_data(py) {
        event.set_item("request_data", data)?;
    }
    Ok(())
}

/// `mod_wsgi.request_data()`: the per-request dict shared by the application and the
/// request's event subscribers.
#[pyfunction]
fn request_data(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    native_class::catch_panic("request_data", || {
        current_data(py).ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err("no active request for the current thread")
        })
    })
}

/// "request_exception" for an exception the application raised (logged already).
pub(crate) fn publish_exception(py: Python<'_>, err: &PyErr) {
    let event = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        set_request_fields(py, &event)?;
        let info = PyTuple::new(
            py,
            [
                err.get_type(py).into_any(),
                err.value(py).clone().into_any(),
                err.traceback(py)
                    .map_or_else(|| py.None().into_bound(py), |tb| tb.into_any()),
            ],
        )?;
        event.set_item("exception_info", info)
    })();
    if filled.is_ok() {
        publish(py, "request_exception", &event);
    }
}

/// "response_started" when the application calls start_response.
pub(crate) fn publish_response_started(
    py: Python<'_>,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    exc_info: Option<&Bound<'_, PyAny>>,
) {
    let event = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        set_request_fields(py, &event)?;
        event.set_item("response_status", status)?;
        event.set_item("response_headers", headers)?;
        event.set_item("exception_info", exc_info)
    })();
    if filled.is_ok() {
        publish(py, "response_started", &event);
    }
}

/// Apache's level for a Python `logging` level; levels between the standard ones round down.
pub(crate) fn apache_level(levelno: i64) -> Level {
    match levelno {
        50.. => Level::Crit,
        40..50 => Level::Error,
        30..40 => Level::Warning,
        20..30 => Level::Info,
        _ => Level::Debug,
    }
}

/// What `LogHandler.emit` calls: logs a formatted record at its Apache level (so
/// `LogLevel rwsgi:...` filters it), with the request's address inside a request.
#[pyfunction]
#[pyo3(name = "_log_record")]
fn log_record(py: Python<'_>, levelno: i64, message: &str) -> PyResult<()> {
    native_class::catch_panic("_log_record", || {
        // log-code: none (a logging record of the application)
        super::log_object::log_in_request(py, apache_level(levelno), message);
        Ok(())
    })
}

const LOG_HANDLER_SOURCE: &std::ffi::CStr = cr#"
import logging

class LogHandler(logging.Handler):
    """A logging handler writing to Apache's error log at the record's level: CRITICAL as
    crit, ERROR as error, WARNING as warn, INFO as info, DEBUG as debug, so that Apache's
    LogLevel filters it."""

    def emit(self, record):
        try:
            _log_record(record.levelno, self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
"#;

/// The module's `__getattr__` (PEP 562): `LogHandler` is made on first use, so processes
/// that never ask for it do not import `logging`.
#[pyfunction]
#[pyo3(name = "__getattr__")]
fn module_getattr<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    native_class::catch_panic("__getattr__", || make_log_handler(py, name))
}

/// [`module_getattr`]'s body.
fn make_log_handler<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    if name != "LogHandler" {
        return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
            "module 'mod_wsgi' has no attribute '{name}'"
        )));
    }
    let m = module(py)?;
    let globals = PyDict::new(py);
    globals.set_item("__name__", "mod_wsgi")?;
    globals.set_item("_log_record", m.getattr("_log_record")?)?;
    py.run(LOG_HANDLER_SOURCE, Some(&globals), None)?;
    let class = globals
        .get_item("LogHandler")?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("LogHandler not defined"))?;
    m.setattr("LogHandler", &class)?;
    Ok(class)
}

/// The `mod_wsgi` module of the interpreter whose thread state is current.
fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    Ok(super::interp_state::current(py)?.module.bind(py).clone())
}

/// Drops the current sub-interpreter's state, its `mod_wsgi` module among it (before the
/// interpreter is ended). Call attached, in that interpreter.
pub(crate) fn forget_sub_module(py: Python<'_>) {
    super::interp_state::forget(py);
}

fn subscribe<'py>(list_name: &str, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = callback.py();
    if !callback.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "callback must be callable",
        ));
    }
    module(py)?
        .getattr(list_name)?
        .call_method1("append", (&callback,))?;
    Ok(callback)
}

/// Registers `callback(name, **event)` for every event; returns it (usable as a decorator).
#[pyfunction]
fn subscribe_events(callback: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    native_class::catch_panic("subscribe_events", || {
        subscribe("event_callbacks", callback)
    })
}

/// Registers `callback("process_stopping", **event)` for process shutdown; returns it.
#[pyfunction]
fn subscribe_shutdown(callback: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    native_class::catch_panic("subscribe_shutdown", || {
        subscribe("shutdown_callbacks", callback)
    })
}

fn callbacks<'py>(py: Python<'py>, list_name: &str) -> Option<Bound<'py, PyList>> {
    let list = module(py).ok()?.getattr(list_name).ok()?;
    list.cast_into::<PyList>().ok()
}

/// Cheap check so requests skip building event payloads when nobody listens.
pub(crate) fn has_event_subscribers(py: Python<'_>) -> bool {
    callbacks(py, "event_callbacks").is_some_and(|l| !l.is_empty())
}

/// Calls each callback of a snapshot of `list_name` as `callback(name, **event)`.
fn call_list(py: Python<'_>, list_name: &str, name: &str, event: &Bound<'_, PyDict>) {
    let Some(list) = callbacks(py, list_name) else {
        return;
    };
    let Ok(snapshot) = list.get_slice(0, list.len()).cast_into::<PyList>() else {
        return;
    };
    let args = PyTuple::new(py, [name]).expect("a one-element tuple");
    for callback in snapshot.iter() {
        match callback.call(&args, Some(event)) {
            Ok(result) => {
                if let Ok(update) = result.cast::<PyDict>()
                    && let Err(e) = event.update(update.as_mapping())
                {
                    log_callback_error(py, name, &e);
                }
            }
            Err(e) => log_callback_error(py, name, &e),
        }
    }
}

fn log_callback_error(py: Python<'_>, name: &str, err: &PyErr) {
    let msg = format!(
        "{}Exception occurred within event callback for '{name}'.\n{}",
        log_prefix(),
        format_exception(py, err)
    );
    log_detached(py, Level::Error, &format!("RW0104: {msg}"));
}

/// Publishes an event to `subscribe_events` callbacks.
pub(crate) fn publish(py: Python<'_>, name: &str, event: &Bound<'_, PyDict>) {
    call_list(py, "event_callbacks", name, event);
}

/// "process_stopping" to event subscribers, then the shutdown callbacks (each run once: the
/// shutdown list is emptied).
pub(crate) fn publish_process_stopping(py: Python<'_>, reason: &str) {
    let event = PyDict::new(py);
    let _ = event.set_item("shutdown_reason", reason);
    call_list(py, "event_callbacks", "process_stopping", &event);
    call_list(py, "shutdown_callbacks", "process_stopping", &event);
    if let Some(list) = callbacks(py, "shutdown_callbacks") {
        let _ = list.call_method0("clear");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels_map_to_apache_levels_rounding_down() {
        let cases = [
            (50, Level::Crit),
            (60, Level::Crit),
            (40, Level::Error),
            (45, Level::Error),
            (30, Level::Warning),
            (20, Level::Info),
            (25, Level::Info),
            (10, Level::Debug),
            (0, Level::Debug),
            (-5, Level::Debug),
        ];
        for (levelno, level) in cases {
            assert_eq!(apache_level(levelno), level, "{levelno}");
        }
    }
}
