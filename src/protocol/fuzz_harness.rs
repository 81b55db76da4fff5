//! The decoder fuzz harness, shared by `fuzz/fuzz_targets/decoder.rs` (which includes this file
//! by path) and the `corpus_replay` unit test, so the seeds are checked exactly as fuzzed.
//!
//! Input layout: byte 0 configures the run, the rest is the byte stream.
//! - bits 0-1: limits preset (0 default, 1 tiny, 2 zero, 3 maximal); the tiny and maximal
//!   presets also accept the control channel's kinds (Ready, Replace: daemon → manager), the
//!   default and zero ones refuse them as a request connection does;
//! - bit 7: the stream starts with an 8-byte hello (parsed as both hellos, then skipped);
//! - bits 2-6: seed for the sizes of the pieces the stream is fed in.
//!
//! Checked properties (any failure panics, which the fuzzer reports):
//! - no panic, whatever the input;
//! - every decoded frame re-encodes to exactly the bytes it was decoded from (the encoding is
//!   canonical), and every parsed hello re-encodes to its bytes;
//! - feeding the stream in arbitrary pieces gives the same frames and the same error as feeding
//!   it at once, and `next_raw` + `RawFrame::decode` agrees with `next_frame`;
//! - errors are sticky and have a message.

#![allow(dead_code)]

use crate::protocol::{
    Decoder, Frame, HELLO_LEN, Limits, ProtocolError, encode_client_hello, encode_server_hello,
    parse_client_hello, parse_server_hello,
};

/// The limits preset selected by the low two bits of `config`.
pub fn limits_for(config: u8) -> Limits {
    match config & 3 {
        0 => Limits::default(),
        1 => Limits {
            max_head: 64,
            max_body_chunk: 16,
            max_pairs: 3,
            max_headers: 2,
            max_control: 64,
            max_ws_message: 16,
        },
        2 => Limits {
            max_head: 0,
            max_body_chunk: 0,
            max_pairs: 0,
            max_headers: 0,
            max_control: 0,
            max_ws_message: 0,
        },
        _ => Limits {
            max_head: u32::MAX,
            max_body_chunk: u32::MAX,
            max_pairs: u32::MAX,
            max_headers: u32::MAX,
            max_control: u32::MAX,
            max_ws_message: u32::MAX,
        },
    }
}

/// What decoding a stream produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<ProtocolError>,
    /// Unconsumed bytes at the end (meaningful only without an error).
    left: usize,
}

/// Runs every check on one fuzz input. Panics if a property does not hold.
pub fn check(data: &[u8]) {
    let Some((&config, mut stream)) = data.split_first() else {
        return;
    };
    if let Some(hello) = stream.first_chunk::<HELLO_LEN>() {
        check_hellos(hello);
        if config & 0x80 != 0 {
            stream = &stream[HELLO_LEN..];
        }
    }
    let limits = limits_for(config);
    let whole = decode(stream, limits, &mut std::iter::once(stream.len()));
    let mut rng = XorShift::new(u32::from(config >> 2) ^ (stream.len() as u32).rotate_left(7));
    let mut sizes = std::iter::from_fn(|| Some(1 + rng.next() as usize % 97));
    let pieces = decode(stream, limits, &mut sizes);
    assert_eq!(whole, pieces, "decoding depends on how the input is split");
    check_raw(stream, limits, &whole);
}

fn check_hellos(bytes: &[u8; HELLO_LEN]) {
    if let Ok(hello) = parse_client_hello(bytes) {
        assert_eq!(&encode_client_hello(hello.flags), bytes);
    }
    if let Ok(hello) = parse_server_hello(bytes) {
        assert_eq!(&encode_server_hello(hello.status), bytes);
    }
    for err in [
        parse_client_hello(bytes).err(),
        parse_server_hello(bytes).err(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!err.to_string().is_empty());
    }
}

