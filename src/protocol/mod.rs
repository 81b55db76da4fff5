//! The wire protocol between Apache child processes and daemon processes (L2, std only).
//!
//! This comment is the specification. Pure Rust on std, no I/O in the codec ([`Decoder`] is
//! fed bytes), blocking helpers over any `Read`/`Write` in [`io`]; waiting on and passing
//! descriptors over the Unix socket itself is `crate::ipc`'s. All integers are **big-endian**;
//! byte strings are length-prefixed raw bytes (no NUL terminator, no UTF-8 assumption).
//!
//! # Connection
//!
//! A Unix stream socket, reused for many requests one after another (keep-alive style). Once
//! per connection, before any frame, a hello each way ([`encode_client_hello`] and friends,
//! [`io::client_handshake`], [`io::server_handshake`]):
//!
//! ```text
//! client → daemon   "RWSG" | u16 version | u16 flags       (8 bytes; v6 defines no flags,
//!                                                           unknown bits are ignored)
//! daemon → client   "RWSG" | u16 version | u16 status      (8 bytes)
//!                   status 0 = OK, 1 = unsupported version, 2 = refused
//! ```
//!
//! A daemon that does not speak the client's version answers status 1 **with its own
//! version** and closes; the client reports "daemon speaks protocol vN, module vM"
//! ([`ProtocolError::UnsupportedVersion`]). Status 2 (refused, e.g. the daemon is shutting
//! down) is followed by a close; nothing was processed, the client may retry. Any change to a
//! frame layout, a kind, a flag or a limit's meaning bumps [`VERSION`].
//!
//! # Frames
//!
//! ```text
//! header   u8 kind | u8 flags | u16 reserved | u32 payload length      (8 bytes)
//! payload  `length` bytes, laid out per kind
//! ```
//!
//! `flags` and `reserved` must be 0 in version 6. A receiver checks the header as soon as its
//! 8 bytes are in: unknown kind, nonzero flags/reserved, or a length over the kind's limit
//! ([`Limits`]; fixed-size kinds must have exactly their size) is an error before any payload
//! is read. Payload fields are read in order; every length is checked against what is left in
//! the payload (and counts against their limits) before anything is allocated; bytes left
//! after the last field are an error. Any error ends the connection.
//!
//! Field notation: `bytes` = `u32 len | len raw bytes`; `pairs` = `u32 count | count × (bytes
//! key, bytes value)`, order and duplicates preserved.
//!
//! | kind | name     | dir | payload                                                      | limit |
//! |------|----------|-----|--------------------------------------------------------------|-------|
//! | 1    | ReqHead  | c→d | u32 flags, u32 daemon_connects, u32 daemon_restarts, u64 request_start_us, u64 queue_start_us, u64 script_mtime_us, bytes script_path, bytes app_group, bytes callable, pairs env | max_head; env ≤ max_pairs |
//! | 2    | ReqBody  | c→d | raw body bytes; **empty = end of body**                      | max_body_chunk |
//! | 3    | ReadBody | d→c | u32 max (≥ 1)                                                | exactly 4 |
//! | 4    | RespHead | d→c | u16 status, bytes reason, pairs headers                      | max_head; headers ≤ max_headers |
//! | 5    | RespBody | d→c | raw body bytes                                               | max_body_chunk |
//! | 6    | RespFile | d→c | u64 offset, u64 length (offset + length ≤ 2⁶⁴−1)             | exactly 16 |
//! | 7    | RespEnd  | d→c | (empty)                                                      | exactly 0 |
//! | 8    | Error    | d→c | u16 code, bytes message                                      | max_head |
//! | 9    | Flush    | d→c | (empty)                                                      | exactly 0 |
//! | 10   | Ready    | d→m | (empty)                                                      | exactly 0 |
//! | 11   | Replace  | d→m | bytes reason, pairs scripts (script path, application group) | max_control |
//! | 12   | WsMsg    | c↔d | u8 type (1 text, 2 binary), raw message bytes                | max_ws_message |
//! | 13   | WsClose  | c↔d | u16 code, raw reason bytes                                   | max_head |
//!
//! Kinds 10 and 11 are the **control channel**'s (`d→m`: a daemon process to the daemon
//! manager that forked it, over a socket pair, no hello): the same header and field rules,
//! decoded under [`Limits::CONTROL`] (Replace up to [`CONTROL_MAX`], 16 MiB; a larger one is
//! never sent, never cut). On a request connection (`max_control` 0) they are an error, as
//! any unknown kind is, so the request protocol is unchanged and keeps its version.
//!
//! ReqHead flags ([`req_flags`]): 1 = BODY_FOLLOWS (a request body exists), 2 =
//! SCRIPT_RELOADING, 4 = CHUNKED_INPUT (no Content-Length), 8 = BODY_PUSHED (the body follows
//! the head unasked, see below), 16 = IGNORE_ACTIVITY (`WSGIIgnoreActivity On`: the request
//! does not reset the daemon's inactivity-timeout), 32 = RELOAD_RESEND (sent again after a
//! SHUTTING_DOWN: a process that loaded the script before `queue_start_us` must not run it),
//! 64 = ASGI (the script is an ASGI 3 application, `interface=asgi`), 128 = WEBSOCKET (an
//! HTTP/1.1 `Upgrade: websocket` request to an ASGI script, see below);
//! other bits are an error. Version 1 had no BODY_PUSHED, version 3 no IGNORE_ACTIVITY or
//! RELOAD_RESEND, version 4 no ASGI, version 5 no WEBSOCKET, WsMsg or WsClose.
//! `request_start_us` is Apache's request time in µs since the Unix epoch (for queue-timeout
//! and `mod_wsgi.request_start`); `queue_start_us` is when the client started sending the
//! request to the daemon socket (`mod_wsgi.queue_start`). Version 2 had no `queue_start_us`.
//! `script_mtime_us` is the script file's mtime (µs since the Unix epoch) as Apache found it
//! when it mapped the request to the file, 0 when it did not stat that file (a
//! WSGIHandlerScript): a daemon whose loaded script has that mtime knows it unchanged without
//! a stat of its own. Version 6 had no `script_mtime_us`.
//! `daemon_connects` counts the connections the client made (or took from its pool) for this
//! request, the one it is sent on included; `daemon_restarts` the times it was sent again
//! because a daemon process turned it away while being replaced or closed the connection
//! before answering (mod_wsgi's request_started fields of those names). A client rewrites
//! them in an encoded head before a resend. Version 7 had neither.
//! Error codes ([`error_code`]): 1 INTERNAL, 2 APP_LOAD_FAILED, 3 BAD_REQUEST, 4 OVERLOADED
//! (queue-timeout), 5 SHUTTING_DOWN (nothing processed: retry on a new connection), 6
//! REQUEST_TIMEOUT, 7 PROTOCOL, 8 APP_FAILED; a receiver treats unknown codes as INTERNAL.
//!
//! # One request
//!
//! ```text
//! c→d  ReqHead
//! c→d  only with BODY_PUSHED: ReqBody × n, then an empty ReqBody
//! d→c  any interleaving of:  ReadBody (c answers with exactly one ReqBody)
//!                            RespHead (once, before any RespBody/RespFile/Flush)
//!                            RespBody | RespFile | Flush
//! d→c  RespEnd  or  Error    (either ends the request; the connection is then idle again)
//! ```
//!
//! A body the client already holds whole, of at most [`PUSHED_BODY_MAX`] bytes, may be
//! **pushed**: the head carries BODY_PUSHED (and BODY_FOLLOWS) and is followed at once by the
//! body in ReqBody frames and an empty ReqBody, in total at most [`PUSHED_BODY_MAX`] bytes
//! (more is an error). The daemon reads all of it before it runs the request or answers
//! anything, and never sends `ReadBody` for that request. This saves the `ReadBody` round
//! trip for the common small POST, and keeps one fact the client relies on: a daemon that
//! closes the connection with bytes of the request unread (the client then reads
//! `ECONNRESET`) has not started the request.
//!
//! Otherwise the body is **pulled**: the client sends body bytes only in answer to a
//! `ReadBody`, one `ReqBody` of 1..=max bytes, or an empty `ReqBody` once the body is
//! exhausted (and again for any later `ReadBody`). The daemon asks for at most its own
//! max_body_chunk, so the answer always fits its decoder's limit. Apart from a pushed body,
//! which the daemon drains first, neither side has unsolicited bytes in flight: the daemon
//! can read the body while it streams the response (no deadlock), and a large body the
//! application never reads is never sent. Without BODY_FOLLOWS the answer to a `ReadBody` is
//! an empty `ReqBody`. The client sends the next `ReqHead` only after `RespEnd`
//! or `Error`; an `Error` after `RespHead` means the response is truncated. Timeouts are socket
//! timeouts set by the caller.
//!
//! For an ASGI request the client watches its HTTP client's socket while it waits for the
//! daemon: when that client has gone it **closes the connection mid-request**, and the
//! daemon, which sees its end of file while the application waits, tells the application
//! (`http.disconnect`); nothing it sends after that is read. No frame changes.
//!
//! # One WebSocket
//!
//! A `ReqHead` with WEBSOCKET (and ASGI) starts as any request. A `RespHead` with status
//! **101** accepts the WebSocket (its headers are the application's: subprotocol, extra
//! headers; the client adds the handshake's own); any other status is an ordinary HTTP
//! answer (the application denied the WebSocket) and the request ends as usual. After a
//! 101 both sides may send, unasked and in any order:
//!
//! ```text
//! c↔d  WsMsg    one whole message (the client has reassembled fragments, answered pings
//!               and enforced the size limit; the daemon may send up to WS_MESSAGE_MAX)
//! c↔d  WsClose  the closing code and reason; c→d 1006 when the client connection was lost
//! d→c  Flush    (ignored)
//! d→c  RespEnd  or  Error   the WebSocket is over (Error: the application failed, the
//!               client closes with 1011); the connection is then closed, never reused
//! ```
//!
//! The client sends nothing after its WsClose; the daemon ends with RespEnd or Error after
//! its own WsClose or after the client's. A connection that ends without either (the daemon
//! died) is closed with 1011 to the WebSocket client.
//!
//! `RespFile` asks the client to send `length` bytes from `offset` of a file whose descriptor
//! is passed as `SCM_RIGHTS` ancillary data on the `sendmsg` call that carries the frame's
//! header; the receiver queues received descriptors and takes one per `RespFile`, in order.
//! The codec here handles only the frame; `crate::ipc::fd_passing` moves the descriptors.
mod decoder;
mod error;
mod frame;
#[cfg(test)]
pub(crate) mod fuzz_harness;
mod hello;
pub mod io;

