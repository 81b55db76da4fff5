//! One request/response exchange on a daemon connection, as a state machine: the request
//! goes out, then each frame from the daemon moves the exchange on until the response ends.
//!
//! Phases: [`Phase::AwaitingHead`] until a `RespHead` arrives (only `ReadBody`, `RespHead` and
//! `Error` are allowed), then [`Phase::Relaying`] (body, file and flush frames, `ReadBody`,
//! and `RespEnd` or `Error` to finish). Anything else is a breach of the protocol.
//!
//! Every way an exchange fails goes through one path, [`Exchange::fail`]: the [`Problem`] is
//! logged once, and the client gets its status before the response head, an aborted
//! response after it. What is not a failure but a [`Setback`] (the daemon did not run the
//! request) goes back to the caller, whose resend policy decides.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::ffi;
use crate::ipc::fd_passing::{FdReader, is_regular_file};
use crate::ipc::poll::{readable_within, wait_readable_or_hangup};
use crate::protocol::{self, Frame, FrameKind, Limits, ProtocolError, RawFrame, error_code};

use super::body::Body;
use super::pool::{DaemonConn, put_idle};
use super::resend::Setback;
use super::{DaemonTarget, RequestPlan};

/// How an exchange that did not complete ended.
pub(super) enum Ended {
    /// The daemon did not run the request; `cause` is the I/O error behind it, if any.
    Setback {
        setback: Setback,
        cause: Option<io::Error>,
    },
    /// Answer the client with this status (logged already; nothing was sent to it).
    Status(i32),
    /// Response bytes may already have gone out: the client connection is to be aborted.
    Aborted,
}

/// Where the response stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No response head yet: a failure still becomes an HTTP status.
    AwaitingHead,
    /// The head is set on the request (and may have reached the client): a failure aborts.
    Relaying,
}

/// Why an exchange failed. Each has its log line and the status the client gets when it
/// happens before the response head.
#[derive(Debug)]
enum Problem {
    /// No frame within request-timeout (before the head) or socket-timeout; never resent,
    /// the daemon may still be running the request.
    Timeout { limit: String },
    /// The connection broke after the daemon may have started on the request.
    DaemonLost(io::Error),
    /// Reading the request body from the client failed.
    ClientBody,
    /// Writing the request body to the daemon failed.
    SendBody(io::Error),
    /// The daemon ended the request with an Error frame (the connection stays usable).
    DaemonError { code: u16, message: Vec<u8> },
    /// A frame whose payload does not decode.
    Malformed {
        kind: FrameKind,
        error: ProtocolError,
    },
    /// A RespFile frame without a regular file's descriptor.
    NoFile,
    /// A frame the phase does not allow: an end, body, file or flush before the head, a
    /// second head, or a client-to-daemon kind.
    Unexpected { kind: FrameKind, phase: Phase },
    /// The client went away while the response was relayed (Apache logs it).
    ClientGone,
    /// The client closed its connection while an ASGI application ran (see
    /// [`Exchange::client_fd`]).
    ClientClosed,
}

impl Problem {
    /// The status before the response head.
    fn status(&self) -> i32 {
        match self {
            Problem::Timeout { .. } => ffi::HTTP_GATEWAY_TIME_OUT,
            Problem::ClientBody => ffi::HTTP_BAD_REQUEST,
            Problem::DaemonError { code, .. } => match *code {
                error_code::OVERLOADED => ffi::HTTP_GATEWAY_TIME_OUT,
                // The app is unavailable until its script loads.
                error_code::APP_LOAD_FAILED | error_code::SHUTTING_DOWN => {
                    ffi::HTTP_SERVICE_UNAVAILABLE
                }
                _ => ffi::HTTP_INTERNAL_SERVER_ERROR,
            },
            Problem::DaemonLost(_)
            | Problem::SendBody(_)
            | Problem::Malformed { .. }
            | Problem::NoFile
            | Problem::Unexpected { .. }
            | Problem::ClientGone
            | Problem::ClientClosed => ffi::HTTP_BAD_GATEWAY,
        }
    }

