//! Limits of the machinery between Apache, the daemon manager and the daemons, each with a
//! real Apache: a Replace listing more than 64 KiB of scripts, a full listen backlog,
//! sub-second socket timeouts, the per-request reload check, and the metrics mapping across
//! graceful restarts.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Apache, ApacheConfig, http};

/// A WSGI script answering "<pid> <tag>".
fn tagged_app(tag: &str) -> String {
    format!(
        "import os\n\ndef application(environ, start_response):\n    body = ('%d {tag}' % \
         os.getpid()).encode()\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [body]\n"
    )
}

/// Writes `text` to `path` (readable by the daemons) with an mtime `ahead` in the future,
/// so a touch is seen whatever the clock's granularity.
fn write_script(path: &Path, text: &str, ahead: Duration) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() + ahead).unwrap();
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Polls `path` until `pred` holds for a 200 answer's body (bounded); returns that body.
fn wait_for_body(
    apache: &Apache,
    path: &str,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        if let Ok(r) = http::request(apache.port(), "GET", path, &[], b"") {
            last = format!("{} {}", r.status, r.text());
            if r.status == 200 && pred(&r.text()) {
                return r.text();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "GET {path} did not answer as expected within {limit:?} (last: {last})\n--- error log ---\n{}",
        apache.error_log()
    );
}

fn pid_of(body: &str) -> &str {
    body.split(' ').next().unwrap_or("")
}

/// Item 6 of issue 29: a Replace naming more (script, group) pairs than 64 KiB hold was cut,
/// the manager could not decode it, and the daemon (no longer running requests: a touch)
/// waited for ever. Now the whole list goes through, and the group keeps serving.
#[test]
fn a_replace_naming_more_than_64_kib_of_scripts_restarts_and_the_group_keeps_serving() {
    let config = ApacheConfig::new("ipc-replace");
    // 30 scripts whose paths are about 2,900 bytes long: some 87 KiB of names.
    let mut dir = config.root().join("apps");
    mkdir(&dir);
    for level in 0..14 {
        dir = dir.join(format!("{level:02}{}", "d".repeat(198)));
    }
    mkdir(&dir);
    const SCRIPTS: usize = 30;
    for i in 0..SCRIPTS {
        write_script(
            &dir.join(format!("app{i}.wsgi")),
            &tagged_app("v1"),
            Duration::ZERO,
        );
    }
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess big processes=1 threads=2\nWSGIProcessGroup big\n\
             WSGIApplicationGroup %{{GLOBAL}}\n\
             WSGIScriptAliasMatch ^/s/([0-9]+)$ {}/app$1.wsgi\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            dir.display()
        ))
        .start();
    let first = apache.get("/s/0").text();
    for i in 1..SCRIPTS {
        let body = apache.get(&format!("/s/{i}")).text();
        assert_eq!(pid_of(&body), pid_of(&first), "one process serves them all");
    }
    write_script(
        &dir.join("app0.wsgi"),
        &tagged_app("v2"),
        Duration::from_secs(10),
    );
    let body = wait_for_body(&apache, "/s/0", Duration::from_secs(40), |b| {
        b.ends_with(" v2")
    });
    assert_ne!(
        pid_of(&body),
        pid_of(&first),
        "a new process serves the touched script"
    );
    // The group keeps serving every script, from the new process.
    for i in [1, SCRIPTS / 2, SCRIPTS - 1] {
        let r = apache.get(&format!("/s/{i}"));
        assert_eq!(r.status, 200, "{}", apache.error_log());
        assert_eq!(pid_of(&r.text()), pid_of(&body));
    }
    let log = apache.error_log();
    assert!(
        log.contains(&format!("which imports {SCRIPTS} script(s) first")),
        "the replacement did not get the whole list:\n{log}"
    );
    assert!(!log.contains("RW0024:"), "{log}");
}

