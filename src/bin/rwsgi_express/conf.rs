//! Writes the server root: httpd.conf from apache/httpd-express.conf.in, the `apachectl`
//! wrapper and, for --reload-on-changes, the monitor script.

use std::path::Path;

use super::site::{Site, py_str};
use super::{Fail, write_file};

const TEMPLATE: &str = include_str!("../../../apache/httpd-express.conf.in");

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

/// A double-quoted configuration word (Apache unescapes `\\` and `\"` inside quotes).
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

/// The Apache child processes' sizing: mod_wsgi-express's arithmetic for a daemon-mode
/// front end (event MPM: about 1.5 client connections per daemon thread, in children of at
/// most 20 threads), or exactly processes × threads for embedded mode (worker MPM).
pub fn mpm_sizing(site: &Site) -> String {
    let (p, t) = (u64::from(site.processes), u64::from(site.threads));
    if site.args.embedded_mode {
        let total = p * t;
        let max_requests = site.args.daemon.maximum_requests.unwrap_or(0);
        return format!(
            "# --embedded-mode: {p} Apache child process(es) of {t} thread(s) run the \
             application.\n\
             ServerLimit {p}\nThreadLimit {t}\nThreadsPerChild {t}\nStartServers {p}\n\
             MaxRequestWorkers {total}\nMinSpareThreads {total}\nMaxSpareThreads {}\n\
             MaxConnectionsPerChild {max_requests}\nMaxKeepAliveRequests 100\n",
            total + t
        );
    }
    if site.mpm == "prefork" {
        return prefork_sizing(site);
    }
    let (children, per_child) = front_end(p * t, site.args.max_clients);
    // --initial-workers and the spare options: fractions of `children` (whole children).
    let share = |fraction: Option<f64>, default: u64| match fraction {
        Some(f) => (f * children as f64).floor() as u64,
        None => children * default / 5,
    };
    let args = &site.args;
    let start = 1u64.max(share(args.initial_workers, 1));
    let min_spare =
        per_child.max(share(args.minimum_spare_workers.or(args.initial_workers), 1) * per_child);
    let max_spare = per_child.max(share(args.maximum_spare_workers, 3) * per_child);
    format!(
        "# Apache children in front of the daemon group: room for {} client connections.\n\
         ServerLimit {children}\nThreadLimit {per_child}\nThreadsPerChild {per_child}\n\
         StartServers {start}\nMaxRequestWorkers {}\nMinSpareThreads {min_spare}\n\
         MaxSpareThreads {}\nMaxConnectionsPerChild 0\nMaxKeepAliveRequests 0\n",
        children * per_child,
        children * per_child,
        max_spare.max(min_spare + per_child),
    )
}

/// The prefork MPM's sizing (daemon mode): one client connection per child, as many
/// children as mod_wsgi-express allows clients, started and kept idle as fractions of them
/// (defaults 0.05, the first, 0.1).
fn prefork_sizing(site: &Site) -> String {
    let args = &site.args;
    let capacity = u64::from(site.processes) * u64::from(site.threads);
    let clients = match args.max_clients {
        Some(m) => u64::from(m).max(capacity),
        None => 10 + 10u64.max(capacity * 3 / 2),
    };
    let share = |f: f64| 1u64.max((f * clients as f64).floor() as u64);
    let initial = args.initial_workers.unwrap_or(0.05);
    let min_spare = share(args.minimum_spare_workers.unwrap_or(initial));
    let max_spare = share(args.maximum_spare_workers.unwrap_or(0.1));
    format!(
        "# --server-mpm prefork: room for {clients} client connections, one per child.\n\
         ServerLimit {clients}\nStartServers {}\nMaxRequestWorkers {clients}\n\
         MinSpareServers {min_spare}\nMaxSpareServers {}\nMaxConnectionsPerChild 0\n\
         MaxKeepAliveRequests 0\n",
        share(initial),
        max_spare.max(min_spare + 1),
    )
}

/// Apache children and threads per child for `capacity` daemon threads: room for
/// --max-clients connections (at least `capacity`), else 1.5 per thread plus 10 (at least
/// 20 more), in children of at most 20 threads, as mod_wsgi-express sizes them.
fn front_end(capacity: u64, max_clients: Option<u32>) -> (u64, u64) {
    let clients = match max_clients {
        Some(m) => u64::from(m).max(capacity),
        None => 10 + 10u64.max(capacity * 3 / 2),
    };
    let per_child = if clients > 20 {
        clients / (clients / 20 + 1)
    } else {
        10
    };
    (clients.div_ceil(per_child), per_child)
}

/// A log target: the file in the server root, through rotatelogs with --rotate-logs.
fn log_target(site: &Site, file: &Path) -> String {
    let logs = &site.args.logs;
    if logs.rotate_logs {
        q(&format!(
            "|{} {}.%Y-%m-%d-%H_%M_%S {}M",
            logs.rotatelogs_executable.display(),
            file.display(),
            logs.max_log_size
        ))
    } else {
        qp(file)
    }
}