pub use crate::pair_list::PairList;
pub use decoder::{Decoder, FrameHeader, READ_AHEAD_MAX, READ_MIN, RawFrame};
pub use error::ProtocolError;
pub use frame::{
    Frame, FrameKind, Pairs, ReqHead, ReqHeadRef, RespHead, add_req_head_flag, encode_header,
    encode_replace_into, encode_req_head_into, encode_resp_head_into, error_code, req_flags,
    set_req_head_daemon_attempts, ws_type,
};
pub use hello::{
    ClientHello, HELLO_LEN, HelloStatus, ServerHello, encode_client_hello, encode_server_hello,
    parse_client_hello, parse_server_hello,
};

/// The first four bytes of both hellos.
pub const MAGIC: [u8; 4] = *b"RWSG";

/// The protocol version this code speaks (2: `BODY_PUSHED`; 3: `queue_start_us`; 4:
/// `IGNORE_ACTIVITY`, `RELOAD_RESEND`; 5: `ASGI`; 6: `WEBSOCKET`, `WsMsg`, `WsClose`; 7:
/// `script_mtime_us`; 8: `daemon_connects`, `daemon_restarts`).
pub const VERSION: u16 = 8;

/// The largest WebSocket message a `WsMsg` frame carries (16 MiB): the ceiling of
/// `websocket-max-message-size=`.
pub const WS_MESSAGE_MAX: u32 = 16 * 1024 * 1024;

