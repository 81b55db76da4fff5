//! Installing the way Debian users do: `make install-conf` (what `make install` runs after
//! apxs) into a copy of /etc/apache2, then `a2enmod rwsgi`, `apache2ctl -t`, `a2dismod rwsgi`
//! against that copy, with the system's /etc/apache2 and /var/lib/apache2 left untouched.
//! Also: the Python package, Debian package and crate versions agree.

mod common;
#[path = "../build_support/link_flags.rs"]
mod link_flags;
#[path = "../build_support/rpath.rs"]
mod rpath;

use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TempDir, module_path, repo_dir};

/// Every entry under `root`: path -> (kind, mode, size, mtime, symlink target, content).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.mode())
            } else {
                let mut hasher = DefaultHasher::new();
                fs::read(&path).unwrap_or_default().hash(&mut hasher);
                format!(
                    "file {:o} {} {} {:x}",
                    meta.mode(),
                    meta.len(),
                    meta.mtime(),
                    hasher.finish()
                )
            };
            out.insert(path, what);
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of /etc/apache2 whose envvars keep run, lock and log directories inside `tmp`,
/// and a copy of a2enmod's state directory (/var/lib/apache2).
struct ConfCopy {
    confdir: PathBuf,
    statedir: PathBuf,
}

impl ConfCopy {
    fn new(tmp: &Path) -> ConfCopy {
        let confdir = tmp.join("apache2");
        let statedir = tmp.join("state");
        for (from, to) in [("/etc/apache2", &confdir), ("/var/lib/apache2", &statedir)] {
            let out = Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(to)
                .output()
                .unwrap();
            assert!(out.status.success(), "cp -a {from}: {}", text(&out));
        }
        let mut envvars = fs::read_to_string(confdir.join("envvars")).unwrap();
        for (var, sub) in [
            ("APACHE_RUN_DIR", "run"),
            ("APACHE_PID_FILE", "run/apache2.pid"),
            ("APACHE_LOCK_DIR", "lock"),
            ("APACHE_LOG_DIR", "log"),
        ] {
            envvars.push_str(&format!("export {var}={}\n", tmp.join(sub).display()));
        }
        fs::write(confdir.join("envvars"), envvars).unwrap();
        fs::create_dir_all(tmp.join("log")).unwrap();
        ConfCopy { confdir, statedir }
    }

    /// Runs an Apache admin tool against the copy.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("APACHE_CONFDIR", &self.confdir)
            .env("APACHE_STATE_DIRECTORY", &self.statedir)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }
}

#[test]
fn make_install_conf_then_a2enmod_a2dismod_in_a_copy_of_etc_apache2() {
    // Not while another checkout's tests/packaging_deb.rs installs the package.
    let _layout_lock = common::SystemLayoutLock::acquire();
    let system_conf = snapshot(Path::new("/etc/apache2"));
    let system_state = snapshot(Path::new("/var/lib/apache2"));
    let tmp = TempDir::new("a2enmod");
    let copy = ConfCopy::new(tmp.path());
    let available = copy.confdir.join("mods-available");
    let enabled = copy.confdir.join("mods-enabled");

    // The Makefile's own install recipe, into the copy, the .load pointing at the build.
    let out = Command::new("make")
        .arg("-C")
        .arg(repo_dir())
        .arg("--no-print-directory")
        .arg("install-conf")
        .arg(format!("APACHE_CONFDIR={}", copy.confdir.display()))
        .arg(format!("MODULE_INSTALL_PATH={}", module_path().display()))
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("MFLAGS")
        .output()
        .unwrap();
    assert!(out.status.success(), "make install-conf: {}", text(&out));
    let load = fs::read_to_string(available.join("rwsgi.load")).unwrap();
    assert!(
        load.lines()
            .any(|l| l == format!("LoadModule rwsgi_module {}", module_path().display())),
        "{load}"
    );
    assert_eq!(
        fs::read(available.join("rwsgi.conf")).unwrap(),
        fs::read(repo_dir().join("apache/rwsgi.conf")).unwrap()
    );

    let out = copy.run("a2enmod", &["rwsgi"]);
    assert!(out.status.success(), "a2enmod rwsgi: {}", text(&out));
    for file in ["rwsgi.load", "rwsgi.conf"] {
        assert_eq!(
            fs::read_link(enabled.join(file)).unwrap(),
            Path::new("../mods-available").join(file),
            "a2enmod linked {file}"
        );
    }
    // (a2query always reads the system's /etc/apache2: the .deb test uses it.)
    let out = copy.run("apache2ctl", &["-t"]);
    assert!(out.status.success(), "apache2ctl -t: {}", text(&out));
    assert!(text(&out).contains("Syntax OK"), "{}", text(&out));
    let out = copy.run("apache2ctl", &["-M"]);
    assert!(
        text(&out).contains("rwsgi_module (shared)"),
        "apache2ctl -M with rwsgi enabled: {}",
        text(&out)
    );

    let out = copy.run("a2dismod", &["rwsgi"]);
    assert!(out.status.success(), "a2dismod rwsgi: {}", text(&out));
    for file in ["rwsgi.load", "rwsgi.conf"] {
        assert!(
            fs::symlink_metadata(enabled.join(file)).is_err(),
            "a2dismod left mods-enabled/{file}"
        );
    }
    let out = copy.run("apache2ctl", &["-M"]);
    assert!(out.status.success(), "apache2ctl -M: {}", text(&out));
    assert!(!text(&out).contains("rwsgi_module"), "{}", text(&out));

    assert_eq!(
        snapshot(Path::new("/etc/apache2")),
        system_conf,
        "/etc/apache2 changed"
    );
    assert_eq!(
        snapshot(Path::new("/var/lib/apache2")),
        system_state,
        "/var/lib/apache2 changed"
    );
}

