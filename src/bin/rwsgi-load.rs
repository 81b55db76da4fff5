//! rwsgi-load: a bounded load loop for checking that restarts are invisible to clients.
//! N clients send GET requests (a new connection each, as a worst case for the server) for
//! a fixed time, while an action is repeated a few times: touch the WSGI script, restart
//! Apache gracefully or hard, or kill -9 one daemon process. It prints how many requests
//! were sent, how many failed (a non-2xx status or a connection error), and the latency.
//! With `--keepalive` each client reuses its connection (HTTP/1.1 keep-alive), for soak
//! runs of many requests.
//!
//!   rwsgi-load --url http://127.0.0.1:8000/ --clients 8 --duration 10 \
//!              --action touch:/srv/app/app.wsgi --times 3
//!
//! Exit status: 0 when no request failed, 1 when some did, 2 on a usage error.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "rwsgi-load",
    version,
    about = "Bounded HTTP load with restarts: counts failed requests and latency"
)]
struct Args {
    /// http://host:port/path to request (GET).
    #[arg(long, value_parser = parse_url)]
    url: Target,
    /// Concurrent clients (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: u16,
    /// Seconds to run (more than 0, at most 3600).
    #[arg(long, default_value_t = 10.0, value_parser = parse_duration)]
    duration: f64,
    /// Stop after this many requests in all, whatever the time.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// What to do during the run: none, touch:FILE, graceful:PIDFILE, restart:PIDFILE or
    /// kill9:PIDFILE (PIDFILE = Apache's PidFile; kill9 kills one mod_rwsgi daemon of that
    /// Apache, a different one each time when there are several).
    #[arg(long, default_value = "none", value_parser = parse_action)]
    action: Action,
    /// How many times to do the action, evenly spread over the run.
    #[arg(long, default_value_t = 3)]
    times: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Reuse each client's connection across requests.
    #[arg(long)]
    keepalive: bool,
}

#[derive(Debug, Clone)]
enum Action {
    None,
    Touch(PathBuf),
    Graceful(PathBuf),
    Restart(PathBuf),
    Kill9(PathBuf),
}

fn parse_duration(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if seconds > 0.0 && seconds <= 3600.0 {
        Ok(seconds)
    } else {
        Err("must be more than 0 and at most 3600 seconds".into())
    }
}

fn parse_action(text: &str) -> Result<Action, String> {
    if text == "none" {
        return Ok(Action::None);
    }
    let (kind, arg) = text
        .split_once(':')
        .ok_or_else(|| "expected KIND:PATH or none".to_string())?;
    let path = PathBuf::from(arg);
    match kind {
        "touch" => Ok(Action::Touch(path)),
        "graceful" => Ok(Action::Graceful(path)),
        "restart" => Ok(Action::Restart(path)),
        "kill9" => Ok(Action::Kill9(path)),
        other => Err(format!(
            "unknown kind '{other}' (touch, graceful, restart, kill9)"
        )),
    }
}

#[derive(Debug, Clone)]
struct Target {
    host: String,
    addr: std::net::SocketAddr,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported".to_string())?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} has no address"))?;
    Ok(Target {
        host: hostport.to_string(),
        addr,
        path: path.to_string(),
    })
}

/// What the load needs of a response head.
struct Head {
    status: u16,
    /// Bytes of the head, up to and including its empty line.
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    /// `Connection: close`.
    close: bool,
}

/// Parses the response head at the start of `buf` (httparse); None while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = response.code.ok_or_else(|| "no status line".to_string())?;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    Ok(Some(Head {
        status,
        len,
        content_length: header("content-length").and_then(|v| v.parse().ok()),
        chunked: header("transfer-encoding").is_some_and(|v| v.contains("chunked")),
        close: header("connection").is_some_and(|v| v == "close"),
    }))
}

/// A keep-alive connection and what was read past the last response.
struct KeptConnection {
    stream: TcpStream,
    pending: Vec<u8>,
}

fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One GET on a kept connection (opened if needed); the connection is dropped on any
/// failure or when the server does not keep it.
fn get_keepalive(
    target: &Target,
    timeout: Duration,
    conn: &mut Option<KeptConnection>,
) -> Result<u16, String> {
    if conn.is_none() {
        *conn = Some(KeptConnection {
            stream: connect(target, timeout)?,
            pending: Vec::new(),
        });
    }
    let c = conn.as_mut().expect("just set");
    let result = exchange_keepalive(target, c);
    match &result {
        Ok((_, keep)) if *keep => {}
        _ => *conn = None,
    }
    result.map(|(status, _)| status)
}

