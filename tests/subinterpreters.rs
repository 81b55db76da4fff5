//! Application groups as sub-interpreters (issue 32), in daemon and embedded mode. Two scripts
//! in one daemon process (or Apache child), with the default `%{RESOURCE}` application groups,
//! each configure a shared-name settings module on first import: each site keeps its own
//! settings, its own `sys.modules` and its own `mod_wsgi` module, as under mod_wsgi; with
//! `WSGIApplicationGroup %{GLOBAL}` both run in the main interpreter and share them. Every
//! kind of group gets its own interpreter; phase scripts run in their group's.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::http::{Json, json};
use common::{Apache, ApacheConfig, Mpm};

/// `lib/settings_probe.py`, on the daemon's python-path: the "settings singleton".
const SETTINGS_PROBE: &str = "SITE = None\nCONFIGURED_BY = []\n";

/// A site script: configures `settings_probe` for `{site}` unless another site already did
/// (in this interpreter), imports a module only it imports, and answers what it sees, using
/// the request path's objects (wsgi.input, wsgi.errors, start_response, file_wrapper).
const SITE_SCRIPT: &str = r#"
import json
import os
import sys
import threading
import time

import mod_wsgi
import settings_probe

if settings_probe.SITE is None:
    settings_probe.SITE = "{site}"
settings_probe.CONFIGURED_BY.append("{site}")

import {site}_only

def application(environ, start_response):
    if environ.get("QUERY_STRING") == "file":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    if environ.get("QUERY_STRING", "").startswith("hold="):
        # Held until the test creates the file the query names (bounded).
        release = environ["QUERY_STRING"][len("hold="):]
        open(release + ".held", "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    if environ.get("QUERY_STRING", "").startswith("switch="):
        sys.setswitchinterval(float(environ["QUERY_STRING"][len("switch="):]))
    body = environ["wsgi.input"].read()
    print("{site} request with %d body bytes" % len(body), file=environ["wsgi.errors"])
    print("{site} on sys.stderr", file=sys.stderr)
    mod_wsgi.request_data()["site"] = "{site}"
    answer = json.dumps({
        "site": settings_probe.SITE,
        "configured_by": settings_probe.CONFIGURED_BY,
        "application_group": mod_wsgi.application_group,
        "environ_application_group": environ["mod_wsgi.application_group"],
        "modules": sorted(m for m in sys.modules if m.endswith("_only")),
        "echo": body.decode("latin-1"),
        "thread": threading.get_ident(),
        "switch_interval": sys.getswitchinterval(),
        "request_data": dict(mod_wsgi.request_data()),
        "process_metrics": mod_wsgi.process_metrics() is None or "pid" in mod_wsgi.process_metrics(),
        "class_ids": {
            name: [getattr(t, "__module__", ""), id(t)] for name, t in [
                ("file_wrapper", environ["wsgi.file_wrapper"]),
                ("request_timeout", mod_wsgi.RequestTimeout),
                ("signal", type(__import__("signal").signal)),
                ("stdin", type(sys.stdin)),
                ("input", type(environ["wsgi.input"])),
                ("start_response", type(start_response)),
                ("log_buffer", type(environ["wsgi.errors"].buffer)),
                ("stderr_buffer", type(sys.stderr.buffer)),
            ]
        },
        "file_wrapper_is_the_module's": environ["wsgi.file_wrapper"] is mod_wsgi.FileWrapper,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(answer)))])
    return [answer]
"#;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Where the sites run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One daemon process `sites` with two threads.
    Daemon,
    /// The Apache child (one, with the test harness's event MPM settings).
    Embedded,
}

impl Mode {
    /// The configuration lines putting the sites there, with `lib` on the Python path.
    fn conf(self) -> &'static str {
        match self {
            Mode::Daemon => {
                "WSGIDaemonProcess sites threads=2 python-path=@DIR@/lib
WSGIProcessGroup sites"
            }
            Mode::Embedded => "WSGIPythonPath @DIR@/lib",
        }
    }

    /// How log lines name this process ("daemon process 'sites'", "embedded mode").
    fn context(self) -> &'static str {
        match self {
            Mode::Daemon => "of daemon process 'sites'",
            Mode::Embedded => "in embedded mode",
        }
    }
}

/// Apache with one daemon process (two threads) serving `/alpha` and `/beta`, two scripts,
/// and `extra` configuration (an application group line, or nothing).
fn two_sites(tag: &str, extra: &str) -> Apache {
    two_sites_with(tag, extra, &[])
}

/// [`two_sites`] with more `files` (path under the server root, text).
fn two_sites_with(tag: &str, extra: &str, files: &[(&str, &str)]) -> Apache {
    two_sites_in(Mode::Daemon, ApacheConfig::new(tag), extra, files)
}

/// [`two_sites_with`] in `mode`, from `config` (extra modules added).
fn two_sites_in(mode: Mode, config: ApacheConfig, extra: &str, files: &[(&str, &str)]) -> Apache {
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    mkdir(&root.join("lib"));
    for (path, text) in files {
        write(&root.join(path), text, 0o644);
    }
    write(&root.join("lib/settings_probe.py"), SETTINGS_PROBE, 0o644);
    for site in ["alpha", "beta"] {
        write(&root.join(format!("lib/{site}_only.py")), "", 0o644);
        write(
            &root.join(format!("apps/{site}.wsgi")),
            &SITE_SCRIPT.replace("{site}", site),
            0o644,
        );
    }
    config
        .conf(&format!(
            "{}\n{extra}\n\
             WSGIScriptAlias /alpha @DIR@/apps/alpha.wsgi\n\
             WSGIScriptAlias /beta @DIR@/apps/beta.wsgi\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            mode.conf()
        ))
        .start()
}

/// Waits (bounded) until a `?hold=RELEASE` request is inside the app, holding its thread (the
/// app creates RELEASE.held), so the requests sent next find only the other thread free.
fn wait_until_held(apache: &Apache, release: &Path) {
    let mut held = release.as_os_str().to_owned();
    held.push(".held");
    apache.wait_for_marker(Path::new(&held), Duration::from_secs(20));
}

fn ask(apache: &Apache, path: &str, body: &str) -> serde_json::Value {
    let resp = apache.request("POST", path, &[], body.as_bytes());
    assert!(
        resp.status == 200,
        "{path}: status {}\n{}\n--- error log ---\n{}",
        resp.status,
        resp.text(),
        apache.error_log()
    );
    json(&resp)
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.str().to_string())
        .collect()
}

