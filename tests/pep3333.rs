//! PEP 3333 against a real Apache and CPython, in both modes: every test runs the probe app
//! (tests/apps/probe.wsgi) in a WSGIDaemonProcess group and embedded in Apache's children.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{Json, json};
use common::{Apache, ApacheConfig, http};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    /// Daemon mode with the application in a named application group: a sub-interpreter.
    DaemonSubInterpreter,
    Embedded,
}

impl Mode {
    fn daemon(self) -> bool {
        self != Mode::Embedded
    }

    /// The WSGIApplicationGroup the app runs in.
    fn application_group(self) -> &'static str {
        match self {
            Mode::DaemonSubInterpreter => "pep-group",
            _ => "",
        }
    }
}

const MODES: [Mode; 3] = [Mode::Daemon, Mode::DaemonSubInterpreter, Mode::Embedded];

/// The probe app at /app (and /other-root); in daemon mode in group `probe` with
/// `group_options`, in embedded mode inside the Apache children (options ignored).
fn start_in(mode: Mode, group_options: &str, extra: &str) -> Apache {
    let config = ApacheConfig::new(match mode {
        Mode::Daemon => "pep-daemon",
        Mode::DaemonSubInterpreter => "pep-subinterp",
        Mode::Embedded => "pep-embedded",
    });
    let app = config.install_app("probe.wsgi");
    let group = if mode.daemon() {
        format!("WSGIDaemonProcess probe {group_options}\nWSGIProcessGroup probe\n")
    } else {
        String::new()
    };
    let app_group = match mode.application_group() {
        "" => "%{GLOBAL}",
        named => named,
    };
    let conf = format!(
        "{group}WSGIApplicationGroup {app_group}\n\
         WSGIScriptAlias /app {app}\n\
         WSGIScriptAlias /other-root {app}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n{extra}",
        app = app.display()
    );
    config.conf(&conf).start()
}

#[test]
fn environ_is_complete_and_split_like_mod_wsgi() {
    for mode in MODES {
        let apache = start_in(mode, "threads=4", "");
        let resp = apache.request(
            "GET",
            "/app/env/x%20y?a=1&b=%C3%A9",
            &[
                ("X-Custom-Header", "yes"),
                ("X_Underscore", "spoof"),
                ("Authorization", "Basic c2VjcmV0"),
            ],
            b"",
        );
        assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
        let env = json(&resp);
        assert_eq!(env["SCRIPT_NAME"].str(), "/app");
        assert_eq!(env["PATH_INFO"].str(), "/env/x y");
        assert_eq!(env["QUERY_STRING"].str(), "a=1&b=%C3%A9");
        assert_eq!(env["REQUEST_METHOD"].str(), "GET");
        assert_eq!(env["REQUEST_URI"].str(), "/app/env/x%20y?a=1&b=%C3%A9");
        assert_eq!(env["SERVER_PROTOCOL"].str(), "HTTP/1.1");
        assert_eq!(env["SERVER_PORT"].str(), apache.port().to_string());
        assert_eq!(env["REMOTE_ADDR"].str(), "127.0.0.1");
        assert_eq!(env["HTTP_X_CUSTOM_HEADER"].str(), "yes");
        assert_eq!(
            env["HTTP_HOST"].str(),
            format!("127.0.0.1:{}", apache.port())
        );
        assert_eq!(env["wsgi.url_scheme"].str(), "http");
        assert_eq!(env["wsgi.version"].str(), "(1, 0)");
        assert_eq!(env["wsgi.multithread"].str(), "True");
        // Daemon: processes= not given (mod_wsgi semantics); embedded: the MPM has several
        // processes.
        let multiprocess = if mode.daemon() { "False" } else { "True" };
        assert_eq!(env["wsgi.multiprocess"].str(), multiprocess);
        assert_eq!(env["wsgi.run_once"].str(), "False");
        let group = if mode.daemon() { "probe" } else { "" };
        assert_eq!(env["mod_wsgi.process_group"].str(), group);
        assert!(env["SCRIPT_FILENAME"].str().ends_with("/apps/probe.wsgi"));
        // Headers with underscores are not passed; Authorization is hidden by default.
        assert_eq!(env["HTTP_X_UNDERSCORE"], serde_json::Value::Null);
        assert_eq!(env["HTTP_AUTHORIZATION"], serde_json::Value::Null);
        assert_eq!(env["PATH"], serde_json::Value::Null);
    }
}