/// WSGIDaemonProcess's options: mod_wsgi-express's defaults, overridden by the command line;
/// options whose value 0 means "off" or "the default" are left out then.
fn daemon_options(site: &Site) -> String {
    let d = &site.args.daemon;
    // Not root: Apache keeps our identity, and the daemon must be told it is the intended
    // one (it refuses to serve as anyone but its configured user).
    let mut out = if site.identity.switch {
        String::new()
    } else {
        format!("user={} group={} ", site.identity.user, site.identity.group)
    };
    out.push_str(&format!(
        "processes={} threads={} display-name=%{{GROUP}} \\\n    {}",
        site.processes,
        site.threads,
        process_environment(site),
    ));
    if let Some(eggs) = &site.args.python_eggs {
        // resolve() checked that it exists.
        let eggs = std::fs::canonicalize(eggs).unwrap_or_else(|_| eggs.clone());
        out.push_str(&format!(" python-eggs={}", qp(&eggs)));
    }
    if let Some(home) = &site.python_home {
        out.push_str(&format!(" python-home={}", qp(home)));
    }
    if let Some(interval) = site.args.switch_interval {
        out.push_str(&format!(" switch-interval={interval}"));
    }
    if site.args.server_metrics {
        out.push_str(" server-metrics=on");
    }
    let always = [
        ("queue-timeout", d.queue_timeout, 45),
        ("socket-timeout", d.socket_timeout, 60),
        ("connect-timeout", d.connect_timeout, 15),
        ("request-timeout", d.request_timeout, 60),
        ("startup-timeout", d.startup_timeout, 15),
        ("deadlock-timeout", d.deadlock_timeout, 60),
        ("graceful-timeout", d.graceful_timeout, 15),
        ("shutdown-timeout", d.shutdown_timeout, 5),
        ("listen-backlog", d.daemon_backlog, 100),
    ];
    out.push_str(" \\\n   ");
    for (name, value, default) in always {
        out.push_str(&format!(" {name}={}", value.unwrap_or(default)));
    }
    let when_set = [
        ("maximum-requests", d.maximum_requests),
        ("restart-interval", d.restart_interval),
        ("cpu-time-limit", d.cpu_time_limit),
        ("eviction-timeout", d.eviction_timeout),
        ("inactivity-timeout", d.inactivity_timeout),
        ("interrupt-timeout", d.interrupt_timeout),
        ("send-buffer-size", d.send_buffer_size),
        ("receive-buffer-size", d.receive_buffer_size),
        ("header-buffer-size", d.header_buffer_size),
        ("response-buffer-size", d.response_buffer_size),
        ("response-socket-timeout", d.response_socket_timeout),
    ];
    let set: Vec<String> = when_set
        .iter()
        .filter_map(|(name, value)| value.filter(|v| *v > 0).map(|v| format!("{name}={v}")))
        .chain(
            d.response_flush_delay
                .map(|v| format!("response-flush-delay={v}")),
        )
        .collect();
    if !set.is_empty() {
        out.push_str(" \\\n    ");
        out.push_str(&set.join(" "));
    }
    out
}

/// The application's mount. It comes last, after the --include-file files: the first
/// matching WSGIScriptAlias wins, and mod_wsgi-express's application is a fallback (a
/// rewrite rule in its document root) that mounts in an included file take precedence over.
fn wsgi_mount(site: &Site) -> String {
    // A generated handler exposes the callable as `application` itself.
    let callable = if site.args.callable_object == "application" || site.generated.is_some() {
        String::new()
    } else {
        format!(" callable-object={}", q(&site.args.callable_object))
    };
    let app_group = q(&site.application_group);
    let groups = if site.args.embedded_mode {
        format!("application-group={app_group}")
    } else {
        // Both groups literal: the daemon loads the script at start, before the first
        // request.
        format!(
            "process-group={} application-group={app_group}",
            q(&site.process_group)
        )
    };
    format!(
        "\n# The application (after any included files: their mounts come first).\n\
         WSGIScriptAlias {} {} {groups}{callable}\n",
        site.mount_point,
        qp(&site.script)
    )
}

/// The `WSGIDaemonProcess` options every daemon of the site shares: its working directory,
/// the application directory and --python-path first on sys.path, --lang and --locale.
fn process_environment(site: &Site) -> String {
    let python_path: Vec<String> = std::iter::once(&site.app_dir)
        .chain(&site.python_paths)
        .map(|p| p.display().to_string())
        .collect();
    let locale = site.args.locale.as_deref().unwrap_or("C.UTF-8");
    let lang = site.args.lang.as_deref().unwrap_or(locale);
    format!(
        "home={} python-path={} lang={} locale={}",
        qp(&site.app_dir),
        q(&python_path.join(":")),
        q(lang),
        q(locale)
    )
}

/// --service-script: each service its own daemon process group `service:NAME` without request
/// threads, which loads the script at start, as mod_wsgi-express writes it.
fn services(site: &Site) -> String {
    let mut out = String::new();
    for service in &site.services {
        let group = q(&format!("service:{}", service.name));
        out.push_str(&format!(
            "# --service-script {}\nWSGIDaemonProcess {group} display-name=%{{GROUP}} \
             threads=0 user={} group={} \\\n    {}",
            service.name,
            q(&service.identity.user),
            q(&service.identity.group),
            process_environment(site),
        ));
        if let Some(home) = &site.python_home {
            out.push_str(&format!(" python-home={}", qp(home)));
        }
        out.push_str(&format!(
            "\nWSGIImportScript {} process-group={group} application-group=%{{GLOBAL}}\n",
            qp(&service.script)
        ));
    }
    out
}

