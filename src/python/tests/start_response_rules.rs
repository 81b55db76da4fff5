//! start_response: validation, second calls, exc_info.

use super::*;

#[test]
fn start_response_validation() {
    let host = host();
    let path = script(
        "validation",
        r#"
def check(fn, exc, *needles):
    try:
        fn()
    except exc as e:
        for n in needles:
            assert n in str(e), (n, str(e))
    else:
        raise AssertionError('no %s for %r' % (exc.__name__, needles))

def application(environ, start_response):
    sr = start_response
    check(lambda: sr(200, []), TypeError, 'int')
    check(lambda: sr(b'200 OK', []), TypeError, 'bytes')
    check(lambda: sr('20 OK', []), ValueError, '"20 OK"', '3 digit')
    check(lambda: sr('2000 OK', []), ValueError, '3 digit')
    check(lambda: sr('099 Low', []), ValueError, 'between 100 and 999')
    check(lambda: sr('200OK', []), ValueError, 'no space')
    check(lambda: sr('200 O\nK', []), ValueError, 'control character')
    check(lambda: sr('200 \u0100', []), ValueError, 'latin-1')
    check(lambda: sr('200 OK', ('X', 'a')), TypeError, 'list')
    check(lambda: sr('200 OK', [('X',)]), TypeError, 'tuple')
    check(lambda: sr('200 OK', [('X', 1)]), TypeError, 'int')
    check(lambda: sr('200 OK', [(b'X', 'a')]), TypeError, 'bytes')
    check(lambda: sr('200 OK', [('', 'a')]), ValueError, 'empty')
    check(lambda: sr('200 OK', [('X Y', 'a')]), ValueError, '"X Y"', 'token')
    check(lambda: sr('200 OK', [('X', 'a\r\nSet-Cookie: evil')]), ValueError, '"X"', 'carriage return')
    check(lambda: sr('200 OK', [('X', 'a\x01')]), ValueError, 'control character')
    check(lambda: sr('200 OK', [('X', '\u20ac')]), ValueError, 'latin-1')
    check(lambda: sr('200 OK', [('Content-Length', 'abc')]), ValueError, 'Content-Length', '"abc"')
    # None of the failures above counted as a call.
    sr('200 OK', [('X-Ok', 'caf\xe9\tyes')])
    return [b'ok']
"#,
    );
    let mut io = FakeIo::new();
    assert_ok(&host, &path, "/", &mut io);
    assert_eq!(io.status(), Some((200, "OK".to_string())));
    assert_eq!(
        io.headers(),
        vec![("X-Ok".to_string(), "caf\u{e9}\tyes".to_string())]
    );
}

#[test]
fn start_response_second_call_before_the_head_replaces_it() {
    let host = host();
    let path = script(
        "second",
        r#"
def application(environ, start_response):
    start_response('200 OK', [('X-A', '1')])
    start_response('201 Created', [('X-B', '2')])
    return [b'second call won']
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.status(), Some((201, "Created".to_string())));
    assert_eq!(io.headers(), vec![("X-B".to_string(), "2".to_string())]);
    assert_eq!(io.body_text(), "second call won");
}

#[test]
fn start_response_after_the_head_or_with_a_bad_exc_info_raises() {
    let host = host();
    let path = script(
        "second_after_head",
        r#"
def application(environ, start_response):
    try:
        start_response('200 OK', [], 'not a tuple')
    except RuntimeError as e:
        bad = str(e)
    else:
        bad = 'accepted'
    write = start_response('200 OK', [])
    write(b'a;')
    try:
        start_response('201 Created', [])
        msg = 'no error'
    except RuntimeError as e:
        msg = str(e)
    try:
        start_response('500 Err', [], (ValueError,))
    except TypeError as e:
        short = str(e)
    return [(bad + ';' + msg + ';' + short).encode()]
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.status(), Some((200, "OK".to_string())));
    let body = io.body_text();
    assert!(
        body.starts_with("a;start_response() argument 'exc_info' must be a 3-tuple or None"),
        "{body}"
    );
    assert!(body.contains("value of type str found"), "{body}");
    assert!(
        body.contains(";start_response() called more than once without exc_info"),
        "{body}"
    );
    assert!(body.contains("must be a 3-tuple, length 1 found"), "{body}");
}

#[test]
fn exc_info_before_head_replaces_status_and_headers() {
    let host = host();
    let path = script(
        "excinfo_replace",
        r#"
import sys
def application(environ, start_response):
    start_response('200 OK', [('X-A', '1')])
    try:
        raise ValueError('boom')
    except ValueError:
        start_response('503 Oops', [('X-B', '2')], sys.exc_info())
    return [b'replaced']
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    assert_eq!(io.status(), Some((503, "Oops".to_string())));
    assert_eq!(io.headers(), vec![("X-B".to_string(), "2".to_string())]);
    assert_eq!(io.body_text(), "replaced");
}

#[test]
fn exc_info_after_head_reraises_the_same_exception() {
    let host = host();
    let path = script(
        "excinfo_reraise",
        r#"
import sys
def application(environ, start_response):
    write = start_response('200 OK', [])
    write(b'partial')
    try:
        raise KeyError('original-marker')
    except KeyError as original:
        try:
            start_response('500 Err', [], sys.exc_info())
        except KeyError as again:
            assert again is original
            raise
    return [b'unreachable']
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::AppError { head_sent: true }
    );
    assert_eq!(io.status(), Some((200, "OK".to_string())));
    assert_eq!(io.body_text(), "partial");
    let logged = logs_with(&format!(
        "exception raised processing WSGI script '{path}' for main interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 1, "{}", dump(&path));
    assert!(
        logged[0].1.contains("KeyError: 'original-marker'"),
        "{}",
        logged[0].1
    );
    assert!(!logged[0].1.contains("AssertionError"), "{}", logged[0].1);
}
