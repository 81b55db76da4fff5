//! The native path of an ASGI HTTP request (daemon mode): the request thread never takes the
//! GIL.
//!
//! Once an application's adapter exists (made at start-up for a preloaded script, else by
//! its first request on [`super::asgi`]'s WSGI-shaped path; both ran its lifespan.startup),
//! a request thread that gets an HTTP request for it whose body is already here (none, or
//! pushed with the head) makes an [`Exchange`]: the scope's fields taken from the CGI
//! variables (and the header list) without Python, and the body. It hands the exchange to the interpreter's event loop through a
//! [`LoopInbox`] (a queue and an eventfd the loop watches with `add_reader`: one wake-up per
//! batch) and waits on the exchange's condition variable. The loop thread builds the scope
//! and runs the application (`asgi.py`, `_Native`); its `send()` messages come back through
//! the exchange's handle (a Python callable over the same `Arc<Exchange>`) as Rust values,
//! which the request thread writes as a WSGI response's (status, headers, body, file). The
//! loop is woken again only when the application waits: for flow control (more than
//! [`SEND_BUFFER`] bytes queued), for `http.disconnect`, or to cancel a request that timed
//! out.
//!
//! What needs Python on the request's behalf runs in the loop thread: a reload check
//! (`__mtime__`, `reload_required()`) that asks for a reload, or mod_wsgi event subscribers
//! (they get environ), send the request back to the WSGI-shaped path before it runs
//! ([`Served::Fallback`]), which runs it as before; an application error is
//! logged there with its traceback (RW0085), and the request thread answers 500.
//! request-timeout reaches a waiting request thread through [`interrupt`] (the
//! `mod_wsgi.RequestTimeout` of the WSGI-shaped path), which cancels the coroutine; a client
//! that leaves is seen by polling the daemon connection, as there.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyByteArray, PyBytes, PyCFunction, PyList, PyString, PyTuple};

use super::loader::Loaded;
use super::request::{SendError, Shared, lock};
use super::{Outcome, RequestSpec, ScriptReloading, log_detached, log_prefix, python_error};
use crate::logging::Level;
use crate::pair_list::PairList;

/// Response bytes the application may queue for the request thread before its `send()`
/// waits for their write (asgi.py's SEND_BUFFER).
pub(super) const SEND_BUFFER: usize = 262_144;

/// How often a waiting request thread looks whether the client left.
const POLL: Duration = Duration::from_millis(250);

/// The handle's operations (asgi.py's `_Native` calls `handle(op, ...)`).
mod op {
    pub const START: u8 = 0;
    pub const BODY: u8 = 1;
    pub const FILE: u8 = 2;
    pub const DONE: u8 = 3;
    pub const STATE: u8 = 4;
    pub const WAIT_GONE: u8 = 5;
    pub const WAIT_DRAIN: u8 = 6;
}

/// Work handed to one interpreter's event loop.
enum Item {
    Start(Arc<Exchange>),
    /// The exchange's state changed for a waiting `send()` or `receive()`.
    Wake(u64),
    /// Cancel the exchange's coroutine (its request timed out).
    Cancel(u64),
}

struct InboxQueue {
    items: Vec<Item>,
    /// A wake-up is written and its drain has not taken the items yet.
    pending: bool,
}

/// The event loop of one interpreter as request threads reach it without the GIL.
pub(super) struct LoopInbox {
    queue: Mutex<InboxQueue>,
    /// An eventfd the loop watches (`add_reader`); written once per batch.
    wake: OwnedFd,
    /// asgi.py's `_native_start`, `_native_wake`, `_native_cancel`, of this interpreter:
    /// used only by the loop thread, attached to it.
    start: Py<PyAny>,
    woken: Py<PyAny>,
    cancel: Py<PyAny>,
}

