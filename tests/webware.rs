//! Webware for Python 3 deployed exactly as its deployment guide's mod_wsgi section says
//! (/work/shared/docs/webware-deployment-guide.rst), with mod_rwsgi: a working dir made by
//! `webware make`, owned with `webware make -g www-data`, Webware from PyPI in a venv made
//! with the module's Python, served by each of the guide's configurations in conf-examples/
//! (only paths and the LoadModule line substituted), under the worker MPM the guide
//! recommends (the two-app form under event). Each test drives the real application over
//! HTTP and reads what Webware logs.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::http::{Json, Response, hidden_field, json};
use common::{Apache, ApacheConfig, Mpm, set_cookie, test_venv};

const BANNER: &str = "Webware for Python 3.1 Application";
const SHUTTING_DOWN: &str = "Application is shutting down...";
const SHUT_DOWN: &str = "Application has been successfully shut down.";
const ADMIN_PASSWORD: &str = "guide-test-secret";
const WRITABLE_DIRS: [&str; 4] = ["Cache", "ErrorMsgs", "Logs", "Sessions"];
const READ_ONLY_DIRS: [&str; 5] = [".", "Configs", "MyContext", "Scripts", "Static"];

/// Where Webware's output goes: the guide's default (Logs/Application.log), or, with
/// `AppLogFilename = None` in Application.config, stdout/stderr, i.e. Apache's error log.
#[derive(Clone, Copy, PartialEq)]
enum AppLog {
    File,
    ApacheErrorLog,
}

/// A working dir as the guide makes it: `webware make`, the site's own files added (a test
/// servlet, a static file, the admin password), then `webware make -g www-data` on the
/// existing dir as the guide's permission advice says.
fn make_work_dir(venv: &Path, dir: &Path, app_log: AppLog) {
    let webware = venv.join("bin/webware");
    common::run(Command::new(&webware).arg("make").arg(dir));
    fs::copy(
        common::repo_dir().join("tests/apps/webware/Probe.py"),
        dir.join("MyContext/Probe.py"),
    )
    .unwrap();
    fs::write(dir.join("Static/hello.txt"), "static hello from Static/\n").unwrap();
    let config_path = dir.join("Configs/Application.config");
    let mut config = fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("AdminPassword = ''"), "{config}");
    config = config.replacen(
        "AdminPassword = ''",
        &format!("AdminPassword = '{ADMIN_PASSWORD}'"),
        1,
    );
    if app_log == AppLog::ApacheErrorLog {
        config.push_str("\nAppLogFilename = None\n");
    }
    fs::write(&config_path, config).unwrap();
    common::run(
        Command::new(&webware)
            .args(["make", "-g", "www-data"])
            .arg(dir),
    );
}

