//! The Apache child's side of daemon mode: connect to the group's socket (reusing open
//! connections), send the request head, answer the daemon's requests for body bytes,
//! and relay the response to the client as it arrives.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::ffi;
use crate::protocol::fd_passing::FdReader;
use crate::protocol::{self, Decoder, Frame, FrameKind, Limits, RawFrame, ReqHeadRef, error_code};

/// Where and how to reach one process group.
#[derive(Clone, Debug)]
pub struct DaemonTarget {
    pub group: String,
    pub socket_path: PathBuf,
    pub connect_timeout: Duration,
    pub socket_timeout: Duration,
    /// request-timeout: a request with no response head by then gets 504.
    pub request_timeout: Option<Duration>,
    /// response-socket-timeout (else socket-timeout): the client socket's timeout while the
    /// response is relayed; None = Apache's `Timeout`.
    pub response_socket_timeout: Option<Duration>,
    /// response-flush-delay: how long a flush waits for more of the response.
    pub response_flush_delay: Duration,
    /// response-buffer-size: at most this many bytes go to the output filters unflushed.
    pub response_buffer_size: usize,
    /// script-user= / script-group=.
    pub script_owner: super::script_owner::ScriptOwner,
}

/// What to run in the daemon.
pub struct RequestPlan<'a> {
    pub script: &'a str,
    pub app_group: &'a str,
    pub callable: &'a str,
    pub flags: u32,
    /// WSGIEnableSendfile: file_wrapper files go out with sendfile.
    pub sendfile: bool,
    /// WSGIErrorOverride: an app's 4xx/5xx body is dropped and Apache's ErrorDocument sent.
    pub error_override: bool,
}

struct DaemonConn {
    stream: UnixStream,
    dec: Decoder,
    /// Descriptors received with RespFile frames, not yet used.
    fds: VecDeque<OwnedFd>,
}

/// Open connections per socket path, reused across requests by this Apache child.
static IDLE: Mutex<Option<HashMap<PathBuf, Vec<DaemonConn>>>> = Mutex::new(None);
const MAX_IDLE_PER_GROUP: usize = 64;

fn take_idle(path: &Path) -> Option<DaemonConn> {
    IDLE.lock().ok()?.as_mut()?.get_mut(path)?.pop()
}

fn drop_idle(path: &Path) {
    if let Ok(mut guard) = IDLE.lock() {
        if let Some(map) = guard.as_mut() {
            map.remove(path);
        }
    }
}

fn put_idle(path: &Path, mut conn: DaemonConn) {
    // An idle connection keeps no read buffer: a child pools one connection per request it
    // served at once (dozens under load), and the next request's buffer is one allocation.
    // Keeping 8 KiB each held about 160 KiB more live heap per child in `make bench`.
    conn.dec.release_memory(0);
    conn.fds.clear();
    if let Ok(mut guard) = IDLE.lock() {
        let list = guard
            .get_or_insert_with(HashMap::new)
            .entry(path.to_path_buf())
            .or_default();
        if list.len() < MAX_IDLE_PER_GROUP {
            list.push(conn);
        }
    }
}

/// Connects, retrying while the daemon is (re)starting: the socket may not exist yet or
/// its backlog may be full. Gives up after connect-timeout.
fn connect(target: &DaemonTarget) -> io::Result<DaemonConn> {
    let deadline = Instant::now() + target.connect_timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        match UnixStream::connect(&target.socket_path) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(target.socket_timeout))?;
                stream.set_write_timeout(Some(target.socket_timeout))?;
                match protocol::io::client_handshake(&mut stream, 0) {
                    Ok(_) => {
                        return Ok(DaemonConn {
                            stream,
                            dec: Decoder::new(Limits::default()),
                            fds: VecDeque::new(),
                        });
                    }
                    // A process that stopped accepting had already taken this connection:
                    // the next one waits for a live process.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionReset
                                | io::ErrorKind::BrokenPipe
                                | io::ErrorKind::UnexpectedEof
                                | io::ErrorKind::ConnectionAborted
                        ) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(250));
                    }
                    // Connected (into the backlog) but no answer within socket-timeout: the
                    // daemon is frozen or swamped. Not a connect failure: report a timeout.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, e));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::WouldBlock
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Request bodies up to this size are read from the client before a daemon is involved,
/// so a slow uploader ties up an Apache thread but never a daemon thread, and the request
/// can still be resent if its daemon is being replaced.
const PREREAD_LIMIT: usize = 1024 * 1024;