/// Feeds `stream` in pieces of the given sizes, taking frames out after each piece.
fn decode(stream: &[u8], limits: Limits, sizes: &mut dyn Iterator<Item = usize>) -> Outcome {
    let mut dec = Decoder::new(limits);
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    while fed < stream.len() {
        let size = sizes.next().unwrap_or(stream.len()).max(1);
        let end = stream.len().min(fed + size);
        dec.feed(&stream[fed..end]);
        fed = end;
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let end = fed - dec.buffered();
                    let mut again = Vec::new();
                    frame
                        .encode(&mut again)
                        .expect("a decoded frame is encodable");
                    assert_eq!(
                        again,
                        stream[consumed..end],
                        "re-encoding differs: {frame:?}"
                    );
                    consumed = end;
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(err) => {
                    assert!(!err.to_string().is_empty());
                    dec.feed(b"\x07\x00\x00\x00\x00\x00\x00\x00");
                    assert_eq!(
                        dec.next_frame().as_ref(),
                        Err(&err),
                        "errors must be sticky"
                    );
                    assert_eq!(dec.error(), Some(&err));
                    return Outcome {
                        frames,
                        error: Some(err),
                        left: 0,
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
        left: dec.buffered(),
    }
}

/// `next_raw` + `RawFrame::decode` must agree with `next_frame`.
fn check_raw(stream: &[u8], limits: Limits, expected: &Outcome) {
    let mut dec = Decoder::new(limits);
    dec.feed(stream);
    let mut frames = Vec::new();
    let error = loop {
        match dec.next_raw() {
            Ok(Some(raw)) => match raw.decode(&limits) {
                Ok(frame) => frames.push(frame),
                Err(err) => break Some(err),
            },
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    assert_eq!(frames, expected.frames);
    assert_eq!(error, expected.error);
}

/// A tiny deterministic PRNG for piece sizes.
struct XorShift(u32);

impl XorShift {
    fn new(seed: u32) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair_list::PairList;
    use crate::protocol::{
        FrameKind, HelloStatus, ReqHead, RespHead, encode_header, error_code, req_flags, ws_type,
    };

    fn frame_bytes(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            frame.encode(&mut out).unwrap();
        }
        out
    }

    /// The seed files: (name, config byte, stream).
    fn seeds() -> Vec<(&'static str, u8, Vec<u8>)> {
        let head = ReqHead {
            flags: req_flags::BODY_FOLLOWS,
            daemon_connects: 2,
            daemon_restarts: 1,
            request_start_us: 1_700_000_000_000_000,
            queue_start_us: 1_700_000_000_000_250,
            script_mtime_us: 1_699_999_999_000_001,
            script_path: b"/srv/app.wsgi".to_vec(),
            app_group: b"%{GLOBAL}".to_vec(),
            callable: b"application".to_vec(),
            env: vec![
                (b"REQUEST_METHOD".to_vec(), b"POST".to_vec()),
                (b"HTTP_X".to_vec(), b"\x00\xff".to_vec()),
            ]
            .into_iter()
            .collect(),
        };
        let resp = RespHead {
            status: 200,
            reason: b"OK".to_vec(),
            headers: vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())]
                .into_iter()
                .collect::<PairList>(),
        };
        let exchange = frame_bytes(&[
            Frame::ReqHead(head.clone()),
            Frame::ReadBody { max: 4096 },
            Frame::ReqBody(b"a=1".to_vec()),
            Frame::ReqBody(Vec::new()),
            Frame::RespHead(resp.clone()),
            Frame::RespBody(b"hello".to_vec()),
            Frame::Flush,
            Frame::RespFile {
                offset: 0,
                length: 5,
            },
            Frame::RespEnd,
        ]);
        let pushed = frame_bytes(&[
            Frame::ReqHead(ReqHead {
                flags: req_flags::BODY_FOLLOWS
                    | req_flags::BODY_PUSHED
                    | req_flags::IGNORE_ACTIVITY
                    | req_flags::RELOAD_RESEND
                    | req_flags::ASGI,
                ..head.clone()
            }),
            Frame::ReqBody(b"a=1&b=2".to_vec()),
            Frame::ReqBody(Vec::new()),
            Frame::RespHead(resp.clone()),
            Frame::RespBody(b"a=1&b=2".to_vec()),
            Frame::RespEnd,
        ]);
        let websocket = frame_bytes(&[
            Frame::ReqHead(ReqHead {
                flags: req_flags::ASGI | req_flags::WEBSOCKET,
                ..head.clone()
            }),
            Frame::RespHead(RespHead {
                status: 101,
                reason: b"Switching Protocols".to_vec(),
                headers: vec![(b"Sec-WebSocket-Protocol".to_vec(), b"chat".to_vec())]
                    .into_iter()
                    .collect::<PairList>(),
            }),
            Frame::Flush,
            Frame::WsMsg {
                ty: ws_type::TEXT,
                data: b"hello".to_vec(),
            },
            Frame::WsMsg {
                ty: ws_type::BINARY,
                data: vec![0, 1, 2, 255],
            },
            Frame::WsClose {
                code: 1000,
                reason: b"bye".to_vec(),
            },
            Frame::RespEnd,
        ]);
        let req_head = frame_bytes(&[Frame::ReqHead(head)]);
        let control = frame_bytes(&control_frames());
        let mut huge_pairs = encode_header(FrameKind::RespHead, 10).to_vec();
        huge_pairs.extend_from_slice(&[0, 200, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let mut hello_then_frames = encode_client_hello(0).to_vec();
        hello_then_frames.extend_from_slice(&frame_bytes(&[Frame::RespEnd]));
        vec![
            ("req_head", 0, req_head.clone()),
            (
                "req_body",
                0,
                frame_bytes(&[Frame::ReqBody(b"\x00body\xff".to_vec())]),
            ),
            (
                "req_body_eof",
                0,
                frame_bytes(&[Frame::ReqBody(Vec::new())]),
            ),
            (
                "read_body",
                0,
                frame_bytes(&[Frame::ReadBody { max: 65536 }]),
            ),
            ("resp_head", 0, frame_bytes(&[Frame::RespHead(resp)])),
            (
                "resp_body",
                0,
                frame_bytes(&[Frame::RespBody(b"chunk".to_vec())]),
            ),
            (
                "resp_file",
                0,
                frame_bytes(&[Frame::RespFile {
                    offset: 4096,
                    length: 1 << 20,
                }]),
            ),
            (
                "resp_end_flush",
                0,
                frame_bytes(&[Frame::Flush, Frame::RespEnd]),
            ),
            (
                "error",
                0,
                frame_bytes(&[Frame::Error {
                    code: error_code::SHUTTING_DOWN,
                    message: b"draining".to_vec(),
                }]),
            ),
            ("exchange", 0x14, exchange.clone()),
            ("exchange_pushed_body", 0x08, pushed),
            ("exchange_tiny_limits", 1, exchange),
            ("websocket", 0, websocket.clone()),
            ("websocket_tiny_limits", 1, websocket),
            (
                "truncated_req_head",
                0,
                req_head[..req_head.len() / 2].to_vec(),
            ),
            (
                "oversized_length",
                0,
                encode_header(FrameKind::ReqBody, (1 << 20) + 1).to_vec(),
            ),
            ("huge_pair_count", 3, huge_pairs),
            ("unknown_kind", 0, vec![0x2A, 0, 0, 0, 0, 0, 0, 0]),
            ("reserved_bits", 0, vec![7, 0, 0, 1, 0, 0, 0, 0]),
            ("control_channel", 3, control.clone()),
            ("control_tiny_limits", 0x05, control.clone()),
            ("control_on_request_connection", 0, control),
            ("hello_client_then_frame", 0x80, hello_then_frames),
            (
                "hello_server_refused",
                0x80,
                encode_server_hello(HelloStatus::Refused).to_vec(),
            ),
        ]
    }

    /// The control channel's messages (daemon → manager), as `daemon::control` sends them.
    fn control_frames() -> Vec<Frame> {
        vec![
            Frame::Ready,
            Frame::Replace {
                reason: b"maximum-requests=5 reached".to_vec(),
                scripts: vec![
                    (b"/srv/app.wsgi".to_vec(), b"%{GLOBAL}".to_vec()),
                    (b"/srv/caf\xe9.wsgi".to_vec(), b"host|/b".to_vec()),
                ],
            },
        ]
    }

    /// The presets that accept control frames decode them (so the fuzzer covers them), the
    /// request presets refuse them.
    #[test]
    fn control_frames_are_covered() {
        let stream = frame_bytes(&control_frames());
        let whole = decode(&stream, limits_for(3), &mut std::iter::once(stream.len()));
        assert_eq!(whole.frames, control_frames());
        assert_eq!(whole.error, None);
        let refused = decode(&stream, limits_for(0), &mut std::iter::once(stream.len()));
        assert_eq!(
            refused.error,
            Some(ProtocolError::ControlKind(FrameKind::Ready))
        );
    }

    #[test]
    fn seeds_pass_the_harness() {
        for (name, config, stream) in seeds() {
            let mut data = vec![config];
            data.extend_from_slice(&stream);
            check(&data);
            assert!(data.len() < 512, "seed {name} is too big");
        }
    }

    /// Every committed seed file (and any crash input added there once fixed) still passes;
    /// a missing or emptied seed directory fails instead of replaying nothing.
    #[test]
    fn committed_seeds_replay() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/decoder"));
        let mut count = 0;
        for entry in std::fs::read_dir(dir).expect("fuzz/seeds/decoder exists") {
            let path = entry.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(
            count >= seeds().len(),
            "only {count} seed files in {}",
            dir.display()
        );
    }

    /// Writes the seeds to `fuzz/seeds/decoder/`:
    /// `cargo test write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes files; run by hand when the seeds change"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/decoder"));
        std::fs::create_dir_all(dir).unwrap();
        for (name, config, stream) in seeds() {
            let mut data = vec![config];
            data.extend_from_slice(&stream);
            std::fs::write(dir.join(format!("{name}.bin")), data).unwrap();
        }
    }

    #[test]
    fn harness_handles_degenerate_inputs() {
        for data in [
            &[][..],
            &[0],
            &[0x80],
            &[3, 0xFF],
            &[0x80, b'R', b'W', b'S', b'G', 0, 3, 0],
        ] {
            check(data);
        }
    }
}
