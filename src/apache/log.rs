//! Logging into Apache's error log. Messages always go through a constant `"%s"` format so
//! user text is never a format string; Apache checks the level itself.

use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::apache::virtual_host::VirtualHost;
use crate::ffi;

/// Apache's index of this module (set in register_hooks), so lines carry `[rwsgi:level]`
/// and obey `LogLevel rwsgi:...`.
static MODULE_INDEX: AtomicI32 = AtomicI32::new(-1);

pub fn set_module_index(index: c_int) {
    MODULE_INDEX.store(index, Ordering::Relaxed);
}

/// Log levels: the crate-wide ladder, mapped onto Apache's.
pub use crate::logging::Level;

fn raw_level(level: Level) -> c_int {
    match level {
        Level::Emerg => ffi::APLOG_EMERG,
        Level::Alert => ffi::APLOG_ALERT,
        Level::Crit => ffi::APLOG_CRIT,
        Level::Error => ffi::APLOG_ERR,
        Level::Warning => ffi::APLOG_WARNING,
        Level::Notice => ffi::APLOG_NOTICE,
        Level::Info => ffi::APLOG_INFO,
        Level::Debug => ffi::APLOG_DEBUG,
    }
}

fn to_cstring(msg: &str) -> CString {
    // An interior NUL would truncate the line: replace it rather than lose the message.
    CString::new(msg.replace('\0', "\\0")).unwrap_or_default()
}

/// Tells the crate-wide logger the most verbose level any server logs this module's lines
/// at, so lines below it are not even formatted (a debug line costs nothing when off).
/// Called after the configuration is read; forked children and daemons inherit it.
pub fn set_enabled_levels(main: VirtualHost) {
    let index = MODULE_INDEX.load(Ordering::Relaxed);
    let most_verbose = main
        .iter()
        .map(|s| s.module_log_level(index))
        .max()
        .unwrap_or(ffi::APLOG_WARNING);
    let level = [
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warning,
        Level::Error,
        Level::Crit,
        Level::Alert,
    ]
    .into_iter()
    .find(|&l| raw_level(l) <= most_verbose)
    .unwrap_or(Level::Emerg);
    crate::logging::set_max_level(level);
}

/// Log against a server (its `ErrorLog` and `LogLevel`).
pub fn server(server: VirtualHost, level: Level, msg: &str) {
    // SAFETY: a VirtualHost is a live server record.
    unsafe { log_raw(server.as_ptr(), raw_level(level), msg) };
}

/// Log during start-up so the line also reaches the terminal of `apache2 -t`.
pub fn startup(server: VirtualHost, level: Level, msg: &str) {
    // SAFETY: a VirtualHost is a live server record.
    unsafe { log_raw(server.as_ptr(), raw_level(level) | ffi::APLOG_STARTUP, msg) };
}

/// Log with no particular server: the main server's log once the configuration is read
/// (stderr before), as daemons, the supervisor and pool cleanups do.
pub fn process(level: Level, msg: &str) {
    // Without a server Apache filters by its default level (warning), so info lines from
    // daemons and the supervisor would vanish: use the main server's LogLevel instead.
    let main = VirtualHost::main().map_or(std::ptr::null_mut(), VirtualHost::as_ptr);
    // SAFETY: null or the live main server.
    unsafe { log_raw(main, raw_level(level), msg) };
}

/// # Safety
/// `server` is null or a live server record (the `VirtualHost` contract).
unsafe fn log_raw(server: *const ffi::server_rec, level: c_int, msg: &str) {
    let text = to_cstring(msg);
    // SAFETY: ap_log_error_ is variadic; we pass a constant "%s" format and one valid,
    // NUL-terminated string argument, so it reads exactly one `char *`. `server` is live or
    // null (the caller's promise), which Apache accepts (main server / stderr at start-up).
    unsafe {
        ffi::ap_log_error_(
            c"mod_rwsgi".as_ptr(),
            0,
            MODULE_INDEX.load(Ordering::Relaxed),
            level,
            0,
            server,
            c"%s".as_ptr(),
            text.as_ptr(),
        );
    }
}

/// [`request`] with the line formatted only when `level` can reach a log:
/// `log::request_at!(r, Level::Info, "RW0123: ... {x}")`.
macro_rules! request_at {
    ($r:expr, $level:expr, $($fmt:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            $crate::apache::log::request($r, level, &::std::format!($($fmt)+));
        }
    }};
}
pub(crate) use request_at;

/// [`process`] with the line formatted only when `level` can reach a log.
macro_rules! process_at {
    ($level:expr, $($fmt:tt)+) => {{
        let level: $crate::logging::Level = $level;
        if $crate::logging::enabled(level) {
            $crate::apache::log::process(level, &::std::format!($($fmt)+));
        }
    }};
}
pub(crate) use process_at;

/// Log against a request (adds the client address, as mod_wsgi's request-time lines do).
pub(crate) fn request(r: &crate::apache::request::Request<'_>, level: Level, msg: &str) {
    let text = to_cstring(msg);
    // SAFETY: as in `log_raw`: constant "%s" format, one valid string argument; `r` wraps
    // the live request Apache passed to the running hook.
    unsafe {
        ffi::ap_log_rerror_(
            c"mod_rwsgi".as_ptr(),
            0,
            MODULE_INDEX.load(Ordering::Relaxed),
            raw_level(level),
            0,
            r.as_ptr(),
            c"%s".as_ptr(),
            text.as_ptr(),
        );
    }
}
