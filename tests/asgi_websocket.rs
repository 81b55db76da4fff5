//! WebSockets for ASGI applications in daemon mode (issue 33): a Starlette WebSocket app
//! (tests/apps/asgi_websocket.py) behind a real Apache, driven by the `websockets` client
//! from PyPI (tests/apps/ws_client.py, run with the test venv's Python): echo of text,
//! binary, a fragmented message and a ping; denial; subprotocols; the size limit; an app
//! that raises; kill -9 of the daemon; a touch reload; TLS through mod_ssl; the metrics
//! gauge; the idle timeout; a graceful restart; invalid client frames (sent by hand);
//! a denial with its own HTTP response; a client that stops reading while the application
//! keeps sending (the event loop stays free, nothing is lost); numbered messages sent by
//! concurrent tasks, direct and queued sends mixed, arrive in order; messages that pile up
//! while the application does not receive (the event loop stops reading the connection,
//! then reads on) arrive in order, in the main interpreter (uvloop) and in a
//! sub-interpreter (asyncio's loop).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig, TempDir, free_port, repo_dir, test_venv};

const ENDPOINT: &str = "<Location /server-metrics>\n    SetHandler rwsgi-metrics\n    \
                        Require all granted\n</Location>";

struct Server {
    apache: Apache,
    app: PathBuf,
    /// The HTTPS port, when started with TLS.
    tls_port: Option<u16>,
    _certs: Option<TempDir>,
}

