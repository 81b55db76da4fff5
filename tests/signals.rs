//! Signals in daemon processes: the processes an application starts (every way Python has)
//! begin with no signal blocked and none ignored, so SIGTERM ends them; and a request that
//! holds the GIL cannot keep the monitor from replacing its process (request-timeout with
//! deadlock-timeout), nor can the GIL thread trouble Python's finalisation at shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig, http};

fn start(options: &str) -> Apache {
    let (config, _) = ApacheConfig::new("signals").daemon_app(
        "signals.wsgi",
        "sig",
        options,
        "WSGIApplicationGroup %{GLOBAL}",
    );
    config.start()
}

/// One `key` of the app's JSON report (a flat object of strings, numbers and booleans).
fn field(report: &str, key: &str) -> String {
    let at = report
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {report}"));
    let rest = &report[at + key.len() + 4..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"').to_string()
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The standard signals (1-31) set in a /proc status mask; glibc's own realtime signals,
/// which Apache passes on as it got them, are not the daemon's.
fn standard(mask: &str) -> u64 {
    u64::from_str_radix(mask, 16).unwrap_or(u64::MAX) & 0x7fff_ffff
}

#[test]
fn processes_the_application_starts_get_sigterm_and_an_empty_signal_mask() {
    let apache = start("threads=4");
    let mut problems = Vec::new();
    // Programs exec'd without Python's own set-up: nothing blocked and nothing ignored (a
    // SIGPIPE the daemon ignored would be ignored in them too). Python children (spawn,
    // forkserver) ignore SIGPIPE themselves, so only their mask is checked.
    for (how, check_ignored) in [
        ("popen", true),
        ("posix_spawn", true),
        ("fork_exec", true),
        ("fork", true),
        ("mp_fork", true),
        ("mp_spawn", false),
        ("mp_forkserver", false),
    ] {
        let resp = apache.get(&format!("/app/child?how={how}"));
        assert_eq!(
            resp.status,
            200,
            "{how}: {}\n{}",
            resp.text(),
            apache.error_log()
        );
        let report = resp.text();
        if standard(&field(&report, "SigBlk")) != 0 {
            problems.push(format!("{how}: signals blocked: {report}"));
        }
        if check_ignored && standard(&field(&report, "SigIgn")) != 0 {
            problems.push(format!("{how}: signals ignored: {report}"));
        }
        if field(&report, "ended") != "true" {
            problems.push(format!(
                "{how}: SIGTERM did not end it within 5 s: {report}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        apache.error_log()
    );
    // The daemon itself blocks none either.
    let mask = apache.get("/app/mask").text();
    assert_eq!(standard(&field(&mask, "SigBlk")), 0, "{mask}");
}

#[test]
fn the_daemon_still_takes_its_signals_from_every_thread() {
    // With nothing blocked a signal may land on any thread; the daemon must still act on
    // it: SIGUSR1 (eviction) replaces it warm, SIGTERM from the manager stops it.
    let apache = start("threads=2");
    let first: i32 = apache.get("/app/pid").text().parse().unwrap();
    // SAFETY: SIGUSR1 to the daemon process this test's Apache started.
    unsafe { libc::kill(first, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = apache.get("/app/pid");
        if resp.status == 200 && resp.text() != first.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGUSR1 did not replace the daemon\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(apache.error_log().contains("received SIGUSR1"));
}

#[test]
fn a_request_holding_the_gil_past_request_timeout_is_replaced_within_deadlock_timeout() {
    // request-timeout makes the monitor want the Python stacks of the overdue request; the
    // request holds the GIL in C (ctypes.PyDLL: libc sleep). The monitor must not wait for
    // it: deadlock-timeout replaces the process.
    let (config, _) = ApacheConfig::new("gilstuck").daemon_app(
        "probe.wsgi",
        "probe",
        "threads=1 request-timeout=1 deadlock-timeout=4 socket-timeout=60 graceful-timeout=60",
        "WSGIApplicationGroup %{GLOBAL}",
    );
    let apache = config.start();
    let first = apache.get("/app/pid").text();
    let port = apache.port();
    let started = Instant::now();
    let stuck =
        std::thread::spawn(move || http::request(port, "GET", "/app/holdgil?s=120", &[], b""));
    // deadlock-timeout=4 s, one heartbeat second, the monitor's tick, the replacement's
    // start-up: 20 s is a wide margin, and far less than the 120 s the GIL is held.
    let limit = Duration::from_secs(20);
    loop {
        let resp = apache.get("/app/pid");
        if resp.status == 200 && resp.text() != first {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "the process holding the GIL was not replaced within {limit:?}\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The stuck process itself goes too, within deadlock-timeout of its last heartbeat,
    // even though it was told to drain for graceful-timeout=60 s.
    let left = limit.saturating_sub(started.elapsed()) + Duration::from_secs(2);
    let log = apache.wait_for_log("could not be taken for deadlock-timeout=4 s", left);
    assert!(log.contains("over request-timeout=1 s"), "{log}");
    let old: i32 = first.parse().unwrap();
    while alive(old) {
        assert!(
            started.elapsed() < limit + Duration::from_secs(5),
            "the process holding the GIL ({old}) is still running\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resp = stuck.join().unwrap();
    assert!(resp.map(|r| r.status != 200).unwrap_or(true));
}

#[test]
fn the_gil_thread_has_ended_before_python_is_finalised() {
    // With deadlock-timeout (and request-timeout) a daemon has a thread that takes the GIL.
    // It must be gone before Py_Finalize: an object freed while Python finalises lists the
    // process' threads then, and sleeps there with the GIL released; shutdown stays clean.
    let (config, _) = ApacheConfig::new("finalise").daemon_app(
        "probe.wsgi",
        "probe",
        "threads=2 deadlock-timeout=1 request-timeout=30 shutdown-timeout=10",
        "WSGIApplicationGroup %{GLOBAL}",
    );
    let mut apache = config.start();
    let marker = apache.marker("finalising");
    let resp = apache.get(&format!(
        "/app/slow-finalise?s=2&marker={}",
        marker.display()
    ));
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    apache.stop();
    let threads = std::fs::read_to_string(&marker).unwrap_or_else(|e| {
        panic!(
            "finalisation did not free the object ({e})\n{}",
            apache.error_log()
        )
    });
    assert!(
        !threads.lines().any(|t| t.starts_with("rwsgi-gil")),
        "threads while Python was finalised:\n{threads}\n{}",
        apache.error_log()
    );
    let log = apache.error_log();
    for bad in [
        "panicked",
        "RW0032",
        "RW0140",
        "Fatal Python error",
        "signal 6",
        "core dumped",
    ] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
}
