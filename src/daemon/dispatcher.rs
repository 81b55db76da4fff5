//! Serving inside a daemon process: `threads` worker threads share one epoll instance that
//! watches the group's listening socket and every idle Apache connection. A thread with
//! nothing to do waits in `epoll_wait` itself and serves whatever it is handed: a new
//! connection it accepts, or an idle connection on which Apache sent a request. So a request
//! wakes exactly one daemon thread. Connections are registered one-shot (a ready one goes to
//! one thread only) and re-armed once their request is answered. Idle connections never tie
//! up a thread, so Apache children may keep connections open across requests.
//!
//! This file is the dispatch (threads, epoll, connections, per-request bookkeeping); a
//! request's reads and writes on its connection are in `request_io`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::Signal;

use crate::daemon::request_io::{DaemonIo, PushedBody, WsContext};
use crate::logging;
use crate::protocol::{self, Decoder, Frame, Limits, error_code, req_flags};
use crate::python::{AppHost, DaemonAttempts, Outcome, RequestSpec, RequestTimes, ScriptReloading};

/// Sent by [`Dispatcher::request_restart`] to its own process: the main thread, which waits
/// for signals, then acts on the restart at once rather than at its next tick. Otherwise
/// unused by daemons.
pub const WAKE_SIGNAL: Signal = Signal::SIGURG;

const LISTENER_TOKEN: u64 = 0;
/// The stop event: readable once the process stops accepting.
const STOP_TOKEN: u64 = 1;
/// How long a waiting thread sleeps before it looks at the shared state again on its own: a
/// safety net only (the stop event and the listener bookkeeping wake threads when needed).
const WAIT_TIMEOUT_MS: u16 = 10_000;

/// A worker thread keeps its read buffer between requests up to this size (a larger one,
/// grown for a large request, is given back).
const READ_BUFFER_KEPT: usize = 64 * 1024;

/// Settings the serving loop needs (from the group's WSGIDaemonProcess options).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServeSettings {
    pub group: String,
    /// Processes in the group: with more than one, a process whose threads are all busy
    /// stops watching the listener so the others take new connections.
    pub processes: usize,
    pub threads: usize,
    pub socket_timeout: Duration,
    pub queue_timeout: Option<Duration>,
    pub maximum_requests: u64,
    /// `maximum-rss=` in bytes: replace the process warm once a request leaves it larger.
    pub maximum_rss: Option<u64>,
    /// `stack-size=`: stack of each request thread; None = the platform default.
    pub stack_size: Option<usize>,
    /// `send-buffer-size=` / `receive-buffer-size=` of each connection from Apache.
    pub send_buffer_size: Option<usize>,
    pub receive_buffer_size: Option<usize>,
}

/// Microseconds since `epoch`, for lock-free timestamps (0 means "not set").
fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

struct Conn {
    stream: UnixStream,
    dec: Decoder,
    handshaken: bool,
    /// Already added to the epoll instance (re-arming is then a modify).
    registered: bool,
    token: u64,
}

/// State shared by the worker threads and the main thread.
pub struct Dispatcher {
    settings: ServeSettings,
    listener: UnixListener,
    epoll: Epoll,
    /// Written once by stop_accepting and never read: level-triggered, it wakes every
    /// waiting thread so each sees `stopping`.
    stop_event: EventFd,
    /// Threads waiting for work. With none, a process of a multi-process group stops
    /// watching the listener so the group's other processes take new connections (as
    /// mod_wsgi does).
    waiting: AtomicUsize,
    /// Whether the listener is in the epoll set; changed only under `listener_lock`.
    listener_armed: AtomicBool,
    /// A failed send/receive-buffer-size is logged once per process, not per connection.
    buffer_warning_logged: AtomicBool,
    listener_lock: Mutex<()>,
    /// Idle connections by epoll token; a thread woken for one takes it out.
    idle: Mutex<HashMap<u64, Conn>>,
    next_token: AtomicU64,
    stopping: AtomicBool,
    /// The drain time is over: open WebSockets close with 1012 (service restart).
    close_websockets: AtomicBool,
    active: AtomicUsize,
    served: AtomicU64,
    /// Gives freed request buffers back to the system every 1024 requests, and at least once
    /// a second while it serves requests.
    heap_trimmer: crate::heap::HeapTrimmer,
    restart_requested: AtomicBool,
    restart_reason: Mutex<String>,
    /// A loaded script changed: this process must not start another request.
    stale: AtomicBool,
    /// Per worker thread: when its current request started (µs since `epoch`), 0 if idle.
    busy_since: Vec<AtomicU64>,
    /// Per worker thread: its Python thread ident (`threading.get_ident()`), 0 = not yet.
    thread_idents: Vec<AtomicU64>,
    /// Per worker thread: the monitor raised `mod_wsgi.RequestTimeout` in it and the thread
    /// has not started a request since. Set and taken under the lock (see
    /// [`Dispatcher::interrupt_request`]).
    interrupts: Vec<Mutex<bool>>,
    /// Last start or end of a request that counts as activity (µs since `epoch`), for
    /// inactivity-timeout; 0 = never. Requests under `WSGIIgnoreActivity On` do not move it.
    last_activity: AtomicU64,
    /// When the first request started (and with it the script's load), 0 = not yet.
    first_load_started: AtomicU64,
    /// A request got past loading the script.
    loaded: AtomicBool,
    epoch: Instant,
    host: Option<AppHost>,
    host_error: String,
}

