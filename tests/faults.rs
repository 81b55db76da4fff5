//! Faults outside the request: a frozen (SIGSTOPped) daemon, a script that raises while it
//! is imported, a socket directory that does not exist. Each must end in a clear status and
//! log line, never a hang; kill -9 of a daemon is covered in tests/lifecycle.rs.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{APACHE_BIN, ApacheConfig};

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Resumes and kills a daemon this test froze, should the test fail before Apache stops it.
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        if process_exists(self.0) {
            // SAFETY: the daemon process this test stopped with SIGSTOP.
            unsafe {
                libc::kill(self.0, libc::SIGCONT);
                libc::kill(self.0, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_stopped_daemon_gives_504_by_socket_timeout_and_apache_still_stops() {
    let (config, _) = ApacheConfig::new("sigstop").daemon_app(
        "probe.wsgi",
        "probe",
        "threads=2 socket-timeout=3 shutdown-timeout=2",
        "",
    );
    let mut apache = config.start();
    let pid: i32 = apache.get("/app/pid").text().parse().unwrap();
    let _thaw = Thaw(pid);
    // SAFETY: SIGSTOP to the daemon process this test's Apache started.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    // The stop is asynchronous: on a busy machine the daemon could still answer a request
    // sent at once. Wait until the kernel reports every thread of it stopped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_threads_stopped(pid) {
        assert!(Instant::now() < deadline, "daemon {pid} did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let port = apache.port();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let resp = common::http::request(port, "GET", "/app/pid", &[], b"");
                (resp.map(|r| r.status).ok(), start.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (status, took) = client.join().unwrap();
        assert_eq!(status, Some(504), "{}", apache.error_log());
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }
    apache.wait_for_log("socket-timeout=3 s expired", Duration::from_secs(5));
    // Stopping Apache must not wait for the frozen daemon forever: after shutdown-timeout it
    // is killed.
    let start = Instant::now();
    let status = apache.stop().expect("apache stopped");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "stop took {took:?} ({status})"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && is_not_zombie(pid) {
        assert!(
            Instant::now() < deadline,
            "the frozen daemon {pid} outlived Apache\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state letter of a process or thread from its `stat` file.
fn state_of(stat_path: &std::path::Path) -> Option<String> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    Some(s.rsplit(')').next()?.split_whitespace().next()?.to_string())
}

/// Whether every thread of `pid` is stopped (state T).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .all(|t| state_of(&t.path().join("stat")).as_deref() == Some("T"))
}

fn is_not_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_script_raising_at_import_gives_503_backs_off_and_recovers_once_fixed() {
    let (config, app) = ApacheConfig::new("import-error").daemon_app(
        "raise_at_import.wsgi",
        "broken",
        "threads=2",
        "",
    );
    let apache = config.start();
    let resp = apache.get("/app/");
    assert_eq!(resp.status, 503, "{}", apache.error_log());
    let log = apache.wait_for_log(
        "raise_at_import: configuration is broken on purpose",
        Duration::from_secs(5),
    );
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    // Right after a failure the script is not run again: a flood of requests does not
    // re-import a broken app each time.
    assert_eq!(apache.get("/app/").status, 503);
    let log = apache.wait_for_log("failed to load; not retrying", Duration::from_secs(5));
    assert_eq!(
        log.matches("raise_at_import: configuration is broken on purpose")
            .count(),
        // The raise line appears in the traceback's source line and in the exception line.
        2,
        "the broken script ran more than once:\n{log}"
    );
    // Fixed (the write changes its mtime): the next request loads it at once.
    std::fs::write(
        &app,
        "def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'fixed']\n",
    )
    .unwrap();
    let file = std::fs::File::options().write(true).open(&app).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(2))
        .unwrap();
    let resp = apache.get("/app/");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert_eq!(resp.text(), "fixed");
}

#[test]
fn a_missing_socket_directory_is_a_clear_error_at_start() {
    let config = ApacheConfig::new("sockdir");
    let missing = config.root().join("no-such-dir");
    let (text, _config) = start_must_fail_with_socket_prefix(config, &missing);
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("WSGISocketPrefix"),
        "the error must name the directory and the directive:\n{text}"
    );
}

/// Root may write anywhere, so "unwritable" is made with the immutable attribute.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn an_unwritable_socket_directory_is_a_clear_error_at_start() {
    let config = ApacheConfig::new("sockdir-ro");
    let dir = config.root().join("readonly");
    std::fs::create_dir_all(&dir).unwrap();
    let made = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&dir)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(made.success(), "chattr +i {} failed", dir.display());
    let guard = Immutable(dir.clone());
    let (text, config) = start_must_fail_with_socket_prefix(config, &dir);
    // Mutable again before the temporary directory is removed.
    drop(guard);
    drop(config);
    assert!(
        text.contains(&dir.display().to_string())
            && text.contains("WSGISocketPrefix")
            && text.contains("not permitted"),
        "the error must name the directory, the directive and the reason:\n{text}"
    );
}

/// Starts Apache with WSGISocketPrefix in `dir`; it must exit with an error. Returns its
/// output and error log, and the configuration (which owns the temporary directory).
fn start_must_fail_with_socket_prefix(
    config: ApacheConfig,
    dir: &std::path::Path,
) -> (String, ApacheConfig) {
    let app = config.install_app("probe.wsgi");
    let config = config.conf(&format!(
        "WSGISocketPrefix {}/wsgi\nWSGIDaemonProcess probe threads=1\n\
         WSGIProcessGroup probe\nWSGIScriptAlias /app {}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        dir.display(),
        app.display()
    ));
    let conf = config.write();
    let mut child = std::process::Command::new(APACHE_BIN)
        .process_group(0)
        .arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("apache2 kept running with an unusable WSGISocketPrefix");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(config.error_log_path()).unwrap_or_default()
    );
    assert!(!status.success(), "{text}");
    (text, config)
}
