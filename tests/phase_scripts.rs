//! Scripts outside WSGIScriptAlias, against a real Apache: WSGIHandlerScript selected by
//! SetHandler, AddHandler and RewriteRule [H=] (preloaded by WSGIImportScript),
//! WSGIRestrictProcess, service scripts (threads=0), WSGIErrorOverride, and the
//! configuration `mod_wsgi-express setup-server` (pip package mod_wsgi 6) writes, with only
//! its LoadModule line changed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{ApacheConfig, MODULE_PYTHON, TempDir, free_port, module_path, test_venv};

/// `key=value` lines of a phases.wsgi answer.
fn field(body: &str, key: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in:\n{body}"))
        .to_string()
}

/// The body of `path`, which must answer 200 (else the failure shows the error log).
fn ok_body(apache: &common::Apache, path: &str) -> String {
    let resp = apache.get(path);
    let body = resp.text();
    assert_with_log!(
        apache,
        resp.status == 200,
        "{path}: {}\n{body}",
        resp.status
    );
    body
}

#[test]
fn handler_script_runs_handle_request_via_sethandler_addhandler_and_rewrite() {
    let config = ApacheConfig::new("handlerscript").module("rewrite");
    let script = config.install_app("phases.wsgi");
    fs::create_dir_all(config.root().join("htdocs/res")).unwrap();
    fs::write(
        config.root().join("htdocs/res/real.res"),
        "a resource file\n",
    )
    .unwrap();
    let conf = format!(
        "WSGIDaemonProcess phases threads=2\n\
         WSGIHandlerScript phase-handler {s} process-group=phases application-group=%{{GLOBAL}}\n\
         WSGIHandlerScript embedded-handler {s} process-group=%{{GLOBAL}} application-group=emb\n\
         WSGIImportScript {s} process-group=phases application-group=%{{GLOBAL}}\n\
         # The callable of a handler script is always handle_request.\n\
         WSGICallableObject application\n\
         <Location /set>\n    SetHandler phase-handler\n</Location>\n\
         <Location /emb>\n    SetHandler embedded-handler\n</Location>\n\
         <Directory @DIR@/htdocs/res>\n    AddHandler phase-handler .res\n</Directory>\n\
         RewriteEngine On\n\
         RewriteRule ^/rw/ - [H=phase-handler]\n",
        s = script.display()
    );
    let apache = config.conf(&conf).start();
    // Preloaded by WSGIImportScript before any request.
    apache.wait_for_log(
        &format!("WSGI script '{}'", script.display()),
        Duration::from_secs(15),
    );
    let mut daemon_pids = Vec::new();
    for (path, filename) in [
        // Apache's file is the longest existing prefix of the path, or the file itself.
        ("/set/a/b?x=1", "htdocs/set"),
        ("/res/missing.res", "htdocs/res/missing.res"),
        ("/res/real.res", "htdocs/res/real.res"),
        ("/rw/page", "htdocs/rw"),
    ] {
        let body = ok_body(&apache, path);
        assert_eq!(field(&body, "via"), "handle_request", "{path}");
        assert_eq!(
            field(&body, "mod_wsgi.handler_script"),
            script.display().to_string(),
            "{path}"
        );
        assert_eq!(field(&body, "mod_wsgi.request_handler"), "phase-handler");
        assert_eq!(field(&body, "mod_wsgi.callable_object"), "handle_request");
        assert_eq!(field(&body, "mod_wsgi.process_group"), "phases", "{path}");
        assert_eq!(field(&body, "mod_wsgi.application_group"), "", "{path}");
        // SCRIPT_FILENAME is the file the URL maps to, not the handler script.
        let expected = config_root(&apache).join(filename);
        assert_eq!(
            field(&body, "SCRIPT_FILENAME"),
            expected.display().to_string(),
            "{path}"
        );
        daemon_pids.push(field(&body, "pid"));
    }
    // Embedded mode: the same script in the Apache child, in application group "emb".
    let body = ok_body(&apache, "/emb/x");
    assert_eq!(field(&body, "via"), "handle_request");
    assert_eq!(field(&body, "mod_wsgi.process_group"), "");
    assert_eq!(field(&body, "mod_wsgi.application_group"), "emb");
    assert_eq!(field(&body, "mod_wsgi.request_handler"), "embedded-handler");
    assert!(!daemon_pids.contains(&field(&body, "pid")));
    // A URL no handler names is Apache's as before.
    let resp = apache.get("/static.txt");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "static file served by Apache\n");
    // Loaded once: the preload served every request of the daemon.
    let loads = apache
        .error_log()
        .matches(&format!("Loading WSGI script '{}'", script.display()))
        .count();
    assert_with_log!(apache, loads == 2, "loads: {loads} (preload + embedded)");
}