#[test]
fn each_resource_group_runs_in_its_own_sub_interpreter_of_the_daemon_process() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let apache = two_sites("subinterp", "");
    // Alternating, several times: both threads of the daemon serve both sites.
    for round in 0..4 {
        for site in ["alpha", "beta"] {
            let got = ask(&apache, &format!("/{site}"), &format!("{site}-{round}"));
            let log = apache.error_log();
            assert_eq!(got["site"].str(), site, "round {round}: {got}\n{log}");
            assert_eq!(
                strings(&got["configured_by"]),
                [site],
                "round {round}: the script ran once, in its own interpreter: {got}"
            );
            assert_eq!(
                strings(&got["modules"]),
                [format!("{site}_only")],
                "round {round}: the other group's module is not in this sys.modules: {got}"
            );
            let group = got["application_group"].str();
            assert!(
                group.ends_with(&format!("|/{site}")),
                "%{{RESOURCE}} names the group after host and script: {got}"
            );
            assert_eq!(got["environ_application_group"].str(), group, "{got}");
            assert_eq!(got["echo"].str(), format!("{site}-{round}"), "{got}");
        }
    }
    // While one thread is held by a request, the other thread serves both sites: each thread
    // gets its own state in each sub-interpreter.
    let release = apache.marker("release-held");
    let held_path = format!("/alpha?hold={}", release.display());
    std::thread::scope(|scope| {
        let held = scope.spawn(|| ask(&apache, &held_path, "held"));
        wait_until_held(&apache, &release);
        let mut threads = std::collections::BTreeSet::new();
        for _ in 0..3 {
            for site in ["beta", "alpha"] {
                let got = ask(&apache, &format!("/{site}"), site);
                assert_eq!(got["site"].str(), site, "{got}");
                assert_eq!(strings(&got["configured_by"]), [site], "{got}");
                threads.insert(got["thread"].as_u64().unwrap());
            }
        }
        assert!(
            !held.is_finished(),
            "the held request ended before its release"
        );
        std::fs::write(&release, b"").unwrap();
        let held = held.join().unwrap();
        assert_eq!(held["site"].str(), "alpha", "{held}");
        threads.insert(held["thread"].as_u64().unwrap());
        assert!(
            threads.len() >= 2,
            "both daemon threads served requests: {threads:?}\n{}",
            apache.error_log()
        );
    });
    // wsgi.file_wrapper in a sub-interpreter.
    let resp = apache.get("/beta?file");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert!(resp.text().contains("import beta_only"), "{}", resp.text());

    for site in ["alpha", "beta"] {
        let log = apache.wait_for_log("Created Python sub-interpreter '", Duration::from_secs(10));
        let line = log
            .lines()
            .find(|l| {
                l.contains("Loading WSGI script '") && l.contains(&format!("/apps/{site}.wsgi"))
            })
            .unwrap_or_else(|| panic!("no loading line for {site}:\n{log}"));
        assert!(
            line.contains("' into interpreter '") && line.contains("' of daemon process 'sites'."),
            "{line}"
        );
        apache.wait_for_log(
            &format!(
                "{site} request with {} body bytes",
                format!("{site}-3").len()
            ),
            Duration::from_secs(10),
        );
    }
}

#[test]
fn the_global_group_shares_the_main_interpreter() {
    let apache = two_sites("subinterp-global", "WSGIApplicationGroup %{GLOBAL}");
    let first = ask(&apache, "/alpha", "");
    assert_eq!(first["site"].str(), "alpha", "{first}");
    let second = ask(&apache, "/beta", "");
    assert_eq!(
        second["site"].str(),
        "alpha",
        "both scripts share one settings module: {second}"
    );
    assert_eq!(strings(&second["configured_by"]), ["alpha", "beta"]);
    assert_eq!(strings(&second["modules"]), ["alpha_only", "beta_only"]);
    assert_eq!(second["application_group"].str(), "", "{second}");
    let log = apache.error_log();
    assert!(
        log.contains("into main interpreter of daemon process 'sites'."),
        "{log}"
    );
    assert!(!log.contains("Created Python sub-interpreter"), "{log}");
    assert_eq!(
        first["class_ids"], second["class_ids"],
        "one interpreter, one set of mod_wsgi classes"
    );
}

/// The classes mod_rwsgi gives applications (`wsgi.file_wrapper`, `mod_wsgi.RequestTimeout`,
/// the intercepting `signal.signal`, the restricted `sys.stdin`, `wsgi.input`,
/// `start_response`) are made in each interpreter,
/// not once per process: nothing of one interpreter may be used in another once they have
/// their own GIL (issue 32). Shown by their ids in two groups of one daemon process (alive at
/// once, so distinct objects have distinct ids), stable across requests of a group; a
/// built-in type (CPython's own, per-interpreter safe) may be the same.
#[test]
fn each_sub_interpreter_has_its_own_mod_wsgi_classes() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let apache = two_sites("subinterp-classes", "WSGIRestrictStdin On");
    let alpha = ask(&apache, "/alpha", "");
    let beta = ask(&apache, "/beta", "");
    for got in [&alpha, &beta] {
        assert_eq!(got["file_wrapper_is_the_module's"], true, "{got}");
    }
    for class in [
        "file_wrapper",
        "request_timeout",
        "signal",
        "stdin",
        "input",
        "log_buffer",
        "stderr_buffer",
    ] {
        let (a, b) = (&alpha["class_ids"][class], &beta["class_ids"][class]);
        assert!(
            a[0] == "builtins" && b[0] == "builtins" || a[1] != b[1],
            "{class}: each interpreter has its own: {alpha}\n{beta}"
        );
    }
    for (site, first) in [("alpha", &alpha), ("beta", &beta)] {
        let again = ask(&apache, &format!("/{site}"), "");
        assert_eq!(again["class_ids"], first["class_ids"], "{site}: {again}");
    }
}

#[test]
fn interrupt_timeout_interrupts_a_request_running_in_a_sub_interpreter() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    // threads=2: the daemon acts after request-timeout * (1 + ln 2) = 1.7 s. The default
    // %{RESOURCE} group: the app runs in a sub-interpreter.
    let (config, _) = ApacheConfig::new("subinterp-timeout").daemon_app(
        "probe.wsgi",
        "probe",
        "threads=2 request-timeout=1 interrupt-timeout=1",
        "",
    );
    let apache = config.start();
    let first = apache.get("/app/pid").text();
    let started = std::time::Instant::now();
    let resp = apache.get("/app/spin?s=30");
    assert_eq!(resp.status, 504, "{}", apache.error_log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "interrupted, not finished"
    );
    let log = apache.wait_for_log(
        "raised mod_wsgi.RequestTimeout in its thread",
        Duration::from_secs(10),
    );
    assert!(log.contains("into interpreter '"), "{log}");
    // The exception unwound the request in the sub-interpreter; the process stays.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let endings = apache.get("/app/spin-endings").text();
        if endings.contains("RequestTimeout") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "endings: {endings}\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(apache.get("/app/pid").text(), first);
    // No interrupt is left pending for the next requests, in either interpreter.
    for _ in 0..4 {
        let resp = apache.get("/app/pid");
        assert_eq!(resp.status, 200, "{}", apache.error_log());
    }
}

/// A script importing bcrypt, a PyO3-built extension module (tests/apps/requirements.txt).
const BCRYPT_SCRIPT: &str = r#"
import bcrypt

def application(environ, start_response):
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4))
    body = b"checkpw %r" % bcrypt.checkpw(b"secret", hashed)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

/// A script importing bcrypt only when it serves a request.
const LAZY_BCRYPT_SCRIPT: &str = r#"
def application(environ, start_response):
    import bcrypt
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [bcrypt.gensalt(4)]
"#;

