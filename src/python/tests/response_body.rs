//! Response bodies: generators, lists, write(), close(), Content-Length.

use super::*;

#[test]
fn generator_streams_with_a_flush_per_item() {
    let host = host();
    let path = script(
        "generator",
        r#"
def application(environ, start_response):
    start_response('200 OK', [])
    yield b''
    yield b'one'
    yield b''
    yield b'two'
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    let head = Ev::Head(200, "OK".into(), vec![]);
    assert_eq!(
        io.events,
        vec![
            head,
            Ev::Body(b"one".to_vec()),
            Ev::Flush,
            Ev::Body(b"two".to_vec()),
            Ev::Flush,
            Ev::Flush
        ]
    );
}

/// A small list or tuple is sent in one go, after the app's Python work, with no flush of its
/// own: nothing of the app runs after it, so the response's end follows at once. With a
/// close() (or event subscribers) to run first, the items are sent as they are and flushed
/// before it.
#[test]
fn list_and_tuple_responses_end_with_their_last_bytes() {
    let host = host();
    let path = script(
        "list",
        r#"
class Closing(list):
    def close(self):
        pass

def application(environ, start_response):
    start_response('200 OK', [])
    items = [b'a', b'', b'b', b'c']
    if environ['PATH_INFO'] == '/tuple':
        return tuple(items)
    if environ['PATH_INFO'] == '/empty':
        return []
    if environ['PATH_INFO'] == '/closing':
        return Closing(items)
    if environ['PATH_INFO'] == '/big':
        return [b'x' * 40000, b'y' * 40000]
    return items
"#,
    );
    let head = Ev::Head(200, "OK".into(), vec![]);
    for path_info in ["/list", "/tuple"] {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, path_info, &mut io),
            Outcome::Completed
        );
        assert_eq!(
            io.events,
            vec![head.clone(), Ev::Body(b"abc".to_vec())],
            "{path_info}"
        );
    }
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/closing", &mut io),
        Outcome::Completed
    );
    assert_eq!(
        io.events,
        vec![
            head.clone(),
            Ev::Body(b"a".to_vec()),
            Ev::Body(b"b".to_vec()),
            Ev::Body(b"c".to_vec()),
            Ev::Flush
        ]
    );
    // Over the copy limit: sent from the objects themselves, still without a flush.
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/big", &mut io), Outcome::Completed);
    assert_eq!(
        io.events,
        vec![
            head.clone(),
            Ev::Body(vec![b'x'; 40000]),
            Ev::Body(vec![b'y'; 40000])
        ]
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/empty", &mut io), Outcome::Completed);
    assert_eq!(io.events, vec![head]);
}

#[test]
fn write_callable_sends_head_body_and_flushes() {
    let host = host();
    let path = script(
        "write",
        r#"
def application(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'first')
    try:
        write('str')
        err = 'no error'
    except TypeError as e:
        err = str(e)
    return [b'|' + err.encode()]
"#,
    );
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(
        io.events[0],
        Ev::Head(
            200,
            "OK".into(),
            vec![("Content-Type".into(), "text/plain".into())]
        )
    );
    assert_eq!(io.events[1], Ev::Body(b"first".to_vec()));
    assert_eq!(io.events[2], Ev::Flush);
    assert_eq!(
        io.body_text(),
        "first|write() argument must be bytes, not str"
    );
}

const CLOSE_APP: &str = r#"
class Result:
    def __init__(self, environ):
        self.marker = environ['HTTP_X_MARKER']
        self.mode = environ['PATH_INFO']
    def __iter__(self):
        yield b'chunk1'
        if self.mode == '/raise':
            raise RuntimeError('iteration failed')
        yield b'chunk2'
    def close(self):
        with open(self.marker, 'w') as f:
            f.write('closed')

def application(environ, start_response):
    start_response('200 OK', [])
    return Result(environ)
"#;

#[test]
fn close_is_called_on_success_exception_and_client_gone() {
    let host = host();
    let path = script("close", CLOSE_APP);
    let cases = [
        ("/ok", false, Outcome::Completed),
        ("/raise", false, Outcome::AppError { head_sent: true }),
        ("/client", true, Outcome::ClientGone),
    ];
    for (path_info, fail_body, expected) in cases {
        let marker = tmpdir().join(format!("close-marker{}", path_info.replace('/', "-")));
        let _ = std::fs::remove_file(&marker);
        let env = env(&[
            ("PATH_INFO", path_info.as_bytes()),
            ("HTTP_X_MARKER", marker.to_str().unwrap().as_bytes()),
        ]);
        let mut io = FakeIo {
            fail_body,
            ..FakeIo::new()
        };
        assert_eq!(
            host.handle(&spec(&path, &env), &mut io),
            expected,
            "{path_info}: {}",
            dump(&path)
        );
        assert_eq!(
            std::fs::read_to_string(&marker).ok().as_deref(),
            Some("closed"),
            "{path_info}"
        );
    }
}

#[test]
fn content_length_truncates_and_stops_iteration() {
    let host = host();
    let path = script(
        "content_length",
        r#"
resumed = []
def application(environ, start_response):
    if environ['PATH_INFO'] == '/resumed':
        start_response('200 OK', [])
        return [str(len(resumed)).encode()]
    start_response('200 OK', [('Content-Length', '5')])
    if environ['PATH_INFO'] == '/list':
        return [b'abc', b'defgh', b'ij']
    def gen():
        yield b'abc'
        yield b'defgh'
        resumed.append(1)
        yield b'ij'
    return gen()
"#,
    );
    for path_info in ["/list", "/gen"] {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, path_info, &mut io),
            Outcome::Completed
        );
        assert_eq!(io.body_text(), "abcde", "{path_info}");
    }
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/resumed", &mut io),
        Outcome::Completed
    );
    assert_eq!(
        io.body_text(),
        "0",
        "the generator was resumed after Content-Length was reached"
    );
}