/// The request body: the pre-read part, then (for large bodies) the rest from the client.
pub struct Body {
    pre: Vec<u8>,
    pos: usize,
    /// The whole body is in `pre`.
    complete: bool,
    /// It goes to the daemon with the head, unasked (protocol `BODY_PUSHED`).
    push: bool,
}

impl Body {
    /// Reads the body from the client, up to [`PREREAD_LIMIT`]; Err(status) when the client
    /// fails (logged).
    pub fn preread(r: &mut Request<'_>, has_body: bool) -> Result<Body, i32> {
        let mut body = Body {
            pre: Vec::new(),
            pos: 0,
            complete: !has_body,
            push: false,
        };
        if body.complete {
            return Ok(body); // no body: no buffer, no read
        }
        // With Content-Length the buffer is allocated once, at its final size.
        let declared = r
            .declared_body_length()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(PREREAD_LIMIT));
        if let Some(n) = declared {
            body.pre.reserve_exact(n);
        }
        while !body.complete && body.pre.len() < PREREAD_LIMIT {
            let room = match declared {
                // Apache's input filters deliver no more than Content-Length.
                Some(n) if n == body.pre.len() => {
                    body.complete = true;
                    break;
                }
                Some(n) => n - body.pre.len(),
                None => (PREREAD_LIMIT - body.pre.len()).min(64 * 1024),
            };
            match r.read_body_into(&mut body.pre, room) {
                Ok(0) => body.complete = true,
                Ok(_) => {}
                Err(_) => {
                    log::request(
                        r,
                        Level::Info,
                        "mod_rwsgi: error reading the request body from the client",
                    );
                    return Err(ffi::HTTP_BAD_REQUEST);
                }
            }
        }
        // A small body already read whole goes with the head: the daemon then need not ask
        // for it (one round trip fewer).
        body.push = has_body && body.complete && body.pre.len() <= protocol::PUSHED_BODY_MAX;
        Ok(body)
    }

    /// Whether the body goes with the head (the head must then carry `BODY_PUSHED`).
    pub fn pushed(&self) -> bool {
        self.push
    }

    /// Up to `max` bytes for the daemon, from the pre-read part or else read into `buf`;
    /// empty at the end of the body.
    fn next<'a>(
        &'a mut self,
        r: &mut Request<'_>,
        max: usize,
        buf: &'a mut Vec<u8>,
    ) -> io::Result<&'a [u8]> {
        if self.pos < self.pre.len() {
            let start = self.pos;
            self.pos += (self.pre.len() - start).min(max);
            return Ok(&self.pre[start..self.pos]);
        }
        if self.complete {
            return Ok(&[]);
        }
        buf.clear();
        let n = r.read_body_into(buf, max.clamp(1, 1024 * 1024))?;
        if n == 0 {
            self.complete = true;
        }
        Ok(&buf[..n])
    }
}

/// Why a request to a daemon did not complete normally.
enum Failure {
    /// The request head could not even be written: the daemon never saw it.
    NotSent(io::Error),
    /// Nothing was processed and nothing consumed: safe to try again on a new connection.
    Retryable(io::Error),
    /// The daemon is being replaced and did not run the request: resend it on a fresh
    /// connection (the replacement takes it from the socket's backlog).
    Restarting,
    /// An HTTP status to return (nothing sent to the client yet), with a log line.
    Status(i32),
    /// Response bytes already went out: the client connection is aborted.
    Aborted,
}

/// The request head for the daemon: `plan`'s fields and the environ `env`. Err(status) when
/// it exceeds what the protocol carries (logged).
pub fn encode_head<'a>(
    r: &Request<'_>,
    plan: &RequestPlan<'_>,
    env: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Vec<u8>, i32> {
    let mut head = Vec::with_capacity(4096);
    let head_ref = ReqHeadRef {
        flags: plan.flags,
        request_start_us: u64::try_from(r.request_time_us()).unwrap_or(0),
        // mod_wsgi.queue_start: the request goes to the daemon socket right after this.
        queue_start_us: now_us(),
        script_path: plan.script.as_bytes(),
        app_group: plan.app_group.as_bytes(),
        callable: plan.callable.as_bytes(),
    };
    match protocol::encode_req_head_into(&mut head, &head_ref, env) {
        Ok(()) => Ok(head),
        Err(e) => {
            log::request(
                r,
                Level::Error,
                &format!("mod_rwsgi: request too large for the daemon protocol: {e}"),
            );
            Err(ffi::HTTP_REQUEST_ENTITY_TOO_LARGE)
        }
    }
}