/// The application: a daemon process group (default) or embedded in Apache's children.
fn wsgi_section(site: &Site) -> String {
    let root = site.server_root.display();
    let app_group = q(&site.application_group);
    let mut out = String::new();
    if site.args.embedded_mode {
        out.push_str("# --embedded-mode: the application runs in the Apache children.\n");
        if let Some(home) = &site.python_home {
            out.push_str(&format!("WSGIPythonHome {}\n", qp(home)));
        }
        let python_path: Vec<String> = std::iter::once(&site.app_dir)
            .chain(&site.python_paths)
            .map(|p| p.display().to_string())
            .collect();
        out.push_str(&format!(
            "WSGIPythonPath {}\nWSGIApplicationGroup {app_group}\nWSGIPassAuthorization On\n",
            q(&python_path.join(":"))
        ));
        if let Some(interval) = site.args.switch_interval {
            out.push_str(&format!("WSGISwitchInterval {interval}\n"));
        }
    } else {
        let group = q(&site.process_group);
        out.push_str(&format!(
            "# The application, in daemon mode, with mod_wsgi-express's baseline timeouts.\n\
             WSGIRestrictEmbedded On\n\
             WSGIDaemonProcess {group} {}\n\
             WSGIProcessGroup {group}\n\
             WSGIApplicationGroup {app_group}\n\
             WSGIPassAuthorization On\n",
            daemon_options(site)
        ));
        if site.reload_on_changes {
            out.push_str(&format!(
                "# --reload-on-changes: restart the daemon when a loaded module changes.\n\
                 WSGIImportScript \"{root}/monitor.py\" process-group={group} \
                 application-group={app_group}\n"
            ));
        }
    }
    if site.args.disable_reloading {
        out.push_str("WSGIScriptReloading Off\n");
    }
    if site.args.free_threading {
        out.push_str(
            "# --free-threading: no GIL, on a free-threaded Python.\nWSGIFreeThreading On\n",
        );
    }
    out.push_str(&services(site));
    if site.generated.is_some() {
        out.push_str(&format!(
            "<Directory \"{root}\">\n    <Files \"handler.wsgi\">\n        Require all granted\n    \
             </Files>\n</Directory>\n"
        ));
    }
    out
}

/// --proxy-mount-point and --proxy-virtual-host, as mod_wsgi-express writes them: ProxyPass
/// with WebSocket upgrades, and the X-Forwarded-Port, -Scheme (over HTTPS) and -Prefix
/// headers a backend needs to build its own URLs (mod_proxy_http adds X-Forwarded-For and
/// -Host). mod_proxy maps its URLs before mod_rewrite and the aliases do.
fn proxies(site: &Site) -> String {
    let args = &site.args;
    let mut out = String::new();
    if !super::site::proxying(args) {
        return out;
    }
    out.push_str("\n# --proxy-mount-point, --proxy-virtual-host\n");
    if let Some(seconds) = args.proxy_timeout {
        out.push_str(&format!("ProxyTimeout {seconds}\n"));
    }
    let forwarded = "    RewriteEngine On\n    RewriteRule .* - [E=RWSGI_PROXY_PORT:%{SERVER_PORT},NE]\n    \
         RequestHeader set X-Forwarded-Port %{RWSGI_PROXY_PORT}e\n    RewriteCond %{HTTPS} on\n    \
         RewriteRule .* - [E=RWSGI_PROXY_SCHEME:https,NE]\n    \
         RequestHeader set X-Forwarded-Scheme %{RWSGI_PROXY_SCHEME}e env=RWSGI_PROXY_SCHEME\n";
    for (path, url) in super::site::proxy_mount_points(args) {
        // Both sides end in "/": /api/x goes to URL/x, and /api itself is redirected to /api/.
        let prefix = path.trim_end_matches('/');
        let backend = format!("{}/", url.trim_end_matches('/'));
        out.push_str(&format!(
            "ProxyPass {} {} upgrade=websocket\nProxyPassReverse {} {}\n\
             <Location {}>\n{forwarded}    RequestHeader set X-Forwarded-Prefix {}\n</Location>\n",
            q(&format!("{prefix}/")),
            q(&backend),
            q(&format!("{prefix}/")),
            q(&backend),
            q(&format!("{prefix}/")),
            q(if prefix.is_empty() { "/" } else { prefix }),
        ));
        if !prefix.is_empty() {
            out.push_str(&format!(
                "<LocationMatch {}>\n    RewriteEngine On\n    \
                 RewriteRule .* %{{REQUEST_SCHEME}}://%{{HTTP_HOST}}%{{REQUEST_URI}}/ [R=302,L]\n\
                 </LocationMatch>\n",
                q(&format!("^{}$", regex_literal(prefix)))
            ));
        }
    }
    if !args.proxy_virtual_hosts.is_empty() {
        // Requests for any other host name stay with the site: without --server-name the
        // first virtual host of the port would otherwise take them.
        if args.server_name.is_none() {
            out.push_str(&format!(
                "<VirtualHost *:{}>\nServerName {}\n{}</VirtualHost>\n",
                site.port,
                site.host,
                vhost_rewrite_engine(site)
            ));
        }
        for pair in args.proxy_virtual_hosts.chunks(2) {
            let backend = format!("{}/", pair[1].trim_end_matches('/'));
            out.push_str(&format!(
                "<VirtualHost *:{}>\nServerName {}\nProxyPass / {} upgrade=websocket\n\
                 ProxyPassReverse / {}\n{forwarded}</VirtualHost>\n",
                site.port,
                pair[0],
                q(&backend),
                q(&backend)
            ));
        }
    }
    out
}

/// What a `<VirtualHost>` of the site needs for the --document-root rules: they reach it by
/// RewriteOptions InheritDown, but the engine's state does not.
fn vhost_rewrite_engine(site: &Site) -> &'static str {
    if site.document_root.is_some() {
        "RewriteEngine On\n"
    } else {
        ""
    }
}