impl LoopInbox {
    fn push(&self, item: Item) {
        let wake = {
            let mut queue = lock(&self.queue);
            queue.items.push(item);
            !std::mem::replace(&mut queue.pending, true)
        };
        if wake {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to an eventfd this inbox owns. A
            // failure (the counter full) leaves the loop due to wake anyway.
            let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
    }

    /// Takes the queued items; call in the loop thread when the eventfd is readable.
    fn take(&self) -> Vec<Item> {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from a non-blocking eventfd this
        // inbox owns (EAGAIN when a drain before took the count: nothing to clear).
        let _ = unsafe { libc::read(self.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        let mut queue = lock(&self.queue);
        queue.pending = false;
        std::mem::take(&mut queue.items)
    }
}

/// An application the native path may run: its adapter (asgi.py's `Adapter`) and its
/// interpreter's loop, for the module load it was made from.
pub(super) struct NativeApp {
    script_path: PathBuf,
    app_group: String,
    callable: String,
    loaded: Arc<Loaded>,
    adapter: Py<PyAny>,
    inbox: Arc<LoopInbox>,
}

/// Applications ready for the native path. An entry is replaced when its script is loaded
/// again; the replaced one is never dropped (see [`register`]).
static APPS: RwLock<Vec<Arc<NativeApp>>> = RwLock::new(Vec::new());
/// Interpreter id → its loop's inbox.
static INBOXES: Mutex<Vec<(i64, Arc<LoopInbox>)>> = Mutex::new(Vec::new());

/// The native app for this request, if its adapter was made for this load of its script.
pub(super) fn lookup(spec: &RequestSpec<'_>, loaded: &Arc<Loaded>) -> Option<Arc<NativeApp>> {
    if !spec.asgi || spec.websocket || spec.script_reloading == ScriptReloading::InPlace {
        return None;
    }
    let callable = super::environ::callable_name(spec);
    let apps = APPS.read().unwrap_or_else(|e| e.into_inner());
    apps.iter()
        .find(|a| {
            Arc::ptr_eq(&a.loaded, loaded)
                && a.callable == callable
                && a.app_group == spec.app_group
                && a.script_path == spec.script_path
        })
        .cloned()
}

/// Makes `adapter` (of `loaded`'s application `callable`) available to the native path,
/// for the requests that may take it. Call attached, in the application's interpreter,
/// after the adapter was made.
pub(super) fn register(
    py: Python<'_>,
    spec: &RequestSpec<'_>,
    loaded: &Arc<Loaded>,
    adapter: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if spec.websocket || spec.script_reloading == ScriptReloading::InPlace {
        return Ok(());
    }
    let callable = super::environ::callable_name(spec);
    register_app(
        py,
        spec.script_path,
        spec.app_group,
        callable,
        loaded,
        adapter,
    )
}

/// [`register`] for a preloaded application, made at start-up (daemon mode).
pub(super) fn register_app(
    py: Python<'_>,
    script_path: &std::path::Path,
    app_group: &str,
    callable: &str,
    loaded: &Arc<Loaded>,
    adapter: &Bound<'_, PyAny>,
) -> PyResult<()> {
    {
        let apps = APPS.read().unwrap_or_else(|e| e.into_inner());
        if apps.iter().any(|a| {
            Arc::ptr_eq(&a.loaded, loaded)
                && a.callable == callable
                && a.app_group == app_group
                && a.script_path == script_path
        }) {
            return Ok(());
        }
    }
    let inbox = inbox(py)?;
    let app = Arc::new(NativeApp {
        script_path: script_path.to_path_buf(),
        app_group: app_group.to_string(),
        callable: callable.to_string(),
        loaded: Arc::clone(loaded),
        adapter: adapter.clone().unbind(),
        inbox,
    });
    let replaced = {
        let mut apps = APPS.write().unwrap_or_else(|e| e.into_inner());
        let old = apps
            .iter()
            .position(|a| {
                a.callable == app.callable
                    && a.app_group == app.app_group
                    && a.script_path == app.script_path
            })
            .map(|i| apps.swap_remove(i));
        apps.push(app);
        old
    };
    // Kept alive for good (a reload replaces an entry rarely): a request thread, detached,
    // may hold its last reference, and its Python objects may be released only attached.
    std::mem::forget(replaced);
    Ok(())
}

/// The current interpreter's inbox, made (and its eventfd put under the loop's watch) on
/// first use. Call attached.
fn inbox(py: Python<'_>) -> PyResult<Arc<LoopInbox>> {
    let id = super::interp_state::current_interpreter_id(py);
    // Waited for detached: the holder runs Python (which may hand the GIL to this thread's
    // rivals while it waits for the loop to start).
    let mut inboxes = INBOXES
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, inbox)) = inboxes.iter().find(|(i, _)| *i == id) {
        return Ok(Arc::clone(inbox));
    }
    // SAFETY: eventfd with valid flags; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(PyOSError::new_err(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let wake = unsafe { OwnedFd::from_raw_fd(fd) };
    let rt = super::asgi::runtime(py)?;
    let inbox = Arc::new(LoopInbox {
        queue: Mutex::new(InboxQueue {
            items: Vec::new(),
            pending: false,
        }),
        wake,
        start: rt.getattr("_native_start")?.unbind(),
        woken: rt.getattr("_native_wake")?.unbind(),
        cancel: rt.getattr("_native_cancel")?.unbind(),
    });
    let drain_inbox = Arc::clone(&inbox);
    let drain = PyCFunction::new_closure(
        py,
        Some(c"drain"),
        None,
        move |args: &Bound<'_, PyTuple>, _kwargs| -> PyResult<()> {
            super::native_class::catch_panic("the ASGI native inbox", || {
                drain_items(args.py(), &drain_inbox);
                Ok(())
            })
        },
    )?;
    rt.call_method1("_native_reader", (inbox.wake.as_raw_fd(), drain))?;
    inboxes.push((id, Arc::clone(&inbox)));
    Ok(inbox)
}

