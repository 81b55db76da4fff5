//! Invisible restarts and metrics for ASGI applications (issue 33): a Starlette app in a
//! daemon group (`interface=asgi`) under a bounded load from the shipped load tool
//! (rwsgi-load: 4 clients, 6 s, at most 100000 requests) while its script is touched, Apache
//! restarts gracefully, or a daemon is killed with SIGKILL, fails no GET request, as
//! tests/restarts.rs and tests/lifecycle.rs show for WSGI; and the OpenMetrics endpoint
//! counts ASGI requests and their busy threads as it counts WSGI ones; a client leaving a
//! streaming ASGI response is one info line, not an application error.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::load::{LoadResult, rwsgi_load};
use common::{Apache, ApacheConfig, http, test_venv};

const METRICS: &str = "<Location /server-metrics>\n    SetHandler rwsgi-metrics\n    \
                       Require ip 127.0.0.1\n</Location>";

/// tests/apps/asgi_probe.py at /api, daemon group `api` (`options`), with the metrics
/// endpoint. Returns the installed script too.
fn start(options: &str) -> (Apache, std::path::PathBuf) {
    let config = ApacheConfig::new("asgi-restarts").module("authz_host");
    let app = config.install_app("asgi_probe.py");
    let conf = format!(
        "WSGIDaemonProcess api python-home={} {options}\n\
         WSGIScriptAlias /api {} process-group=api application-group=%{{GLOBAL}} \
         interface=asgi\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n{METRICS}\n",
        test_venv().display(),
        app.display()
    );
    (config.conf(&conf).start(), app)
}

fn run_load(apache: &Apache, action: &str, times: u32) -> LoadResult {
    rwsgi_load(
        apache.port(),
        "/api/sleep?s=0.01",
        &[
            "--clients",
            "4",
            "--duration",
            "6",
            "--max-requests",
            "100000",
            "--timeout",
            "20",
            "--action",
            action,
            "--times",
            &times.to_string(),
        ],
    )
}

/// The PIDs that answer /api/pid in `samples` requests (each must succeed).
fn pids_of(apache: &Apache, samples: usize) -> BTreeSet<String> {
    (0..samples)
        .map(|_| {
            let r = apache.get("/api/pid");
            assert_with_log!(apache, r.status == 200, "status {} {}", r.status, r.text());
            r.text()
        })
        .collect()
}

