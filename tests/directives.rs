//! Server-level directives, each shown by what an app or the log sees: WSGIScriptAliasMatch,
//! WSGIPythonHome and WSGIPythonPath (embedded mode), WSGIImportScript (preloading),
//! WSGISocketRotation and WSGIVerboseDebugging.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::http::{Json, json};
use common::{ApacheConfig, test_venv};

#[test]
fn script_alias_match_maps_the_url_to_the_script_it_names() {
    let config = ApacheConfig::new("aliasmatch");
    let app = config.install_app("limits.wsgi");
    let dir = app.parent().unwrap().display().to_string();
    // A script the pattern must not reach.
    std::fs::copy(&app, app.with_file_name("hidden.wsgi")).unwrap();
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess limits threads=2\nWSGIProcessGroup limits\n\
             WSGIScriptAliasMatch ^/by-name/(?!hidden)([^/]+) {dir}/$1.wsgi\n\
             <Directory {dir}>\n    Require all granted\n</Directory>\n"
        ))
        .start();
    let f = json(&apache.get("/by-name/limits/facts?x=1"));
    assert_eq!(f["script_name"].str(), "/by-name/limits", "{f}");
    assert_eq!(f["path_info"].str(), "/facts", "{f}");
    assert_eq!(apache.get("/by-name/missing/facts").status, 404);
    // PCRE's syntax, as mod_alias takes it: the negative lookahead keeps /by-name/hidden out.
    assert_eq!(apache.get("/by-name/hidden/facts").status, 404);
}

/// Issue 29: a WSGIScriptAliasMatch pattern is compiled once, when the directive is read, as
/// mod_alias compiles AliasMatch, and requests use that compiled pattern. So the regex options
/// in force at the directive are its options: here Apache's default DOTALL (`.` matches a
/// newline), although a later `RegexDefaultOptions none` changes the default for the patterns
/// after it. A pattern compiled again at request time would take the later options, and
/// `.` would no longer match the newline of /dot%0Aall.
#[test]
fn script_alias_match_keeps_the_pattern_compiled_when_the_directive_was_read() {
    let config = ApacheConfig::new("aliasmatch-once");
    let app = config.install_app("limits.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIScriptAliasMatch ^/dot.all {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             RegexDefaultOptions none\n",
            app = app.display()
        ))
        .start();
    let plain = apache.get("/dotXall/facts");
    assert_with_log!(apache, plain.status == 200, "status {}", plain.status);
    let newline = apache.get("/dot%0Aall/facts");
    assert_with_log!(
        apache,
        newline.status == 200,
        "status {}: the pattern lost the DOTALL it was compiled with",
        newline.status
    );
    let f = json(&newline);
    assert_eq!(f["script_name"].str(), "/dot\nall", "{f}");
    assert_eq!(f["path_info"].str(), "/facts", "{f}");
}

#[test]
fn python_home_and_python_path_set_up_embedded_python() {
    let config = ApacheConfig::new("pyhome");
    let extra = config.root().join("extra-path");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::set_permissions(&extra, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(extra.join("embedded_extra.py"), "VALUE = 'extra'\n").unwrap();
    std::fs::set_permissions(
        extra.join("embedded_extra.py"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let app = config.install_app("limits.wsgi");
    let venv = test_venv();
    let apache = config
        .conf(&format!(
            "WSGIPythonHome {venv}\nWSGIPythonPath {extra}\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
            venv = venv.display(),
            extra = extra.display(),
            app = app.display()
        ))
        .start();
    let resp = apache.get("/app/facts?import=embedded_extra,flask");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    let f = json(&resp);
    // Embedded: the app runs in an Apache child, whose Python is the venv's.
    assert_eq!(f["prefix"].str(), venv.to_str().unwrap(), "{f}");
    assert_eq!(f["imported"]["embedded_extra"].str(), "extra", "{f}");
    // Flask is only in the venv.
    assert!(f["imported"].get("flask").is_some(), "{f}");
}

#[test]
fn import_script_preloads_before_the_first_request() {
    let config = ApacheConfig::new("preload");
    let markers = config.markers_dir();
    let app = config.install_app("preload.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess pre threads=2\n\
             WSGIImportScript {app} process-group=pre application-group=%{{GLOBAL}}\n\
             WSGIScriptAlias /app {app} process-group=pre application-group=%{{GLOBAL}}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
            app = app.display()
        ))
        .start();
    // No request yet: the daemon imported the script on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let preloaded_pid = loop {
        let found = std::fs::read_dir(&markers)
            .unwrap()
            .filter_map(|e| e.ok())
            .find_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("preloaded.")?
                    .parse::<u32>()
                    .ok()
            });
        if let Some(pid) = found {
            break pid;
        }
        assert_with_log!(apache, Instant::now() < deadline, "never preloaded");
        std::thread::sleep(Duration::from_millis(50));
    };
    let resp = apache.get("/app/");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(resp.text(), preloaded_pid.to_string());
    // Imported once: the request used the preloaded module.
    let count = std::fs::read_dir(&markers).unwrap().count();
    assert_eq!(count, 1);
}

#[test]
fn socket_rotation_off_is_accepted_and_on_is_refused_by_name() {
    let off = ApacheConfig::new("rot-off").conf("WSGISocketRotation Off\n");
    let (ok, out) = off.configtest();
    assert!(ok, "{out}");
    let on = ApacheConfig::new("rot-on").conf("WSGISocketRotation On\n");
    let (ok, out) = on.configtest();
    assert!(!ok, "{out}");
    assert!(
        out.contains("WSGISocketRotation On is not supported by mod_rwsgi, by design"),
        "{out}"
    );
}

#[test]
fn verbose_debugging_is_a_logged_no_op_as_in_mod_wsgi_6() {
    let config = ApacheConfig::new("verbose");
    let app = config.install_app("limits.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIVerboseDebugging On\nWSGIDaemonProcess limits threads=2\n\
             WSGIScriptAlias /app {} process-group=limits application-group=%{{GLOBAL}}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
            app.display()
        ))
        .start();
    apache.wait_for_log("WSGIVerboseDebugging at", Duration::from_secs(5));
    assert_eq!(apache.get("/app/facts").status, 200);
}
