//! rwsgi-express with mod_wsgi-express's options, each group against the real
//! /usr/sbin/apache2: `setup-server` writes the server root, its `apachectl` starts and
//! stops Apache (as mod_wsgi's own test harness does), requests go over 127.0.0.1 — plain
//! HTTP with the tests' client, HTTPS and HTTP/2 with curl.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::http::{self, Json};
use common::{TempDir, free_port, module_path, repo_dir};

const EXPRESS: &str = env!("CARGO_BIN_EXE_rwsgi-express");

fn app_path() -> PathBuf {
    repo_dir().join("tests/apps/express_app.py")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs rwsgi-express with `args` (plus the module under test for the server commands).
fn express(args: &[&str]) -> Output {
    let mut cmd = Command::new(EXPRESS);
    cmd.args(args).stdin(Stdio::null());
    if matches!(args.first(), Some(&"setup-server") | Some(&"start-server")) {
        cmd.arg("--module").arg(module_path());
    }
    cmd.output().expect("run rwsgi-express")
}

/// A throwaway self-signed certificate for CN=localhost: (certificate, key).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("test.crt"), dir.join("test.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (make test installs it)");
    assert!(out.status.success(), "openssl: {}", text(&out));
    (crt, key)
}

/// A server root written by `setup-server`, controlled with its `apachectl`.
struct Server {
    root: PathBuf,
    /// Where Apache writes its PID and its error log (the server root unless the test
    /// moved them).
    pid_file: PathBuf,
    log_dir: PathBuf,
    port: u16,
    https_port: u16,
    running: bool,
    _tmp: TempDir,
}

impl Server {
    /// `setup-server` with `args`, on a free port (and a free HTTPS port if `args` mention
    /// `HTTPS_PORT`, replaced by it), in a fresh server root.
    fn setup(tag: &str, args: &[&str]) -> Server {
        let tmp = TempDir::new(tag);
        let root = tmp.path().join("root");
        let (port, https_port) = (free_port(), free_port());
        let https = https_port.to_string();
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "HTTPS_PORT" {
                    https.as_str()
                } else {
                    a
                }
            })
            .collect();
        let port_s = port.to_string();
        let root_s = root.display().to_string();
        let mut all = vec!["setup-server"];
        all.extend(&args);
        all.extend(["--port", &port_s, "--server-root", &root_s]);
        let out = express(&all);
        assert!(
            out.status.success(),
            "setup-server {args:?}:\n{}",
            text(&out)
        );
        Server {
            pid_file: root.join("httpd.pid"),
            log_dir: root.clone(),
            root,
            port,
            https_port,
            running: false,
            _tmp: tmp,
        }
    }

    fn ctl(&self, action: &str) -> Output {
        Command::new(self.root.join("apachectl"))
            .arg(action)
            .stdin(Stdio::null())
            .output()
            .expect("run apachectl")
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.log_dir.join("error_log")).unwrap_or_default()
    }

    /// `apachectl start`, then waits (bounded) for httpd.pid and a listening port.
    fn start(&mut self) {
        let out = self.ctl("start");
        assert!(out.status.success(), "apachectl start: {}", text(&out));
        self.running = true;
        let started = Instant::now();
        while !(self.pid_file.exists()
            && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok())
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not serving after 20 s:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn apache_pid(&self) -> i32 {
        fs::read_to_string(&self.pid_file)
            .expect("httpd.pid")
            .trim()
            .parse()
            .expect("a PID in httpd.pid")
    }

    /// A GET with `Host: host`.
    fn get_as(&self, host: &str, path: &str) -> http::Response {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        http::raw_request(self.port, raw.as_bytes(), false)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.error_log()))
    }

    fn get(&self, path: &str) -> http::Response {
        self.get_as(&format!("127.0.0.1:{}", self.port), path)
    }

    /// curl against `url` (localhost resolved to 127.0.0.1, certificate not verified):
    /// (body, status line of -w).
    fn curl(&self, extra: &[&str], url: &str) -> (String, String) {
        let out = Command::new("curl")
            .args(["-sS", "-k", "--max-time", "20"])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", self.https_port),
            ])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl (make test installs it)");
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl {url}: {}\n{}",
            text(&out),
            self.error_log()
        );
        let (body, status) = all.rsplit_once('\n').unwrap();
        (body.to_string(), status.to_string())
    }

    /// `apachectl stop`; then no Apache process, daemon, socket or listener is left.
    fn stop(&mut self) {
        let apache = self.apache_pid();
        let daemons = processes_mentioning(&format!("(wsgi:localhost:{})", self.port));
        let out = self.ctl("stop");
        self.running = false;
        assert!(out.status.success(), "apachectl stop: {}", text(&out));
        // apachectl stop returns once the Apache parent is gone: nothing may be left.
        assert!(
            !alive(apache),
            "Apache {apache} still running after apachectl stop"
        );
        for (pid, cmd) in &daemons {
            assert!(
                !alive(*pid),
                "daemon {pid} ({cmd}) left after apachectl stop"
            );
        }
        let left = processes_mentioning(&self.root.display().to_string());
        assert!(left.is_empty(), "left behind: {left:?}");
        let sockets: Vec<_> = fs::read_dir(self.root.join("run"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
            .map(|e| e.path())
            .collect();
        assert!(sockets.is_empty(), "sockets left: {sockets:?}");
        std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("port free after stop");
        assert!(!self.pid_file.exists(), "httpd.pid left");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running {
            if std::thread::panicking() {
                eprintln!("--- error_log ---\n{}", self.error_log());
            }
            let pid = fs::read_to_string(&self.pid_file).ok();
            let _ = self.ctl("stop");
            if let Some(pid) = pid.and_then(|p| p.trim().parse::<i32>().ok()) {
                if alive(pid) {
                    // SAFETY: kill(2) on the Apache parent this test started.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// Live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            found.push((pid, cmd));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").split_whitespace().next() != Some("Z"))
        .unwrap_or(false)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// mod_wsgi's own integration harness: `setup-server app --server-root DIR --port P
/// --server-name localhost --https-port P2 --ssl-certificate-file F
/// --ssl-certificate-key-file K --ssl-environment --log-level info --include-file extra.conf`,
/// then `DIR/apachectl start|stop`, reading `DIR/error_log` and `DIR/httpd.pid`.
#[test]
fn mod_wsgi_harness_invocation_serves_http_and_https_then_stops_cleanly() {
    let tmp = TempDir::new("express-harness-certs");
    let (crt, key) = self_signed(tmp.path());
    // The harness mounts more apps from its include file, in the daemon group it knows by
    // mod_wsgi-express's name for it: localhost:PORT. The port is only known after setup,
    // so the file is written afterwards (Apache reads it at start).
    let extra = tmp.path().join("extra.conf");
    fs::write(&extra, "").unwrap();
    let app = app_path();
    let mut server = Server::setup(
        "express-harness",
        &[
            app.to_str().unwrap(),
            "--server-name",
            "localhost",
            "--https-port",
            "HTTPS_PORT",
            "--ssl-certificate-file",
            crt.to_str().unwrap(),
            "--ssl-certificate-key-file",
            key.to_str().unwrap(),
            "--ssl-environment",
            "--log-level",
            "info",
            "--include-file",
            extra.to_str().unwrap(),
        ],
    );
    let port = server.port;
    fs::write(
        &extra,
        format!(
            "SetEnv HARNESS_MARK included\n\
             WSGIScriptAlias /extra {} process-group=localhost:{port} \
             application-group=%{{GLOBAL}} callable-object=other\n",
            app.display()
        ),
    )
    .unwrap();
    for file in ["apachectl", "httpd.conf"] {
        assert!(
            server.root.join(file).is_file(),
            "{file} in the server root"
        );
    }
    let test = server.ctl("configtest");
    assert!(
        test.status.success() && text(&test).contains("Syntax OK"),
        "{}",
        text(&test)
    );
    server.start();
    let apache = server.apache_pid();
    assert!(alive(apache), "httpd.pid names the running Apache");

    // Plain HTTP, by name: the app in the daemon group named localhost:PORT.
    let page = server.get_as(&format!("localhost:{port}"), "/");
    assert_eq!(page.status, 200, "{}", server.error_log());
    let info = http::json(&page);
    assert_eq!(info["url_scheme"].str(), "http");
    assert_eq!(
        info["environ"]["mod_wsgi.process_group"].str(),
        format!("localhost:{port}")
    );
    assert_eq!(info["environ"]["SERVER_NAME"].str(), "localhost");
    assert!(info["environ"].get("SSL_PROTOCOL").is_none());
    // The included configuration comes after the generated one: it can use its group.
    let extra_page = server.get_as(&format!("localhost:{port}"), "/extra");
    assert_eq!(extra_page.status, 200, "{}", server.error_log());
    assert_eq!(extra_page.text(), "other callable");
    // --server-name: another name (here the bare address) is refused by the default host.
    assert_eq!(server.get("/").status, 403);

    // HTTPS: mod_ssl with the throwaway certificate; --ssl-environment passes SSL_*.
    let url = format!("https://localhost:{}/", server.https_port);
    let (body, status) = server.curl(&[], &url);
    assert!(status.starts_with("200 "), "{status}: {body}");
    let info = json(&body);
    assert_eq!(info["url_scheme"].str(), "https");
    // HTTPS=on became wsgi.url_scheme (mod_wsgi takes it out of the environ).
    assert_eq!(info["environ"]["SSL_SERVER_S_DN_CN"].str(), "localhost");
    assert!(
        info["environ"]["SSL_PROTOCOL"].str().starts_with("TLSv1"),
        "{}",
        info["environ"]
    );
    assert!(!info["environ"]["SSL_CIPHER"].str().is_empty());
    assert_eq!(
        info["environ"]["SERVER_PORT"].str(),
        server.https_port.to_string()
    );
    assert_eq!(info["environ"]["HARNESS_MARK"].str(), "included");
    assert_eq!(
        info["pid"],
        http::json(&page)["pid"],
        "one daemon serves both"
    );

    // graceful keeps serving; the error log is where the harness reads it.
    let graceful = server.ctl("graceful");
    assert!(graceful.status.success(), "{}", text(&graceful));
    let started = Instant::now();
    loop {
        let r = http::raw_request(
            port,
            format!("GET / HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            false,
        );
        if r.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not serving after graceful"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.error_log().contains(&format!(
            "into main interpreter of daemon process 'localhost:{port}'"
        )),
        "{}",
        server.error_log()
    );
    server.stop();
}

#[test]
fn https_only_redirects_and_hsts_without_ssl_environment_no_ssl_variables() {
    let tmp = TempDir::new("express-https-only-certs");
    let (crt, key) = self_signed(tmp.path());
    let app = app_path();
    let mut server = Server::setup(
        "express-https-only",
        &[
            app.to_str().unwrap(),
            "--https-port",
            "HTTPS_PORT",
            "--ssl-certificate-file",
            crt.to_str().unwrap(),
            "--ssl-certificate-key-file",
            key.to_str().unwrap(),
            "--https-only",
            "--hsts-policy",
            "max-age=600",
        ],
    );
    server.start();
    let plain = server.get("/some/path?q=1");
    assert_eq!(plain.status, 302, "{}", plain.text());
    assert_eq!(
        plain.header("location"),
        Some(format!("https://127.0.0.1:{}/some/path?q=1", server.https_port).as_str())
    );
    let url = format!("https://localhost:{}/", server.https_port);
    let (body, status) = server.curl(&[], &url);
    assert!(status.starts_with("200 "), "{status}");
    let info = json(&body);
    assert_eq!(info["url_scheme"].str(), "https");
    assert!(
        info["environ"].get("SSL_PROTOCOL").is_none(),
        "no --ssl-environment, no SSL_* variables: {}",
        info["environ"]
    );
    let head = Command::new("curl")
        .args(["-sS", "-k", "-o", "/dev/null", "-D", "-"])
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.https_port),
        ])
        .arg(&url)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=600"),
        "{head}"
    );
    server.stop();
}

/// --http2: h2 over TLS (ALPN) and h2c, and a streamed response arrives chunk by chunk.
#[test]
fn http2_serves_h2_and_h2c_with_streaming_intact() {
    let tmp = TempDir::new("express-h2-certs");
    let (crt, _key) = self_signed(tmp.path());
    let app = app_path();
    let mut server = Server::setup(
        "express-h2",
        &[
            app.to_str().unwrap(),
            "--http2",
            "--https-port",
            "HTTPS_PORT",
            "--ssl-certificate",
            crt.with_extension("").to_str().unwrap(),
        ],
    );
    server.start();
    let url = format!("https://localhost:{}/", server.https_port);
    let (body, status) = server.curl(&["--http2"], &url);
    assert_eq!(status, "200 2", "{body}");
    assert_eq!(json(&body)["environ"]["SERVER_PROTOCOL"].str(), "HTTP/2.0");
    let (_, status) = server.curl(
        &["--http2-prior-knowledge"],
        &format!("http://localhost:{}/", server.port),
    );
    assert_eq!(status, "200 2");

    // Streaming: 4 chunks 0.4 s apart must arrive as they are produced.
    let mut curl = Command::new("curl")
        .args(["-sS", "-k", "-N", "--http2", "--max-time", "20"])
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.https_port),
        ])
        .args(["-w", "version %{http_version}\n"])
        .arg(format!("https://localhost:{}/stream", server.https_port))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut lines = Vec::new();
    for line in BufReader::new(curl.stdout.take().unwrap()).lines() {
        lines.push((start.elapsed(), line.unwrap()));
    }
    assert!(curl.wait().unwrap().success());
    let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        ["chunk 0", "chunk 1", "chunk 2", "chunk 3", "version 2"],
        "{lines:?}"
    );
    let first = lines[0].0;
    let last = lines[3].0;
    assert!(
        last - first >= Duration::from_millis(1000),
        "chunks arrived together, not streamed: {lines:?}"
    );
    server.stop();
}

