//! start-server's foreground run: Apache in its own process group, stop signals forwarded,
//! a bounded stop, and a check that no process or socket was left behind.
//!
//! The stop signals (and SIGCHLD, to wake up when Apache dies) are blocked in this
//! single-threaded program and taken with `sigtimedwait`, so there is no signal handler;
//! Apache gets an empty signal mask again before exec.

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::Pid;

use super::Fail;
use super::site::Site;

/// How long Apache may take to listen, and to stop before it is killed.
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Runs Apache until a stop signal; returns the exit code for rwsgi-express.
pub fn run_apache(site: &Site) -> Result<i32, Fail> {
    let apache_bin = &site.apache_bin;
    if !apache_bin.exists() {
        return Err(Fail(format!(
            "{} not found; install Apache (apt-get install apache2)",
            apache_bin.display()
        )));
    }
    let signals = SigSet::from_iter([
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ]);
    signals
        .thread_block()
        .map_err(|e| Fail(format!("cannot block signals: {e}")))?;

    // The port was free, so no Apache of this server root runs: sockets left by one that
    // was killed are stale, and would be mistaken for ours at stop.
    for sock in sockets(&site.run_dir()) {
        let _ = fs::remove_file(sock);
    }
    let conf = site.conf_path();
    // The environment script (--envvars-script, or `envvars` in the server root), sourced
    // as apachectl does: a shell that execs Apache, so the child's PID stays Apache's.
    let envvars = site.envvars_script();
    let process_name = site.args.process_name.as_deref();
    let mut cmd = if envvars.is_file() {
        // --process-name: the shell (bash by default then) sets it with `exec -a`.
        let mut sh = Command::new(if process_name.is_some() {
            site.shell.as_path()
        } else {
            Path::new("/bin/sh")
        });
        match process_name {
            Some(name) => sh
                .arg("-c")
                .arg(". \"$0\" && name=$1 && shift && exec -a \"$name\" \"$@\"")
                .arg(&envvars)
                .arg(name),
            None => sh.arg("-c").arg(". \"$0\" && exec \"$@\"").arg(&envvars),
        };
        sh.arg(apache_bin);
        sh
    } else {
        let mut apache = Command::new(apache_bin);
        if let Some(name) = process_name {
            use std::os::unix::process::CommandExt;
            apache.arg0(name);
        }
        apache
    };
    cmd.arg("-f")
        .arg(&conf)
        .args(site.httpd_args())
        .arg("-DFOREGROUND")
        // Its own process group: on stop Apache signals its whole group, and a terminal's
        // Ctrl-C reaches only us; we forward it.
        .process_group(0)
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls
    // pthread_sigmask(3) and prctl(2), both async-signal-safe, on a sigset built on its own
    // stack. It gives Apache an empty signal mask (ours blocks the stop signals, and std
    // does not reset it) and, should rwsgi-express die without stopping Apache (SIGKILL),
    // has the kernel send Apache SIGTERM.
    unsafe {
        cmd.pre_exec(|| {
            SigSet::empty().thread_set_mask()?;
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Fail(format!("cannot start {}: {e}", apache_bin.display())))?;
    let pid = child.id() as i32;
    let log_hint = if site.log_to_terminal {
        "see its messages above".to_string()
    } else {
        format!("see {}", site.error_log().display())
    };

    // Wait until it listens.
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(Fail(format!(
                "apache2 exited during start-up ({}); {log_hint}",
                describe(status)
            )));
        }
        if answers(&site.host, site.port) {
            break;
        }
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(50)) {
            if sig != Signal::SIGCHLD {
                let report = stop(&mut child, site, family(pid));
                return Ok(report.exit_code());
            }
        }
        if started.elapsed() > START_LIMIT {
            stop(&mut child, site, family(pid));
            return Err(Fail(format!(
                "apache2 did not listen on {}:{} within {} s; {log_hint}",
                site.host,
                site.port,
                START_LIMIT.as_secs()
            )));
        }
    }
    println!(
        "Serving {} (mod_rwsgi, Apache pid {pid}, config {})",
        site.url(),
        conf.display()
    );
    if let Some(url) = site.https_url() {
        println!("Serving {url} too");
    }
    if !site.log_to_terminal {
        println!("Error log: {}", site.error_log().display());
    }
    println!("Press Ctrl-C to stop.");

    // Apache's processes (daemons included), so a stop can check that all of them are gone.
    let mut tracked = family(pid);
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            let leftovers = cleanup(site, &tracked);
            let extra = if leftovers.is_empty() {
                String::new()
            } else {
                format!("; cleaned up {}", leftovers.join(", "))
            };
            return Err(Fail(format!(
                "apache2 (pid {pid}) exited unexpectedly ({}){extra}; {log_hint}",
                describe(status)
            )));
        }
        match wait_signal(&signals, Duration::from_millis(500)) {
            Some(Signal::SIGCHLD) | None => {}
            Some(_) => break,
        }
        tracked.extend(family(pid));
    }
    eprintln!("rwsgi-express: stopping Apache (pid {pid})");
    let report = stop(&mut child, site, tracked);
    Ok(report.exit_code())
}

