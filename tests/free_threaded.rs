//! Issue 35, free-threaded Python: a daemon group whose venv is a free-threaded CPython
//! (3.13t/3.14t) runs on that venv's own daemon host (`pip install mod_rwsgi` builds it for
//! that Python), and `WSGIFreeThreading` for its process group (`<WSGIInterpreterOptions
//! process-group=...>`) decides whether the GIL runs there. Two CPU-bound requests in one
//! daemon process (threads=2) then take about as long as one with the GIL off, and twice as
//! long with it on: the goal is a ratio of at least 1.8.
//!
//! Needs such an interpreter, named by `RWSGI_FREE_THREADED_PYTHON` (readable by www-data);
//! skipped, saying so, without it. Pointed at a Python with the GIL it runs the whole set-up
//! (venv, pip install of this checkout, Apache serving both groups from the venv's host) and
//! then fails, saying that Python is not free-threaded. Last, `make check-free-threaded`
//! type-checks the free-threaded code paths without such an interpreter.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The free-threaded Python, or None (the test says it is skipped).
fn free_threaded_python() -> Option<PathBuf> {
    match std::env::var_os("RWSGI_FREE_THREADED_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipped: set RWSGI_FREE_THREADED_PYTHON=/path/to/python3.14t (a free-threaded \
                 CPython 3.13t or later, readable by www-data) to run"
            );
            None
        }
    }
}

/// What `python -c code` prints.
fn python_says(python: &Path, code: &str) -> String {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(out.status.success(), "{}: {out:?}", python.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A venv of `python` with mod_rwsgi pip-installed from a copy of this checkout (its daemon
/// host `bin/rwsgi-daemon`); cargo's output is kept in `$CARGO_TARGET_DIR/pip-<tag>`.
fn venv_with_host(python: &Path, root: &Path, tag: &str) -> PathBuf {
    let source = root.join("src");
    std::fs::create_dir_all(&source).unwrap();
    common::run(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' --exclude=./target --exclude=./build --exclude=./.git -cf - . | tar -C '{}' -xf -",
        common::repo_dir().display(),
        source.display()
    )));
    let venv = root.join("venv-ft");
    common::run(Command::new(python).args(["-m", "venv"]).arg(&venv));
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_dir().join("target"));
    let started = Instant::now();
    common::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(&source)
            .env_remove("PYO3_PYTHON")
            .env_remove("RWSGI_SO")
            .env("CARGO_TARGET_DIR", cache.join(format!("pip-{tag}"))),
    );
    eprintln!(
        "venv of Python {tag} with mod_rwsgi in {} s",
        started.elapsed().as_secs()
    );
    let host = venv.join("bin/rwsgi-daemon");
    assert!(host.is_file(), "pip installed no {}", host.display());
    venv
}

/// GETs `path` until it answers 200 (within 60 s).
fn get_ok(apache: &common::Apache, path: &str) -> String {
    apache
        .get_until(path, Duration::from_secs(60), |r| r.status == 200)
        .text()
}

/// The shortest wall time, over `rounds`, of two `/burn` requests sent at once to `group`.
fn pair_time(apache: &common::Apache, group: &str, turns: u64, rounds: usize) -> Duration {
    let path = format!("/{group}/burn?n={turns}");
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            std::thread::scope(|s| {
                let a = s.spawn(|| get_ok(apache, &path));
                let b = s.spawn(|| get_ok(apache, &path));
                a.join().unwrap();
                b.join().unwrap();
            });
            started.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn a_free_threaded_venv_runs_without_the_gil_when_its_group_asks_and_in_parallel() {
    let Some(python) = free_threaded_python() else {
        return;
    };
    let version = python_says(
        &python,
        "import sys, sysconfig; print('%d.%d%s' % (sys.version_info[0], sys.version_info[1], \
         't' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))",
    );
    let config = common::ApacheConfig::new("free-threaded");
    let root = config.root().to_path_buf();
    let venv = venv_with_host(&python, &root, &version);
    let app = config.install_app("probe.wsgi");
    // Two groups on the one venv: WSGIFreeThreading On for `fton` (its section), Off (the
    // default) for `ftoff`. One process of two threads each.
    let mut conf = String::new();
    for group in ["fton", "ftoff"] {
        conf.push_str(&format!(
            "WSGIDaemonProcess {group} processes=1 threads=2 python-home={venv}\n\
             WSGIScriptAlias /{group} {app} process-group={group} application-group=%{{GLOBAL}}\n",
            venv = venv.display(),
            app = app.display(),
        ));
    }
    conf.push_str(
        "<WSGIInterpreterOptions process-group=fton>\nWSGIFreeThreading On\n\
         </WSGIInterpreterOptions>\n",
    );
    conf.push_str(&format!(
        "<Directory {}>\n    Require all granted\n</Directory>\n",
        app.parent().unwrap().display()
    ));
    common::run(Command::new("chmod").args(["-R", "a+rX"]).arg(&root));
    let apache = config.conf(&conf).start();
    let on = get_ok(&apache, "/fton/gil");
    let off = get_ok(&apache, "/ftoff/gil");
    assert!(
        version.ends_with('t'),
        "RWSGI_FREE_THREADED_PYTHON={} is Python {version}, not a free-threaded build \
         (sysconfig Py_GIL_DISABLED unset): the set-up ran (venv, pip install, both groups \
         served from its host: GIL {on} / {off}), the free-threading checks cannot",
        python.display()
    );
    assert_eq!(on, "disabled", "WSGIFreeThreading On: GIL {on}");
    assert_eq!(off, "enabled", "WSGIFreeThreading Off: GIL {off}");

    // Two CPU-bound requests at once in one process: with the GIL they take turns. Pick a
    // loop of about 0.5 s alone (bounded: at most 8 doublings), then 3 rounds per group.
    let mut turns = 1_000_000u64;
    for _ in 0..8 {
        let started = Instant::now();
        get_ok(&apache, &format!("/ftoff/burn?n={turns}"));
        if started.elapsed() >= Duration::from_millis(500) {
            break;
        }
        turns *= 2;
    }
    let with_gil = pair_time(&apache, "ftoff", turns, 3);
    let without = pair_time(&apache, "fton", turns, 3);
    let ratio = with_gil.as_secs_f64() / without.as_secs_f64();
    eprintln!(
        "two CPU-bound requests ({turns} turns each) in one daemon process of Python \
         {version}: {:.3} s with the GIL, {:.3} s without: {ratio:.2}x",
        with_gil.as_secs_f64(),
        without.as_secs_f64()
    );
    assert!(
        ratio >= 1.8,
        "GIL off vs on: {ratio:.2}x, the goal is >= 1.8x ({:.3} s vs {:.3} s)",
        without.as_secs_f64(),
        with_gil.as_secs_f64()
    );
}

/// The free-threaded code paths (`#[cfg(Py_GIL_DISABLED)]`, a host built for a 3.14t venv)
/// type-check: `make check-free-threaded` (clippy -D warnings against a pyo3 config of
/// CPython 3.14t, no interpreter needed; it does not link or run them). Here so that
/// `make test` (CI) runs it as well as `make lint`.
#[test]
fn the_free_threaded_code_paths_type_check() {
    let started = Instant::now();
    let out = Command::new("make")
        .args(["-s", "--no-print-directory", "check-free-threaded"])
        .current_dir(common::repo_dir())
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make check-free-threaded failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "make check-free-threaded: {} s",
        started.elapsed().as_secs()
    );
}
