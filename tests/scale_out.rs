//! Scale-out, where the Webware deployment guide's "Caveats of Multiprocessing Mode" leads:
//! three backend hosts, each its own network namespace running its own Apache + mod_rwsgi
//! (conf-examples/06-balancer-backend.conf, processes=2) serving a `webware make` working
//! dir whose sessions live in one Redis server (Debian's redis-server, in a namespace of its
//! own, with an append-only file), and a front Apache with mod_proxy_balancer
//! (conf-examples/05-balancer-front.conf) in another namespace. Namespaces are joined by
//! veth pairs to a bridge inside the front's namespace; addresses exist only in there
//! (10.231.0.0/24) and on loopback. The client is the test, in threads that entered the
//! front's namespace, talking to the front on its loopback.
//!
//! Shown: a logged-in session's counter keeps counting across requests spread over every
//! backend; backends believe X-Forwarded-For only from the front; a backend killed (kill -9 of its whole Apache tree) under load costs at most the
//! requests in flight on it and no session value, and once started again the health check
//! puts it back; a backend drained through the balancer-manager form costs nothing; Redis
//! restarted keeps every session.
//! Skipped, saying so, only where network namespaces cannot be made (not root, no netns).

mod common;

use std::fs;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http::{self, Response, hidden_field};
use common::{ApacheConfig, TempDir, set_cookie, test_venv};

const FRONT_ADDR: &str = "10.231.0.1";
const REDIS_ADDR: &str = "10.231.0.20";
const BACKENDS: usize = 3;
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The counter page of Webware's Examples context: login required (alice/alice), a
/// counter in the session.
const PAGE: &str = "/Examples/SecureCountVisits";
const LOGGED_IN: &str = "Authenticated user is <strong>alice</strong>";

fn backend_addr(i: usize) -> String {
    format!("10.231.0.{}", 11 + i)
}

fn backend_url(i: usize) -> String {
    format!("http://{}", backend_addr(i))
}

/// Runs `ip ARGS`; Err(its output) when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The namespaces, veths and bridge of one test run; all deleted on drop (deleting a
/// namespace deletes the interfaces in it).
struct Network {
    prefix: String,
    namespaces: Vec<String>,
}

