//! Waiting for a Unix socket to have input, with `poll()`, instead of sleeping in a read.

use std::io::{self, ErrorKind};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Waits until `fd` has input, or a hangup or error a read will report; `TimedOut` after
/// `timeout` (`None`: no limit).
///
/// Why not just block in a read: Linux wakes every task sleeping in `recv()` on a Unix
/// socket whenever the peer consumes bytes this socket sent (the "write space" wakeup does
/// not tell readers from writers), so a client waiting for its answer is woken, finds
/// nothing and sleeps again once per request: two context switches for nothing. `poll()`
/// filters wakeups by event, and sleeps through those.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up: a wait of 0 ms would spin on a sub-millisecond remainder.
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "timed out waiting for the peer",
                ));
            }
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Waits up to `timeout` for input (or a hangup or error) on `a` or `b`; which of them
/// has it (both false after the timeout).
pub fn wait_either(
    a: BorrowedFd<'_>,
    b: BorrowedFd<'_>,
    timeout: Duration,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        PollFd::new(a, PollFlags::POLLIN),
        PollFd::new(b, PollFlags::POLLIN),
    ];
    let ms = timeout.as_micros().div_ceil(1000);
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) | Err(Errno::EINTR) => Ok((false, false)),
        Ok(_) => {
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            Ok((ready(&fds[0]), ready(&fds[1])))
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// What [`wait_conn_or_wake`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnReady {
    /// The connection has input, or a hangup or error a read will report.
    pub input: bool,
    /// The connection takes more bytes (only when asked for).
    pub output: bool,
    /// The wake descriptor has input.
    pub woken: bool,
}

/// Waits up to `timeout` for input on `conn` (or a hangup or error) when `input`, for room
/// to write on it when `output`, or for input on `wake`; nothing seen after the timeout.
/// With neither, `conn` is not watched at all (not even for a hangup).
pub fn wait_conn_or_wake(
    conn: BorrowedFd<'_>,
    wake: BorrowedFd<'_>,
    input: bool,
    output: bool,
    timeout: Duration,
) -> io::Result<ConnReady> {
    let mut conn_events = PollFlags::empty();
    if input {
        conn_events |= PollFlags::POLLIN;
    }
    if output {
        conn_events |= PollFlags::POLLOUT;
    }
    let mut fds = [
        PollFd::new(wake, PollFlags::POLLIN),
        PollFd::new(conn, conn_events),
    ];
    let watched = if input || output { 2 } else { 1 };
    let ms = timeout.as_micros().div_ceil(1000);
    match poll(
        &mut fds[..watched],
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) | Err(Errno::EINTR) => Ok(ConnReady::default()),
        Ok(_) => {
            let conn = if watched == 2 {
                fds[1].revents().unwrap_or(PollFlags::POLLERR)
            } else {
                PollFlags::empty()
            };
            Ok(ConnReady {
                input: conn.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
                output: conn.contains(PollFlags::POLLOUT),
                woken: fds[0].revents().is_some_and(|r| !r.is_empty()),
            })
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Waits up to `timeout` for room to write on `fd` (or a hangup or error a write will
/// report); whether it came.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    let ms = timeout.as_micros().div_ceil(1000);
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) | Err(Errno::EINTR) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// POLLRDHUP (Linux: the peer shut down its writing side), which nix does not name.
fn rdhup() -> PollFlags {
    PollFlags::from_bits_retain(nix::libc::POLLRDHUP)
}

/// Did a poll for [`rdhup`] see the peer go? nix's `revents()` is `None` when a bit it
/// does not name is set, and POLLRDHUP is the only such bit asked for.
fn peer_gone(fd: &PollFd<'_>) -> bool {
    fd.revents()
        .is_none_or(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// Like [`wait_readable`] on `fd`, while also watching `peer` for a hangup (the other end
/// shut down its writing side or the socket failed; bytes waiting on `peer` do not count):
/// `Ok(true)` when `peer` hung up, `Ok(false)` when `fd` has input.
pub fn wait_readable_or_hangup(
    fd: BorrowedFd<'_>,
    peer: BorrowedFd<'_>,
    timeout: Duration,
) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_micros().div_ceil(1000);
        let wait = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(peer, rdhup()),
        ];
        match poll(&mut fds, wait) {
            Ok(0) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "timed out waiting for the peer",
                ));
            }
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => {
                if peer_gone(&fds[1]) {
                    return Ok(true);
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Whether the peer of socket `fd` has shut down its writing side (or the socket failed)
/// by now, whatever bytes are still waiting to be read; never waits.
pub fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, rdhup())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) && peer_gone(&fds[0])
}

/// Whether `fd` has something to read within `wait` (false at once for a zero wait; a poll
/// error counts as nothing to read).
pub fn readable_within(fd: BorrowedFd<'_>, wait: Duration) -> bool {
    if wait.is_zero() {
        return false;
    }
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn wait_readable_times_out_then_sees_input_and_hangup() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let err = wait_readable(b.as_fd(), Some(Duration::from_millis(30))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(30));
        a.write_all(b"x").unwrap();
        wait_readable(b.as_fd(), Some(Duration::from_secs(10))).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        // A hangup is something a read reports: no wait.
        wait_readable(b.as_fd(), None).unwrap();
    }

    #[test]
    fn wait_readable_or_hangup_tells_input_from_a_peer_hangup() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut client, watched) = UnixStream::pair().unwrap();
        let err = wait_readable_or_hangup(b.as_fd(), watched.as_fd(), Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        // Bytes from the watched peer are not a hangup.
        client.write_all(b"pipelined").unwrap();
        let err = wait_readable_or_hangup(b.as_fd(), watched.as_fd(), Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        a.write_all(b"x").unwrap();
        let hung = wait_readable_or_hangup(b.as_fd(), watched.as_fd(), Duration::from_secs(5));
        assert!(!hung.unwrap());
        assert!(!hung_up(watched.as_fd()));
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(hung_up(watched.as_fd()));
        let hung = wait_readable_or_hangup(b.as_fd(), watched.as_fd(), Duration::from_secs(5));
        assert!(hung.unwrap());
    }

    #[test]
    fn readable_within_zero_is_false_without_waiting() {
        let (mut a, b) = UnixStream::pair().unwrap();
        assert!(!readable_within(b.as_fd(), Duration::ZERO));
        assert!(!readable_within(b.as_fd(), Duration::from_millis(5)));
        a.write_all(b"x").unwrap();
        assert!(readable_within(b.as_fd(), Duration::from_millis(5)));
        assert!(
            !readable_within(b.as_fd(), Duration::ZERO),
            "a zero wait never polls"
        );
    }
}
