//! Messages between a daemon process and the daemon manager process that forked it, over a
//! Unix stream socket pair. The manager never trusts them for more than "which of my
//! daemons wants what": the sender is known from the socket it arrived on.
//!
//! They are frames of the wire protocol ([`crate::protocol`]: its header, field encoding,
//! limits and decoder), of the control channel's kinds: `Ready` (no payload) and `Replace`
//! (`bytes reason | pairs scripts`), decoded under [`Limits::CONTROL`].
//!
//! Nothing is cut: a message that would exceed [`MAX_MESSAGE`] is not encoded at all (the
//! daemon then drains without a warm replacement), and every length is checked against what
//! is left before anything is allocated.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{self, Decoder, Frame, Limits};

/// Scripts are sent as (WSGI script path, application group). The path is bytes, as Apache's
/// `r->filename` is (a script reached through a URL need not have a UTF-8 name).
pub type Script = (PathBuf, String);

/// The largest control message payload accepted: room for tens of thousands of loaded
/// scripts with long paths, and a bound on what the manager buffers per daemon.
pub const MAX_MESSAGE: usize = protocol::CONTROL_MAX as usize;

/// A replacement that does not report ready within this (or the group's startup-timeout)
/// no longer holds the old process back: the manager then tells it to drain anyway.
pub const REPLACEMENT_PATIENCE: Duration = Duration::from_secs(30);

/// How long the manager may take before it answers a Replace (drain now), for a daemon
/// whose group has `startup_timeout`: the manager's own patience plus a margin. A daemon
/// that hears nothing by then drains on its own.
pub fn answer_deadline(startup_timeout: Option<Duration>) -> Duration {
    startup_timeout.unwrap_or(REPLACEMENT_PATIENCE) + Duration::from_secs(15)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// Daemon → manager: Python is up, the scripts are imported and the threads accept.
    Ready,
    /// Daemon → manager: start my replacement (importing `scripts` first); when it is
    /// ready, tell me to drain.
    Replace {
        reason: String,
        scripts: Vec<Script>,
    },
}