/// What a stop found.
struct StopReport {
    pid: i32,
    status: Option<ExitStatus>,
    killed: bool,
    leftovers: Vec<String>,
}

impl StopReport {
    fn exit_code(&self) -> i32 {
        if self.killed || !self.leftovers.is_empty() {
            eprintln!(
                "rwsgi-express: Apache (pid {}) {}{}",
                self.pid,
                if self.killed {
                    format!(
                        "did not stop within {} s and was killed",
                        STOP_LIMIT.as_secs()
                    )
                } else {
                    "stopped".into()
                },
                if self.leftovers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; left behind and cleaned up: {}",
                        self.leftovers.join(", ")
                    )
                }
            );
            return 1;
        }
        let how = self.status.map(describe).unwrap_or_default();
        println!(
            "Stopped (Apache pid {} {how}; no process or socket left).",
            self.pid
        );
        0
    }
}

/// SIGTERM to the Apache parent; SIGKILL to its group and every process it started if it
/// is not gone within STOP_LIMIT; then checks that nothing is left.
fn stop(child: &mut Child, site: &Site, mut tracked: BTreeMap<i32, u64>) -> StopReport {
    let pid = child.id() as i32;
    tracked.extend(family(pid));
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_LIMIT;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            break Some(status);
        }
        if Instant::now() > deadline {
            killed = true;
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            for p in tracked.keys() {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            break child.wait().ok();
        }
        tracked.extend(family(pid));
        std::thread::sleep(Duration::from_millis(50));
    };
    let leftovers = cleanup(site, &tracked);
    StopReport {
        pid,
        status,
        killed,
        leftovers,
    }
}

/// Kills processes of `tracked` still alive (same start time, not a zombie) and removes
/// sockets left in the run directory. Returns what it found.
fn cleanup(site: &Site, tracked: &BTreeMap<i32, u64>) -> Vec<String> {
    let mut found = Vec::new();
    // Daemons get SIGTERM from the kernel when their parent dies; give them a moment.
    let until = Instant::now() + Duration::from_secs(2);
    let alive = loop {
        let alive: Vec<i32> = tracked
            .iter()
            .filter(|(p, start)| stat(**p).is_some_and(|s| s.start == **start && !s.zombie))
            .map(|(p, _)| *p)
            .collect();
        if alive.is_empty() || Instant::now() > until {
            break alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for p in alive {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        found.push(format!("process {p}"));
    }
    for sock in sockets(&site.run_dir()) {
        let _ = fs::remove_file(&sock);
        found.push(format!("socket {}", sock.display()));
    }
    found
}

/// Unix sockets in `dir`.
pub fn sockets(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default()
}

/// One line of /proc/PID/stat, the fields we need.
struct Stat {
    ppid: i32,
    pgrp: i32,
    start: u64,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    Some(Stat {
        zombie: fields.first()? == &"Z",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// `pid`, its descendants and its process group: pid → start time. Daemons leave Apache's
/// group (setpgid) but stay its children.
fn family(pid: i32) -> BTreeMap<i32, u64> {
    let mut all = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.filter_map(Result::ok) {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some(s) = stat(p) {
                    all.push((p, s));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, s) in &all {
            if (s.ppid == parent || s.pgrp == pid) && !out.contains_key(p) && *p != pid {
                out.insert(*p, s.start);
                frontier.push(*p);
            }
        }
    }
    if let Some((_, s)) = all.iter().find(|(p, _)| *p == pid) {
        out.insert(pid, s.start);
    }
    out
}

/// Is something accepting connections on host:port? (0.0.0.0 / :: are tried on loopback.)
fn answers(host: &str, port: u16) -> bool {
    let host = match host {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

/// Waits up to `limit` for one of `set` (blocked in this thread).
fn wait_signal(set: &SigSet, limit: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid, initialised sigset_t for the call's duration, the info
    // pointer may be null, and `ts` is a valid timespec on the stack.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if n <= 0 {
        return None;
    }
    Signal::try_from(n).ok()
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}
