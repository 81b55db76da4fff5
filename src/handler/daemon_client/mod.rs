//! The Apache child's side of daemon mode: hand a request to its process group and relay
//! the answer. This file tries the request until it gets through or the resend policy gives
//! up; each part has its own file:
//! - [`pool`]: connecting to the group's socket, and the idle connections reused across
//!   requests;
//! - [`body`]: the request body, pre-read from the client and handed out as the daemon asks;
//! - [`exchange`]: one request/response exchange on a connection, as a state machine with
//!   one failure path;
//! - [`resend`]: when a request that did not get through is sent again (pure policy).

mod body;
mod exchange;
mod pool;
mod resend;
mod websocket;

pub use body::Body;
pub use websocket::is_upgrade as is_websocket_upgrade;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::seconds_text;
use crate::ffi;
use crate::protocol::{self, ReqHeadRef};

use exchange::Ended;
use resend::{Attempts, Decision, GiveUp, Setback};

/// Where and how to reach one process group.
#[derive(Clone, Debug)]
pub struct DaemonTarget {
    pub group: String,
    pub socket_path: PathBuf,
    pub connect_timeout: Duration,
    pub socket_timeout: Duration,
    /// queue-timeout: how long a connection may wait in the listen queue for a daemon
    /// thread to take it (None = socket-timeout).
    pub queue_timeout: Option<Duration>,
    /// request-timeout: a request with no response head by then gets 504. None with
    /// interrupt-timeout, where the daemon's RequestTimeout decides the answer.
    pub request_timeout: Option<Duration>,
    /// response-socket-timeout (else socket-timeout): the client socket's timeout while the
    /// response is relayed; None = Apache's `Timeout`.
    pub response_socket_timeout: Option<Duration>,
    /// response-flush-delay: how long a flush waits for more of the response.
    pub response_flush_delay: Duration,
    /// response-buffer-size: at most this many bytes go to the output filters unflushed.
    pub response_buffer_size: usize,
    /// websocket-max-message-size: the largest message a WebSocket client may send.
    pub websocket_max_message_size: usize,
    /// websocket-idle-timeout (else socket-timeout): an open WebSocket with no traffic for
    /// this long is closed.
    pub websocket_idle_timeout: Duration,
    /// script-user= / script-group=.
    pub script_owner: super::script_owner::ScriptOwner,
    /// False for a `threads=0` group (service scripts only): a request sent there is
    /// refused at once rather than left to wait for the timeouts.
    pub serves_requests: bool,
    /// The ServerName of the virtual host that defines the group: only virtual hosts with
    /// that name may send it requests (mod_wsgi's rule). None for a group defined outside
    /// every virtual host, which all may use.
    pub server_name: Option<String>,
}

/// What to run in the daemon.
pub struct RequestPlan<'a> {
    /// The script file: bytes, as Apache has its path (a WSGIScriptAliasMatch substitution
    /// may put URL bytes in it).
    pub script: &'a [u8],
    pub app_group: &'a str,
    pub callable: &'a str,
    pub flags: u32,
    /// WSGIEnableSendfile: file_wrapper files go out with sendfile.
    pub sendfile: bool,
    /// WSGIErrorOverride: an app's 4xx/5xx body is dropped and Apache's ErrorDocument sent.
    pub error_override: bool,
    /// WSGIHeapPolicy: count the request for [`HEAP_TRIMMER`] (Off: never trim).
    pub trim_heap: bool,
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
        // What most requests go through; serve() rewrites both when they differ.
        daemon_connects: 1,
        daemon_restarts: 0,
        request_start_us: u64::try_from(r.request_time_us()).unwrap_or(0),
        // mod_wsgi.queue_start: the request goes to the daemon socket right after this.
        queue_start_us: crate::util::now_us(),
        // Apache's own stat of the script: the daemon's reload check needs none of its own
        // while the script is unchanged.
        script_mtime_us: r.file_mtime_us(plan.script).unwrap_or(0),
        script_path: plan.script,
        app_group: plan.app_group.as_bytes(),
        callable: plan.callable.as_bytes(),
    };
    match protocol::encode_req_head_into(&mut head, &head_ref, env) {
        Ok(()) => Ok(head),
        Err(e) => {
            log::request(
                r,
                Level::Error,
                &format!("RW0074: mod_rwsgi: request too large for the daemon protocol: {e}"),
            );
            Err(ffi::HTTP_REQUEST_ENTITY_TOO_LARGE)
        }
    }
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
    if plan.trim_heap {
        HEAP_TRIMMER.request_done();
    }
    let idempotent = resend::is_idempotent(r.method(), plan.flags);
    let deadline = Instant::now() + target.connect_timeout;
    let mut attempts = Attempts::default();
    // The head as sent: a resend after a reload turn-away carries RELOAD_RESEND, and any head
    // whose connections or resends differ from encode_head's 1 and 0 says how many.
    let mut head = std::borrow::Cow::Borrowed(head);
    let (mut connects, mut restarts) = (0u32, 0u32);
    loop {
        attempts.made += 1;
        // After a failed attempt, only a new connection: a pooled one, even one another
        // thread has just put back, may lead to the same process, which is dying or draining.
        let pooled = if attempts.made == 1 {
            pool::take_idle(&target.socket_path)
        } else {
            None
        };
        attempts.reused = pooled.is_some();
        let connected = match pooled {
            Some(conn) => {
                connects += 1;
                Ok(conn)
            }
            None => pool::connect(target, &mut connects),
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => return connect_failed(r, target, &e),
        };
        if (connects, restarts) != (1, 0) {
            protocol::set_req_head_daemon_attempts(head.to_mut(), connects, restarts);
        }
        pool::lend_read_buffer(&mut conn);
        body.rewind();
        let result = with_response_socket_timeout(r, target, |r| {
            exchange::send_and_relay(r, target, conn, &head, &mut body, plan)
        });
        let (setback, cause) = match result {
            Ok(()) => return ffi::OK,
            Err(Ended::Status(code)) => return code,
            Err(Ended::Aborted) => {
                // What the client was already owed goes out first (a flush may be pending),
                // then the connection ends: the body is visibly incomplete.
                let _ = r.flush();
                r.abort_connection();
                return ffi::OK;
            }
            Err(Ended::Setback { setback, cause }) => (setback, cause),
        };
        attempts.out_of_time = Instant::now() >= deadline;
        match resend::decide(setback, attempts, idempotent) {
            Decision::Resend { pause } => {
                restarts += 1;
                // The other pooled connections most likely lead to the same process.
                pool::drop_idle(&target.socket_path);
                if setback == Setback::ClosedBeforeAnswer {
                    attempts.resent_after_close = true;
                    let level = if attempts.reused {
                        Level::Debug
                    } else {
                        Level::Info
                    };
                    // Debug here is the common case: format nothing unless it is logged.
                    log::request_at!(
                        r,
                        level,
                        "RW0075: mod_rwsgi: daemon process '{}' closed the connection before \
                         answering ({}); resending the request once",
                        target.group,
                        describe(cause.as_ref())
                    );
                }
                // Turned away because a process's script must be reloaded (a touch,
                // reload_required(), __mtime__): as in mod_wsgi the request goes again, and it
                // must now meet the new code, not another process that loaded the script
                // before (the daemon replaces such a process, as a touch would).
                if setback == Setback::Restarting {
                    protocol::add_req_head_flag(head.to_mut(), protocol::req_flags::RELOAD_RESEND);
                }
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            Decision::GiveUp(why) => {
                log::request(
                    r,
                    Level::Error,
                    &format!("RW0076: {}", give_up_line(why, target, cause.as_ref())),
                );
                return why.status();
            }
        }
    }
}

