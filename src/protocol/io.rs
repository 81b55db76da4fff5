//! Blocking helpers over [`std::io::Read`] and [`std::io::Write`]: frames and handshakes.
//!
//! Timeouts are the caller's: set them on the socket. A read that fails (a timeout included)
//! leaves what was already received in the [`Decoder`], so calling [`read_frame`] again resumes.
//!
//! Errors are `io::Error`s:
//! - a protocol violation is [`InvalidData`](ErrorKind::InvalidData) wrapping a
//!   [`ProtocolError`] (see [`protocol_error`]);
//! - the peer closing at a frame boundary (the clean end of a keep-alive connection) is
//!   recognised by [`is_peer_closed`] (kind [`ConnectionAborted`](ErrorKind::ConnectionAborted));
//! - the peer closing in the middle of a frame or hello is
//!   [`UnexpectedEof`](ErrorKind::UnexpectedEof).

use std::fmt;
use std::io::{self, ErrorKind, IoSlice, Read, Write};

use super::{
    ClientHello, Decoder, Frame, FrameKind, HELLO_LEN, HelloStatus, PUSHED_BODY_MAX, ProtocolError,
    RawFrame, ServerHello, encode_client_hello, encode_header, encode_server_hello,
    parse_client_hello, parse_server_hello,
};

/// The inner error of a clean close (see [`is_peer_closed`]).
#[derive(Debug)]
struct PeerClosed;

impl fmt::Display for PeerClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("peer closed the connection at a frame boundary")
    }
}

impl std::error::Error for PeerClosed {}

fn peer_closed() -> io::Error {
    io::Error::new(ErrorKind::ConnectionAborted, PeerClosed)
}

/// Whether `err` means the peer closed the connection cleanly, between frames (or before
/// sending any hello byte): for an idle keep-alive connection, a normal end.
pub fn is_peer_closed(err: &io::Error) -> bool {
    err.kind() == ErrorKind::ConnectionAborted
        && err.get_ref().is_some_and(|e| e.is::<PeerClosed>())
}

/// Whether `err`, from reading at a frame boundary, means the peer went away: it closed
/// cleanly ([`is_peer_closed`]), or closed with bytes this side sent still unread by it, which
/// Linux reports as a reset (for an Apache child, its client left mid-response).
pub fn is_peer_gone(err: &io::Error) -> bool {
    is_peer_closed(err) || err.kind() == ErrorKind::ConnectionReset
}

/// The protocol violation inside `err`, if that is what it is.
pub fn protocol_error(err: &io::Error) -> Option<&ProtocolError> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<ProtocolError>())
}

/// Reads once from `r` straight into `dec`'s buffer.
fn fill<R: Read + ?Sized>(r: &mut R, dec: &mut Decoder) -> io::Result<()> {
    loop {
        match r.read(dec.read_space()) {
            Ok(0) if dec.is_empty() => return Err(peer_closed()),
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "peer closed the connection mid-frame ({} bytes of an incomplete frame \
                         received)",
                        dec.buffered()
                    ),
                ));
            }
            Ok(n) => {
                dec.commit(n);
                return Ok(());
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Reads until `dec` yields a complete frame, reading into the decoder's own buffer. Frames
/// already buffered in `dec` are returned without reading.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, dec: &mut Decoder) -> io::Result<Frame> {
    loop {
        if let Some(frame) = dec.next_frame()? {
            return Ok(frame);
        }
        fill(r, dec)?;
    }
}

/// Like [`read_frame`], but the payload stays borrowed from the decoder (no copy), for relaying
/// body chunks; decode other kinds with [`RawFrame::decode`].
pub fn read_raw_frame<'d, R: Read + ?Sized>(
    r: &mut R,
    dec: &'d mut Decoder,
) -> io::Result<RawFrame<'d>> {
    while !dec.has_frame()? {
        fill(r, dec)?;
    }
    dec.next_raw()?
        .ok_or_else(|| io::Error::other("decoder lost a complete frame"))
}