/// The loop thread's side of the inbox: starts new exchanges, wakes and cancels others.
fn drain_items(py: Python<'_>, inbox: &LoopInbox) {
    for item in inbox.take() {
        let result = match item {
            Item::Start(exchange) => start(py, inbox, &exchange).inspect_err(|_| {
                // Nothing runs for it: the request thread answers 500.
                exchange.update(|st| st.ops.push_back(Op::Failed));
            }),
            Item::Wake(id) => inbox.woken.call1(py, (id,)).map(drop),
            Item::Cancel(id) => inbox.cancel.call1(py, (id,)).map(drop),
        };
        if let Err(e) = result {
            let msg = python_error(py, &e, "<asgi runtime>", "");
            log_detached(
                py,
                Level::Error,
                &format!(
                    "RW0352: {}ASGI native path: the event loop's inbox failed: {msg}",
                    log_prefix()
                ),
            );
        }
    }
}

/// Runs the application for `exchange` (or sends it back to the WSGI-shaped path).
fn start(py: Python<'_>, inbox: &LoopInbox, exchange: &Arc<Exchange>) -> PyResult<()> {
    let Some(request) = lock(&exchange.request).take() else {
        return Ok(());
    };
    let app = &exchange.app;
    // What the WSGI-shaped path does with the GIL first: the reload hooks and the event
    // subscribers (which get environ) keep it.
    let reload = exchange.check_reload
        && super::loader::reload_reason(
            py,
            &app.loaded,
            &Ok(app.loaded.mtime),
            &app.script_path,
            &app.app_group,
        )
        .is_some();
    if reload || super::modwsgi::has_event_subscribers(py) {
        exchange.update(|st| st.fallback = true);
        return Ok(());
    }
    let handle = handle(py, Arc::clone(exchange))?;
    let scope = request.scope;
    let headers = PyList::empty(py);
    for (name, value) in &scope.headers {
        headers.append((PyBytes::new(py, name), PyBytes::new(py, value)))?;
    }
    let client = match &scope.client {
        Some((addr, port)) => (latin1(py, addr), *port).into_pyobject(py)?.into_any(),
        None => py.None().into_bound(py),
    };
    let args = (
        app.adapter.bind(py),
        handle,
        exchange.id,
        PyBytes::new(py, &request.body),
        PyTuple::new(
            py,
            [
                latin1(py, &scope.http_version).into_any(),
                latin1(py, &scope.method).into_any(),
                latin1(py, scope.scheme()).into_any(),
                PyString::new(py, &String::from_utf8_lossy(&scope.path)).into_any(),
                PyBytes::new(py, scope.raw_path()).into_any(),
                PyBytes::new(py, &scope.query).into_any(),
                PyString::new(py, &String::from_utf8_lossy(&scope.script_name)).into_any(),
                headers.into_any(),
                client,
                (latin1(py, &scope.server_host), scope.server_port)
                    .into_pyobject(py)?
                    .into_any(),
            ],
        )?,
    );
    if let Err(e) = inbox.start.call1(py, args) {
        // Nothing runs for it: the request thread answers 500.
        super::response_end::log_app_exception(py, &app.script_path, &app.app_group, &e);
        exchange.update(|st| st.ops.push_back(Op::Failed));
    }
    Ok(())
}

fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    super::environ::latin1(py, bytes)
}

/// The scope's fields of one request, taken from its CGI variables off the GIL.
#[derive(Default)]
struct ScopeParts {
    /// SERVER_PROTOCOL after its '/' ("2.0" as "2").
    http_version: Vec<u8>,
    method: Vec<u8>,
    https: bool,
    request_scheme: Vec<u8>,
    script_name: Vec<u8>,
    /// SCRIPT_NAME + PATH_INFO.
    path: Vec<u8>,
    request_uri: Vec<u8>,
    query: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    client: Option<(Vec<u8>, u16)>,
    server_host: Vec<u8>,
    server_port: u16,
}

impl ScopeParts {
    fn scheme(&self) -> &[u8] {
        if self.https {
            b"https"
        } else if self.request_scheme.is_empty() {
            b"http"
        } else {
            &self.request_scheme
        }
    }

    /// REQUEST_URI (or the path) up to its query.
    fn raw_path(&self) -> &[u8] {
        let uri = if self.request_uri.is_empty() {
            &self.path
        } else {
            &self.request_uri
        };
        match uri.iter().position(|&b| b == b'?') {
            Some(i) => &uri[..i],
            None => uri,
        }
    }

