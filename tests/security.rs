//! Security properties of daemon mode that do not depend on the app: who may talk to a
//! daemon, and what a daemon does with a peer that does not speak the protocol.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{Apache, ApacheConfig};

fn start() -> Apache {
    let (config, _) =
        ApacheConfig::new("security").daemon_app("probe.wsgi", "probe", "threads=2", "");
    let apache = config.start();
    // Apache listens from its first configuration pass; the daemon's socket is made again in
    // the second. Once a request went through the daemon, the socket is the final one.
    assert_eq!(apache.get("/app/pid").status, 200, "{}", apache.error_log());
    apache
}

/// Tries to connect to `path` as `uid`/`gid`; returns the child's one-line verdict.
fn connect_as(path: &std::path::Path, uid: u32, gid: u32) -> String {
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({:?})\n    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)\n",
        path.display().to_string()
    );
    let out = std::process::Command::new(common::MODULE_PYTHON)
        .args(["-c", &code])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn only_apaches_user_can_connect_to_the_daemon_socket() {
    let apache = start();
    let path = apache.daemon_socket();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let www = nix::unistd::User::from_name("www-data").unwrap().unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        connect_as(&path, www.uid.as_raw(), www.gid.as_raw()),
        "connected"
    );
    assert_eq!(
        connect_as(&path, nobody.uid.as_raw(), nobody.gid.as_raw()),
        "PermissionError"
    );
}

#[test]
fn a_peer_without_the_handshake_is_dropped_and_others_are_unaffected() {
    let apache = start();
    assert_eq!(apache.get("/app/pid").status, 200);
    let path = apache.daemon_socket();
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "the daemon answered a peer that sent no handshake: {:?}",
        &buf[..n]
    );
    apache.wait_for_log(
        "did not complete the protocol handshake",
        Duration::from_secs(5),
    );
    assert_eq!(apache.get("/app/pid").status, 200);
}

#[test]
fn a_peer_with_another_protocol_version_is_told_so() {
    let apache = start();
    let path = apache.daemon_socket();
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Magic, version 99, no flags.
    s.write_all(b"RWSG\x00\x63\x00\x00").unwrap();
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], b"RWSG");
    assert_eq!(
        u16::from_be_bytes([reply[6], reply[7]]),
        1,
        "status must be 'unsupported version'"
    );
    apache.wait_for_log("99", Duration::from_secs(5));
    assert_eq!(apache.get("/app/pid").status, 200);
}

/// The probe at /trusted (peer 127.0.0.1 is a trusted proxy there) and /untrusted (only
/// 10.0.0.0/8 is), both trusting the same headers; /cve trusts only X-Client-IP.
fn start_behind_proxy() -> Apache {
    let config = ApacheConfig::new("proxy");
    let app = config.install_app("probe.wsgi");
    config
        .conf(&format!(
            "WSGIDaemonProcess probe threads=2\nWSGIProcessGroup probe\n\
             WSGIScriptAlias /trusted {app}\nWSGIScriptAlias /untrusted {app}\n\
             WSGIScriptAlias /cve {app}\n\
             WSGITrustedProxyHeaders X-Forwarded-For X-Forwarded-Proto X-Forwarded-Host \
             X-Forwarded-Port\n\
             <Location /trusted>\n    WSGITrustedProxies 127.0.0.1 10.0.0.0/8\n</Location>\n\
             <Location /untrusted>\n    WSGITrustedProxies 10.0.0.0/8\n</Location>\n\
             <Location /cve>\n    WSGITrustedProxies 10.0.0.0/8\n    \
             WSGITrustedProxyHeaders X-Client-IP\n</Location>\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            app = app.display()
        ))
        .start()
}

const SPOOFED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "6.6.6.6, 1.1.1.1, 10.0.0.7"),
    ("X-Real-IP", "7.7.7.7"),
    ("X-Client-IP", "8.8.8.8"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-SSL", "on"),
    ("X-Forwarded-Host", "public.example"),
    ("X-Forwarded-Port", "443"),
    ("X-Script-Name", "/spoofed"),
];

