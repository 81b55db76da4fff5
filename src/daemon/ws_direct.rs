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
//! the loop's operations ([`WsWriter::write_pending_now`]), and before any write of its own
//! ([`WsWriter::lock_for_write`]). Messages the loop cannot write now go through the request
//! thread (the ASGI runtime keeps them in order behind the queued ones).
//!
//! The client's messages are read by the loop thread too ([`WsDirect::try_recv`], when its
//! own descriptor of the connection is readable): the connection's decoder moves here for
//! the WebSocket's lifetime and back at the request's end, and the request thread no longer
//! reads the connection (it waits for the loop's operations and writes pending rests).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};

use crate::protocol::{self, Decoder, Frame, FrameKind, ws_type};
use crate::python::{DirectSend, WsDirect, WsEvent};

/// The largest message the loop thread writes itself: a bigger one goes through the request
/// thread (it bounds `pending`, and a big write is no hop-dominated round trip).
pub(super) const DIRECT_MAX: usize = 64 * 1024;

pub(super) struct WsWriter {
    state: Mutex<WriterState>,
    reader: Mutex<ReaderState>,
    /// The client closed (set by the loop's read, which must not wait for `state`).
    client_closed: AtomicBool,
}

/// The loop thread's reading of the client's messages.
struct ReaderState {
    /// The descriptor the loop watches: closed only by [`WsDirect::stop_reading`], once the
    /// loop no longer watches it (a descriptor closed while registered would leave a stale
    /// registration in the loop's epoll, which another descriptor could inherit).
    stream: Option<UnixStream>,
    /// The connection's decoder (it may hold bytes read ahead), until the request's end.
    dec: Option<Decoder>,
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
    /// socket-timeout: how long the request thread's write of a rest waits for room.
    timeout: Duration,
}

fn lock(m: &Mutex<WriterState>) -> MutexGuard<'_, WriterState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WsWriter {
    /// The writer and reader of the connection `stream` (cloned twice: the writer's clone
    /// is dropped by [`WsWriter::end`], the reader's by [`WsDirect::stop_reading`]), which
    /// reads with the connection's decoder `dec` (taken, with any bytes read ahead, until
    /// [`WsWriter::take_decoder`]; left alone on an error).
    pub(super) fn new(
        stream: &UnixStream,
        dec: &mut Decoder,
        timeout: Duration,
    ) -> io::Result<WsWriter> {
        let (write_stream, read_stream) = (stream.try_clone()?, stream.try_clone()?);
        let limits = *dec.limits();
        let dec = std::mem::replace(dec, Decoder::new(limits));
        Ok(WsWriter {
            state: Mutex::new(WriterState {
                stream: Some(write_stream),
                open: true,
                pending: Vec::new(),
                pending_at: 0,
                frame: Vec::new(),
                failed: false,
                timeout,
            }),
            reader: Mutex::new(ReaderState {
                stream: Some(read_stream),
                dec: Some(dec),
            }),
            client_closed: AtomicBool::new(false),
        })
    }

    /// The request is over: the connection's decoder back (nothing more is read here).
    pub(super) fn take_decoder(&self) -> Option<Decoder> {
        self.reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dec
            .take()
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
                // (Also when the event loop made the connection non-blocking.)
                Err(Errno::EAGAIN) => {
                    if !crate::ipc::poll::wait_writable(stream.as_fd(), self.timeout)? {
                        return Err(self.fail(io::ErrorKind::TimedOut.into()));
                    }
                }
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
        if !state.open
            || state.pending_at < state.pending.len()
            || self.client_closed.load(Ordering::SeqCst)
        {
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

    fn read_fd(&self) -> Option<std::os::fd::RawFd> {
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        reader.stream.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// One non-blocking read (none when a whole frame is already buffered), then every
    /// whole message buffered; empty when nothing came or reading stopped.
    fn try_recv(&self) -> io::Result<Vec<WsEvent>> {
        let mut guard = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let reader = &mut *guard;
        let Some(stream) = &reader.stream else {
            return Ok(Vec::new()); // stopped: not watched any more
        };
        let Some(dec) = &mut reader.dec else {
            // (An error, so that the loop stops watching a descriptor that stays readable.)
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the WebSocket's request is over",
            ));
        };
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidData, e);
        if !dec.has_frame().map_err(invalid)? {
            loop {
                match recv(stream.as_raw_fd(), dec.read_space(), MsgFlags::MSG_DONTWAIT) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "Apache closed the WebSocket's connection",
                        ));
                    }
                    Ok(n) => {
                        dec.commit(n);
                        break;
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut events = Vec::new();
        while let Some(frame) = dec.next_frame().map_err(invalid)? {
            match frame {
                Frame::WsMsg { ty, data } => events.push(WsEvent::Message {
                    binary: ty == ws_type::BINARY,
                    data,
                }),
                Frame::WsClose { code, reason } => {
                    // Closed by the client: a later send() raises, as it did before.
                    self.client_closed.store(true, Ordering::SeqCst);
                    events.push(WsEvent::Close { code, reason });
                    break;
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "expected a WebSocket frame from Apache, got a {}",
                            other.kind()
                        ),
                    ));
                }
            }
        }
        Ok(events)
    }

    fn stop_reading(&self) {
        self.reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stream = None;
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
        let writer = WsWriter::new(
            &ours,
            &mut Decoder::new(protocol::Limits::default()),
            Duration::from_secs(10),
        )
        .unwrap();
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
        writer.stop_reading();
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
    fn the_loop_reads_messages_then_the_close_and_stops() {
        use std::io::Write;
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut dec = Decoder::new(protocol::Limits::default());
        let writer = WsWriter::new(&ours, &mut dec, Duration::from_secs(10)).unwrap();
        assert!(writer.try_recv().unwrap().is_empty(), "nothing came yet");
        let mut bytes = Vec::new();
        for frame in [
            Frame::WsMsg {
                ty: ws_type::TEXT,
                data: b"one".to_vec(),
            },
            Frame::WsMsg {
                ty: ws_type::BINARY,
                data: b"two".to_vec(),
            },
            Frame::WsClose {
                code: 1000,
                reason: Vec::new(),
            },
        ] {
            frame.encode(&mut bytes).unwrap();
        }
        peer.write_all(&bytes).unwrap();
        let events = writer.try_recv().unwrap();
        assert_eq!(
            events,
            [
                WsEvent::Message {
                    binary: false,
                    data: b"one".to_vec()
                },
                WsEvent::Message {
                    binary: true,
                    data: b"two".to_vec()
                },
                WsEvent::Close {
                    code: 1000,
                    reason: Vec::new()
                },
            ]
        );
        // Closed by the client: no direct send after it.
        assert_eq!(writer.try_send(false, b"x").unwrap(), DirectSend::Refused);
        // The request is over: the decoder goes back, reading is an error (the loop stops).
        assert!(writer.take_decoder().is_some());
        assert!(writer.try_recv().is_err());
        writer.stop_reading();
        assert!(writer.read_fd().is_none());
        assert!(writer.try_recv().unwrap().is_empty());
    }

    #[test]
    fn a_message_over_the_bound_is_refused() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let writer = WsWriter::new(
            &ours,
            &mut Decoder::new(protocol::Limits::default()),
            Duration::from_secs(10),
        )
        .unwrap();
        let big = vec![0u8; DIRECT_MAX + 1];
        assert_eq!(writer.try_send(true, &big).unwrap(), DirectSend::Refused);
        assert_eq!(writer.try_send(true, b"small").unwrap(), DirectSend::Sent);
    }
}
