//! Process lifecycle under a bounded load: touch-to-reload, maximum-requests and signals
//! replace daemon processes without failing a single request.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig, http};

struct LoadReport {
    requests: u64,
    failures: Vec<String>,
    pids: std::collections::BTreeSet<String>,
    /// The slowest requests: (start after the load began, duration, answer or error).
    slowest: Vec<(Duration, Duration, String)>,
}

impl LoadReport {
    /// For failure messages: what the slowest requests were doing.
    fn describe_slowest(&self) -> String {
        self.slowest
            .iter()
            .map(|(at, took, what)| format!("at {at:.2?} took {took:.2?}: {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `clients` threads request `path` until `duration` ends (bounded in time and count),
/// counting every non-2xx answer and connection error. `action` runs meanwhile.
fn load(
    apache: &Apache,
    clients: usize,
    duration: Duration,
    path: &str,
    action: impl FnOnce(),
) -> LoadReport {
    let port = apache.port();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let pids = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let timings = Arc::new(Mutex::new(Vec::new()));
    let began = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, count, failures, pids, timings) = (
                stop.clone(),
                count.clone(),
                failures.clone(),
                pids.clone(),
                timings.clone(),
            );
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 100_000 {
                    n += 1;
                    count.fetch_add(1, Ordering::SeqCst);
                    let sent = Instant::now();
                    let result = http::request(port, "GET", &path, &[], b"");
                    let answer = match &result {
                        Ok(r) => format!("{} {}", r.status, r.text()),
                        Err(e) => format!("error: {e}"),
                    };
                    timings
                        .lock()
                        .unwrap()
                        .push((sent - began, sent.elapsed(), answer));
                    match result {
                        Ok(r) if (200..300).contains(&r.status) => {
                            pids.lock().unwrap().insert(r.text());
                        }
                        Ok(r) => failures.lock().unwrap().push(format!(
                            "status {}: {}",
                            r.status,
                            r.text()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("error: {e}")),
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    action();
    if let Some(left) = duration.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let pids = pids.lock().unwrap().clone();
    let mut slowest = std::mem::take(&mut *timings.lock().unwrap());
    slowest.sort_by_key(|(_, took, _)| std::cmp::Reverse(*took));
    slowest.truncate(10);
    LoadReport {
        requests: count.load(Ordering::SeqCst),
        failures,
        pids,
        slowest,
    }
}

fn start(options: &str, extra: &str) -> (Apache, std::path::PathBuf) {
    let (config, app) = ApacheConfig::new("life").daemon_app(
        "probe.wsgi",
        "probe",
        options,
        &format!("WSGIApplicationGroup %{{GLOBAL}}\n{extra}"),
    );
    (config.start(), app)
}

fn touch(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let now = std::time::SystemTime::now();
    // Make sure the mtime differs even on coarse clocks.
    f.set_modified(now + Duration::from_secs(1))
        .unwrap_or_else(|_| f.set_modified(now).unwrap());
}

#[test]
fn touching_the_script_under_load_fails_no_request() {
    for processes in [1, 2] {
        let (apache, app) = start(&format!("processes={processes} threads=4"), "");
        let before = apache.get("/app/pid").text();
        let report = load(&apache, 8, Duration::from_secs(8), "/app/pid", || {
            for i in 0..3 {
                std::thread::sleep(Duration::from_millis(1500));
                let f = std::fs::File::options().write(true).open(&app).unwrap();
                f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10 * (i + 1)))
                    .unwrap();
            }
        });
        assert!(
            report.failures.is_empty(),
            "processes={processes}: {} of {} requests failed: {:?}\n{}",
            report.failures.len(),
            report.requests,
            &report.failures[..report.failures.len().min(5)],
            apache.error_log()
        );
        assert!(report.requests > 100, "load too small: {}", report.requests);
        assert!(!report.pids.contains(&String::new()));
        // Every touch replaced the processes: 3 touches, `processes` each, plus the first.
        assert!(
            report.pids.len() >= 3,
            "processes={processes}: only {:?} served (before: {before})\n{}",
            report.pids,
            apache.error_log()
        );
        let log = apache.error_log();
        assert!(
            log.contains("the WSGI script changed (touch-to-reload)"),
            "{log}"
        );
    }
}

#[test]
fn script_reloading_off_keeps_the_process() {
    let (apache, app) = start("threads=2", "WSGIScriptReloading Off");
    let before = apache.get("/app/pid").text();
    touch(&app);
    // The daemon checks the served script on each request: the first one after the touch
    // would already be turned away and served by a replacement were reloading on.
    for _ in 0..5 {
        assert_eq!(apache.get("/app/pid").text(), before);
    }
}

#[test]
fn maximum_requests_recycles_without_failures() {
    let (apache, _) = start("threads=4 maximum-requests=25", "");
    let report = load(&apache, 4, Duration::from_secs(5), "/app/pid", || {});
    assert!(
        report.failures.is_empty(),
        "{:?}\n{}",
        &report.failures[..report.failures.len().min(5)],
        apache.error_log()
    );
    assert!(
        report.pids.len() >= 3,
        "PIDs {:?} after {} requests",
        report.pids,
        report.requests
    );
    assert!(apache.error_log().contains("maximum-requests=25 reached"));
}

#[test]
fn sigint_restarts_gracefully_and_finishes_the_request_in_flight() {
    let (apache, _) = start("threads=2 graceful-timeout=15", "");
    let pid: i32 = apache.get("/app/pid").text().parse().unwrap();
    let port = apache.port();
    let started = apache.marker("sigint-started");
    let path = format!("/app/sleep?s=3&started={}", started.display());
    let slow = std::thread::spawn(move || http::request(port, "GET", &path, &[], b"").unwrap());
    apache.wait_for_marker(&started, Duration::from_secs(10));
    // SAFETY: SIGINT to the daemon our Apache started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let resp = slow.join().unwrap();
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert!(resp.text().contains(&format!("\"pid\": {pid}")));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = apache.get("/app/pid");
        if now.status == 200 && now.text() != pid.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = apache.error_log();
    assert!(
        log.contains(&format!("(pid {pid}) stopping: received SIGINT")),
        "{log}"
    );
    // Warm: the replacement was started first, then this process drained and exited.
    assert!(
        log.contains(&format!("(pid {pid}) is being replaced (received SIGINT)")),
        "{log}"
    );
    apache.wait_for_log(
        &format!("(pid {pid}) exited with status 86 (a planned restart) after being replaced"),
        Duration::from_secs(5),
    );
}

fn wait_new_pid(apache: &Apache, old: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let resp = apache.get("/app/pid");
        if resp.status == 200 && resp.text() != old {
            return resp.text();
        }
        assert!(
            Instant::now() < deadline,
            "no new daemon within {limit:?}\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn restart_interval_recycles_the_process() {
    let (apache, _) = start("threads=2 restart-interval=2", "");
    let first = apache.get("/app/pid").text();
    wait_new_pid(&apache, &first, Duration::from_secs(10));
    assert!(apache.error_log().contains("restart-interval=2 s reached"));
}

#[test]
fn inactivity_timeout_recycles_an_idle_process_without_deadlock_timeout() {
    // deadlock-timeout=0 as well: unlike mod_wsgi, the other timers still work.
    let (apache, _) = start("threads=2 inactivity-timeout=1 deadlock-timeout=0", "");
    let first = apache.get("/app/pid").text();
    // No request until the daemon gave up on idling (a request would restart the clock).
    apache.wait_for_log(
        "no request for inactivity-timeout=1 s",
        Duration::from_secs(10),
    );
    wait_new_pid(&apache, &first, Duration::from_secs(10));
}

/// GETs `path` every 300 ms (at most `limit`, at most 100 requests); returns the pids that
/// answered, in order, stopping early once a second pid answers.
fn poll_pids(apache: &Apache, path: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut pids: Vec<String> = Vec::new();
    for _ in 0..100 {
        let resp = apache.get(path);
        assert_eq!(
            resp.status,
            200,
            "{path}: {}\n{}",
            resp.text(),
            apache.error_log()
        );
        let pid = resp.text();
        if pids.last() != Some(&pid) {
            pids.push(pid);
        }
        if pids.len() > 1 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    pids
}

#[test]
fn ignore_activity_requests_do_not_hold_off_inactivity_timeout() {
    // The same script under two URLs; requests under /quiet are not activity (mod_wsgi's
    // example is a health check under <Location /health>).
    let (apache, _) = start(
        "threads=2 inactivity-timeout=2",
        "WSGIScriptAlias /quiet @DIR@/apps/probe.wsgi\n\
         <Location /quiet>\n    WSGIIgnoreActivity On\n</Location>",
    );
    // Requests every 300 ms to a normal location keep the process for twice the timeout.
    let pids = poll_pids(&apache, "/app/pid", Duration::from_secs(5));
    assert_eq!(
        pids.len(),
        1,
        "a busy daemon was recycled: {pids:?}\n{}",
        apache.error_log()
    );
    assert!(
        !apache
            .error_log()
            .contains("no request for inactivity-timeout"),
        "{}",
        apache.error_log()
    );
    // The same to the ignored location: the process idles out after the last normal
    // request and a new one answers.
    let pids = poll_pids(&apache, "/quiet/pid", Duration::from_secs(12));
    assert_eq!(
        pids.len(),
        2,
        "requests to a WSGIIgnoreActivity location kept the daemon alive: {pids:?}\n{}",
        apache.error_log()
    );
    apache.wait_for_log(
        "no request for inactivity-timeout=2 s",
        Duration::from_secs(5),
    );
}

#[test]
fn request_timeout_answers_504_logs_stacks_and_recycles() {
    let (apache, _) = start("threads=2 request-timeout=2 graceful-timeout=1", "");
    let first = apache.get("/app/pid").text();
    let started = Instant::now();
    let resp = apache.get("/app/sleep?s=30");
    assert_eq!(resp.status, 504, "{}", apache.error_log());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    let log = apache.wait_for_log(
        // threads=2: the process is recycled after 2 s * (1 + ln 2) = 3.4 s.
        "over request-timeout=2 s (3.4 s with 2 threads); Python stacks",
        Duration::from_secs(5),
    );
    assert!(
        log.contains("time.sleep") || log.contains("in application"),
        "{log}"
    );
    wait_new_pid(&apache, &first, Duration::from_secs(10));
}

#[test]
fn interrupt_timeout_raises_request_timeout_in_the_thread_and_keeps_the_process() {
    // threads=4: the daemon acts after request-timeout * (1 + ln 4) = 2.4 s.
    let (apache, _) = start("threads=4 request-timeout=1 interrupt-timeout=1", "");
    let first = apache.get("/app/pid").text();
    let raised = "raised mod_wsgi.RequestTimeout in its thread";
    for round in 1..=2 {
        let started = Instant::now();
        let resp = apache.get("/app/spin?s=30");
        assert_eq!(resp.status, 504, "round {round}\n{}", apache.error_log());
        let deadline = Instant::now() + Duration::from_secs(10);
        while apache.error_log().matches(raised).count() < round {
            assert!(
                Instant::now() < deadline,
                "round {round}: not interrupted\n{}",
                apache.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = apache.error_log();
        assert!(log.contains("(2.4 s with 4 threads)"), "{log}");
        assert!(started.elapsed() < Duration::from_secs(8));
        // The request unwound with the exception and the thread was reused: same process.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let endings = apache.get("/app/spin-endings").text();
            if endings.matches("RequestTimeout").count() == round {
                break;
            }
            assert!(Instant::now() < deadline, "endings: {endings}\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(apache.get("/app/pid").text(), first, "round {round}");
    }
    // The second interrupt came at least 2.4 s after the first request ended: past the
    // first's interrupt-timeout (1 s) and the monitor's next look, so had the monitor still
    // meant to replace the process for it, the second request would have met a replacement.
    assert!(
        !apache.error_log().contains("is being replaced"),
        "{}",
        apache.error_log()
    );
}

#[test]
fn deadlock_timeout_replaces_a_process_whose_gil_is_stuck() {
    let (apache, _) = start("threads=2 deadlock-timeout=2 socket-timeout=30", "");
    let first = apache.get("/app/pid").text();
    let port = apache.port();
    let stuck =
        std::thread::spawn(move || http::request(port, "GET", "/app/holdgil?s=20", &[], b""));
    apache.wait_for_log(
        "could not be taken for deadlock-timeout=2 s",
        Duration::from_secs(15),
    );
    wait_new_pid(&apache, &first, Duration::from_secs(10));
    let resp = stuck.join().unwrap();
    assert!(resp.map(|r| r.status != 200).unwrap_or(true));
}

/// A request that has reached the app and runs until the test writes the returned marker
/// (at most 60 s); its thread answers with the app's JSON.
fn held_request(
    apache: &Apache,
) -> (
    std::thread::JoinHandle<std::io::Result<http::Response>>,
    std::path::PathBuf,
) {
    let port = apache.port();
    let started = apache.marker("held-started");
    let release = apache.marker("held-release");
    let path = format!(
        "/app/sleep?s=60&until={}&started={}",
        release.display(),
        started.display()
    );
    let held = std::thread::spawn(move || http::request(port, "GET", &path, &[], b""));
    apache.wait_for_marker(&started, Duration::from_secs(10));
    (held, release)
}

#[test]
fn apache_graceful_restarts_under_load_fail_no_request_and_let_long_requests_finish() {
    let (apache, _) = start("processes=1 threads=8 graceful-timeout=30", "");
    // A request in flight across all the restarts (mod_wsgi cuts it after about 3 s).
    let (long, release) = held_request(&apache);
    let mut serving = vec![apache.get("/app/pid").text()];
    let report = load(&apache, 8, Duration::ZERO, "/app/pid", || {
        for _ in 0..3 {
            apache.signal(libc::SIGUSR1); // apache2 -k graceful
            // Each restart's daemon serves before the next restart (Apache itself holds
            // off starting the new generation's children for up to a second).
            let previous = serving.last().unwrap().clone();
            serving.push(wait_new_pid(&apache, &previous, Duration::from_secs(20)));
        }
        std::fs::write(&release, b"").unwrap();
    });
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}\nthe slowest:\n{}\n{}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(5)],
        report.describe_slowest(),
        apache.error_log()
    );
    let distinct: std::collections::BTreeSet<_> = serving.iter().collect();
    assert_eq!(distinct.len(), 4, "{serving:?}\n{}", apache.error_log());
    let long = long.join().unwrap().expect("the long request failed");
    assert_eq!(long.status, 200, "{}", apache.error_log());
    // It ran in the first daemon, which drained it across three restarts.
    assert!(
        long.text().contains(&format!("\"pid\": {}", serving[0])),
        "{}",
        long.text()
    );
}

/// Connections waiting in the listen queue of the group's socket (`ss`, from iproute2).
fn queued_connections(socket: &std::path::Path) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-xlH", "src"])
        .arg(socket)
        .output()
        .expect("ss (iproute2)");
    // u_str LISTEN <queued> <backlog> <path> ...
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<usize>().ok())
        .sum()
}

#[test]
fn a_request_queued_at_a_draining_daemon_is_served_by_the_next_generation() {
    let (apache, _) = start("processes=1 threads=1 graceful-timeout=30", "");
    let port = apache.port();
    let socket = apache.daemon_socket();
    // The daemon's only thread is busy until the test writes `release`.
    let (long, release) = held_request(&apache);
    // A second request waits in the daemon's listen queue.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http::request(port, "POST", "/app/pid", &[], b"queued"));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued_connections(&socket) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing queued\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    apache.signal(libc::SIGUSR1); // apache2 -k graceful
    // The old daemon drains its request; the queued one goes to the new generation at once
    // rather than waiting for that drain (it would still be waiting).
    let queued = rx.recv_timeout(Duration::from_secs(15));
    std::fs::write(&release, b"").unwrap();
    let queued = queued
        .unwrap_or_else(|_| {
            panic!(
                "the queued request waited for the drain\n{}",
                apache.error_log()
            )
        })
        .expect("the queued request failed");
    assert_eq!(queued.status, 200, "{}", apache.error_log());
    let long = long.join().unwrap().expect("the long request failed");
    assert_eq!(long.status, 200, "{}", apache.error_log());
    assert!(
        !long.text().contains(&format!("\"pid\": {}", queued.text())),
        "the same daemon answered both: {} / {}",
        long.text(),
        queued.text()
    );
}

/// While a group's socket is root's (a new generation's socket between its bind and its
/// chown, at a graceful restart), an Apache child's connect is refused with EACCES: the
/// child retries it within connect-timeout, as while the socket does not exist, rather
/// than answering 503.
#[test]
fn a_socket_not_yet_handed_to_apaches_user_is_waited_for_not_a_503() {
    use std::os::unix::fs::MetadataExt;
    let (apache, _) = start("processes=1 threads=2 connect-timeout=15", "");
    let socket = apache.daemon_socket();
    let owner = std::fs::metadata(&socket).unwrap();
    assert_ne!(owner.uid(), 0, "the socket is Apache's user's");
    std::os::unix::fs::chown(&socket, Some(0), Some(0)).unwrap();
    let port = apache.port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http::request(port, "GET", "/app/pid", &[], b""));
    });
    // The simulated window: the request is refused by the socket's permissions meanwhile.
    let early = rx.recv_timeout(Duration::from_millis(500));
    std::os::unix::fs::chown(&socket, Some(owner.uid()), Some(owner.gid())).unwrap();
    let answer = early
        .or_else(|_| rx.recv_timeout(Duration::from_secs(15)))
        .expect("no answer")
        .expect("the request failed");
    assert_eq!(answer.status, 200, "{}", apache.error_log());
}

#[test]
fn trickling_uploads_do_not_starve_daemon_threads() {
    let (apache, _) = start("threads=2", "");
    // The daemon is up and the script loaded: the timed GETs below measure only the uploads.
    assert_eq!(apache.get("/app/pid").status, 200);
    let port = apache.port();
    let stop = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicU64::new(0));
    // 20 clients each trickle a 2 KiB body, 100 bytes every 250 ms (about 5 s each).
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let (stop, sending) = (stop.clone(), sending.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                write!(s, "POST /app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n").unwrap();
                for piece in 0..20 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let _ = s.write_all(&[b'u'; 100]);
                    if piece == 0 {
                        sending.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                let mut out = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut out);
            })
        })
        .collect();
    // Until every upload has its head and a first piece of body sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sending.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "uploads did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // With 2 daemon threads and 20 slow uploads, plain GETs must still be served at once.
    for _ in 0..10 {
        let started = Instant::now();
        let resp = apache.get("/app/pid");
        assert_eq!(resp.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "GET took {:?} while uploads trickled",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    for t in tricklers {
        t.join().unwrap();
    }
}

#[test]
fn queue_timeout_and_socket_timeout_answer_504() {
    let (apache, _) = start("threads=1 queue-timeout=1 socket-timeout=2", "");
    let port = apache.port();
    let started = apache.marker("busy-started");
    let path = format!("/app/sleep?s=1.8&started={}", started.display());
    let busy = std::thread::spawn(move || http::request(port, "GET", &path, &[], b"").unwrap());
    apache.wait_for_marker(&started, Duration::from_secs(10));
    // Waits behind the busy thread for longer than queue-timeout.
    let queued = apache.get("/app/pid");
    assert_eq!(queued.status, 504, "{}", apache.error_log());
    assert_eq!(busy.join().unwrap().status, 200);
    apache.wait_for_log("queue-timeout=1 s", Duration::from_secs(5));
    // No answer within socket-timeout: 504, not a hang.
    let slow = apache.get("/app/sleep?s=5");
    assert_eq!(slow.status, 504);
    apache.wait_for_log("socket-timeout=2 s expired", Duration::from_secs(5));
}

#[test]
fn startup_timeout_replaces_a_process_whose_script_does_not_load() {
    let config = ApacheConfig::new("startup");
    let app = config.install_app("raise_at_import.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess broken threads=1 startup-timeout=2\nWSGIProcessGroup broken\n\
             WSGIScriptAlias /broken {}\n<Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            app.display()
        ))
        .start();
    let resp = apache.get("/broken/");
    assert_eq!(resp.status, 503);
    let log = apache.wait_for_log(
        "did not load within startup-timeout=2 s",
        Duration::from_secs(10),
    );
    assert!(
        log.contains("raise_at_import: configuration is broken on purpose"),
        "{log}"
    );
}