/// build.rs's libraries for the daemon host's static libpython, on the real sysconfig values
/// (LIBS, SYSLIBS, MODLIBS joined by blanks, as build.rs asks Python for them) of Debian's
/// Pythons: sid's 3.14 and 3.15 (continuation backslashes in MODLIBS), trixie's 3.13 (a
/// path in CPython's build tree), bookworm's 3.11.
#[test]
fn the_static_libpython_link_takes_only_link_flags_of_sysconfig() {
    let join = |libs: &str, syslibs: &str, modlibs: &str| format!("{libs} {syslibs} {modlibs}");
    let sid_314 = join(
        "-ldl",
        "-lm",
        r"-lm       -lm   -lz -lm -lm   -lexpat  -lexpat \ \ \ \ \       -lz",
    );
    let (flags, dropped) = link_flags::python_link_libs(&sid_314);
    assert_eq!(flags, ["-ldl", "-lm", "-lz", "-lexpat"]);
    assert!(dropped.is_empty(), "{dropped:?}");
    let sid_315 = join(
        "-ldl",
        "-lm",
        r"-lm       -lm   -lz -lm -lm    -lexpat  -lexpat \ \ \ \ \       -lzstd  -lz",
    );
    assert_eq!(
        link_flags::python_link_libs(&sid_315).0,
        ["-ldl", "-lm", "-lz", "-lexpat", "-lzstd"]
    );
    let trixie_313 = join(
        "-ldl",
        "-lm",
        "-lm       -lm   -lz -lm -lm   -lexpat  -lexpat     Modules/_hacl/libHacl_Hash_SHA2.a        -lz",
    );
    let (flags, dropped) = link_flags::python_link_libs(&trixie_313);
    assert_eq!(flags, ["-ldl", "-lm", "-lz", "-lexpat"]);
    assert_eq!(dropped, ["Modules/_hacl/libHacl_Hash_SHA2.a"]);
    let bookworm_311 = join(
        "-ldl",
        "-lm",
        "-lm      -lm   -lz -lm -lm   -lexpat  -lexpat              -lz",
    );
    assert_eq!(
        link_flags::python_link_libs(&bookworm_311).0,
        ["-ldl", "-lm", "-lz", "-lexpat"]
    );
    // Other flags a Python may have, and shell quoting.
    assert_eq!(
        link_flags::python_link_libs(
            "-lpthread -pthread -L/opt/py/lib -Wl,--as-needed '-lquoted' /opt/x/libffi.a -O2"
        ),
        (
            vec![
                "-lpthread".to_string(),
                "-pthread".to_string(),
                "-L/opt/py/lib".to_string(),
                "-Wl,--as-needed".to_string(),
                "-lquoted".to_string(),
                "/opt/x/libffi.a".to_string(),
            ],
            vec!["-O2".to_string()]
        )
    );
    assert_eq!(
        link_flags::shell_words(r#"a\ b "c d" 'e\f' g\"#),
        ["a b", "c d", r"e\f", "g\\"]
    );
}

#[test]
fn rpath_only_where_the_loader_would_not_find_libpython() {
    let t = "x86_64-unknown-linux-gnu";
    // Debian's /usr/bin/python3 (LIBDIR /usr/lib/x86_64-linux-gnu) and /usr/lib: none.
    assert!(!rpath::wants_rpath(
        Path::new("/usr/lib/x86_64-linux-gnu"),
        t,
        None
    ));
    assert!(!rpath::wants_rpath(Path::new("/usr/lib"), t, None));
    assert!(!rpath::wants_rpath(Path::new("/usr/lib64"), t, None));
    // A pyenv or /opt Python: its LIBDIR.
    assert!(rpath::wants_rpath(Path::new("/opt/py/lib"), t, None));
    assert!(rpath::wants_rpath(
        Path::new("/root/.pyenv/versions/3.11.7/lib"),
        t,
        None
    ));
    assert!(rpath::wants_rpath(Path::new("/usr/local/lib"), t, None));
    // Another architecture's multiarch directory is not a default one for this target.
    assert!(rpath::wants_rpath(
        Path::new("/usr/lib/aarch64-linux-gnu"),
        t,
        None
    ));
    assert!(!rpath::wants_rpath(
        Path::new("/usr/lib/aarch64-linux-gnu"),
        "aarch64-unknown-linux-gnu",
        None
    ));
    assert!(!rpath::wants_rpath(
        Path::new("/usr/lib/i386-linux-gnu"),
        "i686-unknown-linux-gnu",
        None
    ));
    // RWSGI_NO_RPATH=1 (the .deb) turns it off; "" and "0" do not.
    assert!(!rpath::wants_rpath(Path::new("/opt/py/lib"), t, Some("1")));
    assert!(rpath::wants_rpath(Path::new("/opt/py/lib"), t, Some("0")));
    assert!(rpath::wants_rpath(Path::new("/opt/py/lib"), t, Some("")));
}

/// `make build`'s module: libpython in DT_NEEDED; a RUNPATH only for a Python whose LIBDIR
/// the loader does not search (none for Debian's /usr/bin/python3).
#[test]
fn the_built_module_links_libpython_with_a_runpath_only_where_needed() {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(module_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -d: {}", text(&out));
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains("Shared library: [libpython3."),
        "no libpython in DT_NEEDED:\n{dynamic}"
    );
    let out = Command::new(env!("RWSGI_BUILD_PYTHON_EXECUTABLE"))
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
        ])
        .output()
        .unwrap();
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let runpath = dynamic
        .lines()
        .find(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"));
    if rpath::wants_rpath(Path::new(&libdir), &target, None) {
        assert!(
            runpath.is_some_and(|l| l.contains(&format!("[{libdir}]"))),
            "LIBDIR {libdir} needs a RUNPATH:\n{dynamic}"
        );
    } else {
        assert_eq!(runpath, None, "LIBDIR {libdir} is searched by default");
    }
}

