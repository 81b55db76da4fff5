//! Frames: the [`Frame`] type, its encoding, and the incremental [`Decoder`] (no I/O inside).
//!
//! The byte layout is specified in the module documentation of [`crate::protocol`].

use std::fmt;

use super::{HEADER_LEN, Limits, ProtocolError};

/// The kind of a frame: the first byte of its header. The numbers are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client → daemon: the request head (script, application group, environ).
    ReqHead = 1,
    /// Client → daemon: one chunk of request body, in answer to a `ReadBody` or pushed after
    /// the head (`BODY_PUSHED`); empty = end.
    ReqBody = 2,
    /// Daemon → client: "send me up to `max` bytes of request body".
    ReadBody = 3,
    /// Daemon → client: status line and response headers.
    RespHead = 4,
    /// Daemon → client: one chunk of response body.
    RespBody = 5,
    /// Daemon → client: send `length` bytes of a file from `offset`; the fd travels with the
    /// frame as `SCM_RIGHTS` ancillary data.
    RespFile = 6,
    /// Daemon → client: the response is complete; the connection may be reused.
    RespEnd = 7,
    /// Daemon → client: the request failed; see [`error_code`].
    Error = 8,
    /// Daemon → client: push buffered response output to the HTTP client now.
    Flush = 9,
}

impl FrameKind {
    /// Every kind, in wire-number order.
    pub const ALL: [FrameKind; 9] = [
        Self::ReqHead,
        Self::ReqBody,
        Self::ReadBody,
        Self::RespHead,
        Self::RespBody,
        Self::RespFile,
        Self::RespEnd,
        Self::Error,
        Self::Flush,
    ];

    /// The kind with this wire number, if this version defines it.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::ReqHead,
            2 => Self::ReqBody,
            3 => Self::ReadBody,
            4 => Self::RespHead,
            5 => Self::RespBody,
            6 => Self::RespFile,
            7 => Self::RespEnd,
            8 => Self::Error,
            9 => Self::Flush,
            _ => return None,
        })
    }

    /// The wire number.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name used in messages (`"ReqHead"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::ReqHead => "ReqHead",
            Self::ReqBody => "ReqBody",
            Self::ReadBody => "ReadBody",
            Self::RespHead => "RespHead",
            Self::RespBody => "RespBody",
            Self::RespFile => "RespFile",
            Self::RespEnd => "RespEnd",
            Self::Error => "Error",
            Self::Flush => "Flush",
        }
    }

    /// The payload length of kinds whose payload has a fixed size.
    pub const fn fixed_len(self) -> Option<u32> {
        match self {
            Self::ReadBody => Some(4),
            Self::RespFile => Some(16),
            Self::RespEnd | Self::Flush => Some(0),
            _ => None,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bits of [`ReqHead::flags`]. Bits not defined here are rejected by the decoder.
pub mod req_flags {
    /// The request has a body; the daemon pulls it with `ReadBody`.
    pub const BODY_FOLLOWS: u32 = 1;
    /// `WSGIScriptReloading On`: the daemon checks the script's mtime before running it.
    pub const SCRIPT_RELOADING: u32 = 2;
    /// The request body is chunked (no `Content-Length`): its size is known only at its end.
    pub const CHUNKED_INPUT: u32 = 4;
    /// The whole body follows the head unasked (at most
    /// [`PUSHED_BODY_MAX`](crate::protocol::PUSHED_BODY_MAX) bytes, as ReqBody frames ending
    /// with an empty one); the daemon reads it all before running the request and sends no
    /// `ReadBody`.
    pub const BODY_PUSHED: u32 = 8;
    /// Every bit this version defines.
    pub const ALL: u32 = BODY_FOLLOWS | SCRIPT_RELOADING | CHUNKED_INPUT | BODY_PUSHED;
}

/// Codes of [`Frame::Error`]. A receiver treats a code it does not know as [`INTERNAL`](error_code::INTERNAL).
pub mod error_code {
    /// The daemon failed for a reason not listed here.
    pub const INTERNAL: u16 = 1;
    /// The WSGI script could not be loaded (import error, missing callable).
    pub const APP_LOAD_FAILED: u16 = 2;
    /// The request head was invalid (for example over a limit).
    pub const BAD_REQUEST: u16 = 3;
    /// The request waited longer than queue-timeout for a worker; it was not processed.
    pub const OVERLOADED: u16 = 4;
    /// The daemon is draining or restarting (shutdown, script reload); nothing was processed,
    /// so the client may reconnect and resend the request.
    pub const SHUTTING_DOWN: u16 = 5;
    /// The application exceeded request-timeout.
    pub const REQUEST_TIMEOUT: u16 = 6;
    /// The peer violated this protocol.
    pub const PROTOCOL: u16 = 7;
    /// The application failed after the response head was sent (it raised, or its body fell
    /// short of its Content-Length): the body is incomplete, the reason is in the daemon's
    /// log. Ends the request; the connection stays usable.
    pub const APP_FAILED: u16 = 8;

    /// A short name for logs (`"SHUTTING_DOWN"`), or `"UNKNOWN"`.
    pub const fn name(code: u16) -> &'static str {
        match code {
            INTERNAL => "INTERNAL",
            APP_LOAD_FAILED => "APP_LOAD_FAILED",
            BAD_REQUEST => "BAD_REQUEST",
            OVERLOADED => "OVERLOADED",
            SHUTTING_DOWN => "SHUTTING_DOWN",
            REQUEST_TIMEOUT => "REQUEST_TIMEOUT",
            PROTOCOL => "PROTOCOL",
            APP_FAILED => "APP_FAILED",
            _ => "UNKNOWN",
        }
    }
}

/// Owned byte-string pairs (environ variables, response headers), in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The request head (frame kind 1), owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReqHead {
    /// Bits from [`req_flags`].
    pub flags: u32,
    /// When Apache started the request, in microseconds since the Unix epoch.
    pub request_start_us: u64,
    /// When Apache handed the request to the daemon socket, in microseconds since the Unix
    /// epoch (`mod_wsgi.queue_start`).
    pub queue_start_us: u64,
    /// Path of the WSGI script file.
    pub script_path: Vec<u8>,
    /// Application group (sub-interpreter) name; empty = the main interpreter.
    pub app_group: Vec<u8>,
    /// Name of the WSGI callable in the script (usually `application`).
    pub callable: Vec<u8>,
    /// The WSGI environ as byte pairs (no NUL or UTF-8 assumption, duplicates kept in order).
    pub env: Pairs,
}