fn config_root(apache: &common::Apache) -> PathBuf {
    apache.config.root().to_path_buf()
}

#[test]
fn restrict_process_refuses_other_groups_with_403_naming_them() {
    let config = ApacheConfig::new("restrictproc");
    let app = config.install_app("phases.wsgi");
    let conf = format!(
        "WSGIDaemonProcess allowed threads=1\n\
         WSGIDaemonProcess other threads=1\n\
         WSGIScriptAlias /ok {a} process-group=allowed application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /denied {a} process-group=other application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /embedded {a}\n\
         WSGIScriptAlias /embedded-allowed {a}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
         <Location />\n    WSGIRestrictProcess allowed\n</Location>\n\
         <Location /embedded-allowed>\n    WSGIRestrictProcess allowed %{{GLOBAL}}\n</Location>\n",
        a = app.display()
    );
    let apache = config.conf(&conf).start();
    let resp = apache.get("/ok/x");
    assert_with_log!(apache, resp.status == 200, "/ok: {}", resp.status);
    assert_eq!(field(&resp.text(), "mod_wsgi.process_group"), "allowed");
    let resp = apache.get("/denied/x");
    assert_with_log!(apache, resp.status == 403, "/denied: {}", resp.status);
    apache.wait_for_log(
        "daemon process group 'other' may not be used",
        Duration::from_secs(5),
    );
    let resp = apache.get("/embedded/x");
    assert_with_log!(apache, resp.status == 403, "/embedded: {}", resp.status);
    apache.wait_for_log(
        "daemon process group '%{GLOBAL} (embedded mode)' may not be used",
        Duration::from_secs(5),
    );
    let resp = apache.get("/embedded-allowed/x");
    assert_with_log!(
        apache,
        resp.status == 200,
        "/embedded-allowed: {}",
        resp.status
    );
    assert_eq!(field(&resp.text(), "mod_wsgi.process_group"), "");
}

#[test]
fn error_override_replaces_app_error_bodies_in_daemon_mode_only() {
    let config = ApacheConfig::new("erroroverride");
    let app = config.install_app("phases.wsgi");
    let conf = format!(
        "WSGIDaemonProcess errs threads=2\n\
         ErrorDocument 404 \"apache error page 404\"\n\
         ErrorDocument 500 \"apache error page 500\"\n\
         WSGIScriptAlias /on {a} process-group=errs application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /off {a} process-group=errs application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /embedded {a} process-group=%{{GLOBAL}} application-group=%{{GLOBAL}}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
         <Location /on>\n    WSGIErrorOverride On\n</Location>\n\
         <Location /off>\n    WSGIErrorOverride Off\n</Location>\n\
         <Location /embedded>\n    WSGIErrorOverride On\n</Location>\n",
        a = app.display()
    );
    let apache = config.conf(&conf).start();
    for code in [404u16, 500] {
        let resp = apache.get(&format!("/on/status/{code}"));
        let body = resp.text();
        assert_with_log!(apache, resp.status == code, "/on {code}: {}", resp.status);
        assert!(
            body.contains(&format!("apache error page {code}")),
            "{body}"
        );
        assert!(!body.contains("app body"), "{body}");
        assert_eq!(resp.header("X-From-App"), None);
        for prefix in ["/off", "/embedded"] {
            let resp = apache.get(&format!("{prefix}/status/{code}"));
            assert_eq!(resp.status, code, "{prefix}");
            assert_eq!(
                resp.text(),
                format!("app body for status {code}\n"),
                "{prefix}"
            );
            assert_eq!(resp.header("X-From-App"), Some("yes"), "{prefix}");
        }
    }
    // Success responses pass unchanged, and the connection to the daemon stays usable.
    for _ in 0..3 {
        let resp = apache.get("/on/hello");
        assert_eq!(resp.status, 200);
        assert_eq!(field(&resp.text(), "via"), "application");
        let resp = apache.get("/on/status/404");
        assert_eq!(resp.status, 404);
    }
}

