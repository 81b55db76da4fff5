//! `wsgi.input`: the request body as a file-like object over `RequestIo::read_body`.
//!
//! Reads run detached from Python. `read(n)` never asks the io for more than it still needs;
//! `readline` reads ahead in chunks of up to 64 KiB and keeps the rest buffered. After an I/O
//! error the object stays failed (OSError on every call); once the request is over every
//! method raises RuntimeError("request object has expired"), as mod_wsgi's `Input_finish`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::request::{Shared, lock};

/// Largest single read asked of the io.
pub(crate) const CHUNK: usize = 64 * 1024;

pub(crate) const EXPIRED: &str = "request object has expired";

/// `mod_wsgi.Input`, defined in each interpreter (see `interp_state.rs`): a Python class
/// whose methods call `_op`, a `PyCFunction` made per request ([`new`]) over a capsule that
/// owns the request's [`Input`] state. `_op(0, size)` reads, `_op(1, size)` reads a line,
/// `_op(2, None)` checks the request is not over.
const INPUT_PY: &std::ffi::CStr = cr#"
class Input:
    """wsgi.input: the request body."""

    __slots__ = ("_op",)

    def __init__(self, op):
        self._op = op

    def read(self, size=None):
        return self._op(0, size)

    def readline(self, size=None):
        return self._op(1, size)

    def readlines(self, hint=None):
        if hint is not None:
            hint = hint.__index__()
        lines = []
        total = 0
        while True:
            line = self._op(1, None)
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and hint > 0 and total >= hint:
                break
        return lines

    def __iter__(self):
        self._op(2, None)
        return self

    def __next__(self):
        line = self._op(1, None)
        if not line:
            raise StopIteration
        return line

    def close(self):
        self._op(2, None)
"#;

/// Defines `mod_wsgi.Input` in the current interpreter.
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    let globals = pyo3::types::PyDict::new(py);
    globals.set_item("__name__", "mod_wsgi")?;
    py.run(INPUT_PY, Some(&globals), None)?;
    Ok(globals
        .get_item("Input")?
        .ok_or_else(|| PyRuntimeError::new_err("Input not defined"))?
        .cast_into::<pyo3::types::PyType>()?)
}

/// A request's `wsgi.input`: an instance of the current interpreter's `Input` class.
pub(crate) fn new<'py>(py: Python<'py>, shared: Arc<Shared>) -> PyResult<Bound<'py, PyAny>> {
    let input = Input::new(shared);
    let op = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"_op"),
        None,
        move |args: &Bound<'_, pyo3::types::PyTuple>,
              _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>|
              -> PyResult<Py<PyAny>> {
            let py = args.py();
            let kind: u8 = args.get_item(0)?.extract()?;
            let size: Option<isize> = args.get_item(1)?.extract()?;
            match kind {
                0 => Ok(input.read(py, size)?.into_any().unbind()),
                1 => Ok(input.readline(py, size)?.into_any().unbind()),
                _ => {
                    input.check()?;
                    Ok(py.None())
                }
            }
        },
    )?;
    let class = super::interp_state::current(py)?;
    class.input.bind(py).call1((op,))
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
