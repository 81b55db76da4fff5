//! Python in Apache's early request phases, run in the Apache child as mod_wsgi does:
//! WSGIAuthUserScript as the `wsgi` provider of Basic and Digest authentication,
//! WSGIAuthGroupScript behind `Require wsgi-group`, WSGIAccessScript before the handler, and
//! WSGIDispatchScript choosing the daemon group per request. Scripts: tests/apps/
//! auth_hooks.wsgi and dispatch.wsgi; the application: tests/apps/whoami.wsgi.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{Json, json};
use common::{Apache, ApacheConfig, Mpm};

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn basic(apache: &Apache, path: &str, user: &str, password: &str) -> common::http::Response {
    let auth = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    apache.request("GET", path, &[("Authorization", &auth)], b"")
}

/// A configuration with the modules Basic authentication and `Require valid-user` need.
fn basic_auth_config(name: &str) -> ApacheConfig {
    ApacheConfig::new(name)
        .module("authn_core")
        .module("auth_basic")
        .module("authz_user")
}

/// The apps and scripts installed, and the markers directory made (whoami.wsgi writes there).
fn install(config: &ApacheConfig) -> (String, String, String) {
    config.markers_dir();
    let app = config.install_app("whoami.wsgi");
    let hooks = config.install_app("auth_hooks.wsgi");
    let dispatch = config.install_app("dispatch.wsgi");
    let s = |p: &Path| p.display().to_string();
    (s(&app), s(&hooks), s(&dispatch))
}

/// How many times whoami.wsgi ran.
fn app_calls(config: &ApacheConfig) -> usize {
    let Ok(dir) = std::fs::read_dir(config.root().join("markers")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

#[test]
fn basic_login_runs_check_password_and_the_app_sees_remote_user_in_both_modes() {
    let config = basic_auth_config("auth-basic");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess guarded threads=2\n\
             WSGIScriptAlias /daemon {app} process-group=guarded\n\
             WSGIScriptAlias /embedded {app} process-group=%{{GLOBAL}}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             <Location />\n    AuthType Basic\n    AuthName \"Top Secret\"\n\
             \x20   AuthBasicProvider wsgi\n    WSGIAuthUserScript {hooks}\n\
             \x20   Require valid-user\n</Location>\n\
             <Location /static.txt>\n    Require all granted\n</Location>\n"
        ))
        .start();
    assert_eq!(apache.get("/daemon").status, 401);
    for (path, group) in [("/daemon", "guarded"), ("/embedded", "")] {
        let resp = basic(&apache, path, "spy", "secret");
        assert_with_log!(apache, resp.status == 200, "{path}: status {}", resp.status);
        let f = json(&resp);
        assert_eq!(f["REMOTE_USER"].str(), "spy", "{f}");
        assert_eq!(f["AUTH_TYPE"].str(), "Basic", "{f}");
        assert_eq!(f["mod_wsgi.process_group"].str(), group, "{f}");
        // Without WSGIPassAuthorization the credentials stay with Apache.
        assert!(f["HTTP_AUTHORIZATION"].is_null(), "{f}");
    }
    // A wrong password and an unknown user are both refused, as Apache logs them.
    assert_eq!(basic(&apache, "/daemon", "spy", "wrong").status, 401);
    assert_eq!(basic(&apache, "/daemon", "nobody", "x").status, 401);
    let log = apache.wait_for_log("user nobody not found", Duration::from_secs(5));
    assert!(log.contains("user spy: authentication failure"), "{log}");
    // wsgi.errors of the script goes to the error log with the client's address.
    assert!(log.contains("check_password for spy"), "{log}");
    // A user name returned by check_password replaces the one sent.
    let f = json(&basic(&apache, "/embedded", "canon", "pw"));
    assert_eq!(f["REMOTE_USER"].str(), "canonical-name", "{f}");
    // The provider guards static files too.
    assert_eq!(apache.get("/static.txt").status, 200);
}