    /// As asgi.py's `http_scope` makes it from environ.
    fn from_env(env: &PairList) -> ScopeParts {
        let get = |name: &[u8]| env.get(name);
        let mut parts = ScopeParts {
            http_version: b"1.1".to_vec(),
            ..ScopeParts::default()
        };
        let mut path_info: &[u8] = b"";
        let mut remote_addr: &[u8] = b"";
        let mut remote_port: &[u8] = b"";
        let mut server_addr: &[u8] = b"";
        let mut server_name: &[u8] = b"";
        let mut raw_headers = None;
        let mut method: &[u8] = b"GET";
        for (name, value) in env {
            match name {
                b"REQUEST_METHOD" => method = value,
                b"HTTPS" => {
                    parts.https = value.eq_ignore_ascii_case(b"on") || value == b"1";
                }
                b"REQUEST_SCHEME" => parts.request_scheme = value.to_vec(),
                b"SCRIPT_NAME" => parts.script_name = value.to_vec(),
                b"PATH_INFO" => path_info = value,
                b"REQUEST_URI" => parts.request_uri = value.to_vec(),
                b"QUERY_STRING" => parts.query = value.to_vec(),
                b"SERVER_PROTOCOL" => {
                    let version = value.splitn(2, |&b| b == b'/').last().unwrap_or(b"");
                    parts.http_version = match version {
                        b"2.0" => b"2".to_vec(),
                        other => other.to_vec(),
                    };
                }
                b"REMOTE_ADDR" => remote_addr = value,
                b"REMOTE_PORT" => remote_port = value,
                b"SERVER_ADDR" => server_addr = value,
                b"SERVER_NAME" => server_name = value,
                b"SERVER_PORT" => parts.server_port = port(value),
                b"mod_rwsgi.asgi_headers" => raw_headers = Some(value),
                _ => {}
            }
        }
        parts.method = method.to_ascii_uppercase();
        parts.path = [parts.script_name.as_slice(), path_info].concat();
        if !remote_addr.is_empty() {
            parts.client = Some((remote_addr.to_vec(), port(remote_port)));
        }
        parts.server_host = if server_addr.is_empty() {
            server_name.to_vec()
        } else {
            server_addr.to_vec()
        };
        parts.headers = match raw_headers {
            Some(raw) => header_list(raw, |key| get(key).is_some()),
            None => cgi_headers(env),
        };
        parts
    }
}

fn port(value: &[u8]) -> u16 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The scope's headers from the Apache side's list (`name:value` lines): order kept, names
/// lower case; a header whose CGI variable environ does not hold stays out (asgi.py's
/// `_header_list`).
fn header_list(raw: &[u8], in_environ: impl Fn(&[u8]) -> bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers = Vec::new();
    let mut key = Vec::with_capacity(64);
    for line in raw.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let cgi_like = name.iter().any(|&b| b != b'-')
            && name.iter().all(|&b| b == b'-' || b.is_ascii_alphanumeric());
        if cgi_like {
            key.clear();
            if name.eq_ignore_ascii_case(b"content-type") {
                key.extend_from_slice(b"CONTENT_TYPE");
            } else if name.eq_ignore_ascii_case(b"content-length") {
                key.extend_from_slice(b"CONTENT_LENGTH");
            } else {
                key.extend_from_slice(b"HTTP_");
                key.extend(name.iter().map(|&b| {
                    if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_uppercase()
                    }
                }));
            }
            if !in_environ(&key) {
                continue;
            }
        }
        headers.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    headers
}

/// Without the Apache side's list: the headers from the HTTP_ variables (asgi.py's
/// `http_scope`).
fn cgi_headers(env: &PairList) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers = Vec::new();
    for (key, value) in env {
        let name = if let Some(rest) = key.strip_prefix(b"HTTP_") {
            rest
        } else if (key == b"CONTENT_TYPE" || key == b"CONTENT_LENGTH") && !value.is_empty() {
            key
        } else {
            continue;
        };
        let name = name
            .iter()
            .map(|&b| {
                if b == b'_' {
                    b'-'
                } else {
                    b.to_ascii_lowercase()
                }
            })
            .collect();
        headers.push((name, value.to_vec()));
    }
    headers
}

struct NativeRequest {
    scope: ScopeParts,
    body: Vec<u8>,
}

/// A response operation from the application, for the request thread.
enum Op {
    Start {
        status: (u16, Vec<u8>),
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        content_length: Option<u64>,
    },
    Body {
        data: Vec<u8>,
        more: bool,
    },
    File {
        file: std::fs::File,
        size: u64,
    },
    /// The application failed before its response was complete (logged in the loop).
    Failed,
}

/// Why the request thread stopped taking the exchange's operations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    ClientLeft,
    WriteFailed,
    TimedOut,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::ClientLeft => "client_left",
            End::WriteFailed => "failed",
            End::TimedOut => "timeout",
        }
    }
}

