//! Application groups as CPython sub-interpreters, as mod_wsgi runs them: in a daemon process
//! and in an Apache child (embedded mode: WSGI applications without a daemon group, and the
//! phase scripts) every application group other than `%{GLOBAL}` ("") gets its own
//! sub-interpreter, created on first use (its own `sys.modules`, `sys.path` additions,
//! `mod_wsgi` module, `os.environ` copy), ended when the process exits ([`end_all`]).
//! `%{GLOBAL}` is the main interpreter. The `<WSGIInterpreterOptions>` sections matching the
//! group (`crate::config::resolve`) decide its stdin/stdout/signal restrictions, python-path
//! layers and switch interval when it is set up (`interpreter::setup_sub_interpreter`).
//! Free-threaded builds run every group in the main interpreter.
//!
//! By default (WSGIPerInterpreterGIL Off) the interpreters are *legacy* ones: they share the
//! main interpreter's GIL and object allocator (Py_NewInterpreterFromConfig with
//! use_main_obmalloc=1, gil=SHARED, fork, exec and threads allowed,
//! check_multi_interp_extensions=0 on 3.12+; Py_NewInterpreter on 3.11). With On (3.12+) a
//! group's interpreter has its own GIL and allocator (see "Own GIL" below); the request path
//! is the same code for both: everything it hands to Python is made per interpreter.
//!
//! # How code runs in a sub-interpreter ([`attach`])
//!
//! Each (worker thread, sub-interpreter) pair has a `PyThreadState`, made on the thread's
//! first use of that interpreter and kept for the thread's life (as the thread keeps its main
//! interpreter state, [`keep_thread_state`]). To run `f` in group G's interpreter:
//!
//! 1. `Python::attach` as usual: the thread takes the GIL with its main-interpreter thread
//!    state M (PyGILState_Ensure) and pyo3's attach count becomes > 0.
//! 2. `PyThreadState_Swap(S)`, S = the thread's state in G. The thread holds the GIL after
//!    it: the lock is the same for every interpreter, whether the swap keeps it (3.11) or
//!    releases and takes it again (newer CPythons detach the old state and attach the new).
//!    (This replaces the route of entering pyo3 through a `#[pyfunction]`'s trampoline after
//!    PyEval_RestoreThread(S): the swap happens inside an ordinary attach, so pyo3's own
//!    guard, not a trampoline, keeps the attach count raised.)
//! 3. `f(py)`. pyo3 sees an attached thread: nested `Python::attach` calls are "Assumed"
//!    (pyo3 0.30.1 `src/internal/state.rs`, `AttachGuard::try_attach`: a count > 0 returns
//!    `assume()` without any PyGILState call), and `py.detach` saves and restores whatever
//!    state is current (`SuspendAttach::new`/`drop`: PyEval_SaveThread, then
//!    PyEval_RestoreThread of the state it returned), i.e. S. Python code called from `f`
//!    enters pyo3 through its trampolines, which also only `assume()`.
//! 4. `PyThreadState_Swap(M)` (a guard, so it also happens when `f` panics), then pyo3's
//!    outermost guard ends with PyGILState_Release, which requires M to be current again
//!    (`AttachGuard::drop`). On 3.12+ activating S had bound the thread's PyGILState state to
//!    S (CPython `tstate_activate`/`bind_gilstate_tstate`); activating M again binds it back,
//!    so a later `Python::attach` of this thread resumes the main interpreter, not G.
//!
//! A `Python::attach` inside a `py.detach` inside `f` calls PyGILState_Ensure: on 3.12+ that
//! resumes S (the bound state), on 3.11 M (the first state of the thread wins there); either
//! way a complete, valid thread state of this thread, and Release puts it back.
//!
//! pyo3 is built without its deferred reference pool (`.cargo/config.toml`): a `Py<T>`
//! dropped detached would otherwise be decref'd at the next attach of any thread, in whichever
//! interpreter that is (unsound with own GILs); pyo3 now leaks it instead, so every `Py<T>` is
//! dropped attached in its own interpreter (`loader::Loaded` leaks the reference of a script
//! module whose last holder drops it detached: a request that outlived a reload, or
//! shutdown; a closure's capture freed inside Py_FinalizeEx is leaked by pyo3). Service scripts (threads=0) stay
//! in the main interpreter, which alone runs the signal handlers that stop them. A request
//! timeout's `RequestTimeout` is raised in the worker's state in every interpreter
//! (PyThreadState_SetAsyncExc searches the current interpreter's threads only, and the
//! monitor does not know which one the request runs in); the dispatcher withdraws it from all
//! of them before the thread's next request (`diagnostics::clear_interrupt`).
//!
//! # Own GIL (`WSGIPerInterpreterGIL On`, Python 3.12+)
//!
//! A group whose resolved options say WSGIPerInterpreterGIL On (`interpreter::own_gil`) is
//! created with Py_NewInterpreterFromConfig(gil=OWN, use_main_obmalloc=0,
//! check_multi_interp_extensions=1): its own GIL and allocator, and extension modules without
//! `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED` refuse to import (RW0235 names them). Nothing of
//! one interpreter may then be used, increfed or freed in another, and two threads run Python
//! at once in two interpreters. What the request path hands to Python is per interpreter
//! (`interp_state.rs`): the `mod_wsgi` module (built with `PyModule::new`, its functions
//! `PyCFunction`s over static method definitions), the base environ, the interned environ
//! keys and other request-path strings (no `intern!` statics), the classes
//! `mod_wsgi.FileWrapper`, `RequestTimeout` and the restricted stdin/stdout (Python classes
//! exec'd per interpreter), `Input` (wsgi.input), `LogBuffer` (under wsgi.errors and
//! sys.stdout/stderr), `StartResponse` and `Write` (heap types made per interpreter by
//! `PyType_FromSpec` with Rust slots, `native_class.rs`: an instance per request is one
//! `tp_alloc`), and the intercepting `signal.signal` (a closure made per interpreter): no
//! `#[pyclass]` type object (pyo3's process-wide `LazyTypeObject`) is left in the crate.
//!
//! Entry ([`enter_own_gil`]): a detached thread whose group interpreter exists takes only that
//! interpreter's GIL (PyEval_RestoreThread of its own state there) and runs the request
//! through pyo3's function trampoline, called directly (it raises the attach count), then
//! PyEval_SaveThread: it never takes the main GIL. Activating the group's state bound the
//! thread's PyGILState state to it; [`attach_main`], which every attach into the main
//! interpreter goes through, binds it back (a moment of the main GIL) when the thread next
//! enters the main interpreter. The first request of a group (which creates it) and callers already attached
//! go through the main interpreter and [`attach`]'s swap, which on 3.12+ releases the main
//! GIL and takes the group's (PyThreadState_Swap detaches the old state, attaches the new).
//!
//! A Rust panic where Python calls into mod_rwsgi (the methods and slots of those classes,
//! the `mod_wsgi` functions, the closures) raises a `SystemError` of the current interpreter
//! (`native_class::catch_panic`), never pyo3's `PanicException`, whose one type object
//! belongs to the first interpreter that needed it.
//!
//! Left (pyo3 0.30.1 internals the request path does not reach): pyo3's internal `intern!` strings and
//! cached type objects of a few conversions (datetime, `operator.length_hint`) that mod_rwsgi
//! does not use. The switch interval is kept in the GIL: an `application-group=` section's
//! WSGISwitchInterval is applied to an own-GIL interpreter (its GIL only) and skipped with
//! RW0264 for one sharing the GIL (`interpreter::setup_sub_interpreter`).
//!
//! # Ending ([`end_all`])
//!
//! At exit, after the request threads ended and before the main interpreter's shutdown
//! callbacks, atexit handlers and Py_FinalizeEx, each sub-interpreter in turn, with the
//! exiting thread's state there current: its shutdown callbacks, its atexit handlers, then
//! `threading._shutdown()` (joins its non-daemon threads). Py_EndInterpreter (3.11 to 3.13
//! alike: the state must be current, run no frame and be the interpreter's only one, or it
//! aborts with "not the last thread") follows after the states of the ended request threads
//! are cleared and deleted (as mod_wsgi does); with a daemon thread still alive there the
//! interpreter is left alone and Python not finalised (RW0261). Py_EndInterpreter leaves no
//! state current (3.11 with the GIL still held, 3.12+ released); swapping the main state back
//! in takes it again. An interpreter whose set-up failed is ended at once (`create`):
//! Py_FinalizeEx aborts on 3.11 when a sub-interpreter is left ("remaining
//! subinterpreters"). No time limit here: the daemon manager kills a process that has not
//! exited within shutdown-timeout, as for the main interpreter's shutdown.