/// One of the guide's configurations from conf-examples/, with /srv/webware/venv replaced by
/// the test venv and /srv/webware by `base`. The harness loads the module itself.
fn guide_config(name: &str, venv: &Path, base: &Path) -> String {
    let path = common::repo_dir().join("conf-examples").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim_start().starts_with("LoadModule"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("/srv/webware/venv", &venv.display().to_string())
        .replace("/srv/webware", &base.display().to_string())
}

/// Starts Apache (under `mpm`) with conf-examples/`name`, serving the working dirs `apps`
/// (made under <root>/webware/). Returns Apache and the working dirs.
fn start(name: &str, mpm: Mpm, apps: &[&str], app_log: AppLog) -> (Apache, Vec<PathBuf>) {
    let venv = test_venv();
    let mut config = ApacheConfig::new("webware").mpm(mpm);
    let base = config.root().join("webware");
    fs::create_dir_all(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let dirs: Vec<PathBuf> = apps.iter().map(|a| base.join(a)).collect();
    for dir in &dirs {
        make_work_dir(&venv, dir, app_log);
    }
    let text = guide_config(name, &venv, &base);
    config = config.conf(&text);
    if name.contains("macro") {
        config = config.module("macro");
    }
    (config.start(), dirs)
}

fn get_ok(apache: &Apache, path: &str, cookie: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let resp = apache.request("GET", path, &headers, b"");
    assert_with_log!(
        apache,
        resp.status == 200,
        "GET {path}: {} {}",
        resp.status,
        resp.text()
    );
    resp
}

fn post_form(apache: &Apache, path: &str, cookie: &str, body: &str) -> Response {
    let resp = apache.request(
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    );
    assert_with_log!(
        apache,
        resp.status == 200,
        "POST {path}: {} {}",
        resp.status,
        resp.text()
    );
    resp
}

fn assert_contains(apache: &Apache, resp: &Response, what: &str, context: &str) {
    let text = resp.text();
    assert_with_log!(
        apache,
        text.contains(what),
        "{context}: no {what:?} in the page:\n{text}"
    );
}

/// Webware's session cookie from a response.
fn session_cookie(apache: &Apache, resp: &Response) -> String {
    let cookie = set_cookie(resp, "_SID_");
    assert_with_log!(
        apache,
        cookie.is_some(),
        "no _SID_ session cookie in {:?}",
        resp.headers
    );
    cookie.unwrap()
}

/// Examples context pages, PSP examples, a session kept through its cookie, form POSTs and
/// the Admin context's login; `prefix` is the WSGIScriptAlias mount ("" for /).
fn drive_the_examples(apache: &Apache, prefix: &str) {
    let welcome = get_ok(apache, &format!("{prefix}/Examples/Welcome"), None);
    assert_contains(apache, &welcome, "<title>Welcome</title>", "Welcome");
    // The sidebar's absolute link to the context goes through the mount point.
    assert_contains(
        apache,
        &welcome,
        &format!("<a href=\"{prefix}/Examples/\">Webware</a>"),
        "Welcome",
    );
    for (servlet, text) in [
        ("ShowTime", "The current time is"),
        ("Colors", "Color Table Demo"),
        ("Simple", "Simple Servlet"),
        ("RequestInformation?answer=42", "<td>answer</td><td>42</td>"),
    ] {
        let page = get_ok(apache, &format!("{prefix}/Examples/{servlet}"), None);
        assert_contains(apache, &page, text, servlet);
    }

    // PSP pages are compiled into Cache/ (writable) and served.
    let psp = get_ok(apache, &format!("{prefix}/PSP/Examples/Hello"), None);
    assert_contains(apache, &psp, "Hello from PSP!", "PSP Hello");
    let psp_index = get_ok(apache, &format!("{prefix}/PSP/Examples/"), None);
    assert_contains(apache, &psp_index, "Hello from PSP!", "PSP index");
    let braces = get_ok(apache, &format!("{prefix}/PSP/Examples/Braces"), None);
    assert_contains(apache, &braces, "Braces Test", "PSP Braces");

    // A session survives across requests through its cookie; without it a new one starts.
    let path = format!("{prefix}/Examples/CountVisits");
    let first = get_ok(apache, &path, None);
    assert_contains(apache, &first, "&nbsp;1&nbsp;", "first visit");
    let cookie = session_cookie(apache, &first);
    for n in 2..=3 {
        let again = get_ok(apache, &path, Some(&cookie));
        assert_contains(
            apache,
            &again,
            &format!("&nbsp;{n}&nbsp;"),
            "visit with cookie",
        );
    }
    let fresh = get_ok(apache, &path, None);
    assert_contains(apache, &fresh, "&nbsp;1&nbsp;", "visit without cookie");

    // Form POSTs changing session state (ListBox guards against resubmission by a counter).
    let path = format!("{prefix}/Examples/ListBox");
    let form = get_ok(apache, &path, None);
    let cookie = session_cookie(apache, &form);
    post_form(apache, &path, &cookie, "formCount=1&_action_new=New");
    let second = post_form(apache, &path, &cookie, "formCount=2&_action_new=New");
    assert_contains(apache, &second, ">New item 1</option>", "ListBox");
    assert_contains(apache, &second, ">New item 2</option>", "ListBox");
    let resubmitted = post_form(apache, &path, &cookie, "formCount=2&_action_new=New");
    assert_with_log!(
        apache,
        !resubmitted.text().contains("New item 3"),
        "a resubmitted ListBox form added an item:\n{}",
        resubmitted.text()
    );

    // The Admin context: login form, a wrong password, the right one, then a later request
    // still logged in through the session cookie.
    let path = format!("{prefix}/Admin/");
    let login = get_ok(apache, &path, None);
    assert_contains(
        apache,
        &login,
        "Please log in to view Administration Pages",
        "Admin",
    );
    let cookie = session_cookie(apache, &login);
    let login_id = hidden_field(&login.text(), "loginId");
    let failed = post_form(
        apache,
        &path,
        &cookie,
        &format!("username=admin&password=wrong&login=Login&loginId={login_id}"),
    );
    assert_contains(apache, &failed, "Login failed", "Admin wrong password");
    let login_id = hidden_field(&failed.text(), "loginId");
    let admin = post_form(
        apache,
        &path,
        &cookie,
        &format!("username=admin&password={ADMIN_PASSWORD}&login=Login&loginId={login_id}"),
    );
    assert_contains(apache, &admin, "Webware Version", "Admin after login");
    let later = get_ok(apache, &format!("{prefix}/Admin/Main"), Some(&cookie));
    assert_contains(
        apache,
        &later,
        "Webware Version",
        "Admin with the session cookie",
    );
    let anonymous = get_ok(apache, &format!("{prefix}/Admin/Main"), None);
    assert_contains(
        apache,
        &anonymous,
        "Please log in to view Administration Pages",
        "Admin without the session cookie",
    );
}

/// The test servlet's report (MyContext/Probe.py, served from the default context).
fn probe(apache: &Apache, path: &str) -> serde_json::Value {
    let resp = get_ok(apache, path, None);
    json(&resp)
}

/// The guide's permission advice, as set up by `webware make -g www-data`, and the app
/// running as www-data under exactly those permissions.
fn assert_guide_permissions(apache: &Apache, dir: &Path, report: &serde_json::Value) {
    let www_data_gid = nix_gid("www-data");
    for sub in READ_ONLY_DIRS.iter().chain(WRITABLE_DIRS.iter()) {
        let meta = fs::metadata(dir.join(sub)).unwrap();
        let mode = meta.mode() & 0o7777;
        assert_eq!(meta.gid(), www_data_gid, "{sub}: group is not www-data");
        assert_eq!(mode & 0o007, 0, "{sub}: readable by others ({mode:o})");
        let group_writable = mode & 0o020 != 0;
        assert_eq!(
            group_writable,
            WRITABLE_DIRS.contains(sub),
            "{sub}: mode {mode:o}"
        );
    }
    assert_eq!(report["user"].str(), "www-data", "{report}");
    for sub in READ_ONLY_DIRS {
        assert_with_log!(
            apache,
            report["readable"][sub] == true && report["writable"][sub] == false,
            "{sub} should be readable, not writable, for the app: {report}"
        );
    }
    for sub in WRITABLE_DIRS {
        assert_with_log!(
            apache,
            report["writable"][sub] == true,
            "{sub} should be writable for the app: {report}"
        );
    }
}

fn nix_gid(group: &str) -> u32 {
    let groups = fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&group)).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {group}"))
}

