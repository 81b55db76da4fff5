//! mod_wsgi 6's metrics API (`start_recording_metrics`, `request_metrics`,
//! `process_metrics`) and request events, in a daemon process behind a real Apache, with
//! tests/apps/metrics.wsgi reporting what the module saw as JSON.

mod common;

use std::time::{Duration, Instant};

use common::http::{Json, json};
use common::{Apache, ApacheConfig, http};

fn start(options: &str) -> Apache {
    let (config, _) =
        ApacheConfig::new("metrics").daemon_app("metrics.wsgi", "metrics", options, "");
    config.start()
}

/// A kept-alive connection: every request on it reaches the same Apache child.
struct KeptAlive(std::net::TcpStream);

impl KeptAlive {
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> http::Response {
        use std::io::Write;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        (&self.0).write_all(raw.as_bytes()).unwrap();
        http::read_response(std::io::BufReader::new(&self.0), false).unwrap()
    }
}

/// tests/apps/metrics.wsgi at /app in embedded mode, and a kept-alive connection to it.
fn embedded(tag: &str) -> (Apache, KeptAlive) {
    let config = ApacheConfig::new(tag);
    let app = config.install_app("metrics.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIScriptAlias /app {}\n<Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            app.display()
        ))
        .start();
    let stream = std::net::TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (apache, KeptAlive(stream))
}

fn get_json(apache: &Apache, path: &str) -> serde_json::Value {
    let resp = apache.get(path);
    assert_with_log!(apache, resp.status == 200, "{path}: status {}", resp.status);
    json(&resp)
}

#[test]
fn fifty_requests_are_counted_by_status_class_and_phase() {
    let apache = start("processes=1 threads=4");
    let before = get_json(&apache, "/app/before");
    assert!(before["request_metrics"].is_null(), "{before}");
    assert!(before["process_metrics"].is_null(), "{before}");
    // No server-metrics=on: the gate is off, as in mod_wsgi.
    assert!(before["server_metrics"].is_null(), "{before}");
    get_json(&apache, "/app/start");
    let statuses = [(200, 35), (302, 5), (404, 6), (500, 4)];
    for (status, count) in statuses {
        for _ in 0..count {
            let resp = apache.get(&format!("/app/hello?status={status}"));
            assert_with_log!(apache, resp.status == status, "got {}", resp.status);
        }
    }
    let m = get_json(&apache, "/app/request_metrics");
    assert_with_log!(apache, m["request_count"].num() == 50.0, "{m}");
    let classes: Vec<f64> = (1..=5).map(|i| m[format!("status_{i}xx")].num()).collect();
    assert_eq!(classes, vec![0.0, 35.0, 5.0, 6.0, 4.0], "{m}");
    assert_eq!(classes.iter().sum::<f64>(), m["request_count"].num());
    // Daemon mode: every phase is timed, from Apache's request_start on.
    for phase in [
        "server_time",
        "queue_time",
        "daemon_time",
        "application_time",
        "request_time",
    ] {
        let buckets = m[format!("{phase}_buckets")].list();
        assert_eq!(buckets.len(), 65, "{phase}");
        let total: f64 = buckets.iter().map(|b| b.num()).sum();
        assert_eq!(total, 50.0, "{phase}: {m}");
        let (min, max) = (
            m[format!("{phase}_min_us")].num(),
            m[format!("{phase}_max_us")].num(),
        );
        assert!(0.0 <= min && min <= max, "{phase}: {min} {max}");
        assert!(m[phase].num() >= 0.0 && m[phase].num() < 5.0, "{phase}");
    }
    // Nested phases: a request's server time covers its application time.
    assert!(m["server_time_max_us"].num() >= m["application_time_max_us"].num());
    assert_eq!(m["output_bytes"].num(), 250.0, "5 bytes each: {m}");
    assert!(m["output_writes"].num() >= 50.0, "{m}");
    assert_eq!(m["request_threads_maximum"].num(), 4.0);
    assert!(m["request_throughput"].num() > 0.0);
    let completed: f64 = m["request_threads_completed"]
        .list()
        .iter()
        .map(|c| c.num())
        .sum();
    assert_eq!(completed, 50.0, "{m}");
    assert!(
        m["memory_rss"].num() > 1e6 && m["memory_max_rss"].num() >= m["memory_rss"].num() / 2.0
    );
    // Drained: the next window has only what came after.
    let again = get_json(&apache, "/app/request_metrics");
    assert_eq!(
        again["request_count"].num(),
        1.0,
        "the previous report: {again}"
    );
    let p = get_json(&apache, "/app/process_metrics");
    assert!(p["request_count"].num() >= 53.0, "{p}");
    assert_eq!(p["active_requests"].num(), 1.0, "{p}");
    let per_thread: f64 = p["threads"]
        .list()
        .iter()
        .map(|t| t["request_count"].num())
        .sum();
    assert_eq!(per_thread, p["request_count"].num(), "{p}");
    assert!(
        p["running_time"].num() >= 0.0 && p["restart_time"].num() > 1.6e9,
        "{p}"
    );
}

