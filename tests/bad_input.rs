//! The bad-input matrix: malformed HTTP, bad bodies, client aborts and misbehaving WSGI apps
//! (tests/apps/misbehave.wsgi). Each case asserts the status the client gets, an error-log
//! line that names the problem, and that the same daemon process (same PID) and the
//! embedded interpreter still serve a normal request afterwards.
//!
//! One Apache serves every test of this binary (started on first use, stopped at exit): the
//! app runs both in daemon group `bad` (/app) and embedded in Apache's child (/emb).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig};

struct Shared {
    apache: Apache,
    daemon_pid: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

extern "C" fn stop_shared_apache() {
    if let Some(shared) = SHARED.get() {
        let pid = shared.apache.pid() as i32;
        // SAFETY: kill/waitpid on the Apache parent this test process started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == 0 {
                if Instant::now() > deadline {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(shared.apache.config.root());
    }
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let mut config = ApacheConfig::new("bad-input");
        // Apache core names what was wrong with a malformed request at debug level.
        config.log_level = "info core:debug".into();
        let app = config.install_app("misbehave.wsgi");
        let apache = config
            .conf(&format!(
                "WSGIDaemonProcess bad threads=8 socket-timeout=4\n\
                 WSGIScriptAlias /app {app} process-group=bad application-group=%{{GLOBAL}}\n\
                 WSGIScriptAlias /emb {app} application-group=%{{GLOBAL}}\n\
                 WSGIChunkedRequest On\n\
                 <LocationMatch \"^/(app|emb)/echo\">\n    LimitRequestBody 1048576\n</LocationMatch>\n\
                 <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
                app = app.display()
            ))
            .start();
        // The statics of a test binary are never dropped: stop Apache at exit, and, should
        // the runner be killed, a watchdog stops it once this process is gone.
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(stop_shared_apache);
        }
        let _ = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                // Only if that PID is still this Apache (its command line names our conf).
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
                 grep -qaF {conf:?} /proc/{apache}/cmdline 2>/dev/null && kill -TERM {apache}",
                me = std::process::id(),
                apache = apache.pid(),
                conf = apache.config.conf_path().display().to_string()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let daemon_pid = apache.get("/app/pid").text();
        assert!(daemon_pid.parse::<u32>().is_ok(), "daemon pid {daemon_pid:?}");
        Shared { apache, daemon_pid }
    })
}

/// Where the error log ends now: a case looks for its line after this point.
fn log_mark() -> usize {
    shared().apache.error_log().len()
}

/// A case's tag: `client 127.0.0.1:PORT` of its own connection, which Apache writes on every
/// line it logs about that connection or request (and misbehave.wsgi into its own lines).
/// Cases run in parallel on one Apache: a line without the tag may be a neighbour's.
fn client_tag(stream: &TcpStream) -> String {
    let port = stream.local_addr().expect("local address").port();
    format!("client 127.0.0.1:{port}")
}