/// SCRIPT_NAME is bytes from the URL like PATH_INFO: a WSGIScriptAliasMatch prefix holding
/// bytes that are not UTF-8 (`%E9`, latin-1 é) or that are (`%C3%A9`, UTF-8 é) reaches the
/// app as the latin-1 decoding of exactly those bytes (PEP 3333), as does PATH_INFO, and
/// `mod_wsgi.script_name` with them.
#[test]
fn script_name_from_an_alias_match_is_latin1_of_the_url_bytes() {
    let extra = "WSGIScriptAliasMatch ^/caf[^/]*/app @DIR@/apps/probe.wsgi\n";
    for mode in MODES {
        let apache = start_in(mode, "threads=2", extra);
        let cases = [
            ("/caf%E9/app/env/x%E9", "/caf\u{e9}/app", "/env/x\u{e9}"),
            (
                "/caf%C3%A9/app/env/%C3%A9",
                "/caf\u{c3}\u{a9}/app",
                "/env/\u{c3}\u{a9}",
            ),
        ];
        for (url, script_name, path_info) in cases {
            let resp = apache.get(url);
            assert_with_log!(
                apache,
                resp.status == 200,
                "{mode:?} {url}: {}",
                resp.status
            );
            let env = json(&resp);
            assert_eq!(env["SCRIPT_NAME"].str(), script_name, "{mode:?} {url}");
            assert_eq!(env["PATH_INFO"].str(), path_info, "{mode:?} {url}");
            assert_eq!(
                env["mod_wsgi.script_name"].str(),
                script_name,
                "{mode:?} {url}"
            );
            assert_eq!(env["mod_wsgi.path_info"].str(), path_info, "{mode:?} {url}");
        }
    }
}

