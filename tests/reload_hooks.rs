//! mod_wsgi 6's reload hooks in a WSGI script, against a real Apache, in daemon mode (the
//! daemon process is replaced warm) and embedded mode (the script is re-imported in place):
//! `__mtime__` (removing it forces a reload), `reload_required(resource)` (True forces a
//! reload; an exception in it is logged with its traceback and does not), and mod_wsgi's log
//! lines. The request whose check asked for the reload is answered by the new code, as after a
//! touch, even when the hook answers True only once (POST bodies of every size included).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::http::{Json, json};
use common::{Apache, ApacheConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    Embedded,
}

fn start(mode: Mode) -> (Apache, std::path::PathBuf) {
    let config = ApacheConfig::new("reload-hooks");
    let app = config.install_app("reload_hooks.wsgi");
    let group = match mode {
        Mode::Daemon => "WSGIDaemonProcess hooks processes=1 threads=4\nWSGIProcessGroup hooks\n",
        // One Apache child, so every request meets the same interpreter.
        Mode::Embedded => "ServerLimit 1\nMaxRequestWorkers 16\n",
    };
    let conf = format!(
        "{group}WSGIApplicationGroup %{{GLOBAL}}\nWSGIScriptAlias /app {app}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        app = app.display()
    );
    (config.conf(&conf).start(), app)
}

fn get(apache: &Apache, path: &str) -> serde_json::Value {
    let resp = apache.get(path);
    assert_eq!(
        resp.status,
        200,
        "{path}: {}\n{}",
        resp.text(),
        apache.error_log()
    );
    json(&resp)
}

fn set_generation(app: &Path, generation: &str) {
    std::fs::write(app.with_file_name("reload-generation"), generation).unwrap();
}

fn context(mode: Mode) -> &'static str {
    match mode {
        Mode::Daemon => "main interpreter of daemon process 'hooks'",
        Mode::Embedded => "main interpreter in embedded mode",
    }
}

#[test]
fn reload_required_and_mtime_force_a_reload_in_both_modes() {
    for mode in [Mode::Daemon, Mode::Embedded] {
        let (apache, app) = start(mode);
        let script = app.display().to_string();
        let first = get(&apache, "/app/");
        // __mtime__ is the file's mtime in microseconds, an int, as mod_wsgi sets it.
        let file_us = std::fs::metadata(&app)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros();
        assert_eq!(first["mtime_type"].str(), "int", "{mode:?}");
        assert_eq!(
            first["mtime"].as_u64().map(u128::from),
            Some(file_us),
            "{mode:?}"
        );
        apache.wait_for_log(
            &format!("Loading WSGI script '{script}' into {}.", context(mode)),
            Duration::from_secs(5),
        );
        // reload_required(resource) is called with the request's file: the script.
        let again = get(&apache, "/app/");
        assert_eq!(again["import_id"], first["import_id"], "{mode:?}: reloaded");
        assert_eq!(again["resource"].str(), script, "{mode:?}");

        // reload_required() answering True reloads the script.
        set_generation(&app, "2");
        let reloaded = get(&apache, "/app/");
        assert_ne!(
            reloaded["import_id"], first["import_id"],
            "{mode:?}: not reloaded"
        );
        assert_eq!(reloaded["generation"].str(), "2", "{mode:?}");
        match mode {
            // A new daemon process, started warm; the old one is replaced.
            Mode::Daemon => {
                assert_ne!(reloaded["pid"], first["pid"], "daemon not replaced");
                apache.wait_for_log(
                    &format!(
                        "Forcing restart of daemon process 'hooks' due to modification of \
                         script '{script}'. Reason: its reload_required() returned a true value."
                    ),
                    Duration::from_secs(5),
                );
            }
            // The same Apache child re-imports the script in place.
            Mode::Embedded => {
                assert_eq!(
                    reloaded["pid"], first["pid"],
                    "another Apache child answered"
                );
                apache.wait_for_log(
                    &format!(
                        "Reloading WSGI script '{script}' into main interpreter in embedded mode."
                    ),
                    Duration::from_secs(5),
                );
            }
        }
        // Once reloaded, the new module does not ask again.
        let stable = get(&apache, "/app/");
        assert_eq!(stable["import_id"], reloaded["import_id"], "{mode:?}");

        // Removing __mtime__ forces a reload.
        get(&apache, "/app/drop-mtime");
        let after_drop = get(&apache, "/app/");
        assert_ne!(after_drop["import_id"], reloaded["import_id"], "{mode:?}");
        assert_eq!(after_drop["mtime_type"].str(), "int", "{mode:?}");
        if mode == Mode::Daemon {
            assert_ne!(after_drop["pid"], reloaded["pid"], "daemon not replaced");
        }

        // An exception in reload_required is logged with its traceback; no reload.
        get(&apache, "/app/raise");
        let kept = get(&apache, "/app/");
        assert_eq!(
            kept["import_id"], after_drop["import_id"],
            "{mode:?}: reloaded"
        );
        let log = apache.wait_for_log(
            &format!(
                "[script {script}] ValueError exception raised processing WSGI script \
                 '{script}' for {}.",
                context(mode)
            ),
            Duration::from_secs(5),
        );
        let tail = &log[log
            .find(&format!("[script {script}] ValueError exception raised"))
            .unwrap()..];
        assert!(
            tail.contains("Traceback (most recent call last):"),
            "{tail}"
        );
        assert!(
            tail.contains("ValueError: reload-hook-failure: raised on purpose"),
            "{tail}"
        );
    }
}

