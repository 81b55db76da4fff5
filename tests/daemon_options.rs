//! The WSGIDaemonProcess options that shape a daemon process from the outside, each seen
//! from inside the daemon by tests/apps/limits.wsgi or from the client: resource limits and
//! priority, thread stacks, socket buffers, header and response buffering, script
//! ownership, memory-based recycling and the process environment.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::http::{Json, json};
use common::load::rwsgi_load;
use common::{Apache, ApacheConfig};

fn start(options: &str, extra: &str) -> Apache {
    let (config, _) = ApacheConfig::new("opts").daemon_app("limits.wsgi", "limits", options, extra);
    config.start()
}

fn facts(apache: &Apache, env: &str) -> serde_json::Value {
    let resp = apache.get(&format!("/app/facts?env={env}"));
    assert_with_log!(apache, resp.status == 200, "facts: status {}", resp.status);
    json(&resp)
}

#[test]
fn resource_limits_priority_and_thread_stacks_reach_the_daemon() {
    let apache = start(
        "threads=2 cpu-time-limit=600 memory-limit=2000000000 \
         virtual-memory-limit=3000000000 cpu-priority=7 stack-size=524288 graceful-timeout=20",
        "",
    );
    let f = facts(&apache, "");
    // RLIMIT_CPU: the soft limit sends SIGXCPU; the hard one leaves a drain's worth.
    assert_eq!(f["cpu"][0].num(), 600.0, "{f}");
    assert_eq!(f["cpu"][1].num(), 620.0, "{f}");
    assert_eq!(f["data"][0].num(), 2_000_000_000.0, "{f}");
    assert_eq!(f["as"][0].num(), 3_000_000_000.0, "{f}");
    assert_eq!(f["priority"].num(), 7.0, "{f}");
    // The request ran on a worker thread with the configured stack.
    assert_eq!(f["stack"].num(), 524_288.0, "{f}");

    // Without the options: unlimited, priority 0, the default 8 MiB stack.
    let plain = start("threads=2", "");
    let f = facts(&plain, "");
    assert_eq!(f["cpu"][0].num(), -1.0, "{f}");
    assert_eq!(f["as"][0].num(), -1.0, "{f}");
    assert_eq!(f["priority"].num(), 0.0, "{f}");
    assert!(f["stack"].num() >= 2_000_000.0, "{f}");
}

#[test]
fn an_allocation_past_virtual_memory_limit_is_a_500_and_the_daemon_serves_on() {
    let apache = start("threads=2 virtual-memory-limit=1500000000", "");
    let pid = facts(&apache, "")["pid"].num();
    let resp = apache.get("/app/alloc?mb=2000");
    assert_with_log!(apache, resp.status == 500, "status {}", resp.status);
    apache.wait_for_log("MemoryError", Duration::from_secs(5));
    let log = apache.error_log();
    assert_with_log!(
        apache,
        log.contains("Traceback") && log.contains("limits.wsgi"),
        "no traceback for the MemoryError"
    );
    // Small allocations still work, in the same process.
    let resp = apache.get("/app/alloc?mb=10");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(json(&resp)["pid"].num(), pid);
}

#[test]
fn an_allocation_past_memory_limit_is_a_500_and_the_daemon_serves_on() {
    let apache = start("threads=2 memory-limit=600000000", "");
    let pid = facts(&apache, "")["pid"].num();
    let resp = apache.get("/app/alloc?mb=800");
    assert_with_log!(apache, resp.status == 500, "status {}", resp.status);
    apache.wait_for_log("MemoryError", Duration::from_secs(5));
    let resp = apache.get("/app/alloc?mb=10");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(json(&resp)["pid"].num(), pid);
}

