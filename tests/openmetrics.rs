//! The `rwsgi-metrics` endpoint (`SetHandler rwsgi-metrics`) behind a real Apache: every
//! scrape is parsed with `prometheus_client`'s text parser from the test venv, and checked
//! against the requests, busy threads and restarts the test caused.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig, http};

const ENDPOINT: &str = "<Location /server-metrics>\n    SetHandler rwsgi-metrics\n    \
                        Require ip 127.0.0.1\n</Location>";

/// One parsed sample: family type, sample name, labels, value.
#[derive(Debug)]
struct Sample {
    kind: String,
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

/// Parses a scrape with prometheus_client (it raises on anything malformed).
fn parse(text: &str) -> Vec<Sample> {
    let python = common::test_venv().join("bin/python");
    let script = "import json, sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  out = []\n\
                  for fam in text_string_to_metric_families(sys.stdin.read()):\n\
                  \x20   for s in fam.samples:\n\
                  \x20       out.append([fam.type, s.name, s.labels, s.value])\n\
                  print(json.dumps(out))\n";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|row| Sample {
            kind: row[0].as_str().unwrap().to_string(),
            name: row[1].as_str().unwrap().to_string(),
            labels: row[2].as_object().unwrap().clone(),
            value: row[3].as_f64().unwrap(),
        })
        .collect()
}

fn scrape(apache: &Apache) -> Vec<Sample> {
    let resp = apache.get("/server-metrics");
    assert_with_log!(apache, resp.status == 200, "scrape: status {}", resp.status);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&resp.text())
}

/// The samples named `name` whose labels include every pair of `labels`.
fn select<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .collect()
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    select(samples, name, labels).iter().map(|s| s.value).sum()
}

fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = select(samples, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn start(options: &str, extra: &str) -> (Apache, std::path::PathBuf) {
    let (config, app) = ApacheConfig::new("openmetrics")
        .module("authz_host")
        .daemon_app(
            "metrics.wsgi",
            "web",
            options,
            &format!("{ENDPOINT}\n{extra}"),
        );
    (config.start(), app)
}

#[test]
fn fifty_requests_are_counted_by_status_class_in_a_parsed_scrape() {
    let (apache, _) = start(
        "processes=2 threads=3",
        "WSGIDaemonProcess quiet processes=1 threads=1",
    );
    let statuses = [(200, 35), (302, 5), (404, 6), (500, 4)];
    for (status, count) in statuses {
        for _ in 0..count {
            let resp = apache.get(&format!("/app/hello?status={status}"));
            assert_with_log!(apache, resp.status == status, "got {}", resp.status);
        }
    }
    let web = [("process_group", "web")];
    // A daemon counts a request after its app has written the whole body, which the client
    // can have read a moment earlier: the last one may be counted after it returned.
    let s = scrape_until(&apache, "fifty requests counted", |s| {
        sum(s, "rwsgi_requests_total", &web) == 50.0
    });
    for (class, expected) in [
        ("1xx", 0.0),
        ("2xx", 35.0),
        ("3xx", 5.0),
        ("4xx", 6.0),
        ("5xx", 4.0),
    ] {
        let got = one(
            &s,
            "rwsgi_requests_total",
            &[("process_group", "web"), ("status_class", class)],
        );
        assert_eq!(got, expected, "{class}");
    }
    assert!(
        select(&s, "rwsgi_requests_total", &[])
            .iter()
            .all(|x| x.kind == "counter")
    );
    for family in ["rwsgi_request_duration_seconds", "rwsgi_queue_wait_seconds"] {
        assert_eq!(one(&s, &format!("{family}_count"), &web), 50.0, "{family}");
        assert_eq!(
            one(
                &s,
                &format!("{family}_bucket"),
                &[("process_group", "web"), ("le", "+Inf")]
            ),
            50.0,
            "{family}"
        );
        let total = one(&s, &format!("{family}_sum"), &web);
        assert!((0.0..50.0).contains(&total), "{family}_sum {total}");
        assert!(
            select(&s, &format!("{family}_bucket"), &web)
                .iter()
                .all(|x| x.kind == "histogram")
        );
    }
    // The scrapes themselves are not WSGI requests; the idle group shows zeros.
    assert_eq!(
        sum(&s, "rwsgi_requests_total", &[("process_group", "quiet")]),
        0.0
    );
    assert_eq!(one(&s, "rwsgi_processes", &web), 2.0);
    assert_eq!(
        one(
            &s,
            "rwsgi_threads",
            &[("process_group", "web"), ("state", "idle")]
        ),
        6.0
    );
    assert_eq!(
        one(
            &s,
            "rwsgi_threads",
            &[("process_group", "quiet"), ("state", "idle")]
        ),
        1.0
    );
    assert_eq!(one(&s, "rwsgi_capacity_utilization", &web), 0.0);
    let starts = select(&s, "rwsgi_process_start_time_seconds", &web);
    assert_eq!(starts.len(), 2, "{starts:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for start in &starts {
        assert!(
            start.value > now - 120.0 && start.value <= now + 1.0,
            "{start:?}"
        );
        let pid = start.labels["pid"].as_str().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!cmdline.is_empty(), "pid {pid} is not a live process");
        let rss = one(
            &s,
            "rwsgi_process_resident_memory_bytes",
            &[("process_group", "web"), ("pid", pid)],
        );
        assert!(rss > 1e6, "pid {pid}: rss {rss}");
    }
    assert_eq!(sum(&s, "rwsgi_process_restarts_total", &web), 0.0);
    // HEAD gets the head only; other methods are refused.
    let head = apache.request("HEAD", "/server-metrics", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = apache.request("POST", "/server-metrics", &[], b"x");
    assert_eq!(post.status, 405);
}

#[test]
fn the_endpoint_answers_while_every_daemon_thread_sleeps() {
    let (apache, _) = start("processes=2 threads=5", "");
    let port = apache.port();
    let sleepers: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || http::request(port, "GET", "/app/sleep?s=5", &[], b"")))
        .collect();
    let web = [("process_group", "web")];
    let deadline = Instant::now() + Duration::from_secs(4);
    let saturated = loop {
        let asked = Instant::now();
        let s = scrape(&apache);
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(2), "a scrape took {took:?}");
        let busy = one(
            &s,
            "rwsgi_threads",
            &[("process_group", "web"), ("state", "busy")],
        );
        if busy == 10.0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let s = &saturated;
    assert_with_log!(
        apache,
        one(
            s,
            "rwsgi_threads",
            &[("process_group", "web"), ("state", "busy")]
        ) == 10.0,
        "not all 10 threads busy: {s:?}"
    );
    assert_eq!(
        one(
            s,
            "rwsgi_threads",
            &[("process_group", "web"), ("state", "idle")]
        ),
        0.0
    );
    let capacity = one(s, "rwsgi_capacity_utilization", &web);
    assert!((capacity - 1.0).abs() < 1e-9, "capacity {capacity}");
    // Nothing finished yet.
    assert_eq!(sum(s, "rwsgi_requests_total", &web), 0.0);
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap().unwrap().status, 200);
    }
    let after = scrape(&apache);
    assert_eq!(sum(&after, "rwsgi_requests_total", &web), 10.0);
    assert_eq!(
        one(
            &after,
            "rwsgi_threads",
            &[("process_group", "web"), ("state", "busy")]
        ),
        0.0
    );
    // Ten requests that each slept 5 s.
    assert!(one(&after, "rwsgi_request_duration_seconds_sum", &web) >= 49.0);
    assert_eq!(
        one(
            &after,
            "rwsgi_request_duration_seconds_bucket",
            &[("process_group", "web"), ("le", "2.5")]
        ),
        0.0
    );
}

fn pids(samples: &[Sample]) -> Vec<String> {
    select(
        samples,
        "rwsgi_process_start_time_seconds",
        &[("process_group", "web")],
    )
    .iter()
    .map(|s| s.labels["pid"].as_str().unwrap().to_string())
    .collect()
}

