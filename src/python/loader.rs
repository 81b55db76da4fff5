//! WSGI script loading: each script is exec'd as module `_mod_wsgi_<md5(path)>` (plus
//! `_<md5(group)>` for a named application group) with `__file__` and `__mtime__` (the file's
//! mtime in µs, an int) set and the module in sys.modules, like mod_wsgi. One lock per
//! (script, group) makes concurrent first requests load it once; a failed load is logged with
//! its traceback and retried after a back-off (1 s, doubling up to 30 s; at once when the
//! script's mtime changes, i.e. it was fixed and touched), so a broken script is not re-run by
//! every request. [`reload_reason`] is mod_wsgi's check whether a loaded script must be
//! reloaded; [`Loader::discard`] drops it so the next [`Loader::get`] imports it again.
//!
//! Locks here are only waited for while detached from Python (a loader holds its script's lock
//! while it runs the script under the GIL).
//!
//! A script's path is bytes (a `Path`), as Apache's `r->filename` is: the file is read and
//! stat'ed by those bytes, the module name is the md5 of them, and Python sees them as
//! `os.fsdecode(bytes)` (surrogateescape), as mod_wsgi does. Log lines show the path lossily
//! (`Path::display`: a byte that is not UTF-8 becomes U+FFFD).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule};

use super::request::lock;
use super::{interp_context, log, log_prefix, python_error, subinterp};
use crate::logging::Level;

pub(crate) struct Loaded {
    /// Released by [`Loaded`]'s drop, in the module's interpreter.
    pub module: std::mem::ManuallyDrop<Py<PyModule>>,
    /// The script file's mtime when it was loaded.
    pub mtime: SystemTime,
}

impl Drop for Loaded {
    /// The last holder of a script's `Arc<Loaded>` is normally the loader or a caller attached
    /// in the group's interpreter (the module is released at once, there). A request thread
    /// outside Python that drops the last reference (its request ended after the script was
    /// discarded), or a drop during the process's shutdown, leaks the module reference
    /// instead: pyo3 is built without its deferred reference pool (`.cargo/config.toml`),
    /// which would decref it at some later attach of any interpreter, and attaching from a
    /// destructor could meet an interpreter being finalised.
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used afterwards.
        let module = unsafe { std::mem::ManuallyDrop::take(&mut self.module) };
        if super::subinterp::this_thread_is_attached() {
            drop(module);
        } else {
            std::mem::forget(module);
        }
    }
}

struct Slot {
    path: PathBuf,
    group: String,
    loaded: Mutex<Option<Arc<Loaded>>>,
    /// The mtime of the loaded version, for `changed()` without waiting on a loader.
    mtime: Mutex<Option<SystemTime>>,
    /// The last failed load, while the script has not loaded since.
    failure: Mutex<Option<LoadFailure>>,
    /// A module of this script was loaded before: the next load is a reload.
    ever_loaded: AtomicBool,
    /// When the loaded module's load began, in µs since the Unix epoch (0: not loaded).
    loaded_us: AtomicU64,
}

/// A script that failed to load: not retried before `retry_at` unless its mtime changes.
struct LoadFailure {
    mtime: Option<SystemTime>,
    retry_at: Instant,
    delay: Duration,
}

const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

impl LoadFailure {
    /// The failure to record for a load that failed at `now` with the script at `mtime`:
    /// the back-off doubles while the script is unchanged and starts over when it changed.
    fn after(last: Option<&LoadFailure>, mtime: Option<SystemTime>, now: Instant) -> LoadFailure {
        let delay = match last {
            Some(last) if last.mtime == mtime => (last.delay * 2).min(MAX_RETRY_DELAY),
            _ => FIRST_RETRY_DELAY,
        };
        LoadFailure {
            mtime,
            retry_at: now + delay,
            delay,
        }
    }

    /// Whether a request at `now`, finding the script at `mtime`, must not load it again yet.
    fn holds_back(&self, now: Instant, mtime: Option<SystemTime>) -> bool {
        now < self.retry_at && mtime == self.mtime
    }
}

#[derive(Default)]
pub(crate) struct Loader {
    /// By [`with_slot_key`]: the script's path as it names a module, then the group.
    slots: Mutex<HashMap<Box<[u8]>, Arc<Slot>>>,
    groups: Mutex<HashSet<String>>,
    groups_noticed: AtomicBool,
}