fn curl_digest(apache: &Apache, user: &str, password: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "--digest",
        ])
        .arg("-u")
        .arg(format!("{user}:{password}"))
        .arg(format!("http://127.0.0.1:{}{path}", apache.port()))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn digest_login_runs_get_realm_hash() {
    let config = ApacheConfig::new("auth-digest")
        .module("authn_core")
        .module("auth_digest")
        .module("authz_user");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess guarded threads=2\nWSGIProcessGroup guarded\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             <Location /app>\n    AuthType Digest\n    AuthName \"Top Secret\"\n\
             \x20   AuthDigestProvider wsgi\n    WSGIAuthUserScript {hooks}\n\
             \x20   Require valid-user\n</Location>\n"
        ))
        .start();
    assert_with_log!(
        apache,
        curl_digest(&apache, "spy", "secret", "/app") == "200",
        "good digest login refused"
    );
    assert_eq!(curl_digest(&apache, "spy", "wrong", "/app"), "401");
    assert_eq!(curl_digest(&apache, "nobody", "x", "/app"), "401");
    // An exception in get_realm_hash: 500 and its traceback.
    assert_eq!(curl_digest(&apache, "boom", "x", "/app"), "500");
    let log = apache.wait_for_log("get_realm_hash exploded", Duration::from_secs(5));
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
}

#[test]
fn require_wsgi_group_admits_members_only() {
    let config = ApacheConfig::new("auth-group")
        .module("authn_core")
        .module("auth_basic");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess guarded threads=2\nWSGIProcessGroup guarded\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             <Location /app>\n    AuthType Basic\n    AuthName \"Top Secret\"\n\
             \x20   AuthBasicProvider wsgi\n    WSGIAuthUserScript {hooks}\n\
             \x20   WSGIAuthGroupScript {hooks} application-group=groups\n\
             \x20   Require wsgi-group \"secret agents\" secret-agents\n</Location>\n"
        ))
        .start();
    let resp = basic(&apache, "/app", "spy", "secret");
    assert_with_log!(apache, resp.status == 200, "member: status {}", resp.status);
    assert_eq!(json(&resp)["REMOTE_USER"].str(), "spy");
    // Authenticated but in no required group: refused, with the reason logged.
    assert_eq!(basic(&apache, "/app", "mole", "pw").status, 401);
    let log = apache.wait_for_log("authorization of user 'mole'", Duration::from_secs(5));
    assert!(
        log.contains("not a member of secret agents or secret-agents"),
        "{log}"
    );
    // An exception in groups_for_user: 500 with its traceback.
    assert_eq!(basic(&apache, "/app", "boom-groups", "pw").status, 500);
    let log = apache.wait_for_log("groups_for_user exploded", Duration::from_secs(5));
    assert!(
        log.contains("KeyError exception raised processing WSGI script"),
        "{log}"
    );
    // An exception in check_password, and an answer of the wrong type: 500, named.
    assert_eq!(basic(&apache, "/app", "boom", "x").status, 500);
    apache.wait_for_log("check_password exploded for boom", Duration::from_secs(5));
    assert_eq!(basic(&apache, "/app", "weird", "x").status, 500);
    apache.wait_for_log("check_password() in WSGI script '", Duration::from_secs(5));
    assert!(apache.error_log().contains("returned 42 (type int)"));
    // Apache itself keeps serving: no child crashed.
    assert_eq!(basic(&apache, "/app", "spy", "secret").status, 200);
    assert!(!apache.error_log().contains("exit signal"));
}

#[test]
fn access_script_refuses_before_the_application_runs() {
    let config = ApacheConfig::new("auth-access");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIRestrictEmbedded On\n\
             WSGIDaemonProcess guarded threads=2\nWSGIProcessGroup guarded\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n    \
             WSGIAccessScript {hooks}\n</Directory>\n"
        ))
        .start();
    // The script runs in the Apache child even with WSGIRestrictEmbedded On, and Python
    // starts there with the child, before any request (as mod_wsgi does); a daemon's line
    // would read ": (wsgi:guarded) Initialised".
    apache.wait_for_log(": Initialised Python", Duration::from_secs(10));
    let resp = apache.get("/app");
    assert_with_log!(
        apache,
        resp.status == 200,
        "allowed: status {}",
        resp.status
    );
    assert_eq!(app_calls(&apache.config), 1);
    // None: the other access checks decide (here: granted).
    assert_eq!(
        apache
            .request("GET", "/app", &[("X-Pass", "1")], b"")
            .status,
        200
    );
    assert_eq!(app_calls(&apache.config), 2);
    // False: 403 and the application never ran.
    assert_eq!(
        apache
            .request("GET", "/app", &[("X-Deny", "1")], b"")
            .status,
        403
    );
    apache.wait_for_log("client denied by WSGIAccessScript", Duration::from_secs(5));
    // An exception, and an answer that is not True/False/None: 500, and no app call either.
    assert_eq!(
        apache
            .request("GET", "/app", &[("X-Boom", "1")], b"")
            .status,
        500
    );
    let log = apache.wait_for_log("allow_access exploded", Duration::from_secs(5));
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert_eq!(
        apache.request("GET", "/app", &[("X-Odd", "1")], b"").status,
        500
    );
    apache.wait_for_log("returned 'yes' (type str)", Duration::from_secs(5));
    assert_eq!(app_calls(&apache.config), 2);
}

