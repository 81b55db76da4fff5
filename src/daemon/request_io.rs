//! Request I/O inside a daemon: the Python host's view of one request on a connection from
//! Apache ([`DaemonIo`], a [`RequestIo`]). It reads the request body (pushed with the head, or
//! asked for with ReadBody frames) and gathers the response into as few writes as it can: the
//! head, small bodies and the end go out together, large bodies as their own frames, files as
//! descriptors.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::{self, Decoder, Frame, FrameKind, ws_type};
use crate::python::{RequestIo, WsDirect, WsEvent};

use super::ws_direct::WsWriter;

/// What a WebSocket request needs from its dispatcher.
#[derive(Clone, Copy)]
pub(super) struct WsContext<'c> {
    /// Set when the daemon's drain time is over: open WebSockets close with 1012.
    pub shutdown: &'c AtomicBool,
    /// The thread's request start (µs since `epoch`), which request-timeout watches: moved
    /// on while the WebSocket waits for its client, so an open WebSocket is not a request
    /// that overran.
    pub busy_since: Option<&'c AtomicU64>,
    pub epoch: Instant,
}

/// Response bytes gathered before a write to the socket.
const OUT_BUFFER: usize = 64 * 1024;
/// The largest body frame we send (the peer's default limit is 1 MiB).
const MAX_CHUNK: usize = 1024 * 1024;
/// Bodies handed over whole up to this size are copied into the output buffer all the same
/// (cheaper than one more part in the vectored write).
const OWNED_COPY_MAX: usize = 4 * 1024;

/// A request body Apache pushed with the head, and how much of it the app has read.
pub(super) struct PushedBody {
    data: Vec<u8>,
    pos: usize,
}

impl PushedBody {
    pub(super) fn new(data: Vec<u8>) -> PushedBody {
        PushedBody { data, pos: 0 }
    }

    /// Up to `max` (at least 1) more bytes; empty once all is read. Reading it all at once
    /// (the common `read()`) moves the buffer out instead of copying it.
    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = (self.data.len() - self.pos).min(max.max(1));
        if self.pos == 0 && n == self.data.len() {
            return std::mem::take(&mut self.data); // leaves it empty: read to the end
        }
        let chunk = self.data[self.pos..self.pos + n].to_vec();
        self.pos += n;
        chunk
    }
}

/// The Python host's view of one request on a connection.
pub(super) struct DaemonIo<'c> {
    stream: &'c mut UnixStream,
    /// The connection's frame decoder (it may hold the start of the next request).
    dec: &'c mut Decoder,
    /// socket-timeout: how long a read of the request body waits for Apache.
    read_timeout: Duration,
    /// The request body Apache pushed with the head (all of it), not yet read by the app.
    pushed: Option<PushedBody>,
    /// Bytes to write before `out`: earlier parts of `out` and bodies handed over whole
    /// ([`RequestIo::send_body_owned`]), so a response's head, last body bytes and end go
    /// out in one vectored write without copying the body again.
    queued: Vec<Vec<u8>>,
    out: Vec<u8>,
    pub(super) head_sent: bool,
    pub(super) failed: bool,
    ws: Option<WsContext<'c>>,
    /// An accepted WebSocket's writer shared with the ASGI event loop thread
    /// ([`RequestIo::ws_direct`]): every write of this io goes under its lock.
    ws_writer: Option<Arc<WsWriter>>,
    /// The event loop thread reads the client's messages (through `ws_writer`, which holds
    /// the connection's decoder meanwhile): `ws_wait` does not read the connection.
    loop_reads: bool,
    /// The request has a body (pushed or to be asked for).
    has_body: bool,
}