impl Dispatcher {
    /// `listener_fd` is the group's socket inherited from the Apache parent. `host` is None
    /// when Python could not start: every request then gets `host_error` as a 500.
    pub fn new(
        settings: ServeSettings,
        listener_fd: RawFd,
        host: Option<AppHost>,
        host_error: String,
    ) -> io::Result<Arc<Dispatcher>> {
        let settings_threads = settings.threads.max(1);
        // SAFETY: the parent passed us this descriptor; the daemon owns it from here on.
        let listener =
            unsafe { <UnixListener as std::os::fd::FromRawFd>::from_raw_fd(listener_fd) };
        // Several threads (and processes) may be woken for one connection: only one gets
        // it, the others must not block in accept.
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let stop_event =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?;
        epoll
            .add(
                &stop_event,
                EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
            )
            .map_err(io::Error::from)?;
        let dispatcher = Dispatcher {
            settings,
            listener,
            epoll,
            stop_event,
            waiting: AtomicUsize::new(0),
            listener_armed: AtomicBool::new(false),
            buffer_warning_logged: AtomicBool::new(false),
            listener_lock: Mutex::new(()),
            idle: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(STOP_TOKEN + 1),
            stopping: AtomicBool::new(false),
            close_websockets: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            heap_trimmer: crate::heap::HeapTrimmer::new(1024, crate::heap::TRIM_INTERVAL),
            restart_requested: AtomicBool::new(false),
            restart_reason: Mutex::new(String::new()),
            stale: AtomicBool::new(false),
            busy_since: (0..settings_threads).map(|_| AtomicU64::new(0)).collect(),
            thread_idents: (0..settings_threads).map(|_| AtomicU64::new(0)).collect(),
            interrupts: (0..settings_threads).map(|_| Mutex::new(false)).collect(),
            last_activity: AtomicU64::new(0),
            first_load_started: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            epoch: Instant::now(),
            host,
            host_error,
        };
        dispatcher.add_listener()?;
        dispatcher.listener_armed.store(true, Ordering::SeqCst);
        Ok(Arc::new(dispatcher))
    }

    pub fn host(&self) -> Option<&AppHost> {
        self.host.as_ref()
    }

