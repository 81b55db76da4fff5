//! Messages between a daemon process and the daemon manager process that forked it, over a
//! Unix stream socket pair. Pure encoding: no sockets, no Apache, no Python. The manager
//! never trusts them for more than "which of my daemons wants what": the sender is known
//! from the socket it arrived on.
//!
//! Layout (big-endian, `bytes` = `u32 len | len raw bytes`, as in [`crate::protocol`]):
//!
//! ```text
//! message   u32 length | payload                      length ≤ MAX_MESSAGE
//! payload   u8 kind | fields
//!   Ready    b'R'  (no fields)
//!   Replace  b'P'  bytes reason | u32 count | count × (bytes script, bytes group)
//! ```
//!
//! Nothing is cut: a message that would exceed [`MAX_MESSAGE`] is not encoded at all (the
//! daemon then drains without a warm replacement), and every length is checked against what
//! is left before anything is allocated.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

/// Scripts are sent as (WSGI script path, application group). The path is bytes, as Apache's
/// `r->filename` is (a script reached through a URL need not have a UTF-8 name).
pub type Script = (PathBuf, String);

/// The largest control message payload accepted: room for tens of thousands of loaded
/// scripts with long paths, and a bound on what the manager buffers per daemon.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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

const READY: u8 = b'R';
const REPLACE: u8 = b'P';
const LEN: usize = 4;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u32::try_from(bytes.len()).map_err(|_| "a field over 4 GiB".to_string())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl ControlMessage {
    /// The whole message, length prefix included. Err when it would exceed
    /// [`MAX_MESSAGE`]: it is then not sent at all, never cut.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![0; LEN];
        match self {
            ControlMessage::Ready => out.push(READY),
            ControlMessage::Replace { reason, scripts } => {
                out.push(REPLACE);
                put_bytes(&mut out, reason.as_bytes())?;
                let count = u32::try_from(scripts.len()).map_err(|_| "too many scripts")?;
                out.extend_from_slice(&count.to_be_bytes());
                for (script, group) in scripts {
                    put_bytes(&mut out, script.as_os_str().as_bytes())?;
                    put_bytes(&mut out, group.as_bytes())?;
                    if out.len() - LEN > MAX_MESSAGE {
                        break;
                    }
                }
            }
        }
        let len = out.len() - LEN;
        if len > MAX_MESSAGE {
            return Err(format!(
                "the control message would exceed {MAX_MESSAGE} bytes (more scripts than fit)"
            ));
        }
        out[..LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(out)
    }

    /// Decodes one payload (without its length prefix).
    pub fn decode(payload: &[u8]) -> Result<ControlMessage, String> {
        let (&kind, rest) = payload.split_first().ok_or("empty control message")?;
        let mut r = Fields(rest);
        let message = match kind {
            READY => ControlMessage::Ready,
            REPLACE => {
                let reason = r.text("reason")?;
                let count = r.u32("script count")?;
                // Each pair holds at least its two lengths: refuse a count the payload
                // cannot hold before reserving room for it.
                if u64::from(count) * 8 > r.0.len() as u64 {
                    return Err(format!(
                        "a Replace control message announces {count} scripts but is too short"
                    ));
                }
                let mut scripts = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let script = PathBuf::from(OsString::from_vec(r.bytes("script")?.to_vec()));
                    scripts.push((script, r.text("application group")?));
                }
                ControlMessage::Replace { reason, scripts }
            }
            other => return Err(format!("unknown control message kind 0x{other:02x}")),
        };
        if !r.0.is_empty() {
            return Err(format!(
                "{} bytes left over after a control message",
                r.0.len()
            ));
        }
        Ok(message)
    }
}

/// Reads the fields of a payload, checking every length against what is left.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let (head, tail) = self
            .0
            .split_first_chunk::<LEN>()
            .ok_or_else(|| format!("a control message is cut short in its {field}"))?;
        self.0 = tail;
        Ok(u32::from_be_bytes(*head))
    }

    fn bytes(&mut self, field: &str) -> Result<&'a [u8], String> {
        let len = self.u32(field)? as usize;
        let (head, tail) = self
            .0
            .split_at_checked(len)
            .ok_or_else(|| format!("a control message is cut short in its {field}"))?;
        self.0 = tail;
        Ok(head)
    }

    fn text(&mut self, field: &str) -> Result<String, String> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| format!("a control message has a {field} that is not UTF-8"))
    }
}

/// Reassembles messages from a stream: bytes in, whole messages out. After an error the
/// stream cannot be trusted any more (its framing is lost): every later call fails too.
#[derive(Debug, Default)]
pub struct ControlDecoder {
    buf: Vec<u8>,
    failed: bool,
}

impl ControlDecoder {
    pub fn feed(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole message, None until one is complete.
    pub fn next_message(&mut self) -> Result<Option<ControlMessage>, String> {
        if self.failed {
            return Err("an earlier control message could not be decoded".into());
        }
        let Some(prefix) = self.buf.first_chunk::<LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_MESSAGE {
            self.fail();
            return Err(format!(
                "a control message of {len} bytes exceeds the limit of {MAX_MESSAGE}"
            ));
        }
        if self.buf.len() < LEN + len {
            return Ok(None);
        }
        let result = ControlMessage::decode(&self.buf[LEN..LEN + len]);
        self.buf.drain(..LEN + len);
        if self.buf.is_empty() {
            self.buf = Vec::new(); // a large Replace does not keep its buffer
        }
        if result.is_err() {
            self.fail();
        }
        result.map(Some)
    }

    /// True after an error: nothing more is read from this stream.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self) {
        self.failed = true;
        self.buf = Vec::new();
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
        let mut dec = ControlDecoder::default();
        dec.feed(&((MAX_MESSAGE + 1) as u32).to_be_bytes());
        assert!(dec.next_message().is_err());
        // The framing is lost: nothing after it is trusted.
        dec.feed(&ControlMessage::Ready.encode().unwrap());
        assert!(dec.next_message().is_err());
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        for payload in [
            &b""[..],
            b"Rx",
            b"Z",
            b"P",
            b"P\0\0\0\x05ab",
            b"P\0\0\0\0\xff\xff\xff\xff",
            b"P\0\0\0\x02\xff\xfe\0\0\0\0",
            b"P\0\0\0\0\0\0\0\x01\0\0\0\x01a\0\0\0\x01\xff",
            b"P\0\0\0\0\0\0\0\x00trailing",
        ] {
            assert!(ControlMessage::decode(payload).is_err(), "{payload:?}");
        }
        // Every truncation of a good message is an error, never a panic.
        let good = ControlMessage::Replace {
            reason: "r".into(),
            scripts: vec![("/a.wsgi".into(), "g".into())],
        }
        .encode()
        .unwrap();
        for cut in LEN..good.len() - 1 {
            assert!(ControlMessage::decode(&good[LEN..cut]).is_err());
        }
    }

    #[test]
    fn the_daemon_waits_longer_than_the_manager_is_patient() {
        assert!(answer_deadline(None) > REPLACEMENT_PATIENCE);
        let five = Duration::from_secs(5);
        assert!(answer_deadline(Some(five)) > five);
    }
}
