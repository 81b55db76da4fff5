//! Issue 35: the daemon host (`rwsgi-daemon`) run by itself, as the daemon
//! manager execs it: it reads its plan from an inherited descriptor, starts the Python it
//! was built for, runs the same daemon code as a forked daemon (here a service-script group,
//! `threads=0`), and writes Apache-format lines to stderr at the plan's log level. No Apache
//! is involved: the host must not need one (it links no Apache symbol). Last, a real Apache
//! whose daemon manager execs the host (the test hook `RWSGI_TEST_DAEMON_HOST`) serves a
//! daemon-mode request from it, while without the hook a group on the module's own Python
//! runs in the manager's fork and needs no host.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mod_rwsgi::daemon::dispatcher::ServeSettings;
use mod_rwsgi::daemon::plan_wire::HostPlan;
use mod_rwsgi::daemon::serving_daemon::DaemonPlan;
use mod_rwsgi::logging::Level;
use mod_rwsgi::python::InterpreterSettings;

const HOST: &str = env!("CARGO_BIN_EXE_rwsgi-daemon");

/// A pipe whose read end the host inherits (no close-on-exec) and whose write end it does
/// not, so the host sees the end of the plan.
fn plan_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    nix::fcntl::fcntl(
        &read,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    (read, write)
}

/// Starts the host on `document` (the plan's bytes), its stderr collected by a thread.
fn start_host(document: &[u8]) -> (Child, std::thread::JoinHandle<String>) {
    let (read, write) = plan_pipe();
    let mut child = Command::new(HOST)
        .args(["--plan-fd", &read.as_raw_fd().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rwsgi-daemon");
    drop(read);
    let mut stderr = child.stderr.take().unwrap();
    let collector = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut w = std::fs::File::from(write);
    w.write_all(document).unwrap();
    drop(w);
    (child, collector)
}

fn wait_for_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Stops a host with SIGTERM (as its manager would) and returns its stderr, asserting that
/// it stopped in order (exit 0) within 20 s.
fn stop_host(mut child: Child, stderr: std::thread::JoinHandle<String>) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let log = stderr.join().unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stopped in order:\n{log}"
    );
    log
}

/// A `threads=0` group running `script`, with `env` for the script.
fn service_plan(script: &std::path::Path, env: Vec<(String, String)>) -> DaemonPlan {
    DaemonPlan {
        group: "svc".into(),
        listener_fd: -1,
        control_fd: None,
        setup: mod_rwsgi::daemon::spawn::ChildSetup {
            env,
            ..Default::default()
        },
        interpreter: InterpreterSettings {
            process_group: "svc".into(),
            threads: 0,
            ..InterpreterSettings::default()
        },
        serve: ServeSettings {
            group: "svc".into(),
            processes: 1,
            threads: 0,
            socket_timeout: Duration::from_secs(60),
            queue_timeout: None,
            maximum_requests: 0,
            maximum_rss: None,
            stack_size: None,
            send_buffer_size: None,
            receive_buffer_size: None,
        },
        preload: vec![(script.into(), String::new())],
        asgi_startup: Vec::new(),
        start_delay: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(5),
        graceful_timeout: Duration::from_secs(5),
        eviction_timeout: Duration::from_secs(5),
        timers: Default::default(),
        metrics: None,
        metrics_record: None,
        telemetry: None,
    }
}

