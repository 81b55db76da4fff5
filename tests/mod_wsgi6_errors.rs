//! mod_wsgi 6's exception handling, with a real Apache and CPython
//! (tests/apps/mod_wsgi6_errors.wsgi): interrupt-timeout raises the `RequestTimeout` class
//! applications import from `mod_wsgi`, so their `except RequestTimeout:` runs; the lines
//! mod_wsgi 6 writes when it injects the exception and when the request recovers; a
//! `RequestTimeout` raised by the app itself; and the header line of a `SystemExit` and of
//! other exceptions, as mod_wsgi's own suite (tests/wsgi/interrupt_timeout.sh,
//! tests/wsgi/response.sh) matches them.

mod common;

use std::time::{Duration, Instant};

use common::{Apache, ApacheConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    Embedded,
}

const MODES: [Mode; 2] = [Mode::Daemon, Mode::Embedded];

/// The app at /app, in daemon group `errors` with `options`, or embedded.
fn start(mode: Mode, options: &str) -> Apache {
    let config = ApacheConfig::new(match mode {
        Mode::Daemon => "mw6-errors-daemon",
        Mode::Embedded => "mw6-errors-embedded",
    });
    config.markers_dir();
    let app = config.install_app("mod_wsgi6_errors.wsgi");
    let group = match mode {
        Mode::Daemon => format!("WSGIDaemonProcess errors {options}\nWSGIProcessGroup errors\n"),
        Mode::Embedded => String::new(),
    };
    config
        .conf(&format!(
            "{group}WSGIApplicationGroup %{{GLOBAL}}\nWSGIScriptAlias /app {}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
            app.display()
        ))
        .start()
}

/// The error-log lines containing `marker`.
fn lines_with(log: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(marker))
        .map(str::to_string)
        .collect()
}

