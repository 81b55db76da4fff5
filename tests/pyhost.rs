//! mod_wsgi's Python-side behaviour with a real Apache and CPython, in daemon and embedded
//! mode: WSGIRestrictSignal, WSGIRestrictStdin, the standard streams and wsgi.errors,
//! mod_wsgi.LogHandler and LogLevel, mod_wsgi.RequestTimeout raised by the application, and
//! the Python start-up directives read back from Python (tests/apps/pyhost.wsgi).

mod common;

use std::time::Duration;

use common::http::{Json, json};
use common::{Apache, ApacheConfig, Mpm};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    Embedded,
}

const MODES: [Mode; 2] = [Mode::Daemon, Mode::Embedded];

/// The pyhost app at /app: in daemon mode in group `pyhost` with `group_options`, in embedded
/// mode in Apache's children. `server` is extra server-wide configuration; `log_level`
/// Apache's LogLevel.
fn start(mode: Mode, group_options: &str, server: &str, log_level: &str) -> Apache {
    start_mpm(mode, Mpm::Event, group_options, server, log_level)
}

fn start_mpm(mode: Mode, mpm: Mpm, group_options: &str, server: &str, log_level: &str) -> Apache {
    let mut config = ApacheConfig::new(match mode {
        Mode::Daemon => "pyhost-daemon",
        Mode::Embedded => "pyhost-embedded",
    })
    .mpm(mpm);
    config.log_level = log_level.to_string();
    let app = config.install_app("pyhost.wsgi");
    let group = match mode {
        Mode::Daemon => {
            format!("WSGIDaemonProcess pyhost threads=2 {group_options}\nWSGIProcessGroup pyhost\n")
        }
        Mode::Embedded => String::new(),
    };
    let conf = format!(
        "{server}\n{group}WSGIApplicationGroup %{{GLOBAL}}\n\
         WSGIScriptAlias /app {app}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        app = app.display()
    );
    config.conf(&conf).start()
}

fn get_json(apache: &Apache, path: &str) -> serde_json::Value {
    let resp = apache.get(path);
    assert_with_log!(apache, resp.status == 200, "{path}: {}", resp.status);
    json(&resp)
}

/// The error-log lines containing `marker`.
fn lines_with(log: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(marker))
        .map(str::to_string)
        .collect()
}

/// The one error-log line containing `marker` (waits for it).
fn log_line(apache: &Apache, marker: &str) -> String {
    let log = apache.wait_for_log(marker, Duration::from_secs(5));
    let lines = lines_with(&log, marker);
    assert_eq!(lines.len(), 1, "{marker}: {lines:?}\n{log}");
    lines[0].clone()
}

#[test]
fn restrict_signal_on_by_default_ignores_registrations_with_a_warning_and_the_stack() {
    for mode in MODES {
        let apache = start(mode, "", "", "info");
        let result = get_json(&apache, "/app/signal");
        // The handler in place is returned and stays in place.
        assert_eq!(
            result["SIGTERM"].str(),
            "returned the current handler",
            "{mode:?}"
        );
        assert_eq!(
            result["SIGUSR2"].str(),
            "returned the current handler",
            "{mode:?}"
        );
        assert_eq!(result["SIGUSR2 now ours"], false, "{mode:?}");
        assert_eq!(result["put back"].str(), "accepted", "{mode:?}");
        // Arguments Python would refuse are still refused.
        assert_eq!(result["bad handler"].str(), "TypeError", "{mode:?}");
        assert_eq!(result["bad signal"].str(), "ValueError", "{mode:?}");
        let line = log_line(&apache, "Ignoring signal.signal(SIGTERM, ...)");
        assert!(line.contains("[rwsgi:warn]"), "{line}");
        assert!(line.contains("[remote 127.0.0.1:"), "{line}");
        let log = apache.error_log();
        assert!(
            log.contains("Ignoring signal.signal(SIGUSR2, ...)"),
            "{log}"
        );
        // The caller's Python stack follows the warning.
        assert!(
            log.contains("pyhost.wsgi\", line") && log.contains("in register_handlers"),
            "{log}"
        );
        assert!(!log.contains("Traceback"), "{log}");
    }
}

