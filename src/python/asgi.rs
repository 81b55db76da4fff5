//! ASGI 3 applications (`interface=asgi`, daemon mode only).
//!
//! Execution model: each interpreter (application group) that serves an ASGI application
//! runs one asyncio event loop (uvloop's in the main interpreter when `uvloop` is
//! importable; RW0350 logs which) in a thread of its own, started on first use by the runtime
//! module `asgi.py` (loaded here as `_mod_rwsgi_asgi` into that interpreter's
//! `sys.modules`). A request arrives on a daemon request thread, which holds it for its
//! whole run (so an ASGI group's concurrency is bounded by its `threads=`), and takes one of
//! two paths:
//!
//! - the native path (`asgi_native.rs`), for an HTTP request of an application whose adapter
//!   exists (made at start-up for a preloaded script, else by its first request), when its
//!   body is all here (none, or pushed with the head): the
//!   request thread never takes the GIL; the loop builds the scope from Rust data and runs
//!   the application, whose `send()` messages the request thread writes as a WSGI
//!   response's. The common case.
//! - the WSGI-shaped path: the ASGI callable wrapped in the runtime's `Adapter`, a WSGI
//!   callable that builds the `http` scope from environ, submits the application's coroutine
//!   to the loop and serves its `receive()`/`send()` on the request thread with `wsgi.input`
//!   and `start_response`'s `write()`. The first request of an application not preloaded
//!   (which makes the adapter and starts its lifespan), bodies that must be read from Apache (over 64 KiB,
//!   chunked), WebSockets and in-place script reloading go this way, and so does a
//!   request the native path hands back before running it: while mod_wsgi event
//!   subscribers are registered (they get environ), or when its reload check (`__mtime__`,
//!   `reload_required()`, run in the loop) asks for a reload.
//!
//! Both leave the daemon's request I/O, request-timeout, metrics, trusted proxy headers and
//! error-log handling as they are for WSGI; background work a coroutine does after its
//! response is complete runs on in the loop without holding a thread.
//!
//! WebSockets: a request Apache flagged as a WebSocket upgrade carries the environ entry
//! `mod_rwsgi.websocket` (`websocket.rs`); the runtime then runs the application with a
//! `websocket` scope, answers `websocket.accept` with a 101 head and exchanges messages
//! through that object for the WebSocket's lifetime, on the same request thread.
//!
//! Lifespan: the first use of an application in a process runs `lifespan.startup` (for a
//! preloaded script before the daemon accepts requests, [`startup`]); `lifespan.shutdown`
//! runs for every started application when the daemon drains ([`shutdown_all`]).

use std::ffi::CString;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyModule, PyTuple};

use super::{RequestSpec, log_detached, log_prefix, python_error};
use crate::logging::Level;

const MODULE: &str = "_mod_rwsgi_asgi";

/// How long `lifespan.startup` may take when the group sets no `startup-timeout=` (and
/// always for an application started by its first request, which request-timeout also
/// bounds): then it counts as failed (RW0313).
pub const ASGI_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime module of the current interpreter, loaded on first use.
pub(super) fn runtime<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    // The module is in sys.modules while its code still runs (imports that let other
    // threads run): a thread that finds it before `READY` waits for the thread making it,
    // rather than using it half made (or making a second one, with a second loop).
    let deadline = Instant::now() + ASGI_STARTUP_TIMEOUT;
    while let Ok(m) = modules.get_item(MODULE) {
        let m = m.cast_into::<PyModule>()?;
        if m.hasattr("READY")? {
            return Ok(m);
        }
        if Instant::now() >= deadline {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "mod_rwsgi: the ASGI runtime module is still being made by another thread",
            ));
        }
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
    }
    let code = CString::new(include_str!("asgi.py"))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let m = PyModule::from_code(py, &code, c"mod_rwsgi/asgi.py", c"_mod_rwsgi_asgi")?;
    let log = PyCFunction::new_closure(
        py,
        Some(c"log"),
        None,
        |args: &Bound<'_, PyTuple>, _kwargs| -> PyResult<()> {
            super::native_class::catch_panic("the ASGI runtime's log", || {
                let (kind, text): (String, String) = args.extract()?;
                let py = args.py();
                if kind == "blocked" {
                    log_detached(py, Level::Error, &format!("RW0314: {}{text}", log_prefix()));
                } else if kind == "loop" {
                    super::py_log_detached_at!(
                        py,
                        Level::Info,
                        "RW0350: {}ASGI event loop started: {text}.",
                        log_prefix()
                    );
                } else {
                    log_detached(py, Level::Error, &format!("RW0301: {}{text}", log_prefix()));
                }
                Ok(())
            })
        },
    )?;
    m.setattr("log", log)?;
    // uvloop only in the main interpreter (asgi.py, _new_loop).
    m.setattr(
        "MAIN_INTERPRETER",
        super::interp_state::in_main_interpreter(py),
    )?;
    // asgi-blocked-loop-timeout= (0: no watchdog).
    m.setattr(
        "BLOCKED_AFTER",
        super::settings::process_info().asgi_blocked_loop_timeout,
    )?;
    m.setattr("READY", true)?;
    Ok(m)
}

