//! Tests of the CPython host against one test-wide interpreter (initialised once, never
//! finalised), a fake `RequestIo` and small WSGI scripts written to a temp dir. Most checks run
//! inside the WSGI app as Python asserts: a failed assert becomes a logged traceback and a 500,
//! which the Rust side reports.
//!
//! One file per feature; this file holds what they share: log capture, the interpreter,
//! the fake `RequestIo` and small helpers.

mod asgi_inbox;
mod checks;
mod errors;
mod loading;
mod metrics_and_events;
mod modwsgi_module;
mod response_body;
mod start_response_rules;
mod wsgi_environ;
mod wsgi_file_wrapper;
mod wsgi_input;

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::pair_list::PairList;

use super::interpreter::{check_runtime_version, check_venv, major_minor};
use super::start_response::{validate_header_name, validate_header_value, validate_status};
use super::*;

// ---------------------------------------------------------------- log capture

static LOGS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

pub(super) fn capture_log(level: Level, msg: &str) {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((level, msg.to_string()));
}

fn logs_with(needle: &str) -> Vec<(Level, String)> {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, m)| m.contains(needle))
        .cloned()
        .collect()
}

/// Everything logged about `needle` (a script path), for assertion messages.
fn dump(needle: &str) -> String {
    logs_with(needle)
        .iter()
        .map(|(l, m)| format!("[{l:?}] {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------- interpreter

static INIT: Once = Once::new();

fn build_version() -> String {
    let out = std::process::Command::new(env!("RWSGI_BUILD_PYTHON_EXECUTABLE"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run the Python the module is built against");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn init() {
    INIT.call_once(|| {
        let settings = InterpreterSettings {
            python_home: None,
            build_executable: env!("RWSGI_BUILD_PYTHON_EXECUTABLE").to_string(),
            build_version: build_version(),
            process_group: "pytest".to_string(),
            processes: 3,
            processes_given: true,
            threads: 5,
            maximum_requests: 0,
            header_buffer_size: 0,
            ..InterpreterSettings::default()
        };
        initialize(&settings).expect("initialise the test interpreter");
    });
}

// ---------------------------------------------------------------- fake io

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Head(u16, String, Vec<(String, String)>),
    Body(Vec<u8>),
    Flush,
    File(u64, u64, Vec<u8>),
}

#[derive(Default)]
struct FakeIo {
    chunks: VecDeque<Vec<u8>>,
    reads: Vec<usize>,
    events: Vec<Ev>,
    read_error: bool,
    fail_body: bool,
    panic_on_body: bool,
    sendfile: bool,
}

fn text(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

impl FakeIo {
    fn new() -> FakeIo {
        FakeIo::default()
    }

    fn with_body(chunks: &[&[u8]]) -> FakeIo {
        FakeIo {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            ..FakeIo::default()
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in &self.events {
            match ev {
                Ev::Body(b) | Ev::File(_, _, b) => out.extend_from_slice(b),
                _ => {}
            }
        }
        out
    }

    fn body_text(&self) -> String {
        text(&self.body())
    }

    fn status(&self) -> Option<(u16, String)> {
        self.events.iter().find_map(|e| match e {
            Ev::Head(code, reason, _) => Some((*code, reason.clone())),
            _ => None,
        })
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .find_map(|e| match e {
                Ev::Head(_, _, h) => Some(h.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

impl RequestIo for FakeIo {
    fn read_body(&mut self, max: usize) -> io::Result<Vec<u8>> {
        self.reads.push(max);
        if self.read_error {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
        }
        let Some(mut chunk) = self.chunks.pop_front() else {
            return Ok(Vec::new());
        };
        if chunk.len() > max {
            let rest = chunk.split_off(max);
            self.chunks.push_front(rest);
        }
        Ok(chunk)
    }

    fn send_head(
        &mut self,
        status: u16,
        reason: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        let headers = headers.iter().map(|(n, v)| (text(n), text(v))).collect();
        self.events.push(Ev::Head(status, text(reason), headers));
        Ok(())
    }

    fn send_body(&mut self, data: &[u8]) -> io::Result<()> {
        if self.panic_on_body {
            panic!("fake io panics in send_body");
        }
        if self.fail_body {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        self.events.push(Ev::Body(data.to_vec()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.fail_body {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "client went away",
            ));
        }
        self.events.push(Ev::Flush);
        Ok(())
    }

    fn send_file(&mut self, fd: std::os::fd::RawFd, offset: u64, len: u64) -> io::Result<bool> {
        if !self.sendfile {
            return Ok(false);
        }
        let file = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
        let mut data = vec![0; len as usize];
        file.read_exact_at(&mut data, offset)?;
        self.events.push(Ev::File(offset, len, data));
        Ok(true)
    }
}

// ---------------------------------------------------------------- helpers

/// One directory for the whole test run: the scripts in it stay loaded in the shared
/// interpreter, so it is kept (never removed) rather than deleted under them.
fn tmpdir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("rwsgi-python-tests-")
            .tempdir()
            .expect("create the test scripts' directory")
            .keep()
    })
    .clone()
}

/// Replaces `path` with `data` in one step: tests running at once may write the same file,
/// and a reader must never see it truncated or half written.
fn write_atomically(path: &Path, data: &[u8]) {
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap()).unwrap();
    std::io::Write::write_all(&mut tmp, data).unwrap();
    tmp.persist(path).unwrap();
}

/// Writes a WSGI script and returns its path.
fn script(name: &str, source: &str) -> String {
    let path = tmpdir().join(format!("{name}.wsgi"));
    write_atomically(&path, source.as_bytes());
    path.to_str().unwrap().to_string()
}

/// Rewrites a script with an mtime that certainly differs from the previous one.
fn rewrite(path: &str, source: &str, secs: u64) {
    std::fs::write(path, source).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn env(extra: &[(&str, &[u8])]) -> PairList {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = [
        ("REQUEST_METHOD", &b"GET"[..]),
        ("SCRIPT_NAME", b"/app"),
        ("PATH_INFO", b"/"),
        ("QUERY_STRING", b""),
        ("SERVER_NAME", b"localhost"),
        ("SERVER_PORT", b"80"),
        ("SERVER_PROTOCOL", b"HTTP/1.1"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
    .collect();
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k.as_bytes());
        pairs.push((k.as_bytes().to_vec(), v.to_vec()));
    }
    pairs.into_iter().collect()
}

fn spec<'a>(path: &'a str, env: &'a PairList) -> RequestSpec<'a> {
    RequestSpec {
        script_path: std::path::Path::new(path),
        app_group: "",
        callable: "",
        env,
        script_reloading: ScriptReloading::InPlace,
        times: RequestTimes::default(),
        daemon_attempts: Default::default(),
        apache_request: None,
        asgi: false,
        websocket: false,
    }
}

/// One request with defaults; `path_info` selects the app's branch.
fn request(host: &AppHost, path: &str, path_info: &str, io: &mut FakeIo) -> Outcome {
    let env = env(&[("PATH_INFO", path_info.as_bytes())]);
    host.handle(&spec(path, &env), io)
}

/// Runs one request with `extra` CGI variables, which must complete; its body.
fn completed_body(host: &AppHost, path: &str, extra: &[(&str, &[u8])]) -> String {
    let env = env(extra);
    let mut io = FakeIo::new();
    assert_eq!(
        host.handle(&spec(path, &env), &mut io),
        Outcome::Completed,
        "{}",
        dump(path)
    );
    io.body_text()
}

fn host() -> AppHost {
    init();
    AppHost::new()
}

/// Runs a request that should complete with body "ok" (the app's Python asserts passed).
fn assert_ok(host: &AppHost, path: &str, path_info: &str, io: &mut FakeIo) {
    let outcome = request(host, path, path_info, io);
    assert_eq!(
        (outcome, io.body_text()),
        (Outcome::Completed, "ok".to_string()),
        "log:\n{}",
        dump(path)
    );
}