#[test]
fn an_extension_module_refusing_sub_interpreters_is_named_with_the_global_group_hint() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let venv = common::test_venv();
    let config = ApacheConfig::new("subinterp-refuse");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    write(&root.join("apps/hash.wsgi"), BCRYPT_SCRIPT, 0o644);
    write(&root.join("apps/lazy.wsgi"), LAZY_BCRYPT_SCRIPT, 0o644);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess refuse threads=2 python-home={}\n\
             WSGIProcessGroup refuse\n\
             WSGIScriptAlias /global @DIR@/apps/hash.wsgi application-group=%{{GLOBAL}}\n\
             WSGIScriptAlias /named @DIR@/apps/hash.wsgi application-group=named\n\
             WSGIScriptAlias /lazy @DIR@/apps/lazy.wsgi application-group=lazy\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            venv.display()
        ))
        .start();
    // The main interpreter imports it (first): it works there.
    let resp = apache.get("/global");
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), apache.error_log());
    assert_eq!(resp.text(), "checkpw True");
    // A named group's sub-interpreter: PyO3 refuses; the request fails as any script that
    // fails to load in a daemon process does (503), and a line says which module and what to do.
    let resp = apache.get("/named");
    assert_eq!(resp.status, 503, "{}\n{}", resp.text(), apache.error_log());
    let log = apache.wait_for_log(
        "Python extension module 'bcrypt._bcrypt' refused to load in the sub-interpreter of \
         application group 'named'",
        Duration::from_secs(10),
    );
    let line = log
        .lines()
        .find(|l| l.contains("RW0235:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("`WSGIApplicationGroup %{GLOBAL}` runs the application there")
            && line.contains("PyO3 modules do not yet support subinterpreters"),
        "{line}"
    );
    // The main interpreter still serves it.
    let resp = apache.get("/global");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    // An import of it while serving a request: a 500, and the same line.
    let resp = apache.get("/lazy");
    assert_eq!(resp.status, 500, "{}\n{}", resp.text(), apache.error_log());
    let log = apache.wait_for_log(
        "Python extension module 'bcrypt._bcrypt' refused to load in the sub-interpreter of \
         application group 'lazy'",
        Duration::from_secs(10),
    );
    let line = log
        .lines()
        .find(|l| l.contains("RW0235:") && l.contains("'lazy'"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("the request to WSGI script '")
            && line.contains("`WSGIApplicationGroup %{GLOBAL}` runs the application there"),
        "{line}"
    );
}

/// A WSGIImportScript for the group `shared`: configures the settings singleton before any
/// site script runs there.
const PRELOAD_SCRIPT: &str = r#"
import settings_probe
settings_probe.SITE = "preloaded"
settings_probe.CONFIGURED_BY.append("import-script")
"#;

/// After `PRELOAD_SCRIPT` was imported into group `shared` (which /alpha uses): /alpha sees
/// what the import script did, /beta (its own group) does not.
fn assert_preloaded_into_the_shared_group_only(apache: &Apache) {
    let alpha = ask(apache, "/alpha", "");
    assert_eq!(alpha["application_group"].str(), "shared", "{alpha}");
    assert_eq!(alpha["site"].str(), "preloaded", "{alpha}");
    assert_eq!(
        strings(&alpha["configured_by"]),
        ["import-script", "alpha"],
        "{alpha}"
    );
    let beta = ask(apache, "/beta", "");
    assert_eq!(beta["site"].str(), "beta", "{beta}");
    assert_eq!(strings(&beta["configured_by"]), ["beta"], "{beta}");
}

#[test]
fn import_script_preloads_into_the_sub_interpreter_of_its_application_group() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let apache = two_sites_with(
        "subinterp-import",
        "WSGIImportScript @DIR@/apps/preload.py process-group=sites application-group=shared\n\
         <Location /alpha>\n    WSGIApplicationGroup shared\n</Location>",
        &[("apps/preload.py", PRELOAD_SCRIPT)],
    );
    // Preloaded at start-up, before any request, into the group's sub-interpreter.
    let log = apache.wait_for_log("/apps/preload.py' into ", Duration::from_secs(10));
    assert!(
        log.contains("/apps/preload.py' into interpreter 'shared' of daemon process 'sites'."),
        "{log}"
    );
    // The site of that group sees what the import script did; the other site does not.
    assert_preloaded_into_the_shared_group_only(&apache);
    let log = apache.error_log();
    assert_eq!(
        log.matches("Created Python sub-interpreter 'shared'")
            .count(),
        1,
        "one interpreter for the import script and the site: {log}"
    );
}

/// A service script (threads=0): runs until SIGTERM raises SystemExit in it.
const SERVICE_SCRIPT: &str = r#"
import sys
import time

print("service script running", file=sys.stderr, flush=True)
while True:
    time.sleep(0.2)
"#;

#[test]
fn a_service_script_naming_a_group_runs_in_the_main_interpreter_and_says_so() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new("subinterp-service");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    write(&root.join("apps/service.py"), SERVICE_SCRIPT, 0o644);
    let apache = config
        .conf(
            "WSGIDaemonProcess sidecar threads=0\n\
             WSGIImportScript @DIR@/apps/service.py process-group=sidecar \
             application-group=named\n",
        )
        .start();
    let log = apache.wait_for_log("service script running", Duration::from_secs(10));
    let running = log
        .lines()
        .find(|l| l.contains("Running service script '"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        running.contains(
            "/apps/service.py' in main interpreter (application group 'named') of daemon \
             process 'sidecar'."
        ),
        "{running}"
    );
    assert!(
        log.contains("RW0236: ")
            && log.contains("names application group 'named'; service scripts run in the main"),
        "{log}"
    );
    assert!(!log.contains("Created Python sub-interpreter"), "{log}");
}

#[test]
fn embedded_mode_runs_each_resource_group_in_its_own_sub_interpreter() {
    embedded_resource_groups(Mpm::Event);
}

#[test]
fn embedded_mode_under_prefork_runs_each_resource_group_in_its_own_sub_interpreter() {
    // Prefork: the child's main thread started Python and serves the requests.
    embedded_resource_groups(Mpm::Prefork);
}

/// Two sites in the default %{RESOURCE} groups of one Apache child of `mpm`.
fn embedded_resource_groups(mpm: Mpm) {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    // No WSGIApplicationGroup line: the default %{RESOURCE}, one group per script. One
    // Apache child, so every request reaches the same interpreters.
    let config = ApacheConfig::new(&format!("subinterp-embedded-{mpm:?}")).mpm(mpm);
    let extra = if mpm == Mpm::Prefork {
        "StartServers 1
MinSpareServers 1
MaxSpareServers 1
MaxRequestWorkers 1"
    } else {
        ""
    };
    let root = config.root().to_path_buf();
    let apache = two_sites_in(Mode::Embedded, config, extra, &[]);
    for round in 0..3 {
        for site in ["alpha", "beta"] {
            let got = ask(&apache, &format!("/{site}"), &format!("{site}-{round}"));
            assert_eq!(got["site"].str(), site, "round {round}: {got}");
            assert_eq!(strings(&got["configured_by"]), [site], "{got}");
            assert_eq!(
                strings(&got["modules"]),
                [format!("{site}_only")],
                "the other group's module is not in this sys.modules: {got}"
            );
            let group = got["application_group"].str();
            assert!(group.ends_with(&format!("|/{site}")), "{got}");
            assert_eq!(got["environ_application_group"].str(), group, "{got}");
        }
    }
    let log = apache.error_log();
    for site in ["alpha", "beta"] {
        assert!(
            log.lines().any(
                |l| l.contains(&format!("/apps/{site}.wsgi' into interpreter '"))
                    && l.contains(&format!("|/{site}' in embedded mode."))
            ),
            "{site}: {log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("Created Python sub-interpreter '")
                    && l.contains(&format!("|/{site}' in embedded mode."))),
            "{site}: {log}"
        );
    }
    // Touch-reload (WSGIScriptReloading On, the default) re-imports the script in its own
    // interpreter: its settings module is still there (configured once more by the script);
    // the other site is untouched.
    let alpha = root.join("apps/alpha.wsgi");
    let text = std::fs::read_to_string(&alpha).unwrap();
    write(&alpha, &format!("{text}\n# touched\n"), 0o644);
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&alpha)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let got = ask(&apache, "/alpha", "");
    assert_eq!(got["site"].str(), "alpha", "{got}");
    assert_eq!(
        strings(&got["configured_by"]),
        ["alpha", "alpha"],
        "re-imported in the same sub-interpreter: {got}\n{}",
        apache.error_log()
    );
    let log = apache.wait_for_log("Reloading WSGI script '", Duration::from_secs(10));
    assert!(
        log.lines().any(|l| l.contains("Reloading WSGI script '")
            && l.contains("/apps/alpha.wsgi' into interpreter '")
            && l.contains("|/alpha' in embedded mode.")),
        "{log}"
    );
    let beta = ask(&apache, "/beta", "");
    assert_eq!(strings(&beta["configured_by"]), ["beta"], "{beta}");
    // The child stops at once, its sub-interpreters ended first (under the event MPM by a
    // thread other than the request thread that imported threading in them).
    let mut apache = apache;
    apache.stop_gracefully();
    let log = apache.error_log();
    for site in ["alpha", "beta"] {
        assert!(
            log.lines()
                .any(|l| l.contains("RW0262: Ended Python sub-interpreter '")
                    && l.contains(&format!("|/{site}' "))),
            "{log}"
        );
    }
    assert!(
        !log.contains("exit signal") && !log.contains("still did not exit"),
        "{log}"
    );
}