#[test]
fn dispatch_script_chooses_groups_and_callable_per_request() {
    let config = ApacheConfig::new("auth-dispatch");
    let (app, _, dispatch) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess one threads=2\nWSGIDaemonProcess two threads=2\n\
             WSGIProcessGroup one\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             WSGIDispatchScript {dispatch}\n"
        ))
        .start();
    let one = json(&apache.get("/app?x=1"));
    assert_eq!(one["mod_wsgi.process_group"].str(), "one", "{one}");
    let two = json(&apache.get("/app?group=two&appgroup=dispatched&callable=other"));
    assert_eq!(two["mod_wsgi.process_group"].str(), "two", "{two}");
    assert_eq!(
        two["mod_wsgi.application_group"].str(),
        "dispatched",
        "{two}"
    );
    assert_eq!(two["callable"].str(), "other", "{two}");
    assert_ne!(one["pid"].num(), two["pid"].num());
    let embedded = json(&apache.get("/app?group=%{GLOBAL}"));
    assert_eq!(embedded["mod_wsgi.process_group"].str(), "", "{embedded}");
    // A group nobody defined: 500 naming it.
    assert_eq!(apache.get("/app?group=nowhere").status, 500);
    apache.wait_for_log(
        "no WSGI daemon process called 'nowhere' has been configured",
        Duration::from_secs(5),
    );
    // An exception and a bad return type: 500, the traceback or the value logged.
    assert_eq!(apache.get("/app?boom=1").status, 500);
    let log = apache.wait_for_log("process_group exploded", Duration::from_secs(5));
    assert!(
        log.contains("LookupError exception raised processing WSGI script"),
        "{log}"
    );
    assert_eq!(apache.get("/app?bad=1").status, 500);
    apache.wait_for_log("returned 3.5 (type float)", Duration::from_secs(5));
}

#[test]
fn a_touched_auth_script_is_reloaded() {
    let config = basic_auth_config("auth-reload");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    AuthType Basic\n    AuthName \"Top Secret\"\n\
             \x20   AuthBasicProvider wsgi\n    WSGIAuthUserScript {hooks}\n\
             \x20   Require valid-user\n</Directory>\n"
        ))
        .start();
    assert_eq!(basic(&apache, "/app", "spy", "secret").status, 200);
    let text = std::fs::read_to_string(&hooks).unwrap();
    std::fs::write(
        &hooks,
        text.replace("\"spy\": \"secret\"", "\"spy\": \"changed\""),
    )
    .unwrap();
    // A different mtime even within the same second.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&hooks)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(basic(&apache, "/app", "spy", "secret").status, 401);
    assert_eq!(basic(&apache, "/app", "spy", "changed").status, 200);
    apache.wait_for_log("will be re-imported", Duration::from_secs(5));
}

#[test]
fn configtest_checks_require_wsgi_group_and_notes_group_authoritative_off() {
    let config = ApacheConfig::new("auth-conf")
        .module("authn_core")
        .module("auth_basic");
    let (_, hooks, _) = install(&config);
    let config = config.conf(&format!(
        "<Location />\n    AuthType Basic\n    AuthName x\n    AuthBasicProvider wsgi\n\
         \x20   WSGIAuthUserScript {hooks}\n    WSGIAuthGroupScript {hooks}\n\
         \x20   WSGIGroupAuthoritative Off\n    Require wsgi-group\n</Location>\n"
    ));
    let (ok, out) = config.configtest();
    assert!(!ok, "{out}");
    assert!(
        out.contains("Require wsgi-group: expected at least one group name"),
        "{out}"
    );
    let config = ApacheConfig::new("auth-conf2")
        .module("authn_core")
        .module("auth_basic");
    let (_, hooks, _) = install(&config);
    let config = config.conf(&format!(
        "<Location />\n    AuthType Basic\n    AuthName x\n    AuthBasicProvider wsgi\n\
         \x20   WSGIAuthUserScript {hooks}\n    WSGIAuthGroupScript {hooks}\n\
         \x20   WSGIGroupAuthoritative Off\n    Require wsgi-group staff\n</Location>\n"
    ));
    let (ok, out) = config.configtest();
    assert!(ok, "{out}");
    assert!(out.contains("WSGIGroupAuthoritative Off at "), "{out}");
    assert!(out.contains("has no effect, as in mod_wsgi 6"), "{out}");
}