/// Waits (bounded) until none of `old` answers /api/pid any more; returns who does.
fn wait_replaced(apache: &Apache, old: &BTreeSet<String>, what: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = pids_of(apache, 8);
        if now.is_disjoint(old) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {old:?} still serve ({now:?})\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_no_failure(apache: &Apache, result: &LoadResult, what: &str) {
    assert!(
        result.failures == 0 && result.exit_code == Some(0),
        "{what}: {} of {} requests failed:\n{}\n{}",
        result.failures,
        result.requests,
        result.output,
        apache.error_log()
    );
    assert!(result.requests > 50, "{what}: load too small: {result:?}");
}

#[test]
fn touch_graceful_and_kill9_under_load_fail_no_asgi_request() {
    for processes in [1, 2] {
        let (apache, app) = start(&format!("processes={processes} threads=8"));
        let first = pids_of(&apache, 8);
        let pidfile = apache.config.root().join("httpd.pid");

        // (a) touch-to-reload, 3 times.
        let touch = run_load(&apache, &format!("touch:{}", app.display()), 3);
        assert_no_failure(&apache, &touch, &format!("processes={processes} touch"));
        let after_touch = wait_replaced(&apache, &first, "touch");
        let log = apache.error_log();
        assert!(
            log.matches("is being replaced (the WSGI script changed")
                .count()
                >= 3,
            "{log}"
        );

        // (b) apache2 -k graceful, twice.
        let graceful = run_load(&apache, &format!("graceful:{}", pidfile.display()), 2);
        assert_no_failure(
            &apache,
            &graceful,
            &format!("processes={processes} graceful"),
        );
        wait_replaced(&apache, &after_touch, "graceful");

        // (c) kill -9 of a daemon process, twice.
        let kill = run_load(&apache, &format!("kill9:{}", pidfile.display()), 2);
        assert_no_failure(&apache, &kill, &format!("processes={processes} kill -9"));
        let log = apache.error_log();
        assert!(
            log.matches("was killed by SIGKILL; restarting").count() >= 2,
            "{log}"
        );
        // The log shows two daemons killed (above); which PIDs answer 8 requests afterwards
        // proves nothing with 2 processes (the requests may all go to the one not killed).
        pids_of(&apache, 8);
        println!(
            "processes={processes}: touch x3 {} requests (max {} ms), graceful x2 {} \
             requests (max {} ms), kill -9 x2 {} requests (max {} ms), none failed",
            touch.requests,
            touch.max_latency_ms,
            graceful.requests,
            graceful.max_latency_ms,
            kill.requests,
            kill.max_latency_ms
        );
    }
}

/// rwsgi_requests_total{process_group="api"} by status class, and the busy threads, from a
/// scrape (prometheus text; parsed here by lines: the parser is tested in openmetrics.rs).
fn scrape(apache: &Apache) -> Vec<(String, f64)> {
    let r = apache.get("/server-metrics");
    assert_with_log!(apache, r.status == 200, "scrape: status {}", r.status);
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("process_group=\"api\""))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &[(String, f64)], name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(n, _)| n.split('{').next() == Some(name) && labels.iter().all(|l| n.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn openmetrics_counts_asgi_requests_and_busy_threads() {
    let (apache, _) = start("processes=1 threads=3");
    let statuses = [(200, 7), (302, 2), (404, 3), (500, 2)];
    for (status, count) in statuses {
        for _ in 0..count {
            let r = apache.get(&format!("/api/status?code={status}"));
            assert_with_log!(apache, r.status == status, "got {}", r.status);
        }
    }
    // A route Starlette does not have: its 404.
    assert_eq!(apache.get("/api/nowhere").status, 404);
    let s = scrape(&apache);
    assert_with_log!(
        apache,
        value(&s, "rwsgi_requests_total", &[]) == 15.0,
        "{s:?}"
    );
    for (class, expected) in [("2xx", 7.0), ("3xx", 2.0), ("4xx", 4.0), ("5xx", 2.0)] {
        let got = value(
            &s,
            "rwsgi_requests_total",
            &[&format!("status_class=\"{class}\"")],
        );
        assert_eq!(got, expected, "{class}: {s:?}");
    }
    assert_eq!(
        value(&s, "rwsgi_request_duration_seconds_count", &[]),
        15.0,
        "{s:?}"
    );
    assert_eq!(value(&s, "rwsgi_threads", &["state=\"idle\""]), 3.0);

    // An ASGI request in flight holds one of the group's threads: busy 1 while it sleeps.
    let port = apache.port();
    let slow = std::thread::spawn(move || http::request(port, "GET", "/api/sleep?s=3", &[], b""));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(&apache);
        if value(&s, "rwsgi_threads", &["state=\"busy\""]) == 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no busy thread while an ASGI request sleeps: {s:?}\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = slow.join().unwrap().expect("the sleeping request");
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(&apache);
        if value(&s, "rwsgi_requests_total", &[]) == 16.0
            && value(&s, "rwsgi_threads", &["state=\"idle\""]) == 3.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sleeping request was not counted: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_leaving_a_streaming_asgi_response_is_logged_once_as_info() {
    use std::io::{Read, Write};
    let (apache, _) = start("processes=1 threads=2");
    assert_eq!(apache.get("/api/pid").status, 200);
    // A 1.3 GB streaming response; the client reads 256 KiB of it and leaves.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 65536];
    while got < 262_144 {
        let n = s.read(&mut buf).expect("the streaming response");
        assert!(n > 0, "the response ended early\n{}", apache.error_log());
        got += n;
    }
    drop(s);
    // The daemon notices at a write and logs it as a client that left (info) ...
    let log = apache.wait_for_log("RW0087:", Duration::from_secs(20));
    // ... and the coroutine, whose next send() raised OSError (which it lets propagate),
    // adds no error line: the same daemon then serves on.
    let r = apache.get("/api/pid");
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let log = apache.error_log();
        assert!(
            !log.contains("RW0301:"),
            "a client that left logged as an application error:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!log.contains("Traceback"), "{log}");
}
