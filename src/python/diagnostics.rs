//! Process diagnostics for the daemon's monitor: the Python stacks of every thread (logged
//! when a request times out) and a GIL heartbeat (deadlock-timeout).

use pyo3::prelude::*;

/// The current Python stack of every thread, formatted for the error log.
pub fn thread_stacks() -> String {
    super::subinterp::attach_main(|py| {
        let code = c"import sys, traceback, threading
names = {t.ident: t.name for t in threading.enumerate()}
out = []
for ident, frame in sys._current_frames().items():
    out.append('Thread %s (%s):' % (ident, names.get(ident, 'non-Python thread')))
    out.extend(l.rstrip('\\n') for l in traceback.format_stack(frame))
result = '\\n'.join(out)
";
        let globals = pyo3::types::PyDict::new(py);
        match py.run(code, Some(&globals), None) {
            Ok(()) => globals
                .get_item("result")
                .ok()
                .flatten()
                .and_then(|r| r.extract::<String>().ok())
                .unwrap_or_default(),
            Err(e) => format!("(could not collect Python stacks: {e})"),
        }
    })
}

/// Raises `mod_wsgi.RequestTimeout` in the Python thread whose `threading.get_ident()` is
/// `ident`, at its next bytecode; true when that thread exists. Blocking calls (a long
/// `time.sleep`) are not cut short: the exception comes when they return.
///
/// CPython looks for the thread among the current interpreter's threads only: the exception is
/// set in the thread's state in the main interpreter and in every sub-interpreter (see
/// `subinterp.rs`), so it lands in whichever one the request runs in.
pub fn interrupt_thread(ident: u64) -> bool {
    // A request thread waiting on an ASGI request's native path runs no Python: its
    // request ends as timed out there.
    if super::asgi_native::interrupt(ident) {
        return true;
    }
    super::subinterp::attach_main(|py| {
        // Each interpreter's own class: the one its applications import and catch.
        let raise = |py: Python<'_>| {
            let Ok(state) = super::interp_state::current(py) else {
                return false;
            };
            // SAFETY: called with the GIL held, in the interpreter whose class `state` holds
            // (a live type object); CPython takes its own reference to it.
            let found = unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    ident as std::os::raw::c_long,
                    state.request_timeout.as_ptr(),
                )
            };
            found == 1
        };
        let mut found = raise(py);
        super::subinterp::for_each_sub_interpreter(py, |py| found |= raise(py));
        found
    })
}

/// Withdraws a `mod_wsgi.RequestTimeout` raised by [`interrupt_thread`] in the thread whose
/// `threading.get_ident()` is `ident` that it has not met yet (its request ended first).
pub fn clear_interrupt(ident: u64) {
    if ident == 0 {
        return;
    }
    super::subinterp::attach_main(|py| {
        let clear = || {
            // SAFETY: called with the GIL held; a null exception clears the pending one.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    ident as std::os::raw::c_long,
                    std::ptr::null_mut(),
                )
            };
        };
        // In every interpreter, as `interrupt_thread` raised it.
        clear();
        super::subinterp::for_each_sub_interpreter(py, |_| clear());
    });
}

/// Takes and releases the GIL once; returns when it could be taken.
pub fn gil_heartbeat() {
    super::subinterp::attach_main(|_| {});
}