#[derive(Default)]
struct State {
    ops: VecDeque<Op>,
    /// Response body bytes queued and not yet written.
    pending: usize,
    /// Set by the request thread when it stops (the request is over for the application).
    ended: Option<End>,
    /// The coroutine has ended.
    finished: bool,
    /// The coroutine ended with an error that is being logged; [`Op::Failed`] follows.
    failed_pending: bool,
    /// receive() waits for http.disconnect: wake the loop when the request ends.
    wants_gone: bool,
    /// send() waits for the queue to drain below SEND_BUFFER.
    wants_drain: bool,
    /// request-timeout: the request thread answers 504 and cancels the coroutine.
    timed_out: bool,
    /// Run by the WSGI-shaped path instead (see [`start`]).
    fallback: bool,
    /// The request thread sleeps on `changed`: only then is a notify needed (a syscall).
    waiting: bool,
}

/// One request on the native path, shared by its request thread and the loop thread.
pub(super) struct Exchange {
    id: u64,
    app: Arc<NativeApp>,
    check_reload: bool,
    request: Mutex<Option<NativeRequest>>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Exchange {
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut lock(&self.state));
        self.changed.notify_all();
        r
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The exchanges request threads wait on, by the thread's Python ident (its pthread_t):
/// what [`interrupt`] finds.
static WAITING: Mutex<Vec<(u64, Arc<Exchange>)>> = Mutex::new(Vec::new());

fn thread_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// request-timeout for a request thread waiting on the native path: true when thread
/// `ident` waits on one (its request then ends as timed out).
pub(super) fn interrupt(ident: u64) -> bool {
    let waiting = lock(&WAITING);
    let Some((_, exchange)) = waiting.iter().find(|(i, _)| *i == ident) else {
        return false;
    };
    exchange.update(|st| st.timed_out = true);
    true
}

/// Registers the exchange as this thread's for [`interrupt`] while it lives.
struct Waiting(u64);

impl Waiting {
    fn enter(exchange: &Arc<Exchange>) -> Waiting {
        let ident = thread_ident();
        lock(&WAITING).push((ident, Arc::clone(exchange)));
        Waiting(ident)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = lock(&WAITING);
        if let Some(i) = waiting.iter().position(|(t, _)| *t == self.0) {
            waiting.swap_remove(i);
        }
    }
}

/// What the native path did with a request.
pub(super) enum Served {
    Done(Outcome),
    /// Nothing was sent: run it on the WSGI-shaped path.
    Fallback,
}

/// The body of a request, when it is all here (none, or pushed with the head).
pub(super) fn body_ahead(shared: &Shared) -> Option<Vec<u8>> {
    shared.with_io(|io| io.body_ahead()).flatten()
}

/// Serves one request on the native path. Call detached (the request thread never takes the
/// GIL here).
pub(super) fn serve(
    spec: &RequestSpec<'_>,
    shared: &Arc<Shared>,
    app: Arc<NativeApp>,
    body: Vec<u8>,
) -> Served {
    shared
        .input_length
        .store(body.len() as u64, Ordering::Relaxed);
    let exchange = Arc::new(Exchange {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        check_reload: spec.script_reloading == ScriptReloading::ReplaceProcess,
        request: Mutex::new(Some(NativeRequest {
            scope: ScopeParts::from_env(spec.env),
            body,
        })),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        app,
    });
    let _waiting = Waiting::enter(&exchange);
    exchange.app.inbox.push(Item::Start(Arc::clone(&exchange)));
    let mut runner = Runner {
        spec,
        shared,
        exchange: &exchange,
        has_length: false,
    };
    let served = runner.run();
    // The application's later send() calls fail, its receive() answers http.disconnect.
    let wake = {
        let mut st = lock(&exchange.state);
        let end = match &served {
            Ok(end) => *end,
            Err(_) => End::Complete,
        };
        st.ended.get_or_insert(end);
        st.ops.clear();
        std::mem::take(&mut st.wants_gone) || std::mem::take(&mut st.wants_drain)
    };
    if wake {
        exchange.app.inbox.push(Item::Wake(exchange.id));
    }
    match served {
        Ok(End::TimedOut) => {
            exchange.app.inbox.push(Item::Cancel(exchange.id));
            Served::Done(timed_out(shared))
        }
        Ok(End::Complete) => Served::Done(promised_length(spec, shared)),
        Ok(End::ClientLeft) => Served::Done(client_left(shared)),
        Ok(End::WriteFailed) => Served::Done(Outcome::ClientGone),
        Err(served) => served,
    }
}

struct Runner<'a, 'r> {
    spec: &'a RequestSpec<'r>,
    shared: &'a Arc<Shared>,
    exchange: &'a Arc<Exchange>,
    has_length: bool,
}

impl Runner<'_, '_> {
    /// Takes the application's operations until the response is over: `Ok(why)`, or
    /// `Err(what to return)` when it ended otherwise.
    fn run(&mut self) -> Result<End, Served> {
        loop {
            let ops = {
                let mut st = lock(&self.exchange.state);
                loop {
                    if st.fallback {
                        return Err(Served::Fallback);
                    }
                    if st.timed_out {
                        st.ended = Some(End::TimedOut);
                        return Ok(End::TimedOut);
                    }
                    if !st.ops.is_empty() {
                        break std::mem::take(&mut st.ops);
                    }
                    if st.finished && !st.failed_pending {
                        // Ended without its response and without an error to log (asgi.py
                        // reports one, RuntimeError at least): a coroutine gone otherwise.
                        drop(st);
                        return Err(Served::Done(self.failed()));
                    }
                    st.waiting = true;
                    let (next, waited) = self
                        .exchange
                        .changed
                        .wait_timeout(st, POLL)
                        .unwrap_or_else(|e| e.into_inner());
                    st = next;
                    st.waiting = false;
                    if waited.timed_out() && st.ops.is_empty() && !st.timed_out {
                        drop(st);
                        // The application waits (a receive(), a sleep ...): has the client left?
                        if self.shared.with_io(|io| io.client_gone()).unwrap_or(true) {
                            let mut st = lock(&self.exchange.state);
                            if st.ops.is_empty() {
                                st.ended = Some(End::ClientLeft);
                                return Ok(End::ClientLeft);
                            }
                        }
                        st = lock(&self.exchange.state);
                    }
                }
            };
            for op in ops {
                if let Some(end) = self.apply(op)? {
                    lock(&self.exchange.state).ended = Some(end);
                    return Ok(end);
                }
            }
        }
    }