/// Writes an encoded request head and, with `pushed`, the whole request body after it (the
/// head must carry `BODY_PUSHED`): one ReqBody frame (none for an empty body) and the empty
/// one that ends the body, in one vectored write with the head. A body over
/// [`PUSHED_BODY_MAX`] is refused unsent.
pub fn write_request<W: Write + ?Sized>(
    w: &mut W,
    head: &[u8],
    pushed: Option<&[u8]>,
) -> io::Result<()> {
    let Some(body) = pushed else {
        return w.write_all(head);
    };
    if body.len() > PUSHED_BODY_MAX {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a pushed request body may have at most {PUSHED_BODY_MAX} bytes, not {}",
                body.len()
            ),
        ));
    }
    let body_header = encode_header(FrameKind::ReqBody, body.len() as u32);
    let end = encode_header(FrameKind::ReqBody, 0);
    // An empty body is the end frame alone (an empty ReqBody ends the body).
    let body_header: &[u8] = if body.is_empty() { &[] } else { &body_header };
    let mut parts = [
        IoSlice::new(head),
        IoSlice::new(body_header),
        IoSlice::new(body),
        IoSlice::new(&end),
    ];
    write_all_vectored(w, &mut parts)
}

/// Reads a pushed request body (the head had `BODY_PUSHED`): the ReqBody frames up to the
/// empty one that ends it, at most [`PUSHED_BODY_MAX`] bytes in all, as one buffer (the first
/// frame's, when it is the only one). Anything else is an `InvalidData` error.
pub fn read_pushed_body<R: Read + ?Sized>(r: &mut R, dec: &mut Decoder) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match read_frame(r, dec)? {
            Frame::ReqBody(data) if data.is_empty() => return Ok(body),
            Frame::ReqBody(data) => {
                if body.len() + data.len() > PUSHED_BODY_MAX {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("the pushed request body exceeds {PUSHED_BODY_MAX} bytes"),
                    ));
                }
                if body.is_empty() {
                    body = data;
                } else {
                    body.extend_from_slice(&data);
                }
            }
            other => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "expected the pushed request body, got a {} frame",
                        other.kind()
                    ),
                ));
            }
        }
    }
}

/// Writes one frame. Body frames go out with one vectored write of header and payload.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, frame: &Frame) -> io::Result<()> {
    match frame {
        Frame::ReqBody(body) => write_body(w, FrameKind::ReqBody, body),
        Frame::RespBody(body) => write_body(w, FrameKind::RespBody, body),
        _ => {
            let mut out = Vec::new();
            frame
                .encode(&mut out)
                .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
            w.write_all(&out)
        }
    }
}

/// Writes a `ReqBody` or `RespBody` frame carrying `body`, without copying it: the header and
/// the borrowed slice go out with vectored writes. The caller keeps `body` within the peer's
/// `max_body_chunk`; an empty `ReqBody` means end of body.
pub fn write_body<W: Write + ?Sized>(w: &mut W, kind: FrameKind, body: &[u8]) -> io::Result<()> {
    if !matches!(kind, FrameKind::ReqBody | FrameKind::RespBody) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("write_body: {kind} is not a body frame kind"),
        ));
    }
    let len = u32::try_from(body.len()).map_err(|_| {
        let err = ProtocolError::TooLongToEncode {
            kind,
            field: "body",
            len: body.len(),
        };
        io::Error::new(ErrorKind::InvalidInput, err)
    })?;
    let header = encode_header(kind, len);
    write_all_vectored(w, &mut [IoSlice::new(&header), IoSlice::new(body)])
}

/// `Write::write_all_vectored` (unstable in std) without its panic on a misbehaving writer.
pub fn write_all_vectored<W: Write + ?Sized>(
    w: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut left: usize = bufs.iter().map(|b| b.len()).sum();
    IoSlice::advance_slices(&mut bufs, 0);
    while left > 0 {
        match w.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::WriteZero,
                    "failed to write frame",
                ));
            }
            Ok(n) if n > left => {
                return Err(io::Error::other(format!(
                    "writer reported {n} bytes of {left}"
                )));
            }
            Ok(n) => {
                IoSlice::advance_slices(&mut bufs, n);
                left -= n;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Reads exactly one hello; no byte at all is a clean close ([`is_peer_closed`]).
fn read_hello<R: Read + ?Sized>(r: &mut R) -> io::Result<[u8; HELLO_LEN]> {
    let mut bytes = [0; HELLO_LEN];
    let mut filled = 0;
    while let Some(rest) = bytes.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest) {
            Ok(0) if filled == 0 => return Err(peer_closed()),
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("peer closed the connection mid-hello ({filled} of {HELLO_LEN} bytes)"),
                ));
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(bytes)
}