impl ReqHead {
    /// Whether all bits of `flag` (from [`req_flags`]) are set.
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }

    /// A borrowed view of the scalar and path fields, for [`encode_req_head_into`].
    pub fn fields(&self) -> ReqHeadRef<'_> {
        ReqHeadRef {
            flags: self.flags,
            request_start_us: self.request_start_us,
            queue_start_us: self.queue_start_us,
            script_path: &self.script_path,
            app_group: &self.app_group,
            callable: &self.callable,
        }
    }
}

/// The request head's fields other than the environ, borrowed, for [`encode_req_head_into`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReqHeadRef<'a> {
    /// Bits from [`req_flags`].
    pub flags: u32,
    /// When Apache started the request, in microseconds since the Unix epoch.
    pub request_start_us: u64,
    /// When Apache handed the request to the daemon socket, in µs since the Unix epoch.
    pub queue_start_us: u64,
    /// Path of the WSGI script file.
    pub script_path: &'a [u8],
    /// Application group name.
    pub app_group: &'a [u8],
    /// Name of the WSGI callable.
    pub callable: &'a [u8],
}

/// The response head (frame kind 4), owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RespHead {
    /// HTTP status code (not validated here).
    pub status: u16,
    /// Reason phrase, as the application gave it.
    pub reason: Vec<u8>,
    /// Response headers in order, duplicates kept.
    pub headers: Pairs,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Kind 1: the request head.
    ReqHead(ReqHead),
    /// Kind 2: a chunk of request body; empty = end of body.
    ReqBody(Vec<u8>),
    /// Kind 3: the daemon asks for up to `max` (≥ 1) bytes of request body.
    ReadBody {
        /// The most bytes the answering `ReqBody` may carry.
        max: u32,
    },
    /// Kind 4: the response head.
    RespHead(RespHead),
    /// Kind 5: a chunk of response body.
    RespBody(Vec<u8>),
    /// Kind 6: send `length` bytes from `offset` of the file whose fd came with this frame.
    RespFile {
        /// Start offset in the file.
        offset: u64,
        /// Bytes to send (`offset + length` does not overflow).
        length: u64,
    },
    /// Kind 7: the response is complete.
    RespEnd,
    /// Kind 8: the request failed.
    Error {
        /// A code from [`error_code`].
        code: u16,
        /// A human-readable message for the log.
        message: Vec<u8>,
    },
    /// Kind 9: flush buffered output to the HTTP client.
    Flush,
}

/// A complete frame whose payload is still in the decoder's buffer (see [`Decoder::next_raw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The frame's kind (header already validated).
    pub kind: FrameKind,
    /// The payload, borrowed from the decoder (its length is within the limit for `kind`).
    pub payload: &'a [u8],
}

impl RawFrame<'_> {
    /// Decodes the payload into an owned [`Frame`].
    pub fn decode(&self, limits: &Limits) -> Result<Frame, ProtocolError> {
        Frame::decode(self.kind, self.payload, limits)
    }
}

/// A validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame's kind.
    pub kind: FrameKind,
    /// The payload length, within the limit for `kind`.
    pub len: u32,
}

