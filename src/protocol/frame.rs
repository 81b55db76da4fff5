//! Frames: the [`Frame`] type, its kinds, request flags and error codes, and their encoding.
//! Decoding them is [`super::decoder`]'s.
//!
//! The byte layout is specified in the module documentation of [`crate::protocol`].

use std::fmt;

use super::{HEADER_LEN, PairList, ProtocolError};

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
    /// Control channel, daemon → manager: Python is up, the scripts are imported and the
    /// threads accept.
    Ready = 10,
    /// Control channel, daemon → manager: start my replacement, importing these scripts
    /// first; tell me to drain once it is ready.
    Replace = 11,
    /// Either way, after a WebSocket was accepted (status 101): one whole message.
    WsMsg = 12,
    /// Either way, after a WebSocket was accepted: the closing code and reason.
    WsClose = 13,
}

impl FrameKind {
    /// Every kind, in wire-number order.
    pub const ALL: [FrameKind; 13] = [
        Self::ReqHead,
        Self::ReqBody,
        Self::ReadBody,
        Self::RespHead,
        Self::RespBody,
        Self::RespFile,
        Self::RespEnd,
        Self::Error,
        Self::Flush,
        Self::Ready,
        Self::Replace,
        Self::WsMsg,
        Self::WsClose,
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
            10 => Self::Ready,
            11 => Self::Replace,
            12 => Self::WsMsg,
            13 => Self::WsClose,
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
            Self::Ready => "Ready",
            Self::Replace => "Replace",
            Self::WsMsg => "WsMsg",
            Self::WsClose => "WsClose",
        }
    }

    /// The payload length of kinds whose payload has a fixed size.
    pub const fn fixed_len(self) -> Option<u32> {
        match self {
            Self::ReadBody => Some(4),
            Self::RespFile => Some(16),
            Self::RespEnd | Self::Flush | Self::Ready => Some(0),
            _ => None,
        }
    }

    /// Whether the kind belongs to the control channel between a daemon and its manager
    /// (never valid on a request connection).
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Ready | Self::Replace)
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
    /// `WSGIIgnoreActivity On`: the request does not count as activity for the daemon's
    /// inactivity-timeout (neither its start nor its end moves the idle clock).
    pub const IGNORE_ACTIVITY: u32 = 16;
    /// A resend after a process of the group turned the request away because its script must
    /// be reloaded: only code loaded after `queue_start_us` may run it (a process that loaded
    /// the script before is replaced, as after a touch).
    pub const RELOAD_RESEND: u32 = 32;
    /// The script is an ASGI 3 application (`interface=asgi`): the daemon calls it as one,
    /// with the request's environ turned into an ASGI `http` scope.
    pub const ASGI: u32 = 64;
    /// An HTTP/1.1 `Upgrade: websocket` request to an ASGI script (always with `ASGI`): the
    /// daemon runs it with a `websocket` scope; a `RespHead` with status 101 accepts it and
    /// WebSocket frames follow (see the module documentation).
    pub const WEBSOCKET: u32 = 128;
    /// Every bit this version defines.
    pub const ALL: u32 = BODY_FOLLOWS
        | SCRIPT_RELOADING
        | CHUNKED_INPUT
        | BODY_PUSHED
        | IGNORE_ACTIVITY
        | RELOAD_RESEND
        | ASGI
        | WEBSOCKET;
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

/// The types of [`Frame::WsMsg`] (the WebSocket opcodes of data messages).
pub mod ws_type {
    /// A text message (UTF-8).
    pub const TEXT: u8 = 1;
    /// A binary message.
    pub const BINARY: u8 = 2;
}