/// --setenv, --passenv, --working-directory, --python-path, --callable-object,
/// --processes/--threads/--max-clients, --maximum-requests and --request-timeout.
#[test]
fn environment_paths_capacity_and_recycling_reach_the_daemon() {
    let tmp = TempDir::new("express-env");
    let work = tmp.path().join("work");
    let lib = tmp.path().join("lib");
    fs::create_dir_all(&work).unwrap();
    fs::create_dir_all(&lib).unwrap();
    fs::write(lib.join("express_helper.py"), "VALUE = 'from lib'\n").unwrap();
    fs::write(
        work.join("app.wsgi"),
        "import express_helper, json, os, sys\n\
         import mod_wsgi\n\
         def entry(environ, start_response):\n\
         \x20   if environ['PATH_INFO'] == '/sleep':\n\
         \x20       import time; time.sleep(8)\n\
         \x20   body = json.dumps({'helper': express_helper.VALUE, 'cwd': os.getcwd(),\n\
         \x20       'pid': os.getpid(), 'threads': mod_wsgi.threads_per_process,\n\
         \x20       'processes': mod_wsgi.maximum_processes,\n\
         \x20       'set': environ.get('EXPRESS_SET'), 'passed': environ.get('EXPRESS_PASSED')}).encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'application/json')])\n\
         \x20   return [body]\n",
    )
    .unwrap();
    let script = work.join("app.wsgi");
    let mut server = Server::setup(
        "express-env-root",
        &[
            script.to_str().unwrap(),
            "--callable-object",
            "entry",
            "--working-directory",
            tmp.path().to_str().unwrap(),
            "--python-path",
            lib.to_str().unwrap(),
            "--setenv",
            "EXPRESS_SET",
            "a value with spaces \"and quotes\"",
            "--passenv",
            "EXPRESS_PASSED",
            "--processes",
            "1",
            "--threads",
            "1",
            "--max-clients",
            "50",
            "--maximum-requests",
            "3",
            "--request-timeout",
            "1",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    // mod_wsgi-express's arithmetic: 50 clients in children of 50 / (50 / 20 + 1) = 16
    // threads: 4 children, 64 workers.
    assert!(
        conf.contains("ThreadsPerChild 16\n") && conf.contains("MaxRequestWorkers 64\n"),
        "{conf}"
    );
    // PassEnv copies Apache's own environment: apachectl passes ours on.
    let out = Command::new(server.root.join("apachectl"))
        .arg("start")
        .env("EXPRESS_PASSED", "passed through")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    server.running = true;
    let started = Instant::now();
    let first = loop {
        if let Ok(r) = http::request(server.port, "GET", "/", &[], b"") {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(first.status, 200, "{}", server.error_log());
    let info = http::json(&first);
    assert_eq!(info["helper"].str(), "from lib", "--python-path");
    assert_eq!(
        info["cwd"].str(),
        fs::canonicalize(tmp.path()).unwrap().to_str().unwrap(),
        "--working-directory"
    );
    assert_eq!(info["set"].str(), "a value with spaces \"and quotes\"");
    assert_eq!(info["passed"].str(), "passed through");
    assert_eq!(info["threads"].num(), 1.0);
    assert_eq!(info["processes"].num(), 1.0);

    // --maximum-requests 3: after its third request the process is replaced (warm: it may
    // serve a few more until the new one is ready).
    let first_pid = info["pid"].as_i64().unwrap();
    let pids: Vec<i64> = (0..2)
        .map(|_| http::json(&server.get("/"))["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids, [first_pid, first_pid]);
    let started = Instant::now();
    while http::json(&server.get("/"))["pid"].as_i64().unwrap() == first_pid {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not replaced after 3 requests\n{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // --request-timeout 1 (one thread): a request running 8 s gets 504 within seconds.
    let asked = Instant::now();
    let slow = server.get("/sleep");
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
    server.stop();
}

/// --application-type module with --entry-point: the module is imported from the working
/// directory; a change to it reloads it.
#[test]
fn module_application_type_imports_and_reloads_the_module() {
    let tmp = TempDir::new("express-module");
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    fs::copy(app_path(), work.join("express_app.py")).unwrap();
    let mut server = Server::setup(
        "express-module-root",
        &[
            "--application-type",
            "module",
            "--entry-point",
            "express_app",
            "--working-directory",
            work.to_str().unwrap(),
        ],
    );
    assert!(server.root.join("handler.wsgi").is_file());
    server.start();
    let info = http::json(&server.get("/"));
    assert_eq!(info["marker"].str(), "one");
    let first_pid = info["pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let source = fs::read_to_string(work.join("express_app.py")).unwrap();
    fs::write(
        work.join("express_app.py"),
        source.replace("MARKER = \"one\"", "MARKER = \"two\""),
    )
    .unwrap();
    let started = Instant::now();
    let info = loop {
        let info = http::json(&server.get("/"));
        if info["marker"].str() == "two" {
            break info;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "module change not picked up\n{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(info["pid"].as_i64().unwrap(), first_pid);

    // --callable-object picks another callable of the module.
    let other = Server::setup(
        "express-module-other",
        &[
            "--application-type",
            "module",
            "express_app",
            "--callable-object",
            "other",
            "--working-directory",
            work.to_str().unwrap(),
        ],
    );
    server.stop();
    let mut other = other;
    other.start();
    let page = other.get("/");
    assert_eq!(page.status, 200, "{}", other.error_log());
    assert_eq!(page.text(), "other callable");
    other.stop();
}

/// --application-type paste: PasteDeploy (installed in the test venv, the daemon's
/// --python-home) loads the .ini file's application.
#[test]
fn paste_application_type_serves_the_configured_app() {
    let venv = common::test_venv();
    let ini = repo_dir().join("tests/apps/express_paste.ini");
    let mut server = Server::setup(
        "express-paste",
        &[
            "--application-type",
            "paste",
            ini.to_str().unwrap(),
            "--python-home",
            venv.to_str().unwrap(),
        ],
    );
    server.start();
    let page = server.get("/");
    assert_eq!(page.status, 200, "{}", server.error_log());
    assert_eq!(page.text(), "hello from paste");
    server.stop();
}

/// --embedded-mode: the app runs in Apache's (worker) children, not a daemon.
#[test]
fn embedded_mode_serves_from_apache_children() {
    let app = app_path();
    let mut server = Server::setup(
        "express-embedded",
        &[
            app.to_str().unwrap(),
            "--embedded-mode",
            "--processes",
            "2",
            "--threads",
            "4",
            "--setenv",
            "EXPRESS_MODE",
            "embedded",
        ],
    );
    server.start();
    let info = http::json(&server.get("/"));
    assert_eq!(info["environ"]["mod_wsgi.process_group"].str(), "");
    assert_eq!(info["environ"]["EXPRESS_MODE"].str(), "embedded");
    assert_eq!(
        info["ppid"].as_i64().unwrap(),
        i64::from(server.apache_pid()),
        "the app runs in a child of the Apache parent"
    );
    assert_eq!(info["threads_per_process"].num(), 4.0);
    assert_eq!(info["maximum_processes"].num(), 2.0);
    assert!(processes_mentioning(&format!("(wsgi:localhost:{})", server.port)).is_empty());
    server.stop();

    // A daemon-only option would do nothing there: refused.
    let out = express(&[
        "setup-server",
        app.to_str().unwrap(),
        "--embedded-mode",
        "--request-timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--request-timeout applies to the daemon process group"),
        "{}",
        text(&out)
    );
}

/// --server-status, --access-log with --access-log-name, --error-log-name, --startup-log,
/// --rotate-logs.
#[test]
fn server_status_and_log_options() {
    let app = app_path();
    let mut server = Server::setup(
        "express-logs",
        &[
            app.to_str().unwrap(),
            "--server-status",
            "--access-log",
            "--access-log-name",
            "requests.log",
            "--startup-log",
        ],
    );
    server.start();
    assert_eq!(server.get("/").status, 200);
    let status = server.get("/server-status?auto");
    assert_eq!(status.status, 200, "{}", server.error_log());
    assert!(
        status.text().contains("ServerMPM: event"),
        "{}",
        status.text()
    );
    assert!(status.text().contains("BusyWorkers:"), "{}", status.text());
    // The access log line is written as the request ends: wait for it (bounded).
    let started = Instant::now();
    loop {
        let access = fs::read_to_string(server.root.join("requests.log")).unwrap_or_default();
        if access.contains("\"GET /server-status?auto HTTP/1.1\" 200") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{access}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.root.join("startup_log").is_file(), "-E startup_log");
    server.stop();

    let mut rotated = Server::setup(
        "express-rotate",
        &[
            app.to_str().unwrap(),
            "--rotate-logs",
            "--max-log-size",
            "1",
            "--error-log-name",
            "errors",
            "--log-level",
            "info",
        ],
    );
    rotated.start();
    assert_eq!(rotated.get("/").status, 200);
    let started = Instant::now();
    let log = loop {
        let found: Vec<PathBuf> = fs::read_dir(&rotated.root)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("errors.20"))
            })
            .collect();
        let text = found
            .first()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        if text.contains("Loading WSGI script") {
            break found[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rotatelogs file errors.<date> with the daemon's lines: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!rotated.root.join("errors").exists(), "{log:?}");
    rotated.stop();
}

/// Options mod_wsgi-express has and rwsgi-express does not implement yet are refused by
/// name; so are options that need another one.
#[test]
fn unsupported_and_incomplete_options_are_clear_errors() {
    let app = app_path();
    let app = app.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--with-cgi"],
            "--with-cgi is a mod_wsgi-express option not supported by rwsgi-express yet",
        ),
        (
            vec!["--allow-override", "All"],
            "--allow-override is a mod_wsgi-express option not supported by rwsgi-express yet",
        ),
        (
            vec!["--rewrite-rules", "/tmp/rules.conf"],
            "--rewrite-rules is a mod_wsgi-express option not supported by rwsgi-express yet",
        ),
        (
            vec!["--application-type", "static"],
            "--application-type static is not supported by rwsgi-express yet",
        ),
        (
            vec!["--application-type", "paste", "--callable-object", "x"],
            "--callable-object does not apply to --application-type paste",
        ),
        (
            vec!["--ssl-certificate-file", "/etc/hostname"],
            "--ssl-certificate-file needs --https-port",
        ),
        (
            vec!["--https-port", "8443"],
            "--https-port needs --ssl-certificate-file",
        ),
        (
            vec!["--setenv", "BAD NAME", "x"],
            "--setenv \"BAD NAME\": expected an environment variable name",
        ),
    ] {
        let tmp = TempDir::new("express-refused");
        let root = tmp.path().join("root");
        let mut all = vec!["setup-server", app, "--server-root", root.to_str().unwrap()];
        all.extend(&args);
        let out = express(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    // Options that would be ignored next to another one are refused by the parser.
    for (args, expected) in [
        (
            vec!["--rotate-logs", "--log-to-terminal"],
            "'--rotate-logs' cannot be used with '--log-to-terminal'",
        ),
        (vec!["--max-log-size", "9"], "--rotate-logs"),
        (vec!["--access-log-name", "a.log"], "--access-log"),
        (vec!["--startup-log-name", "s.log"], "--startup-log"),
        (vec!["--server-alias", "b.test"], "--server-name"),
        (vec!["--https-only"], "--https-port"),
    ] {
        let mut all = vec!["setup-server", app];
        all.extend(&args);
        let out = express(&all);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
    let out = express(&["setup-server", app, "--embedded-mode", "--max-clients", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--max-clients applies to the daemon process group"),
        "{}",
        text(&out)
    );
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// --server-name with --server-alias, --allow-localhost and the bare-domain redirect of a
/// `www.` name; --process-group and --application-group; client certificates from
/// --ssl-ca-certificate-file for the --ssl-verify-client URL only, with
/// --ssl-certificate-chain-file.
#[test]
fn names_groups_and_client_certificates() {
    let tmp = TempDir::new("express-names-certs");
    let dir = tmp.path();
    let (crt, _) = self_signed(dir);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "1",
            "-subj",
            "/CN=Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=test-client",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "client.crt",
        ],
    );
    let app = app_path();
    let ca = dir.join("ca.crt");
    let mut server = Server::setup(
        "express-names",
        &[
            app.to_str().unwrap(),
            "--server-name",
            "www.example.test",
            "--server-alias",
            "alias.example.test",
            "--allow-localhost",
            "--process-group",
            "my-group",
            "--application-group",
            "my-apps",
            "--https-port",
            "HTTPS_PORT",
            "--ssl-certificate",
            crt.with_extension("").to_str().unwrap(),
            "--ssl-certificate-chain-file",
            ca.to_str().unwrap(),
            "--ssl-ca-certificate-file",
            ca.to_str().unwrap(),
            "--ssl-verify-client",
            "/private",
            "--ssl-environment",
        ],
    );
    server.start();
    let port = server.port;
    for host in ["www.example.test", "alias.example.test", "127.0.0.1"] {
        let page = server.get_as(&format!("{host}:{port}"), "/");
        assert_eq!(page.status, 200, "Host {host}: {}", page.text());
        let info = http::json(&page);
        assert_eq!(info["environ"]["mod_wsgi.process_group"].str(), "my-group");
        assert_eq!(
            info["environ"]["mod_wsgi.application_group"].str(),
            "my-apps"
        );
    }
    let bare = server.get_as(&format!("example.test:{port}"), "/x");
    assert_eq!(bare.status, 301);
    assert_eq!(
        bare.header("location"),
        Some(format!("http://www.example.test:{port}/x").as_str())
    );

    let https = server.https_port;
    let curl = |extra: &[&str], path: &str| {
        Command::new("curl")
            .args(["-sS", "-k", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(["--resolve", &format!("www.example.test:{https}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://www.example.test:{https}{path}"))
            .current_dir(dir)
            .output()
            .unwrap()
    };
    // Outside /private no certificate is asked for.
    let open = curl(&[], "/");
    assert!(text(&open).ends_with("\n200"), "{}", text(&open));
    // Under /private a client certificate signed by the CA is required...
    let refused = curl(&[], "/private");
    assert!(
        !refused.status.success() || text(&refused).ends_with("\n403"),
        "no client certificate must not be served: {}",
        text(&refused)
    );
    // ...and seen by the app.
    let admitted = curl(&["--cert", "client.crt", "--key", "client.key"], "/private");
    let body = String::from_utf8_lossy(&admitted.stdout).into_owned();
    let (json_body, status) = body.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{}\n{}", text(&admitted), server.error_log());
    assert_eq!(
        json(json_body)["environ"]["SSL_CLIENT_S_DN_CN"].str(),
        "test-client"
    );
    server.stop();
}

/// The daemon options reach WSGIDaemonProcess (and pass configtest); --restart-interval
/// replaces the process; --disable-reloading keeps it when the script changes.
#[test]
fn daemon_options_restart_interval_and_disable_reloading() {
    let tmp = TempDir::new("express-daemon-opts");
    let script = tmp.path().join("app.wsgi");
    fs::copy(app_path(), &script).unwrap();
    let options = [
        ("--startup-timeout", "20", "startup-timeout=20"),
        ("--shutdown-timeout", "4", "shutdown-timeout=4"),
        ("--graceful-timeout", "6", "graceful-timeout=6"),
        ("--eviction-timeout", "7", "eviction-timeout=7"),
        ("--deadlock-timeout", "50", "deadlock-timeout=50"),
        ("--inactivity-timeout", "300", "inactivity-timeout=300"),
        ("--interrupt-timeout", "3", "interrupt-timeout=3"),
        ("--connect-timeout", "9", "connect-timeout=9"),
        ("--socket-timeout", "40", "socket-timeout=40"),
        ("--queue-timeout", "30", "queue-timeout=30"),
        ("--cpu-time-limit", "600", "cpu-time-limit=600"),
        ("--daemon-backlog", "64", "listen-backlog=64"),
        ("--send-buffer-size", "65536", "send-buffer-size=65536"),
        (
            "--receive-buffer-size",
            "65536",
            "receive-buffer-size=65536",
        ),
        ("--header-buffer-size", "40000", "header-buffer-size=40000"),
        (
            "--response-buffer-size",
            "100000",
            "response-buffer-size=100000",
        ),
        (
            "--response-socket-timeout",
            "8",
            "response-socket-timeout=8",
        ),
        ("--response-flush-delay", "0", "response-flush-delay=0"),
        ("--restart-interval", "2", "restart-interval=2"),
    ];
    let mut args = vec![script.to_str().unwrap(), "--disable-reloading"];
    for (flag, value, _) in &options {
        args.extend([*flag, *value]);
    }
    let mut server = Server::setup("express-daemon-opts-root", &args);
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    for (flag, _, directive) in &options {
        assert!(
            conf.contains(directive),
            "{flag}: no {directive} in\n{conf}"
        );
    }
    assert!(
        conf.contains("\nTimeout 40\n"),
        "--socket-timeout is Apache's Timeout"
    );
    assert!(conf.contains("\nWSGIScriptReloading Off\n"));
    server.start();
    let first = http::json(&server.get("/"))["pid"].as_i64().unwrap();
    // --disable-reloading: a changed script is not reloaded.
    std::thread::sleep(Duration::from_millis(20));
    let source = fs::read_to_string(&script).unwrap();
    fs::write(
        &script,
        source.replace("MARKER = \"one\"", "MARKER = \"two\""),
    )
    .unwrap();
    assert_eq!(http::json(&server.get("/"))["marker"].str(), "one");
    // --restart-interval 2: a new process within a few seconds (and then the new code).
    let started = Instant::now();
    let info = loop {
        let info = http::json(&server.get("/"));
        if info["pid"].as_i64().unwrap() != first {
            break info;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not restarted by --restart-interval 2\n{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(info["marker"].str(), "two");
    server.stop();
}

/// --trust-proxy-header/--trust-proxy, --chunked-request, --map-head-to-get,
/// --python-warnings, --switch-interval, --compress-responses, --access-log-format,
/// --error-log-format, --log-directory and --pid-file.
#[test]
fn proxy_body_head_compression_python_and_log_options() {
    let tmp = TempDir::new("express-misc");
    let logs = tmp.path().join("logs");
    let pid_file = tmp.path().join("pids/apache.pid");
    let app = app_path();
    let mut server = Server::setup(
        "express-misc-root",
        &[
            app.to_str().unwrap(),
            "--trust-proxy-header",
            "X-Forwarded-For",
            "--trust-proxy",
            "127.0.0.1",
            "--chunked-request",
            "--map-head-to-get",
            "on",
            "--python-warnings",
            "error::DeprecationWarning",
            "--switch-interval",
            "0.002",
            "--compress-responses",
            "--access-log",
            "--access-log-format",
            "%m %U marker-%{X-Test}i",
            "--error-log-format",
            "EXPRESS-FORMAT %M",
            "--log-level",
            "info",
            "--log-directory",
            logs.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    );
    server.pid_file = pid_file.clone();
    server.log_dir = logs.clone();
    server.start();
    let port = server.port;
    let send = |raw: String| {
        http::raw_request(port, raw.as_bytes(), raw.starts_with("HEAD"))
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
    };
    let proxied = send(format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Test: abc\r\nConnection: close\r\n\r\n"
    ));
    let info = http::json(&proxied);
    assert_eq!(info["environ"]["REMOTE_ADDR"].str(), "203.0.113.7");
    assert_eq!(info["warnoptions"][0].str(), "error::DeprecationWarning");
    assert_eq!(info["switch_interval"].num(), 0.002);
    let chunked = send(format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ));
    assert_eq!(chunked.status, 200, "--chunked-request: {}", chunked.text());
    let head = send(format!(
        "HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(head.header("x-method"), Some("GET"), "--map-head-to-get on");
    let gzip = send(format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: gzip\r\n\
         Connection: close\r\n\r\n"
    ));
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(&gzip.body[..2], &[0x1f, 0x8b], "a gzip body");

    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        server.apache_pid().to_string()
    );
    let started = Instant::now();
    loop {
        let access = fs::read_to_string(logs.join("access_log")).unwrap_or_default();
        if access.contains("GET / marker-abc") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{access}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let error_log = server.error_log();
    assert!(
        error_log.lines().any(|l| l.starts_with("EXPRESS-FORMAT ")),
        "{error_log}"
    );
    assert!(!server.root.join("error_log").exists());
    server.stop();
}

/// --limit-request-body, --keep-alive-timeout 0, --lang/--locale and --python-eggs.
#[test]
fn body_limit_keep_alive_locale_and_eggs() {
    let tmp = TempDir::new("express-limits");
    let eggs = tmp.path().join("eggs");
    fs::create_dir_all(&eggs).unwrap();
    let app = app_path();
    let mut server = Server::setup(
        "express-limits-root",
        &[
            app.to_str().unwrap(),
            "--limit-request-body",
            "100",
            "--keep-alive-timeout",
            "0",
            "--locale",
            "C.UTF-8",
            "--lang",
            "C",
            "--python-eggs",
            eggs.to_str().unwrap(),
        ],
    );
    server.start();
    let port = server.port;
    let small = http::request(port, "POST", "/", &[], &[b'x'; 100]).unwrap();
    assert_eq!(small.status, 200);
    let large = http::request(port, "POST", "/", &[], &[b'x'; 101]).unwrap();
    assert_eq!(large.status, 413, "--limit-request-body 100");
    // No keep-alive: a request without `Connection: close` is answered with it.
    let raw = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let page = http::raw_request(port, raw.as_bytes(), false).unwrap();
    assert_eq!(page.header("connection"), Some("close"));
    let env = &http::json(&page)["os_environ"];
    assert_eq!(env["LC_ALL"].str(), "C.UTF-8");
    assert_eq!(env["LANG"].str(), "C");
    assert_eq!(
        env["PYTHON_EGG_CACHE"].str(),
        fs::canonicalize(&eggs).unwrap().to_str().unwrap()
    );
    server.stop();
}

/// --envvars-script is sourced by apachectl (and --passenv shows its variable to the app);
/// --orphan-interpreter keeps atexit handlers from running when the daemon stops.
#[test]
fn envvars_script_and_orphan_interpreter() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("express-envvars");
    let markers = tmp.path().join("markers");
    fs::create_dir_all(&markers).unwrap();
    // The daemon (www-data when run as root) leaves its marker here.
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o777)).unwrap();
    let script = tmp.path().join("app.wsgi");
    fs::write(
        &script,
        format!(
            "import atexit, json, os\n\
             def _bye():\n\
             \x20   open(os.path.join({markers:?}, 'atexit-%d' % os.getpid()), 'w').close()\n\
             atexit.register(_bye)\n\
             def application(environ, start_response):\n\
             \x20   body = json.dumps({{'value': environ.get('FROM_ENVVARS'),\n\
             \x20                      'pid': os.getpid()}}).encode()\n\
             \x20   start_response('200 OK', [('Content-Type', 'application/json')])\n\
             \x20   return [body]\n",
            markers = markers.display().to_string()
        ),
    )
    .unwrap();
    let envvars = tmp.path().join("envvars.sh");
    fs::write(&envvars, "FROM_ENVVARS='sourced'\nexport FROM_ENVVARS\n").unwrap();
    for orphan in [false, true] {
        let mut args = vec![
            script.to_str().unwrap(),
            "--envvars-script",
            envvars.to_str().unwrap(),
            "--passenv",
            "FROM_ENVVARS",
        ];
        if orphan {
            args.push("--orphan-interpreter");
        }
        let mut server = Server::setup("express-envvars-root", &args);
        server.start();
        let info = http::json(&server.get("/"));
        assert_eq!(info["value"].str(), "sourced", "--envvars-script");
        let pid = info["pid"].as_i64().unwrap();
        server.stop();
        let marker = markers.join(format!("atexit-{pid}"));
        assert_eq!(
            marker.exists(),
            !orphan,
            "atexit handlers run on stop unless --orphan-interpreter (orphan={orphan})"
        );
    }
}

/// --server-metrics (mod_wsgi.server_metrics() answers, with the request it serves in the
/// scoreboard) and --metrics-url (the rwsgi-metrics endpoint at that URL, over the app
/// mounted at /); without them server_metrics() is None and the URL is the app's.
#[test]
fn server_metrics_and_metrics_url() {
    let app = app_path();
    let mut server = Server::setup(
        "express-metrics",
        &[
            app.to_str().unwrap(),
            "--server-metrics",
            "--metrics-url",
            "/metrics",
            "--processes",
            "2",
            "--threads",
            "3",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    assert!(conf.contains("WSGIServerMetrics On"), "{conf}");
    assert!(conf.contains("server-metrics=on"), "{conf}");
    server.start();
    let resp = server.get("/info");
    assert_eq!(resp.status, 200, "{}", server.error_log());
    let info = http::json(&resp);
    let board = &info["server_metrics"];
    assert!(board["server_limit"].num() >= 1.0, "{info}");
    assert!(
        board["requests"]
            .list()
            .iter()
            .any(|r| r.str() == "GET /info HTTP/1.1"),
        "{board}"
    );
    for _ in 0..4 {
        assert_eq!(server.get("/").status, 200);
    }
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200, "{}", server.error_log());
    let scrape = metrics.text();
    let group = format!("localhost:{}", server.port);
    let line = |name: &str, labels: &str| format!("{name}{{process_group=\"{group}\"{labels}}}");
    assert!(
        scrape.lines().any(|l| l
            == format!(
                "{} 5",
                line("rwsgi_requests_total", ",status_class=\"2xx\"")
            )),
        "{scrape}"
    );
    assert!(
        scrape
            .lines()
            .any(|l| l == format!("{} 6", line("rwsgi_threads", ",state=\"idle\""))),
        "{scrape}"
    );
    assert!(
        scrape
            .lines()
            .any(|l| l == format!("{} 2", line("rwsgi_processes", ""))),
        "{scrape}"
    );
    server.stop();

    // Without the options: no scoreboard for the app, and /metrics is the app's.
    let mut plain = Server::setup("express-no-metrics", &[app.to_str().unwrap()]);
    plain.start();
    assert!(http::json(&plain.get("/info"))["server_metrics"].is_null());
    assert!(
        !plain
            .get("/metrics")
            .text()
            .contains("rwsgi_requests_total")
    );
    plain.stop();

    // The endpoint shows daemon groups: refused with --embedded-mode; a bad URL is named.
    for (args, expected) in [
        (
            vec!["--embedded-mode", "--metrics-url", "/metrics"],
            "--metrics-url applies to the daemon process group",
        ),
        (
            vec!["--metrics-url", "metrics"],
            "--metrics-url \"metrics\": expected a URL path",
        ),
    ] {
        let mut full = vec!["setup-server", app.to_str().unwrap()];
        full.extend(args);
        let out = express(&full);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
}

/// An `--include-file` written for mod_wsgi-express (as mod_wsgi's own suite writes them):
/// it loads modules outside the base set from `${MOD_WSGI_MODULES_DIRECTORY}` and uses
/// directives of modules mod_wsgi-express always loads (mod_headers, mod_rewrite).
#[test]
fn include_file_written_for_mod_wsgi_express_loads_modules_and_requires_basic_auth() {
    let tmp = TempDir::new("express-include-auth");
    let users = tmp.path().join("users");
    let hashed = Command::new("openssl")
        .args(["passwd", "-apr1", "s3cret"])
        .output()
        .expect("openssl (make test installs it)");
    assert!(hashed.status.success(), "openssl passwd: {}", text(&hashed));
    let hash = String::from_utf8_lossy(&hashed.stdout).trim().to_string();
    fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let extra = tmp.path().join("auth.conf");
    fs::write(
        &extra,
        format!(
            "<IfModule !auth_basic_module>\n\
             \x20   LoadModule auth_basic_module ${{MOD_WSGI_MODULES_DIRECTORY}}/mod_auth_basic.so\n\
             </IfModule>\n\
             <IfModule !authn_file_module>\n\
             \x20   LoadModule authn_file_module ${{MOD_WSGI_MODULES_DIRECTORY}}/mod_authn_file.so\n\
             </IfModule>\n\
             <IfModule !authz_user_module>\n\
             \x20   LoadModule authz_user_module ${{MOD_WSGI_MODULES_DIRECTORY}}/mod_authz_user.so\n\
             </IfModule>\n\
             <Location /private>\n\
             \x20   AuthType Basic\n\
             \x20   AuthName \"Private Area\"\n\
             \x20   AuthUserFile \"{}\"\n\
             \x20   Require valid-user\n\
             \x20   Header set X-Included yes\n\
             </Location>\n\
             RewriteEngine On\n\
             RewriteRule ^/moved$ /private [R=302,L]\n",
            users.display()
        ),
    )
    .unwrap();
    let app = app_path();
    let mut server = Server::setup(
        "express-include-auth",
        &[
            app.to_str().unwrap(),
            "--include-file",
            extra.to_str().unwrap(),
        ],
    );
    server.start();
    let get = |auth: Option<&str>, path: &str| {
        let auth = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{auth}Connection: close\r\n\r\n",
            server.port
        );
        http::raw_request(server.port, raw.as_bytes(), false)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", server.error_log()))
    };

    // No credentials, or wrong ones: mod_auth_basic answers 401 with its challenge.
    let denied = get(None, "/private");
    assert_eq!(denied.status, 401, "{}", server.error_log());
    assert_eq!(
        denied.header("WWW-Authenticate"),
        Some("Basic realm=\"Private Area\"")
    );
    // base64("alice:wrong")
    assert_eq!(get(Some("YWxpY2U6d3Jvbmc="), "/private").status, 401);
    // base64("alice:s3cret"): the app runs, and sees who authenticated.
    let page = get(Some("YWxpY2U6czNjcmV0"), "/private");
    assert_eq!(page.status, 200, "{}", server.error_log());
    assert_eq!(page.header("X-Included"), Some("yes"));
    let info = http::json(&page);
    assert_eq!(info["environ"]["REMOTE_USER"].str(), "alice");
    assert_eq!(info["environ"]["AUTH_TYPE"].str(), "Basic");
    // The rest of the site is open; mod_rewrite's rule from the included file applies.
    assert_eq!(get(None, "/").status, 200, "{}", server.error_log());
    let moved = get(None, "/moved");
    assert_eq!(moved.status, 302, "{}", server.error_log());
    assert!(
        moved
            .header("Location")
            .is_some_and(|l| l.ends_with("/private")),
        "{:?}",
        moved.headers
    );
    server.stop();
}

/// The generated configuration defines mod_wsgi-express's variables and flags with their
/// meaning (an included file reads them), and loads mod_wsgi-express's base set of modules.
#[test]
fn generated_config_defines_mod_wsgi_express_variables_and_loads_its_base_modules() {
    let tmp = TempDir::new("express-defines");
    let extra = tmp.path().join("defines.conf");
    let mut conf = String::new();
    for name in [
        "MODULES_DIRECTORY",
        "SERVER_ROOT",
        "LISTENER_HOST",
        "HTTP_PORT",
        "USER",
        "GROUP",
        "WORKING_DIRECTORY",
    ] {
        conf.push_str(&format!("SetEnv X_{name} \"${{MOD_WSGI_{name}}}\"\n"));
    }
    // Flags: set for the options given, unset for the others.
    for flag in [
        "EMBEDDED_MODE",
        "MOD_WSGI_MULTIPROCESS",
        "MOD_WSGI_ACCESS_LOG",
        "MOD_WSGI_WITH_LISTENER_HOST",
        "MOD_WSGI_CHUNKED_REQUEST",
        "MOD_WSGI_DISABLE_RELOADING",
        "MOD_WSGI_MPM_ENABLE_WORKER_MODULE",
        "MOD_WSGI_MPM_ENABLE_EVENT_MODULE",
        "MOD_WSGI_WITH_HTTPS",
        "MOD_WSGI_VIRTUAL_HOST",
        "ORPHAN_INTERPRETER",
    ] {
        conf.push_str(&format!(
            "<IfDefine {flag}>\nSetEnv F_{flag} on\n</IfDefine>\n\
             <IfDefine !{flag}>\nSetEnv F_{flag} off\n</IfDefine>\n"
        ));
    }
    fs::write(&extra, conf).unwrap();
    let app = app_path();
    let workdir = app.parent().unwrap();
    let mut server = Server::setup(
        "express-defines",
        &[
            app.to_str().unwrap(),
            "--embedded-mode",
            "--processes",
            "2",
            "--access-log",
            "--chunked-request",
            "--include-file",
            extra.to_str().unwrap(),
        ],
    );

    // mod_wsgi-express's base set (and mod_log_config for --access-log) is loaded.
    let dump = Command::new("/usr/sbin/apache2")
        .arg("-f")
        .arg(server.root.join("httpd.conf"))
        .args(["-t", "-D", "DUMP_MODULES"])
        .output()
        .expect("apache2 -M");
    let modules = text(&dump);
    assert!(dump.status.success(), "{modules}");
    for module in [
        "mpm_worker",
        "access_compat",
        "unixd",
        "authn_core",
        "authz_core",
        "authz_host",
        "mime",
        "rewrite",
        "alias",
        "dir",
        "env",
        "headers",
        "filter",
        "reqtimeout",
        "log_config",
        "rwsgi",
    ] {
        assert!(
            modules.contains(&format!(" {module}_module ")),
            "{module}_module not loaded:\n{modules}"
        );
    }

    server.start();
    let page = server.get("/");
    assert_eq!(page.status, 200, "{}", server.error_log());
    let env = &http::json(&page)["environ"];
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // As root, Apache and the app run as www-data; otherwise as the caller.
    let (user, group) = if id("-u") == "0" {
        ("www-data".to_string(), "www-data".to_string())
    } else {
        (id("-un"), id("-gn"))
    };
    let port = server.port.to_string();
    let root = server.root.display().to_string();
    for (name, expected) in [
        ("X_MODULES_DIRECTORY", "/usr/lib/apache2/modules"),
        ("X_SERVER_ROOT", root.as_str()),
        ("X_LISTENER_HOST", "127.0.0.1"),
        ("X_HTTP_PORT", port.as_str()),
        ("X_USER", user.as_str()),
        ("X_GROUP", group.as_str()),
        ("X_WORKING_DIRECTORY", workdir.to_str().unwrap()),
        ("F_EMBEDDED_MODE", "on"),
        ("F_MOD_WSGI_MULTIPROCESS", "on"),
        ("F_MOD_WSGI_ACCESS_LOG", "on"),
        ("F_MOD_WSGI_WITH_LISTENER_HOST", "on"),
        ("F_MOD_WSGI_CHUNKED_REQUEST", "on"),
        // mod_wsgi-express turns reloading off in embedded mode.
        ("F_MOD_WSGI_DISABLE_RELOADING", "on"),
        ("F_MOD_WSGI_MPM_ENABLE_WORKER_MODULE", "on"),
        ("F_MOD_WSGI_MPM_ENABLE_EVENT_MODULE", "off"),
        ("F_MOD_WSGI_WITH_HTTPS", "off"),
        ("F_MOD_WSGI_VIRTUAL_HOST", "off"),
        ("F_ORPHAN_INTERPRETER", "off"),
    ] {
        assert_eq!(env[name].str(), expected, "{name} in {env}");
    }
    server.stop();
}

/// `setup-server APP ARGS...` for each case: refused (by rwsgi-express's checks or by the
/// parser), with output that says what was wrong, and without writing the default server
/// root (a refused command writes nothing).
fn assert_refused(app: &str, cases: &[(Vec<&str>, &str)]) {
    let default_root = PathBuf::from(format!(
        "/tmp/rwsgi-express-127.0.0.1:8000-{}",
        nix::unistd::Uid::effective()
    ));
    for (args, expected) in cases {
        let existed = default_root.exists();
        let mut all = vec!["setup-server", app];
        all.extend(args);
        let out = express(&all);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
        assert!(
            existed || !default_root.exists(),
            "{args:?} was refused after writing {}",
            default_root.display()
        );
    }
}

/// --host-access-script, --auth-user-script (Basic and Digest) with --auth-group-script and
/// --auth-group: access control for the whole site, the scripts run by Apache's children.
#[test]
fn access_and_authentication_scripts_guard_the_whole_site() {
    let scripts = TempDir::new("express-auth-scripts");
    let write = |name: &str, text: &str| {
        let path = scripts.path().join(name);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let access = write(
        "access.py",
        "def allow_access(environ, host):\n    return 'HTTP_X_BLOCK' not in environ\n",
    );
    let users = write(
        "users.py",
        "import hashlib\n\n\
         def check_password(environ, user, password):\n    \
             if user in ('alice', 'bob'):\n        return password == 'secret'\n    \
             return None\n\n\
         def get_realm_hash(environ, user, realm):\n    \
             if user != 'alice':\n        return None\n    \
             return hashlib.md5(f'{user}:{realm}:secret'.encode()).hexdigest()\n",
    );
    let groups = write(
        "groups.py",
        "def groups_for_user(environ, user):\n    return ['staff'] if user == 'alice' else []\n",
    );
    let app = app_path();
    let mut server = Server::setup(
        "express-auth",
        &[
            app.to_str().unwrap(),
            "--host-access-script",
            &access,
            "--auth-user-script",
            &users,
            "--auth-group-script",
            &groups,
            "--auth-group",
            "staff",
        ],
    );
    server.start();
    let port = server.port;
    let get = |headers: &[(&str, &str)]| http::request(port, "GET", "/", headers, b"").unwrap();
    let anonymous = get(&[]);
    assert_eq!(anonymous.status, 401, "{}", server.error_log());
    assert_eq!(
        anonymous.header("WWW-Authenticate"),
        Some(format!("Basic realm=\"127.0.0.1:{port}\"").as_str())
    );
    let alice = get(&[("Authorization", "Basic YWxpY2U6c2VjcmV0")]);
    assert_eq!(alice.status, 200, "{}", server.error_log());
    assert_eq!(http::json(&alice)["environ"]["REMOTE_USER"].str(), "alice");
    // A wrong password; a right one for a user outside --auth-group.
    for credentials in ["Basic YWxpY2U6d3Jvbmc=", "Basic Ym9iOnNlY3JldA=="] {
        let r = get(&[("Authorization", credentials)]);
        assert_eq!(r.status, 401, "{credentials}: {}", server.error_log());
    }
    // The access script runs first: refused whatever the credentials.
    let blocked = get(&[
        ("Authorization", "Basic YWxpY2U6c2VjcmV0"),
        ("X-Block", "1"),
    ]);
    assert_eq!(blocked.status, 403, "{}", server.error_log());
    server.stop();

    // Digest, with curl's client side of it.
    let mut digest = Server::setup(
        "express-auth-digest",
        &[
            app.to_str().unwrap(),
            "--auth-user-script",
            &users,
            "--auth-type",
            "digest",
        ],
    );
    digest.start();
    let url = format!("http://127.0.0.1:{}/", digest.port);
    let (body, status) = digest.curl(&["--digest", "-u", "alice:secret"], &url);
    assert!(
        status.contains("200"),
        "{status} {body}\n{}",
        digest.error_log()
    );
    assert_eq!(
        json(&body)["environ"]["AUTH_TYPE"].str(),
        "Digest",
        "{body}"
    );
    let (_, status) = digest.curl(&["--digest", "-u", "alice:wrong"], &url);
    assert!(status.contains("401"), "{status}");
    digest.stop();

    // Companions without their script, a scheme Apache has no provider hook for, a script
    // that does not exist: one clear line each.
    let app = app.to_str().unwrap();
    assert_refused(
        app,
        &[
            (vec!["--auth-type", "Digest"], "--auth-user-script"),
            (vec!["--auth-group", "staff"], "--auth-group-script"),
            (
                vec!["--auth-user-script", &users, "--auth-type", "Form"],
                "--auth-type \"Form\": expected Basic or Digest",
            ),
            (
                vec!["--host-access-script", "/nonexistent/access.py"],
                "--host-access-script",
            ),
        ],
    );
}

/// start-server --setup-only writes the server root and exits; --ignore-activity,
/// --enable-sendfile, --error-document and --error-override reach Apache and the daemon.
#[test]
fn setup_only_ignore_activity_sendfile_and_error_documents() {
    let app = app_path();
    let app = app.to_str().unwrap();
    let tmp = TempDir::new("express-setup-only");
    let root = tmp.path().join("root");
    let port = free_port().to_string();
    let out = express(&[
        "start-server",
        app,
        "--setup-only",
        "--port",
        &port,
        "--server-root",
        root.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(root.join("httpd.conf").is_file() && root.join("apachectl").is_file());
    assert!(!root.join("httpd.pid").exists(), "nothing was to start");

    let errors = TempDir::new("express-error-pages");
    fs::write(errors.path().join("404.html"), "the site's own 404 page\n").unwrap();
    let mut server = Server::setup(
        "express-server-options",
        &[
            app,
            "--inactivity-timeout",
            "2",
            "--ignore-activity",
            "/health",
            "--enable-sendfile",
            "--url-alias",
            "/errors",
            errors.path().to_str().unwrap(),
            "--error-document",
            "404",
            "/errors/404.html",
            "--error-override",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    for line in [
        "EnableSendfile On",
        "WSGIEnableSendfile On",
        "ErrorDocument 404 \"/errors/404.html\"",
        "WSGIErrorOverride On",
        "<Location \"/health\">",
    ] {
        assert!(conf.contains(line), "{line}: {conf}");
    }
    server.start();
    // A wsgi.file_wrapper response, whole.
    let file = server.get("/file");
    assert_eq!(file.status, 200, "{}", server.error_log());
    assert_eq!(file.body, fs::read(app_path()).unwrap());
    // The application's 404 is replaced by the site's error page; its 200s are not.
    let missing = server.get("/status?404");
    assert_eq!(missing.status, 404, "{}", server.error_log());
    assert_eq!(missing.text(), "the site's own 404 page\n");
    // Requests to /health do not keep the daemon from its inactivity-timeout: it is
    // replaced while they go on.
    let first = http::json(&server.get("/health"))["pid"].num();
    let started = Instant::now();
    loop {
        let pid = http::json(&server.get("/health"))["pid"].num();
        if pid != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon was not replaced after 30 s of /health requests\n{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();

    // Daemon-only and malformed values: one clear line each.
    assert_refused(
        app,
        &[
            (
                vec!["--embedded-mode", "--ignore-activity", "/health"],
                "--ignore-activity applies to the daemon process group",
            ),
            (
                vec!["--ignore-activity", "health"],
                "--ignore-activity \"health\": expected a URL path",
            ),
            (
                vec!["--error-document", "200", "/ok.html"],
                "--error-document \"200\": expected an HTTP error status",
            ),
        ],
    );
}

/// --telemetry-service with --telemetry-interval, --slow-requests and --telemetry-options:
/// the daemon reports to the ingester's Unix datagram socket.
#[test]
fn telemetry_options_send_datagrams_to_the_ingester_socket() {
    use std::os::unix::fs::PermissionsExt;
    let sockets = TempDir::new("express-telemetry");
    let path = sockets.path().join("ingester.sock");
    let ingester = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    // The daemon runs as www-data.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    ingester
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let target = format!("unix:{}", path.display());
    let app = app_path();
    let mut server = Server::setup(
        "express-telemetry",
        &[
            app.to_str().unwrap(),
            "--telemetry-service",
            &target,
            "--telemetry-interval",
            "0.5",
            "--slow-requests",
            "0.5",
            "--telemetry-options",
            "+CaptureUserAgent",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    for line in [
        format!("WSGITelemetryService \"{target}\" interval=0.5"),
        "WSGISlowRequests 0.5".to_string(),
        "WSGITelemetryOptions +CaptureUserAgent".to_string(),
    ] {
        assert!(conf.contains(&line), "{line}: {conf}");
    }
    server.start();
    assert_eq!(server.get("/").status, 200, "{}", server.error_log());
    let mut datagram = [0u8; 65536];
    let n = ingester.recv(&mut datagram).unwrap_or_else(|e| {
        panic!(
            "no telemetry datagram in 15 s ({e})\n{}",
            server.error_log()
        )
    });
    assert!(n > 0);
    server.stop();

    let app = app.to_str().unwrap();
    assert_refused(
        app,
        &[
            (vec!["--slow-requests", "1"], "--telemetry-service"),
            (
                vec!["--telemetry-service", "udp:127.0.0.1:9000"],
                "--telemetry-service \"udp:127.0.0.1:9000\": expected unix:/path",
            ),
            (
                vec![
                    "--telemetry-service",
                    &target,
                    "--telemetry-interval",
                    "0.1",
                ],
                "--telemetry-interval 0.1: expected seconds, at least 0.5",
            ),
        ],
    );
}

/// --document-root with --directory-index and --directory-listing: files there are served
/// as they are, on the plain host, a --server-name host and over HTTPS; other URLs, and
/// directories without --directory-index, go to the application with its usual SCRIPT_NAME
/// and PATH_INFO; a --url-alias keeps its own URLs.
#[test]
fn document_root_serves_its_files_and_leaves_the_rest_to_the_application() {
    let docs = TempDir::new("express-docroot");
    let root = docs.path();
    fs::create_dir_all(root.join("listed")).unwrap();
    fs::create_dir_all(root.join("indexed")).unwrap();
    fs::create_dir_all(root.join("static")).unwrap();
    fs::write(root.join("page.txt"), "a static page\n").unwrap();
    fs::write(root.join("listed/one.txt"), "1\n").unwrap();
    fs::write(root.join("indexed/index.html"), "the index\n").unwrap();
    fs::write(root.join("static/shadowed.txt"), "from the document root\n").unwrap();
    let aliased = TempDir::new("express-docroot-alias");
    fs::write(aliased.path().join("shadowed.txt"), "from the alias\n").unwrap();
    let app = app_path();
    let app = app.to_str().unwrap();
    let certs = TempDir::new("express-docroot-certs");
    let (crt, key) = self_signed(certs.path());

    let mut plain = Server::setup(
        "express-docroot",
        &[
            app,
            "--document-root",
            root.to_str().unwrap(),
            "--url-alias",
            "/static",
            aliased.path().to_str().unwrap(),
        ],
    );
    plain.start();
    assert_eq!(
        plain.get("/page.txt").text(),
        "a static page\n",
        "{}",
        plain.error_log()
    );
    assert_eq!(plain.get("/static/shadowed.txt").text(), "from the alias\n");
    for (url, script_name, path_info) in [
        ("/", "", "/"),
        ("/missing.txt", "", "/missing.txt"),
        ("/listed/", "", "/listed/"),
        ("/page.txt/more", "", "/page.txt/more"),
    ] {
        let r = plain.get(url);
        assert_eq!(r.status, 200, "{url}: {}", plain.error_log());
        let env = &http::json(&r)["environ"];
        assert_eq!(env["SCRIPT_NAME"].str(), script_name, "{url}");
        assert_eq!(env["PATH_INFO"].str(), path_info, "{url}");
    }
    plain.stop();

    // Directories with an index, or a listing; a --server-name host and HTTPS.
    let mut named = Server::setup(
        "express-docroot-named",
        &[
            app,
            "--document-root",
            root.to_str().unwrap(),
            "--directory-index",
            "index.html",
            "--directory-listing",
            "--server-name",
            "localhost",
            "--https-port",
            "HTTPS_PORT",
            "--ssl-certificate-file",
            crt.to_str().unwrap(),
            "--ssl-certificate-key-file",
            key.to_str().unwrap(),
        ],
    );
    named.start();
    let host = format!("localhost:{}", named.port);
    assert_eq!(named.get_as(&host, "/page.txt").text(), "a static page\n");
    assert_eq!(named.get_as(&host, "/indexed/").text(), "the index\n");
    let listing = named.get_as(&host, "/listed/");
    assert!(listing.text().contains("one.txt"), "{}", listing.text());
    assert_eq!(
        http::json(&named.get_as(&host, "/missing"))["environ"]["PATH_INFO"].str(),
        "/missing"
    );
    let https = format!("https://localhost:{}/page.txt", named.https_port);
    let (body, status) = named.curl(&[], &https);
    assert!(status.starts_with("200"), "{status}");
    assert_eq!(body, "a static page\n");
    named.stop();

    let out = express(&["setup-server", app, "--directory-index", "index.html"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--document-root"), "{}", text(&out));
}

/// A backend for the proxy options: answers every request with its request line and
/// headers as the body (one request per connection). Returns its port.
fn echo_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = String::new();
            let mut reader = BufReader::new(&stream);
            while reader.read_line(&mut head).map(|n| n > 2).unwrap_or(false) {}
            let body = head.replace("\r\n", "\n");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            use std::io::Write;
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// --proxy-mount-point (and --proxy-url-alias), --proxy-virtual-host and --proxy-timeout: the
/// backend gets the request with the X-Forwarded headers; the application keeps every other
/// URL and host name.
#[test]
fn proxy_options_pass_their_urls_and_hosts_to_the_backend() {
    let backend = echo_backend();
    let url = format!("http://127.0.0.1:{backend}");
    let app = app_path();
    let app = app.to_str().unwrap();
    let mut server = Server::setup(
        "express-proxy",
        &[
            app,
            "--proxy-mount-point",
            "/api",
            &url,
            "--proxy-url-alias",
            "/other/",
            &format!("{url}/elsewhere/"),
            "--proxy-virtual-host",
            "backend.test",
            &url,
            "--proxy-timeout",
            "7",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    assert!(conf.contains("ProxyTimeout 7"), "{conf}");
    server.start();
    let seen = server.get("/api/items?x=1");
    assert_eq!(seen.status, 200, "{}", server.error_log());
    let seen = seen.text();
    assert!(seen.starts_with("GET /items?x=1 HTTP/1.1\n"), "{seen}");
    for header in [
        "X-Forwarded-Prefix: /api",
        &format!("X-Forwarded-Port: {}", server.port),
        "X-Forwarded-For: 127.0.0.1",
    ] {
        assert!(seen.contains(header), "{header}: {seen}");
    }
    let other = server.get("/other/a").text();
    assert!(other.starts_with("GET /elsewhere/a HTTP/1.1\n"), "{other}");
    // The bare prefix is redirected to the prefix with a slash.
    let bare = server.get("/api");
    assert_eq!(bare.status, 302);
    assert!(
        bare.header("Location").unwrap_or("").ends_with("/api/"),
        "{:?}",
        bare.headers
    );
    let by_host = server.get_as("backend.test", "/anything").text();
    assert!(by_host.starts_with("GET /anything HTTP/1.1\n"), "{by_host}");
    // The application: other URLs, and other host names.
    for host in [
        format!("127.0.0.1:{}", server.port),
        "elsewhere.test".to_string(),
    ] {
        let r = server.get_as(&host, "/apix");
        assert_eq!(r.status, 200, "{host}: {}", server.error_log());
        assert_eq!(
            http::json(&r)["environ"]["PATH_INFO"].str(),
            "/apix",
            "{host}"
        );
    }
    server.stop();

    assert_refused(
        app,
        &[
            (
                vec!["--proxy-timeout", "5"],
                "--proxy-timeout needs --proxy-mount-point",
            ),
            (
                vec!["--proxy-mount-point", "/api", "ftp://x/"],
                "--proxy-mount-point \"ftp://x/\": expected an http://",
            ),
            (
                vec!["--proxy-mount-point", "api", "http://x/"],
                "--proxy-mount-point \"api\": expected a URL path",
            ),
        ],
    );
}

/// --service-script with --service-user: the service runs as that user in its own daemon
/// process, and stops with Apache. --free-threading, --mime-types, --shell-executable,
/// --httpd-executable and --modules-directory reach Apache.
#[test]
fn service_scripts_and_apache_installation_options() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("express-service");
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let script = tmp.path().join("service.py");
    fs::write(
        &script,
        format!(
            "import os, time\n\
             with open({:?}, 'w') as f:\n    f.write('%d %d' % (os.getpid(), os.getuid()))\n\
             while True:\n    time.sleep(0.2)\n",
            out_dir.join("ran").display().to_string()
        ),
    )
    .unwrap();
    // The modules, seen through a directory of links; Apache through a wrapper that says it
    // ran; a MIME type of our own.
    let modules = tmp.path().join("modules");
    fs::create_dir(&modules).unwrap();
    for entry in fs::read_dir("/usr/lib/apache2/modules").unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), modules.join(entry.file_name())).unwrap();
    }
    let wrapper = tmp.path().join("httpd-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntouch {:?}\nexec /usr/sbin/apache2 \"$@\"\n",
            tmp.path().join("wrapper-ran").display().to_string()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let mime = tmp.path().join("mime.types");
    fs::write(
        &mime,
        "application/x-rwsgi-test\trwsgitest\ntext/plain\ttxt\n",
    )
    .unwrap();
    let files = tmp.path().join("files");
    fs::create_dir(&files).unwrap();
    fs::write(files.join("a.rwsgitest"), "typed\n").unwrap();

    let app = app_path();
    let mut server = Server::setup(
        "express-service",
        &[
            app.to_str().unwrap(),
            "--service-script",
            "worker",
            script.to_str().unwrap(),
            "--service-user",
            "worker",
            "nobody",
            "--free-threading",
            "--mime-types",
            mime.to_str().unwrap(),
            "--shell-executable",
            "/bin/bash",
            "--httpd-executable",
            wrapper.to_str().unwrap(),
            "--modules-directory",
            modules.to_str().unwrap(),
            "--url-alias",
            "/files",
            files.to_str().unwrap(),
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    assert!(conf.contains("WSGIFreeThreading On"), "{conf}");
    assert!(
        conf.contains(&format!(
            "Define MOD_WSGI_MODULES_DIRECTORY \"{}\"",
            modules.display()
        )),
        "{conf}"
    );
    let ctl = fs::read_to_string(server.root.join("apachectl")).unwrap();
    assert!(ctl.starts_with("#!/bin/bash\n"), "{ctl}");
    let check = server.ctl("configtest");
    assert!(check.status.success(), "{}", text(&check));
    assert_eq!(
        text(&check).contains("WSGIFreeThreading On has no effect"),
        !common::module_python_is_free_threaded(),
        "{}",
        text(&check)
    );
    server.start();
    assert!(
        tmp.path().join("wrapper-ran").exists(),
        "--httpd-executable not used"
    );
    let typed = server.get("/files/a.rwsgitest");
    assert_eq!(
        typed.header("Content-Type"),
        Some("application/x-rwsgi-test")
    );
    // The service: its own process, as nobody.
    let ran = out_dir.join("ran");
    let started = Instant::now();
    while !ran.exists() || fs::read_to_string(&ran).unwrap().split(' ').count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the service did not run in 20 s\n{}",
            server.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran = fs::read_to_string(&ran).unwrap();
    let (pid, uid) = ran.split_once(' ').unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(uid, nobody.uid.to_string(), "{ran}");
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("service:worker"), "{cmdline:?}");
    assert_eq!(server.get("/").status, 200, "{}", server.error_log());
    server.stop();
    assert!(!alive(pid.parse().unwrap()), "the service outlived Apache");

    let app = app.to_str().unwrap();
    let script = script.to_str().unwrap();
    let not_executable = mime.to_str().unwrap();
    let not_executable_error =
        format!("--httpd-executable {not_executable}: not an executable file");
    assert_refused(
        app,
        &[
            (
                vec!["--service-user", "worker", "nobody"],
                "--service-user worker: no --service-script worker",
            ),
            (
                vec!["--service-script", "bad name", script],
                "--service-script \"bad name\": a service name is",
            ),
            (
                vec![
                    "--service-script",
                    "w",
                    script,
                    "--service-user",
                    "w",
                    "no-such-user-x",
                ],
                "--service-user w no-such-user-x: no such user",
            ),
            (
                vec!["--httpd-executable", not_executable],
                not_executable_error.as_str(),
            ),
            (
                vec!["--mime-types", "/nonexistent/mime.types"],
                "--mime-types",
            ),
        ],
    );
}

/// --initial-workers, --minimum-spare-workers and --maximum-spare-workers size the Apache
/// children in front of the daemon as fractions of the most it may run, as in
/// mod_wsgi-express; embedded mode, whose children are exactly --processes, refuses them.
#[test]
fn worker_fractions_size_the_apache_children() {
    let app = app_path();
    let app = app.to_str().unwrap();
    // 100 clients: 7 children of 16 threads.
    let mut server = Server::setup(
        "express-workers",
        &[
            app,
            "--max-clients",
            "100",
            "--initial-workers",
            "0.5",
            "--minimum-spare-workers",
            "0.3",
            "--maximum-spare-workers",
            "1",
        ],
    );
    let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
    for line in [
        "ServerLimit 7",
        "ThreadsPerChild 16",
        "StartServers 3",
        "MinSpareThreads 32",
        "MaxSpareThreads 112",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line}: {conf}");
    }
    server.start();
    assert_eq!(server.get("/").status, 200, "{}", server.error_log());
    server.stop();
    // Without them, mod_wsgi-express's defaults (0.2, 0.2, 0.6).
    let plain = Server::setup("express-workers-default", &[app, "--max-clients", "100"]);
    let conf = fs::read_to_string(plain.root.join("httpd.conf")).unwrap();
    for line in ["StartServers 1", "MinSpareThreads 16", "MaxSpareThreads 64"] {
        assert!(conf.lines().any(|l| l == line), "{line}: {conf}");
    }
    assert_refused(
        app,
        &[
            (
                vec!["--initial-workers", "1.5"],
                "--initial-workers 1.5: expected a fraction",
            ),
            (
                vec!["--embedded-mode", "--maximum-spare-workers", "0.5"],
                "--maximum-spare-workers applies to the daemon process group",
            ),
        ],
    );
}

/// --process-name through apachectl (run by bash, for `exec -a`); a shell without it is
/// refused.
#[test]
fn apachectl_names_apache_after_process_name() {
    let app = app_path();
    let app = app.to_str().unwrap();
    let mut server = Server::setup(
        "express-process-name",
        &[app, "--process-name", "rwsgi-ctl-site"],
    );
    let ctl = fs::read_to_string(server.root.join("apachectl")).unwrap();
    assert!(ctl.starts_with("#!/bin/bash\n"), "{ctl}");
    server.start();
    let apache = server.apache_pid();
    let cmdline = fs::read(format!("/proc/{apache}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.starts_with(b"rwsgi-ctl-site\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(server.get("/").status, 200, "{}", server.error_log());
    server.stop();
    let out = express(&[
        "setup-server",
        app,
        "--process-name",
        "x",
        "--shell-executable",
        "/bin/sh",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--process-name needs a shell with `exec -a`"),
        "{}",
        text(&out)
    );
}

/// --server-mpm: the application is served with the prefork MPM (one connection per child,
/// sized from mod_wsgi-express's fractions) and the worker MPM; the first installed of several
/// wins; embedded mode refuses prefork.
#[test]
fn server_mpm_picks_the_apache_mpm() {
    let app = app_path();
    let app = app.to_str().unwrap();
    for (args, module, sizing) in [
        (
            vec!["--server-mpm", "prefork", "--max-clients", "40"],
            "mpm_prefork_module",
            vec![
                "ServerLimit 40",
                "StartServers 2",
                "MinSpareServers 2",
                "MaxSpareServers 4",
            ],
        ),
        (
            vec!["--server-mpm", "worker"],
            "mpm_worker_module",
            vec!["ThreadsPerChild 10"],
        ),
    ] {
        let mut all = vec![app];
        all.extend(&args);
        let mut server = Server::setup("express-mpm", &all);
        let conf = fs::read_to_string(server.root.join("httpd.conf")).unwrap();
        assert!(
            conf.contains(&format!("LoadModule {module} ")),
            "{args:?}: {conf}"
        );
        for line in sizing {
            assert!(conf.lines().any(|l| l == line), "{args:?} {line}: {conf}");
        }
        server.start();
        for _ in 0..5 {
            assert_eq!(
                server.get("/").status,
                200,
                "{args:?}: {}",
                server.error_log()
            );
        }
        server.stop();
    }
    assert_refused(
        app,
        &[
            (
                vec!["--server-mpm", "threaded"],
                "--server-mpm \"threaded\": expected event, worker or prefork",
            ),
            (
                vec!["--embedded-mode", "--server-mpm", "prefork"],
                "--server-mpm prefork: --embedded-mode",
            ),
        ],
    );
}
