//! The request body on its way to a daemon: read ahead from the client up to a limit (so
//! the request can be resent, and a slow upload holds no daemon thread), then handed out
//! as the daemon asks for it.

use std::io;

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::ffi;
use crate::protocol;

/// Request bodies up to this size are read from the client before a daemon is involved,
/// so a slow uploader ties up an Apache thread but never a daemon thread, and the request
/// can still be resent if its daemon is being replaced.
const PREREAD_LIMIT: usize = 1024 * 1024;

/// The request body: the pre-read part, then (for large bodies) the rest from the client.
pub struct Body {
    pre: Vec<u8>,
    /// How much of `pre` went to the daemon in this attempt.
    pos: usize,
    /// The whole body is in `pre`.
    complete: bool,
    /// It goes to the daemon with the head, unasked (protocol `BODY_PUSHED`).
    push: bool,
}

impl Body {
    /// Reads the body from the client, up to [`PREREAD_LIMIT`]; Err(status) when the client
    /// fails (logged).
    pub fn preread(r: &mut Request<'_>, has_body: bool) -> Result<Body, i32> {
        let mut body = Body {
            pre: Vec::new(),
            pos: 0,
            complete: !has_body,
            push: false,
        };
        if body.complete {
            return Ok(body); // no body: no buffer, no read
        }
        // With Content-Length the buffer is allocated once, at its final size.
        let declared = r
            .declared_body_length()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(PREREAD_LIMIT));
        if let Some(n) = declared {
            body.pre.reserve_exact(n);
        }
        while !body.complete && body.pre.len() < PREREAD_LIMIT {
            let room = match declared {
                // Apache's input filters deliver no more than Content-Length.
                Some(n) if n == body.pre.len() => {
                    body.complete = true;
                    break;
                }
                Some(n) => n - body.pre.len(),
                None => (PREREAD_LIMIT - body.pre.len()).min(64 * 1024),
            };
            match r.read_body_into(&mut body.pre, room) {
                Ok(0) => body.complete = true,
                Ok(_) => {}
                Err(_) => {
                    log::request(
                        r,
                        Level::Info,
                        "RW0072: mod_rwsgi: error reading the request body from the client",
                    );
                    return Err(ffi::HTTP_BAD_REQUEST);
                }
            }
        }
        // A small body already read whole goes with the head: the daemon then need not ask
        // for it (one round trip fewer).
        body.push = has_body && body.complete && body.pre.len() <= protocol::PUSHED_BODY_MAX;
        Ok(body)
    }

    /// Whether the body goes with the head (the head must then carry `BODY_PUSHED`).
    pub fn pushed(&self) -> bool {
        self.push
    }

    /// The whole body, when it goes with the head.
    pub(super) fn pushed_bytes(&self) -> Option<&[u8]> {
        self.push.then_some(&self.pre[..])
    }

    /// Starts the body over, for an attempt on another connection.
    pub(super) fn rewind(&mut self) {
        self.pos = 0;
    }

    /// The pushed body went out with the head: a `ReadBody` (a daemon bug) gets the end.
    pub(super) fn mark_pushed(&mut self) {
        if self.push {
            self.pos = self.pre.len();
        }
    }

    /// Up to `max` bytes for the daemon, from the pre-read part or else read into `buf`;
    /// empty at the end of the body.
    pub(super) fn next<'a>(
        &'a mut self,
        r: &mut Request<'_>,
        max: usize,
        buf: &'a mut Vec<u8>,
    ) -> io::Result<&'a [u8]> {
        if self.pos < self.pre.len() {
            let start = self.pos;
            self.pos += (self.pre.len() - start).min(max);
            return Ok(&self.pre[start..self.pos]);
        }
        if self.complete {
            return Ok(&[]);
        }
        buf.clear();
        let n = r.read_body_into(buf, max.clamp(1, 1024 * 1024))?;
        if n == 0 {
            self.complete = true;
        }
        Ok(&buf[..n])
    }
}