impl<'c> DaemonIo<'c> {
    pub(super) fn new(
        stream: &'c mut UnixStream,
        dec: &'c mut Decoder,
        read_timeout: Duration,
        pushed: Option<PushedBody>,
        has_body: bool,
    ) -> DaemonIo<'c> {
        DaemonIo {
            has_body,
            stream,
            dec,
            read_timeout,
            pushed,
            queued: Vec::new(),
            // Grows on demand up to OUT_BUFFER: most responses are far smaller.
            out: Vec::new(),
            head_sent: false,
            failed: false,
            ws: None,
            ws_writer: None,
            loop_reads: false,
        }
    }

    /// Makes this the io of a WebSocket request.
    pub(super) fn set_websocket(&mut self, ws: WsContext<'c>) {
        self.ws = Some(ws);
    }

    fn ws_frame(&mut self, frame: &Frame) -> io::Result<()> {
        if self.ws.is_none() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.push_frame(frame)?;
        self.write_out()
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.write_out_with(&[])
    }

    /// Writes what is queued and buffered, then `body` as one RespBody frame (nothing more
    /// when empty), all in one vectored write.
    fn write_out_with(&mut self, body: &[u8]) -> io::Result<()> {
        if self.queued.is_empty() && body.is_empty() && self.out.is_empty() {
            return Ok(());
        }
        let writer = self.ws_writer.clone();
        let _turn = match &writer {
            Some(w) => Some(self.ws_turn(w)?),
            None => None,
        };
        let patience = self.ws_writer.is_some().then_some(self.read_timeout);
        let mut stream = PatientStream(&*self.stream, patience);
        let r = if self.queued.is_empty() && body.is_empty() {
            stream.write_all(&self.out)
        } else {
            let header = protocol::encode_header(FrameKind::RespBody, body.len() as u32);
            let body_parts: [&[u8]; 2] = if body.is_empty() {
                [&[], &[]]
            } else {
                [&header, body]
            };
            let mut parts: Vec<IoSlice<'_>> = self
                .queued
                .iter()
                .map(Vec::as_slice)
                .chain([self.out.as_slice()])
                .chain(body_parts)
                .filter(|part| !part.is_empty())
                .map(IoSlice::new)
                .collect();
            protocol::io::write_all_vectored(&mut stream, &mut parts)
        };
        self.queued.clear();
        self.out.clear();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// The request thread's turn to write on a WebSocket's connection (see
    /// [`WsWriter::lock_for_write`]).
    fn ws_turn<'w>(
        &mut self,
        writer: &'w WsWriter,
    ) -> io::Result<std::sync::MutexGuard<'w, super::ws_direct::WriterState>> {
        writer.lock_for_write().inspect_err(|_| self.failed = true)
    }

    fn push_frame(&mut self, frame: &Frame) -> io::Result<()> {
        frame
            .encode(&mut self.out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    pub(super) fn send_error(&mut self, code: u16, message: &[u8]) -> io::Result<()> {
        self.ws_direct_closed();
        self.push_frame(&Frame::Error {
            code,
            message: message.to_vec(),
        })?;
        self.write_out()
    }

    pub(super) fn finish(&mut self) -> io::Result<()> {
        self.ws_direct_closed();
        self.push_frame(&Frame::RespEnd)?;
        self.write_out()
    }
}

impl RequestIo for DaemonIo<'_> {
    fn client_gone(&mut self) -> bool {
        use std::os::fd::AsFd;
        crate::ipc::poll::hung_up(self.stream.as_fd())
    }

    fn body_ahead(&mut self) -> Option<Vec<u8>> {
        match &self.pushed {
            Some(pushed) if pushed.pos == 0 => Some(pushed.data.clone()),
            Some(_) => None,
            None => (!self.has_body).then(Vec::new),
        }
    }

    fn read_body(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if let Some(pushed) = &mut self.pushed {
            // Already here: no ReadBody round trip.
            return Ok(pushed.take(max));
        }
        let max = max.clamp(1, MAX_CHUNK) as u32;
        let _waiting = crate::python::waiting_for_body();
        self.push_frame(&Frame::ReadBody { max })?;
        self.write_out()?;
        // Waits in poll(): a thread blocked in recv() would be woken for nothing when
        // Apache reads the ReadBody frame just sent.
        // (Apache sends no descriptors: any that came would be closed with `fds`.)
        let mut fds = VecDeque::new();
        let mut reader = crate::ipc::fd_passing::FdReader {
            stream: &*self.stream,
            fds: &mut fds,
            timeout: Some(self.read_timeout),
            wait_first: true,
        };
        match protocol::io::read_frame(&mut reader, &mut *self.dec) {
            Ok(Frame::ReqBody(data)) => Ok(data),
            Ok(other) => {
                self.failed = true;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected request body from Apache, got a {} frame",
                        other.kind()
                    ),
                ))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn send_head(
        &mut self,
        status: u16,
        reason: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        protocol::encode_resp_head_into(
            &mut self.out,
            status,
            reason,
            headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.head_sent = true;
        Ok(())
    }

    fn send_body(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.out.len() + data.len() + protocol::HEADER_LEN <= OUT_BUFFER {
            self.out.extend_from_slice(&protocol::encode_header(
                FrameKind::RespBody,
                data.len() as u32,
            ));
            self.out.extend_from_slice(data);
            return Ok(());
        }
        // The first chunk leaves with what is buffered (usually the head): one write.
        let mut chunks = data.chunks(MAX_CHUNK);
        self.write_out_with(chunks.next().unwrap_or_default())?;
        for chunk in chunks {
            if let Err(e) = protocol::io::write_body(&mut *self.stream, FrameKind::RespBody, chunk)
            {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Small bodies are copied into `out`; a larger one is queued as it is, behind its frame
    /// header, and goes out with what follows it (usually just the response's end).
    fn send_body_owned(&mut self, data: Vec<u8>) -> io::Result<()> {
        if data.len() <= OWNED_COPY_MAX || data.len() > MAX_CHUNK {
            return self.send_body(&data);
        }
        self.out.extend_from_slice(&protocol::encode_header(
            FrameKind::RespBody,
            data.len() as u32,
        ));
        self.queued.push(std::mem::take(&mut self.out));
        self.queued.push(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push_frame(&Frame::Flush)?;
        self.write_out()
    }

    /// The file goes to Apache as a descriptor (SCM_RIGHTS) with a RespFile frame; Apache
    /// sends it like a static file, so its bytes never pass through this process.
    fn send_file(&mut self, fd: RawFd, offset: u64, len: u64) -> io::Result<bool> {
        if !self.queued.is_empty() {
            self.write_out()?;
        }
        self.push_frame(&Frame::RespFile {
            offset,
            length: len,
        })?;
        let result = crate::ipc::fd_passing::write_all_with_fd(&mut *self.stream, &self.out, fd);
        self.out.clear();
        if result.is_err() {
            self.failed = true;
        }
        result.map(|()| true)
    }

    fn ws_wait(&mut self, wake: BorrowedFd<'_>, timeout: Duration) -> io::Result<WsEvent> {
        let Some(ws) = self.ws else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        self.write_out()?;
        if ws.shutdown.load(Ordering::SeqCst) {
            return Ok(WsEvent::Shutdown);
        }
        if let Some(busy) = ws.busy_since {
            let now = u64::try_from(ws.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            busy.store(now.max(1), Ordering::SeqCst);
        }
        let buffered = !self.loop_reads
            && self
                .dec
                .has_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !buffered {
            let deadline = Instant::now() + timeout;
            loop {
                // The rest of a direct send goes out as the connection takes it.
                let output = match &self.ws_writer {
                    Some(w) => w.write_pending_now().inspect_err(|_| self.failed = true)?,
                    None => false,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let ready = crate::ipc::poll::wait_conn_or_wake(
                    self.stream.as_fd(),
                    wake,
                    !self.loop_reads,
                    output,
                    left,
                )?;
                if ready.woken {
                    return Ok(WsEvent::Woken);
                }
                if ready.input && !self.loop_reads {
                    break;
                }
                if !ready.output || left.is_zero() {
                    return Ok(WsEvent::Timeout);
                }
            }
        }
        if self.loop_reads {
            // (Not reached: without reading, the wait above ends only by a wake-up or the
            // timeout.)
            return Ok(WsEvent::Timeout);
        }
        let frame = match protocol::io::read_frame(
            &mut TimedStream(&*self.stream, self.read_timeout),
            &mut *self.dec,
        ) {
            Ok(frame) => frame,
            Err(e) => {
                self.failed = true;
                self.ws_direct_closed();
                return Err(e);
            }
        };
        match frame {
            Frame::WsMsg { ty, data } => Ok(WsEvent::Message {
                binary: ty == ws_type::BINARY,
                data,
            }),
            Frame::WsClose { code, reason } => {
                // Closed by the client: a later send() raises, as it did before.
                self.ws_direct_closed();
                Ok(WsEvent::Close { code, reason })
            }
            other => {
                self.failed = true;
                self.ws_direct_closed();
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected a WebSocket frame from Apache, got a {}",
                        other.kind()
                    ),
                ))
            }
        }
    }

    fn ws_send(&mut self, binary: bool, data: &[u8]) -> io::Result<()> {
        if data.len() > protocol::WS_MESSAGE_MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a WebSocket message of {} bytes is over the {} bytes the daemon protocol \
                     carries",
                    data.len(),
                    protocol::WS_MESSAGE_MAX
                ),
            ));
        }
        let ty = if binary {
            ws_type::BINARY
        } else {
            ws_type::TEXT
        };
        let header = protocol::encode_header(FrameKind::WsMsg, data.len() as u32 + 1);
        if self.ws.is_none() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.write_out()?;
        let writer = self.ws_writer.clone();
        let _turn = match &writer {
            Some(w) => Some(self.ws_turn(w)?),
            None => None,
        };
        let ty = [ty];
        let mut parts = [IoSlice::new(&header), IoSlice::new(&ty), IoSlice::new(data)];
        let patience = self.ws_writer.is_some().then_some(self.read_timeout);
        let mut stream = PatientStream(&*self.stream, patience);
        let r = protocol::io::write_all_vectored(&mut stream, &mut parts);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn ws_close(&mut self, code: u16, reason: &[u8]) -> io::Result<()> {
        // No direct send after the close (the frame goes out behind any pending rest).
        self.ws_direct_closed();
        self.ws_frame(&Frame::WsClose {
            code,
            reason: reason.to_vec(),
        })
    }

    fn ws_direct(&mut self) -> Option<Arc<dyn WsDirect>> {
        self.ws?;
        if self.ws_writer.is_none() {
            // The decoder (with any bytes read ahead) goes to the loop's reader until the
            // request's end. Without descriptors for it (none left), every message takes
            // the request thread's way.
            match WsWriter::new(&*self.stream, &mut *self.dec, self.read_timeout) {
                Ok(writer) => {
                    self.ws_writer = Some(Arc::new(writer));
                    self.loop_reads = true;
                }
                Err(_) => return None,
            }
        }
        self.ws_writer.clone().map(|w| -> Arc<dyn WsDirect> { w })
    }
}

impl DaemonIo<'_> {
    fn ws_direct_closed(&self) {
        if let Some(w) = &self.ws_writer {
            w.close();
        }
    }
}

