//! When a request that did not get through to a daemon is sent again (pure policy, no I/O).
//!
//! A request is resent only when the daemon cannot have run it, or when running it twice is
//! harmless: its head could not be written; the daemon turned it away while being replaced
//! (`SHUTTING_DOWN` before anything else); or the connection closed before any answer — a
//! pooled connection whose daemon has since gone, or a daemon that died on a GET, HEAD or
//! OPTIONS without a body, resent once so the client never sees the crash.

use std::time::Duration;

use crate::protocol::req_flags;

/// At most this many attempts per request (besides connect-timeout), so a daemon that turns
/// every request away cannot keep an Apache thread forever.
pub const MAX_ATTEMPTS: u32 = 64;

/// How an attempt ended without the daemon having answered the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setback {
    /// The request head could not be written: the daemon never saw the request.
    NotSent,
    /// The connection closed before any answer, and nothing shows the daemon started on the
    /// request (it asked for no body, and did not take a pushed body whole).
    ClosedBeforeAnswer,
    /// The daemon is being replaced and turned the request away unprocessed
    /// (`SHUTTING_DOWN` before the head and before any body was asked for).
    Restarting,
}

/// What the request went through so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts made, the one that just ended included.
    pub made: u32,
    /// The attempt that just ended used a pooled connection (opened for an earlier request).
    pub reused: bool,
    /// The request was already resent once after a close.
    pub resent_after_close: bool,
    /// connect-timeout has passed since the first attempt.
    pub out_of_time: bool,
}

/// What to do after a [`Setback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send the request again on a new connection after `pause` (the group's pooled
    /// connections are dropped first: they most likely lead to the same process).
    Resend { pause: Duration },
    /// Give up; the caller logs why and answers with [`GiveUp::status`].
    GiveUp(GiveUp),
}

/// Why a request is not sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The head could not be written within connect-timeout (or [`MAX_ATTEMPTS`]).
    CannotSend,
    /// The daemon may have run the request: it is not idempotent, or was resent once already.
    NotResendable { already_resent: bool },
    /// The group kept turning the request away for connect-timeout (or [`MAX_ATTEMPTS`]).
    KeptRestarting,
}

impl GiveUp {
    /// The HTTP status the client gets.
    pub fn status(self) -> i32 {
        match self {
            GiveUp::CannotSend | GiveUp::KeptRestarting => crate::ffi::HTTP_SERVICE_UNAVAILABLE,
            GiveUp::NotResendable { .. } => crate::ffi::HTTP_BAD_GATEWAY,
        }
    }
}

/// Whether running the request twice is harmless: a GET, HEAD or OPTIONS without a body
/// (`flags` from the request head; methods are case-sensitive).
pub fn is_idempotent(method: &[u8], flags: u32) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS") && flags & req_flags::BODY_FOLLOWS == 0
}

