//! A minimal logging facade shared by the daemon and Python layers, which must not call
//! Apache directly: `module::hooks` installs a backend that writes to Apache's error log. Until
//! then (and in unit tests) lines go to stderr.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

pub type Backend = fn(Level, &str);

/// The most verbose level any server logs at (`Level as u8`); everything until the
/// configuration has been read.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Debug as u8);

/// Sets the most verbose level that can reach a log (from the server's LogLevel).
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` can reach any log: check it before formatting a line that is
/// often off (debug), so it costs one load when off.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// The most verbose level that can reach a log (what [`set_max_level`] set).
pub fn max_level() -> Level {
    const LADDER: [Level; 8] = [
        Level::Emerg,
        Level::Alert,
        Level::Crit,
        Level::Error,
        Level::Warning,
        Level::Notice,
        Level::Info,
        Level::Debug,
    ];
    LADDER[usize::from(MAX_LEVEL.load(Ordering::Relaxed)).min(LADDER.len() - 1)]
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Installs the backend once per process (a forked daemon inherits it).
pub fn set_backend(backend: Backend) {
    let _ = BACKEND.set(backend);
}

/// [`log`] with the line formatted only when `level` can reach a log, so a debug or info
/// line on a per-request path costs one load when off:
/// `logging::log_at!(Level::Debug, "RW0123: ... {x}")`.
macro_rules! log_at {
    ($level:expr, $($fmt:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            $crate::logging::log(level, &::std::format!($($fmt)+));
        }
    }};
}
pub(crate) use log_at;

pub fn log(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    match BACKEND.get() {
        Some(backend) => backend(level, msg),
        None => eprintln!("[rwsgi:{level:?}] {msg}"),
    }
}

pub fn error(msg: &str) {
    log(Level::Error, msg);
}

pub fn warning(msg: &str) {
    log(Level::Warning, msg);
}

pub fn notice(msg: &str) {
    log(Level::Notice, msg);
}

pub fn info(msg: &str) {
    log(Level::Info, msg);
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_more_verbose_than_the_maximum_are_off() {
        set_max_level(Level::Info);
        assert!(enabled(Level::Error) && enabled(Level::Info));
        assert!(!enabled(Level::Debug));
        // A line that is off is not even formatted: its arguments are not evaluated.
        let evaluated = std::cell::Cell::new(0);
        let count = || {
            evaluated.set(evaluated.get() + 1);
            "x"
        };
        log_at!(Level::Debug, "RW0000: {}", count());
        assert_eq!(evaluated.get(), 0);
        log_at!(Level::Info, "RW0000: test line {}", count());
        assert_eq!(evaluated.get(), 1);
        set_max_level(Level::Debug);
        assert!(enabled(Level::Debug));
    }
}
