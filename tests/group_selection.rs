//! Which daemon group, application group and callable a request gets: `%{ENV:NAME}` reads
//! the request's notes and subprocess_env (SetEnv, RewriteRule [E=]) before the process
//! environment, and a group defined inside a virtual host serves only virtual hosts with
//! its ServerName (issue 29, items 4 and 5), as mod_wsgi documents.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::http::{Json, json};
use common::{Apache, ApacheConfig};

/// A script with two callables, each answering which callable, process group and
/// application group served it.
const TWO_CALLABLES: &str = r#"
import json
import mod_wsgi

def _answer(name, environ, start_response):
    body = json.dumps({
        "callable": name,
        "process_group": mod_wsgi.process_group,
        "application_group": environ["mod_wsgi.application_group"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]

def application(environ, start_response):
    return _answer("application", environ, start_response)

def alternate(environ, start_response):
    return _answer("alternate", environ, start_response)
"#;

/// Writes TWO_CALLABLES as `apps/which.wsgi` (readable by the daemons' user).
fn install_script(config: &ApacheConfig) -> String {
    let dir = config.root().join("apps");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.join("which.wsgi");
    std::fs::write(&script, TWO_CALLABLES).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    script.display().to_string()
}

fn which(apache: &Apache, path: &str, host: Option<&str>) -> serde_json::Value {
    let headers: Vec<(&str, &str)> = host.map(|h| ("Host", h)).into_iter().collect();
    let resp = apache.request("GET", path, &headers, b"");
    assert!(
        resp.status == 200,
        "{path} (Host {host:?}): status {}\n{}\n--- error log ---\n{}",
        resp.status,
        resp.text(),
        apache.error_log()
    );
    json(&resp)
}

#[test]
fn env_selectors_read_setenv_and_rewrite_rule_variables() {
    let config = ApacheConfig::new("envsel").module("rewrite").module("env");
    let script = install_script(&config);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess blue threads=2\nWSGIDaemonProcess green threads=2\n\
             WSGIScriptAlias /setenv {script}\nWSGIScriptAlias /rewrite {script}\n\
             WSGIScriptAlias /unset {script}\n\
             <Location /setenv>\n    SetEnv RWSGI_GROUP green\n    \
             SetEnv RWSGI_APP_GROUP from-setenv\n    SetEnv RWSGI_CALLABLE alternate\n    \
             WSGIProcessGroup %{{ENV:RWSGI_GROUP}}\n    \
             WSGIApplicationGroup %{{ENV:RWSGI_APP_GROUP}}\n    \
             WSGICallableObject %{{ENV:RWSGI_CALLABLE}}\n</Location>\n\
             RewriteEngine On\n\
             RewriteRule ^/rewrite/(blue|green)/ - [E=RWSGI_GROUP:$1,E=RWSGI_APP_GROUP:rw-$1]\n\
             <Location /rewrite>\n    WSGIProcessGroup %{{ENV:RWSGI_GROUP}}\n    \
             WSGIApplicationGroup %{{ENV:RWSGI_APP_GROUP}}\n</Location>\n\
             <Location /unset>\n    WSGIProcessGroup blue\n    \
             WSGICallableObject %{{ENV:RWSGI_NOT_SET_ANYWHERE}}\n</Location>\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>"
        ))
        .start();

    let got = which(&apache, "/setenv/x", None);
    assert_eq!(got["process_group"].str(), "green", "{got}");
    assert_eq!(got["application_group"].str(), "from-setenv", "{got}");
    assert_eq!(got["callable"].str(), "alternate", "{got}");

    for colour in ["blue", "green"] {
        let got = which(&apache, &format!("/rewrite/{colour}/x"), None);
        assert_eq!(got["process_group"].str(), colour, "{got}");
        assert_eq!(
            got["application_group"].str(),
            format!("rw-{colour}"),
            "{got}"
        );
        assert_eq!(got["callable"].str(), "application", "{got}");
    }

    // An unset variable names the default callable, as in mod_wsgi.
    let got = which(&apache, "/unset/x", None);
    assert_eq!(got["callable"].str(), "application", "{got}");
}

#[test]
fn a_group_defined_in_a_virtual_host_serves_only_virtual_hosts_with_its_server_name() {
    let config = ApacheConfig::new("vhostgroups").module("env");
    let script = install_script(&config);
    let second_port = common::free_port();
    let port = config.port;
    let apache = config
        .conf(&format!(
            "Listen 127.0.0.1:{second_port}\n\
             WSGIDaemonProcess shared threads=2\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             <VirtualHost 127.0.0.1:{port}>\n    ServerName shop.example\n    \
             WSGIDaemonProcess shop threads=2\n    \
             WSGIScriptAlias /own {script} process-group=shop\n    \
             WSGIScriptAlias /shared {script} process-group=shared\n</VirtualHost>\n\
             <VirtualHost 127.0.0.1:{port}>\n    ServerName blog.example\n    \
             WSGIScriptAlias /shared {script} process-group=shared\n    \
             WSGIScriptAlias /static-ref {script} process-group=shop\n    \
             WSGIScriptAlias /env-ref {script}\n    \
             <Location /env-ref>\n        SetEnv RWSGI_GROUP shop\n        \
             WSGIProcessGroup %{{ENV:RWSGI_GROUP}}\n    </Location>\n</VirtualHost>\n\
             <VirtualHost 127.0.0.1:{second_port}>\n    ServerName shop.example\n    \
             WSGIScriptAlias /own {script} process-group=shop\n</VirtualHost>"
        ))
        .start();
    let conf = apache.config.conf_path().display().to_string();

    // configtest names the static reference that can never be allowed.
    let (ok, out) = apache.config.configtest();
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("WSGIScriptAlias at {conf}:"))
            && out.contains(
                "(virtual host blog.example) selects daemon process group 'shop', defined at"
            )
            && out.contains("inside virtual host shop.example"),
        "configtest does not warn about the cross-host reference:\n{out}"
    );
    assert_eq!(
        out.matches("selects daemon process group 'shop'").count(),
        1,
        "only the reference from blog.example is warned about:\n{out}"
    );

    // Its own virtual host, and another with the same ServerName, may use it; a group
    // defined outside every virtual host serves all.
    let got = which(&apache, "/own/x", Some("shop.example"));
    assert_eq!(got["process_group"].str(), "shop", "{got}");
    let resp = common::http::request(
        second_port,
        "GET",
        "/own/x",
        &[("Host", "shop.example")],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", apache.error_log());
    for host in ["shop.example", "blog.example"] {
        let got = which(&apache, "/shared/x", Some(host));
        assert_eq!(got["process_group"].str(), "shared", "{got}");
    }

    // blog.example may not, however it names the group.
    for path in ["/static-ref/x", "/env-ref/x"] {
        let resp = apache.request("GET", path, &[("Host", "blog.example")], b"");
        assert_eq!(resp.status, 500, "{path}: {}", resp.text());
        let line = apache.wait_for_log(
            &format!("(needed by '{script}')"),
            std::time::Duration::from_secs(5),
        );
        assert!(
            line.contains(
                "daemon process group 'shop' is defined in virtual host shop.example and \
                 cannot be used by virtual host blog.example"
            ),
            "{line}"
        );
    }
    let refused = apache
        .error_log()
        .matches("cannot be used by virtual host blog.example")
        .count();
    assert_eq!(refused, 2, "{}", apache.error_log());
}
