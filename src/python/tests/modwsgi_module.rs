//! The mod_wsgi module, shutdown callbacks, wsgi.errors, stdout and stderr.

use super::*;

#[test]
fn mod_wsgi_module_attributes() {
    let host = host();
    let path = script(
        "modwsgi",
        r#"
import mod_wsgi, mod_rwsgi, sys
def application(environ, start_response):
    assert mod_wsgi is mod_rwsgi
    assert mod_wsgi.process_group == 'pytest'
    assert mod_wsgi.application_group == ''
    assert mod_wsgi.maximum_processes == 3
    assert mod_wsgi.threads_per_process == 5
    assert mod_wsgi.version == (6, 0, 5)
    assert sys.argv == ['mod_wsgi']
    f = lambda name, **kw: None
    assert mod_wsgi.subscribe_shutdown(f) is f
    mod_wsgi.shutdown_callbacks.remove(f)
    start_response('200 OK', [])
    return [b'ok']
"#,
    );
    assert_ok(&host, &path, "/", &mut FakeIo::new());
}

#[test]
fn shutdown_callbacks_run_once_and_exceptions_are_logged() {
    init();
    let globals = Python::attach(|py| -> PyResult<Py<PyDict>> {
        let globals = PyDict::new(py);
        py.run(
            cr#"
import mod_wsgi
seen = []
def bad(event, **kw):
    raise ValueError('shutdown-marker')
def good(event, **kw):
    seen.append((event, kw.get('shutdown_reason')))
mod_wsgi.subscribe_shutdown(bad)
mod_wsgi.subscribe_shutdown(good)
"#,
            Some(&globals),
            None,
        )?;
        Ok(globals.unbind())
    })
    .unwrap();
    run_shutdown_callbacks("test-reason");
    run_shutdown_callbacks("again");
    let seen = Python::attach(|py| {
        let seen = globals.bind(py).get_item("seen").unwrap().unwrap();
        let seen = seen.repr().unwrap().to_string();
        // Attached: pyo3 is built without its deferred reference pool.
        drop(globals);
        seen
    });
    assert_eq!(seen, "[('process_stopping', 'test-reason')]");
    let logged = logs_with("ValueError: shutdown-marker");
    assert_eq!(logged.len(), 1);
    assert!(
        logged[0]
            .1
            .contains("event callback for 'process_stopping'"),
        "{}",
        logged[0].1
    );
}

#[test]
fn request_events_are_published_and_can_wrap_the_application() {
    let host = host();
    let path = script(
        "events",
        r#"
import mod_wsgi, threading
seen = []
mine = set()
def wrapped(environ, start_response):
    start_response('200 OK', [])
    return [b'wrapped']
def on_event(name, **kw):
    if name == 'request_started' and 'HTTP_X_EVENTS_TEST' in kw['request_environ']:
        assert kw['application_start'] == kw['request_environ']['mod_wsgi.application_start']
        mine.add(threading.get_ident())
        seen.append(name)
        if kw['request_environ']['PATH_INFO'] == '/wrap':
            return {'application_object': wrapped}
    elif name == 'request_finished' and threading.get_ident() in mine:
        mine.discard(threading.get_ident())
        seen.append('%s:%s:%d' % (name, kw['status'], kw['output_length']))
mod_wsgi.subscribe_events(on_event)
def application(environ, start_response):
    start_response('200 OK', [])
    mod_wsgi.event_callbacks.remove(on_event)
    return [','.join(seen).encode()]
"#,
    );
    let run = |path_info: &str| {
        let extra = [
            ("PATH_INFO", path_info.as_bytes()),
            ("HTTP_X_EVENTS_TEST", &b"1"[..]),
        ];
        completed_body(&host, &path, &extra)
    };
    assert_eq!(run("/wrap"), "wrapped");
    assert_eq!(
        run("/report"),
        "request_started,request_finished:200:7,request_started"
    );
}