/// A probe served at several locations, each in another kind of application group: which
/// `sys.modules` it runs with (one per interpreter), and how many scripts configured the
/// settings module there.
const PROBE_SCRIPT: &str = r#"
import json
import sys

import settings_probe

settings_probe.CONFIGURED_BY.append(__file__)

def application(environ, start_response):
    answer = json.dumps({
        "group": environ["mod_wsgi.application_group"],
        "sys_modules": id(sys.modules),
        "configured_by": len(settings_probe.CONFIGURED_BY),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer]
"#;

/// %{RESOURCE}, %{SERVER}, %{HOST}, %{ENV:VAR} (SetEnv) and a named group each get their
/// own interpreter in `mode`; two scripts in %{GLOBAL} share the main one.
fn each_kind_of_group_gets_its_own_interpreter(mode: Mode) {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new(&format!("subinterp-kinds-{mode:?}")).module("env");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    mkdir(&root.join("lib"));
    write(&root.join("lib/settings_probe.py"), SETTINGS_PROBE, 0o644);
    write(&root.join("apps/probe.wsgi"), PROBE_SCRIPT, 0o644);
    write(&root.join("apps/probe2.wsgi"), PROBE_SCRIPT, 0o644);
    let mut conf = format!("{}\n", mode.conf());
    for (path, group, script) in [
        ("/res", None, "probe"),
        ("/server", Some("%{SERVER}"), "probe"),
        ("/host", Some("%{HOST}"), "probe"),
        ("/env", Some("%{ENV:PROBE_GROUP}"), "probe"),
        ("/named", Some("named"), "probe"),
        ("/global1", Some("%{GLOBAL}"), "probe"),
        ("/global2", Some("%{GLOBAL}"), "probe2"),
    ] {
        conf.push_str(&format!(
            "WSGIScriptAlias {path} @DIR@/apps/{script}.wsgi\n"
        ));
        if let Some(group) = group {
            conf.push_str(&format!(
                "<Location {path}>\n    WSGIApplicationGroup {group}\n</Location>\n"
            ));
        }
    }
    conf.push_str(
        "<Location /env>\n    SetEnv PROBE_GROUP from-env\n</Location>\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
    );
    let apache = config.conf(&conf).start();
    let probe = |path: &str| {
        let headers: &[(&str, &str)] = if path == "/host" {
            &[("Host", "other.example")]
        } else {
            &[]
        };
        let resp = apache.request("GET", path, headers, b"");
        assert!(
            resp.status == 200,
            "{path}: {}\n{}\n{}",
            resp.status,
            resp.text(),
            apache.error_log()
        );
        json(&resp)
    };
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..2 {
        for path in ["/res", "/server", "/host", "/env", "/named"] {
            let got = probe(path);
            let group = got["group"].str().to_string();
            match path {
                "/res" => assert!(group.ends_with("|/res"), "{got}"),
                "/server" => assert!(group.starts_with("127.0.0.1"), "{got}"),
                "/host" => assert!(group.starts_with("other.example"), "{got}"),
                "/env" => assert_eq!(group, "from-env", "{got}"),
                _ => assert_eq!(group, "named", "{got}"),
            }
            assert_eq!(
                got["configured_by"].as_u64(),
                Some(1),
                "round {round}, {path}: only its own script ran in its interpreter: {got}\n{}",
                apache.error_log()
            );
            seen.insert(path, got["sys_modules"].as_u64().unwrap());
        }
    }
    let first = probe("/global1");
    let second = probe("/global2");
    assert_eq!(first["group"].str(), "", "{first}");
    assert_eq!(
        first["sys_modules"], second["sys_modules"],
        "both %{{GLOBAL}} scripts share the main interpreter: {first} {second}"
    );
    assert_eq!(second["configured_by"].as_u64(), Some(2), "{second}");
    seen.insert("/global", first["sys_modules"].as_u64().unwrap());
    let distinct: std::collections::BTreeSet<u64> = seen.values().copied().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "one interpreter per group: {seen:?}\n{}",
        apache.error_log()
    );
    let log = apache.error_log();
    for group in ["named", "from-env"] {
        assert!(
            log.contains(&format!(
                "Created Python sub-interpreter '{group}' in {}.",
                match mode {
                    Mode::Daemon => "daemon process 'sites'",
                    Mode::Embedded => "embedded mode",
                }
            )),
            "{group}: {log}"
        );
        assert!(
            log.contains(&format!(
                "/apps/probe.wsgi' into interpreter '{group}' {}.",
                mode.context()
            )),
            "{group}: {log}"
        );
    }
}

#[test]
fn each_kind_of_group_gets_its_own_sub_interpreter_in_daemon_mode() {
    each_kind_of_group_gets_its_own_interpreter(Mode::Daemon);
}

#[test]
fn each_kind_of_group_gets_its_own_sub_interpreter_in_embedded_mode() {
    each_kind_of_group_gets_its_own_interpreter(Mode::Embedded);
}

#[test]
fn embedded_import_script_preloads_into_the_sub_interpreter_of_its_group() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let apache = two_sites_in(
        Mode::Embedded,
        ApacheConfig::new("subinterp-embedded-import"),
        "WSGIImportScript @DIR@/apps/preload.py process-group=%{GLOBAL} \
         application-group=shared\n\
         <Location /alpha>\n    WSGIApplicationGroup shared\n</Location>",
        &[("apps/preload.py", PRELOAD_SCRIPT)],
    );
    // Loaded as the Apache child starts, before any request.
    let log = apache.wait_for_log("/apps/preload.py' into ", Duration::from_secs(10));
    assert!(
        log.contains("/apps/preload.py' into interpreter 'shared' in embedded mode."),
        "{log}"
    );
    assert_preloaded_into_the_shared_group_only(&apache);
}

/// Phase scripts for the group `alpha`: each answers yes only when it runs where the alpha
/// site's module is imported and the beta site's is not (the alpha group's interpreter).
/// `sys` is imported at call time: the interpreter running the call, not the one that loaded
/// the script, answers.
const PHASE_SCRIPT: &str = r#"
def in_alpha():
    import sys
    return "alpha_only" in sys.modules and "beta_only" not in sys.modules

def allow_access(environ, host):
    return in_alpha()

def check_password(environ, user, password):
    return user == "reader" and password == "secret" and in_alpha()

def groups_for_user(environ, user):
    return ["alpha-readers"] if in_alpha() else []

def application_group(environ):
    return "alpha" if in_alpha() else "not-alpha"

def handle_request(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"in alpha: %r" % in_alpha()]
"#;