impl ControlMessage {
    /// The whole message, frame header included. Err when its payload would exceed
    /// [`MAX_MESSAGE`]: it is then not sent at all, never cut.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let encoded = match self {
            ControlMessage::Ready => Frame::Ready.encode(&mut out),
            ControlMessage::Replace { reason, scripts } => {
                // Stop adding scripts once over the limit: the message is refused anyway.
                let mut size = reason.len();
                let pairs = scripts
                    .iter()
                    .map(|(script, group)| (script.as_os_str().as_bytes(), group.as_bytes()))
                    .take_while(|(script, group)| {
                        let fits = size <= MAX_MESSAGE;
                        size += 8 + script.len() + group.len();
                        fits
                    });
                protocol::encode_replace_into(&mut out, reason.as_bytes(), pairs)
            }
        };
        encoded.map_err(|e| e.to_string())?;
        if out.len() - protocol::HEADER_LEN > MAX_MESSAGE {
            return Err(format!(
                "the control message would exceed {MAX_MESSAGE} bytes (more scripts than fit)"
            ));
        }
        Ok(out)
    }

    /// The message a decoded control frame carries.
    pub fn from_frame(frame: Frame) -> Result<ControlMessage, String> {
        match frame {
            Frame::Ready => Ok(ControlMessage::Ready),
            Frame::Replace { reason, scripts } => {
                let text = |bytes: Vec<u8>, field: &str| {
                    String::from_utf8(bytes)
                        .map_err(|_| format!("a control message has a {field} that is not UTF-8"))
                };
                let reason = text(reason, "reason")?;
                let scripts = scripts
                    .into_iter()
                    .map(|(script, group)| {
                        Ok((
                            PathBuf::from(OsString::from_vec(script)),
                            text(group, "application group")?,
                        ))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(ControlMessage::Replace { reason, scripts })
            }
            other => Err(format!("a {} frame is not a control message", other.kind())),
        }
    }
}

/// Reassembles messages from a stream: bytes in, whole messages out (the protocol's
/// [`Decoder`] under [`Limits::CONTROL`]). After an error the stream cannot be trusted any
/// more (its framing is lost): every later call fails too.
#[derive(Debug)]
pub struct ControlDecoder {
    dec: Decoder,
    failed: bool,
}

impl Default for ControlDecoder {
    fn default() -> Self {
        ControlDecoder {
            dec: Decoder::new(Limits::CONTROL),
            failed: false,
        }
    }
}

impl ControlDecoder {
    pub fn feed(&mut self, data: &[u8]) {
        if !self.failed {
            self.dec.feed(data);
        }
    }

    /// The next whole message, None until one is complete.
    pub fn next_message(&mut self) -> Result<Option<ControlMessage>, String> {
        if self.failed {
            return Err("an earlier control message could not be decoded".into());
        }
        let result = match self.dec.next_frame() {
            Ok(None) => return Ok(None),
            Ok(Some(frame)) => ControlMessage::from_frame(frame),
            Err(e) => Err(e.to_string()),
        };
        if result.is_err() {
            self.fail();
        } else if self.dec.is_empty() {
            self.dec.release_memory(0); // a large Replace does not keep its buffer
        }
        result.map(Some)
    }

    /// True after an error: nothing more is read from this stream.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self) {
        self.failed = true;
        self.dec = Decoder::new(Limits::CONTROL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: &ControlMessage) -> ControlMessage {
        let mut dec = ControlDecoder::default();
        dec.feed(&m.encode().unwrap());
        let got = dec.next_message().unwrap().unwrap();
        assert_eq!(dec.next_message(), Ok(None));
        got
    }

    #[test]
    fn ready_round_trips() {
        assert_eq!(round_trip(&ControlMessage::Ready), ControlMessage::Ready);
    }

    #[test]
    fn replace_round_trips_with_and_without_scripts() {
        for scripts in [
            vec![],
            vec![("/srv/app.wsgi".into(), String::new())],
            vec![
                ("/srv/a.wsgi".into(), "%{GLOBAL}".to_string()),
                ("/srv/b é.wsgi".into(), "host|/b".to_string()),
                // A file name that is not UTF-8 (latin-1 é) keeps its bytes.
                (
                    PathBuf::from(OsString::from_vec(b"/srv/caf\xe9.wsgi".to_vec())),
                    "g".to_string(),
                ),
                // NULs cannot break the framing.
                ("x\0y".into(), "g\0h".to_string()),
            ],
        ] {
            let m = ControlMessage::Replace {
                reason: "maximum-requests=5 reached\0".into(),
                scripts,
            };
            assert_eq!(round_trip(&m), m);
        }
    }

    #[test]
    fn messages_are_protocol_frames() {
        assert_eq!(
            ControlMessage::Ready.encode().unwrap(),
            protocol::encode_header(protocol::FrameKind::Ready, 0)
        );
        let m = ControlMessage::Replace {
            reason: "r".into(),
            scripts: vec![("/a".into(), "g".into())],
        };
        let mut expected = protocol::encode_header(protocol::FrameKind::Replace, 20).to_vec();
        expected.extend_from_slice(b"\0\0\0\x01r\0\0\0\x01\0\0\0\x02/a\0\0\0\x01g");
        assert_eq!(m.encode().unwrap(), expected);
    }

    /// The old encoding cut a Replace at 64 KiB: the manager could not decode it and the
    /// daemon waited for ever. Far more now passes whole, fed in small pieces as a stream
    /// delivers it.
    #[test]
    fn replace_of_more_than_64_kib_round_trips_in_pieces() {
        let scripts: Vec<Script> = (0..400)
            .map(|i| {
                (
                    PathBuf::from(format!("/srv/{}/app{i}.wsgi", "d".repeat(200))),
                    format!("host|/{i}"),
                )
            })
            .collect();
        let m = ControlMessage::Replace {
            reason: "the WSGI script changed".into(),
            scripts,
        };
        let bytes = m.encode().unwrap();
        assert!(bytes.len() > 64 * 1024);
        let mut dec = ControlDecoder::default();
        let mut got = Vec::new();
        for piece in bytes
            .chunks(1000)
            .chain([&ControlMessage::Ready.encode().unwrap()[..]])
        {
            dec.feed(piece);
            while let Some(msg) = dec.next_message().unwrap() {
                got.push(msg);
            }
        }
        assert_eq!(got, vec![m, ControlMessage::Ready]);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_not_cut() {
        let m = ControlMessage::Replace {
            reason: String::new(),
            scripts: vec![("/a".into(), "g".repeat(MAX_MESSAGE))],
        };
        assert!(m.encode().unwrap_err().contains("exceed"));
        // Exactly at the limit passes.
        let header = protocol::HEADER_LEN;
        let at_limit = ControlMessage::Replace {
            reason: String::new(),
            scripts: vec![("/a".into(), "g".repeat(MAX_MESSAGE - 4 - 4 - 4 - 2 - 4))],
        };
        assert_eq!(at_limit.encode().unwrap().len(), header + MAX_MESSAGE);
        let mut dec = ControlDecoder::default();
        dec.feed(&protocol::encode_header(
            protocol::FrameKind::Replace,
            (MAX_MESSAGE + 1) as u32,
        ));
        assert!(dec.next_message().unwrap_err().contains("limit"));
        // The framing is lost: nothing after it is trusted.
        dec.feed(&ControlMessage::Ready.encode().unwrap());
        assert!(dec.next_message().is_err());
    }

    /// One frame of `kind` with `payload`, decoded as the manager does.
    fn decode(kind: u8, payload: &[u8]) -> Result<Option<ControlMessage>, String> {
        let mut dec = ControlDecoder::default();
        dec.feed(&[kind, 0, 0, 0]);
        dec.feed(&(payload.len() as u32).to_be_bytes());
        dec.feed(payload);
        dec.next_message()
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        const READY: u8 = 10;
        const REPLACE: u8 = 11;
        for (kind, payload) in [
            (READY, &b"x"[..]),
            (0x5a, b""),
            (REPLACE, b""),
            (REPLACE, b"\0\0\0\x05ab"),
            (REPLACE, b"\0\0\0\0\xff\xff\xff\xff"),
            (REPLACE, b"\0\0\0\x02\xff\xfe\0\0\0\0"),
            (REPLACE, b"\0\0\0\0\0\0\0\x01\0\0\0\x01a\0\0\0\x01\xff"),
            (REPLACE, b"\0\0\0\0\0\0\0\x00trailing"),
            // A request frame is not a control message.
            (7, b""),
        ] {
            assert!(decode(kind, payload).is_err(), "{kind} {payload:?}");
        }
        // Every truncation of a good message's payload is an error, never a panic.
        let good = ControlMessage::Replace {
            reason: "r".into(),
            scripts: vec![("/a.wsgi".into(), "g".into())],
        }
        .encode()
        .unwrap();
        let payload = &good[protocol::HEADER_LEN..];
        assert!(decode(REPLACE, payload).unwrap().is_some());
        for cut in 0..payload.len() {
            assert!(decode(REPLACE, &payload[..cut]).is_err());
        }
    }

    #[test]
    fn the_daemon_waits_longer_than_the_manager_is_patient() {
        assert!(answer_deadline(None) > REPLACEMENT_PATIENCE);
        let five = Duration::from_secs(5);
        assert!(answer_deadline(Some(five)) > five);
    }
}
