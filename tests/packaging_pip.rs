//! The pip route, as a user takes it: an sdist made with `python -m build --sdist`, installed
//! with `pip install --no-cache-dir` into a fresh venv made from /usr/bin/python3; the venv's
//! `rwsgi-express module-config` output loads into a minimal Apache configuration that
//! passes `apache2 -t` and serves a page in daemon mode as www-data with the venv's Python.
//!
//! Slow (a release build of the module and both commands): run by `make test-packaging`,
//! which passes `--ignored`. Cargo's output is cached in target/pip, so repeated runs only
//! rebuild this crate.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ApacheConfig, repo_dir};

const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn text(out: &Output) -> String {
    format!(
        "status {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PATH without rustup's ~/.cargo/bin, as pip run by `sudo` (or a PEP 517 subprocess) may
/// have it: the build must still find cargo.
fn path_without_cargo_bin() -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.ends_with("/.cargo/bin"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A command with the environment `make test` exported for the in-tree build removed.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    // (CARGO and RUSTC are set by `cargo test`; a user's shell has neither.)
    for var in [
        "CARGO_TARGET_DIR",
        "PYO3_PYTHON",
        "RWSGI_SO",
        "MAKEFLAGS",
        "MAKELEVEL",
        "CARGO",
        "RUSTC",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

/// The venv, at the same path on every run (so cargo's cache in target/pip stays valid for
/// the pyo3 crates, which depend on the interpreter's path) but made fresh each time.
/// Under /tmp: the daemon (www-data) reads the venv's Python.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let tag = format!("{:x}", {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            repo_dir().hash(&mut h);
            h.finish()
        });
        let dir = std::env::temp_dir().join(format!("rwsgi-pip-{}", &tag[..8]));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if let Err(e) = fs::remove_dir_all(&self.0) {
                eprintln!("cannot remove {}: {e}", self.0.display());
            }
        }
    }
}

