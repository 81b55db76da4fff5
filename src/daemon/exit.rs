//! How a daemon process ends, as its exit status: the supervisor matches these instead of
//! numbers, and tells a planned restart from a stop and from a failure.

/// A daemon's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonExit {
    /// Stopped when told to (SIGTERM, or the daemon manager is gone).
    Stopped,
    /// Ended to be replaced (its successor already serves or is starting): restart at once,
    /// with no crash-loop backoff.
    PlannedRestart,
    /// Could not serve at all (threads, socket) or lost the GIL for deadlock-timeout.
    Failed,
    /// Refused to run: privileges could not be dropped, or another step before Python failed.
    Unprepared,
    /// A panic reached the top of the process (a mod_rwsgi bug).
    Panicked,
}

impl DaemonExit {
    pub const fn code(self) -> i32 {
        match self {
            DaemonExit::Stopped => 0,
            DaemonExit::Failed => 1,
            DaemonExit::Unprepared => 2,
            // Not a small number: an app's os._exit(3) must not pass for a planned restart.
            DaemonExit::PlannedRestart => 86,
            DaemonExit::Panicked => 70,
        }
    }

    /// The exit for a status, if it is one of ours (anything else: the app called
    /// `os._exit` or similar).
    pub const fn from_code(code: i32) -> Option<DaemonExit> {
        Some(match code {
            0 => DaemonExit::Stopped,
            1 => DaemonExit::Failed,
            2 => DaemonExit::Unprepared,
            86 => DaemonExit::PlannedRestart,
            70 => DaemonExit::Panicked,
            _ => return None,
        })
    }

    /// Whether the supervisor restarts without counting it as a crash.
    pub const fn is_orderly(self) -> bool {
        matches!(self, DaemonExit::Stopped | DaemonExit::PlannedRestart)
    }
}

/// How the daemon manager process ends, as its exit status (the Apache parent restarts it
/// whatever the status, unless Apache is stopping; the status is for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagerExit {
    /// Stopped when told to, after its daemons ended (or were killed), or its parent was
    /// already gone when it started.
    Stopped,
    /// Could not set up its signal handling.
    Failed,
    /// A panic reached the top of the process (a mod_rwsgi bug).
    Panicked,
}

impl ManagerExit {
    /// The same numbers as the daemons' exits of the same meaning.
    pub const fn code(self) -> i32 {
        match self {
            ManagerExit::Stopped => DaemonExit::Stopped.code(),
            ManagerExit::Failed => DaemonExit::Failed.code(),
            ManagerExit::Panicked => DaemonExit::Panicked.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DaemonExit, ManagerExit};

    #[test]
    fn manager_codes_are_unchanged() {
        assert_eq!(
            [
                ManagerExit::Stopped,
                ManagerExit::Failed,
                ManagerExit::Panicked
            ]
            .map(ManagerExit::code),
            [0, 1, 70]
        );
    }

    #[test]
    fn codes_round_trip_and_only_orderly_ends_skip_backoff() {
        for exit in [
            DaemonExit::Stopped,
            DaemonExit::PlannedRestart,
            DaemonExit::Failed,
            DaemonExit::Unprepared,
            DaemonExit::Panicked,
        ] {
            assert_eq!(DaemonExit::from_code(exit.code()), Some(exit));
        }
        assert_eq!(DaemonExit::from_code(42), None);
        assert!(DaemonExit::PlannedRestart.is_orderly() && DaemonExit::Stopped.is_orderly());
        assert!(!DaemonExit::Failed.is_orderly() && !DaemonExit::Panicked.is_orderly());
    }
}