    /// The error-log line, if this side has anything to say.
    fn log_line(&self, group: &str) -> Option<(Level, String)> {
        let line = match self {
            Problem::Timeout { limit } => {
                format!("timeout waiting for daemon process '{group}' ({limit} expired)")
            }
            Problem::DaemonLost(e) => format!(
                "daemon process '{group}' failed mid-request ({e}): it died or was killed \
                 while running this request (see the supervisor's line for its PID and exit \
                 status or signal); the request is not resent because the daemon had already \
                 started on it"
            ),
            Problem::ClientBody => {
                return Some((
                    Level::Info,
                    "mod_rwsgi: error reading the request body from the client".into(),
                ));
            }
            Problem::SendBody(e) => {
                format!("sending the request body to daemon '{group}' failed: {e}")
            }
            Problem::DaemonError { code, message } => format!(
                "daemon process '{group}': {}: {}",
                error_code::name(*code),
                String::from_utf8_lossy(message)
            ),
            Problem::Malformed { kind, error } => {
                format!("malformed {kind} frame from daemon process '{group}': {error}")
            }
            Problem::NoFile => format!(
                "daemon process '{group}' sent a file frame without a regular file's descriptor"
            ),
            Problem::Unexpected {
                kind: FrameKind::RespEnd,
                phase: Phase::AwaitingHead,
            } => format!(
                "daemon process '{group}' ended the response without sending its status and \
                 headers"
            ),
            Problem::Unexpected { kind, phase } => format!(
                "unexpected {kind} frame from daemon process '{group}' {}",
                match phase {
                    Phase::AwaitingHead => "before the response head",
                    Phase::Relaying => "after the response head",
                }
            ),
            Problem::ClientGone => return None,
            // Logged by `Exchange::fail` (RW0312).
            Problem::ClientClosed => return None,
        };
        Some((Level::Error, format!("mod_rwsgi: {line}")))
    }

    /// The connection is at a frame boundary with the request over, fit for the next one.
    fn leaves_connection_idle(&self) -> bool {
        matches!(self, Problem::DaemonError { .. })
    }
}

/// Why a step stopped the exchange.
enum Stop {
    Setback(Setback, Option<io::Error>),
    Problem(Problem),
}

impl From<Problem> for Stop {
    fn from(problem: Problem) -> Self {
        Stop::Problem(problem)
    }
}

/// What a frame leads to.
enum Step {
    Continue,
    /// The response is complete (`RespEnd`).
    Done,
    /// The application accepted the WebSocket: its 101 head.
    Upgrade(protocol::RespHead),
}

/// The state of one exchange; the connection is passed alongside, so a frame borrowed from
/// its decoder can be relayed while the state changes.
struct Exchange<'t> {
    target: &'t DaemonTarget,
    sendfile: bool,
    /// WSGIErrorOverride: an app's 4xx/5xx head and body are dropped and Apache answers
    /// with its own ErrorDocument (as ProxyErrorOverride).
    error_override: bool,
    /// The app's error status, once overridden.
    overridden: Option<i32>,
    phase: Phase,
    /// When the response head is due (request-timeout).
    head_deadline: Option<Instant>,
    /// The daemon asked for request body: it has started on the request.
    body_read: bool,
    /// The daemon asked for a flush not yet done (see [`Exchange::flush_when_idle`]).
    flush_pending: bool,
    /// Response bytes handed to Apache since the last flush (response-buffer-size).
    unflushed: usize,
    /// The daemon has just been sent something to answer: wait for it before reading.
    awaiting_answer: bool,
    /// Room for request body read from the client beyond the pre-read part.
    body_buf: Vec<u8>,
    /// The request asks for a WebSocket: a 101 head accepts it.
    websocket: bool,
    /// An ASGI request's client socket, watched for a hangup while the daemon is waited
    /// for: a client that leaves is noticed even while the application sends nothing, and
    /// closing the daemon connection then tells the daemon (protocol: a connection closed
    /// mid-request means the client has gone).
    client_fd: Option<RawFd>,
}