#[test]
fn interrupt_timeout_raises_the_request_timeout_applications_import_and_logs_as_mod_wsgi() {
    // threads=2: the monitor acts after request-timeout * (1 + ln 2) = 1.7 s.
    let apache = start(
        Mode::Daemon,
        "threads=2 request-timeout=1 interrupt-timeout=5 graceful-timeout=15",
    );
    let pid = apache.get("/app/fast").text();
    let injected = "Injected RequestTimeout into thread ";
    let recovered = "Request interrupted by RequestTimeout; thread recovered.";
    for (round, path) in [(1, "/app/slow"), (2, "/app/catch?marker=caught")] {
        let started = Instant::now();
        let resp = apache.get(path);
        assert_with_log!(apache, resp.status == 504, "{path}: {}", resp.status);
        assert!(started.elapsed() < Duration::from_secs(8), "{path}");
        // The 504 is the application's: with interrupt-timeout, Apache waits for the daemon
        // (as mod_wsgi does) instead of cutting the request at request-timeout, so the
        // application's handler has run by the time the client has its answer.
        assert!(
            !apache
                .error_log()
                .contains("timeout waiting for daemon process"),
            "{path}\n{}",
            apache.error_log()
        );
        if round == 2 {
            assert!(apache.marker("caught").exists(), "{}", apache.error_log());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = apache.error_log();
            if log.matches(recovered).count() == round && log.matches(injected).count() == round {
                break;
            }
            assert!(Instant::now() < deadline, "{path}: round {round}\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The process was kept: the same one serves.
        assert_eq!(apache.get("/app/fast").text(), pid, "{path}");
    }
    // The application's `except RequestTimeout:` (the class from `from mod_wsgi import
    // RequestTimeout`) ran before it re-raised.
    let marker = apache.marker("caught");
    apache.wait_for_marker(&marker, Duration::from_secs(5));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "caught RequestTimeout"
    );
    let log = apache.error_log();
    for line in lines_with(&log, injected) {
        assert!(line.contains("[rwsgi:info]"), "{line}");
        assert!(line.contains("RW0161: "), "{line}");
        assert!(line.contains("of daemon process 'errors'."), "{line}");
    }
    for line in lines_with(&log, recovered) {
        assert!(line.contains("[rwsgi:info]"), "{line}");
        assert!(line.contains("RW0160: "), "{line}");
    }
    assert!(!log.contains("Traceback"), "{log}");
    assert!(!log.contains("(RequestTimeout) raised"), "{log}");
    assert!(!log.contains("is being replaced"), "{log}");
}

#[test]
fn request_timeout_raised_by_the_app_logs_mod_wsgis_info_lines() {
    for mode in MODES {
        let apache = start(mode, "threads=2");
        let resp = apache.get("/app/raise-request-timeout");
        assert_with_log!(apache, resp.status == 504, "{mode:?}: {}", resp.status);
        let line = "Request interrupted by RequestTimeout; thread recovered.";
        let log = apache.wait_for_log(line, Duration::from_secs(5));
        let lines = lines_with(&log, line);
        assert_eq!(lines.len(), 1, "{mode:?}\n{log}");
        assert!(lines[0].contains("[rwsgi:info]"), "{}", lines[0]);
        // After the head: the body is cut short, logged at info without a traceback.
        let _ = common::http::request(
            apache.port(),
            "GET",
            "/app/raise-request-timeout-after-head",
            &[],
            b"",
        );
        let line = "Request interrupted by RequestTimeout after headers sent; response truncated.";
        let log = apache.wait_for_log(line, Duration::from_secs(5));
        assert!(lines_with(&log, line)[0].contains("[rwsgi:info]"), "{log}");
        assert!(!log.contains("raise-request-timeout"), "{mode:?}\n{log}");
        assert!(!log.contains("Traceback"), "{mode:?}\n{log}");
        assert_eq!(apache.get("/app/fast").status, 200);
    }
}

#[test]
fn system_exit_raised_by_the_app_is_logged_with_mod_wsgis_header() {
    for mode in MODES {
        let apache = start(mode, "threads=2");
        let resp = apache.get("/app/raise-systemexit");
        assert_with_log!(apache, resp.status == 500, "{mode:?}: {}", resp.status);
        let log = apache.wait_for_log("SystemExit: raise-systemexit-msg", Duration::from_secs(5));
        let header = "SystemExit exception raised by WSGI script '";
        let lines = lines_with(&log, header);
        assert_eq!(lines.len(), 1, "{mode:?}\n{log}");
        let script = apache.config.root().join("apps/mod_wsgi6_errors.wsgi");
        let context = match mode {
            Mode::Daemon => "main interpreter of daemon process 'errors'",
            Mode::Embedded => "main interpreter in embedded mode",
        };
        let expected = format!(
            "[script {s}] SystemExit exception raised by WSGI script '{s}' for {context}; \
             ignored.",
            s = script.display()
        );
        assert!(lines[0].contains(&expected), "{mode:?}: {}", lines[0]);
        assert!(lines[0].contains("[rwsgi:error]"), "{}", lines[0]);
        assert!(lines[0].contains("RW0162: "), "{}", lines[0]);
        assert!(
            !log.contains("SystemExit exception raised processing"),
            "{log}"
        );
        // Raised after the first chunk: the chunk reached the client, the same header.
        let result = common::http::request(
            apache.port(),
            "GET",
            "/app/raise-systemexit-midway",
            &[],
            b"",
        );
        if let Ok(resp) = result {
            assert!(resp.body.starts_with(b"before-exit"), "{mode:?}");
        }
        let log = apache.wait_for_log(
            "SystemExit: raise-systemexit-midway-msg",
            Duration::from_secs(5),
        );
        assert_eq!(lines_with(&log, header).len(), 2, "{mode:?}\n{log}");
        // Other exceptions keep the "raised processing" header; the process still serves.
        assert_eq!(apache.get("/app/raise-first").status, 500);
        let log = apache.wait_for_log("RuntimeError: raise-first-boom", Duration::from_secs(5));
        assert!(
            log.contains("RuntimeError exception raised processing WSGI script"),
            "{mode:?}\n{log}"
        );
        assert_eq!(apache.get("/app/fast").status, 200);
    }
}

#[test]
fn system_exit_raised_as_the_script_is_loaded_is_logged_with_mod_wsgis_line() {
    for mode in MODES {
        let config = ApacheConfig::new("mw6-exit-at-import");
        let app = config.install_app("exit_at_import.wsgi");
        let group = match mode {
            Mode::Daemon => "WSGIDaemonProcess errors threads=2\nWSGIProcessGroup errors\n",
            Mode::Embedded => "",
        };
        let apache = config
            .conf(&format!(
                "{group}WSGIApplicationGroup %{{GLOBAL}}\nWSGIScriptAlias /app {}\n\
                 <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
                app.display()
            ))
            .start();
        // A script that fails to load answers 503 (see tests/faults.rs).
        let failed = 503;
        assert_eq!(apache.get("/app").status, failed, "{mode:?}");
        let line = format!(
            "SystemExit exception raised when doing exec of Python script file '{}'.",
            app.display()
        );
        let log = apache.wait_for_log(&line, Duration::from_secs(5));
        let lines = lines_with(&log, &line);
        assert_eq!(lines.len(), 1, "{mode:?}\n{log}");
        assert!(lines[0].contains("[rwsgi:error]"), "{}", lines[0]);
        assert!(lines[0].contains("RW0163: "), "{}", lines[0]);
        // As in mod_wsgi: this line only, not "Unable to execute" and a traceback.
        assert!(
            !log.contains("Unable to execute Python script file"),
            "{mode:?}\n{log}"
        );
        // SystemExit did not end the process: it answers the next request the same way.
        assert_eq!(apache.get("/app").status, failed, "{mode:?}");
    }
}
