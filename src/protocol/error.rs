//! [`ProtocolError`]: everything that can be wrong with bytes received from a peer, or with a
//! value too large to be put on the wire.
//!
//! Every variant carries enough context for its `Display` text to say what was wrong without the
//! caller adding anything: which frame kind, which field, which number against which limit.

use std::fmt;

use super::frame::FrameKind;

/// A violation of the wire protocol (see the module documentation of [`crate::protocol`]).
///
/// Decoding errors are final for the connection: the stream can no longer be trusted and the
/// connection must be closed (a [`Decoder`](super::Decoder) keeps returning the same error).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A hello did not start with [`MAGIC`](super::MAGIC): the peer is not speaking this protocol.
    BadMagic {
        /// The four bytes received instead.
        found: [u8; 4],
    },
    /// The peer's hello names a protocol version this side does not speak.
    UnsupportedVersion {
        /// The version the peer speaks.
        theirs: u16,
        /// The version this side speaks ([`VERSION`](super::VERSION)).
        ours: u16,
    },
    /// A server hello carried a status code this version does not define.
    UnknownHelloStatus(u16),
    /// A frame header named a kind this version does not define.
    UnknownKind(u8),
    /// A control-channel kind (Ready, Replace) on a request connection.
    ControlKind(FrameKind),
    /// A frame header had bits set in its flags byte or its reserved field (both must be 0).
    ReservedBits {
        /// The frame's kind.
        kind: FrameKind,
        /// The header's flags byte.
        flags: u8,
        /// The header's reserved field.
        reserved: u16,
    },
    /// A frame's payload length is larger than the limit for its kind.
    FrameTooLarge {
        /// The frame's kind.
        kind: FrameKind,
        /// The length announced in the header.
        len: u32,
        /// The limit in force (from [`Limits`](super::Limits)).
        limit: u32,
    },
    /// A fixed-size frame announced a payload length other than its fixed size.
    BadLength {
        /// The frame's kind.
        kind: FrameKind,
        /// The length announced in the header.
        len: u32,
        /// The only length this kind may have.
        expected: u32,
    },
    /// A field needs more bytes than are left in the payload.
    Truncated {
        /// The frame's kind.
        kind: FrameKind,
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs (at least).
        needed: u64,
        /// Bytes left in the payload.
        remaining: usize,
    },
    /// A pair count (environ variables, response headers) is larger than its limit.
    TooManyPairs {
        /// The frame's kind.
        kind: FrameKind,
        /// The field holding the pairs.
        field: &'static str,
        /// The count announced.
        count: u32,
        /// The limit in force.
        limit: u32,
    },
    /// Bytes were left in a payload after its last field.
    TrailingBytes {
        /// The frame's kind.
        kind: FrameKind,
        /// How many bytes were left over.
        count: usize,
    },
    /// A flags field had bits set that this version does not define.
    UnknownFlags {
        /// The frame's kind.
        kind: FrameKind,
        /// The flags received.
        flags: u32,
        /// The bits this version defines.
        known: u32,
    },
    /// A field's value is structurally fine but not allowed.
    InvalidValue {
        /// The frame's kind.
        kind: FrameKind,
        /// The field.
        field: &'static str,
        /// The value received.
        value: u64,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// Encoding: a field, a pair count or a whole payload does not fit the wire's `u32` length.
    TooLongToEncode {
        /// The frame's kind.
        kind: FrameKind,
        /// The field (or `"payload"`).
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { found } => write!(
                f,
                "bad magic: expected \"RWSG\", got \"{}\" (the peer does not speak the rwsgi protocol)",
                found.escape_ascii()
            ),
            Self::UnsupportedVersion { theirs, ours } => write!(
                f,
                "unsupported protocol version: peer speaks v{theirs}, this side speaks v{ours}"
            ),
            Self::UnknownHelloStatus(status) => write!(f, "unknown hello status {status}"),
            Self::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            Self::ControlKind(kind) => write!(
                f,
                "a {kind} frame (kind {}) belongs to the control channel, not a request connection",
                kind.as_u8()
            ),
            Self::ReservedBits {
                kind,
                flags,
                reserved,
            } => write!(
                f,
                "{kind} frame has reserved header bits set (flags {flags:#04x}, reserved \
                 {reserved:#06x}; both must be 0)"
            ),
            Self::FrameTooLarge { kind, len, limit } => {
                write!(f, "{kind} frame length {len} exceeds limit {limit}")
            }
            Self::BadLength {
                kind,
                len,
                expected,
            } => {
                write!(
                    f,
                    "{kind} frame length {len} is invalid: must be exactly {expected}"
                )
            }
            Self::Truncated {
                kind,
                field,
                needed,
                remaining,
            } => write!(
                f,
                "{kind} frame truncated: field '{field}' needs {needed} bytes but only \
                 {remaining} remain in the payload"
            ),
            Self::TooManyPairs {
                kind,
                field,
                count,
                limit,
            } => {
                write!(
                    f,
                    "{kind} frame: {field} count {count} exceeds limit {limit}"
                )
            }
            Self::TrailingBytes { kind, count } => {
                write!(
                    f,
                    "{kind} frame: {count} trailing bytes in payload after the last field"
                )
            }
            Self::UnknownFlags { kind, flags, known } => write!(
                f,
                "{kind} frame: unknown flag bits {:#x} in flags {flags:#x} (known bits {known:#x})",
                flags & !known
            ),
            Self::InvalidValue {
                kind,
                field,
                value,
                reason,
            } => {
                write!(f, "{kind} frame: invalid {field} {value}: {reason}")
            }
            Self::TooLongToEncode { kind, field, len } => write!(
                f,
                "cannot encode {kind} frame: {field} length {len} does not fit in 32 bits"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for std::io::Error {
    /// An [`InvalidData`](std::io::ErrorKind::InvalidData) error wrapping the protocol error;
    /// get it back with `err.get_ref().and_then(|e| e.downcast_ref::<ProtocolError>())`.
    fn from(err: ProtocolError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_was_wrong() {
        let cases: Vec<(ProtocolError, &str)> = vec![
            (
                ProtocolError::BadMagic { found: *b"GET " },
                "bad magic: expected \"RWSG\", got \"GET \"",
            ),
            (
                ProtocolError::BadMagic {
                    found: [0, 0xff, b'"', b'\n'],
                },
                "got \"\\x00\\xff\\\"\\n\"",
            ),
            (
                ProtocolError::UnsupportedVersion { theirs: 2, ours: 1 },
                "peer speaks v2, this side speaks v1",
            ),
            (
                ProtocolError::UnknownHelloStatus(9),
                "unknown hello status 9",
            ),
            (ProtocolError::UnknownKind(200), "unknown frame kind 200"),
            (
                ProtocolError::ReservedBits {
                    kind: FrameKind::RespEnd,
                    flags: 1,
                    reserved: 0,
                },
                "RespEnd frame has reserved header bits set (flags 0x01, reserved 0x0000",
            ),
            (
                ProtocolError::FrameTooLarge {
                    kind: FrameKind::ReqHead,
                    len: 5,
                    limit: 4,
                },
                "ReqHead frame length 5 exceeds limit 4",
            ),
            (
                ProtocolError::BadLength {
                    kind: FrameKind::ReadBody,
                    len: 3,
                    expected: 4,
                },
                "ReadBody frame length 3 is invalid: must be exactly 4",
            ),
            (
                ProtocolError::Truncated {
                    kind: FrameKind::RespHead,
                    field: "reason",
                    needed: 10,
                    remaining: 2,
                },
                "RespHead frame truncated: field 'reason' needs 10 bytes but only 2 remain",
            ),
            (
                ProtocolError::TooManyPairs {
                    kind: FrameKind::ReqHead,
                    field: "env",
                    count: 4_000_000_000,
                    limit: 10_000,
                },
                "ReqHead frame: env count 4000000000 exceeds limit 10000",
            ),
            (
                ProtocolError::TrailingBytes {
                    kind: FrameKind::Error,
                    count: 3,
                },
                "Error frame: 3 trailing bytes in payload",
            ),
            (
                ProtocolError::UnknownFlags {
                    kind: FrameKind::ReqHead,
                    flags: 0x81,
                    known: 7,
                },
                "unknown flag bits 0x80 in flags 0x81",
            ),
            (
                ProtocolError::InvalidValue {
                    kind: FrameKind::ReadBody,
                    field: "max",
                    value: 0,
                    reason: "must be at least 1",
                },
                "ReadBody frame: invalid max 0: must be at least 1",
            ),
            (
                ProtocolError::TooLongToEncode {
                    kind: FrameKind::RespBody,
                    field: "body",
                    len: 9,
                },
                "cannot encode RespBody frame: body length 9 does not fit in 32 bits",
            ),
        ];
        for (err, expected) in cases {
            let text = err.to_string();
            assert!(
                text.contains(expected),
                "{text:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn converts_to_io_error_and_back() {
        let err = ProtocolError::UnknownKind(42);
        let io: std::io::Error = err.clone().into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        let back = io.get_ref().and_then(|e| e.downcast_ref::<ProtocolError>());
        assert_eq!(back, Some(&err));
    }
}