/// A regular expression matching `text` literally.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The document root: the server root's empty htdocs, or --document-root, whose files are
/// served as they are while other URLs go to the application. mod_wsgi-express sends the
/// application's URLs through the document root to a handler (a rewrite rule in its
/// `<Directory>`); here the mapping happens before the aliases are consulted: a URL whose
/// file exists there (or whose directory does, with --directory-index) is mapped to it, and
/// any other goes on to the application's WSGIScriptAlias. The --url-alias URLs and the
/// status and metrics pages are left to their own mappings.
fn document_root(site: &Site) -> String {
    let args = &site.args;
    let root = match &site.document_root {
        Some(root) => root.clone(),
        None => site.server_root.join("htdocs"),
    };
    let mut out = format!("DocumentRoot {}\n<Directory {}>\n", qp(&root), qp(&root));
    if let Some(index) = &args.directory_index {
        out.push_str(&format!("    DirectoryIndex {}\n", q(index)));
    }
    if args.directory_listing {
        out.push_str("    Options +Indexes\n");
    }
    out.push_str("    Require all granted\n</Directory>\n");
    let Some(root) = &site.document_root else {
        return out;
    };
    out.push_str(
        "\n# --document-root: files in it are served as they are; other URLs go to the \
         application.\nRewriteEngine On\nRewriteOptions InheritDown\n",
    );
    let mut own_urls: Vec<&str> = site.aliases.iter().map(|(url, _)| url.as_str()).collect();
    own_urls.extend(args.metrics_url.as_deref());
    if args.server_status {
        own_urls.push("/server-status");
    }
    for url in own_urls {
        out.push_str(&format!(
            "RewriteCond %{{REQUEST_URI}} !^{}(/|$)\n",
            regex_literal(url.trim_end_matches('/'))
        ));
    }
    // --https-only: plain HTTP is redirected, static files too (the redirect comes later).
    if args.https_only {
        out.push_str("RewriteCond %{HTTPS} on\n");
    }
    let file = q(&format!("{}%{{REQUEST_URI}}", root.display()));
    // Apache's own lookups (mod_dir's index file, mod_autoindex's entries) are about the
    // document root's files: the application's mount must not answer them.
    out.push_str("RewriteCond %{IS_SUBREQ} true [OR]\n");
    if args.directory_index.is_some() {
        out.push_str(&format!(
            "RewriteCond {file} -f [OR]\nRewriteCond {file} -d\n"
        ));
    } else {
        out.push_str(&format!("RewriteCond {file} -f\n"));
    }
    out.push_str(&format!("RewriteRule ^ {file} [L]\n"));
    out
}

/// --enable-sendfile, --error-document, --error-override and the telemetry options: server
/// configuration lines.
fn server_options(site: &Site) -> String {
    let args = &site.args;
    let mut out = String::new();
    if args.enable_sendfile {
        out.push_str(
            "\n# --enable-sendfile: static files and wsgi.file_wrapper responses by sendfile().\n\
             EnableSendfile On\nWSGIEnableSendfile On\n",
        );
    }
    if !args.error_documents.is_empty() {
        out.push_str("\n# --error-document\n");
        for pair in args.error_documents.chunks(2) {
            out.push_str(&format!("ErrorDocument {} {}\n", pair[0], q(&pair[1])));
        }
    }
    if args.error_override {
        out.push_str(
            "\n# --error-override: Apache's error documents replace the application's.\n\
             WSGIErrorOverride On\n",
        );
    }
    if let Some(target) = &args.telemetry_service {
        out.push_str(&format!(
            "\n# --telemetry-service: mod_wsgi 6's telemetry to the ingester's socket.\n\
             WSGITelemetryService {} interval={}\n",
            q(target),
            args.telemetry_interval.unwrap_or(1.0)
        ));
        if let Some(seconds) = args.slow_requests {
            out.push_str(&format!("WSGISlowRequests {seconds}\n"));
        }
        for options in &args.telemetry_options {
            out.push_str(&format!("WSGITelemetryOptions {options}\n"));
        }
    }
    out
}

/// --host-access-script and --auth-user-script (with --auth-group-script): access control
/// for the whole site, as mod_wsgi-express writes it.
fn access_control(site: &Site) -> String {
    let mut out = String::new();
    if let Some(script) = &site.access_script {
        out.push_str(&format!(
            "\n# --host-access-script: which clients may use the site.\n<Location />\n    \
             WSGIAccessScript {}\n</Location>\n",
            qp(script)
        ));
    }
    if let Some(auth) = &site.auth {
        let kind = auth.auth_type;
        out.push_str(&format!(
            "\n# --auth-user-script: every request needs a valid user.\n<Location />\n    \
             AuthType {kind}\n    AuthName {}\n    Auth{kind}Provider wsgi\n    \
             WSGIAuthUserScript {}\n",
            q(&format!("{}:{}", site.host, site.port)),
            qp(&auth.user_script)
        ));
        let mut require = String::from("        Require valid-user\n");
        if let Some((script, group)) = &auth.group {
            out.push_str(&format!("    WSGIAuthGroupScript {}\n", qp(script)));
            require.push_str(&format!("        Require wsgi-group {}\n", q(group)));
        }
        out.push_str(&format!(
            "    <RequireAll>\n{require}    </RequireAll>\n</Location>\n"
        ));
    }
    out
}