/// Webware's banner names the daemon's pid; after a clean stop, its shutdown messages follow.
fn assert_banner(log: &str, pid: u64, where_: &str) {
    let banner = log
        .find(BANNER)
        .unwrap_or_else(|| panic!("no Webware banner in {where_}:\n{log}"));
    assert!(
        log[banner..].contains(&format!("Process id: {pid}")),
        "{where_}: the banner does not name the daemon pid {pid}:\n{log}"
    );
}

fn assert_shutdown_messages(log: &str, where_: &str) {
    let down = log.find(SHUTTING_DOWN);
    let done = log.find(SHUT_DOWN);
    assert!(
        matches!((down, done), (Some(a), Some(b)) if a < b),
        "{where_} lacks {SHUTTING_DOWN:?} then {SHUT_DOWN:?}:\n{log}"
    );
}

fn application_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("Logs/Application.log")).unwrap_or_default()
}

fn stop_cleanly(apache: &mut Apache) {
    let status = apache.stop().expect("apache was running");
    assert!(status.success(), "apache2 exited with {status}");
}

#[test]
fn root_with_static_serves_examples_psp_admin_sessions_and_static_files() {
    let (mut apache, dirs) = start(
        "01-root-with-static.conf",
        Mpm::Worker,
        &["MyApp"],
        AppLog::File,
    );
    let dir = &dirs[0];

    // The default context at /, linking to the other contexts.
    let main = get_ok(&apache, "/", None);
    assert_contains(&apache, &main, "Welcome to Webware for Python!", "/");
    assert_contains(&apache, &main, "href=\"/Examples/\"", "/");
    drive_the_examples(&apache, "");

    // Static files from Static/ via Alias /static.
    let file = get_ok(&apache, "/static/hello.txt", None);
    assert_eq!(file.text(), "static hello from Static/\n");
    assert_eq!(apache.get("/static/missing.txt").status, 404);

    let report = probe(&apache, "/Probe");
    assert_guide_permissions(&apache, dir, &report);
    assert_eq!(report["SCRIPT_NAME"].str(), "", "{report}");
    assert_eq!(report["servletPath"].str(), "", "{report}");
    assert_eq!(report["prefix"].str(), test_venv().display().to_string());
    assert!(
        fs::read_dir(dir.join("Cache/PSP")).unwrap().count() > 0,
        "PSP pages were not compiled into Cache/PSP"
    );

    // The guide's default: Webware's output goes to Logs/Application.log.
    let pid = report["pid"].as_u64().unwrap();
    assert_banner(&application_log(dir), pid, "Logs/Application.log");
    stop_cleanly(&mut apache);
    assert_shutdown_messages(&application_log(dir), "Logs/Application.log");
    // Sessions were stored to Sessions/ on shutdown.
    assert!(
        fs::read_dir(dir.join("Sessions")).unwrap().count() > 0,
        "no session stored in Sessions/ at shutdown"
    );
    let log = apache.error_log();
    assert!(!log.contains("Traceback"), "{log}");
}