/// A connection that could not be made (logged): 504 when the daemon took the connection
/// but did not answer the handshake, else 503.
fn connect_failed(r: &Request<'_>, target: &DaemonTarget, e: &io::Error) -> i32 {
    if e.kind() == io::ErrorKind::TimedOut {
        let why = match target.queue_timeout {
            Some(q) if q < target.socket_timeout => {
                format!("queue-timeout={} s expired", seconds_text(q))
            }
            _ => format!(
                "socket-timeout={} s expired",
                seconds_text(target.socket_timeout)
            ),
        };
        log::request(
            r,
            Level::Error,
            &format!(
                "RW0077: mod_rwsgi: timeout waiting for daemon process '{}' to answer the protocol \
                 handshake ({why}): it is stopped, hung or overloaded",
                target.group,
            ),
        );
        return ffi::HTTP_GATEWAY_TIME_OUT;
    }
    if e.kind() == io::ErrorKind::WouldBlock {
        log::request(
            r,
            Level::Error,
            &format!(
                "RW0152: mod_rwsgi: daemon process '{}' took no new connection within \
                 connect-timeout={} s: its listen queue on '{}' is full (every thread busy; see \
                 threads= and listen-backlog=)",
                target.group,
                seconds_text(target.connect_timeout),
                target.socket_path.display()
            ),
        );
        return ffi::HTTP_SERVICE_UNAVAILABLE;
    }
    log::request(
        r,
        Level::Error,
        &format!(
            "RW0078: mod_rwsgi: unable to connect to WSGI daemon process '{}' on '{}' within \
             connect-timeout={} s: {e}",
            target.group,
            target.socket_path.display(),
            seconds_text(target.connect_timeout)
        ),
    );
    ffi::HTTP_SERVICE_UNAVAILABLE
}

/// The error-log line for a request the resend policy gave up on.
fn give_up_line(why: GiveUp, target: &DaemonTarget, cause: Option<&io::Error>) -> String {
    let group = &target.group;
    match why {
        GiveUp::CannotSend => format!(
            "mod_rwsgi: cannot send the request to daemon process '{group}': {}",
            describe(cause)
        ),
        GiveUp::NotResendable { already_resent } => format!(
            "mod_rwsgi: daemon process '{group}' closed the connection before responding ({}): \
             it died or was killed while running this request (see the supervisor's line for \
             its PID and exit status or signal); the request is not resent because it {}",
            describe(cause),
            if already_resent {
                "already was once"
            } else {
                "is not a GET/HEAD/OPTIONS without a body"
            }
        ),
        GiveUp::KeptRestarting => format!(
            "mod_rwsgi: daemon process group '{group}' kept restarting for connect-timeout={} s",
            seconds_text(target.connect_timeout)
        ),
    }
}

fn describe(cause: Option<&io::Error>) -> String {
    cause.map_or_else(|| "no error".to_string(), io::Error::to_string)
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