impl Network {
    /// Makes the front's namespace with the bridge, and one namespace per host in `hosts`
    /// (tag, address) with a veth to the bridge. Err only when the first namespace cannot
    /// be made (the test is then skipped); later failures panic.
    fn create(hosts: &[(String, String)]) -> Result<Network, String> {
        Self::remove_stale();
        let mut net = Network {
            prefix: format!("rwsgi-scale-{}", std::process::id()),
            namespaces: Vec::new(),
        };
        let front = net.ns("front");
        ip(&["netns", "add", &front])?;
        net.namespaces.push(front.clone());
        let must = |args: &[&str]| ip(args).unwrap_or_else(|e| panic!("{e}"));
        must(&["-n", &front, "link", "set", "lo", "up"]);
        must(&["-n", &front, "link", "add", "br0", "type", "bridge"]);
        must(&[
            "-n",
            &front,
            "addr",
            "add",
            &format!("{FRONT_ADDR}/24"),
            "dev",
            "br0",
        ]);
        must(&["-n", &front, "link", "set", "br0", "up"]);
        for (tag, addr) in hosts {
            let ns = net.ns(tag);
            must(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = format!("v-{tag}");
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            must(&[
                "-n", &front, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            must(&["-n", &front, "link", "set", &veth, "master", "br0"]);
            must(&["-n", &front, "link", "set", &veth, "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            must(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        Ok(net)
    }

    fn ns(&self, tag: &str) -> String {
        format!("{}-{tag}", self.prefix)
    }

    /// Namespaces left by an earlier run of this test that was killed before its clean-up
    /// (their test process is gone).
    fn remove_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("rwsgi-scale-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    /// PIDs still running in namespace `ns`.
    fn pids(ns: &str) -> String {
        Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("scale_out: {e}");
            }
        }
    }
}

/// Directories removed on drop, also when the test fails (the harness's TempDir keeps
/// them then; here every log was printed before).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Makes the calling thread's network namespace `ns` (sockets it opens stay there).
fn enter_ns(ns: &str) {
    let file = fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open namespace {ns}: {e}"));
    // SAFETY: setns(2) with a namespace fd we hold open; CLONE_NEWNET changes only this
    // thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", io::Error::last_os_error());
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_ns(&ns);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// One request to `addr:port` (from the calling thread's namespace).
fn request_at(addr: &str, port: u16, raw: &str) -> io::Result<Response> {
    let stream = TcpStream::connect((addr, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    (&stream).write_all(raw.as_bytes())?;
    http::read_response(io::BufReader::new(stream), false)
}

/// A process started in a namespace with `ip netns exec` (which execs it: the child's PID
/// is the program's), in its own process group. Stopped by PID on drop.
struct NsProcess {
    what: String,
    child: Option<Child>,
    /// Logs printed when the test fails.
    logs: Vec<PathBuf>,
}

impl NsProcess {
    fn spawn(what: &str, ns: &str, program: &str, args: &[&str], dir: &Path) -> NsProcess {
        let stderr = fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        NsProcess {
            what: what.to_string(),
            child: Some(child),
            logs: vec![dir.join("stderr.log")],
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) until `file` contains `what`, failing early if the process exits.
    fn wait_for(&mut self, file: &Path, what: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let text = fs::read_to_string(file).unwrap_or_default();
            if text.contains(what) {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before {file:?} showed {what:?}",
                    self.what
                );
            }
            assert!(
                start.elapsed() < limit,
                "{}: {file:?} did not show {what:?} within {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, waits up to 15 s, then SIGKILL; anything left in its process group gets
    /// SIGKILL too.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: kill(2) on the PID of the child this handle started (not yet reaped).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(pid);
    }

    /// kill -9 of the whole tree: every descendant of the process (found in /proc before
    /// any signal), then its process group; waits until all are gone.
    fn kill_tree(&mut self) -> Vec<i32> {
        let Some(mut child) = self.child.take() else {
            return Vec::new();
        };
        let root = child.id() as i32;
        let tree: Vec<i32> = common::process_tree(child.id())
            .into_iter()
            .map(|pid| pid as i32)
            .collect();
        for &pid in &tree {
            // SAFETY: kill(2) on our child and its descendants, just listed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        kill_group(root);
        let _ = child.wait();
        let start = Instant::now();
        while tree.iter().any(|&pid| alive(pid)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{}: processes {tree:?} survived SIGKILL",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        tree
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            for log in &self.logs {
                eprintln!(
                    "--- {} {} ---\n{}",
                    self.what,
                    log.display(),
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

/// SIGKILL to what is left of process group `pgid` (none of it is the test's).
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative PID: the process group our child led.
    unsafe {
        if libc::kill(-pgid, 0) == 0 {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (at most 5 s) until namespace `ns` has no established TCP connection to `addr`.
fn wait_no_connections(ns: &str, addr: &str) {
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "ss",
                "-Htn",
                "state",
                "established",
                "dst",
                addr,
            ])
            .output()
            .expect("run ss");
        let open = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "ss in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if open.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "connections to {addr} still open in {ns}:\n{open}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An Apache in a namespace, with the harness's generated configuration.
struct NsApache {
    config: ApacheConfig,
    process: NsProcess,
}

impl NsApache {
    /// Starts it and waits until it answers on its loopback port inside `ns`.
    fn start(what: &str, ns: &str, config: ApacheConfig) -> NsApache {
        config.write();
        let process = Self::spawn(what, ns, &config);
        NsApache { config, process }
    }

    /// Starts it again (after a kill) with the same configuration; the old error log
    /// moves aside.
    fn restart(&mut self, what: &str, ns: &str) {
        let log = self.config.error_log_path();
        fs::rename(&log, log.with_extension("log.killed")).unwrap();
        self.process = Self::spawn(what, ns, &self.config);
    }

    fn spawn(what: &str, ns: &str, config: &ApacheConfig) -> NsProcess {
        let conf = config.conf_path();
        let mut process = NsProcess::spawn(
            what,
            ns,
            common::APACHE_BIN,
            &["-f", conf.to_str().unwrap(), "-DFOREGROUND"],
            config.root(),
        );
        process.logs.push(config.error_log_path());
        // The real configuration pass has started its children: AH00094.
        process.wait_for(&config.error_log_path(), "AH00094", Duration::from_secs(20));
        let port = config.port;
        let start = Instant::now();
        while in_ns(ns, move || {
            http::raw_request(port, b"READY?\r\n\r\n", true).is_err()
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what} does not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    fn file(&self, name: &str) -> String {
        fs::read_to_string(self.config.root().join(name)).unwrap_or_default()
    }
}

fn example(name: &str) -> String {
    let path = common::repo_dir().join("conf-examples").join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A working dir made by `webware make`, with conf-examples/backend-Application.config
/// (Redis at REDIS_ADDR) added to its Application.config, then `webware make -g www-data`.
fn make_work_dir(venv: &Path, dir: &Path) {
    let webware = venv.join("bin/webware");
    common::run(Command::new(&webware).arg("make").arg(dir));
    let config_path = dir.join("Configs/Application.config");
    let mut config = fs::read_to_string(&config_path).unwrap();
    config.push('\n');
    config.push_str(&example("backend-Application.config").replace("192.0.2.20", REDIS_ADDR));
    fs::write(&config_path, config).unwrap();
    common::run(
        Command::new(&webware)
            .args(["make", "-g", "www-data"])
            .arg(dir),
    );
}

/// A logged-in client of the front: its session cookie and the counter it last saw.
struct Client {
    id: usize,
    port: u16,
    cookie: String,
    sid: String,
    count: u64,
}

/// The counter on a SecureCountVisits page.
fn counter(page: &str) -> Option<u64> {
    let marker = "background-color:yellow\">&nbsp;";
    let start = page.find(marker)? + marker.len();
    page[start..].split("&nbsp;").next()?.parse().ok()
}

impl Client {
    /// The login form (GET), then the login POST: served by whichever backends the front
    /// picks, so the form's loginId must come back from Redis.
    fn login(id: usize, port: u16) -> Client {
        let form = http::request(port, "GET", PAGE, &[], b"").expect("GET the login form");
        assert_eq!(form.status, 200, "{}", form.text());
        assert!(
            form.text().contains("Please log in"),
            "no login form:\n{}",
            form.text()
        );
        let cookie = set_cookie(&form, "_SID_").expect("a session cookie with the form");
        let login_id = hidden_field(&form.text(), "loginId");
        let body = format!("username=alice&password=alice&login=Login&loginId={login_id}");
        let page = http::request(
            port,
            "POST",
            PAGE,
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
        .expect("POST the login");
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(
            page.text().contains(LOGGED_IN) && counter(&page.text()) == Some(1),
            "login failed:\n{}",
            page.text()
        );
        let sid = cookie.trim_start_matches("_SID_=").to_string();
        Client {
            id,
            port,
            cookie,
            sid,
            count: 1,
        }
    }

    /// One visit of the counter page; `n` marks it in the front's access log.
    fn visit(&self, n: usize) -> Result<u64, String> {
        let path = format!("{PAGE}?c={}&n={n}", self.id);
        let resp = http::request(self.port, "GET", &path, &[("Cookie", &self.cookie)], b"")
            .map_err(|e| format!("GET {path}: {e}"))?;
        if resp.status != 200 {
            return Err(format!("GET {path}: status {}", resp.status));
        }
        let text = resp.text();
        if let Some(new) = set_cookie(&resp, "_SID_") {
            assert_eq!(
                new, self.cookie,
                "a new session cookie for client {}",
                self.id
            );
        }
        assert!(
            text.contains(LOGGED_IN),
            "client {} no longer logged in (GET {path}):\n{text}",
            self.id
        );
        counter(&text).ok_or_else(|| format!("no counter in GET {path}:\n{text}"))
    }
}

/// One visit as the load saw it.
#[derive(Debug, Clone)]
struct Visit {
    client: usize,
    n: usize,
    start: Instant,
    end: Instant,
    result: Result<u64, String>,
}

/// A bounded load: every client visits in its own thread (in the front's namespace) until
/// it made `per_client` visits, `limit` passed or it is stopped.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<(Client, Vec<Visit>)>>,
}

impl Load {
    fn start(ns: &str, clients: Vec<Client>, first_n: usize, per_client: usize) -> Load {
        let limit = Duration::from_secs(30);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let threads = clients
            .into_iter()
            .map(|mut client| {
                let ns = ns.to_string();
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    enter_ns(&ns);
                    let begin = Instant::now();
                    let mut visits = Vec::new();
                    for n in first_n..first_n + per_client {
                        if stop.load(Ordering::SeqCst) || begin.elapsed() > limit {
                            break;
                        }
                        let start = Instant::now();
                        let result = client.visit(n);
                        if let Ok(count) = result {
                            client.count = count;
                        }
                        visits.push(Visit {
                            client: client.id,
                            n,
                            start,
                            end: Instant::now(),
                            result,
                        });
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    (client, visits)
                })
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    /// Waits (at most 20 s) until `n` visits in all were made.
    fn wait_done(&self, n: usize) {
        let start = Instant::now();
        while self.done.load(Ordering::SeqCst) < n && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; returns them (by id) and every visit.
    fn finish(self) -> (Vec<Client>, Vec<Visit>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut clients = Vec::new();
        let mut visits = Vec::new();
        for t in self.threads {
            let (c, v) = t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            clients.push(c);
            visits.extend(v);
        }
        clients.sort_by_key(|c| c.id);
        (clients, visits)
    }
}

/// The front's access log: (client, n) → (status, balancer member URL), from lines
/// `STATUS "MEMBER" "GET /Examples/SecureCountVisits?c=C&n=N HTTP/1.1"`, once it has a
/// line for each of `visits` (Apache logs a request after its response: bounded wait).
fn front_log(front: &NsApache, visits: &[Visit]) -> Vec<(usize, usize, u16, String)> {
    let start = Instant::now();
    loop {
        let log = parse_front_log(&front.file("access.log"));
        if visits.iter().all(|v| member_of(&log, v).is_some())
            || start.elapsed() > Duration::from_secs(5)
        {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parse_front_log(text: &str) -> Vec<(usize, usize, u16, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let status: u16 = parts.next()?.parse().ok()?;
            let member = parts.next()?.trim_matches('"').to_string();
            let request = parts.next()?;
            let query = request.split_once("?c=")?.1.split(' ').next()?;
            let (c, n) = query.split_once("&n=")?;
            Some((c.parse().ok()?, n.parse().ok()?, status, member))
        })
        .collect()
}

/// The Status cell of backend `i`'s row in the balancer-manager page.
fn member_status(page: &str, i: usize) -> String {
    let link = format!(">{}</a></td>", backend_url(i));
    let row = page
        .split("<tr>")
        .find(|row| row.contains(&link))
        .unwrap_or_else(|| {
            panic!(
                "no row for {} in the balancer-manager:\n{page}",
                backend_url(i)
            )
        });
    // Worker URL, Route, RouteRedir, Factor, Set, Status, ...
    row.split("<td>")
        .nth(6)
        .and_then(|cell| cell.split("</td>").next())
        .unwrap_or("")
        .to_string()
}

fn member_of(log: &[(usize, usize, u16, String)], v: &Visit) -> Option<String> {
    log.iter()
        .find(|(c, n, _, _)| *c == v.client && *n == v.n)
        .map(|(_, _, _, m)| m.clone())
}

/// Each client's counter went up by exactly one per visit that succeeded, except that a
/// visit that failed or is `uncertain` (in flight at the kill) may have counted without the
/// client seeing it (a killed request can have saved its session first).
fn check_counters(clients_before: &[u64], visits: &[Visit], uncertain: impl Fn(&Visit) -> bool) {
    for (id, &before) in clients_before.iter().enumerate() {
        let mut mine: Vec<&Visit> = visits.iter().filter(|v| v.client == id).collect();
        mine.sort_by_key(|v| v.n);
        let mut last = before;
        let mut slack = 0;
        for v in mine {
            if uncertain(v) {
                slack += 1;
            }
            if let Ok(count) = v.result {
                assert!(
                    count > last && count <= last + 1 + slack,
                    "client {id}: visit {} counted {count} after {last} (lost or doubled \
                     session value; {slack} uncertain visits before)",
                    v.n
                );
                last = count;
                slack = 0;
            }
        }
    }
}

#[test]
fn sessions_survive_a_lost_backend_a_drain_and_a_redis_restart() {
    let test_start = Instant::now();
    let mut hosts: Vec<(String, String)> = (0..BACKENDS)
        .map(|i| (format!("b{}", i + 1), backend_addr(i)))
        .collect();
    hosts.push(("redis".into(), REDIS_ADDR.into()));
    let net = match Network::create(&hosts) {
        Ok(net) => net,
        Err(e) => {
            // Straight to stderr, past the test harness's capture, so `make test` shows it.
            let _ = writeln!(
                io::stderr(),
                "scale_out: SKIPPED: network namespaces cannot be made here (needs root and \
                 `ip netns`): {e}"
            );
            return;
        }
    };
    let front_ns = net.ns("front");
    assert!(
        Path::new(REDIS_SERVER).exists(),
        "{REDIS_SERVER} is missing: `make test` installs Debian's redis-server"
    );
    let venv = test_venv();
    let redis_py = Command::new(venv.join("bin/python"))
        .args(["-c", "import redis"])
        .output()
        .expect("run the test venv's python");
    assert!(
        redis_py.status.success(),
        "the test venv {} has no `redis` package (tests/apps/requirements.txt; `make \
         test-venv` remakes the venv): {}",
        venv.display(),
        String::from_utf8_lossy(&redis_py.stderr)
    );
    // Declared after the network (so dropped before it) and before every process (so
    // dropped after them, once their logs were printed): the test's directories go also
    // when it fails.
    let mut dirs = RemoveOnDrop(Vec::new());

    // Redis, persisting every write to its append-only file.
    let redis_dir = TempDir::new("scale-redis");
    dirs.0.push(redis_dir.path().to_path_buf());
    let redis_conf = redis_dir.path().join("redis.conf");
    let redis_log = redis_dir.path().join("redis.log");
    fs::write(
        &redis_conf,
        format!(
            "bind {REDIS_ADDR}\nport 6379\nprotected-mode no\ndaemonize no\n\
             dir {dir}\nlogfile {log}\nappendonly yes\nappendfsync always\nsave \"\"\n",
            dir = redis_dir.path().display(),
            log = redis_log.display()
        ),
    )
    .unwrap();
    let start_redis = || {
        let mut redis = NsProcess::spawn(
            "redis-server",
            &net.ns("redis"),
            REDIS_SERVER,
            &[redis_conf.to_str().unwrap()],
            redis_dir.path(),
        );
        redis.logs.push(redis_log.clone());
        redis.wait_for(
            &redis_log,
            "Ready to accept connections",
            Duration::from_secs(20),
        );
        redis
    };
    let mut redis = start_redis();

    // The backends: one working dir made, copied to each host (as a deployment would).
    let made = TempDir::new("scale-workdir");
    dirs.0.push(made.path().to_path_buf());
    let work_dir = made.path().join("MyApp");
    make_work_dir(&venv, &work_dir);
    let mut backends: Vec<NsApache> = (0..BACKENDS)
        .map(|i| {
            let config = ApacheConfig::new(&format!("scale-b{}", i + 1));
            dirs.0.push(config.root().to_path_buf());
            let base = config.root().join("webware");
            fs::create_dir_all(&base).unwrap();
            fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
            common::run(Command::new("cp").arg("-a").arg(&work_dir).arg(&base));
            let text = example("06-balancer-backend.conf")
                .lines()
                .filter(|l| !l.trim_start().starts_with("LoadModule"))
                .collect::<Vec<_>>()
                .join("\n")
                .replace("/srv/webware/venv", &venv.display().to_string())
                .replace("/srv/webware", &base.display().to_string())
                .replace("192.0.2.1", FRONT_ADDR);
            let config = config.conf(&text).conf(&format!(
                "Listen {addr}:80\n\
                 LogFormat \"%{{_SID_}}C \\\"%r\\\" %>s\" scale\n\
                 CustomLog \"@DIR@/access.log\" scale",
                addr = backend_addr(i)
            ));
            NsApache::start(
                &format!("backend b{}", i + 1),
                &net.ns(&format!("b{}", i + 1)),
                config,
            )
        })
        .collect();

    // The front, with the example's balancer, also listening on the bridge (where the
    // balancer-manager must refuse requests).
    let mut front_text = example("05-balancer-front.conf");
    for i in 0..BACKENDS {
        front_text = front_text.replace(&format!("192.0.2.{}", 11 + i), &backend_addr(i));
    }
    assert!(!front_text.contains("192.0.2."), "{front_text}");
    let front_config = ApacheConfig::new("scale-front");
    dirs.0.push(front_config.root().to_path_buf());
    let front_config = front_config
        .without_rwsgi()
        .conf(&front_text)
        .conf(&format!(
            "Listen {FRONT_ADDR}:80\n\
             LogFormat \"%>s \\\"%{{BALANCER_WORKER_NAME}}e\\\" \\\"%r\\\"\" front\n\
             CustomLog \"@DIR@/access.log\" front"
        ));
    let front = NsApache::start("front", &front_ns, front_config);
    let port = front.config.port;

    // 1. One client logs in and counts 30 visits, spread by the front over every backend.
    let client = in_ns(&front_ns, move || {
        let mut client = Client::login(0, port);
        for n in 0..30 {
            let count = client.visit(n).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(count, client.count + 1, "visit {n}");
            client.count = count;
        }
        client
    });
    for (i, backend) in backends.iter().enumerate() {
        let served = backend
            .file("access.log")
            .lines()
            .filter(|l| l.starts_with(&format!("{} ", client.sid)) && l.contains(PAGE))
            .count();
        assert!(
            served >= 5,
            "backend b{} served the session only {served} times of 32:\n{}",
            i + 1,
            backend.file("access.log")
        );
    }
    println!("scale_out: 32 requests of one session over {BACKENDS} backends");

    // The backends believe X-Forwarded-For from the front only (WSGITrustedProxies): the
    // app sees the client's address through the front, and a forged header sent by
    // another host (b3 to b2) is dropped.
    let remote_addr = |page: &Response| {
        let text = page.text();
        let marker = "<td>REMOTE_ADDR</td><td>";
        let start = text
            .find(marker)
            .unwrap_or_else(|| panic!("no REMOTE_ADDR in:\n{text}"))
            + marker.len();
        text[start..].split('<').next().unwrap_or("").to_string()
    };
    let via_front = in_ns(&front_ns, move || {
        http::request(port, "GET", "/Examples/RequestInformation", &[], b"").unwrap()
    });
    assert_eq!(via_front.status, 200, "{}", via_front.text());
    assert_eq!(
        remote_addr(&via_front),
        "127.0.0.1",
        "REMOTE_ADDR via the front"
    );
    let b2_addr = backend_addr(1);
    let forged = in_ns(&net.ns("b3"), move || {
        request_at(
            &b2_addr,
            80,
            "GET /Examples/RequestInformation HTTP/1.1\r\nHost: b2\r\n\
             X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
    });
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert_eq!(
        remote_addr(&forged),
        backend_addr(2),
        "REMOTE_ADDR, b3 to b2"
    );

    // 2. Four clients under a bounded load; backend b1 killed (its whole Apache tree).
    let clients: Vec<Client> = std::iter::once(client)
        .chain((1..4).map(|id| in_ns(&front_ns, move || Client::login(id, port))))
        .collect();
    let before: Vec<u64> = clients.iter().map(|c| c.count).collect();
    let running = Load::start(&front_ns, clients, 100, 400);
    running.wait_done(100);
    let kill_start = Instant::now();
    let killed = backends[0].process.kill_tree();
    // The kill is over once the front holds no connection to b1 still open: until then a
    // request may go out on a kept-alive connection whose reset is still on its way.
    wait_no_connections(&front_ns, &backend_addr(0));
    let kill_end = Instant::now();
    running.wait_done(running.done.load(Ordering::SeqCst) + 200);
    let (clients, visits) = running.finish();
    assert!(killed.len() >= 4, "b1's tree: {killed:?}");
    let log = front_log(&front, &visits);
    let in_flight = |v: &Visit| v.start <= kill_end && v.end >= kill_start;
    let failed: Vec<&Visit> = visits.iter().filter(|v| v.result.is_err()).collect();
    let b1_in_flight = visits
        .iter()
        .filter(|v| in_flight(v) && member_of(&log, v).as_deref() == Some(&backend_url(0)))
        .count();
    for v in &failed {
        assert!(
            in_flight(v) && member_of(&log, v).as_deref() == Some(&backend_url(0)),
            "a failed request that was not in flight on the killed backend: {v:?} (front: \
             {:?}; kill from {kill_start:?} to {kill_end:?})",
            member_of(&log, v)
        );
    }
    assert!(
        failed.len() <= b1_in_flight,
        "{} failed, {b1_in_flight} were in flight on b1",
        failed.len()
    );
    let after: Vec<&Visit> = visits.iter().filter(|v| v.start > kill_end).collect();
    assert!(
        after.len() >= 40,
        "only {} requests after the kill",
        after.len()
    );
    for v in &after {
        let member = member_of(&log, v);
        assert!(
            v.result.is_ok() && member.as_deref() != Some(&backend_url(0)),
            "after the kill: {v:?} via {member:?}"
        );
    }
    check_counters(&before, &visits, |v| in_flight(v) || v.result.is_err());
    println!(
        "scale_out: b1 killed ({} processes) under load: {} requests, {} failed, {b1_in_flight} \
         were in flight on b1",
        killed.len(),
        visits.len(),
        failed.len()
    );

    // b1 is out ("Err": connections refused, or "HcFl": its health check failed). Started again, the health check
    // (hcmethod=GET every 2 s) puts it back within seconds; without it, the front would
    // retry b1 only after mod_proxy's retry=60 s.
    let b1_status = || {
        in_ns(&front_ns, move || {
            let resp = http::request(
                port,
                "GET",
                "/balancer-manager",
                &[(
                    "Referer",
                    &format!("http://127.0.0.1:{port}/balancer-manager"),
                )],
                b"",
            )
            .unwrap();
            assert_eq!(resp.status, 200, "{}", resp.text());
            (member_status(&resp.text(), 0), resp.text())
        })
    };
    let (status, _) = b1_status();
    assert!(
        status.contains("Err") || status.contains("HcFl"),
        "b1's status after its kill: {status:?}"
    );
    backends[0].restart("backend b1", &net.ns("b1"));
    let restarted_at = Instant::now();
    let page = loop {
        let (status, page) = b1_status();
        if status.contains("Ok") && !status.contains("Err") && !status.contains("HcFl") {
            break page;
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(10),
            "b1 not back 10 s after its restart: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "scale_out: b1 restarted, back in the balancer after {:?}",
        restarted_at.elapsed()
    );

    // 3. b2 taken out through the balancer-manager's form, under load: nothing fails.
    let nonce = page
        .split("nonce=")
        .nth(1)
        .and_then(|s| s.split(['"', '&']).next())
        .unwrap_or_else(|| panic!("no nonce in the balancer-manager:\n{page}"))
        .to_string();
    let refused = in_ns(&net.ns("b3"), || {
        request_at(
            FRONT_ADDR,
            80,
            "GET /balancer-manager HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
    });
    assert_eq!(
        refused.status,
        403,
        "balancer-manager from a backend host: {}",
        refused.text()
    );

    let before: Vec<u64> = clients.iter().map(|c| c.count).collect();
    let running = Load::start(&front_ns, clients, 1000, 400);
    running.wait_done(100);
    let form = format!(
        "b=webware&w={}&w_status_N=1&nonce={nonce}",
        backend_url(1).replace(':', "%3A").replace('/', "%2F")
    );
    let drained = in_ns(&front_ns, move || {
        http::request(
            port,
            "POST",
            "/balancer-manager",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (
                    "Referer",
                    &format!("http://127.0.0.1:{port}/balancer-manager"),
                ),
            ],
            form.as_bytes(),
        )
        .unwrap()
    });
    let drained_at = Instant::now();
    assert_eq!(drained.status, 200, "{}", drained.text());
    let status = member_status(&drained.text(), 1);
    assert!(status.contains("Drn"), "b2 after the form: {status:?}");
    running.wait_done(running.done.load(Ordering::SeqCst) + 200);
    let (clients, visits) = running.finish();
    let log = front_log(&front, &visits);
    let failed: Vec<&Visit> = visits.iter().filter(|v| v.result.is_err()).collect();
    assert!(failed.is_empty(), "failed while draining b2: {failed:?}");
    let b2_before = visits
        .iter()
        .filter(|v| v.end < drained_at && member_of(&log, v).as_deref() == Some(&backend_url(1)))
        .count();
    assert!(b2_before > 0, "b2 served nothing before its drain");
    let after: Vec<&Visit> = visits.iter().filter(|v| v.start > drained_at).collect();
    assert!(
        after.len() >= 40,
        "only {} requests after the drain",
        after.len()
    );
    let mut served_after = [0; BACKENDS];
    for v in &after {
        let member = member_of(&log, v);
        let i = (0..BACKENDS).find(|&i| member.as_deref() == Some(&backend_url(i)));
        assert!(
            i.is_some() && i != Some(1),
            "after b2's drain: {v:?} via {member:?}"
        );
        served_after[i.unwrap()] += 1;
    }
    // The restarted b1 serves the existing sessions again, with b3.
    assert!(
        served_after[0] > 0 && served_after[2] > 0,
        "after b2's drain, per backend: {served_after:?}"
    );
    check_counters(&before, &visits, |_| false);
    println!(
        "scale_out: b2 drained under load: {} requests, 0 failed, {b2_before} on b2 before",
        visits.len()
    );

    // 4. Redis restarted: every session is still there, logged in, counter intact.
    redis.stop();
    // The first server's log moves aside, so the second one's start is seen in a new file.
    fs::rename(&redis_log, redis_dir.path().join("redis-first.log")).unwrap();
    redis = start_redis();
    let redis_text = fs::read_to_string(&redis_log).unwrap_or_default();
    assert!(
        redis_text.contains("DB loaded from append only file"),
        "Redis did not load its append-only file:\n{redis_text}"
    );
    let keys = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns("redis"),
            "redis-cli",
            "-h",
            REDIS_ADDR,
        ])
        .args(["--raw", "KEYS", "WebwareSession:*"])
        .output()
        .expect("redis-cli");
    let keys = String::from_utf8_lossy(&keys.stdout);
    for client in &clients {
        assert!(
            keys.lines()
                .any(|k| k == format!("WebwareSession:{}", client.sid)),
            "client {}'s session is not in the restarted Redis: {keys}",
            client.id
        );
    }
    in_ns(&front_ns, move || {
        for mut client in clients {
            let count = client.visit(10_000).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                count,
                client.count + 1,
                "client {} after Redis' restart",
                client.id
            );
            client.count = count;
        }
    });
    println!("scale_out: sessions kept across a Redis restart");

    // Teardown, checked: no process left in any namespace.
    drop(front);
    for backend in backends.iter_mut() {
        backend.process.stop();
    }
    redis.stop();
    for ns in &net.namespaces {
        let pids = Network::pids(ns);
        assert!(pids.is_empty(), "processes left in {ns}: {pids}");
    }
    println!("scale_out: done in {:?}", test_start.elapsed());
}