    /// Starts the worker threads.
    pub fn start(self: &Arc<Self>) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
        let mut handles = Vec::new();
        for i in 0..self.busy_since.len() {
            let me = Arc::clone(self);
            let mut builder = std::thread::Builder::new().name(format!("rwsgi-worker-{i}"));
            if let Some(bytes) = self.settings.stack_size {
                builder = builder.stack_size(bytes);
            }
            handles.push(builder.spawn(move || me.worker_loop(i))?);
        }
        Ok(handles)
    }

    /// Requests currently being served.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Set when maximum-requests was reached: the main thread then restarts the process.
    /// Tells the WebSockets still open to close with 1012 (service restart): each notices
    /// within a quarter second and ends its request.
    pub fn close_websockets(&self) {
        self.close_websockets.store(true, Ordering::SeqCst);
    }

    pub fn restart_requested(&self) -> bool {
        self.restart_requested.load(Ordering::SeqCst)
    }

    /// Why a restart was requested (empty if none).
    pub fn restart_reason(&self) -> String {
        self.restart_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Asks the main thread to replace this process; the first reason wins. The process
    /// serves on until its replacement is ready.
    pub fn request_restart(&self, reason: &str) {
        if !self.restart_requested.swap(true, Ordering::SeqCst) {
            if let Ok(mut r) = self.restart_reason.lock() {
                *r = reason.to_string();
            }
            logging::info(&format!(
                "RW0041: daemon process '{}' (pid {}): restart requested: {reason}",
                self.settings.group,
                std::process::id()
            ));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), WAKE_SIGNAL);
        }
    }

    /// A loaded script changed: no new request may run here. New connections wait in the
    /// backlog for the replacement instead of coming here only to be turned away.
    pub fn mark_stale(&self, reason: &str) {
        if !self.stale.swap(true, Ordering::SeqCst) {
            self.stop_accepting();
        }
        self.request_restart(reason);
    }

    /// Still taking new connections?
    pub fn is_accepting(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes idle connections; in-flight requests finish, then their
    /// threads end.
    pub fn stop_accepting(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(host) = &self.host {
            host.gil_gate().close();
        }
        self.sync_listener();
        // Closing a connection also takes it out of the epoll set. A thread parking one
        // checks `stopping` under this lock, so none is left behind.
        let idle: Vec<Conn> = self
            .idle
            .lock()
            .map(|mut m| m.drain().map(|(_, c)| c).collect())
            .unwrap_or_default();
        drop(idle);
        self.release_listener();
        let _ = self.stop_event.write(1);
    }

    /// Lets go of this process' reference to the group's listening socket. While the daemon
    /// manager holds the socket (a successor serves from it), nothing changes for Apache.
    /// Once the manager has let go too (the configuration generation ended), the last
    /// process to stop closes it: connections still queued there are refused at once, and
    /// Apache connects again, to the new generation's socket, instead of waiting in a queue
    /// nobody takes from until this process has drained.
    fn release_listener(&self) {
        let Ok(null) = std::fs::File::open("/dev/null") else {
            return;
        };
        // Replaced rather than closed, so the number stays taken: a thread that was woken
        // for the listener just before and calls accept() now gets an error, never another
        // file's connection.
        // SAFETY: both descriptors are open; dup3 atomically makes the listener's number
        // refer to /dev/null, and `null`'s own descriptor is closed when it is dropped.
        unsafe { libc::dup3(null.as_raw_fd(), self.listener.as_raw_fd(), libc::O_CLOEXEC) };
    }

    /// Registers the listener, exclusively: one connection wakes one of the group's
    /// processes, not all of them; within this process, level-triggered readiness wakes one
    /// waiting thread at a time until the backlog is empty.
    fn add_listener(&self) -> io::Result<()> {
        let ev = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
            LISTENER_TOKEN,
        );
        self.epoll.add(&self.listener, ev).map_err(io::Error::from)
    }

    /// Whether the listener should be watched now: not once stopping; in a multi-process
    /// group only while some thread here waits for work.
    fn listener_wanted(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
            && (self.settings.processes <= 1 || self.waiting.load(Ordering::SeqCst) > 0)
    }

    /// Brings the listener's registration in line with `listener_wanted`. Called after every
    /// change of `waiting` or `stopping`. Whoever changes the registration reads the wanted
    /// state again afterwards, and the others compare against `listener_armed` after their
    /// own change (all SeqCst): so the last change always gets acted on.
    fn sync_listener(&self) {
        loop {
            if self.listener_wanted() == self.listener_armed.load(Ordering::SeqCst) {
                return;
            }
            let Ok(_guard) = self.listener_lock.lock() else {
                return;
            };
            let want = self.listener_wanted();
            if want == self.listener_armed.load(Ordering::SeqCst) {
                return;
            }
            if want {
                match self.add_listener() {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        logging::error(&format!(
                            "RW0042: daemon '{}': cannot watch the listening socket: {e}",
                            self.settings.group
                        ));
                        return;
                    }
                }
            } else {
                // ENOENT means it is not registered, which is what we want anyway.
                let _ = self.epoll.delete(&self.listener);
            }
            self.listener_armed.store(want, Ordering::SeqCst);
        }
    }

    /// Waits for the next connection to serve: a new one (accepted here) or an idle one on
    /// which Apache sent a request. None once the process stops accepting.
    fn next_ready(&self, events: &mut [EpollEvent]) -> Option<Conn> {
        // While enough request threads already queue for the GIL, a new request waits in its
        // socket rather than in one more thread queueing for the GIL. A thread waiting here
        // does not count as waiting for work, so in a multi-process group whose other
        // threads are all busy the listener is left to the group's other processes.
        // stop_accepting closes the gate, so stopping never waits here.
        // A thread waiting for work here is the one that takes the next request: while one
        // does, a place freed in the GIL's queue is left to it rather than to a parked thread.
        let looking = self.host.as_ref().map(|host| {
            host.gil_gate().admit();
            host.gil_gate().looking()
        });
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let conn = self.wait_for_connection(events);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(looking);
        self.sync_listener();
        conn
    }

    fn wait_for_connection(&self, events: &mut [EpollEvent]) -> Option<Conn> {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return None;
            }
            self.sync_listener();
            let n = match self.epoll.wait(events, EpollTimeout::from(WAIT_TIMEOUT_MS)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    logging::error(&format!(
                        "RW0043: daemon '{}': epoll failed: {e}",
                        self.settings.group
                    ));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for ev in &events[..n] {
                let conn = match ev.data() {
                    STOP_TOKEN => None,
                    LISTENER_TOKEN => self.accept(),
                    token => self.idle.lock().ok().and_then(|mut m| m.remove(&token)),
                };
                if conn.is_some() {
                    return conn;
                }
            }
        }
    }

    /// Accepts one new connection, which this thread then serves (it carries its hello,
    /// and usually a request, at once). If more are waiting, the listener stays readable
    /// and wakes another thread.
    fn accept(&self) -> Option<Conn> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(false).is_err() {
                        continue;
                    }
                    let _ = stream.set_read_timeout(Some(self.settings.socket_timeout));
                    let _ = stream.set_write_timeout(Some(self.settings.socket_timeout));
                    self.apply_buffer_sizes(&stream);
                    return Some(Conn {
                        stream,
                        dec: Decoder::new(Limits::default()),
                        handshaken: false,
                        registered: false,
                        token: self.next_token.fetch_add(1, Ordering::Relaxed),
                    });
                }
                // Another thread or process took it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The listener was released (stop_accepting) after this thread was woken.
                Err(_) if self.stopping.load(Ordering::SeqCst) => return None,
                Err(e) => {
                    logging::warning(&format!(
                        "RW0044: daemon '{}': accept failed: {e}",
                        self.settings.group
                    ));
                    // The listener stays readable: do not spin on a lasting error
                    // (such as running out of descriptors).
                    std::thread::sleep(Duration::from_millis(100));
                    return None;
                }
            }
        }
    }

    /// send-buffer-size= / receive-buffer-size=. A Unix socket made by accept() does not
    /// inherit the listener's sizes, so each connection gets them.
    fn apply_buffer_sizes(&self, stream: &UnixStream) {
        use nix::sys::socket::{setsockopt, sockopt};
        let sizes = [
            (self.settings.send_buffer_size, "send-buffer-size", true),
            (
                self.settings.receive_buffer_size,
                "receive-buffer-size",
                false,
            ),
        ];
        for (size, option, send) in sizes {
            let Some(bytes) = size else { continue };
            let result = if send {
                setsockopt(stream, sockopt::SndBuf, &bytes)
            } else {
                setsockopt(stream, sockopt::RcvBuf, &bytes)
            };
            if let Err(e) = result {
                if !self.buffer_warning_logged.swap(true, Ordering::Relaxed) {
                    logging::warning(&format!(
                        "RW0045: daemon '{}': cannot set {option}={bytes} on its socket ({e}); the \
                         system default is used",
                        self.settings.group
                    ));
                }
            }
        }
    }

    /// Puts a connection back under epoll until Apache sends its next request.
    fn park(&self, mut conn: Conn) {
        // An idle connection holds no read buffer: a daemon may have hundreds of them (every
        // Apache child pools its own), but only `threads` are read at a time.
        conn.dec.release_memory(0);
        let fd = conn.stream.as_raw_fd();
        let token = conn.token;
        let registered = std::mem::replace(&mut conn.registered, true);
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if self.stopping.load(Ordering::SeqCst) {
            return; // dropping closes it; Apache reconnects to a live process
        }
        idle.insert(token, conn);
        // Armed only once the connection is in `idle`, where the thread woken for it looks;
        // under the lock, so stop_accepting cannot close the descriptor in between.
        // SAFETY: the connection (and its fd) is owned by `idle` until a thread removes it;
        // epoll only refers to the fd by number.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT, token);
        let armed = if registered {
            self.epoll.modify(borrowed, &mut ev)
        } else {
            self.epoll.add(borrowed, ev)
        };
        if let Err(e) = armed {
            logging::warning(&format!(
                "RW0046: daemon '{}': cannot watch an idle connection from Apache (closing it): {e}",
                self.settings.group
            ));
            idle.remove(&token);
        }
    }

    /// Requests running for at least `limit`: (worker index, start stamp, elapsed).
    pub fn overdue_requests(&self, limit: Duration) -> Vec<(usize, u64, Duration)> {
        let now = micros_since(self.epoch);
        self.busy_since
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let since = b.load(Ordering::SeqCst);
                let elapsed = Duration::from_micros(now.saturating_sub(since));
                (since > 0 && elapsed >= limit).then_some((i, since, elapsed))
            })
            .collect()
    }

    /// When worker `index`'s current request started (0: it has none), as in
    /// `overdue_requests`.
    /// Calls `raise` (which raises `mod_wsgi.RequestTimeout` in worker `index`'s thread) if
    /// the request that started at `since` still runs there; true when it was raised.
    /// Call with the GIL held.
    pub fn interrupt_request(
        &self,
        index: usize,
        since: u64,
        raise: impl FnOnce() -> bool,
    ) -> bool {
        let Some(slot) = self.interrupts.get(index) else {
            return false;
        };
        let mut pending = slot.lock().unwrap_or_else(|e| e.into_inner());
        if self.request_started(index) != since || !raise() {
            return false;
        }
        *pending = true;
        true
    }

    /// Whether `mod_wsgi.RequestTimeout` was raised in worker `index` since its last request
    /// began. Called once the next request has its start stamp: a raise that still saw the
    /// previous stamp holds the lock until it is recorded, and a later one sees the new stamp.
    fn take_interrupt(&self, index: usize) -> bool {
        self.interrupts.get(index).is_some_and(|slot| {
            std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    pub fn request_started(&self, index: usize) -> u64 {
        self.busy_since
            .get(index)
            .map(|b| b.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// The Python thread ident of worker `index` (0 if unknown).
    pub fn thread_ident(&self, index: usize) -> u64 {
        self.thread_idents
            .get(index)
            .map(|t| t.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// How long the script has been loading without success (startup-timeout); None when
    /// no request came yet or one got past loading.
    pub fn loading_for(&self) -> Option<Duration> {
        let started = self.first_load_started.load(Ordering::SeqCst);
        if started == 0 || self.loaded.load(Ordering::SeqCst) {
            return None;
        }
        Some(Duration::from_micros(
            micros_since(self.epoch).saturating_sub(started),
        ))
    }

    /// Time since the last request that counts as activity started or ended; None before
    /// the first one.
    pub fn idle_for(&self) -> Option<Duration> {
        let last = self.last_activity.load(Ordering::SeqCst);
        (last > 0).then(|| Duration::from_micros(micros_since(self.epoch).saturating_sub(last)))
    }

    fn worker_loop(&self, index: usize) {
        if let Some(slot) = self.thread_idents.get(index) {
            // CPython's thread ident is the pthread_t of the OS thread.
            // SAFETY: pthread_self has no preconditions.
            slot.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
        }
        let mut events = [EpollEvent::empty(); 1];
        // This thread's read buffer, moved into each connection it serves and back out when
        // the connection is parked: idle connections hold none, and a request does not
        // allocate one.
        let mut read_buffer = Vec::new();
        while let Some(mut conn) = self.next_ready(&mut events) {
            conn.dec.reuse_buffer(std::mem::take(&mut read_buffer));
            let keep = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.serve_connection(&mut conn, index)
            }))
            .unwrap_or_else(|payload| {
                let message =
                    crate::util::panic_message(&*payload).unwrap_or_else(|| "(no message)".into());
                logging::log(
                    logging::Level::Crit,
                    &format!(
                        "RW0047: daemon '{}': a request panicked in mod_rwsgi ({message}); its \
                         connection is closed and the thread serves on",
                        self.settings.group
                    ),
                );
                false
            });
            if let Some(buf) = conn.dec.take_buffer(READ_BUFFER_KEPT) {
                read_buffer = buf;
            }
            if keep {
                self.park(conn);
            }
        }
    }

    /// Serves what is ready on `conn`; true when the connection may be reused.
    fn serve_connection(&self, conn: &mut Conn, index: usize) -> bool {
        if !conn.handshaken {
            let accept = !self.stopping.load(Ordering::SeqCst);
            if let Err(e) = protocol::io::server_handshake(&mut conn.stream, accept) {
                if !protocol::io::is_peer_closed(&e) {
                    logging::warning(&format!(
                        "RW0048: daemon '{}': rejected a connection that did not complete the \
                         protocol handshake: {e}",
                        self.settings.group
                    ));
                }
                return false;
            }
            conn.handshaken = true;
        }
        loop {
            let frame = match protocol::io::read_frame(&mut conn.stream, &mut conn.dec) {
                Ok(f) => f,
                // Including a connection Apache dropped with part of the last response unread
                // (its client went away mid-response): a normal end, not a bad frame.
                Err(e) if protocol::io::is_peer_gone(&e) && conn.dec.is_empty() => return false,
                Err(e) => {
                    logging::warning(&format!(
                        "RW0049: daemon '{}': bad request frame from Apache: {e}",
                        self.settings.group
                    ));
                    return false;
                }
            };
            let Frame::ReqHead(head) = frame else {
                logging::warning(&format!(
                    "RW0050: daemon '{}': expected a request head, got a {} frame",
                    self.settings.group,
                    frame.kind()
                ));
                return false;
            };
            // A pushed body is read whole before anything else happens: the request runs,
            // or is refused, only once Apache's write is complete.
            let pushed = if head.has_flag(req_flags::BODY_PUSHED) {
                match protocol::io::read_pushed_body(&mut conn.stream, &mut conn.dec) {
                    Ok(data) => Some(PushedBody::new(data)),
                    Err(e) if protocol::io::is_peer_closed(&e) => return false,
                    Err(e) => {
                        logging::warning(&format!(
                            "RW0051: daemon '{}': bad request body from Apache: {e}",
                            self.settings.group
                        ));
                        return false;
                    }
                }
            } else {
                None
            };
            if !self.serve_request(conn, head, pushed, index) {
                return false;
            }
            // Pipelined next request already buffered? Serve it now; else park.
            if conn.dec.is_empty() {
                return true;
            }
        }
    }

    fn serve_request(
        &self,
        conn: &mut Conn,
        head: protocol::ReqHead,
        pushed: Option<PushedBody>,
        index: usize,
    ) -> bool {
        // WSGIIgnoreActivity On: as mod_wsgi, the request neither starts nor ends a period
        // of activity, so it does not hold off inactivity-timeout (it still counts as active
        // while it runs: a process is never recycled under a request).
        let activity = (!head.has_flag(req_flags::IGNORE_ACTIVITY)).then_some(&self.last_activity);
        let in_flight = InFlight::enter(
            &self.active,
            self.busy_since.get(index),
            activity,
            self.epoch,
        );
        if self.take_interrupt(index) {
            // Raised just as the previous request ended: it is still pending in this thread's
            // Python state and would land in this request.
            crate::python::clear_interrupt(self.thread_ident(index));
        }
        let keep = self.run_request(conn, &head, pushed, index);
        drop(in_flight);
        self.heap_trimmer.request_done();
        let served = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        let max = self.settings.maximum_requests;
        if max > 0 && served >= max {
            self.request_restart(&format!("maximum-requests={max} reached"));
        }
        if let Some(limit) = self.settings.maximum_rss {
            if let Some(rss) = crate::util::resident_set_bytes(None).filter(|rss| *rss > limit) {
                self.request_restart(&format!(
                    "maximum-rss={} MB exceeded: resident set is {:.1} MB",
                    limit >> 20,
                    rss as f64 / (1024.0 * 1024.0)
                ));
            }
        }
        keep
    }

    fn run_request(
        &self,
        conn: &mut Conn,
        head: &protocol::ReqHead,
        pushed: Option<PushedBody>,
        index: usize,
    ) -> bool {
        // mod_wsgi.daemon_start: this process begins handling the request now.
        let daemon_start_us = crate::util::now_us();
        let mut io = DaemonIo::new(
            &mut conn.stream,
            &mut conn.dec,
            self.settings.socket_timeout,
            pushed,
            head.has_flag(req_flags::BODY_FOLLOWS) || head.has_flag(req_flags::BODY_PUSHED),
        );
        let websocket = head.has_flag(req_flags::ASGI | req_flags::WEBSOCKET);
        if websocket {
            io.set_websocket(WsContext {
                shutdown: &self.close_websockets,
                busy_since: self.busy_since.get(index),
                epoch: self.epoch,
            });
        }
        if self.queue_timeout_expired(head, daemon_start_us) {
            return io
                .send_error(error_code::OVERLOADED, b"queue-timeout expired")
                .is_ok();
        }
        let Some(host) = &self.host else {
            return io
                .send_error(error_code::APP_LOAD_FAILED, self.host_error.as_bytes())
                .is_ok();
        };
        // The script file's path is Apache's r->filename, bytes (a URL can make it non-UTF-8).
        let script = Path::new(OsStr::from_bytes(&head.script_path));
        let app_group = String::from_utf8_lossy(&head.app_group).into_owned();
        // With script reloading, only this request's script is checked (one stat), as
        // mod_wsgi does: a touch of another script restarts the process when a request for
        // that one comes.
        let reloading = head.flags & req_flags::SCRIPT_RELOADING != 0;
        // A request another process of the group turned away because its script must be
        // reloaded (reload_required(), __mtime__) must meet code loaded since it was first
        // sent: a process that loaded it before is replaced too, as after a touch.
        if reloading
            && head.has_flag(req_flags::RELOAD_RESEND)
            && !self.stale.load(Ordering::SeqCst)
            && host.script_loaded_before(script, &app_group, head.queue_start_us)
        {
            self.mark_stale(
                "another process of the group asked for a reload of the WSGI script (__mtime__, \
                 reload_required) and this one loaded it before",
            );
            let _ = io.send_error(error_code::SHUTTING_DOWN, b"daemon process is restarting");
            return false;
        }
        if self.stale.load(Ordering::SeqCst)
            || (reloading && host.script_changed(script, &app_group, head.script_mtime_us))
        {
            // Touch-to-reload: this process must not run the request with old modules.
            // Nothing of it was consumed, so Apache resends it on a new connection, which
            // the replacement process accepts from the backlog.
            self.mark_stale("the WSGI script changed (touch-to-reload)");
            let _ = io.send_error(error_code::SHUTTING_DOWN, b"daemon process is restarting");
            return false;
        }
        let callable = String::from_utf8_lossy(&head.callable).into_owned();
        let spec = request_spec(
            head,
            script,
            &app_group,
            &callable,
            reloading,
            daemon_start_us,
        );
        // startup-timeout: armed by the first request (which loads the script), cleared
        // once a request gets past loading.
        let _ = self.first_load_started.compare_exchange(
            0,
            micros_since(self.epoch),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        let outcome = host.handle(&spec, &mut io);
        if outcome != Outcome::LoadFailed {
            self.loaded.store(true, Ordering::SeqCst);
        }
        self.finish_request(&mut io, outcome, host, script, &app_group)
    }

    /// queue-timeout: true (logged) when the request waited longer than it for a thread.
    fn queue_timeout_expired(&self, head: &protocol::ReqHead, daemon_start_us: u64) -> bool {
        let Some(limit) = self.settings.queue_timeout else {
            return false;
        };
        let waited = Duration::from_micros(daemon_start_us.saturating_sub(head.request_start_us));
        if head.request_start_us > 0 && waited > limit {
            logging::log_at!(
                logging::Level::Info,
                "RW0052: daemon '{}': request waited {:.1} s for a thread (queue-timeout={} s); \
                 answered 504",
                self.settings.group,
                waited.as_secs_f64(),
                limit.as_secs()
            );
            return true;
        }
        false
    }

    /// Ends the request after the host handled it, as its outcome says; true if the
    /// connection stays usable for the next request.
    fn finish_request(
        &self,
        io: &mut DaemonIo<'_>,
        outcome: Outcome,
        host: &AppHost,
        script: &Path,
        app_group: &str,
    ) -> bool {
        match outcome {
            Outcome::Completed | Outcome::AppError { head_sent: false } => {
                io.finish().is_ok() && !io.failed
            }
            Outcome::LoadFailed => {
                if io.head_sent {
                    false
                } else if crate::python::sub_interpreter_failed(app_group) {
                    // The application group's interpreter did not start: a server error
                    // (500, traceback in the error log), not a script still to load (503).
                    let msg = format!(
                        "the Python sub-interpreter of application group '{app_group}' failed to start (see error log)"
                    );
                    io.send_error(error_code::INTERNAL, msg.as_bytes()).is_ok()
                } else {
                    // Shown lossily when the path is not UTF-8.
                    let script = script.display();
                    let msg = format!("failed to load WSGI script '{script}' (see error log)");
                    io.send_error(error_code::APP_LOAD_FAILED, msg.as_bytes())
                        .is_ok()
                }
            }
            // The body is incomplete: say so (Apache then logs an application failure, not
            // a daemon crash, and aborts the client connection); the connection stays usable.
            Outcome::AppError { head_sent: true } => {
                !io.failed
                    && io
                        .send_error(
                            error_code::APP_FAILED,
                            b"the application failed after the response head was sent (see \
                              the daemon's log); the response body is incomplete",
                        )
                        .is_ok()
            }
            // The client is gone: closing without RespEnd tells Apache to abort its side too.
            Outcome::ClientGone => false,
            // The script's reload check asked for a reload: as after a touch, nothing of the
            // request ran, so Apache resends it to the replacement process. A touch between
            // the check in run_request and this request's own check lands here too: name it
            // as a touch.
            Outcome::ReloadRequired => {
                self.mark_stale(if host.script_changed(script, app_group, 0) {
                    "the WSGI script changed (touch-to-reload)"
                } else {
                    "the WSGI script asked for a reload (__mtime__, reload_required)"
                });
                let _ = io.send_error(error_code::SHUTTING_DOWN, b"daemon process is restarting");
                false
            }
        }
    }
}

/// What the host needs to run one request received from Apache.
fn request_spec<'a>(
    head: &'a protocol::ReqHead,
    script: &'a Path,
    app_group: &'a str,
    callable: &'a str,
    reloading: bool,
    daemon_start_us: u64,
) -> RequestSpec<'a> {
    RequestSpec {
        script_path: script,
        app_group,
        callable: if callable.is_empty() {
            "application"
        } else {
            callable
        },
        env: &head.env,
        // Daemons reload by restarting the whole process, as mod_wsgi does: a changed
        // script file is caught in run_request, __mtime__ and reload_required() by the host.
        script_reloading: if reloading {
            ScriptReloading::ReplaceProcess
        } else {
            ScriptReloading::Off
        },
        times: RequestTimes {
            request_start_us: head.request_start_us,
            queue_start_us: head.queue_start_us,
            daemon_start_us,
        },
        daemon_attempts: DaemonAttempts {
            connects: head.daemon_connects,
            restarts: head.daemon_restarts,
        },
        // As mod_wsgi: the request_rec lives in the Apache child, not here.
        apache_request: None,
        asgi: head.has_flag(protocol::req_flags::ASGI),
        websocket: head.has_flag(protocol::req_flags::ASGI | protocol::req_flags::WEBSOCKET),
    }
}

/// One request being served: counted in `active`, its thread marked busy (request-timeout
/// watches that) and the activity clock (inactivity-timeout) moved unless the request is
/// ignored as activity (`last_activity` None), then undone on drop, so even a panic inside
/// the request leaves the counters right.
struct InFlight<'a> {
    active: &'a AtomicUsize,
    busy_since: Option<&'a AtomicU64>,
    last_activity: Option<&'a AtomicU64>,
    epoch: Instant,
}

impl<'a> InFlight<'a> {
    fn enter(
        active: &'a AtomicUsize,
        busy_since: Option<&'a AtomicU64>,
        last_activity: Option<&'a AtomicU64>,
        epoch: Instant,
    ) -> InFlight<'a> {
        active.fetch_add(1, Ordering::SeqCst);
        let started = micros_since(epoch);
        if let Some(clock) = last_activity {
            clock.store(started, Ordering::SeqCst);
        }
        if let Some(slot) = busy_since {
            slot.store(started, Ordering::SeqCst);
        }
        InFlight {
            active,
            busy_since,
            last_activity,
            epoch,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.busy_since {
            slot.store(0, Ordering::SeqCst);
        }
        if let Some(clock) = self.last_activity {
            clock.store(micros_since(self.epoch), Ordering::SeqCst);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsFd for Dispatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A dispatcher without Python, so every request is answered with an APP_LOAD_FAILED error
    /// frame: enough to exercise the threads, the epoll hand-offs and stopping.
    fn start_dispatcher(
        dir: &std::path::Path,
        processes: usize,
        threads: usize,
    ) -> (Arc<Dispatcher>, Vec<std::thread::JoinHandle<()>>) {
        start_dispatcher_with(dir, processes, threads, None)
    }

    fn start_dispatcher_with(
        dir: &std::path::Path,
        processes: usize,
        threads: usize,
        host: Option<AppHost>,
    ) -> (Arc<Dispatcher>, Vec<std::thread::JoinHandle<()>>) {
        let listener = UnixListener::bind(dir.join("group.sock")).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
        let settings = ServeSettings {
            group: "unit".into(),
            processes,
            threads,
            socket_timeout: Duration::from_secs(10),
            queue_timeout: None,
            maximum_requests: 0,
            maximum_rss: None,
            stack_size: Some(256 * 1024),
            send_buffer_size: Some(64 * 1024),
            receive_buffer_size: None,
        };
        let dispatcher = Dispatcher::new(settings, fd, host, "no Python here".into()).unwrap();
        let handles = dispatcher.start().unwrap();
        (dispatcher, handles)
    }

    fn connect(dir: &std::path::Path) -> UnixStream {
        let mut stream = UnixStream::connect(dir.join("group.sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        protocol::io::client_handshake(&mut stream, 0).unwrap();
        stream
    }

    /// Sends one request head and returns the error code the daemon answers with.
    fn error_code_for_request(stream: &mut UnixStream) -> u16 {
        let mut out = Vec::new();
        Frame::ReqHead(protocol::ReqHead {
            flags: 0,
            daemon_connects: 1,
            daemon_restarts: 0,
            request_start_us: 0,
            queue_start_us: 0,
            script_mtime_us: 0,
            script_path: b"/srv/app.wsgi".to_vec(),
            app_group: Vec::new(),
            callable: Vec::new(),
            env: vec![(b"REQUEST_METHOD".to_vec(), b"GET".to_vec())]
                .into_iter()
                .collect(),
        })
        .encode(&mut out)
        .unwrap();
        stream.write_all(&out).unwrap();
        match protocol::io::read_frame(stream, &mut Decoder::new(Limits::default())).unwrap() {
            Frame::Error { code, .. } => code,
            other => panic!("expected an error frame, got a {} frame", other.kind()),
        }
    }

    /// More connections than threads, each with several requests: every request is answered
    /// (connections are re-armed after each one; new connections wait while every thread is
    /// busy and are accepted once one is free), and stop_accepting ends all threads at once
    /// (well before their 10 s epoll timeout) and closes the idle connections.
    fn serve_then_stop(processes: usize) {
        let tmp = tempfile::Builder::new()
            .prefix("rwsgi-worker-tests-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let (dispatcher, handles) = start_dispatcher(&dir, processes, 3);
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let mut stream = connect(&dir);
                    for _ in 0..5 {
                        assert_eq!(
                            error_code_for_request(&mut stream),
                            error_code::APP_LOAD_FAILED
                        );
                    }
                    stream
                })
            })
            .collect();
        let streams: Vec<UnixStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        // A request is counted just after its answer was written.
        let deadline = Instant::now() + Duration::from_secs(5);
        while dispatcher.served.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(dispatcher.served.load(Ordering::SeqCst), 40);
        assert_eq!(dispatcher.active(), 0);

        let started = Instant::now();
        dispatcher.stop_accepting();
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "worker threads took {:?} to stop",
            started.elapsed()
        );
        for mut stream in streams {
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).unwrap(),
                0,
                "idle connection left open"
            );
        }
    }

    #[test]
    fn a_panicking_request_leaves_the_counters_right() {
        let (active, busy, last) = (AtomicUsize::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let epoch = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _in_flight = InFlight::enter(&active, Some(&busy), Some(&last), epoch);
            assert_eq!(active.load(Ordering::SeqCst), 1);
            assert_ne!(busy.load(Ordering::SeqCst), 0);
            panic!("inside a request");
        }));
        assert!(result.is_err());
        assert_eq!(active.load(Ordering::SeqCst), 0);
        assert_eq!(busy.load(Ordering::SeqCst), 0);
        assert_ne!(last.load(Ordering::SeqCst), 0);
    }

    /// Threads held at the GIL gate (src/python/gil_gate.rs) do not count as waiting for
    /// work: in a multi-process group the listener is left to the other processes. Stopping
    /// lets them go at once, though the GIL's queue stays full (their re-check would not).
    #[test]
    fn threads_held_at_the_gil_gate_leave_the_listener_and_stop_at_once() {
        let tmp = tempfile::Builder::new()
            .prefix("rwsgi-worker-tests-")
            .tempdir()
            .unwrap();
        let (dispatcher, handles) = start_dispatcher_with(tmp.path(), 2, 3, Some(AppHost::new()));
        // Every thread first waits for work (the listener armed for them), so each one that
        // then parks has gone through the listener bookkeeping; a thread that parked before
        // it ever waited would leave the initial registration as it was.
        let deadline = Instant::now() + Duration::from_secs(5);
        while dispatcher.waiting.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "threads did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        let gate = dispatcher.host().unwrap().gil_gate();
        let queued: Vec<_> = (0..gate.limit()).map(|_| gate.queue()).collect();
        // Threads already in epoll_wait go through the gate when they next look for work:
        // a connection that fails its handshake sends each one back there.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.parked() < 3 {
            assert!(
                Instant::now() < deadline,
                "{} of 3 threads at the gate",
                gate.parked()
            );
            if let Ok(mut stream) = UnixStream::connect(tmp.path().join("group.sock")) {
                let _ = stream.write_all(b"not a hello");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !dispatcher.listener_armed.load(Ordering::SeqCst),
            "a process whose threads all wait at the gate still watches the listener"
        );
        let started = Instant::now();
        dispatcher.stop_accepting();
        let deadline = started + Duration::from_secs(5);
        while !handles.iter().all(|h| h.is_finished()) {
            if Instant::now() > deadline {
                drop(queued); // let them end before failing
                panic!("threads at the gate did not stop");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        handles.into_iter().for_each(|h| h.join().unwrap());
        drop(queued);
    }

    #[test]
    fn one_process_group_serves_and_stops() {
        serve_then_stop(1);
    }

    /// In a multi-process group the listener leaves the epoll set while every thread is busy.
    #[test]
    fn multi_process_group_serves_and_stops() {
        serve_then_stop(2);
    }
}
