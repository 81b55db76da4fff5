//! Per-request state shared by the driver (`app.rs`) and the Python objects of one request
//! (`wsgi.input`, `start_response`/`write`), and the only path to the request's [`RequestIo`].
//!
//! Ownership: `AppHost::handle` receives `&mut dyn RequestIo` for the request only, while the
//! Python objects are `'static` and may outlive the request (an app can stash `wsgi.input` in a
//! global). So the objects hold an `Arc<Shared>`, and the io is reachable only through
//! [`Shared::with_io`], which sees a raw pointer installed by [`Shared::with_bound_io`] and removed
//! when its scope ends — before `handle` returns, also on panic. After that
//! every method reports [`SendError::Expired`] and the objects raise
//! "request object has expired".
//!
//! Lock order: `response` before `io`; neither is ever waited for while attached to Python
//! (callers run inside `py.detach`, or use pyo3's `lock_py_attached`).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::RequestIo;

/// The raw io handle. Invariant: `Some` only while the `IoBinding` that installed it is alive,
/// which is exactly while the `&mut dyn RequestIo` it came from is exclusively borrowed by that
/// binding; it is only dereferenced with the `io` mutex held.
struct IoSlot(Option<NonNull<dyn RequestIo>>);

// SAFETY: the pointee is a `dyn RequestIo`, which is `Send`; the pointer is only dereferenced
// under the `io` mutex, so moving the slot between threads moves exclusive access with it.
unsafe impl Send for IoSlot {}

/// Status and headers from start_response, and what has been sent.
#[derive(Default)]
pub(crate) struct Response {
    pub status: Option<(u16, Vec<u8>)>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub content_length: Option<u64>,
    pub head_sent: bool,
    /// Body bytes sent (after Content-Length truncation).
    pub sent: u64,
    /// The first I/O error: the client is gone and nothing more is attempted.
    pub io_failed: bool,
    /// The body's last bytes, accepted (and counted in `sent`) while attached to Python, to
    /// go out after the application's Python work is over: see [`Response::defer`].
    pub deferred: Option<Vec<u8>>,
}

impl Response {
    pub(crate) fn length_reached(&self) -> bool {
        self.content_length.is_some_and(|cl| self.sent >= cl)
    }

    /// Ok when body bytes may be sent: start_response was called and no write failed.
    fn check_sendable(&self) -> Result<(), SendError> {
        if self.status.is_none() {
            return Err(SendError::NotStarted);
        }
        if self.io_failed {
            return Err(SendError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write to the client failed",
            )));
        }
        Ok(())
    }

    /// How many of `len` more body bytes Content-Length still allows.
    fn allowance(&self, len: usize) -> usize {
        match self.content_length {
            Some(cl) => {
                len.min(usize::try_from(cl.saturating_sub(self.sent)).unwrap_or(usize::MAX))
            }
            None => len,
        }
    }

    /// Accepts the end of the body without touching the io, for a caller attached to Python
    /// (holding the response lock): the bytes (after Content-Length truncation, as in
    /// [`Shared::send`]) are counted as sent and go out, with the head if needed, in
    /// [`Shared::send_deferred`], once the request no longer needs Python. A request then
    /// takes the GIL once, not once more to come back from sending.
    pub(crate) fn defer(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check_sendable()?;
        let allowed = self.allowance(data.len());
        self.deferred
            .get_or_insert_with(Vec::new)
            .extend_from_slice(&data[..allowed]);
        self.sent += allowed as u64;
        Ok(())
    }
}

pub(crate) enum SendError {
    /// start_response has not been called.
    NotStarted,
    /// The request is over (an object outlived it).
    Expired,
    /// The client connection failed.
    Io(io::Error),
}

pub(crate) struct Shared {
    io: Mutex<IoSlot>,
    expired: AtomicBool,
    pub response: Mutex<Response>,
    /// Request body bytes the application read (for the request_finished event).
    pub input_length: AtomicU64,
    /// Time the reads, writes and GIL re-acquisitions (metrics recording or event
    /// subscribers want them); otherwise only counted.
    pub timed: AtomicBool,
    pub stats: IoStats,
    /// The thread's CPU times (user, system) when the request began, when wanted.
    pub cpu_start: std::sync::OnceLock<(f64, f64)>,
    /// The io's [`RequestIo::defer_limit`], read when the io is bound.
    pub defer_limit: AtomicUsize,
    /// When the application was called and returned, µs since the epoch (0 = not yet).
    pub application_start_us: AtomicU64,
    pub application_finish_us: AtomicU64,
}

