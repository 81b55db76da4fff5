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

impl Level {
    /// Every level, most severe first: `ALL[level as usize] == level`.
    pub const ALL: [Level; 8] = [
        Level::Emerg,
        Level::Alert,
        Level::Crit,
        Level::Error,
        Level::Warning,
        Level::Notice,
        Level::Info,
        Level::Debug,
    ];
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
    Level::ALL[usize::from(MAX_LEVEL.load(Ordering::Relaxed)).min(Level::ALL.len() - 1)]
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Installs the backend once per process (a forked daemon inherits it).
pub fn set_backend(backend: Backend) {
    let _ = BACKEND.set(backend);
}

/// A backend for a process that has no Apache to log through (a daemon host, see
/// `daemon::host`): Apache's default error-log format on stderr, which the host inherits as
/// the server's error log. One write per line, so lines of several threads do not mix.
pub fn stderr_backend(level: Level, msg: &str) {
    use std::io::Write;
    let mut text = String::new();
    let stamp = local_timestamp();
    let pid = std::process::id();
    // SAFETY: pthread_self has no preconditions.
    let tid = unsafe { libc::pthread_self() } as u64;
    for line in msg.split('\n') {
        text.push_str(&apache_line(&stamp, level, pid, tid, line));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// One error-log line as Apache writes it with its default ErrorLogFormat.
fn apache_line(stamp: &str, level: Level, pid: u32, tid: u64, msg: &str) -> String {
    let name = match level {
        Level::Emerg => "emerg",
        Level::Alert => "alert",
        Level::Crit => "crit",
        Level::Error => "error",
        Level::Warning => "warn",
        Level::Notice => "notice",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    format!(
        "[{stamp}] [rwsgi:{name}] [pid {pid}:tid {tid}] {}\n",
        escape_like_apache(msg)
    )
}

/// The message as Apache writes it into its error log: control characters, DEL and every
/// byte above 0x7e escaped (`\t`, `\xc3\xa9`), backslashes doubled, quotes kept.
fn escape_like_apache(msg: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(msg.len());
    for &b in msg.as_bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x0b => out.push_str("\\v"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Now in local time as Apache's error log shows it: `Sun Dec 06 15:30:08.123456 2026`.
fn local_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = libc::time_t::try_from(now.as_secs()).unwrap_or(0);
    // SAFETY: localtime_r writes only into `tm`, which is a valid, writable struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm, as above.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return format!("{}.{:06}", now.as_secs(), now.subsec_micros());
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02}.{:06} {}",
        DAYS[usize::try_from(tm.tm_wday).unwrap_or(0) % 7],
        MONTHS[usize::try_from(tm.tm_mon).unwrap_or(0) % 12],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros(),
        tm.tm_year + 1900
    )
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
    fn host_lines_have_apache_s_default_format() {
        assert_eq!(
            apache_line(
                "Sun Dec 06 15:30:08.123456 2026",
                Level::Warning,
                12,
                34,
                "RW0000: x"
            ),
            "[Sun Dec 06 15:30:08.123456 2026] [rwsgi:warn] [pid 12:tid 34] RW0000: x\n"
        );
        assert_eq!(
            escape_like_apache("été \"q\" a\\b\t\u{7f}"),
            "\\xc3\\xa9t\\xc3\\xa9 \"q\" a\\\\b\\t\\x7f"
        );
        let stamp = local_timestamp();
        let words: Vec<&str> = stamp.split(' ').collect();
        assert_eq!(words.len(), 5, "{stamp}");
        assert_eq!(words[3].len(), "15:30:08.123456".len(), "{stamp}");
    }

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