impl FrameHeader {
    /// Parses and validates a header: known kind, flags and reserved zero, length within
    /// `limits` (and exact for fixed-size kinds).
    pub fn parse(bytes: &[u8; HEADER_LEN], limits: &Limits) -> Result<Self, ProtocolError> {
        let [kind, flags, r0, r1, l0, l1, l2, l3] = *bytes;
        let kind = FrameKind::from_u8(kind).ok_or(ProtocolError::UnknownKind(kind))?;
        let reserved = u16::from_be_bytes([r0, r1]);
        if flags != 0 || reserved != 0 {
            return Err(ProtocolError::ReservedBits {
                kind,
                flags,
                reserved,
            });
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        check_len(kind, len, limits)?;
        Ok(Self { kind, len })
    }
}

fn check_len(kind: FrameKind, len: u32, limits: &Limits) -> Result<(), ProtocolError> {
    if let Some(expected) = kind.fixed_len() {
        if len != expected {
            return Err(ProtocolError::BadLength {
                kind,
                len,
                expected,
            });
        }
        return Ok(());
    }
    let limit = limits.frame_limit(kind);
    if len > limit {
        return Err(ProtocolError::FrameTooLarge { kind, len, limit });
    }
    Ok(())
}

/// The 8-byte header for a frame of `kind` with a payload of `len` bytes, so a caller can write
/// header and a borrowed payload with one vectored write.
pub fn encode_header(kind: FrameKind, len: u32) -> [u8; HEADER_LEN] {
    let [l0, l1, l2, l3] = len.to_be_bytes();
    [kind.as_u8(), 0, 0, 0, l0, l1, l2, l3]
}

fn too_long(kind: FrameKind, field: &'static str, len: usize) -> ProtocolError {
    ProtocolError::TooLongToEncode { kind, field, len }
}

fn put_bytes(
    out: &mut Vec<u8>,
    kind: FrameKind,
    field: &'static str,
    bytes: &[u8],
) -> Result<(), ProtocolError> {
    let len = u32::try_from(bytes.len()).map_err(|_| too_long(kind, field, bytes.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_pairs<I, K, V>(
    out: &mut Vec<u8>,
    kind: FrameKind,
    field: &'static str,
    pairs: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    for (key, value) in pairs {
        count = count
            .checked_add(1)
            .ok_or_else(|| too_long(kind, field, usize::MAX))?;
        put_bytes(out, kind, field, key.as_ref())?;
        put_bytes(out, kind, field, value.as_ref())?;
    }
    if let Some(slot) = out.get_mut(count_at..count_at + 4) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
    Ok(())
}

/// Appends one frame of `kind` whose payload `body` writes; on error `out` is left unchanged.
fn encode_with(
    out: &mut Vec<u8>,
    kind: FrameKind,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let result = body(out).and_then(|()| {
        let len = out.len() - start - HEADER_LEN;
        u32::try_from(len).map_err(|_| too_long(kind, "payload", len))
    });
    match result {
        Ok(len) => {
            if let Some(slot) = out.get_mut(start..start + HEADER_LEN) {
                slot.copy_from_slice(&encode_header(kind, len));
            }
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
}

/// Appends a `ReqHead` frame built from borrowed fields and any iterator of byte pairs (for
/// example `(&[u8], &[u8])` straight from an APR table), without owning copies.
///
/// Fails only if a length does not fit in 32 bits; `out` is then left unchanged.
pub fn encode_req_head_into<I, K, V>(
    out: &mut Vec<u8>,
    head: &ReqHeadRef<'_>,
    env: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let kind = FrameKind::ReqHead;
    encode_with(out, kind, |out| {
        out.extend_from_slice(&head.flags.to_be_bytes());
        out.extend_from_slice(&head.request_start_us.to_be_bytes());
        out.extend_from_slice(&head.queue_start_us.to_be_bytes());
        put_bytes(out, kind, "script_path", head.script_path)?;
        put_bytes(out, kind, "app_group", head.app_group)?;
        put_bytes(out, kind, "callable", head.callable)?;
        put_pairs(out, kind, "env", env)
    })
}

/// Appends a `RespHead` frame built from borrowed fields and any iterator of header pairs.
///
/// Fails only if a length does not fit in 32 bits; `out` is then left unchanged.
pub fn encode_resp_head_into<I, K, V>(
    out: &mut Vec<u8>,
    status: u16,
    reason: &[u8],
    headers: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let kind = FrameKind::RespHead;
    encode_with(out, kind, |out| {
        out.extend_from_slice(&status.to_be_bytes());
        put_bytes(out, kind, "reason", reason)?;
        put_pairs(out, kind, "headers", headers)
    })
}

impl Frame {
    /// This frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::ReqHead(_) => FrameKind::ReqHead,
            Self::ReqBody(_) => FrameKind::ReqBody,
            Self::ReadBody { .. } => FrameKind::ReadBody,
            Self::RespHead(_) => FrameKind::RespHead,
            Self::RespBody(_) => FrameKind::RespBody,
            Self::RespFile { .. } => FrameKind::RespFile,
            Self::RespEnd => FrameKind::RespEnd,
            Self::Error { .. } => FrameKind::Error,
            Self::Flush => FrameKind::Flush,
        }
    }

    /// Appends the frame (header and payload) to `out`.
    ///
    /// Fails only if a length does not fit in 32 bits; `out` is then left unchanged. Limits are
    /// the receiver's business: a frame over the peer's [`Limits`] is rejected by its decoder.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let kind = self.kind();
        match self {
            Self::ReqHead(head) => {
                encode_req_head_into(out, &head.fields(), head.env.iter().map(|(k, v)| (k, v)))
            }
            Self::RespHead(head) => encode_resp_head_into(
                out,
                head.status,
                &head.reason,
                head.headers.iter().map(|(k, v)| (k, v)),
            ),
            Self::ReqBody(body) | Self::RespBody(body) => encode_with(out, kind, |out| {
                out.extend_from_slice(body);
                Ok(())
            }),
            Self::ReadBody { max } => encode_with(out, kind, |out| {
                out.extend_from_slice(&max.to_be_bytes());
                Ok(())
            }),
            Self::RespFile { offset, length } => encode_with(out, kind, |out| {
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&length.to_be_bytes());
                Ok(())
            }),
            Self::RespEnd | Self::Flush => encode_with(out, kind, |_| Ok(())),
            Self::Error { code, message } => encode_with(out, kind, |out| {
                out.extend_from_slice(&code.to_be_bytes());
                put_bytes(out, kind, "message", message)
            }),
        }
    }

    /// Decodes a payload of `kind`, checking its length against `limits` first.
    pub fn decode(kind: FrameKind, payload: &[u8], limits: &Limits) -> Result<Self, ProtocolError> {
        let len = u32::try_from(payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
            kind,
            len: u32::MAX,
            limit: limits.frame_limit(kind),
        })?;
        check_len(kind, len, limits)?;
        let mut r = Reader {
            kind,
            rest: payload,
        };
        let frame = match kind {
            FrameKind::ReqHead => {
                let flags = r.u32("flags")?;
                if flags & !req_flags::ALL != 0 {
                    return Err(ProtocolError::UnknownFlags {
                        kind,
                        flags,
                        known: req_flags::ALL,
                    });
                }
                Self::ReqHead(ReqHead {
                    flags,
                    request_start_us: r.u64("request_start_us")?,
                    queue_start_us: r.u64("queue_start_us")?,
                    script_path: r.bytes("script_path")?,
                    app_group: r.bytes("app_group")?,
                    callable: r.bytes("callable")?,
                    env: r.pairs("env", limits.max_pairs)?,
                })
            }
            FrameKind::ReqBody => Self::ReqBody(r.rest_bytes()),
            FrameKind::ReadBody => {
                let max = r.u32("max")?;
                if max == 0 {
                    return Err(ProtocolError::InvalidValue {
                        kind,
                        field: "max",
                        value: 0,
                        reason: "must be at least 1 (an empty ReqBody means end of body)",
                    });
                }
                Self::ReadBody { max }
            }
            FrameKind::RespHead => Self::RespHead(RespHead {
                status: r.u16("status")?,
                reason: r.bytes("reason")?,
                headers: r.pairs("headers", limits.max_headers)?,
            }),
            FrameKind::RespBody => Self::RespBody(r.rest_bytes()),
            FrameKind::RespFile => {
                let offset = r.u64("offset")?;
                let length = r.u64("length")?;
                if offset.checked_add(length).is_none() {
                    return Err(ProtocolError::InvalidValue {
                        kind,
                        field: "length",
                        value: length,
                        reason: "offset + length overflows 64 bits",
                    });
                }
                Self::RespFile { offset, length }
            }
            FrameKind::RespEnd => Self::RespEnd,
            FrameKind::Error => Self::Error {
                code: r.u16("code")?,
                message: r.bytes("message")?,
            },
            FrameKind::Flush => Self::Flush,
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Reads fields from a payload, checking every length against what is left before allocating.
struct Reader<'a> {
    kind: FrameKind,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: &'static str, needed: u64) -> ProtocolError {
        ProtocolError::Truncated {
            kind: self.kind,
            field,
            needed,
            remaining: self.rest.len(),
        }
    }

    fn take(&mut self, field: &'static str, n: u32) -> Result<&'a [u8], ProtocolError> {
        let split = usize::try_from(n)
            .ok()
            .and_then(|n| self.rest.split_at_checked(n));
        let (head, tail) = split.ok_or_else(|| self.truncated(field, u64::from(n)))?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.truncated(field, N as u64))?;
        self.rest = tail;
        Ok(*head)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, ProtocolError> {
        let len = self.u32(field)?;
        self.take(field, len).map(<[u8]>::to_vec)
    }

    fn rest_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rest).to_vec()
    }

    fn pairs(&mut self, field: &'static str, limit: u32) -> Result<Pairs, ProtocolError> {
        let count = self.u32(field)?;
        if count > limit {
            return Err(ProtocolError::TooManyPairs {
                kind: self.kind,
                field,
                count,
                limit,
            });
        }
        // Every pair takes at least its two 4-byte lengths: refuse a count the payload cannot
        // hold before reserving room for it.
        let min_len = u64::from(count) * 8;
        if min_len > self.rest.len() as u64 {
            return Err(self.truncated(field, min_len));
        }
        let mut pairs = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let key = self.bytes(field)?;
            let value = self.bytes(field)?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                kind: self.kind,
                count: self.rest.len(),
            })
        }
    }
}

