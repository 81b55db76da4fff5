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

#[pyclass(frozen, module = "mod_wsgi", name = "Input")]
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

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        self.read_detached(py, move |state, shared| state.read(shared, size))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        self.read_detached(py, move |state, shared| state.readline(shared, size))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let line = self.readline(py, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.push(line);
            total += len;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().shared.is_expired() {
            return Err(Fail::Expired.into());
        }
        Ok(slf)
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    /// For the ASGI runtime (`asgi.py`): has the client gone away mid-request? Asked on
    /// the request thread, which owns the request's io.
    fn _rwsgi_client_gone(&self) -> bool {
        self.shared.with_io(|io| io.client_gone()).unwrap_or(true)
    }

    fn close(&self) -> PyResult<()> {
        if self.shared.is_expired() {
            return Err(Fail::Expired.into());
        }
        Ok(())
    }
}
