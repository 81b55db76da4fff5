//! `wsgi.input`: the request body as a file-like object over `RequestIo::read_body`.
//!
//! Reads run detached from Python. `read(n)` never asks the io for more than it still needs;
//! `readline` reads ahead in chunks of up to 64 KiB and keeps the rest buffered. After an I/O
//! error the object stays failed (OSError on every call); once the request is over every
//! method raises RuntimeError("request object has expired"), as mod_wsgi's `Input_finish`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::native_class;

use super::request::{Shared, lock};

/// Largest single read asked of the io.
pub(crate) const CHUNK: usize = 64 * 1024;

pub(crate) const EXPIRED: &str = "request object has expired";

/// `mod_wsgi.Input`, defined in each interpreter (see `native_class.rs`): `read`,
/// `readline`, `readlines`, iteration by line and `close`, over the request's [`Input`].
static SPEC: native_class::Spec<Input> = native_class::Spec {
    name: c"mod_wsgi.Input",
    doc: c"wsgi.input: the request body.",
    methods: Some(&METHODS.0),
    members: None,
    slots: input_slots,
    _value: std::marker::PhantomData,
};

static METHODS: native_class::Table<ffi::PyMethodDef, 6> = native_class::Table([
    native_class::method!(
        c"read",
        py_read,
        c"read(size=-1): up to size bytes of the body."
    ),
    native_class::method!(c"readline", py_readline, c"readline(size=-1): one line."),
    native_class::method!(
        c"readlines",
        py_readlines,
        c"readlines(hint=-1): the lines."
    ),
    native_class::method!(c"close", py_close, c"close(): nothing to do."),
    native_class::method!(
        c"_rwsgi_client_gone",
        py_client_gone,
        c"For the ASGI runtime: has the client gone away mid-request?"
    ),
    native_class::METHODS_END,
]);

fn input_slots() -> Vec<ffi::PyType_Slot> {
    vec![
        ffi::PyType_Slot {
            slot: ffi::Py_tp_iter,
            pfunc: pyo3::impl_::trampoline::get_trampoline_function!(getiterfunc, py_iter)
                as *mut std::ffi::c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_iternext,
            pfunc: pyo3::impl_::trampoline::get_trampoline_function!(iternextfunc, py_next)
                as *mut std::ffi::c_void,
        },
    ]
}

/// Defines `mod_wsgi.Input` in the current interpreter.
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    native_class::define(py, &SPEC)
}

/// A request's `wsgi.input`: an instance of the current interpreter's `Input` class.
pub(crate) fn new<'py>(
    state: &super::interp_state::InterpState,
    py: Python<'py>,
    shared: Arc<Shared>,
) -> PyResult<Bound<'py, PyAny>> {
    native_class::new(state.input.bind(py), Input::new(shared), None)
}

/// The optional size argument: None or an int (`__index__`).
fn size_arg(arg: Option<Bound<'_, PyAny>>) -> PyResult<Option<isize>> {
    match arg {
        Some(a) if !a.is_none() => Ok(Some(a.extract()?)),
        _ => Ok(None),
    }
}