/// The least room [`Decoder::read_space`] offers: a whole small response (head, body, end)
/// fits in one read.
pub const READ_MIN: usize = 8 * 1024;
/// The most room [`Decoder::read_space`] offers beyond the bytes received.
pub const READ_AHEAD_MAX: usize = 256 * 1024;

/// An incremental frame decoder: feed it bytes as they arrive, take frames out. No I/O inside.
///
/// Each header is validated (kind, reserved bits, length against [`Limits`]) as soon as its 8
/// bytes are in, before any payload is waited for. Readers fill it in place
/// ([`Decoder::read_space`], [`Decoder::commit`]), so received bytes are not copied on their
/// way in; the room it offers grows with the frame being received but never runs more than
/// [`READ_AHEAD_MAX`] ahead of the bytes actually received, so an announced length alone
/// allocates nothing.
///
/// Any error is final: the decoder returns the same error from then on and ignores further
/// input, because a stream that broke the protocol cannot be trusted to resynchronise.
#[derive(Default)]
pub struct Decoder {
    /// Received bytes are `buf[..end]`; the rest is initialised room for the next read, kept
    /// between reads so it is zero-filled only when the buffer grows.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the received bytes in `buf`.
    end: usize,
    limits: Limits,
    failed: Option<ProtocolError>,
}

