//! Tests of the CPython host against one test-wide interpreter (initialised once, never
//! finalised), a fake `RequestIo` and small WSGI scripts written to a temp dir. Most checks run
//! inside the WSGI app as Python asserts: a failed assert becomes a logged traceback and a 500,
//! which the Rust side reports.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::interpreter::{check_runtime_version, check_venv, major_minor};
use super::start_response::{validate_header, validate_status};
use super::*;

// ---------------------------------------------------------------- log capture

static LOGS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

pub(super) fn capture_log(level: Level, msg: &str) {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((level, msg.to_string()));
}

fn logs_with(needle: &str) -> Vec<(Level, String)> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, m)| m.contains(needle))
        .cloned()
        .collect()
}

/// Everything logged about `needle` (a script path), for assertion messages.
fn dump(needle: &str) -> String {
    logs_with(needle)
        .iter()
        .map(|(l, m)| format!("[{l:?}] {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------- interpreter

static INIT: Once = Once::new();

fn build_version() -> String {
    let out = std::process::Command::new(env!("RWSGI_BUILD_PYTHON_EXECUTABLE"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run the Python the module is built against");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn init() {
    INIT.call_once(|| {
        let settings = InterpreterSettings {
            python_home: None,
            build_executable: env!("RWSGI_BUILD_PYTHON_EXECUTABLE").to_string(),
            build_version: build_version(),
            process_group: "pytest".to_string(),
            processes: 3,
            processes_given: true,
            threads: 5,
            maximum_requests: 0,
            header_buffer_size: 0,
            ..InterpreterSettings::default()
        };
        initialize(&settings).expect("initialise the test interpreter");
    });
}

// ---------------------------------------------------------------- fake io

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Head(u16, String, Vec<(String, String)>),
    Body(Vec<u8>),
    Flush,
    File(u64, u64, Vec<u8>),
}

#[derive(Default)]
struct FakeIo {
    chunks: VecDeque<Vec<u8>>,
    reads: Vec<usize>,
    events: Vec<Ev>,
    read_error: bool,
    fail_body: bool,
    panic_on_body: bool,
    sendfile: bool,
}

fn text(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

impl FakeIo {
    fn new() -> FakeIo {
        FakeIo::default()
    }

    fn with_body(chunks: &[&[u8]]) -> FakeIo {
        FakeIo {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            ..FakeIo::default()
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in &self.events {
            match ev {
                Ev::Body(b) | Ev::File(_, _, b) => out.extend_from_slice(b),
                _ => {}
            }
        }
        out
    }

    fn body_text(&self) -> String {
        text(&self.body())
    }

    fn status(&self) -> Option<(u16, String)> {
        self.events.iter().find_map(|e| match e {
            Ev::Head(code, reason, _) => Some((*code, reason.clone())),
            _ => None,
        })
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .find_map(|e| match e {
                Ev::Head(_, _, h) => Some(h.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

impl RequestIo for FakeIo {
    fn read_body(&mut self, max: usize) -> io::Result<Vec<u8>> {
        self.reads.push(max);
        if self.read_error {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
        }
        let Some(mut chunk) = self.chunks.pop_front() else {
            return Ok(Vec::new());
        };
        if chunk.len() > max {
            let rest = chunk.split_off(max);
            self.chunks.push_front(rest);
        }
        Ok(chunk)
    }

    fn send_head(
        &mut self,
        status: u16,
        reason: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        let headers = headers.iter().map(|(n, v)| (text(n), text(v))).collect();
        self.events.push(Ev::Head(status, text(reason), headers));
        Ok(())
    }

    fn send_body(&mut self, data: &[u8]) -> io::Result<()> {
        if self.panic_on_body {
            panic!("fake io panics in send_body");
        }
        if self.fail_body {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        self.events.push(Ev::Body(data.to_vec()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.fail_body {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        self.events.push(Ev::Flush);
        Ok(())
    }

    fn send_file(&mut self, fd: std::os::fd::RawFd, offset: u64, len: u64) -> io::Result<bool> {
        if !self.sendfile {
            return Ok(false);
        }
        let file = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
        let mut data = vec![0; len as usize];
        file.read_exact_at(&mut data, offset)?;
        self.events.push(Ev::File(offset, len, data));
        Ok(true)
    }
}

// ---------------------------------------------------------------- helpers

fn tmpdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rwsgi-python-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a WSGI script and returns its path.
fn script(name: &str, source: &str) -> String {
    let path = tmpdir().join(format!("{name}.wsgi"));
    std::fs::write(&path, source).unwrap();
    path.to_str().unwrap().to_string()
}

/// Rewrites a script with an mtime that certainly differs from the previous one.
fn rewrite(path: &str, source: &str, secs: u64) {
    std::fs::write(path, source).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn env(extra: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = [
        ("REQUEST_METHOD", &b"GET"[..]),
        ("SCRIPT_NAME", b"/app"),
        ("PATH_INFO", b"/"),
        ("QUERY_STRING", b""),
        ("SERVER_NAME", b"localhost"),
        ("SERVER_PORT", b"80"),
        ("SERVER_PROTOCOL", b"HTTP/1.1"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
    .collect();
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k.as_bytes());
        pairs.push((k.as_bytes().to_vec(), v.to_vec()));
    }
    pairs
}

fn spec<'a>(path: &'a str, env: &'a [(Vec<u8>, Vec<u8>)]) -> RequestSpec<'a> {
    RequestSpec {
        script_path: path,
        app_group: "",
        callable: "",
        env,
        script_reloading: ScriptReloading::InPlace,
        times: RequestTimes::default(),
    }
}

/// One request with defaults; `path_info` selects the app's branch.
fn request(host: &AppHost, path: &str, path_info: &str, io: &mut FakeIo) -> Outcome {
    let env = env(&[("PATH_INFO", path_info.as_bytes())]);
    host.handle(&spec(path, &env), io)
}

fn host() -> AppHost {
    init();
    AppHost::new()
}

/// Runs a request that should complete with body "ok" (the app's Python asserts passed).
fn assert_ok(host: &AppHost, path: &str, path_info: &str, io: &mut FakeIo) {
    let outcome = request(host, path, path_info, io);
    assert_eq!(
        (outcome, io.body_text()),
        (Outcome::Completed, "ok".to_string()),
        "log:\n{}",
        dump(path)
    );
}

// ---------------------------------------------------------------- environ

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

// ---------------------------------------------------------------- wsgi.input

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

// ---------------------------------------------------------------- environ

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

// ---------------------------------------------------------------- start_response

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

// ---------------------------------------------------------------- response body

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
        "first|expected bytes object for write(), value of type str found"
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

// ---------------------------------------------------------------- errors

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
    for path_info in ["/str", "/mixed"] {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, path_info, &mut io),
            Outcome::AppError { head_sent: false }
        );
        assert_eq!(io.status().map(|s| s.0), Some(500), "{path_info}");
    }
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/gen", &mut io),
        Outcome::AppError { head_sent: true }
    );
    assert_eq!(io.body_text(), "a");
    let logged = logs_with(&format!(
        "exception raised processing WSGI script '{path}' for main interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 3, "{}", dump(&path));
    assert!(
        logged
            .iter()
            .all(|(_, m)| m.contains("TypeError: sequence of byte string values expected"))
    );
    assert!(
        logged
            .iter()
            .any(|(_, m)| m.contains("value of type bytearray found"))
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

// ---------------------------------------------------------------- loading

#[test]
fn callable_object_and_missing_callable() {
    let host = host();
    let path = script(
        "callable",
        r#"
def app2(environ, start_response):
    start_response('200 OK', [])
    return [environ['mod_wsgi.callable_object'].encode()]
"#,
    );
    let env = env(&[]);
    let mut io = FakeIo::new();
    let spec2 = RequestSpec {
        callable: "app2",
        ..spec(&path, &env)
    };
    assert_eq!(
        host.handle(&spec2, &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    assert_eq!(io.body_text(), "app2");
    let mut io = FakeIo::new();
    assert_eq!(
        host.handle(&spec(&path, &env), &mut io),
        Outcome::LoadFailed
    );
    assert!(io.events.is_empty());
    let msg = format!("callable 'application' not found in WSGI script '{path}'");
    assert_eq!(logs_with(&msg).len(), 1, "{}", dump(&path));
}

#[test]
fn load_failure_is_logged_backed_off_and_fixed_by_touching() {
    let host = host();
    let path = script("loadfail", "raise ImportError('load-marker')\n");
    for attempt in 1..=2 {
        let mut io = FakeIo::new();
        assert_eq!(request(&host, &path, "/", &mut io), Outcome::LoadFailed);
        assert!(io.events.is_empty());
        let logged = logs_with(&format!("Unable to execute Python script file '{path}'."));
        // The second request comes within the back-off: the script is not run again.
        assert_eq!(logged.len(), 1, "attempt {attempt}");
        assert!(
            logged[0].1.contains("Traceback") && logged[0].1.contains("ImportError: load-marker")
        );
    }
    let backed_off = logs_with(&format!(
        "WSGI script '{path}' failed to load; not retrying"
    ));
    assert_eq!(backed_off.len(), 1, "{}", dump(&path));
    // After the back-off the next request tries again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        request(&host, &path, "/", &mut FakeIo::new()),
        Outcome::LoadFailed
    );
    assert_eq!(
        logs_with(&format!("Unable to execute Python script file '{path}'.")).len(),
        2
    );
    rewrite(
        &path,
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
        1_000_000,
    );
    assert_ok(&host, &path, "/", &mut FakeIo::new());
}

/// A script with mod_wsgi's reload hooks: it counts its imports, records what its
/// `reload_required` was called with, and is told by the request path what to do.
const HOOKS_SCRIPT: &str = r#"
import builtins
_counts = builtins.__dict__.setdefault('_rwsgi_hook_imports', {})
_counts[__file__] = IMPORTS = _counts.get(__file__, 0) + 1
MODE = []
SEEN = []
def reload_required(resource):
    SEEN.append(resource)
    if MODE == ['raise']:
        raise ValueError('hook-failure-marker')
    return MODE == ['yes']
def application(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/drop-mtime':
        del globals()['__mtime__']
    elif path in ('/yes', '/raise'):
        MODE[:] = [path[1:]]
    mtime = globals().get('__mtime__')
    start_response('200 OK', [])
    return [('%d|%s|%r|%s' % (IMPORTS, type(mtime).__name__, mtime, SEEN[-1] if SEEN else '')).encode()]
"#;

#[test]
fn reload_hooks_mtime_and_reload_required_in_place() {
    let host = host();
    let path = script("hooks", HOOKS_SCRIPT);
    let get = |info: &str| {
        let mut io = FakeIo::new();
        assert_eq!(
            request(&host, &path, info, &mut io),
            Outcome::Completed,
            "{}",
            dump(&path)
        );
        let body = io.body_text();
        let parts: Vec<String> = body.split('|').map(str::to_string).collect();
        (
            parts[0].parse::<u32>().unwrap(),
            parts[1].clone(),
            parts[2].clone(),
            parts[3].clone(),
        )
    };
    // __mtime__ is the file's mtime in µs, an int, as mod_wsgi sets it.
    let file_us = std::fs::metadata(&path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let (imports, ty, mtime, _) = get("/");
    assert_eq!(
        (imports, ty.as_str(), mtime),
        (1, "int", file_us.to_string())
    );
    assert_eq!(
        logs_with(&format!(
            "Loading WSGI script '{path}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1
    );
    // reload_required is called with the request's file, the script itself.
    assert_eq!(get("/").3, path);
    // Removing __mtime__ forces a reload.
    assert_eq!(get("/drop-mtime").0, 1);
    assert_eq!(get("/").0, 2, "{}", dump(&path));
    assert_eq!(
        logs_with(&format!(
            "Reloading WSGI script '{path}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1
    );
    assert_eq!(
        logs_with(&format!(
            "WSGI script '{path}' will be re-imported: its module no longer has __mtime__"
        ))
        .len(),
        1
    );
    // reload_required() returning True forces a reload.
    assert_eq!(get("/yes").0, 2);
    assert_eq!(get("/").0, 3);
    assert_eq!(
        logs_with("will be re-imported: its reload_required() returned a true value").len(),
        1
    );
    // An exception in it is logged with its traceback, and does not reload.
    assert_eq!(get("/raise").0, 3);
    assert_eq!(get("/").0, 3);
    let logged = logs_with(&format!(
        "[script {path}] ValueError exception raised processing WSGI script '{path}' for main \
         interpreter of daemon process 'pytest'."
    ));
    assert_eq!(logged.len(), 1, "{}", dump(&path));
    assert_eq!(logged[0].0, Level::Error);
    assert!(
        logged[0].1.contains("Traceback (most recent call last)"),
        "{}",
        logged[0].1
    );
    assert!(
        logged[0].1.contains("ValueError: hook-failure-marker"),
        "{}",
        logged[0].1
    );
}

#[test]
fn exception_lines_name_the_type_as_mod_wsgi() {
    let host = host();
    let path = script(
        "typename",
        r#"
import json
class AppError(Exception):
    pass
def application(environ, start_response):
    kind = environ['PATH_INFO']
    if kind == '/app':
        raise AppError('x')
    if kind == '/json':
        json.loads('{')
    int('not a number')
"#,
    );
    for (info, name) in [
        ("/app", "AppError"),
        ("/json", "JSONDecodeError"),
        ("/int", "ValueError"),
    ] {
        let mut io = FakeIo::new();
        request(&host, &path, info, &mut io);
        let needle = format!("] {name} exception raised processing WSGI script '{path}'");
        assert_eq!(logs_with(&needle).len(), 1, "{name}: {}", dump(&path));
    }
}

#[test]
fn reload_hooks_ask_a_daemon_to_replace_its_process() {
    let host = host();
    let path = script("hooks_daemon", HOOKS_SCRIPT);
    let env = env(&[("PATH_INFO", b"/yes")]);
    let daemon = RequestSpec {
        script_reloading: ScriptReloading::ReplaceProcess,
        ..spec(&path, &env)
    };
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&daemon, &mut io), Outcome::Completed);
    assert!(io.body_text().starts_with("1|int|"), "{}", io.body_text());
    // The next request is not run: the daemon is to be replaced.
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&daemon, &mut io), Outcome::ReloadRequired);
    assert!(io.events.is_empty(), "nothing may be sent: {:?}", io.events);
    assert_eq!(
        logs_with(&format!(
            "Forcing restart of daemon process 'pytest' due to modification of script '{path}'. \
             Reason: its reload_required() returned a true value."
        ))
        .len(),
        1,
        "{}",
        dump(&path)
    );
    // WSGIScriptReloading Off: no check at all.
    let off = RequestSpec {
        script_reloading: ScriptReloading::Off,
        ..daemon
    };
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&off, &mut io), Outcome::Completed);
}

#[test]
fn reload_on_mtime_inequality_and_scripts_changed() {
    let host = host();
    let v =
        |n: u32| format!("def application(e, sr):\n    sr('200 OK', [])\n    return [b'v{n}']\n");
    let path = script("reload", &v(1));
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v1");
    assert!(!host.scripts_changed());
    // An *older* mtime counts too: mod_wsgi tests for inequality.
    rewrite(&path, &v(2), 1_000);
    assert!(host.scripts_changed());
    let env = env(&[]);
    let mut io = FakeIo::new();
    let no_reload = RequestSpec {
        script_reloading: ScriptReloading::Off,
        ..spec(&path, &env)
    };
    assert_eq!(host.handle(&no_reload, &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v1");
    let mut io = FakeIo::new();
    assert_eq!(request(&host, &path, "/", &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "v2");
    assert!(!host.scripts_changed());
}

#[test]
fn application_groups_get_separate_modules_and_one_notice() {
    let host = host();
    let path = script(
        "groups",
        r#"
hits = []
def application(environ, start_response):
    hits.append(1)
    start_response('200 OK', [])
    return [b'%d %s' % (len(hits), __name__.encode())]
"#,
    );
    let env = env(&[]);
    let mut bodies = Vec::new();
    for group in ["grp-test-a", "grp-test-b", "grp-test-a", "grp-test-c"] {
        let mut io = FakeIo::new();
        let s = RequestSpec {
            app_group: group,
            ..spec(&path, &env)
        };
        assert_eq!(
            host.handle(&s, &mut io),
            Outcome::Completed,
            "{}",
            dump(&path)
        );
        bodies.push(io.body_text());
    }
    let split = |b: &String| {
        b.split_once(' ')
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .unwrap()
    };
    let (a1, b1, a2, c1) = (
        split(&bodies[0]),
        split(&bodies[1]),
        split(&bodies[2]),
        split(&bodies[3]),
    );
    assert_eq!(
        (a1.0.as_str(), b1.0.as_str(), a2.0.as_str(), c1.0.as_str()),
        ("1", "1", "2", "1")
    );
    assert_eq!(a1.1, a2.1);
    assert_ne!(a1.1, b1.1);
    assert!(a1.1.starts_with("_mod_wsgi_") && b1.1.starts_with("_mod_wsgi_"));
    let notices: Vec<_> = logs_with("more than one application group")
        .into_iter()
        .filter(|(_, m)| m.contains("'grp-test-"))
        .collect();
    assert_eq!(notices.len(), 1, "the notice is logged once: {notices:?}");
    assert_eq!(notices[0].0, Level::Info);
    assert!(
        notices[0].1.contains("'grp-test-a', 'grp-test-b'"),
        "{}",
        notices[0].1
    );
}

#[test]
fn concurrent_first_requests_load_the_script_once() {
    let host = host();
    let marker = tmpdir().join("load-once-marker");
    let _ = std::fs::remove_file(&marker);
    let path = script(
        "loadonce",
        &format!(
            "import time\ntime.sleep(0.3)\nwith open({:?}, 'a') as f:\n    f.write('x')\n\
             def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
            marker.to_str().unwrap()
        ),
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_ok(&host, &path, "/", &mut FakeIo::new()));
        }
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x");
}

#[test]
fn preload_success_and_failure() {
    let host = host();
    let good = script(
        "preload_good",
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'ok']\n",
    );
    host.preload(&good, "").expect("preload");
    assert_ok(&host, &good, "/", &mut FakeIo::new());
    assert_eq!(
        logs_with(&format!(
            "Loading WSGI script '{good}' into main interpreter of daemon process 'pytest'."
        ))
        .len(),
        1,
        "loaded twice"
    );
    let bad = script("preload_bad", "1/0\n");
    let err = host.preload(&bad, "").unwrap_err();
    assert!(
        err.contains("ZeroDivisionError") && err.contains(&bad),
        "{err}"
    );
}

// ---------------------------------------------------------------- file_wrapper

const FILE_APP: &str = r#"
import io
def application(environ, start_response):
    fw = environ['wsgi.file_wrapper']
    w = fw(io.BytesIO(b'abc'), 2)
    assert list(w) == [b'ab', b'c']
    w.close()
    assert w.filelike.closed and w.blksize == 2
    f = open(environ['HTTP_X_FILE'], 'rb')
    f.seek(100)
    headers = []
    if environ['PATH_INFO'] == '/cl':
        headers.append(('Content-Length', '50'))
    start_response('200 OK', headers)
    return fw(f, 64)
"#;

fn data_file() -> (String, Vec<u8>) {
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let path = tmpdir().join("file_wrapper.bin");
    std::fs::write(&path, &data).unwrap();
    (path.to_str().unwrap().to_string(), data)
}

fn file_request(sendfile: bool, path_info: &str) -> FakeIo {
    let host = host();
    let path = script("file_wrapper", FILE_APP);
    let (file, _) = data_file();
    let env = env(&[
        ("PATH_INFO", path_info.as_bytes()),
        ("HTTP_X_FILE", file.as_bytes()),
    ]);
    let mut io = FakeIo {
        sendfile,
        ..FakeIo::new()
    };
    assert_eq!(
        host.handle(&spec(&path, &env), &mut io),
        Outcome::Completed,
        "{}",
        dump(&path)
    );
    io
}

#[test]
fn file_wrapper_uses_send_file_from_tell() {
    let (_, data) = data_file();
    let io = file_request(true, "/");
    assert!(
        matches!(&io.events[..], [Ev::Head(200, _, _), Ev::File(100, 900, _)]),
        "{:?}",
        io.events
    );
    assert_eq!(io.body(), &data[100..]);
    let io = file_request(true, "/cl");
    assert!(
        matches!(&io.events[..], [Ev::Head(200, _, _), Ev::File(100, 50, _)]),
        "{:?}",
        io.events
    );
    assert_eq!(io.body(), &data[100..150]);
}

#[test]
fn file_wrapper_falls_back_to_reading_blocks() {
    let (_, data) = data_file();
    let io = file_request(false, "/");
    assert_eq!(io.body(), &data[100..]);
    let blocks = io
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Body(_)))
        .count();
    assert_eq!(blocks, 900usize.div_ceil(64));
    let io = file_request(false, "/cl");
    assert_eq!(io.body(), &data[100..150]);
}

// ---------------------------------------------------------------- mod_wsgi module, logging

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
        seen.repr().unwrap().to_string()
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
        let env = env(&[
            ("PATH_INFO", path_info.as_bytes()),
            ("HTTP_X_EVENTS_TEST", b"1"),
        ]);
        let mut io = FakeIo::new();
        assert_eq!(
            host.handle(&spec(&path, &env), &mut io),
            Outcome::Completed,
            "{}",
            dump(&path)
        );
        io.body_text()
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

// ---------------------------------------------------------------- pure checks

fn settings_311() -> InterpreterSettings {
    InterpreterSettings {
        build_executable: "/usr/bin/python3".into(),
        build_version: "3.11".into(),
        ..InterpreterSettings::default()
    }
}

#[test]
fn venv_version_mismatch_names_both_versions_and_paths() {
    let venv = tmpdir().join("venv39");
    std::fs::create_dir_all(&venv).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /opt/py39/bin\ninclude-system-site-packages = false\nversion = 3.9.18\n",
    )
    .unwrap();
    let err = check_venv(&venv, &settings_311()).unwrap_err();
    for needle in [
        "3.9",
        "3.11",
        venv.to_str().unwrap(),
        "/opt/py39/bin",
        "/usr/bin/python3",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let ok = tmpdir().join("venv311");
    std::fs::create_dir_all(&ok).unwrap();
    std::fs::write(
        ok.join("pyvenv.cfg"),
        "home = /usr/bin\nversion_info = 3.11.2.final.0\n",
    )
    .unwrap();
    assert_eq!(check_venv(&ok, &settings_311()), Ok(()));
    // No version line: inferred from lib/pythonX.Y.
    let old = tmpdir().join("venv-old");
    std::fs::create_dir_all(old.join("lib/python3.8")).unwrap();
    std::fs::write(old.join("pyvenv.cfg"), "home = /opt/py38/bin\n").unwrap();
    assert!(
        check_venv(&old, &settings_311())
            .unwrap_err()
            .contains("3.8")
    );
}

#[test]
fn runtime_version_check() {
    assert_eq!(
        major_minor("3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]").as_deref(),
        Some("3.11")
    );
    assert_eq!(major_minor("3.9.18").as_deref(), Some("3.9"));
    assert_eq!(major_minor("garbage"), None);
    assert_eq!(
        check_runtime_version("3.11.7 (main)", &settings_311()),
        Ok(())
    );
    let err = check_runtime_version("3.12.1 (main)", &settings_311()).unwrap_err();
    assert!(
        err.contains("3.12") && err.contains("3.11") && err.contains("/usr/bin/python3"),
        "{err}"
    );
}

#[test]
fn status_and_header_validation_rules() {
    assert_eq!(validate_status(b"200 OK"), Ok((200, b"OK".to_vec())));
    assert_eq!(validate_status(b"404 "), Ok((404, Vec::new())));
    assert!(validate_status(b"200").is_err());
    assert!(validate_status(b"20x OK").is_err());
    assert!(validate_status(b"000 Zero").is_err());
    assert!(validate_status(b"200 a\x7fb").is_err());
    assert_eq!(validate_header(b"X-Ok", b"a\tb"), Ok(()));
    assert!(validate_header(b"X:Y", b"v").is_err());
    assert!(validate_header(b"X", b"a\nb").is_err());
    assert!(validate_header(b"X", b"a\rb").is_err());
}

#[test]
fn a_body_short_of_its_content_length_is_a_failure_except_for_head() {
    let host = host();
    let path = script(
        "shortbody",
        "def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Length', '10')])\n    \
         return [b'abc'] if environ['PATH_INFO'] == '/short' else [b'0123456789']\n",
    );
    let mut io = FakeIo::new();
    assert_eq!(
        request(&host, &path, "/short", &mut io),
        Outcome::AppError { head_sent: true },
        "{}",
        dump(&path)
    );
    assert_eq!(io.body_text(), "abc");
    assert_eq!(
        logs_with("sent 3 body bytes of the 10 its Content-Length promised").len(),
        1
    );
    assert_ok_full(&host, &path, "/full");
    // HEAD: no body is expected whatever Content-Length says.
    let env = env(&[("PATH_INFO", b"/short"), ("REQUEST_METHOD", b"HEAD")]);
    let mut io = FakeIo::new();
    assert_eq!(host.handle(&spec(&path, &env), &mut io), Outcome::Completed);
}

fn assert_ok_full(host: &AppHost, path: &str, path_info: &str) {
    let mut io = FakeIo::new();
    assert_eq!(request(host, path, path_info, &mut io), Outcome::Completed);
    assert_eq!(io.body_text(), "0123456789");
}

// ---------------------------------------------------------------- metrics and events

#[test]
fn metrics_are_none_until_recording_then_count_every_request() {
    let host = host();
    let path = script(
        "metrics",
        r#"
import mod_wsgi
def application(environ, start_response):
    p = environ['PATH_INFO']
    if p == '/none':
        assert mod_wsgi.request_metrics() is None and mod_wsgi.process_metrics() is None
        assert mod_wsgi.server_metrics() is None
    elif p == '/start':
        mod_wsgi.start_recording_metrics()
        mod_wsgi.start_recording_metrics()  # idempotent
        mod_wsgi.request_metrics()  # drains what came before
    elif p == '/404':
        start_response('404 Not Found', [])
        return [b'ok']
    elif p == '/boom':
        raise ValueError('metrics-boom')
    elif p == '/report':
        m = mod_wsgi.request_metrics()
        statuses = [m['status_%dxx' % i] for i in range(1, 6)]
        assert sum(statuses) == m['request_count'], (statuses, m['request_count'])
        assert m['status_4xx'] >= 3 and m['status_5xx'] >= 1, statuses
        # 3 x 404, the failure, the POST and '/'; /start began before recording did.
        assert m['request_count'] >= 6, m['request_count']
        for phase in ('server_time', 'queue_time', 'daemon_time', 'request_time'):
            assert len(m[phase + '_buckets']) == 65, phase
        # No request_start here (not from Apache): only the host's own phases are timed.
        for phase in ('application_time', 'input_read_time', 'output_write_time',
                      'gil_wait_time'):
            assert len(m[phase + '_buckets']) == 65, phase
            assert sum(m[phase + '_buckets']) == m['request_count'], phase
        # No request here came through a daemon queue.
        assert m['queue_time_max_us'] is None and m['daemon_time_max_us'] is None
        assert m['application_time_max_us'] >= m['application_time_min_us'] >= 0
        assert m['input_bytes'] >= 5 and m['input_reads'] >= 1, m['input_bytes']
        assert m['output_bytes'] >= 6 and m['output_writes'] >= 3
        assert 0.0 <= m['capacity_utilization'] <= 1.0001, m['capacity_utilization']
        assert m['sample_period'] > 0 and m['stop_time'] > m['start_time']
        assert len(m['request_threads_completed']) == m['request_threads_maximum']
        assert m['memory_rss'] > 0 and m['memory_max_rss'] > 0
        assert m['cpu_utilization'] >= 0 and m['cpu_time'] == m['cpu_utilization']
        # The window was drained: a second call covers (almost) nothing.
        assert mod_wsgi.request_metrics()['request_count'] == 0
        pm = mod_wsgi.process_metrics()
        assert pm['request_count'] >= 8 and pm['active_requests'] >= 1, pm
        assert pm['running_time'] >= 0 and pm['current_time'] >= pm['restart_time']
        assert sum(t['request_count'] for t in pm['threads']) <= pm['request_count']
        assert all(t['thread_id'] >= 1 for t in pm['threads']), pm['threads']
    elif p == '/post':
        environ['wsgi.input'].read()
    start_response('200 OK', [])
    return [b'ok']
"#,
    );
    let mut io = FakeIo::new();
    assert_ok(&host, &path, "/none", &mut io);
    assert_ok(&host, &path, "/start", &mut FakeIo::new());
    for _ in 0..3 {
        assert_ok(&host, &path, "/404", &mut FakeIo::new());
    }
    assert_eq!(
        request(&host, &path, "/boom", &mut FakeIo::new()),
        Outcome::AppError { head_sent: false }
    );
    let env = env(&[("PATH_INFO", b"/post"), ("CONTENT_LENGTH", b"5")]);
    let mut io = FakeIo::with_body(&[b"hello"]);
    assert_eq!(host.handle(&spec(&path, &env), &mut io), Outcome::Completed);
    assert_ok(&host, &path, "/", &mut FakeIo::new());
    assert_ok(&host, &path, "/report", &mut FakeIo::new());
}

#[test]
fn request_events_carry_mod_wsgis_fields_and_request_data() {
    let host = host();
    let path = script(
        "event_fields",
        r#"
import mod_wsgi, threading
seen = {}
mine = set()
def on_event(name, **kw):
    data = kw.get('request_data')
    if name == 'request_started' and 'HTTP_X_FIELDS_TEST' in kw['request_environ']:
        mine.add(threading.get_ident())
        data['started'] = True
    if threading.get_ident() not in mine:
        return
    seen[name] = dict(kw)
    if name == 'request_finished':
        mine.discard(threading.get_ident())
mod_wsgi.subscribe_events(on_event)
def application(environ, start_response):
    p = environ['PATH_INFO']
    if p == '/report':
        mod_wsgi.event_callbacks.remove(on_event)
        f = seen['request_finished']
        for key in ('request_id', 'thread_id', 'request_data', 'server_pid', 'request_start',
                    'queue_start', 'daemon_start', 'application_start', 'application_finish',
                    'application_time', 'input_reads', 'input_length', 'input_time',
                    'output_writes', 'output_length', 'output_time', 'status',
                    'cpu_user_time', 'cpu_system_time', 'cpu_time', 'gil_wait_time',
                    'gil_wait_count'):
            assert key in f, key
        assert f['request_id'] == 'req-7', f['request_id']
        assert f['server_pid'] == 4242 and f['request_start'] == 1700000000.25
        assert f['thread_id'] >= 1 and f['status'] == 500
        assert f['input_length'] == 3 and f['input_reads'] >= 1, f
        assert f['request_data'] == {'started': True, 'app': 'set'}, f['request_data']
        assert f['application_finish'] >= f['application_start']
        s = seen['response_started']
        assert s['response_status'] == '200 OK' and s['response_headers'] == [('A', 'b')]
        assert s['exception_info'] is None and s['request_id'] == 'req-7'
        e = seen['request_exception']
        assert e['exception_info'][0] is KeyError and e['request_data'] is f['request_data']
        try:
            mod_wsgi.request_data()['x'] = 1
        except RuntimeError:
            raise AssertionError('request_data() must work inside a request')
        start_response('200 OK', [])
        return [b'ok']
    environ['wsgi.input'].read()
    mod_wsgi.request_data()['app'] = 'set'
    start_response('200 OK', [('A', 'b')])
    raise KeyError('event-fields')
"#,
    );
    let env = env(&[
        ("PATH_INFO", b"/fail"),
        ("HTTP_X_FIELDS_TEST", b"1"),
        ("CONTENT_LENGTH", b"3"),
        ("mod_wsgi.request_id", b"req-7"),
        ("mod_wsgi.server_pid", b"4242"),
    ]);
    let spec_fail = RequestSpec {
        times: RequestTimes {
            request_start_us: 1_700_000_000_250_000,
            ..Default::default()
        },
        ..spec(&path, &env)
    };
    let mut io = FakeIo::with_body(&[b"abc"]);
    assert_eq!(
        host.handle(&spec_fail, &mut io),
        Outcome::AppError { head_sent: false },
        "{}",
        dump(&path)
    );
    assert_ok(&host, &path, "/report", &mut FakeIo::new());
    // Outside a request there is no request data.
    Python::attach(|py| {
        let err = py
            .import("mod_wsgi")
            .unwrap()
            .call_method0("request_data")
            .unwrap_err();
        assert!(err.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py));
    });
}

#[test]
fn a_thread_keeps_its_thread_id() {
    let host = host();
    let path = script(
        "thread_id",
        r#"
ids = []
def application(environ, start_response):
    ids.append(environ['mod_wsgi.thread_id'])
    start_response('200 OK', [])
    return [b'ok' if len(set(ids)) == 1 else repr(ids).encode()]
"#,
    );
    for _ in 0..3 {
        assert_ok(&host, &path, "/", &mut FakeIo::new());
    }
}