#[test]
#[ignore = "slow (release build in a venv): run by `make test-packaging`"]
fn sdist_installs_into_a_fresh_venv_and_its_module_config_serves_in_daemon_mode() {
    let scratch = Scratch::new();
    let venv = scratch.0.join("v");
    let dist = scratch.0.join("dist");
    let cache = repo_dir().join("target/pip");
    run_ok(
        clean(SYSTEM_PYTHON).arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    );
    let pip = venv.join("bin/pip");
    let python = venv.join("bin/python");
    run_ok(
        clean(&pip).args(["install", "-q", "--no-cache-dir", "build"]),
        "pip install build",
    );
    run_ok(
        clean(&python)
            .args(["-m", "build", "--sdist", "-o"])
            .arg(&dist)
            .arg(repo_dir()),
        "python -m build --sdist",
    );
    let version = env!("CARGO_PKG_VERSION");
    let sdist = dist.join(format!("mod_rwsgi-{version}.tar.gz"));
    assert!(sdist.is_file(), "no {}", sdist.display());

    // The build refuses what would drop libpython from the module.
    let out = clean("cargo")
        .args(["build", "--release", "--lib", "--locked"])
        .current_dir(repo_dir())
        .env("CARGO_TARGET_DIR", &cache)
        .env("PYO3_PYTHON", &python)
        .env("PYO3_BUILD_EXTENSION_MODULE", "1")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "built with PYO3_BUILD_EXTENSION_MODULE"
    );
    assert!(
        text(&out).contains("PYO3_BUILD_EXTENSION_MODULE is set, which builds without libpython"),
        "{}",
        text(&out)
    );

    // A missing build tool is named before cargo runs.
    let out = clean(&pip)
        .args(["install", "--no-cache-dir"])
        .arg(&sdist)
        .env("APXS", "/nonexistent/apxs")
        .output()
        .unwrap();
    assert!(!out.status.success(), "installed without apxs");
    let said = text(&out);
    assert!(
        said.contains("mod_rwsgi cannot be built")
            && said.contains("APXS=/nonexistent/apxs is not an executable")
            && said.contains("apt-get install apache2-dev"),
        "{said}"
    );

    let out = clean(&pip)
        .args(["install", "--no-cache-dir"])
        .arg(&sdist)
        .env("CARGO_TARGET_DIR", &cache)
        .env("PATH", path_without_cargo_bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "pip install sdist: {}", text(&out));

    // What pip installed.
    for bin in ["rwsgi-express", "rwsgi-load", "rwsgi-daemon"] {
        assert!(venv.join("bin").join(bin).is_file(), "no {bin} in the venv");
    }
    let info = run_ok(
        clean(&python).args([
            "-c",
            "import importlib.metadata as m, sysconfig, mod_rwsgi; \
             print(mod_rwsgi.__version__, m.version('mod-rwsgi'), \
             sysconfig.get_python_version(), sysconfig.get_config_var('EXT_SUFFIX'), \
             sysconfig.get_config_var('INSTSONAME'), sysconfig.get_config_var('LIBDIR'))",
        ]),
        "python -c import mod_rwsgi",
    );
    let info: Vec<&str> = info.split_whitespace().collect();
    let [
        package_version,
        dist_version,
        py_version,
        ext_suffix,
        soname,
        libdir,
    ] = info[..]
    else {
        panic!("{info:?}");
    };
    assert_eq!(package_version, version, "mod_rwsgi.__version__");
    assert_eq!(dist_version, version, "installed distribution version");

    let venv_real = fs::canonicalize(&venv).unwrap();
    let module = venv_real.join(format!(
        "lib/python{py_version}/site-packages/mod_rwsgi/server/mod_rwsgi{ext_suffix}"
    ));
    let config = run_ok(
        clean(venv.join("bin/rwsgi-express")).arg("module-config"),
        "rwsgi-express module-config",
    );
    assert_eq!(
        config,
        format!(
            "LoadModule rwsgi_module {}\nWSGIPythonHome {}\n",
            module.display(),
            venv_real.display()
        )
    );
    let from_python = run_ok(
        clean(&python).args(["-m", "mod_rwsgi", "module-config"]),
        "python -m mod_rwsgi module-config",
    );
    assert_eq!(from_python, config, "python -m mod_rwsgi module-config");

    // The module links this venv's libpython; no RUNPATH, as Debian's LIBDIR is searched anyway.
    let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&module), "readelf -d");
    assert!(
        dynamic.contains(&format!("Shared library: [{soname}]")),
        "{soname} not in DT_NEEDED:\n{dynamic}"
    );
    assert!(
        !dynamic.contains("RUNPATH") && !dynamic.contains("RPATH"),
        "LIBDIR {libdir} needs no RUNPATH:\n{dynamic}"
    );

    // module-config's lines included into a minimal configuration: configtest, then a
    // daemon-mode page.
    let apache_config = ApacheConfig::new("pip").without_rwsgi();
    let included = apache_config.root().join("mod_rwsgi.conf");
    fs::write(&included, &config).unwrap();
    let config = apache_config.conf(&format!("Include {}", included.display()));
    let (config, _) = config.daemon_app("probe.wsgi", "pipvenv", "threads=2", "");
    let (ok, out) = config.configtest();
    assert!(ok && out.contains("Syntax OK"), "apache2 -t:\n{out}");
    let apache = config.start();
    let sys = apache.get("/app/sys");
    assert_with_log!(apache, sys.status == 200, "GET /app/sys: {}", sys.status);
    let sys: serde_json::Value = serde_json::from_str(&sys.text()).unwrap();
    assert_eq!(
        Path::new(sys["prefix"].as_str().unwrap()),
        venv_real,
        "the daemon's sys.prefix is the venv"
    );
    let ids = apache.get("/app/ids");
    let ids: serde_json::Value = serde_json::from_str(&ids.text()).unwrap();
    let www_data = nix::unistd::User::from_name("www-data").unwrap().unwrap();
    assert_eq!(
        ids["euid"],
        www_data.uid.as_raw(),
        "daemon runs as www-data"
    );
}