/// Owned byte-string pairs (environ variables, response headers), in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The request head (frame kind 1), owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReqHead {
    /// Bits from [`req_flags`].
    pub flags: u32,
    /// Connections the Apache child made (or took from its pool) to reach the daemon group
    /// for this request, this one included (mod_wsgi's `daemon_connects`).
    pub daemon_connects: u32,
    /// Times the request was turned away or lost its connection because a daemon process was
    /// being replaced or had gone, and was sent again (mod_wsgi's `daemon_restarts`).
    pub daemon_restarts: u32,
    /// When Apache started the request, in microseconds since the Unix epoch.
    pub request_start_us: u64,
    /// When Apache handed the request to the daemon socket, in microseconds since the Unix
    /// epoch (`mod_wsgi.queue_start`).
    pub queue_start_us: u64,
    /// The script file's mtime as Apache stat()ed it, µs since the Unix epoch; 0 = unknown.
    pub script_mtime_us: u64,
    /// Path of the WSGI script file.
    pub script_path: Vec<u8>,
    /// Application group (sub-interpreter) name; empty = the main interpreter.
    pub app_group: Vec<u8>,
    /// Name of the WSGI callable in the script (usually `application`).
    pub callable: Vec<u8>,
    /// The WSGI environ as byte pairs (no NUL or UTF-8 assumption, duplicates kept in order).
    pub env: PairList,
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
            daemon_connects: self.daemon_connects,
            daemon_restarts: self.daemon_restarts,
            request_start_us: self.request_start_us,
            queue_start_us: self.queue_start_us,
            script_mtime_us: self.script_mtime_us,
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
    /// See [`ReqHead::daemon_connects`]; [`set_req_head_daemon_attempts`] rewrites it in an
    /// encoded frame.
    pub daemon_connects: u32,
    /// See [`ReqHead::daemon_restarts`].
    pub daemon_restarts: u32,
    /// When Apache started the request, in microseconds since the Unix epoch.
    pub request_start_us: u64,
    /// When Apache handed the request to the daemon socket, in µs since the Unix epoch.
    pub queue_start_us: u64,
    /// The script file's mtime as Apache stat()ed it, µs since the Unix epoch; 0 = unknown.
    pub script_mtime_us: u64,
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
    pub headers: PairList,
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
    /// Kind 10 (control channel): the daemon is ready.
    Ready,
    /// Kind 11 (control channel): the daemon asks for its replacement.
    Replace {
        /// Why, for the manager's log.
        reason: Vec<u8>,
        /// (WSGI script path, application group) of each script to import first.
        scripts: Pairs,
    },
    /// Kind 12: one WebSocket message.
    WsMsg {
        /// [`ws_type::TEXT`] or [`ws_type::BINARY`].
        ty: u8,
        /// The message (UTF-8 for a text message: checked by the WebSocket side that
        /// received it from the client, or encoded from a str by the daemon).
        data: Vec<u8>,
    },
    /// Kind 13: the WebSocket is closing with this code and reason.
    WsClose {
        /// The close code (1000 normal, 1006 the client connection was lost, 1011 server
        /// error, 1012 service restart, ...).
        code: u16,
        /// The close reason (UTF-8, at most 123 bytes on the WebSocket).
        reason: Vec<u8>,
    },
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
        out.extend_from_slice(&head.daemon_connects.to_be_bytes());
        out.extend_from_slice(&head.daemon_restarts.to_be_bytes());
        out.extend_from_slice(&head.request_start_us.to_be_bytes());
        out.extend_from_slice(&head.queue_start_us.to_be_bytes());
        out.extend_from_slice(&head.script_mtime_us.to_be_bytes());
        put_bytes(out, kind, "script_path", head.script_path)?;
        put_bytes(out, kind, "app_group", head.app_group)?;
        put_bytes(out, kind, "callable", head.callable)?;
        put_pairs(out, kind, "env", env)
    })
}

/// Sets the [`req_flags`] bits `flag` in a `ReqHead` frame encoded by
/// [`encode_req_head_into`] (its flags are the payload's first field); false, and `frame`
/// unchanged, when it is not a whole `ReqHead` frame.
pub fn add_req_head_flag(frame: &mut [u8], flag: u32) -> bool {
    let Some(fields) = req_head_fixed_fields(frame) else {
        return false;
    };
    let flags = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]) | flag;
    fields[..4].copy_from_slice(&flags.to_be_bytes());
    true
}