#[test]
fn restrict_signal_off_passes_calls_to_python() {
    for mode in MODES {
        let apache = start(mode, "", "WSGIRestrictSignal Off", "info");
        let result = get_json(&apache, "/app/signal");
        // Not intercepted: Python's own signal.signal runs, which allows it only in the main
        // thread, and requests run in other threads (daemon threads, event MPM workers).
        for sig in ["SIGTERM", "SIGUSR2"] {
            assert!(
                result[sig]
                    .str()
                    .starts_with("ValueError: signal only works in main thread"),
                "{mode:?} {sig}: {result}"
            );
        }
        assert!(!apache.error_log().contains("Ignoring signal.signal"));
    }
}

#[test]
fn restrict_stdin_makes_every_use_raise_oserror_naming_sys_stdin() {
    for mode in MODES {
        let apache = start(mode, "", "WSGIRestrictStdin On", "info");
        let results = get_json(&apache, "/app/stdin");
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), 4);
        for r in results {
            let r = r.as_str().unwrap();
            assert!(
                r.starts_with("OSError: sys.stdin access restricted by mod_rwsgi")
                    && r.contains("WSGIRestrictStdin"),
                "{mode:?}: {r}"
            );
        }
        // The default (Off, as mod_wsgi) leaves sys.stdin alone.
        let apache = start(mode, "", "", "info");
        let results = get_json(&apache, "/app/stdin");
        assert!(!results.to_string().contains("restricted"), "{results}");
    }
}

#[test]
fn streams_are_text_wrappers_over_binary_writers_logging_with_the_remote_address() {
    for mode in MODES {
        let apache = start(mode, "", "", "info");
        let kinds = get_json(&apache, "/app/streams");
        for stream in ["stdout", "stderr", "wsgi.errors"] {
            assert_eq!(kinds[stream].str(), "TextIOWrapper", "{mode:?} {stream}");
        }
        assert_eq!(
            kinds["buffers"],
            serde_json::json!(["LogBuffer", "LogBuffer", "LogBuffer"])
        );
        assert_eq!(
            kinds["str to buffer"].str(),
            "TypeError: a bytes-like object is required, not 'str'"
        );
        let log = apache.wait_for_log("pyhost background wsgi.errors line", Duration::from_secs(5));
        for marker in [
            "pyhost errors bytes line",
            "pyhost errors bytearray line",
            "pyhost errors memoryview line",
            "pyhost errors wl-bytes",
            "pyhost errors wl-bytearray",
            "pyhost errors wl-memoryview",
            "pyhost errors text-a",
            "pyhost errors text-b",
            "pyhost stdout bytes line",
            "pyhost stderr memoryview line",
            "pyhost print line",
            // Apache writes non-ASCII bytes escaped.
            "pyhost \\xc3\\xa9t\\xc3\\xa9 line",
            // wsgi.errors keeps its request's address in another thread.
            "pyhost background wsgi.errors line",
        ] {
            let lines = lines_with(&log, marker);
            assert_eq!(lines.len(), 1, "{mode:?} {marker}: {lines:?}\n{log}");
            let line = &lines[0];
            assert!(
                line.contains("[rwsgi:error]") && line.contains("[remote 127.0.0.1:"),
                "{mode:?}: {line}"
            );
            assert!(line.ends_with(marker), "{mode:?}: {line}");
        }
        // sys.stderr in a thread serving no request: no request address.
        let lines = lines_with(&log, "pyhost background stderr line");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(!lines[0].contains("[remote "), "{}", lines[0]);
    }
}

#[test]
fn log_handler_maps_python_levels_to_apache_levels_and_loglevel_filters_them() {
    for mode in MODES {
        let apache = start(mode, "", "", "info rwsgi:info");
        let facts = get_json(&apache, "/app/log-levels");
        assert_eq!(facts["LogHandler is a logging.Handler"], true);
        assert_eq!(facts["from import"], true);
        let log = apache.wait_for_log("pyhost-lh print line", Duration::from_secs(5));
        for (marker, tag) in [
            ("pyhost-lh info record", "[rwsgi:info]"),
            ("pyhost-lh warning record", "[rwsgi:warn]"),
            ("pyhost-lh error record", "[rwsgi:error]"),
            ("pyhost-lh critical record", "[rwsgi:crit]"),
            // Between INFO and WARNING: rounds down to info.
            ("pyhost-lh level-25 record", "[rwsgi:info]"),
            // print() stays at error.
            ("pyhost-lh print line", "[rwsgi:error]"),
        ] {
            let lines = lines_with(&log, marker);
            assert_eq!(lines.len(), 1, "{mode:?} {marker}: {lines:?}\n{log}");
            assert!(
                lines[0].contains(tag) && lines[0].contains("[remote 127.0.0.1:"),
                "{mode:?} {marker}: {}",
                lines[0]
            );
        }
        // LogLevel rwsgi:info drops debug records.
        assert!(!log.contains("pyhost-lh debug record"), "{mode:?}\n{log}");
    }
    // A stricter LogLevel drops more: rwsgi:error keeps error and crit only.
    let apache = start(Mode::Daemon, "", "", "info rwsgi:error");
    get_json(&apache, "/app/log-levels");
    let log = apache.wait_for_log("pyhost-lh critical record", Duration::from_secs(5));
    assert!(log.contains("pyhost-lh error record"), "{log}");
    for dropped in ["pyhost-lh info record", "pyhost-lh warning record"] {
        assert!(!log.contains(dropped), "{dropped}\n{log}");
    }
}

