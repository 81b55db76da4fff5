//! mod_rwsgi's directives in `.htaccess` files, which Apache reads on request threads for
//! every request while it serves: they apply to their directory and must never reach the
//! server-wide configuration (issue 29, item 1: WSGITrustedProxies there crashed Apache
//! children under concurrent load), and what they log must not flood the error log.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::http::{Json, json};
use common::load::rwsgi_load;
use common::{Apache, ApacheConfig};

/// Serves tests/apps/probe.wsgi as `/ht/probe.wsgi` from a directory whose `.htaccess`
/// holds `htaccess` (AllowOverride FileInfo AuthConfig), in daemon group `probe`.
fn start_with_htaccess(tag: &str, htaccess: &str) -> Apache {
    let config = ApacheConfig::new(tag);
    let dir = config.root().join("ht");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = config.install_app("probe.wsgi");
    std::fs::copy(&app, dir.join("probe.wsgi")).unwrap();
    std::fs::write(dir.join(".htaccess"), htaccess).unwrap();
    for file in ["probe.wsgi", ".htaccess"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    config
        .conf(&format!(
            "WSGIDaemonProcess probe threads=4\nWSGIProcessGroup probe\n\
             Alias /ht {dir}\n\
             <Directory {dir}>\n    AllowOverride FileInfo AuthConfig\n    \
             Options +ExecCGI\n    AddHandler wsgi-script .wsgi\n    \
             Require all granted\n</Directory>",
            dir = dir.display()
        ))
        .start()
}

/// `requests` GETs of `path` from 16 concurrent clients (at most 120 s); none may fail.
fn load(apache: &Apache, path: &str, requests: u64) {
    let result = rwsgi_load(
        apache.port(),
        path,
        &[
            "--clients",
            "16",
            "--duration",
            "120",
            "--max-requests",
            &requests.to_string(),
        ],
    );
    assert!(
        result.failures == 0 && result.requests == requests,
        "{path}: {} of {requests} requests made, {} failed:\n{}\n--- error log ---\n{}",
        result.requests,
        result.failures,
        result.output,
        apache.error_log()
    );
}

#[test]
fn trusted_proxies_in_htaccess_under_concurrent_load_crash_no_child_and_leak_nothing() {
    let apache = start_with_htaccess(
        "htproxy",
        "WSGITrustedProxies 127.0.0.1\nWSGITrustedProxyHeaders X-Forwarded-For\n",
    );
    // The header works: the client is 127.0.0.1, a trusted proxy.
    let env = json(&apache.request(
        "GET",
        "/ht/probe.wsgi/env",
        &[("X-Forwarded-For", "203.0.113.9")],
        b"",
    ));
    assert_eq!(env["REMOTE_ADDR"].str(), "203.0.113.9", "{env}");

    load(&apache, "/ht/probe.wsgi/pid", 3000);
    let warm = common::apache_children_rss(&apache);
    assert!(!warm.is_empty(), "no Apache child found");
    load(&apache, "/ht/probe.wsgi/pid", 12000);
    let after = common::apache_children_rss(&apache);

    let log = apache.error_log();
    for bad in ["exit signal", "Segmentation fault", "Abort", "panicked"] {
        assert!(!log.contains(bad), "'{bad}' in the error log:\n{log}");
    }
    // Every child that served the warm-up still serves: none died and was replaced.
    for pid in warm.keys() {
        assert!(
            after.contains_key(pid),
            "Apache child {pid} is gone: {warm:?} -> {after:?}\n{log}"
        );
    }
    // Flat: each request no longer adds to a server-wide list. Within 5 % plus 1 MiB.
    for (pid, before) in &warm {
        let now = after[pid];
        let limit = before / 20 + 1024;
        assert!(
            now <= before + limit,
            "Apache child {pid}: RSS {before} KiB after warm-up, {now} KiB after 12000 \
             more requests (limit +{limit} KiB)"
        );
    }
    let env = json(&apache.request(
        "GET",
        "/ht/probe.wsgi/env",
        &[("X-Forwarded-For", "198.51.100.4")],
        b"",
    ));
    assert_eq!(env["REMOTE_ADDR"].str(), "198.51.100.4", "{env}");
}

#[test]
fn group_authoritative_off_in_htaccess_does_not_log_on_every_request() {
    let apache = start_with_htaccess("htgroupauth", "WSGIGroupAuthoritative Off\n");
    for _ in 0..20 {
        assert_eq!(apache.get("/ht/probe.wsgi/pid").status, 200);
    }
    let log = apache.error_log();
    assert!(
        !log.contains("WSGIGroupAuthoritative Off"),
        "a line for every request's .htaccess:\n{log}"
    );
}