impl fmt::Debug for Decoder {
    /// Sizes only: the buffer may hold a megabyte of someone's request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffered())
            .field("limits", &self.limits)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            limits,
            failed: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends received bytes. Consumed bytes are dropped lazily: the buffer is compacted only
    /// when the consumed part is at least as large as the rest, so feeding many frames costs
    /// amortised O(1) per byte.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let room = self.make_room(data.len());
        room[..data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Room to read the next bytes into, in place; report how many arrived with
    /// [`commit`](Self::commit). At least [`READ_MIN`] bytes, and as much as the frame being
    /// received still lacks (up to [`READ_AHEAD_MAX`]), so a large body frame takes few reads.
    pub fn read_space(&mut self) -> &mut [u8] {
        let missing = match self.header() {
            Ok(Some((_, total))) => total.saturating_sub(self.buffered()),
            _ => 0,
        };
        self.make_room(missing.clamp(READ_MIN, READ_AHEAD_MAX))
    }

    /// Takes `n` bytes just read into [`read_space`](Self::read_space) as received.
    pub fn commit(&mut self, n: usize) {
        if self.failed.is_some() {
            return;
        }
        self.end = (self.end + n).min(self.buf.len());
    }

    /// At least `want` bytes of room after the received ones. Consumed bytes are dropped
    /// lazily: the unconsumed tail moves to the front only when nothing is pending, when the
    /// consumed part is at least as large as the rest (amortised O(1) per byte), or when that
    /// makes the room needed.
    fn make_room(&mut self, want: usize) -> &mut [u8] {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > 0
            && (self.pos >= self.end - self.pos || self.buf.len() - self.end < want)
        {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// The next complete frame; `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let Some((kind, start, end)) = self.poll()? else {
            return Ok(None);
        };
        let payload = self.buf.get(start..end).unwrap_or_default();
        match Frame::decode(kind, payload, &self.limits) {
            Ok(frame) => Ok(Some(frame)),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// The next complete frame with its payload borrowed from the buffer, so body chunks can be
    /// handed on without a copy; `Ok(None)` if more bytes are needed. The header is validated;
    /// the payload is not (use [`RawFrame::decode`] for kinds other than the body kinds).
    pub fn next_raw(&mut self) -> Result<Option<RawFrame<'_>>, ProtocolError> {
        let Some((kind, start, end)) = self.poll()? else {
            return Ok(None);
        };
        let payload = self.buf.get(start..end).unwrap_or_default();
        Ok(Some(RawFrame { kind, payload }))
    }

    /// Whether a complete frame is buffered (validating the header like `next_frame` does).
    pub fn has_frame(&mut self) -> Result<bool, ProtocolError> {
        Ok(self
            .header()?
            .is_some_and(|(_, total)| self.buffered() >= total))
    }

    /// Unconsumed bytes in the buffer.
    pub fn buffered(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Whether no unconsumed bytes are buffered (the stream is at a frame boundary).
    pub fn is_empty(&self) -> bool {
        self.buffered() == 0
    }

    /// Gives a grown buffer back when nothing is pending, so an idle connection that once
    /// carried a large frame does not keep its memory.
    pub fn release_memory(&mut self, keep_capacity: usize) {
        if self.is_empty() && self.buf.capacity() > keep_capacity {
            self.buf = Vec::new();
            self.pos = 0;
            self.end = 0;
        }
    }

    /// The unconsumed bytes (the start of a frame not yet complete).
    pub fn unconsumed(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// The error this decoder failed with, if any.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.failed.as_ref()
    }

    fn fail(&mut self, err: ProtocolError) -> ProtocolError {
        self.failed = Some(err.clone());
        self.buf = Vec::new();
        self.pos = 0;
        self.end = 0;
        err
    }

    /// The validated header of the next frame and the frame's total length, if 8 bytes are in.
    fn header(&mut self) -> Result<Option<(FrameKind, usize)>, ProtocolError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(bytes) = self.unconsumed().first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        match FrameHeader::parse(bytes, &self.limits) {
            Ok(header) => {
                let len = usize::try_from(header.len).unwrap_or(usize::MAX);
                Ok(Some((header.kind, len.saturating_add(HEADER_LEN))))
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Consumes the next frame if complete: its kind and payload range in `buf`.
    fn poll(&mut self) -> Result<Option<(FrameKind, usize, usize)>, ProtocolError> {
        let Some((kind, total)) = self.header()? else {
            return Ok(None);
        };
        if self.buffered() < total {
            return Ok(None);
        }
        let start = self.pos + HEADER_LEN;
        let end = self.pos + total;
        self.pos = end;
        Ok(Some((kind, start, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fuzz_harness;

    /// Bytes a header, field or payload may contain: NUL, 0xFF, CR/LF, high bytes.
    const BINARY: &[u8] = b"\x00\xff\r\n\x80key\x00=\xfe";

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).expect("encodable");
        out
    }

    fn decode_all(bytes: &[u8], limits: Limits) -> Result<Vec<Frame>, ProtocolError> {
        let mut dec = Decoder::new(limits);
        dec.feed(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = dec.next_frame()? {
            frames.push(frame);
        }
        assert!(dec.is_empty(), "{} bytes left over", dec.buffered());
        Ok(frames)
    }

    fn decode_one(bytes: &[u8]) -> Result<Frame, ProtocolError> {
        let mut dec = Decoder::new(Limits::default());
        dec.feed(bytes);
        match dec.next_frame()? {
            Some(frame) => Ok(frame),
            None => panic!("incomplete frame ({} bytes)", bytes.len()),
        }
    }

    fn sample_req_head() -> ReqHead {
        ReqHead {
            flags: req_flags::BODY_FOLLOWS | req_flags::CHUNKED_INPUT,
            request_start_us: 1_700_000_000_123_456,
            queue_start_us: 1_700_000_000_123_789,
            script_path: b"/srv/app/wsgi.py".to_vec(),
            app_group: b"%{GLOBAL}".to_vec(),
            callable: b"application".to_vec(),
            env: vec![
                (b"REQUEST_METHOD".to_vec(), b"POST".to_vec()),
                (b"HTTP_X_BIN".to_vec(), BINARY.to_vec()),
                (BINARY.to_vec(), Vec::new()),
                (Vec::new(), Vec::new()),
                (b"HTTP_X_BIN".to_vec(), b"duplicate kept".to_vec()),
            ],
        }
    }

    /// One or more frames of every kind, with empty, binary and large fields.
    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::ReqHead(sample_req_head()),
            Frame::ReqHead(ReqHead::default()),
            Frame::ReqHead(ReqHead {
                flags: req_flags::ALL,
                request_start_us: u64::MAX,
                queue_start_us: u64::MAX,
                ..ReqHead::default()
            }),
            Frame::ReqBody(BINARY.to_vec()),
            Frame::ReqBody(Vec::new()),
            Frame::ReadBody { max: 1 },
            Frame::ReadBody { max: u32::MAX },
            Frame::RespHead(RespHead {
                status: 200,
                reason: b"OK".to_vec(),
                headers: vec![
                    (b"Content-Type".to_vec(), b"text/plain".to_vec()),
                    (b"Set-Cookie".to_vec(), b"a=1".to_vec()),
                    (b"Set-Cookie".to_vec(), BINARY.to_vec()),
                ],
            }),
            Frame::RespHead(RespHead {
                status: u16::MAX,
                ..RespHead::default()
            }),
            Frame::RespBody(BINARY.repeat(1000)),
            Frame::RespBody(Vec::new()),
            Frame::RespFile {
                offset: 0,
                length: 0,
            },
            Frame::RespFile {
                offset: 1 << 40,
                length: u64::MAX - (1 << 40),
            },
            Frame::RespEnd,
            Frame::Error {
                code: error_code::SHUTTING_DOWN,
                message: b"draining".to_vec(),
            },
            Frame::Error {
                code: u16::MAX,
                message: BINARY.to_vec(),
            },
            Frame::Flush,
        ]
    }

    #[test]
    fn release_memory_drops_a_grown_buffer_only_when_nothing_is_pending() {
        let mut big = Vec::new();
        Frame::RespBody(vec![7; 300_000]).encode(&mut big).unwrap();
        let mut dec = Decoder::new(Limits::default());
        dec.feed(&big[..1000]);
        dec.release_memory(1024);
        assert_eq!(dec.buffered(), 1000, "pending bytes must survive");
        dec.feed(&big[1000..]);
        assert_eq!(
            dec.next_frame().unwrap(),
            Some(Frame::RespBody(vec![7; 300_000]))
        );
        assert!(dec.buf.capacity() >= 300_000);
        dec.release_memory(1024);
        assert_eq!(dec.buf.capacity(), 0);
        // Still a working decoder.
        let mut small = Vec::new();
        Frame::Flush.encode(&mut small).unwrap();
        dec.feed(&small);
        assert_eq!(dec.next_frame().unwrap(), Some(Frame::Flush));
    }

    /// Copies `bytes` into the decoder through `read_space`/`commit`, at most `step` per read.
    fn read_in_place(dec: &mut Decoder, bytes: &[u8], step: usize) {
        for mut chunk in bytes.chunks(step) {
            while !chunk.is_empty() {
                let space = dec.read_space();
                assert!(space.len() >= READ_MIN);
                let n = chunk.len().min(space.len());
                space[..n].copy_from_slice(&chunk[..n]);
                dec.commit(n);
                chunk = &chunk[n..];
            }
        }
    }

    #[test]
    fn in_place_reads_decode_like_feeding() {
        let mut bytes = Vec::new();
        for frame in sample_frames() {
            frame.encode(&mut bytes).unwrap();
        }
        for step in [1, 3, 8, 100, 5000, 70_000] {
            let mut dec = Decoder::new(Limits::default());
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                read_in_place(&mut dec, chunk, step);
                while let Some(frame) = dec.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, sample_frames(), "step {step}");
            assert!(dec.is_empty());
        }
    }

    #[test]
    fn read_space_grows_with_the_frame_but_never_far_beyond_what_arrived() {
        let mut big = Vec::new();
        Frame::RespBody(vec![9; 1_000_000])
            .encode(&mut big)
            .unwrap();
        let mut dec = Decoder::new(Limits::default());
        // Only the header is in: the room offered is capped, whatever length it announces.
        read_in_place(&mut dec, &big[..HEADER_LEN], HEADER_LEN);
        assert_eq!(dec.read_space().len(), READ_AHEAD_MAX);
        let mut fed = HEADER_LEN;
        while fed < big.len() {
            let space = dec.read_space();
            assert!(space.len() <= READ_AHEAD_MAX.max(big.len() - fed));
            let n = space.len().min(big.len() - fed);
            space[..n].copy_from_slice(&big[fed..fed + n]);
            dec.commit(n);
            fed += n;
            assert!(dec.buf.len() <= fed + READ_AHEAD_MAX);
        }
        assert_eq!(
            dec.next_frame().unwrap(),
            Some(Frame::RespBody(vec![9; 1_000_000]))
        );
        // A small frame then needs only the least room, in the buffer already there.
        assert_eq!(dec.read_space().len(), dec.buf.len());
        dec.release_memory(0);
        assert_eq!(dec.buf.capacity(), 0);
        assert_eq!(dec.read_space().len(), READ_MIN);
    }

    #[test]
    fn commit_never_takes_more_than_the_room_or_anything_after_an_error() {
        let mut dec = Decoder::new(Limits::default());
        let room = dec.read_space().len();
        dec.commit(room + 1000);
        assert_eq!(dec.buffered(), room);
        let mut bad = Decoder::new(Limits::default());
        bad.feed(&[0x42, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bad.has_frame().is_err());
        let _ = bad.read_space();
        bad.commit(8);
        assert_eq!(bad.buffered(), 0);
        assert!(bad.next_frame().is_err());
    }

    #[test]
    fn kinds_are_stable_and_named() {
        let numbers: Vec<u8> = FrameKind::ALL.iter().map(|k| k.as_u8()).collect();
        assert_eq!(numbers, (1..=9).collect::<Vec<u8>>());
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_u8(kind.as_u8()), Some(kind));
            assert_eq!(kind.to_string(), format!("{kind:?}"));
        }
        assert_eq!(FrameKind::from_u8(0), None);
        assert_eq!(FrameKind::from_u8(10), None);
        assert_eq!(error_code::name(error_code::SHUTTING_DOWN), "SHUTTING_DOWN");
        assert_eq!(error_code::name(999), "UNKNOWN");
    }

    #[test]
    fn every_kind_round_trips() {
        let frames = sample_frames();
        let mut kinds: Vec<FrameKind> = frames.iter().map(Frame::kind).collect();
        kinds.dedup();
        assert_eq!(
            kinds,
            FrameKind::ALL,
            "samples must cover every kind in order"
        );
        for frame in &frames {
            let bytes = encoded(frame);
            assert_eq!(decode_one(&bytes).as_ref(), Ok(frame), "{frame:?}");
        }
    }

    #[test]
    fn exact_byte_layout_is_big_endian() {
        let head = ReqHead {
            flags: 0x0102_0304 & req_flags::ALL,
            request_start_us: 0x1122_3344_5566_7788,
            queue_start_us: 0x99AA_BBCC_DDEE_FF00,
            script_path: b"s".to_vec(),
            app_group: b"".to_vec(),
            callable: b"ap".to_vec(),
            env: vec![(b"K".to_vec(), b"\x00V".to_vec())],
        };
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0, 0, 0, 4]); // flags
        expected.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        expected.extend_from_slice(&[0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00]);
        expected.extend_from_slice(&[0, 0, 0, 1, b's']);
        expected.extend_from_slice(&[0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'p']);
        expected.extend_from_slice(&[0, 0, 0, 1]); // pair count
        expected.extend_from_slice(&[0, 0, 0, 1, b'K', 0, 0, 0, 2, 0, b'V']);
        let len = (expected.len() - HEADER_LEN) as u8;
        expected[7] = len;
        assert_eq!(encoded(&Frame::ReqHead(head)), expected);

        assert_eq!(
            encoded(&Frame::ReadBody { max: 0x0A0B_0C0D }),
            [3, 0, 0, 0, 0, 0, 0, 4, 10, 11, 12, 13]
        );
        assert_eq!(encoded(&Frame::RespEnd), [7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            encoded(&Frame::Error {
                code: 0x0102,
                message: b"x".to_vec()
            }),
            [8, 0, 0, 0, 0, 0, 0, 7, 1, 2, 0, 0, 0, 1, b'x']
        );
        assert_eq!(
            encode_header(FrameKind::RespBody, 0x0102_0304),
            [5, 0, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn borrowed_encoders_match_owned_encoding() {
        let head = sample_req_head();
        let borrowed: Vec<(&[u8], &[u8])> = head
            .env
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let mut out = b"prefix".to_vec();
        encode_req_head_into(&mut out, &head.fields(), borrowed.iter().copied()).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], encoded(&Frame::ReqHead(head.clone())));

        let resp = RespHead {
            status: 404,
            reason: b"Not Found".to_vec(),
            headers: vec![(b"A".to_vec(), b"1".to_vec())],
        };
        let mut out = Vec::new();
        encode_resp_head_into(&mut out, 404, b"Not Found", [("A", "1")]).unwrap();
        assert_eq!(out, encoded(&Frame::RespHead(resp)));
    }

    #[test]
    fn max_size_fields_round_trip() {
        let limits = Limits::default();
        // A body chunk exactly at the limit.
        let chunk = vec![0xFF; limits.max_body_chunk as usize];
        let frame = Frame::RespBody(chunk);
        assert_eq!(decode_one(&encoded(&frame)), Ok(frame));
        // A request head exactly at the limit, and one byte over it.
        let fixed = 4 + 8 + 8 + 4 + 4 + 4 + 4;
        let path_len = limits.max_head as usize - fixed;
        let head = ReqHead {
            script_path: vec![0; path_len],
            ..ReqHead::default()
        };
        let bytes = encoded(&Frame::ReqHead(head.clone()));
        assert_eq!(bytes.len(), HEADER_LEN + limits.max_head as usize);
        assert_eq!(decode_one(&bytes), Ok(Frame::ReqHead(head)));
        let over = ReqHead {
            script_path: vec![0; path_len + 1],
            ..ReqHead::default()
        };
        assert_eq!(
            decode_one(&encoded(&Frame::ReqHead(over))),
            Err(ProtocolError::FrameTooLarge {
                kind: FrameKind::ReqHead,
                len: limits.max_head + 1,
                limit: limits.max_head
            })
        );
        // Exactly max_pairs pairs, then one more.
        let env = vec![(Vec::new(), Vec::new()); limits.max_pairs as usize];
        let head = ReqHead {
            env,
            ..ReqHead::default()
        };
        assert_eq!(
            decode_one(&encoded(&Frame::ReqHead(head.clone()))),
            Ok(Frame::ReqHead(head))
        );
        let env = vec![(Vec::new(), Vec::new()); limits.max_pairs as usize + 1];
        let err = decode_one(&encoded(&Frame::ReqHead(ReqHead {
            env,
            ..ReqHead::default()
        })));
        assert!(
            matches!(err, Err(ProtocolError::TooManyPairs { count: 10_001, .. })),
            "{err:?}"
        );
        // Exactly max_headers headers, then one more.
        let headers = vec![(b"h".to_vec(), b"v".to_vec()); limits.max_headers as usize];
        let resp = RespHead {
            status: 200,
            reason: Vec::new(),
            headers,
        };
        assert_eq!(
            decode_one(&encoded(&Frame::RespHead(resp.clone()))),
            Ok(Frame::RespHead(resp))
        );
        let headers = vec![(b"h".to_vec(), b"v".to_vec()); limits.max_headers as usize + 1];
        let err = decode_one(&encoded(&Frame::RespHead(RespHead {
            headers,
            ..RespHead::default()
        })));
        assert!(
            matches!(err, Err(ProtocolError::TooManyPairs { count: 1001, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn many_frames_in_one_buffer() {
        let frames = sample_frames();
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode(&mut bytes).unwrap();
        }
        assert_eq!(decode_all(&bytes, Limits::default()), Ok(frames));
    }

    #[test]
    fn frames_fed_one_byte_at_a_time() {
        let frames = sample_frames();
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode(&mut bytes).unwrap();
        }
        let mut dec = Decoder::new(Limits::default());
        let mut got = Vec::new();
        for byte in &bytes {
            dec.feed(std::slice::from_ref(byte));
            while let Some(frame) = dec.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, frames);
        assert!(dec.is_empty());
    }

    #[test]
    fn truncated_at_every_offset_is_incomplete_never_an_error() {
        for frame in sample_frames() {
            let bytes = encoded(&frame);
            for cut in 0..bytes.len() {
                let mut dec = Decoder::new(Limits::default());
                dec.feed(&bytes[..cut]);
                assert_eq!(dec.next_frame(), Ok(None), "{frame:?} cut at {cut}");
                assert_eq!(dec.has_frame(), Ok(false));
                assert_eq!(dec.buffered(), cut);
                assert_eq!(dec.unconsumed(), &bytes[..cut]);
                // The rest arrives: the frame completes.
                dec.feed(&bytes[cut..]);
                assert_eq!(dec.has_frame(), Ok(true));
                assert_eq!(dec.next_frame(), Ok(Some(frame.clone())));
                assert!(dec.is_empty());
            }
        }
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let limits = Limits {
            max_head: 100,
            max_body_chunk: 50,
            ..Limits::default()
        };
        let cases = [
            (FrameKind::ReqHead, 101, 100),
            (FrameKind::RespHead, 101, 100),
            (FrameKind::Error, 101, 100),
            (FrameKind::ReqBody, 51, 50),
            (FrameKind::RespBody, u32::MAX, 50),
        ];
        for (kind, len, limit) in cases {
            let mut dec = Decoder::new(limits);
            dec.feed(&encode_header(kind, len)); // no payload at all
            let expected = ProtocolError::FrameTooLarge { kind, len, limit };
            assert_eq!(dec.next_frame(), Err(expected.clone()));
            // Sticky: more input does not revive the stream, and nothing more is buffered.
            dec.feed(&[0; 64]);
            assert_eq!(dec.next_frame(), Err(expected.clone()));
            assert_eq!(dec.error(), Some(&expected));
            assert_eq!(dec.buffered(), 0);
        }
        // A length one under the limit only waits for its payload.
        let mut dec = Decoder::new(limits);
        dec.feed(&encode_header(FrameKind::RespBody, 50));
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn fixed_size_kinds_reject_any_other_length() {
        for (kind, good) in [
            (FrameKind::ReadBody, 4u32),
            (FrameKind::RespFile, 16),
            (FrameKind::RespEnd, 0),
            (FrameKind::Flush, 0),
        ] {
            for len in [good + 1, good.saturating_sub(1), u32::MAX] {
                if len == good {
                    continue;
                }
                let mut dec = Decoder::new(Limits::default());
                dec.feed(&encode_header(kind, len));
                assert_eq!(
                    dec.next_frame(),
                    Err(ProtocolError::BadLength {
                        kind,
                        len,
                        expected: good
                    })
                );
            }
        }
    }

    #[test]
    fn huge_counts_fail_fast_without_allocating() {
        // A pair count of ~4 billion in a 20-byte-ish payload, under a limit that allows it:
        // refused because the payload cannot hold it, before any Vec is reserved.
        let lax = Limits {
            max_pairs: u32::MAX,
            max_headers: u32::MAX,
            ..Limits::default()
        };
        let mut payload = Vec::new();
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&0u64.to_be_bytes());
        payload.extend_from_slice(&0u64.to_be_bytes());
        payload.extend_from_slice(&[0; 12]); // three empty byte fields
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        payload.extend_from_slice(&[0; 8]);
        assert_eq!(
            Frame::decode(FrameKind::ReqHead, &payload, &lax),
            Err(ProtocolError::Truncated {
                kind: FrameKind::ReqHead,
                field: "env",
                needed: u64::from(u32::MAX) * 8,
                remaining: 8
            })
        );
        // Under the default limits the count itself is refused.
        assert_eq!(
            Frame::decode(FrameKind::ReqHead, &payload, &Limits::default()),
            Err(ProtocolError::TooManyPairs {
                kind: FrameKind::ReqHead,
                field: "env",
                count: u32::MAX,
                limit: 10_000
            })
        );
        let mut payload = vec![0, 200, 0, 0, 0, 0];
        payload.extend_from_slice(&4_000_000_000u32.to_be_bytes());
        assert!(matches!(
            Frame::decode(FrameKind::RespHead, &payload, &lax),
            Err(ProtocolError::Truncated {
                field: "headers",
                remaining: 0,
                ..
            })
        ));
        assert!(matches!(
            Frame::decode(FrameKind::RespHead, &payload, &Limits::default()),
            Err(ProtocolError::TooManyPairs {
                field: "headers",
                limit: 1000,
                ..
            })
        ));
        // A field length far beyond the payload.
        let mut payload = 1u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Frame::decode(FrameKind::Error, &payload, &lax),
            Err(ProtocolError::Truncated {
                kind: FrameKind::Error,
                field: "message",
                needed: u64::from(u32::MAX),
                remaining: 0
            })
        );
    }

    #[test]
    fn unknown_kind_is_rejected() {
        for kind in [0u8, 10, 0x7F, 0xFF] {
            let mut dec = Decoder::new(Limits::default());
            dec.feed(&[kind, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(dec.next_frame(), Err(ProtocolError::UnknownKind(kind)));
        }
    }

    #[test]
    fn reserved_bits_are_rejected() {
        for (flags, reserved) in [(1u8, 0u16), (0x80, 0), (0, 1), (0, 0x8000)] {
            let [r0, r1] = reserved.to_be_bytes();
            let mut dec = Decoder::new(Limits::default());
            dec.feed(&[7, flags, r0, r1, 0, 0, 0, 0]);
            assert_eq!(
                dec.next_frame(),
                Err(ProtocolError::ReservedBits {
                    kind: FrameKind::RespEnd,
                    flags,
                    reserved
                })
            );
        }
    }

    #[test]
    fn trailing_bytes_inside_a_payload_are_rejected() {
        for frame in [
            Frame::ReqHead(sample_req_head()),
            Frame::RespHead(RespHead::default()),
            Frame::Error {
                code: 1,
                message: b"m".to_vec(),
            },
        ] {
            let mut bytes = encoded(&frame);
            bytes.extend_from_slice(b"\x00junk");
            let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) + 5;
            bytes[4..8].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                decode_one(&bytes),
                Err(ProtocolError::TrailingBytes {
                    kind: frame.kind(),
                    count: 5
                })
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(matches!(
            decode_one(&[3, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
            Err(ProtocolError::InvalidValue {
                field: "max",
                value: 0,
                ..
            })
        ));
        let mut bytes = encode_header(FrameKind::RespFile, 16).to_vec();
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::InvalidValue {
                field: "length",
                ..
            })
        ));
        let mut bytes = encoded(&Frame::ReqHead(ReqHead::default()));
        bytes[HEADER_LEN + 3] = 16; // an undefined flag bit
        assert_eq!(
            decode_one(&bytes),
            Err(ProtocolError::UnknownFlags {
                kind: FrameKind::ReqHead,
                flags: 16,
                known: 15
            })
        );
    }

    #[test]
    fn truncated_fields_are_reported() {
        // A declared frame length that cuts a field short.
        let mut bytes = encoded(&Frame::RespHead(RespHead {
            status: 200,
            reason: b"OK".to_vec(),
            headers: Vec::new(),
        }));
        bytes.truncate(bytes.len() - 4); // drop the header count
        bytes[7] -= 4;
        assert_eq!(
            decode_one(&bytes),
            Err(ProtocolError::Truncated {
                kind: FrameKind::RespHead,
                field: "headers",
                needed: 4,
                remaining: 0
            })
        );
    }

    #[test]
    fn payload_errors_are_sticky_too() {
        let mut dec = Decoder::new(Limits::default());
        dec.feed(&[8, 0, 0, 0, 0, 0, 0, 1, 0]); // Error frame with a 1-byte payload
        dec.feed(&encoded(&Frame::RespEnd));
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Truncated { field: "code", .. }
        ));
        assert_eq!(dec.next_frame(), Err(err));
    }

    #[test]
    fn raw_frames_borrow_the_payload() {
        let mut dec = Decoder::new(Limits::default());
        let mut bytes = encoded(&Frame::RespBody(b"hello".to_vec()));
        Frame::RespHead(RespHead::default())
            .encode(&mut bytes)
            .unwrap();
        dec.feed(&bytes);
        let raw = dec.next_raw().unwrap().unwrap();
        assert_eq!(
            raw,
            RawFrame {
                kind: FrameKind::RespBody,
                payload: b"hello"
            }
        );
        let raw = dec.next_raw().unwrap().unwrap();
        assert_eq!(
            raw.decode(&Limits::default()),
            Ok(Frame::RespHead(RespHead::default()))
        );
        assert_eq!(dec.next_raw(), Ok(None));
    }

    #[test]
    fn buffer_is_compacted_not_recopied() {
        // 10 000 frames fed in a stream of small reads: the buffer stays small.
        let mut dec = Decoder::new(Limits::default());
        let frame = encoded(&Frame::RespBody(vec![7; 100]));
        let mut max_cap = 0;
        for _ in 0..10_000 {
            for piece in frame.chunks(33) {
                dec.feed(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    assert_eq!(f.kind(), FrameKind::RespBody);
                }
                max_cap = max_cap.max(dec.buf.capacity());
            }
        }
        assert!(dec.is_empty());
        assert!(max_cap < 4 * frame.len(), "buffer grew to {max_cap}");
    }

    #[test]
    fn encode_rejects_nothing_representable() {
        // Encoding fails only past 4 GiB, which a test cannot allocate; check the arithmetic
        // path instead: a successful encode leaves a correct length, a prefix is preserved.
        let mut out = vec![9; 3];
        Frame::Flush.encode(&mut out).unwrap();
        assert_eq!(out, [9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn corpus_replay() {
        // The fuzz seeds, run through the same checks as the fuzz target. They are part of the
        // source tree: missing seeds fail the test rather than pass it with nothing checked.
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/decoder"));
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("the fuzz seeds in {} are missing: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            fuzz_harness::check(&data);
            count += 1;
        }
        assert!(count >= 12, "only {count} seeds in {}", dir.display());
    }

    #[test]
    fn fuzz_harness_on_samples() {
        // The harness's own assertions over every sample, under every limits preset.
        for frame in sample_frames() {
            let bytes = encoded(&frame);
            for config in 0..=255u8 {
                let mut data = vec![config];
                data.extend_from_slice(&bytes);
                fuzz_harness::check(&data);
            }
        }
    }
}
