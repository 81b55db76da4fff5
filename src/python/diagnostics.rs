//! Process diagnostics for the daemon's monitor: the Python stacks of every thread (logged
//! when a request times out) and a GIL heartbeat (deadlock-timeout).

use pyo3::prelude::*;

/// The current Python stack of every thread, formatted for the error log.
pub fn thread_stacks() -> String {
    Python::attach(|py| {
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

/// Takes and releases the GIL once; returns when it could be taken.
pub fn gil_heartbeat() {
    Python::attach(|_| {});
}
