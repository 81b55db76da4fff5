//! start_response: validation, second calls, exc_info.

use super::*;

#[test]
fn start_response_validation() {
    // The exception types and messages of mod_wsgi 6 (its tests/wsgi/start_response.sh
    // matches on them), then ours beyond it.
    let host = host();
    let path = script(
        "validation",
        r#"
def check(fn, exc, message):
    try:
        fn()
    except Exception as e:
        assert type(e) is exc, (type(e), e, message)
        assert str(e) == message, (str(e), message)
    else:
        raise AssertionError('no %s for %r' % (exc.__name__, message))

def application(environ, start_response):
    sr = start_response
    H = [('Content-Type', 'text/plain')]
    # Status lines.
    check(lambda: sr('OK', H), ValueError, "status code must be a 3 digit integer: b'OK'")
    check(lambda: sr('20X OK', H), ValueError, "status code must be a 3 digit integer: b'20X OK'")
    check(lambda: sr('2000 OK', H), ValueError, "status code must be a 3 digit integer: b'2000 OK'")
    check(lambda: sr('200OK', H), ValueError, "no space following status code: b'200OK'")
    check(lambda: sr('200 OK\r\nX-Injected: yes', H), ValueError,
          "control character in status reason phrase: b'200 OK\\r\\nX-Injected: yes'")
    check(lambda: sr(200, H), TypeError, 'must be str, not int')
    check(lambda: sr(b'200 OK', H), TypeError, 'must be str, not bytes')
    check(lambda: sr('200 \u0100', H), UnicodeEncodeError,
          "'latin-1' codec can't encode character '\\u0100' in position 4: ordinal not in range(256)")
    # Headers.
    def hdr(*extra):
        return lambda: sr('200 OK', H + list(extra))
    check(hdr(('', 'value')), ValueError, 'header name is empty')
    check(hdr(('X Foo', 'value')), ValueError, "space character in header name: b'X Foo'")
    check(hdr(('X\tFoo', 'value')), ValueError, "control character in header name: b'X\\tFoo'")
    check(hdr(('X-Foo', 'line1\r\nline2')), ValueError,
          "carriage return/line feed character in header value: b'line1\\r\\nline2'")
    check(hdr(('X-Foo', 'line1\nline2')), ValueError,
          "carriage return/line feed character in header value: b'line1\\nline2'")
    check(hdr((42, 'value')), TypeError, 'must be str, not int')
    check(hdr(('X-Foo', 42)), TypeError, 'must be str, not int')
    check(hdr(('X-Foo', '\u65e5\u672c')), UnicodeEncodeError,
          "'latin-1' codec can't encode characters in position 0-1: ordinal not in range(256)")
    check(hdr('X-Foo:value'), TypeError, 'each header must be a 2-tuple, not str')
    check(hdr(('a', 'b', 'c')), ValueError, 'each header must be a 2-tuple, got length 3')
    check(hdr(('X',)), ValueError, 'each header must be a 2-tuple, got length 1')
    check(lambda: sr('200 OK', 'Content-Type: text/plain'), TypeError,
          'start_response() argument 2 must be list, not str')
    check(lambda: sr('200 OK', (('Content-Type', 'text/plain'),)), TypeError,
          'start_response() argument 2 must be list, not tuple')
    check(lambda: sr('200 OK', {'Content-Type': 'text/plain'}), TypeError,
          'start_response() argument 2 must be list, not dict')
    # The list check comes before the status is looked at, as in mod_wsgi.
    check(lambda: sr(200, ()), TypeError, 'start_response() argument 2 must be list, not tuple')
    check(hdr(('Content-Length', 'abc')), ValueError, "invalid Content-Length header value: 'abc'")
    # Arguments.
    check(lambda: sr('200 OK'), TypeError, 'start_response() takes at least 2 arguments (1 given)')
    check(lambda: sr('200 OK', H, None, 1), TypeError,
          'start_response() takes at most 3 arguments (4 given)')
    check(lambda: sr('200 OK', H, bogus=1), TypeError,
          "start_response() got an unexpected keyword argument 'bogus'")
    # Beyond mod_wsgi: what HTTP forbids and Apache would refuse later.
    check(lambda: sr('099 Low', H), ValueError, "status code must be between 100 and 999: b'099 Low'")
    check(hdr(('X:Y', 'a')), ValueError, "invalid character in header name: b'X:Y'")
    check(hdr(('X', 'a\x01')), ValueError, "control character in header value: b'a\\x01'")
    # None of the failures above counted as a call; keywords are accepted.
    sr(status='200 OK', headers=[('X-Ok', 'caf\xe9\tyes')])
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
fn a_bare_status_code_is_accepted() {
    let host = host();
    let path = script(
        "bare_status",
        "def application(environ, start_response):\n    \
         start_response('204', [])\n    return []\n",
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.status(), Some((204, String::new())));
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
    assert_eq!(
        body,
        "a;start_response() argument 'exc_info' must be a 3-tuple or None;\
         start_response() called more than once without exc_info;\
         function takes exactly 3 arguments (1 given)"
    );
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