#[test]
fn forwarding_headers_are_honoured_only_from_trusted_proxies() {
    use common::http::{Json, json};
    let apache = start_behind_proxy();

    let env = json(&apache.request("GET", "/trusted/env", SPOOFED, b""));
    // Right to left: 10.0.0.7 is a trusted proxy, 1.1.1.1 is the client; 6.6.6.6 is
    // whatever the client claimed and is not believed.
    assert_eq!(env["REMOTE_ADDR"].str(), "1.1.1.1");
    assert_eq!(env["wsgi.url_scheme"].str(), "https");
    assert_eq!(env["HTTP_HOST"].str(), "public.example");
    assert_eq!(env["SERVER_PORT"].str(), "443");
    // Same purpose, not listed: dropped. Other purposes (script name) nobody listed: kept.
    for gone in ["HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP", "HTTP_X_FORWARDED_SSL"] {
        assert_eq!(env[gone], serde_json::Value::Null, "{gone}");
    }
    // Rewritten as mod_wsgi does: from the client on.
    assert_eq!(env["HTTP_X_FORWARDED_FOR"].str(), "1.1.1.1, 10.0.0.7");
    assert_eq!(env["SCRIPT_NAME"].str(), "/trusted");
    assert_eq!(env["mod_wsgi.mount_point"], serde_json::Value::Null);

    let env = json(&apache.request("GET", "/untrusted/env", SPOOFED, b""));
    assert_eq!(env["REMOTE_ADDR"].str(), "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"].str(), "http");
    assert_eq!(
        env["HTTP_HOST"].str(),
        format!("127.0.0.1:{}", apache.port())
    );
    assert_eq!(env["SERVER_PORT"].str(), apache.port().to_string());
    for gone in [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_REAL_IP",
        "HTTP_X_CLIENT_IP",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_SSL",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PORT",
    ] {
        assert_eq!(env[gone], serde_json::Value::Null, "{gone} reached the app");
    }
}

#[test]
fn x_client_ip_from_an_untrusted_client_is_removed() {
    // CVE-2022-2255 in mod_wsgi: trusting X-Client-IP let any client pass it through.
    use common::http::{Json, json};
    let apache = start_behind_proxy();
    let env = json(&apache.request("GET", "/cve/env", SPOOFED, b""));
    assert_eq!(env["REMOTE_ADDR"].str(), "127.0.0.1");
    for gone in ["HTTP_X_CLIENT_IP", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_FOR"] {
        assert_eq!(env[gone], serde_json::Value::Null, "{gone} reached the app");
    }
}

#[test]
fn trusted_proxy_headers_without_trusted_proxies_trust_every_peer_and_configtest_warns() {
    // As mod_wsgi documents: WSGITrustedProxyHeaders alone trusts whoever connects.
    use common::http::{Json, json};
    let config = ApacheConfig::new("openproxy");
    let app = config.install_app("probe.wsgi");
    let config = config.conf(&format!(
        "WSGIDaemonProcess probe threads=2\n\
         WSGIScriptAlias /open-d {app} process-group=probe\n\
         WSGIScriptAlias /open-e {app} process-group=%{{GLOBAL}}\n\
         WSGITrustedProxyHeaders X-Forwarded-For X-Forwarded-SSL X-Script-Name\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        app = app.display()
    ));
    let (ok, out) = config.configtest();
    assert!(ok, "{out}");
    let conf = config.conf_path().display().to_string();
    assert!(
        out.contains(&format!("WSGITrustedProxyHeaders at {conf}:"))
            && out.contains("has no WSGITrustedProxies")
            && out.contains("every client is then trusted"),
        "configtest does not warn:\n{out}"
    );
    let apache = config.start();
    assert!(apache.error_log().contains("has no WSGITrustedProxies"));
    for prefix in ["/open-d", "/open-e"] {
        let env = json(&apache.request("GET", &format!("{prefix}/env"), SPOOFED, b""));
        // The first entry is the client; X-Forwarded-For is left as sent.
        assert_eq!(env["REMOTE_ADDR"].str(), "6.6.6.6", "{prefix}");
        assert_eq!(
            env["HTTP_X_FORWARDED_FOR"].str(),
            "6.6.6.6, 1.1.1.1, 10.0.0.7",
            "{prefix}"
        );
        // X-Script-Name sets SCRIPT_NAME and mod_wsgi.mount_point.
        assert_eq!(env["SCRIPT_NAME"].str(), "/spoofed", "{prefix}");
        assert_eq!(env["mod_wsgi.mount_point"].str(), "/spoofed", "{prefix}");
        // As mod_wsgi: the values before the rewrite are kept.
        assert_eq!(env["mod_wsgi.script_name"].str(), prefix);
        assert_eq!(env["mod_wsgi.path_info"].str(), "/env");
        assert_eq!(env["wsgi.url_scheme"].str(), "https", "{prefix}");
        // Same purposes, not listed: removed.
        for gone in [
            "HTTP_X_REAL_IP",
            "HTTP_X_CLIENT_IP",
            "HTTP_X_FORWARDED_PROTO",
        ] {
            assert_eq!(env[gone], serde_json::Value::Null, "{prefix}: {gone}");
        }
        // Empty entries of X-Forwarded-For are skipped.
        let env = json(&apache.request(
            "GET",
            &format!("{prefix}/env"),
            &[("X-Forwarded-For", " , ,5.5.5.5, 6.6.6.6")],
            b"",
        ));
        assert_eq!(env["REMOTE_ADDR"].str(), "5.5.5.5", "{prefix}");
        // X-Forwarded-SSL is a flag: On, true and 1 mean https, Off, false and 0 http.
        for (value, scheme) in [
            ("On", "https"),
            ("true", "https"),
            ("1", "https"),
            ("Off", "http"),
            ("false", "http"),
            ("0", "http"),
        ] {
            let env = json(&apache.request(
                "GET",
                &format!("{prefix}/env"),
                &[("X-Forwarded-SSL", value)],
                b"",
            ));
            assert_eq!(
                env["wsgi.url_scheme"].str(),
                scheme,
                "{prefix}: X-Forwarded-SSL: {value}"
            );
        }
    }
}