/// Microseconds since the Unix epoch (the clock of `r->request_time`).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Returns freed request and response buffers to the system every 1024 requests of a child,
/// and at least once a second while it serves requests.
static HEAP_TRIMMER: crate::heap::HeapTrimmer =
    crate::heap::HeapTrimmer::new(1024, crate::heap::TRIM_INTERVAL);

/// Serves `r` through the daemon group, sending `head` (from [`encode_head`]) and `body`
/// (from [`Body::preread`]). Returns Apache's handler result.
pub fn serve(
    r: &mut Request<'_>,
    target: &DaemonTarget,
    plan: &RequestPlan<'_>,
    head: &[u8],
    mut body: Body,
) -> i32 {
    HEAP_TRIMMER.request_done();
    // Retry when a reused connection turns out closed (its daemon restarted), or while a
    // daemon being replaced turns requests away: in both cases nothing was consumed. Bounded
    // by connect-timeout and an attempt count.
    let mut attempts = 0;
    // A connection that fails after the head went out may mean the daemon died while
    // running the request: resend at most once.
    let mut resent_after_close = false;
    // A GET, HEAD or OPTIONS without a body whose daemon died before answering is resent
    // once to a live (or freshly started) daemon of the group: the client never sees the
    // crash. Anything else is not resent after the daemon saw it.
    let idempotent = matches!(r.method(), b"GET" | b"HEAD" | b"OPTIONS")
        && plan.flags & crate::protocol::req_flags::BODY_FOLLOWS == 0;
    let deadline = Instant::now() + target.connect_timeout;
    loop {
        attempts += 1;
        // After a failed attempt, only a new connection: a pooled one, even one another
        // thread has just put back, may lead to the same process, which is dying or draining.
        let pooled = if attempts == 1 {
            take_idle(&target.socket_path)
        } else {
            None
        };
        let (conn, reused) = match pooled {
            Some(c) => (c, true),
            None => match connect(target) {
                Ok(c) => (c, false),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    log::request(
                        r,
                        Level::Error,
                        &format!(
                            "mod_rwsgi: timeout waiting for daemon process '{}' to answer the \
                             protocol handshake (socket-timeout={} s expired): it is stopped, \
                             hung or overloaded",
                            target.group,
                            target.socket_timeout.as_secs()
                        ),
                    );
                    return ffi::HTTP_GATEWAY_TIME_OUT;
                }
                Err(e) => {
                    log::request(
                        r,
                        Level::Error,
                        &format!(
                            "mod_rwsgi: unable to connect to WSGI daemon process '{}' on '{}' \
                             within connect-timeout={} s: {e}",
                            target.group,
                            target.socket_path.display(),
                            target.connect_timeout.as_secs()
                        ),
                    );
                    return ffi::HTTP_SERVICE_UNAVAILABLE;
                }
            },
        };
        body.pos = 0;
        let result = with_response_socket_timeout(r, target, |r| {
            exchange(r, target, conn, head, &mut body, plan)
        });
        match result {
            Ok(()) => return ffi::OK,
            Err(Failure::NotSent(_)) if Instant::now() < deadline && attempts < 64 => {
                drop_idle(&target.socket_path);
                continue;
            }
            Err(Failure::NotSent(e)) => {
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: cannot send the request to daemon process '{}': {e}",
                        target.group
                    ),
                );
                return ffi::HTTP_SERVICE_UNAVAILABLE;
            }
            Err(Failure::Retryable(e)) if (reused || idempotent) && !resent_after_close => {
                resent_after_close = true;
                // The other pooled connections most likely led to the same dead process.
                drop_idle(&target.socket_path);
                log::request(
                    r,
                    if reused { Level::Debug } else { Level::Info },
                    &format!(
                        "mod_rwsgi: daemon process '{}' closed the connection before \
                         answering ({e}); resending the request once",
                        target.group
                    ),
                );
                continue;
            }
            Err(Failure::Retryable(e)) => {
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: daemon process '{}' closed the connection before \
                         responding ({e}): it died or was killed while running this request \
                         (see the supervisor's line for its PID and exit status or signal); \
                         the request is not resent because it {}",
                        target.group,
                        if idempotent {
                            "already was once"
                        } else {
                            "is not a GET/HEAD/OPTIONS without a body"
                        }
                    ),
                );
                return ffi::HTTP_BAD_GATEWAY;
            }
            Err(Failure::Restarting) if Instant::now() < deadline && attempts < 64 => {
                // Every pooled connection may lead to the process being replaced.
                drop_idle(&target.socket_path);
                std::thread::sleep(Duration::from_millis(5 * attempts.min(20)));
                continue;
            }
            Err(Failure::Restarting) => {
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: daemon process group '{}' kept restarting for \
                         connect-timeout={} s",
                        target.group,
                        target.connect_timeout.as_secs()
                    ),
                );
                return ffi::HTTP_SERVICE_UNAVAILABLE;
            }
            Err(Failure::Status(code)) => return code,
            Err(Failure::Aborted) => {
                // What the client was already owed goes out first (a flush may be pending),
                // then the connection ends: the body is visibly incomplete.
                let _ = r.flush();
                r.abort_connection();
                return ffi::OK;
            }
        }
    }
}

