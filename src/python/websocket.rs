//! `mod_rwsgi.websocket`: the environ entry of an ASGI WebSocket request, through which the
//! ASGI runtime (`asgi.py`) exchanges messages with the client once the application has
//! accepted the WebSocket. Every call runs detached from Python on the request's
//! [`RequestIo`](super::RequestIo); once the request is over they raise RuntimeError
//! ("request object has expired"), after an I/O error OSError. The class is defined in each
//! interpreter (`native_class.rs`).

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use super::input::EXPIRED;
use super::native_class;
use super::request::Shared;
use super::{DirectSend, WsDirect, WsEvent};

static SPEC: native_class::Spec<WebSocket> = native_class::Spec {
    name: c"mod_wsgi.WebSocket",
    doc: c"mod_rwsgi.websocket: an accepted WebSocket's messages (for the ASGI runtime).",
    methods: Some(&METHODS.0),
    members: None,
    slots: native_class::no_slots,
    _value: std::marker::PhantomData,
};

static METHODS: native_class::Table<ffi::PyMethodDef, 11> = native_class::Table([
    native_class::method!(
        c"wait",
        py_wait,
        c"wait(wake_fd, timeout): the next event, as a tuple: ('text', str), ('bytes', bytes), ('close', code, reason), ('wake',), ('timeout',) or ('shutdown',)."
    ),
    native_class::method!(
        c"send",
        py_send,
        c"send(data): a text message for a str, a binary one for bytes."
    ),
    native_class::method!(
        c"send_now",
        py_send_now,
        c"send_now(data): writes a text (str) or binary (bytes) message from this thread if that cannot block: 1 when written, 2 when written in part (the rest goes out from the request thread, which must be woken), 0 when not (send() it)."
    ),
    native_class::method!(
        c"flush",
        py_flush,
        c"flush(timeout): writes the rest send_now() left, waiting up to timeout for the client; True when nothing is left."
    ),
    native_class::method!(
        c"read_fd",
        py_read_fd,
        c"read_fd(): the descriptor the event loop watches for the client's messages once accepted, or None (ws.wait() reads them)."
    ),
    native_class::method!(
        c"recv_now",
        py_recv_now,
        c"recv_now(): the client's messages that are here, without waiting: a list of wait()'s tuples ('text', 'bytes', a 'close' last)."
    ),
    native_class::method!(
        c"stop_reading",
        py_stop_reading,
        c"stop_reading(): the event loop no longer watches read_fd() (it is closed)."
    ),
    native_class::method!(
        c"opened",
        py_opened,
        c"opened(): the application accepted the WebSocket (the open-WebSockets gauge)."
    ),
    native_class::method!(
        c"finished",
        py_finished,
        c"finished(): the accepted WebSocket is over."
    ),
    native_class::method!(
        c"close",
        py_close,
        c"close(code, reason): closes the WebSocket."
    ),
    native_class::METHODS_END,
]);

/// Defines `mod_wsgi.WebSocket` in the current interpreter.
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    native_class::define(py, &SPEC)
}

/// A WebSocket request's `mod_rwsgi.websocket`: an instance of the current interpreter's
/// class.
pub(crate) fn new<'py>(
    state: &super::interp_state::InterpState,
    py: Python<'py>,
    shared: Arc<Shared>,
) -> PyResult<Bound<'py, PyAny>> {
    native_class::new(state.websocket.bind(py), WebSocket::new(shared), None)
}

/// A required argument.
fn required<'py>(
    arg: Option<Bound<'py, PyAny>>,
    func: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    arg.ok_or_else(|| {
        pyo3::exceptions::PyTypeError::new_err(format!("{func}() missing argument '{name}'"))
    })
}