/// Client side of the handshake: sends the client hello, reads the daemon's answer.
///
/// A daemon speaking another version yields `InvalidData` wrapping
/// [`ProtocolError::UnsupportedVersion`] (`theirs` = the daemon's version); a refusal yields
/// [`ConnectionRefused`](ErrorKind::ConnectionRefused) (nothing was processed: retry).
pub fn client_handshake<S: Read + Write + ?Sized>(
    s: &mut S,
    flags: u16,
) -> io::Result<ServerHello> {
    s.write_all(&encode_client_hello(flags))?;
    s.flush()?;
    let hello = parse_server_hello(&read_hello(s)?)?;
    match hello.status {
        HelloStatus::Ok => Ok(hello),
        HelloStatus::Refused => Err(io::Error::new(
            ErrorKind::ConnectionRefused,
            "daemon refused the connection",
        )),
        HelloStatus::UnsupportedVersion => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "daemon claims not to support protocol v{} although it speaks it",
                hello.version
            ),
        )),
    }
}

/// Daemon side of the handshake: reads the client hello and answers it.
///
/// With `accept` false the client is told [`HelloStatus::Refused`] and the result is
/// [`ConnectionRefused`](ErrorKind::ConnectionRefused). A client speaking another version is
/// told [`HelloStatus::UnsupportedVersion`] (with this side's version) and the result is
/// `InvalidData` wrapping [`ProtocolError::UnsupportedVersion`]. A bad magic gets no answer.
/// In every error case the caller closes the connection.
pub fn server_handshake<S: Read + Write + ?Sized>(
    s: &mut S,
    accept: bool,
) -> io::Result<ClientHello> {
    let bytes = read_hello(s)?;
    let reply = |s: &mut S, status| {
        s.write_all(&encode_server_hello(status))
            .and_then(|()| s.flush())
    };
    match parse_client_hello(&bytes) {
        Ok(hello) if accept => {
            reply(s, HelloStatus::Ok)?;
            Ok(hello)
        }
        Ok(_) => {
            reply(s, HelloStatus::Refused)?;
            Err(io::Error::new(
                ErrorKind::ConnectionRefused,
                "connection refused by this daemon",
            ))
        }
        Err(err @ ProtocolError::UnsupportedVersion { .. }) => {
            // The peer's version is the useful news; a failure to tell it so is not.
            let _ = reply(s, HelloStatus::UnsupportedVersion);
            Err(err.into())
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair_list::PairList;
    use crate::protocol::{Limits, ReqHead, RespHead, VERSION, error_code, req_flags};
    use std::io::Cursor;
    use std::os::unix::net::UnixStream;
    use std::thread;
    use std::time::Duration;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::ReqHead(ReqHead {
                flags: req_flags::BODY_FOLLOWS,
                daemon_connects: 1,
                daemon_restarts: 0,
                request_start_us: 42,
                queue_start_us: 43,
                script_mtime_us: 44,
                script_path: b"/srv/app.wsgi".to_vec(),
                app_group: Vec::new(),
                callable: b"application".to_vec(),
                env: vec![(b"PATH_INFO".to_vec(), b"/\x00\xff".to_vec())]
                    .into_iter()
                    .collect(),
            }),
            Frame::ReadBody { max: 65536 },
            Frame::ReqBody(b"body".to_vec()),
            Frame::ReqBody(Vec::new()),
            Frame::RespHead(RespHead {
                status: 200,
                reason: b"OK".to_vec(),
                headers: vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())]
                    .into_iter()
                    .collect::<PairList>(),
            }),
            Frame::RespBody(vec![0xAB; 100_000]),
            Frame::Flush,
            Frame::RespFile {
                offset: 10,
                length: 20,
            },
            Frame::Error {
                code: error_code::INTERNAL,
                message: b"boom".to_vec(),
            },
            Frame::RespEnd,
        ]
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            write_frame(&mut out, frame).unwrap();
        }
        out
    }

    #[test]
    fn a_peer_closing_with_our_bytes_unread_is_gone_not_broken() {
        use std::os::unix::net::UnixStream;
        // Clean close at a frame boundary.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let err = read_frame(&mut &ours, &mut Decoder::new(Limits::default())).unwrap_err();
        assert!(is_peer_closed(&err) && is_peer_gone(&err), "{err:?}");
        // Closed with what we sent still unread: the kernel reports a reset.
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        ours.write_all(&encode_all(&[Frame::RespEnd])).unwrap();
        drop(theirs);
        let err = read_frame(&mut &ours, &mut Decoder::new(Limits::default())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert!(is_peer_gone(&err) && !is_peer_closed(&err), "{err:?}");
        // A protocol error is neither.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(&[0x2A, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        let err = read_frame(&mut &ours, &mut Decoder::new(Limits::default())).unwrap_err();
        assert!(!is_peer_gone(&err), "{err:?}");
    }

    #[test]
    fn pushed_body_follows_the_head_and_reads_back_whole() {
        let head_frame = Frame::ReqHead(ReqHead {
            flags: req_flags::BODY_FOLLOWS | req_flags::BODY_PUSHED,
            script_path: b"/a.wsgi".to_vec(),
            ..ReqHead::default()
        });
        let mut head = Vec::new();
        head_frame.encode(&mut head).unwrap();
        for size in [0, 1, 4096, PUSHED_BODY_MAX] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            write_request(&mut wire, &head, Some(&body)).unwrap();
            // The next request's head may follow at once: it must stay unread.
            write_request(&mut wire, &head, None).unwrap();
            for step in [1, 9, 1 << 20] {
                let mut r = Stingy::new(Cursor::new(&wire), step);
                let mut dec = Decoder::new(Limits::default());
                assert_eq!(read_frame(&mut r, &mut dec).unwrap(), head_frame);
                let got = read_pushed_body(&mut r, &mut dec).unwrap();
                assert_eq!(got, body, "size {size}, step {step}");
                assert_eq!(read_frame(&mut r, &mut dec).unwrap(), head_frame);
            }
        }
        // Without a pushed body only the head is written.
        let mut wire = Vec::new();
        write_request(&mut wire, &head, None).unwrap();
        assert_eq!(wire, head);
    }

    #[test]
    fn pushed_body_over_the_limit_or_out_of_order_is_refused() {
        let too_big = vec![0u8; PUSHED_BODY_MAX + 1];
        let mut wire = Vec::new();
        let err = write_request(&mut wire, b"head", Some(&too_big)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(wire.is_empty(), "nothing may be written");

        // A peer pushing more than the limit in several frames.
        let chunk = vec![1u8; PUSHED_BODY_MAX / 2 + 1];
        let wire = encode_all(&[Frame::ReqBody(chunk.clone()), Frame::ReqBody(chunk)]);
        let mut dec = Decoder::new(Limits::default());
        let err = read_pushed_body(&mut Cursor::new(&wire), &mut dec).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");

        // Another frame where the body should be.
        let wire = encode_all(&[Frame::ReqBody(b"x".to_vec()), Frame::RespEnd]);
        let mut dec = Decoder::new(Limits::default());
        let err = read_pushed_body(&mut Cursor::new(&wire), &mut dec).unwrap_err();
        assert!(err.to_string().contains("got a RespEnd frame"), "{err}");

        // The peer closing before the end of the body.
        let wire = encode_all(&[Frame::ReqBody(b"x".to_vec())]);
        let mut dec = Decoder::new(Limits::default());
        assert!(read_pushed_body(&mut Cursor::new(&wire), &mut dec).is_err());
    }

    #[test]
    fn cursor_round_trip_then_clean_eof() {
        let frames = frames();
        let bytes = encode_all(&frames);
        for step in [1, 7, 8, 4096, 1 << 20] {
            let mut r = Stingy::new(Cursor::new(&bytes), step);
            let mut dec = Decoder::new(Limits::default());
            for frame in &frames {
                assert_eq!(&read_frame(&mut r, &mut dec).unwrap(), frame);
            }
            let err = read_frame(&mut r, &mut dec).unwrap_err();
            assert!(is_peer_closed(&err), "{err:?}");
            assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
            assert!(err.to_string().contains("frame boundary"));
        }
    }

    #[test]
    fn raw_reads_borrow_body_chunks() {
        let bytes = encode_all(&frames());
        let mut r = Stingy::new(Cursor::new(&bytes), 1000);
        let mut dec = Decoder::new(Limits::default());
        let mut kinds = Vec::new();
        loop {
            match read_raw_frame(&mut r, &mut dec) {
                Ok(raw) => {
                    if raw.kind == FrameKind::RespBody {
                        assert_eq!(raw.payload.len(), 100_000);
                    }
                    kinds.push(raw.kind);
                }
                Err(err) => {
                    assert!(is_peer_closed(&err));
                    break;
                }
            }
        }
        assert_eq!(kinds, frames().iter().map(Frame::kind).collect::<Vec<_>>());
    }

    #[test]
    fn eof_mid_frame_is_unexpected_eof_at_every_cut() {
        let bytes = encode_all(&frames()[..1]);
        for cut in 1..bytes.len() {
            let mut r = Stingy::new(Cursor::new(&bytes[..cut]), 3);
            let mut dec = Decoder::new(Limits::default());
            let err = read_frame(&mut r, &mut dec).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "cut {cut}");
            assert!(!is_peer_closed(&err));
            assert!(err.to_string().contains(&format!("({cut} bytes")), "{err}");
        }
    }

    #[test]
    fn protocol_errors_are_invalid_data() {
        let mut r = Cursor::new(vec![0x42, 0, 0, 0, 0, 0, 0, 0]);
        let mut dec = Decoder::new(Limits::default());
        let err = read_frame(&mut r, &mut dec).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(
            protocol_error(&err),
            Some(&ProtocolError::UnknownKind(0x42))
        );
        assert_eq!(err.to_string(), "unknown frame kind 66");
    }

    /// A reader that gives at most `step` bytes per call, as a socket may.
    struct Stingy<R> {
        inner: R,
        step: usize,
    }

    impl<R> Stingy<R> {
        fn new(inner: R, step: usize) -> Self {
            Stingy { inner, step }
        }
    }

    impl<R: Read> Read for Stingy<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.inner.read(&mut buf[..n])
        }
    }

    /// A writer that takes at most `step` bytes per call and records vectored calls.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored_calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.vectored_calls += 1;
            let mut budget = self.step;
            for buf in bufs {
                let n = buf.len().min(budget);
                self.out.extend_from_slice(&buf[..n]);
                budget -= n;
                if budget == 0 {
                    break;
                }
            }
            Ok(self.step - budget)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_body_survives_partial_vectored_writes() {
        let body: Vec<u8> = (0..=255).cycle().take(1000).collect();
        for step in [1, 3, 8, 9, 2000] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
                vectored_calls: 0,
            };
            write_body(&mut w, FrameKind::RespBody, &body).unwrap();
            assert!(w.vectored_calls >= 1);
            let mut expected = Vec::new();
            Frame::RespBody(body.clone()).encode(&mut expected).unwrap();
            assert_eq!(w.out, expected, "step {step}");
        }
    }

    #[test]
    fn write_body_rejects_non_body_kinds_and_zero_writes() {
        let err = write_body(&mut Vec::new(), FrameKind::RespEnd, b"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("RespEnd is not a body frame kind"));
        let mut full = [0u8; 4];
        let err = write_body(&mut &mut full[..], FrameKind::ReqBody, b"abcdef").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WriteZero);
    }

    #[test]
    fn unix_stream_pair_streams_frames_both_ways() {
        let (mut client, mut daemon) = UnixStream::pair().unwrap();
        let chunk = vec![0x5A; 64 * 1024];
        let writer = {
            let chunk = chunk.clone();
            thread::spawn(move || {
                let mut dec = Decoder::default();
                server_handshake(&mut daemon, true).unwrap();
                let head = read_frame(&mut daemon, &mut dec).unwrap();
                assert!(matches!(head, Frame::ReqHead(_)));
                // Pull the body, then stream 20 MiB back.
                let mut body = Vec::new();
                loop {
                    write_frame(&mut daemon, &Frame::ReadBody { max: 1000 }).unwrap();
                    match read_frame(&mut daemon, &mut dec).unwrap() {
                        Frame::ReqBody(b) if b.is_empty() => break,
                        Frame::ReqBody(b) => body.extend_from_slice(&b),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(body.len(), 2500);
                let resp = RespHead {
                    status: 200,
                    reason: b"OK".to_vec(),
                    headers: PairList::new(),
                };
                write_frame(&mut daemon, &Frame::RespHead(resp)).unwrap();
                for _ in 0..320 {
                    write_body(&mut daemon, FrameKind::RespBody, &chunk).unwrap();
                }
                write_frame(&mut daemon, &Frame::RespEnd).unwrap();
                // Dropping `daemon` closes the connection at a frame boundary.
            })
        };
        let hello = client_handshake(&mut client, 0).unwrap();
        assert_eq!(
            hello,
            ServerHello {
                version: VERSION,
                status: HelloStatus::Ok
            }
        );
        write_frame(&mut client, &frames()[0]).unwrap();
        let mut dec = Decoder::default();
        let mut request_body = &[7u8; 2500][..];
        let mut received = 0usize;
        loop {
            match read_raw_frame(&mut client, &mut dec).unwrap() {
                RawFrame {
                    kind: FrameKind::ReadBody,
                    payload,
                } => {
                    let Ok(Frame::ReadBody { max }) =
                        Frame::decode(FrameKind::ReadBody, payload, &Limits::default())
                    else {
                        panic!("bad ReadBody");
                    };
                    let n = request_body.len().min(max as usize);
                    write_body(&mut client, FrameKind::ReqBody, &request_body[..n]).unwrap();
                    request_body = &request_body[n..];
                }
                RawFrame {
                    kind: FrameKind::RespHead,
                    ..
                } => {}
                RawFrame {
                    kind: FrameKind::RespBody,
                    payload,
                } => {
                    assert!(payload.iter().all(|&b| b == 0x5A));
                    received += payload.len();
                }
                RawFrame {
                    kind: FrameKind::RespEnd,
                    ..
                } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, 320 * chunk.len());
        writer.join().unwrap();
        let err = read_frame(&mut client, &mut dec).unwrap_err();
        assert!(is_peer_closed(&err), "{err:?}");
    }

    #[test]
    fn unix_stream_eof_mid_frame() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut bytes = Vec::new();
        Frame::RespBody(vec![1; 100]).encode(&mut bytes).unwrap();
        let writer = thread::spawn(move || {
            a.write_all(&bytes[..50]).unwrap();
        });
        writer.join().unwrap();
        let err = read_frame(&mut b, &mut Decoder::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn read_resumes_after_a_timeout() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut bytes = Vec::new();
        Frame::Error {
            code: 5,
            message: b"draining".to_vec(),
        }
        .encode(&mut bytes)
        .unwrap();
        a.write_all(&bytes[..5]).unwrap();
        let mut dec = Decoder::default();
        let err = read_frame(&mut b, &mut dec).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err:?}"
        );
        assert_eq!(dec.buffered(), 5);
        a.write_all(&bytes[5..]).unwrap();
        let frame = read_frame(&mut b, &mut dec).unwrap();
        assert_eq!(
            frame,
            Frame::Error {
                code: 5,
                message: b"draining".to_vec()
            }
        );
    }

    #[test]
    fn handshake_version_mismatch_both_directions() {
        // An old/new client reaches this daemon: it is told our version, status 1.
        let (mut client, mut daemon) = UnixStream::pair().unwrap();
        client.write_all(b"RWSG\x00\x02\x00\x00").unwrap();
        let err = server_handshake(&mut daemon, true).unwrap_err();
        assert_eq!(
            protocol_error(&err),
            Some(&ProtocolError::UnsupportedVersion {
                theirs: 2,
                ours: VERSION
            })
        );
        let mut answer = [0; HELLO_LEN];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, encode_server_hello(HelloStatus::UnsupportedVersion));

        // This module reaches a daemon speaking v9, which answers status 1 with its version.
        let (mut client, mut daemon) = UnixStream::pair().unwrap();
        daemon.write_all(b"RWSG\x00\x09\x00\x01").unwrap();
        let err = client_handshake(&mut client, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(
            protocol_error(&err),
            Some(&ProtocolError::UnsupportedVersion {
                theirs: 9,
                ours: VERSION
            })
        );
        let mut sent = [0; HELLO_LEN];
        daemon.read_exact(&mut sent).unwrap();
        assert_eq!(sent, encode_client_hello(0));
    }

    #[test]
    fn handshake_refusal_bad_magic_and_eof() {
        let (mut client, mut daemon) = UnixStream::pair().unwrap();
        let t = thread::spawn(move || server_handshake(&mut daemon, false));
        let err = client_handshake(&mut client, 3).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            t.join().unwrap().unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );

        let mut s = Cursor::new(b"GET / HTTP/1.0\r\n".to_vec());
        let err = server_handshake(&mut s, true).unwrap_err();
        assert_eq!(
            protocol_error(&err),
            Some(&ProtocolError::BadMagic { found: *b"GET " })
        );
        assert_eq!(s.position(), 8, "nothing is answered to a stranger");

        let err = server_handshake(&mut Cursor::new(Vec::new()), true).unwrap_err();
        assert!(is_peer_closed(&err));
        let err = server_handshake(&mut Cursor::new(b"RWS".to_vec()), true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("3 of 8"), "{err}");
    }
}