/// A POST of `body` to the one-shot app: its X-Pid and X-Code-Version, checking the status
/// and that the body came back whole.
fn post_oneshot(apache: &Apache, body: &[u8], what: &str) -> (String, String) {
    let resp = apache.request("POST", "/app/", &[], body);
    assert_eq!(
        resp.status,
        200,
        "{what}: {}\n{}",
        resp.text(),
        apache.error_log()
    );
    assert!(
        resp.body == body,
        "{what}: body of {} bytes came back as {} bytes",
        body.len(),
        resp.body.len()
    );
    let header = |name: &str| resp.header(name).unwrap_or_default().to_string();
    (header("X-Pid"), header("X-Code-Version"))
}

/// As mod_wsgi 6 (its tests/wsgi/reload-fixtures/triggered_reload.py): a reload_required()
/// that answers True once makes the very request that asked run the new code, never a 5xx.
/// In daemon mode the process is replaced and the request resent, with its body whole
/// (pushed with the head, pre-read, and larger than Apache's pre-read), to code loaded since:
/// with two processes, not to the other one, which loaded the script before. In embedded mode
/// the script is re-imported in place.
#[test]
fn one_shot_reload_required_serves_the_asking_request_with_new_code() {
    let sizes: [(usize, &str); 4] = [
        (0, "no body"),
        (10, "a body pushed with the head"),
        (200 * 1024, "a pre-read body"),
        (1536 * 1024, "a body beyond the pre-read"),
    ];
    for (mode, processes) in [(Mode::Daemon, 1), (Mode::Daemon, 2), (Mode::Embedded, 0)] {
        let config = ApacheConfig::new("reload-oneshot");
        let app = config.install_app("reload_oneshot.wsgi");
        let trigger_dir = config.root().join("trigger");
        std::fs::create_dir_all(&trigger_dir).unwrap();
        // Not sticky: www-data removes the trigger the test wrote.
        std::fs::set_permissions(&trigger_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (trigger, version) = (
            trigger_dir.join("reload-trigger"),
            trigger_dir.join("version"),
        );
        std::fs::write(&version, "0").unwrap();
        let group = match mode {
            // Every process of the group loads the script at start (version 0).
            Mode::Daemon => format!(
                "WSGIDaemonProcess oneshot processes={processes} threads=4\n\
                 WSGIProcessGroup oneshot\n\
                 WSGIImportScript {app} process-group=oneshot application-group=%{{GLOBAL}}\n",
                app = app.display()
            ),
            Mode::Embedded => "ServerLimit 1\nMaxRequestWorkers 16\n".to_string(),
        };
        let apache = config
            .conf(&format!(
                "{group}WSGIApplicationGroup %{{GLOBAL}}\nWSGIScriptAlias /app {app}\n\
                 <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
                app = app.display()
            ))
            .start();
        post_oneshot(&apache, b"warm-up", "warm-up");
        let mut pid = String::new();
        for (n, (size, what)) in sizes.into_iter().enumerate() {
            let what = format!("{mode:?} processes={processes}: {what}");
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let code = (n + 1).to_string();
            std::fs::write(&version, &code).unwrap();
            std::fs::write(&trigger, b"reload").unwrap();
            let (new_pid, new_code) = post_oneshot(&apache, &body, &what);
            assert!(!trigger.exists(), "{what}: reload_required() was not asked");
            assert_eq!(
                new_code, code,
                "{what}: the request that asked for the reload ran the old code"
            );
            if processes == 1 {
                assert_ne!(new_pid, pid, "{what}: daemon not replaced");
            }
            // With one process the new code keeps serving: the hook does not ask again.
            // (With two, the other process may keep its code, as in mod_wsgi.)
            if processes <= 1 {
                let (again_pid, again_code) = post_oneshot(&apache, &body, &what);
                assert_eq!((&again_pid, &again_code), (&new_pid, &code), "{what}");
            }
            pid = new_pid;
        }
        if mode == Mode::Daemon {
            apache.wait_for_log(
                "Reason: its reload_required() returned a true value.",
                Duration::from_secs(5),
            );
        }
        if processes == 2 {
            // The resent request met the other process first: it was replaced too.
            apache.wait_for_log(
                "restart requested: another process of the group asked for a reload of the \
                 WSGI script",
                Duration::from_secs(5),
            );
        }
    }
}