/// Whether and when a request whose attempt ended in `setback` is sent again.
pub fn decide(setback: Setback, attempts: Attempts, idempotent: bool) -> Decision {
    let in_time = !attempts.out_of_time && attempts.made < MAX_ATTEMPTS;
    match setback {
        Setback::NotSent if in_time => Decision::Resend {
            pause: Duration::ZERO,
        },
        Setback::NotSent => Decision::GiveUp(GiveUp::CannotSend),
        // A stale pooled connection says nothing about this request; a crash on an
        // idempotent one is hidden. Once: a second close means the daemon dies on it. Not
        // bound by connect-timeout: a resend is one more connect, bounded by its own timeout.
        Setback::ClosedBeforeAnswer
            if (attempts.reused || idempotent) && !attempts.resent_after_close =>
        {
            Decision::Resend {
                pause: Duration::ZERO,
            }
        }
        Setback::ClosedBeforeAnswer => Decision::GiveUp(GiveUp::NotResendable {
            already_resent: attempts.resent_after_close,
        }),
        // The replacement takes the request from the socket's backlog once it listens: wait
        // a little longer each time, at most 100 ms.
        Setback::Restarting if in_time => Decision::Resend {
            pause: Duration::from_millis(5 * u64::from(attempts.made.min(20))),
        },
        Setback::Restarting => Decision::GiveUp(GiveUp::KeptRestarting),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempts(made: u32) -> Attempts {
        Attempts {
            made,
            ..Attempts::default()
        }
    }

    const NOW: Decision = Decision::Resend {
        pause: Duration::ZERO,
    };

    #[test]
    fn an_unsent_head_is_resent_until_time_or_attempts_run_out() {
        assert_eq!(decide(Setback::NotSent, attempts(1), false), NOW);
        assert_eq!(
            decide(Setback::NotSent, attempts(MAX_ATTEMPTS - 1), false),
            NOW
        );
        let give_up = Decision::GiveUp(GiveUp::CannotSend);
        assert_eq!(
            decide(Setback::NotSent, attempts(MAX_ATTEMPTS), true),
            give_up
        );
        let late = Attempts {
            out_of_time: true,
            ..attempts(2)
        };
        assert_eq!(decide(Setback::NotSent, late, true), give_up);
        assert_eq!(
            GiveUp::CannotSend.status(),
            crate::ffi::HTTP_SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_stale_pooled_connection_is_resent_once_whatever_the_method() {
        let stale = Attempts {
            reused: true,
            ..attempts(1)
        };
        assert_eq!(decide(Setback::ClosedBeforeAnswer, stale, false), NOW);
        let again = Attempts {
            resent_after_close: true,
            ..stale
        };
        assert_eq!(
            decide(Setback::ClosedBeforeAnswer, again, false),
            Decision::GiveUp(GiveUp::NotResendable {
                already_resent: true
            })
        );
    }

    #[test]
    fn a_daemon_dying_on_a_fresh_connection_gets_only_idempotent_requests_again() {
        assert_eq!(decide(Setback::ClosedBeforeAnswer, attempts(1), true), NOW);
        let refused = decide(Setback::ClosedBeforeAnswer, attempts(1), false);
        assert_eq!(
            refused,
            Decision::GiveUp(GiveUp::NotResendable {
                already_resent: false
            })
        );
        assert_eq!(
            GiveUp::NotResendable {
                already_resent: false
            }
            .status(),
            crate::ffi::HTTP_BAD_GATEWAY
        );
        // The second crash on the same idempotent request is the app's, not bad luck.
        let resent = Attempts {
            resent_after_close: true,
            ..attempts(2)
        };
        assert_eq!(
            decide(Setback::ClosedBeforeAnswer, resent, true),
            Decision::GiveUp(GiveUp::NotResendable {
                already_resent: true
            })
        );
        // Time does not matter here: one resend is one more bounded connect.
        let late = Attempts {
            out_of_time: true,
            ..attempts(1)
        };
        assert_eq!(decide(Setback::ClosedBeforeAnswer, late, true), NOW);
    }

    #[test]
    fn a_restarting_group_is_retried_with_growing_pauses_until_connect_timeout() {
        let pause = |made| match decide(Setback::Restarting, attempts(made), false) {
            Decision::Resend { pause } => pause.as_millis(),
            other => panic!("attempt {made}: {other:?}"),
        };
        assert_eq!(pause(1), 5);
        assert_eq!(pause(2), 10);
        assert_eq!(pause(20), 100);
        assert_eq!(pause(63), 100);
        let give_up = Decision::GiveUp(GiveUp::KeptRestarting);
        assert_eq!(
            decide(Setback::Restarting, attempts(MAX_ATTEMPTS), false),
            give_up
        );
        let late = Attempts {
            out_of_time: true,
            ..attempts(3)
        };
        assert_eq!(decide(Setback::Restarting, late, true), give_up);
        assert_eq!(
            GiveUp::KeptRestarting.status(),
            crate::ffi::HTTP_SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn only_bodiless_get_head_and_options_are_idempotent() {
        for method in [&b"GET"[..], b"HEAD", b"OPTIONS"] {
            assert!(is_idempotent(method, 0));
            assert!(is_idempotent(method, req_flags::SCRIPT_RELOADING));
            assert!(!is_idempotent(method, req_flags::BODY_FOLLOWS));
        }
        for method in [&b"POST"[..], b"PUT", b"DELETE", b"PATCH", b"get", b""] {
            assert!(!is_idempotent(method, 0), "{method:?}");
        }
    }
}
