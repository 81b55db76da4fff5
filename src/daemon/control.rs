//! Messages between a daemon process and the daemon manager process that forked it, one
//! per datagram on a SOCK_SEQPACKET socket pair. Pure encoding: no sockets, no Apache, no
//! Python. The manager never trusts them for more than "which of my daemons wants what":
//! the sender is known from the socket it arrived on.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Scripts are sent as (WSGI script path, application group). The path is bytes, as Apache's
/// `r->filename` is (a script reached through a URL need not have a UTF-8 name).
pub type Script = (PathBuf, String);

/// The largest control message accepted (a Replace naming many scripts still fits).
pub const MAX_MESSAGE: usize = 64 * 1024;

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
/// Separates fields; neither paths nor group names handed to us by Apache contain it.
const FIELD: u8 = 0;

impl ControlMessage {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ControlMessage::Ready => vec![READY],
            ControlMessage::Replace { reason, scripts } => {
                let mut out = vec![REPLACE];
                out.extend_from_slice(reason.replace('\0', " ").as_bytes());
                for (script, group) in scripts {
                    let script = script.as_os_str().as_bytes();
                    if script.contains(&FIELD) || group.contains('\0') {
                        continue; // cannot be a real path or group; never sent
                    }
                    out.push(FIELD);
                    out.extend_from_slice(script);
                    out.push(FIELD);
                    out.extend_from_slice(group.as_bytes());
                }
                out.truncate(MAX_MESSAGE);
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<ControlMessage, String> {
        let (&kind, rest) = bytes.split_first().ok_or("empty control message")?;
        match kind {
            READY if rest.is_empty() => Ok(ControlMessage::Ready),
            READY => Err("a Ready control message carries no data".into()),
            REPLACE => {
                let text = |field: &[u8]| {
                    std::str::from_utf8(field).map(str::to_string).map_err(
                        |_| "a Replace control message has a reason or group that is not UTF-8",
                    )
                };
                let mut fields = rest.split(|&b| b == FIELD);
                let reason = text(fields.next().unwrap_or_default())?;
                let rest: Vec<&[u8]> = fields.collect();
                if rest.len() % 2 != 0 {
                    return Err("a Replace control message has a script without its group".into());
                }
                let scripts = rest
                    .chunks(2)
                    .map(|pair| {
                        let script = PathBuf::from(OsString::from_vec(pair[0].to_vec()));
                        Ok((script, text(pair[1])?))
                    })
                    .collect::<Result<_, &str>>()?;
                Ok(ControlMessage::Replace { reason, scripts })
            }
            other => Err(format!("unknown control message kind 0x{other:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_round_trips() {
        let m = ControlMessage::Ready;
        assert_eq!(ControlMessage::decode(&m.encode()), Ok(m));
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
            ],
        ] {
            let m = ControlMessage::Replace {
                reason: "maximum-requests=5 reached".into(),
                scripts,
            };
            assert_eq!(ControlMessage::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn nul_in_reason_or_names_cannot_break_framing() {
        let m = ControlMessage::Replace {
            reason: "a\0b".into(),
            scripts: vec![("x\0y".into(), "g".into()), ("/ok.wsgi".into(), "".into())],
        };
        assert_eq!(
            ControlMessage::decode(&m.encode()),
            Ok(ControlMessage::Replace {
                reason: "a b".into(),
                scripts: vec![("/ok.wsgi".into(), "".into())],
            })
        );
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        assert!(ControlMessage::decode(b"").is_err());
        assert!(ControlMessage::decode(b"Rx").is_err());
        assert!(ControlMessage::decode(b"Z").is_err());
        assert!(ControlMessage::decode(b"Preason\0only-script").is_err());
        assert!(ControlMessage::decode(&[REPLACE, 0xff, 0xfe]).is_err());
        assert!(ControlMessage::decode(b"Pr\0/a.wsgi\0\xff").is_err());
    }
}
