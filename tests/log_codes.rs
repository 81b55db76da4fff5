//! Stable error-log codes: every line mod_rwsgi writes starts with `RWnnnn:`, each code is
//! used once in the source and listed in docs/error-reference.md at the level it is logged
//! at (build_support/log_codes.py keeps the two together).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::ApacheConfig;

/// Code -> level column of docs/error-reference.md.
fn documented_codes() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(common::repo_dir().join("docs/error-reference.md"))
        .expect("docs/error-reference.md");
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[1].starts_with("RW"))
                .then(|| (cells[1].to_string(), cells[2].to_lowercase()))
        })
        .collect()
}

/// The `RWnnnn` a log line's message starts with (after Apache's bracketed prefix).
fn code_in(line: &str) -> Option<&str> {
    line.match_indices("RW").find_map(|(at, _)| {
        let code = line.get(at..at + 6)?;
        let after_prefix = at == 0 || line[..at].ends_with("] ");
        (after_prefix
            && code[2..].bytes().all(|b| b.is_ascii_digit())
            && line[at + 6..].starts_with(": "))
        .then_some(code)
    })
}

#[test]
fn every_log_call_in_the_source_has_a_unique_documented_code() {
    let out = Command::new("/usr/bin/python3")
        .arg(common::repo_dir().join("build_support/log_codes.py"))
        .arg("--check")
        .output()
        .expect("run log_codes.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lines_in_a_real_error_log_carry_documented_codes_at_their_levels() {
    let (config, _) =
        ApacheConfig::new("logcodes").daemon_app("probe.wsgi", "codes", "threads=2", "");
    let mut apache = config.start();
    assert_eq!(apache.get("/app/error").status, 500);
    apache.stop();
    let log = apache.error_log();
    let documented = documented_codes();
    let mut seen = Vec::new();
    for line in log.lines() {
        // "[time] [rwsgi:level] [pid N] [client ...] RW0001: ..."
        let Some(tag_at) = line.find("[rwsgi:") else {
            continue;
        };
        let level = &line[tag_at + 7..line[tag_at..].find(']').map_or(line.len(), |e| tag_at + e)];
        let Some(code) = code_in(line) else {
            continue;
        };
        let doc_level = documented
            .get(code)
            .unwrap_or_else(|| panic!("{code} is not in docs/error-reference.md: {line}"));
        let level = if level == "warn" { "warning" } else { level };
        assert!(
            doc_level.split('/').any(|l| l == level) || doc_level == "caller-chosen",
            "{code} logged at {level}, documented as {doc_level}: {line}"
        );
        seen.push(code.to_string());
    }
    // The daemon group's start, the application's exception and the stop were all logged
    // with codes.
    for what in [
        "started daemon process group",
        "exception raised processing WSGI script",
        "daemon manager (pid",
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?}:\n{log}"));
        assert!(code_in(line).is_some(), "line without a code: {line}");
    }
    assert!(seen.len() >= 3, "{log}");
}