/// The WebSocket app at /ws in daemon group `ws` (`options` added to its
/// WSGIDaemonProcess); with `tls`, also an HTTPS virtual host (mod_ssl, a self-signed
/// certificate made here) serving the same app.
fn start(options: &str, tls: bool) -> Server {
    let mut config = ApacheConfig::new("asgi-ws");
    let app = config.install_app("asgi_websocket.py");
    let venv = test_venv();
    let mut conf = format!(
        "WSGIDaemonProcess ws threads=4 python-home={} graceful-timeout=1 {options}\n\
         WSGIScriptAlias /ws {} process-group=ws application-group=%{{GLOBAL}} interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n{ENDPOINT}\n",
        venv.display(),
        app.display(),
    );
    let mut tls_port = None;
    let mut certs = None;
    if tls {
        let dir = TempDir::new("asgi-ws-tls");
        let (crt, key) = (dir.path().join("t.crt"), dir.path().join("t.key"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("openssl");
        assert!(made.status.success(), "openssl: {made:?}");
        let port = free_port();
        conf.push_str(&format!(
            "Listen 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\n    SSLEngine on\n    \
             SSLCertificateFile {}\n    SSLCertificateKeyFile {}\n</VirtualHost>\n",
            crt.display(),
            key.display()
        ));
        config = config.module("ssl").module("socache_shmcb");
        tls_port = Some(port);
        certs = Some(dir);
    }
    let apache = config.conf(&conf).start();
    Server {
        apache,
        app,
        tls_port,
        _certs: certs,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{path}", self.apache.port())
    }
}

/// A running ws_client.py whose output lines arrive on a channel.
struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn client(scenario: &str, url: &str, extra: &[&str]) -> Client {
    let mut child = Command::new(test_venv().join("bin/python"))
        .arg(repo_dir().join("tests/apps/ws_client.py"))
        .arg(scenario)
        .arg(url)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the test venv's python");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Client {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Client {
    /// Waits for a line starting with `prefix`; its rest.
    fn expect(&mut self, apache: &Apache, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "the client did not print {prefix:?} within {limit:?}; it printed \
                         {:?}\n--- error log ---\n{}",
                        self.seen,
                        apache.error_log()
                    );
                }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(apache: &Apache, scenario: &str, url: &str, extra: &[&str], last: &str) -> (Client, String) {
    let mut c = client(scenario, url, extra);
    let value = c.expect(apache, last, Duration::from_secs(60));
    (c, value)
}

fn metric(apache: &Apache, name: &str) -> Option<u64> {
    let text = apache.get("/server-metrics").text();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{process_group=\"ws\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_for_metric(apache: &Apache, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = metric(apache, name);
        if got == Some(want) {
            return;
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "{name} is {got:?}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn touch(path: &Path) {
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(later).unwrap();
}

#[test]
fn echo_subprotocol_denial_size_limit_and_app_failure() {
    let server = start("websocket-max-message-size=1024", false);
    let apache = &server.apache;

    let mut c = client("echo", &server.url("/echo"), &[]);
    let wait = Duration::from_secs(60);
    assert_eq!(c.expect(apache, "subprotocol", wait), "chat");
    let info = c.expect(apache, "info", wait);
    assert!(
        info.contains("\"subprotocols\": [\"x\", \"chat\"]"),
        "{info}"
    );
    assert!(info.contains("\"scheme\": \"ws\""), "{info}");
    assert!(info.contains("\"root_path\": \"/ws\""), "{info}");
    assert_eq!(c.expect(apache, "text", wait), "hello");
    assert_eq!(c.expect(apache, "bytes", wait), "0001ff");
    assert_eq!(c.expect(apache, "fragmented", wait), "fragmented");
    c.expect(apache, "pong", wait);
    assert_eq!(c.expect(apache, "closed", wait), "1000");
    drop(c);

    // Closed before accept: the handshake is refused with 403.
    let (_, status) = run(apache, "deny", &server.url("/deny"), &[], "status");
    assert_eq!(status, "403");

    // A message over websocket-max-message-size=1024: close 1009.
    let (_, code) = run(apache, "big", &server.url("/echo"), &["2048"], "closed");
    assert_with_log!(apache, code == "1009", "closed with {code}");
    apache.wait_for_log("RW0332:", Duration::from_secs(10));

    // The application raises after accepting: close 1011, its traceback in the log.
    let (_, code) = run(apache, "fail", &server.url("/fail"), &[], "closed");
    assert_with_log!(apache, code == "1011", "closed with {code}");
    let log = apache.wait_for_log("websocket app failed on purpose", Duration::from_secs(10));
    assert!(log.contains("Traceback"), "{log}");
    assert!(log.contains("RW0330:"), "{log}");
}

#[test]
fn kill_of_the_daemon_closes_with_1011_and_the_gauge_counts_open_sockets() {
    let server = start("", false);
    let apache = &server.apache;
    wait_for_metric(apache, "rwsgi_websockets_open", 0);
    let mut c = client("wait", &server.url("/echo"), &[]);
    let info = c.expect(apache, "info", Duration::from_secs(60));
    c.expect(apache, "ready", Duration::from_secs(30));
    wait_for_metric(apache, "rwsgi_websockets_open", 1);
    let pid: i32 = info
        .split("\"pid\": ")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("pid in the first message");
    // SAFETY: kill has no memory-safety preconditions; pid is the test's own daemon.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let code = c.expect(apache, "closed", Duration::from_secs(30));
    assert_with_log!(apache, code == "1011", "closed with {code}");
    apache.wait_for_log("RW0331:", Duration::from_secs(10));
    // The killed process' record is gone with it.
    wait_for_metric(apache, "rwsgi_websockets_open", 0);
}

#[test]
fn touch_reload_closes_open_sockets_with_1012() {
    let server = start("", false);
    let apache = &server.apache;
    let mut c = client("wait", &server.url("/echo"), &[]);
    c.expect(apache, "ready", Duration::from_secs(60));
    touch(&server.app);
    // The next request sees the change: the process is replaced, and the old one drains;
    // after graceful-timeout=1 its WebSocket gets 1012 (service restart).
    let r = apache.get("/ws/pid");
    assert_with_log!(apache, r.status == 200, "status {}", r.status);
    let code = c.expect(apache, "closed", Duration::from_secs(30));
    assert_with_log!(apache, code == "1012", "closed with {code}");
}

/// Warm replacement by maximum-requests, then by maximum-rss (1 MB: the first request that
/// ends leaves the process above it): the draining process' open WebSocket gets 1012 after
/// graceful-timeout=1, and the group serves on from its replacement.
#[test]
fn maximum_requests_and_maximum_rss_close_open_sockets_with_1012() {
    for options in ["maximum-requests=3", "maximum-rss=1"] {
        let server = start(options, false);
        let apache = &server.apache;
        let mut c = client("wait", &server.url("/echo"), &[]);
        let info = c.expect(apache, "info", Duration::from_secs(60));
        c.expect(apache, "ready", Duration::from_secs(30));
        // Plain requests until the process that holds the WebSocket reaches the limit (the
        // WebSocket's own request counts once it ends, so three more at most).
        for _ in 0..3 {
            let r = apache.get("/ws/pid");
            assert_with_log!(apache, r.status == 200, "{options}: status {}", r.status);
        }
        let code = c.expect(apache, "closed", Duration::from_secs(30));
        assert_with_log!(apache, code == "1012", "{options}: closed with {code}");
        let reason = if options.starts_with("maximum-requests") {
            "maximum-requests=3 reached"
        } else {
            "maximum-rss=1 MB exceeded"
        };
        apache.wait_for_log(reason, Duration::from_secs(10));
        // Served on by a new process.
        let old: String = info
            .split("\"pid\": ")
            .nth(1)
            .map(|s| s.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        apache.get_until("/ws/pid", Duration::from_secs(30), |r| {
            r.status == 200 && r.text() != old
        });
    }
}

#[test]
fn websocket_over_tls_through_mod_ssl() {
    let server = start("", true);
    let apache = &server.apache;
    let url = format!("wss://127.0.0.1:{}/ws/echo", server.tls_port.unwrap());
    let mut c = client("echo", &url, &[]);
    let wait = Duration::from_secs(60);
    let info = c.expect(apache, "info", wait);
    assert!(info.contains("\"scheme\": \"wss\""), "{info}");
    assert_eq!(c.expect(apache, "text", wait), "hello");
    assert_eq!(c.expect(apache, "bytes", wait), "0001ff");
    assert_eq!(c.expect(apache, "fragmented", wait), "fragmented");
    c.expect(apache, "pong", wait);
    assert_eq!(c.expect(apache, "closed", wait), "1000");
}

#[test]
fn idle_timeout_closes_a_quiet_socket_with_1001() {
    let server = start("websocket-idle-timeout=1", false);
    let apache = &server.apache;
    // The client sends no keepalive pings: after its first exchange neither side sends
    // anything, so websocket-idle-timeout=1 closes it with 1001 (going away).
    let mut c = client("idle", &server.url("/echo"), &[]);
    c.expect(apache, "ready", Duration::from_secs(60));
    let code = c.expect(apache, "closed", Duration::from_secs(15));
    assert_with_log!(apache, code == "1001", "closed with {code}");
}

#[test]
fn graceful_restart_closes_open_sockets_with_1012() {
    let server = start("", false);
    let apache = &server.apache;
    let mut c = client("wait", &server.url("/echo"), &[]);
    c.expect(apache, "ready", Duration::from_secs(60));
    // apache2 -k graceful: the daemon drains; after graceful-timeout=1 its open WebSocket
    // gets 1012 (service restart).
    apache.signal(libc::SIGUSR1);
    let code = c.expect(apache, "closed", Duration::from_secs(30));
    assert_with_log!(apache, code == "1012", "closed with {code}");
}

/// A WebSocket opened by hand on a plain TCP connection (for frames the `websockets`
/// client will not send): the 101's head is read; the rest stays in the stream.
fn raw_open(apache: &Apache, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /ws{path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
        assert!(head.len() < 8192, "{}", String::from_utf8_lossy(&head));
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_with_log!(apache, head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads one server frame (unmasked, RFC 6455 5.2): its first byte (FIN, opcode) and
/// payload.
fn raw_read_frame(apache: &Apache, s: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; 2];
    if let Err(e) = s.read_exact(&mut h) {
        panic!(
            "no frame from the server ({e})\n--- error log ---\n{}",
            apache.error_log()
        );
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// Reads server frames until a close frame; its code.
fn raw_close_code(apache: &Apache, s: &mut std::net::TcpStream) -> u16 {
    for _ in 0..16 {
        let (h0, payload) = raw_read_frame(apache, s);
        if h0 & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
    panic!("no close frame among the first 16 frames");
}

/// A client frame: FIN, `opcode`, masked with `mask` (None: unmasked, which RFC 6455 5.1
/// forbids from a client).
fn raw_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    match mask {
        Some(m) => {
            f[1] |= 0x80;
            f.extend_from_slice(&m);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

#[test]
fn invalid_client_frames_close_with_1002_and_1007() {
    use std::io::Write;
    let server = start("", false);
    let apache = &server.apache;

    // An unmasked frame from the client: protocol error, 1002 (RFC 6455 5.1, 7.4.1).
    let mut s = raw_open(apache, "/echo");
    s.write_all(&raw_frame(0x1, b"hello", None)).unwrap();
    let code = raw_close_code(apache, &mut s);
    assert_with_log!(apache, code == 1002, "closed with {code}");
    apache.wait_for_log("RW0333:", Duration::from_secs(10));

    // A text frame that is not UTF-8: 1007 (RFC 6455 8.1).
    let mut s = raw_open(apache, "/echo");
    s.write_all(&raw_frame(0x1, b"bad \xff\xfe", Some([1, 2, 3, 4])))
        .unwrap();
    let code = raw_close_code(apache, &mut s);
    assert_with_log!(apache, code == 1007, "closed with {code}");

    // An unknown opcode (0x3 is reserved): 1002.
    let mut s = raw_open(apache, "/echo");
    s.write_all(&raw_frame(0x3, b"x", Some([9, 8, 7, 6])))
        .unwrap();
    let code = raw_close_code(apache, &mut s);
    assert_with_log!(apache, code == 1002, "closed with {code}");
}

#[test]
fn denial_with_an_http_response_reaches_the_client() {
    let server = start("", false);
    let apache = &server.apache;
    // websocket.http.response.start/body (Starlette's send_denial_response): that status,
    // header and body instead of a 101.
    let mut c = client("deny", &server.url("/teapot"), &[]);
    let wait = Duration::from_secs(60);
    assert_eq!(c.expect(apache, "header", wait), "yes");
    assert_eq!(c.expect(apache, "body", wait), "no websockets for you");
    let status = c.expect(apache, "status", wait);
    assert_with_log!(apache, status == "418", "status {status}");
}

/// A client that stops reading while the application keeps sending: the event loop writes
/// only what the connection takes without blocking (the rest waits in the request thread),
/// so HTTP requests to the same interpreter's loop are answered promptly while the socket is
/// stuck; once the client reads again, every message arrives whole and in order.
#[test]
fn a_client_that_stops_reading_stalls_neither_the_loop_nor_loses_messages() {
    use std::io::Write;
    const COUNT: usize = 1000;
    const SIZE: usize = 16000;
    let server = start("", false);
    let apache = &server.apache;
    let mut s = raw_open(apache, "/flood");
    let go = format!("{COUNT} {SIZE}");
    s.write_all(&raw_frame(0x1, go.as_bytes(), Some([1, 2, 3, 4])))
        .unwrap();
    // The application sends until the buffers on the way fill (16 MB is far more than they
    // hold): its count of sends stops moving. Each look at it is an ASGI HTTP request
    // served by the same event loop.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut unchanged) = (None, 0);
    while unchanged < 5 {
        let started = Instant::now();
        let r = apache.get("/ws/flood-state");
        let took = started.elapsed();
        assert_with_log!(
            apache,
            r.status == 200 && took < Duration::from_secs(2),
            "/ws/flood-state: status {} after {took:?} while the client does not read",
            r.status
        );
        let sent: usize = r.text().trim().parse().expect("a count");
        if last == Some(sent) {
            unchanged += 1;
        } else {
            (last, unchanged) = (Some(sent), 0);
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "the sends did not stop ({sent} so far)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stuck_at = last.unwrap_or_default();
    assert_with_log!(
        apache,
        stuck_at < COUNT,
        "all {COUNT} messages were sent: the client's socket never filled"
    );
    // Still stuck, and another request is answered at once.
    let started = Instant::now();
    assert_eq!(apache.get("/ws/pid").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The client reads again: everything, in order.
    for i in 0..COUNT {
        let (h0, payload) = raw_read_frame(apache, &mut s);
        assert_eq!(h0, 0x81, "message {i}: a whole text frame");
        let want = format!("{i:06}:");
        assert_with_log!(
            apache,
            payload.starts_with(want.as_bytes()) && payload.len() == SIZE,
            "message {i}: got {:?}... ({} bytes), stuck at {stuck_at}",
            String::from_utf8_lossy(&payload[..payload.len().min(7)]),
            payload.len()
        );
    }
    let (_, done) = raw_read_frame(apache, &mut s);
    assert_eq!(done, b"done");
    assert_eq!(
        apache.get("/ws/flood-state").text().trim(),
        COUNT.to_string()
    );
}

/// Numbered messages sent by concurrent tasks, in the order they call send(); every fifth
/// is over the event loop's direct-write bound (it goes through the request thread), so the
/// small ones behind it must wait for it: the client checks they arrive in order.
#[test]
fn a_burst_of_direct_and_queued_sends_arrives_in_order() {
    let server = start("", false);
    let apache = &server.apache;
    let (mut c, result) = run(apache, "burst", &server.url("/burst"), &["600"], "burst");
    assert_with_log!(
        apache,
        result == "600 done",
        "burst: {result} ({:?})",
        c.seen
    );
    assert_eq!(c.expect(apache, "closed", Duration::from_secs(30)), "1000");
}

/// The client sends 2000 messages while the application does not receive: past the inbox's
/// bound the event loop stops reading the connection (back pressure), and reads on as the
/// application receives; every message arrives, in order. In the main interpreter (uvloop's
/// loop) and in a sub-interpreter (asyncio's).
#[test]
fn messages_piling_up_while_the_app_does_not_receive_arrive_in_order() {
    let config = ApacheConfig::new("asgi-ws-pile");
    let app = config.install_app("asgi_websocket.py");
    let conf = format!(
        "WSGIDaemonProcess ws threads=4 python-home={}\n\
         WSGIScriptAlias /ws {} process-group=ws application-group=%{{GLOBAL}} interface=asgi\n\
         WSGIScriptAlias /sub {} process-group=ws application-group=sub interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        test_venv().display(),
        app.display(),
        app.display(),
    );
    let apache = config.conf(&conf).start();
    for prefix in ["/ws", "/sub"] {
        let url = format!("ws://127.0.0.1:{}{prefix}/pile", apache.port());
        let (mut c, result) = run(&apache, "pile", &url, &["2000"], "pile");
        assert_with_log!(apache, result == "2000 in order", "{prefix}: {result}");
        assert_eq!(c.expect(&apache, "closed", Duration::from_secs(30)), "1000");
    }
}
