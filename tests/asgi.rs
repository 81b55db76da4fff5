//! ASGI 3 applications in daemon mode (`interface=asgi`, issue 33): a Starlette application
//! (routes, streaming, request body echo with a chunked upload, lifespan startup and
//! shutdown) and a raw ASGI application (the `http` scope's fields, misbehaving apps).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::http::{self, json};
use common::{Apache, ApacheConfig, test_venv};

/// Both test apps, in one daemon group: Starlette in the main interpreter, the raw app in a
/// sub-interpreter; both preloaded (literal groups), so their lifespans start with the daemon.
fn start(extra_group_options: &str) -> Apache {
    let config = ApacheConfig::new("asgi");
    config.markers_dir();
    let star = config.install_app("asgi_starlette.py");
    let raw = config.install_app("asgi_raw.py");
    let handler = config.install_app("asgi_handler.py");
    let venv = test_venv();
    let conf = format!(
        "WSGIDaemonProcess asgi threads=4 python-home={} {extra_group_options}\n\
         WSGIScriptAlias /star {} process-group=asgi application-group=%{{GLOBAL}} \
         interface=asgi\n\
         WSGIScriptAlias /raw {} process-group=asgi application-group=raw interface=asgi\n\
         <Location /raw/proxied>\n    WSGITrustedProxies 127.0.0.1\n    \
         WSGITrustedProxyHeaders X-Forwarded-For X-Forwarded-Proto\n</Location>\n\
         WSGIHandlerScript asgi-handler {} process-group=asgi application-group=raw \
         interface=asgi\n\
         Alias /handled @DIR@/htdocs\n\
         <Location /handled>\n    SetHandler asgi-handler\n    Require all granted\n</Location>\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        venv.display(),
        star.display(),
        raw.display(),
        handler.display()
    );
    config.conf(&conf).start()
}