/// The outcome of an application's `lifespan.startup`, as the runtime reports it.
fn log_startup(py: Python<'_>, script: &std::path::Path, kind: &str, text: &str) -> bool {
    let script = script.display();
    match kind {
        "timeout" => {
            log_detached(
                py,
                Level::Error,
                &format!(
                    "RW0313: {}ASGI application in '{script}': lifespan.startup did not \
                     complete: {text}; its lifespan task is cancelled",
                    log_prefix()
                ),
            );
            false
        }
        "ok" => {
            super::py_log_detached_at!(
                py,
                Level::Info,
                "RW0302: {}ASGI application in '{script}': lifespan.startup complete.",
                log_prefix()
            );
            true
        }
        "failed" => {
            log_detached(
                py,
                Level::Error,
                &format!(
                    "RW0303: {}ASGI application in '{script}': lifespan.startup failed: {text}",
                    log_prefix()
                ),
            );
            false
        }
        // "unsupported" (raised before sending a lifespan message) or "returned": the
        // server goes on without lifespan events, as the ASGI specification says.
        _ => {
            super::py_log_detached_at!(
                py,
                Level::Info,
                "RW0304: {}ASGI application in '{script}' does not support the lifespan \
                 protocol; serving without lifespan events. {text}",
                log_prefix()
            );
            true
        }
    }
}

/// The WSGI callable that runs ASGI application `app` (starting its lifespan on first use).
/// `Err(())`: logged; the request is answered 500 as for a script that failed to load.
pub(super) fn adapter<'py>(
    py: Python<'py>,
    app: &Bound<'py, PyAny>,
    spec: &RequestSpec<'_>,
) -> Result<Bound<'py, PyAny>, ()> {
    let limit = ASGI_STARTUP_TIMEOUT.as_secs_f64();
    match make_adapter(py, app, spec.script_path, limit) {
        Ok(a) => Ok(a),
        Err(None) => Err(()),
        Err(Some(e)) => {
            let msg = python_error(py, &e, spec.script_path, spec.app_group);
            log_detached(py, Level::Error, &format!("RW0305: {msg}"));
            Err(())
        }
    }
}

/// `Err(None)`: the lifespan startup failed (logged); `Err(Some)`: a Python error.
fn make_adapter<'py>(
    py: Python<'py>,
    app: &Bound<'py, PyAny>,
    script: &std::path::Path,
    limit: f64,
) -> Result<Bound<'py, PyAny>, Option<PyErr>> {
    let rt = runtime(py).map_err(Some)?;
    let made = rt.call_method1("adapter", (app, limit)).map_err(Some)?;
    let (adapter, outcome): (Bound<'py, PyAny>, Option<(String, String)>) =
        made.extract().map_err(Some)?;
    if let Some((kind, text)) = outcome {
        if !log_startup(py, script, &kind, &text) {
            return Err(None);
        }
    }
    Ok(adapter)
}

/// Loads ASGI application `callable` of a preloaded script and runs its lifespan.startup,
/// before the daemon takes requests: its adapter, or `None` when the script has no such
/// callable (its first request starts it). Call attached to the script's interpreter. `Err`:
/// why (logged), and the daemon must not serve.
pub(super) fn startup<'py>(
    py: Python<'py>,
    module: &Bound<'py, PyModule>,
    script: &std::path::Path,
    app_group: &str,
    callable: &str,
    limit: Duration,
) -> Result<Option<Bound<'py, PyAny>>, String> {
    let app = match module.dict().get_item(callable) {
        Ok(Some(app)) => app,
        _ => {
            // WSGICallableObject of a directory may name it: the first request starts it.
            super::py_log_detached_at!(
                py,
                Level::Info,
                "RW0306: {}callable '{callable}' not found in ASGI script '{}' at preload; \
                 its lifespan starts with its first request.",
                log_prefix(),
                script.display()
            );
            return Ok(None);
        }
    };
    match make_adapter(py, &app, script, limit.as_secs_f64()) {
        Ok(adapter) => Ok(Some(adapter)),
        Err(None) => Err(format!(
            "lifespan.startup of the ASGI application in '{}' failed",
            script.display()
        )),
        Err(Some(e)) => {
            let msg = python_error(py, &e, script, app_group);
            log_detached(py, Level::Error, &format!("RW0307: {msg}"));
            Err(msg)
        }
    }
}

/// Runs `lifespan.shutdown` of every started ASGI application of this process (main
/// interpreter and sub-interpreters), all within `timeout`, then stops the event loops.
/// Call without the GIL, after the request threads ended.
pub fn shutdown_all(timeout: Duration) {
    if !super::interpreter::python_ready() {
        return;
    }
    let deadline = Instant::now() + timeout;
    super::subinterp::attach_main(|py| {
        shutdown_here(py, deadline);
        super::subinterp::for_each_sub_interpreter(py, |py| shutdown_here(py, deadline));
    });
}

fn shutdown_here(py: Python<'_>, deadline: Instant) {
    let Ok(modules) = py.import("sys").and_then(|s| s.getattr("modules")) else {
        return;
    };
    let Ok(rt) = modules.get_item(MODULE) else {
        return;
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let results: Vec<(String, String)> = match rt
        .call_method1("shutdown", (left,))
        .and_then(|r| r.extract())
    {
        Ok(r) => r,
        Err(e) => {
            let msg = python_error(py, &e, "<asgi lifespan>", "");
            log_detached(py, Level::Error, &format!("RW0308: {msg}"));
            return;
        }
    };
    for (kind, text) in results {
        match kind.as_str() {
            "ok" | "returned" => super::py_log_detached_at!(
                py,
                Level::Info,
                "RW0309: {}ASGI lifespan.shutdown complete.",
                log_prefix()
            ),
            _ => log_detached(
                py,
                Level::Error,
                &format!(
                    "RW0310: {}ASGI lifespan.shutdown did not complete ({kind}): {text}",
                    log_prefix()
                ),
            ),
        }
    }
}