#[test]
fn authorization_reaches_the_app_only_with_wsgi_pass_authorization() {
    use common::http::{Json, json};
    let config = ApacheConfig::new("auth");
    let app = config.install_app("probe.wsgi");
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess probe threads=2\nWSGIProcessGroup probe\n\
             WSGIScriptAlias /hidden {app}\nWSGIScriptAlias /passed {app}\n\
             <Location /passed>\n    WSGIPassAuthorization On\n</Location>\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            app = app.display()
        ))
        .start();
    let auth = [
        ("Authorization", "Basic dXNlcjpzZWNyZXQ="),
        ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
    ];
    let env = json(&apache.request("GET", "/hidden/env", &auth, b""));
    assert_eq!(env["HTTP_AUTHORIZATION"], serde_json::Value::Null);
    assert_eq!(env["HTTP_PROXY_AUTHORIZATION"], serde_json::Value::Null);
    let env = json(&apache.request("GET", "/passed/env", &auth, b""));
    assert_eq!(env["HTTP_AUTHORIZATION"].str(), "Basic dXNlcjpzZWNyZXQ=");
    // Proxy credentials are for the proxy, never the app.
    assert_eq!(env["HTTP_PROXY_AUTHORIZATION"], serde_json::Value::Null);
}

/// linux/capability.h
const CAP_SETUID: libc::c_ulong = 7;

#[test]
fn a_daemon_whose_setuid_fails_refuses_to_serve() {
    // Apache runs as root but without CAP_SETUID (dropped from the bounding set before
    // exec): setgid and initgroups work, setuid(www-data) fails. The daemon must exit
    // instead of running the app as root (CVE-2014-0240).
    let config = ApacheConfig::new("nosetuid");
    let app = config.install_app("probe.wsgi");
    let marker = config.markers_dir().join("imported");
    std::fs::write(
        config.root().join("apps/probe.wsgi"),
        format!(
            "open({:?}, 'w').write('the app ran')\n{}",
            marker.display().to_string(),
            std::fs::read_to_string(&app).unwrap()
        ),
    )
    .unwrap();
    let config = config.conf(&format!(
        "WSGIDaemonProcess probe threads=1\n\
         WSGIScriptAlias /app {} process-group=probe application-group=%{{GLOBAL}}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
        app.display()
    ));
    let conf = config.write();
    let mut child = std::process::Command::new(common::APACHE_BIN);
    child
        .process_group(0)
        .arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: prctl in the forked child before exec; no allocation, no locks.
    unsafe {
        child.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SETUID, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    let log_path = config.error_log_path();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("cannot drop privileges") {
            break log;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no privilege-drop failure logged:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stop Apache (and with it any daemon) by PID.
    // SAFETY: SIGTERM to the Apache parent this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stop_deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > stop_deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    assert!(log.contains("setuid(33)"), "{log}");
    assert!(
        !marker.exists(),
        "the app was imported although the daemon could not drop root:\n{log}"
    );
}