#[test]
fn sigusr1_evicts_after_requests_in_flight_finish() {
    let (apache, _) = start("threads=2 eviction-timeout=10", "");
    let pid: i32 = apache.get("/app/pid").text().parse().unwrap();
    let port = apache.port();
    let started = apache.marker("evict-started");
    let path = format!("/app/sleep?s=2&started={}", started.display());
    let slow = std::thread::spawn(move || http::request(port, "GET", &path, &[], b"").unwrap());
    apache.wait_for_marker(&started, Duration::from_secs(10));
    // SAFETY: SIGUSR1 to the daemon our Apache started.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert_eq!(slow.join().unwrap().status, 200, "{}", apache.error_log());
    wait_new_pid(&apache, &pid.to_string(), Duration::from_secs(10));
    let log = apache.error_log();
    assert!(
        log.contains(&format!("(pid {pid}) stopping: received SIGUSR1")),
        "{log}"
    );
    assert!(log.contains("waiting up to 10 s"), "{log}");
}

#[test]
fn killed_daemons_under_load_fail_no_idempotent_request() {
    for processes in [1, 2] {
        let (apache, _) = start(&format!("processes={processes} threads=8"), "");
        let report = load(
            &apache,
            8,
            Duration::from_secs(8),
            "/app/sleep?s=0.02",
            || {
                for _ in 0..2 {
                    std::thread::sleep(Duration::from_millis(2500));
                    let resp = apache.get("/app/pid");
                    let victim: i32 = resp.text().parse().unwrap();
                    // SAFETY: SIGKILL to a daemon process our Apache started.
                    unsafe { libc::kill(victim, libc::SIGKILL) };
                }
            },
        );
        assert!(
            report.failures.is_empty(),
            "processes={processes}: {} of {} requests failed: {:?}\n{}",
            report.failures.len(),
            report.requests,
            &report.failures[..report.failures.len().min(5)],
            apache.error_log()
        );
        assert!(apache.error_log().contains("SIGKILL"));
    }
}

