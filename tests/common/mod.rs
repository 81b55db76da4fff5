//! Test harness: a real Apache httpd with mod_rwsgi, in its own temporary ServerRoot on a
//! free 127.0.0.1 port. Stopped by PID when the handle drops (also on panic); the error
//! log is printed when a test fails.
#![allow(dead_code)]

pub mod http;
pub mod load;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APACHE_BIN: &str = "/usr/sbin/apache2";
pub const MODULES_DIR: &str = "/usr/lib/apache2/modules";

/// Path of the module under test: `RWSGI_SO` (set by the Makefile) or build/mod_rwsgi.so.
pub fn module_path() -> PathBuf {
    match std::env::var_os("RWSGI_SO") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("build/mod_rwsgi.so"),
    }
}

/// The Python the module under test was built against, and its "major.minor" (build.rs
/// records both): tests that make a venv or name the version use these, so they hold for
/// every Python the module is built with (`make test-pythons`).
pub const MODULE_PYTHON: &str = env!("RWSGI_BUILD_PYTHON_EXECUTABLE");
pub const MODULE_PYTHON_VERSION: &str = env!("RWSGI_BUILD_PYTHON_VERSION");

/// Whether the module's Python is a free-threaded build (PEP 703, `--disable-gil`).
pub fn module_python_is_free_threaded() -> bool {
    let out = Command::new(MODULE_PYTHON)
        .args([
            "-c",
            "import sysconfig; print(bool(sysconfig.get_config_var('Py_GIL_DISABLED')))",
        ])
        .output()
        .expect("run the module's Python");
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// The repository root (apps live under tests/apps).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The virtual environment with the frameworks the tests serve (Webware for Python, Flask,
/// Django; tests/apps/requirements.txt), made by `make test-venv` (which `make test` runs)
/// with the Python the module embeds: `RWSGI_TEST_VENV`, or build/test-venv.
pub fn test_venv() -> PathBuf {
    let venv = match std::env::var_os("RWSGI_TEST_VENV") {
        Some(p) => PathBuf::from(p),
        None => repo_dir().join("build/test-venv"),
    };
    assert!(
        venv.join(".installed").exists(),
        "no test virtual environment at {}: run `make test-venv` (`make test` does)",
        venv.display()
    );
    venv
}

/// The `name=value` pair of the cookie `name` set by a response.
pub fn set_cookie(resp: &http::Response, name: &str) -> Option<String> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .find(|pair| pair.trim_start().starts_with(&format!("{name}=")))
        .map(|pair| pair.trim().to_string())
}

/// Runs a command that must succeed; a failure shows its output.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory readable by www-data (daemons read apps from it after setuid),
/// removed on drop unless the test failed (its logs stay for a look).
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rwsgi-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(Some(dir))
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until drop").path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() {
                let _ = dir.keep();
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mpm {
    Event,
    Worker,
    Prefork,
}

impl Mpm {
    fn module(self) -> (&'static str, &'static str) {
        match self {
            Mpm::Event => ("mpm_event_module", "mod_mpm_event.so"),
            Mpm::Worker => ("mpm_worker_module", "mod_mpm_worker.so"),
            Mpm::Prefork => ("mpm_prefork_module", "mod_mpm_prefork.so"),
        }
    }
}

/// With `RWSGI_TEST_VIA_HOST` set (to anything) in the test run, every Apache's daemon
/// manager execs the daemon host `rwsgi-daemon` cargo built for this test run for each daemon
/// instead of running it in the fork (the test hook `RWSGI_TEST_DAEMON_HOST`).
fn via_daemon_host() -> Vec<(String, String)> {
    if std::env::var_os("RWSGI_TEST_VIA_HOST").is_none() {
        return Vec::new();
    }
    vec![(
        "RWSGI_TEST_DAEMON_HOST".into(),
        env!("CARGO_BIN_EXE_rwsgi-daemon").into(),
    )]
}

/// Builds a self-contained httpd.conf for one test.
pub struct ApacheConfig {
    pub dir: TempDir,
    pub port: u16,
    pub mpm: Mpm,
    pub extra_modules: Vec<&'static str>,
    pub load_rwsgi: bool,
    pub body: String,
    pub log_level: String,
    /// Extra environment variables of the Apache process.
    pub env: Vec<(String, String)>,
}