/// Runs one request/response exchange on `conn`: sends `head` (and a pushed body), then
/// relays the response. On success, and after an Error frame, the connection goes back to
/// the idle pool.
pub(super) fn send_and_relay(
    r: &mut Request<'_>,
    target: &DaemonTarget,
    mut conn: DaemonConn,
    head: &[u8],
    body: &mut Body,
    plan: &RequestPlan<'_>,
) -> Result<(), Ended> {
    // A daemon reads a pushed body whole before it starts the request: if this write fails,
    // the request did not run.
    if let Err(e) = protocol::io::write_request(&mut conn.stream, head, body.pushed_bytes()) {
        return Err(Ended::Setback {
            setback: Setback::NotSent,
            cause: Some(e),
        });
    }
    body.mark_pushed();
    let mut exchange = Exchange {
        target,
        sendfile: plan.sendfile,
        error_override: plan.error_override,
        overridden: None,
        phase: Phase::AwaitingHead,
        head_deadline: target.request_timeout.map(|t| Instant::now() + t),
        body_read: false,
        flush_pending: false,
        unflushed: 0,
        awaiting_answer: true,
        body_buf: Vec::new(),
        websocket: plan.flags & protocol::req_flags::WEBSOCKET != 0,
        client_fd: if plan.flags & protocol::req_flags::ASGI != 0 {
            r.client_socket_fd()
        } else {
            None
        },
    };
    loop {
        match exchange.step(r, &mut conn, body) {
            Ok(Step::Continue) => {}
            Ok(Step::Upgrade(head)) => {
                super::websocket::relay(r, target, conn, head);
                return Ok(());
            }
            Ok(Step::Done) => {
                put_idle(&target.socket_path, conn);
                return match exchange.overridden {
                    Some(status) => Err(Ended::Status(status)),
                    None => Ok(()),
                };
            }
            Err(Stop::Setback(setback, cause)) => return Err(Ended::Setback { setback, cause }),
            Err(Stop::Problem(problem)) => return Err(exchange.fail(r, conn, problem)),
        }
    }
}