/// The `<VirtualHost>`s: with --server-name a default host refusing other names (as
/// mod_wsgi-express), the named one, a redirect from the bare domain to `www.`; with
/// --https-port the same over TLS; with --https-only plain HTTP redirects.
fn hosts(site: &Site) -> String {
    let args = &site.args;
    let mut out = String::new();
    let port = site.port;
    let refuse = if args.allow_localhost {
        "Require local"
    } else {
        "Require all denied"
    };
    let aliases = if args.server_alias.is_empty() {
        String::new()
    } else {
        format!("ServerAlias {}\n", args.server_alias.join(" "))
    };
    let parent = args
        .server_name
        .as_deref()
        .filter(|n| n.to_ascii_lowercase().starts_with("www."))
        .map(|n| &n[4..]);
    let rewrite = vhost_rewrite_engine(site);
    let https_redirect = |name: &str| -> String {
        let port = site.tls.as_ref().map(|t| t.port).unwrap_or(443);
        format!(
            "RewriteEngine On\nRewriteCond %{{HTTPS}} off\n\
             RewriteRule (.*) https://{name}:{port}%{{REQUEST_URI}} [R=302,L]\n"
        )
    };
    let default_host = |port: u16, tls: &str| -> String {
        format!(
            "<VirtualHost _default_:{port}>\nServerName _wsgi_\n<Location />\n    {refuse}\n\
             </Location>\n{tls}</VirtualHost>\n"
        )
    };
    if let Some(name) = &args.server_name {
        out.push_str("\n# --server-name: other host names get 403 from the default host.\n");
        out.push_str(&default_host(port, ""));
        out.push_str(&format!(
            "<VirtualHost *:{port}>\nServerName {name}\n{aliases}{rewrite}"
        ));
        if args.https_only {
            out.push_str(&https_redirect(name));
        }
        out.push_str("</VirtualHost>\n");
        if let Some(parent) = parent {
            out.push_str(&format!(
                "<VirtualHost *:{port}>\nServerName {parent}\n\
                 Redirect permanent / http://{name}:{port}/\n</VirtualHost>\n"
            ));
        }
    } else if args.https_only {
        out.push_str("\n# --https-only: plain HTTP requests are redirected.\n");
        out.push_str(&https_redirect("%{SERVER_NAME}"));
    }
    let Some(tls) = &site.tls else {
        return out;
    };
    let mut ssl = format!(
        "SSLEngine On\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n",
        qp(&tls.certificate),
        qp(&tls.key)
    );
    if let Some(chain) = &tls.chain {
        ssl.push_str(&format!("SSLCertificateChainFile {}\n", qp(chain)));
    }
    if let Some(ca) = &tls.ca {
        ssl.push_str(&format!("SSLCACertificateFile {}\n", qp(ca)));
    }
    let tls_port = tls.port;
    out.push_str(&format!("\n# --https-port {tls_port}: mod_ssl.\n"));
    if args.server_name.is_some() {
        out.push_str(&default_host(tls_port, &ssl));
    }
    out.push_str(&format!("<VirtualHost *:{tls_port}>\n"));
    if let Some(name) = &args.server_name {
        out.push_str(&format!("ServerName {name}\n{aliases}"));
    }
    out.push_str(&ssl);
    out.push_str(rewrite);
    if tls.ca.is_some() {
        if args.ssl_verify_client.is_empty() {
            out.push_str("SSLVerifyClient require\nSSLVerifyDepth 1\n");
        } else {
            let mut urls = args.ssl_verify_client.clone();
            urls.sort_by(|a, b| b.cmp(a));
            for url in urls {
                out.push_str(&format!(
                    "<Location {}>\n    SSLVerifyClient require\n    SSLVerifyDepth 1\n\
                     </Location>\n",
                    q(&url)
                ));
            }
        }
    }
    if args.ssl_environment {
        out.push_str("SSLOptions +StdEnvVars\n");
    }
    if let Some(policy) = &args.hsts_policy {
        out.push_str(&format!(
            "Header always set Strict-Transport-Security {}\n",
            q(policy)
        ));
    }
    out.push_str("</VirtualHost>\n");
    if let (Some(name), Some(parent)) = (&args.server_name, parent) {
        out.push_str(&format!(
            "<VirtualHost *:{tls_port}>\nServerName {parent}\n\
             Redirect permanent / https://{name}:{tls_port}/\n{ssl}</VirtualHost>\n"
        ));
    }
    out
}

/// Server-wide request handling: proxies, chunked bodies, HEAD, compression, Python's
/// warnings.
fn request_options(site: &Site) -> String {
    let args = &site.args;
    let mut out = String::new();
    if !args.trust_proxy_headers.is_empty() {
        out.push_str(&format!(
            "WSGITrustedProxyHeaders {}\n",
            args.trust_proxy_headers.join(" ")
        ));
    }
    if !args.trust_proxies.is_empty() {
        out.push_str(&format!(
            "WSGITrustedProxies {}\n",
            args.trust_proxies.join(" ")
        ));
    }
    if args.chunked_request {
        out.push_str("WSGIChunkedRequest On\n");
    }
    if args.orphan_interpreter {
        out.push_str("WSGIDestroyInterpreter Off\n");
    }
    if let Some(map) = &args.map_head_to_get {
        out.push_str(&format!("WSGIMapHEADToGET {map}\n"));
    }
    for spec in &args.python_warnings {
        out.push_str(&format!("WSGIPythonWarnings {}\n", q(spec)));
    }
    if args.compress_responses {
        out.push_str(
            "AddOutputFilterByType DEFLATE text/plain text/html text/xml text/css \
             text/javascript application/xhtml+xml application/javascript application/json\n",
        );
    }
    out
}