#[test]
fn phase_scripts_run_in_the_sub_interpreter_of_their_application_group() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new("subinterp-phase")
        .module("authn_core")
        .module("auth_basic");
    let apache = two_sites_in(
        Mode::Embedded,
        config,
        "<Location /alpha>\n    WSGIApplicationGroup alpha\n</Location>\n\
         <Location /beta>\n    WSGIApplicationGroup beta\n</Location>\n\
         WSGIScriptAlias /guarded @DIR@/apps/alpha.wsgi application-group=alpha\n\
         <Location /guarded>\n\
         \x20   WSGIAccessScript @DIR@/apps/phase.py application-group=alpha\n\
         \x20   AuthType Basic\n    AuthName \"Sites\"\n    AuthBasicProvider wsgi\n\
         \x20   WSGIAuthUserScript @DIR@/apps/phase.py application-group=alpha\n\
         \x20   WSGIAuthGroupScript @DIR@/apps/phase.py application-group=alpha\n\
         \x20   Require wsgi-group alpha-readers\n</Location>\n\
         WSGIScriptAlias /dispatched @DIR@/apps/alpha.wsgi\n\
         <Location /dispatched>\n\
         \x20   WSGIDispatchScript @DIR@/apps/phase.py application-group=alpha\n</Location>\n\
         WSGIHandlerScript phase-handler @DIR@/apps/phase.py application-group=alpha\n\
         <Location /handled>\n    SetHandler phase-handler\n</Location>",
        &[("apps/phase.py", PHASE_SCRIPT)],
    );
    // Each site imports its own module, in its own group.
    assert_eq!(
        ask(&apache, "/alpha", "")["application_group"].str(),
        "alpha"
    );
    assert_eq!(ask(&apache, "/beta", "")["application_group"].str(), "beta");
    // Access, authentication and group scripts of the group alpha see alpha's modules only.
    let auth = "Basic cmVhZGVyOnNlY3JldA=="; // reader:secret
    let resp = apache.request("GET", "/guarded", &[("Authorization", auth)], b"");
    assert!(
        resp.status == 200,
        "status {}: {}\n{}",
        resp.status,
        resp.text(),
        apache.error_log()
    );
    let got = json(&resp);
    assert_eq!(got["application_group"].str(), "alpha", "{got}");
    assert_eq!(strings(&got["configured_by"]), ["alpha"], "{got}");
    // The dispatch script of the group alpha chooses the group from there.
    let got = ask(&apache, "/dispatched", "");
    assert_eq!(got["application_group"].str(), "alpha", "{got}");
    assert_eq!(strings(&got["configured_by"]), ["alpha"], "{got}");
    // A handler script with application-group=alpha.
    let resp = apache.get("/handled/anything.txt");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert_eq!(resp.text(), "in alpha: True");
    let log = apache.error_log();
    assert!(
        log.contains("/apps/phase.py' into interpreter 'alpha' in embedded mode."),
        "{log}"
    );
}

/// Registers an atexit handler and a `mod_wsgi.subscribe_shutdown` callback that each append
/// "<interpreter> <what>" to `{log}`; answers the interpreter's name.
const HOOKS_SCRIPT: &str = r#"
import atexit
import mod_wsgi

NAME = mod_wsgi.application_group or "%{GLOBAL}"

def note(what):
    with open("{log}", "a") as f:
        f.write("%s %s\n" % (NAME, what))

atexit.register(note, "atexit")
mod_wsgi.subscribe_shutdown(lambda event, **kwargs: note("shutdown"))

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [NAME.encode()]
"#;

#[test]
fn sub_interpreters_run_their_shutdown_callbacks_and_atexit_before_the_main_interpreter() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new("subinterp-end");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    let log = config.markers_dir().join("hooks.log");
    write(
        &root.join("apps/hooks.wsgi"),
        &HOOKS_SCRIPT.replace("{log}", &log.display().to_string()),
        0o644,
    );
    let mut apache = config
        .conf(
            "WSGIDaemonProcess sites threads=2\n\
             WSGIProcessGroup sites\n\
             <Location /alpha>\n    WSGIApplicationGroup alpha\n</Location>\n\
             <Location /beta>\n    WSGIApplicationGroup beta\n</Location>\n\
             <Location /main>\n    WSGIApplicationGroup %{GLOBAL}\n</Location>\n\
             WSGIScriptAlias /alpha @DIR@/apps/hooks.wsgi\n\
             WSGIScriptAlias /beta @DIR@/apps/hooks.wsgi\n\
             WSGIScriptAlias /main @DIR@/apps/hooks.wsgi\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        )
        .start();
    for (path, name) in [
        ("/alpha", "alpha"),
        ("/beta", "beta"),
        ("/main", "%{GLOBAL}"),
    ] {
        let resp = apache.get(path);
        assert_eq!(resp.status, 200, "{path}\n{}", apache.error_log());
        assert_eq!(resp.text(), name);
    }
    apache.stop_gracefully();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let error_log = apache.error_log();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {lines:?}\n{error_log}"))
    };
    for sub in ["alpha", "beta"] {
        let shutdown = at(&format!("{sub} shutdown"));
        let atexit = at(&format!("{sub} atexit"));
        assert!(shutdown < atexit, "{lines:?}");
        assert!(
            atexit < at("%{GLOBAL} shutdown"),
            "the main interpreter's callbacks run after every sub-interpreter's: {lines:?}"
        );
        assert!(
            error_log.contains(&format!("Ended Python sub-interpreter '{sub}'")),
            "{error_log}"
        );
    }
    assert!(
        at("%{GLOBAL} shutdown") < at("%{GLOBAL} atexit"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 6, "each callback ran once: {lines:?}");
    assert!(
        !error_log.contains("Not finalising Python") && !error_log.contains("Fatal Python error"),
        "{error_log}"
    );
}

/// Answers its interpreter's name, sys.path and what print() does there.
const OPTIONS_PROBE: &str = r#"
import json
import sys
import mod_wsgi