/// Markers service_script.py left: (pid, what) for files `service-PID.what`.
fn service_markers(dir: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("service-") {
            if let Some((pid, what)) = rest.split_once('.') {
                out.push((pid.parse().unwrap(), what.to_string()));
            }
        }
    }
    out
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn started_pids(markers: &Path) -> Vec<u32> {
    service_markers(markers)
        .into_iter()
        .filter(|(_, w)| w == "started")
        .map(|(p, _)| p)
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for this purpose: it runs nothing.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
}

#[test]
fn service_script_is_supervised_restarted_and_stopped_with_systemexit() {
    let config = ApacheConfig::new("servicescript");
    let markers = config.markers_dir();
    let script = config.install_app("service_script.py");
    let conf = format!(
        "WSGIDaemonProcess sidecar threads=0\n\
         WSGIImportScript {} process-group=sidecar application-group=%{{GLOBAL}}\n",
        script.display()
    );
    let mut apache = config.conf(&conf).start();
    let limit = Duration::from_secs(20);
    let first = wait_until("first start", limit, || {
        started_pids(&markers).first().copied()
    });
    // Runs as Apache's User, like any daemon.
    let uid: u32 = fs::read_to_string(markers.join(format!("service-{first}.started")))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the service script runs as root");
    // Killed: restarted (at once after a healthy run, after a back-off of 1 s when it dies
    // soon after start: `supervisor`'s unit tests decide which).
    // SAFETY: kill(2) on the service process this test's Apache started.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let second = wait_until("restart after SIGKILL", limit, || {
        started_pids(&markers).into_iter().find(|p| *p != first)
    });
    apache.wait_for_log("was killed by SIGKILL", Duration::from_secs(5));
    assert!(!service_markers(&markers).contains(&(first, "systemexit".into())));

    // A touched script: SystemExit in the running one, then a new process. (The "started"
    // marker is written inside the script's try block: SystemExit is caught from then on.)
    fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let third = wait_until("restart after touch", limit, || {
        started_pids(&markers)
            .into_iter()
            .find(|p| *p != first && *p != second)
    });
    assert!(service_markers(&markers).contains(&(second, "systemexit".into())));
    apache.wait_for_log(
        "changed; stopping the service script",
        Duration::from_secs(5),
    );

    // Apache stops: SystemExit in the script, and no process left.
    apache.stop();
    assert!(
        service_markers(&markers).contains(&(third, "systemexit".into())),
        "no SystemExit on stop:\n{}",
        apache.error_log()
    );
    wait_until(
        "the service process to be gone",
        Duration::from_secs(10),
        || (!alive(third)).then_some(()),
    );
    let log = apache.error_log();
    assert!(log.contains("service script stopped by SIGTERM"), "{log}");
}

// ---------------------------------------------------------------------------------------
// mod_wsgi-express 6 (pip package mod_wsgi) writes the configuration; only LoadModule changes.

/// The pip requirement for mod_wsgi-express: mod_wsgi 6.
const MOD_WSGI_REQUIREMENT: &str = "mod_wsgi>=6,<7";

