//! A minimal logging facade shared by the daemon and Python layers, which must not call
//! Apache directly: `module.rs` installs a backend that writes to Apache's error log. Until
//! then (and in unit tests) lines go to stderr.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Installs the backend once per process (a forked daemon inherits it).
pub fn set_backend(backend: Backend) {
    let _ = BACKEND.set(backend);
}

pub fn log(level: Level, msg: &str) {
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