fn wait_for_file_text(apache: &Apache, path: &Path, what: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        if start.elapsed() > limit {
            panic!(
                "{} did not show {what:?} within {limit:?} (has {text:?}):\n{}",
                path.display(),
                apache.error_log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn starlette_routes_streaming_body_echo_and_lifespan() {
    let mut apache = start("graceful-timeout=5");
    let lifespan = apache.marker("lifespan");
    // lifespan.startup ran when the daemon started, before it took a request.
    let text = wait_for_file_text(&apache, &lifespan, "startup", Duration::from_secs(30));
    let pid: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("startup <pid>");
    apache.wait_for_log("RW0302:", Duration::from_secs(10));

    let r = apache.get("/star/");
    assert_with_log!(apache, r.status == 200, "status {}", r.status);
    assert_eq!(r.text(), "hello from starlette");

    let r = apache.get("/star/items/7?q=x%20y");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let j = json(&r);
    assert_eq!(j["id"], "7");
    assert_eq!(j["q"], "x y");
    assert_eq!(j["root_path"], "/star");
    assert_eq!(j["path"], "/star/items/7");
    // The state the lifespan yielded reaches the request, in the same process.
    assert_eq!(j["started_by"].as_u64(), Some(pid));
    assert_eq!(j["pid"].as_u64(), Some(pid));

    // A streaming response: no Content-Length, all parts in order.
    let r = apache.get("/star/stream?n=200");
    assert_with_log!(apache, r.status == 200, "status {}", r.status);
    assert_eq!(r.header("content-length"), None);
    let expected: String = (0..200).map(|i| format!("part {i}\n")).collect();
    assert_eq!(r.text(), expected);
    // 2.5 MiB in 64 KiB parts: more than the 256 KiB send() may queue, so the app waits for
    // the writes (flow control) and every part arrives in order.
    let r = apache.get("/star/stream?n=40&size=65536");
    assert_with_log!(apache, r.status == 200, "status {}", r.status);
    let expected: Vec<u8> = (0..40)
        .flat_map(|i| {
            let mut part = format!("part {i}\n").into_bytes();
            part.resize(65536, b'.');
            part
        })
        .collect();
    assert_eq!(r.body.len(), expected.len());
    assert!(r.body == expected, "the streamed parts differ");

    // A request body larger than one read, echoed.
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = apache.request("POST", "/star/echo", &[], &body);
    assert_with_log!(apache, r.status == 200, "status {}", r.status);
    assert_eq!(r.body, body);
    let chunks: u32 = r.header("x-chunks").unwrap().parse().unwrap();
    assert!(
        chunks >= 2,
        "a 300 kB body came as {chunks} http.request message(s)"
    );

    // A chunked upload (no Content-Length; no WSGIChunkedRequest needed for ASGI).
    let raw = "PUT /star/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
               Connection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    let r = http::raw_request(apache.port(), raw.as_bytes(), false).unwrap();
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert_eq!(r.text(), "hello, world");

    // lifespan.shutdown runs when the daemon drains (Apache stops).
    apache.stop();
    wait_for_file_text(
        &apache,
        &lifespan,
        &format!("shutdown {pid}"),
        Duration::from_secs(20),
    );
    let log = apache.error_log();
    assert!(log.contains("RW0309:"), "{log}");
}

#[test]
fn raw_app_scope_fields_and_misbehaviour() {
    let apache = start("");
    // The raw app raises on the lifespan scope: served without lifespan events.
    apache.wait_for_log("RW0304:", Duration::from_secs(30));

    let r = apache.request(
        "POST",
        "/raw/scope%20x/y?a=1&b=%20",
        &[("X-Custom", "v1"), ("Content-Type", "text/plain")],
        b"body",
    );
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let s = json(&r);
    assert_eq!(s["type"], "http");
    assert_eq!(s["asgi"]["version"], "3.0");
    assert_eq!(s["asgi"]["spec_version"], "2.3");
    assert_eq!(s["http_version"], "1.1");
    assert_eq!(s["method"], "POST");
    assert_eq!(s["scheme"], "http");
    assert_eq!(s["path"], "/raw/scope x/y");
    assert_eq!(s["raw_path"]["bytes"], "/raw/scope%20x/y");
    assert_eq!(s["query_string"]["bytes"], "a=1&b=%20");
    assert_eq!(s["root_path"], "/raw");
    let headers: Vec<(String, String)> = s["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0]["bytes"].as_str().unwrap().to_string(),
                h[1]["bytes"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, value) in [
        ("x-custom", "v1"),
        ("content-type", "text/plain"),
        ("content-length", "4"),
    ] {
        assert!(
            headers.iter().any(|(n, v)| n == name && v == value),
            "{name}: {value} missing from {headers:?}"
        );
    }
    assert!(headers.iter().any(|(n, _)| n == "host"), "{headers:?}");
    assert_eq!(s["client"][0], "127.0.0.1");
    assert!(s["client"][1].as_u64().unwrap() > 0, "{}", s["client"]);
    assert_eq!(s["server"][1].as_u64(), Some(u64::from(apache.port())));
    assert_eq!(s["state"], serde_json::json!({}));

    // WSGITrustedProxyHeaders apply to the scope: client and scheme from the trusted proxy.
    let r = apache.request(
        "GET",
        "/raw/proxied/scope",
        &[
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    );
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let s = json(&r);
    assert_eq!(s["client"][0], "1.1.1.1");
    assert_eq!(s["scheme"], "https");

    // print() in a coroutine reaches the error log.
    let r = apache.get("/raw/print");
    assert_eq!(r.status, 200);
    apache.wait_for_log("printed by an ASGI coroutine", Duration::from_secs(10));

    // Status, repeated headers.
    let r = apache.get("/raw/status");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-asgi"), Some("yes"));
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .collect();
    assert_eq!(cookies.len(), 2, "{:?}", r.headers);

    // Raises before http.response.start: 500, the traceback in the error log.
    let r = apache.get("/raw/raise-before");
    assert_eq!(r.status, 500);
    let log = apache.wait_for_log("raised before the response start", Duration::from_secs(10));
    assert!(log.contains("Traceback"), "{log}");

    // Never sends a response: 500 and a log line saying so.
    let r = apache.get("/raw/no-response");
    assert_eq!(r.status, 500);
    apache.wait_for_log(
        "ASGI application returned without sending http.response.start",
        Duration::from_secs(10),
    );

    // Raises after the response started: the connection is closed before the body's end
    // (the chunked body never gets its last chunk), and the error is logged.
    let result = http::request(apache.port(), "GET", "/raw/raise-after", &[], b"");
    if let Ok(r) = result {
        assert_with_log!(
            apache,
            r.text() != "partial" || r.header("transfer-encoding").is_none(),
            "a complete response for an app that raised: {r:?}"
        );
    }
    apache.wait_for_log("raised after the response start", Duration::from_secs(10));

    // receive() after the response is complete answers http.disconnect.
    let r = apache.request("POST", "/raw/disconnect", &[], b"x");
    assert_eq!(r.text(), "done");
    let marker = apache.marker("disconnect");
    let text = wait_for_file_text(&apache, &marker, "http.", Duration::from_secs(10));
    assert_eq!(text, "http.disconnect");

    // The daemon still serves after all that.
    let r = apache.get("/raw/status");
    assert_eq!(r.status, 201);
}

/// HTTP requests whose body is here (none, or pushed with the head: up to 64 KiB) run on the
/// native path (`asgi_native.rs`; the raw app is preloaded, so from its first request);
/// larger bodies on the WSGI-shaped path. Both give the same scope.
#[test]
fn small_bodies_take_the_native_path_with_the_same_scope_as_the_wsgi_shaped_one() {
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let kind = |method: &str, body: &[u8]| {
        let r = apache.request(method, "/raw/path-kind", &[], body);
        assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
        r.text()
    };
    // The raw app is preloaded: native from its first request.
    assert_eq!(kind("GET", b""), "native ");
    let big = vec![b'x'; 100 * 1024];
    let scope = |body: &[u8]| {
        let r = apache.request(
            "POST",
            "/raw/scope%20x/y?a=1&b=%20",
            &[
                ("X-Custom", "v1"),
                ("Content-Type", "text/plain"),
                ("Authorization", "Basic eDp5"),
                ("Cookie", "a=1"),
            ],
            body,
        );
        assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
        let mut s = json(&r);
        // The client's port differs per connection, the Content-Length per body.
        s["client"][1] = serde_json::Value::Null;
        s["headers"]
            .as_array_mut()
            .unwrap()
            .retain(|h| h[0]["bytes"] != "content-length");
        s
    };
    let (native, wsgi_shaped) = (scope(b"body"), scope(&big));
    assert_eq!(native, wsgi_shaped);
    let names: Vec<&str> = native["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0]["bytes"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"x-custom") && names.contains(&"cookie"),
        "{names:?}"
    );
    assert!(!names.contains(&"authorization"), "{names:?}");

    assert_eq!(kind("POST", b"abc"), "native abc");
    let answer = kind("POST", &big);
    assert!(answer.starts_with("wsgi-shaped xxx"), "{}", &answer[..40]);
    assert_eq!(answer.len(), "wsgi-shaped ".len() + big.len());
}

#[test]
fn handler_script_as_asgi_and_request_timeout() {
    let apache = start("request-timeout=2 interrupt-timeout=20");
    apache.wait_for_log("RW0030:", Duration::from_secs(30));

    // WSGIHandlerScript ... interface=asgi: handle_request is the ASGI application.
    let r = apache.get("/handled/x");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert!(
        r.text().starts_with("handled: GET /handled"),
        "{}",
        r.text()
    );

    // request-timeout interrupts an ASGI request as a WSGI one: 504, the coroutine is
    // cancelled, and the thread serves on.
    let began = Instant::now();
    let r = apache.get("/raw/sleep");
    assert_with_log!(apache, r.status == 504, "status {} {}", r.status, r.text());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    let marker = apache.marker("cancelled");
    wait_for_file_text(&apache, &marker, "cancelled", Duration::from_secs(10));
    apache.wait_for_log("RW0160:", Duration::from_secs(10));
    let r = apache.get("/raw/status");
    assert_eq!(r.status, 201);

    // Again on the WSGI-shaped path (a body over the pushed limit): the same.
    std::fs::remove_file(&marker).unwrap();
    let r = apache.request("POST", "/raw/sleep", &[], &vec![b'x'; 100 * 1024]);
    assert_with_log!(apache, r.status == 504, "status {} {}", r.status, r.text());
    wait_for_file_text(&apache, &marker, "cancelled", Duration::from_secs(10));
    apache.wait_for_log_where(
        |log| log.matches("RW0160:").count() == 2,
        "a second RW0160",
        Duration::from_secs(10),
    );
    let r = apache.get("/raw/status");
    assert_eq!(r.status, 201);
}

#[test]
fn failing_lifespan_startup_keeps_the_daemon_out_of_service() {
    let config = ApacheConfig::new("asgi-fail");
    let app = config.dir.path().join("apps");
    std::fs::create_dir_all(&app).unwrap();
    let script = app.join("failing.py");
    std::fs::write(
        &script,
        "async def application(scope, receive, send):\n\
         \x20   assert scope['type'] == 'lifespan'\n\
         \x20   await receive()\n\
         \x20   await send({'type': 'lifespan.startup.failed', 'message': 'no database here'})\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = format!(
        "WSGIDaemonProcess failing threads=2\n\
         WSGIScriptAlias /f {} process-group=failing application-group=%{{GLOBAL}} \
         interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        script.display()
    );
    let apache = config.conf(&conf).start();
    let log = apache.wait_for_log("RW0311:", Duration::from_secs(30));
    assert!(log.contains("RW0303:"), "{log}");
    assert!(log.contains("no database here"), "{log}");
    assert!(!log.contains("RW0030: daemon process 'failing'"), "{log}");
}

/// The scope's headers are the request's own header list (issue 33): names lower case as
/// bytes, in the order sent, with a name containing `_` kept (CGI's environ drops it);
/// Authorization stays out without WSGIPassAuthorization, as for a WSGI application.
#[test]
fn scope_headers_are_the_request_header_list() {
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let raw = "GET /raw/scope HTTP/1.1\r\nHost: localhost\r\nX-First: 1\r\nX_Under: u\r\n\
               X-MiXeD-Case: Value Kept\r\nX-Rep: a\r\nAuthorization: Basic eDp5\r\n\
               X-Rep: b\r\nX-Last: z\r\nConnection: close\r\n\r\n";
    let r = http::raw_request(apache.port(), raw.as_bytes(), false).unwrap();
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let s = json(&r);
    let headers: Vec<(String, String)> = s["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0]["bytes"].as_str().unwrap().to_string(),
                h[1]["bytes"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    // Apache's core joins a repeated header into one value before any module sees it.
    assert_eq!(
        names,
        [
            "host",
            "x-first",
            "x_under",
            "x-mixed-case",
            "x-rep",
            "x-last",
            "connection"
        ],
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x_under".into(), "u".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-mixed-case".into(), "Value Kept".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-rep".into(), "a, b".into())),
        "{headers:?}"
    );
}

/// A client that leaves while the application waits (a long-poll in receive(), before any
/// response and after a first part of a streamed one): the Apache side notices its socket
/// close, closes the daemon connection, and the app's receive() answers http.disconnect.
/// The daemon serves on.
#[test]
fn client_leaving_while_the_app_waits_delivers_http_disconnect() {
    use std::io::{Read, Write};
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    for (query, marker) in [
        ("", "wait-disconnect"),
        ("?stream", "wait-disconnect-stream"),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let req = format!(
            "POST /raw/wait-disconnect{query} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Length: 4\r\n\r\nbody"
        );
        s.write_all(req.as_bytes()).unwrap();
        let path = apache.marker(marker);
        wait_for_file_text(&apache, &path, "waiting", Duration::from_secs(20));
        if !query.is_empty() {
            // The head and first part reached the client before it leaves.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("first") {
                let n = s.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "connection closed early: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
        }
        drop(s);
        let text = wait_for_file_text(&apache, &path, "http.", Duration::from_secs(20));
        assert_eq!(text, "http.disconnect");
    }
    apache.wait_for_log("RW0312:", Duration::from_secs(10));
    let r = apache.get("/raw/status");
    assert_eq!(r.status, 201);
}

/// A lifespan.startup that never completes does not wedge the daemon: after
/// startup-timeout it is logged (RW0313) and the process is not put into service (RW0311);
/// the daemon manager restarts it, which starts the lifespan again.
#[test]
fn lifespan_startup_that_never_completes_is_bounded_by_startup_timeout() {
    let config = ApacheConfig::new("asgi-hang");
    let app = config.dir.path().join("apps");
    std::fs::create_dir_all(&app).unwrap();
    let script = app.join("hanging.py");
    std::fs::write(
        &script,
        "import asyncio\n\
         async def application(scope, receive, send):\n\
         \x20   assert scope['type'] == 'lifespan'\n\
         \x20   await receive()\n\
         \x20   await asyncio.sleep(3600)\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = format!(
        "WSGIDaemonProcess hanging threads=2 startup-timeout=2\n\
         WSGIScriptAlias /h {} process-group=hanging application-group=%{{GLOBAL}} \
         interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        script.display()
    );
    let apache = config.conf(&conf).start();
    let log = apache.wait_for_log("RW0311:", Duration::from_secs(30));
    assert!(log.contains("RW0313:"), "{log}");
    assert!(log.contains("startup-timeout"), "{log}");
    assert!(!log.contains("RW0030: daemon process 'hanging'"), "{log}");
    // The manager restarts the process (RW0023), which tries its lifespan again.
    apache.wait_for_log("RW0023:", Duration::from_secs(20));
}

/// A coroutine that blocks the event loop (time.sleep() in an async view) is logged with
/// the loop thread's stack once the loop has run no callback for 5 s (RW0314); the request
/// still completes.
#[test]
fn blocked_event_loop_is_logged_with_its_stack() {
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let r = apache.get("/raw/block");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let log = apache.wait_for_log("RW0314:", Duration::from_secs(10));
    assert!(log.contains("time.sleep(6)"), "{log}");
    assert!(log.contains("asgi_raw.py"), "{log}");
    assert_eq!(log.matches("RW0314:").count(), 1, "{log}");
}

/// asgi-blocked-loop-timeout=1: a loop blocked for 2 s is logged (the default 5 s would
/// not), naming the option; =0 turns the report off (a 6 s block, longer than the default,
/// logs nothing by the time its response is complete).
#[test]
fn asgi_blocked_loop_timeout_sets_the_threshold_and_0_turns_it_off() {
    let apache = start("asgi-blocked-loop-timeout=1");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let r = apache.get("/raw/block-short");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let log = apache.wait_for_log("RW0314:", Duration::from_secs(10));
    assert!(log.contains("asgi-blocked-loop-timeout=1 s"), "{log}");
    assert!(log.contains("time.sleep(2)"), "{log}");
    drop(apache);

    let apache = start("asgi-blocked-loop-timeout=0");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let r = apache.get("/raw/block");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    let log = apache.error_log();
    assert!(!log.contains("RW0314:"), "{log}");
}

/// Messages out of order: each is an error-log line, a 500 before the response started (or
/// a closed connection after), and the daemon serves the next request.
#[test]
fn messages_out_of_order_are_errors_and_the_daemon_serves_on() {
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));

    let r = apache.get("/raw/body-before-start");
    assert_with_log!(apache, r.status == 500, "status {} {}", r.status, r.text());
    apache.wait_for_log(
        "http.response.body sent before http.response.start",
        Duration::from_secs(10),
    );
    assert_eq!(apache.get("/raw/status").status, 201);

    // A second start: nothing of the response has reached the client yet, so a 500.
    let result = http::request(apache.port(), "GET", "/raw/start-twice", &[], b"");
    if let Ok(r) = result {
        assert_with_log!(apache, r.status == 500, "status {} {}", r.status, r.text());
    }
    apache.wait_for_log("http.response.start sent twice", Duration::from_secs(10));
    assert_eq!(apache.get("/raw/status").status, 201);

    // A start after the response ended: the client has its complete response; the error
    // is logged (RW0301).
    let r = apache.get("/raw/start-after-end");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert_eq!(r.text(), "done");
    let log = apache.wait_for_log(
        "http.response.start sent after the response was complete",
        Duration::from_secs(10),
    );
    assert!(log.contains("RW0301:"), "{log}");
    assert_eq!(apache.get("/raw/status").status, 201);

    // Returns without a response, raises after the start: 500 / closed, then served on.
    assert_eq!(apache.get("/raw/no-response").status, 500);
    let _ = http::request(apache.port(), "GET", "/raw/raise-after", &[], b"");
    apache.wait_for_log("raised after the response start", Duration::from_secs(10));
    assert_eq!(apache.get("/raw/status").status, 201);
}

/// A Django ASGI application (django.core.asgi.get_asgi_application()): an async view, a
/// sync view (which Django runs through asgiref's sync_to_async, off the event loop thread)
/// and an async view awaiting sync_to_async itself; root_path is Django's SCRIPT_NAME.
#[test]
fn django_asgi_async_and_sync_views() {
    let config = ApacheConfig::new("asgi-django");
    let app = config.install_app("asgi_django.py");
    let conf = format!(
        "WSGIDaemonProcess dj threads=4 python-home={}\n\
         WSGIScriptAlias /dj {} process-group=dj application-group=%{{GLOBAL}} interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        test_venv().display(),
        app.display()
    );
    let apache = config.conf(&conf).start();
    // Django's ASGI handler refuses the lifespan scope: served without lifespan events.
    apache.wait_for_log("RW0304:", Duration::from_secs(60));
    for (route, kind, on_loop) in [
        ("async", "async", true),
        ("sync", "sync", false),
        ("calls-sync", "sync_to_async", false),
    ] {
        let r = apache.request(
            "POST",
            &format!("/dj/{route}"),
            &[("X-Test", route), ("Content-Type", "text/plain")],
            format!("body of {route}").as_bytes(),
        );
        assert_with_log!(
            apache,
            r.status == 200,
            "{route}: status {} {}",
            r.status,
            r.text()
        );
        let j = json(&r);
        assert_eq!(j["kind"], kind, "{j}");
        assert_eq!(j["django"], "4.2.30", "{j}");
        assert_eq!(j["path"], format!("/dj/{route}"), "{j}");
        assert_eq!(j["script_name"], "/dj", "{j}");
        assert_eq!(j["reversed"], "/dj/sync", "{j}");
        assert_eq!(j["header"], route, "{j}");
        assert_eq!(j["body"], format!("body of {route}"), "{j}");
        let thread = j["thread"].as_str().unwrap();
        assert_eq!(
            thread == "mod_rwsgi ASGI event loop",
            on_loop,
            "{route} ran on thread {thread:?}"
        );
    }
}

/// `http.response.pathsend` (advertised in scope["extensions"]): the file goes to Apache as a
/// wsgi.file_wrapper file response does (its fd, sent by Apache), with Content-Length from
/// the file when the app set none; Starlette's FileResponse uses it. A relative, missing or
/// non-regular path, or a pathsend after body bytes, is an error-log line naming the path
/// and a 500 (or an ended response), and the daemon serves on.
#[test]
fn pathsend_sends_the_file_and_bad_paths_are_errors() {
    let apache = start("");
    apache.wait_for_log("RW0304:", Duration::from_secs(30));
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = apache.config.root().join("apps/data.bin");
    std::fs::write(&file, &data).unwrap();

    let r = apache.get("/raw/pathsend?data.bin");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert_eq!(r.header("content-length"), Some("3000000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(
        r.body == data,
        "pathsend body differs ({} bytes)",
        r.body.len()
    );

    let r = apache.get("/star/file?name=data.bin");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert_eq!(r.header("x-pathsend"), Some("yes"));
    assert_eq!(r.header("content-length"), Some("3000000"));
    assert!(
        r.body == data,
        "FileResponse body differs ({} bytes)",
        r.body.len()
    );

    for (route, error) in [
        (
            "/raw/pathsend-relative",
            "pathsend path 'apps/asgi_raw.py' is not absolute",
        ),
        ("/raw/pathsend-missing", "no-such-file"),
        ("/raw/pathsend-dir", "/apps'"),
    ] {
        let r = apache.get(route);
        assert_with_log!(apache, r.status == 500, "{route}: status {}", r.status);
        let log = apache.wait_for_log(error, Duration::from_secs(10));
        assert!(log.contains("RW0085:"), "{route}: {log}");
        assert_eq!(apache.get("/raw/status").status, 201);
    }
    // After body bytes: a 500 if the head had not left yet, else an ended response.
    if let Ok(r) = http::request(apache.port(), "GET", "/raw/pathsend-after-body", &[], b"") {
        assert_with_log!(
            apache,
            r.status == 500 || r.body.len() < data.len(),
            "status {} {} bytes",
            r.status,
            r.body.len()
        );
    }
    apache.wait_for_log(
        "http.response.pathsend sent after http.response.body",
        Duration::from_secs(10),
    );
    assert_eq!(apache.get("/raw/status").status, 201);
    let r = apache.get("/raw/pathsend?data.bin");
    assert!(r.status == 200 && r.body == data, "status {}", r.status);
}

/// The event loop is uvloop's when `uvloop` is importable, in the main interpreter only
/// (issue 33; as uvicorn's `--loop auto`): a stand-in `uvloop` module on the group's
/// python-path (an asyncio loop of a class of its own) runs the `%{GLOBAL}` application,
/// while a sub-interpreter's runs on asyncio's loop; RW0350 says which loop each got. Many
/// requests at once from several clients (handed to the loop in batches) all complete.
#[test]
fn uvloop_runs_the_main_interpreters_loop_when_importable() {
    let config = ApacheConfig::new("asgi-loop");
    let app = config.install_app("asgi_loop.py");
    let shim = config.root().join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::write(
        shim.join("uvloop.py"),
        "import asyncio\n\n\nclass StandInLoop(asyncio.SelectorEventLoop):\n    pass\n\n\n\
         def new_event_loop():\n    return StandInLoop()\n",
    )
    .unwrap();
    for p in [&shim, &shim.join("uvloop.py")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let conf = format!(
        "WSGIDaemonProcess loops threads=8 python-home={} python-path={}\n\
         WSGIScriptAlias /main {} process-group=loops application-group=%{{GLOBAL}} \
         interface=asgi\n\
         WSGIScriptAlias /sub {} process-group=loops application-group=sub interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        test_venv().display(),
        shim.display(),
        app.display(),
        app.display()
    );
    let apache = config.conf(&conf).start();
    let r = apache.get("/main/");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert_eq!(r.text(), "uvloop.StandInLoop");
    let r = apache.get("/sub/");
    assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
    assert!(r.text().starts_with("asyncio."), "{}", r.text());
    let log = apache.wait_for_log(
        "RW0350: (wsgi:loops) ASGI event loop started: uvloop.",
        Duration::from_secs(10),
    );
    assert!(
        log.contains("RW0350: (wsgi:loops) ASGI event loop started: asyncio (a sub-interpreter"),
        "{log}"
    );

    // 8 clients x 25 requests, alternating the two bodies: every response whole.
    let port = apache.port();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                for n in 0..25 {
                    let (path, len) = if (i + n) % 2 == 0 {
                        ("/main/big", 65536)
                    } else {
                        ("/main/", "uvloop.StandInLoop".len())
                    };
                    let r = http::request(port, "GET", path, &[], b"").expect("response");
                    assert_eq!((r.status, r.body.len()), (200, len), "{path}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
}