/// A venv with mod_wsgi from PyPI (pip builds its C module against apxs: apache2-dev),
/// made with the module's Python and kept while the requirement stays the same, as
/// `make test-venv` keeps the test venv: in build/ when the Makefile put the test venv in
/// this checkout (www-data can read it), else in /tmp. The build is bounded in time.
fn modwsgi_venv() -> PathBuf {
    let repo = common::repo_dir();
    let venv = if test_venv().starts_with(&repo) {
        repo.join("build/modwsgi-express-venv")
    } else {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        repo.hash(&mut h);
        std::env::temp_dir().join(format!("rwsgi-modwsgi-express-venv-{:x}", h.finish()))
    };
    let marker = venv.join(".installed");
    if fs::read_to_string(&marker).is_ok_and(|m| m == MOD_WSGI_REQUIREMENT) {
        return venv;
    }
    let _ = fs::remove_dir_all(&venv);
    common::run(Command::new(MODULE_PYTHON).arg("-m").arg("venv").arg(&venv));
    let mut pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--no-cache-dir",
            "--disable-pip-version-check",
            MOD_WSGI_REQUIREMENT,
        ])
        .spawn()
        .expect("run pip");
    let limit = Duration::from_secs(900);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = pip.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = pip.kill();
            let _ = pip.wait();
            panic!("pip install {MOD_WSGI_REQUIREMENT} took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "pip install {MOD_WSGI_REQUIREMENT}: {status}"
    );
    // Apache's daemons (www-data) run the venv's Python and import mod_wsgi.express.
    common::run(Command::new("chmod").arg("-R").arg("a+rX").arg(&venv));
    fs::write(&marker, MOD_WSGI_REQUIREMENT).unwrap();
    venv
}

/// Stops the express server by PID if the test fails half-way.
struct StopOnPanic(PathBuf);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.0) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                if std::thread::panicking() && alive(pid as u32) {
                    // SAFETY: kill(2) on the Apache parent this test started.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
    }
}