/// A service script (`threads=0`) run by a host at `level`: the script writes its Python
/// version and pid to a marker file (named by `RWSGI_HOST_MARK`) and then sleeps until
/// stopped. Returns what it wrote, the host and its stderr.
fn run_service_host(
    dir: &std::path::Path,
    level: Level,
) -> (String, Child, std::thread::JoinHandle<String>) {
    let mark = dir.join("mark");
    let script = dir.join("service.py");
    std::fs::write(
        &script,
        "import os, sys, time\n\
         with open(os.environ['RWSGI_HOST_MARK'] + '.tmp', 'w') as f:\n\
         \x20   f.write('%d.%d %d' % (sys.version_info[0], sys.version_info[1], os.getpid()))\n\
         os.rename(os.environ['RWSGI_HOST_MARK'] + '.tmp', os.environ['RWSGI_HOST_MARK'])\n\
         while True:\n\
         \x20   time.sleep(0.05)\n",
    )
    .unwrap();
    let env = vec![(
        "RWSGI_HOST_MARK".to_string(),
        mark.to_string_lossy().into_owned(),
    )];
    let mut host = HostPlan::new(service_plan(&script, env), None);
    host.max_log_level = level;
    let (mut child, stderr) = start_host(&host.encode().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        if let Ok(text) = std::fs::read_to_string(&mark) {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the host exited ({status}):\n{}", stderr.join().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the service script did not run within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (seen, child, stderr)
}

#[test]
fn a_host_runs_a_service_daemon_on_its_python_and_logs_in_apache_format() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, child, stderr) = run_service_host(dir.path(), Level::Info);
    let own = InterpreterSettings::default().build_version;
    assert_eq!(
        seen,
        format!("{own} {}", child.id()),
        "the host's own process runs the script on the Python it was built for"
    );

    let pid = child.id();
    let log = stop_host(child, stderr);
    let line = log
        .lines()
        .find(|l| l.contains("RW0111:"))
        .unwrap_or_else(|| panic!("no RW0111 line at LogLevel info:\n{log}"));
    assert!(
        line.starts_with('[')
            && line.contains(&format!("] [rwsgi:info] [pid {pid}:tid "))
            && line.ends_with("service script stopped by SIGTERM (SystemExit)"),
        "{line}"
    );
}

#[test]
fn a_host_honours_the_plans_log_level() {
    // At LogLevel warn the same stop writes no info line.
    let dir = tempfile::tempdir().unwrap();
    let (_, child, stderr) = run_service_host(dir.path(), Level::Warning);
    let log = stop_host(child, stderr);
    assert!(
        !log.contains("RW0111:"),
        "an info line at LogLevel warn:\n{log}"
    );
}

#[test]
fn a_host_given_a_bad_plan_says_so_and_exits_unprepared() {
    let (mut child, stderr) = start_host(b"{\"version\": 1, \"plan\": \"not a plan\"}");
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let log = stderr.join().unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(
        log.contains("[rwsgi:crit]")
            && log.contains("RW0291: rwsgi-daemon")
            && log.contains("the daemon plan cannot be decoded"),
        "{log}"
    );
}

