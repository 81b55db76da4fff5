//! File-like objects that forward text to the error log: `wsgi.errors` (one per request) and
//! `sys.stdout`/`sys.stderr` (one per process, installed by `initialize`). Complete lines are
//! logged at Error level, like mod_wsgi's `[wsgi:error]` lines; a partial line waits for its
//! newline, `flush()`, or the end of the request.
//!
//! Also the WSGIRestrictStdout replacement for `sys.stdout`, whose every use raises OSError.

use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use super::log_detached;
use crate::logging::Level;

/// A partial line longer than this is logged without waiting for its newline.
const MAX_PARTIAL_LINE: usize = 8192;

#[pyclass(frozen, module = "mod_wsgi", name = "Log")]
pub(crate) struct LogObject {
    name: &'static str,
    pending: Mutex<String>,
}

impl LogObject {
    pub(crate) fn new_stream<'py>(
        py: Python<'py>,
        name: &'static str,
    ) -> PyResult<Bound<'py, LogObject>> {
        Bound::new(
            py,
            LogObject {
                name,
                pending: Mutex::new(String::new()),
            },
        )
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, String> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends text and returns the complete lines to log.
    fn take_lines(&self, text: &str) -> Vec<String> {
        let mut pending = self.pending();
        pending.push_str(text);
        let mut lines = Vec::new();
        while let Some(pos) = pending.find('\n') {
            let rest = pending.split_off(pos + 1);
            let mut line = std::mem::replace(&mut *pending, rest);
            line.pop();
            lines.push(line);
        }
        if pending.len() > MAX_PARTIAL_LINE {
            lines.push(std::mem::take(&mut *pending));
        }
        lines
    }

    fn emit(py: Python<'_>, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        py.detach(|| {
            for line in &lines {
                super::log(Level::Error, line);
            }
        });
    }

    /// Logs a pending partial line (also called at the end of each request).
    pub(crate) fn flush_pending(&self, py: Python<'_>) {
        let rest = std::mem::take(&mut *self.pending());
        if !rest.is_empty() {
            log_detached(py, Level::Error, &rest);
        }
    }
}

#[pymethods]
impl LogObject {
    fn write(&self, py: Python<'_>, text: &str) {
        let lines = self.take_lines(text);
        Self::emit(py, lines);
    }

    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for item in lines.try_iter()? {
            let item = item?;
            let text: &str = item
                .cast::<pyo3::types::PyString>()
                .map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(format!(
                        "writelines() argument must be a sequence of str, not {}",
                        type_name(&item)
                    ))
                })?
                .to_str()?;
            let lines = self.take_lines(text);
            Self::emit(py, lines);
        }
        Ok(())
    }

    fn flush(&self, py: Python<'_>) {
        self.flush_pending(py);
    }

    fn close(&self, py: Python<'_>) {
        self.flush_pending(py);
    }

    fn isatty(&self) -> bool {
        false
    }

    fn readable(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn seekable(&self) -> bool {
        false
    }

    fn fileno(&self) -> PyResult<i32> {
        Err(PyOSError::new_err(format!(
            "{} has no file descriptor (it writes to the error log)",
            self.name
        )))
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "backslashreplace"
    }
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

const RESTRICTED_MESSAGE: &str = "sys.stdout access restricted by mod_rwsgi: WSGIRestrictStdout \
    is On, so a WSGI application must not use print() or sys.stdout. Write to sys.stderr or \
    environ['wsgi.errors'], use the logging module, or set WSGIRestrictStdout Off.";

/// `sys.stdout` under WSGIRestrictStdout On: any attribute access raises OSError.
#[pyclass(frozen, module = "mod_wsgi", name = "RestrictedStdout")]
pub(crate) struct RestrictedStdout;

#[pymethods]
impl RestrictedStdout {
    fn __getattribute__(&self, _name: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyOSError::new_err(RESTRICTED_MESSAGE))
    }
}

/// Installs the restricted stdout as `target.stdout` (`target` is `sys` in production, or any
/// namespace in tests).
pub fn install_restricted_stdout(target: &Bound<'_, PyAny>) -> PyResult<()> {
    target.setattr("stdout", Bound::new(target.py(), RestrictedStdout)?)
}
