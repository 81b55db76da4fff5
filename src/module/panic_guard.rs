//! The panic guard every `extern "C"` entry point runs its body in: a panic must never
//! unwind into Apache (that aborts the whole child and all its connections).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::apache::log::{self, Level};

/// Runs `f`, turning a panic into `fallback` and an error-log line.
pub(crate) fn guard<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(panic) => {
            let detail = crate::util::panic_message(&*panic).unwrap_or_default();
            log::process(
                Level::Crit,
                &format!("RW0012: mod_rwsgi: panic in {what}: {detail}"),
            );
            fallback
        }
    }
}