native_class::fastcall_method! {
    fn py_wait(py, ws: &WebSocket, wake_fd, timeout) "wait" {
        let wake_fd: i32 = required(wake_fd, "wait", "wake_fd")?.extract()?;
        let timeout: f64 = required(timeout, "wait", "timeout")?.extract()?;
        Ok(ws.wait(py, wake_fd, timeout)?.into_any().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_send(py, ws: &WebSocket, data) "send" {
        ws.send(py, &required(data, "send", "data")?)?;
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_send_now(py, ws: &WebSocket, data) "send_now" {
        let sent = ws.send_now(&required(data, "send_now", "data")?)?;
        Ok(sent.into_pyobject(py)?.into_any().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_flush(py, ws: &WebSocket, timeout) "flush" {
        let timeout: f64 = required(timeout, "flush", "timeout")?.extract()?;
        let done = ws.flush(py, timeout)?;
        Ok(pyo3::types::PyBool::new(py, done).to_owned().into_any().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_read_fd(py, ws: &WebSocket) "read_fd" {
        Ok(match ws.direct.get().and_then(|d| d.read_fd()) {
            Some(fd) => fd.into_pyobject(py)?.into_any().into_ptr(),
            None => py.None().into_ptr(),
        })
    }
}

native_class::fastcall_method! {
    fn py_recv_now(py, ws: &WebSocket) "recv_now" {
        Ok(ws.recv_now(py)?.into_any().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_stop_reading(py, ws: &WebSocket) "stop_reading" {
        if let Some(direct) = ws.direct.get() {
            direct.stop_reading();
        }
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_opened(py, ws: &WebSocket) "opened" {
        ws.opened(py);
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_finished(py, ws: &WebSocket) "finished" {
        ws.finished();
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_close(py, ws: &WebSocket, code, reason) "close" {
        let code: u16 = required(code, "close", "code")?.extract()?;
        let reason: String = required(reason, "close", "reason")?.extract()?;
        ws.close(py, code, &reason)?;
        Ok(py.None().into_ptr())
    }
}

pub(crate) struct WebSocket {
    shared: Arc<Shared>,
    /// Counted as open in the process' metrics (between opened() and finished()).
    counted: AtomicBool,
    /// The connection's write side for the event loop thread (send_now), from opened().
    direct: OnceLock<Arc<dyn WsDirect>>,
}

impl WebSocket {
    pub(crate) fn new(shared: Arc<Shared>) -> WebSocket {
        WebSocket {
            shared,
            counted: AtomicBool::new(false),
            direct: OnceLock::new(),
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
        event_tuple(py, event)
    }

    /// recv_now(): the client's messages that are here, as wait()'s tuples, read by the
    /// calling (event loop) thread without waiting; with the GIL held.
    fn recv_now<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let Some(direct) = self.direct.get() else {
            return Ok(PyList::empty(py));
        };
        let events = direct
            .try_recv()
            .map_err(|e| PyOSError::new_err(format!("mod_rwsgi: WebSocket: {e}")))?;
        let list = PyList::empty(py);
        for event in events {
            list.append(event_tuple(py, event)?)?;
        }
        Ok(list)
    }
}

impl WebSocket {
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

    /// send_now(data): writes a message from the calling (event loop) thread if that cannot
    /// block: 1 when written, 2 when written in part (the request thread must be woken to
    /// write the rest), 0 when not written (it must go through send()). Runs with the GIL
    /// held: it waits neither for a lock nor for the client ([`WsDirect::try_send`]).
    fn send_now(&self, data: &Bound<'_, PyAny>) -> PyResult<u8> {
        let Some(direct) = self.direct.get() else {
            return Ok(0);
        };
        let sent = if let Ok(text) = data.cast::<PyString>() {
            direct.try_send(false, text.to_str()?.as_bytes())
        } else if let Ok(bytes) = data.cast::<PyBytes>() {
            direct.try_send(true, bytes.as_bytes())
        } else {
            return Ok(0);
        };
        match sent {
            Ok(DirectSend::Sent) => Ok(1),
            Ok(DirectSend::Pending) => Ok(2),
            Ok(DirectSend::Refused) => Ok(0),
            Err(e) => Err(PyOSError::new_err(format!("mod_rwsgi: WebSocket: {e}"))),
        }
    }

    /// flush(timeout): writes the rest send_now() left, waiting up to `timeout` for the
    /// client; true when nothing is left.
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let Some(direct) = self.direct.get() else {
            return Ok(true);
        };
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        self.shared
            .detach(py, || direct.flush_pending(timeout))
            .map_err(|e| PyOSError::new_err(format!("mod_rwsgi: WebSocket: {e}")))
    }

    /// opened(): the application accepted the WebSocket (the open-WebSockets gauge); from
    /// now on the event loop may write messages itself (send_now).
    fn opened(&self, py: Python<'_>) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            if let Some(o) = super::metrics::observer() {
                o.websocket(true);
            }
        }
        if self.direct.get().is_none() {
            // Expired or without one: send_now() writes nothing, send() does it all.
            if let Ok(Some(direct)) = self.run(py, |io| Ok(io.ws_direct())) {
                let _ = self.direct.set(direct);
            }
        }
    }

    /// finished(): the accepted WebSocket is over (no more send_now()).
    fn finished(&self) {
        if self.counted.swap(false, Ordering::SeqCst) {
            if let Some(o) = super::metrics::observer() {
                o.websocket(false);
            }
        }
        if let Some(direct) = self.direct.get() {
            // Waits at most for a direct send's non-blocking write (only the loop thread
            // and this one take the writer's lock).
            direct.close();
        }
    }

    /// close(code, reason): closes the WebSocket.
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        let reason = reason.as_bytes().to_vec();
        self.run(py, move |io| io.ws_close(code, &reason))
    }
}

/// wait()'s tuple for `event`.
fn event_tuple(py: Python<'_>, event: WsEvent) -> PyResult<Bound<'_, PyTuple>> {
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