impl Exchange<'_> {
    /// The one failure path: logs `problem`, keeps the connection if it is still usable,
    /// and ends the request with its status before the head or an abort after it.
    fn fail(&self, r: &Request<'_>, conn: DaemonConn, problem: Problem) -> Ended {
        if let Problem::ClientClosed = problem {
            log::request(
                r,
                Level::Info,
                &format!(
                    "RW0312: mod_rwsgi: the client closed its connection while the ASGI \
                     application in daemon process '{}' ran; closing the daemon connection, \
                     so its receive() answers http.disconnect",
                    self.target.group
                ),
            );
            // Dropping `conn` closes it: the daemon sees its end of file.
            return Ended::Aborted;
        }
        if let Some((level, line)) = problem.log_line(&self.target.group) {
            log::request(r, level, &format!("RW0073: {line}"));
        }
        if problem.leaves_connection_idle() {
            put_idle(&self.target.socket_path, conn);
        }
        match self.phase {
            Phase::AwaitingHead => Ended::Status(problem.status()),
            Phase::Relaying => Ended::Aborted,
        }
    }

    /// Reads the next frame and acts on it.
    fn step(
        &mut self,
        r: &mut Request<'_>,
        conn: &mut DaemonConn,
        body: &mut Body,
    ) -> Result<Step, Stop> {
        self.flush_when_idle(r, conn)?;
        let timeout = self.read_timeout();
        if let Some(fd) = self.client_fd {
            if !conn.dec.has_frame().unwrap_or(false) {
                // SAFETY: fd is the client socket of this request's connection, which stays
                // open until the request is over; it is only polled here.
                let client = unsafe { BorrowedFd::borrow_raw(fd) };
                match wait_readable_or_hangup(conn.stream.as_fd(), client, timeout) {
                    Ok(true) => return Err(Problem::ClientClosed.into()),
                    Ok(false) => self.awaiting_answer = false,
                    Err(e) => return Err(self.read_failed(e, body)),
                }
            }
        }
        let mut reader = FdReader {
            stream: &conn.stream,
            fds: &mut conn.fds,
            timeout: Some(timeout),
            wait_first: std::mem::take(&mut self.awaiting_answer),
        };
        let frame = match protocol::io::read_raw_frame(&mut reader, &mut conn.dec) {
            Ok(frame) => frame,
            Err(e) => return Err(self.read_failed(e, body)),
        };
        match (self.phase, frame.kind) {
            (_, FrameKind::ReadBody) => {
                let Frame::ReadBody { max } = decode(frame)? else {
                    unreachable!("decoded kind matches the raw kind");
                };
                self.send_body(r, conn, body, max)?;
            }
            (_, FrameKind::Error) => {
                let Frame::Error { code, message } = decode(frame)? else {
                    unreachable!("decoded kind matches the raw kind");
                };
                if turned_away(code, self.phase, self.body_read) {
                    return Err(Stop::Setback(Setback::Restarting, None));
                }
                return Err(Problem::DaemonError { code, message }.into());
            }
            (Phase::AwaitingHead, FrameKind::RespHead) => {
                let Frame::RespHead(head) = decode(frame)? else {
                    unreachable!("decoded kind matches the raw kind");
                };
                if self.websocket && head.status == 101 {
                    self.phase = Phase::Relaying;
                    return Ok(Step::Upgrade(head));
                }
                if self.error_override && head.status >= 400 {
                    self.overridden = Some(i32::from(head.status));
                    self.phase = Phase::Relaying;
                    return Ok(Step::Continue);
                }
                r.set_status(head.status, &head.reason);
                for (k, v) in &head.headers {
                    r.fold_header_out(k, v);
                }
                self.phase = Phase::Relaying;
            }
            // An overridden error's body (and any file it sends) is dropped.
            (Phase::Relaying, FrameKind::RespBody | FrameKind::Flush)
                if self.overridden.is_some() => {}
            (Phase::Relaying, FrameKind::RespFile) if self.overridden.is_some() => {
                drop(conn.fds.pop_front());
            }
            (Phase::Relaying, FrameKind::RespBody) => self.relay_body(r, frame.payload)?,
            (Phase::Relaying, FrameKind::RespFile) => {
                let Frame::RespFile { offset, length } = decode(frame)? else {
                    unreachable!("decoded kind matches the raw kind");
                };
                self.send_file(r, conn, offset, length)?;
            }
            (Phase::Relaying, FrameKind::Flush) => self.flush_pending = true,
            (Phase::Relaying, FrameKind::RespEnd) => {
                // Body bytes still buffered go out now, before Apache logs and frees the
                // request: the client's next kept-alive request is then often already there
                // when Apache looks for one, and this worker serves it at once. A file is
                // left to write completion (Apache writes it without holding a thread).
                if self.unflushed > 0 {
                    r.flush().map_err(|_| Problem::ClientGone)?;
                }
                return Ok(Step::Done);
            }
            (phase, kind) => return Err(Problem::Unexpected { kind, phase }.into()),
        }
        Ok(Step::Continue)
    }

    /// Until the response head arrives, no longer than request-timeout; after it,
    /// socket-timeout.
    fn read_timeout(&self) -> Duration {
        read_timeout(
            self.phase,
            self.head_deadline,
            self.target.socket_timeout,
            Instant::now(),
        )
    }

    /// A read from the daemon failed: a timeout, a setback (nothing ran) or a lost daemon.
    fn read_failed(&self, e: io::Error, body: &Body) -> Stop {
        let head_overdue = self.head_deadline.is_some_and(|due| Instant::now() >= due);
        let target = self.target;
        match read_failure(
            e.kind(),
            self.phase,
            head_overdue,
            self.body_read,
            body.pushed(),
        ) {
            ReadFailure::RequestTimeout => Problem::Timeout {
                limit: format!(
                    "request-timeout={} s",
                    target.request_timeout.unwrap_or_default().as_secs()
                ),
            }
            .into(),
            ReadFailure::SocketTimeout => Problem::Timeout {
                limit: format!("socket-timeout={} s", target.socket_timeout.as_secs()),
            }
            .into(),
            ReadFailure::ClosedBeforeAnswer => Stop::Setback(Setback::ClosedBeforeAnswer, Some(e)),
            ReadFailure::DaemonLost => Problem::DaemonLost(e).into(),
        }
    }

    /// Answers a `ReadBody` with up to `max` bytes of request body (empty at its end).
    fn send_body(
        &mut self,
        r: &mut Request<'_>,
        conn: &mut DaemonConn,
        body: &mut Body,
        max: u32,
    ) -> Result<(), Problem> {
        let chunk = body
            .next(r, max as usize, &mut self.body_buf)
            .map_err(|_| Problem::ClientBody)?;
        // The daemon has started on the body: after a crash the request is not resent (it
        // may not be idempotent).
        self.body_read = true;
        protocol::io::write_body(&mut conn.stream, FrameKind::ReqBody, chunk)
            .map_err(Problem::SendBody)?;
        self.awaiting_answer = true;
        Ok(())
    }

    /// Hands a chunk of response body to Apache's output filters.
    fn relay_body(&mut self, r: &mut Request<'_>, data: &[u8]) -> Result<(), Problem> {
        // A failed write means the client is gone: dropping the daemon connection lets the
        // app see it.
        r.write(data).map_err(|_| Problem::ClientGone)?;
        // response-buffer-size: bounds what an output filter that buffers without draining
        // may hold for this request.
        self.unflushed += data.len();
        if self.unflushed >= self.target.response_buffer_size {
            self.unflushed = 0;
            r.flush().map_err(|_| Problem::ClientGone)?;
        }
        Ok(())
    }

    /// Has Apache send `length` bytes from `offset` of the file that came with the frame.
    fn send_file(
        &mut self,
        r: &mut Request<'_>,
        conn: &mut DaemonConn,
        offset: u64,
        length: u64,
    ) -> Result<(), Problem> {
        let fd = conn
            .fds
            .pop_front()
            .filter(|fd| is_regular_file(fd.as_fd()))
            .ok_or(Problem::NoFile)?;
        // The request pool closes `fd` once Apache has written the file.
        r.send_file(fd, offset, length, self.sendfile)
            .map_err(|_| Problem::ClientGone)
    }

    /// A flush the daemon asked for is done once no further frame is already here and none
    /// arrives within response-flush-delay: consecutive write()s then leave in one client
    /// write (and pacing filters such as mod_ratelimit are not forced into short writes),
    /// and nothing waits on the daemon unflushed for longer than the delay.
    fn flush_when_idle(
        &mut self,
        r: &mut Request<'_>,
        conn: &mut DaemonConn,
    ) -> Result<(), Problem> {
        if self.flush_pending
            && !conn.dec.has_frame().unwrap_or(false)
            && !readable_within(conn.stream.as_fd(), self.target.response_flush_delay)
        {
            self.flush_pending = false;
            self.unflushed = 0;
            r.flush().map_err(|_| Problem::ClientGone)?;
        }
        Ok(())
    }
}