    /// Performs one operation; `Some` when the response is over.
    fn apply(&mut self, op: Op) -> Result<Option<End>, Served> {
        match op {
            Op::Start {
                status,
                headers,
                content_length,
            } => {
                let mut resp = self.shared.response();
                self.has_length = content_length.is_some();
                resp.status = Some(status);
                resp.headers = headers;
                resp.content_length = content_length;
                Ok(None)
            }
            Op::Body { data, more: true } => {
                let len = data.len();
                let sent = if data.is_empty() {
                    Ok(())
                } else {
                    self.shared.send(&data, true)
                };
                let wake = {
                    let mut st = lock(&self.exchange.state);
                    st.pending = st.pending.saturating_sub(len);
                    st.wants_drain && st.pending <= SEND_BUFFER && {
                        st.wants_drain = false;
                        true
                    }
                };
                if wake {
                    self.exchange.app.inbox.push(Item::Wake(self.exchange.id));
                }
                match sent {
                    Ok(()) => Ok(None),
                    Err(e) => Ok(Some(self.write_failed(e))),
                }
            }
            Op::Body { data, more: false } => {
                lock(&self.exchange.state).pending = 0;
                let defer_limit = self.shared.defer_limit.load(Ordering::Relaxed);
                let sent = if data.len() <= defer_limit {
                    self.shared.response().defer(&data)
                } else {
                    self.shared.send(&data, false)
                };
                match sent {
                    Ok(()) => Ok(Some(End::Complete)),
                    Err(e) => Ok(Some(self.write_failed(e))),
                }
            }
            Op::File { file, size } => {
                if !self.has_length {
                    let mut resp = self.shared.response();
                    resp.headers
                        .push((b"Content-Length".to_vec(), size.to_string().into_bytes()));
                    resp.content_length = Some(size);
                }
                let sent = match self.shared.send_file(file.as_raw_fd(), 0, size) {
                    Ok(true) => Ok(()),
                    Ok(false) => send_file_contents(self.shared, file),
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(()) => Ok(Some(End::Complete)),
                    Err(e) => Ok(Some(self.write_failed(e))),
                }
            }
            Op::Failed => Err(Served::Done(self.failed())),
        }
    }

    /// The application failed (logged in the loop): a 500 unless the head went out.
    fn failed(&self) -> Outcome {
        lock(&self.exchange.state).ended = Some(End::Complete);
        let head_sent = self.shared.response().head_sent;
        if !head_sent {
            super::response_end::send_500(self.shared);
        }
        Outcome::AppError { head_sent }
    }

    fn write_failed(&self, e: SendError) -> End {
        let why = match e {
            SendError::Io(e) => e.to_string(),
            SendError::Expired => "the request has ended".to_string(),
            SendError::NotStarted => super::start_response::NOT_STARTED.to_string(),
        };
        super::response_end::log_write_failed(self.spec.script_path, &why);
        End::WriteFailed
    }
}

/// A pathsend file the io could not hand on as a descriptor: its bytes.
fn send_file_contents(shared: &Shared, mut file: std::fs::File) -> Result<(), SendError> {
    use std::io::Read;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = file.read(&mut buf).map_err(SendError::Io)?;
        if n == 0 {
            return Ok(());
        }
        shared.send(&buf[..n], false)?;
    }
}

/// request-timeout ended the request: logged as on the WSGI-shaped path, 504 if nothing
/// was sent.
fn timed_out(shared: &Shared) -> Outcome {
    let head_sent = shared.response().head_sent;
    super::response_end::log_request_timeout(head_sent);
    if !head_sent {
        super::response_end::send_gateway_timeout(shared);
    }
    Outcome::AppError { head_sent }
}