#[test]
fn request_timeout_raised_by_the_app_gives_504_logged_at_info_without_traceback() {
    for mode in MODES {
        let apache = start(mode, "", "", "info");
        let resp = apache.get("/app/request-timeout");
        assert_with_log!(apache, resp.status == 504, "{mode:?}: {}", resp.status);
        assert!(resp.text().contains("Gateway Timeout"), "{}", resp.text());
        let line = log_line(
            &apache,
            "Request interrupted by RequestTimeout; thread recovered.",
        );
        assert!(line.contains("[rwsgi:info]"), "{line}");
        // After the head: the body is cut short, still without a traceback.
        let result = common::http::request(
            apache.port(),
            "GET",
            "/app/request-timeout-after-head",
            &[],
            b"",
        );
        if let Ok(resp) = result {
            assert!(resp.body.len() < 100, "{mode:?}: a complete body");
        }
        apache.wait_for_log(
            "Request interrupted by RequestTimeout after headers sent; response truncated.",
            Duration::from_secs(5),
        );
        let log = apache.error_log();
        assert!(!log.contains("Traceback"), "{mode:?}\n{log}");
        // The process keeps serving.
        assert_eq!(apache.get("/app/pid").status, 200);
    }
}

/// What `hash("mod_rwsgi hash probe")` is in another process of the module's Python (the
/// test venv's) started with PYTHONHASHSEED=`seed`.
fn reference_hash(seed: u32) -> i64 {
    let out = std::process::Command::new(common::test_venv().join("bin/python"))
        .args(["-c", "print(hash('mod_rwsgi hash probe'))"])
        .env("PYTHONHASHSEED", seed.to_string())
        .output()
        .expect("run the test venv's python");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn python_start_up_directives_reach_python_in_both_modes() {
    let server = "WSGIPythonOptimize 2\n\
                  WSGIDontWriteBytecode On\n\
                  WSGIPythonWarnings error::DeprecationWarning\n\
                  WSGIPythonWarnings ignore::UserWarning\n\
                  WSGIPythonHashSeed 123\n\
                  WSGIPythonEggs /tmp/rwsgi-embedded-eggs\n\
                  WSGISwitchInterval 0.003";
    for mode in MODES {
        let apache = start(
            mode,
            "python-eggs=/tmp/rwsgi-daemon-eggs switch-interval=0.002",
            server,
            "info",
        );
        let s = get_json(&apache, "/app/settings");
        assert_eq!(s["optimize"], 2, "{mode:?}: {s}");
        assert_eq!(s["debug"], false, "{s}");
        assert_eq!(s["asserts"].str(), "skipped", "{s}");
        assert!(s["docstring"].is_null(), "-OO strips docstrings: {s}");
        assert_eq!(s["dont_write_bytecode"], true, "{s}");
        assert_eq!(
            s["warnoptions"],
            serde_json::json!(["error::DeprecationWarning", "ignore::UserWarning"]),
            "{s}"
        );
        assert_eq!(s["hash_randomization"], 1, "{s}");
        assert_eq!(s["hash"].as_i64().unwrap(), reference_hash(123), "{s}");
        // As mod_wsgi: WSGIPythonEggs and WSGISwitchInterval are embedded mode's, daemons
        // take python-eggs= and switch-interval=.
        let (eggs, interval) = match mode {
            Mode::Daemon => ("/tmp/rwsgi-daemon-eggs", 0.002),
            Mode::Embedded => ("/tmp/rwsgi-embedded-eggs", 0.003),
        };
        assert_eq!(s["egg_cache"].str(), eggs, "{s}");
        assert_eq!(s["switch_interval"].as_f64().unwrap(), interval, "{s}");
        apache.wait_for_log(
            &format!("Python switch interval set to {interval} s"),
            Duration::from_secs(5),
        );
    }
}

#[test]
fn python_start_up_defaults_match_python() {
    for mode in MODES {
        let apache = start(mode, "", "", "info");
        let s = get_json(&apache, "/app/settings");
        assert_eq!(s["optimize"], 0, "{mode:?}: {s}");
        assert_eq!(s["debug"], true, "{s}");
        assert_eq!(s["asserts"].str(), "raised", "{s}");
        assert_eq!(s["docstring"].str(), "present", "{s}");
        // Off leaves Python's default, which follows PYTHONDONTWRITEBYTECODE in Apache's
        // environment (inherited from this test).
        let env_says = std::env::var_os("PYTHONDONTWRITEBYTECODE").is_some_and(|v| !v.is_empty());
        assert_eq!(s["dont_write_bytecode"], env_says, "{s}");
        assert_eq!(s["warnoptions"], serde_json::json!([]), "{s}");
        assert_eq!(s["hash_randomization"], 1, "{s}");
        assert!(s["egg_cache"].is_null(), "{s}");
        assert_eq!(s["switch_interval"].as_f64().unwrap(), 0.005, "{s}");
    }
    // A fixed seed gives the same hashes in every process; seed 0 turns randomisation off.
    let first = start(Mode::Daemon, "", "WSGIPythonHashSeed 0", "info");
    let s = get_json(&first, "/app/settings");
    assert_eq!(s["hash_randomization"], 0, "{s}");
    assert_eq!(s["hash"].as_i64().unwrap(), reference_hash(0), "{s}");
}

#[test]
fn destroy_interpreter_off_runs_shutdown_callbacks_but_not_atexit_or_finalisation() {
    // The processes that stop are the daemon, or the Apache children in embedded mode.
    let runs = [
        (Mode::Daemon, Mpm::Event),
        (Mode::Embedded, Mpm::Event),
        (Mode::Embedded, Mpm::Prefork),
    ];
    let cases = runs.iter().flat_map(|&(mode, mpm)| {
        [
            (mode, mpm, "", true),
            (mode, mpm, "WSGIDestroyInterpreter Off", false),
        ]
    });
    for (mode, mpm, setting, finalised) in cases {
        let mut apache = start_mpm(mode, mpm, "", setting, "info");
        assert_eq!(apache.get("/app/pid").status, 200);
        apache.stop_gracefully();
        let log = apache.error_log();
        assert!(
            log.contains("pyhost shutdown callback ran (process_stopping)"),
            "{mode:?} {mpm:?} {setting}\n{log}"
        );
        assert_eq!(
            log.contains("pyhost atexit handler ran"),
            finalised,
            "{mode:?} {mpm:?} {setting}\n{log}"
        );
        assert_eq!(
            log.contains("Not finalising Python (WSGIDestroyInterpreter Off)"),
            !finalised,
            "{mode:?} {mpm:?} {setting}\n{log}"
        );
        // Python was initialised by the thread that stops it (the process's main thread).
        assert!(
            !log.contains("initialised by another thread"),
            "{mode:?} {mpm:?} {setting}\n{log}"
        );
        // Every process stopped cleanly and at once (Apache logs a child that died by a
        // signal, or that it had to signal again).
        assert!(
            !log.contains("exit signal") && !log.contains("still did not exit"),
            "{mode:?} {mpm:?} {setting}\n{log}"
        );
    }
}

#[test]
fn embedded_python_started_by_a_request_also_stops_cleanly() {
    // With a daemon group defined, an Apache child starts Python on its first embedded
    // request, in a worker thread; the child's main thread stops it.
    let mut apache = start(
        Mode::Embedded,
        "",
        "WSGIDaemonProcess unused threads=1",
        "info",
    );
    assert_eq!(apache.get("/app/pid").status, 200);
    apache.stop_gracefully();
    let log = apache.error_log();
    assert!(
        log.contains("pyhost shutdown callback ran (process_stopping)"),
        "{log}"
    );
    assert!(log.contains("pyhost atexit handler ran"), "{log}");
    assert!(
        log.contains("Not finalising Python: it was initialised by another thread"),
        "{log}"
    );
    // The child exited by itself, at once.
    assert!(
        !log.contains("exit signal") && !log.contains("still did not exit"),
        "{log}"
    );
}