/// Sets `daemon_connects` and `daemon_restarts` in a `ReqHead` frame encoded by
/// [`encode_req_head_into`] (the two fields after its flags); false, and `frame` unchanged,
/// when it is not a whole `ReqHead` frame.
pub fn set_req_head_daemon_attempts(frame: &mut [u8], connects: u32, restarts: u32) -> bool {
    let Some(fields) = req_head_fixed_fields(frame) else {
        return false;
    };
    fields[4..8].copy_from_slice(&connects.to_be_bytes());
    fields[8..12].copy_from_slice(&restarts.to_be_bytes());
    true
}

/// The leading u32 fields of an encoded `ReqHead` payload (flags, daemon_connects,
/// daemon_restarts), the ones rewritten in place; None when `frame` is not a `ReqHead` frame
/// that long.
fn req_head_fixed_fields(frame: &mut [u8]) -> Option<&mut [u8]> {
    const LEN: usize = 12;
    if frame.first() != Some(&(FrameKind::ReqHead as u8)) {
        return None;
    }
    frame.get_mut(HEADER_LEN..HEADER_LEN + LEN)
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

/// Appends a `Replace` control frame built from borrowed fields and any iterator of
/// (script path, application group) pairs.
///
/// Fails only if a length does not fit in 32 bits; `out` is then left unchanged.
pub fn encode_replace_into<I, K, V>(
    out: &mut Vec<u8>,
    reason: &[u8],
    scripts: I,
) -> Result<(), ProtocolError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let kind = FrameKind::Replace;
    encode_with(out, kind, |out| {
        put_bytes(out, kind, "reason", reason)?;
        put_pairs(out, kind, "scripts", scripts)
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
            Self::Ready => FrameKind::Ready,
            Self::Replace { .. } => FrameKind::Replace,
            Self::WsMsg { .. } => FrameKind::WsMsg,
            Self::WsClose { .. } => FrameKind::WsClose,
        }
    }

    /// Appends the frame (header and payload) to `out`.
    ///
    /// Fails only if a length does not fit in 32 bits; `out` is then left unchanged. Limits are
    /// the receiver's business: a frame over the peer's [`Limits`] is rejected by its decoder.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let kind = self.kind();
        match self {
            Self::ReqHead(head) => encode_req_head_into(out, &head.fields(), &head.env),
            Self::RespHead(head) => {
                encode_resp_head_into(out, head.status, &head.reason, &head.headers)
            }
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
            Self::RespEnd | Self::Flush | Self::Ready => encode_with(out, kind, |_| Ok(())),
            Self::Replace { reason, scripts } => {
                encode_replace_into(out, reason, scripts.iter().map(|(k, v)| (k, v)))
            }
            Self::Error { code, message } => encode_with(out, kind, |out| {
                out.extend_from_slice(&code.to_be_bytes());
                put_bytes(out, kind, "message", message)
            }),
            Self::WsMsg { ty, data } => encode_with(out, kind, |out| {
                out.push(*ty);
                out.extend_from_slice(data);
                Ok(())
            }),
            Self::WsClose { code, reason } => encode_with(out, kind, |out| {
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(reason);
                Ok(())
            }),
        }
    }
}