/// The `Define`s mod_wsgi-express gives Apache (as environment variables set by its
/// `apachectl`, and `-D` flags on its command line), so that files written for it
/// (`--include-file`) find `${MOD_WSGI_MODULES_DIRECTORY}`, `${MOD_WSGI_USER}`, ... and
/// `<IfDefine MOD_WSGI_...>` with the same meaning. Flags for options rwsgi-express refuses
/// (`ONE_PROCESS`, `MOD_WSGI_WITH_PHP5`, `MOD_WSGI_CGI_SCRIPT`, ...) are never defined.
fn defines(site: &Site) -> String {
    let args = &site.args;
    let mut out =
        String::from("# What mod_wsgi-express defines, for configuration files written for it.\n");
    let mut vars: Vec<(&str, String)> = vec![
        (
            "MOD_WSGI_MODULES_DIRECTORY",
            site.modules_dir.display().to_string(),
        ),
        (
            "MOD_WSGI_SERVER_ROOT",
            site.server_root.display().to_string(),
        ),
        ("MOD_WSGI_LISTENER_HOST", site.host.clone()),
        ("MOD_WSGI_HTTP_PORT", site.port.to_string()),
    ];
    if let Some(tls) = &site.tls {
        vars.push(("MOD_WSGI_HTTPS_PORT", tls.port.to_string()));
    }
    vars.extend([
        ("MOD_WSGI_USER", site.identity.user.clone()),
        ("MOD_WSGI_GROUP", site.identity.group.clone()),
        (
            "MOD_WSGI_WORKING_DIRECTORY",
            site.app_dir.display().to_string(),
        ),
    ]);
    for (name, value) in vars {
        out.push_str(&format!("Define {name} {}\n", q(&value)));
    }
    let tls = site.tls.as_ref();
    let group = &site.application_group;
    let mpm = site.mpm.to_ascii_uppercase();
    let flags = [
        ("ORPHAN_INTERPRETER", args.orphan_interpreter),
        ("EMBEDDED_MODE", args.embedded_mode),
        // The script is loaded at start: both groups are literal in the mount.
        (
            "MOD_WSGI_IMPORT_HANDLER_SCRIPT",
            !args.embedded_mode && (group == "%{GLOBAL}" || !group.contains("%{")),
        ),
        ("MOD_WSGI_VIRTUAL_HOST", args.server_name.is_some()),
        (
            "MOD_WSGI_REDIRECT_WWW",
            args.server_name
                .as_deref()
                .is_some_and(|n| n.to_ascii_lowercase().starts_with("www.")),
        ),
        ("MOD_WSGI_WITH_HTTP2", args.http2),
        ("MOD_WSGI_WITH_HTTPS", tls.is_some()),
        (
            "MOD_WSGI_VERIFY_CLIENT",
            tls.is_some_and(|t| t.ca.is_some()),
        ),
        (
            "MOD_WSGI_CERTIFICATE_CHAIN",
            tls.is_some_and(|t| t.chain.is_some()),
        ),
        ("MOD_WSGI_SSL_ENVIRONMENT", args.ssl_environment),
        ("MOD_WSGI_HTTPS_ONLY", args.https_only),
        ("MOD_WSGI_HSTS_POLICY", args.hsts_policy.is_some()),
        ("MOD_WSGI_SERVER_ALIAS", !args.server_alias.is_empty()),
        ("MOD_WSGI_ALLOW_LOCALHOST", args.allow_localhost),
        (
            "MOD_WSGI_SERVER_METRICS",
            args.server_metrics || args.server_status,
        ),
        ("MOD_WSGI_SERVER_STATUS", args.server_status),
        ("MOD_WSGI_SWITCH_INTERVAL", args.switch_interval.is_some()),
        (
            "MOD_WSGI_ERROR_LOG_FORMAT",
            args.logs.error_log_format.is_some(),
        ),
        ("MOD_WSGI_ACCESS_LOG", site.access_log),
        ("MOD_WSGI_ROTATE_LOGS", args.logs.rotate_logs),
        ("MOD_WSGI_KEEP_ALIVE", args.http.keep_alive_timeout > 0),
        ("MOD_WSGI_COMPRESS_RESPONSES", args.compress_responses),
        ("MOD_WSGI_MULTIPROCESS", args.processes.is_some()),
        // rwsgi-express always listens on --host (127.0.0.1 by default).
        ("MOD_WSGI_WITH_LISTENER_HOST", true),
        ("MOD_WSGI_CHUNKED_REQUEST", args.chunked_request),
        (
            "MOD_WSGI_WITH_PROXY_HEADERS",
            !args.trust_proxy_headers.is_empty(),
        ),
        (
            "MOD_WSGI_WITH_TRUSTED_PROXIES",
            !args.trust_proxies.is_empty(),
        ),
        ("MOD_WSGI_WITH_PYTHON_PATH", !args.python_paths.is_empty()),
        ("MOD_WSGI_HOST_ACCESS", site.access_script.is_some()),
        ("MOD_WSGI_ENABLE_SENDFILE", args.enable_sendfile),
        ("MOD_WSGI_FREE_THREADING", args.free_threading),
        ("MOD_WSGI_WITH_PROXY", super::site::proxying(args)),
        ("MOD_WSGI_DIRECTORY_INDEX", args.directory_index.is_some()),
        ("MOD_WSGI_DIRECTORY_LISTING", args.directory_listing),
        ("MOD_WSGI_ERROR_OVERRIDE", args.error_override),
        (
            "MOD_WSGI_TELEMETRY_SERVICE",
            args.telemetry_service.is_some(),
        ),
        ("MOD_WSGI_SLOW_REQUESTS", args.slow_requests.is_some()),
        (
            "MOD_WSGI_TELEMETRY_OPTIONS",
            !args.telemetry_options.is_empty(),
        ),
        ("MOD_WSGI_AUTH_USER", site.auth.is_some()),
        (
            "MOD_WSGI_AUTH_GROUP",
            site.auth.as_ref().is_some_and(|a| a.group.is_some()),
        ),
        (
            "MOD_WSGI_DISABLE_RELOADING",
            args.disable_reloading || args.embedded_mode,
        ),
    ];
    for (name, set) in flags {
        if set {
            out.push_str(&format!("Define {name}\n"));
        }
    }
    // The MPM loaded, and every MPM Apache has, as mod_wsgi-express tells its template.
    out.push_str(&format!("Define MOD_WSGI_MPM_ENABLE_{mpm}_MODULE\n"));
    for name in ["event", "worker", "prefork"] {
        if site.modules_dir.join(format!("mod_mpm_{name}.so")).exists() {
            out.push_str(&format!(
                "Define MOD_WSGI_MPM_EXISTS_{}_MODULE\n",
                name.to_ascii_uppercase()
            ));
        }
    }
    out
}