/// The client left while the application waited; the coroutine goes on in the loop.
fn client_left(shared: &Shared) -> Outcome {
    let mut resp = shared.response();
    if resp.status.is_none() {
        // nginx's code for a client that closed; the write of it finds the connection gone.
        resp.status = Some((499, b"Client Closed Request".to_vec()));
    }
    drop(resp);
    match shared.send(&[], true) {
        Err(SendError::Io(_)) => Outcome::ClientGone,
        _ => Outcome::Completed,
    }
}

/// [`super::app`]'s check that the body was as long as its Content-Length promised.
fn promised_length(spec: &RequestSpec<'_>, shared: &Shared) -> Outcome {
    let Some((sent, promised)) = super::response_end::shortfall(spec, &shared.response()) else {
        return Outcome::Completed;
    };
    if let Err(SendError::Io(_)) = shared.send(b"", true) {
        return Outcome::ClientGone;
    }
    super::response_end::log_short_body(spec.script_path, sent, promised);
    Outcome::AppError { head_sent: true }
}

/// The handle asgi.py's `_Native` gets: `handle(op, a=None, b=None)`.
fn handle(py: Python<'_>, exchange: Arc<Exchange>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"handle"),
        None,
        move |args: &Bound<'_, PyTuple>, _kwargs| -> PyResult<Py<PyAny>> {
            super::native_class::catch_panic("the ASGI native handle", || {
                handle_call(args, &exchange)
            })
        },
    )
}

fn closed_error() -> PyErr {
    PyOSError::new_err("the response is complete or the client connection is gone")
}

fn handle_call(args: &Bound<'_, PyTuple>, exchange: &Exchange) -> PyResult<Py<PyAny>> {
    let py = args.py();
    let code: u8 = args.get_item(0)?.extract()?;
    let arg = |i: usize| args.get_item(i);
    let truth = |b: bool| -> Py<PyAny> {
        pyo3::types::PyBool::new(py, b)
            .to_owned()
            .into_any()
            .unbind()
    };
    match code {
        op::START => {
            let line = arg(1)?;
            let status = super::start_response::parse_status(&line)?;
            let (headers, content_length) = asgi_headers(&arg(2)?)?;
            push(
                exchange,
                Op::Start {
                    status,
                    headers,
                    content_length,
                },
                0,
            )?;
            Ok(py.None())
        }
        op::BODY => {
            let body = arg(1)?;
            let data = bytes_of(&body).ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "ASGI: http.response.body body must be bytes, not {}",
                    super::log_object::type_name(&body)
                ))
            })?;
            let more = arg(2)?.is_truthy()?;
            let len = data.len();
            let over = push(
                exchange,
                Op::Body { data, more },
                if more { len } else { 0 },
            )?;
            Ok(truth(over))
        }
        op::FILE => {
            let fd: i32 = arg(1)?.extract()?;
            let size: u64 = arg(2)?.extract()?;
            // SAFETY: dup of a descriptor the caller holds open for the call.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(PyOSError::new_err(
                    std::io::Error::last_os_error().to_string(),
                ));
            }
            // SAFETY: `dup` is a new descriptor nothing else owns.
            let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(dup) });
            push(exchange, Op::File { file, size }, 0)?;
            Ok(py.None())
        }
        op::DONE => {
            // The coroutine ended; an error (or None) the request thread still waits on is
            // logged here and answered with a 500 there.
            let error = arg(1)?;
            let mut st = lock(&exchange.state);
            st.finished = true;
            if st.ended.is_some() {
                let name = st.ended.map(End::name).unwrap_or("complete");
                return Ok(PyString::new(py, name).into_any().unbind());
            }
            if !error.is_none() {
                // Logged before the request thread answers (the log line comes first).
                st.failed_pending = true;
                drop(st);
                let err = PyErr::from_value(error);
                log_app_error(py, exchange, &err);
                exchange.update(|st| {
                    st.failed_pending = false;
                    st.ops.push_back(Op::Failed);
                });
                return Ok(py.None());
            }
            // The response's end was queued before: the request thread ends with it.
            Ok(py.None())
        }
        op::STATE => {
            let st = lock(&exchange.state);
            let ended = st.ended.map(End::name);
            let drained = st.pending <= SEND_BUFFER;
            drop(st);
            let ended = match ended {
                Some(name) => PyString::new(py, name).into_any(),
                None => py.None().into_bound(py),
            };
            Ok((ended, drained).into_pyobject(py)?.into_any().unbind())
        }
        op::WAIT_GONE => {
            let mut st = lock(&exchange.state);
            if st.ended.is_some() {
                return Ok(truth(true));
            }
            st.wants_gone = true;
            Ok(truth(false))
        }
        op::WAIT_DRAIN => {
            let mut st = lock(&exchange.state);
            if st.ended.is_some() || st.pending <= SEND_BUFFER {
                return Ok(truth(true));
            }
            st.wants_drain = true;
            Ok(truth(false))
        }
        _ => Err(PyValueError::new_err("unknown operation")),
    }
}