fn mtime_of(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// The script file's mtime, for [`reload_reason`]; call without the GIL.
pub(crate) fn file_mtime(path: &(impl AsRef<Path> + ?Sized)) -> std::io::Result<SystemTime> {
    mtime_of(path.as_ref())
}

/// The path as Python shows a file name: `os.fsdecode` of its bytes (surrogateescape), as
/// mod_wsgi's `__file__` and `reload_required(resource)` argument are.
pub(crate) fn fs_path<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    py.import("os")?
        .getattr("fsdecode")?
        .call1((PyBytes::new(py, path.as_os_str().as_bytes()),))
}

impl Loader {
    fn slot(&self, path: &Path, group: &str) -> Arc<Slot> {
        // One slot per module: with WSGICaseSensitivity Off, two spellings of a path are
        // one script (its first spelling is kept in the slot).
        let found = with_slot_key(path, group, |key| {
            let slots = lock(&self.slots);
            slots.get(key).cloned()
        });
        if let Some(slot) = found {
            return slot;
        }
        let key: Box<[u8]> = with_slot_key(path, group, |key| key.into());
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot {
            path: path.to_path_buf(),
            group: group.to_string(),
            loaded: Mutex::new(None),
            mtime: Mutex::new(None),
            failure: Mutex::new(None),
            ever_loaded: AtomicBool::new(false),
            loaded_us: AtomicU64::new(0),
        });
        slots.insert(key, Arc::clone(&slot));
        drop(slots);
        self.note_group(group);
        slot
    }

    fn note_group(&self, group: &str) {
        // Groups in sub-interpreters share nothing: only the main interpreter's are noted.
        if subinterp::uses_sub_interpreter(group) {
            return;
        }
        let mut groups = lock(&self.groups);
        if groups.insert(group.to_string())
            && groups.len() > 1
            && !self.groups_noticed.swap(true, Ordering::Relaxed)
        {
            let mut names: Vec<String> = groups.iter().map(|g| format!("'{g}'")).collect();
            names.sort();
            drop(groups);
            log(
                Level::Info,
                &format!(
                    "RW0097: {}This process hosts more than one application group ({}). mod_rwsgi runs \
                     every application group in the main Python interpreter (no \
                     sub-interpreters): each group gets its own copy of the WSGI script module, \
                     but they share sys.modules and all other global state.",
                    log_prefix(),
                    names.join(", ")
                ),
            );
        }
    }

    /// The loaded script, loading it if it is not (or no longer) loaded. Call detached from
    /// Python. `Err` carries the message already logged.
    pub(crate) fn get(
        &self,
        path: &(impl AsRef<Path> + ?Sized),
        group: &str,
    ) -> Result<Arc<Loaded>, String> {
        let path = path.as_ref();
        let slot = self.slot(path, group);
        let mut loaded = lock(&slot.loaded);
        if let Some(current) = loaded.as_ref() {
            return Ok(Arc::clone(current));
        }
        if let Some(failure) = lock(&slot.failure).as_ref() {
            let now = Instant::now();
            if failure.holds_back(now, mtime_of(path).ok()) {
                let path = path.display();
                let msg = format!(
                    "{}WSGI script '{path}'{} failed to load; not retrying for another {:.1} s \
                     (its traceback is logged above; fix and touch the script to retry at once).",
                    log_prefix(),
                    group_text(group),
                    (failure.retry_at - now).as_secs_f64()
                );
                log(Level::Error, &format!("RW0098: {msg}"));
                return Err(msg);
            }
        }
        let result = self.load(&slot, &mut loaded, path, group);
        let mut failure = lock(&slot.failure);
        match &result {
            Ok(_) => *failure = None,
            Err(_) => {
                let next =
                    LoadFailure::after(failure.as_ref(), mtime_of(path).ok(), Instant::now());
                *failure = Some(next);
            }
        }
        result
    }

    /// Loads (or reloads) the script into `loaded`; `Err` carries the message already logged.
    fn load(
        &self,
        slot: &Slot,
        loaded: &mut Option<Arc<Loaded>>,
        path: &Path,
        group: &str,
    ) -> Result<Arc<Loaded>, String> {
        *lock(&slot.mtime) = None;
        slot.loaded_us.store(0, Ordering::Relaxed);
        let old = loaded.take();
        let began_us = crate::util::now_us();
        let read = std::fs::read(path).and_then(|src| Ok((src, mtime_of(path)?)));
        let (source, mtime) = match read {
            Ok(r) => r,
            Err(e) => {
                let path = path.display();
                let msg = format!(
                    "{}Could not read or compile WSGI script '{path}' for {}: {e}. It must \
                     exist and be readable by the daemon user.",
                    log_prefix(),
                    interp_context(group)
                );
                log(Level::Error, &format!("RW0099: {msg}"));
                let _ = subinterp::attach(group, |_py| drop(old));
                return Err(msg);
            }
        };
        let reload = slot.ever_loaded.load(Ordering::Relaxed);
        // In the group's interpreter (made now if this is its first script).
        let result = subinterp::attach(group, |py| {
            drop(old);
            exec_script(py, path, group, &source, mtime, reload)
        });
        let module = result??;
        slot.ever_loaded.store(true, Ordering::Relaxed);
        let fresh = Arc::new(Loaded {
            module: std::mem::ManuallyDrop::new(module),
            mtime,
        });
        *loaded = Some(Arc::clone(&fresh));
        *lock(&slot.mtime) = Some(mtime);
        slot.loaded_us.store(began_us.max(1), Ordering::Relaxed);
        Ok(fresh)
    }

    /// Drops `current` (if it is still the loaded module of the script) so that the next
    /// [`Loader::get`] imports the script again; `why` is logged. Call detached from Python.
    pub(crate) fn discard(
        &self,
        path: &(impl AsRef<Path> + ?Sized),
        group: &str,
        current: &Arc<Loaded>,
        why: &str,
    ) {
        let path = path.as_ref();
        let slot = self.slot(path, group);
        let mut loaded = lock(&slot.loaded);
        if loaded.as_ref().is_some_and(|l| Arc::ptr_eq(l, current)) {
            let path = path.display();
            super::py_log_at!(
                Level::Info,
                "RW0100: {}WSGI script '{path}'{} will be re-imported: {why}.",
                log_prefix(),
                group_text(group)
            );
            let old = loaded.take();
            *lock(&slot.mtime) = None;
            slot.loaded_us.store(0, Ordering::Relaxed);
            let _ = subinterp::attach(group, |_py| drop(old));
        }
    }

    /// Has the script `path` of `group` changed (or vanished) on disk since it was loaded?
    /// No GIL. None when it is not loaded; none either when `seen_mtime_us` (an mtime another
    /// process's stat just found, 0 = none) is the loaded version's; else one stat of the
    /// file (a stale `seen_mtime_us` never counts as a change by itself).
    pub(crate) fn script_changed(&self, path: &Path, group: &str, seen_mtime_us: u64) -> bool {
        let slot = with_slot_key(path, group, |key| lock(&self.slots).get(key).cloned());
        slot.is_some_and(|slot| {
            let loaded = *lock(&slot.mtime);
            let seen_is_loaded =
                seen_mtime_us != 0 && loaded.and_then(micros_since_epoch) == Some(seen_mtime_us);
            !seen_is_loaded && slot_changed(&slot)
        })
    }

    /// Is the script `path` of `group` loaded here by a load that began before `t_us` (µs
    /// since the Unix epoch)? No GIL, no stat.
    pub(crate) fn loaded_before(&self, path: &Path, group: &str, t_us: u64) -> bool {
        let slot = with_slot_key(path, group, |key| lock(&self.slots).get(key).cloned());
        slot.is_some_and(|slot| {
            let at = slot.loaded_us.load(Ordering::Relaxed);
            at != 0 && at < t_us
        })
    }

    /// (script, application group) of every script requested so far, sorted.
    pub(crate) fn loaded(&self) -> Vec<(PathBuf, String)> {
        let mut out: Vec<(PathBuf, String)> = lock(&self.slots)
            .values()
            .map(|slot| (slot.path.clone(), slot.group.clone()))
            .collect();
        out.sort();
        out
    }
}