def application(environ, start_response):
    try:
        print("print from %s" % mod_wsgi.application_group)
        printed = "ok"
    except Exception as e:
        printed = type(e).__name__
    body = json.dumps({
        "group": mod_wsgi.application_group,
        "path": sys.path,
        "print": printed,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"#;

#[test]
fn interpreter_options_sections_scope_python_path_and_stdout_to_their_interpreters() {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new("subinterp-options");
    let root = config.root().to_path_buf();
    for dir in ["apps", "alpha-lib", "bad-lib"] {
        mkdir(&root.join(dir));
    }
    write(&root.join("apps/probe.wsgi"), OPTIONS_PROBE, 0o644);
    // A .pth import line that raises SystemExit (not caught by site.addsitedir): the
    // sub-interpreter's set-up fails.
    write(
        &root.join("bad-lib/refuse.pth"),
        "import sys; raise SystemExit('refused by refuse.pth')\n",
        0o644,
    );
    let mut apache = config
        .conf(
            "WSGIRestrictStdout On\n\
             <WSGIInterpreterOptions process-group=sites application-group=alpha>\n\
             \x20   WSGIRestrictStdout Off\n\
             \x20   WSGIPythonPath @DIR@/alpha-lib\n\
             \x20   WSGIPerInterpreterGIL Off\n\
             </WSGIInterpreterOptions>\n\
             <WSGIInterpreterOptions application-group=broken>\n\
             \x20   WSGIPythonPath @DIR@/bad-lib\n\
             </WSGIInterpreterOptions>\n\
             WSGIDaemonProcess sites threads=2\n\
             WSGIProcessGroup sites\n\
             <Location /alpha>\n    WSGIApplicationGroup alpha\n</Location>\n\
             <Location /beta>\n    WSGIApplicationGroup beta\n</Location>\n\
             <Location /main>\n    WSGIApplicationGroup %{GLOBAL}\n</Location>\n\
             <Location /broken>\n    WSGIApplicationGroup broken\n</Location>\n\
             WSGIScriptAlias /alpha @DIR@/apps/probe.wsgi\n\
             WSGIScriptAlias /beta @DIR@/apps/probe.wsgi\n\
             WSGIScriptAlias /main @DIR@/apps/probe.wsgi\n\
             WSGIScriptAlias /broken @DIR@/apps/probe.wsgi\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        )
        .start();
    let alpha_lib = root.join("alpha-lib").display().to_string();
    let alpha = ask(&apache, "/alpha", "");
    assert_eq!(alpha["group"].str(), "alpha", "{alpha}");
    assert_eq!(
        alpha["print"].str(),
        "ok",
        "WSGIRestrictStdout Off in alpha's section: {alpha}"
    );
    assert!(
        strings(&alpha["path"]).contains(&alpha_lib),
        "alpha's section adds its python-path: {alpha}"
    );
    for path in ["/beta", "/main"] {
        let other = ask(&apache, path, "");
        assert_eq!(
            other["print"].str(),
            "OSError",
            "{path}: the top-level WSGIRestrictStdout On applies: {other}"
        );
        assert!(
            !strings(&other["path"]).contains(&alpha_lib),
            "{path}: alpha's python-path is not here: {other}"
        );
    }
    apache.wait_for_log("print from alpha", Duration::from_secs(10));
    // A sub-interpreter whose set-up fails: 500 and the traceback in the log, the process
    // serves on.
    let resp = apache.get("/broken");
    assert_eq!(resp.status, 500, "{}", apache.error_log());
    let log = apache.wait_for_log("refused by refuse.pth", Duration::from_secs(10));
    assert!(
        log.contains("RW0232") && log.contains("SystemExit") && log.contains("'broken'"),
        "{log}"
    );
    assert_eq!(ask(&apache, "/alpha", "")["group"].str(), "alpha");
    // The failed interpreter was ended when its set-up failed: the others are ended and
    // Python finalised at exit without an abort.
    apache.stop_gracefully();
    let log = apache.error_log();
    assert!(
        log.contains("Ended Python sub-interpreter 'alpha'")
            && !log.contains("Fatal Python error")
            && !log.contains("SIGABRT"),
        "{log}"
    );
}

/// Whether the module's Python has per-interpreter GILs (PEP 684, 3.12+) and runs groups in
/// sub-interpreters (not free-threaded); prints why a test is skipped otherwise.
fn own_gil_available() -> bool {
    let version = common::MODULE_PYTHON_VERSION;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (3, 12) {
        eprintln!("skipped: WSGIPerInterpreterGIL On needs Python 3.12+ (module: {version})");
        return false;
    }
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return false;
    }
    true
}

/// WSGIPerInterpreterGIL On (issue 32): two application groups of one daemon process each run
/// in a sub-interpreter with its own GIL and answer with the whole request path (wsgi.input,
/// wsgi.errors, sys.stderr, start_response, file_wrapper, request_data, the per-interpreter
/// classes), from both daemon threads, also while the other thread holds a request. Its own
/// GIL shows in the switch interval, a setting of the GIL: set in one group, the other keeps
/// its own (with one shared GIL both would see it).
#[test]
fn per_interpreter_gil_groups_each_answer_from_their_own_interpreter_and_gil() {
    if !own_gil_available() {
        return;
    }
    let apache = two_sites("subinterp-owngil", "WSGIPerInterpreterGIL On");
    let before = ask(&apache, "/beta", "")["switch_interval"]
        .as_f64()
        .unwrap();
    let set = ask(&apache, "/alpha?switch=0.0123", "");
    assert_eq!(set["switch_interval"].as_f64(), Some(0.0123), "{set}");
    for round in 0..3 {
        for site in ["alpha", "beta"] {
            let got = ask(&apache, &format!("/{site}"), &format!("{site}-{round}"));
            assert_eq!(got["site"].str(), site, "round {round}: {got}");
            assert_eq!(strings(&got["configured_by"]), [site], "{got}");
            assert_eq!(strings(&got["modules"]), [format!("{site}_only")], "{got}");
            assert_eq!(got["echo"].str(), format!("{site}-{round}"), "{got}");
            assert_eq!(got["request_data"]["site"].str(), site, "{got}");
            assert_eq!(got["process_metrics"], true, "{got}");
            assert_eq!(got["file_wrapper_is_the_module's"], true, "{got}");
            let expected = if site == "alpha" { 0.0123 } else { before };
            assert_eq!(
                got["switch_interval"].as_f64(),
                Some(expected),
                "{site}: each interpreter has its own GIL and switch interval: {got}\n{}",
                apache.error_log()
            );
        }
    }
    let (alpha, beta) = (ask(&apache, "/alpha", ""), ask(&apache, "/beta", ""));
    for (class, a) in alpha["class_ids"].as_object().unwrap() {
        let b = &beta["class_ids"][class];
        assert!(
            a[0] == "builtins" && b[0] == "builtins" || a[1] != b[1],
            "{class}: each interpreter has its own: {alpha}\n{beta}"
        );
    }
    // One thread held in alpha: the other serves both groups meanwhile.
    let release = apache.marker("release-held");
    let held_path = format!("/alpha?hold={}", release.display());
    std::thread::scope(|scope| {
        let held = scope.spawn(|| ask(&apache, &held_path, "held"));
        wait_until_held(&apache, &release);
        for site in ["beta", "alpha", "beta"] {
            assert_eq!(ask(&apache, &format!("/{site}"), "")["site"].str(), site);
        }
        assert!(
            !held.is_finished(),
            "the held request ended before its release"
        );
        std::fs::write(&release, b"").unwrap();
        assert_eq!(held.join().unwrap()["site"].str(), "alpha");
    });
    let resp = apache.get("/beta?file");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    assert!(resp.text().contains("import beta_only"), "{}", resp.text());
    for site in ["alpha", "beta"] {
        let log = apache.wait_for_log(&format!("{site} on sys.stderr"), Duration::from_secs(10));
        let body = format!("{site}-0");
        assert!(
            log.contains(&format!("{site} request with {} body bytes", body.len())),
            "wsgi.errors: {log}"
        );
    }
    let log = apache.error_log();
    assert_eq!(
        log.matches("with its own GIL (WSGIPerInterpreterGIL On)")
            .count(),
        2,
        "{log}"
    );
}

/// An extension module without per-interpreter GIL support (bcrypt: PyO3, single-phase
/// init) refuses to load in an own-GIL sub-interpreter: the request fails and the log names
/// the module and the %{GLOBAL} way out, as for shared-GIL ones; `<WSGIInterpreterOptions>`
/// scopes the setting (the group `shared` keeps the shared GIL, and bcrypt imports there only
/// as PyO3 allows: in the first interpreter, here the main one).
#[test]
fn an_extension_module_refusing_own_gil_interpreters_is_named() {
    if !own_gil_available() {
        return;
    }
    let venv = common::test_venv();
    let config = ApacheConfig::new("subinterp-owngil-refuse");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    write(&root.join("apps/hash.wsgi"), BCRYPT_SCRIPT, 0o644);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess refuse threads=2 python-home={}\n\
             WSGIProcessGroup refuse\n\
             <WSGIInterpreterOptions application-group=own>\n    WSGIPerInterpreterGIL On\n\
             </WSGIInterpreterOptions>\n\
             WSGIScriptAlias /global @DIR@/apps/hash.wsgi application-group=%{{GLOBAL}}\n\
             WSGIScriptAlias /own @DIR@/apps/hash.wsgi application-group=own\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            venv.display()
        ))
        .start();
    let resp = apache.get("/global");
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), apache.error_log());
    let resp = apache.get("/own");
    assert_eq!(resp.status, 503, "{}\n{}", resp.text(), apache.error_log());
    let log = apache.wait_for_log(
        "refused to load in the sub-interpreter of application group 'own'",
        Duration::from_secs(10),
    );
    let line = log
        .lines()
        .find(|l| l.contains("RW0235:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("'bcrypt")
            && line.contains("`WSGIApplicationGroup %{GLOBAL}` runs the application there"),
        "{line}"
    );
    assert!(
        log.contains("Created Python sub-interpreter 'own'")
            && log.contains("with its own GIL (WSGIPerInterpreterGIL On)"),
        "{log}"
    );
    // The process lives on: the main interpreter still serves.
    let resp = apache.get("/global");
    assert_eq!(resp.status, 200, "{}", apache.error_log());
}

