//! Service scripts: a daemon group with `threads=0` serves no requests; its WSGIImportScript
//! runs in the process' main thread until it returns (mod_wsgi's sidecar pattern). SIGTERM
//! raises `SystemExit` in it, as in mod_wsgi, so `finally:` blocks and `atexit` run; SIGINT
//! (the daemon's own "restart", e.g. after the script was touched) does the same.
//! The script runs in the main interpreter whatever application group it names (only the
//! main interpreter runs Python signal handlers); a named group is warned about (RW0236).
//!
//! Call [`run_service_script`] on the thread that initialised Python (the only one Python
//! runs signal handlers in).

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule};

use super::{log, log_detached, log_prefix, main_interp_context, python_error_in, subinterp};
use crate::logging::Level;

/// The signal whose handler ended the script (0: none did).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// How a service script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnd {
    /// SIGTERM or SIGINT raised SystemExit in it (the number of the signal).
    Signalled(i32),
    /// It returned, or raised SystemExit itself.
    Returned,
    /// It raised another exception (logged with its traceback), or could not be read.
    Failed,
}

/// The Python handler for SIGTERM and SIGINT while a service script runs.
#[pyfunction]
fn stop_service(signum: i32, _frame: &Bound<'_, PyAny>) -> PyResult<()> {
    super::native_class::catch_panic("the service stop handler", || {
        STOP_SIGNAL.store(signum, Ordering::SeqCst);
        Err(pyo3::exceptions::PySystemExit::new_err(0))
    })
}

/// Runs the script at `path` as mod_wsgi loads a WSGI script (module
/// `_mod_wsgi_<md5(path)>`, `__file__` set) until it ends. Call without the GIL.
pub fn run_service_script(path: &Path, app_group: &str) -> ServiceEnd {
    STOP_SIGNAL.store(0, Ordering::SeqCst);
    let source = match std::fs::read(path) {
        Ok(s) => s,
        Err(e) => {
            log(
                Level::Error,
                &format!(
                    "RW0117: {}cannot read service script '{}': {e}",
                    log_prefix(),
                    path.display()
                ),
            );
            return ServiceEnd::Failed;
        }
    };
    super::subinterp::attach_main(|py| {
        if let Err(e) = install_stop_handlers(py) {
            let msg = format!(
                "{}cannot install the SIGTERM handler for service script '{}' (it \
                 will be killed instead of raising SystemExit):\n{}",
                log_prefix(),
                path.display(),
                super::format_exception(py, &e)
            );
            log_detached(py, Level::Error, &format!("RW0118: {msg}"));
        }
        // The main interpreter whatever group is named: only it receives the signals that
        // stop the script (CPython runs signal handlers in the main interpreter only).
        if subinterp::uses_sub_interpreter(app_group) {
            let msg = format!(
                "{}Service script '{}' names application group '{app_group}'; service \
                 scripts run in the main interpreter (only it receives the signals that stop \
                 them), so it shares that interpreter's modules with any other service script \
                 of this process.",
                log_prefix(),
                path.display()
            );
            log_detached(py, Level::Warning, &format!("RW0236: {msg}"));
        }
        let msg = format!(
            "{}Running service script '{}' in {}.",
            log_prefix(),
            path.display(),
            main_interp_context(app_group)
        );
        log_detached(py, Level::Info, &format!("RW0119: {msg}"));
        let result = exec_script(py, path, app_group, &source);
        let signalled = STOP_SIGNAL.load(Ordering::SeqCst);
        match result {
            Err(e) if signalled != 0 && e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
                ServiceEnd::Signalled(signalled)
            }
            Ok(()) => ServiceEnd::Returned,
            Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
                ServiceEnd::Returned
            }
            Err(e) => {
                let msg = python_error_in(py, &e, path, &main_interp_context(app_group));
                log_detached(py, Level::Error, &format!("RW0120: {msg}"));
                ServiceEnd::Failed
            }
        }
    })
}

/// SIGTERM and SIGINT raise SystemExit in the main thread. Through `_signal`, the real
/// function: WSGIRestrictSignal replaces `signal.signal` for applications.
fn install_stop_handlers(py: Python<'_>) -> PyResult<()> {
    let handler = wrap_pyfunction!(stop_service, py)?;
    let signals = py.import("_signal")?;
    let register = signals.getattr("signal")?;
    for name in ["SIGTERM", "SIGINT"] {
        register.call1((signals.getattr(name)?, &handler))?;
    }
    Ok(())
}

fn exec_script(py: Python<'_>, path: &Path, app_group: &str, source: &[u8]) -> PyResult<()> {
    let name = super::loader::module_name(path, app_group);
    let module = PyModule::new(py, &name)?;
    let file = super::loader::fs_path(py, path)?;
    module.setattr("__file__", &file)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item(&name, &module)?;
    let builtins = py.import("builtins")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dont_inherit", true)?;
    let code = builtins
        .getattr("compile")?
        .call((PyBytes::new(py, source), &file, "exec"), Some(&kwargs))?;
    builtins
        .getattr("exec")?
        .call1((code, module.dict()))
        .map(|_| ())
}
