//! wsgi.input: reads, readline(s), expiry with the request, read errors.

use super::*;

const INPUT_APP: &str = r#"
def application(environ, start_response):
    inp = environ['wsgi.input']
    op = environ['PATH_INFO']
    if op == '/read': out = [inp.read()]
    elif op == '/read-1': out = [inp.read(-1)]
    elif op == '/readn': out = [inp.read(0), inp.read(3), inp.read(7), inp.read(100), inp.read(5)]
    elif op == '/readline': out = [inp.readline(), inp.readline(4), inp.readline(), inp.readline(), inp.readline(), inp.readline()]
    elif op == '/readlines': out = inp.readlines()
    elif op == '/readlines-hint': out = inp.readlines(3)
    elif op == '/iter': out = list(inp)
    start_response('200 OK', [])
    return [b'|'.join(out)]
"#;

const BODY: [&[u8]; 4] = [b"ab\ncd", b"ef\ngh", b"ij\n", b"k"];

fn input_case(path_info: &str) -> FakeIo {
    let host = host();
    let path = script("input", INPUT_APP);
    let mut io = FakeIo::with_body(&BODY);
    let outcome = request(&host, &path, path_info, &mut io);
    assert_eq!(outcome, Outcome::Completed, "{}", dump(&path));
    io
}

#[test]
fn input_read_all() {
    assert_eq!(input_case("/read").body_text(), "ab\ncdef\nghij\nk");
    assert_eq!(input_case("/read-1").body_text(), "ab\ncdef\nghij\nk");
}

#[test]
fn input_read_n_never_asks_for_more_than_needed() {
    let io = input_case("/readn");
    assert_eq!(io.body_text(), "|ab\n|cdef\ngh|ij\nk|");
    // read(3): 3; read(7): 7 → "cd", then 5; read(100): 100 → "ij\n", 97 → "k", 96 → EOF;
    // read(5) at EOF asks nothing.
    assert_eq!(io.reads, vec![3, 7, 5, 100, 97, 96]);
}

#[test]
fn input_readline_across_chunks_and_with_size() {
    let io = input_case("/readline");
    assert_eq!(io.body_text(), "ab\n|cdef|\n|ghij\n|k|");
    assert!(
        io.reads.iter().all(|&r| r == input::CHUNK),
        "{:?}",
        io.reads
    );
}

#[test]
fn input_readlines_hint_and_iteration() {
    assert_eq!(input_case("/readlines").body_text(), "ab\n|cdef\n|ghij\n|k");
    assert_eq!(input_case("/readlines-hint").body_text(), "ab\n");
    assert_eq!(input_case("/iter").body_text(), "ab\n|cdef\n|ghij\n|k");
}

#[test]
fn input_expires_with_the_request() {
    let host = host();
    let path = script(
        "expired",
        r#"
stash = []
def application(environ, start_response):
    start_response('200 OK', [])
    if environ['PATH_INFO'] == '/stash':
        stash.append(environ['wsgi.input'])
        return [b'stashed']
    out = []
    for op in (lambda i: i.read(), lambda i: i.readline(), lambda i: i.read(0), lambda i: list(i)):
        try:
            op(stash[0])
            out.append('no error')
        except RuntimeError as e:
            out.append(str(e))
    return ['|'.join(out).encode()]
"#,
    );
    let mut io = FakeIo::with_body(&[b"data"]);
    assert_eq!(request(&host, &path, "/stash", &mut io), Outcome::Completed);
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/use", &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    let expired = "request object has expired";
    assert_eq!(io.body_text(), [expired; 4].join("|"));
}

#[test]
fn input_read_error_raises_oserror_and_stays_failed() {
    let host = host();
    let path = script(
        "readerror",
        r#"
def application(environ, start_response):
    inp = environ['wsgi.input']
    out = []
    for op in (inp.read, inp.readline):
        try:
            op()
            out.append('no error')
        except OSError as e:
            out.append(str(e))
    start_response('200 OK', [])
    return ['|'.join(out).encode()]
"#,
    );
    let mut io = FakeIo {
        read_error: true,
        ..FakeIo::new()
    };
    assert_eq!(
        request(&host, &path, "/", &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    let body = io.body_text();
    let parts: Vec<&str> = body.split('|').collect();
    assert_eq!(parts.len(), 2);
    for p in parts {
        assert!(
            p.starts_with("mod_rwsgi: request data read error: peer reset"),
            "{body}"
        );
    }
    assert_eq!(io.reads.len(), 1, "a failed input must not read again");
}
