//! Decoding: the incremental [`Decoder`] (bytes in, validated frames out, no I/O inside),
//! header validation and payload parsing into [`Frame`]s.
//!
//! The byte layout is specified in the module documentation of [`crate::protocol`].

use std::fmt;

use super::frame::{Frame, FrameKind, Pairs, ReqHead, RespHead, req_flags, ws_type};
use super::{HEADER_LEN, Limits, ProtocolError};
use crate::pair_list::PairList;

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
    if kind.is_control() && limits.max_control == 0 {
        return Err(ProtocolError::ControlKind(kind));
    }
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

impl Frame {
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
                    daemon_connects: r.u32("daemon_connects")?,
                    daemon_restarts: r.u32("daemon_restarts")?,
                    request_start_us: r.u64("request_start_us")?,
                    queue_start_us: r.u64("queue_start_us")?,
                    script_mtime_us: r.u64("script_mtime_us")?,
                    script_path: r.bytes("script_path")?,
                    app_group: r.bytes("app_group")?,
                    callable: r.bytes("callable")?,
                    env: r.pair_list("env", limits.max_pairs)?,
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
                headers: r.pair_list("headers", limits.max_headers)?,
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
            FrameKind::Ready => Self::Ready,
            // The count is bounded by the payload (each pair takes at least 8 bytes), which
            // is bounded by max_control.
            FrameKind::Replace => Self::Replace {
                reason: r.bytes("reason")?,
                scripts: r.pairs("scripts", u32::MAX)?,
            },
            FrameKind::WsMsg => {
                let [ty] = r.array::<1>("type")?;
                if ty != ws_type::TEXT && ty != ws_type::BINARY {
                    return Err(ProtocolError::InvalidValue {
                        kind,
                        field: "type",
                        value: u64::from(ty),
                        reason: "must be 1 (text) or 2 (binary)",
                    });
                }
                Self::WsMsg {
                    ty,
                    data: r.rest_bytes(),
                }
            }
            FrameKind::WsClose => Self::WsClose {
                code: r.u16("code")?,
                reason: r.rest_bytes(),
            },
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
        let list = self.pair_list(field, limit)?;
        Ok(list.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }

    /// `pairs` as a [`PairList`]: the region is checked pair by pair, then copied once.
    fn pair_list(&mut self, field: &'static str, limit: u32) -> Result<PairList, ProtocolError> {
        let count = self.u32(field)?;
        if count > limit {
            return Err(ProtocolError::TooManyPairs {
                kind: self.kind,
                field,
                count,
                limit,
            });
        }
        // Every pair takes at least its two 4-byte lengths: a count the payload cannot hold
        // is refused before walking it.
        let min_len = u64::from(count) * 8;
        if min_len > self.rest.len() as u64 {
            return Err(self.truncated(field, min_len));
        }
        let start = self.rest;
        for _ in 0..count {
            for _ in 0..2 {
                let len = self.u32(field)?;
                self.take(field, len)?;
            }
        }
        let region = &start[..start.len() - self.rest.len()];
        Ok(PairList::from_checked(
            region,
            usize::try_from(count).unwrap_or(usize::MAX),
        ))
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

    /// Hands the buffer over for reuse by another decoder ([`Decoder::reuse_buffer`]) when
    /// nothing is pending and its capacity is at most `max_capacity`; the decoder keeps no
    /// buffer either way once nothing is pending. A thread that serves many connections one
    /// at a time so allocates (and zero-fills) its read buffer once, not once per request.
    pub fn take_buffer(&mut self, max_capacity: usize) -> Option<Vec<u8>> {
        if !self.is_empty() || self.failed.is_some() {
            return None;
        }
        let buf = std::mem::take(&mut self.buf);
        self.pos = 0;
        self.end = 0;
        (buf.capacity() > 0 && buf.capacity() <= max_capacity).then_some(buf)
    }

    /// Reads into `buf` (from [`Decoder::take_buffer`]) from now on, if this decoder has no
    /// buffer of its own yet; otherwise `buf` is dropped.
    pub fn reuse_buffer(&mut self, buf: Vec<u8>) {
        if self.buf.capacity() == 0 && self.is_empty() && self.failed.is_none() {
            self.buf = buf;
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
    use crate::protocol::encode_header;
    use crate::protocol::frame::samples::*;
    use crate::protocol::fuzz_harness;

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

    #[test]
    fn a_buffer_taken_from_one_decoder_reads_the_next_connection_without_growing() {
        let mut frames = Vec::new();
        Frame::RespBody(b"hello".to_vec())
            .encode(&mut frames)
            .unwrap();
        // Filled as a reader does, in place.
        fn read_into(dec: &mut Decoder, bytes: &[u8]) {
            let space = dec.read_space();
            space[..bytes.len()].copy_from_slice(bytes);
            dec.commit(bytes.len());
        }
        let mut first = Decoder::new(Limits::default());
        read_into(&mut first, &frames[..3]);
        assert!(first.take_buffer(64 * 1024).is_none(), "bytes are pending");
        read_into(&mut first, &frames[3..]);
        assert!(first.next_frame().unwrap().is_some());
        let buf = first
            .take_buffer(64 * 1024)
            .expect("an empty decoder gives its buffer");
        assert_eq!(first.buf.capacity(), 0, "the giver keeps no buffer");
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        let mut second = Decoder::new(Limits::default());
        second.reuse_buffer(buf);
        assert_eq!(
            second.read_space().as_ptr(),
            ptr,
            "the same memory, not a new allocation"
        );
        read_into(&mut second, &frames);
        assert_eq!(
            second.next_frame().unwrap(),
            Some(Frame::RespBody(b"hello".to_vec()))
        );
        assert_eq!(second.buf.capacity(), cap);
        // A buffer grown for a large frame is not kept for reuse.
        let mut big = Vec::new();
        Frame::RespBody(vec![7; 300_000]).encode(&mut big).unwrap();
        for chunk in big.chunks(READ_MIN) {
            read_into(&mut second, chunk);
        }
        assert!(second.next_frame().unwrap().is_some());
        assert!(second.take_buffer(64 * 1024).is_none());
        assert_eq!(second.buf.capacity(), 0);
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
    fn every_kind_round_trips() {
        let frames = sample_frames();
        let control = sample_control_frames();
        let mut kinds: Vec<FrameKind> = frames.iter().chain(&control).map(Frame::kind).collect();
        kinds.sort_by_key(|k| k.as_u8());
        kinds.dedup();
        assert_eq!(kinds, FrameKind::ALL, "samples must cover every kind");
        for frame in &frames {
            let bytes = encoded(frame);
            assert_eq!(decode_one(&bytes).as_ref(), Ok(frame), "{frame:?}");
        }
        for frame in &control {
            let mut dec = Decoder::new(Limits::CONTROL);
            dec.feed(&encoded(frame));
            assert_eq!(dec.next_frame().as_ref(), Ok(&Some(frame.clone())));
        }
    }

    #[test]
    fn max_size_fields_round_trip() {
        let limits = Limits::default();
        // A body chunk exactly at the limit.
        let chunk = vec![0xFF; limits.max_body_chunk as usize];
        let frame = Frame::RespBody(chunk);
        assert_eq!(decode_one(&encoded(&frame)), Ok(frame));
        // A request head exactly at the limit, and one byte over it.
        let fixed = 4 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 4 + 4;
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
        let env = vec![(Vec::new(), Vec::new()); limits.max_pairs as usize]
            .into_iter()
            .collect::<PairList>();
        let head = ReqHead {
            env,
            ..ReqHead::default()
        };
        assert_eq!(
            decode_one(&encoded(&Frame::ReqHead(head.clone()))),
            Ok(Frame::ReqHead(head))
        );
        let env = vec![(Vec::<u8>::new(), Vec::<u8>::new()); limits.max_pairs as usize + 1]
            .into_iter()
            .collect::<PairList>();
        let err = decode_one(&encoded(&Frame::ReqHead(ReqHead {
            env,
            ..ReqHead::default()
        })));
        assert!(
            matches!(err, Err(ProtocolError::TooManyPairs { count: 10_001, .. })),
            "{err:?}"
        );
        // Exactly max_headers headers, then one more.
        let headers = vec![(b"h".to_vec(), b"v".to_vec()); limits.max_headers as usize]
            .into_iter()
            .collect::<PairList>();
        let resp = RespHead {
            status: 200,
            reason: Vec::new(),
            headers,
        };
        assert_eq!(
            decode_one(&encoded(&Frame::RespHead(resp.clone()))),
            Ok(Frame::RespHead(resp))
        );
        let headers = vec![(b"h".to_vec(), b"v".to_vec()); limits.max_headers as usize + 1]
            .into_iter()
            .collect::<PairList>();
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
        payload.extend_from_slice(&[0; 8]); // daemon_connects, daemon_restarts
        payload.extend_from_slice(&0u64.to_be_bytes());
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
    fn websocket_frames_check_their_fields() {
        // A message type other than text or binary.
        let mut bytes = encoded(&Frame::WsMsg {
            ty: ws_type::TEXT,
            data: b"x".to_vec(),
        });
        bytes[HEADER_LEN] = 3;
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::InvalidValue { field: "type", .. })
        ));
        // Empty WsMsg (no type) and a WsClose without its code are truncated.
        assert!(matches!(
            decode_one(&encode_header(FrameKind::WsMsg, 0)),
            Err(ProtocolError::Truncated { .. })
        ));
        let mut short = encode_header(FrameKind::WsClose, 1).to_vec();
        short.push(3);
        assert!(matches!(
            decode_one(&short),
            Err(ProtocolError::Truncated { .. })
        ));
        // A message over max_ws_message is refused from its header.
        let mut dec = Decoder::new(Limits {
            max_ws_message: 10,
            ..Limits::default()
        });
        dec.feed(&encode_header(FrameKind::WsMsg, 11));
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        // The control channel refuses them.
        let mut dec = Decoder::new(Limits::CONTROL);
        dec.feed(&encoded(&Frame::WsMsg {
            ty: ws_type::BINARY,
            data: Vec::new(),
        }));
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn unknown_kind_is_rejected() {
        for kind in [0u8, 14, 0x7F, 0xFF] {
            let mut dec = Decoder::new(Limits::default());
            dec.feed(&[kind, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(dec.next_frame(), Err(ProtocolError::UnknownKind(kind)));
        }
    }

    #[test]
    fn control_kinds_only_on_the_control_channel() {
        for kind in [FrameKind::Ready, FrameKind::Replace] {
            let mut dec = Decoder::new(Limits::default());
            dec.feed(&encode_header(kind, 0));
            assert_eq!(dec.next_frame(), Err(ProtocolError::ControlKind(kind)));
        }
        let mut dec = Decoder::new(Limits::CONTROL);
        dec.feed(&encode_header(
            FrameKind::Replace,
            crate::protocol::CONTROL_MAX + 1,
        ));
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        // A request frame with a payload is refused on the control channel.
        let mut dec = Decoder::new(Limits::CONTROL);
        dec.feed(&encode_header(FrameKind::ReqHead, 1));
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
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
        bytes[HEADER_LEN + 2] = 1; // an undefined flag bit
        assert_eq!(
            decode_one(&bytes),
            Err(ProtocolError::UnknownFlags {
                kind: FrameKind::ReqHead,
                flags: 256,
                known: 255
            })
        );
        bytes[HEADER_LEN + 2] = 0;
        // IGNORE_ACTIVITY (16) and RELOAD_RESEND (32) are defined since version 4, ASGI (64)
        // since version 5, WEBSOCKET (128) since version 6.
        for flag in [
            req_flags::IGNORE_ACTIVITY,
            req_flags::RELOAD_RESEND,
            req_flags::ASGI,
            req_flags::WEBSOCKET,
        ] {
            bytes[HEADER_LEN + 3] = flag as u8;
            let Ok(Frame::ReqHead(head)) = decode_one(&bytes) else {
                panic!("flag {flag} refused");
            };
            assert!(head.has_flag(flag));
        }
    }

    #[test]
    fn truncated_fields_are_reported() {
        // A declared frame length that cuts a field short.
        let mut bytes = encoded(&Frame::RespHead(RespHead {
            status: 200,
            reason: b"OK".to_vec(),
            headers: PairList::new(),
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
    fn corpus_replay() {
        // The fuzz seeds, run through the same checks as the fuzz target. They are part of the
        // source tree: missing seeds are a failure, not a test that silently checks nothing.
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/decoder"));
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("the fuzz seeds {} are missing: {e}", dir.display()));
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