/// Whether an Error frame with `code` turns the request away unrun (a daemon being replaced,
/// before the head and before it asked for any body): a setback, resent by the caller.
fn turned_away(code: u16, phase: Phase, body_read: bool) -> bool {
    code == error_code::SHUTTING_DOWN && phase == Phase::AwaitingHead && !body_read
}

/// How long the next read from the daemon may wait at `now`: until the response head, no
/// longer than request-timeout (`head_deadline`); after it, socket-timeout.
fn read_timeout(
    phase: Phase,
    head_deadline: Option<Instant>,
    socket_timeout: Duration,
    now: Instant,
) -> Duration {
    match head_deadline {
        Some(due) if phase == Phase::AwaitingHead => due
            .saturating_duration_since(now)
            .min(socket_timeout)
            .max(Duration::from_millis(1)),
        _ => socket_timeout,
    }
}

/// What a failed read from the daemon means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadFailure {
    /// No response head by request-timeout.
    RequestTimeout,
    /// No frame within socket-timeout.
    SocketTimeout,
    /// The daemon cannot have run the request: a [`Setback`] for the resend policy.
    ClosedBeforeAnswer,
    /// The daemon may have started on the request and is gone.
    DaemonLost,
}

/// Classifies a read that failed with `kind`: `head_overdue` is request-timeout having
/// passed, `body_read` the daemon having asked for body, `pushed` a body sent with the head.
fn read_failure(
    kind: io::ErrorKind,
    phase: Phase,
    head_overdue: bool,
    body_read: bool,
    pushed: bool,
) -> ReadFailure {
    if matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        return if phase == Phase::AwaitingHead && head_overdue {
            ReadFailure::RequestTimeout
        } else {
            ReadFailure::SocketTimeout
        };
    }
    // A daemon that had read the request whole may have run it and died: a pushed body
    // makes the request unsafe to resend unless the daemon left some of it unread (its
    // close then resets the connection).
    let maybe_started = body_read || (pushed && kind != io::ErrorKind::ConnectionReset);
    if phase == Phase::AwaitingHead && !maybe_started {
        ReadFailure::ClosedBeforeAnswer
    } else {
        ReadFailure::DaemonLost
    }
}