/// Scrapes until `done` holds (at most 15 s).
fn scrape_until(apache: &Apache, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = scrape(apache);
        if done(&s) {
            return s;
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "waited for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn restarts_are_counted_by_reason_and_counts_survive_them() {
    let (apache, app) = start("processes=1 threads=2", "");
    let restarts = |s: &[Sample], reason: &str| {
        one(
            s,
            "rwsgi_process_restarts_total",
            &[("process_group", "web"), ("reason", reason)],
        )
    };
    for _ in 0..3 {
        assert_eq!(apache.get("/app/hello").status, 200);
    }
    let first = scrape_until(&apache, "one live process", |s| pids(s).len() == 1);
    let first_pid = pids(&first)[0].clone();

    // Touch-to-reload: the next request is served by a replacement process.
    let f = std::fs::File::options().write(true).open(&app).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(2))
        .unwrap();
    drop(f);
    assert_eq!(apache.get("/app/hello").status, 200);
    let reloaded = scrape_until(&apache, "the touched process replaced", |s| {
        pids(s).len() == 1 && pids(s)[0] != first_pid
    });
    assert_eq!(restarts(&reloaded, "reload"), 1.0, "{reloaded:?}");
    assert_eq!(restarts(&reloaded, "killed"), 0.0);
    assert_eq!(
        sum(
            &reloaded,
            "rwsgi_requests_total",
            &[("process_group", "web")]
        ),
        4.0
    );

    // kill -9: the manager restarts it and counts a kill.
    let second_pid = pids(&reloaded)[0].clone();
    let pid: i32 = second_pid.parse().unwrap();
    // SAFETY: kill has no memory preconditions; the pid is the daemon the scrape named.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = scrape_until(&apache, "the killed process replaced", |s| {
        pids(s).len() == 1 && pids(s)[0] != second_pid
    });
    assert_eq!(restarts(&killed, "killed"), 1.0, "{killed:?}");
    assert_eq!(restarts(&killed, "reload"), 1.0);
    assert_eq!(
        sum(
            &killed,
            "rwsgi_process_restarts_total",
            &[("process_group", "web")]
        ),
        2.0
    );
    // The killed process' requests are still counted.
    assert_eq!(
        sum(&killed, "rwsgi_requests_total", &[("process_group", "web")]),
        4.0
    );
    assert_eq!(apache.get("/app/hello").status, 200);
    // Counted after its body was written (see fifty_requests_are_counted_...).
    scrape_until(&apache, "the fifth request counted", |s| {
        sum(s, "rwsgi_requests_total", &[("process_group", "web")]) == 5.0
    });
}

#[test]
fn the_endpoint_obeys_require() {
    let (config, _) = ApacheConfig::new("openmetrics-deny").daemon_app(
        "metrics.wsgi",
        "web",
        "processes=1 threads=1",
        "<Location /server-metrics>\n    SetHandler rwsgi-metrics\n    Require all denied\n</Location>",
    );
    let apache = config.start();
    let resp = apache.get("/server-metrics");
    assert_with_log!(apache, resp.status == 403, "status {}", resp.status);
    assert!(!resp.text().contains("rwsgi_requests_total"));
}

fn get_json(apache: &Apache, path: &str) -> serde_json::Value {
    let resp = apache.get(path);
    assert_with_log!(apache, resp.status == 200, "{path}: status {}", resp.status);
    common::http::json(&resp)
}

/// Checks the shape of a `server_metrics()` answer.
fn assert_scoreboard_shape(apache: &Apache, m: &serde_json::Value) {
    let limit = m["server_limit"].as_i64().unwrap_or(0);
    let threads = m["thread_limit"].as_i64().unwrap_or(0);
    assert_with_log!(apache, limit > 0 && threads > 0, "{m}");
    let processes = m["processes"].as_array().unwrap();
    assert_eq!(processes.len() as i64, limit);
    assert!(m["restart_time"].as_f64().unwrap() > 1.6e9);
    assert!(m["current_time"].as_f64().unwrap() >= m["restart_time"].as_f64().unwrap());
    assert!(m["running_time"].as_i64().unwrap() >= 0);
    for (i, p) in processes.iter().enumerate() {
        assert_eq!(p["process_num"].as_i64(), Some(i as i64));
        assert!(
            p["quiescing"].is_boolean() && p["generation"].is_i64(),
            "{p}"
        );
        let workers = p["workers"].as_array().unwrap();
        assert_eq!(workers.len() as i64, threads);
        for w in workers {
            for key in ["access_count", "bytes_served", "thread_num", "generation"] {
                assert!(w[key].is_u64() || w[key].is_i64(), "{key}: {w}");
            }
            for key in ["start_time", "stop_time", "last_used"] {
                assert!(w[key].is_f64(), "{key}: {w}");
            }
        }
    }
    assert!(processes.iter().any(|p| p["pid"].as_i64().unwrap_or(0) > 0));
}