/// Embedded mode: requests on one kept-alive connection all reach the same Apache child, so
/// its window sees exactly them; there is no queue or daemon phase.
#[test]
fn embedded_mode_records_without_queue_or_daemon_phases() {
    let (apache, connection) = embedded("metrics-embedded");
    let get = |path: &str| connection.get(path, &[]);
    assert_eq!(get("/app/start").status, 200);
    for _ in 0..10 {
        assert_eq!(get("/app/hello?status=404").status, 404);
    }
    let resp = get("/app/request_metrics");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    let m = json(&resp);
    assert_eq!(m["request_count"].num(), 10.0, "{m}");
    assert_eq!(m["status_4xx"].num(), 10.0, "{m}");
    for phase in ["queue_time", "daemon_time"] {
        assert!(m[phase].is_null(), "{phase}: {m}");
        assert!(m[format!("{phase}_max_us")].is_null(), "{phase}: {m}");
    }
    let served: f64 = m["server_time_buckets"]
        .list()
        .iter()
        .map(|b| b.num())
        .sum();
    assert_eq!(served, 10.0, "{m}");
}

#[test]
fn busy_threads_show_in_capacity_utilization() {
    let apache = start("processes=1 threads=5");
    get_json(&apache, "/app/start");
    let port = apache.port();
    let sleepers: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http::request(port, "GET", "/app/sleep?s=4", &[], b"")))
        .collect();
    // Until the four sleepers run (the fifth active request is the asking one).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = get_json(&apache, "/app/process_metrics");
        if p["active_requests"].num() == 5.0 {
            break;
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "sleepers not running: {p}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A window that starts with the four sleepers already running; its length is what
    // capacity_utilization measures over.
    get_json(&apache, "/app/request_metrics");
    std::thread::sleep(Duration::from_millis(1000));
    let m = get_json(&apache, "/app/request_metrics");
    let utilization = m["capacity_utilization"].num();
    // Four of five threads busy the whole window, the reporting one for an instant.
    assert_with_log!(
        apache,
        (0.75..=0.9).contains(&utilization),
        "capacity_utilization {utilization}: {m}"
    );
    assert_eq!(m["request_threads_active"].num(), 5.0, "{m}");
    let running = m["request_threads_current_elapsed"]
        .list()
        .iter()
        .filter(|e| e.num() > 0.5)
        .count();
    assert_eq!(running, 4, "{m}");
    let p = get_json(&apache, "/app/process_metrics");
    assert_eq!(p["active_requests"].num(), 5.0, "{p}");
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap().unwrap().status, 200);
    }
}