impl ApacheConfig {
    pub fn new(tag: &str) -> ApacheConfig {
        ApacheConfig {
            dir: TempDir::new(tag),
            port: free_port(),
            mpm: Mpm::Event,
            extra_modules: Vec::new(),
            load_rwsgi: true,
            body: String::new(),
            log_level: "info".into(),
            env: via_daemon_host(),
        }
    }

    pub fn mpm(mut self, mpm: Mpm) -> Self {
        self.mpm = mpm;
        self
    }

    pub fn module(mut self, name: &'static str) -> Self {
        self.extra_modules.push(name);
        self
    }

    /// Sets an environment variable of the Apache process (and so of its daemons).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn without_rwsgi(mut self) -> Self {
        self.load_rwsgi = false;
        self
    }

    /// Appends configuration text; `@DIR@` stands for the test's ServerRoot and `@REPO@`
    /// for the repository.
    pub fn conf(mut self, text: &str) -> Self {
        let text = text
            .replace("@DIR@", &self.dir.path().display().to_string())
            .replace("@REPO@", &repo_dir().display().to_string());
        self.body.push_str(&text);
        self.body.push('\n');
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Serves tests/apps/`app` at /app from daemon group `group` (`options` are its
    /// WSGIDaemonProcess options), then `extra`. Returns the path of the installed app too.
    pub fn daemon_app(self, app: &str, group: &str, options: &str, extra: &str) -> (Self, PathBuf) {
        let app = self.install_app(app);
        let conf = format!(
            "WSGIDaemonProcess {group} {options}\nWSGIProcessGroup {group}\n\
             WSGIScriptAlias /app {}\n<Directory @DIR@/apps>\n    Require all granted\n</Directory>\n\
             {extra}",
            app.display()
        );
        (self.conf(&conf), app)
    }

    /// Copies tests/apps/<name> into the test directory (readable by www-data, which
    /// daemons run as) and returns its path.
    pub fn install_app(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("apps");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let dest = dir.join(name);
        fs::copy(repo_dir().join("tests/apps").join(name), &dest).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).unwrap();
        dest
    }

    /// A directory every user may write (apps leave marker files there).
    pub fn markers_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("markers");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        dir
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("httpd.conf")
    }

    pub fn error_log_path(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    pub fn write(&self) -> PathBuf {
        let root = self.dir.path();
        for sub in ["run", "htdocs"] {
            fs::create_dir_all(root.join(sub)).unwrap();
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(
            root.join("htdocs/static.txt"),
            "static file served by Apache\n",
        )
        .unwrap();
        let (mpm_name, mpm_file) = self.mpm.module();
        let mut conf = format!(
            "ServerRoot \"{root}\"\n\
             ServerName 127.0.0.1\n\
             Listen 127.0.0.1:{port}\n\
             PidFile \"{root}/httpd.pid\"\n\
             ErrorLog \"{root}/error.log\"\n\
             LogLevel {level}\n\
             DefaultRuntimeDir \"{root}/run\"\n\
             Mutex file:{root}/run default\n\
             User www-data\n\
             Group www-data\n\
             Timeout 30\n\
             LoadModule {mpm_name} {MODULES_DIR}/{mpm_file}\n\
             LoadModule authz_core_module {MODULES_DIR}/mod_authz_core.so\n\
             LoadModule mime_module {MODULES_DIR}/mod_mime.so\n\
             LoadModule alias_module {MODULES_DIR}/mod_alias.so\n\
             TypesConfig /etc/mime.types\n",
            root = root.display(),
            port = self.port,
            level = self.log_level,
        );
        if self.mpm == Mpm::Prefork {
            conf.push_str("StartServers 2\nMinSpareServers 2\nMaxSpareServers 4\n");
        } else {
            conf.push_str("StartServers 1\nThreadsPerChild 16\nMinSpareThreads 8\n");
        }
        for m in &self.extra_modules {
            conf.push_str(&format!("LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n"));
        }
        if self.load_rwsgi {
            conf.push_str(&format!(
                "LoadModule rwsgi_module {}\n",
                module_path().display()
            ));
        }
        // RWSGI_TEST_CORE_DIR (tests/pythons.sh sets it): crashed Apache processes leave
        // a core file there (with the size limit raised), for a backtrace; in a directory
        // named after the test (cargo's test threads carry its name) and its server root,
        // so the report says which test it was.
        if let Some(dir) = std::env::var_os("RWSGI_TEST_CORE_DIR") {
            let test = std::thread::current()
                .name()
                .unwrap_or("test")
                .replace("::", "-");
            let root = self.dir.path().file_name().unwrap_or_default();
            let cores = Path::new(&dir).join(format!("{test}-{}", root.to_string_lossy()));
            fs::create_dir_all(&cores).unwrap();
            // Apache's children write it as the User they run as.
            fs::set_permissions(&cores, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
                .unwrap();
            conf.push_str(&format!("CoreDumpDirectory \"{}\"\n", cores.display()));
        }
        conf.push_str(&format!(
            "DocumentRoot \"{root}/htdocs\"\n<Directory \"{root}/htdocs\">\n    Require all granted\n</Directory>\n",
            root = root.display()
        ));
        conf.push_str(&self.body);
        let path = self.conf_path();
        fs::write(&path, conf).unwrap();
        path
    }

    /// `apache2 -t`: (success, combined output).
    pub fn configtest(&self) -> (bool, String) {
        let path = self.write();
        let out = Command::new(APACHE_BIN)
            .arg("-t")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run apache2 -t");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts Apache in the foreground and waits until it answers on its port. If the free
    /// port chosen was taken by someone else before Apache bound it, starts again on another.
    pub fn start(mut self) -> Apache {
        let mut attempt = 1;
        loop {
            let path = self.write();
            // Apache's own output goes to a file (read on failure): a pipe nobody reads
            // would block a chatty child once it is full.
            let output = fs::File::create(self.dir.path().join("apache.out")).unwrap();
            // Its own process group: on stop, Apache (prefork) signals its whole group,
            // which must not include the test runner.
            let mut child = Command::new(APACHE_BIN)
                .process_group(0)
                .arg("-f")
                .arg(&path)
                .arg("-DFOREGROUND")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .expect("start apache2");
            match wait_ready(&mut child, &self, Duration::from_secs(20)) {
                Ok(()) => {
                    return Apache {
                        config: self,
                        child: Some(child),
                    };
                }
                Err(why) => {
                    stop_child(child);
                    if why.contains("Address already in use") && attempt < 5 {
                        attempt += 1;
                        let _ = fs::remove_file(self.error_log_path());
                        self.port = free_port();
                        continue;
                    }
                    panic!("{why}");
                }
            }
        }
    }
}

/// Waits until the Apache just started from `config` answers, or says why it does not.
fn wait_ready(child: &mut Child, config: &ApacheConfig, limit: Duration) -> Result<(), String> {
    let error_log = || fs::read_to_string(config.error_log_path()).unwrap_or_default();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let out = fs::read_to_string(config.dir.path().join("apache.out")).unwrap_or_default();
            return Err(format!(
                "apache2 exited during start-up ({status}):\n{out}\n--- error log ---\n{}",
                error_log()
            ));
        }
        // Listening is not enough: the first configuration pass already listens, and a
        // connection accepted then may be reset when the real pass starts the children.
        // Ready = the real pass logged its command line and a request is answered.
        if TcpStream::connect(("127.0.0.1", config.port)).is_ok()
            && error_log().contains("AH00094")
            // A request line Apache's core rejects (400) before any module sees it.
            && http::raw_request(config.port, b"READY?\r\n\r\n", true).is_ok()
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "apache2 did not listen within {limit:?}\n{}",
                error_log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops an Apache by PID (SIGTERM, then SIGKILL after 15 s) and waits for it.
fn stop_child(mut child: Child) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) on the PID of a child process this harness started.
    unsafe {
        libc::kill(child.id() as i32, 15);
    }
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running Apache. Dropping it stops Apache by PID and waits for it to exit.
pub struct Apache {
    pub config: ApacheConfig,
    child: Option<Child>,
}

impl Apache {
    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The error log, lossy where a line holds bytes that are not UTF-8 (a URL's, say).
    pub fn error_log(&self) -> String {
        fs::read(self.config.error_log_path())
            .map(|log| String::from_utf8_lossy(&log).into_owned())
            .unwrap_or_default()
    }

    /// Sends a signal to the Apache parent (e.g. SIGUSR1 = graceful restart).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of the child process this handle started.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> http::Response {
        http::request(self.port(), method, path, headers, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\n--- error log ---\n{}",
                self.error_log()
            )
        })
    }

    /// Waits until `pred` holds for the error log (bounded), returning the log.
    /// The socket of this Apache's (only) daemon process group.
    pub fn daemon_socket(&self) -> PathBuf {
        std::fs::read_dir(self.config.root().join("run"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "sock"))
            .expect("the group's socket")
    }

    /// A path for an app's "the request got here" marker (probe.wsgi's `started=`), unique
    /// within this Apache's test directory.
    pub fn marker(&self, name: &str) -> PathBuf {
        self.config.markers_dir().join(name)
    }

    /// Waits (bounded) until the app wrote `marker`; panics with the error log otherwise.
    pub fn wait_for_marker(&self, marker: &Path, limit: Duration) {
        let start = Instant::now();
        while !marker.exists() {
            if start.elapsed() > limit {
                panic!(
                    "{} did not appear within {limit:?}:\n{}",
                    marker.display(),
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for_log(&self, what: &str, limit: Duration) -> String {
        self.wait_for_log_where(
            |log| log.contains(what),
            &format!("error log did not show {what:?} within {limit:?}"),
            limit,
        )
    }

    /// Waits (bounded) until the error log satisfies `done`; returns it, or panics with
    /// `why` and the log.
    pub fn wait_for_log_where(
        &self,
        done: impl Fn(&str) -> bool,
        why: &str,
        limit: Duration,
    ) -> String {
        let start = Instant::now();
        loop {
            let log = self.error_log();
            if done(&log) {
                return log;
            }
            if start.elapsed() > limit {
                panic!("{why}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> http::Response {
        http::request(self.port(), "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n--- error log ---\n{}", self.error_log()))
    }

    /// GETs `path` every 100 ms until `done` accepts the answer, which it returns; panics with
    /// the last answer and the error log after `limit`.
    pub fn get_until(
        &self,
        path: &str,
        limit: Duration,
        done: impl Fn(&http::Response) -> bool,
    ) -> http::Response {
        let deadline = Instant::now() + limit;
        loop {
            let resp = self.get(path);
            if done(&resp) {
                return resp;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path}: {} {}\n{}",
                resp.status,
                resp.text(),
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops Apache (SIGTERM, then SIGKILL after 15 s) and waits for it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        stop_child(self.child.take()?)
    }

    /// `apache2 -k graceful-stop` (SIGWINCH): children finish and exit by themselves. A
    /// forced stop (SIGTERM) makes the event MPM close its workers' sockets while a worker
    /// may be freeing its connection, which now and then crashes a child inside Apache with
    /// or without this module (CONTRIBUTING.md, "Other Pythons"); tests that check every child
    /// exited cleanly stop this way. Falls back to `stop` after 15 s.
    pub fn stop_gracefully(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the PID of a child process this harness started.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGWINCH);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop_child(child)
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- Apache error log ({}) ---\n{}",
                self.config.error_log_path().display(),
                self.error_log()
            );
        }
    }
}

/// Asserts with the error log attached.
#[macro_export]
macro_rules! assert_with_log {
    ($apache:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("{}\n--- error log ---\n{}", format!($($arg)+), $apache.error_log());
        }
    };
}

/// Held while a test changes or snapshots the system's Apache layout (/etc/apache2,
/// /var/lib/apache2, installed packages): tests of other checkouts on the same machine take
/// the same lock. Released on drop (also on panic).
pub struct SystemLayoutLock(fs::File);

pub const SYSTEM_LAYOUT_LOCK: &str = "/run/lock/mod-rwsgi-system-apache-layout.lock";

impl SystemLayoutLock {
    /// Waits (at most 15 minutes) for the lock.
    pub fn acquire() -> SystemLayoutLock {
        use std::os::fd::AsRawFd;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(SYSTEM_LAYOUT_LOCK)
            .unwrap_or_else(|e| panic!("open {SYSTEM_LAYOUT_LOCK}: {e}"));
        let start = Instant::now();
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return SystemLayoutLock(file);
            }
            if start.elapsed() > Duration::from_secs(900) {
                panic!("{SYSTEM_LAYOUT_LOCK} held by another test for 15 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A process's resident set size in KiB (VmRSS), None once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// RSS in KiB of each of the Apache parent's children named apache2 (the daemon manager
/// among them, which serves no request), by PID.
pub fn apache_children_rss(apache: &Apache) -> std::collections::BTreeMap<u32, u64> {
    let parent = apache.pid().to_string();
    let mut children = std::collections::BTreeMap::new();
    for pid in process_tree(apache.pid()) {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
        if stat.contains("(apache2)") && after.split_whitespace().nth(1) == Some(parent.as_str()) {
            if let Some(rss) = rss_kib(pid) {
                children.insert(pid, rss);
            }
        }
    }
    children
}

/// Every process descending from `root` (by /proc's parent links), `root` included.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}