/// The workers the answer shows writing ("W") the request for `path` (request, client and
/// vhost need ExtendedStatus On, as in mod_status); and every busy worker, for messages.
fn writing_request(m: &serde_json::Value, path: &str) -> (Vec<serde_json::Value>, String) {
    let workers: Vec<&serde_json::Value> = m["processes"]
        .as_array()
        .map(|p| {
            p.iter()
                .flat_map(|p| p["workers"].as_array().unwrap())
                .collect()
        })
        .unwrap_or_default();
    let asking = workers
        .iter()
        .filter(|w| {
            w["status"] == "W" && w["request"].as_str() == Some(&format!("GET {path} HTTP/1.1"))
        })
        .map(|w| (*w).clone())
        .collect();
    let busy: Vec<String> = workers
        .iter()
        .filter(|w| !matches!(w["status"].as_str(), Some("." | "_")))
        .map(|w| format!("{} {} {}", w["status"], w["generation"], w["request"]))
        .collect();
    (asking, busy.join("; "))
}

/// The worker serving the asking request shows it, writing, with its client and vhost.
fn assert_shows_request(apache: &Apache, m: &serde_json::Value, path: &str) {
    let (asking, busy) = writing_request(m, path);
    assert_with_log!(apache, asking.len() == 1, "busy workers: {busy}");
    assert_eq!(
        asking[0]["client"].as_str(),
        Some("127.0.0.1"),
        "{}",
        asking[0]
    );
    assert!(
        !asking[0]["vhost"].as_str().unwrap().is_empty(),
        "{}",
        asking[0]
    );
}

#[test]
fn server_metrics_shows_the_scoreboard_to_a_group_that_asks() {
    let (apache, _) = start(
        "processes=1 threads=2 server-metrics=on",
        "ExtendedStatus On",
    );
    let m = get_json(&apache, "/app/before");
    assert_scoreboard_shape(&apache, &m["server_metrics"]);
    assert_shows_request(&apache, &m["server_metrics"], "/app/before");
    // The other metrics are still None until recording starts.
    assert!(m["request_metrics"].is_null(), "{m}");
    // After a graceful restart (new daemons, the scoreboard kept) it still answers. While
    // the old generation winds down, a request may still be taken by an old child: ask until
    // the new generation serves one (bounded).
    apache.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        let resp = apache.get("/app/before");
        if resp.status == 200 {
            let m = common::http::json(&resp);
            let board = &m["server_metrics"];
            if board["running_generation"].as_i64() == Some(1) {
                assert_scoreboard_shape(&apache, board);
                let (asking, busy) = writing_request(board, "/app/before");
                if asking.len() == 1 && asking[0]["generation"].as_i64() == Some(1) {
                    assert_shows_request(&apache, board, "/app/before");
                    break;
                }
                last = busy;
            }
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "no request of the new generation seen; last busy workers: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn server_metrics_follows_wsgiservermetrics_in_embedded_mode_only() {
    let config = ApacheConfig::new("server-metrics-embedded");
    let app = config.install_app("metrics.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIServerMetrics On\nExtendedStatus On\n\
             WSGIDaemonProcess web processes=1 threads=1\n\
             WSGIScriptAlias /app {app}\n\
             WSGIScriptAlias /emb {app}\n\
             <Location /app>\n    WSGIProcessGroup web\n</Location>\n\
             <Location /emb>\n    WSGIProcessGroup %{{GLOBAL}}\n</Location>\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            app = app.display()
        ))
        .start();
    let embedded = get_json(&apache, "/emb/before");
    assert_scoreboard_shape(&apache, &embedded["server_metrics"]);
    assert_shows_request(&apache, &embedded["server_metrics"], "/emb/before");
    // WSGIServerMetrics is for embedded mode; the daemon group did not ask.
    let daemon = get_json(&apache, "/app/before");
    assert!(daemon["server_metrics"].is_null(), "{daemon}");
}