/// WSGISwitchInterval in a `<WSGIInterpreterOptions application-group=NAME>` section, as
/// mod_wsgi 6: the switch interval is kept in the GIL, so it is applied to a group whose
/// interpreter has its own GIL (`own`: only its GIL's interval changes; the shared-GIL group
/// and `%{GLOBAL}` keep theirs), and skipped with a warning, at configtest and when the
/// interpreter is made, for a group sharing the GIL (`shared`), where it would change every
/// interpreter's.
#[test]
fn an_application_group_section_sets_the_switch_interval_of_an_own_gil_interpreter_only() {
    if !own_gil_available() {
        return;
    }
    let config = ApacheConfig::new("subinterp-owngil-switch");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    write(
        &root.join("apps/probe.wsgi"),
        "import sys\n\
         def application(environ, start_response):\n\
         \x20   body = repr(sys.getswitchinterval()).encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [body]\n",
        0o644,
    );
    let config = config.conf(
        "<WSGIInterpreterOptions application-group=own>\n\
         \x20   WSGIPerInterpreterGIL On\n\
         \x20   WSGISwitchInterval 0.001\n\
         </WSGIInterpreterOptions>\n\
         <WSGIInterpreterOptions application-group=shared>\n\
         \x20   WSGISwitchInterval 0.002\n\
         </WSGIInterpreterOptions>\n\
         WSGIDaemonProcess sites threads=2\n\
         WSGIProcessGroup sites\n\
         WSGIScriptAlias /own @DIR@/apps/probe.wsgi application-group=own\n\
         WSGIScriptAlias /shared @DIR@/apps/probe.wsgi application-group=shared\n\
         WSGIScriptAlias /main @DIR@/apps/probe.wsgi application-group=%{GLOBAL}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
    );
    let (ok, out) = config.configtest();
    assert!(ok, "{out}");
    assert!(
        out.contains("WSGISwitchInterval inside the <WSGIInterpreterOptions> at ")
            && out.contains("is not applied to sub-interpreter 'shared' in embedded mode, daemon process group 'sites'"),
        "the shared-GIL section is warned about: {out}"
    );
    assert!(
        !out.contains("sub-interpreter 'own'"),
        "the own-GIL section is not: {out}"
    );
    let apache = config.start();
    let interval = |path: &str| {
        let resp = apache.get(path);
        assert_eq!(resp.status, 200, "{path}: {}", apache.error_log());
        resp.text().parse::<f64>().unwrap()
    };
    let main = interval("/main");
    assert_ne!(main, 0.001, "the default interval: {main}");
    for round in 0..3 {
        for (path, expected) in [("/own", 0.001), ("/shared", main), ("/main", main)] {
            assert_eq!(
                interval(path),
                expected,
                "round {round}, {path}\n{}",
                apache.error_log()
            );
        }
    }
    let log = apache.wait_for_log("RW0264:", Duration::from_secs(10));
    assert!(
        log.contains("switch interval 0.002 s of the <WSGIInterpreterOptions> section for sub-interpreter 'shared'"),
        "{log}"
    );
    assert!(
        log.contains(
            "Python switch interval set to 0.001 s for sub-interpreter 'own' (its own GIL's"
        ),
        "{log}"
    );
}

/// A request of an own-GIL group does not take the main interpreter's GIL (issue 32): while a
/// `%{GLOBAL}` request keeps the main GIL busy (pure Python with a switch interval of 2 s, so
/// another thread asking for that GIL waits up to 2 s), requests of an own-GIL group on the
/// other daemon thread are answered at once, one after another.
#[test]
fn own_gil_requests_do_not_wait_for_a_busy_main_interpreter() {
    if !own_gil_available() {
        return;
    }
    let config = ApacheConfig::new("subinterp-owngil-main-busy");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    write(
        &root.join("apps/hello.wsgi"),
        "import time\n\
         def application(environ, start_response):\n\
         \x20   if environ['QUERY_STRING'] == 'slow':\n\
         \x20       time.sleep(1)\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'hello']\n",
        0o644,
    );
    // Holds the main GIL for 6 s: nothing in the loop releases it (no I/O, no sleep).
    write(
        &root.join("apps/busy.wsgi"),
        "import sys, time\n\
         def application(environ, start_response):\n\
         \x20   open(environ['QUERY_STRING'], 'w').close()\n\
         \x20   sys.setswitchinterval(2.0)\n\
         \x20   deadline = time.monotonic() + 6\n\
         \x20   n = 0\n\
         \x20   while time.monotonic() < deadline:\n\
         \x20       for i in range(10000):\n\
         \x20           n += i\n\
         \x20   sys.setswitchinterval(0.005)\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'busy done']\n",
        0o644,
    );
    let apache = config
        .conf(
            "WSGIPerInterpreterGIL On\n\
             WSGIDaemonProcess sites threads=2\n\
             WSGIProcessGroup sites\n\
             WSGIScriptAlias /own @DIR@/apps/hello.wsgi application-group=own\n\
             WSGIScriptAlias /busy @DIR@/apps/busy.wsgi application-group=%{GLOBAL}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        )
        .start();
    // The group's interpreter is made (through the main interpreter) before the main GIL
    // gets busy, and each daemon thread serves a request of it (two at once, each held 1 s):
    // a thread's first request keeps its main-interpreter thread state, with the main GIL.
    assert_eq!(apache.get("/own").status, 200, "{}", apache.error_log());
    std::thread::scope(|scope| {
        let slow = [(); 2].map(|_| scope.spawn(|| apache.get("/own?slow").status));
        for s in slow {
            assert_eq!(s.join().unwrap(), 200, "{}", apache.error_log());
        }
    });
    let started = apache.marker("busy-started");
    let busy_path = format!("/busy?{}", started.display());
    std::thread::scope(|scope| {
        let busy = scope.spawn(|| apache.get(&busy_path));
        apache.wait_for_marker(&started, Duration::from_secs(20));
        let t0 = std::time::Instant::now();
        for i in 0..3 {
            let resp = apache.get("/own");
            assert_eq!(resp.status, 200, "request {i}: {}", apache.error_log());
            assert_eq!(resp.text(), "hello");
        }
        let took = t0.elapsed();
        let busy_still_running = !busy.is_finished();
        let busy = busy.join().unwrap();
        assert_eq!(busy.status, 200, "{}", apache.error_log());
        assert!(
            busy_still_running,
            "the busy request ended before the own-GIL requests did ({took:?})"
        );
        assert!(
            took < Duration::from_millis(1500),
            "three own-GIL requests took {took:?} while the main interpreter was busy: they \
             waited for the main GIL\n{}",
            apache.error_log()
        );
    });
}

/// The mod_wsgi API inside an application group's interpreter: at import it subscribes to
/// events, adds `mod_wsgi.LogHandler` to a logger and starts recording metrics; each request
/// answers what the interpreter sees (its `os.environ`, its events, the metrics) and logs
/// through the handler. `?set=NAME=VALUE` first sets `os.environ[NAME]`.
const API_SCRIPT: &str = r#"
import json
import logging
import os
import pwd
import sys

import mod_wsgi

EVENTS = []

@mod_wsgi.subscribe_events
def on_event(name, **event):
    if name == "request_started":
        EVENTS.append([name, mod_wsgi.application_group, event["request_environ"]["REQUEST_URI"]])
    elif name == "request_finished":
        EVENTS.append([name, mod_wsgi.application_group,
                       event["request_data"].get("token"), event["status"]])

LOGGER = logging.getLogger("api-probe")
LOGGER.setLevel(logging.INFO)
LOGGER.propagate = False
LOGGER.addHandler(mod_wsgi.LogHandler())

mod_wsgi.start_recording_metrics()

def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    token = query.partition("token=")[2].partition("&")[0]
    mod_wsgi.request_data()["token"] = token
    if query.startswith("set="):
        name, _, value = query[len("set="):].partition("&")[0].partition("=")
        os.environ[name] = value
    group = mod_wsgi.application_group
    LOGGER.warning("api-probe log group=%r token=%s", group, token)
    uri = environ["REQUEST_URI"]
    request_metrics = mod_wsgi.request_metrics()
    server_metrics = mod_wsgi.server_metrics()
    answer = json.dumps({
        "group": group,
        "pid": os.getpid(),
        "token": token,
        "probe": os.environ.get("RWSGI_API_PROBE"),
        "set_by": os.environ.get("RWSGI_SET_BY"),
        "home": os.environ.get("HOME"),
        "user_home": pwd.getpwuid(os.geteuid()).pw_dir,
        "user": os.environ.get("USER"),
        "user_name": pwd.getpwuid(os.geteuid()).pw_name,
        "events": list(EVENTS),
        "request_metrics": request_metrics and {
            key: request_metrics[key] for key in ("pid", "request_count", "sample_period")
        },
        "server_metrics": server_metrics and {
            "processes": len(server_metrics["processes"]),
            "asking": [w["request"] for p in server_metrics["processes"]
                       for w in p["workers"] if uri in w["request"]],
        },
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(answer)))])
    return [answer]