use std::cell::RefCell;
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;

use super::interpreter::{self, FREE_THREADED_BUILD};
use super::{format_exception, log, log_prefix};
use crate::logging::Level;

/// A sub-interpreter of this process. Ended only by [`end_all`] at exit (after it took the
/// interpreter out of the registry), so `state` is valid wherever the registry hands it out.
struct SubInterpreter {
    state: *mut ffi::PyInterpreterState,
    /// Made with its own GIL (WSGIPerInterpreterGIL On): entered by [`enter_own_gil`].
    #[cfg_attr(not(Py_3_12), allow(dead_code))]
    own_gil: bool,
}

// SAFETY: the pointer is only used to make thread states (PyThreadState_New, which any
// thread may call) and as an identity; the interpreter outlives every thread using it.
unsafe impl Send for SubInterpreter {}
// SAFETY: as for Send: nothing is read or written through the pointer here.
unsafe impl Sync for SubInterpreter {}

/// An application group's interpreter, or why it could not be made (logged once).
enum Entry {
    Ready(&'static SubInterpreter),
    Failed,
}

/// Application group name → its interpreter. Grows under the GIL (the lock is waited for
/// detached, see [`interpreter`]) until [`end_all`] empties it at exit.
static REGISTRY: Mutex<Vec<(String, Entry)>> = Mutex::new(Vec::new());

/// Set by [`end_all`]: no sub-interpreter is made any more.
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    /// This thread's state in each sub-interpreter it has entered, by interpreter address.
    /// Kept for the thread's life: making and deleting one per request would cost what
    /// `keep_thread_state` avoids for the main interpreter.
    static THREAD_STATES: RefCell<Vec<(usize, *mut ffi::PyThreadState)>> =
        const { RefCell::new(Vec::new()) };
}

