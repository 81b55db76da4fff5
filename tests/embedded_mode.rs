//! Embedded mode: the probe app runs inside Apache's own children (no WSGIDaemonProcess),
//! under each MPM.

mod common;

use std::time::Duration;

use common::http::json;
use common::{Apache, ApacheConfig, Mpm};

fn start(mpm: Mpm, extra: &str) -> (Apache, std::path::PathBuf) {
    let config = ApacheConfig::new("embedded").mpm(mpm);
    let app = config.install_app("probe.wsgi");
    let conf = format!(
        "WSGIScriptAlias /app {app}\n<Directory @DIR@/apps>\n    Require all granted\n</Directory>\n{extra}",
        app = app.display()
    );
    (config.conf(&conf).start(), app)
}

fn check_mode(mpm: Mpm, multithread: &str, multiprocess: &str) {
    let (apache, _) = start(mpm, "");
    let env = json(&apache.get("/app/env/x"));
    assert_eq!(env["SCRIPT_NAME"], "/app");
    assert_eq!(env["PATH_INFO"], "/env/x");
    assert_eq!(env["mod_wsgi.process_group"], "");
    assert_eq!(env["wsgi.multithread"], multithread, "{mpm:?}");
    assert_eq!(env["wsgi.multiprocess"], multiprocess, "{mpm:?}");
    assert_eq!(env["wsgi.run_once"], "False");
    // The app runs in an Apache child, not a separate daemon.
    let pid: u32 = apache.get("/app/pid").text().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        ppid,
        apache.pid(),
        "{mpm:?}: served by a child of the Apache parent"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("apache2"), "{cmdline}");
    // PEP 3333 basics in this mode.
    let body = b"line one\nline two\n";
    let resp = apache.request("POST", "/app/input?mode=readlines", &[], body);
    assert_eq!(resp.text(), r#"["line one\n", "line two\n"]"#);
    assert_eq!(apache.get("/app/write?n=3").text(), "w00;w01;w02;end");
    assert_eq!(apache.get("/app/error").status, 500);
    apache.wait_for_log("probe app failure on purpose", Duration::from_secs(5));
    assert_eq!(apache.get("/app/pid").status, 200);
}

#[test]
fn embedded_under_event() {
    check_mode(Mpm::Event, "True", "True");
}

#[test]
fn embedded_under_worker() {
    check_mode(Mpm::Worker, "True", "True");
}

#[test]
fn embedded_under_prefork() {
    check_mode(Mpm::Prefork, "False", "True");
}

#[test]
fn touching_the_script_reimports_it() {
    let (apache, app) = start(Mpm::Event, "");
    assert_eq!(apache.get("/app/pid").status, 200);
    let text = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        text.replace("probe app: unknown path", "probe app v2: unknown path"),
    )
    .unwrap();
    let f = std::fs::File::options().write(true).open(&app).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let resp = apache.get("/app/nothing-here");
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("probe app v2"), "{}", resp.text());
}

#[test]
fn restrict_embedded_refuses_and_keeps_python_out() {
    let (apache, _) = start(Mpm::Event, "WSGIRestrictEmbedded On");
    let resp = apache.get("/app/pid");
    assert_eq!(resp.status, 500);
    apache.wait_for_log("WSGIRestrictEmbedded On", Duration::from_secs(5));
}

/// The number of glibc malloc arenas the heap_arenas app counts in the Apache child serving
/// it, after starting threads that allocate while all are alive.
fn arenas_in_child(extra: &str) -> usize {
    let config = ApacheConfig::new("embedded-heap").mpm(Mpm::Event);
    let app = config.install_app("heap_arenas.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIScriptAlias /arenas {app}\n<Directory @DIR@/apps>\n    Require all \
             granted\n</Directory>\n{extra}",
            app = app.display()
        ))
        .start();
    let resp = apache.get("/arenas");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text().trim().parse().unwrap()
}

/// Issue 29: the glibc heap policy (M_ARENA_MAX 2, malloc_trim) is the module's default in
/// Apache children, and `WSGIHeapPolicy Off` leaves glibc's defaults to the modules that
/// share the heap: threads that allocate then get arenas of their own.
#[test]
fn heap_policy_limits_arenas_unless_turned_off() {
    let on = arenas_in_child("");
    assert!(
        on <= 2,
        "WSGIHeapPolicy On (default): {on} arenas, at most 2 expected"
    );
    let off = arenas_in_child("WSGIHeapPolicy Off\n");
    eprintln!("malloc arenas: {on} with the policy, {off} without");
    assert!(
        off > 2,
        "WSGIHeapPolicy Off: {off} arenas, glibc's default gives more than 2"
    );
}