"#;

/// `os.environ`, `subscribe_events`, `LogHandler`, `request_metrics()` and `server_metrics()`
/// in the named groups `alpha`, `beta` and `gamma` (and, to compare, `%{GLOBAL}`) in `mode`.
fn the_mod_wsgi_api_works_in_sub_interpreters(mode: Mode) {
    if common::module_python_is_free_threaded() {
        eprintln!("skipped: free-threaded builds run every group in the main interpreter");
        return;
    }
    let config = ApacheConfig::new(&format!("subinterp-api-{mode:?}"))
        .env("RWSGI_API_PROBE", "apache-env")
        .env("HOME", "/root")
        .env("USER", "root");
    let root = config.root().to_path_buf();
    mkdir(&root.join("apps"));
    mkdir(&root.join("lib"));
    write(&root.join("apps/api.wsgi"), API_SCRIPT, 0o644);
    let (place, expected_probe) = match mode {
        Mode::Daemon => (
            "WSGIDaemonProcess sites threads=2 env=RWSGI_API_PROBE=daemon-env server-metrics=on\n\
             WSGIProcessGroup sites",
            "daemon-env",
        ),
        Mode::Embedded => ("WSGIServerMetrics On", "apache-env"),
    };
    let mut conf = format!("{place}\nExtendedStatus On\n");
    for (path, group) in [
        ("/alpha", "alpha"),
        ("/beta", "beta"),
        ("/gamma", "gamma"),
        ("/main", "%{GLOBAL}"),
    ] {
        conf.push_str(&format!(
            "WSGIScriptAlias {path} @DIR@/apps/api.wsgi application-group={group}\n"
        ));
    }
    conf.push_str("<Directory @DIR@/apps>\n    Require all granted\n</Directory>");
    let apache = config.conf(&conf).start();
    let get = |path: &str| {
        let resp = apache.get(path);
        assert!(
            resp.status == 200,
            "{path}: {}\n{}\n{}",
            resp.status,
            resp.text(),
            apache.error_log()
        );
        json(&resp)
    };

    // os.environ: each interpreter's copy of the process environment at its creation.
    let beta = get("/beta?token=b1");
    let main = get("/main?token=m1");
    let alpha = get("/alpha?set=RWSGI_SET_BY=alpha&token=a1");
    assert_eq!(alpha["group"].str(), "alpha", "{alpha}");
    assert_eq!(alpha["set_by"].str(), "alpha", "{alpha}");
    for got in [&alpha, &beta, &main] {
        assert_eq!(got["probe"].str(), expected_probe, "{got}");
    }
    if mode == Mode::Daemon {
        // As mod_wsgi, a daemon's interpreters get HOME and USER of the account the process
        // runs as (www-data), not Apache's (root's).
        for got in [&alpha, &beta, &main] {
            assert_eq!(got["home"], got["user_home"], "{got}");
            assert_eq!(got["user"], got["user_name"], "{got}");
            assert_ne!(got["user"].str(), "root", "{got}");
        }
    } else {
        // An Apache child's environment is left as Apache has it.
        assert_eq!(alpha["home"].str(), "/root", "{alpha}");
    }
    let beta = get("/beta?token=b2");
    let main = get("/main?token=m2");
    for got in [&beta, &main] {
        assert!(
            got["set_by"].is_null(),
            "alpha's os.environ change is not in an interpreter made before it: {got}"
        );
    }
    // gamma is made after: its copy has what alpha wrote (os.environ writes reach the process
    // environment, as mod_wsgi documents).
    let gamma = get("/gamma?token=g1");
    assert_eq!(gamma["group"].str(), "gamma", "{gamma}");
    assert_eq!(gamma["set_by"].str(), "alpha", "{gamma}");

    // subscribe_events: each interpreter's callbacks get its own requests' events. (A
    // request's "request_finished" follows its response: asked until it is there, bounded.)
    let events_with = |path: &str, group: &str, finished: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for n in 0.. {
            let got = get(&format!("{path}?token={group}-poll{n}"));
            let events = got["events"].as_array().unwrap().clone();
            if events.contains(&serde_json::from_str(finished).unwrap()) {
                for event in &events {
                    assert_eq!(event[1].str(), group, "{path}: only its own group's: {got}");
                    if event[0] == "request_started" {
                        assert!(event[2].str().starts_with(&format!("{path}?")), "{got}");
                    }
                }
                return (got, n);
            }
            assert!(
                std::time::Instant::now() < deadline && n < 100,
                "{path}: no {finished} in {got}\n{}",
                apache.error_log()
            );
        }
        unreachable!()
    };
    let (alpha, _) = events_with(
        "/alpha",
        "alpha",
        r#"["request_finished","alpha","a1",200]"#,
    );
    let started = alpha["events"].as_array().unwrap()[..2].to_vec();
    assert_eq!(
        serde_json::Value::from(started).to_string(),
        r#"[["request_started","alpha","/alpha?set=RWSGI_SET_BY=alpha&token=a1"],["request_finished","alpha","a1",200]]"#,
        "{alpha}"
    );
    let (beta, _) = events_with("/beta", "beta", r#"["request_finished","beta","b2",200]"#);
    let (main, _) = events_with("/main", "", r#"["request_finished","","m2",200]"#);
    // LogHandler: the records reach Apache's error log at their level.
    for (group, token) in [
        ("alpha", alpha["token"].str()),
        ("beta", beta["token"].str()),
        ("gamma", "g1"),
        ("", main["token"].str()),
    ] {
        let log = apache.wait_for_log(
            &format!("api-probe log group='{group}' token={token}"),
            Duration::from_secs(10),
        );
        let line = log
            .lines()
            .find(|l| l.contains(&format!("api-probe log group='{group}' token={token}")))
            .unwrap();
        assert!(line.contains("[rwsgi:warn]"), "{line}");
    }

    // request_metrics() and server_metrics() answer with this process's figures.
    for (path, got) in [("/alpha", &alpha), ("/beta", &beta), ("/gamma", &gamma)] {
        let m = &got["request_metrics"];
        assert_eq!(m["pid"], got["pid"], "{path}: {got}");
        assert!(m["request_count"].as_u64().is_some(), "{path}: {got}");
        let board = &got["server_metrics"];
        assert!(board["processes"].as_u64() >= Some(1), "{path}: {got}");
        let asking = strings(&board["asking"]);
        assert_eq!(
            asking.len(),
            1,
            "{path}: the scoreboard shows this request: {got}"
        );
        assert!(
            asking[0].starts_with(&format!("GET {path}?")),
            "{path}: {got}"
        );
    }
    // Requests finished since the previous call are counted (alpha started recording at its
    // import: beta's window since its previous request holds at least that request). A request
    // is counted once it has ended on the server, which can be just after its client read the
    // answer, and in embedded mode the next request may go to another child: asked again
    // (bounded) until a window shows one.
    let counted = apache.get_until("/beta?token=b4", Duration::from_secs(10), |r| {
        r.status == 200 && json(r)["request_metrics"]["request_count"].as_u64() >= Some(1)
    });
    let again = json(&counted);
    assert!(
        again["request_metrics"]["request_count"].as_u64() >= Some(1),
        "{again}"
    );
}

#[test]
fn the_mod_wsgi_api_works_in_sub_interpreters_in_daemon_mode() {
    the_mod_wsgi_api_works_in_sub_interpreters(Mode::Daemon);
}

#[test]
fn the_mod_wsgi_api_works_in_sub_interpreters_in_embedded_mode() {
    the_mod_wsgi_api_works_in_sub_interpreters(Mode::Embedded);
}