#[test]
fn a_post_whose_daemon_dies_gets_a_clear_502_and_a_get_is_resent() {
    let (apache, _) = start("threads=4", "");
    let pid: i32 = apache.get("/app/pid").text().parse().unwrap();
    let port = apache.port();
    let (post_started, get_started) = (apache.marker("post-started"), apache.marker("get-started"));
    let post_path = format!("/app/slowpost?s=3&started={}", post_started.display());
    let get_path = format!("/app/sleep?s=3&started={}", get_started.display());
    let post = std::thread::spawn(move || {
        http::request(port, "POST", &post_path, &[], b"payload").unwrap()
    });
    let get = std::thread::spawn(move || http::request(port, "GET", &get_path, &[], b"").unwrap());
    // Both requests are running in the daemon when it is killed.
    apache.wait_for_marker(&post_started, Duration::from_secs(10));
    apache.wait_for_marker(&get_started, Duration::from_secs(10));
    // SAFETY: SIGKILL to the daemon our Apache started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let post = post.join().unwrap();
    assert_eq!(post.status, 502, "{}", apache.error_log());
    // The GET was running too: it is resent once and answered by the replacement.
    let get = get.join().unwrap();
    assert_eq!(get.status, 200, "{}", apache.error_log());
    assert!(
        !get.text().contains(&format!("\"pid\": {pid},")),
        "{}",
        get.text()
    );
    let log = apache.error_log();
    assert!(log.contains("the request is not resent"), "{log}");
    assert!(
        log.contains(&format!("(pid {pid}) was killed by SIGKILL; restarting")),
        "{log}"
    );
}