#[test]
fn errors_stdout_and_stderr_log_complete_lines() {
    let host = host();
    let path = script(
        "logging",
        r#"
import sys
def application(environ, start_response):
    err = environ['wsgi.errors']
    err.write('errors-line-1\npartial-')
    err.write('continued\n')
    err.writelines(['wl-a\n', 'wl-b\n'])
    try:
        err.write(b'bytes')
        raise AssertionError('bytes accepted')
    except TypeError:
        pass
    err.write('tail-no-newline')
    print('stdout-marker-line')
    sys.stderr.write('stderr-marker-')
    sys.stderr.flush()
    start_response('200 OK', [])
    return [b'ok']
"#,
    );
    assert_ok(&host, &path, "/", &mut FakeIo::new());
    let lines = [
        "errors-line-1",
        "partial-continued",
        "wl-a",
        "wl-b",
        "tail-no-newline",
        "stdout-marker-line",
        "stderr-marker-",
    ];
    for line in lines {
        let found: Vec<_> = LOGS
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m == line)
            .cloned()
            .collect();
        assert_eq!(found, vec![(Level::Error, line.to_string())], "{line}");
    }
}

#[test]
fn wsgi_errors_is_recycled_only_when_nothing_of_its_request_kept_or_changed_it() {
    let host = host();
    let path = script(
        "errors_recycled",
        r#"
kept = []
def application(environ, start_response):
    err = environ['wsgi.errors']
    branch = environ['PATH_INFO']
    if branch == '/partial':
        err.write('recycle-partial-' + environ['REMOTE_PORT'])
    elif branch == '/keep':
        kept.append(err)
    elif branch == '/tag':
        err.tag = 1
    elif branch == '/reconfigure':
        err.reconfigure(line_buffering=True)
    elif branch == '/check':
        assert not hasattr(err, 'tag') and not err.line_buffering, 'a changed stream came back'
        assert all(err is not k for k in kept), 'a kept stream came back'
    start_response('200 OK', [])
    return [str(id(err)).encode()]
"#,
    );
    let run = |path_info: &str, port: &str| -> String {
        let extra = [
            ("PATH_INFO", path_info.as_bytes()),
            ("REMOTE_ADDR", &b"192.0.2.7"[..]),
            ("REMOTE_PORT", port.as_bytes()),
        ];
        completed_body(&host, &path, &extra)
    };
    // Two requests in a row share one stream; each partial last line carries its own
    // request's address.
    let first = run("/partial", "1001");
    let second = run("/partial", "1002");
    assert_eq!(first, second, "an unreferenced wsgi.errors is reused");
    for port in ["1001", "1002"] {
        let line = format!("[remote 192.0.2.7:{port}] recycle-partial-{port}");
        assert_eq!(
            logs_with(&line).len(),
            1,
            "{line}:\n{}",
            dump("recycle-partial")
        );
    }
    // Kept by the application: never handed to another request.
    assert_eq!(run("/keep", "1003"), second);
    assert_ne!(run("/check", "1004"), second);
    // Changed by the application: dropped, not reused.
    run("/tag", "1005");
    run("/check", "1006");
    run("/reconfigure", "1007");
    run("/check", "1008");
}

#[test]
fn restricted_stdout_raises_oserror_on_any_use() {
    // Installed on a fresh namespace, not on sys: the test process keeps its stdout.
    init();
    let msgs = Python::attach(|py| -> PyResult<String> {
        let ns = py.import("types")?.getattr("SimpleNamespace")?.call0()?;
        install_restricted_stdout(&ns)?;
        let globals = PyDict::new(py);
        globals.set_item("ns", &ns)?;
        py.run(
            cr#"
out = []
for op in (lambda: ns.stdout.write('x'), lambda: print('x', file=ns.stdout), lambda: ns.stdout.flush):
    try:
        op()
        out.append('no error')
    except OSError as e:
        out.append(str(e))
"#,
            Some(&globals),
            None,
        )?;
        Ok(globals.get_item("out")?.unwrap().extract::<Vec<String>>()?.join("|"))
    })
    .unwrap();
    let parts: Vec<&str> = msgs.split('|').collect();
    assert_eq!(parts.len(), 3);
    assert!(
        parts.iter().all(|p| p.contains("WSGIRestrictStdout")),
        "{msgs}"
    );
}
