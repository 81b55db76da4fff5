//! `mod_rwsgi.websocket`: the environ entry of an ASGI WebSocket request, through which the
//! ASGI runtime (`asgi.py`) exchanges messages with the client once the application has
//! accepted the WebSocket. Every call runs detached from Python on the request's
//! [`RequestIo`](super::RequestIo); once the request is over they raise RuntimeError
//! ("request object has expired"), after an I/O error OSError.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::WsEvent;
use super::input::EXPIRED;
use super::request::Shared;

#[pyclass(frozen, module = "mod_wsgi", name = "WebSocket")]
pub(crate) struct WebSocket {
    shared: Arc<Shared>,
    /// Counted as open in the process' metrics (between opened() and finished()).
    counted: AtomicBool,
}

impl WebSocket {
    pub(crate) fn new(shared: Arc<Shared>) -> WebSocket {
        WebSocket {
            shared,
            counted: AtomicBool::new(false),
        }
    }

    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut dyn super::RequestIo) -> std::io::Result<T> + Send,
    ) -> PyResult<T> {
        match self.shared.detach(py, || self.shared.with_io(f)) {
            None => Err(PyRuntimeError::new_err(EXPIRED)),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(PyOSError::new_err(format!("mod_rwsgi: WebSocket: {e}"))),
        }
    }
}

#[pymethods]
impl WebSocket {
    /// wait(wake_fd, timeout): the next event, as a tuple: ('text', str), ('bytes', bytes),
    /// ('close', code, reason), ('wake',), ('timeout',) or ('shutdown',).
    fn wait<'py>(
        &self,
        py: Python<'py>,
        wake_fd: i32,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if wake_fd < 0 {
            return Err(PyValueError::new_err("wake_fd must be a descriptor"));
        }
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let event = self.run(py, move |io| {
            // SAFETY: the caller (asgi.py) keeps its pipe open for the whole WebSocket; the
            // borrow lasts for this call only.
            let wake = unsafe { BorrowedFd::borrow_raw(wake_fd) };
            io.ws_wait(wake, timeout)
        })?;
        let tuple = match event {
            WsEvent::Message { binary: true, data } => PyTuple::new(
                py,
                [
                    PyString::new(py, "bytes").into_any(),
                    PyBytes::new(py, &data).into_any(),
                ],
            )?,
            WsEvent::Message {
                binary: false,
                data,
            } => PyTuple::new(
                py,
                [
                    PyString::new(py, "text").into_any(),
                    PyString::new(py, &String::from_utf8_lossy(&data)).into_any(),
                ],
            )?,
            WsEvent::Close { code, reason } => PyTuple::new(
                py,
                [
                    PyString::new(py, "close").into_any(),
                    code.into_pyobject(py)?.into_any(),
                    PyString::new(py, &String::from_utf8_lossy(&reason)).into_any(),
                ],
            )?,
            WsEvent::Woken => PyTuple::new(py, ["wake"])?,
            WsEvent::Timeout => PyTuple::new(py, ["timeout"])?,
            WsEvent::Shutdown => PyTuple::new(py, ["shutdown"])?,
        };
        Ok(tuple)
    }

    /// send(data): a text message for a str, a binary one for bytes.
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let (binary, bytes) = if let Ok(text) = data.cast::<PyString>() {
            (false, text.to_str()?.as_bytes().to_vec())
        } else if let Ok(b) = data.extract::<Vec<u8>>() {
            (true, b)
        } else {
            return Err(PyValueError::new_err("WebSocket.send() takes str or bytes"));
        };
        self.run(py, move |io| io.ws_send(binary, &bytes))
    }

    /// opened(): the application accepted the WebSocket (the open-WebSockets gauge).
    fn opened(&self) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            if let Some(o) = super::metrics::observer() {
                o.websocket(true);
            }
        }
    }

    /// finished(): the accepted WebSocket is over.
    fn finished(&self) {
        if self.counted.swap(false, Ordering::SeqCst) {
            if let Some(o) = super::metrics::observer() {
                o.websocket(false);
            }
        }
    }

    /// close(code, reason): closes the WebSocket.
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        let reason = reason.as_bytes().to_vec();
        self.run(py, move |io| io.ws_close(code, &reason))
    }
}