/// The Python package's version (pyproject.toml reads it from python/mod_rwsgi/__init__.py)
/// and the Debian package's (debian/changelog) are the crate's.
#[test]
fn python_and_debian_package_versions_equal_cargo_version() {
    let init = fs::read_to_string(repo_dir().join("python/mod_rwsgi/__init__.py")).unwrap();
    let version = init
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .expect("__version__ in python/mod_rwsgi/__init__.py")
        .trim_matches('"');
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let pyproject = fs::read_to_string(repo_dir().join("pyproject.toml")).unwrap();
    assert!(
        pyproject.contains(r#"version = { attr = "mod_rwsgi.__version__" }"#),
        "pyproject.toml must take its version from mod_rwsgi.__version__"
    );
    let changelog = fs::read_to_string(repo_dir().join("debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("mod-rwsgi ({}) ", env!("CARGO_PKG_VERSION"))),
        "debian/changelog's latest entry is not the crate's version: {first}"
    );
}

/// setup.py's check before cargo runs: each missing tool is one line saying how to get it.
#[test]
fn build_check_names_missing_cargo_apxs_and_libclang() {
    let home = TempDir::new("no-cargo-home");
    let check = repo_dir().join("build_support/check_build_env.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&check)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("APXS", "/nonexistent/apxs")
        .env("LIBCLANG_PATH", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines[0].contains("cargo (Rust >= 1.85) not found") && lines[0].contains("rustup"),
        "{said}"
    );
    assert!(
        lines[1].contains("APXS=/nonexistent/apxs is not an executable")
            && lines[1].contains("apt-get install apache2-dev"),
        "{said}"
    );
    assert!(
        lines[2].contains("has no libclang*.so*") && lines[2].contains("bindgen"),
        "{said}"
    );

    // With everything present (as `make test` has it) there is nothing to say.
    // (tests/packaging_pip.rs checks that cargo is found in ~/.cargo/bin without PATH.)
    let out = Command::new("/usr/bin/python3")
        .arg(&check)
        .env_remove("APXS")
        .env_remove("LIBCLANG_PATH")
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}