#[test]
fn app_prefix_passes_script_name_and_links_honour_it() {
    let (mut apache, dirs) = start(
        "02-app-prefix.conf",
        Mpm::Worker,
        &["MyApp"],
        AppLog::ApacheErrorLog,
    );

    let report = probe(&apache, "/app/Probe");
    assert_eq!(report["SCRIPT_NAME"].str(), "/app", "{report}");
    assert_eq!(report["PATH_INFO"].str(), "/Probe", "{report}");
    assert_eq!(report["servletPath"].str(), "/app", "{report}");
    assert_eq!(report["uri"].str(), "/app/Probe", "{report}");
    assert_guide_permissions(&apache, &dirs[0], &report);

    let main = get_ok(&apache, "/app/", None);
    assert_contains(&apache, &main, "href=\"/app/Examples/\"", "/app/");
    // Webware's redirect to the context's directory URL keeps the prefix.
    let redirect = apache.get("/app/Examples");
    assert!(
        (300..400).contains(&redirect.status)
            && redirect
                .header("location")
                .is_some_and(|l| l.ends_with("/app/Examples/")),
        "{} {:?}",
        redirect.status,
        redirect.headers
    );
    drive_the_examples(&apache, "/app");

    // Static files at the root URL (DocumentRoot = Static/).
    let file = get_ok(&apache, "/hello.txt", None);
    assert_eq!(file.text(), "static hello from Static/\n");

    // AppLogFilename = None: Webware prints to stdout, which goes to Apache's error log.
    let pid = report["pid"].as_u64().unwrap();
    let log = apache.wait_for_log(BANNER, Duration::from_secs(10));
    assert_banner(&log, pid, "Apache's error log");

    // "Reload Apache after any changes ... apachectl -k graceful": the new generation serves
    // the app with the same prefix, the old daemon shuts Webware down cleanly.
    apache.signal(libc::SIGUSR1);
    let started = Instant::now();
    let after = loop {
        // Tolerant while the generations change; the assertions below check the outcome.
        if let Ok(resp) = common::http::request(apache.port(), "GET", "/app/Probe", &[], b"") {
            if resp.status == 200 {
                let report = json(&resp);
                if report["pid"].as_u64() != Some(pid) {
                    break report;
                }
            }
        }
        assert_with_log!(
            apache,
            started.elapsed() < Duration::from_secs(30),
            "no new daemon process after a graceful restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(after["servletPath"].str(), "/app", "{after}");
    let log = apache.wait_for_log(SHUT_DOWN, Duration::from_secs(30));
    assert_shutdown_messages(&log, "Apache's error log after a graceful restart");

    stop_cleanly(&mut apache);
    let log = apache.error_log();
    assert_eq!(
        log.matches(SHUT_DOWN).count(),
        2,
        "both generations should have shut Webware down:\n{log}"
    );
}

#[test]
fn long_option_daemon_process_serves_webware() {
    let (mut apache, dirs) = start(
        "03-long-options.conf",
        Mpm::Worker,
        &["MyApp"],
        AppLog::ApacheErrorLog,
    );

    let report = probe(&apache, "/Probe");
    assert_eq!(
        report["daemon"]["process_group"].str(),
        "webware",
        "{report}"
    );
    assert_eq!(
        report["daemon"]["threads_per_process"].num(),
        15.0,
        "{report}"
    );
    assert_eq!(report["multithread"], true, "{report}");
    assert_eq!(report["multiprocess"], false, "{report}");
    assert_guide_permissions(&apache, &dirs[0], &report);

    let welcome = get_ok(&apache, "/Examples/Welcome", None);
    assert_contains(&apache, &welcome, "<title>Welcome</title>", "Welcome");
    let hello = get_ok(&apache, "/PSP/Examples/Hello", None);
    assert_contains(&apache, &hello, "Hello from PSP!", "PSP Hello");
    // Session through its cookie and a form POST echoed back by the servlet.
    let first = get_ok(&apache, "/Probe", None);
    let cookie = session_cookie(&apache, &first);
    let posted = json(&post_form(
        &apache,
        "/Probe",
        &cookie,
        "name=guide&answer=42",
    ));
    assert_eq!(posted["method"].str(), "POST", "{posted}");
    assert_eq!(posted["fields"]["name"].str(), "guide", "{posted}");
    assert_eq!(posted["fields"]["answer"].str(), "42", "{posted}");
    assert_eq!(posted["visits"].num(), 2.0, "{posted}");

    let pid = report["pid"].as_u64().unwrap();
    let log = apache.wait_for_log(BANNER, Duration::from_secs(10));
    assert_banner(&log, pid, "Apache's error log");

    // The guide's restart after a deployment: `touch Scripts/WSGIScript.py`. The next request
    // is served by a new daemon process; the old one shut Webware down cleanly.
    let script = dirs[0].join("Scripts/WSGIScript.py");
    let file = fs::OpenOptions::new().append(true).open(&script).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    drop(file);
    let after = probe(&apache, "/Probe");
    let new_pid = after["pid"].as_u64().unwrap();
    assert_ne!(
        new_pid, pid,
        "touching the script did not replace the daemon"
    );
    let log = apache.wait_for_log(SHUT_DOWN, Duration::from_secs(30));
    assert_shutdown_messages(&log, "Apache's error log after the touch");
    assert_banner(&log, new_pid, "Apache's error log after the touch");

    stop_cleanly(&mut apache);
    let log = apache.error_log();
    assert_eq!(
        log.matches(SHUT_DOWN).count(),
        2,
        "both processes should have shut Webware down:\n{log}"
    );
}

#[test]
fn macro_form_serves_two_apps_in_their_own_process_groups() {
    let (mut apache, dirs) = start(
        "04-macro-two-apps.conf",
        Mpm::Event,
        &["app1", "app2"],
        AppLog::File,
    );

    let mut pids = Vec::new();
    for ((app, threads), dir) in [("app1", 25.0), ("app2", 10.0)].iter().zip(&dirs) {
        let report = probe(&apache, &format!("/{app}/Probe"));
        assert_eq!(
            report["workDir"].str(),
            dir.display().to_string(),
            "{report}"
        );
        assert_eq!(report["daemon"]["process_group"].str(), *app, "{report}");
        assert_eq!(
            report["daemon"]["threads_per_process"].num(),
            *threads,
            "{report}"
        );
        assert_eq!(report["SCRIPT_NAME"].str(), format!("/{app}"), "{report}");
        assert_eq!(report["servletPath"].str(), format!("/{app}"), "{report}");
        assert_eq!(report["multithread"], true, "{report}");
        assert_eq!(report["multiprocess"], false, "{report}");
        assert_guide_permissions(&apache, dir, &report);
        let pid = report["pid"].as_u64().unwrap();
        assert_banner(
            &application_log(dir),
            pid,
            &format!("{app}'s Application.log"),
        );
        pids.push(pid);

        let welcome = get_ok(&apache, &format!("/{app}/Examples/Welcome"), None);
        assert_contains(
            &apache,
            &welcome,
            &format!("<a href=\"/{app}/Examples/\">Webware</a>"),
            "Welcome",
        );
        let path = format!("/{app}/Examples/CountVisits");
        let first = get_ok(&apache, &path, None);
        let cookie = session_cookie(&apache, &first);
        let again = get_ok(&apache, &path, Some(&cookie));
        assert_contains(&apache, &again, "&nbsp;2&nbsp;", "second visit");
    }
    assert_ne!(pids[0], pids[1], "both apps ran in one process");

    stop_cleanly(&mut apache);
    for (app, dir) in ["app1", "app2"].iter().zip(&dirs) {
        assert_shutdown_messages(&application_log(dir), &format!("{app}'s Application.log"));
    }
}

/// issue 16: a working dir run with `development=True` (its stock Application.config has
/// `RegisterSignalHandler = Development`) under the guide's first configuration, not
/// preloaded, so Webware calls `signal.signal(SIGTERM/SIGHUP, ...)` while its script is
/// imported on a request thread. WSGIRestrictSignal (On by default, as in mod_wsgi) turns that
/// into a warning with the caller's stack; the pages work.
#[test]
fn development_mode_signal_handlers_are_ignored_with_a_warning() {
    let venv = test_venv();
    let config = ApacheConfig::new("webware-dev").mpm(Mpm::Worker);
    let base = config.root().join("webware");
    fs::create_dir_all(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = base.join("MyApp");
    make_work_dir(&venv, &dir, AppLog::File);
    let app_config = fs::read_to_string(dir.join("Configs/Application.config")).unwrap();
    assert!(
        app_config.contains("RegisterSignalHandler = Development"),
        "{app_config}"
    );
    let script_path = dir.join("Scripts/WSGIScript.py");
    let script = fs::read_to_string(&script_path).unwrap();
    assert!(script.contains("development = None"), "{script}");
    fs::write(
        &script_path,
        script.replacen("development = None", "development = True", 1),
    )
    .unwrap();
    let text = guide_config("01-root-with-static.conf", &venv, &base);
    assert!(!text.contains("WSGIImportScript") && !text.contains("process-group="));
    let mut apache = config.conf(&text).start();

    let main = get_ok(&apache, "/", None);
    assert_contains(&apache, &main, "Welcome to Webware for Python!", "/");
    drive_the_examples(&apache, "");
    let report = probe(&apache, "/Probe");
    let pid = report["pid"].as_u64().unwrap();

    let log = apache.wait_for_log(
        "Ignoring signal.signal(SIGTERM, ...)",
        Duration::from_secs(5),
    );
    for sig in ["SIGTERM", "SIGHUP"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("Ignoring signal.signal({sig}, ...)")))
            .unwrap_or_else(|| panic!("no warning for {sig}:\n{log}"));
        assert!(line.contains("[rwsgi:warn]"), "{line}");
    }
    // The caller's stack names Webware's registration and the WSGI script importing it.
    assert!(log.contains("in registerShutDownHandler"), "{log}");
    assert!(log.contains("Scripts/WSGIScript.py\", line"), "{log}");
    assert!(!log.contains("signal only works in main thread"), "{log}");
    // (Development mode prints its settings, FancyTraceback* among them.)
    assert!(!log.contains("Traceback (most recent call last)"), "{log}");

    // In development mode Webware prints to stdout, i.e. Apache's error log.
    assert_banner(&apache.error_log(), pid, "the error log");
    stop_cleanly(&mut apache);
    // Shutdown still happens, through mod_wsgi.subscribe_shutdown.
    assert_shutdown_messages(&apache.error_log(), "the error log");
}
