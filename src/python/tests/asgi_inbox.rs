//! The ASGI runtime's inbox (`asgi.py`, `_Inbox`): request threads hand calls to the event
//! loop with one wake-up per batch.

use pyo3::prelude::*;

use super::init;

/// Runs `code` with the ASGI runtime module of the main interpreter as `rt`.
fn run_with_runtime(code: &std::ffi::CStr) {
    init();
    Python::attach(|py| {
        let runtime = crate::python::asgi::runtime(py).unwrap();
        let globals = pyo3::types::PyDict::new(py);
        globals.set_item("rt", runtime).unwrap();
        py.run(code, Some(&globals), None)
            .map_err(|e| e.to_string())
            .unwrap();
    });
}

/// Calls submitted from many threads at once all run, each thread's in its order, none
/// left behind by a drain that was finishing as they came (which would leave a request
/// waiting for its start or its answer forever).
#[test]
fn every_call_handed_to_the_loop_from_many_threads_runs_in_order() {
    run_with_runtime(
        cr#"
import asyncio, threading
loop = asyncio.new_event_loop()
runner = threading.Thread(target=loop.run_forever, daemon=True)
runner.start()
inbox = rt._Inbox(loop)
seen = {t: [] for t in range(4)}
done = threading.Event()
N = 3000

def note(t, i):
    seen[t].append(i)
    if sum(map(len, seen.values())) == 4 * N:
        done.set()

def submit_all(t):
    for i in range(N):
        inbox.submit(note, t, i)

threads = [threading.Thread(target=submit_all, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
finished = done.wait(30)
loop.call_soon_threadsafe(loop.stop)
runner.join(10)
loop.close()
assert finished, {t: len(v) for t, v in seen.items()}
assert all(v == list(range(N)) for v in seen.values()), 'out of order'
assert not inbox.calls and not inbox.pending
"#,
    );
}

/// A call that ends its drain with a BaseException (not an Exception, which is logged and
/// the drain goes on) leaves the calls queued behind it to a drain scheduled at once, not
/// to whenever the next request submits something.
#[test]
fn calls_queued_behind_one_that_raised_a_base_exception_still_run() {
    run_with_runtime(
        cr#"
import asyncio, threading
loop = asyncio.new_event_loop()
loop.set_exception_handler(lambda loop, context: None)
runner = threading.Thread(target=loop.run_forever, daemon=True)
runner.start()
inbox = rt._Inbox(loop)
ran = threading.Event()

class Abort(BaseException):
    pass

def abort():
    raise Abort()

gate = threading.Event()
# Both queued before the loop drains: one batch, the second behind the one that aborts.
inbox.submit(gate.wait, 10)
inbox.submit(abort)
inbox.submit(ran.set)
gate.set()
finished = ran.wait(10)
loop.call_soon_threadsafe(loop.stop)
runner.join(10)
loop.close()
assert finished, 'the call queued behind the BaseException did not run'
"#,
    );
}

/// Threads that ask for the ASGI runtime module while another thread is still making it
/// (its code imports asyncio, during which other threads run) wait for it: each gets the
/// whole module, and one module is made.
#[test]
fn threads_asking_for_the_runtime_while_it_is_made_get_the_whole_module() {
    init();
    for _ in 0..5 {
        Python::attach(|py| {
            let modules = py.import("sys").unwrap().getattr("modules").unwrap();
            let _ = modules.del_item("_mod_rwsgi_asgi");
            // Let the next run of `asyncio` imports do work where threads switch.
            py.run(c"import sys; sys.setswitchinterval(1e-6)", None, None)
                .unwrap();
        });
        let ids: Vec<usize> = std::thread::scope(|s| {
            let askers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        Python::attach(|py| {
                            let m = crate::python::asgi::runtime(py).unwrap();
                            assert!(m.hasattr("_Inbox").unwrap(), "a half-made runtime module");
                            m.as_ptr() as usize
                        })
                    })
                })
                .collect();
            askers.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "more than one runtime module"
        );
    }
    Python::attach(|py| {
        py.run(c"import sys; sys.setswitchinterval(0.005)", None, None)
            .unwrap();
    });
}