#[test]
fn mod_wsgi_express_setup_server_config_serves_with_only_load_module_changed() {
    let venv = modwsgi_venv();
    let work = TempDir::new("modwsgi-express");
    let app = work.path().join("app.wsgi");
    fs::copy(
        common::repo_dir().join("tests/apps/modwsgi_express_app.wsgi"),
        &app,
    )
    .unwrap();
    let root = work.path().join("server");
    let port = free_port();
    // As root, mod_wsgi-express needs --user/--group; --host keeps it on loopback. The
    // working directory becomes the daemon's home=.
    let out = Command::new(venv.join("bin/mod_wsgi-express"))
        .current_dir(work.path())
        .arg("setup-server")
        .arg(&app)
        .arg("--server-root")
        .arg(&root)
        .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
        .args(["--user", "www-data", "--group", "www-data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup-server: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let conf_path = root.join("httpd.conf");
    let original = fs::read_to_string(&conf_path).unwrap();
    assert!(original.contains("WSGIHandlerScript"), "{original}");
    let mut changed = 0;
    let edited: String = original
        .lines()
        .map(|line| {
            if line.starts_with("LoadModule wsgi_module ") {
                changed += 1;
                format!("LoadModule rwsgi_module '{}'", module_path().display())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_eq!(changed, 1, "one LoadModule line for mod_wsgi:\n{original}");
    fs::write(&conf_path, edited).unwrap();
    common::run(Command::new("chmod").arg("-R").arg("a+rX").arg(work.path()));

    let apachectl = root.join("apachectl");
    let configtest = Command::new(&apachectl).arg("configtest").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&configtest.stdout),
        String::from_utf8_lossy(&configtest.stderr)
    );
    assert!(
        configtest.status.success() && text.contains("Syntax OK"),
        "{text}"
    );

    let pid_file = root.join("httpd.pid");
    let _guard = StopOnPanic(pid_file.clone());
    common::run(Command::new(&apachectl).arg("start"));
    let error_log = || fs::read_to_string(root.join("error_log")).unwrap_or_default();
    let resp = wait_until("the express app to answer", Duration::from_secs(30), || {
        common::http::request(port, "GET", "/some/page", &[], b"")
            .ok()
            .filter(|r| r.status != 503)
    });
    let body = resp.text();
    assert!(
        resp.status == 200 && body.starts_with("express app\n"),
        "{} {body}\n--- error log ---\n{}",
        resp.status,
        error_log()
    );
    assert_eq!(
        field(&body, "handler_script"),
        root.join("handler.wsgi").display().to_string()
    );
    assert_eq!(field(&body, "process_group"), format!("127.0.0.1:{port}"));
    assert_eq!(field(&body, "runtime"), "mod_wsgi.express.runtime");
    assert_ne!(field(&body, "uid"), "0");

    let parent: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tree = common::process_tree(parent);
    assert!(
        tree.len() >= 3,
        "parent, children, daemon manager: {tree:?}"
    );
    common::run(Command::new(&apachectl).arg("stop"));
    wait_until(
        "every process of the express server to exit",
        Duration::from_secs(20),
        || (!tree.iter().any(|p| alive(*p))).then_some(()),
    );
    assert!(!error_log().contains("[rwsgi:error]"), "{}", error_log());
}

#[test]
fn pass_apache_request_case_sensitivity_and_accept_mutex_as_mod_wsgi_6() {
    // Every value mod_wsgi 6 takes is accepted (what each does: the tests below).
    let (ok, out) = ApacheConfig::new("acceptedflags")
        .conf(
            "WSGIAcceptMutex fcntl\nWSGICaseSensitivity Off\nWSGIServerMetrics Off\n\
             <Location />\n    WSGIPassApacheRequest On\n</Location>\n\
             <Location /x>\n    WSGIPassApacheRequest Off\n</Location>\n",
        )
        .configtest();
    assert!(ok, "{out}");
    // WSGIAcceptMutex has nothing to choose in mod_rwsgi: configtest says so.
    assert!(
        out.contains("WSGIAcceptMutex fcntl has no effect in mod_rwsgi"),
        "{out}"
    );
    // A value mod_wsgi does not take is refused, naming the directive and the value.
    for (conf, token) in [
        ("WSGICaseSensitivity Maybe", "'Maybe'"),
        (
            "<Location />\nWSGIPassApacheRequest yes\n</Location>",
            "'yes'",
        ),
        ("WSGIAcceptMutex spinlock", "'spinlock'"),
    ] {
        let (ok, out) = ApacheConfig::new("refusedflags").conf(conf).configtest();
        assert!(!ok, "{conf}: {out}");
        let directive = conf
            .split_whitespace()
            .find(|w| w.starts_with("WSGI"))
            .unwrap();
        assert!(
            out.contains(directive) && out.contains(token),
            "{conf}: {out}"
        );
    }
}

#[test]
fn pass_apache_request_gives_code_in_the_apache_child_the_request_rec_capsule() {
    let config = ApacheConfig::new("passrequest");
    let app = config.install_app("apache_request.wsgi");
    let conf = format!(
        "WSGIDaemonProcess d threads=1\n\
         WSGIScriptAlias /emb {a} application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /off {a} application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /daemon {a} process-group=d application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /disp {a}\n\
         WSGIScriptAlias /guarded {a} application-group=%{{GLOBAL}}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
         <Location /emb>\n    WSGIPassApacheRequest On\n</Location>\n\
         <Location /daemon>\n    WSGIPassApacheRequest On\n</Location>\n\
         <Location /disp>\n    WSGIPassApacheRequest On\n    WSGIDispatchScript {a}\n</Location>\n\
         <Location /guarded>\n    WSGIPassApacheRequest On\n    WSGIAccessScript {a}\n</Location>\n\
         <Location /guarded/off>\n    WSGIPassApacheRequest Off\n</Location>\n",
        a = app.display()
    );
    let apache = config.conf(&conf).start();
    // The access script (before the handler) reads the request line through it: allowed;
    // with Off it finds none and denies.
    let resp = apache.get("/guarded/x?q=1");
    assert_with_log!(apache, resp.status == 200, "guarded: {}", resp.status);
    assert_eq!(
        field(&resp.text(), "the_request"),
        "GET /guarded/x?q=1 HTTP/1.1"
    );
    let resp = apache.get("/guarded/off/x");
    assert_with_log!(apache, resp.status == 403, "guarded/off: {}", resp.status);
    // Embedded mode: an unnamed capsule holding this very request's request_rec.
    let resp = apache.get("/emb/x?y=1");
    let body = resp.text();
    assert_with_log!(apache, resp.status == 200, "{}\n{body}", resp.status);
    assert_eq!(field(&body, "capsule"), "PyCapsule", "{body}");
    assert_eq!(field(&body, "capsule_name"), "None", "{body}");
    assert_eq!(field(&body, "the_request"), "GET /emb/x?y=1 HTTP/1.1");
    assert_eq!(field(&body, "process_group"), "");
    // Off (the default): none.
    let body = apache.get("/off/x").text();
    assert_eq!(field(&body, "capsule"), "<missing>", "{body}");
    // Daemon mode: none either, as in mod_wsgi (the request_rec is in the Apache child).
    let body = apache.get("/daemon/x").text();
    assert_eq!(field(&body, "process_group"), "d", "{body}");
    assert_eq!(field(&body, "capsule"), "<missing>", "{body}");
    // The dispatch script, run in the Apache child, gets it too: it names the application
    // group after the request line it read through the capsule.
    let resp = apache.get("/disp/z");
    let body = resp.text();
    assert_with_log!(apache, resp.status == 200, "{}\n{body}", resp.status);
    assert_eq!(
        field(&body, "application_group"),
        "dispatch-saw:GET /disp/z HTTP/1.1",
        "{body}"
    );
    assert_eq!(field(&body, "the_request"), "GET /disp/z HTTP/1.1");
    // No script raised (/guarded/off's denial is the one error line).
    let log = apache.error_log();
    assert!(!log.contains("Traceback"), "{log}");
    assert_eq!(log.matches("[rwsgi:error]").count(), 1, "{log}");
}

/// mod_wsgi's module name for a script: `_mod_wsgi_` and the MD5 of its path (here with
/// WSGICaseSensitivity Off: lower-cased), computed by the module's Python's hashlib.
fn folded_module_name(path: &Path) -> String {
    let out = Command::new(MODULE_PYTHON)
        .args([
            "-c",
            "import hashlib, sys; \
             print('_mod_wsgi_' + hashlib.md5(sys.argv[1].lower().encode()).hexdigest())",
        ])
        .arg(path)
        .output()
        .expect("run the module's Python");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn case_sensitivity_off_names_modules_and_resources_after_the_lower_cased_path() {
    let config = ApacheConfig::new("casefold");
    config.install_app("apache_request.wsgi");
    let apps = config.root().join("apps");
    // One script reached by two spellings (a symbolic link stands in for a
    // case-insensitive file system).
    let upper_dir = apps.join("Mixed");
    let lower_dir = apps.join("mixed");
    for dir in [&upper_dir, &lower_dir] {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let script = upper_dir.join("CaseApp.wsgi");
    fs::copy(apps.join("apache_request.wsgi"), &script).unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let other_spelling = lower_dir.join("caseapp.wsgi");
    std::os::unix::fs::symlink(&script, &other_spelling).unwrap();
    let conf = format!(
        "WSGICaseSensitivity Off\n\
         WSGIDaemonProcess d processes=1 threads=1\n\
         WSGIScriptAlias /Emb {s} application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /Daemon {s} process-group=d application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /Lower {o} process-group=d application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /Res/Ource {s}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        s = script.display(),
        o = other_spelling.display()
    );
    let apache = config.conf(&conf).start();
    let expected = folded_module_name(&script);
    assert_eq!(expected, folded_module_name(&other_spelling));
    for path in ["/Emb/x", "/Daemon/x"] {
        let body = ok_body(&apache, path);
        assert_eq!(field(&body, "module"), expected, "{path}: {body}");
        assert_eq!(field(&body, "file"), script.display().to_string());
    }
    // The other spelling is the same module in the daemon: loaded once, its second request.
    let body = apache.get("/Lower/x").text();
    assert_eq!(field(&body, "module"), expected, "{body}");
    assert_eq!(field(&body, "served"), "2", "{body}");
    let log = apache.error_log();
    let daemon_loads = log
        .lines()
        .filter(|l| l.contains("(wsgi:d)") && l.contains("Loading WSGI script"))
        .count();
    assert_with_log!(apache, daemon_loads == 1, "daemon loads: {daemon_loads}");
    // %{RESOURCE} (the default application group) names SCRIPT_NAME lower-cased.
    let body = apache.get("/Res/Ource/x").text();
    let group = field(&body, "application_group");
    // The host is ServerName's, the port the request's (as mod_wsgi: ap_get_server_port).
    assert_eq!(
        group,
        format!("127.0.0.1:{}|/res/ource", apache.port()),
        "{body}"
    );
}

#[test]
fn requests_for_a_service_script_group_are_refused_at_once_naming_it() {
    let config = ApacheConfig::new("servicerefused");
    let markers = config.markers_dir();
    let service = config.install_app("service_script.py");
    let app = config.install_app("phases.wsgi");
    let dispatch = config.install_app("dispatch.wsgi");
    let conf = format!(
        "WSGIDaemonProcess sidecar threads=0\n\
         WSGIDaemonProcess web threads=1\n\
         WSGIImportScript {service} process-group=sidecar application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /static-ref {app} process-group=sidecar\n\
         WSGIScriptAlias /dispatched {app} process-group=web\n\
         WSGIHandlerScript side-handler {app} process-group=sidecar\n\
         <Location /handler>\n    SetHandler side-handler\n</Location>\n\
         <Location /dispatched>\n    WSGIDispatchScript {dispatch}\n</Location>\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        service = service.display(),
        app = app.display(),
        dispatch = dispatch.display()
    );
    let config = config.conf(&conf);
    // mod_wsgi accepts this configuration: configtest passes, warning about each directive
    // that sends requests to the group (not WSGIImportScript, which starts the service).
    let (ok, out) = config.configtest();
    assert!(ok, "{out}");
    for directive in ["WSGIScriptAlias", "WSGIHandlerScript"] {
        assert!(
            out.contains(&format!("{directive} at "))
                && out.contains("selects daemon process group 'sidecar', which has threads=0"),
            "{directive}: {out}"
        );
    }
    assert!(!out.contains("WSGIImportScript at"), "{out}");
    let apache = config.start();
    // The service script runs (the group is there) ...
    wait_until(
        "the service script to start",
        Duration::from_secs(20),
        || started_pids(&markers).first().copied(),
    );
    // ... and every request routed to it is refused at once, statically or dynamically.
    for (path, what) in [
        ("/static-ref/x", "WSGIScriptAlias"),
        ("/handler/x", "WSGIHandlerScript"),
        ("/dispatched/x?group=sidecar", "WSGIDispatchScript"),
    ] {
        let asked = Instant::now();
        let resp = apache.get(path);
        let took = asked.elapsed();
        assert_with_log!(apache, resp.status == 500, "{what} {path}: {}", resp.status);
        assert!(
            took < Duration::from_secs(5),
            "{what} {path}: took {took:?}"
        );
    }
    let log = apache.error_log();
    let refusals = log
        .matches("daemon process group 'sidecar' has threads=0 (a service-script group that serves no requests)")
        .count();
    assert_with_log!(apache, refusals == 3, "refusal lines: {refusals}");
    // The group that serves requests still does.
    let resp = apache.get("/dispatched/x?group=web");
    assert_with_log!(apache, resp.status == 200, "web: {}", resp.status);
}