/// Queues `op` for the request thread; true when more than SEND_BUFFER bytes are queued.
/// The thread is woken for body bytes and the end, not for the start alone (nothing goes
/// out before the first body bytes): one wake-up for a response sent in one body.
fn push(exchange: &Exchange, op: Op, size: usize) -> PyResult<bool> {
    let wake = !matches!(op, Op::Start { .. });
    let mut st = lock(&exchange.state);
    if st.ended.is_some() {
        return Err(closed_error());
    }
    st.pending += size;
    let over = st.pending > SEND_BUFFER;
    st.ops.push_back(op);
    let waiting = st.waiting;
    drop(st);
    if wake && waiting {
        exchange.changed.notify_one();
    }
    Ok(over)
}

fn bytes_of(value: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Some(b.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Some(b.to_vec());
    }
    if value.is_instance_of::<pyo3::types::PyMemoryView>() {
        let b = value.py().get_type::<PyBytes>().call1((value,)).ok()?;
        return b.cast::<PyBytes>().ok().map(|b| b.as_bytes().to_vec());
    }
    None
}

/// An http.response.start message's headers (an iterable of [name, value] byte strings),
/// checked as start_response checks a WSGI application's.
fn asgi_headers(value: &Bound<'_, PyAny>) -> PyResult<super::start_response::Parsed> {
    let mut pairs = Vec::new();
    for item in value.try_iter()? {
        let item = item?;
        let mut it = item.try_iter()?;
        let (Some(name), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(PyValueError::new_err(
                "ASGI: each response header must be a [name, value] pair",
            ));
        };
        let (name, value) = (name?, value?);
        let name = bytes_of(&name)
            .ok_or_else(|| PyTypeError::new_err("ASGI: a header name must be bytes"))?;
        let value = bytes_of(&value)
            .ok_or_else(|| PyTypeError::new_err("ASGI: a header value must be bytes"))?;
        pairs.push((name, value));
    }
    super::start_response::check_headers(value.py(), pairs)
}

/// The application's error, logged as the WSGI-shaped path logs it.
fn log_app_error(py: Python<'_>, exchange: &Exchange, err: &PyErr) {
    let app = &exchange.app;
    super::response_end::log_app_exception(py, &app.script_path, &app.app_group, err);
    if super::modwsgi::has_event_subscribers(py) {
        super::modwsgi::publish_exception(py, err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> PairList {
        pairs.iter().copied().collect()
    }

    #[test]
    fn scope_parts_follow_the_cgi_variables() {
        let e = env(&[
            ("REQUEST_METHOD", "post"),
            ("SCRIPT_NAME", "/a"),
            ("PATH_INFO", "/x y"),
            ("REQUEST_URI", "/a/x%20y?q=1"),
            ("QUERY_STRING", "q=1"),
            ("SERVER_PROTOCOL", "HTTP/2.0"),
            ("REMOTE_ADDR", "10.0.0.1"),
            ("REMOTE_PORT", "4711"),
            ("SERVER_NAME", "example"),
            ("SERVER_PORT", "8080"),
            ("HTTPS", "on"),
            ("HTTP_HOST", "example"),
            ("CONTENT_TYPE", "text/plain"),
            (
                "mod_rwsgi.asgi_headers",
                "Host:example\nX-Dropped:1\nContent-Type:text/plain\nAuthorization:secret\nX_Odd:kept",
            ),
        ]);
        let p = ScopeParts::from_env(&e);
        assert_eq!(p.method, b"POST");
        assert_eq!(p.path, b"/a/x y");
        assert_eq!(p.raw_path(), b"/a/x%20y");
        assert_eq!(p.http_version, b"2");
        assert_eq!(p.scheme(), b"https");
        assert_eq!(p.client, Some((b"10.0.0.1".to_vec(), 4711)));
        assert_eq!(p.server_host, b"example");
        assert_eq!(p.server_port, 8080);
        let names: Vec<&[u8]> = p.headers.iter().map(|(n, _)| n.as_slice()).collect();
        // X-Dropped and Authorization have no CGI variable here; X_Odd is no CGI name.
        assert_eq!(names, [&b"host"[..], b"content-type", b"x_odd"]);
    }

    #[test]
    fn scope_parts_without_the_header_list_use_http_variables() {
        let e = env(&[
            ("HTTP_X_A", "1"),
            ("CONTENT_LENGTH", ""),
            ("PATH_INFO", "/p"),
        ]);
        let p = ScopeParts::from_env(&e);
        assert_eq!(p.headers, vec![(b"x-a".to_vec(), b"1".to_vec())]);
        assert_eq!(p.scheme(), b"http");
        assert_eq!(p.raw_path(), b"/p");
        assert_eq!(p.http_version, b"1.1");
        assert!(p.client.is_none());
    }
}
