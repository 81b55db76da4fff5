//! The connection handshake: one 8-byte hello each way, before the first frame.
//!
//! ```text
//! client → daemon   "RWSG" | u16 version | u16 flags
//! daemon → client   "RWSG" | u16 version | u16 status
//! ```
//!
//! A daemon that receives a version it does not speak answers with its own version and status
//! [`HelloStatus::UnsupportedVersion`], then closes; the client's [`parse_server_hello`] then
//! fails with [`ProtocolError::UnsupportedVersion`], which names both versions.

use super::{MAGIC, ProtocolError, VERSION};

/// Length of either hello, in bytes.
pub const HELLO_LEN: usize = 8;

/// The client's hello, as parsed by the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The client's protocol version (always [`VERSION`] once parsed successfully).
    pub version: u16,
    /// Client feature flags. Version 1 defines none; a daemon ignores bits it does not know.
    pub flags: u16,
}

/// The daemon's answer to a client hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum HelloStatus {
    /// Version accepted: frames may follow.
    Ok = 0,
    /// The daemon does not speak the client's version; it closes the connection.
    UnsupportedVersion = 1,
    /// The daemon will not serve this connection (for example it is shutting down); it closes
    /// the connection. Nothing was processed, so the client may retry.
    Refused = 2,
}

impl HelloStatus {
    /// The status for a wire value, if this version defines it.
    pub const fn from_u16(value: u16) -> Option<Self> {
        match value {
            0 => Some(Self::Ok),
            1 => Some(Self::UnsupportedVersion),
            2 => Some(Self::Refused),
            _ => None,
        }
    }
}

/// The daemon's hello, as parsed by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// The daemon's protocol version (always [`VERSION`] once parsed successfully).
    pub version: u16,
    /// Whether the daemon accepts the connection.
    pub status: HelloStatus,
}

fn encode(word: u16) -> [u8; HELLO_LEN] {
    let [v0, v1] = VERSION.to_be_bytes();
    let [w0, w1] = word.to_be_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v0, v1, w0, w1]
}

/// Checks magic and version; returns the third field (flags or status).
fn parse(bytes: &[u8; HELLO_LEN]) -> Result<(u16, u16), ProtocolError> {
    let [m0, m1, m2, m3, v0, v1, w0, w1] = *bytes;
    let found = [m0, m1, m2, m3];
    if found != MAGIC {
        return Err(ProtocolError::BadMagic { found });
    }
    let version = u16::from_be_bytes([v0, v1]);
    if version != VERSION {
        return Err(ProtocolError::UnsupportedVersion {
            theirs: version,
            ours: VERSION,
        });
    }
    Ok((version, u16::from_be_bytes([w0, w1])))
}

/// The client's hello for this protocol version.
pub fn encode_client_hello(flags: u16) -> [u8; HELLO_LEN] {
    encode(flags)
}

/// Parses a client hello. A different version yields [`ProtocolError::UnsupportedVersion`], to
/// which the daemon should answer [`HelloStatus::UnsupportedVersion`].
pub fn parse_client_hello(bytes: &[u8; HELLO_LEN]) -> Result<ClientHello, ProtocolError> {
    let (version, flags) = parse(bytes)?;
    Ok(ClientHello { version, flags })
}

/// The daemon's hello for this protocol version.
pub fn encode_server_hello(status: HelloStatus) -> [u8; HELLO_LEN] {
    encode(status as u16)
}

/// Parses a server hello. A different version yields [`ProtocolError::UnsupportedVersion`]
/// (whatever the status); an undefined status yields [`ProtocolError::UnknownHelloStatus`].
pub fn parse_server_hello(bytes: &[u8; HELLO_LEN]) -> Result<ServerHello, ProtocolError> {
    let (version, status) = parse(bytes)?;
    let status = HelloStatus::from_u16(status).ok_or(ProtocolError::UnknownHelloStatus(status))?;
    Ok(ServerHello { version, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_layout_and_round_trip() {
        let bytes = encode_client_hello(0xA1B2);
        assert_eq!(bytes, [b'R', b'W', b'S', b'G', 0, 8, 0xA1, 0xB2]);
        assert_eq!(
            parse_client_hello(&bytes),
            Ok(ClientHello {
                version: VERSION,
                flags: 0xA1B2
            })
        );
    }

    #[test]
    fn server_hello_round_trips_every_status() {
        for status in [
            HelloStatus::Ok,
            HelloStatus::UnsupportedVersion,
            HelloStatus::Refused,
        ] {
            let bytes = encode_server_hello(status);
            assert_eq!(&bytes[..6], b"RWSG\x00\x08");
            assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), status as u16);
            assert_eq!(
                parse_server_hello(&bytes),
                Ok(ServerHello {
                    version: VERSION,
                    status
                })
            );
        }
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut bytes = encode_client_hello(0);
        bytes[0] = b'X';
        assert_eq!(
            parse_client_hello(&bytes),
            Err(ProtocolError::BadMagic { found: *b"XWSG" })
        );
        // An HTTP request sent to the daemon socket by mistake.
        assert_eq!(
            parse_server_hello(b"GET / HT"),
            Err(ProtocolError::BadMagic { found: *b"GET " })
        );
    }

    #[test]
    fn wrong_version_names_both_versions() {
        // A newer module talking to an older daemon (and the other way around).
        for theirs in [0u16, 1, 2, 3, 4, 5, 6, 7, 9, 0xFFFF] {
            let [v0, v1] = theirs.to_be_bytes();
            let bytes = [b'R', b'W', b'S', b'G', v0, v1, 0, 0];
            let expected = ProtocolError::UnsupportedVersion {
                theirs,
                ours: VERSION,
            };
            assert_eq!(parse_client_hello(&bytes), Err(expected.clone()));
            assert_eq!(parse_server_hello(&bytes), Err(expected.clone()));
            let text = expected.to_string();
            assert!(
                text.contains(&format!("v{theirs}")) && text.contains("v8"),
                "{text}"
            );
        }
        // The daemon's "unsupported version" answer carries its own version (here a v3
        // daemon, from before IGNORE_ACTIVITY, left running by a graceful restart).
        let answer = [b'R', b'W', b'S', b'G', 0, 3, 0, 1];
        assert_eq!(
            parse_server_hello(&answer),
            Err(ProtocolError::UnsupportedVersion {
                theirs: 3,
                ours: VERSION
            })
        );
    }

    #[test]
    fn unknown_status_is_rejected() {
        let [v0, v1] = VERSION.to_be_bytes();
        let bytes = [b'R', b'W', b'S', b'G', v0, v1, 0, 3];
        assert_eq!(
            parse_server_hello(&bytes),
            Err(ProtocolError::UnknownHelloStatus(3))
        );
        // Client flags are advisory: unknown bits are accepted.
        assert!(parse_client_hello(&[b'R', b'W', b'S', b'G', v0, v1, 0xFF, 0xFF]).is_ok());
    }
}
