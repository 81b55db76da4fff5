//! An accepted WebSocket's daemon connection as the ASGI event loop thread writes to it
//! ([`WsDirect`]): a message the application sends goes out from the loop thread itself
//! when the connection takes the whole frame at once, without a hop to the request thread
//! and back.
//!
//! Order and whole frames: every frame write of the request, from either thread, happens
//! under [`WsWriter`]'s lock. The loop thread only tries the lock, and writes with
//! MSG_DONTWAIT, so it never waits for the client. When the connection takes only part of a
//! frame, the rest stays in `pending` (at most [`DIRECT_MAX`] and a header) and no other
//! direct send is tried until the request thread has written it: it does while it waits for
//! the client ([`WsWriter::write_pending_now`]), and before any write of its own
//! ([`WsWriter::lock_for_write`]). Messages the loop cannot write now go through the request
//! thread (the ASGI runtime keeps them in order behind the queued ones).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};

use crate::protocol::{self, FrameKind, ws_type};
use crate::python::{DirectSend, WsDirect};

/// The largest message the loop thread writes itself: a bigger one goes through the request
/// thread (it bounds `pending`, and a big write is no hop-dominated round trip).
pub(super) const DIRECT_MAX: usize = 64 * 1024;

pub(super) struct WsWriter {
    state: Mutex<WriterState>,
}

pub(super) struct WriterState {
    /// The connection (a clone of the request's descriptor); `None` once the request is
    /// over, so nothing is written after its end.
    stream: Option<UnixStream>,
    /// Direct sends allowed: false once the WebSocket closes or the connection failed.
    open: bool,
    /// The unwritten rest of a direct send, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// The frame being written (kept for its capacity).
    frame: Vec<u8>,
    /// A direct send failed: the connection is broken.
    failed: bool,
}

fn lock(m: &Mutex<WriterState>) -> MutexGuard<'_, WriterState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WsWriter {
    /// The writer of the connection `stream` (cloned: the clone is dropped by
    /// [`WsWriter::end`]).
    pub(super) fn new(stream: &UnixStream) -> io::Result<WsWriter> {
        Ok(WsWriter {
            state: Mutex::new(WriterState {
                stream: Some(stream.try_clone()?),
                open: true,
                pending: Vec::new(),
                pending_at: 0,
                frame: Vec::new(),
                failed: false,
            }),
        })
    }

    /// For a write of the request thread's own: the lock (held over that write, so no direct
    /// send comes between) once the rest of a direct send is out. Blocks (within the
    /// connection's write timeout): call it detached.
    pub(super) fn lock_for_write(&self) -> io::Result<MutexGuard<'_, WriterState>> {
        let mut state = lock(&self.state);
        if state.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier WebSocket message could not be written",
            ));
        }
        state.write_pending(MsgFlags::MSG_NOSIGNAL)?;
        Ok(state)
    }

    /// Writes what the connection takes now of the rest of a direct send; whether some is
    /// still left.
    pub(super) fn write_pending_now(&self) -> io::Result<bool> {
        let mut state = lock(&self.state);
        state.write_pending(MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)?;
        Ok(state.pending_at < state.pending.len())
    }

    /// The request is over: no more writes through this writer (its descriptor is closed).
    pub(super) fn end(&self) {
        let mut state = lock(&self.state);
        state.open = false;
        state.stream = None;
        state.pending = Vec::new();
        state.pending_at = 0;
    }
}

impl WriterState {
    /// Writes the rest of a direct send, as far as `flags` let one send() go (a blocking one
    /// is bounded by the connection's write timeout).
    fn write_pending(&mut self, flags: MsgFlags) -> io::Result<()> {
        while self.pending_at < self.pending.len() {
            let Some(stream) = &self.stream else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            match send(stream.as_raw_fd(), &self.pending[self.pending_at..], flags) {
                Ok(n) => self.pending_at += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) if flags.contains(MsgFlags::MSG_DONTWAIT) => return Ok(()),
                Err(Errno::EAGAIN) => return Err(self.fail(io::ErrorKind::TimedOut.into())),
                Err(e) => return Err(self.fail(e.into())),
            }
        }
        self.pending.clear();
        self.pending_at = 0;
        Ok(())
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = true;
        self.open = false;
        e
    }
}