#[test]
fn request_events_carry_timing_io_and_request_data() {
    let apache = start("processes=1 threads=2");
    let resp = apache.request("POST", "/app/fail", &[("X-Watch", "w1")], b"body!");
    assert_with_log!(apache, resp.status == 500, "status {}", resp.status);
    let seen = get_json(&apache, "/app/watched");
    let f = &seen["request_finished"];
    assert_with_log!(apache, f.is_object(), "{seen}");
    for key in [
        "request_id",
        "thread_id",
        "server_pid",
        "request_start",
        "queue_start",
        "daemon_start",
        "application_start",
        "application_finish",
        "application_time",
        "input_reads",
        "input_length",
        "input_time",
        "output_writes",
        "output_length",
        "output_time",
        "status",
        "cpu_user_time",
        "cpu_system_time",
        "cpu_time",
        "gil_wait_time",
        "gil_wait_count",
    ] {
        assert!(!f[key].is_null(), "{key} missing: {f}");
    }
    assert!(!f["request_id"].str().is_empty(), "{f}");
    assert_eq!(f["status"].num(), 500.0);
    assert_eq!(f["input_length"].num(), 5.0);
    assert!(f["input_reads"].num() >= 1.0);
    assert!(f["thread_id"].num() >= 1.0);
    // server_pid is the Apache child that took the request: a child of the Apache parent.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", f["server_pid"].num() as u32))
        .unwrap_or_default();
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1));
    assert_eq!(ppid, Some(apache.pid().to_string().as_str()), "{f}");
    let (req, queue, daemon, app, fin) = (
        f["request_start"].num(),
        f["queue_start"].num(),
        f["daemon_start"].num(),
        f["application_start"].num(),
        f["application_finish"].num(),
    );
    assert!(
        req > 1.6e9 && req <= queue && queue <= daemon && daemon <= app && app <= fin,
        "{f}"
    );
    assert!(
        (f["application_time"].num() - (fin - app)).abs() < 1e-3,
        "{f}"
    );
    assert_eq!(
        f["request_data"],
        serde_json::json!({"watch": "w1", "app": "was here", "environ_thread_id": f["thread_id"]}),
        "{f}"
    );
    let s = &seen["response_started"];
    assert_eq!(s["response_status"].str(), "200 OK", "{seen}");
    assert_eq!(
        s["response_headers"],
        serde_json::json!([["X-Before", "failure"]])
    );
    assert_eq!(s["request_id"], f["request_id"]);
    let e = &seen["request_exception"];
    assert_eq!(e["exception_info"].str(), "KeyError", "{seen}");
    assert_eq!(e["request_id"], f["request_id"]);
}

/// request_started's `daemon_connects` and `daemon_restarts` (mod_wsgi 6): 1 and 0 for a
/// request that met its daemon at once; after a touch of the script, the request the old
/// process turns away is sent again and reaches the replacement, which sees one restart and
/// a connection per attempt. Embedded mode has no daemon: 0 and 0.
#[test]
fn request_started_counts_the_connections_and_restarts_a_request_met() {
    let (config, app) = ApacheConfig::new("metrics-connects").daemon_app(
        "metrics.wsgi",
        "metrics",
        "processes=1 threads=2",
        "",
    );
    let apache = config.start();
    let started = |watch: &str| {
        let resp = apache.request("GET", "/app/hello", &[("X-Watch", watch)], b"");
        assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
        let seen = get_json(&apache, "/app/watched");
        let s = seen["request_started"].clone();
        assert_with_log!(apache, s["watch"].str() == watch, "{seen}");
        s
    };
    // Once the daemon answers, a request needs one connection.
    assert_eq!(apache.get("/app/hello").status, 200);
    let s = started("first");
    assert_eq!(s["daemon_connects"].num(), 1.0, "{s}");
    assert_eq!(s["daemon_restarts"].num(), 0.0, "{s}");
    std::fs::File::options()
        .write(true)
        .open(&app)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(2))
        .unwrap();
    let s = started("after-touch");
    assert_eq!(s["daemon_restarts"].num(), 1.0, "{s}");
    assert!(s["daemon_connects"].num() >= 2.0, "{s}");

    // One connection, one Apache child: the event and the report come from the same one.
    let (apache, connection) = embedded("metrics-connects-embedded");
    let hello = connection.get("/app/hello", &[("X-Watch", "embedded")]);
    assert_with_log!(apache, hello.status == 200, "status {}", hello.status);
    let s = json(&connection.get("/app/watched", &[]))["request_started"].clone();
    assert_eq!(s["watch"].str(), "embedded", "{s}");
    assert_eq!(s["daemon_connects"].num(), 0.0, "{s}");
    assert_eq!(s["daemon_restarts"].num(), 0.0, "{s}");
}
