//! mod_wsgi 6's reload hooks in a WSGI script, against a real Apache, in daemon mode (the
//! daemon process is replaced warm) and embedded mode (the script is re-imported in place):
//! `__mtime__` (removing it forces a reload), `reload_required(resource)` (True forces a
//! reload; an exception in it is logged with its traceback and does not), and mod_wsgi's log
//! lines.

mod common;

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
