//! Writes the server root: httpd.conf from apache/httpd-express.conf.in, the `apachectl`
//! wrapper and, for --reload-on-changes, the monitor script.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Fail;
use super::site::{MODULES_DIR, Site};

pub const APACHE_BIN: &str = "/usr/sbin/apache2";
const TEMPLATE: &str = include_str!("../../../apache/httpd-express.conf.in");

/// mod_wsgi-express's baseline: no request can hang a daemon thread forever.
const BASELINE_TIMEOUTS: &str = "queue-timeout=45 socket-timeout=60 connect-timeout=15 \
     request-timeout=60 startup-timeout=15 deadlock-timeout=60 graceful-timeout=15 \
     shutdown-timeout=5";

/// Loaded into the daemon before the application (WSGIImportScript): a thread that stats
/// every file in sys.modules once a second and makes the daemon restart (SIGINT; the Apache
/// parent starts a new one) when one changes, as mod_wsgi-express's --reload-on-changes.
const MONITOR_PY: &str = r#"# Written by rwsgi-express for --reload-on-changes; loaded with WSGIImportScript.
import os
import signal
import sys
import threading
import time

_EXTRA = [@SCRIPT@]


def _files():
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            if path.endswith((".pyc", ".pyo")):
                path = path[:-1]
            yield path
    yield from _EXTRA


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _monitor():
    seen = {}
    while True:
        for path in _files():
            mtime = _mtime(path)
            if path not in seen:
                seen[path] = mtime
            elif seen[path] != mtime:
                print(
                    "rwsgi-express: %s changed; restarting daemon process %d"
                    % (path, os.getpid()),
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGINT)
                return
        time.sleep(1.0)


threading.Thread(target=_monitor, name="rwsgi-express-monitor", daemon=True).start()
"#;

/// The generated httpd.conf.
pub fn render(site: &Site) -> String {
    let root = site.server_root.display().to_string();
    let listen_host = if site.host.contains(':') {
        format!("[{}]", site.host)
    } else {
        site.host.clone()
    };
    let error_log = if site.log_to_terminal {
        "/dev/stderr".to_string()
    } else {
        site.error_log().display().to_string()
    };
    let user_group = if site.identity.switch {
        format!(
            "User {}\nGroup {}\n",
            site.identity.user, site.identity.group
        )
    } else {
        format!(
            "# Not started as root: Apache and the daemon run as {} (no User/Group).\n",
            site.identity.user
        )
    };
    let access_log = if site.access_log {
        let target = if site.log_to_terminal {
            "/dev/stdout".to_string()
        } else {
            format!("{root}/access.log")
        };
        format!(
            "LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common\nCustomLog \"{target}\" common\n"
        )
    } else {
        String::new()
    };
    // Not root: Apache keeps our identity, and the daemon must be told it is the intended one
    // (it refuses to serve as anyone but its configured user).
    let identity = if site.identity.switch {
        String::new()
    } else {
        format!("user={} group={} ", site.identity.user, site.identity.group)
    };
    let mut daemon = format!(
        "{identity}processes={} threads={} display-name=%{{GROUP}} \\\n    home=\"{app}\" \
         python-path=\"{app}\" lang=C.UTF-8 locale=C.UTF-8",
        site.processes,
        site.threads,
        app = site.app_dir.display()
    );
    if let Some(home) = &site.python_home {
        daemon.push_str(&format!(" python-home=\"{}\"", home.display()));
    }
    daemon.push_str(" \\\n    ");
    daemon.push_str(BASELINE_TIMEOUTS);
    let import = if site.reload_on_changes {
        format!(
            "# --reload-on-changes: restart the daemon when a loaded module changes.\n\
             WSGIImportScript \"{root}/monitor.py\" process-group=express \
             application-group=%{{GLOBAL}}\n"
        )
    } else {
        String::new()
    };
    let mut aliases = String::new();
    for (url, path) in &site.aliases {
        let p = path.display();
        aliases.push_str(&format!("Alias {url} \"{p}\"\n"));
        if path.is_dir() {
            aliases.push_str(&format!(
                "<Directory \"{p}\">\n    Require all granted\n</Directory>\n"
            ));
        } else {
            let dir = path.parent().unwrap_or(Path::new("/")).display();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            aliases.push_str(&format!(
                "<Directory \"{dir}\">\n    <Files \"{name}\">\n        Require all granted\n    \
                 </Files>\n</Directory>\n"
            ));
        }
    }
    let replacements = [
        ("@VERSION@", env!("CARGO_PKG_VERSION").to_string()),
        ("@APP@", site.script.display().to_string()),
        ("@SERVER_ROOT@", root.clone()),
        ("@SERVER_NAME@", format!("{listen_host}:{}", site.port)),
        ("@LISTEN@", format!("{listen_host}:{}", site.port)),
        ("@ERROR_LOG@", error_log),
        ("@LOG_LEVEL@", site.log_level.clone()),
        ("@USER_GROUP@", user_group),
        ("@MODULES_DIR@", MODULES_DIR.to_string()),
        ("@MODULE@", site.module.display().to_string()),
        ("@ACCESS_LOG@", access_log),
        ("@DAEMON_OPTIONS@", daemon),
        ("@IMPORT_SCRIPT@", import),
        ("@MOUNT_POINT@", site.mount_point.clone()),
        ("@SCRIPT@", site.script.display().to_string()),
        ("@APP_DIR@", site.app_dir.display().to_string()),
        ("@ALIASES@", aliases),
    ];
    // Drop the template's own comments (`##`), then fill in the placeholders.
    let mut out: String = TEMPLATE
        .lines()
        .filter(|l| !l.starts_with("##"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (key, value) in replacements {
        out = out.replace(key, &value);
    }
    out
}

/// `sh` single-quoting.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `apachectl` wrapper for setup-server.
pub fn apachectl(site: &Site) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by rwsgi-express: controls the Apache instance configured in this directory.\n\
         HTTPD={httpd}\n\
         CONF={conf}\n\
         case \"$1\" in\n\
         \x20 start|stop|restart|graceful|graceful-stop) exec \"$HTTPD\" -f \"$CONF\" -k \"$1\" ;;\n\
         \x20 configtest) exec \"$HTTPD\" -f \"$CONF\" -t ;;\n\
         \x20 foreground) exec \"$HTTPD\" -f \"$CONF\" -DFOREGROUND ;;\n\
         \x20 *) echo \"usage: $0 start|stop|restart|graceful|graceful-stop|configtest|foreground\" >&2; exit 2 ;;\n\
         esac\n",
        httpd = sh_quote(APACHE_BIN),
        conf = sh_quote(&site.conf_path().display().to_string()),
    )
}

/// Python string literal for the monitor's extra file list.
fn py_str(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// Writes httpd.conf, apachectl and (if needed) monitor.py into the server root.
pub fn write_all(site: &Site) -> Result<(), Fail> {
    let root = &site.server_root;
    write(&site.conf_path(), &render(site), 0o644)?;
    write(&root.join("apachectl"), &apachectl(site), 0o755)?;
    if site.reload_on_changes {
        let script = MONITOR_PY.replace("@SCRIPT@", &py_str(&site.script.display().to_string()));
        write(&root.join("monitor.py"), &script, 0o644)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), Fail> {
    fs::write(path, text)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| Fail(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_escapes_single_quotes() {
        assert_eq!(sh_quote("/a b/c"), "'/a b/c'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn py_str_escapes() {
        assert_eq!(py_str(r#"/a"b\c"#), r#""/a\"b\\c""#);
    }
}