#[test]
fn cpu_time_limit_replaces_the_process_warm_after_its_request() {
    let apache = start("threads=2 cpu-time-limit=1 graceful-timeout=10", "");
    let pid = facts(&apache, "")["pid"].num();
    // Two CPU seconds: SIGXCPU arrives after one; the request still completes.
    let resp = apache.get("/app/burn?s=2");
    assert_with_log!(apache, resp.status == 200, "burn: status {}", resp.status);
    assert_eq!(json(&resp)["pid"].num(), pid);
    apache.wait_for_log(
        "cpu-time-limit=1 s of CPU time reached (SIGXCPU)",
        Duration::from_secs(10),
    );
    // The replacement serves; the old process is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = apache.get("/app/facts");
        assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
        if json(&resp)["pid"].num() != pid {
            break;
        }
        assert_with_log!(apache, Instant::now() < deadline, "never replaced");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn socket_buffer_sizes_apply_to_the_daemons_connections() {
    let apache = start(
        "threads=2 send-buffer-size=65536 receive-buffer-size=98304",
        "",
    );
    let pid = facts(&apache, "")["pid"].num() as u32;
    // Linux reports twice the size set (room for its bookkeeping).
    let out = std::process::Command::new("ss")
        .args(["-x", "-m", "-p"])
        .output()
        .expect("run ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")) && l.contains("ESTAB"))
        .collect();
    assert_with_log!(
        apache,
        !mine.is_empty(),
        "no connection of daemon {pid} in:\n{text}"
    );
    assert_with_log!(
        apache,
        mine.iter()
            .any(|l| l.contains("tb131072") && l.contains("rb196608")),
        "daemon {pid}'s connections do not have the buffer sizes:\n{}",
        mine.join("\n")
    );
}

#[test]
fn a_header_line_over_header_buffer_size_is_a_500_naming_it() {
    let apache = start("threads=2 header-buffer-size=8192", "");
    let resp = apache.get("/app/header?n=4000");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    let resp = apache.get("/app/header?n=9000");
    assert_with_log!(apache, resp.status == 500, "status {}", resp.status);
    apache.wait_for_log(
        "response header b'X-Big' is 9007 bytes long, over the daemon process group's \
         header-buffer-size=8192",
        Duration::from_secs(5),
    );
    // The default (32768) lets the same header through.
    let plain = start("threads=2", "");
    let resp = plain.get("/app/header?n=9000");
    assert_with_log!(plain, resp.status == 200, "status {}", resp.status);
}

#[test]
fn script_user_and_group_refuse_scripts_they_do_not_own() {
    let config = ApacheConfig::new("owner");
    let app = config.install_app("limits.wsgi");
    // The app is root's, mode 0644, in a root-owned 0755 directory.
    let conf = format!(
        "WSGIDaemonProcess mine threads=2 script-user=root\n\
         WSGIDaemonProcess theirs threads=2 script-user=www-data\n\
         WSGIDaemonProcess bygroup threads=2 script-group=root\n\
         WSGIScriptAlias /mine {app} process-group=mine application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /theirs {app} process-group=theirs application-group=%{{GLOBAL}}\n\
         WSGIScriptAlias /bygroup {app} process-group=bygroup application-group=%{{GLOBAL}}\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
        app = app.display()
    );
    let apache = config.conf(&conf).start();
    assert_eq!(apache.get("/mine/facts").status, 200);
    assert_eq!(apache.get("/bygroup/facts").status, 200);
    let resp = apache.get("/theirs/facts");
    assert_with_log!(apache, resp.status == 403, "status {}", resp.status);
    apache.wait_for_log(
        &format!(
            "the WSGI script file '{}' is owned by uid 0, but script-user= requires uid",
            app.display()
        ),
        Duration::from_secs(5),
    );
    // Group-writable is refused even for the right owner.
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o664)).unwrap();
    let resp = apache.get("/mine/facts");
    assert_with_log!(apache, resp.status == 403, "status {}", resp.status);
    apache.wait_for_log("is writable by group (mode 0664)", Duration::from_secs(5));
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A world-writable directory too.
    let dir = app.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o757)).unwrap();
    let resp = apache.get("/bygroup/facts");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_with_log!(apache, resp.status == 403, "status {}", resp.status);
    apache.wait_for_log("directory of the WSGI script", Duration::from_secs(5));
}