fn exchange_keepalive(target: &Target, c: &mut KeptConnection) -> Result<(u16, bool), String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rwsgi-load\r\n\r\n",
        target.path, target.host
    );
    c.stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let head = loop {
        if let Some(head) = parse_head(&c.pending)? {
            break head;
        }
        fill(c)?;
    };
    c.pending.drain(..head.len);
    let status = head.status;
    let keep = !head.close;
    if let Some(len) = head.content_length {
        while c.pending.len() < len {
            fill(c).map_err(|e| format!("status {status}, body: {e}"))?;
        }
        c.pending.drain(..len);
    } else if head.chunked {
        loop {
            let (line_len, size) = loop {
                match httparse::parse_chunk_size(&c.pending) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => fill(c)?,
                    Err(_) => {
                        let line = c.pending.split(|&b| b == b'\n').next().unwrap_or_default();
                        return Err(format!(
                            "bad chunk size {:?}",
                            String::from_utf8_lossy(line)
                        ));
                    }
                }
            };
            let size = usize::try_from(size).map_err(|_| format!("chunk of {size} bytes"))?;
            c.pending.drain(..line_len);
            while c.pending.len() < size + 2 {
                fill(c)?;
            }
            c.pending.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        // No length: the body ends when the server closes.
        while fill(c).is_ok() {}
        return Ok((status, false));
    }
    Ok((status, keep))
}

fn fill(c: &mut KeptConnection) -> Result<(), String> {
    let mut buf = [0u8; 64 * 1024];
    match c.stream.read(&mut buf) {
        Ok(0) => Err(format!(
            "incomplete response ({} bytes buffered)",
            c.pending.len()
        )),
        Ok(n) => {
            c.pending.extend_from_slice(&buf[..n]);
            Ok(())
        }
        Err(e) => Err(format!("receive: {e}")),
    }
}

/// One GET on a new connection; Ok(status) or a description of the failure.
fn get(target: &Target, timeout: Duration) -> Result<u16, String> {
    let mut stream =
        TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rwsgi-load\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::with_capacity(4096);
    // On an error the bytes read before it stay in `response`: say how many, so a reset
    // before any byte (a connection closed with the request unread) is told from a cut body.
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e} after {} bytes", response.len()))?;
    let head = parse_head(&response)?
        .ok_or_else(|| format!("incomplete response ({} bytes)", response.len()))?;
    let status = head.status;
    let body = response.len() - head.len;
    let declared = head.content_length;
    if let Some(len) = declared {
        if body != len {
            return Err(format!(
                "status {status} with a truncated body ({body} of {len} bytes)"
            ));
        }
    }
    Ok(status)
}

fn read_pid(pidfile: &PathBuf) -> Result<i32, String> {
    std::fs::read_to_string(pidfile)
        .map_err(|e| format!("cannot read {}: {e}", pidfile.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{} does not hold a PID", pidfile.display()))
}

/// (pid, ppid, comm) of every process, from /proc.
fn processes() -> Vec<(i32, i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm is in parentheses and may contain spaces; ppid follows the state field.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid, comm))
    })
    .collect()
}

/// The mod_rwsgi daemon processes of the Apache whose parent PID is `apache`: children of
/// its daemon manager ("rwsgi-manager").
fn daemons_of(apache: i32) -> Vec<i32> {
    let all = processes();
    let managers: Vec<i32> = all
        .iter()
        .filter(|(_, ppid, comm)| *ppid == apache && comm == "rwsgi-manager")
        .map(|(pid, _, _)| *pid)
        .collect();
    let mut daemons: Vec<i32> = all
        .iter()
        .filter(|(_, ppid, _)| managers.contains(ppid))
        .map(|(pid, _, _)| *pid)
        .collect();
    daemons.sort();
    daemons
}