/// The running Apache's version, from `apache2 -v` ("Server version: Apache/2.4.65 ...").
fn apache_version() -> Vec<u64> {
    let out = std::process::Command::new("/usr/sbin/apache2")
        .arg("-v")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split("Apache/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    version.split('.').map(|n| n.parse().unwrap()).collect()
}

/// Two requests on one keep-alive connection; the bodies of both responses (each has a
/// Content-Length).
fn two_on_one_connection(port: u16, path: &str) -> [Vec<u8>; 2] {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    [false, true].map(|last| {
        let close = if last { "Connection: close\r\n" } else { "" };
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n").unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        body
    })
}

#[test]
fn mod_wsgi_environ_keys_with_mod_wsgi_types() {
    let apache_version = apache_version();
    for mode in MODES {
        let apache = start_in(mode, "threads=4", "");
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let resp = apache.get("/app/modwsgi-env/x");
        assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
        let env = json(&resp);
        let key = |k: &str| -> (String, serde_json::Value) {
            let pair = env[k].list();
            assert_eq!(pair.len(), 2, "{mode:?}: {k} missing: {env:?}");
            (pair[0].str().to_string(), pair[1].clone())
        };
        let string = |k: &str| -> String {
            let (ty, v) = key(k);
            assert_eq!(ty, "str", "{mode:?}: {k}");
            v.str().to_string()
        };
        let float = |k: &str| -> f64 {
            let (ty, v) = key(k);
            assert_eq!(ty, "float", "{mode:?}: {k}");
            v.num()
        };
        // Versions are tuples of ints.
        let (ty, v) = key("mod_wsgi.version");
        assert_eq!((ty.as_str(), v), ("tuple", serde_json::json!([6, 0, 5])));
        let (ty, v) = key("apache.version");
        assert_eq!(
            (ty.as_str(), v),
            ("tuple", serde_json::json!(apache_version))
        );
        // The request's configuration.
        let group = if mode.daemon() { "probe" } else { "" };
        assert_eq!(string("mod_wsgi.process_group"), group);
        assert_eq!(
            string("mod_wsgi.application_group"),
            mode.application_group()
        );
        assert_eq!(string("mod_wsgi.callable_object"), "application");
        assert_eq!(string("mod_wsgi.script_name"), "/app");
        assert_eq!(string("mod_wsgi.path_info"), "/modwsgi-env/x");
        // The Apache side: listener (as `Listen 127.0.0.1:port` gave it), the Apache child.
        assert_eq!(string("mod_wsgi.listener_host"), "127.0.0.1");
        assert_eq!(string("mod_wsgi.listener_port"), apache.port().to_string());
        let server_pid: u32 = string("mod_wsgi.server_pid").parse().unwrap();
        let pid = env["pid"].list()[1].num() as u32;
        if mode.daemon() {
            assert_ne!(
                server_pid, pid,
                "server_pid is the Apache child, not the daemon"
            );
        } else {
            assert_eq!(server_pid, pid);
        }
        let comm = std::fs::read_to_string(format!("/proc/{server_pid}/comm")).unwrap();
        assert_eq!(
            comm.trim(),
            "apache2",
            "server_pid {server_pid} is not Apache"
        );
        assert!(!string("mod_wsgi.request_id").is_empty());
        assert!(!string("mod_wsgi.connection_id").is_empty());
        let (ty, thread_id) = key("mod_wsgi.thread_id");
        assert_eq!(ty, "int");
        assert!(thread_id.num() >= 0.0, "{thread_id}");
        // No trusted X-Script-Name here.
        assert_eq!(env["mod_wsgi.mount_point"], serde_json::Value::Null);
        // Timing: float epoch seconds, in order; queue and daemon are 0.0 when embedded.
        let request_start = float("mod_wsgi.request_start");
        let queue_start = float("mod_wsgi.queue_start");
        let daemon_start = float("mod_wsgi.daemon_start");
        let application_start = float("mod_wsgi.application_start");
        let now = env["now"].list()[1].num();
        // Apache's request time has microseconds; allow for rounding only.
        assert!(
            request_start >= before - 0.001,
            "{request_start} < {before}"
        );
        match mode {
            Mode::Daemon | Mode::DaemonSubInterpreter => {
                assert!(request_start <= queue_start, "{env:?}");
                assert!(queue_start <= daemon_start, "{env:?}");
                assert!(daemon_start <= application_start, "{env:?}");
            }
            Mode::Embedded => {
                assert_eq!((queue_start, daemon_start), (0.0, 0.0));
                assert!(request_start <= application_start, "{env:?}");
            }
        }
        assert!(application_start <= now, "{env:?}");
        // Each request has its own id; one connection keeps its id.
        let [a, b] = two_on_one_connection(apache.port(), "/app/modwsgi-env");
        let (a, b) = (
            serde_json::from_slice::<serde_json::Value>(&a).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&b).unwrap(),
        );
        assert_ne!(a["mod_wsgi.request_id"], b["mod_wsgi.request_id"]);
        assert_eq!(a["mod_wsgi.connection_id"], b["mod_wsgi.connection_id"]);
        assert_ne!(a["mod_wsgi.connection_id"], env["mod_wsgi.connection_id"]);
    }
}

#[test]
fn wsgi_input_methods() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let body = b"line one\nline two\nthird line without newline";
        let cases: &[(&str, &str)] = &[
            ("read", "line one\nline two\nthird line without newline"),
            (
                "readn&n=10",
                "line one\nl|ine two\nth|ird line w|ithout new|line",
            ),
            (
                "readline",
                r#"["line one\n", "line two\n", "third line without newline"]"#,
            ),
            ("readline_hint", r#"["lin", "e o", "ne\n", "lin"]"#),
            (
                "readlines",
                r#"["line one\n", "line two\n", "third line without newline"]"#,
            ),
            (
                "iter",
                r#"["line one\n", "line two\n", "third line without newline"]"#,
            ),
        ];
        for (mode, expected) in cases {
            let resp = apache.request("POST", &format!("/app/input?mode={mode}"), &[], body);
            assert_with_log!(apache, resp.status == 200, "{mode}: status {}", resp.status);
            assert_eq!(resp.text(), *expected, "mode {mode}");
        }
        // An empty body reads as b"".
        let resp = apache.request("POST", "/app/input?mode=read", &[], b"");
        assert_eq!(resp.text(), "");
    }
}

#[test]
fn large_upload_and_response_arrive_intact() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let size = 20 * 1024 * 1024;
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let resp = apache.request("POST", "/app/upload", &[], &body);
        assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
        let digest = sha256_hex(&body);
        assert_eq!(resp.text(), format!("{size} {digest}"));

        let resp = apache.get(&format!("/app/big?n={size}"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), size);
        let block: Vec<u8> = (0..256u32).map(|b| b as u8).cycle().take(size).collect();
        assert!(resp.body == block, "20 MiB response differs");
    }
}