/// The largest request body a client may push after the head (`BODY_PUSHED`): with the head
/// it fits in a Unix socket's default send buffer, so the client's write never waits for a
/// daemon thread to be free.
pub const PUSHED_BODY_MAX: usize = 64 * 1024;

/// The largest control frame payload [`Limits::CONTROL`] accepts: room for tens of
/// thousands of loaded scripts with long paths, and a bound on what the manager buffers per
/// daemon.
pub const CONTROL_MAX: u32 = 16 * 1024 * 1024;

/// Length of a frame header, in bytes.
pub const HEADER_LEN: usize = 8;

/// Size limits a decoder enforces on what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a `ReqHead`, `RespHead` or `Error` frame. Default 1 MiB.
    pub max_head: u32,
    /// Largest payload of a `ReqBody` or `RespBody` frame. Default 1 MiB.
    pub max_body_chunk: u32,
    /// Most environ pairs in a `ReqHead`. Default 10 000.
    pub max_pairs: u32,
    /// Most headers in a `RespHead`. Default 1000.
    pub max_headers: u32,
    /// Largest payload of a `Replace` control frame; 0 (the default: a request connection)
    /// refuses both control kinds. [`Limits::CONTROL`] for the control channel.
    pub max_control: u32,
    /// Largest payload of a `WsMsg` frame (type byte and message). Default
    /// [`WS_MESSAGE_MAX`] + 1.
    pub max_ws_message: u32,
}

