//! Connecting to a daemon group's socket without blocking on a full listen queue.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};

/// Connects to the Unix stream socket at `path` once, without waiting: a listener whose
/// backlog is full answers `WouldBlock` at once (a blocking connect would wait until a
/// daemon thread accepts, however long that takes). The stream returned is blocking.
pub fn connect_now(path: &Path) -> io::Result<UnixStream> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    nix::sys::socket::connect(fd.as_raw_fd(), &addr)?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_full_backlog_is_would_block_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Nobody accepts: connections pile up in the backlog until it is full.
        let mut held = Vec::new();
        let start = std::time::Instant::now();
        let err = loop {
            match connect_now(&path) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Once one is accepted there is room again.
        let _accepted = listener.accept().unwrap();
        connect_now(&path).unwrap();
        assert_eq!(
            connect_now(&dir.path().join("missing.sock"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