/// Runs `f` with the client socket's timeout set to response-socket-timeout (as mod_wsgi,
/// socket-timeout when not given), and puts Apache's back afterwards: the connection may
/// serve further requests through other handlers.
fn with_response_socket_timeout<T>(
    r: &mut Request<'_>,
    target: &DaemonTarget,
    f: impl FnOnce(&mut Request<'_>) -> T,
) -> T {
    let Some(timeout) = target.response_socket_timeout else {
        return f(r);
    };
    let saved = r.client_socket_timeout();
    r.set_client_socket_timeout(timeout);
    let result = f(r);
    if let Some(saved) = saved {
        r.set_client_socket_timeout(saved);
    }
    result
}

/// One request/response exchange on `conn`. On success the connection goes back to the
/// idle pool.
fn exchange(
    r: &mut Request<'_>,
    target: &DaemonTarget,
    mut conn: DaemonConn,
    head: &[u8],
    body: &mut Body,
    plan: &RequestPlan<'_>,
) -> Result<(), Failure> {
    let sendfile = plan.sendfile;
    // WSGIErrorOverride: the app's error status, whose head and body are dropped so that
    // Apache answers with its own ErrorDocument (as ProxyErrorOverride).
    let mut overridden: Option<i32> = None;
    // A daemon reads a pushed body whole before it starts the request: if this write fails,
    // the request did not run.
    let pushed = body.push.then_some(&body.pre[..]);
    if let Err(e) = protocol::io::write_request(&mut conn.stream, head, pushed) {
        return Err(Failure::NotSent(e));
    }
    if body.push {
        body.pos = body.pre.len(); // all sent: a ReadBody (a daemon bug) gets the end
    }
    let head_deadline = target.request_timeout.map(|t| Instant::now() + t);
    let mut body_buf: Vec<u8> = Vec::new();
    let mut head_sent = false;
    let mut body_read = false;
    let mut flush_pending = false;
    let mut unflushed = 0usize;
    // The daemon has just been sent something to answer: wait for it before reading.
    let mut awaiting_answer = true;
    loop {
        // Until the response head arrives, wait no longer than request-timeout; after it,
        // socket-timeout.
        let timeout = match head_deadline {
            Some(d) if !head_sent => d
                .saturating_duration_since(Instant::now())
                .min(target.socket_timeout)
                .max(Duration::from_millis(1)),
            _ => target.socket_timeout,
        };
        // A flush the daemon asked for is done once no further frame is already here and
        // none arrives within response-flush-delay: consecutive write()s then leave in one
        // client write (and pacing filters such as mod_ratelimit are not forced into short
        // writes), and nothing waits on the daemon unflushed for longer than the delay.
        if flush_pending
            && !conn.dec.has_frame().unwrap_or(false)
            && !readable_within(&conn.stream, target.response_flush_delay)
        {
            flush_pending = false;
            unflushed = 0;
            if r.flush().is_err() {
                return Err(Failure::Aborted);
            }
        }
        let mut reader = FdReader {
            stream: &conn.stream,
            fds: &mut conn.fds,
            timeout: Some(timeout),
            wait_first: std::mem::take(&mut awaiting_answer),
        };
        let frame = match protocol::io::read_raw_frame(&mut reader, &mut conn.dec) {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // A timeout is never retried: the daemon may still be running the request.
                let which = if !head_sent && head_deadline.is_some_and(|d| Instant::now() >= d) {
                    format!(
                        "request-timeout={} s",
                        target.request_timeout.unwrap_or_default().as_secs()
                    )
                } else {
                    format!("socket-timeout={} s", target.socket_timeout.as_secs())
                };
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: timeout waiting for daemon process '{}' ({which} \
                         expired)",
                        target.group
                    ),
                );
                return Err(if head_sent {
                    Failure::Aborted
                } else {
                    Failure::Status(ffi::HTTP_GATEWAY_TIME_OUT)
                });
            }
            Err(e) => {
                // A daemon that had read the request whole may have run it and died: a pushed
                // body makes the request unsafe to resend unless the daemon left some of it
                // unread (its close then resets the connection).
                let maybe_started =
                    body_read || (body.push && e.kind() != io::ErrorKind::ConnectionReset);
                if !head_sent && !maybe_started {
                    return Err(Failure::Retryable(e));
                }
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: daemon process '{}' failed mid-request ({e}): it died or \
                         was killed while running this request (see the supervisor's line for \
                         its PID and exit status or signal); the request is not resent because \
                         the daemon had already started on it",
                        target.group
                    ),
                );
                return Err(if head_sent {
                    Failure::Aborted
                } else {
                    Failure::Status(ffi::HTTP_BAD_GATEWAY)
                });
            }
        };
        match frame.kind {
            FrameKind::RespBody if overridden.is_some() => {}
            FrameKind::Flush if overridden.is_some() => {}
            FrameKind::RespBody => {
                if r.write(frame.payload).is_err() {
                    // Client gone: drop the daemon connection so the app sees it.
                    return Err(Failure::Aborted);
                }
                // response-buffer-size: bounds what an output filter that buffers without
                // draining may hold for this request.
                unflushed += frame.payload.len();
                if unflushed >= target.response_buffer_size {
                    unflushed = 0;
                    if r.flush().is_err() {
                        return Err(Failure::Aborted);
                    }
                }
            }
            FrameKind::ReadBody | FrameKind::RespHead | FrameKind::Error => {
                let decoded = decode(r, target, frame, head_sent)?;
                match decoded {
                    Frame::ReadBody { max } => {
                        let chunk = match body.next(r, max as usize, &mut body_buf) {
                            Ok(chunk) => chunk,
                            Err(_) => {
                                log::request(
                                    r,
                                    Level::Info,
                                    "mod_rwsgi: error reading the request body from the client",
                                );
                                return Err(if head_sent {
                                    Failure::Aborted
                                } else {
                                    Failure::Status(ffi::HTTP_BAD_REQUEST)
                                });
                            }
                        };
                        // The daemon has started on the body: after a crash the request is not
                        // resent (it may not be idempotent).
                        body_read = true;
                        if let Err(e) =
                            protocol::io::write_body(&mut conn.stream, FrameKind::ReqBody, chunk)
                        {
                            log::request(
                                r,
                                Level::Error,
                                &format!(
                                    "mod_rwsgi: sending the request body to daemon '{}' failed: {e}",
                                    target.group
                                ),
                            );
                            return Err(if head_sent {
                                Failure::Aborted
                            } else {
                                Failure::Status(ffi::HTTP_BAD_GATEWAY)
                            });
                        }
                        awaiting_answer = true;
                    }
                    Frame::RespHead(resp) if plan.error_override && resp.status >= 400 => {
                        overridden = Some(i32::from(resp.status));
                        head_sent = true;
                    }
                    Frame::RespHead(resp) => {
                        r.set_status(resp.status, &resp.reason);
                        for (k, v) in &resp.headers {
                            r.add_header_out(k, v);
                        }
                        head_sent = true;
                    }
                    Frame::Error { code, .. }
                        if code == error_code::SHUTTING_DOWN && !head_sent && !body_read =>
                    {
                        return Err(Failure::Restarting);
                    }
                    Frame::Error { code, message } => {
                        let status = match code {
                            error_code::OVERLOADED => ffi::HTTP_GATEWAY_TIME_OUT,
                            // The app is unavailable until its script loads.
                            error_code::APP_LOAD_FAILED => ffi::HTTP_SERVICE_UNAVAILABLE,
                            error_code::SHUTTING_DOWN => ffi::HTTP_SERVICE_UNAVAILABLE,
                            _ => ffi::HTTP_INTERNAL_SERVER_ERROR,
                        };
                        log::request(
                            r,
                            Level::Error,
                            &format!(
                                "mod_rwsgi: daemon process '{}': {}: {}",
                                target.group,
                                error_code::name(code),
                                String::from_utf8_lossy(&message)
                            ),
                        );
                        put_idle(&target.socket_path, conn);
                        return Err(if head_sent {
                            Failure::Aborted
                        } else {
                            Failure::Status(status)
                        });
                    }
                    _ => unreachable!("decoded kind matches the raw kind"),
                }
            }
            FrameKind::Flush => flush_pending = true,
            FrameKind::RespFile => {
                let Frame::RespFile { offset, length } = decode(r, target, frame, head_sent)?
                else {
                    unreachable!("decoded kind matches the raw kind");
                };
                let file = conn.fds.pop_front();
                if overridden.is_some() {
                    continue; // dropped with the rest of the app's error body
                }
                let regular = file.as_ref().is_some_and(|fd| {
                    nix::sys::stat::fstat(fd).is_ok_and(|st| {
                        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                            .contains(nix::sys::stat::SFlag::S_IFREG)
                    })
                });
                let Some(fd) = file.filter(|_| regular) else {
                    log::request(
                        r,
                        Level::Error,
                        &format!(
                            "mod_rwsgi: daemon process '{}' sent a file frame without a regular \
                             file's descriptor",
                            target.group
                        ),
                    );
                    return Err(if head_sent {
                        Failure::Aborted
                    } else {
                        Failure::Status(ffi::HTTP_BAD_GATEWAY)
                    });
                };
                // The request pool closes `fd` once Apache has written the file.
                if r.send_file(fd, offset, length, sendfile).is_err() {
                    return Err(Failure::Aborted);
                }
            }
            FrameKind::RespEnd if !head_sent => {
                // The daemon always sends a head first; an end without one is a daemon bug,
                // never a 200 with an empty body.
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: daemon process '{}' ended the response without sending \
                         its status and headers",
                        target.group
                    ),
                );
                return Err(Failure::Status(ffi::HTTP_BAD_GATEWAY));
            }
            FrameKind::RespEnd => {
                put_idle(&target.socket_path, conn);
                return match overridden {
                    Some(status) => Err(Failure::Status(status)),
                    None => Ok(()),
                };
            }
            other => {
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "mod_rwsgi: unexpected {other} frame from daemon '{}'",
                        target.group
                    ),
                );
                return Err(if head_sent {
                    Failure::Aborted
                } else {
                    Failure::Status(ffi::HTTP_BAD_GATEWAY)
                });
            }
        }
    }
}

/// Whether `stream` has something to read within `wait` (false at once for a zero wait).
fn readable_within(stream: &std::os::unix::net::UnixStream, wait: Duration) -> bool {
    if wait.is_zero() {
        return false;
    }
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(stream),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    matches!(nix::poll::poll(&mut fds, ms), Ok(n) if n > 0)
}

/// Decodes a frame whose kind needs its payload; a malformed one is logged and ends the
/// exchange: a 502 before the response head, an aborted response after it.
fn decode(
    r: &Request<'_>,
    target: &DaemonTarget,
    frame: RawFrame<'_>,
    head_sent: bool,
) -> Result<Frame, Failure> {
    let kind = frame.kind;
    frame.decode(&Limits::default()).map_err(|e| {
        log::request(
            r,
            Level::Error,
            &format!(
                "mod_rwsgi: malformed {kind} frame from daemon process '{}': {e}",
                target.group
            ),
        );
        if head_sent {
            Failure::Aborted
        } else {
            Failure::Status(ffi::HTTP_BAD_GATEWAY)
        }
    })
}
