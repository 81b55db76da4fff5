//! The WSGI environ: keys, latin-1 values, url scheme, timing keys.

use super::*;

#[test]
fn environ_keys_and_latin1_values() {
    let host = host();
    let path = script(
        "environ",
        r#"
import hashlib
def application(environ, start_response):
    e = environ
    assert 'leak' not in e, 'environ is not fresh per request'
    e['leak'] = 1
    assert e['REQUEST_METHOD'] == 'GET'
    assert e['HTTP_X_LATIN'] == 'caf\xe9 \xff', repr(e['HTTP_X_LATIN'])
    assert type(e['HTTP_X_LATIN']) is str
    assert 'HTTPS' not in e
    assert e['wsgi.url_scheme'] == 'https', e['wsgi.url_scheme']
    assert e['wsgi.version'] == (1, 0)
    assert e['wsgi.input_terminated'] is True
    assert e['wsgi.multithread'] is True
    assert e['wsgi.multiprocess'] is True
    assert e['wsgi.run_once'] is False
    assert hasattr(e['wsgi.input'], 'read') and hasattr(e['wsgi.errors'], 'write')
    import mod_wsgi
    assert e['wsgi.file_wrapper'] is mod_wsgi.FileWrapper
    assert e['mod_wsgi.process_group'] == 'pytest'
    assert e['mod_wsgi.application_group'] == ''
    assert e['mod_wsgi.callable_object'] == 'application'
    assert e['mod_wsgi.script_name'] == e['SCRIPT_NAME'] == '/app'
    assert e['mod_wsgi.path_info'] == e['PATH_INFO'] == '/p\xe4th', repr(e['PATH_INFO'])
    assert e['mod_wsgi.version'] == (6, 0, 5)
    assert all(type(k) is str for k in e)
    assert __name__ == '_mod_wsgi_' + hashlib.md5(__file__.encode()).hexdigest(), __name__
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
"#,
    );
    for _ in 0..2 {
        let env = env(&[
            ("HTTP_X_LATIN", b"caf\xe9 \xff"),
            ("HTTPS", b"on"),
            ("PATH_INFO", b"/p\xe4th"),
        ]);
        let mut io = FakeIo::new();
        let outcome = host.handle(&spec(&path, &env), &mut io);
        assert_eq!(
            (outcome, io.body_text()),
            (Outcome::Completed, "ok".into()),
            "{}",
            dump(&path)
        );
    }
}

#[test]
fn url_scheme_from_https_and_request_scheme() {
    let host = host();
    let path = script(
        "scheme",
        r#"
def application(environ, start_response):
    start_response('200 OK', [])
    return [environ['wsgi.url_scheme'].encode(), b' ', str('HTTPS' in environ).encode()]
"#,
    );
    type Extra<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(Extra<'_>, &str); 5] = [
        (&[("HTTPS", b"on")], "https False"),
        (&[("HTTPS", b"1")], "https False"),
        (
            &[("HTTPS", b"off"), ("REQUEST_SCHEME", b"http")],
            "http False",
        ),
        (&[("REQUEST_SCHEME", b"https")], "https False"),
        (&[], "http False"),
    ];
    for (extra, expected) in cases {
        let env = env(extra);
        let mut io = FakeIo::new();
        assert_eq!(host.handle(&spec(&path, &env), &mut io), Outcome::Completed);
        assert_eq!(io.body_text(), expected, "{extra:?}");
    }
}

#[test]
fn timing_keys_are_float_seconds_and_thread_id_an_int() {
    let host = host();
    let path = script(
        "timing",
        r#"
import threading, time
def application(environ, start_response):
    assert environ['mod_wsgi.request_start'] == 1700000000.25, environ['mod_wsgi.request_start']
    assert environ['mod_wsgi.queue_start'] == 1700000000.5
    assert environ['mod_wsgi.daemon_start'] == 0.0
    app_start = environ['mod_wsgi.application_start']
    assert type(app_start) is float and time.time() - 60 < app_start <= time.time(), app_start
    assert type(environ['mod_wsgi.thread_id']) is int, environ['mod_wsgi.thread_id']
    assert type(environ['apache.version']) is tuple and len(environ['apache.version']) == 3
    assert environ['mod_wsgi.version'] == (6, 0, 5)
    start_response('200 OK', [])
    return [b'ok']
"#,
    );
    let env = env(&[("PATH_INFO", b"/")]);
    let spec = RequestSpec {
        times: RequestTimes {
            request_start_us: 1_700_000_000_250_000,
            queue_start_us: 1_700_000_000_500_000,
            daemon_start_us: 0,
        },
        ..spec(&path, &env)
    };
    let mut io = FakeIo::new();
    assert_eq!(
        host.handle(&spec, &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    assert_eq!(io.body_text(), "ok", "{}", dump(&path));
}

#[test]
fn remembered_values_follow_each_requests_own_bytes() {
    let host = host();
    let path = script(
        "environ_values",
        r#"
def application(environ, start_response):
    start_response('200 OK', [])
    return ['|'.join([environ['HTTP_HOST'], environ['HTTP_USER_AGENT'],
                      environ['REMOTE_PORT']]).encode('latin-1')]
"#,
    );
    let long = "L".repeat(300);
    let run = |host_header: &str, agent: &[u8], port: &str| -> String {
        let extra = [
            ("HTTP_HOST", host_header.as_bytes()),
            ("HTTP_USER_AGENT", agent),
            ("REMOTE_PORT", port.as_bytes()),
        ];
        completed_body(&host, &path, &extra)
    };
    // The same bytes again, other bytes, a value past the remembered length, latin-1.
    assert_eq!(run("a.example", b"ua", "1"), "a.example|ua|1");
    assert_eq!(run("a.example", b"ua", "2"), "a.example|ua|2");
    assert_eq!(run("b.example", b"ua\xe9", "3"), "b.example|ua\u{e9}|3");
    assert_eq!(
        run("a.example", long.as_bytes(), "4"),
        format!("a.example|{long}|4")
    );
    assert_eq!(run("ab.example", b"u", "4"), "ab.example|u|4");
    assert_eq!(run("a.example", b"", "5"), "a.example||5");
}