impl WsDirect for WsWriter {
    /// Called by the loop thread with the GIL held: it neither waits for the lock nor for
    /// the connection.
    fn try_send(&self, binary: bool, data: &[u8]) -> io::Result<DirectSend> {
        if data.len() > DIRECT_MAX {
            return Ok(DirectSend::Refused);
        }
        let Ok(mut state) = self.state.try_lock() else {
            // The request thread is writing (it may wait for the client), or a panic
            // poisoned the lock: the request thread's path decides.
            return Ok(DirectSend::Refused);
        };
        if !state.open || state.pending_at < state.pending.len() {
            return Ok(DirectSend::Refused);
        }
        let Some(fd) = state.stream.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(DirectSend::Refused);
        };
        let mut frame = std::mem::take(&mut state.frame);
        frame.clear();
        // At most DIRECT_MAX + 1: fits the header's u32.
        frame.extend_from_slice(&protocol::encode_header(
            FrameKind::WsMsg,
            data.len() as u32 + 1,
        ));
        frame.push(if binary {
            ws_type::BINARY
        } else {
            ws_type::TEXT
        });
        frame.extend_from_slice(data);
        let sent = loop {
            match send(fd, &frame, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        };
        match sent {
            Ok(n) if n == frame.len() => {
                state.frame = frame;
                Ok(DirectSend::Sent)
            }
            Ok(0) | Err(Errno::EAGAIN) => {
                state.frame = frame;
                Ok(DirectSend::Refused)
            }
            Ok(n) => {
                state.pending = frame;
                state.pending_at = n;
                Ok(DirectSend::Pending)
            }
            Err(e) => {
                state.frame = frame;
                Err(state.fail(e.into()))
            }
        }
    }

    fn flush_pending(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        // Holds the lock while it waits: direct sends are refused meanwhile, as they would
        // be with bytes pending.
        let mut state = lock(&self.state);
        loop {
            state.write_pending(MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)?;
            if state.pending_at >= state.pending.len() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(stream) = &state.stream else {
                return Ok(true);
            };
            if left.is_zero() || !crate::ipc::poll::wait_writable(stream.as_fd(), left)? {
                return Ok(false);
            }
        }
    }

    fn close(&self) {
        lock(&self.state).open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], FrameKind::WsMsg.as_u8());
            let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            out.push((bytes[8], bytes[9..8 + len].to_vec()));
            bytes = &bytes[8 + len..];
        }
        out
    }

    #[test]
    fn direct_sends_keep_order_through_a_full_socket() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let writer = WsWriter::new(&ours).unwrap();
        let message = |i: usize| format!("{i:05}").repeat(1000).into_bytes();
        // Direct sends until the socket takes only part of one: the rest is pending and
        // later sends are refused (they go the request thread's way).
        let mut sent = 0;
        loop {
            match writer.try_send(false, &message(sent)).unwrap() {
                DirectSend::Sent => sent += 1,
                DirectSend::Pending => {
                    sent += 1;
                    break;
                }
                DirectSend::Refused => break,
            }
            assert!(sent < 100_000, "the socket never filled");
        }
        assert_eq!(
            writer.try_send(false, b"later").unwrap(),
            DirectSend::Refused
        );
        // The peer reads while the request thread writes the rest and one of its own.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            all
        });
        {
            let _guard = writer.lock_for_write().unwrap();
        }
        assert!(!writer.write_pending_now().unwrap());
        // Direct again once the peer has made room.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.try_send(true, b"last").unwrap() != DirectSend::Sent {
            assert!(Instant::now() < deadline, "never direct again");
            std::thread::yield_now();
        }
        writer.close();
        assert_eq!(writer.try_send(true, b"x").unwrap(), DirectSend::Refused);
        writer.end();
        drop(ours);
        let got = frames(&reader.join().unwrap());
        assert_eq!(got.len(), sent + 1);
        for (i, (ty, data)) in got[..sent].iter().enumerate() {
            assert_eq!(*ty, ws_type::TEXT);
            assert_eq!(*data, message(i), "message {i}");
        }
        assert_eq!(got[sent], (ws_type::BINARY, b"last".to_vec()));
    }

    #[test]
    fn a_message_over_the_bound_is_refused() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let writer = WsWriter::new(&ours).unwrap();
        let big = vec![0u8; DIRECT_MAX + 1];
        assert_eq!(writer.try_send(true, &big).unwrap(), DirectSend::Refused);
        assert_eq!(writer.try_send(true, b"small").unwrap(), DirectSend::Sent);
    }
}