impl Drop for DaemonIo<'_> {
    fn drop(&mut self) {
        // The connection may serve the next request: the event loop writes and reads
        // nothing more, and its decoder (bytes read ahead) is the connection's again.
        if let Some(w) = &self.ws_writer {
            w.end();
            if let Some(dec) = w.take_decoder() {
                *self.dec = dec;
            }
        }
    }
}

/// Writes to the connection. With a patience (an accepted WebSocket's connection, which an
/// event loop watches: uvloop makes it non-blocking for all its descriptors, and asgi.py
/// makes it blocking again just after), a write that would block waits up to that long for
/// room, and again each time it made progress.
struct PatientStream<'s>(&'s UnixStream, Option<Duration>);

impl PatientStream<'_> {
    fn retry<T>(&mut self, mut write: impl FnMut(&UnixStream) -> io::Result<T>) -> io::Result<T> {
        loop {
            match write(self.0) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.1.is_some() => {
                    let patience = self.1.unwrap_or_default();
                    if !crate::ipc::poll::wait_writable(self.0.as_fd(), patience)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "timed out writing to Apache",
                        ));
                    }
                }
                other => return other,
            }
        }
    }
}

impl Write for PatientStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(|mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.retry(|mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking read of the rest of a frame already announced by poll: within socket-timeout.
struct TimedStream<'s>(&'s UnixStream, Duration);

impl io::Read for TimedStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::ipc::poll::wait_readable(self.0.as_fd(), Some(self.1))?;
        io::Read::read(&mut self.0, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_body_is_read_in_pieces_or_taken_whole() {
        let body: Vec<u8> = (0..100u8).collect();
        let mut whole = PushedBody {
            data: body.clone(),
            pos: 0,
        };
        assert_eq!(whole.take(1 << 16), body);
        assert!(whole.take(1 << 16).is_empty());
        let mut pieces = PushedBody {
            data: body.clone(),
            pos: 0,
        };
        let mut got = Vec::new();
        loop {
            let piece = pieces.take(7);
            if piece.is_empty() {
                break;
            }
            assert!(piece.len() <= 7);
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, body);
        // A read of 0 still makes progress (wsgi.input never asks for 0).
        let mut zero = PushedBody { data: body, pos: 0 };
        assert_eq!(zero.take(0).len(), 1);
    }
}
