//! The test harness itself: a port taken between choosing it and Apache binding it is
//! retried on another port instead of failing the test.

mod common;

use std::net::TcpListener;

use common::ApacheConfig;

#[test]
fn a_taken_port_is_retried_on_another() {
    let mut config = ApacheConfig::new("harness");
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    config.port = taken;
    let apache = config.start();
    assert_ne!(apache.port(), taken);
    let resp = apache.get("/static.txt");
    assert_eq!(resp.status, 200);
    drop(squatter);
}

/// `make test-pythons` fails on any Apache crash but Apache's own forced-stop crash
/// (tests/pythons.sh, report_cores). gdb traces of real cores of that crash (trixie's Apache
/// 2.4, cores of the asgi suite's Apaches, the sysroot taken out of their paths) are told
/// from crashes that only look like it.
#[test]
fn the_core_report_tells_apaches_forced_stop_crash_from_any_other() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let classify = |trace: &str| -> bool {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), trace).unwrap();
        let status = std::process::Command::new("bash")
            .arg(dir.join("pythons.sh"))
            .arg("--is-forced-stop-crash")
            .arg(file.path())
            .status()
            .unwrap();
        match status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("tests/pythons.sh --is-forced-stop-crash: {status}"),
        }
    };
    for name in [
        // The main thread faulted in apr_os_sock_get and is the core's current thread.
        "forced-stop-main-thread-current.txt",
        // The core's current thread is a worker that was exiting (in free).
        "forced-stop-exiting-thread-current.txt",
        // Apache's SIGSEGV handler re-raised the signal; another thread took it.
        "forced-stop-signal-re-raised.txt",
    ] {
        let trace = std::fs::read_to_string(dir.join("core_traces").join(name)).unwrap();
        assert!(classify(&trace), "{name}: not told as Apache's own crash");
        // The same cores with mod_rwsgi or Python in the crashing thread are not.
        let first_frame = trace.lines().find(|l| l.starts_with("#0 ")).unwrap();
        let in_rwsgi = first_frame.replacen(
            " in ",
            " in mod_rwsgi::apache::hooks::handler () at src/apache/hooks.rs:1\n#1  0x0 in ",
            1,
        );
        assert!(
            !classify(&trace.replacen(first_frame, &in_rwsgi, 1)),
            "{name} + rwsgi"
        );
        let in_python = first_frame.replacen(
            " in ",
            " in _PyObject_Free () from /lib/libpython3.13.so.1.0\n#1  0x0 in ",
            1,
        );
        assert!(
            !classify(&trace.replacen(first_frame, &in_python, 1)),
            "{name} + python"
        );
        // Without a thread in apr_os_sock_get, or with it not called by the event MPM.
        let no_sock_get: String = trace
            .lines()
            .filter(|l| !l.contains("apr_os_sock_get"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!classify(&no_sock_get), "{name} without apr_os_sock_get");
        assert!(
            !classify(&trace.replace("mod_mpm_event.so", "mod_other.so")),
            "{name} not in the event MPM"
        );
    }
}