/// The listening socket of the test's daemon group: (queued connections, backlog) from `ss`.
fn listen_queue(root: &Path) -> Option<(u32, u32)> {
    let out = std::process::Command::new("ss")
        .args(["-xlnH"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let root = root.display().to_string();
    let line = text.lines().find(|l| l.contains(&root))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|f| *f == "LISTEN")?;
    Some((
        fields.get(at + 1)?.parse().ok()?,
        fields.get(at + 2)?.parse().ok()?,
    ))
}

/// Item 7 of issue 29: with every thread busy and the listen backlog full, a connect to the
/// daemon socket blocked until a thread took a connection. Now it gives up after
/// connect-timeout with a 503 and a log line.
#[test]
fn a_full_listen_backlog_answers_503_within_connect_timeout() {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(3);
    let (config, _) = ApacheConfig::new("ipc-backlog").daemon_app(
        "probe.wsgi",
        "probe",
        "threads=1 listen-backlog=1 connect-timeout=2 socket-timeout=60",
        "",
    );
    let apache = config.start();
    apache.wait_for_log("serving with 1 threads", Duration::from_secs(30));
    let port = apache.port();
    let slow = |n: usize| {
        let marker = apache.marker(&format!("slow{n}"));
        let path = format!("/app/sleep?s=20&started={}", marker.display());
        std::thread::spawn(move || {
            let _ = http::request(port, "GET", &path, &[], b"");
        });
        marker
    };
    // The one thread is busy...
    let busy = slow(0);
    apache.wait_for_marker(&busy, Duration::from_secs(20));
    // ...and slow requests queue up until the backlog is full (bounded in count and time).
    let root = apache.config.root().to_path_buf();
    let start = Instant::now();
    let mut sent = 1;
    loop {
        match listen_queue(&root) {
            Some((queued, backlog)) if queued > backlog => break,
            None => panic!("no listening socket under {} in ss -xl", root.display()),
            _ => {}
        }
        assert!(
            sent < 8 && start.elapsed() < Duration::from_secs(15),
            "the backlog did not fill: {:?}\n{}",
            listen_queue(&root),
            apache.error_log()
        );
        slow(sent);
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked = Instant::now();
    let r = http::request(port, "GET", "/app/pid", &[], b"").unwrap();
    let took = asked.elapsed();
    assert_eq!(r.status, 503, "{}", apache.error_log());
    assert!(
        took <= CONNECT_TIMEOUT + MARGIN,
        "the 503 took {took:?}, more than connect-timeout {CONNECT_TIMEOUT:?} + {MARGIN:?}"
    );
    apache.wait_for_log(
        "RW0152: mod_rwsgi: daemon process 'probe' took no new connection within \
         connect-timeout=2 s",
        Duration::from_secs(5),
    );
}

fn probe_with(tag: &str, options: &str, extra: &str) -> Apache {
    let (config, _) = ApacheConfig::new(tag).daemon_app("probe.wsgi", "probe", options, extra);
    config.start()
}

/// Item 9 of issue 29: `socket-timeout=0.5` keeps its half second: a fast request is served
/// and one slower than that gets its 504 after about that timeout.
#[test]
fn a_sub_second_socket_timeout_serves_fast_requests_and_times_out_slow_ones() {
    let apache = probe_with("ipc-subsec", "threads=2 socket-timeout=0.5", "");
    for _ in 0..3 {
        let r = apache.get("/app/pid");
        assert_eq!(r.status, 200, "{}", apache.error_log());
    }
    let asked = Instant::now();
    let r = apache.get("/app/sleep?s=3");
    let took = asked.elapsed();
    assert_eq!(r.status, 504, "{}", apache.error_log());
    assert!(took < Duration::from_millis(2500), "the 504 took {took:?}");
}

#[test]
fn sub_second_timeouts_that_cannot_work_are_refused_at_configtest() {
    for (option, token) in [
        ("socket-timeout=0.0000001", "socket-timeout=0.0000001"),
        ("connect-timeout=1.", "connect-timeout=1."),
        ("queue-timeout=.5", "queue-timeout=.5"),
        ("socket-timeout=-0.5", "socket-timeout=-0.5"),
    ] {
        let config =
            ApacheConfig::new("ipc-badsec").conf(&format!("WSGIDaemonProcess g {option}\n"));
        let (ok, out) = config.configtest();
        assert!(!ok, "{option} was accepted:\n{out}");
        assert!(
            out.contains("WSGIDaemonProcess") && out.contains(token),
            "{option}: the error does not name the directive and the token:\n{out}"
        );
    }
}

/// Item 10 of issue 29: with script reloading every request stat()ed every loaded script,
/// and a touch of one restarted the process on a request for any other. As mod_wsgi does,
/// a request checks its own script only.
#[test]
fn touching_one_script_restarts_the_process_only_on_a_request_for_it() {
    let config = ApacheConfig::new("ipc-reload");
    let apps = config.root().join("apps");
    mkdir(&apps);
    let (a, b) = (apps.join("a.wsgi"), apps.join("b.wsgi"));
    write_script(&a, &tagged_app("a-v1"), Duration::ZERO);
    write_script(&b, &tagged_app("b-v1"), Duration::ZERO);
    let apache = config
        .conf(&format!(
            "WSGIDaemonProcess g processes=1 threads=2\nWSGIProcessGroup g\n\
             WSGIApplicationGroup %{{GLOBAL}}\n\
             WSGIScriptAlias /a {}\nWSGIScriptAlias /b {}\n\
             <Directory @DIR@/apps>\n    Require all granted\n</Directory>",
            a.display(),
            b.display()
        ))
        .start();
    let pid = pid_of(&apache.get("/a").text()).to_string();
    assert_eq!(apache.get("/b").text(), format!("{pid} b-v1"));
    write_script(&a, &tagged_app("a-v2"), Duration::from_secs(10));
    // Requests for b, for a while (bounded): the same process serves them, nothing reloads.
    let window = Instant::now();
    let mut n = 0;
    while window.elapsed() < Duration::from_millis(2500) && n < 200 {
        n += 1;
        let r = apache.get("/b");
        assert_eq!(
            (r.status, r.text()),
            (200, format!("{pid} b-v1")),
            "a request for b after a touch of a:\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = apache.error_log();
    assert!(!log.contains("touch-to-reload"), "{log}");
    // The next request for a restarts the process (reload-mechanism=process) and runs a's
    // new code.
    let body = wait_for_body(&apache, "/a", Duration::from_secs(30), |t| {
        t.ends_with(" a-v2")
    });
    assert_ne!(pid_of(&body), pid);
    assert_eq!(apache.get("/b").text(), format!("{} b-v1", pid_of(&body)));
    apache.wait_for_log("touch-to-reload", Duration::from_secs(5));
}

/// Shared anonymous mappings in a process (how the metrics table, and Apache's scoreboard,
/// appear in /proc/<pid>/maps).
fn shared_anonymous_mappings(pid: u32) -> usize {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.ends_with("/dev/zero (deleted)"))
        .count()
}

/// Item 10 of issue 29: the Apache parent mapped a new metrics table each generation and
/// never unmapped the old one.
#[test]
fn graceful_restarts_do_not_pile_up_metrics_mappings_in_the_parent() {
    let apache = probe_with("ipc-maps", "threads=1", "");
    let parent = apache.pid();
    let generations = |apache: &Apache| apache.error_log().matches("RW0001:").count();
    let graceful = |apache: &Apache| {
        let before = generations(apache);
        apache.signal(libc::SIGUSR1);
        let start = Instant::now();
        while generations(apache) <= before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no new generation after a graceful restart:\n{}",
                apache.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for_body(apache, "/app/pid", Duration::from_secs(30), |_| true);
    };
    graceful(&apache);
    let baseline = shared_anonymous_mappings(parent);
    assert!(baseline >= 1, "no shared mapping at all in the parent");
    for _ in 0..4 {
        graceful(&apache);
    }
    assert_eq!(
        shared_anonymous_mappings(parent),
        baseline,
        "the parent's shared mappings grew over 4 graceful restarts:\n{}",
        fs::read_to_string(format!("/proc/{parent}/maps")).unwrap_or_default()
    );
}