/// Decodes a frame whose kind needs its payload.
fn decode(frame: RawFrame<'_>) -> Result<Frame, Problem> {
    frame
        .decode(&Limits::default())
        .map_err(|error| Problem::Malformed {
            kind: frame.kind,
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind::{BrokenPipe, ConnectionReset, TimedOut, UnexpectedEof, WouldBlock};

    #[test]
    fn only_shutting_down_before_head_and_body_is_a_setback() {
        assert!(turned_away(
            error_code::SHUTTING_DOWN,
            Phase::AwaitingHead,
            false
        ));
        assert!(!turned_away(
            error_code::SHUTTING_DOWN,
            Phase::AwaitingHead,
            true
        ));
        assert!(!turned_away(
            error_code::SHUTTING_DOWN,
            Phase::Relaying,
            false
        ));
        for code in [error_code::OVERLOADED, error_code::APP_LOAD_FAILED] {
            assert!(!turned_away(code, Phase::AwaitingHead, false), "{code}");
        }
    }

    #[test]
    fn the_read_timeout_is_the_nearer_of_request_and_socket_timeout_until_the_head() {
        let now = Instant::now();
        let socket = Duration::from_secs(30);
        let due = Some(now + Duration::from_secs(5));
        let wait = |phase, due, at| read_timeout(phase, due, socket, at);
        assert_eq!(wait(Phase::AwaitingHead, due, now), Duration::from_secs(5));
        assert_eq!(
            wait(Phase::AwaitingHead, due, now + Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        // Overdue: the shortest wait, so the timeout is noticed at once.
        assert_eq!(
            wait(Phase::AwaitingHead, due, now + Duration::from_secs(9)),
            Duration::from_millis(1)
        );
        let far = Some(now + Duration::from_secs(300));
        assert_eq!(wait(Phase::AwaitingHead, far, now), socket);
        assert_eq!(wait(Phase::AwaitingHead, None, now), socket);
        assert_eq!(wait(Phase::Relaying, due, now), socket);
    }

    #[test]
    fn a_timed_out_read_names_request_timeout_only_before_the_head_and_once_overdue() {
        for kind in [WouldBlock, TimedOut] {
            let f = |phase, overdue| read_failure(kind, phase, overdue, false, false);
            assert_eq!(f(Phase::AwaitingHead, true), ReadFailure::RequestTimeout);
            assert_eq!(f(Phase::AwaitingHead, false), ReadFailure::SocketTimeout);
            assert_eq!(f(Phase::Relaying, true), ReadFailure::SocketTimeout);
        }
    }

    #[test]
    fn a_closed_connection_is_a_setback_only_when_the_daemon_cannot_have_started() {
        let f =
            |kind, phase, body_read, pushed| read_failure(kind, phase, false, body_read, pushed);
        let ahead = Phase::AwaitingHead;
        for kind in [UnexpectedEof, BrokenPipe, ConnectionReset] {
            assert_eq!(
                f(kind, ahead, false, false),
                ReadFailure::ClosedBeforeAnswer
            );
            // It asked for body: it started on the request.
            assert_eq!(f(kind, ahead, true, false), ReadFailure::DaemonLost);
            // After the head, the response is under way.
            assert_eq!(
                f(kind, Phase::Relaying, false, false),
                ReadFailure::DaemonLost
            );
        }
        // A pushed body read whole: it may have run; a reset says it left some unread.
        assert_eq!(
            f(UnexpectedEof, ahead, false, true),
            ReadFailure::DaemonLost
        );
        assert_eq!(
            f(ConnectionReset, ahead, false, true),
            ReadFailure::ClosedBeforeAnswer
        );
    }

    #[test]
    fn problems_map_to_their_status_log_line_and_connection_fate() {
        let error = |code| Problem::DaemonError {
            code,
            message: b"why".to_vec(),
        };
        let cases = [
            (error(error_code::OVERLOADED), ffi::HTTP_GATEWAY_TIME_OUT),
            (
                error(error_code::APP_LOAD_FAILED),
                ffi::HTTP_SERVICE_UNAVAILABLE,
            ),
            (
                error(error_code::SHUTTING_DOWN),
                ffi::HTTP_SERVICE_UNAVAILABLE,
            ),
            (error(9999), ffi::HTTP_INTERNAL_SERVER_ERROR),
            (
                Problem::Timeout {
                    limit: "socket-timeout=3 s".into(),
                },
                ffi::HTTP_GATEWAY_TIME_OUT,
            ),
            (Problem::ClientBody, ffi::HTTP_BAD_REQUEST),
            (Problem::NoFile, ffi::HTTP_BAD_GATEWAY),
            (
                Problem::DaemonLost(io::Error::from(UnexpectedEof)),
                ffi::HTTP_BAD_GATEWAY,
            ),
            (
                Problem::Unexpected {
                    kind: FrameKind::RespBody,
                    phase: Phase::AwaitingHead,
                },
                ffi::HTTP_BAD_GATEWAY,
            ),
        ];
        for (problem, status) in &cases {
            assert_eq!(problem.status(), *status, "{problem:?}");
            // Only an Error frame ends the request at a frame boundary.
            assert_eq!(
                problem.leaves_connection_idle(),
                matches!(problem, Problem::DaemonError { .. }),
                "{problem:?}"
            );
            let (level, line) = problem.log_line("g").expect("logged");
            assert!(line.starts_with("mod_rwsgi: "), "{line}");
            let expected = if matches!(problem, Problem::ClientBody) {
                Level::Info
            } else {
                Level::Error
            };
            assert!(level == expected, "{problem:?}");
        }
        assert!(
            Problem::ClientGone.log_line("g").is_none(),
            "Apache logs it"
        );
        let (_, line) = Problem::Unexpected {
            kind: FrameKind::RespEnd,
            phase: Phase::AwaitingHead,
        }
        .log_line("g")
        .unwrap();
        assert!(
            line.contains("ended the response without sending its status"),
            "{line}"
        );
        let (_, line) = Problem::Unexpected {
            kind: FrameKind::RespHead,
            phase: Phase::Relaying,
        }
        .log_line("g")
        .unwrap();
        assert!(line.ends_with("after the response head"), "{line}");
    }
}