/// A request's body reads, response writes and GIL re-acquisitions after detached I/O.
#[derive(Default)]
pub(crate) struct IoStats {
    pub input_reads: AtomicU64,
    pub input_ns: AtomicU64,
    pub output_writes: AtomicU64,
    pub output_ns: AtomicU64,
    pub gil_waits: AtomicU64,
    pub gil_wait_ns: AtomicU64,
    pub gil_wait_min_ns: AtomicU64,
    pub gil_wait_max_ns: AtomicU64,
}

impl IoStats {
    pub(crate) fn gil_wait(&self, waited: std::time::Duration) {
        let ns = waited.as_nanos() as u64;
        let first = self.gil_waits.fetch_add(1, Ordering::Relaxed) == 0;
        self.gil_wait_ns.fetch_add(ns, Ordering::Relaxed);
        if first {
            self.gil_wait_min_ns.store(ns, Ordering::Relaxed);
        } else {
            self.gil_wait_min_ns.fetch_min(ns, Ordering::Relaxed);
        }
        self.gil_wait_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The totals as the metrics and events report them.
    pub(crate) fn totals(&self, input_bytes: u64, output_bytes: u64) -> IoTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gil_waits = get(&self.gil_waits);
        IoTotals {
            input_bytes,
            input_reads: get(&self.input_reads),
            input_time: get(&self.input_ns) as f64 / 1e9,
            output_bytes,
            output_writes: get(&self.output_writes),
            output_time: get(&self.output_ns) as f64 / 1e9,
            gil_wait_time: get(&self.gil_wait_ns) as f64 / 1e9,
            gil_waits,
            gil_wait_min_us: if gil_waits > 0 {
                get(&self.gil_wait_min_ns) / 1000
            } else {
                0
            },
            gil_wait_max_us: get(&self.gil_wait_max_ns) / 1000,
        }
    }
}

impl Shared {
    pub(crate) fn new(timed: bool) -> Arc<Shared> {
        Arc::new(Shared {
            io: Mutex::new(IoSlot(None)),
            expired: AtomicBool::new(false),
            response: Mutex::new(Response::default()),
            input_length: AtomicU64::new(0),
            timed: AtomicBool::new(timed),
            stats: IoStats::default(),
            cpu_start: std::sync::OnceLock::new(),
            defer_limit: AtomicUsize::new(0),
            application_start_us: AtomicU64::new(0),
            application_finish_us: AtomicU64::new(0),
        })
    }

    /// `py.detach(f)`, counting the wait to take the GIL back when timed.
    pub(crate) fn detach<T: Send>(&self, py: pyo3::Python<'_>, f: impl FnOnce() -> T + Send) -> T {
        if !self.is_timed() {
            return py.detach(f);
        }
        let (value, done) = py.detach(|| (f(), std::time::Instant::now()));
        self.stats.gil_wait(done.elapsed());
        value
    }

    pub(crate) fn is_timed(&self) -> bool {
        self.timed.load(Ordering::Relaxed)
    }

    /// Runs a body read on the io, counting it (and timing it when timed).
    pub(crate) fn read_body(&self, max: usize) -> Option<io::Result<Vec<u8>>> {
        let started = self.is_timed().then(std::time::Instant::now);
        let result = self.with_io(|io| io.read_body(max));
        self.stats.input_reads.fetch_add(1, Ordering::Relaxed);
        if let Some(started) = started {
            self.stats
                .input_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        result
    }

    /// Runs `f` with `io` reachable through [`Shared::with_io`]; when `f` returns or unwinds,
    /// `io` is unreachable again and every object of the request is expired. Scoped, so no
    /// binding can be leaked past `io`'s lifetime.
    pub(crate) fn with_bound_io<R>(
        self: &Arc<Self>,
        io: &mut dyn RequestIo,
        f: impl FnOnce() -> R,
    ) -> R {
        self.defer_limit.store(io.defer_limit(), Ordering::Relaxed);
        let ptr: NonNull<dyn RequestIo + '_> = NonNull::from(io);
        // SAFETY: only the trait object's lifetime bound is erased (same layout). The pointer
        // never outlives the borrow of `io`: the guard below clears the slot when this
        // function returns or unwinds, and the guard cannot escape this frame.
        let ptr: NonNull<dyn RequestIo> = unsafe { std::mem::transmute(ptr) };
        lock(&self.io).0 = Some(ptr);
        let _binding = IoBinding {
            shared: Arc::clone(self),
        };
        f()
    }

    pub(crate) fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }

    /// Runs `f` with exclusive access to the request's io; `None` once the request is over.
    /// Blocks on the io mutex: call it detached from Python.
    pub(crate) fn with_io<R>(&self, f: impl FnOnce(&mut dyn RequestIo) -> R) -> Option<R> {
        let slot = lock(&self.io);
        let mut ptr = slot.0?;
        // SAFETY: the slot is Some only while the IoBinding holds the exclusive borrow the
        // pointer came from (see IoSlot); the io mutex guard held across the call makes this
        // the only live reference, and it does not escape `f`.
        let io = unsafe { ptr.as_mut() };
        Some(f(io))
    }

    pub(crate) fn response(&self) -> MutexGuard<'_, Response> {
        lock(&self.response)
    }

    /// Runs `f` on the io once the head is out (sending it first if needed); an io error
    /// marks the response failed.
    fn with_head_sent<T>(
        &self,
        resp: &mut Response,
        f: impl FnOnce(&mut dyn RequestIo, &mut Response) -> io::Result<T>,
    ) -> Result<T, SendError> {
        let started = self.is_timed().then(std::time::Instant::now);
        self.stats.output_writes.fetch_add(1, Ordering::Relaxed);
        let result = self.with_io(|io| -> io::Result<T> {
            if !resp.head_sent {
                let (code, reason) = resp
                    .status
                    .as_ref()
                    .map(|(c, r)| (*c, r.as_slice()))
                    .unwrap_or((200, b"OK"));
                io.send_head(code, reason, &resp.headers)?;
                resp.head_sent = true;
            }
            f(io, resp)
        });
        if let Some(started) = started {
            self.stats
                .output_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        match result {
            None => Err(SendError::Expired),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => {
                resp.io_failed = true;
                Err(SendError::Io(e))
            }
        }
    }

    /// Sends the head if not yet sent, then as much of `data` as Content-Length allows, then
    /// flushes if asked. Call detached.
    pub(crate) fn send(&self, data: &[u8], flush: bool) -> Result<(), SendError> {
        let mut resp = self.response();
        resp.check_sendable()?;
        let allowed = resp.allowance(data.len());
        self.with_head_sent(&mut resp, |io, resp| {
            if allowed > 0 {
                io.send_body(&data[..allowed])?;
                resp.sent += allowed as u64;
            }
            if flush {
                io.flush()?;
            }
            Ok(())
        })
    }

    /// Sends what [`Response::defer`] accepted (the head first if not yet sent). Call
    /// detached; nothing to do when nothing was deferred.
    pub(crate) fn send_deferred(&self) -> Result<(), SendError> {
        let mut resp = self.response();
        let Some(data) = resp.deferred.take() else {
            return Ok(());
        };
        resp.check_sendable()?;
        self.with_head_sent(&mut resp, |io, _| {
            if !data.is_empty() {
                io.send_body_owned(data)?;
            }
            Ok(())
        })
    }

    /// The file_wrapper fast path: sends the head, then `len` bytes of `fd` from `offset`
    /// through `RequestIo::send_file`. `Ok(false)`: the io cannot, nothing but the head was
    /// sent. Call detached.
    pub(crate) fn send_file(&self, fd: i32, offset: u64, len: u64) -> Result<bool, SendError> {
        let mut resp = self.response();
        if resp.status.is_none() {
            return Err(SendError::NotStarted);
        }
        self.with_head_sent(&mut resp, |io, resp| {
            if len > 0 {
                if !io.send_file(fd, offset, len)? {
                    return Ok(false);
                }
                resp.sent += len;
            }
            // No flush: the response ends right after, and Apache may finish writing the
            // file without holding a thread (write completion).
            Ok(true)
        })
    }

    /// Flushes buffered output. Call detached.
    pub(crate) fn flush(&self) -> Result<(), SendError> {
        let mut resp = self.response();
        match self.with_io(|io| io.flush()) {
            None => Err(SendError::Expired),
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                resp.io_failed = true;
                Err(SendError::Io(e))
            }
        }
    }
}

/// Clears the io slot when [`Shared::with_bound_io`] ends, expiring every object of the
/// request.
struct IoBinding {
    shared: Arc<Shared>,
}

impl Drop for IoBinding {
    fn drop(&mut self) {
        let mut slot = lock(&self.shared.io);
        self.shared.expired.store(true, Ordering::Release);
        slot.0 = None;
    }
}

/// Body reads and response writes of one request, and its GIL re-acquisitions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IoTotals {
    pub input_bytes: u64,
    pub input_reads: u64,
    pub input_time: f64,
    pub output_bytes: u64,
    pub output_writes: u64,
    pub output_time: f64,
    pub gil_wait_time: f64,
    pub gil_waits: u64,
    pub gil_wait_min_us: u64,
    pub gil_wait_max_us: u64,
}

/// Locks ignoring poison: the state stays consistent field by field, and a panic elsewhere
/// must not turn every later request into another panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
