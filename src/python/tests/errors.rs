//! Application errors: 500s, tracebacks, bad body items, client gone, panics.

use super::*;

#[test]
fn exception_before_head_gives_500_and_one_traceback_log() {
    let host = host();
    let path = script(
        "raise500",
        r#"
def application(environ, start_response):
    start_response('200 OK', [('X-Never', 'sent')])
    raise ValueError('marker-500')
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::AppError { head_sent: false }
    );
    let (code, _) = io.status().expect("a 500 head");
    assert_eq!(code, 500);
    assert!(
        io.headers()
            .iter()
            .any(|(n, v)| n == "Content-Type" && v.starts_with("text/html"))
    );
    assert!(io.body_text().contains("<h1>Internal Server Error</h1>"));
    let logged = logs_with(&format!(
        "exception raised processing WSGI script '{path}' for main interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 1, "{}", dump(&path));
    let (level, msg) = &logged[0];
    assert_eq!(*level, Level::Error);
    assert!(
        msg.contains("\nTraceback (most recent call last):\n"),
        "{msg}"
    );
    assert!(msg.contains("ValueError: marker-500"), "{msg}");
    // The same thread keeps serving.
    let ok = script(
        "after500",
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
    );
    assert_ok(&host, &ok, "/", &mut FakeIo::new());
}

#[test]
fn bad_body_items_are_type_errors() {
    let host = host();
    let path = script(
        "badbody",
        r#"
def application(environ, start_response):
    start_response('200 OK', [])
    if environ['PATH_INFO'] == '/str':
        return ['text']
    if environ['PATH_INFO'] == '/mixed':
        return [b'a', 'b']
    def gen():
        yield b'a'
        yield bytearray(b'b')
    return gen()
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/str", &mut io),
        Outcome::AppError { head_sent: false }
    );
    assert_eq!(io.status().map(|s| s.0), Some(500));
    // After a first chunk, as mod_wsgi 6: what came before reaches the client, then the
    // response is cut (a list as a generator).
    for path_info in ["/mixed", "/gen"] {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, path_info, &mut io),
            Outcome::AppError { head_sent: true },
            "{path_info}"
        );
        assert_eq!(io.status().map(|s| s.0), Some(200), "{path_info}");
        assert_eq!(io.body_text(), "a", "{path_info}");
        assert!(
            matches!(io.events.last(), Some(Ev::Flush)),
            "{path_info}: the chunk before the bad item is flushed"
        );
    }
    let logged = logs_with(&format!(
        "exception raised processing WSGI script '{path}' for main interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 3, "{}", dump(&path));
    let has = |needle: &str| logged.iter().filter(|(_, m)| m.contains(needle)).count();
    assert_eq!(
        has("TypeError: response iterable must yield bytes, not str"),
        2,
        "{}",
        dump(&path)
    );
    assert_eq!(
        has("TypeError: response iterable must yield bytes, not bytearray"),
        1,
        "{}",
        dump(&path)
    );
}

#[test]
fn none_result_and_missing_start_response_are_errors() {
    let host = host();
    let path = script(
        "nostart",
        r#"
def application(environ, start_response):
    if environ['PATH_INFO'] == '/none':
        start_response('200 OK', [])
        return None
    if environ['PATH_INFO'] == '/empty':
        return []
    return [b'body without start_response']
"#,
    );
    for (path_info, needle) in [
        ("/none", "'NoneType' object is not iterable"),
        ("/empty", "start_response"),
        ("/body", "start_response"),
    ] {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, path_info, &mut io),
            Outcome::AppError { head_sent: false }
        );
        assert_eq!(io.status().map(|s| s.0), Some(500), "{path_info}");
        assert!(!io.body_text().contains("body without"), "{path_info}");
        let logged = logs_with(&format!(
            "exception raised processing WSGI script '{path}' for main interpreter of daemon process 'pytest'."
        ));
        assert!(
            logged.iter().any(|(_, m)| m.contains(needle)),
            "{path_info}: {}",
            dump(&path)
        );
    }
}