#[test]
fn bodies_around_the_buffer_and_push_limits_arrive_intact() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        // Request bodies around 64 KiB (the largest pushed with the head in daemon mode) and
        // above; bodies the app never reads must not disturb the next request on the reused
        // daemon connection.
        for size in [1, 4095, 65535, 65536, 65537, 300_000] {
            let body: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
            for _ in 0..3 {
                let resp = apache.request("POST", "/app/pid", &[], &body);
                assert_with_log!(apache, resp.status == 200, "{mode:?} unread {size}");
            }
            let resp = apache.request("POST", "/app/upload", &[], &body);
            assert_with_log!(apache, resp.status == 200, "{mode:?} upload {size}");
            assert_eq!(
                resp.text(),
                format!("{size} {}", sha256_hex(&body)),
                "{mode:?}"
            );
            // Read in pieces smaller than what arrived at once.
            let resp = apache.request("POST", "/app/input?mode=readn&n=4096", &[], &body);
            let expected: Vec<&[u8]> = body.chunks(4096).collect();
            assert!(resp.body == expected.join(&b'|'), "{mode:?} readn {size}");
        }
        // Responses returned as one list item, around the sizes that go out in one write.
        for size in [100, 4096, 4097, 65535, 65536, 65537, 300_000] {
            let resp = apache.get(&format!("/app/biglist?n={size}"));
            assert_with_log!(apache, resp.status == 200, "{mode:?} biglist {size}");
            let block: Vec<u8> = (0..256u32).map(|b| b as u8).cycle().take(size).collect();
            assert!(
                resp.body == block,
                "{mode:?}: {size}-byte list response differs"
            );
        }
    }
}

#[test]
fn chunked_request_body_needs_wsgi_chunked_request() {
    for mode in MODES {
        let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let refused = start_in(mode, "threads=1", "");
        let resp = refused.request(
            "POST",
            "/app/input?mode=read",
            &[("Transfer-Encoding", "chunked")],
            chunked,
        );
        assert_eq!(resp.status, 411);
        drop(refused);
        let allowed = start_in(mode, "threads=1", "WSGIChunkedRequest On");
        let resp = allowed.request(
            "POST",
            "/app/input?mode=read",
            &[("Transfer-Encoding", "chunked")],
            chunked,
        );
        assert_with_log!(allowed, resp.status == 200, "status {}", resp.status);
        assert_eq!(resp.text(), "hello world");
    }
}

#[test]
fn generator_streams_before_it_ends() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let marker = apache.config.markers_dir().join("stream-done");
        let mut s = TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /app/stream?marker={}&wait=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            marker.display()
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            if line.contains("first chunk") {
                break;
            }
        }
        assert!(seen.contains("first chunk"), "no first chunk: {seen}");
        assert!(
            !marker.exists(),
            "the first chunk arrived only after the generator finished"
        );
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("second chunk"), "{rest}");
    }
}

#[test]
fn write_callable_and_headers() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let resp = apache.get("/app/write?n=4");
        assert_eq!(resp.text(), "w00;w01;w02;w03;end");
        let resp = apache.get("/app/headers");
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("X-One"), Some("1"));
        let cookies: Vec<&str> = resp
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        // A repeated name: mod_wsgi folds it into one line in daemon mode (its CGI-style
        // scan of the daemon's headers) and sends one line each in embedded mode.
        let twice: Vec<&str> = resp
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-twice"))
            .map(|(_, v)| v.as_str())
            .collect();
        let expected: &[&str] = match mode {
            Mode::Daemon | Mode::DaemonSubInterpreter => &["first, second"],
            Mode::Embedded => &["first", "second"],
        };
        assert_eq!(twice, expected, "{mode:?}");
        let head = apache.request("HEAD", "/app/headers", &[], b"");
        assert_eq!(head.status, 201);
    }
}

#[test]
fn app_errors_give_500_with_traceback_and_the_process_keeps_serving() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        for path in [
            "/app/error",
            "/app/badstatus",
            "/app/badheader",
            "/app/strbody",
            "/app/nostart",
        ] {
            let resp = apache.get(path);
            assert_with_log!(apache, resp.status == 500, "{path}: status {}", resp.status);
        }
        let log = apache.wait_for_log("probe app failure on purpose", Duration::from_secs(5));
        assert!(log.contains("Traceback (most recent call last)"), "{log}");
        assert!(log.contains("RuntimeError"), "{log}");
        let resp = apache.get("/app/pid");
        assert_eq!(resp.status, 200);
    }
}

