//! rwsgi-express end to end: the built binary writes a server root and runs the real
//! /usr/sbin/apache2 with build/mod_rwsgi.so; requests go over 127.0.0.1.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TempDir, free_port, http, module_path, repo_dir};

const EXPRESS: &str = env!("CARGO_BIN_EXE_rwsgi-express");

fn express() -> Command {
    let mut cmd = Command::new(EXPRESS);
    cmd.stdin(Stdio::null());
    cmd
}

/// A running `rwsgi-express start-server`, its output collected by two threads.
struct Express {
    child: Option<Child>,
    root: PathBuf,
    port: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The two collecting threads: finished once both pipes reached end of file.
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Express {
    /// Starts `start-server` with `args` on a free port, server root `root`, the module under
    /// test, and waits (bounded) until it says it is serving.
    fn start(root: &Path, args: &[&str]) -> Express {
        Express::start_on(Some(root), free_port(), args)
    }

    /// As [`Express::start`] on `port`; with no `root`, rwsgi-express picks its default
    /// ([`default_root`]).
    fn start_on(root: Option<&Path>, port: u16, args: &[&str]) -> Express {
        let mut cmd = express();
        cmd.arg("start-server").args(args).args([
            "--port",
            &port.to_string(),
            "--log-level",
            "info",
        ]);
        if let Some(root) = root {
            cmd.arg("--server-root").arg(root);
        }
        let root = root.map_or_else(|| default_root(port), Path::to_path_buf);
        let mut child = cmd
            .arg("--module")
            .arg(module_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rwsgi-express");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let mut ex = Express {
            child: Some(child),
            root,
            port,
            stdout,
            stderr,
            readers,
        };
        let start = Instant::now();
        while !ex.out().contains("Serving http://") {
            if let Some(status) = ex.child.as_mut().unwrap().try_wait().unwrap() {
                ex.wait_for_readers();
                ex.child = None;
                panic!(
                    "rwsgi-express exited ({status}) before serving:\n{}",
                    ex.report()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rwsgi-express did not serve within 30 s:\n{}",
                ex.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ex
    }

    /// Waits (bounded) until the collecting threads have read all output: both pipes are at
    /// end of file once rwsgi-express and every process that inherited them exited.
    fn wait_for_readers(&self) {
        let start = Instant::now();
        while !self.readers.iter().all(|r| r.is_finished()) {
            if start.elapsed() > Duration::from_secs(10) {
                eprintln!("rwsgi-express output still open 10 s after it exited");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn out(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
    fn err(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
    fn report(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}--- error log ---\n{}",
            self.out(),
            self.err(),
            fs::read_to_string(self.root.join("error_log")).unwrap_or_default()
        )
    }

    /// The Apache parent's PID, from the "Serving ... (mod_rwsgi, Apache pid N, ...)" line.
    fn apache_pid(&self) -> i32 {
        let out = self.out();
        let at = out.find("Apache pid ").expect("pid in the Serving line") + 11;
        out[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> http::Response {
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("Content-Type", "application/x-www-form-urlencoded")]
        } else {
            &[]
        };
        http::request(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.report()))
    }

    /// SIGTERM to rwsgi-express (as from `kill`), then waits for it (bounded).
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the PID of the child this handle started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.wait_for_readers();
                return status;
            }
            if start.elapsed() > Duration::from_secs(25) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rwsgi-express did not exit within 25 s of SIGTERM\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Express {
    fn drop(&mut self) {
        if self.child.is_some() {
            let pid = self.apache_pid_if_known();
            self.terminate();
            // Should it have failed to stop Apache, do not leave it running.
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the Apache parent this test started (own group).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

impl Express {
    fn apache_pid_if_known(&self) -> Option<i32> {
        self.out()
            .contains("Apache pid ")
            .then(|| self.apache_pid())
    }
}

/// Processes whose command line mentions `needle` (Apache runs as `apache2 -f ROOT/...`).
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Is `pid` a live (non-zombie) process?
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        })
        .unwrap_or(false)
}

fn sockets(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of the server in `root` is left: no Apache with its config, none of `pids`
/// (daemons rename themselves, so they are checked by PID), no socket.
fn assert_nothing_left(root: &Path, pids: &[i32]) {
    let start = Instant::now();
    loop {
        let procs = processes_mentioning(&root.display().to_string());
        let live: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        let socks = sockets(&root.join("run"));
        if procs.is_empty() && live.is_empty() && socks.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "left behind: processes {procs:?}, pids {live:?}, sockets {socks:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of the element with id `id` in the example's /process page.
fn cell(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {id} in {html}"))
        + marker.len();
    html[at..].split('<').next().unwrap().to_string()
}

#[test]
fn start_server_serves_page_static_and_post_then_stops_cleanly() {
    let tmp = TempDir::new("express-start");
    let root = tmp.path().join("server");
    let hello = repo_dir().join("examples/hello");
    let mut ex = Express::start(
        &root,
        &[
            hello.join("app.wsgi").to_str().unwrap(),
            "--url-alias",
            "/static",
            hello.join("static").to_str().unwrap(),
            "--access-log",
        ],
    );
    assert!(
        ex.out().contains(&format!(
            "Serving http://127.0.0.1:{}/ (mod_rwsgi, Apache pid ",
            ex.port
        )),
        "{}",
        ex.report()
    );
    let apache = ex.apache_pid();

    let page = ex.request("GET", "/", b"");
    assert_eq!(page.status, 200, "{}", ex.report());
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("Hello, mod_rwsgi"), "{}", page.text());
    assert!(page.text().contains("href=\"/static/style.css\""));

    let css = ex.request("GET", "/static/style.css", b"");
    assert_eq!(css.status, 200, "{}", ex.report());
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert_eq!(css.body, fs::read(hello.join("static/style.css")).unwrap());

    let posted = ex.request(
        "POST",
        "/form",
        b"name=%3Cb%3EAda%3C%2Fb%3E&message=x+%26+y",
    );
    assert_eq!(posted.status, 200, "{}", ex.report());
    let text = posted.text();
    assert!(
        text.contains("<td>&lt;b&gt;Ada&lt;/b&gt;</td>") && text.contains("<td>x &amp; y</td>"),
        "posted values must be shown HTML-escaped: {text}"
    );
    assert!(!text.contains("<b>Ada"), "{text}");

    let process = ex.request("GET", "/process", b"").text();
    assert_eq!(
        cell(&process, "process-group"),
        format!("localhost:{}", ex.port)
    );
    let daemon: i32 = cell(&process, "pid").parse().unwrap();
    assert_ne!(daemon, apache);
    assert!(cell(&process, "thread").parse::<u64>().is_ok());

    assert_eq!(ex.request("GET", "/nope", b"").status, 404);
    // Apache writes a request's access-log line after its response has reached the client:
    // wait for it rather than read the log at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let access = fs::read_to_string(root.join("access_log")).unwrap_or_default();
        if access.contains("\"POST /form HTTP/1.1\" 200") || Instant::now() > deadline {
            break access;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(access.contains("\"POST /form HTTP/1.1\" 200"), "{access}");

    let status = ex.terminate();
    assert!(status.success(), "exit {status}\n{}", ex.report());
    assert!(
        ex.out().contains("no process or socket left"),
        "{}",
        ex.report()
    );
    assert_nothing_left(&root, &[apache, daemon]);
}

#[test]
fn unreadable_app_is_served_from_a_copy_and_reloads_on_changes() {
    let tmp = TempDir::new("express-reload");
    // A private directory: as root, www-data cannot read it, so the app is copied.
    let private = tmp.path().join("private");
    let app_dir = private.join("app");
    fs::create_dir_all(&app_dir).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(app_dir.join("helper.py"), "VALUE = 'one'\n").unwrap();
    fs::write(
        app_dir.join("app.wsgi"),
        "import os, helper\n\
         def application(environ, start_response):\n\
         \x20   body = ('%s %d' % (helper.VALUE, os.getpid())).encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [body]\n",
    )
    .unwrap();
    let root = tmp.path().join("server");
    let mut ex = Express::start(
        &root,
        &[
            app_dir.join("app.wsgi").to_str().unwrap(),
            "--reload-on-changes",
            "--threads",
            "2",
        ],
    );
    let is_root = nix::unistd::Uid::effective().is_root();
    let served_dir = if is_root {
        assert!(
            ex.err().contains("cannot read") && ex.err().contains("serving a copy"),
            "{}",
            ex.report()
        );
        root.join("app")
    } else {
        app_dir.clone()
    };
    let first = ex.request("GET", "/", b"").text();
    assert!(first.starts_with("one "), "{first}\n{}", ex.report());
    let first_pid: i32 = first[4..].parse().unwrap();

    // Change a module the app imported (not the script): the monitor restarts the daemon.
    // The monitor notes a module's mtime on its first pass (once a second) after the import,
    // which the test cannot see: until the new version is served, each poll sets a new mtime,
    // so one of them lands after that pass whenever it was.
    let helper = served_dir.join("helper.py");
    fs::write(&helper, "VALUE = 'two'\n").unwrap();
    let ahead = std::time::SystemTime::now() + Duration::from_secs(2);
    let start = Instant::now();
    let mut polls = 0u64;
    let second = loop {
        polls += 1;
        fs::File::options()
            .write(true)
            .open(&helper)
            .unwrap()
            .set_modified(ahead + Duration::from_millis(10 * polls))
            .unwrap();
        let resp = http::request(ex.port, "GET", "/", &[], b"");
        if let Ok(r) = resp {
            if r.text().starts_with("two ") {
                break r.text();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "helper.py change not picked up within 15 s\n{}",
            ex.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let second_pid: i32 = second[4..].parse().unwrap();
    assert_ne!(
        first_pid, second_pid,
        "a new daemon process serves the change"
    );
    let log = fs::read_to_string(root.join("error_log")).unwrap();
    assert!(
        log.contains("helper.py changed; restarting daemon process"),
        "{log}"
    );

    let apache = ex.apache_pid();
    assert!(ex.terminate().success(), "{}", ex.report());
    assert_nothing_left(&root, &[apache, first_pid, second_pid]);
}

#[test]
fn setup_server_writes_a_config_that_passes_configtest_and_serves() {
    let tmp = TempDir::new("express-setup");
    let root = tmp.path().join("server");
    let port = free_port();
    let hello = repo_dir().join("examples/hello");
    let out = express()
        .arg("setup-server")
        .arg(hello.join("app.wsgi"))
        .args(["--url-alias", "/static"])
        .arg(hello.join("static"))
        .args(["--port", &port.to_string(), "--mount-point", "/hello/"])
        .arg("--server-root")
        .arg(&root)
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}/hello/")),
        "{stdout}"
    );
    assert!(stdout.contains("apachectl start|stop"), "{stdout}");

    let ctl = root.join("apachectl");
    let test = Command::new(&ctl).arg("configtest").output().unwrap();
    assert!(
        test.status.success() && String::from_utf8_lossy(&test.stderr).contains("Syntax OK"),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // Run it as an operator would, in the foreground, in its own process group.
    use std::os::unix::process::CommandExt;
    let mut apache = Command::new(common::APACHE_BIN)
        .arg("-f")
        .arg(root.join("httpd.conf"))
        .arg("-DFOREGROUND")
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log = || fs::read_to_string(root.join("error_log")).unwrap_or_default();
    let start = Instant::now();
    let page = loop {
        if let Ok(r) = http::request(port, "GET", "/hello/", &[], b"") {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not serving:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let css = http::request(port, "GET", "/static/style.css", &[], b"").unwrap();
    // SAFETY: kill(2) on the Apache parent this test started.
    unsafe {
        libc::kill(apache.id() as i32, libc::SIGTERM);
    }
    let stopped = Instant::now();
    while apache.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(15) {
            let _ = apache.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = apache.wait();
    assert_eq!(page.status, 200, "{}", log());
    assert!(
        page.text().contains("href=\"/hello/form\""),
        "{}",
        page.text()
    );
    assert_eq!(css.status, 200, "{}", log());
    assert_nothing_left(&root, &[]);
}

#[test]
fn module_config_lines_load_into_a_system_style_config() {
    let out = express()
        .arg("module-config")
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(lines.starts_with("LoadModule rwsgi_module /"), "{lines}");
    let config = common::ApacheConfig::new("express-modcfg")
        .without_rwsgi()
        .conf(&lines)
        .conf("WSGIDaemonProcess probe threads=1\n");
    let (ok, text) = config.configtest();
    assert!(ok, "{lines}\n{text}");
}

/// Runs `start-server` expecting failure: (exit code, stderr lines).
fn start_failure(args: &[&str], port: u16, root: &Path) -> (Option<i32>, Vec<String>) {
    let out = express()
        .arg("start-server")
        .args(args)
        .args(["--port", &port.to_string()])
        .arg("--server-root")
        .arg(root)
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr.lines().map(str::to_string).collect();
    (out.status.code(), lines)
}

#[test]
fn missing_script_is_one_clear_line_and_exit_1() {
    let tmp = TempDir::new("express-missing");
    let missing = tmp.path().join("nope/app.wsgi");
    let (code, lines) = start_failure(
        &[missing.to_str().unwrap()],
        free_port(),
        &tmp.path().join("s"),
    );
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(missing.to_str().unwrap()) && lines[0].contains("no such file"),
        "{lines:?}"
    );
}

#[test]
fn busy_port_is_one_clear_line_and_exit_1() {
    let tmp = TempDir::new("express-busy");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = repo_dir().join("examples/hello/app.wsgi");
    let (code, lines) = start_failure(&[app.to_str().unwrap()], port, &tmp.path().join("s"));
    drop(listener);
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("port {port}")) && lines[0].contains("in use"),
        "{lines:?}"
    );
}

/// start-server with mod_wsgi-express's HTTPS and HTTP/2 options and --startup-log: both
/// URLs served (curl, h2 over TLS with a throwaway certificate), then a clean stop.
#[test]
fn start_server_serves_https_and_http2_then_stops_cleanly() {
    let tmp = TempDir::new("express-start-tls");
    let (crt, key) = (tmp.path().join("t.crt"), tmp.path().join("t.key"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (make test installs it)");
    assert!(made.status.success());
    let https_port = free_port();
    let root = tmp.path().join("server");
    let app = repo_dir().join("examples/hello/app.wsgi");
    let https = https_port.to_string();
    let mut ex = Express::start(
        &root,
        &[
            app.to_str().unwrap(),
            "--https-port",
            &https,
            "--ssl-certificate-file",
            crt.to_str().unwrap(),
            "--ssl-certificate-key-file",
            key.to_str().unwrap(),
            "--http2",
            "--startup-log",
        ],
    );
    assert!(
        ex.out()
            .contains(&format!("Serving https://127.0.0.1:{https_port}/ too")),
        "{}",
        ex.report()
    );
    let apache = ex.apache_pid();
    let curl = Command::new("curl")
        .args(["-sS", "-k", "--http2", "--max-time", "20"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("https://127.0.0.1:{https_port}/"))
        .output()
        .expect("curl (make test installs it)");
    let out = String::from_utf8_lossy(&curl.stdout);
    assert!(out.contains("Hello, mod_rwsgi"), "{out}\n{}", ex.report());
    assert!(out.ends_with("\n200 2"), "{out}");
    assert_eq!(ex.request("GET", "/", b"").status, 200);
    assert!(root.join("startup_log").is_file(), "{}", ex.report());
    let status = ex.terminate();
    assert!(status.success(), "exit {status}\n{}", ex.report());
    assert_nothing_left(&root, &[apache]);
}

/// start-server sources --envvars-script before Apache starts, as apachectl does.
#[test]
fn start_server_sources_the_envvars_script() {
    let tmp = TempDir::new("express-start-envvars");
    let envvars = tmp.path().join("envvars.sh");
    fs::write(
        &envvars,
        "FROM_ENVVARS='start-server'\nexport FROM_ENVVARS\n",
    )
    .unwrap();
    let root = tmp.path().join("server");
    let app = repo_dir().join("tests/apps/express_app.py");
    let mut ex = Express::start(
        &root,
        &[
            app.to_str().unwrap(),
            "--envvars-script",
            envvars.to_str().unwrap(),
            "--passenv",
            "FROM_ENVVARS",
        ],
    );
    let apache = ex.apache_pid();
    let info = http::json(&ex.request("GET", "/", b""));
    assert_eq!(info["environ"]["FROM_ENVVARS"], "start-server");
    assert!(ex.terminate().success(), "{}", ex.report());
    assert_nothing_left(&root, &[apache]);
}

/// The server root rwsgi-express picks for `port` without --server-root.
fn default_root(port: u16) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    PathBuf::from(format!("/tmp/rwsgi-express-127.0.0.1:{port}-{uid}"))
}

/// Removes a default server root (a directory, or whatever was put in its place) on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => drop(fs::remove_dir_all(&self.0)),
            Ok(_) => drop(fs::remove_file(&self.0)),
            Err(_) => {}
        }
    }
}

/// `setup-server` on `port` with the default server root: (exit code, stderr).
fn setup_with_default_root(port: u16) -> (Option<i32>, String) {
    let app = repo_dir().join("examples/hello/app.wsgi");
    let out = express()
        .arg("setup-server")
        .arg(app)
        .args(["--port", &port.to_string()])
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 29: the default server root has a predictable name under /tmp. A symbolic link
/// put there first (by anyone) is refused, and nothing is written where it points.
#[test]
fn default_server_root_that_is_a_symlink_is_refused() {
    let tmp = TempDir::new("express-root-link");
    let port = free_port();
    let root = default_root(port);
    let _cleanup = RemoveOnDrop(root.clone());
    std::os::unix::fs::symlink(tmp.path(), &root).unwrap();
    let (code, stderr) = setup_with_default_root(port);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&root.display().to_string())
            && stderr.contains("symbolic link")
            && stderr.contains("--server-root"),
        "{stderr}"
    );
    assert!(!tmp.path().join("httpd.conf").exists(), "{stderr}");
    assert!(!tmp.path().join("apachectl").exists(), "{stderr}");
}

/// Issue 29: a default server root another user made first is refused (the message names
/// its owner), so root's httpd.conf and apachectl are not written where `nobody` could
/// change them.
#[test]
fn default_server_root_owned_by_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving a directory to nobody needs root");
        return;
    }
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
        .trim()
        .parse()
        .expect("a user nobody");
    let port = free_port();
    let root = default_root(port);
    let _cleanup = RemoveOnDrop(root.clone());
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&root, Some(uid), None).unwrap();
    let (code, stderr) = setup_with_default_root(port);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&root.display().to_string())
            && stderr.contains("belongs to user nobody")
            && stderr.contains("--server-root"),
        "{stderr}"
    );
    assert!(!root.join("httpd.conf").exists(), "{stderr}");
    assert!(!root.join("apachectl").exists(), "{stderr}");
}

/// The default server root, fresh: made by rwsgi-express as the caller's with a private mode
/// (0755 for root, whose daemons run as www-data and read in it; 0700 otherwise), and the
/// server serves from it.
#[test]
fn default_server_root_is_created_private_and_serves() {
    use std::os::unix::fs::MetadataExt;
    let port = free_port();
    let root = default_root(port);
    let _cleanup = RemoveOnDrop(root.clone());
    let app = repo_dir().join("examples/hello/app.wsgi");
    let mut ex = Express::start_on(None, port, &[app.to_str().unwrap()]);
    let meta = fs::symlink_metadata(&root).unwrap();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mode = if me == 0 { 0o755 } else { 0o700 };
    assert!(meta.is_dir() && meta.uid() == me, "{}", ex.report());
    assert_eq!(meta.mode() & 0o7777, mode, "{}", ex.report());
    assert_eq!(ex.request("GET", "/", b"").status, 200, "{}", ex.report());
    let apache = ex.apache_pid();
    assert!(ex.terminate().success(), "{}", ex.report());
    assert_nothing_left(&root, &[apache]);
}

/// --process-name: Apache's processes show that name, whether start-server runs Apache
/// itself or through --envvars-script (then with bash's `exec -a`).
#[test]
fn start_server_names_apache_after_process_name() {
    let tmp = TempDir::new("express-process-name");
    let envvars = tmp.path().join("envvars.sh");
    fs::write(&envvars, "FROM_ENVVARS=1\nexport FROM_ENVVARS\n").unwrap();
    let app = repo_dir().join("tests/apps/express_app.py");
    for with_envvars in [false, true] {
        let root = tmp.path().join(format!("server-{with_envvars}"));
        let mut args = vec![app.to_str().unwrap(), "--process-name", "rwsgi-named-site"];
        if with_envvars {
            args.extend(["--envvars-script", envvars.to_str().unwrap()]);
        }
        let mut ex = Express::start(&root, &args);
        let apache = ex.apache_pid();
        let cmdline = fs::read(format!("/proc/{apache}/cmdline")).unwrap_or_default();
        assert!(
            cmdline.starts_with(b"rwsgi-named-site\0"),
            "envvars {with_envvars}: {:?}\n{}",
            String::from_utf8_lossy(&cmdline),
            ex.report()
        );
        assert_eq!(ex.request("GET", "/", b"").status, 200, "{}", ex.report());
        assert!(ex.terminate().success(), "{}", ex.report());
        assert_nothing_left(&root, &[apache]);
    }
}