/// The generated httpd.conf.
pub fn render(site: &Site) -> String {
    let args = &site.args;
    let root = site.server_root.display().to_string();
    let listen_host = if site.host.contains(':') {
        format!("[{}]", site.host)
    } else {
        site.host.clone()
    };
    let error_log = if site.log_to_terminal {
        "\"/dev/stderr\"".to_string()
    } else {
        log_target(site, &site.error_log())
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
            "\"/dev/stdout\"".to_string()
        } else {
            log_target(site, &site.access_log_path())
        };
        let mut formats = "LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common\n\
             LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b \\\"%{Referer}i\\\" \\\"%{User-agent}i\\\"\" combined\n"
            .to_string();
        let nickname = match args.logs.access_log_format.as_deref() {
            None | Some("common") => "common",
            Some("combined") => "combined",
            Some(custom) => {
                formats.push_str(&format!("LogFormat {} custom\n", q(custom)));
                "custom"
            }
        };
        format!("{formats}CustomLog {target} {nickname}\n")
    } else {
        String::new()
    };
    // Beyond the base set in the template: what the options need, as mod_wsgi-express
    // loads them (each unless already loaded or compiled in).
    let mut extra_modules = String::new();
    let mut load = |name: &str, file: &str| {
        extra_modules.push_str(&format!(
            "<IfModule !{name}_module>\nLoadModule {name}_module \
             \"${{MOD_WSGI_MODULES_DIRECTORY}}/mod_{file}.so\"\n</IfModule>\n"
        ));
    };
    if args.http2 {
        load("http2", "http2");
    }
    if args.compress_responses {
        load("deflate", "deflate");
    }
    if args.server_status || args.server_metrics {
        load("status", "status");
    }
    if site.access_log {
        load("log_config", "log_config");
    }
    if site.tls.is_some() {
        load("ssl", "ssl");
    }
    if args.directory_listing {
        load("autoindex", "autoindex");
    }
    if super::site::proxying(args) {
        load("proxy", "proxy");
        load("proxy_http", "proxy_http");
    }
    if site.auth.is_some() {
        load("auth_basic", "auth_basic");
        load("auth_digest", "auth_digest");
        load("authz_user", "authz_user");
    }
    let mut aliases = String::new();
    for (url, path) in &site.aliases {
        aliases.push_str(&format!("Alias {url} {}\n", qp(path)));
        if path.is_dir() {
            aliases.push_str(&format!(
                "<Directory {}>\n    Require all granted\n</Directory>\n",
                qp(path)
            ));
        } else {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            aliases.push_str(&format!(
                "<Directory {}>\n    <Files {}>\n        Require all granted\n    \
                 </Files>\n</Directory>\n",
                qp(dir),
                q(&name)
            ));
        }
    }
    let mut environment = String::new();
    for (name, value) in &site.setenv {
        environment.push_str(&format!("SetEnv {name} {}\n", q(value)));
    }
    for name in &args.passenv {
        environment.push_str(&format!("PassEnv {name}\n"));
    }
    environment.push_str(&request_options(site));
    let mut server_status = if args.server_status {
        "\n# --server-status: Apache's status page, for local clients only.\nExtendedStatus On\n\
         <Location /server-status>\n    SetHandler server-status\n    Require local\n\
         </Location>\n"
            .to_string()
    } else {
        String::new()
    };
    if args.server_metrics {
        server_status.push_str(
            "\n# --server-metrics: mod_wsgi.server_metrics() (Apache's scoreboard).\n\
             ExtendedStatus On\nWSGIServerMetrics On\n",
        );
    }
    for url in &args.ignore_activity {
        server_status.push_str(&format!(
            "\n# --ignore-activity: not activity for the daemon's inactivity-timeout.\n\
             <Location {}>\n    WSGIIgnoreActivity On\n</Location>\n",
            q(url)
        ));
    }
    if let Some(url) = &args.metrics_url {
        server_status.push_str(&format!(
            "\n# --metrics-url: every daemon process's metrics (Prometheus text format), for \
             local clients only.\n<Location {}>\n    SetHandler rwsgi-metrics\n    Require \
             local\n</Location>\n",
            q(url)
        ));
    }
    let mut includes = String::new();
    if !site.include_files.is_empty() {
        includes.push_str("\n# --include-file\n");
        for file in &site.include_files {
            includes.push_str(&format!("Include {}\n", qp(file)));
        }
    }
    let http = &args.http;
    let read_timeout = |what: &str, secs: u64, max: u64, rate: u64| {
        let mut v = format!("{what}={secs}");
        if secs > 0 {
            if max > 0 {
                v.push_str(&format!("-{max}"));
            }
            if rate > 0 {
                v.push_str(&format!(",MinRate={rate}"));
            }
        }
        v
    };
    let request_read_timeout = format!(
        "{} {}",
        read_timeout(
            "header",
            http.header_timeout,
            http.header_max_timeout,
            http.header_min_rate
        ),
        read_timeout(
            "body",
            http.body_timeout,
            http.body_max_timeout,
            http.body_min_rate
        )
    );
    let keep_alive = if http.keep_alive_timeout > 0 {
        format!("KeepAlive On\nKeepAliveTimeout {}", http.keep_alive_timeout)
    } else {
        "KeepAlive Off".to_string()
    };
    let listen_https = match &site.tls {
        Some(tls) => format!("Listen {listen_host}:{}\n", tls.port),
        None => String::new(),
    };
    let replacements = [
        ("@DEFINES@", defines(site)),
        ("@VERSION@", env!("CARGO_PKG_VERSION").to_string()),
        ("@APP@", site.script.display().to_string()),
        ("@SERVER_ROOT@", root.clone()),
        ("@SERVER_NAME@", format!("{listen_host}:{}", site.port)),
        ("@LISTEN@", format!("{listen_host}:{}", site.port)),
        ("@LISTEN_HTTPS@", listen_https),
        ("@SERVER_BACKLOG@", http.server_backlog.to_string()),
        ("@ERROR_LOG@", error_log),
        (
            "@LOG_LEVEL@",
            match &args.logs.error_log_format {
                Some(format) => format!("{}\nErrorLogFormat {}", site.log_level, q(format)),
                None => site.log_level.clone(),
            },
        ),
        ("@PID_FILE@", site.pid_file().display().to_string()),
        ("@USER_GROUP@", user_group),
        ("@MPM@", format!("mpm_{}", site.mpm)),
        ("@EXTRA_MODULES@", extra_modules),
        ("@MODULE@", site.module.display().to_string()),
        ("@MPM_SIZING@", mpm_sizing(site)),
        (
            "@TIMEOUT@",
            args.daemon.socket_timeout.unwrap_or(60).to_string(),
        ),
        ("@KEEP_ALIVE@", keep_alive),
        ("@REQUEST_READ_TIMEOUT@", request_read_timeout),
        ("@LIMIT_REQUEST_BODY@", http.limit_request_body.to_string()),
        (
            "@PROTOCOLS@",
            if args.http2 {
                "# --http2: h2 over TLS, h2c over plain HTTP.\nProtocols h2 h2c http/1.1\n"
                    .to_string()
            } else {
                String::new()
            },
        ),
        ("@ACCESS_LOG@", access_log),
        ("@WSGI@", wsgi_section(site)),
        ("@APP_DIR@", site.app_dir.display().to_string()),
        ("@ALIASES@", aliases),
        ("@ENVIRONMENT@", environment),
        ("@SERVER_STATUS@", server_status),
        ("@ACCESS_CONTROL@", access_control(site)),
        ("@DOCUMENT_ROOT@", document_root(site)),
        ("@MIME_TYPES@", site.mime_types.display().to_string()),
        ("@PROXIES@", proxies(site)),
        ("@SERVER_OPTIONS@", server_options(site)),
        ("@HOSTS@", hosts(site)),
        ("@INCLUDES@", includes),
        ("@MOUNT@", wsgi_mount(site)),
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

/// The `apachectl` wrapper: start, stop (waits until Apache and every process it started,
/// daemons included, are gone),
/// restart, graceful, graceful-stop, configtest, and foreground. The --envvars-script, or an
/// `envvars` file in the server root, is sourced first, as mod_wsgi-express's apachectl
/// does.
pub fn apachectl(site: &Site) -> String {
    let extra: Vec<String> = site.httpd_args().iter().map(|a| sh_quote(a)).collect();
    format!(
        r#"#!{shell}
# Written by rwsgi-express: controls the Apache instance configured in this directory.
HTTPD={httpd}
CONF={conf}
PIDFILE={pidfile}
ENVVARS={envvars}
if [ -f "$ENVVARS" ]; then . "$ENVVARS"; fi

# The PIDs of $1's descendants: its children, the daemon manager and the daemons.
descendants() {{
    cat /proc/[0-9]*/stat 2>/dev/null | sed -n 's/^\([0-9]*\) .*) . \([0-9]*\) .*/\1 \2/p' |
        awk -v root="$1" '{{ parent[$1] = $2 }}
            END {{ n = 1; list[1] = root
                  for (i = 1; i <= n; i++) for (p in parent) if (parent[p] == list[i]) {{ list[++n] = p; print p }} }}'
}}

# Waits (at most 30 s) until every process given is gone.
wait_gone() {{
    i=0
    for p in "$@"; do
        while kill -0 "$p" 2>/dev/null; do
            # A zombie (not reaped by its parent) has stopped too.
            case "$(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null | cut -c1)" in Z|X|"") break ;; esac
            i=$((i + 1))
            if [ "$i" -gt 300 ]; then
                echo "apachectl: process $p of Apache is still running after 30 s" >&2
                return 1
            fi
            sleep 0.1
        done
    done
}}

case "$1" in
  start|restart|graceful)
    exec {argv0}"$HTTPD" -f "$CONF" {extra}-k "$1" ;;
  stop|graceful-stop)
    pid=$(cat "$PIDFILE" 2>/dev/null)
    family=""
    [ -n "$pid" ] && family="$pid $(descendants "$pid")"
    "$HTTPD" -f "$CONF" -k "$1" || exit $?
    wait_gone $family ;;
  configtest)
    exec "$HTTPD" -f "$CONF" -t ;;
  foreground)
    exec {argv0}"$HTTPD" -f "$CONF" {extra}-DFOREGROUND ;;
  *)
    echo "usage: $0 start|stop|restart|graceful|graceful-stop|configtest|foreground" >&2
    exit 2 ;;
