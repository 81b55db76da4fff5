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

/// Whether the Python this build embeds has a static libpython (sysconfig's LIBPL/LIBRARY),
/// which build.rs then links into the daemon host.
fn python_has_static_libpython() -> bool {
    let python = InterpreterSettings::default().build_executable;
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, sysconfig as s\n\
             print(os.path.isfile(os.path.join(s.get_config_var('LIBPL') or '', \
             s.get_config_var('LIBRARY') or '')))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// The host links its Python's static libpython, non-PIE and lazily bound, where the Python
/// has one (an exec'd daemon then relocates no libpython: docs/PERFORMANCE.md), and C
/// extension modules of the standard library and of the venv still load and work in it.
#[test]
fn an_execd_host_with_its_libpython_linked_in_loads_extension_modules() {
    let dynamic = Command::new("readelf")
        .args(["-d", "-h", HOST])
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&dynamic.stdout).into_owned();
    // Debian's libpython3.13.a and 3.14.a lack the HACL objects their hash modules need
    // (undefined `_Py_LibHacl_*`): the host cannot link them, and the build says so.
    let link = option_env!("RWSGI_HOST_LIBPYTHON_LINK").unwrap_or("");
    if python_has_static_libpython() && link.contains("undefined reference") {
        println!("skipped the static-libpython check: the build says {link}");
    } else if python_has_static_libpython() {
        assert!(
            !dynamic.contains("libpython"),
            "{HOST} needs the shared libpython although its Python has a static one:\n{dynamic}"
        );
        assert!(
            dynamic.contains("EXEC (Executable file)"),
            "{HOST} is not a non-PIE executable:\n{dynamic}"
        );
        // Bound lazily, as Debian's python3: no IFUNC resolution of all of libm at start.
        assert!(
            !dynamic.contains("BIND_NOW") && !dynamic.contains("Flags: NOW"),
            "{HOST} binds its symbols at start:\n{dynamic}"
        );
    } else {
        println!("skipped the static-libpython check: the build's Python has no libpython.a");
    }
    let config = common::ApacheConfig::new("daemon-host-ext");
    let host = config.root().join("rwsgi-daemon");
    std::fs::copy(HOST, &host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let venv = common::test_venv();
    let (config, _) = config
        .env(
            mod_rwsgi::daemon::host_exec::TEST_HOST_VARIABLE,
            &host.display().to_string(),
        )
        .daemon_app(
            "host_imports.wsgi",
            "exts",
            &format!("processes=1 threads=2 python-home={}", venv.display()),
            "",
        );
    let apache = config.start();
    let resp = apache.get("/app");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert_eq!(body, "all loaded", "{}", apache.error_log());
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

/// Issue 35: an exec'd host's lines go through Apache's logger in the daemon manager, as a
/// forked daemon's do: a piped ErrorLog gets them in the configured ErrorLogFormat, the main
/// server's LogLevel filters them (a virtual host's more verbose LogLevel does not let the
/// host's info lines through), the host's raw stderr arrives line by line (RW0270), a
/// traceback arrives, and a host killed right after writing loses no line: its last lines
/// come before the manager's line about its death.
#[test]
fn an_execd_hosts_lines_go_through_apaches_logger() {
    let config = common::ApacheConfig::new("host-log");
    let host = config.root().join("rwsgi-daemon");
    std::fs::copy(HOST, &host).unwrap();
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log_path = config.error_log_path();
    let (config, _) = config
        .env(
            mod_rwsgi::daemon::host_exec::TEST_HOST_VARIABLE,
            &host.display().to_string(),
        )
        .conf(&format!(
            "ErrorLog \"|$/bin/cat >> {}\"\n\
             ErrorLogFormat \"HOSTFMT [%l] [%m] %M\"\n\
             LogLevel notice\n\
             <VirtualHost 127.0.0.1:9>\n    ServerName verbose.invalid\n    LogLevel info\n</VirtualHost>\n",
            log_path.display()
        ))
        .daemon_app("host_log.wsgi", "hostlog", "processes=1 threads=2", "");
    let apache = config.start();
    let wait_for = |what: &dyn Fn(&str) -> bool, why: &str| -> String {
        apache.wait_for_log_where(what, why, Duration::from_secs(20))
    };
    let resp = apache.get("/app?boom");
    assert_eq!(resp.status, 500, "{}", apache.error_log());
    let resp = apache.get("/app");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    let pid = resp.text();
    let log = wait_for(
        &|log| log.contains("HOSTAPP raw on fd 2") && log.matches("HOSTAPP via print").count() >= 2,
        "the host's lines did not arrive",
    );
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{log}"))
            .to_string()
    };
    // The application's lines, as a forked daemon's: `[remote <client>] text`.
    for text in ["HOSTAPP via wsgi.errors", "HOSTAPP via print"] {
        let l = line(text);
        assert!(
            l.starts_with("HOSTFMT [error] [rwsgi] [remote 127.0.0.1:") && l.ends_with(text),
            "{l}\n{log}"
        );
    }
    assert_eq!(
        line("HOSTAPP raw on fd 2"),
        format!(
            "HOSTFMT [error] [rwsgi] RW0270: daemon process 'hostlog' (pid {pid}) wrote to \
             stderr: HOSTAPP raw on fd 2"
        )
    );
    assert!(line("Traceback (most recent call last)").starts_with("HOSTFMT [error] [rwsgi] "));
    assert!(line("RuntimeError: HOSTAPP boom").starts_with("HOSTFMT [error] [rwsgi] "));
    assert!(
        log.lines()
            .filter(|l| l.contains("HOSTAPP") || l.contains("RW0"))
            .all(|l| l.starts_with("HOSTFMT [")),
        "every line in the ErrorLogFormat:\n{log}"
    );
    // LogLevel notice: the host's info line (RW0030) is filtered as a forked daemon's is.
    assert!(!log.contains("RW0030:"), "{log}");

    // Killed right after writing: the last lines arrive, before the line about its death.
    let _ = apache.get("/app?crash");
    let log = wait_for(
        &|log| log.contains(&format!("(pid {pid}) was killed by SIGKILL")),
        "the manager did not log the host's death",
    );
    let index = |needle: &str| {
        log.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{log}"))
    };
    let death = index(&format!(
        "RW0023: mod_rwsgi: daemon process 'hostlog' #0 (pid {pid})"
    ));
    assert!(index("HOSTAPP last words") < death, "{log}");
    assert!(
        index("wrote to stderr: HOSTAPP raw last words") < death,
        "{log}"
    );
}

/// The Webware pin of tests/apps/requirements.txt (`Webware-for-Python==X`).
fn webware_requirement() -> String {
    let text =
        std::fs::read_to_string(common::repo_dir().join("tests/apps/requirements.txt")).unwrap();
    text.lines()
        .find(|l| l.starts_with("Webware-for-Python=="))
        .expect("Webware pinned in tests/apps/requirements.txt")
        .trim()
        .to_string()
}

/// `major.minor` of a Python executable.
fn python_version(python: &std::path::Path) -> String {
    let out = Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 35's three-Python test: one Apache, one module built for its Python, and beside
/// the group on the module's own Python (the test venv) one group per Python named in
/// `RWSGI_OTHER_PYTHONS` (executables or versions: "3.13 3.15" means /usr/bin/python3.13
/// and /usr/bin/python3.15), each on a venv of that Python into which `pip install` put
/// mod_rwsgi from this checkout (its daemon host `bin/rwsgi-daemon`) and the pinned Webware.
/// Each group serves the deployment guide's Webware app and answers its own `sys.version`
/// from its own process, and touching its script replaces that process. Cargo's output for
/// the pip builds is kept in `$CARGO_TARGET_DIR/pip-<version>`. `make test-pythons` runs it
/// in the sid chroot (tests/pythons.sh, RWSGI_OTHER_PYTHONS); skipped, saying so, without
/// the variable.
#[test]
fn venvs_of_other_pythons_serve_webware_and_reload_each_on_its_own_python() {
    let Some(others) = std::env::var_os("RWSGI_OTHER_PYTHONS") else {
        eprintln!("skipped: set RWSGI_OTHER_PYTHONS (e.g. \"3.13 3.15\")");
        return;
    };
    let own = InterpreterSettings::default().build_version;
    let others: Vec<std::path::PathBuf> = others
        .to_string_lossy()
        .split_whitespace()
        .map(|p| match p.chars().next() {
            Some('/') => p.into(),
            _ => format!("/usr/bin/python{p}").into(),
        })
        .collect();
    let config = common::ApacheConfig::new("other-pythons");
    let root = config.root().to_path_buf();
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::repo_dir().join("target"));
    let webware = webware_requirement();
    // pip builds a directory in place: give it a copy of the sources (without build/ and
    // target/, which are the checkout's own).
    let source = root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    common::run(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' --exclude=./target --exclude=./build --exclude=./.git -cf - . | tar -C '{}' -xf -",
        common::repo_dir().display(),
        source.display()
    )));
    // (tag, venv, Python version, expected executable of its daemons)
    let mut groups = vec![(
        "own".to_string(),
        common::test_venv(),
        own.clone(),
        None::<std::path::PathBuf>,
    )];
    for python in &others {
        let version = python_version(python);
        assert_ne!(
            version,
            own,
            "{} is the module's own Python",
            python.display()
        );
        let tag = format!("py{}", version.replace('.', ""));
        let venv = root.join(format!("venv-{tag}"));
        common::run(Command::new(python).args(["-m", "venv"]).arg(&venv));
        let started = Instant::now();
        let pip = |args: &[&str]| {
            let mut cmd = Command::new(venv.join("bin/pip"));
            cmd.args(["install", "-q", "--disable-pip-version-check"])
                .args(args)
                .env_remove("PYO3_PYTHON")
                .env_remove("RWSGI_SO")
                .env("CARGO_TARGET_DIR", cache.join(format!("pip-{version}")));
            common::run(&mut cmd);
        };
        pip(&[&source.display().to_string()]);
        pip(&[&webware]);
        eprintln!(
            "venv of Python {version} with mod_rwsgi and {webware} in {} s",
            started.elapsed().as_secs()
        );
        let host = venv.join("bin/rwsgi-daemon");
        assert!(host.is_file(), "pip installed no {}", host.display());
        groups.push((tag, venv, version, Some(host)));
    }
    let apps = root.join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    let mut conf = String::new();
    for (tag, venv, _, _) in &groups {
        let work = root.join(format!("webware-{tag}"));
        common::run(
            Command::new(venv.join("bin/webware"))
                .arg("make")
                .arg(&work),
        );
        common::run(
            Command::new(venv.join("bin/webware"))
                .args(["make", "-g", "www-data"])
                .arg(&work),
        );
        let script = apps.join(format!("version-{tag}.wsgi"));
        std::fs::copy(common::repo_dir().join("tests/apps/host_exe.wsgi"), &script).unwrap();
        conf.push_str(&format!(
            "WSGIDaemonProcess {tag} processes=1 threads=4 python-home={venv}\n\
             WSGIScriptAlias /{tag}/version {script} process-group={tag}\n\
             Alias /{tag}/static {work}/Static\n\
             WSGIScriptAlias /{tag} {work}/Scripts/WSGIScript.py process-group={tag}\n\
             <Directory {work}>\n    Require all granted\n</Directory>\n",
            venv = venv.display(),
            script = script.display(),
            work = work.display(),
        ));
    }
    conf.push_str(&format!(
        "<Directory {}>\n    Require all granted\n</Directory>\n",
        apps.display()
    ));
    common::run(Command::new("chmod").args(["-R", "a+rX"]).arg(&root));
    let apache = config.conf(&conf).start();
    for (tag, venv, version, host) in &groups {
        let resp = apache.get_until(&format!("/{tag}/version"), Duration::from_secs(30), |r| {
            r.status == 200
        });
        let body = resp.text();
        let words: Vec<&str> = body.split_whitespace().collect();
        assert_eq!(words.get(1), Some(&version.as_str()), "{tag}: {body}");
        assert_eq!(words.get(2), Some(&tag.as_str()), "{tag}: {body}");
        match host {
            Some(host) => assert_eq!(
                words.first().map(std::path::PathBuf::from).as_ref(),
                Some(host),
                "{tag} ({}): served by its venv's host: {body}",
                venv.display()
            ),
            None => assert_eq!(
                words.first().and_then(|e| std::fs::canonicalize(e).ok()),
                std::fs::canonicalize(common::APACHE_BIN).ok(),
                "{tag}: the module's own Python runs in the fork: {body}"
            ),
        }
        let page = apache.get_until(&format!("/{tag}/"), Duration::from_secs(30), |r| {
            r.status == 200
        });
        assert!(
            page.text().contains("Webware for Python"),
            "{tag}: not Webware's page:\n{}",
            page.text()
        );
        // Touching the script replaces the group's process (warm), on the same Python.
        let pid = words[3].to_string();
        let script = root.join("apps").join(format!("version-{tag}.wsgi"));
        std::fs::File::options()
            .write(true)
            .open(&script)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + Duration::from_secs(2))
            .unwrap();
        let resp = apache.get_until(&format!("/{tag}/version"), Duration::from_secs(60), |r| {
            r.status == 200 && r.text().split_whitespace().nth(3) != Some(pid.as_str())
        });
        let body = resp.text();
        assert_eq!(
            body.split_whitespace().nth(1),
            Some(version.as_str()),
            "{tag} after the reload: {body}"
        );
    }
}