#[test]
fn maximum_rss_recycles_a_leaking_process_without_failed_requests() {
    let apache = start("threads=2 maximum-rss=100 graceful-timeout=10", "");
    let first = facts(&apache, "")["pid"].num();
    let result = rwsgi_load(
        apache.port(),
        "/app/leak?mb=5",
        &["--clients", "2", "--duration", "20", "--max-requests", "60"],
    );
    assert_with_log!(
        apache,
        result.failures == 0 && result.requests == 60,
        "rwsgi-load: {}",
        result.output
    );
    let log = apache.wait_for_log("maximum-rss=100 MB exceeded", Duration::from_secs(5));
    // 5 MiB per request from a ~20 MiB start: recycled after about 16 requests, so 60
    // requests need at least two replacements.
    let recycles = log.matches("maximum-rss=100 MB exceeded").count();
    assert_with_log!(apache, recycles >= 2, "{recycles} recycles");
    // The replacement serves once it has started (the load may end before it is ready, as
    // a daemon exec'd from the host starts a little later than a fork).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while facts(&apache, "")["pid"].num() == first {
        assert_with_log!(
            apache,
            std::time::Instant::now() < deadline,
            "pid {first} still serves after the recycle"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn env_and_env_file_are_in_os_environ_at_import_time() {
    let config = ApacheConfig::new("envfile");
    let env_file = config.root().join("app.env");
    std::fs::write(
        &env_file,
        "# settings for the app\nexport FROM_FILE=file-value\nQUOTED=\"two words\"\n\
         OVERRIDDEN=from-file\n",
    )
    .unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (config, _) = config.daemon_app(
        "limits.wsgi",
        "limits",
        &format!(
            "threads=2 env-file={} env=OVERRIDDEN=from-directive env=EMPTY= \
             env=WITH_EQUALS=a=b",
            env_file.display()
        ),
        "",
    );
    let apache = config.start();
    let f = facts(&apache, "FROM_FILE,QUOTED,OVERRIDDEN,EMPTY,WITH_EQUALS");
    let env = &f["env"];
    assert_eq!(env["FROM_FILE"].str(), "file-value", "{f}");
    assert_eq!(env["QUOTED"].str(), "two words", "{f}");
    assert_eq!(env["OVERRIDDEN"].str(), "from-directive", "{f}");
    assert_eq!(env["EMPTY"].str(), "", "{f}");
    assert!(env["EMPTY"].is_string(), "{f}");
    assert_eq!(env["WITH_EQUALS"].str(), "a=b", "{f}");
}

#[test]
fn a_missing_env_file_is_a_clear_error_at_start() {
    let apache = start(
        "threads=2 connect-timeout=2 env-file=/nonexistent/rwsgi-test.env",
        "",
    );
    apache.wait_for_log(
        "cannot read env-file=/nonexistent/rwsgi-test.env: No such file or directory",
        Duration::from_secs(10),
    );
    // The daemon stays up without Python and answers at once, saying why.
    let started = Instant::now();
    let resp = apache.get("/app/facts");
    assert_with_log!(apache, resp.status == 503, "status {}", resp.status);
    assert_with_log!(
        apache,
        started.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        started.elapsed()
    );
    let log = apache.error_log();
    assert_with_log!(
        apache,
        log.lines()
            .filter(|l| l.contains("rwsgi:crit") && l.contains("cannot read env-file="))
            .count()
            == 1,
        "the daemon should not crash-loop"
    );
}

/// Milliseconds until the first body piece of /app/stream reached the client.
fn first_piece_after(apache: &Apache, gap: f64) -> Duration {
    let mut s = TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    write!(
        s,
        "GET /app/stream?gap={gap} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first;") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    started.elapsed()
}

#[test]
fn response_flush_delay_holds_a_flush_while_more_data_comes() {
    // 0: every piece is flushed at once.
    let now = start("threads=2 response-flush-delay=0", "");
    let t = first_piece_after(&now, 0.6);
    assert_with_log!(
        now,
        t < Duration::from_millis(450),
        "first piece after {t:?}"
    );
    // 2000 ms: the second piece, 0.6 s later, arrives before the delay ends, so the first
    // one waits for it.
    let held = start("threads=2 response-flush-delay=2000", "");
    let t = first_piece_after(&held, 0.6);
    assert_with_log!(
        held,
        t >= Duration::from_millis(550),
        "first piece after {t:?}"
    );
    // Data that stops coming is flushed once the delay has passed.
    let t = first_piece_after(&held, 4.0);
    assert_with_log!(
        held,
        t >= Duration::from_millis(1900) && t < Duration::from_millis(3800),
        "first piece after {t:?}"
    );
}

/// FLUSH buckets that reached the output filters during one 4 MiB response, counted by
/// mod_dumpio.
fn flushes_during_big_response(options: &str) -> usize {
    let (config, _) = ApacheConfig::new("respbuf").module("dumpio").daemon_app(
        "limits.wsgi",
        "limits",
        options,
        "DumpIOOutput On\nLogLevel info dumpio:trace7\n",
    );
    let apache = config.start();
    let log = apache.error_log();
    let (flushes, ends) = (
        log.matches("(metadata-FLUSH)").count(),
        log.matches("(metadata-EOS)").count(),
    );
    let resp = apache.get("/app/big?mb=4");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    assert_eq!(resp.body.len(), 4 * 1024 * 1024);
    // The client may have the whole body before the last flush passed the filters: count
    // once the response's end (EOS) went through too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = apache.error_log();
        if log.matches("(metadata-EOS)").count() > ends {
            return log.matches("(metadata-FLUSH)").count() - flushes;
        }
        assert_with_log!(
            apache,
            Instant::now() < deadline,
            "no EOS logged by mod_dumpio"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn response_buffer_size_forces_flushes_in_a_long_unflushed_body() {
    let bounded = flushes_during_big_response("threads=2 response-buffer-size=65536");
    let default = flushes_during_big_response("threads=2");
    // 4 MiB in 1 MiB body frames: a flush after each frame past 64 KiB.
    assert!(
        bounded >= 4,
        "{bounded} flushes with response-buffer-size=65536"
    );
    assert!(
        default < bounded,
        "{default} flushes with the default, {bounded} bounded"
    );
}

#[test]
fn response_socket_timeout_ends_a_response_the_client_does_not_read() {
    let apache = start("threads=2 response-socket-timeout=2", "LogLevel info\n");
    let mut s = TcpStream::connect(("127.0.0.1", apache.port())).unwrap();
    // A small receive window so Apache's writes block at once.
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    write!(
        s,
        "GET /app/big?mb=64 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    // Apache's Timeout is 30 s here: only response-socket-timeout can end it this soon.
    apache.wait_for_log(
        "Client connection closed while sending the response",
        Duration::from_secs(15),
    );
    assert_with_log!(
        apache,
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    drop(s);
}

#[test]
fn map_head_to_get_on_off_and_auto_in_both_modes() {
    let config = ApacheConfig::new("headget")
        .module("deflate")
        .module("filter");
    let app = config.install_app("limits.wsgi");
    let mut conf = String::from(
        "WSGIDaemonProcess limits threads=2\n\
         <Directory @DIR@/apps>\n    Require all granted\n</Directory>\n",
    );
    for (mode, group) in [("d", "limits"), ("e", "%{GLOBAL}")] {
        for setting in ["On", "Off", "Auto", "AutoDeflate", "Default"] {
            let url = format!("/{mode}-{}", setting.to_ascii_lowercase());
            conf.push_str(&format!(
                "WSGIScriptAlias {url} {} process-group={group} application-group=%{{GLOBAL}}\n",
                app.display()
            ));
            let inner = match setting {
                "Default" => String::new(),
                "AutoDeflate" => "WSGIMapHEADToGET Auto\nSetOutputFilter DEFLATE\n".into(),
                other => format!("WSGIMapHEADToGET {other}\n"),
            };
            conf.push_str(&format!("<Location {url}>\n{inner}</Location>\n"));
        }
    }
    let apache = config.conf(&conf).start();
    for mode in ["d", "e"] {
        for (setting, head_seen_as) in [
            ("on", "GET"),
            ("off", "HEAD"),
            ("auto", "HEAD"),
            ("autodeflate", "GET"),
            ("default", "HEAD"),
        ] {
            let path = format!("/{mode}-{setting}/method");
            let resp = apache.request("HEAD", &path, &[], b"");
            assert_with_log!(apache, resp.status == 200, "{path}: status {}", resp.status);
            assert_eq!(
                resp.header("X-Request-Method"),
                Some(head_seen_as),
                "HEAD {path}"
            );
            assert!(resp.body.is_empty(), "HEAD {path} got a body");
            let resp = apache.get(&path);
            assert_eq!(resp.header("X-Request-Method"), Some("GET"), "GET {path}");
        }
    }
}

/// A directory with `name.py` (defining VALUE) that www-data can read.
fn module_dir(config: &ApacheConfig, dir: &str, name: &str, value: &str) -> std::path::PathBuf {
    let path = config.root().join(dir);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = path.join(format!("{name}.py"));
    std::fs::write(&file, format!("VALUE = {value:?}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn identity_umask_and_python_path_options_reach_the_daemon() {
    let config = ApacheConfig::new("ident");
    let first = module_dir(&config, "path-a", "from_a", "a");
    let second = module_dir(&config, "path-b", "from_b", "b");
    let (config, _) = config.daemon_app(
        "limits.wsgi",
        "limits",
        &format!(
            "threads=2 user=www-data group=www-data supplementary-groups=nogroup umask=0027 \
             python-path={}:{}",
            first.display(),
            second.display()
        ),
        "",
    );
    let apache = config.start();
    let f = facts(&apache, "");
    let resp = apache.get("/app/facts?import=from_a,from_b");
    assert_with_log!(apache, resp.status == 200, "status {}", resp.status);
    let with_imports = json(&resp);
    assert_eq!(f["uid"].num(), 33.0, "{f}");
    assert_eq!(f["gid"].num(), 33.0, "{f}");
    // setgroups(nogroup) instead of www-data's own groups.
    assert_eq!(f["groups"], serde_json::json!([65534]), "{f}");
    assert_eq!(f["umask"].num(), f64::from(0o027), "{f}");
    // python-path entries come first, in order, and are importable.
    let sys_path: Vec<&str> = f["sys_path"].list().iter().map(|p| p.str()).collect();
    let a = sys_path.iter().position(|p| *p == first.to_str().unwrap());
    let b = sys_path.iter().position(|p| *p == second.to_str().unwrap());
    assert!(
        matches!((a, b), (Some(a), Some(b)) if a < b),
        "{sys_path:?}"
    );
    assert_eq!(with_imports["imported"]["from_a"].str(), "a");
    assert_eq!(with_imports["imported"]["from_b"].str(), "b");
}

#[test]
fn socket_user_owns_the_socket_and_listen_backlog_sizes_its_queue() {
    let apache = start("threads=2 socket-user=nobody listen-backlog=7", "");
    let run = apache.config.root().join("run");
    let socket = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("a daemon socket in run/");
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "{} is not nobody's",
        socket.display()
    );
    // The listening socket's queue limit is shown as Send-Q by ss.
    let out = std::process::Command::new("ss")
        .args(["-x", "-l", "-n"])
        .output()
        .expect("run ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(socket.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not listed by ss:\n{text}", socket.display()));
    let send_q: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(send_q.get(3), Some(&"7"), "{line}");
}