esac
"#,
        shell = site.shell.display(),
        argv0 = match &site.args.process_name {
            Some(name) => format!("-a {} ", sh_quote(name)),
            None => String::new(),
        },
        httpd = sh_quote(&site.apache_bin.display().to_string()),
        conf = sh_quote(&site.conf_path().display().to_string()),
        pidfile = sh_quote(&site.pid_file().display().to_string()),
        envvars = sh_quote(&site.envvars_script().display().to_string()),
        extra = extra.iter().map(|a| format!("{a} ")).collect::<String>(),
    )
}

/// Writes httpd.conf, apachectl and (if needed) monitor.py into the server root.
pub fn write_all(site: &Site) -> Result<(), Fail> {
    let root = &site.server_root;
    write_file(&site.conf_path(), &render(site), 0o644)?;
    write_file(&root.join("apachectl"), &apachectl(site), 0o755)?;
    if site.reload_on_changes {
        let script = MONITOR_PY.replace("@SCRIPT@", &py_str(&site.script.display().to_string()));
        write_file(&root.join("monitor.py"), &script, 0o644)?;
    }
    Ok(())
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

    #[test]
    fn front_end_sizing_follows_mod_wsgi_express() {
        // 1 × 5 threads: 20 connections in two children of 10.
        assert_eq!(front_end(5, None), (2, 10));
        // --max-clients 50: children of 50 / 3 = 16 threads, four of them.
        assert_eq!(front_end(1, Some(50)), (4, 16));
        // --max-clients below the daemon threads counts the threads: 40 in children of
        // 40 / 3 = 13.
        assert_eq!(front_end(40, Some(10)), (4, 13));
        // 10 × 10 threads: 160 connections, children of 17 threads.
        assert_eq!(front_end(100, None), (10, 17));
    }

    #[test]
    fn config_words_are_quoted_and_escaped() {
        assert_eq!(q(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