impl Limits {
    /// The defaults, usable in `const` context.
    pub const DEFAULT: Self = Self {
        max_head: 1 << 20,
        max_body_chunk: 1 << 20,
        max_pairs: 10_000,
        max_headers: 1000,
        max_control: 0,
        max_ws_message: WS_MESSAGE_MAX + 1,
    };

    /// The control channel between a daemon and its manager: control frames of up to
    /// [`CONTROL_MAX`] bytes; the request kinds with a payload are refused (limit 0).
    pub const CONTROL: Self = Self {
        max_head: 0,
        max_body_chunk: 0,
        max_pairs: 0,
        max_headers: 0,
        max_control: CONTROL_MAX,
        max_ws_message: 0,
    };

    /// The largest payload accepted for `kind` (its exact size for fixed-size kinds).
    pub const fn frame_limit(&self, kind: FrameKind) -> u32 {
        match kind.fixed_len() {
            Some(len) => len,
            None => match kind {
                FrameKind::ReqBody | FrameKind::RespBody => self.max_body_chunk,
                FrameKind::Replace => self.max_control,
                FrameKind::WsMsg => self.max_ws_message,
                _ => self.max_head,
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits() {
        let limits = Limits::default();
        assert_eq!(limits.max_head, 1024 * 1024);
        assert_eq!(limits.max_body_chunk, 1024 * 1024);
        assert_eq!(limits.max_pairs, 10_000);
        assert_eq!(limits.max_headers, 1000);
        assert_eq!(limits.frame_limit(FrameKind::ReqHead), 1 << 20);
        assert_eq!(limits.frame_limit(FrameKind::Error), 1 << 20);
        assert_eq!(limits.frame_limit(FrameKind::RespBody), 1 << 20);
        assert_eq!(limits.frame_limit(FrameKind::RespFile), 16);
        assert_eq!(limits.frame_limit(FrameKind::Flush), 0);
        assert_eq!(limits.max_control, 0);
        assert_eq!(Limits::CONTROL.frame_limit(FrameKind::Replace), 16 << 20);
        assert_eq!(Limits::CONTROL.frame_limit(FrameKind::ReqHead), 0);
    }
}