/// Calls `f` with the key of the slot of (`path`, `group`): the path's bytes as they name a
/// module ([`fold_case`]), a NUL (which no path contains), the group. Built in a buffer this
/// thread keeps: looked up on every request, it allocates nothing (and is hashed as bytes,
/// not as a `Path`'s components).
fn with_slot_key<R>(path: &Path, group: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // `f` only looks the key up: it never comes back here while the buffer is borrowed.
    KEY.with_borrow_mut(|key| {
        key.clear();
        push_module_path(key, path);
        key.push(0);
        key.extend_from_slice(group.as_bytes());
        f(key)
    })
}

/// `t` in µs since the Unix epoch, as APR gives a file's mtime (None before the epoch).
fn micros_since_epoch(t: SystemTime) -> Option<u64> {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_micros()).ok()
}

/// A loaded slot whose file's mtime is no longer the one it was loaded with.
fn slot_changed(slot: &Slot) -> bool {
    let loaded_mtime = *lock(&slot.mtime);
    loaded_mtime.is_some_and(|t| mtime_of(&slot.path).map_or(true, |now| now != t))
}

fn group_text(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(" (application group '{group}')")
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    use std::fmt::Write;
    let digest = md5::Md5::digest(bytes);
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The path's bytes as they name a module: lower-cased (ASCII letters, as Apache's
/// `ap_str_tolower` in mod_wsgi) with WSGICaseSensitivity Off, for case-insensitive file
/// systems.
fn fold_case(path: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    push_module_path(&mut bytes, path);
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Appends the path's bytes as [`fold_case`] gives them.
fn push_module_path(out: &mut Vec<u8>, path: &Path) {
    let start = out.len();
    out.extend_from_slice(path.as_os_str().as_bytes());
    if !super::settings::process_info().case_sensitivity {
        out[start..].make_ascii_lowercase();
    }
}

/// `_mod_wsgi_<md5 of the path's bytes>`, plus `_<md5(group)>` for a named application
/// group. With WSGICaseSensitivity Off the path is lower-cased first, so one file reached
/// by two spellings is one module.
pub(crate) fn module_name(path: &(impl AsRef<Path> + ?Sized), group: &str) -> String {
    let folded = fold_case(path.as_ref());
    let mut name = format!("_mod_wsgi_{}", md5_hex(folded.as_os_str().as_bytes()));
    if !group.is_empty() {
        name.push('_');
        name.push_str(&md5_hex(group.as_bytes()));
    }
    name
}

/// The file's mtime as mod_wsgi keeps it in `__mtime__`: µs since the epoch.
fn mtime_us(mtime: SystemTime) -> i64 {
    mtime
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// mod_wsgi's reload check of a loaded script (`wsgi_reload_required`), under the GIL: why
/// it must be reloaded, or None. Reloaded when its module has no integer `__mtime__` or the
/// file's mtime differs from it, or when its module-level `reload_required(resource)` (called
/// with the script's path, as mod_wsgi passes the request's file) returns a true value. An
/// exception in `reload_required` is logged with its traceback and does not force a reload.
///
/// `file_mtime` is the script file's mtime, taken (by [`file_mtime`]) before the GIL was.
pub(crate) fn reload_reason(
    py: Python<'_>,
    loaded: &Loaded,
    file_mtime: &std::io::Result<SystemTime>,
    path: &Path,
    group: &str,
) -> Option<String> {
    let dict = loaded.module.bind(py).dict();
    // The interpreter's interned names (fixed strings), or made now without its state.
    let state = super::interp_state::current(py).ok();
    let name = |which: super::environ::Fixed, text: &str| match &state {
        Some(state) => state.fixed(py, which).clone(),
        None => pyo3::types::PyString::intern(py, text),
    };
    let recorded = match dict.get_item(name(super::environ::Fixed::mtime, "__mtime__")) {
        Ok(Some(value)) => value.extract::<i64>().ok(),
        _ => return Some("its module no longer has __mtime__".into()),
    };
    let Some(recorded) = recorded else {
        return Some("its module's __mtime__ is not an integer".into());
    };
    match file_mtime {
        Ok(now) if mtime_us(*now) == recorded => {}
        Ok(_) => return Some("its modification time changed".into()),
        Err(e) => return Some(format!("it can no longer be read ({e})")),
    }
    let hook = dict
        .get_item(name(
            super::environ::Fixed::reload_required,
            "reload_required",
        ))
        .ok()
        .flatten()?;
    let answer = fs_path(py, path).and_then(|resource| hook.call1((resource,)));
    match answer.and_then(|answer| answer.is_truthy()) {
        Ok(true) => Some("its reload_required() returned a true value".into()),
        Ok(false) => None,
        Err(e) => {
            let msg = python_error(py, &e, path, group);
            super::log_detached(py, Level::Error, &format!("RW0101: {msg}"));
            None
        }
    }
}

fn exec_script(
    py: Python<'_>,
    path: &Path,
    group: &str,
    source: &[u8],
    mtime: SystemTime,
    reload: bool,
) -> Result<Py<PyModule>, String> {
    // mod_wsgi's line, on every load, before the script runs.
    let msg = format!(
        "{}{} WSGI script '{}' into {}.",
        log_prefix(),
        if reload { "Reloading" } else { "Loading" },
        path.display(),
        interp_context(group)
    );
    super::log_detached(py, Level::Info, &format!("RW0102: {msg}"));
    let mut name = None;
    let mut compiled = false;
    let result = (|| -> PyResult<Bound<'_, PyModule>> {
        let module_name = module_name(path, group);
        let modules = py.import("sys")?.getattr("modules")?;
        let module = PyModule::new(py, &module_name)?;
        let file = fs_path(py, path)?;
        module.setattr("__file__", &file)?;
        module.setattr("__mtime__", mtime_us(mtime))?;
        let builtins = py.import("builtins")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dont_inherit", true)?;
        let code = builtins
            .getattr("compile")?
            .call((PyBytes::new(py, source), &file, "exec"), Some(&kwargs))?;
        compiled = true;
        modules.set_item(&module_name, &module)?;
        name = Some(module_name);
        builtins.getattr("exec")?.call1((code, module.dict()))?;
        Ok(module)
    })();
    match result {
        Ok(module) => Ok(module.unbind()),
        Err(e) => {
            if let Some(name) = name
                && let Ok(modules) = py.import("sys").and_then(|s| s.getattr("modules"))
            {
                let _ = modules.del_item(name);
            }
            // A script that raised SystemExit as it ran: mod_wsgi's one line, no traceback.
            if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
                let msg = format!(
                    "{}SystemExit exception raised when doing exec of Python script file '{}'.",
                    log_prefix(),
                    path.display()
                );
                super::log_detached(py, Level::Error, &format!("RW0163: {msg}"));
                return Err(msg);
            }
            // mod_wsgi's two lines: what failed, then the exception and its traceback.
            let what = if compiled {
                format!("Unable to execute Python script file '{}'.", path.display())
            } else {
                format!(
                    "Could not read or compile WSGI script '{}' for {}.",
                    path.display(),
                    interp_context(group)
                )
            };
            let msg = format!(
                "{}{what}\n{}",
                log_prefix(),
                python_error(py, &e, path, group)
            );
            super::log_detached(py, Level::Error, &format!("RW0103: {msg}"));
            // An extension module that loads only in the main interpreter: say which, and how
            // to run the application there.
            if let Some(hint) = subinterp::explain_refusal(
                py,
                &e,
                group,
                &format!("WSGI script '{}' could not be loaded", path.display()),
            ) {
                return Err(format!("{msg}\n{hint}"));
            }
            Err(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digests mod_wsgi's module names use (checked against Python's hashlib).
    #[test]
    fn md5_hex_is_the_lower_case_hex_md5_of_the_bytes() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            md5_hex(b"/srv/site/app.wsgi"),
            "308a4c2afd30b0a08437131f64d1eccd"
        );
        assert_eq!(
            md5_hex(b"example.com|/app"),
            "a32aceaab2a887d9cb8b6213403a42c9"
        );
    }

    #[test]
    fn a_failed_load_is_held_back_until_its_delay_passes_or_the_script_changes() {
        let t0 = Instant::now();
        let m1 = Some(UNIX_EPOCH + Duration::from_secs(1));
        let m2 = Some(UNIX_EPOCH + Duration::from_secs(2));
        let first = LoadFailure::after(None, m1, t0);
        assert_eq!(first.delay, FIRST_RETRY_DELAY);
        assert!(first.holds_back(t0, m1));
        assert!(first.holds_back(t0 + Duration::from_millis(999), m1));
        assert!(
            !first.holds_back(t0 + FIRST_RETRY_DELAY, m1),
            "the back-off ended"
        );
        assert!(
            !first.holds_back(t0, m2),
            "a touched script is retried at once"
        );
        assert!(!first.holds_back(t0, None), "so is one that is gone");
    }

    #[test]
    fn the_back_off_doubles_while_the_script_is_unchanged_up_to_the_cap() {
        let t0 = Instant::now();
        let m1 = Some(UNIX_EPOCH + Duration::from_secs(1));
        let mut last = LoadFailure::after(None, m1, t0);
        let mut delays = vec![last.delay.as_secs()];
        for _ in 0..6 {
            last = LoadFailure::after(Some(&last), m1, t0);
            delays.push(last.delay.as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        let changed = LoadFailure::after(Some(&last), Some(UNIX_EPOCH), t0);
        assert_eq!(
            changed.delay, FIRST_RETRY_DELAY,
            "a changed script starts over"
        );
    }
}