native_class::fastcall_method! {
    fn py_read(py, input: &Input, size) "read" {
        Ok(input.read(py, size_arg(size)?)?.into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_readline(py, input: &Input, size) "readline" {
        Ok(input.readline(py, size_arg(size)?)?.into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_readlines(py, input: &Input, hint) "readlines" {
        let hint = size_arg(hint)?;
        let lines = pyo3::types::PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = input.readline(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| h > 0 && total >= h as usize) {
                break;
            }
        }
        Ok(lines.into_ptr())
    }
}

native_class::fastcall_method! {
    fn py_close(py, input: &Input) "close" {
        input.check()?;
        Ok(py.None().into_ptr())
    }
}

native_class::fastcall_method! {
    /// For the ASGI runtime (`asgi.py`): has the client gone away mid-request? Asked on the
    /// request thread, which owns the request's io.
    fn py_client_gone(py, input: &Input) "_rwsgi_client_gone" {
        let gone = input.shared.with_io(|io| io.client_gone()).unwrap_or(true);
        Ok(pyo3::types::PyBool::new(py, gone)
            .to_owned()
            .into_any()
            .into_ptr())
    }
}

/// `__iter__`: the object itself, while the request lasts.
///
/// # Safety
/// `slf` is an `Input` instance (CPython's `tp_iter` call).
unsafe fn py_iter(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    native_class::catch_panic("wsgi.input.__iter__", || {
        // SAFETY: the caller's contract.
        unsafe { native_class::value::<Input>(slf)? }.check()?;
        // SAFETY: slf is a live object; the new reference is the return value.
        Ok(unsafe { Bound::from_borrowed_ptr(py, slf) }.into_ptr())
    })
}

/// `__next__`: the next line; null without an exception at the end.
///
/// # Safety
/// As [`py_iter`].
unsafe fn py_next(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    native_class::catch_panic("wsgi.input.__next__", || {
        // SAFETY: the caller's contract.
        let line = unsafe { native_class::value::<Input>(slf)? }.readline(py, None)?;
        if line.as_bytes().is_empty() {
            return Ok(std::ptr::null_mut());
        }
        Ok(line.into_ptr())
    })
}

pub(crate) struct Input {
    shared: Arc<Shared>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    failed: Option<String>,
}

enum Fail {
    Expired,
    Io(String),
}

impl From<Fail> for PyErr {
    fn from(f: Fail) -> PyErr {
        match f {
            Fail::Expired => PyRuntimeError::new_err(EXPIRED),
            Fail::Io(msg) => PyOSError::new_err(msg),
        }
    }
}

impl State {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.buf.len() - self.pos);
        if self.pos == 0 && n == self.buf.len() {
            return std::mem::take(&mut self.buf); // all of it: move, no copy
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        out
    }

    /// Reads up to `max` more bytes from the io into the buffer; returns how many arrived
    /// (0 = end of body).
    fn fill(&mut self, shared: &Shared, max: usize) -> Result<usize, Fail> {
        if let Some(msg) = &self.failed {
            return Err(Fail::Io(msg.clone()));
        }
        if self.eof || max == 0 {
            return Ok(0);
        }
        let data = match shared.read_body(max) {
            None => return Err(Fail::Expired),
            Some(Ok(data)) => data,
            Some(Err(e)) => {
                let msg = format!("mod_rwsgi: request data read error: {e}");
                self.failed = Some(msg.clone());
                return Err(Fail::Io(msg));
            }
        };
        if data.is_empty() {
            self.eof = true;
            return Ok(0);
        }
        // Never trust an io to respect `max`: keep everything, it is request data.
        shared
            .input_length
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let n = data.len();
        if self.pos >= self.buf.len() {
            self.buf = data; // nothing unread: keep the io's vector, no copy
            self.pos = 0;
            return Ok(n);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(&data);
        Ok(n)
    }

    fn read(&mut self, shared: &Shared, size: Option<usize>) -> Result<Vec<u8>, Fail> {
        match size {
            Some(0) => Ok(Vec::new()),
            Some(n) => {
                while self.buffered().len() < n {
                    let need = n - self.buffered().len();
                    if self.fill(shared, need.min(CHUNK))? == 0 {
                        break;
                    }
                }
                Ok(self.take(n))
            }
            None => {
                while self.fill(shared, CHUNK)? > 0 {}
                Ok(self.take(usize::MAX))
            }
        }
    }

    fn readline(&mut self, shared: &Shared, size: Option<usize>) -> Result<Vec<u8>, Fail> {
        if size == Some(0) {
            return Ok(Vec::new());
        }
        let mut scanned = 0;
        loop {
            let avail = self.buffered();
            let limit = size.map_or(avail.len(), |s| s.min(avail.len()));
            if let Some(i) = avail[scanned.min(limit)..limit]
                .iter()
                .position(|&b| b == b'\n')
            {
                return Ok(self.take(scanned.min(limit) + i + 1));
            }
            if size.is_some_and(|s| avail.len() >= s) {
                return Ok(self.take(limit));
            }
            scanned = avail.len();
            if self.fill(shared, CHUNK)? == 0 {
                return Ok(self.take(usize::MAX));
            }
        }
    }
}

impl Input {
    pub(crate) fn new(shared: Arc<Shared>) -> Input {
        Input {
            shared,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `op` on the state detached from Python, then wraps the bytes.
    fn read_detached<'py>(
        &self,
        py: Python<'py>,
        op: impl FnOnce(&mut State, &Shared) -> Result<Vec<u8>, Fail> + Send,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if self.shared.is_expired() {
            return Err(Fail::Expired.into());
        }
        let data = self.shared.detach(py, || {
            let mut state = lock(&self.state);
            op(&mut state, &self.shared)
        })?;
        Ok(PyBytes::new(py, &data))
    }
}

/// None or a negative size means "no limit" (as io objects do).
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

impl Input {
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        self.read_detached(py, move |state, shared| state.read(shared, size))
    }

    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        self.read_detached(py, move |state, shared| state.readline(shared, size))
    }

    /// Err once the request is over (`__iter__`, `close`).
    fn check(&self) -> PyResult<()> {
        if self.shared.is_expired() {
            return Err(Fail::Expired.into());
        }
        Ok(())
    }
}