#[test]
fn basic_login_works_under_prefork_and_worker() {
    for mpm in [Mpm::Prefork, Mpm::Worker] {
        let config = basic_auth_config("auth-mpm").mpm(mpm);
        let (app, hooks, _) = install(&config);
        let apache = config
            .conf(&format!(
                "WSGIScriptAlias /app {app}\n\
                 <Directory @DIR@/apps>\n    AuthType Basic\n    AuthName \"Top Secret\"\n\
                 \x20   AuthBasicProvider wsgi\n    WSGIAuthUserScript {hooks}\n\
                 \x20   Require valid-user\n</Directory>\n"
            ))
            .start();
        for _ in 0..4 {
            let resp = basic(&apache, "/app", "spy", "secret");
            assert_with_log!(
                apache,
                resp.status == 200,
                "{mpm:?}: status {}",
                resp.status
            );
            assert_eq!(json(&resp)["REMOTE_USER"].str(), "spy");
            assert_eq!(basic(&apache, "/app", "spy", "nope").status, 401);
        }
    }
}

#[test]
fn an_auth_script_in_htaccess_starts_python_on_first_use() {
    let config = ApacheConfig::new("auth-htaccess")
        .module("authn_core")
        .module("auth_basic")
        .module("authz_user");
    let (_, hooks, _) = install(&config);
    let private = config.root().join("htdocs/private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join("page.txt"), "for agents only\n").unwrap();
    std::fs::write(
        private.join(".htaccess"),
        format!(
            "AuthType Basic\nAuthName \"Top Secret\"\nAuthBasicProvider wsgi\n\
             WSGIAuthUserScript {hooks}\nRequire valid-user\n"
        ),
    )
    .unwrap();
    // The same directives where .htaccess may only set FileInfo: refused, as in mod_wsgi.
    let fileinfo = config.root().join("htdocs/fileinfo");
    std::fs::create_dir_all(&fileinfo).unwrap();
    std::fs::write(
        fileinfo.join(".htaccess"),
        format!("WSGIAuthUserScript {hooks}\n"),
    )
    .unwrap();
    std::fs::write(fileinfo.join("page.txt"), "x\n").unwrap();
    let apache = config
        .conf(
            "WSGIRestrictEmbedded On\n\
             <Directory @DIR@/htdocs/private>\n    AllowOverride AuthConfig\n</Directory>\n\
             <Directory @DIR@/htdocs/fileinfo>\n    AllowOverride FileInfo\n</Directory>\n",
        )
        .start();
    assert_eq!(apache.get("/fileinfo/page.txt").status, 500);
    apache.wait_for_log(
        "WSGIAuthUserScript not allowed here (in .htaccess it needs AllowOverride AuthConfig)",
        Duration::from_secs(5),
    );
    // Nothing in the server configuration needs Python (no WSGI request may run in the
    // Apache children): they start without it.
    assert_eq!(apache.get("/static.txt").status, 200);
    assert!(!apache.error_log().contains("Initialised Python"));
    // A static file behind the provider.
    assert_eq!(apache.get("/private/page.txt").status, 401);
    let resp = basic(&apache, "/private/page.txt", "spy", "secret");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(resp.text(), "for agents only\n");
    assert_eq!(basic(&apache, "/private/page.txt", "spy", "x").status, 401);
    assert!(apache.error_log().contains("Initialised Python"));
}

#[test]
fn an_authn_provider_alias_carries_its_own_script_and_group() {
    // mod_wsgi's documented form: <AuthnProviderAlias wsgi NAME> holds the script.
    let config = ApacheConfig::new("auth-alias")
        .module("authn_core")
        .module("auth_basic")
        .module("authz_user");
    let (app, hooks, _) = install(&config);
    let apache = config
        .conf(&format!(
            "<AuthnProviderAlias wsgi agents>\n\
             \x20   WSGIAuthUserScript {hooks} application-group=agents\n\
             </AuthnProviderAlias>\n\
             WSGIScriptAlias /app {app}\n\
             <Directory @DIR@/apps>\n    AuthType Basic\n    AuthName \"Top Secret\"\n\
             \x20   AuthBasicProvider agents\n    Require valid-user\n</Directory>\n"
        ))
        .start();
    let resp = basic(&apache, "/app", "spy", "secret");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(basic(&apache, "/app", "spy", "wrong").status, 401);
    let log = apache.error_log();
    assert!(
        log.contains("auth_hooks.wsgi' into interpreter 'agents' in embedded mode."),
        "{log}"
    );
}
