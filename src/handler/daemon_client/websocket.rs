//! A WebSocket the ASGI application accepted (the daemon answered 101): the handshake's
//! answer to the client, then one loop that relays messages between the client connection
//! (framing by `tungstenite`, over Apache's connection filters) and the daemon connection
//! (`WsMsg`/`WsClose` frames) until either side closes. The Apache thread stays with the
//! WebSocket for its lifetime, as mod_proxy_wstunnel's does; the daemon connection is
//! never reused afterwards, and the client connection is closed at the end.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use crate::apache::client_stream::ClientStream;
use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::ipc::poll::wait_either;
use crate::protocol::{self, Frame, FrameKind, Limits, RespHead, ws_type};

use super::DaemonTarget;
use super::pool::DaemonConn;

/// How long a close waits for the other side's close before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The longest single wait, so the idle and close deadlines are noticed.
const TICK: Duration = Duration::from_millis(500);

/// Whether `r` asks for a WebSocket (RFC 6455 opening handshake over HTTP/1.1).
pub fn is_upgrade(r: &Request<'_>) -> bool {
    let has_token = |name: &std::ffi::CStr, token: &[u8]| {
        r.header_in(name).is_some_and(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    r.proto_num() == 1001
        && r.method() == b"GET"
        && has_token(c"Upgrade", b"websocket")
        && has_token(c"Connection", b"upgrade")
        && r.header_in(c"Sec-WebSocket-Version")
            .is_some_and(|v| v.trim_ascii() == b"13")
        && r.header_in(c"Sec-WebSocket-Key")
            .is_some_and(|k| !k.trim_ascii().is_empty())
}

/// A client misbehaviour, for the log.
enum Note {
    TooBig(String),
    Protocol(String),
}

/// Why the relay ended badly, for the log.
enum End {
    Normal,
    DaemonError(u16, Vec<u8>),
    DaemonLost(io::Error),
}

/// Answers the handshake with the daemon's 101 `head`, then relays until the WebSocket is
/// over. The client connection is closed afterwards.
pub(super) fn relay(r: &mut Request<'_>, target: &DaemonTarget, conn: DaemonConn, head: RespHead) {
    let key = r
        .header_in(c"Sec-WebSocket-Key")
        .map(|k| k.trim_ascii().to_vec())
        .unwrap_or_default();
    r.set_status(101, b"Switching Protocols");
    for (name, value) in &head.headers {
        r.fold_header_out(name, value);
    }
    r.fold_header_out(b"Upgrade", b"websocket");
    r.fold_header_out(b"Connection", b"Upgrade");
    let accept = tungstenite::handshake::derive_accept_key(&key);
    r.fold_header_out(b"Sec-WebSocket-Accept", accept.as_bytes());
    r.send_interim_response();
    let group = target.group.clone();
    let (end, notes) = match ClientStream::new(r) {
        Some(stream) => Relay::new(target, conn, stream).run(),
        None => (
            End::DaemonLost(io::Error::other("the client connection has no socket")),
            Vec::new(),
        ),
    };
    for note in notes {
        match note {
            Note::TooBig(e) => log::request(
                r,
                Level::Info,
                &format!(
                    "RW0332: mod_rwsgi: WebSocket client sent a message over \
                     websocket-max-message-size={} ({e}); closed with 1009",
                    target.websocket_max_message_size
                ),
            ),
            Note::Protocol(e) => log::request(
                r,
                Level::Info,
                &format!(
                    "RW0333: mod_rwsgi: WebSocket protocol error from the client ({e}); \
                     closed with 1002"
                ),
            ),
        }
    }
    match end {
        End::Normal => {}
        End::DaemonError(code, message) => log::request(
            r,
            Level::Error,
            &format!(
                "RW0330: mod_rwsgi: daemon process '{group}': the WebSocket application \
                 failed ({}: {}); the WebSocket was closed with 1011",
                protocol::error_code::name(code),
                String::from_utf8_lossy(&message)
            ),
        ),
        End::DaemonLost(e) => log::request(
            r,
            Level::Error,
            &format!(
                "RW0331: mod_rwsgi: daemon process '{group}' went away during a WebSocket \
                 ({e}): it died or was killed (see the supervisor's line); the WebSocket was \
                 closed with 1011"
            ),
        ),
    }
    // Nothing more may be written on this connection (Apache's end of the request would
    // be a second response).
    r.abort_connection();
}

struct Relay<'t, 'r> {
    target: &'t DaemonTarget,
    conn: DaemonConn,
    ws: WebSocket<ClientStream<'r>>,
    /// Last message, ping or pong either way.
    last_activity: Instant,
    /// The daemon ended the request (RespEnd, Error or gone).
    daemon_done: bool,
    /// The daemon was told the WebSocket is closing (nothing more goes to it).
    daemon_told: bool,
    /// When our close frame went to the client: the connection ends CLOSE_WAIT later.
    closing_since: Option<Instant>,
    /// The client connection is over (closed, failed, or the close handshake completed).
    client_done: bool,
    end: End,
    /// What to log (info level) once the client stream is dropped.
    notes: Vec<Note>,
}

impl<'t, 'r> Relay<'t, 'r> {
    fn new(target: &'t DaemonTarget, conn: DaemonConn, stream: ClientStream<'r>) -> Self {
        let max = target.websocket_max_message_size;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        Relay {
            target,
            conn,
            ws: WebSocket::from_raw_socket(stream, Role::Server, Some(config)),
            last_activity: Instant::now(),
            daemon_done: false,
            daemon_told: false,
            closing_since: None,
            client_done: false,
            end: End::Normal,
            notes: Vec::new(),
        }
    }

    fn run(mut self) -> (End, Vec<Note>) {
        while !(self.client_done && (self.daemon_done || self.daemon_told)) {
            if self
                .closing_since
                .is_some_and(|t| t.elapsed() >= CLOSE_WAIT)
            {
                break;
            }
            if !self.client_done
                && self.closing_since.is_none()
                && self.last_activity.elapsed() >= self.target.websocket_idle_timeout
            {
                self.close_client(CloseCode::Away, "idle timeout");
                self.tell_daemon(1001, b"idle timeout");
            }
            let daemon_buffered = !self.daemon_done && self.conn.dec.has_frame().unwrap_or(true);
            let (client_ready, daemon_ready) = if daemon_buffered {
                (false, true)
            } else {
                let wait = TICK.min(
                    self.target
                        .websocket_idle_timeout
                        .saturating_sub(self.last_activity.elapsed())
                        .max(Duration::from_millis(1)),
                );
                let daemon_fd = self.conn.stream.as_fd();
                let client_fd = self.ws.get_ref().poll_fd();
                wait_either(client_fd, daemon_fd, wait).unwrap_or((true, true))
            };
            if client_ready && !self.client_done {
                self.read_client();
            }
            if daemon_ready && !self.daemon_done {
                self.read_daemon();
            }
            if self.daemon_done && !self.client_done && self.closing_since.is_none() {
                // The daemon ended without closing the WebSocket (RespEnd after the client's
                // close is the normal end; without any close, as an error).
                let code = match self.end {
                    End::Normal => CloseCode::Normal,
                    _ => CloseCode::Error,
                };
                self.close_client(code, "");
            }
        }
        let _ = self.ws.flush();
        let _ = self.ws.get_mut().flush();
        (self.end, self.notes)
    }

    /// Reads what the client sent until nothing more is there.
    fn read_client(&mut self) {
        loop {
            match self.ws.read() {
                Ok(message) => {
                    self.last_activity = Instant::now();
                    match message {
                        Message::Text(text) => {
                            self.send_daemon(ws_type::TEXT, text.as_bytes());
                        }
                        Message::Binary(data) => self.send_daemon(ws_type::BINARY, &data),
                        Message::Close(frame) => {
                            let (code, reason) = frame.map_or((1005, Vec::new()), |f| {
                                (u16::from(f.code), f.reason.as_bytes().to_vec())
                            });
                            self.tell_daemon(code, &reason);
                            // tungstenite has queued the answering close: out with it now
                            // (once it reports the connection closed, nothing is written).
                            let _ = self.ws.flush();
                            // (A server's flush after the close reports the connection
                            // closed before flushing the stream itself.)
                            let _ = self.ws.get_mut().flush();
                            if self.closing_since.is_none() {
                                self.closing_since = Some(Instant::now());
                            }
                        }
                        // Pongs to pings are queued by tungstenite and flushed below.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    self.client_done = true;
                    self.tell_daemon(1000, b"");
                    return;
                }
                Err(WsError::Capacity(e)) => {
                    self.close_client(CloseCode::Size, "message too big");
                    self.tell_daemon(1009, b"message too big");
                    self.notes.push(Note::TooBig(e.to_string()));
                    return;
                }
                Err(WsError::Protocol(e)) => {
                    self.close_client(CloseCode::Protocol, "protocol error");
                    self.tell_daemon(1002, b"protocol error");
                    self.notes.push(Note::Protocol(e.to_string()));
                    return;
                }
                Err(WsError::Utf8(_)) => {
                    self.close_client(CloseCode::Invalid, "invalid UTF-8");
                    self.tell_daemon(1007, b"invalid UTF-8");
                    return;
                }
                Err(_) => {
                    // The client connection failed or closed without a close frame.
                    self.client_done = true;
                    self.tell_daemon(1006, b"");
                    return;
                }
            }
        }
        if self.ws.flush().is_err() {
            self.client_done = true;
            self.tell_daemon(1006, b"");
        }
    }

    /// Handles the daemon's frames that are here (at least one is, or the connection ended).
    fn read_daemon(&mut self) {
        loop {
            let frame = {
                let mut reader = crate::ipc::fd_passing::FdReader {
                    stream: &self.conn.stream,
                    fds: &mut self.conn.fds,
                    timeout: Some(self.target.socket_timeout),
                    wait_first: false,
                };
                protocol::io::read_raw_frame(&mut reader, &mut self.conn.dec).and_then(|f| {
                    f.decode(&Limits::default())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                })
            };
            match frame {
                Ok(Frame::WsMsg { ty, data }) => {
                    self.last_activity = Instant::now();
                    let message = if ty == ws_type::TEXT {
                        match String::from_utf8(data) {
                            Ok(text) => Message::text(text),
                            Err(e) => Message::binary(e.into_bytes()),
                        }
                    } else {
                        Message::binary(data)
                    };
                    if !self.client_done
                        && self.closing_since.is_none()
                        && self.ws.send(message).is_err()
                    {
                        self.client_done = true;
                        self.tell_daemon(1006, b"");
                    }
                }
                Ok(Frame::WsClose { code, reason }) => {
                    // Nothing more goes to the daemon: it has closed.
                    self.daemon_told = true;
                    let reason = String::from_utf8_lossy(&reason).into_owned();
                    self.close_client(CloseCode::from(code), &reason);
                }
                Ok(Frame::Flush) => {}
                Ok(Frame::RespEnd) => {
                    self.daemon_done = true;
                    return;
                }
                Ok(Frame::Error { code, message }) => {
                    self.daemon_done = true;
                    self.end = End::DaemonError(code, message);
                    self.close_client(CloseCode::Error, "");
                    return;
                }
                Ok(other) => {
                    self.daemon_done = true;
                    self.end = End::DaemonLost(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected {} frame during a WebSocket", other.kind()),
                    ));
                    self.close_client(CloseCode::Error, "");
                    return;
                }
                Err(e) => {
                    self.daemon_done = true;
                    if !self.daemon_told || !matches!(self.end, End::Normal) {
                        self.end = End::DaemonLost(e);
                    }
                    self.close_client(CloseCode::Error, "");
                    return;
                }
            }
            if !self.conn.dec.has_frame().unwrap_or(false) {
                return;
            }
        }
    }

    /// Starts the closing handshake with the client (once).
    fn close_client(&mut self, code: CloseCode, reason: &str) {
        if self.client_done || self.closing_since.is_some() {
            return;
        }
        self.closing_since = Some(Instant::now());
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        };
        if self.ws.close(Some(frame)).is_err() || self.ws.flush().is_err() {
            self.client_done = true;
        }
        let _ = self.ws.get_mut().flush();
    }

    /// One message from the client to the application.
    fn send_daemon(&mut self, ty: u8, data: &[u8]) {
        if self.daemon_told || self.daemon_done {
            return;
        }
        let header = protocol::encode_header(FrameKind::WsMsg, data.len() as u32 + 1);
        let ty = [ty];
        let mut parts = [
            io::IoSlice::new(&header),
            io::IoSlice::new(&ty),
            io::IoSlice::new(data),
        ];
        if let Err(e) = protocol::io::write_all_vectored(&mut self.conn.stream, &mut parts) {
            self.daemon_done = true;
            self.end = End::DaemonLost(e);
            self.close_client(CloseCode::Error, "");
        }
    }

    /// Tells the application the WebSocket is closing (once).
    fn tell_daemon(&mut self, code: u16, reason: &[u8]) {
        if self.daemon_told || self.daemon_done {
            return;
        }
        self.daemon_told = true;
        let mut out = Vec::new();
        let frame = Frame::WsClose {
            code,
            reason: reason.to_vec(),
        };
        if frame.encode(&mut out).is_ok() {
            let _ = self.conn.stream.write_all(&out);
        }
    }
}