#[test]
fn exception_mid_body_leaves_the_body_visibly_incomplete() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let result = http::request(apache.port(), "GET", "/app/midfail", &[], b"");
        // Content-Length 1000 was promised; the client must not get a complete response.
        if let Ok(resp) = result {
            assert_with_log!(apache, resp.body.len() < 1000, "got a complete body");
        }
        apache.wait_for_log("failure after the head was sent", Duration::from_secs(5));
    }
}

#[test]
fn stdout_stderr_and_wsgi_errors_reach_the_error_log() {
    for mode in MODES {
        let apache = start_in(mode, "threads=1", "");
        assert_eq!(apache.get("/app/print").text(), "printed");
        let log = apache.wait_for_log("probe wsgi.errors line", Duration::from_secs(5));
        assert!(log.contains("probe stdout line one"), "{log}");
        assert!(log.contains("probe stderr line"), "{log}");
    }
}

#[test]
fn close_is_called_when_the_client_disconnects() {
    for mode in MODES {
        let apache = start_in(mode, "threads=2", "");
        let marker = apache.config.markers_dir().join("closed");
        let mut s = TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
        write!(
            s,
            "GET /app/close?marker={}&chunks=2000&delay=0.005 HTTP/1.1\r\nHost: x\r\n\r\n",
            marker.display()
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(
                Instant::now() < deadline,
                "close() was not called\n{}",
                apache.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn restrict_stdout_makes_print_fail() {
    for mode in MODES {
        let apache = start_in(mode, "threads=1", "WSGIRestrictStdout On");
        let resp = apache.get("/app/print");
        assert_with_log!(apache, resp.status == 500, "status {}", resp.status);
        apache.wait_for_log("WSGIRestrictStdout", Duration::from_secs(5));
    }
}

#[test]
fn file_wrapper_sends_the_file_from_its_position_and_honours_content_length() {
    let script = std::fs::read(common::repo_dir().join("tests/apps/probe.wsgi")).unwrap();
    for (mode, sendfile) in MODES.iter().flat_map(|m| [(*m, false), (*m, true)]) {
        let apache = start_in(
            mode,
            "threads=4",
            if sendfile {
                "WSGIEnableSendfile On"
            } else {
                ""
            },
        );
        // A real file: Apache sends it from the descriptor (daemon mode: passed over the
        // socket); a BytesIO: the blocks are read and sent as body bytes.
        for (path, expected) in [
            ("/app/file", &script[..]),
            ("/app/file?seek=100", &script[100..]),
            ("/app/file?cl=50", &script[..50]),
            ("/app/file?seek=10&cl=20", &script[10..30]),
            ("/app/file?bytesio=1", &script[..]),
            ("/app/file?bytesio=1&seek=7&cl=9", &script[7..16]),
        ] {
            let resp = apache.get(path);
            assert_with_log!(
                apache,
                resp.status == 200,
                "{mode:?} {path}: {}",
                resp.status
            );
            assert_with_log!(
                apache,
                resp.body == expected,
                "{mode:?} {path}: {} bytes, expected {}",
                resp.body.len(),
                expected.len()
            );
        }
        // Many in a row: no descriptor mix-ups, and none left open in Apache's children.
        let fds_before = apache_children_fds(&apache);
        for i in 0..60 {
            let seek = (i * 37) % 500;
            let resp = apache.get(&format!("/app/file?seek={seek}"));
            assert_with_log!(apache, resp.body == script[seek..], "{mode:?} round {i}");
        }
        let fds_after = apache_children_fds(&apache);
        assert_with_log!(
            apache,
            fds_after < fds_before + 20,
            "{mode:?}: Apache children hold {fds_before} descriptors before, {fds_after} after"
        );
        let head = apache.request("HEAD", "/app/file", &[], b"");
        assert_with_log!(
            apache,
            head.status == 200 && head.body.is_empty(),
            "{mode:?} HEAD"
        );
    }
}

/// Open descriptors of all Apache children (not the daemons or their manager).
fn apache_children_fds(apache: &Apache) -> usize {
    let parent = apache.pid().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
            stat.contains("(apache2)") && after.split_whitespace().nth(1) == Some(parent.as_str())
        })
        .map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}
