//! The shipped load tool (rwsgi-load), run against a test's Apache, its summary parsed.

use std::process::Command;

/// What rwsgi-load printed, parsed.
#[derive(Debug)]
pub struct LoadResult {
    pub requests: u64,
    pub failures: u64,
    pub max_latency_ms: f64,
    pub exit_code: Option<i32>,
    /// Everything it printed (stdout, then stderr).
    pub output: String,
}

impl LoadResult {
    /// Its "failed N x what" lines.
    pub fn failure_lines(&self) -> impl Iterator<Item = &str> {
        self.output.lines().filter(|l| l.starts_with("failed"))
    }
}

/// Runs rwsgi-load against `http://127.0.0.1:port{path}` with `args`; panics if it did not
/// print its summary or could not do its action (exit status 2).
pub fn rwsgi_load(port: u16, path: &str, args: &[&str]) -> LoadResult {
    let output = Command::new(env!("CARGO_BIN_EXE_rwsgi-load"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .args(args)
        .output()
        .expect("run rwsgi-load");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("requests="))
        .unwrap_or_else(|| panic!("no summary from rwsgi-load:\n{text}"));
    let field = |name: &str| -> f64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {summary}"))
    };
    assert!(
        output.status.code() != Some(2),
        "rwsgi-load could not do its action:\n{text}"
    );
    LoadResult {
        requests: field("requests") as u64,
        failures: field("failures") as u64,
        max_latency_ms: field("max_latency_ms"),
        exit_code: output.status.code(),
        output: text,
    }
}