/// The daemon manager execs the host for a group (test hook only): the request is served by
/// a process whose executable is the host, which logs into Apache's error log.
#[test]
fn apache_serves_a_daemon_mode_request_from_an_execd_host() {
    let config = common::ApacheConfig::new("daemon-host");
    // A copy every user can run (the daemon drops to www-data after exec, before Python).
    let host = config.root().join("rwsgi-daemon");
    std::fs::copy(HOST, &host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let host = host.display().to_string();
    let (config, _) = config
        .env(mod_rwsgi::daemon::host_exec::TEST_HOST_VARIABLE, &host)
        .daemon_app(
            "host_exe.wsgi",
            "exechost",
            "processes=1 threads=2",
            "<Location /server-metrics>\n    SetHandler rwsgi-metrics\n    Require all granted\n</Location>",
        );
    let apache = config.start();
    let resp = apache.get("/app");
    let log = apache.error_log();
    assert_eq!(resp.status, 200, "{log}");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    let mut words = body.split_whitespace();
    let (exe, version, group) = (words.next(), words.next(), words.next());
    assert_eq!(
        exe,
        Some(host.as_str()),
        "served by the exec'd host: {body}\n{log}"
    );
    assert_eq!(
        version.map(str::to_string),
        Some(InterpreterSettings::default().build_version)
    );
    assert_eq!(group, Some("exechost"));
    // The host counts into the generation's metrics table, which it mapped from a memfd.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = String::from_utf8_lossy(&apache.get("/server-metrics").body).into_owned();
        let counted = scrape.lines().any(|l| {
            l.starts_with("rwsgi_requests_total{")
                && l.contains("process_group=\"exechost\"")
                && l.contains("class=\"2xx\"")
                && l.ends_with(" 1")
        });
        if counted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request was not counted:\n{scrape}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The host's own lines reach Apache's error log, at its LogLevel (info).
    assert!(
        log.lines()
            .any(|l| l.contains("[rwsgi:info]") && l.contains("RW0030: daemon process 'exechost'")),
        "{log}"
    );
}

/// A group on the module's own Python needs no daemon host: with none beside the module (a
/// copy of it alone in a directory) `apache2 -t` passes and the daemon that serves the
/// request is the daemon manager's fork of Apache, not an exec'd `rwsgi-daemon`.
#[test]
fn daemons_on_the_modules_own_python_run_in_the_fork_without_a_host() {
    if std::env::var_os("RWSGI_TEST_VIA_HOST").is_some() {
        eprintln!("skipped: RWSGI_TEST_VIA_HOST makes every daemon exec the host");
        return;
    }
    let config = common::ApacheConfig::new("host-none").without_rwsgi();
    let modules = config.root().join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    let module = modules.join("mod_rwsgi.so");
    std::fs::copy(common::module_path(), &module).unwrap();
    std::fs::set_permissions(
        &modules,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (config, _) = config
        .conf(&format!("LoadModule rwsgi_module {}\n", module.display()))
        .daemon_app("host_exe.wsgi", "forked", "processes=1 threads=2", "");
    let (ok, out) = config.configtest();
    assert!(
        ok,
        "apache2 -t needs no daemon host for the module's own Python:\n{out}"
    );
    let apache = config.start();
    let resp = apache.get("/app");
    let log = apache.error_log();
    assert_eq!(resp.status, 200, "{log}");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    let exe = body.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        std::fs::canonicalize(exe).ok(),
        std::fs::canonicalize(common::APACHE_BIN).ok(),
        "served by {exe}, not by a daemon forked from Apache:\n{log}"
    );
    assert!(!log.contains("RW0296"), "{log}");
}

/// Issue 35: a group whose venv was made with another Python than the module's is served by
/// that venv's own daemon host, on that Python. Needs a host built for another Python
/// (`RWSGI_OTHER_PYTHON_HOST`, e.g. `PYO3_PYTHON=python3.12 cargo build --release --bin
/// rwsgi-daemon`) and that Python where www-data can read it (`RWSGI_OTHER_PYTHON`); skipped
/// (saying so) without them.
#[test]
fn a_venv_of_another_python_is_served_by_its_own_host() {
    let (Some(host), Some(python)) = (
        std::env::var_os("RWSGI_OTHER_PYTHON_HOST"),
        std::env::var_os("RWSGI_OTHER_PYTHON"),
    ) else {
        eprintln!("skipped: set RWSGI_OTHER_PYTHON_HOST and RWSGI_OTHER_PYTHON");
        return;
    };
    let config = common::ApacheConfig::new("other-python");
    let venv = config.root().join("venv");
    common::run(
        Command::new(&python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv),
    );
    let venv_host = venv.join("bin/rwsgi-daemon");
    std::fs::copy(&host, &venv_host).unwrap();
    common::run(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(config.root()),
    );
    let probe = Command::new(&venv_host).arg("--probe").output().unwrap();
    let probe = String::from_utf8_lossy(&probe.stdout).into_owned();
    let version = probe
        .split_whitespace()
        .find_map(|w| w.strip_prefix("python="))
        .expect("the host's probe names its Python")
        .to_string();
    assert_ne!(
        version,
        InterpreterSettings::default().build_version,
        "RWSGI_OTHER_PYTHON_HOST must be built for another Python than the module's"
    );
    let app = config.install_app("host_exe.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess other processes=1 threads=2 python-home={}\n\
             WSGIProcessGroup other\nWSGIScriptAlias /app {}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
            venv.display(),
            app.display()
        ))
        .start();
    let resp = apache.get("/app");
    let log = apache.error_log();
    assert_eq!(resp.status, 200, "{log}");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    let mut words = body.split_whitespace();
    let (exe, served_version) = (words.next(), words.next());
    assert_eq!(
        exe.map(std::path::PathBuf::from),
        Some(venv_host.clone()),
        "served by the venv's host: {body}\n{log}"
    );
    assert_eq!(served_version, Some(version.as_str()), "{body}\n{log}");
}
