//! WSGITelemetryService, WSGISlowRequests and WSGITelemetryOptions against the real
//! `mod_wsgi-telemetry` ingester (1.1.0, from the test venv): the daemons' datagrams must
//! show up in its API (`/api/state`) as the group's processes (with Apache's version and
//! MPM), their request counts, the slow requests (with the User-Agent captured and the
//! Apache child that took them), and the garbage collector's snapshots and collections.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ApacheConfig, http};
use serde_json::Value;

/// The ingester, stopped by PID when dropped.
struct Ingester {
    child: Child,
    http_port: u16,
}

impl Ingester {
    /// Starts it on `socket` (writable by the daemons' user) and a free HTTP port, and waits
    /// (bounded) until its API answers.
    fn start(socket: &Path) -> Ingester {
        let http_port = common::free_port();
        let bin = common::test_venv().join("bin/mod_wsgi-telemetry");
        let child = Command::new(bin)
            .args(["serve", "--listen"])
            .arg(format!("unix:{}", socket.display()))
            .args(["--socket-mode", "0666", "--http-host", "127.0.0.1"])
            .args(["--http-port", &http_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mod_wsgi-telemetry from the test venv");
        let ingester = Ingester { child, http_port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ingester.try_state().is_none() || !socket.exists() {
            assert!(Instant::now() < deadline, "the ingester did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        ingester
    }

    fn try_state(&self) -> Option<Value> {
        let resp = http::request(self.http_port, "GET", "/api/state", &[], b"").ok()?;
        (resp.status == 200).then(|| http::json(&resp))
    }
}

impl Drop for Ingester {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the child process this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the ingester shows of group `group`: its pids, the requests their samples count,
/// and the slow-request entries.
fn group_view(state: &Value, group: &str) -> (Vec<u64>, u64, Vec<Value>) {
    let processes = group_processes(state, group);
    let pids: Vec<u64> = processes.iter().filter_map(|p| p["pid"].as_u64()).collect();
    let requests = processes
        .iter()
        .flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["kind"] == "request_metrics")
        .filter_map(|s| s["fields"]["request_count"].as_u64())
        .sum();
    let slow = state["slow_requests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["entry"].clone())
                .filter(|e| e["pid"].as_u64().is_some_and(|pid| pids.contains(&pid)))
                .collect()
        })
        .unwrap_or_default();
    (pids, requests, slow)
}

/// The processes of `group` as the ingester shows them.
fn group_processes<'a>(state: &'a Value, group: &str) -> Vec<&'a Value> {
    state["processes"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["process_group"] == group).collect())
        .unwrap_or_default()
}

/// Whether the ingester shows, for `group`'s processes, a GC snapshot whose totals count a
/// full collection that freed at least `freed` objects, and the event of that collection
/// (collected + uncollectable = what `gc.collect()` answered).
fn gc_shown(state: &Value, group: &str, freed: u64) -> bool {
    let processes = group_processes(state, group);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let snapshot = processes.iter().any(|p| {
        p["gc_snapshots"][""]
            .as_array()
            .and_then(|a| a.last())
            .is_some_and(|s| {
                let f = &s["fields"];
                n(&f["gc_collections2"]) >= 1
                    && n(&f["gc_collected2"]) + n(&f["gc_uncollectable2"]) >= freed
                    && n(&f["gc_threshold0"]) > 0
                    && f["gc_is_enabled"] == 1
                    && f["gc_count0"].is_u64()
                    && f["gc_freeze_count"].is_u64()
                    && f["gc_dropped_events"] == 0
            })
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let event = processes.iter().any(|p| {
        p["gc_events"].as_array().is_some_and(|a| {
            a.iter().any(|e| {
                let f = &e["fields"];
                f["gc_event_generation"] == 2
                    && n(&f["gc_event_collected"]) + n(&f["gc_event_uncollectable"]) == freed
                    && f["gc_event_duration"]
                        .as_f64()
                        .is_some_and(|d| (0.0..10.0).contains(&d))
                    && f["gc_event_start_stamp"]
                        .as_f64()
                        .is_some_and(|t| (now - t).abs() < 300.0)
            })
        })
    });
    snapshot && event
}

const TELEMETRY_CONF: &str = "WSGITelemetryService unix:@SOCKET@ interval=0.5\n\
                              WSGISlowRequests 0.5\nWSGITelemetryOptions +CaptureUserAgent";

#[test]
fn ingester_shows_daemon_processes_request_counts_and_slow_requests() {
    let cfg = ApacheConfig::new("telemetry");
    let socket = cfg.root().join("telemetry.sock");
    let ingester = Ingester::start(&socket);
    let conf = TELEMETRY_CONF.replace("@SOCKET@", &socket.display().to_string());
    let (cfg, _) = cfg.daemon_app("telemetry.wsgi", "tele", "processes=2 threads=4", &conf);
    check(cfg, &ingester, "tele", Some(2));
}

/// Embedded mode: each Apache child reports, with an empty process group, as in mod_wsgi.
#[test]
fn ingester_shows_embedded_apache_children() {
    let cfg = ApacheConfig::new("telemetry-embedded");
    let socket = cfg.root().join("telemetry.sock");
    let ingester = Ingester::start(&socket);
    let app = cfg.install_app("telemetry.wsgi");
    let conf = format!(
        "{}\nWSGIScriptAlias /app {}\n<Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        TELEMETRY_CONF.replace("@SOCKET@", &socket.display().to_string()),
        app.display()
    );
    check(cfg.conf(&conf), &ingester, "", None);
}

/// Serves requests (fast and slow) from `cfg` and waits until the ingester shows `group`'s
/// processes (`processes` of them, if given), every request, the slow requests, and then,
/// once Apache stops, each process's started, stopping and stopped events.
fn check(cfg: ApacheConfig, ingester: &Ingester, group: &str, processes: Option<usize>) {
    let mut apache = cfg.start();
    apache.wait_for_log("RW0200:", Duration::from_secs(30));
    // While the reporter runs, the in-process accessors stand down, as in mod_wsgi.
    let resp = apache.get("/app/request-metrics");
    assert_with_log!(
        apache,
        resp.text() == "None",
        "request_metrics(): {}",
        resp.text()
    );

    // Two slow requests in the background, fast ones meanwhile.
    let port = apache.port();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                http::request(
                    port,
                    "GET",
                    "/app/sleep?1.5",
                    &[("User-Agent", "telemetry-test/1")],
                    b"",
                )
            })
        })
        .collect();
    for _ in 0..20 {
        let resp = apache.get("/app/fast");
        assert_with_log!(apache, resp.status == 200, "fast: {}", resp.status);
    }
    for t in slow {
        let resp = t.join().unwrap().expect("slow request");
        assert_with_log!(apache, resp.text() == "slept", "slow: {}", resp.text());
    }

    // 1 + 20 + 2 requests; the ingester must show both processes, the count, and the slow
    // requests completed with their status, path, duration and User-Agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (Vec::new(), 0, Vec::new());
    loop {
        if let Some(state) = ingester.try_state() {
            last = group_view(&state, group);
            let (pids, requests, slow) = &last;
            let completed: Vec<&Value> = slow
                .iter()
                .filter(|e| e["state"] == 1 && e["path_info"] == "/sleep")
                .collect();
            if processes.is_none_or(|n| pids.len() == n)
                && !pids.is_empty()
                && *requests >= 23
                && completed.len() == 2
            {
                for e in completed {
                    // The Apache child that took the request: in daemon mode not the
                    // daemon, in embedded mode the reporting process itself.
                    let server_pid = e["server_pid"].as_u64().unwrap_or(0);
                    assert!(server_pid > 0, "server_pid: {e}");
                    assert_eq!(
                        pids.contains(&server_pid),
                        processes.is_none(),
                        "server_pid {server_pid} vs reporting pids {pids:?}: {e}"
                    );
                    assert_eq!(e["status"], 200, "{e}");
                    assert_eq!(e["method"], "GET", "{e}");
                    assert_eq!(e["script_name"], "/app", "{e}");
                    assert_eq!(e["user_agent"], "telemetry-test/1", "{e}");
                    assert!(e["duration"].as_f64().unwrap() >= 1.4, "{e}");
                }
                assert_eq!(*requests, 23, "requests counted once each");
                break;
            }
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "the ingester did not show the processes, 23 requests and 2 slow requests; last \
             view: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every datagram decoded; no fast request reported as slow.
    let state = ingester.try_state().unwrap();
    assert_eq!(
        state["decode_errors"], 0,
        "datagrams the ingester could not decode"
    );
    let (_, _, slow) = group_view(&state, group);
    assert!(
        slow.iter().all(|e| e["path_info"] == "/sleep"),
        "only the slow requests: {slow:?}"
    );
    let (pids, _, _) = group_view(&state, group);
    // Each process names the Apache and the MPM it serves for.
    for p in group_processes(&state, group) {
        let version = p["apache_version"].as_str().unwrap_or("");
        assert!(version.starts_with("Apache/2.4."), "apache_version: {p}");
        let mpm = p["mpm_name"].as_str().unwrap_or("");
        assert!(
            ["event", "worker", "prefork"].contains(&mpm),
            "mpm_name: {}",
            p["mpm_name"]
        );
    }

    // The garbage collector: a snapshot each tick and one event per collection.
    let resp = apache.get("/app/gc");
    let freed: u64 = resp.text().parse().unwrap_or(0);
    assert_with_log!(apache, freed >= 100, "gc.collect(): {}", resp.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = ingester.try_state();
        if state.as_ref().is_some_and(|s| gc_shown(s, group, freed)) {
            break;
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "the ingester did not show the GC snapshot and the collection of {freed} objects; \
             GC data: {:?}",
            state.map(|s| group_processes(&s, group)
                .iter()
                .map(|p| (
                    p["gc_snapshots"][""]
                        .as_array()
                        .and_then(|a| a.last())
                        .cloned(),
                    p["gc_events"].as_array().map(|a| a.len())
                ))
                .collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The processes' lives: started when they came up, stopping and stopped when Apache stops.
    apache.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = ingester.try_state().unwrap()["lifecycle_events"].clone();
        let seen = |kind: &str, pid: u64| {
            events
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["kind"] == kind && e["pid"] == pid))
        };
        let all = ["process_started", "process_stopping", "process_stopped"]
            .iter()
            .all(|kind| pids.iter().all(|pid| seen(kind, *pid)));
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lifecycle events of {pids:?} missing: {events}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