/// Sample frames for the tests of the encoder and the decoder.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    /// Bytes a header, field or payload may contain: NUL, 0xFF, CR/LF, high bytes.
    pub const BINARY: &[u8] = b"\x00\xff\r\n\x80key\x00=\xfe";

    pub fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).expect("encodable");
        out
    }

    pub fn sample_req_head() -> ReqHead {
        ReqHead {
            flags: req_flags::BODY_FOLLOWS | req_flags::CHUNKED_INPUT,
            daemon_connects: 1,
            daemon_restarts: 0,
            request_start_us: 1_700_000_000_123_456,
            queue_start_us: 1_700_000_000_123_789,
            script_mtime_us: 1_699_999_000_000_017,
            script_path: b"/srv/app/wsgi.py".to_vec(),
            app_group: b"%{GLOBAL}".to_vec(),
            callable: b"application".to_vec(),
            env: vec![
                (b"REQUEST_METHOD".to_vec(), b"POST".to_vec()),
                (b"HTTP_X_BIN".to_vec(), BINARY.to_vec()),
                (BINARY.to_vec(), Vec::new()),
                (Vec::new(), Vec::new()),
                (b"HTTP_X_BIN".to_vec(), b"duplicate kept".to_vec()),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// One or more frames of every kind, with empty, binary and large fields.
    pub fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::ReqHead(sample_req_head()),
            Frame::ReqHead(ReqHead::default()),
            Frame::ReqHead(ReqHead {
                flags: req_flags::ALL,
                daemon_connects: u32::MAX,
                daemon_restarts: u32::MAX,
                request_start_us: u64::MAX,
                queue_start_us: u64::MAX,
                script_mtime_us: u64::MAX,
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
                ]
                .into_iter()
                .collect::<PairList>(),
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
            Frame::WsMsg {
                ty: ws_type::TEXT,
                data: "h\u{e9}llo".as_bytes().to_vec(),
            },
            Frame::WsMsg {
                ty: ws_type::BINARY,
                data: BINARY.repeat(100),
            },
            Frame::WsMsg {
                ty: ws_type::BINARY,
                data: Vec::new(),
            },
            Frame::WsClose {
                code: 1012,
                reason: b"service restart".to_vec(),
            },
            Frame::WsClose {
                code: 1000,
                reason: Vec::new(),
            },
        ]
    }

    /// Frames of the control channel (decoded under [`Limits::CONTROL`](crate::protocol::Limits)).
    pub fn sample_control_frames() -> Vec<Frame> {
        vec![
            Frame::Ready,
            Frame::Replace {
                reason: Vec::new(),
                scripts: Vec::new(),
            },
            Frame::Replace {
                reason: b"maximum-requests=5 reached".to_vec(),
                scripts: vec![
                    (b"/srv/a.wsgi".to_vec(), b"%{GLOBAL}".to_vec()),
                    (BINARY.to_vec(), BINARY.to_vec()),
                ],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn kinds_are_stable_and_named() {
        let numbers: Vec<u8> = FrameKind::ALL.iter().map(|k| k.as_u8()).collect();
        assert_eq!(numbers, (1..=13).collect::<Vec<u8>>());
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_u8(kind.as_u8()), Some(kind));
            assert_eq!(kind.to_string(), format!("{kind:?}"));
        }
        assert_eq!(FrameKind::from_u8(0), None);
        assert_eq!(FrameKind::from_u8(14), None);
        let control: Vec<FrameKind> = FrameKind::ALL
            .into_iter()
            .filter(|k| k.is_control())
            .collect();
        assert_eq!(control, [FrameKind::Ready, FrameKind::Replace]);
        assert_eq!(error_code::name(error_code::SHUTTING_DOWN), "SHUTTING_DOWN");
        assert_eq!(error_code::name(999), "UNKNOWN");
    }

    #[test]
    fn a_flag_is_added_to_an_encoded_request_head_in_place() {
        let head = ReqHead {
            flags: req_flags::BODY_FOLLOWS,
            queue_start_us: 7,
            script_path: b"/s.wsgi".to_vec(),
            env: vec![(b"K".to_vec(), b"V".to_vec())].into_iter().collect(),
            ..ReqHead::default()
        };
        let mut bytes = encoded(&Frame::ReqHead(head.clone()));
        assert!(add_req_head_flag(&mut bytes, req_flags::RELOAD_RESEND));
        let expected = ReqHead {
            flags: req_flags::BODY_FOLLOWS | req_flags::RELOAD_RESEND,
            ..head
        };
        assert_eq!(bytes, encoded(&Frame::ReqHead(expected)));
        // Not a request head: left alone.
        let mut other = encoded(&Frame::RespEnd);
        assert!(!add_req_head_flag(&mut other, req_flags::RELOAD_RESEND));
        assert_eq!(other, encoded(&Frame::RespEnd));
    }

    #[test]
    fn daemon_attempts_are_set_in_an_encoded_request_head_in_place() {
        let head = ReqHead {
            flags: req_flags::BODY_FOLLOWS,
            daemon_connects: 1,
            script_path: b"/s.wsgi".to_vec(),
            env: vec![(b"K".to_vec(), b"V".to_vec())].into_iter().collect(),
            ..ReqHead::default()
        };
        let mut bytes = encoded(&Frame::ReqHead(head.clone()));
        assert!(set_req_head_daemon_attempts(&mut bytes, 3, 2));
        let expected = ReqHead {
            daemon_connects: 3,
            daemon_restarts: 2,
            ..head
        };
        assert_eq!(bytes, encoded(&Frame::ReqHead(expected)));
        let mut other = encoded(&Frame::RespEnd);
        assert!(!set_req_head_daemon_attempts(&mut other, 3, 2));
        assert_eq!(other, encoded(&Frame::RespEnd));
    }

    #[test]
    fn exact_byte_layout_is_big_endian() {
        let head = ReqHead {
            flags: 0x0102_0304 & req_flags::ALL,
            daemon_connects: 0x0A0B_0C0D,
            daemon_restarts: 0x0E0F_1011,
            request_start_us: 0x1122_3344_5566_7788,
            queue_start_us: 0x99AA_BBCC_DDEE_FF00,
            script_mtime_us: 0x0102_0304_0506_0708,
            script_path: b"s".to_vec(),
            app_group: b"".to_vec(),
            callable: b"ap".to_vec(),
            env: vec![(b"K".to_vec(), b"\x00V".to_vec())]
                .into_iter()
                .collect(),
        };
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0, 0, 0, 4]); // flags
        expected.extend_from_slice(&[0x0A, 0x0B, 0x0C, 0x0D]); // daemon_connects
        expected.extend_from_slice(&[0x0E, 0x0F, 0x10, 0x11]); // daemon_restarts
        expected.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        expected.extend_from_slice(&[0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00]);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // script_mtime_us
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
            encoded(&Frame::WsMsg {
                ty: ws_type::TEXT,
                data: b"hi".to_vec()
            }),
            [12, 0, 0, 0, 0, 0, 0, 3, 1, b'h', b'i']
        );
        assert_eq!(
            encoded(&Frame::WsClose {
                code: 1011,
                reason: b"x".to_vec()
            }),
            [13, 0, 0, 0, 0, 0, 0, 3, 0x03, 0xF3, b'x']
        );
        assert_eq!(
            encode_header(FrameKind::RespBody, 0x0102_0304),
            [5, 0, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn borrowed_encoders_match_owned_encoding() {
        let head = sample_req_head();
        let borrowed: Vec<(&[u8], &[u8])> = head.env.iter().collect();
        let mut out = b"prefix".to_vec();
        encode_req_head_into(&mut out, &head.fields(), borrowed.iter().copied()).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], encoded(&Frame::ReqHead(head.clone())));

        let resp = RespHead {
            status: 404,
            reason: b"Not Found".to_vec(),
            headers: vec![(b"A".to_vec(), b"1".to_vec())]
                .into_iter()
                .collect::<PairList>(),
        };
        let mut out = Vec::new();
        encode_resp_head_into(&mut out, 404, b"Not Found", [("A", "1")]).unwrap();
        assert_eq!(out, encoded(&Frame::RespHead(resp)));
    }

    #[test]
    fn encode_rejects_nothing_representable() {
        // Encoding fails only past 4 GiB, which a test cannot allocate; check the arithmetic
        // path instead: a successful encode leaves a correct length, a prefix is preserved.
        let mut out = vec![9; 3];
        Frame::Flush.encode(&mut out).unwrap();
        assert_eq!(out, [9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0]);
    }
}