/// Waits (bounded) until a line logged since `mark` contains `needle`, and `tag` when one is
/// given; returns the log since `mark`. An empty needle waits for nothing.
fn wait_log_tagged(case: &str, mark: usize, needle: &str, tag: Option<&str>) -> String {
    let apache = &shared().apache;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = apache.error_log();
        let fresh = log.get(mark..).unwrap_or("").to_string();
        if needle.is_empty()
            || fresh
                .lines()
                .any(|line| line.contains(needle) && tag.is_none_or(|tag| line.contains(tag)))
        {
            return fresh;
        }
        if Instant::now() > deadline {
            panic!(
                "{case}: the error log did not show {needle:?} (tagged {tag:?}); it got:\n{fresh}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For needles unique to their case (an app route's name).
fn wait_log(case: &str, mark: usize, needle: &str) -> String {
    wait_log_tagged(case, mark, needle, None)
}

/// The same daemon process and the embedded interpreter still answer normal requests.
fn assert_still_serving(case: &str) {
    let s = shared();
    let pid = s.apache.get("/app/pid");
    assert_eq!(pid.status, 200, "{case}: daemon no longer serves");
    assert_eq!(
        pid.text(),
        s.daemon_pid,
        "{case}: the daemon process was replaced"
    );
    assert_eq!(
        s.apache.get("/emb/pid").status,
        200,
        "{case}: embedded mode no longer serves"
    );
}

/// Sends raw bytes on a fresh connection (then half-closes when asked) and returns all that
/// came back until the server closed or 30 s passed.
fn raw(bytes: &[u8], half_close: bool) -> Vec<u8> {
    raw_tagged(bytes, half_close).0
}

/// [`raw`], with the connection's [`client_tag`].
fn raw_tagged(bytes: &[u8], half_close: bool) -> (Vec<u8>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", shared().apache.port())).unwrap();
    let tag = client_tag(&s);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before it read everything we send.
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, tag)
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn body_of(resp: &[u8]) -> &[u8] {
    match resp.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &resp[i + 4..],
        None => b"",
    }
}

/// The body of a complete raw response, de-chunked when it was sent chunked (a response
/// without Content-Length whose end is flushed, as mod_wsgi flushes every write).
fn decoded_body_of(resp: &[u8]) -> Vec<u8> {
    let body = body_of(resp);
    if !head_of(resp)
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            panic!(
                "truncated chunk size line: {}",
                String::from_utf8_lossy(body)
            );
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        rest = &rest[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn head_of(resp: &[u8]) -> String {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(resp.len());
    String::from_utf8_lossy(&resp[..end]).into_owned()
}

/// A raw request case: status, log line, still serving.
fn http_case(case: &str, request: &[u8], half_close: bool, want: u16, needle: &str) -> Vec<u8> {
    let mark = log_mark();
    let (resp, tag) = raw_tagged(request, half_close);
    assert_eq!(
        status_of(&resp),
        Some(want),
        "{case}: got {:?}",
        String::from_utf8_lossy(&resp[..resp.len().min(300)])
    );
    wait_log_tagged(case, mark, needle, Some(&tag));
    assert_still_serving(case);
    resp
}

fn get(path: &str) -> Vec<u8> {
    get_tagged(path).0
}

fn get_tagged(path: &str) -> (Vec<u8>, String) {
    raw_tagged(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        false,
    )
}

/// An app case, run in daemon mode (/app) and embedded mode (/emb): the status, the log line
/// (which names the route) and still serving, for both.
fn app_case(route: &str, want: u16, needle: &str) -> [Vec<u8>; 2] {
    ["/app", "/emb"].map(|prefix| {
        let case = format!("{prefix}{route}");
        let mark = log_mark();
        let resp = get(&case);
        assert_eq!(
            status_of(&resp),
            Some(want),
            "{case}: got {:?}\n{}",
            String::from_utf8_lossy(&resp[..resp.len().min(300)]),
            shared().apache.error_log().get(mark..).unwrap_or("")
        );
        wait_log(&case, mark, needle);
        assert_still_serving(&case);
        resp
    })
}

fn is_chunked_complete(body: &[u8]) -> bool {
    body.ends_with(b"0\r\n\r\n")
}

// ---------------------------------------------------------------- request line and headers

#[test]
fn garbage_request_line() {
    http_case(
        "garbage request line",
        b"THIS IS NOT HTTP AT ALL\r\n\r\n",
        false,
        400,
        "HTTP Request Line; Excess whitespace",
    );
}

#[test]
fn request_line_too_long() {
    let mut req = b"GET /app/pid?".to_vec();
    req.extend(std::iter::repeat_n(b'a', 10_000));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    http_case(
        "request line too long",
        &req,
        false,
        414,
        "LimitRequestLine",
    );
}

#[test]
fn header_line_too_long() {
    let mut req = b"GET /app/pid HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 10_000));
    req.extend_from_slice(b"\r\n\r\n");
    http_case("header line too long", &req, false, 400, "header");
}

#[test]
fn too_many_headers() {
    let mut req = b"GET /app/pid HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..150 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    http_case("too many headers", &req, false, 400, "header");
}

#[test]
fn header_without_colon() {
    http_case(
        "header without colon",
        b"GET /app/pid HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
        false,
        400,
        "field name is malformed: NoColonHere",
    );
}

#[test]
fn header_name_with_space() {
    http_case(
        "header name with space",
        b"GET /app/pid HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
        false,
        400,
        "field name is malformed: Bad Name",
    );
}

#[test]
fn control_character_in_header_value() {
    http_case(
        "control character in header value",
        b"GET /app/pid HTTP/1.1\r\nHost: x\r\nX-Probe: a\x01b\r\n\r\n",
        false,
        400,
        "header value is malformed: a\\x01b",
    );
}

#[test]
fn obsolete_line_folding_is_unfolded() {
    // Apache joins a folded header line to the previous one (RFC 9112 §5.2 allows that
    // instead of a 400); the app sees one value.
    for prefix in ["/app", "/emb"] {
        let resp = raw(
            format!(
                "GET {prefix}/header HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Probe: a\r\n  folded\r\n\r\n"
            )
            .as_bytes(),
            false,
        );
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        let value = String::from_utf8_lossy(body_of(&resp)).into_owned();
        assert!(
            value.starts_with('a') && value.ends_with("folded") && !value.contains('\n'),
            "{prefix}: {value:?}"
        );
    }
    assert_still_serving("obsolete line folding");
}

#[test]
fn http11_without_host() {
    http_case(
        "HTTP/1.1 without Host",
        b"GET /app/pid HTTP/1.1\r\nConnection: close\r\n\r\n",
        false,
        400,
        "without hostname",
    );
}

#[test]
fn malformed_http_version() {
    http_case(
        "malformed HTTP version",
        b"GET /app/pid HTTP/1.1x\r\nHost: x\r\n\r\n",
        false,
        400,
        "Unrecognized protocol 'HTTP/1.1x'",
    );
}

#[test]
fn nul_byte_in_uri() {
    http_case(
        "NUL byte in URI",
        b"GET /app/pid\x00x HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
        400,
        "malformed request line",
    );
}

#[test]
fn encoded_slash_in_path() {
    http_case(
        "encoded slash in path",
        b"GET /app/a%2Fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
        404,
        "%2f",
    );
}

#[test]
fn high_bytes_in_header_value_reach_the_app_as_latin1() {
    for prefix in ["/app", "/emb"] {
        let mut req =
            format!("GET {prefix}/header HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Probe: caf")
                .into_bytes();
        req.extend_from_slice(b"\xe9\xff\r\n\r\n");
        let resp = raw(&req, false);
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        // The app re-encodes the latin-1 str as UTF-8.
        assert_eq!(body_of(&resp), "café\u{ff}".as_bytes(), "{prefix}");
    }
    assert_still_serving("high bytes in header value");
}

#[test]
fn header_with_underscore_is_not_passed() {
    let resp = raw(
        b"GET /app/envkeys HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX_Probe: spoof\r\nX-Probe: real\r\n\r\n",
        false,
    );
    assert_eq!(status_of(&resp), Some(200));
    let keys = String::from_utf8_lossy(body_of(&resp)).into_owned();
    assert!(keys.contains("HTTP_X_PROBE"), "{keys}");
    // Only one HTTP_X_PROBE, and it is the one with the dash.
    assert_eq!(keys.matches("HTTP_X_PROBE").count(), 1, "{keys}");
    let resp = raw(
        b"GET /app/header HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX_Probe: spoof\r\n\r\n",
        false,
    );
    assert_eq!(body_of(&resp), b"<missing>");
    // Apache drops such headers silently (it logs them only at trace1): not an error.
    assert_still_serving("header with underscore");
}

// ---------------------------------------------------------------- request bodies

#[test]
fn content_length_with_transfer_encoding() {
    // RFC 9112 §6.3: Transfer-Encoding wins and the connection closes after the response,
    // so the bytes after the chunked body can never be read as a second (smuggled) request.
    let case = "Content-Length with Transfer-Encoding";
    let resp = http_case(
        case,
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          a\r\n0123456789\r\n0\r\n\r\nGET /app/pid HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
        200,
        "",
    );
    assert_eq!(body_of(&resp), b"10 bytes", "{case}");
    assert!(head_of(&resp).contains("Connection: close"), "{case}");
    assert_eq!(
        String::from_utf8_lossy(&resp).matches("HTTP/1.1 ").count(),
        1,
        "{case}: a second request was answered"
    );
}

#[test]
fn negative_content_length() {
    http_case(
        "negative Content-Length",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
        false,
        400,
        "Content-Length",
    );
}

#[test]
fn non_numeric_content_length() {
    http_case(
        "non-numeric Content-Length",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: five\r\n\r\nhello",
        false,
        400,
        "Content-Length",
    );
}

#[test]
fn huge_content_length() {
    http_case(
        "huge Content-Length",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        false,
        400,
        "Content-Length",
    );
}

#[test]
fn content_length_over_limit_request_body() {
    http_case(
        "Content-Length over LimitRequestBody",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\nhello",
        true,
        413,
        "larger than LimitRequestBody",
    );
}

#[test]
fn chunked_body_over_limit_request_body() {
    let mut req =
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b'c'; 256 * 1024];
    for _ in 0..6 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    http_case(
        "chunked body over LimitRequestBody",
        &req,
        false,
        413,
        "larger than the configured limit",
    );
}

#[test]
fn truncated_body() {
    http_case(
        "truncated body",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this much",
        true,
        400,
        "error reading the request body",
    );
}

#[test]
fn invalid_chunk_size() {
    http_case(
        "invalid chunk size",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        false,
        400,
        "chunk",
    );
}

#[test]
fn overflowing_chunk_size() {
    http_case(
        "overflowing chunk size",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        false,
        413,
        "chunk",
    );
}

#[test]
fn chunked_body_without_last_chunk() {
    http_case(
        "chunked body without last chunk",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        true,
        400,
        "error reading the request body",
    );
}

#[test]
fn unknown_transfer_encoding() {
    http_case(
        "unknown Transfer-Encoding",
        b"POST /app/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        true,
        400,
        "unknown Transfer-Encoding (gzip)",
    );
}

#[test]
fn wsgi_input_reads_empty_after_the_body() {
    for prefix in ["/app", "/emb"] {
        let req = format!(
            "POST {prefix}/read-after-end HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
        );
        let resp = raw(req.as_bytes(), false);
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        assert_eq!(body_of(&resp), b"5+0", "{prefix}");
    }
    assert_still_serving("read after end");
}

/// Starts an upload of `total` bytes to /app/upload, sends `sent` of them, then closes
/// (`half_close`: only the sending side, to read the answer). Returns what came back and
/// the connection's tag.
fn partial_upload(case: &str, total: usize, sent: usize, half_close: bool) -> (Vec<u8>, String) {
    let mark = log_mark();
    let mut s = TcpStream::connect(("127.0.0.1", shared().apache.port())).unwrap();
    let tag = client_tag(&s);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    s.write_all(&vec![b'u'; sent]).unwrap();
    // The app has started reading before the client goes.
    wait_log_tagged(case, mark, "upload-reading", Some(&tag));
    let mut out = Vec::new();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
        let _ = s.read_to_end(&mut out);
    }
    (out, tag)
}

#[test]
fn truncated_body_while_the_daemon_reads_it() {
    // More than the Apache child reads ahead (1 MiB), so the app is reading when the
    // body ends early: its read raises, the client gets 400.
    let case = "truncated body while the daemon reads it";
    let mark = log_mark();
    let (resp, tag) = partial_upload(case, 3_000_000, 1_500_000, true);
    assert_eq!(
        status_of(&resp),
        Some(400),
        "{case}: {:?}",
        String::from_utf8_lossy(&resp[..resp.len().min(200)])
    );
    wait_log_tagged(case, mark, "error reading the request body", Some(&tag));
    wait_log_tagged(case, mark, "upload-aborted", Some(&tag));
    assert_still_serving(case);
}

#[test]
fn client_disconnects_mid_upload() {
    let case = "client disconnects mid-upload";
    let mark = log_mark();
    let (_, tag) = partial_upload(case, 3_000_000, 1_500_000, false);
    wait_log_tagged(case, mark, "error reading the request body", Some(&tag));
    wait_log_tagged(case, mark, "upload-aborted", Some(&tag));
    assert_still_serving(case);
}

#[test]
fn client_disconnects_mid_download() {
    for prefix in ["/app", "/emb"] {
        let mark = log_mark();
        let mut s = TcpStream::connect(("127.0.0.1", shared().apache.port())).unwrap();
        let tag = client_tag(&s);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {prefix}/download?n=400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![0u8; 100_000];
        let mut got = 0;
        while got < 100_000 {
            let n = s.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "{prefix}: EOF early");
            got += n;
        }
        assert_eq!(status_of(&buf), Some(200));
        drop(s);
        let case = format!("{prefix}: client disconnects mid-download");
        // The module's own line, and the app's generator was closed.
        // In daemon mode this line comes from the daemon, which does not name the client;
        // the app's own line below carries the tag.
        wait_log(
            &case,
            mark,
            "Client connection closed while sending the response",
        );
        wait_log_tagged(&case, mark, "download-aborted", Some(&tag));
    }
    assert_still_serving("client disconnects mid-download");
}

// ---------------------------------------------------------------- what the app returns

#[test]
fn app_returns_non_iterable() {
    app_case("/not-iterable", 500, "TypeError");
}

#[test]
fn app_returns_none() {
    app_case("/none", 500, "NoneType");
}

#[test]
fn app_returns_str_items() {
    app_case(
        "/str-body",
        500,
        "TypeError: response iterable must yield bytes, not str",
    );
}

#[test]
fn app_yields_str_after_bytes() {
    for resp in app_case(
        "/str-mid-body",
        200,
        "TypeError: response iterable must yield bytes, not str",
    ) {
        // The head went out with the first chunk; the body must end without the last chunk.
        assert!(
            !is_chunked_complete(body_of(&resp)),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn non_bytes_item_after_the_first_chunk_aborts_the_response() {
    // As mod_wsgi 6, also for a list ([b"a", 7]): the status and the chunk before the bad
    // item reach the client, then the response is cut (a kept-alive chunked stream without
    // its last chunk, and the connection closed), and the TypeError is logged.
    for prefix in ["/app", "/emb"] {
        let case = format!("{prefix}/int-item");
        let mark = log_mark();
        let request = format!("GET {case} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let started = Instant::now();
        let resp = raw(request.as_bytes(), false);
        let text = String::from_utf8_lossy(&resp).into_owned();
        let log = wait_log(
            &case,
            mark,
            "TypeError: response iterable must yield bytes, not int",
        );
        assert_eq!(status_of(&resp), Some(200), "{case}: {text:?}\n{log}");
        assert!(
            head_of(&resp).contains("Transfer-Encoding: chunked"),
            "{case}: {text:?}"
        );
        assert!(
            body_of(&resp).starts_with(b"1\r\na\r\n"),
            "{case}: the chunk before the bad item: {text:?}"
        );
        assert!(!is_chunked_complete(body_of(&resp)), "{case}: {text:?}");
        // Closed at once, not after KeepAliveTimeout.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{case}: the connection stayed open {:?}",
            started.elapsed()
        );
        // Raised by the server, not in a frame of the app: no traceback lines, as mod_wsgi.
        assert!(
            log.contains("TypeError exception raised processing WSGI script"),
            "{log}"
        );
        assert_still_serving(&case);
    }
}

#[test]
fn start_response_errors_are_mod_wsgi_s() {
    // The exception types and messages of mod_wsgi 6, which applications match on.
    let want = "ValueError:no space following status code: b'200OK'\n\
                ValueError:status code must be a 3 digit integer: b'20X OK'\n\
                ValueError:control character in status reason phrase: \
                b'200 OK\\r\\nX-Injected: yes'\n\
                TypeError:must be str, not int\n\
                ValueError:space character in header name: b'X Foo'\n\
                ValueError:carriage return/line feed character in header value: \
                b'line1\\nline2'\n\
                TypeError:must be str, not int\n\
                UnicodeEncodeError:'latin-1' codec can't encode characters in position 0-1: \
                ordinal not in range(256)\n\
                TypeError:each header must be a 2-tuple, not str\n\
                ValueError:each header must be a 2-tuple, got length 3\n\
                TypeError:start_response() argument 2 must be list, not tuple\n\
                RuntimeError:start_response() argument 'exc_info' must be a 3-tuple or None\n\
                end";
    for prefix in ["/app", "/emb"] {
        let resp = get(&format!("{prefix}/start-response-errors"));
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        assert_eq!(
            String::from_utf8_lossy(&decoded_body_of(&resp)),
            want,
            "{prefix}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn app_writes_str() {
    app_case("/write-str", 500, "write-str");
}

#[test]
fn app_returns_without_start_response() {
    app_case("/no-start", 500, "start_response");
}

#[test]
fn app_iter_raises() {
    app_case("/iter-raises", 500, "iter-raises");
}

#[test]
fn app_close_raises_after_a_complete_body() {
    for resp in app_case("/close-raises", 200, "close-raises") {
        assert!(
            String::from_utf8_lossy(body_of(&resp)).contains("body before a failing close"),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

// ---------------------------------------------------------------- start_response

#[test]
fn start_response_twice_before_the_head_replaces_it() {
    // As mod_wsgi 6: no error; the second call's status and headers are what is sent.
    for resp in [get("/app/start-twice"), get("/emb/start-twice")] {
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(status_of(&resp), Some(202), "{text}");
        assert!(text.contains("X-Second: 2"), "{text}");
        assert!(!text.contains("X-First"), "{text}");
        assert!(text.contains("start-twice replaced"), "{text}");
    }
    assert_still_serving("start_response twice");
}

#[test]
fn start_response_again_after_the_head_raises() {
    for resp in [get("/app/start-after-head"), get("/emb/start-after-head")] {
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(status_of(&resp), Some(200), "{text}");
        assert!(text.contains("head sent;"), "{text}");
        assert!(
            text.contains(
                "start-after-head: start_response() called more than once without \
                           exc_info"
            ),
            "{text}"
        );
    }
}

#[test]
fn start_response_exc_info_not_a_tuple() {
    // mod_wsgi raises RuntimeError for it (logged with its traceback); nothing was sent: 500.
    app_case(
        "/exc-info-not-tuple",
        500,
        "RuntimeError: start_response() argument 'exc_info' must be a 3-tuple or None",
    );
}

#[test]
fn start_response_with_exc_info_before_the_head_replaces_it() {
    for resp in app_case("/exc-info-before-head", 503, "") {
        assert!(
            String::from_utf8_lossy(body_of(&resp)).contains("replaced by the error page"),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn start_response_with_exc_info_after_the_head_reraises() {
    for resp in app_case("/exc-info-after-head", 200, "exc-info-after-head") {
        assert!(
            !is_chunked_complete(body_of(&resp)),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn response_header_value_with_crlf() {
    for resp in app_case("/header-crlf", 500, "header-crlf") {
        assert!(!head_of(&resp).contains("Injected"), "{}", head_of(&resp));
    }
}

#[test]
fn response_header_value_with_bare_lf() {
    for resp in app_case("/header-lf", 500, "header-lf") {
        assert!(!head_of(&resp).contains("Injected"), "{}", head_of(&resp));
    }
}

#[test]
fn response_header_name_with_crlf() {
    for resp in app_case("/header-name-crlf", 500, "Injected") {
        assert!(!head_of(&resp).contains("Injected"), "{}", head_of(&resp));
    }
}

#[test]
fn response_header_name_with_space() {
    app_case("/header-name-space", 500, "X Bad");
}

#[test]
fn response_header_name_with_colon() {
    app_case("/header-name-colon", 500, "X-Bad:");
}

#[test]
fn response_header_with_empty_name() {
    app_case("/header-empty-name", 500, "header-empty-name");
}

#[test]
fn response_header_value_outside_latin1() {
    app_case("/header-non-latin1", 500, "latin-1");
}

#[test]
fn response_header_value_in_latin1_is_sent_as_latin1() {
    for resp in app_case("/header-latin1", 200, "") {
        let mut needle = b"X-Latin1: caf".to_vec();
        needle.push(0xe9);
        assert!(
            resp.windows(needle.len()).any(|w| w == needle),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn response_header_as_bytes() {
    app_case("/header-bytes", 500, "bytes");
}

#[test]
fn response_header_not_a_tuple() {
    app_case("/header-not-tuple", 500, "header-not-tuple");
}

#[test]
fn response_headers_not_a_list() {
    app_case("/headers-tuple", 500, "list");
}

#[test]
fn status_not_a_string() {
    app_case("/status-int", 500, "int");
}

#[test]
fn status_without_a_code() {
    app_case("/status-garbage", 500, "status-garbage");
}

#[test]
fn status_code_out_of_range() {
    app_case("/status-range", 500, "1000 Out Of Range");
}

#[test]
fn status_with_crlf() {
    for resp in app_case("/status-crlf", 500, "status-crlf") {
        assert!(!head_of(&resp).contains("Injected"), "{}", head_of(&resp));
    }
}

#[test]
fn invalid_content_length_from_the_app() {
    app_case("/bad-content-length", 500, "bad-content-length");
}

// ---------------------------------------------------------------- bodies that go wrong

#[test]
fn body_shorter_than_content_length_is_visibly_incomplete() {
    for prefix in ["/app", "/emb"] {
        let mark = log_mark();
        let resp = get(&format!("{prefix}/short-body"));
        wait_log(
            prefix,
            mark,
            "sent 10 body bytes of the 100 its Content-Length promised",
        );
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        assert!(head_of(&resp).contains("Content-Length: 100"));
        assert!(body_of(&resp).len() < 100, "{prefix}: complete body?");
    }
    assert_still_serving("short body");
}

#[test]
fn body_longer_than_content_length_is_cut_at_it() {
    for prefix in ["/app", "/emb"] {
        let resp = get(&format!("{prefix}/long-body"));
        assert_eq!(status_of(&resp), Some(200), "{prefix}");
        assert_eq!(body_of(&resp), b"12345", "{prefix}");
    }
    assert_still_serving("long body");
}

#[test]
fn exception_before_start_response() {
    for resp in app_case("/raise-before", 500, "raise-before") {
        assert!(!String::from_utf8_lossy(&resp).contains("raise-before"));
    }
    let log = shared().apache.error_log();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
}

#[test]
fn exception_with_non_ascii_message() {
    app_case(
        "/raise-non-ascii",
        500,
        "raise-non-ascii: \\xc3\\xa9\\xe2\\x82\\xac",
    );
}

#[test]
fn sys_exit_in_the_app() {
    app_case("/sys-exit", 500, "sys-exit");
}

#[test]
fn keyboard_interrupt_in_the_app() {
    app_case("/keyboard-interrupt", 500, "keyboard-interrupt");
}

#[test]
fn exception_mid_chunked_body() {
    // Daemon mode: Apache learns why the body stops (not a daemon crash).
    let mark = log_mark();
    let _ = get("/app/raise-mid-chunked");
    let log = wait_log("daemon mid-body failure", mark, "APP_FAILED");
    assert!(!log.contains("died or was killed"), "{log}");
    for resp in app_case("/raise-mid-chunked", 200, "raise-mid-chunked") {
        let body = body_of(&resp);
        assert!(
            String::from_utf8_lossy(body).contains("first chunk;"),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            !is_chunked_complete(body),
            "the client cannot tell the body is incomplete: {:?}",
            String::from_utf8_lossy(&resp)
        );
    }
}

#[test]
fn exception_mid_body_with_content_length() {
    for resp in app_case("/raise-mid-length", 200, "raise-mid-length") {
        assert_eq!(body_of(&resp), b"partial");
    }
}

#[test]
fn hanging_generator_ends_by_socket_timeout() {
    // Daemon mode only: socket-timeout=4 bounds the wait for the next chunk.
    let case = "hanging generator";
    let mark = log_mark();
    let start = Instant::now();
    let (resp, tag) = get_tagged("/app/hang?s=20");
    let took = start.elapsed();
    assert_eq!(status_of(&resp), Some(200), "{case}");
    assert!(
        !is_chunked_complete(body_of(&resp)),
        "{case}: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(took < Duration::from_secs(15), "{case}: took {took:?}");
    wait_log_tagged(case, mark, "socket-timeout=4", Some(&tag));
    assert_still_serving(case);
}

#[test]
fn app_hanging_before_the_head_gets_504() {
    let case = "hanging before the head";
    let start = Instant::now();
    let mark = log_mark();
    let (resp, tag) = get_tagged("/app/hang-before-head?s=20");
    assert_eq!(status_of(&resp), Some(504), "{case}");
    assert!(start.elapsed() < Duration::from_secs(15));
    wait_log_tagged(case, mark, "socket-timeout=4", Some(&tag));
    assert_still_serving(case);
}

#[test]
fn body_shorter_than_content_length_closes_the_connection() {
    // On a keep-alive connection, the next response must not be read as the rest of the
    // short body: the connection has to end after the short body.
    for prefix in ["/app", "/emb"] {
        let mut s = TcpStream::connect(("127.0.0.1", shared().apache.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {prefix}/short-body HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // The short body has arrived (the request was served) before the next request goes.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !body_of(&out).starts_with(b"only ten b") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = write!(
            s,
            "GET {prefix}/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{prefix}: a second response followed the short body: {text:?}"
        );
    }
    assert_still_serving("short body on keep-alive");
}