/// Gives the calling thread a Python thread state for the rest of its life. Otherwise every
/// `Python::attach` on a request thread creates a thread state and deletes it again (with
/// its 16 KiB frame stack, mapped and unmapped: a TLB shootdown per request). Call without
/// the GIL, after Python was initialised.
pub(crate) fn keep_thread_state() {
    thread_local! {
        static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if KEPT.get() {
        return;
    }
    KEPT.set(true);
    // SAFETY: Python is initialised (callers run only after it was) and this thread does not
    // hold the GIL (handle() is called detached). PyGILState_Ensure creates this thread's
    // state with a count of one; PyEval_SaveThread releases the GIL and keeps the state, so
    // later PyGILState_Ensure/Release pairs (pyo3's attach) reuse it and never delete it.
    let main = unsafe {
        pyo3::ffi::PyGILState_Ensure();
        pyo3::ffi::PyEval_SaveThread()
    };
    MAIN_STATE.set(main);
}

thread_local! {
    /// This thread's main-interpreter state, kept by [`keep_thread_state`] (null before).
    static MAIN_STATE: std::cell::Cell<*mut ffi::PyThreadState> =
        const { std::cell::Cell::new(std::ptr::null_mut()) };
    /// Set by [`enter_own_gil`]: this thread's PyGILState state is bound to its state in an
    /// own-GIL sub-interpreter, not to [`MAIN_STATE`]; cleared by [`attach_main`].
    static GILSTATE_ON_SUB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is attached: a thread state of its own is current. From Python 3.12
/// the current thread state is kept per thread; on 3.11 it is the one of whichever thread
/// holds the GIL, so it is compared with this thread's own states (its PyGILState one and
/// those it made in sub-interpreters). PyGILState_Check cannot say it: 3.11 turns that check
/// off once a sub-interpreter exists.
pub(crate) fn this_thread_is_attached() -> bool {
    // SAFETY: always callable once Python is initialised; only reads the current state.
    let current = unsafe { ffi::compat::PyThreadState_GetUnchecked() };
    if current.is_null() {
        return false;
    }
    if cfg!(Py_3_12) {
        return true;
    }
    // SAFETY: reads this thread's own PyGILState slot; needs no GIL.
    current == unsafe { ffi::PyGILState_GetThisThreadState() }
        || MAIN_STATE
            .try_with(|main| main.get() == current)
            .unwrap_or(false)
        || THREAD_STATES
            .try_with(|states| {
                states
                    .try_borrow()
                    .is_ok_and(|states| states.iter().any(|(_, t)| *t == current))
            })
            .unwrap_or(false)
}

/// `Python::attach` into the main interpreter: what every attach of mod_rwsgi outside a
/// request's interpreter goes through (never `Python::attach` directly). After
/// [`enter_own_gil`] the thread's PyGILState state is still bound to its state in that
/// own-GIL sub-interpreter (CPython binds the state it activates, `tstate_activate`), and
/// PyGILState_Ensure would resume that one; so when this thread is detached and
/// [`GILSTATE_ON_SUB`] says so, its main-interpreter state is activated and released once
/// first (a moment of the main GIL), which binds PyGILState back to it. Doing that here, on
/// the thread's next use of the main interpreter, rather than after every own-GIL request
/// keeps the main GIL off the request path of a thread serving own-GIL groups.
pub(crate) fn attach_main<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    if GILSTATE_ON_SUB.get() {
        let main = MAIN_STATE.get();
        // SAFETY: always callable once Python is initialised; only reads this thread's state.
        let detached = unsafe { ffi::compat::PyThreadState_GetUnchecked() }.is_null();
        if detached && !main.is_null() {
            // SAFETY: this thread is detached and `main` is its own kept main-interpreter
            // state, alive and not current anywhere: PyEval_RestoreThread takes the main GIL
            // and activates it (binding PyGILState to it), PyEval_SaveThread releases both.
            unsafe {
                ffi::PyEval_RestoreThread(main);
                ffi::PyEval_SaveThread();
            }
            GILSTATE_ON_SUB.set(false);
        }
    }
    Python::attach(f)
}

/// Whether application group `app_group` runs in a sub-interpreter of this process (a
/// daemon process or an Apache child): every named group, with a GIL.
pub(crate) fn uses_sub_interpreter(app_group: &str) -> bool {
    !app_group.is_empty() && !FREE_THREADED_BUILD
}

/// Runs `f` attached to the interpreter of application group `app_group`: the main one for
/// `%{GLOBAL}` (and wherever [`uses_sub_interpreter`] says no), else the group's
/// sub-interpreter, created now if this is its first use. Call without the GIL (or attached:
/// nesting restores the state that was current). `Err` = the interpreter could not be made
/// (logged); `f` did not run.
pub(crate) fn attach<R>(app_group: &str, f: impl FnOnce(Python<'_>) -> R) -> Result<R, String> {
    if !uses_sub_interpreter(app_group) {
        return Ok(attach_main(f));
    }
    keep_thread_state();
    #[cfg(Py_3_12)]
    if let Some(interp) = ready_own_gil(app_group) {
        return enter_own_gil(interp, f);
    }
    attach_main(|py| {
        let interp = interpreter(py, app_group)?;
        let tstate = thread_state(interp)?;
        // SAFETY: this thread is attached (the token), so a thread state is current and the
        // GIL is held; `tstate` is this thread's own state in a live interpreter that shares
        // that GIL, and is not current anywhere (it is this thread's only). The guard swaps
        // the previous state back before pyo3's attach guard ends (see the module comment).
        let previous = unsafe { ffi::PyThreadState_Swap(tstate) };
        let _back = SwapBack(previous);
        Ok(f(py))
    })
}

/// The own-GIL interpreter of `app_group` when it exists already and this thread is detached
/// (no thread state current): then [`enter_own_gil`] needs neither the main GIL nor the
/// registry's creation path. Otherwise `None` ([`attach`] goes through the main interpreter,
/// which also makes the interpreter on its first use).
#[cfg(Py_3_12)]
fn ready_own_gil(app_group: &str) -> Option<&'static SubInterpreter> {
    // SAFETY: always callable once Python is initialised; only reads this thread's state.
    if !unsafe { ffi::compat::PyThreadState_GetUnchecked() }.is_null() {
        return None;
    }
    // Detached: waiting for the lock holds no GIL (a creator holding it runs Python).
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find_map(|(name, entry)| match entry {
            Entry::Ready(interp) if name == app_group && interp.own_gil => Some(*interp),
            _ => None,
        })
}

/// A job run by [`enter_own_gil`]'s trampoline, its lifetime erased.
#[cfg(Py_3_12)]
type Job = *mut (dyn FnMut(Python<'_>) + 'static);

#[cfg(Py_3_12)]
thread_local! {
    /// The job [`enter_own_gil`] hands to its trampoline function (set just before the call).
    static JOB: std::cell::Cell<Option<Job>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` in the own-GIL sub-interpreter `interp` from a detached thread, taking only that
/// interpreter's GIL: PyEval_RestoreThread of this thread's state there, then `f` runs inside
/// a call of a `PyCFunction` made for it (pyo3's trampoline raises pyo3's attach count, so
/// nested `Python::attach` calls are assumed and `Py<T>` drops are immediate, in this
/// interpreter), then PyEval_SaveThread. Activating that state bound the thread's PyGILState
/// state to it (CPython `tstate_activate`); it is left so ([`GILSTATE_ON_SUB`]) and bound
/// back to the main interpreter's state only when this thread next enters the main
/// interpreter ([`attach_main`]), so a request here never takes the main GIL. A panic in
/// `f` is carried over and resumed after that.
#[cfg(Py_3_12)]
fn enter_own_gil<R>(interp: &SubInterpreter, f: impl FnOnce(Python<'_>) -> R) -> Result<R, String> {
    let tstate = thread_state(interp)?;
    let mut f = Some(f);
    let mut out = None;
    let mut panic = None;
    let mut job = |py: Python<'_>| {
        if let Some(f) = f.take() {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(py))) {
                Ok(r) => out = Some(r),
                Err(p) => panic = Some(p),
            }
        }
    };
    let job: &mut (dyn FnMut(Python<'_>) + '_) = &mut job;
    // SAFETY: only the lifetime is erased: the pointer is taken out of JOB and called during
    // the PyObject_CallNoArgs below, while `job` is alive, and JOB is emptied after it.
    let erased: Job = unsafe { std::mem::transmute(job) };
    // pyo3's trampoline for a fastcall function, called directly (no function object made
    // per request): it raises pyo3's attach count around `run_job` and catches panics.
    let trampoline = pyo3::impl_::trampoline::get_trampoline_function!(
        fastcall_cfunction_with_keywords,
        run_job
    );
    // SAFETY: this thread is detached (ready_own_gil checked no state is current) and
    // `tstate` is its own state in `interp`, a live interpreter with its own GIL, which
    // PyEval_RestoreThread takes. Everything between it and PyEval_SaveThread runs in that
    // interpreter: the trampoline is called attached (its contract), with no arguments, and
    // an error it leaves is cleared there.
    let called = unsafe {
        ffi::PyEval_RestoreThread(tstate);
        JOB.set(Some(erased));
        let result = trampoline(
            std::ptr::null_mut(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        let called = if result.is_null() {
            ffi::PyErr_Clear();
            false
        } else {
            ffi::Py_DECREF(result);
            true
        };
        JOB.set(None);
        ffi::PyEval_SaveThread();
        called
    };
    // Activating `tstate` bound this thread's PyGILState state to it; [`attach_main`] binds
    // it back before this thread next enters the main interpreter.
    GILSTATE_ON_SUB.set(true);
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
    match out {
        Some(r) => Ok(r),
        None if called => Err("the own-GIL sub-interpreter did not run the call".to_string()),
        None => Err("calling into the own-GIL sub-interpreter failed".to_string()),
    }
}

/// The body [`enter_own_gil`] calls through pyo3's trampoline: runs the job in JOB. Nothing
/// here panics and the job catches its own panics, so pyo3's `PanicException` (one type
/// object per process, see `native_class::catch_panic`) is never made in this interpreter.
///
/// # Safety
/// Called attached, while the job in JOB is alive (see `enter_own_gil`).
#[cfg(Py_3_12)]
unsafe fn run_job(
    py: Python<'_>,
    _slf: *mut ffi::PyObject,
    _args: *const *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
    _kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    if let Some(job) = JOB.take() {
        // SAFETY: the caller's contract: the job is alive during this call.
        unsafe { (*job)(py) };
    }
    Ok(py.None().into_ptr())
}

/// Whether application group `app_group`'s sub-interpreter failed to start (RW0231/RW0232):
/// its requests are answered 500. Call without the GIL.
pub fn failed(app_group: &str) -> bool {
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(name, entry)| name == app_group && matches!(entry, Entry::Failed))
}

/// Runs `f` in each sub-interpreter made so far, with this thread's state there current:
/// for calls that act on the threads of the current interpreter only
/// (PyThreadState_SetAsyncExc). Call attached.
pub(crate) fn for_each_sub_interpreter(py: Python<'_>, mut f: impl FnMut(Python<'_>)) {
    let ready: Vec<&'static SubInterpreter> = REGISTRY
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(_, entry)| match entry {
            Entry::Ready(interp) => Some(*interp),
            Entry::Failed => None,
        })
        .collect();
    for interp in ready {
        let Ok(tstate) = thread_state(interp) else {
            continue;
        };
        // SAFETY: as in [`attach`]: attached (the token), `tstate` is this thread's own state
        // in a live interpreter sharing the GIL; the guard puts the previous state back.
        let previous = unsafe { ffi::PyThreadState_Swap(tstate) };
        let _back = SwapBack(previous);
        f(py);
    }
}

/// Makes `.0` the current thread state again when dropped (also when unwinding).
struct SwapBack(*mut ffi::PyThreadState);

impl Drop for SwapBack {
    fn drop(&mut self) {
        // SAFETY: this thread still holds the GIL with the state [`attach`] swapped in; `.0`
        // is the state that was current on this thread before, still alive.
        unsafe {
            ffi::PyThreadState_Swap(self.0);
        }
    }
}

/// The sub-interpreter of `app_group`, made on first use. Called attached, in the main
/// interpreter.
fn interpreter(py: Python<'_>, app_group: &str) -> Result<&'static SubInterpreter, String> {
    // Waited for detached: the holder may be running Python (an interpreter's creation).
    let mut registry = REGISTRY
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    let entry = match registry.iter().find(|(name, _)| name == app_group) {
        Some((_, entry)) => entry,
        None if ENDING.load(std::sync::atomic::Ordering::Relaxed) => {
            return Err(format!(
                "the process is stopping: no sub-interpreter for '{app_group}'"
            ));
        }
        None => {
            let entry = create(py, app_group);
            registry.push((app_group.to_string(), entry));
            &registry.last().expect("just pushed").1
        }
    };
    match entry {
        Entry::Ready(interp) => Ok(interp),
        Entry::Failed => {
            let msg = format!(
                "{}The Python sub-interpreter of application group '{app_group}' failed to \
                 start (see its error above); the request fails. WSGIApplicationGroup \
                 %{{GLOBAL}} runs the application in the main interpreter.",
                log_prefix()
            );
            log(Level::Error, &format!("RW0233: {msg}"));
            Err(msg)
        }
    }
}

/// This thread's state in `interp`, made on its first use here.
fn thread_state(interp: &SubInterpreter) -> Result<*mut ffi::PyThreadState, String> {
    let key = interp.state as usize;
    THREAD_STATES.with(|states| {
        let mut states = states.borrow_mut();
        if let Some((_, tstate)) = states.iter().find(|(k, _)| *k == key) {
            return Ok(*tstate);
        }
        // SAFETY: `interp.state` is a live interpreter (never ended). PyThreadState_New needs
        // no GIL (CPython serialises it with its runtime lock); the new state is bound to
        // this thread and used only by it.
        let tstate = unsafe { ffi::PyThreadState_New(interp.state) };
        if tstate.is_null() {
            return Err("PyThreadState_New failed (out of memory)".to_string());
        }
        states.push((key, tstate));
        Ok(tstate)
    })
}

/// Creates and sets up the sub-interpreter of `app_group`; logs what happened. Called
/// attached, with the main interpreter's state current.
fn create(py: Python<'_>, app_group: &str) -> Entry {
    // SAFETY: the token proves a thread state (the main interpreter's) is current.
    let previous = unsafe { ffi::PyThreadState_Get() };
    let mut new: *mut ffi::PyThreadState = std::ptr::null_mut();
    let own_gil = interpreter::own_gil(app_group);
    // SAFETY: the GIL is held (the token). On success CPython makes `new`, the first thread
    // state of the new interpreter (bound to this thread), current; on failure it leaves the
    // previous state current (new_interpreter's error path swaps it back) and `new` null.
    let made = unsafe { new_interpreter(&mut new, own_gil) };
    if let Err(e) = made.and_then(|()| {
        if new.is_null() {
            Err("CPython returned no thread state".to_string())
        } else {
            Ok(())
        }
    }) {
        log(
            Level::Error,
            &format!(
                "RW0231: {}Could not create the Python sub-interpreter of application group \
                 '{app_group}': {e}. Its requests fail; WSGIApplicationGroup %{{GLOBAL}} runs \
                 the application in the main interpreter.",
                log_prefix()
            ),
        );
        return Entry::Failed;
    }
    // `previous` is current again when this ends, even by a panic.
    let back = SwapBack(previous);
    // SAFETY: `new` is alive; its interpreter lives until the process exits.
    let state = unsafe { ffi::PyThreadState_GetInterpreter(new) };
    // The new state is current: pyo3 code here runs in the new interpreter (see the module
    // comment; the thread is attached, so nested attaches are assumed).
    let setup = interpreter::setup_sub_interpreter(py, app_group, own_gil)
        .map_err(|e| format_exception(py, &e));
    if setup.is_err() {
        // Ended now: a half set-up interpreter is never used, and one left alive would make
        // Python's finalisation abort ("remaining subinterpreters").
        super::modwsgi::forget_sub_module(py);
        // SAFETY: `new` is current (the guard has not swapped back yet), runs no Python
        // frame and is its interpreter's only state (nothing else ran there). Afterwards no
        // state is current; the guard's swap makes `previous` current again (and on 3.12+
        // takes the GIL again, which Py_EndInterpreter released).
        unsafe { ffi::Py_EndInterpreter(new) };
    }
    drop(back);
    if setup.is_ok() {
        THREAD_STATES.with(|states| states.borrow_mut().push((state as usize, new)));
    }
    match setup {
        Ok(()) => {
            log(
                Level::Info,
                &format!(
                    "RW0230: {}Created Python sub-interpreter '{app_group}' in {}{}.",
                    log_prefix(),
                    super::process_context(),
                    if own_gil {
                        " with its own GIL (WSGIPerInterpreterGIL On)"
                    } else {
                        ""
                    }
                ),
            );
            Entry::Ready(Box::leak(Box::new(SubInterpreter { state, own_gil })))
        }
        Err(traceback) => {
            log(
                Level::Error,
                &format!(
                    "RW0232: {}Setting up the Python sub-interpreter of application group \
                     '{app_group}' failed; its requests fail.\n{traceback}",
                    log_prefix()
                ),
            );
            Entry::Failed
        }
    }
}

/// Python run in a sub-interpreter before it is ended: its non-daemon threads are joined
/// (as Py_EndInterpreter would), then the names of its threads still alive (daemon threads)
/// are returned; Py_EndInterpreter must not run while one has a thread state there.
const LIVE_THREADS_PY: &std::ffi::CStr = cr#"
import threading
main = threading._main_thread
if main.ident != threading.get_ident() and hasattr(main, "_tstate_lock"):
    # 3.11 and 3.12: `main` is the request thread that first imported threading here, now
    # ended. _shutdown() releases the main thread's lock only when it runs on that thread,
    # then joins it: release it as _shutdown() would, or the join waits forever.
    lock = main._tstate_lock
    if lock is not None and lock.locked():
        lock.release()
    main._stop()
threading._shutdown()
current = threading.current_thread()
live = [t.name for t in threading.enumerate()
        if t is not current and not isinstance(t, threading._DummyThread) and t.is_alive()]
"#;

/// Ends every sub-interpreter at process exit, before the main interpreter's shutdown: in
/// each, its `mod_wsgi.subscribe_shutdown` callbacks (and "process_stopping" event
/// subscribers) run, then, with `destroy` (WSGIDestroyInterpreter On), its atexit handlers,
/// and it is ended with Py_EndInterpreter. Call once, without the GIL, after every request
/// thread has ended (their thread states in the interpreters are deleted here).
///
/// Returns false when an interpreter was left running: one still had a live daemon thread
/// (RW0261; Py_EndInterpreter would abort the process), or `destroy` is off. Python must then
/// not be finalised (Py_FinalizeEx would end that interpreter with the thread in it).
pub(crate) fn end_all(reason: &str, destroy: bool) -> bool {
    ENDING.store(true, std::sync::atomic::Ordering::Relaxed);
    attach_main(|py| {
        let entries = std::mem::take(
            &mut *REGISTRY
                .lock_py_attached(py)
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut all_ended = true;
        for (name, entry) in entries {
            let Entry::Ready(interp) = entry else {
                continue;
            };
            let Ok(tstate) = thread_state(interp) else {
                all_ended = false;
                continue;
            };
            // SAFETY: attached (the token): a state (the main interpreter's) is current and the
            // GIL held; `tstate` is this thread's own state in `interp`, alive, not current.
            let main = unsafe { ffi::PyThreadState_Swap(tstate) };
            let ended = end_one(py, &name, interp, tstate, reason, destroy);
            // SAFETY: `main` is this thread's main-interpreter state, alive. After
            // Py_EndInterpreter no state is current (3.11 keeps the GIL held, 3.12+ released
            // it): the swap makes `main` current and, on 3.12+, takes the GIL again.
            unsafe {
                ffi::PyThreadState_Swap(main);
            }
            all_ended &= ended;
        }
        all_ended
    })
}

/// [`end_all`] for one interpreter, with this thread's state `tstate` there current. Returns
/// whether it was ended (`tstate` is then gone and no state is current).
fn end_one(
    py: Python<'_>,
    name: &str,
    interp: &SubInterpreter,
    tstate: *mut ffi::PyThreadState,
    reason: &str,
    destroy: bool,
) -> bool {
    super::modwsgi::publish_process_stopping(py, reason);
    if !destroy {
        return false;
    }
    if let Err(e) = py
        .import("atexit")
        .and_then(|atexit| atexit.call_method0("_run_exitfuncs"))
    {
        log(
            Level::Error,
            &format!(
                "RW0260: {}Exception occurred within Python atexit handlers of sub-interpreter \
                 '{name}' during shutdown.\n{}",
                log_prefix(),
                format_exception(py, &e)
            ),
        );
    }
    interpreter::flush_streams(py);
    let live: Vec<String> = (|| -> PyResult<Vec<String>> {
        let globals = pyo3::types::PyDict::new(py);
        py.run(LIVE_THREADS_PY, Some(&globals), None)?;
        globals
            .get_item("live")?
            .map_or(Ok(Vec::new()), |l| l.extract())
    })()
    .unwrap_or_else(|e| {
        log(
            Level::Warning,
            &format!(
                "RW0263: {}Could not join the threads of sub-interpreter '{name}' at shutdown; \
                 it is ended anyway.\n{}",
                log_prefix(),
                format_exception(py, &e)
            ),
        );
        Vec::new()
    });
    if !live.is_empty() {
        log(
            Level::Warning,
            &format!(
                "RW0261: {}Not ending Python sub-interpreter '{name}': its thread(s) {} still \
                 run (daemon threads); Python is not finalised, the process exits with them.",
                log_prefix(),
                live.join(", ")
            ),
        );
        return false;
    }
    super::modwsgi::forget_sub_module(py);
    // The request threads have ended; their states here (kept for their lives) are deleted,
    // so that `tstate` is the interpreter's only one, as Py_EndInterpreter requires.
    // SAFETY: the GIL is held with `tstate`, a state of `interp`, current; every other state
    // of `interp` belongs to a thread that has ended (the request threads, joined) or to a
    // thread that no longer uses it (the registry no longer hands the interpreter out), so
    // clearing (with a state of the same interpreter current) and deleting (not current)
    // it is what CPython allows. `next` is read before the state is deleted.
    unsafe {
        let mut other = ffi::PyInterpreterState_ThreadHead(interp.state);
        while !other.is_null() {
            let next = ffi::PyThreadState_Next(other);
            if other != tstate {
                ffi::PyThreadState_Clear(other);
                ffi::PyThreadState_Delete(other);
            }
            other = next;
        }
    }
    THREAD_STATES.with(|states| {
        states
            .borrow_mut()
            .retain(|(key, _)| *key != interp.state as usize)
    });
    // SAFETY: `tstate` is current, runs no Python frame (called from Rust between calls) and
    // is the interpreter's only state; its atexit handlers have run (a second call finds
    // none). Nothing of this interpreter is used afterwards (taken out of the registry and
    // this thread's states).
    unsafe { ffi::Py_EndInterpreter(tstate) };
    log(
        Level::Info,
        &format!(
            "RW0262: {}Ended Python sub-interpreter '{name}' (its shutdown callbacks and atexit \
             handlers have run).",
            log_prefix()
        ),
    );
    true
}

/// Finds the extension module whose refusal to load in a sub-interpreter made the exception:
/// CPython's ImportError ("module NAME does not support loading in subinterpreters", for a
/// single-phase or `Py_mod_multiple_interpreters` = not supported module on 3.12+), PyO3's
/// ("PyO3 modules do not yet support subinterpreters", raised by every PyO3-built module in
/// any interpreter but the first that imported it) or Cython's ("Interpreter change detected")
/// anywhere in the exception's cause/context chain. PyO3's and Cython's messages do not name
/// the module: it is the import statement the innermost traceback frame was running.
/// Returns (module name, ImportError message). Runs only on a failure path.
const REFUSAL_PY: &std::ffi::CStr = cr#"
import dis, importlib.util, re

def imported_by(tb):
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    code = list(dis.get_instructions(frame.f_code))
    for i, ins in enumerate(code):
        if ins.offset == tb.tb_lasti and ins.opname == "IMPORT_NAME":
            level = code[i - 2].argval if i >= 2 and isinstance(code[i - 2].argval, int) else 0
            if not level:
                return ins.argval
            try:
                return importlib.util.resolve_name(
                    "." * level + ins.argval, frame.f_globals.get("__package__"))
            except Exception:
                return ins.argval
    return None

def refused(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError):
            msg = str(exc)
            named = re.search(r"module (\S+) does not support loading in subinterpreters", msg)
            if named:
                return named.group(1), msg
            if ("PyO3 modules" in msg or "Interpreter change detected" in msg
                    or "initialized once per interpreter" in msg):
                return exc.name or imported_by(exc.__traceback__) or "(not known)", msg
        exc = exc.__cause__ or exc.__context__
    return None
"#;

/// (module, message) of an extension module that refused to load in this sub-interpreter,
/// if that is what `err` comes from (see [`REFUSAL_PY`]). Call attached, in the interpreter
/// `err` was raised in.
pub(crate) fn refused_extension(py: Python<'_>, err: &PyErr) -> Option<(String, String)> {
    let globals = pyo3::types::PyDict::new(py);
    py.run(REFUSAL_PY, Some(&globals), None).ok()?;
    let found = globals
        .get_item("refused")
        .ok()??
        .call1((err.value(py),))
        .ok()?;
    if found.is_none() {
        return None;
    }
    found.extract().ok()
}

/// When `err` comes from an extension module refusing to load in the sub-interpreter of
/// `group` ([`refused_extension`]), logs which module and that `WSGIApplicationGroup
/// %{GLOBAL}` runs the application in the main interpreter; `outcome` says what failed.
/// Returns the logged text. Call attached, in the group's interpreter.
pub(crate) fn explain_refusal(
    py: Python<'_>,
    err: &PyErr,
    group: &str,
    outcome: &str,
) -> Option<String> {
    if !uses_sub_interpreter(group) {
        return None;
    }
    let (module, why) = refused_extension(py, err)?;
    let hint = format!(
        "{}Python extension module '{module}' refused to load in the sub-interpreter of \
         application group '{group}' (ImportError: {why}); {outcome}. The module works only in \
         the main interpreter: `WSGIApplicationGroup %{{GLOBAL}}` runs the application there.",
        log_prefix()
    );
    super::log_detached(py, Level::Error, &format!("RW0235: {hint}"));
    Some(hint)
}

/// The configtest error for `WSGIPerInterpreterGIL On` on a Python before 3.12, naming the
/// embedded Python's version; `None` on 3.12+ (PEP 684), where On is accepted.
pub fn per_interpreter_gil_refusal() -> Option<String> {
    own_gil_refusal(&interpreter::python_version()).or_else(|| {
        // A build without .cargo/config.toml's flag (e.g. RUSTFLAGS set in the environment,
        // which replaces it) has pyo3's process-wide reference pool: unsound with own GILs.
        (!cfg!(pyo3_disable_reference_pool)).then(|| {
            "WSGIPerInterpreterGIL On needs mod_rwsgi built with --cfg \
             pyo3_disable_reference_pool (.cargo/config.toml; a RUSTFLAGS environment \
             variable replaces it: add the flag there); this build lacks it. Remove the \
             directive or set it Off, or rebuild"
                .to_string()
        })
    })
}

/// [`per_interpreter_gil_refusal`] for Python `version` ("3.11.2").
fn own_gil_refusal(version: &str) -> Option<String> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major_minor = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major_minor < (3, 12)).then(|| {
        format!(
            "WSGIPerInterpreterGIL On needs Python 3.12 or later (PEP 684 per-interpreter \
             GIL); mod_rwsgi embeds Python {version}, whose sub-interpreters all share one GIL. \
             Remove the directive or set it Off"
        )
    })
}

/// Py_NewInterpreterFromConfig with the legacy (shared GIL, shared allocator) settings, or
/// with `own_gil` its own GIL and allocator, accepting only extension modules that declare
/// per-interpreter GIL support (PEP 684; fork, exec and threads stay allowed, as mod_wsgi 6).
///
/// # Safety
/// The GIL must be held by this thread, with a thread state current.
#[cfg(Py_3_12)]
unsafe fn new_interpreter(new: &mut *mut ffi::PyThreadState, own_gil: bool) -> Result<(), String> {
    let config = ffi::PyInterpreterConfig {
        use_main_obmalloc: i32::from(!own_gil),
        allow_fork: 1,
        allow_exec: 1,
        allow_threads: 1,
        allow_daemon_threads: 1,
        check_multi_interp_extensions: i32::from(own_gil),
        gil: if own_gil {
            ffi::PyInterpreterConfig_OWN_GIL
        } else {
            ffi::PyInterpreterConfig_SHARED_GIL
        },
    };
    // SAFETY: per the contract a state is current; `config` outlives the call.
    unsafe { interpreter::status_result(ffi::Py_NewInterpreterFromConfig(new, &config)) }
}

/// Py_NewInterpreter (Python 3.11: legacy sub-interpreters only).
///
/// # Safety
/// The GIL must be held by this thread, with a thread state current.
#[cfg(not(Py_3_12))]
unsafe fn new_interpreter(new: &mut *mut ffi::PyThreadState, _own_gil: bool) -> Result<(), String> {
    // SAFETY: per the contract a state is current and the GIL held.
    unsafe {
        *new = ffi::Py_NewInterpreter();
    }
    if new.is_null() {
        return Err("Py_NewInterpreter failed (its error was printed to stderr)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::own_gil_refusal;

    #[test]
    fn per_interpreter_gil_on_names_the_python_version_before_3_12() {
        for version in ["3.11.2", "3.10.13"] {
            let msg = own_gil_refusal(version).expect("refused");
            assert!(
                msg.starts_with("WSGIPerInterpreterGIL On needs Python 3.12"),
                "{msg}"
            );
            assert!(msg.contains(&format!("Python {version}")), "{msg}");
        }
    }

    #[test]
    fn per_interpreter_gil_on_is_accepted_on_3_12_and_later() {
        for version in ["3.12.1", "3.13.0", "3.14.0rc1", "4.0.0"] {
            assert_eq!(own_gil_refusal(version), None, "{version}");
        }
    }
}
