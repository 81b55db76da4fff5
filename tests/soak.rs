//! Memory soak: a million hello requests through a daemon group (keep-alive, 8 clients,
//! with the shipped load tool), then leak checks for generator responses, file_wrapper,
//! exceptions and client aborts. After a warm-up, the daemon's RSS and every Apache child's
//! RSS must stay within ±5%. Long: run with `make soak` (not part of `make test`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::load::{LoadResult, rwsgi_load};
use common::{Apache, ApacheConfig, rss_kib};

fn start() -> Apache {
    let (config, _) = ApacheConfig::new("soak").daemon_app(
        "probe.wsgi",
        "probe",
        "processes=1 threads=15",
        "WSGIApplicationGroup %{GLOBAL}",
    );
    config.start()
}

/// RSS in KiB of the daemon and of each Apache child (by PID).
fn memory(apache: &Apache) -> (u64, BTreeMap<u32, u64>) {
    let daemon: u32 = apache.get("/app/pid").text().parse().unwrap();
    (
        rss_kib(daemon).unwrap(),
        common::apache_children_rss(apache),
    )
}

/// `requests` keep-alive GETs of `path` from 8 clients (bounded at 600 s).
fn load_keepalive(apache: &Apache, path: &str, requests: u64) -> LoadResult {
    let started = Instant::now();
    let result = rwsgi_load(
        apache.port(),
        path,
        &[
            "--keepalive",
            "--clients",
            "8",
            "--duration",
            "600",
            "--max-requests",
            &requests.to_string(),
        ],
    );
    println!(
        "{path}: {} in {:.0} s",
        result.output.lines().last().unwrap_or(""),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        result.requests, requests,
        "{path}: the load stopped early (600 s bound):\n{}",
        result.output
    );
    result
}

fn load(apache: &Apache, path: &str, requests: u64) {
    let result = load_keepalive(apache, path, requests);
    assert_eq!(
        result.failures,
        0,
        "{path}: requests failed:\n{}\n{}",
        result.output,
        apache.error_log()
    );
}

/// Within ±5%, plus 1 MiB of slack for the measurement itself on small processes.
fn assert_flat(what: &str, before: u64, after: u64) {
    let limit = before / 20 + 1024;
    assert!(
        after.abs_diff(before) <= limit,
        "{what}: RSS {before} KiB after warm-up, {after} KiB at the end (limit ±{limit} KiB)"
    );
    println!("{what}: RSS {before} -> {after} KiB");
}

fn assert_children_flat(what: &str, before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) {
    let mut compared = 0;
    for (pid, rss) in before {
        if let Some(now) = after.get(pid) {
            assert_flat(&format!("{what}: Apache child {pid}"), *rss, *now);
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "{what}: no Apache child lived through the run"
    );
}

#[test]
#[ignore = "long (minutes): run with `make soak`"]
fn a_million_hello_requests_keep_memory_flat() {
    let apache = start();
    load(&apache, "/app/pid", 100_000);
    let (daemon_before, children_before) = memory(&apache);
    load(&apache, "/app/pid", 900_000);
    let (daemon_after, children_after) = memory(&apache);
    assert_flat("daemon", daemon_before, daemon_after);
    assert_children_flat("hello", &children_before, &children_after);
}

/// Client aborts: read a little of a large streamed response, then hang up.
fn aborts(apache: &Apache, count: usize) {
    for _ in 0..count {
        let mut s = TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /app/big?n=4194304 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 8192];
        let _ = s.read(&mut buf);
    }
}

#[test]
#[ignore = "long (minutes): run with `make soak`"]
fn generators_file_wrapper_exceptions_and_aborts_do_not_leak() {
    let apache = start();
    // (path, warm-up requests, measured requests). Each exception logs its traceback, so
    // that route runs fewer times.
    let routes = [
        ("/app/big?n=4096", 20_000, 100_000),
        ("/app/write?n=16", 20_000, 100_000),
        ("/app/file?seek=10", 20_000, 100_000),
        ("/app/error", 5_000, 20_000),
    ];
    // Warm-up: every path at scale first, so caches and arenas reach their size.
    for (path, warm, _) in routes {
        load_allowing_errors(&apache, path, warm);
    }
    aborts(&apache, 300);
    let (daemon_before, children_before) = memory(&apache);
    for (path, _, measured) in routes {
        load_allowing_errors(&apache, path, measured);
    }
    aborts(&apache, 1500);
    let (daemon_after, children_after) = memory(&apache);
    assert_flat("daemon", daemon_before, daemon_after);
    assert_children_flat("leaks", &children_before, &children_after);
    // The daemon is still the same process and still serving.
    assert_eq!(apache.get("/app/pid").status, 200);
}

/// /app/error answers 500 on purpose: count, but do not fail on, error statuses there.
fn load_allowing_errors(apache: &Apache, path: &str, requests: u64) {
    if !path.ends_with("/error") {
        return load(apache, path, requests);
    }
    let result = load_keepalive(apache, path, requests);
    // Every failure must be the 500 the app asked for, none a connection error.
    for line in result.failure_lines() {
        assert!(line.ends_with("x status 500"), "{path}: {line}");
    }
}