fn act(action: &Action, round: u32) -> Result<String, String> {
    let signal = |pidfile: &PathBuf, sig: i32, what: &str| -> Result<String, String> {
        let pid = read_pid(pidfile)?;
        // SAFETY: kill(2) on the PID the operator pointed us at.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(format!(
                "cannot signal Apache (pid {pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(format!("{what} Apache (pid {pid})"))
    };
    match action {
        Action::None => Ok(String::new()),
        Action::Touch(path) => {
            let file = std::fs::File::options()
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            file.set_modified(SystemTime::now())
                .map_err(|e| format!("cannot touch {}: {e}", path.display()))?;
            Ok(format!("touched {}", path.display()))
        }
        Action::Graceful(pidfile) => signal(pidfile, libc::SIGUSR1, "graceful restart of"),
        Action::Restart(pidfile) => signal(pidfile, libc::SIGHUP, "restart of"),
        Action::Kill9(pidfile) => {
            let apache = read_pid(pidfile)?;
            let daemons = daemons_of(apache);
            if daemons.is_empty() {
                return Err(format!(
                    "Apache (pid {apache}) has no mod_rwsgi daemon process"
                ));
            }
            let victim = daemons[round as usize % daemons.len()];
            // SAFETY: kill(2) on a daemon process of the operator's Apache.
            unsafe { libc::kill(victim, libc::SIGKILL) };
            Ok(format!("kill -9 daemon pid {victim}"))
        }
    }
}

struct Stats {
    requests: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    // A usage error exits with status 2 (clap's own).
    let args = Args::parse();
    let action = args.action.clone();
    let target = Arc::new(args.url.clone());
    let duration = Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let stats = Arc::new(Stats {
        requests: AtomicU64::new(0),
        failures: Mutex::new(BTreeMap::new()),
        failed: AtomicU64::new(0),
        latencies_us: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let (target, stats, stop) = (target.clone(), stats.clone(), stop.clone());
            let max_requests = args.max_requests;
            let keepalive = args.keepalive;
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut kept = None;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < duration {
                    if stats.requests.fetch_add(1, Ordering::SeqCst) >= max_requests {
                        stats.requests.fetch_sub(1, Ordering::SeqCst);
                        break;
                    }
                    let t0 = Instant::now();
                    let outcome = if keepalive {
                        get_keepalive(&target, timeout, &mut kept)
                    } else {
                        get(&target, timeout)
                    };
                    latencies.push(t0.elapsed().as_micros() as u64);
                    let failure = match outcome {
                        Ok(status) if (200..300).contains(&status) => None,
                        Ok(status) => Some(format!("status {status}")),
                        Err(e) => Some(e),
                    };
                    if let Some(f) = failure {
                        stats.failed.fetch_add(1, Ordering::SeqCst);
                        *stats.failures.lock().unwrap().entry(f).or_default() += 1;
                    }
                }
                stats.latencies_us.lock().unwrap().extend(latencies);
            })
        })
        .collect();
    let mut action_error = None;
    if !matches!(action, Action::None) {
        for round in 0..args.times {
            let at = duration.mul_f64(f64::from(round + 1) / f64::from(args.times + 1));
            if let Some(wait) = at.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            match act(&action, round) {
                Ok(done) => println!("{:6.2} s  {done}", started.elapsed().as_secs_f64()),
                Err(e) => {
                    action_error = Some(e);
                    break;
                }
            }
        }
    }
    if action_error.is_some() {
        stop.store(true, Ordering::SeqCst);
    }
    for c in clients {
        let _ = c.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = std::mem::take(&mut *stats.latencies_us.lock().unwrap());
    latencies.sort_unstable();
    let requests = stats.requests.load(Ordering::SeqCst);
    let failed = stats.failed.load(Ordering::SeqCst);
    for (what, n) in stats.failures.lock().unwrap().iter() {
        println!("failed {n:6} x {what}");
    }
    println!(
        "requests={requests} failures={failed} req_per_s={:.0} p50_ms={:.1} p99_ms={:.1} \
         max_latency_ms={:.1}",
        requests as f64 / elapsed.max(0.001),
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    if let Some(e) = action_error {
        eprintln!("rwsgi-load: {e}");
        return ExitCode::from(2);
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_parsed_once_complete() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let head = parse_head(full).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(&full[head.len..], b"hello");
        assert_eq!(head.content_length, Some(5));
        assert!(head.close && !head.chunked);
        for cut in [0, 10, full.len() - 7] {
            assert!(parse_head(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = parse_head(chunked).unwrap().unwrap();
        assert_eq!((head.status, head.chunked, head.close), (404, true, false));
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn duration_and_action_values() {
        assert_eq!(parse_duration("2.5"), Ok(2.5));
        for bad in ["0", "-1", "3601", "x", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse_action("none"), Ok(Action::None)));
        assert!(matches!(
            parse_action("kill9:/run/a.pid"),
            Ok(Action::Kill9(_))
        ));
        assert_eq!(
            parse_action("stop:/x").unwrap_err(),
            "unknown kind 'stop' (touch, graceful, restart, kill9)"
        );
        assert!(parse_action("touch").is_err());
    }
}
