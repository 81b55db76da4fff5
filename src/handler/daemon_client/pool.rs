//! Connections to a group's socket: connecting (with retries while the daemon starts) and
//! the handshake, and the pool of idle connections an Apache child reuses across requests.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ipc;
use crate::protocol::{self, Decoder, Limits};

use super::DaemonTarget;

/// An open connection to a daemon, past the handshake, between or during requests.
pub(super) struct DaemonConn {
    pub stream: UnixStream,
    pub dec: Decoder,
    /// Descriptors received with RespFile frames, not yet used.
    pub fds: VecDeque<OwnedFd>,
}

/// Open connections per socket path, reused across requests by this Apache child. A list
/// searched by the path's bytes, not a map: a child talks to a few groups, and hashing a
/// `Path` (component by component, SipHash) plus a key copy per request cost more than
/// the whole search (callgrind: about 2,500 instructions of a hello request's 61,000).
static IDLE: Mutex<Vec<(PathBuf, Vec<DaemonConn>)>> = Mutex::new(Vec::new());
const MAX_IDLE_PER_GROUP: usize = 64;

/// The idle list of `path` in `pool`.
fn idle_of<'a>(
    pool: &'a mut [(PathBuf, Vec<DaemonConn>)],
    path: &Path,
) -> Option<&'a mut Vec<DaemonConn>> {
    let key = path.as_os_str().as_encoded_bytes();
    pool.iter_mut()
        .find(|(p, _)| p.as_os_str().as_encoded_bytes() == key)
        .map(|(_, list)| list)
}

pub(super) fn take_idle(path: &Path) -> Option<DaemonConn> {
    idle_of(&mut IDLE.lock().ok()?, path)?.pop()
}

pub(super) fn drop_idle(path: &Path) {
    if let Ok(mut pool) = IDLE.lock() {
        let key = path.as_os_str().as_encoded_bytes();
        pool.retain(|(p, _)| p.as_os_str().as_encoded_bytes() != key);
    }
}

/// A thread keeps its read buffer between requests up to this size (a larger one, grown for
/// a large response, is given back).
const READ_BUFFER_KEPT: usize = 64 * 1024;

thread_local! {
    /// This thread's read buffer between requests (see [`put_idle`]).
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives `conn` the read buffer this thread kept from its last request, so the request reads
/// without allocating (and zero-filling) a new one.
pub(super) fn lend_read_buffer(conn: &mut DaemonConn) {
    conn.dec.reuse_buffer(READ_BUFFER.take());
}

pub(super) fn put_idle(path: &Path, mut conn: DaemonConn) {
    // An idle connection keeps no read buffer: a child pools one connection per request it
    // served at once (dozens under load), so buffers kept here would add up per child. The
    // thread keeps it instead, for its next request (one per thread, however many pooled).
    if let Some(buf) = conn.dec.take_buffer(READ_BUFFER_KEPT) {
        READ_BUFFER.set(buf);
    }
    conn.dec.release_memory(0);
    conn.fds.clear();
    if let Ok(mut pool) = IDLE.lock() {
        let list = match idle_of(&mut pool, path) {
            Some(list) => list,
            None => {
                pool.push((path.to_path_buf(), Vec::new()));
                &mut pool.last_mut().expect("just pushed").1
            }
        };
        if list.len() < MAX_IDLE_PER_GROUP {
            list.push(conn);
        }
    }
}

/// Connects, retrying while the daemon is (re)starting or busy: the socket may not exist yet
/// or its listen backlog may be full (every thread busy and the queue full: the connect
/// does not wait there, see [`ipc::connect::connect_now`]). Gives up after connect-timeout
/// (`WouldBlock` when the backlog stayed full). Once in the backlog, the wait for a daemon
/// thread to take the connection (its handshake answer) is bounded by queue-timeout when
/// set, else socket-timeout: `TimedOut`. Adds each connection attempt to `connects`.
pub(super) fn connect(target: &DaemonTarget, connects: &mut u32) -> io::Result<DaemonConn> {
    let deadline = Instant::now() + target.connect_timeout;
    let mut backoff = Backoff::new(deadline);
    let handshake_timeout = target
        .queue_timeout
        .map_or(target.socket_timeout, |q| q.min(target.socket_timeout));
    loop {
        *connects = connects.saturating_add(1);
        match ipc::connect::connect_now(&target.socket_path) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(handshake_timeout))?;
                stream.set_write_timeout(Some(target.socket_timeout))?;
                match protocol::io::client_handshake(&mut stream, 0) {
                    Ok(_) => {
                        stream.set_read_timeout(Some(target.socket_timeout))?;
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
                        backoff.wait();
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
            // PermissionDenied too: at a graceful restart the new generation's socket is
            // root's from its bind until its chown, a moment in which this child's
            // connect is refused as it is while the path does not exist yet.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::PermissionDenied
                ) && Instant::now() < deadline =>
            {
                backoff.wait();
            }
            Err(e) => return Err(e),
        }
    }
}

/// The pause between connect attempts: 10 ms doubling up to 250 ms, never past the deadline.
struct Backoff {
    delay: Duration,
    deadline: Instant,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(250);

    fn new(deadline: Instant) -> Backoff {
        Backoff {
            delay: Self::FIRST,
            deadline,
        }
    }

    /// The next pause (and the one after doubles).
    fn next_pause(&mut self) -> Duration {
        let pause = self
            .delay
            .min(self.deadline.saturating_duration_since(Instant::now()));
        self.delay = (self.delay * 2).min(Self::MAX);
        pause
    }

    fn wait(&mut self) {
        std::thread::sleep(self.next_pause());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_stops_at_the_deadline() {
        let mut b = Backoff::new(Instant::now() + Duration::from_secs(60));
        let pauses: Vec<u64> = (0..7).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 250, 250]);
        let mut late = Backoff::new(Instant::now());
        assert_eq!(late.next_pause(), Duration::ZERO);
    }
}