#[test]
fn client_gone_during_write_propagated_by_the_app() {
    let host = host();
    let path = script(
        "writegone",
        r#"
def application(environ, start_response):
    write = start_response('200 OK', [])
    write(b'data')
    return [b'never']
"#,
    );
    let mut io = FakeIo {
        fail_body: true,
        ..FakeIo::new()
    };
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::ClientGone,
        "{}",
        dump(&path)
    );
    let logged = logs_with(&format!(
        "Client connection closed while sending the response of WSGI script '{path}'"
    ));
    assert_eq!(logged.len(), 1, "{}", dump(&path));
    assert!(
        logged[0].1.contains("failed to write response data"),
        "{}",
        logged[0].1
    );
}

#[test]
fn a_panicking_io_becomes_app_error_and_the_thread_keeps_serving() {
    let host = host();
    let path = script(
        "panic",
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
    );
    let mut io = FakeIo {
        panic_on_body: true,
        ..FakeIo::new()
    };
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::AppError { head_sent: true }
    );
    assert_eq!(logs_with("fake io panics in send_body").len(), 1);
    assert_ok(&host, &path, "/", &mut FakeIo::new());
}

/// A Rust panic where Python calls into mod_rwsgi (here `write()`, whose send panics) raises
/// a `SystemError` with the panic's message, an exception of every interpreter, not pyo3's
/// `PanicException`, whose one type object belongs to the first interpreter that made it
/// (`native_class::catch_panic`).
#[test]
fn a_panic_inside_a_native_call_raises_system_error_not_pyo3_panic_exception() {
    let host = host();
    let path = script(
        "panic_in_write",
        "def application(environ, start_response):\n\
         \x20   write = start_response('200 OK', [])\n\
         \x20   try:\n\
         \x20       write(b'x')\n\
         \x20   except BaseException as exc:\n\
         \x20       kept = str(exc) == 'mod_rwsgi: internal error (Rust panic) in write: fake io ' + 'panics in send_body'\n\
         \x20       print('caught %s, message kept: %s' % (type(exc).__name__, kept), file=environ['wsgi.errors'])\n\
         \x20   return []\n",
    );
    let mut io = FakeIo {
        panic_on_body: true,
        ..FakeIo::new()
    };
    let _ = request(&host, &path, "/", &mut io);
    let caught = logs_with("caught ");
    assert!(
        caught
            .iter()
            .any(|(_, m)| m.contains("caught SystemError, message kept: True")),
        "{caught:?}\n{}",
        dump(&path)
    );
}

#[test]
fn a_request_timeout_raised_as_its_request_ended_is_withdrawn() {
    init();
    std::thread::spawn(|| {
        // Like a daemon's request thread, this one keeps its Python thread state between
        // requests, so an exception raised in it stays pending there.
        // SAFETY: Python is initialised and this thread does not hold the GIL.
        unsafe {
            pyo3::ffi::PyGILState_Ensure();
            pyo3::ffi::PyEval_SaveThread();
        }
        let ident: u64 = Python::attach(|py| {
            py.import("threading")
                .and_then(|t| t.call_method0("get_ident"))
                .and_then(|i| i.extract())
                .unwrap()
        });
        let next_request = || {
            Python::attach(|py| {
                py.run(c"total = sum(range(10))", None, None)
                    .map_err(|e| e.get_type(py).name().unwrap().to_string())
            })
        };
        // Left pending, it lands in whatever Python code the thread runs next.
        assert!(interrupt_thread(ident));
        assert_eq!(next_request(), Err("RequestTimeout".to_string()));
        assert!(interrupt_thread(ident));
        clear_interrupt(ident);
        assert_eq!(next_request(), Ok(()));
    })
    .join()
    .unwrap();
}
